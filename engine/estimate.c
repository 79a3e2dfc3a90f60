/* A rank's memory before anything is allocated (ABI estimate_memory,
 * dsrt-train --estimate): what engine_create and the first steps allocate
 * for a config, a built-in model, a world size and a sequence length, from
 * the same rules the engine, the reducer, the model and the backend follow
 * (the model-state figures equal engine_info's; test_estimate checks them
 * and the total against a measured peak). DeepSpeed's own estimators
 * (estimate_zero2_model_states_mem_needs) count the model states alone; the
 * activations, buckets and op scratch are what a run adds to them. */
#include <string.h>

#include "base/internal.h"
#include "engine/engine.h"
#include "engine/engine_impl.h"
#include "model/model.h"

dsrt_status engine_estimate(const struct ds_config *c, const char *model, int32_t seq_len, const char *device,
                            dsrt_estimate_memory_args *o)
{
    dsrt_model_config mc;
    DSRT_TRY(dsrt_model_config_load(model, &mc));
    int max_t = dsrt_model_max_positions(&mc);
    int T = seq_len > 0 ? seq_len : max_t;
    if (T > max_t)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "estimate_memory: seq_len %d exceeds the model's %d",
                              T, max_t);
    int B = (int)c->train_micro_batch_size_per_gpu, N = c->world_size > 0 ? c->world_size : 1;
    int stage = c->zero_stage;
    dsrt_dtype dt, cdt;
    engine_config_dtypes(c, &dt, &cdt);
    size_t dsz = dsrt_dtype_size(dt), csz = dsrt_dtype_size(cdt);
    size_t n = dsrt_model_config_num_params(&mc);
    size_t align = 2 * (size_t)N, padded = (n + align - 1) / align * align, P = stage ? padded / (size_t)N : n;
    bool slots = stage == 2;
    /* as engine_info reports them */
    o->num_parameters = (int64_t)n;
    o->bytes_params = (int64_t)(n * dsz);
    o->bytes_grads = (int64_t)((stage == 2 ? P : n) * dsz);
    o->bytes_masters = stage == 0 && dt == DSRT_F32 ? 0 : (int64_t)(P * 4);
    o->bytes_moments = (int64_t)(P * 8);
    o->bytes_gather = c->zero.round_robin_gradients && stage && N > 1 ? (int64_t)(padded * dsz) : 0;
    o->bytes_grad_transient = 0;
    o->bytes_buckets = 0;
    size_t comm = 0;
    if (N > 1 || stage > 0) {
        size_t want = (size_t)(c->zero.reduce_bucket_size > 0 ? c->zero.reduce_bucket_size : 500000000);
        size_t cap = want < n ? want : n;
        /* two buckets with overlap_comm; stage 2's slots make the second when a
         * slot waits for the first: when a backward that fills more than one
         * bucket asks for a bias's and its weight's slots together (GPT-2, a
         * LLaMA with biases) and the pair straddles a bucket's end */
        bool pairs = mc.arch == DSRT_ARCH_GPT2 || mc.llama.qkv_bias || mc.llama.o_bias || mc.llama.mlp_bias;
        int nbk = c->zero.overlap_comm || (slots && n > cap && pairs) ? 2 : 1;
        size_t b = (size_t)nbk * cap * (dsz + (cdt != dt ? csz : 0));
        /* LLaMA's out-of-order gradients are sorted through a spare bucket */
        if (mc.arch == DSRT_ARCH_LLAMA && stage > 0 && c->zero.reduce_scatter)
            b += cap * dsz;
        o->bytes_buckets = (int64_t)b;
        if (slots) {
            size_t large = dsrt_model_largest_param(&mc), own = 0;
            if (cap < (size_t)dsrt_model_hidden_size(&mc)) /* the embedding in its own buffer */
                own = (size_t)dsrt_model_vocab_size(&mc) * (size_t)dsrt_model_hidden_size(&mc) * dsz;
            o->bytes_grad_transient = (int64_t)(own + (large > cap ? 2 * large * dsz : 0));
        } else if (stage == 1 && c->zero.round_robin_gradients) {
            o->bytes_grad_transient = (int64_t)(P * dsz);
        }
        /* the comm's ring scratch (host transports) */
        size_t need = cap * csz;
        if (stage && padded * dsz > need)
            need = padded * dsz;
        comm = N > 1 ? need / (size_t)N + 64 : 0;
    }
    o->bytes_total_model_states = o->bytes_params + o->bytes_grads + o->bytes_grad_transient + o->bytes_masters +
                                  o->bytes_moments + o->bytes_buckets + o->bytes_gather;
    /* what the model allocates past its parameters: a gradient buffer (not at
     * stage 2), the padding to 2N of both, the activations */
    size_t pad = (padded - n) * dsz * (slots ? 1 : 2);
    o->bytes_activations = (int64_t)(dsrt_model_activation_bytes_for(&mc, B, T, dt) + pad);
    dsrt_backend_shapes shapes;
    dsrt_model_shapes(&mc, B, T, &shapes);
    o->bytes_scratch = (int64_t)(dsrt_backend_scratch_bytes(device, dt, &shapes) + comm);
    o->bytes_total = o->bytes_total_model_states + o->bytes_activations + o->bytes_scratch;
    return DSRT_STATUS_OK;
}
