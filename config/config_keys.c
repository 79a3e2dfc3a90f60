/* The ds_config keys dsrt knows: DeepSpeed 0.19.6's names, types, defaults
 * and constraints (deepspeed/runtime/config.py, zero/config.py,
 * zero/offload_config.py, precision_config.py; see
 * shared/spec/deepspeed-semantics.md section 1). Adding a key means adding a
 * row here; config.c walks these tables generically. */
#include <stddef.h>
#include <string.h>

#include "config/config_impl.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define TOP(f) offsetof(ds_config, f)
#define ZERO(f) offsetof(ds_zero_config, f)
#define FP16(f) offsetof(ds_fp16_config, f)
#define BF16(f) offsetof(ds_bf16_config, f)
#define NOF CFG_NO_FIELD

/* ---------------------------------------------------------------- offload */

static const cfg_key offload_optimizer_keys[] = {
    {"device", CT_STRING, NOF, "\"none\"", KF_LAX, 0, 0, "none|cpu|nvme", NULL, NULL, NULL},
    {"nvme_path", CT_ANY, NOF, NULL, KF_NULLABLE, 0, 0, NULL, NULL, NULL, NULL},
    {"buffer_count", CT_INT, NOF, "4", KF_LAX | KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"pin_memory", CT_BOOL, NOF, "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"pipeline_read", CT_BOOL, NOF, "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"pipeline_write", CT_BOOL, NOF, "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"fast_init", CT_BOOL, NOF, "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"ratio", CT_FLOAT, NOF, "1.0", KF_LAX | KF_MIN_GE | KF_MAX_LE, 0, 1, NULL, NULL, NULL, NULL},
    {"super_offload", CT_BOOL, NOF, "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"cpuadam_cores_perc", CT_FLOAT, NOF, "0.8", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
};
const cfg_block cfg_offload_optimizer_block = {"DeepSpeedZeroOffloadOptimizerConfig", true, true,
                                               offload_optimizer_keys, N(offload_optimizer_keys)};

static const cfg_key offload_param_keys[] = {
    {"device", CT_STRING, NOF, "\"none\"", KF_LAX, 0, 0, "none|cpu|nvme", NULL, NULL, NULL},
    {"nvme_path", CT_ANY, NOF, NULL, KF_NULLABLE, 0, 0, NULL, NULL, NULL, NULL},
    {"buffer_count", CT_INT, NOF, "5", KF_LAX | KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"buffer_size", CT_INT, NOF, "100000000", KF_LAX | KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"max_in_cpu", CT_INT, NOF, "1000000000", KF_LAX | KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"pin_memory", CT_BOOL, NOF, "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
};
const cfg_block cfg_offload_param_block = {"DeepSpeedZeroOffloadParamConfig", true, true, offload_param_keys,
                                           N(offload_param_keys)};

/* ---------------------------------------------------------------- zero_optimization */

#define S3 (KF_LAX | KF_STAGE3)
static const cfg_key zero_keys[] = {
    {"stage", CT_INT, ZERO(stage), "0", KF_LAX | KF_MIN_GE | KF_MAX_LE, 0, 3, NULL, NULL, NULL, NULL},
    {"contiguous_gradients", CT_BOOL, ZERO(contiguous_gradients), "true", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"reduce_scatter", CT_BOOL, ZERO(reduce_scatter), "true", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"reduce_bucket_size", CT_INT, ZERO(reduce_bucket_size), "500000000", KF_LAX | KF_MIN_GE, 0, 0, NULL, NULL,
     NULL, NULL},
    {"use_multi_rank_bucket_allreduce", CT_BOOL, ZERO(use_multi_rank_bucket_allreduce), "true", KF_LAX, 0, 0, NULL,
     NULL, NULL, NULL},
    {"allgather_partitions", CT_BOOL, ZERO(allgather_partitions), "true", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"allgather_bucket_size", CT_INT, ZERO(allgather_bucket_size), "500000000", KF_LAX | KF_MIN_GE, 0, 0, NULL,
     NULL, NULL, NULL},
    {"overlap_comm", CT_BOOL, ZERO(overlap_comm), NULL, KF_LAX | KF_NULLABLE, 0, 0, NULL, NULL, NULL, NULL},
    {"load_from_fp32_weights", CT_BOOL, ZERO(load_from_fp32_weights), "true", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"elastic_checkpoint", CT_BOOL, ZERO(elastic_checkpoint), "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"offload_param", CT_OBJECT, NOF, NULL, KF_NULLABLE, 0, 0, NULL, &cfg_offload_param_block, NULL, NULL},
    {"offload_optimizer", CT_OBJECT, NOF, NULL, KF_NULLABLE, 0, 0, NULL, &cfg_offload_optimizer_block, NULL, NULL},
    {"sub_group_size", CT_INT, NOF, "1000000000", S3 | KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"cpu_offload_param", CT_BOOL, NOF, NULL, KF_LAX | KF_NULLABLE | KF_ALIAS, 0, 0, NULL, NULL, "offload_param", NULL},
    {"cpu_offload_use_pin_memory", CT_BOOL, NOF, NULL, KF_LAX | KF_NULLABLE | KF_ALIAS, 0, 0, NULL, NULL,
     "offload_param", NULL},
    {"cpu_offload", CT_BOOL, NOF, NULL, KF_LAX | KF_NULLABLE | KF_ALIAS, 0, 0, NULL, NULL, "offload_optimizer", NULL},
    {"prefetch_bucket_size", CT_INT, NOF, "50000000", S3 | KF_MIN_GE | KF_ALIAS, 0, 0, NULL, NULL,
     "stage3_prefetch_bucket_size", NULL},
    {"stage3_prefetch_bucket_size", CT_INT, NOF, "50000000", S3 | KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"param_persistence_threshold", CT_INT, NOF, "100000", S3 | KF_MIN_GE | KF_ALIAS, 0, 0, NULL, NULL,
     "stage3_param_persistence_threshold", NULL},
    {"stage3_param_persistence_threshold", CT_INT, NOF, "100000", S3 | KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"model_persistence_threshold", CT_INT, NOF, "9223372036854775807", S3 | KF_MIN_GE | KF_ALIAS, 0, 0, NULL, NULL,
     "stage3_model_persistence_threshold", NULL},
    {"stage3_model_persistence_threshold", CT_INT, NOF, "9223372036854775807", S3 | KF_MIN_GE, 0, 0, NULL, NULL,
     NULL, NULL},
    {"max_live_parameters", CT_INT, NOF, "1000000000", S3 | KF_MIN_GE | KF_ALIAS, 0, 0, NULL, NULL,
     "stage3_max_live_parameters", NULL},
    {"stage3_max_live_parameters", CT_INT, NOF, "1000000000", S3 | KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"max_reuse_distance", CT_INT, NOF, "1000000000", S3 | KF_MIN_GE | KF_ALIAS, 0, 0, NULL, NULL,
     "stage3_max_reuse_distance", NULL},
    {"stage3_max_reuse_distance", CT_INT, NOF, "1000000000", S3 | KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"gather_16bit_weights_on_model_save", CT_BOOL, NOF, "false", S3 | KF_ALIAS, 0, 0, NULL, NULL,
     "stage3_gather_16bit_weights_on_model_save", NULL},
    {"stage3_gather_16bit_weights_on_model_save", CT_BOOL, NOF, "false", S3, 0, 0, NULL, NULL, NULL, NULL},
    {"stage3_gather_fp16_weights_on_model_save", CT_BOOL, NOF, "false", S3 | KF_ALIAS, 0, 0, NULL, NULL,
     "stage3_gather_16bit_weights_on_model_save", NULL},
    {"module_granularity_threshold", CT_INT, NOF, "0", S3 | KF_ALIAS, 0, 0, NULL, NULL,
     "stage3_module_granularity_threshold", NULL},
    {"stage3_module_granularity_threshold", CT_INT, NOF, "0", S3, 0, 0, NULL, NULL, NULL, NULL},
    {"use_all_reduce_for_fetch_params", CT_BOOL, NOF, "false", S3 | KF_ALIAS, 0, 0, NULL, NULL,
     "stage3_use_all_reduce_for_fetch_params", NULL},
    {"stage3_use_all_reduce_for_fetch_params", CT_BOOL, NOF, "false", S3, 0, 0, NULL, NULL, NULL, NULL},
    {"stage3_allgather_sequential", CT_BOOL, NOF, "false", S3, 0, 0, NULL, NULL, NULL, NULL},
    {"ignore_unused_parameters", CT_BOOL, ZERO(ignore_unused_parameters), "true", KF_LAX, 0, 0, NULL, NULL, NULL,
     NULL},
    {"legacy_stage1", CT_BOOL, NOF, "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"round_robin_gradients", CT_BOOL, ZERO(round_robin_gradients), "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"zero_hpz_partition_size", CT_INT, NOF, "1", KF_LAX | KF_MIN_GE | KF_NOT_IMPLEMENTED, 0, 0, NULL, NULL, NULL,
     "ZeRO++ hierarchical partitioning"},
    {"zero_quantized_weights", CT_BOOL, NOF, "false", KF_LAX | KF_NOT_IMPLEMENTED, 0, 0, NULL, NULL, NULL,
     "ZeRO++ quantized weights"},
    {"zero_quantized_nontrainable_weights", CT_BOOL, NOF, "false", KF_LAX | KF_NOT_IMPLEMENTED, 0, 0, NULL, NULL,
     NULL, "ZeRO++ quantized weights"},
    {"zero_quantized_gradients", CT_BOOL, NOF, "false", KF_LAX | KF_NOT_IMPLEMENTED, 0, 0, NULL, NULL, NULL,
     "ZeRO++ quantized gradients"},
    {"zeropp_loco_param", CT_ANY, NOF, NULL, KF_NULLABLE | KF_STAGE3, 0, 0, NULL, NULL, NULL, NULL},
    {"mics_shard_size", CT_INT, NOF, "-1", S3, 0, 0, NULL, NULL, NULL, NULL},
    {"mics_hierarchical_params_gather", CT_BOOL, NOF, "false", S3, 0, 0, NULL, NULL, NULL, NULL},
    {"memory_efficient_linear", CT_BOOL, NOF, "true", S3, 0, 0, NULL, NULL, NULL, NULL},
    {"pipeline_loading_checkpoint", CT_BOOL, NOF, "false", S3, 0, 0, NULL, NULL, NULL, NULL},
    {"override_module_apply", CT_BOOL, NOF, "true", S3, 0, 0, NULL, NULL, NULL, NULL},
    {"log_trace_cache_warnings", CT_BOOL, NOF, "false", KF_LAX | KF_NO_EFFECT, 0, 0, NULL, NULL, NULL, NULL},
    {"enable_sanity_checks", CT_BOOL, NOF, "false", KF_LAX | KF_NO_EFFECT, 0, 0, NULL, NULL, NULL, NULL},
    {"save_muon_momentum_buffer_in_memory", CT_BOOL, NOF, "false", S3, 0, 0, NULL, NULL, NULL, NULL},
    {"leaf_module", CT_ANY, NOF, NULL, KF_NULLABLE | KF_STAGE3, 0, 0, NULL, NULL, NULL, NULL},
    {"zenflow", CT_ANY, NOF, NULL, KF_NULLABLE | KF_NOT_IMPLEMENTED, 0, 0, NULL, NULL, NULL, "ZenFlow"},
};
const cfg_block cfg_zero_block = {"DeepSpeedZeroConfig", true, true, zero_keys, N(zero_keys)};

/* ---------------------------------------------------------------- fp16 / bf16 */

static const cfg_key fp16_keys[] = {
    {"enabled", CT_BOOL, FP16(enabled), "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"auto_cast", CT_BOOL, FP16(auto_cast), "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"loss_scale", CT_FLOAT, FP16(loss_scale), "0.0", KF_LAX | KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"initial_scale_power", CT_INT, FP16(initial_scale_power), "16", KF_LAX | KF_MIN_GE, 0, 0, NULL, NULL, NULL,
     NULL},
    /* loss_scale_window and min_loss_scale: positive only when the scaling is
     * dynamic (0.19.6's _validate_dynamic_loss_scale_params; cfg_read_precision) */
    {"loss_scale_window", CT_INT, FP16(loss_scale_window), "1000", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"hysteresis", CT_INT, FP16(hysteresis), "2", KF_LAX | KF_MIN_GT, 0, 0, NULL, NULL, NULL, NULL},
    {"consecutive_hysteresis", CT_BOOL, FP16(consecutive_hysteresis), "false", KF_LAX, 0, 0, NULL, NULL, NULL,
     NULL},
    {"min_loss_scale", CT_INT, FP16(min_loss_scale), "1", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"fp16_master_weights_and_grads", CT_BOOL, FP16(fp16_master_weights_and_grads), "false",
     KF_LAX | KF_NOT_IMPLEMENTED, 0, 0, NULL, NULL, NULL, "fp16 master weights (needs optimizer offload)"},
};
const cfg_block cfg_fp16_block = {"DeepSpeedFP16Config", true, true, fp16_keys, N(fp16_keys)};

static const cfg_key bf16_keys[] = {
    {"enabled", CT_BOOL, BF16(enabled), "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"immediate_grad_update", CT_BOOL, BF16(immediate_grad_update), "false", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"check_grad_overflow", CT_BOOL, BF16(check_grad_overflow), "true", KF_LAX, 0, 0, NULL, NULL, NULL, NULL},
    {"bf16_master_weights_and_grads", CT_BOOL, BF16(bf16_master_weights_and_grads), "false",
     KF_LAX | KF_NOT_IMPLEMENTED, 0, 0, NULL, NULL, NULL, "bf16 master weights"},
    {"bf16_optimizer_states", CT_BOOL, BF16(bf16_optimizer_states), "false", KF_LAX | KF_NOT_IMPLEMENTED, 0, 0,
     NULL, NULL, NULL, "bf16 optimizer states"},
};
const cfg_block cfg_bf16_block = {"DeepSpeedBF16Config", true, true, bf16_keys, N(bf16_keys)};

/* ---------------------------------------------------------------- dsrt's own block */

static const cfg_key dsrt_keys[] = {
    {"strict", CT_BOOL, offsetof(ds_config, strict), "false", 0, 0, 0, NULL, NULL, NULL, NULL},
    /* fp32/bf16 (without check_grad_overflow): a step whose loss or gradients
     * are not finite ends the run with an error unless this is set: then it is
     * skipped, as fp16's scaler skips an overflow */
    {"skip_nonfinite_steps", CT_BOOL, offsetof(ds_config, skip_nonfinite_steps), "false", 0, 0, 0, NULL, NULL,
     NULL, NULL},
    /* written by dsrt-config for people to read; ignored on input so that
     * its output can be fed back */
    {"resolved", CT_ANY, NOF, NULL, KF_NULLABLE | KF_NO_EFFECT, 0, 0, NULL, NULL, NULL, NULL},
};
const cfg_block cfg_dsrt_block = {"dsrt", true, false, dsrt_keys, N(dsrt_keys)};

/* ---------------------------------------------------------------- monitors and comms logger
 * pydantic models with extra="forbid" in DeepSpeed (monitor/config.py,
 * comm/config.py): a typo inside them is an error there too. dsrt records
 * nothing yet; the blocks are checked and passed through. */
#define MON(name, type, dflt) {name, type, NOF, dflt, KF_LAX | KF_NULLABLE, 0, 0, NULL, NULL, NULL, NULL}
/* "enabled": true of a monitor dsrt does not write yet is named in a warning
 * (an error with "dsrt": {"strict": true}), never silently ignored */
#define MON_ENABLED(what)                                                                                      \
    {"enabled", CT_BOOL, NOF, "false", KF_LAX | KF_NULLABLE | KF_NOT_IMPLEMENTED, 0, 0, NULL, NULL, NULL, what}
/* tensorboard and csv_monitor are written (engine/monitor.c) */
static const cfg_key tensorboard_keys[] = {
    MON("enabled", CT_BOOL, "false"), MON("output_path", CT_STRING, "\"\""),
    MON("job_name", CT_STRING, "\"DeepSpeedJobName\""),
};
static const cfg_key csv_monitor_keys[] = {
    MON("enabled", CT_BOOL, "false"), MON("output_path", CT_STRING, "\"\""),
    MON("job_name", CT_STRING, "\"DeepSpeedJobName\""),
};
static const cfg_key wandb_keys[] = {
    MON_ENABLED("logging to Weights & Biases (and there is no network)"), MON("group", CT_STRING, NULL),
    MON("team", CT_STRING, NULL), MON("project", CT_STRING, "\"deepspeed\""),
};
static const cfg_key comet_keys[] = {
    MON_ENABLED("logging to Comet (and there is no network)"), MON("samples_log_interval", CT_INT, "100"),
    MON("project", CT_STRING, NULL),
    MON("workspace", CT_STRING, NULL), MON("api_key", CT_STRING, NULL), MON("experiment_name", CT_STRING, NULL),
    MON("experiment_key", CT_STRING, NULL), MON("online", CT_BOOL, NULL), MON("mode", CT_STRING, NULL),
};
static const cfg_key comms_logger_keys[] = {
    MON("enabled", CT_BOOL, "false"), MON("verbose", CT_BOOL, "false"), MON("prof_all", CT_BOOL, "true"),
    MON("prof_ops", CT_ANY, "[]"), MON("debug", CT_BOOL, "false"),
};
static const cfg_block tensorboard_block = {"TensorBoardConfig", true, true, tensorboard_keys, N(tensorboard_keys)};
static const cfg_block csv_monitor_block = {"CSVConfig", true, true, csv_monitor_keys, N(csv_monitor_keys)};
static const cfg_block wandb_block = {"WandbConfig", true, true, wandb_keys, N(wandb_keys)};
static const cfg_block comet_block = {"CometConfig", true, true, comet_keys, N(comet_keys)};
static const cfg_block comms_logger_block = {"CommsLoggerConfig", true, true, comms_logger_keys,
                                             N(comms_logger_keys)};
#define CHECKED(name, blk) {name, CT_OBJECT, NOF, NULL, KF_NULLABLE, 0, 0, NULL, &blk, NULL, NULL}

/* ---------------------------------------------------------------- top level
 * DeepSpeed reads these with dict.get and no type checks; dsrt checks types
 * (a wrong type would crash DeepSpeed later with a TypeError anyway).
 * optimizer, scheduler, zero_optimization (which may be a bool), fp16, bf16
 * and the batch keys are handled by config.c itself. */

#define ANY(name) {name, CT_ANY, NOF, NULL, KF_NULLABLE, 0, 0, NULL, NULL, NULL, NULL}
static const cfg_key top_keys[] = {
    {"train_batch_size", CT_INT, NOF, NULL, KF_NULLABLE, 0, 0, NULL, NULL, NULL, NULL},
    {"train_micro_batch_size_per_gpu", CT_INT, NOF, NULL, KF_NULLABLE, 0, 0, NULL, NULL, NULL, NULL},
    {"gradient_accumulation_steps", CT_INT, NOF, NULL, KF_NULLABLE, 0, 0, NULL, NULL, NULL, NULL},
    {"managed_gradient_accumulation", CT_BOOL, TOP(managed_gradient_accumulation), "true", 0, 0, 0, NULL, NULL,
     NULL, NULL},
    ANY("optimizer"),
    ANY("scheduler"),
    ANY("fp16"),
    ANY("bf16"),
    {"bfloat16", CT_ANY, NOF, NULL, KF_NULLABLE | KF_ALIAS, 0, 0, NULL, NULL, "bf16", NULL},
    ANY("zero_optimization"),
    {"gradient_clipping", CT_FLOAT, TOP(gradient_clipping), "1.0", KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"prescale_gradients", CT_BOOL, TOP(prescale_gradients), "false", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"gradient_predivide_factor", CT_FLOAT, TOP(gradient_predivide_factor), "1.0", KF_MIN_GT, 0, 0, NULL, NULL,
     NULL, NULL},
    {"gradient_allreduce_op", CT_STRING, NOF, "\"mean\"", KF_LOWER, 0, 0, "mean|sum", NULL, NULL, NULL},
    /* runtime/config.py get_communication_data_type lower-cases both */
    {"communication_data_type", CT_STRING, NOF, NULL, KF_NULLABLE | KF_LOWER, 0, 0, "fp16|bf16|fp32", NULL, NULL, NULL},
    {"seq_parallel_communication_data_type", CT_STRING, NOF, NULL, KF_NULLABLE | KF_LOWER, 0, 0, "fp16|bf16|fp32",
     NULL, NULL, NULL},
    {"seq_parallel_comm_data_type", CT_STRING, NOF, NULL, KF_NULLABLE | KF_ALIAS, 0, 0, NULL, NULL,
     "seq_parallel_communication_data_type", NULL},
    {"sparse_gradients", CT_BOOL, NOF, "false", KF_NOT_IMPLEMENTED, 0, 0, NULL, NULL, NULL, "sparse embedding gradients"},
    {"zero_allow_untested_optimizer", CT_BOOL, TOP(zero_allow_untested_optimizer), "false", 0, 0, 0, NULL, NULL,
     NULL, NULL},
    {"zero_force_ds_cpu_optimizer", CT_BOOL, NOF, "true", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"steps_per_print", CT_INT, TOP(steps_per_print), NULL, KF_NULLABLE | KF_MIN_GT, 0, 0, NULL, NULL, NULL, NULL},
    {"wall_clock_breakdown", CT_BOOL, TOP(wall_clock_breakdown), "false", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"memory_breakdown", CT_BOOL, NOF, "false", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"dump_state", CT_BOOL, NOF, "false", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"log_level", CT_ANY, NOF, NULL, KF_NULLABLE, 0, 0, NULL, NULL, NULL, NULL},
    {"dataloader_drop_last", CT_BOOL, NOF, "false", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"graph_harvesting", CT_BOOL, NOF, "false", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"use_data_before_expert_parallelism", CT_BOOL, NOF, "false", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"vocabulary_size", CT_INT, NOF, NULL, KF_NULLABLE, 0, 0, NULL, NULL, NULL, NULL},
    {"disable_allgather", CT_BOOL, NOF, "false", KF_NO_EFFECT, 0, 0, NULL, NULL, NULL, NULL},
    {"data_parallel_size", CT_INT, NOF, NULL, KF_NULLABLE | KF_NOT_IMPLEMENTED, 0, 0, NULL, NULL, NULL,
     "a data x sequence parallel device mesh"},
    {"sequence_parallel_size", CT_INT, NOF, NULL, KF_NULLABLE | KF_NOT_IMPLEMENTED, 0, 0, NULL, NULL, NULL,
     "sequence parallelism"},
    ANY("amp"),
    ANY("torch_autocast"),
    ANY("data_types"),
    ANY("timers"),
    CHECKED("comms_logger", comms_logger_block),
    CHECKED("tensorboard", tensorboard_block),
    CHECKED("csv_monitor", csv_monitor_block),
    CHECKED("wandb", wandb_block),
    CHECKED("comet", comet_block),
    ANY("flops_profiler"),
    ANY("activation_checkpointing"),
    ANY("checkpoint"),
    ANY("aio"),
    ANY("autotuning"),
    ANY("elasticity"),
    ANY("pipeline"),
    ANY("sparse_attention"),
    ANY("progressive_layer_drop"),
    ANY("curriculum_learning"),
    ANY("data_efficiency"),
    ANY("compression_training"),
    ANY("weight_quantization"),
    ANY("quantize_training"),
    ANY("eigenvalue"),
    ANY("hybrid_engine"),
    ANY("tensor_parallel"),
    ANY("expert_parallel"),
    ANY("compile"),
    ANY("nebula"),
    ANY("datastates"),
    ANY("model_checkpoint"),
    ANY("dsrt"),
};
const cfg_block cfg_top_block = {"DeepSpeedConfig", false, false, top_keys, N(top_keys)};

const cfg_key *cfg_block_find(const cfg_block *b, const char *name)
{
    for (size_t i = 0; i < b->n_keys; i++)
        if (strcmp(b->keys[i].name, name) == 0)
            return &b->keys[i];
    return NULL;
}

/* ---------------------------------------------------------------- optimizer.params
 * FusedAdam(lr=1e-3, bias_correction=True, betas=(0.9, 0.999), eps=1e-8,
 * adam_w_mode=True, weight_decay=0., amsgrad=False, set_grad_none=True) plus
 * the keys the engine pops first (torch_adam, adam_w_mode,
 * fp32_optimizer_states). Names outside the table are a TypeError in Python. */
#define OPT(f) offsetof(ds_optimizer_config, f)
static const cfg_key adam_keys[] = {
    {"lr", CT_FLOAT, OPT(lr), "0.001", KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"betas", CT_PAIR, OPT(betas), "[0.9, 0.999]", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"eps", CT_FLOAT, OPT(eps), "1e-08", KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"weight_decay", CT_FLOAT, OPT(weight_decay), "0.0", KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"bias_correction", CT_BOOL, OPT(bias_correction), "true", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"adam_w_mode", CT_BOOL, OPT(adam_w_mode), "true", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"torch_adam", CT_BOOL, OPT(torch_adam), "false", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"amsgrad", CT_BOOL, OPT(amsgrad), "false", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"set_grad_none", CT_BOOL, NOF, "true", KF_NO_EFFECT, 0, 0, NULL, NULL, NULL, NULL},
    {"fp32_optimizer_states", CT_BOOL, NOF, "true", KF_NO_EFFECT, 0, 0, NULL, NULL, NULL, NULL},
    /* torch.optim.Adam(W) extras, meaningful with torch_adam */
    {"foreach", CT_ANY, NOF, NULL, KF_NULLABLE | KF_NO_EFFECT, 0, 0, NULL, NULL, NULL, NULL},
    {"maximize", CT_BOOL, NOF, "false", KF_NOT_IMPLEMENTED, 0, 0, NULL, NULL, NULL, "maximize"},
    {"capturable", CT_BOOL, NOF, "false", KF_NO_EFFECT, 0, 0, NULL, NULL, NULL, NULL},
    {"differentiable", CT_BOOL, NOF, "false", KF_NO_EFFECT, 0, 0, NULL, NULL, NULL, NULL},
    {"fused", CT_ANY, NOF, NULL, KF_NULLABLE | KF_NO_EFFECT, 0, 0, NULL, NULL, NULL, NULL},
};
static const cfg_block adam_block = {"FusedAdam", true, false, adam_keys, N(adam_keys)};

const cfg_named_block cfg_optimizers[] = {
    {"adam", DS_OPT_ADAM, &adam_block},
    {"adamw", DS_OPT_ADAM, &adam_block},
    {"lamb", DS_OPT_LAMB, NULL},
    {"lion", DS_OPT_LION, NULL},
    {"adagrad", DS_OPT_ADAGRAD, NULL},
    {"onebitadam", DS_OPT_ONEBIT, NULL},
    {"zerooneadam", DS_OPT_ONEBIT, NULL},
    {"onebitlamb", DS_OPT_ONEBIT, NULL},
    {"muadam", DS_OPT_MUON, NULL},
    {"muadamw", DS_OPT_MUON, NULL},
    {"musgd", DS_OPT_MUON, NULL},
    {"muon", DS_OPT_MUON, NULL},
    /* torch.optim classes, matched exactly (case-sensitive) */
    {"ASGD", DS_OPT_TORCH, NULL},
    {"Adadelta", DS_OPT_TORCH, NULL},
    {"Adafactor", DS_OPT_TORCH, NULL},
    {"Adamax", DS_OPT_TORCH, NULL},
    {"LBFGS", DS_OPT_TORCH, NULL},
    {"NAdam", DS_OPT_TORCH, NULL},
    {"RAdam", DS_OPT_TORCH, NULL},
    {"RMSprop", DS_OPT_TORCH, NULL},
    {"Rprop", DS_OPT_TORCH, NULL},
    {"SGD", DS_OPT_TORCH, NULL},
    {"SparseAdam", DS_OPT_TORCH, NULL},
};
const size_t cfg_n_optimizers = N(cfg_optimizers);

/* ---------------------------------------------------------------- scheduler.params
 * deepspeed/runtime/lr_schedules.py constructors (0.19.6). */
#define SCH(f) offsetof(ds_scheduler_config, f)
#define WARMUP_COMMON                                                                                           \
    {"warmup_min_lr", CT_FLOAT, SCH(warmup_min_lr), "0.0", 0, 0, 0, NULL, NULL, NULL, NULL},                    \
        {"warmup_num_steps", CT_INT, SCH(warmup_num_steps), "1000", KF_STRICT_INT | KF_MIN_GT, 0, 0, NULL, NULL, \
         NULL, NULL},                                                                                           \
        {"warmup_type", CT_STRING, NOF, "\"log\"", 0, 0, 0, NULL, NULL, NULL, NULL},                            \
        {"last_batch_iteration", CT_INT, SCH(last_batch_iteration), "-1", KF_STRICT_INT, 0, 0, NULL, NULL, NULL, NULL}

static const cfg_key warmup_lr_keys[] = {
    WARMUP_COMMON,
    {"warmup_max_lr", CT_FLOAT, SCH(warmup_max_lr), NULL, KF_NULLABLE, 0, 0, NULL, NULL, NULL, NULL},
};
static const cfg_key warmup_decay_lr_keys[] = {
    WARMUP_COMMON,
    {"warmup_max_lr", CT_FLOAT, SCH(warmup_max_lr), "0.001", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"total_num_steps", CT_INT, SCH(total_num_steps), NULL, KF_REQUIRED, 0, 0, NULL, NULL, NULL, NULL},
};
static const cfg_key warmup_cosine_lr_keys[] = {
    {"total_num_steps", CT_INT, SCH(total_num_steps), NULL, KF_REQUIRED, 0, 0, NULL, NULL, NULL, NULL},
    {"warmup_min_ratio", CT_FLOAT, SCH(warmup_min_ratio), "0.0", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"warmup_num_steps", CT_INT, SCH(warmup_num_steps), "1000", KF_STRICT_INT | KF_MIN_GT, 0, 0, NULL, NULL, NULL,
     NULL},
    {"cos_min_ratio", CT_FLOAT, SCH(cos_min_ratio), "0.0001", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"warmup_type", CT_STRING, NOF, "\"log\"", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"last_batch_iteration", CT_INT, SCH(last_batch_iteration), "-1", KF_STRICT_INT, 0, 0, NULL, NULL, NULL, NULL},
};
static const cfg_key one_cycle_keys[] = {
    {"cycle_min_lr", CT_FLOAT, SCH(cycle_min_lr), NULL, KF_REQUIRED, 0, 0, NULL, NULL, NULL, NULL},
    {"cycle_max_lr", CT_FLOAT, SCH(cycle_max_lr), NULL, KF_REQUIRED, 0, 0, NULL, NULL, NULL, NULL},
    {"decay_lr_rate", CT_FLOAT, SCH(decay_lr_rate), "0.0", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"cycle_first_step_size", CT_INT, SCH(cycle_first_step_size), "2000", KF_MIN_GT, 0, 0, NULL, NULL, NULL, NULL},
    {"cycle_second_step_size", CT_INT, SCH(cycle_second_step_size), NULL, KF_NULLABLE | KF_MIN_GT, 0, 0, NULL, NULL,
     NULL, NULL},
    {"cycle_first_stair_count", CT_INT, SCH(cycle_first_stair_count), "0", KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"cycle_second_stair_count", CT_INT, SCH(cycle_second_stair_count), NULL, KF_NULLABLE | KF_MIN_GE, 0, 0, NULL,
     NULL, NULL, NULL},
    {"decay_step_size", CT_INT, SCH(decay_step_size), "0", KF_MIN_GE, 0, 0, NULL, NULL, NULL, NULL},
    {"cycle_momentum", CT_BOOL, SCH(cycle_momentum), "true", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"cycle_min_mom", CT_FLOAT, SCH(cycle_min_mom), "0.8", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"cycle_max_mom", CT_FLOAT, SCH(cycle_max_mom), "0.9", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"decay_mom_rate", CT_FLOAT, SCH(decay_mom_rate), "0.0", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"last_batch_iteration", CT_INT, SCH(last_batch_iteration), "-1", KF_STRICT_INT, 0, 0, NULL, NULL, NULL, NULL},
};
static const cfg_key lr_range_test_keys[] = {
    {"lr_range_test_min_lr", CT_FLOAT, SCH(lr_range_test_min_lr), "0.001", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"lr_range_test_step_size", CT_INT, SCH(lr_range_test_step_size), "2000", KF_MIN_GT, 0, 0, NULL, NULL, NULL,
     NULL},
    {"lr_range_test_step_rate", CT_FLOAT, SCH(lr_range_test_step_rate), "1.0", KF_MIN_GT, 0, 0, NULL, NULL, NULL,
     NULL},
    {"lr_range_test_staircase", CT_BOOL, SCH(lr_range_test_staircase), "false", 0, 0, 0, NULL, NULL, NULL, NULL},
    {"last_batch_iteration", CT_INT, SCH(last_batch_iteration), "-1", KF_STRICT_INT, 0, 0, NULL, NULL, NULL, NULL},
};
#define SBLOCK(var, name, keys) static const cfg_block var = {name, true, false, keys, N(keys)}
SBLOCK(warmup_lr_block, "WarmupLR", warmup_lr_keys);
SBLOCK(warmup_decay_lr_block, "WarmupDecayLR", warmup_decay_lr_keys);
SBLOCK(warmup_cosine_lr_block, "WarmupCosineLR", warmup_cosine_lr_keys);
SBLOCK(one_cycle_block, "OneCycle", one_cycle_keys);
SBLOCK(lr_range_test_block, "LRRangeTest", lr_range_test_keys);

const cfg_named_block cfg_schedulers[] = {
    {"WarmupLR", DS_SCHED_WARMUP_LR, &warmup_lr_block},
    {"WarmupDecayLR", DS_SCHED_WARMUP_DECAY_LR, &warmup_decay_lr_block},
    {"WarmupCosineLR", DS_SCHED_WARMUP_COSINE_LR, &warmup_cosine_lr_block},
    {"OneCycle", DS_SCHED_ONE_CYCLE, &one_cycle_block},
    {"LRRangeTest", DS_SCHED_LR_RANGE_TEST, &lr_range_test_block},
    /* torch.optim.lr_scheduler classes (case-sensitive) */
    {"LambdaLR", DS_SCHED_TORCH, NULL},
    {"MultiplicativeLR", DS_SCHED_TORCH, NULL},
    {"StepLR", DS_SCHED_TORCH, NULL},
    {"MultiStepLR", DS_SCHED_TORCH, NULL},
    {"ConstantLR", DS_SCHED_TORCH, NULL},
    {"LinearLR", DS_SCHED_TORCH, NULL},
    {"ExponentialLR", DS_SCHED_TORCH, NULL},
    {"SequentialLR", DS_SCHED_TORCH, NULL},
    {"CosineAnnealingLR", DS_SCHED_TORCH, NULL},
    {"ChainedScheduler", DS_SCHED_TORCH, NULL},
    {"ReduceLROnPlateau", DS_SCHED_TORCH, NULL},
    {"CyclicLR", DS_SCHED_TORCH, NULL},
    {"CosineAnnealingWarmRestarts", DS_SCHED_TORCH, NULL},
    {"OneCycleLR", DS_SCHED_TORCH, NULL},
    {"PolynomialLR", DS_SCHED_TORCH, NULL},
};
const size_t cfg_n_schedulers = N(cfg_schedulers);
