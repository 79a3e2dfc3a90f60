/* The resolved ds_config: what DeepSpeed 0.19 would run for a given file,
 * world size and set of Hugging Face Trainer values for "auto".
 *
 * Reading happens in passes over the parsed document (json.h):
 *   1. "auto" is filled the way the HF Trainer does (config_auto.c);
 *   2. every block is checked against the key tables (config_keys.c) and its
 *      values stored into the typed structs below (config.c);
 *   3. batch sizes are resolved for the world size (spec section 2) and the
 *      cross-key rules applied (fp16 vs bf16, Adam vs AdamW, stage 3 -> 2).
 * The first rejection stops the read with one line naming the key path. */
#ifndef DSRT_CONFIG_H
#define DSRT_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "dsrt.h"
#include "internal.h"
#include "json.h"

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
} ds_optimizer_config;

typedef enum ds_scheduler_kind {
    DS_SCHED_NONE,
    DS_SCHED_WARMUP_LR,
    DS_SCHED_WARMUP_DECAY_LR,
    DS_SCHED_WARMUP_COSINE_LR,
    DS_SCHED_ONE_CYCLE,
    DS_SCHED_LR_RANGE_TEST,
    DS_SCHED_TORCH,                /* a torch.optim.lr_scheduler class by name */
} ds_scheduler_kind;

typedef struct ds_scheduler_config {
    ds_scheduler_kind kind;
    const char *type;
    /* WarmupLR / WarmupDecayLR / WarmupCosineLR */
    double warmup_min_lr, warmup_max_lr;   /* warmup_max_lr NaN => optimizer lr (WarmupLR >= 0.17.2) */
    int64_t warmup_num_steps;
    bool warmup_log;                       /* warmup_type "log" (default) vs "linear" */
    int64_t total_num_steps;
    double warmup_min_ratio, cos_min_ratio;
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
} ds_config;

/* One diagnostic (dsrt.h: dsrt_config_diagnostic_args). */
typedef struct cfg_diag {
    dsrt_diagnostic_kind kind;
    char *key;
    char *message;
} cfg_diag;

/* The handle behind dsrt_config*. */
struct dsrt_config {
    ds_config c;
    json_doc *doc;                 /* the document after "auto" filling */
    char *source;                  /* file name for messages, or "<text>" */
    cfg_diag *diags;
    size_t n_diags, cap_diags;
    char **json_texts;             /* every text handed out by to_json, freed with the handle */
    size_t n_json_texts;
    void **owned;                  /* memory behind values that "auto" was replaced with */
    size_t n_owned;
};

dsrt_status config_create(const dsrt_config_create_args *args, struct dsrt_config **out);
void config_destroy(struct dsrt_config *cfg);
const char *config_to_json(struct dsrt_config *cfg, int indent, size_t *length);

/* ---- helpers shared by config.c, config_auto.c, config_keys.c */

/* Records a diagnostic and sends it to the log callback. */
dsrt_status cfg_diag_add(struct dsrt_config *cfg, dsrt_diagnostic_kind kind, const char *key,
                         const char *fmt, ...) DSRT_PRINTF(4, 5);

/* Reports a rejection: sets the thread's error to the standard one-line form
 *   error: <key>: <what> (got <value>) [<file>:<line>]
 * `at` may be NULL (no value / no location). Returns DSRT_STATUS_INVALID_CONFIG. */
dsrt_status cfg_reject(const struct dsrt_config *cfg, const char *key, const json_value *at,
                       const char *fmt, ...) DSRT_PRINTF(4, 5);

/* Short rendering of a value for messages: `"auto"`, `4.5`, `{...}`. */
void cfg_value_text(const json_value *v, char *out, size_t n);

bool cfg_is_auto(const json_value *v);

/* Replace an "auto" string in the document by a concrete value, in place
 * (the document is ours; these record nothing else). */
dsrt_status cfg_replace_number(struct dsrt_config *cfg, json_value *at, double d);
dsrt_status cfg_replace_bool(struct dsrt_config *cfg, json_value *at, bool b);
dsrt_status cfg_replace_pair(struct dsrt_config *cfg, json_value *at, double a, double b);

