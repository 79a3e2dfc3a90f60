/* Per-rank memory and traffic of ZeRO stages, measured: one process per rank
 * (bench/bench_zero_mem.sh runs it for stages 0/1/2 on 1, 2 and 4 ranks and
 * prints the table).
 *
 *   mpiexec -n N bench_zero_mem --model gpt2 --stage S [--dtype fp16]
 *                               [--seq 64] [--batch 1] [--bucket ELEMENTS]
 *                               [--overlap 0|1] [--steps 3]
 *
 * Each rank creates one engine, trains --steps optimizer steps and reports:
 *  - its peak resident memory (VmHWM) less its resident memory just before
 *    the engine was created (MPI, libraries and the process itself excluded);
 *  - what engine_info says it allocated, and the model's activation bytes
 *    (the same GPT-2 built once more afterwards, after the peak was read);
 *  - the bytes its comm put on and took off the wire per optimizer step
 *    (host comms count every transfer; the first step is left out).
 * Rank 0 prints the records of every rank ("mem" lines, key=value). */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsrt.h"
#include "kernels/backend.h"
#include "model/gpt2.h"
#include "zero/comm.h"
#include "zero/dist.h"

const dsrt_api *dsrt_api_table(void);

static const dsrt_api *api;

static void die(const char *what, dsrt_status st)
{
    char buf[1024];
    dsrt_last_error_args le = {sizeof le, buf, sizeof buf, 0, 0};
    api->last_error(&le);
    fprintf(stderr, "bench_zero_mem: %s: %s: %s\n", what, dsrt_status_name(st), buf);
    exit(1);
}

#define CHECK(call, what)                                                                          \
    do {                                                                                           \
        dsrt_status st_ = (call);                                                                  \
        if (st_)                                                                                   \
            die(what, st_);                                                                        \
    } while (0)

static int64_t status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int64_t kb = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n))
            kb = atoll(line + n);
    if (f)
        fclose(f);
    return kb;
}

/* VmHWM is the peak since the process started; writing 5 to clear_refs
 * resets it to the current RSS (Linux >= 4.0), so the peak is the engine's. */
static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

