/* "auto" in a ds_config, filled the way the Hugging Face Trainer does
 * (transformers/integrations/deepspeed.py, HfTrainerDeepSpeedConfig; spec
 * section 3), from the values the host passes as TrainingArguments names.
 *
 * Where the host gives no value, dsrt takes the file's own concrete value for
 * the same quantity when there is one (so "train_batch_size": "auto" next to
 * "train_micro_batch_size_per_gpu": 4 means 4 per rank, not the Trainer's 8),
 * and otherwise the Trainer's default. An explicit host value that contradicts
 * a concrete value in the file is an error, as in the Trainer, except the
 * run length (max_steps), which every launcher passes: a schedule length
 * written in the file is kept (noted). Every fill is reported as a
 * DSRT_DIAG_AUTO diagnostic. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config_impl.h"

/* TrainingArguments defaults (transformers 4.x/5.x) */
#define HF_DEFAULT_MICRO 8
#define HF_DEFAULT_GAS 1
#define HF_DEFAULT_LR 5e-5
#define HF_DEFAULT_BETA1 0.9
#define HF_DEFAULT_BETA2 0.999
#define HF_DEFAULT_EPS 1e-8
#define HF_DEFAULT_WD 0.0
#define HF_DEFAULT_MAX_GRAD_NORM 1.0

typedef enum { HV_INT, HV_FLOAT, HV_BOOL, HV_SCHED } hv_type;

typedef struct hv_spec {
    const char *name;
    hv_type type;
    size_t has, val; /* offsets into hf_values */
    const char *fills;
} hv_spec;

#define HV(n, t, h, v, f) {n, t, offsetof(hf_values, h), offsetof(hf_values, v), f}
static const hv_spec hv_specs[] = {
    HV("per_device_train_batch_size", HV_INT, has_micro, micro, "train_micro_batch_size_per_gpu, train_batch_size"),
    HV("gradient_accumulation_steps", HV_INT, has_gas, gas, "gradient_accumulation_steps, train_batch_size"),
    HV("learning_rate", HV_FLOAT, has_lr, lr, "optimizer.params.lr, scheduler.params.warmup_max_lr"),
    HV("adam_beta1", HV_FLOAT, has_beta1, beta1, "optimizer.params.betas[0]"),
    HV("adam_beta2", HV_FLOAT, has_beta2, beta2, "optimizer.params.betas[1]"),
    HV("adam_epsilon", HV_FLOAT, has_eps, eps, "optimizer.params.eps"),
    HV("weight_decay", HV_FLOAT, has_wd, wd, "optimizer.params.weight_decay"),
    HV("max_grad_norm", HV_FLOAT, has_max_grad_norm, max_grad_norm, "gradient_clipping"),
    HV("warmup_steps", HV_INT, has_warmup_steps, warmup_steps, "scheduler.params.warmup_num_steps"),
    HV("warmup_ratio", HV_FLOAT, has_warmup_ratio, warmup_ratio, "scheduler.params.warmup_num_steps"),
    HV("max_steps", HV_INT, has_max_steps, max_steps,
       "scheduler.params.total_num_steps (and warmup_num_steps with warmup_ratio)"),
    HV("fp16", HV_BOOL, has_fp16, fp16, "fp16.enabled"),
    HV("bf16", HV_BOOL, has_bf16, bf16, "bf16.enabled"),
    HV("hidden_size", HV_INT, has_hidden_size, hidden_size,
       "zero_optimization.reduce_bucket_size (and the stage-3 bucket sizes)"),
    HV("lr_scheduler_type", HV_SCHED, has_lr_scheduler_type, lr_scheduler_type,
       "the schedule when the file has no scheduler block (default linear)"),
};

static const char *const hf_schedule_names[] = {"linear",   "cosine",   "cosine_with_restarts",
                                                "polynomial", "constant", "constant_with_warmup",
                                                "inverse_sqrt"};
#define N_HF_SCHED (sizeof hf_schedule_names / sizeof hf_schedule_names[0])