/* Host values for "auto" (config_auto.c). */
typedef struct hf_values {
    bool has_micro, has_gas, has_lr, has_beta1, has_beta2, has_eps, has_wd, has_max_grad_norm;
    bool has_warmup_steps, has_warmup_ratio, has_max_steps, has_fp16, has_bf16, has_hidden_size;
    int64_t micro, gas, warmup_steps, max_steps, hidden_size;
    double lr, beta1, beta2, eps, wd, max_grad_norm, warmup_ratio;
    bool fp16, bf16;
} hf_values;

dsrt_status hf_values_parse(const char *const *items, size_t n, hf_values *out);
dsrt_status config_fill_auto(struct dsrt_config *cfg, const hf_values *hf, int32_t world_size);

/* ---- key tables (config_keys.c): DeepSpeed 0.19.6's keys, types, defaults */

typedef enum cfg_type {
    CT_BOOL,      /* stored as bool */
    CT_INT,       /* int64_t; integral floats (2e8) accepted, fractional rejected */
    CT_FLOAT,     /* double */
    CT_STRING,    /* const char * into the document; `choices` limits it when set */
    CT_OBJECT,    /* a nested block: `sub` */
    CT_ANY,       /* accepted as written, not interpreted by dsrt */
    CT_PAIR,      /* [a, b] of numbers, stored as double[2] (Adam betas) */
} cfg_type;

enum {
    KF_MIN_GE = 1u << 0,    /* value >= lo */
    KF_MIN_GT = 1u << 1,    /* value > lo */
    KF_MAX_LE = 1u << 2,    /* value <= hi */
    KF_NULLABLE = 1u << 3,  /* null means "not set" (Optional in DeepSpeed's model) */
    KF_STAGE3 = 1u << 4,    /* only used by ZeRO stage 3 / offload: no effect here */
    KF_ALIAS = 1u << 5,     /* deprecated or alternative name of `alias` */
    KF_LAX = 1u << 6,       /* pydantic lax mode: "2" -> 2, "true" -> true */
    KF_NO_EFFECT = 1u << 7, /* accepted, no effect in DeepSpeed or dsrt either */
    KF_NOT_IMPLEMENTED = 1u << 8, /* a feature dsrt does not have: warn when set to
                                     a value other than the default */
    KF_STRICT_INT = 1u << 9, /* Python isinstance(x, int): 1000.0 is rejected */
    KF_REQUIRED = 1u << 10,  /* a required constructor argument */
};

#define CFG_NO_FIELD ((size_t)-1)

typedef struct cfg_block cfg_block;

typedef struct cfg_key {
    const char *name;
    cfg_type type;
    size_t field;            /* offsetof into the block's struct, or CFG_NO_FIELD */
    const char *dflt;        /* default as JSON text (DeepSpeed 0.19.6); NULL = None */
    unsigned flags;
    double lo, hi;
    const char *choices;     /* CT_STRING: "a|b|c" */
    const cfg_block *sub;    /* CT_OBJECT */
    const char *alias;       /* KF_ALIAS: canonical key */
    const char *note;        /* why the key is special, for warnings */
} cfg_key;

struct cfg_block {
    const char *name;        /* DeepSpeed's model name, for messages */
    bool forbid_unknown;     /* pydantic extra="forbid": unknown keys are errors */
    bool lax;                /* pydantic lax coercion of strings */
    const cfg_key *keys;
    size_t n_keys;
};

extern const cfg_block cfg_top_block;
extern const cfg_block cfg_zero_block;
extern const cfg_block cfg_fp16_block;
extern const cfg_block cfg_bf16_block;
extern const cfg_block cfg_offload_optimizer_block;
extern const cfg_block cfg_offload_param_block;
extern const cfg_block cfg_dsrt_block;

/* optimizer.params / scheduler.params, one block per type */
typedef struct cfg_named_block {
    const char *type;        /* DeepSpeed name; optimizers match case-insensitively */
    int kind;                /* ds_optimizer_kind / ds_scheduler_kind */
    const cfg_block *params; /* NULL: params passed through unchecked (torch classes) */
} cfg_named_block;
extern const cfg_named_block cfg_optimizers[];
extern const size_t cfg_n_optimizers;
extern const cfg_named_block cfg_schedulers[];
extern const size_t cfg_n_schedulers;

const cfg_key *cfg_block_find(const cfg_block *b, const char *name);

#endif /* DSRT_CONFIG_H */
