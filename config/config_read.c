/* The key-table walker: each block of the document read against its table
 * (config_keys.c) into the typed structs of ds_config.h, with DeepSpeed's
 * types, ranges, aliases and lax coercions, and the named blocks (zero,
 * fp16/bf16, optimizer, scheduler). Pass 2 of config.h. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config_impl.h"

/* ---------------------------------------------------------------- typed reading */

static void join_path(char *out, const char *parent, const char *key)
{
    if (parent && *parent)
        snprintf(out, PATH_MAX_LEN, "%s.%s", parent, key);
    else
        snprintf(out, PATH_MAX_LEN, "%s", key);
}

/* pydantic lax mode: the strings it turns into booleans */
static int lax_bool(const char *s)
{
    static const char *const t[] = {"true", "1", "yes", "on", "t", "y"};
    static const char *const f[] = {"false", "0", "no", "off", "f", "n"};
    for (size_t i = 0; i < 6; i++) {
        if (strcasecmp(s, t[i]) == 0)
            return 1;
        if (strcasecmp(s, f[i]) == 0)
            return 0;
    }
    return -1;
}

static bool parse_number_string(const char *s, double *d)
{
    while (isspace((unsigned char)*s))
        s++;
    if (!*s)
        return false;
    char *end;
    errno = 0;
    *d = strtod(s, &end);
    while (isspace((unsigned char)*end))
        end++;
    return *end == '\0';
}

static const char *kind_word(cfg_type t)
{
    switch (t) {
    case CT_BOOL: return "true or false";
    case CT_INT: return "an integer";
    case CT_FLOAT: return "a number";
    case CT_STRING: return "a string";
    case CT_OBJECT: return "an object {...}";
    case CT_PAIR: return "a list of two numbers";
    case CT_ANY: return "a value";
    }
    return "a value";
}

static dsrt_status check_range(const struct dsrt_config *cfg, const char *path, const cfg_key *k,
                               const json_value *v, double x)
{
    if ((k->flags & KF_MIN_GE) && !(x >= k->lo))
        return cfg_reject(cfg, path, v, "must be >= %g", k->lo);
    if ((k->flags & KF_MIN_GT) && !(x > k->lo))
        return cfg_reject(cfg, path, v, "must be > %g", k->lo);
    if ((k->flags & KF_MAX_LE) && !(x <= k->hi))
        return cfg_reject(cfg, path, v, "must be <= %g", k->hi);
    return DSRT_STATUS_OK;
}

dsrt_status cfg_read_int(const struct dsrt_config *cfg, const char *path, const cfg_key *k, bool lax,
                         const json_value *v, int64_t *out)
{
    if (v->type == JSON_STRING && lax) {
        /* pydantic lax mode reads "16" as 16 (and "2e8"? no: only integer text) */
        const char *s = v->u.str.s;
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        while (isspace((unsigned char)*end))
            end++;
        if (*s && *end == '\0' && errno == 0) {
            *out = x;
            return check_range(cfg, path, k, v, (double)x);
        }
    }
    if (v->type != JSON_NUMBER)
        return cfg_reject(cfg, path, v, "must be an integer");
    switch (v->u.num.kind) {
    case JSON_NUM_INT: break;
    case JSON_NUM_INTEGRAL:
        if (k->flags & KF_STRICT_INT)
            return cfg_reject(cfg, path, v,
                              "must be written as an integer; DeepSpeed checks isinstance(value, int), "
                              "so a float such as 1000.0 or 1e3 is refused");
        break;
    case JSON_NUM_FRACTIONAL: return cfg_reject(cfg, path, v, "must be an integer, not a fraction");
    case JSON_NUM_OUT_OF_RANGE:
        return cfg_reject(cfg, path, v, "is outside the 64-bit integer range [-9223372036854775808, 9223372036854775807]");
    case JSON_NUM_NONFINITE: return cfg_reject(cfg, path, v, "must be a finite integer");
    }
    *out = v->u.num.i;
    return check_range(cfg, path, k, v, (double)v->u.num.i);
}