int config_hf_schedule_parse(const char *name)
{
    for (size_t i = 0; i < N_HF_SCHED; i++)
        if (!strcmp(name, hf_schedule_names[i]))
            return (int)i;
    return -1;
}

const char *config_hf_schedule_name(int hf)
{
    return hf >= 0 && (size_t)hf < N_HF_SCHED ? hf_schedule_names[hf] : "?";
}
#define N_HV (sizeof hv_specs / sizeof hv_specs[0])

static dsrt_status hv_error(const char *item, const char *what)
{
    dsrt_buf b = {0};
    for (size_t i = 0; i < N_HV; i++)
        dsrt_buf_printf(&b, "%s%s", i ? ", " : "", hv_specs[i].name);
    char *names = dsrt_buf_take(&b);
    dsrt_status st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "error: hf value \"%s\": %s; the names are: %s",
                                    item, what, names ? names : "?");
    free(names);
    return st;
}

dsrt_status hf_values_parse(const char *const *items, size_t n, hf_values *out)
{
    memset(out, 0, sizeof *out);
    if (n && !items)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "config_create: hf_value_count is %zu but hf_values is NULL",
                              n);
    for (size_t i = 0; i < n; i++) {
        const char *item = items[i];
        if (!item)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "config_create: hf_values[%zu] is NULL", i);
        const char *eq = strchr(item, '=');
        if (!eq)
            return hv_error(item, "expected NAME=VALUE");
        size_t nl = (size_t)(eq - item);
        const hv_spec *s = NULL;
        for (size_t j = 0; j < N_HV; j++)
            if (strlen(hv_specs[j].name) == nl && strncmp(hv_specs[j].name, item, nl) == 0)
                s = &hv_specs[j];
        if (!s)
            return hv_error(item, "unknown name");
        const char *v = eq + 1;
        char *end = NULL;
        bool *has = (bool *)((char *)out + s->has);
        void *val = (char *)out + s->val;
        switch (s->type) {
        case HV_INT: {
            long long x = strtoll(v, &end, 10);
            if (!*v || *end) {
                double d = strtod(v, &end);
                if (!*v || *end || d != floor(d) || fabs(d) > 9e18)
                    return hv_error(item, "the value must be an integer");
                x = (long long)d;
            }
            *(int64_t *)val = x;
            break;
        }
        case HV_FLOAT: {
            double d = strtod(v, &end);
            if (!*v || *end || !isfinite(d))
                return hv_error(item, "the value must be a finite number");
            *(double *)val = d;
            break;
        }
        case HV_SCHED: {
            int k = config_hf_schedule_parse(v);
            if (k < 0)
                return hv_error(item, "the value must be one of linear, cosine, cosine_with_restarts, "
                                      "polynomial, constant, constant_with_warmup, inverse_sqrt");
            *(int *)val = k;
            break;
        }
        case HV_BOOL:
            if (!strcasecmp(v, "true") || !strcmp(v, "1"))
                *(bool *)val = true;
            else if (!strcasecmp(v, "false") || !strcmp(v, "0"))
                *(bool *)val = false;
            else
                return hv_error(item, "the value must be true or false");
            break;
        }
        *has = true;
    }
    if (out->has_micro && out->micro <= 0)
        return hv_error("per_device_train_batch_size", "must be > 0");
    if (out->has_gas && out->gas <= 0)
        return hv_error("gradient_accumulation_steps", "must be > 0");
    if (out->has_max_steps && out->max_steps <= 0)
        return hv_error("max_steps", "must be > 0");
    if (out->has_hidden_size && (out->hidden_size <= 0 || out->hidden_size > 3037000499LL))
        return hv_error("hidden_size", "must be in 1..3037000499");
    if (out->has_warmup_steps && out->warmup_steps < 0)
        return hv_error("warmup_steps", "must be >= 0");
    if (out->has_warmup_ratio && !(out->warmup_ratio >= 0.0 && out->warmup_ratio <= 1.0))
        return hv_error("warmup_ratio", "must be in [0, 1]");
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- filling */

typedef struct fill_ctx {
    struct dsrt_config *cfg;
    const hf_values *hf;
    json_value *root;
} fill_ctx;

