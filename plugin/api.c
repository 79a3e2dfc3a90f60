/* The API table behind dsrt_get_api(): every entry point copies its args
 * struct in (size handshake), clears the thread's error, does its work, and
 * copies its outputs back. The work itself lives in the modules. */
#include <string.h>

#include "config/config.h"
#include "zero/dist.h"
#include "engine/engine.h"
#include "model/model.h"
#include "base/internal.h"
#include "kernels/backend.h"

/* Every entry point starts with this: `a` is the library-sized local copy. */
#define ARGS_IN(type, caller, a)                                                                                \
    type a;                                                                                                     \
    do {                                                                                                        \
        dsrt_error_clear();                                                                                     \
        dsrt_status st_ = dsrt_args_load(caller, sizeof(type), type##_MIN_SIZE_, &a, __func__ + 4);            \
        if (st_)                                                                                                \
            return st_;                                                                                         \
    } while (0)

/* Every call of the table, in table order: its name and its args struct's
 * minimum size (the 1.x struct it first shipped with). */
#define DSRT_API_CALLS(X) \
    X(version, DSRT_VERSION_ARGS_MIN_SIZE) \
    X(last_error, DSRT_LAST_ERROR_ARGS_MIN_SIZE) \
    X(log_set, DSRT_LOG_SET_ARGS_MIN_SIZE) \
    X(config_create, DSRT_CONFIG_CREATE_ARGS_MIN_SIZE) \
    X(config_destroy, DSRT_CONFIG_DESTROY_ARGS_MIN_SIZE) \
    X(config_to_json, DSRT_CONFIG_TO_JSON_ARGS_MIN_SIZE) \
    X(config_diagnostic, DSRT_CONFIG_DIAGNOSTIC_ARGS_MIN_SIZE) \
    X(config_summary, DSRT_CONFIG_SUMMARY_ARGS_MIN_SIZE) \
    X(engine_create, DSRT_ENGINE_CREATE_ARGS_MIN_SIZE) \
    X(engine_destroy, DSRT_ENGINE_DESTROY_ARGS_MIN_SIZE) \
    X(engine_train, DSRT_ENGINE_TRAIN_ARGS_MIN_SIZE) \
    X(engine_evaluate, DSRT_ENGINE_EVALUATE_ARGS_MIN_SIZE) \
    X(engine_info, DSRT_ENGINE_INFO_ARGS_MIN_SIZE) \
    X(dist_create, DSRT_DIST_CREATE_ARGS_MIN_SIZE) \
    X(dist_destroy, DSRT_DIST_DESTROY_ARGS_MIN_SIZE) \
    X(engine_param, DSRT_ENGINE_PARAM_ARGS_MIN_SIZE) \
    X(engine_micro_begin, DSRT_ENGINE_MICRO_BEGIN_ARGS_MIN_SIZE) \
    X(engine_grad_ready, DSRT_ENGINE_GRAD_READY_ARGS_MIN_SIZE) \
    X(engine_step, DSRT_ENGINE_STEP_ARGS_MIN_SIZE) \
    X(engine_save, DSRT_ENGINE_SAVE_ARGS_MIN_SIZE) \
    X(engine_load, DSRT_ENGINE_LOAD_ARGS_MIN_SIZE) \
    X(engine_grad_slot, DSRT_ENGINE_GRAD_SLOT_ARGS_MIN_SIZE) \
    X(model_info, DSRT_MODEL_INFO_ARGS_MIN_SIZE) \
    X(engine_export_hf, DSRT_ENGINE_EXPORT_HF_ARGS_MIN_SIZE) \
    X(estimate_memory, DSRT_ESTIMATE_MEMORY_ARGS_MIN_SIZE)

/* the minimum size ARGS_IN checks, per args type */
#define MIN_SIZE_OF(name, min) enum { dsrt_##name##_args_MIN_SIZE_ = (int)(min) };
DSRT_API_CALLS(MIN_SIZE_OF)
#undef MIN_SIZE_OF

static dsrt_status api_version(dsrt_version_args *args)
{
    ARGS_IN(dsrt_version_args, args, a);
    a.abi_major = DSRT_ABI_MAJOR;
    a.abi_minor = DSRT_ABI_MINOR;
    a.version = DSRT_VERSION_STRING;
    a.build = DSRT_BUILD_STRING;
    a.deepspeed_compat = "0.19.6";
#ifdef DSRT_WITH_CUDA
    a.cuda_compiled = 1;
#else
    a.cuda_compiled = 0;
#endif
    a.cuda_devices = dsrt_cuda_device_count();
    dsrt_args_store(args, &a, sizeof a);
    return DSRT_STATUS_OK;
}

static dsrt_status api_last_error(dsrt_last_error_args *args)
{
    /* not ARGS_IN: reading the error must not clear it */
    dsrt_last_error_args a;
    dsrt_status saved = dsrt_error_status();
    char msg[1024];
    strcpy(msg, dsrt_error_message());
    dsrt_status st = dsrt_args_load(args, sizeof a, DSRT_LAST_ERROR_ARGS_MIN_SIZE, &a, "last_error");
    if (st) {
        /* keep the error being asked about; the host's mistake is in the status */
        dsrt_error_set(saved, "%s", msg);
        return st;
    }
    size_t n = strlen(msg);
    if (a.buffer && a.buffer_size) {
        size_t c = n < a.buffer_size - 1 ? n : a.buffer_size - 1;
        memcpy(a.buffer, msg, c);
        a.buffer[c] = '\0';
    }
    a.status = saved;
    a.message_length = n;
    dsrt_args_store(args, &a, sizeof a);
    return DSRT_STATUS_OK;
}

static dsrt_status api_log_set(dsrt_log_set_args *args)
{
    ARGS_IN(dsrt_log_set_args, args, a);
    if (a.min_level < DSRT_LOG_DEBUG || a.min_level > DSRT_LOG_ERROR)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "log_set: min_level %d is not a dsrt_log_level",
                              (int)a.min_level);
    dsrt_log_install(a.fn, a.user_data, a.min_level);
    return DSRT_STATUS_OK;
}