static dsrt_status read_float(const struct dsrt_config *cfg, const char *path, const cfg_key *k, bool lax,
                              const json_value *v, double *out)
{
    if (v->type == JSON_STRING && lax && parse_number_string(v->u.str.s, out))
        return check_range(cfg, path, k, v, *out);
    /* per-param-group lists (scheduler lrs): one group here, so one entry */
    if (v->type == JSON_ARRAY && !strncmp(path, "scheduler.params.", 17)) {
        if (v->u.arr.count != 1 || v->u.arr.items[0]->type != JSON_NUMBER)
            return cfg_reject(cfg, path, v, "must be a number, or a list with one number per parameter group "
                                            "(one group here)");
        *out = v->u.arr.items[0]->u.num.d;
        return check_range(cfg, path, k, v, *out);
    }
    if (v->type != JSON_NUMBER)
        return cfg_reject(cfg, path, v, "must be a number");
    *out = v->u.num.d;
    return check_range(cfg, path, k, v, *out);
}

/* Every number of the document, wherever it is: a value that does not fit a
 * double (1e999), or NaN/Infinity written as such, is refused with its path.
 * DeepSpeed's json.load would pass inf on and train to NaN (docs/compat.md). */
dsrt_status cfg_check_finite(const struct dsrt_config *cfg, const json_value *v, const char *path)
{
    char kp[PATH_MAX_LEN];
    switch (v->type) {
    case JSON_NUMBER:
        if (!isfinite(v->u.num.d))
            return cfg_reject(cfg, *path ? path : "(top level)", v,
                              "must be finite: a number that fits a double (up to about 1.8e308)");
        return DSRT_STATUS_OK;
    case JSON_OBJECT:
        for (size_t i = 0; i < v->u.obj.count; i++) {
            join_path(kp, path, v->u.obj.members[i].key);
            DSRT_TRY(cfg_check_finite(cfg, v->u.obj.members[i].value, kp));
        }
        return DSRT_STATUS_OK;
    case JSON_ARRAY:
        for (size_t i = 0; i < v->u.arr.count; i++) {
            snprintf(kp, sizeof kp, "%s[%zu]", path, i);
            DSRT_TRY(cfg_check_finite(cfg, v->u.arr.items[i], kp));
        }
        return DSRT_STATUS_OK;
    default:
        return DSRT_STATUS_OK;
    }
}

static dsrt_status read_bool(const struct dsrt_config *cfg, const char *path, bool lax, const json_value *v,
                             bool *out)
{
    if (v->type == JSON_BOOL) {
        *out = v->u.b;
        return DSRT_STATUS_OK;
    }
    if (lax && v->type == JSON_STRING && lax_bool(v->u.str.s) >= 0) {
        *out = lax_bool(v->u.str.s) == 1;
        return DSRT_STATUS_OK;
    }
    if (lax && v->type == JSON_NUMBER && v->u.num.kind == JSON_NUM_INT && (v->u.num.i == 0 || v->u.num.i == 1)) {
        *out = v->u.num.i == 1;
        return DSRT_STATUS_OK;
    }
    return cfg_reject(cfg, path, v, "must be true or false");
}

static bool choice_ok(const char *choices, const char *s)
{
    size_t n = strlen(s);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0)
            return true;
        p += len + (bar ? 1 : 0);
    }
    return false;
}

static void choices_text(const char *choices, char *out, size_t n)
{
    size_t j = 0;
    for (const char *p = choices; *p && j + 8 < n; p++) {
        if (*p == '|') {
            out[j++] = ',';
            out[j++] = ' ';
        } else
            out[j++] = *p;
    }
    out[j] = '\0';
}