static json_value *get(json_value *obj, const char *key)
{
    return obj && obj->type == JSON_OBJECT ? (json_value *)json_object_get(obj, key) : NULL;
}

static bool num_of(const json_value *v, double *d)
{
    if (v && v->type == JSON_NUMBER && isfinite(v->u.num.d)) {
        *d = v->u.num.d;
        return true;
    }
    return false;
}

static const char *origin(bool given) { return given ? "given" : "Trainer default"; }

/* Fills `v` (if "auto") with a number, or checks a concrete value against an
 * explicitly given host value (the Trainer's mismatch rule). */
static dsrt_status fill_number(fill_ctx *f, const char *key, json_value *v, double x, bool given,
                               const char *hf_name, const char *why)
{
    if (!v)
        return DSRT_STATUS_OK;
    if (cfg_is_auto(v)) {
        dsrt_status st = cfg_replace_number(f->cfg, v, x);
        if (st)
            return st;
        return cfg_diag_add(f->cfg, DSRT_DIAG_AUTO, key, "\"auto\" -> %s (%s)", v->u.num.text, why);
    }
    double have;
    if (given && num_of(v, &have) && have != x) {
        char xs[32];
        dsrt_format_double(xs, x);
        return cfg_reject(f->cfg, key, v,
                          "the file's value disagrees with %s=%s passed by the host (the Hugging Face Trainer "
                          "refuses such mismatches); make them agree or write \"auto\"",
                          hf_name, xs);
    }
    return DSRT_STATUS_OK;
}

static dsrt_status fill_bool(fill_ctx *f, const char *key, json_value *v, bool x, bool given, const char *hf_name)
{
    if (!v)
        return DSRT_STATUS_OK;
    if (cfg_is_auto(v)) {
        dsrt_status st = cfg_replace_bool(f->cfg, v, x);
        if (st)
            return st;
        return cfg_diag_add(f->cfg, DSRT_DIAG_AUTO, key, "\"auto\" -> %s (%s=%s, %s)", x ? "true" : "false", hf_name,
                            x ? "true" : "false", origin(given));
    }
    if (given && v->type == JSON_BOOL && v->u.b != x)
        return cfg_reject(f->cfg, key, v,
                          "the file's value disagrees with %s=%s passed by the host (the Hugging Face Trainer "
                          "refuses such mismatches); make them agree or write \"auto\"",
                          hf_name, x ? "true" : "false");
    return DSRT_STATUS_OK;
}

/* The Trainer value for a quantity: the host's, else the file's concrete one,
 * else the Trainer default. */
static double pick(bool given, double host, const json_value *file_v, double dflt, bool *from_file)
{
    double d;
    *from_file = false;
    if (given)
        return host;
    if (num_of(file_v, &d)) {
        *from_file = true;
        return d;
    }
    return dflt;
}

static dsrt_status fill_batch(fill_ctx *f, int32_t world_size)
{
    const hf_values *hf = f->hf;
    json_value *tb = get(f->root, "train_batch_size");
    json_value *mb = get(f->root, "train_micro_batch_size_per_gpu");
    json_value *ga = get(f->root, "gradient_accumulation_steps");
    bool mb_file, ga_file;
    double micro = pick(hf->has_micro, (double)hf->micro, mb, HF_DEFAULT_MICRO, &mb_file);
    double gas = pick(hf->has_gas, (double)hf->gas, ga, HF_DEFAULT_GAS, &ga_file);
    char why[256];
    snprintf(why, sizeof why, "per_device_train_batch_size=%.0f, %s", micro,
             hf->has_micro ? "given" : mb_file ? "from the file" : "Trainer default");
    dsrt_status st = fill_number(f, "train_micro_batch_size_per_gpu", mb, micro, hf->has_micro,
                                 "per_device_train_batch_size", why);
    if (st)
        return st;
    snprintf(why, sizeof why, "gradient_accumulation_steps=%.0f, %s", gas,
             hf->has_gas ? "given" : ga_file ? "from the file" : "Trainer default");
    st = fill_number(f, "gradient_accumulation_steps", ga, gas, hf->has_gas, "gradient_accumulation_steps", why);
    if (st)
        return st;
    /* train_batch_size is derived in the Trainer, so a concrete value is
     * checked only when both of its factors were given by the host */
    double total = (double)world_size * micro * gas;
    snprintf(why, sizeof why, "world_size %d x per_device_train_batch_size %.0f x gradient_accumulation_steps %.0f",
             (int)world_size, micro, gas);
    return fill_number(f, "train_batch_size", tb, total, hf->has_micro && hf->has_gas,
                       "world_size x per_device_train_batch_size x gradient_accumulation_steps", why);
}