static dsrt_status api_config_create(dsrt_config_create_args *args)
{
    ARGS_IN(dsrt_config_create_args, args, a);
    a.config = NULL;
    dsrt_status st = config_create(&a, &a.config);
    dsrt_args_store(args, &a, sizeof a);
    return st;
}

static dsrt_status api_config_destroy(dsrt_config_destroy_args *args)
{
    ARGS_IN(dsrt_config_destroy_args, args, a);
    config_destroy(a.config);
    return DSRT_STATUS_OK;
}

static dsrt_status api_config_to_json(dsrt_config_to_json_args *args)
{
    ARGS_IN(dsrt_config_to_json_args, args, a);
    if (!a.config)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "config_to_json: config is NULL");
    a.json = config_to_json((struct dsrt_config *)a.config, a.indent, &a.json_length);
    if (!a.json)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "config_to_json: out of memory");
    dsrt_args_store(args, &a, sizeof a);
    return DSRT_STATUS_OK;
}

static dsrt_status api_config_diagnostic(dsrt_config_diagnostic_args *args)
{
    ARGS_IN(dsrt_config_diagnostic_args, args, a);
    if (!a.config)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "config_diagnostic: config is NULL");
    a.count = config_diagnostic_count(a.config);
    dsrt_status st = DSRT_STATUS_OK;
    if (a.index < a.count) {
        const cfg_diag *d = config_diagnostic(a.config, a.index);
        a.kind = d->kind;
        a.key = d->key;
        a.message = d->message;
    } else {
        a.key = a.message = NULL;
        st = dsrt_error_set(DSRT_STATUS_OUT_OF_RANGE, "config_diagnostic: index %zu, but there are %zu", a.index,
                            a.count);
    }
    dsrt_args_store(args, &a, sizeof a);
    return st;
}

