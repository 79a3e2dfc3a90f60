/* The ds_config reader's own: the handle, the key tables and the helpers its
 * passes share. Only config/ includes this; everything else uses config.h.
 *
 * Reading happens in passes over the parsed document (base/json.h):
 *   1. "auto" is filled the way the HF Trainer does (config_auto.c);
 *   2. every block is checked against the key tables (config_keys.c) and its
 *      values stored into the typed structs of ds_config.h (config_read.c);
 *   3. batch sizes are resolved for the world size (spec section 2) and the
 *      cross-key rules applied (fp16 vs bf16, Adam vs AdamW, stage 3 -> 2)
 *      (config.c).
 * The first rejection stops the read with one line naming the key path
 * (config_diag.c). */
#ifndef DSRT_CONFIG_IMPL_H
#define DSRT_CONFIG_IMPL_H

#include "base/internal.h"
#include "base/json.h"
#include "config/config.h"

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

/* longest key path in messages ("zero_optimization.offload_optimizer.device") */
#define PATH_MAX_LEN 256

/* ---- messages and document edits (config_diag.c) */

/* Records a diagnostic and sends it to the log callback. */
dsrt_status cfg_diag_add(struct dsrt_config *cfg, dsrt_diagnostic_kind kind, const char *key,
                         const char *fmt, ...) DSRT_PRINTF(4, 5);

/* Reports a rejection: sets the thread's error to the standard one-line form
 *   error: <key>: <what> (got <value>) [<file>:<line>]
 * `at` may be NULL (no value / no location). Returns DSRT_STATUS_INVALID_CONFIG. */
dsrt_status cfg_reject(const struct dsrt_config *cfg, const char *key, const json_value *at,
                       const char *fmt, ...) DSRT_PRINTF(4, 5);

/* A rejection about a key itself (unknown, misplaced): located at the key. */
dsrt_status cfg_reject_key(const struct dsrt_config *cfg, const char *key, int line, const char *fmt, ...)
    DSRT_PRINTF(4, 5);
/* A behaviour dsrt does not have: a warning, or an error with "dsrt": {"strict": true}. */
dsrt_status cfg_degrade(struct dsrt_config *cfg, const char *key, const json_value *at, const char *fmt, ...)
    DSRT_PRINTF(4, 5);

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
    bool has_lr_scheduler_type;
    int64_t micro, gas, warmup_steps, max_steps, hidden_size;
    double lr, beta1, beta2, eps, wd, max_grad_norm, warmup_ratio;
    bool fp16, bf16;
    int lr_scheduler_type; /* ds_hf_schedule */
} hf_values;

dsrt_status hf_values_parse(const char *const *items, size_t n, hf_values *out);
dsrt_status config_fill_auto(struct dsrt_config *cfg, const hf_values *hf, int32_t world_size);
/* After the blocks are read: what the Trainer supplies when the file has no
 * optimizer or scheduler block (its AdamW with parameter groups, its
 * lr_scheduler_type). */
dsrt_status config_trainer_defaults(struct dsrt_config *cfg, const hf_values *hf);
/* "linear" -> DS_HF_LINEAR ...; -1 when unknown */
int config_hf_schedule_parse(const char *name);
const char *config_hf_schedule_name(int hf);

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
    KF_LOWER = 1u << 11,     /* CT_STRING DeepSpeed lower-cases before comparing (the
                                document keeps the lower-cased value) */
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

/* ---- the typed reading of pass 2 (config_read.c) */

/* Reads `obj` against `blk` into the struct at `base` (defaults first); `path`
 * prefixes key names in messages. */
dsrt_status cfg_read_block(struct dsrt_config *cfg, const cfg_block *blk, const char *path, const json_value *obj,
                           void *base);
/* One integer key (k: its table row; lax: pydantic's string coercion). */
dsrt_status cfg_read_int(const struct dsrt_config *cfg, const char *path, const cfg_key *k, bool lax,
                         const json_value *v, int64_t *out);
/* The table key nearest to an unknown `key` (edit distance), or NULL. */
const char *cfg_suggest(const cfg_block *blk, const char *key);
/* Refuses any non-finite number in the document (path: "" for the root). */
dsrt_status cfg_check_finite(const struct dsrt_config *cfg, const json_value *v, const char *path);
dsrt_status cfg_read_zero(struct dsrt_config *cfg, const json_value *z);
dsrt_status cfg_read_precision(struct dsrt_config *cfg, const json_value *root);
dsrt_status cfg_read_optimizer(struct dsrt_config *cfg, const json_value *opt);
dsrt_status cfg_read_scheduler(struct dsrt_config *cfg, const json_value *sch);

#endif /* DSRT_CONFIG_IMPL_H */