static dsrt_status fill_optimizer(fill_ctx *f, double *lr_out, bool *lr_known)
{
    const hf_values *hf = f->hf;
    json_value *params = get(get(f->root, "optimizer"), "params");
    json_value *lr = get(params, "lr");
    bool lr_file;
    double lr_x = pick(hf->has_lr, hf->lr, lr, HF_DEFAULT_LR, &lr_file);
    *lr_out = lr_x;
    *lr_known = hf->has_lr || lr_file || cfg_is_auto(lr);
    char why[160];
    snprintf(why, sizeof why, "learning_rate, %s", origin(hf->has_lr));
    dsrt_status st = fill_number(f, "optimizer.params.lr", lr, lr_x, hf->has_lr, "learning_rate", why);
    if (st)
        return st;
    snprintf(why, sizeof why, "adam_epsilon, %s", origin(hf->has_eps));
    st = fill_number(f, "optimizer.params.eps", get(params, "eps"), hf->has_eps ? hf->eps : HF_DEFAULT_EPS,
                     hf->has_eps, "adam_epsilon", why);
    if (st)
        return st;
    snprintf(why, sizeof why, "weight_decay, %s", origin(hf->has_wd));
    st = fill_number(f, "optimizer.params.weight_decay", get(params, "weight_decay"),
                     hf->has_wd ? hf->wd : HF_DEFAULT_WD, hf->has_wd, "weight_decay", why);
    if (st)
        return st;
    json_value *betas = get(params, "betas");
    double b1 = hf->has_beta1 ? hf->beta1 : HF_DEFAULT_BETA1, b2 = hf->has_beta2 ? hf->beta2 : HF_DEFAULT_BETA2;
    if (cfg_is_auto(betas)) {
        st = cfg_replace_pair(f->cfg, betas, b1, b2);
        if (st)
            return st;
        return cfg_diag_add(f->cfg, DSRT_DIAG_AUTO, "optimizer.params.betas",
                            "\"auto\" -> [%s, %s] (adam_beta1 %s, adam_beta2 %s)", betas->u.arr.items[0]->u.num.text,
                            betas->u.arr.items[1]->u.num.text, origin(hf->has_beta1), origin(hf->has_beta2));
    }
    if (betas && betas->type == JSON_ARRAY && betas->u.arr.count == 2) {
        /* "auto" may also stand for one element */
        for (size_t i = 0; i < 2; i++) {
            char key[64];
            snprintf(key, sizeof key, "optimizer.params.betas[%zu]", i);
            snprintf(why, sizeof why, "adam_beta%zu, %s", i + 1, origin(i ? hf->has_beta2 : hf->has_beta1));
            st = fill_number(f, key, betas->u.arr.items[i], i ? b2 : b1, i ? hf->has_beta2 : hf->has_beta1,
                             i ? "adam_beta2" : "adam_beta1", why);
            if (st)
                return st;
        }
    }
    return DSRT_STATUS_OK;
}

/* TrainingArguments.get_warmup_steps: warmup_steps if > 0, else
 * ceil(warmup_ratio x the run's total steps); 0 without either */
static int64_t trainer_warmup_steps(const hf_values *hf, double total_steps)
{
    if (hf->has_warmup_steps && hf->warmup_steps > 0)
        return hf->warmup_steps;
    if (hf->has_warmup_ratio && hf->warmup_ratio > 0)
        return (int64_t)ceil(hf->warmup_ratio * total_steps);
    return 0;
}