static dsrt_status api_config_summary(dsrt_config_summary_args *args)
{
    ARGS_IN(dsrt_config_summary_args, args, a);
    if (!a.config)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "config_summary: config is NULL");
    const ds_config *c = config_resolved(a.config);
    a.train_batch_size = c->train_batch_size;
    a.train_micro_batch_size_per_gpu = c->train_micro_batch_size_per_gpu;
    a.gradient_accumulation_steps = c->gradient_accumulation_steps;
    a.world_size = c->world_size;
    a.zero_stage_requested = (int32_t)c->zero.stage;
    a.zero_stage = c->zero_stage;
    a.precision = c->precision;
    a.steps_per_print = c->steps_per_print;
    a.gradient_clipping = c->gradient_clipping;
    dsrt_args_store(args, &a, sizeof a);
    return DSRT_STATUS_OK;
}

static dsrt_status api_engine_create(dsrt_engine_create_args *args)
{
    ARGS_IN(dsrt_engine_create_args, args, a);
    a.engine = NULL;
    dsrt_status st = engine_create(&a, &a.engine);
    dsrt_args_store(args, &a, sizeof a);
    return st;
}

static dsrt_status api_engine_destroy(dsrt_engine_destroy_args *args)
{
    ARGS_IN(dsrt_engine_destroy_args, args, a);
    engine_destroy(a.engine);
    return DSRT_STATUS_OK;
}

static dsrt_status api_engine_train(dsrt_engine_train_args *args)
{
    ARGS_IN(dsrt_engine_train_args, args, a);
    if (!a.engine)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "engine_train: engine is NULL");
    dsrt_status st = engine_train(a.engine, a.tokens, a.targets, a.micro_batches, &a.report);
    dsrt_args_store(args, &a, sizeof a);
    return st;
}

static dsrt_status api_engine_evaluate(dsrt_engine_evaluate_args *args)
{
    ARGS_IN(dsrt_engine_evaluate_args, args, a);
    if (!a.engine)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "engine_evaluate: engine is NULL");
    dsrt_status st = engine_evaluate(a.engine, a.tokens, a.targets, a.batch, &a.loss);
    dsrt_args_store(args, &a, sizeof a);
    return st;
}

static dsrt_status api_engine_info(dsrt_engine_info_args *args)
{
    ARGS_IN(dsrt_engine_info_args, args, a);
    if (!a.engine)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "engine_info: engine is NULL");
    engine_info(a.engine, &a);
    dsrt_args_store(args, &a, sizeof a);
    return DSRT_STATUS_OK;
}

static dsrt_status api_dist_create(dsrt_dist_create_args *args)
{
    ARGS_IN(dsrt_dist_create_args, args, a);
    dsrt_status st = dist_create(&a);
    dsrt_args_store(args, &a, sizeof a);
    return st;
}

static dsrt_status api_dist_destroy(dsrt_dist_destroy_args *args)
{
    ARGS_IN(dsrt_dist_destroy_args, args, a);
    dist_destroy(a.dist);
    return DSRT_STATUS_OK;
}

#define NEED_ENGINE(call)                                                                          \
    if (!a.engine)                                                                                 \
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, call ": engine is NULL")

static dsrt_status api_engine_param(dsrt_engine_param_args *args)
{
    ARGS_IN(dsrt_engine_param_args, args, a);
    NEED_ENGINE("engine_param");
    dsrt_status st = engine_param(a.engine, a.index, &a);
    dsrt_args_store(args, &a, sizeof a);
    return st;
}

static dsrt_status api_engine_micro_begin(dsrt_engine_micro_begin_args *args)
{
    ARGS_IN(dsrt_engine_micro_begin_args, args, a);
    NEED_ENGINE("engine_micro_begin");
    dsrt_status st = engine_micro_begin(a.engine, &a.grad_scale);
    dsrt_args_store(args, &a, sizeof a);
    return st;
}

static dsrt_status api_engine_grad_ready(dsrt_engine_grad_ready_args *args)
{
    ARGS_IN(dsrt_engine_grad_ready_args, args, a);
    NEED_ENGINE("engine_grad_ready");
    return engine_grad_ready(a.engine, a.index);
}