/* Reads one value of key `k` into `base + k->field` (when it has a field). */
static dsrt_status read_key(struct dsrt_config *cfg, const cfg_block *blk, const cfg_key *k, const char *path,
                            const json_value *v, void *base)
{
    bool lax = blk->lax || (k->flags & KF_LAX);
    void *dst = (base && k->field != CFG_NO_FIELD) ? (char *)base + k->field : NULL;
    if (v->type == JSON_NULL) {
        if (k->flags & KF_NULLABLE)
            return DSRT_STATUS_OK;
        return cfg_reject(cfg, path, v, "must be %s, not null", kind_word(k->type));
    }
    switch (k->type) {
    case CT_BOOL: {
        bool b = false;
        dsrt_status st = read_bool(cfg, path, lax, v, &b);
        if (!st && dst)
            *(bool *)dst = b;
        return st;
    }
    case CT_INT: {
        int64_t i;
        dsrt_status st = cfg_read_int(cfg, path, k, lax, v, &i);
        if (!st && dst)
            *(int64_t *)dst = i;
        return st;
    }
    case CT_FLOAT: {
        double d = 0;
        dsrt_status st = read_float(cfg, path, k, lax, v, &d);
        if (!st && dst)
            *(double *)dst = d;
        return st;
    }
    case CT_STRING:
        if (v->type != JSON_STRING)
            return cfg_reject(cfg, path, v, "must be a string");
        if (k->flags & KF_LOWER) /* the document is ours: as DeepSpeed reads it */
            for (char *c = (char *)v->u.str.s; *c; c++)
                *c = (char)tolower((unsigned char)*c);
        if (k->choices && !choice_ok(k->choices, v->u.str.s)) {
            char c[128];
            choices_text(k->choices, c, sizeof c);
            return cfg_reject(cfg, path, v, "must be one of %s", c);
        }
        if (dst)
            *(const char **)dst = v->u.str.s;
        return DSRT_STATUS_OK;
    case CT_PAIR:
        if (v->type != JSON_ARRAY || v->u.arr.count != 2 || v->u.arr.items[0]->type != JSON_NUMBER ||
            v->u.arr.items[1]->type != JSON_NUMBER)
            return cfg_reject(cfg, path, v, "must be a list of two numbers, e.g. [0.9, 0.999]");
        if (dst) {
            ((double *)dst)[0] = v->u.arr.items[0]->u.num.d;
            ((double *)dst)[1] = v->u.arr.items[1]->u.num.d;
        }
        return DSRT_STATUS_OK;
    case CT_OBJECT:
        if (v->type != JSON_OBJECT)
            return cfg_reject(cfg, path, v, "must be an object {...}");
        return DSRT_STATUS_OK; /* the caller walks k->sub */
    case CT_ANY: return DSRT_STATUS_OK;
    }
    return DSRT_STATUS_OK;
}

/* Stores a key's table default into its field. */
static void apply_default(const cfg_key *k, void *base)
{
    if (!base || k->field == CFG_NO_FIELD || !k->dflt)
        return;
    void *dst = (char *)base + k->field;
    switch (k->type) {
    case CT_BOOL: *(bool *)dst = strcmp(k->dflt, "true") == 0; break;
    case CT_INT: *(int64_t *)dst = strtoll(k->dflt, NULL, 10); break;
    case CT_FLOAT: *(double *)dst = strtod(k->dflt, NULL); break;
    case CT_PAIR: sscanf(k->dflt, "[%lf, %lf]", &((double *)dst)[0], &((double *)dst)[1]); break;
    case CT_STRING:
    case CT_OBJECT:
    case CT_ANY: break;
    }
}

/* Edit distance, for "did you mean" on unknown keys. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t sub = prev + (a[i - 1] != b[j - 1]);
            size_t del = row[j] + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            prev = cur;
        }
    }
    return row[lb];
}

const char *cfg_suggest(const cfg_block *blk, const char *key)
{
    const char *best = NULL;
    size_t bd = 3;
    for (size_t i = 0; i < blk->n_keys; i++) {
        size_t d = edit_distance(key, blk->keys[i].name);
        if (d < bd) {
            bd = d;
            best = blk->keys[i].name;
        }
    }
    return best;
}

static void list_keys(const cfg_block *blk, dsrt_buf *b)
{
    size_t shown = 0;
    for (size_t i = 0; i < blk->n_keys; i++) {
        if (blk->keys[i].flags & (KF_ALIAS | KF_STAGE3))
            continue;
        dsrt_buf_printf(b, "%s%s", shown ? ", " : "", blk->keys[i].name);
        shown++;
    }
}

/* Walks an object against a block's table: unknown keys, "auto" left in a
 * pydantic block (DeepSpeed drops it: default), types, ranges, nested blocks.
 * Stores values with fields into `base` (defaults first). */