static dsrt_status fill_scheduler(fill_ctx *f, double lr, bool lr_known)
{
    const hf_values *hf = f->hf;
    json_value *params = get(get(f->root, "scheduler"), "params");
    if (!params)
        return DSRT_STATUS_OK;
    dsrt_status st;
    json_value *v = get(params, "warmup_min_lr");
    if (cfg_is_auto(v)) {
        if ((st = cfg_replace_number(f->cfg, v, 0.0)))
            return st;
        if ((st = cfg_diag_add(f->cfg, DSRT_DIAG_AUTO, "scheduler.params.warmup_min_lr", "\"auto\" -> 0 (Trainer)")))
            return st;
    }
    char why[200];
    snprintf(why, sizeof why, "learning_rate, %s", hf->has_lr ? "given" : lr_known ? "the optimizer's lr" : "Trainer default");
    if ((st = fill_number(f, "scheduler.params.warmup_max_lr", get(params, "warmup_max_lr"), lr, hf->has_lr,
                          "learning_rate", why)))
        return st;

    json_value *total = get(params, "total_num_steps");
    if (cfg_is_auto(total)) {
        if (!hf->has_max_steps)
            return cfg_reject(f->cfg, "scheduler.params.total_num_steps", total,
                              "\"auto\" needs the number of optimizer steps of the run, which only the host knows; "
                              "pass max_steps=N (dsrt-config --set max_steps=N, dsrt-train --steps N) or write a "
                              "number");
        snprintf(why, sizeof why, "max_steps, given");
        if ((st = fill_number(f, "scheduler.params.total_num_steps", total, (double)hf->max_steps, true, "max_steps",
                              why)))
            return st;
    } else if (total && hf->has_max_steps && total->type == JSON_NUMBER && total->u.num.d != (double)hf->max_steps) {
        /* The Trainer would refuse this mismatch, but a launcher passes the
         * run's length for every run: a schedule written in the file is
         * DeepSpeed's to follow, so it wins and the difference is noted. */
        if ((st = cfg_diag_add(f->cfg, DSRT_DIAG_NOTE, "scheduler.params.total_num_steps",
                               "the file's %s is used; max_steps=%lld only fills \"auto\"", total->u.num.text,
                               (long long)hf->max_steps)))
            return st;
    }

    json_value *warm = get(params, "warmup_num_steps");
    if (cfg_is_auto(warm)) {
        /* TrainingArguments.get_warmup_steps: warmup_steps if > 0, else ceil(ratio * N) */
        double n = 0;
        if (!(hf->has_warmup_steps && hf->warmup_steps > 0) && hf->has_warmup_ratio && hf->warmup_ratio > 0) {
            if (!hf->has_max_steps && !num_of(total, &n))
                return cfg_reject(f->cfg, "scheduler.params.warmup_num_steps", warm,
                                  "\"auto\" with warmup_ratio needs the run's total steps; pass max_steps=N too");
            n = hf->has_max_steps ? (double)hf->max_steps : total->u.num.d;
        }
        int64_t steps = trainer_warmup_steps(hf, n);
        if (hf->has_warmup_steps && hf->warmup_steps > 0)
            snprintf(why, sizeof why, "warmup_steps, given");
        else if (steps > 0)
            snprintf(why, sizeof why, "ceil(warmup_ratio %g x %.0f steps)", hf->warmup_ratio, n);
        if (steps <= 0) {
            /* The Trainer fills 0 (its warmup_steps default). DeepSpeed 0.19.3+
             * raises on it; 0.19.2 and earlier ran max(2, 0) = 2 steps. dsrt
             * runs those 2 steps and says so. */
            if ((st = cfg_replace_number(f->cfg, warm, 2.0)))
                return st;
            return cfg_diag_add(f->cfg, DSRT_DIAG_WARNING, "scheduler.params.warmup_num_steps",
                                "\"auto\" -> 2: the Trainer fills 0 (no warmup_steps or warmup_ratio given), which "
                                "DeepSpeed 0.19.3+ refuses (\"warmup_num_steps must be a positive integer\") and "
                                "0.19.2 and earlier ran as max(2, 0) = 2 steps, as dsrt does; pass warmup_steps=N "
                                "or warmup_ratio=R to choose");
        }
        if ((st = fill_number(f, "scheduler.params.warmup_num_steps", warm, (double)steps, true, "warmup_steps", why)))
            return st;
    }
    return DSRT_STATUS_OK;
}