static dsrt_status api_engine_grad_slot(dsrt_engine_grad_slot_args *args)
{
    ARGS_IN(dsrt_engine_grad_slot_args, args, a);
    NEED_ENGINE("engine_grad_slot");
    dsrt_status st = engine_grad_slot(a.engine, a.index, &a.grad);
    dsrt_args_store(args, &a, sizeof a);
    return st;
}

static dsrt_status api_model_info(dsrt_model_info_args *args)
{
    ARGS_IN(dsrt_model_info_args, args, a);
    if (!a.model)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "model_info: model is NULL");
    dsrt_model_config c;
    DSRT_TRY(dsrt_model_config_load(a.model, &c));
    static const char *const types[] = {"gpt2", "llama", "mistral", "qwen2"};
    a.model_type = "gpt2"; /* static strings: the pointer outlives the call */
    for (int i = 0; i < 4; i++)
        if (!strcmp(dsrt_model_type(&c), types[i]))
            a.model_type = types[i];
    a.num_parameters = (int64_t)dsrt_model_config_num_params(&c);
    a.vocab_size = dsrt_model_vocab_size(&c);
    a.n_positions = dsrt_model_max_positions(&c);
    a.n_embd = dsrt_model_hidden_size(&c);
    a.n_layer = dsrt_model_num_layers(&c);
    a.n_head = dsrt_model_num_heads(&c);
    a.n_inner = dsrt_model_intermediate_size(&c);
    dsrt_args_store(args, &a, sizeof a);
    return DSRT_STATUS_OK;
}

static dsrt_status api_engine_export_hf(dsrt_engine_export_hf_args *args)
{
    ARGS_IN(dsrt_engine_export_hf_args, args, a);
    NEED_ENGINE("engine_export_hf");
    return engine_export_hf(a.engine, a.dir);
}

static dsrt_status api_estimate_memory(dsrt_estimate_memory_args *args)
{
    ARGS_IN(dsrt_estimate_memory_args, args, a);
    if (!a.config || !a.model)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "estimate_memory: config and model are required");
    dsrt_status st = engine_estimate(config_resolved(a.config), a.model, a.seq_len, a.device, &a);
    dsrt_args_store(args, &a, sizeof a);
    return st;
}

static dsrt_status api_engine_step(dsrt_engine_step_args *args)
{
    ARGS_IN(dsrt_engine_step_args, args, a);
    NEED_ENGINE("engine_step");
    dsrt_status st = engine_step(a.engine, a.loss, &a.report);
    dsrt_args_store(args, &a, sizeof a);
    return st;
}

static dsrt_status api_engine_save(dsrt_engine_save_args *args)
{
    ARGS_IN(dsrt_engine_save_args, args, a);
    NEED_ENGINE("engine_save");
    return engine_save(a.engine, a.save_dir, a.tag, a.client_state);
}

static dsrt_status api_engine_load(dsrt_engine_load_args *args)
{
    ARGS_IN(dsrt_engine_load_args, args, a);
    NEED_ENGINE("engine_load");
    engine_load_opts lo = {.module_only = a.load_module_only != 0,
                           .skip_optimizer_states = a.skip_optimizer_states != 0};
    dsrt_status st = engine_load_keep(a.engine, a.load_dir, a.tag, &lo, &a.client_state, &a.global_steps);
    dsrt_args_store(args, &a, sizeof a);
    return st;
}

static const dsrt_api api_table = {
    .struct_size = sizeof(dsrt_api),
    .abi_major = DSRT_ABI_MAJOR,
    .abi_minor = DSRT_ABI_MINOR,
#define TABLE_ENTRY(name, min) .name = api_##name,
    DSRT_API_CALLS(TABLE_ENTRY)
#undef TABLE_ENTRY
};

const dsrt_api *dsrt_api_table(void);
const dsrt_api *dsrt_api_table(void) { return &api_table; }
