/* The resolved ds_config: what DeepSpeed 0.19 would run for a given file,
 * world size and set of Hugging Face Trainer values for "auto". Plain data:
 * everything that uses a config (engine/, the schedulers, plugin/api.c) reads
 * these structs and nothing of the reader. */
#ifndef DSRT_DS_CONFIG_H
#define DSRT_DS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "dsrt.h"

typedef enum ds_offload_device { DS_OFFLOAD_NONE, DS_OFFLOAD_CPU, DS_OFFLOAD_NVME } ds_offload_device;

typedef struct ds_zero_config {
    int64_t stage;                 /* as written: 0..3 */
    bool contiguous_gradients;
    bool reduce_scatter;
    int64_t reduce_bucket_size;
    bool use_multi_rank_bucket_allreduce;
    bool overlap_comm;             /* resolved: None => stage == 3 */
    bool allgather_partitions;
    int64_t allgather_bucket_size;
    bool round_robin_gradients;
    bool load_from_fp32_weights;
    bool elastic_checkpoint;
    bool ignore_unused_parameters;
    ds_offload_device offload_optimizer;
    ds_offload_device offload_param;
} ds_zero_config;

typedef struct ds_fp16_config {
    bool enabled;
    bool auto_cast;
    double loss_scale;             /* 0 => dynamic */
    int64_t initial_scale_power;
    int64_t loss_scale_window;
    int64_t hysteresis;
    bool consecutive_hysteresis;
    int64_t min_loss_scale;
    bool fp16_master_weights_and_grads;
} ds_fp16_config;

typedef struct ds_bf16_config {
    bool enabled;
    bool immediate_grad_update;
    bool check_grad_overflow;
    bool bf16_master_weights_and_grads;
    bool bf16_optimizer_states;
} ds_bf16_config;

typedef enum ds_optimizer_kind {
    DS_OPT_NONE,      /* no optimizer block: the host brings its own */
    DS_OPT_ADAM,      /* "Adam"/"AdamW" in any case: FusedAdam */
    DS_OPT_LAMB,
    DS_OPT_LION,
    DS_OPT_ADAGRAD,
    DS_OPT_ONEBIT,    /* OneBitAdam, ZeroOneAdam, OneBitLamb */
    DS_OPT_MUON,      /* Muon, MuAdam, MuAdamW, MuSGD */
    DS_OPT_TORCH,     /* a torch.optim class by exact name */
} ds_optimizer_kind;

typedef struct ds_optimizer_config {
    ds_optimizer_kind kind;
    const char *type;              /* as written */
    double lr;
    double betas[2];
    double eps;
    double weight_decay;
    bool bias_correction;
    bool adam_w_mode;              /* the param as given (default true) */
    bool adamw;                    /* effective: type == adamw || adam_w_mode (spec 6.1) */
    bool torch_adam;
    bool amsgrad;
    bool trainer;                  /* no optimizer block: the Hugging Face Trainer's torch AdamW,
                                      with its parameter groups (no weight decay on biases and
                                      norm weights) */
} ds_optimizer_config;

typedef enum ds_scheduler_kind {
    DS_SCHED_NONE,
    DS_SCHED_WARMUP_LR,
    DS_SCHED_WARMUP_DECAY_LR,
    DS_SCHED_WARMUP_COSINE_LR,
    DS_SCHED_ONE_CYCLE,
    DS_SCHED_LR_RANGE_TEST,
    DS_SCHED_TORCH,                /* a torch.optim.lr_scheduler class by name */
    DS_SCHED_HF,                   /* no scheduler block: the Trainer's lr_scheduler_type */
} ds_scheduler_kind;

/* The Hugging Face Trainer's schedules (transformers.get_scheduler) */
typedef enum ds_hf_schedule {
    DS_HF_LINEAR,
    DS_HF_COSINE,
    DS_HF_COSINE_WITH_RESTARTS,
    DS_HF_POLYNOMIAL,
    DS_HF_CONSTANT,
    DS_HF_CONSTANT_WITH_WARMUP,
    DS_HF_INVERSE_SQRT,
} ds_hf_schedule;

typedef struct ds_scheduler_config {
    ds_scheduler_kind kind;
    const char *type;
    /* WarmupLR / WarmupDecayLR / WarmupCosineLR */
    double warmup_min_lr, warmup_max_lr;   /* warmup_max_lr NaN => optimizer lr (WarmupLR >= 0.17.2) */
    int64_t warmup_num_steps;
    bool warmup_log;                       /* warmup_type "log" (default) vs "linear" */
    int64_t total_num_steps;
    double warmup_min_ratio, cos_min_ratio;
    ds_hf_schedule hf;                     /* DS_SCHED_HF: which (warmup_num_steps and
                                              total_num_steps hold the Trainer's) */
    /* OneCycle */
    double cycle_min_lr, cycle_max_lr, decay_lr_rate;
    int64_t cycle_first_step_size, cycle_second_step_size;
    int64_t cycle_first_stair_count, cycle_second_stair_count, decay_step_size;
    bool cycle_momentum;
    double cycle_min_mom, cycle_max_mom, decay_mom_rate;
    /* LRRangeTest */
    double lr_range_test_min_lr, lr_range_test_step_rate;
    int64_t lr_range_test_step_size;
    bool lr_range_test_staircase;
    int64_t last_batch_iteration;
} ds_scheduler_config;

typedef enum ds_comm_dtype { DS_COMM_DEFAULT, DS_COMM_FP16, DS_COMM_BF16, DS_COMM_FP32 } ds_comm_dtype;

typedef struct ds_config {
    int32_t world_size;
    int64_t train_batch_size;
    int64_t train_micro_batch_size_per_gpu;
    int64_t gradient_accumulation_steps;
    bool managed_gradient_accumulation;
    double gradient_clipping;
    bool prescale_gradients;
    double gradient_predivide_factor;
    bool gradient_allreduce_sum;           /* gradient_allreduce_op "sum" */
    ds_comm_dtype communication_data_type;
    bool zero_allow_untested_optimizer;
    int64_t steps_per_print;               /* 0 = None */
    bool wall_clock_breakdown;
    ds_zero_config zero;
    int32_t zero_stage;                    /* what dsrt runs: min(stage, 2) */
    ds_fp16_config fp16;
    ds_bf16_config bf16;
    dsrt_precision precision;
    ds_optimizer_config optimizer;
    ds_scheduler_config scheduler;
    bool strict;                           /* "dsrt": {"strict": true} */
    bool skip_nonfinite_steps;             /* "dsrt": {"skip_nonfinite_steps": true} */
} ds_config;

#endif /* DSRT_DS_CONFIG_H */