static dsrt_status fill_zero(fill_ctx *f)
{
    const hf_values *hf = f->hf;
    json_value *z = get(f->root, "zero_optimization");
    json_value *rbs = get(z, "reduce_bucket_size");
    dsrt_status st;
    char why[128];
    if (cfg_is_auto(rbs)) {
        /* without a hidden size the Trainer leaves "auto", which DeepSpeed's
         * config model drops: its default */
        if (!hf->has_hidden_size) {
            if ((st = cfg_replace_number(f->cfg, rbs, 5e8)))
                return st;
            return cfg_diag_add(f->cfg, DSRT_DIAG_WARNING, "zero_optimization.reduce_bucket_size",
                                "\"auto\" -> 500000000, DeepSpeed's default (its config drops \"auto\"): no "
                                "hidden_size given to fill it as the Trainer does (hidden_size x hidden_size); "
                                "dsrt-train passes its model's");
        }
        double h = (double)hf->hidden_size;
        snprintf(why, sizeof why, "hidden_size %lld squared", (long long)hf->hidden_size);
        if ((st = fill_number(f, "zero_optimization.reduce_bucket_size", rbs, h * h, true, "hidden_size", why)))
            return st;
    }
    /* Stage-3-only keys: the Trainer fills them for stage 3 only. They have no
     * effect in dsrt (stage 3 runs as stage 2), so without a hidden size they
     * are left to the default rather than refused. */
    json_value *stage = get(z, "stage");
    double sd;
    if (hf->has_hidden_size && num_of(stage, &sd) && sd == 3) {
        double h = (double)hf->hidden_size;
        json_value *pf = get(z, "stage3_prefetch_bucket_size");
        snprintf(why, sizeof why, "0.9 x hidden_size %lld squared", (long long)hf->hidden_size);
        if (cfg_is_auto(pf) && (st = fill_number(f, "zero_optimization.stage3_prefetch_bucket_size", pf,
                                                 floor(0.9 * h * h), true, "hidden_size", why)))
            return st;
        json_value *pt = get(z, "stage3_param_persistence_threshold");
        snprintf(why, sizeof why, "10 x hidden_size %lld", (long long)hf->hidden_size);
        if (cfg_is_auto(pt) && (st = fill_number(f, "zero_optimization.stage3_param_persistence_threshold", pt,
                                                 10 * h, true, "hidden_size", why)))
            return st;
    }
    return DSRT_STATUS_OK;
}

dsrt_status config_fill_auto(struct dsrt_config *cfg, const hf_values *hf, int32_t world_size)
{
    fill_ctx f = {cfg, hf, (json_value *)json_doc_root(cfg->doc)};
    dsrt_status st;
    if ((st = fill_batch(&f, world_size)))
        return st;
    char why[128];
    snprintf(why, sizeof why, "max_grad_norm, %s", origin(hf->has_max_grad_norm));
    if ((st = fill_number(&f, "gradient_clipping", get(f.root, "gradient_clipping"),
                          hf->has_max_grad_norm ? hf->max_grad_norm : HF_DEFAULT_MAX_GRAD_NORM, hf->has_max_grad_norm,
                          "max_grad_norm", why)))
        return st;
    double lr;
    bool lr_known;
    if ((st = fill_optimizer(&f, &lr, &lr_known)))
        return st;
    if ((st = fill_scheduler(&f, lr, lr_known)))
        return st;
    if ((st = fill_bool(&f, "fp16.enabled", get(get(f.root, "fp16"), "enabled"), hf->has_fp16 && hf->fp16,
                        hf->has_fp16, "fp16")))
        return st;
    json_value *bf16 = get(f.root, "bf16") ? get(f.root, "bf16") : get(f.root, "bfloat16");
    if ((st = fill_bool(&f, "bf16.enabled", get(bf16, "enabled"), hf->has_bf16 && hf->bf16, hf->has_bf16, "bf16")))
        return st;
    if ((st = fill_bool(&f, "amp.enabled", get(get(f.root, "amp"), "enabled"), false, false, "fp16 with apex")))
        return st;
    return fill_zero(&f);
}