int main(int argc, char **argv)
{
    const char *model = "gpt2-tiny", *dtype = "fp16";
    int stage = 2, T = 64, B = 1, overlap = 1, steps = 3;
    long bucket = 50000000;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--model"))
            model = v;
        else if (!strcmp(k, "--dtype"))
            dtype = v;
        else if (!strcmp(k, "--stage"))
            stage = atoi(v);
        else if (!strcmp(k, "--seq"))
            T = atoi(v);
        else if (!strcmp(k, "--batch"))
            B = atoi(v);
        else if (!strcmp(k, "--bucket"))
            bucket = atol(v);
        else if (!strcmp(k, "--overlap"))
            overlap = atoi(v);
        else if (!strcmp(k, "--steps"))
            steps = atoi(v);
        else {
            fprintf(stderr, "bench_zero_mem: unknown option %s\n", k);
            return 2;
        }
    }
    if (steps < 2 || T < 1 || B < 1 || stage < 0 || stage > 2) {
        fprintf(stderr, "bench_zero_mem: --steps >= 2, --seq, --batch >= 1, --stage 0..2\n");
        return 2;
    }
    /* big host blocks straight from mmap: freed memory leaves the RSS */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    api = dsrt_api_table();
    dsrt_dist_create_args dc = {.struct_size = sizeof dc, .timeout_s = 600};
    CHECK(api->dist_create(&dc), "dist_create");
    int rank = dc.rank, world = dc.world_size;
    char text[1024], prec[96] = "";
    if (!strcmp(dtype, "fp16"))
        snprintf(prec, sizeof prec, "\"fp16\": {\"enabled\": true, \"initial_scale_power\": 12},");
    else if (!strcmp(dtype, "bf16"))
        snprintf(prec, sizeof prec, "\"bf16\": {\"enabled\": true},");
    snprintf(text, sizeof text,
             "{\"train_batch_size\": %d, \"train_micro_batch_size_per_gpu\": %d, %s"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-4}},"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": %ld, \"allgather_bucket_size\": %ld,"
             " \"overlap_comm\": %s}}",
             B * world, B, prec, stage, bucket, bucket, overlap ? "true" : "false");
    dsrt_config_create_args cc = {.struct_size = sizeof cc, .text = text, .text_length = strlen(text),
                                  .world_size = world};
    CHECK(api->config_create(&cc), "config_create");
    int32_t *tok = malloc((size_t)B * T * sizeof *tok), *tgt = malloc((size_t)B * T * sizeof *tgt);
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)((i * 7919 + rank * 31) % 50000 % 256);
        tgt[i] = (int32_t)((i * 7919 + rank * 31 + 1) % 50000 % 256);
    }
    /* The process's runtime (OpenBLAS's and OpenMP's per-thread buffers, MPI's
     * and the comm thread's) comes with the first engine whatever its size:
     * a throw-away gpt2-tiny step first (WARM=0: none), its growth reported
     * as `runtime` beside the engine's own peak. */
    int64_t runtime_kb = 0;
    const char *warm = getenv("WARM");
    if (!warm || strcmp(warm, "0")) {
        int64_t w0 = status_kb("VmRSS:");
        dsrt_engine_create_args wc = {.struct_size = sizeof wc, .config = cc.config, .model = "gpt2-tiny",
                                      .seq_len = T, .seed = 1, .dist = dc.dist};
        CHECK(api->engine_create(&wc), "engine_create (warm-up)");
        dsrt_engine_train_args wt = {.struct_size = sizeof wt, .engine = wc.engine, .tokens = tok,
                                     .targets = tgt, .micro_batches = 1};
        CHECK(api->engine_train(&wt), "engine_train (warm-up)");
        dsrt_engine_param_args ws = {.struct_size = sizeof ws, .engine = wc.engine, .index = 0};
        CHECK(api->engine_param(&ws), "engine_param (warm-up)");
        dsrt_engine_destroy_args wd = {sizeof wd, wc.engine};
        api->engine_destroy(&wd);
        runtime_kb = status_kb("VmRSS:") - w0;
    }
    int64_t base_kb = status_kb("VmRSS:");
    reset_peak();
    dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cc.config, .model = model,
                                  .seq_len = T, .seed = 1, .dist = dc.dist};
    CHECK(api->engine_create(&ec), "engine_create");
    dsrt_comm *comm = dc.dist->comm;
    uint64_t s0 = 0, r0 = 0;
    /* engine_param waits for the last step's all-gather, which overlaps the
     * next forward: the counters are read between whole steps */
    dsrt_engine_param_args settle = {.struct_size = sizeof settle, .engine = ec.engine, .index = 0};
    for (int s = 0; s < steps; s++) {
        if (s == 1 && comm) {
            CHECK(api->engine_param(&settle), "engine_param");
            s0 = comm->bytes_sent;
            r0 = comm->bytes_recv;
        }
        dsrt_engine_train_args tr = {.struct_size = sizeof tr, .engine = ec.engine, .tokens = tok,
                                     .targets = tgt, .micro_batches = 1};
        CHECK(api->engine_train(&tr), "engine_train");
    }
    CHECK(api->engine_param(&settle), "engine_param");
    double sent = comm ? (double)(comm->bytes_sent - s0) / (steps - 1) : 0;
    double recv = comm ? (double)(comm->bytes_recv - r0) / (steps - 1) : 0;
    int64_t peak_kb = status_kb("VmHWM:");
    dsrt_engine_info_args in = {.struct_size = sizeof in, .engine = ec.engine};
    CHECK(api->engine_info(&in), "engine_info");
    dsrt_engine_destroy_args ed = {sizeof ed, ec.engine};
    api->engine_destroy(&ed);
    /* the activations of the same model, now that the peak is read */
    int64_t act = 0;
    {
        dsrt_gpt2_config mc;
        dsrt_backend *be = NULL;
        dsrt_gpt2 *m = NULL;
        char dev[32];
        dsrt_dtype dt = !strcmp(dtype, "fp16") ? DSRT_F16 : !strcmp(dtype, "bf16") ? DSRT_BF16 : DSRT_F32;
        CHECK(dsrt_gpt2_config_load(model, &mc), "model config");
        CHECK(dsrt_backend_create("cpu", dt, &be, dev, sizeof dev), "backend");
        CHECK(dsrt_gpt2_create(&mc, be, B, T, &m), "gpt2");
        act = (int64_t)dsrt_gpt2_activation_bytes(m);
        dsrt_gpt2_destroy(m);
        be->ops->destroy(be);
    }
    char line[1024];
    snprintf(line, sizeof line,
             "mem model=%s dtype=%s ranks=%d rank=%d stage=%d overlap=%d seq=%d batch=%d bucket=%ld params=%lld "
             "partition=%lld peak=%lld info_params=%lld info_grads=%lld info_transient=%lld info_masters=%lld "
             "info_moments=%lld info_buckets=%lld info_gather=%lld info_total=%lld activations=%lld "
             "sent_per_step=%.0f recv_per_step=%.0f comm=%s runtime=%lld\n",
             model, dtype, world, rank, stage, overlap, T, B, bucket, (long long)in.num_parameters,
             (long long)in.partition_size, (long long)((peak_kb - base_kb) * 1024), (long long)in.bytes_params,
             (long long)in.bytes_grads, (long long)in.bytes_grad_transient, (long long)in.bytes_masters,
             (long long)in.bytes_moments, (long long)in.bytes_buckets, (long long)in.bytes_gather,
             (long long)in.bytes_total, (long long)act, sent, recv, in.comm, (long long)runtime_kb * 1024);
    /* rank 0 prints every rank's line, in rank order */
    for (int r = 0; r < world; r++) {
        if (r == rank) {
            fputs(line, stdout);
            fflush(stdout);
        }
        if (comm && world > 1) {
            double v[1] = {0};
            CHECK(comm->allreduce_host_f64(comm, v, 1, "bench barrier"), "barrier");
        }
    }
    dsrt_config_destroy_args cd = {sizeof cd, cc.config};
    api->config_destroy(&cd);
    dsrt_dist_destroy_args dd = {sizeof dd, dc.dist};
    api->dist_destroy(&dd);
    free(tok);
    free(tgt);
    return 0;
}