dsrt_status cfg_read_block(struct dsrt_config *cfg, const cfg_block *blk, const char *path, const json_value *obj,
                              void *base)
{
    for (size_t i = 0; i < blk->n_keys; i++)
        apply_default(&blk->keys[i], base);
    for (size_t i = 0; i < obj->u.obj.count; i++) {
        const json_member *m = &obj->u.obj.members[i];
        char kp[PATH_MAX_LEN];
        join_path(kp, path, m->key);
        const cfg_key *k = cfg_block_find(blk, m->key);
        if (!k) {
            if (!blk->forbid_unknown)
                continue; /* the caller collects unknown top-level keys */
            const char *s = cfg_suggest(blk, m->key);
            dsrt_buf b = {0};
            list_keys(blk, &b);
            char *known = dsrt_buf_take(&b);
            dsrt_status st;
            if (s)
                st = cfg_reject_key(cfg, kp, m->line,
                                    "unknown key in %s; did you mean \"%s\"? (DeepSpeed rejects unknown keys here)", path, s);
            else
                st = cfg_reject_key(cfg, kp, m->line,
                                    "unknown key in %s (DeepSpeed rejects unknown keys here); known keys: %s", path,
                                    known ? known : "?");
            free(known);
            return st;
        }
        if (cfg_is_auto(m->value)) {
            if (!blk->lax)
                return cfg_reject(cfg, kp, m->value,
                                  "\"auto\" is not filled here: the Hugging Face Trainer has no value for it; "
                                  "write a value");
            char dv[64];
            snprintf(dv, sizeof dv, "%s", k->dflt ? k->dflt : "null");
            dsrt_status st = cfg_diag_add(cfg, DSRT_DIAG_AUTO, kp,
                                          "\"auto\" -> %s (the default: DeepSpeed drops \"auto\" inside %s)", dv,
                                          blk->name);
            if (st)
                return st;
            continue;
        }
        dsrt_status st = read_key(cfg, blk, k, kp, m->value, base);
        if (st)
            return st;
        if ((k->flags & KF_NOT_IMPLEMENTED) && m->value->type != JSON_NULL) {
            bool is_default = false;
            if (k->dflt) {
                char got[64];
                cfg_value_text(m->value, got, sizeof got);
                is_default = strcmp(got, k->dflt) == 0 ||
                             (m->value->type == JSON_NUMBER && m->value->u.num.d == strtod(k->dflt, NULL));
            }
            if (!is_default) {
                st = cfg_degrade(cfg, kp, m->value, "%s is not implemented by dsrt; the key is ignored",
                                 k->note ? k->note : k->name);
                if (st)
                    return st;
            }
        }
        if (k->type == CT_OBJECT && k->sub && m->value->type == JSON_OBJECT) {
            st = cfg_read_block(cfg, k->sub, kp, m->value, NULL);
            if (st)
                return st;
        }
    }
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- blocks with rules of their own */

static const char *offload_device(const json_value *off)
{
    const json_value *d = json_object_get(off, "device");
    return (d && d->type == JSON_STRING) ? d->u.str.s : "none";
}

static ds_offload_device device_enum(const char *s)
{
    return strcmp(s, "cpu") == 0 ? DS_OFFLOAD_CPU : strcmp(s, "nvme") == 0 ? DS_OFFLOAD_NVME : DS_OFFLOAD_NONE;
}

dsrt_status cfg_read_zero(struct dsrt_config *cfg, const json_value *z)
{
    ds_zero_config *zc = &cfg->c.zero;
    if (!z || z->type == JSON_NULL) {
        for (size_t i = 0; i < cfg_zero_block.n_keys; i++)
            apply_default(&cfg_zero_block.keys[i], zc);
    } else if (z->type == JSON_BOOL) {
        /* legacy form: true = stage 1, false = stage 0 */
        for (size_t i = 0; i < cfg_zero_block.n_keys; i++)
            apply_default(&cfg_zero_block.keys[i], zc);
        zc->stage = z->u.b ? 1 : 0;
        dsrt_status st = cfg_diag_add(cfg, DSRT_DIAG_NOTE, "zero_optimization",
                                      "legacy boolean form read as {\"stage\": %d}", (int)zc->stage);
        if (st)
            return st;
    } else if (z->type == JSON_OBJECT) {
        dsrt_status st = cfg_read_block(cfg, &cfg_zero_block, "zero_optimization", z, zc);
        if (st)
            return st;
    } else {
        return cfg_reject(cfg, "zero_optimization", z, "must be an object {...} (or the legacy true/false)");
    }

    /* overlap_comm: None means "true for stage 3, false otherwise" */
    const json_value *oc = z && z->type == JSON_OBJECT ? json_object_get(z, "overlap_comm") : NULL;
    if (!oc || oc->type == JSON_NULL || cfg_is_auto(oc))
        zc->overlap_comm = zc->stage == 3;

    const json_value *oo = z && z->type == JSON_OBJECT ? json_object_get(z, "offload_optimizer") : NULL;
    const json_value *op = z && z->type == JSON_OBJECT ? json_object_get(z, "offload_param") : NULL;
    zc->offload_optimizer = oo && oo->type == JSON_OBJECT ? device_enum(offload_device(oo)) : DS_OFFLOAD_NONE;
    zc->offload_param = op && op->type == JSON_OBJECT ? device_enum(offload_device(op)) : DS_OFFLOAD_NONE;
    /* DeepSpeedZeroConfig.offload_ratio_check: partial offload is stage 3's */
    const json_value *ratio = oo && oo->type == JSON_OBJECT ? json_object_get(oo, "ratio") : NULL;
    if (ratio && ratio->type == JSON_NUMBER && ratio->u.num.d < 1.0 && zc->stage != 3)
        return cfg_reject(cfg, "zero_optimization.offload_optimizer.ratio", ratio,
                          "partial offloading (ratio < 1) is only supported for ZeRO stage 3 (DeepSpeed asserts)");
    const json_value *cpu_off = z && z->type == JSON_OBJECT ? json_object_get(z, "cpu_offload") : NULL;
    if (cpu_off && ((cpu_off->type == JSON_BOOL && cpu_off->u.b) ||
                    (cpu_off->type == JSON_STRING && lax_bool(cpu_off->u.str.s) == 1)))
        zc->offload_optimizer = DS_OFFLOAD_CPU;
    const json_value *cpu_par = z && z->type == JSON_OBJECT ? json_object_get(z, "cpu_offload_param") : NULL;
    if (cpu_par && ((cpu_par->type == JSON_BOOL && cpu_par->u.b) ||
                    (cpu_par->type == JSON_STRING && lax_bool(cpu_par->u.str.s) == 1)))
        zc->offload_param = DS_OFFLOAD_CPU;

    const json_value *stage_v = z && z->type == JSON_OBJECT ? json_object_get(z, "stage") : NULL;
    cfg->c.zero_stage = (int32_t)(zc->stage > 2 ? 2 : zc->stage);
    if (zc->stage == 3) {
        dsrt_status st = cfg_degrade(cfg, "zero_optimization.stage", stage_v,
                                     "ZeRO stage 3 runs as stage 2: gradients and optimizer state are partitioned "
                                     "but every rank keeps the full 16-bit parameters, so memory per rank is higher "
                                     "(2 bytes/parameter); the numerics are the same; stage3_* keys have no effect");
        if (st)
            return st;
    }
    if (zc->offload_param != DS_OFFLOAD_NONE) {
        dsrt_status st = cfg_degrade(cfg, "zero_optimization.offload_param", op,
                                     "parameter offload is not implemented: parameters stay in device memory "
                                     "(memory differs, numerics do not)");
        if (st)
            return st;
    }
    if (zc->offload_optimizer != DS_OFFLOAD_NONE) {
        dsrt_status st = cfg_degrade(cfg, "zero_optimization.offload_optimizer", oo ? oo : cpu_off,
                                     "optimizer offload is not implemented yet: optimizer state stays in device "
                                     "memory and the fused (GPU) Adam is used instead of DeepSpeedCPUAdam "
                                     "(memory differs; last-bit rounding of the update may differ)");
        if (st)
            return st;
    }
    const json_value *legacy = z && z->type == JSON_OBJECT ? json_object_get(z, "legacy_stage1") : NULL;
    if (legacy && legacy->type == JSON_BOOL && legacy->u.b)
        return cfg_reject(cfg, "zero_optimization.legacy_stage1", legacy,
                          "the legacy stage 1 implementation was removed from DeepSpeed; set it to false");
    return DSRT_STATUS_OK;
}

dsrt_status cfg_read_precision(struct dsrt_config *cfg, const json_value *root)
{
    const json_value *fp16 = json_object_get(root, "fp16");
    const json_value *bf16 = json_object_get(root, "bf16");
    const json_value *bf16_alias = json_object_get(root, "bfloat16");
    const char *bf16_name = "bf16";
    if (bf16 && bf16_alias)
        return cfg_reject(cfg, "bfloat16", bf16_alias, "give either \"bf16\" or its alias \"bfloat16\", not both");
    if (!bf16 && bf16_alias) {
        bf16 = bf16_alias;
        bf16_name = "bfloat16";
    }
    for (size_t i = 0; i < cfg_fp16_block.n_keys; i++)
        apply_default(&cfg_fp16_block.keys[i], &cfg->c.fp16);
    for (size_t i = 0; i < cfg_bf16_block.n_keys; i++)
        apply_default(&cfg_bf16_block.keys[i], &cfg->c.bf16);
    if (fp16 && fp16->type != JSON_NULL) {
        if (fp16->type != JSON_OBJECT)
            return cfg_reject(cfg, "fp16", fp16, "must be an object such as {\"enabled\": true}");
        dsrt_status st = cfg_read_block(cfg, &cfg_fp16_block, "fp16", fp16, &cfg->c.fp16);
        if (st)
            return st;
        const json_value *ls = json_object_get(fp16, "loss_scale");
        if (ls && ls->type == JSON_NUMBER && !isfinite(ls->u.num.d))
            return cfg_reject(cfg, "fp16.loss_scale", ls, "must be finite (0 for dynamic scaling)");
        if (ls && ls->type == JSON_BOOL)
            return cfg_reject(cfg, "fp16.loss_scale", ls, "must be a number, not a boolean (0 for dynamic scaling)");
        /* checked only in the mode that uses them, as DeepSpeed 0.19.6 does: a
         * static loss_scale may carry unused dynamic-scaling values */
        const ds_fp16_config *f = &cfg->c.fp16;
        if (f->enabled && f->loss_scale == 0) {
            if (f->loss_scale_window <= 0)
                return cfg_reject(cfg, "fp16.loss_scale_window", json_object_get(fp16, "loss_scale_window"),
                                  "must be > 0 when dynamic loss scaling is enabled (loss_scale 0)");
            if (f->min_loss_scale <= 0)
                return cfg_reject(cfg, "fp16.min_loss_scale", json_object_get(fp16, "min_loss_scale"),
                                  "must be > 0 when dynamic loss scaling is enabled (loss_scale 0)");
        }
    }
    if (bf16 && bf16->type != JSON_NULL) {
        if (bf16->type != JSON_OBJECT)
            return cfg_reject(cfg, bf16_name, bf16, "must be an object such as {\"enabled\": true}");
        dsrt_status st = cfg_read_block(cfg, &cfg_bf16_block, bf16_name, bf16, &cfg->c.bf16);
        if (st)
            return st;
    }
    if (cfg->c.fp16.enabled && cfg->c.bf16.enabled)
        return cfg_reject(cfg, "fp16.enabled", json_object_get(fp16, "enabled"),
                          "fp16 and bf16 cannot both be enabled (DeepSpeed: \"bfloat16 and fp16 modes cannot be "
                          "simultaneously enabled\")");
    cfg->c.precision = cfg->c.fp16.enabled ? DSRT_PRECISION_FP16
                       : cfg->c.bf16.enabled ? DSRT_PRECISION_BF16
                                             : DSRT_PRECISION_FP32;
    return DSRT_STATUS_OK;
}

static const cfg_named_block *find_named(const cfg_named_block *t, size_t n, const char *type, bool icase_ds)
{
    for (size_t i = 0; i < n; i++) {
        bool ds = t[i].params != NULL || islower((unsigned char)t[i].type[0]);
        if (icase_ds && ds ? strcasecmp(t[i].type, type) == 0 : strcmp(t[i].type, type) == 0)
            return &t[i];
    }
    return NULL;
}

static void list_types(const cfg_named_block *t, size_t n, dsrt_buf *b)
{
    for (size_t i = 0; i < n; i++)
        dsrt_buf_printf(b, "%s%s", i ? ", " : "", t[i].type);
}

dsrt_status cfg_read_optimizer(struct dsrt_config *cfg, const json_value *opt)
{
    ds_optimizer_config *o = &cfg->c.optimizer;
    o->kind = DS_OPT_NONE;
    if (!opt || opt->type == JSON_NULL)
        return DSRT_STATUS_OK;
    if (opt->type != JSON_OBJECT)
        return cfg_reject(cfg, "optimizer", opt, "must be an object {\"type\": ..., \"params\": {...}}");
    const json_value *type = NULL, *params = NULL;
    for (size_t i = 0; i < opt->u.obj.count; i++) {
        const json_member *m = &opt->u.obj.members[i];
        if (strcmp(m->key, "type") == 0)
            type = m->value;
        else if (strcmp(m->key, "params") == 0)
            params = m->value;
        else if (strcmp(m->key, "legacy_fusion") != 0) {
            char kp[PATH_MAX_LEN];
            join_path(kp, "optimizer", m->key);
            return cfg_reject_key(cfg, kp, m->line,
                                  "unknown key; an optimizer block has \"type\", \"params\" and \"legacy_fusion\"");
        }
    }
    if (!type)
        return cfg_reject(cfg, "optimizer.type", NULL, "missing; name the optimizer, e.g. \"AdamW\"");
    if (type->type != JSON_STRING)
        return cfg_reject(cfg, "optimizer.type", type, "must be a string such as \"AdamW\"");
    const cfg_named_block *nb = find_named(cfg_optimizers, cfg_n_optimizers, type->u.str.s, true);
    if (!nb) {
        dsrt_buf b = {0};
        list_types(cfg_optimizers, cfg_n_optimizers, &b);
        char *t = dsrt_buf_take(&b);
        dsrt_status st = cfg_reject(cfg, "optimizer.type", type,
                                    "unknown optimizer; DeepSpeed's (any case) or torch.optim's (exact case): %s",
                                    t ? t : "?");
        free(t);
        return st;
    }
    o->kind = (ds_optimizer_kind)nb->kind;
    o->type = type->u.str.s;
    if (params && params->type != JSON_OBJECT && params->type != JSON_NULL)
        return cfg_reject(cfg, "optimizer.params", params, "must be an object {...}");
    const json_value *mgn = params && params->type == JSON_OBJECT ? json_object_get(params, "max_grad_norm") : NULL;
    if (mgn)
        return cfg_reject(cfg, "optimizer.params.max_grad_norm", mgn,
                          "is not an optimizer parameter in DeepSpeed; use the top-level \"gradient_clipping\"");
    if (nb->params) {
        static const json_value empty = {.type = JSON_OBJECT};
        dsrt_status st = cfg_read_block(cfg, nb->params, "optimizer.params",
                                    params && params->type == JSON_OBJECT ? params : &empty, o);
        if (st)
            return st;
        if (o->kind == DS_OPT_ADAM) {
            const json_value *pv = params && params->type == JSON_OBJECT ? json_object_get(params, "betas") : NULL;
            for (int i = 0; i < 2; i++)
                if (!(o->betas[i] >= 0.0 && o->betas[i] < 1.0))
                    return cfg_reject(cfg, i ? "optimizer.params.betas[1]" : "optimizer.params.betas[0]", pv,
                                      "each beta must be in [0, 1)");
            if (o->amsgrad && !o->torch_adam)
                return cfg_reject(cfg, "optimizer.params.amsgrad", json_object_get(params, "amsgrad"),
                                  "FusedAdam does not support amsgrad (DeepSpeed raises); set it to false");
            /* spec 6.1: "adamw" or adam_w_mode (default true) means decoupled decay */
            o->adamw = strcasecmp(o->type, "adamw") == 0 || o->adam_w_mode;
            if (o->torch_adam) {
                st = cfg_diag_add(cfg, DSRT_DIAG_NOTE, "optimizer.params.torch_adam",
                                  "torch.optim.%s requested; dsrt's fused Adam computes the same update "
                                  "(last-bit rounding may differ)",
                                  o->adamw ? "AdamW" : "Adam");
                if (st)
                    return st;
            }
        }
    } else {
        /* refused here, not accepted and then refused when training starts */
        return cfg_reject(cfg, "optimizer.type", type,
                          "%s: dsrt implements Adam and AdamW only (DeepSpeed itself runs this one); use "
                          "\"AdamW\" or \"Adam\", or leave the optimizer block out for the Hugging Face "
                          "Trainer's AdamW",
                          o->type);
    }
    return DSRT_STATUS_OK;
}

dsrt_status cfg_read_scheduler(struct dsrt_config *cfg, const json_value *sch)
{
    ds_scheduler_config *s = &cfg->c.scheduler;
    s->kind = DS_SCHED_NONE;
    if (!sch || sch->type == JSON_NULL)
        return DSRT_STATUS_OK;
    if (sch->type != JSON_OBJECT)
        return cfg_reject(cfg, "scheduler", sch, "must be an object {\"type\": ..., \"params\": {...}}");
    const json_value *type = json_object_get(sch, "type");
    const json_value *params = json_object_get(sch, "params");
    for (size_t i = 0; i < sch->u.obj.count; i++) {
        const json_member *m = &sch->u.obj.members[i];
        if (strcmp(m->key, "type") && strcmp(m->key, "params")) {
            char kp[PATH_MAX_LEN];
            join_path(kp, "scheduler", m->key);
            return cfg_reject_key(cfg, kp, m->line, "unknown key; a scheduler block has \"type\" and \"params\"");
        }
    }
    if (!type)
        return cfg_reject(cfg, "scheduler.type", NULL, "missing; name the schedule, e.g. \"WarmupDecayLR\"");
    if (type->type != JSON_STRING)
        return cfg_reject(cfg, "scheduler.type", type, "must be a string such as \"WarmupDecayLR\"");
    const cfg_named_block *nb = find_named(cfg_schedulers, cfg_n_schedulers, type->u.str.s, false);
    if (!nb) {
        const cfg_named_block *near = find_named(cfg_schedulers, cfg_n_schedulers, type->u.str.s, true);
        for (size_t i = 0; !near && i < cfg_n_schedulers; i++)
            if (strcasecmp(cfg_schedulers[i].type, type->u.str.s) == 0)
                near = &cfg_schedulers[i];
        if (near)
            return cfg_reject(cfg, "scheduler.type", type,
                              "unknown schedule; names are case-sensitive: did you mean \"%s\"?", near->type);
        dsrt_buf b = {0};
        list_types(cfg_schedulers, cfg_n_schedulers, &b);
        char *t = dsrt_buf_take(&b);
        dsrt_status st = cfg_reject(cfg, "scheduler.type", type, "unknown schedule; known: %s", t ? t : "?");
        free(t);
        return st;
    }
    s->kind = (ds_scheduler_kind)nb->kind;
    s->type = type->u.str.s;
    if (params && params->type != JSON_OBJECT && params->type != JSON_NULL)
        return cfg_reject(cfg, "scheduler.params", params, "must be an object {...}");
    if (!nb->params) /* refused here, not accepted and then refused when training starts */
        return cfg_reject(cfg, "scheduler.type", type,
                          "torch.optim.lr_scheduler.%s: dsrt implements DeepSpeed's five schedules (WarmupLR, "
                          "WarmupDecayLR, WarmupCosineLR, OneCycle, LRRangeTest) and, without a scheduler "
                          "block, the Hugging Face Trainer's (lr_scheduler_type); DeepSpeed itself runs this one",
                          s->type);
    static const json_value empty = {.type = JSON_OBJECT};
    const json_value *p = params && params->type == JSON_OBJECT ? params : &empty;
    s->warmup_max_lr = NAN;
    s->cycle_second_step_size = -1;
    s->cycle_second_stair_count = -1;
    dsrt_status st = cfg_read_block(cfg, nb->params, "scheduler.params", p, s);
    if (st)
        return st;
    for (size_t i = 0; i < nb->params->n_keys; i++) {
        const cfg_key *k = &nb->params->keys[i];
        const json_value *v = json_object_get(p, k->name);
        if ((k->flags & KF_REQUIRED) && (!v || v->type == JSON_NULL)) {
            char kp[PATH_MAX_LEN];
            join_path(kp, "scheduler.params", k->name);
            return cfg_reject(cfg, kp, NULL, "missing; %s requires it", s->type);
        }
    }
    const json_value *wt = json_object_get(p, "warmup_type");
    s->warmup_log = true;
    if (wt && wt->type == JSON_STRING) {
        if (strcmp(wt->u.str.s, "linear") == 0)
            s->warmup_log = false;
        else if (strcmp(wt->u.str.s, "log") != 0) {
            st = cfg_diag_add(cfg, DSRT_DIAG_WARNING, "scheduler.params.warmup_type",
                              "\"%s\" is neither \"log\" nor \"linear\"; DeepSpeed warns and uses \"log\"",
                              wt->u.str.s);
            if (st)
                return st;
        }
    }
    if ((s->kind == DS_SCHED_WARMUP_DECAY_LR || s->kind == DS_SCHED_WARMUP_COSINE_LR) &&
        s->total_num_steps < s->warmup_num_steps) {
        st = cfg_diag_add(cfg, DSRT_DIAG_WARNING, "scheduler.params.total_num_steps",
                          "%lld is less than warmup_num_steps %lld (DeepSpeed only warns)",
                          (long long)s->total_num_steps, (long long)s->warmup_num_steps);
        if (st)
            return st;
    }
    if (s->kind == DS_SCHED_WARMUP_LR && isnan(s->warmup_max_lr) && cfg->c.optimizer.kind == DS_OPT_ADAM)
        s->warmup_max_lr = cfg->c.optimizer.lr; /* >= 0.17.2: None means the optimizer's lr */
    if (s->kind == DS_SCHED_ONE_CYCLE) {
        if (s->cycle_second_step_size < 0)
            s->cycle_second_step_size = s->cycle_first_step_size;
        if (s->cycle_second_stair_count < 0)
            s->cycle_second_stair_count = s->cycle_first_stair_count;
    }
    return DSRT_STATUS_OK;
}