/* ---------------------------------------------------------------- the Trainer's own blocks */

dsrt_status config_trainer_defaults(struct dsrt_config *cfg, const hf_values *hf)
{
    dsrt_status st;
    ds_optimizer_config *o = &cfg->c.optimizer;
    if (o->kind == DS_OPT_NONE) {
        /* Trainer.create_optimizer: torch.optim.AdamW over two groups, the
         * parameters get_decay_parameter_names keeps with weight_decay and the
         * rest (biases, norm weights) with 0 */
        o->kind = DS_OPT_ADAM;
        o->type = "AdamW";
        o->trainer = true;
        o->lr = hf->has_lr ? hf->lr : HF_DEFAULT_LR;
        o->betas[0] = hf->has_beta1 ? hf->beta1 : HF_DEFAULT_BETA1;
        o->betas[1] = hf->has_beta2 ? hf->beta2 : HF_DEFAULT_BETA2;
        o->eps = hf->has_eps ? hf->eps : HF_DEFAULT_EPS;
        o->weight_decay = hf->has_wd ? hf->wd : HF_DEFAULT_WD;
        o->bias_correction = true;
        o->adam_w_mode = o->adamw = true;
        o->torch_adam = true;
        o->amsgrad = false;
        if ((st = cfg_diag_add(cfg, DSRT_DIAG_NOTE, "optimizer",
                               "no optimizer block: the Hugging Face Trainer's torch.optim.AdamW (lr %g, betas "
                               "(%g, %g), eps %g, weight_decay %g from the Trainer values or its defaults), no "
                               "weight decay on biases and norm weights (its parameter groups)",
                               o->lr, o->betas[0], o->betas[1], o->eps, o->weight_decay)))
            return st;
    }
    ds_scheduler_config *s = &cfg->c.scheduler;
    if (s->kind != DS_SCHED_NONE)
        return DSRT_STATUS_OK;
    int type = hf->has_lr_scheduler_type ? hf->lr_scheduler_type : DS_HF_LINEAR;
    const char *name = config_hf_schedule_name(type);
    if (type != DS_HF_CONSTANT && !hf->has_max_steps) {
        if (hf->has_lr_scheduler_type)
            return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG,
                                  "error: scheduler: lr_scheduler_type=%s needs the run's length; pass max_steps=N "
                                  "(dsrt-train --steps N) [%s]",
                                  name, cfg->source);
        return cfg_diag_add(cfg, DSRT_DIAG_NOTE, "scheduler",
                            "no scheduler block and no max_steps: the lr stays at %g, as DeepSpeed runs without a "
                            "schedule (the Trainer's linear decay needs the run's length: max_steps=N)",
                            o->lr);
    }
    int64_t warm = trainer_warmup_steps(hf, hf->has_max_steps ? (double)hf->max_steps : 0);
    s->kind = DS_SCHED_HF;
    s->type = name;
    s->hf = (ds_hf_schedule)type;
    s->warmup_num_steps = warm;
    s->total_num_steps = hf->has_max_steps ? hf->max_steps : 0;
    s->last_batch_iteration = -1;
    return cfg_diag_add(cfg, DSRT_DIAG_NOTE, "scheduler",
                        "no scheduler block: the Hugging Face Trainer's \"%s\" schedule (lr_scheduler_type, %s), "
                        "%lld warmup steps, %lld steps in all; lr_scheduler_type=constant keeps DeepSpeed's constant lr",
                        name, hf->has_lr_scheduler_type ? "given" : "its default", (long long)warm,
                        (long long)s->total_num_steps);
}
