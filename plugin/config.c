/* The ds_config reader: load (JSON/hjson/base64), fill "auto", validate every
 * block against the key tables, resolve batch sizes, apply the cross-key
 * rules, and print the result in DeepSpeed's schema. See config.h for the
 * passes and shared/spec/deepspeed-semantics.md sections 1-3 and 6.1 for the
 * behaviour matched. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "config.h"
#include "jsonw.h"

/* Files larger than this are refused before reading: no real config comes
 * near it, and it bounds the memory a mistaken path (a dataset) can take. */
#define CONFIG_MAX_BYTES (64u << 20)

#define PATH_MAX_LEN 256

/* ---------------------------------------------------------------- messages */

void cfg_value_text(const json_value *v, char *out, size_t n)
{
    if (!v) {
        snprintf(out, n, "nothing");
        return;
    }
    switch (v->type) {
    case JSON_NULL: snprintf(out, n, "null"); break;
    case JSON_BOOL: snprintf(out, n, "%s", v->u.b ? "true" : "false"); break;
    case JSON_NUMBER: snprintf(out, n, "%s", v->u.num.text); break;
    case JSON_STRING: {
        /* quote, and keep messages one line and short */
        size_t j = 0;
        if (n < 8) {
            snprintf(out, n, "\"...\"");
            break;
        }
        out[j++] = '"';
        for (const char *p = v->u.str.s; *p && j < n - 6; p++)
            out[j++] = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
        if (strlen(v->u.str.s) > n - 8)
            memcpy(out + j, "...", 3), j += 3;
        out[j++] = '"';
        out[j] = '\0';
        break;
    }
    case JSON_ARRAY: snprintf(out, n, v->u.arr.count ? "[...] (a list of %zu)" : "[]", v->u.arr.count); break;
    case JSON_OBJECT: snprintf(out, n, v->u.obj.count ? "{...}" : "{}"); break;
    }
}

static dsrt_status reject_v(const struct dsrt_config *cfg, const char *key, const json_value *at, int line,
                            const char *fmt, va_list ap)
{
    char what[512], got[128], where[PATH_MAX_LEN + 32] = "";
    vsnprintf(what, sizeof what, fmt, ap);
    if (at && at->line > 0)
        line = at->line;
    if (line > 0)
        snprintf(where, sizeof where, " [%s:%d]", cfg->source, line);
    else if (cfg->source)
        snprintf(where, sizeof where, " [%s]", cfg->source);
    if (at) {
        cfg_value_text(at, got, sizeof got);
        return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG, "error: %s: %s (got %s)%s", key && *key ? key : "(top level)",
                              what, got, where);
    }
    return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG, "error: %s: %s%s", key && *key ? key : "(top level)", what,
                          where);
}

dsrt_status cfg_reject(const struct dsrt_config *cfg, const char *key, const json_value *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dsrt_status st = reject_v(cfg, key, at, 0, fmt, ap);
    va_end(ap);
    return st;
}

/* A rejection about a key itself (unknown, misplaced): located at the key. */
static dsrt_status cfg_reject_key(const struct dsrt_config *cfg, const char *key, int line, const char *fmt, ...)
    DSRT_PRINTF(4, 5);
static dsrt_status cfg_reject_key(const struct dsrt_config *cfg, const char *key, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dsrt_status st = reject_v(cfg, key, NULL, line, fmt, ap);
    va_end(ap);
    return st;
}

dsrt_status cfg_diag_add(struct dsrt_config *cfg, dsrt_diagnostic_kind kind, const char *key, const char *fmt, ...)
{
    if (cfg->n_diags == cfg->cap_diags) {
        size_t cap = cfg->cap_diags ? 2 * cfg->cap_diags : 8;
        cfg_diag *d = realloc(cfg->diags, cap * sizeof *d);
        if (!d)
            return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "out of memory recording a config diagnostic");
        cfg->diags = d;
        cfg->cap_diags = cap;
    }
    dsrt_buf b = {0};
    static const char *const prefix[] = {"warning", "auto", "note"};
    dsrt_buf_printf(&b, "%s: %s: ", prefix[kind], key && *key ? key : cfg->source);
    va_list ap;
    va_start(ap, fmt);
    dsrt_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    char *msg = dsrt_buf_take(&b);
    char *k = dsrt_strdup(key ? key : "");
    if (!msg || !k) {
        free(msg);
        free(k);
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "out of memory recording a config diagnostic");
    }
    cfg->diags[cfg->n_diags++] = (cfg_diag){kind, k, msg};
    dsrt_log(kind == DSRT_DIAG_WARNING ? DSRT_LOG_WARNING : DSRT_LOG_INFO, "%s", msg);
    return DSRT_STATUS_OK;
}

/* A behaviour dsrt does not have: a warning, or an error with "dsrt": {"strict": true}. */
static dsrt_status cfg_degrade(struct dsrt_config *cfg, const char *key, const json_value *at, const char *fmt, ...)
    DSRT_PRINTF(4, 5);
static dsrt_status cfg_degrade(struct dsrt_config *cfg, const char *key, const json_value *at, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (cfg->c.strict)
        return cfg_reject(cfg, key, at, "%s; refused because \"dsrt\": {\"strict\": true}", what);
    return cfg_diag_add(cfg, DSRT_DIAG_WARNING, key, "%s", what);
}

bool cfg_is_auto(const json_value *v) { return v && v->type == JSON_STRING && strcmp(v->u.str.s, "auto") == 0; }

/* ---------------------------------------------------------------- replacing "auto" in place */

static void *cfg_own(struct dsrt_config *cfg, size_t size)
{
    void **o = realloc(cfg->owned, (cfg->n_owned + 1) * sizeof *o);
    if (!o)
        return NULL;
    cfg->owned = o;
    void *p = calloc(1, size);
    if (p)
        cfg->owned[cfg->n_owned++] = p;
    return p;
}

static dsrt_status set_number(struct dsrt_config *cfg, json_value *at, double d)
{
    char *text = cfg_own(cfg, 32);
    if (!text)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "out of memory filling \"auto\"");
    at->type = JSON_NUMBER;
    at->u.num.d = d;
    if (d == floor(d) && fabs(d) < 9.2e18) {
        at->u.num.kind = JSON_NUM_INT;
        at->u.num.i = (int64_t)d;
        snprintf(text, 32, "%lld", (long long)at->u.num.i);
    } else {
        at->u.num.kind = isfinite(d) ? JSON_NUM_FRACTIONAL : JSON_NUM_NONFINITE;
        dsrt_format_double(text, d);
    }
    at->u.num.text = text;
    return DSRT_STATUS_OK;
}

dsrt_status cfg_replace_number(struct dsrt_config *cfg, json_value *at, double d) { return set_number(cfg, at, d); }

dsrt_status cfg_replace_bool(struct dsrt_config *cfg, json_value *at, bool b)
{
    (void)cfg;
    at->type = JSON_BOOL;
    at->u.b = b;
    return DSRT_STATUS_OK;
}

dsrt_status cfg_replace_pair(struct dsrt_config *cfg, json_value *at, double a, double b)
{
    json_value *items = cfg_own(cfg, 2 * sizeof *items);
    json_value **ptrs = cfg_own(cfg, 2 * sizeof *ptrs);
    if (!items || !ptrs)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "out of memory filling \"auto\"");
    for (int i = 0; i < 2; i++) {
        items[i].line = at->line;
        items[i].col = at->col;
        dsrt_status st = set_number(cfg, &items[i], i ? b : a);
        if (st)
            return st;
        ptrs[i] = &items[i];
    }
    at->type = JSON_ARRAY;
    at->u.arr.items = ptrs;
    at->u.arr.count = 2;
    return DSRT_STATUS_OK;
}

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

static dsrt_status read_int(const struct dsrt_config *cfg, const char *path, const cfg_key *k, bool lax,
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
        dsrt_status st = read_int(cfg, path, k, lax, v, &i);
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

static const char *suggest(const cfg_block *blk, const char *key)
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
static dsrt_status read_block(struct dsrt_config *cfg, const cfg_block *blk, const char *path, const json_value *obj,
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
            const char *s = suggest(blk, m->key);
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
            st = read_block(cfg, k->sub, kp, m->value, NULL);
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

static dsrt_status read_zero(struct dsrt_config *cfg, const json_value *z)
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
        dsrt_status st = read_block(cfg, &cfg_zero_block, "zero_optimization", z, zc);
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

static dsrt_status read_precision(struct dsrt_config *cfg, const json_value *root)
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
        dsrt_status st = read_block(cfg, &cfg_fp16_block, "fp16", fp16, &cfg->c.fp16);
        if (st)
            return st;
        const json_value *ls = json_object_get(fp16, "loss_scale");
        if (ls && ls->type == JSON_NUMBER && !isfinite(ls->u.num.d))
            return cfg_reject(cfg, "fp16.loss_scale", ls, "must be finite (0 for dynamic scaling)");
        if (ls && ls->type == JSON_BOOL)
            return cfg_reject(cfg, "fp16.loss_scale", ls, "must be a number, not a boolean (0 for dynamic scaling)");
    }
    if (bf16 && bf16->type != JSON_NULL) {
        if (bf16->type != JSON_OBJECT)
            return cfg_reject(cfg, bf16_name, bf16, "must be an object such as {\"enabled\": true}");
        dsrt_status st = read_block(cfg, &cfg_bf16_block, bf16_name, bf16, &cfg->c.bf16);
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

static dsrt_status read_optimizer(struct dsrt_config *cfg, const json_value *opt)
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
        dsrt_status st = read_block(cfg, nb->params, "optimizer.params",
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
        dsrt_status st = cfg_diag_add(cfg, DSRT_DIAG_WARNING, "optimizer.type",
                                      "%s is accepted as DeepSpeed would, but dsrt implements only Adam/AdamW: "
                                      "training with this config will be refused; its params are not checked",
                                      o->type);
        if (st)
            return st;
    }
    return DSRT_STATUS_OK;
}

static dsrt_status read_scheduler(struct dsrt_config *cfg, const json_value *sch)
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
    if (!nb->params)
        return cfg_diag_add(cfg, DSRT_DIAG_WARNING, "scheduler.type",
                            "torch.optim.lr_scheduler.%s is accepted as DeepSpeed would, but dsrt implements only "
                            "DeepSpeed's five schedules: training with this config will be refused; its params "
                            "are not checked",
                            s->type);
    static const json_value empty = {.type = JSON_OBJECT};
    const json_value *p = params && params->type == JSON_OBJECT ? params : &empty;
    s->warmup_max_lr = NAN;
    s->cycle_second_step_size = -1;
    s->cycle_second_stair_count = -1;
    dsrt_status st = read_block(cfg, nb->params, "scheduler.params", p, s);
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

/* ---------------------------------------------------------------- batch sizes (spec section 2) */

static dsrt_status batch_key(struct dsrt_config *cfg, const json_value *root, const char *key, int64_t *out,
                             bool *given)
{
    const json_value *v = json_object_get(root, key);
    *given = false;
    if (!v || v->type == JSON_NULL)
        return DSRT_STATUS_OK;
    if (cfg_is_auto(v))
        return cfg_reject(cfg, key, v, "\"auto\" was not resolved"); /* config_auto.c fills these */
    static const cfg_key k = {"", CT_INT, CFG_NO_FIELD, NULL, 0, 0, 0, NULL, NULL, NULL, NULL};
    dsrt_status st = read_int(cfg, key, &k, false, v, out);
    *given = st == DSRT_STATUS_OK;
    return st;
}

static dsrt_status resolve_batch(struct dsrt_config *cfg, const json_value *root)
{
    int64_t tb = 0, mb = 0, gas = 0, w = cfg->c.world_size;
    bool has_tb, has_mb, has_gas;
    dsrt_status st;
    if ((st = batch_key(cfg, root, "train_batch_size", &tb, &has_tb)) ||
        (st = batch_key(cfg, root, "train_micro_batch_size_per_gpu", &mb, &has_mb)) ||
        (st = batch_key(cfg, root, "gradient_accumulation_steps", &gas, &has_gas)))
        return st;
    const json_value *tbv = json_object_get(root, "train_batch_size");
    const json_value *mbv = json_object_get(root, "train_micro_batch_size_per_gpu");
    const json_value *gav = json_object_get(root, "gradient_accumulation_steps");
    /* Python's // floors toward -inf; mirror it so negative inputs fail the
     * same assertions in the same order. */
#define FLOORDIV(a, b) ((b) == 0 ? 0 : (((a) / (b)) - ((((a) % (b)) != 0) && (((a) < 0) != ((b) < 0)))))
    if (has_tb && has_mb && has_gas) {
    } else if (has_tb && has_mb) {
        if (mb == 0)
            return cfg_reject(cfg, "train_micro_batch_size_per_gpu", mbv, "must be > 0");
        gas = FLOORDIV(FLOORDIV(tb, mb), w);
    } else if (has_tb && has_gas) {
        if (gas == 0)
            return cfg_reject(cfg, "gradient_accumulation_steps", gav, "must be > 0");
        mb = FLOORDIV(FLOORDIV(tb, w), gas);
    } else if (has_mb && has_gas) {
        if (__builtin_mul_overflow(mb, gas, &tb) || __builtin_mul_overflow(tb, w, &tb))
            return cfg_reject(cfg, "train_micro_batch_size_per_gpu", mbv,
                              "x gradient_accumulation_steps x world size overflows a 64-bit integer");
    } else if (has_tb) {
        gas = 1;
        mb = FLOORDIV(tb, w);
    } else if (has_mb) {
        gas = 1;
        if (__builtin_mul_overflow(mb, w, &tb))
            return cfg_reject(cfg, "train_micro_batch_size_per_gpu", mbv, "x world size overflows a 64-bit integer");
    } else {
        return cfg_reject(cfg, "train_batch_size", NULL,
                          "missing: give train_batch_size or train_micro_batch_size_per_gpu (or both); "
                          "DeepSpeed: \"Either train_batch_size or train_micro_batch_size_per_gpu needs to be "
                          "provided\"");
    }
#undef FLOORDIV
    char ws[64];
    snprintf(ws, sizeof ws, " at world size %lld", (long long)w);
    if (tb <= 0)
        return cfg_reject(cfg, "train_batch_size", has_tb ? tbv : NULL, "must be > 0%s%s",
                          has_tb ? "" : " (derived as micro batch x accumulation x world size)", has_tb ? "" : ws);
    if (mb <= 0) {
        if (has_mb)
            return cfg_reject(cfg, "train_micro_batch_size_per_gpu", mbv, "must be > 0");
        return cfg_reject(cfg, "train_micro_batch_size_per_gpu", NULL,
                          "derived as %s // world size%s = %lld, must be > 0: train_batch_size %lld is too small "
                          "for %lld ranks",
                          has_gas ? "train_batch_size // gradient_accumulation_steps" : "train_batch_size",
                          has_gas ? "" : "", (long long)mb, (long long)tb, (long long)w);
    }
    if (gas <= 0) {
        if (has_gas)
            return cfg_reject(cfg, "gradient_accumulation_steps", gav, "must be > 0");
        return cfg_reject(cfg, "gradient_accumulation_steps", NULL,
                          "derived as train_batch_size // micro batch // world size = %lld // %lld // %lld = %lld, "
                          "must be > 0: train_batch_size is smaller than micro batch x world size",
                          (long long)tb, (long long)mb, (long long)w, (long long)gas);
    }
    int64_t product;
    if (__builtin_mul_overflow(mb, gas, &product) || __builtin_mul_overflow(product, w, &product) || tb != product)
        return cfg_reject(cfg, "train_batch_size", has_tb ? tbv : NULL,
                          "must equal train_micro_batch_size_per_gpu x gradient_accumulation_steps x world size, "
                          "but %lld != %lld x %lld x %lld%s",
                          (long long)tb, (long long)mb, (long long)gas, (long long)w,
                          (has_tb && !(has_mb && has_gas)) ? " (it does not divide evenly)" : "");
    cfg->c.train_batch_size = tb;
    cfg->c.train_micro_batch_size_per_gpu = mb;
    cfg->c.gradient_accumulation_steps = gas;
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- the top level */

static dsrt_status read_top(struct dsrt_config *cfg, const json_value *root)
{
    /* unknown top-level keys: DeepSpeed ignores them silently; we say so once */
    dsrt_buf unknown = {0};
    size_t n_unknown = 0;
    for (size_t i = 0; i < root->u.obj.count; i++) {
        const json_member *m = &root->u.obj.members[i];
        if (cfg_block_find(&cfg_top_block, m->key))
            continue;
        const char *s = suggest(&cfg_top_block, m->key);
        dsrt_buf_printf(&unknown, "%s\"%s\" (line %d%s%s%s)", n_unknown ? ", " : "", m->key, m->line,
                        s ? ", did you mean \"" : "", s ? s : "", s ? "\"?" : "");
        n_unknown++;
    }
    if (n_unknown) {
        char *list = dsrt_buf_take(&unknown);
        dsrt_status st = cfg_diag_add(cfg, DSRT_DIAG_WARNING, "",
                                      "%zu unknown top-level key%s ignored, as DeepSpeed ignores them: %s", n_unknown,
                                      n_unknown > 1 ? "s" : "", list ? list : "?");
        free(list);
        if (st)
            return st;
    }
    dsrt_status st = read_block(cfg, &cfg_top_block, "", root, &cfg->c);
    if (st)
        return st;
    /* fields the table stores as text */
    const json_value *op = json_object_get(root, "gradient_allreduce_op");
    cfg->c.gradient_allreduce_sum = op && op->type == JSON_STRING && strcmp(op->u.str.s, "sum") == 0;
    const json_value *cd = json_object_get(root, "communication_data_type");
    cfg->c.communication_data_type = DS_COMM_DEFAULT;
    if (cd && cd->type == JSON_STRING)
        cfg->c.communication_data_type = strcmp(cd->u.str.s, "fp16") == 0   ? DS_COMM_FP16
                                         : strcmp(cd->u.str.s, "bf16") == 0 ? DS_COMM_BF16
                                                                            : DS_COMM_FP32;
    const json_value *ds = json_object_get(root, "dsrt");
    if (ds && ds->type != JSON_NULL) {
        if (ds->type != JSON_OBJECT)
            return cfg_reject(cfg, "dsrt", ds, "must be an object such as {\"strict\": true}");
        st = read_block(cfg, &cfg_dsrt_block, "dsrt", ds, &cfg->c);
        if (st)
            return st;
    }
    return DSRT_STATUS_OK;
}

/* Cross-key rules DeepSpeed enforces at engine construction. */
static dsrt_status check_rules(struct dsrt_config *cfg, const json_value *root)
{
    const ds_config *c = &cfg->c;
    const json_value *z = json_object_get(root, "zero_optimization");
    if (c->zero.stage == 2 && c->zero.reduce_scatter && (c->prescale_gradients || c->gradient_predivide_factor != 1.0))
        return cfg_reject(cfg, c->prescale_gradients ? "prescale_gradients" : "gradient_predivide_factor",
                          json_object_get(root, c->prescale_gradients ? "prescale_gradients"
                                                                      : "gradient_predivide_factor"),
                          "ZeRO stage 2 with reduce_scatter does its own averaging; DeepSpeed asserts "
                          "prescale_gradients is false and gradient_predivide_factor is 1.0 here");
    if (c->zero.allgather_bucket_size % 2)
        return cfg_reject(cfg, "zero_optimization.allgather_bucket_size", json_object_get(z, "allgather_bucket_size"),
                          "must be even (DeepSpeed asserts it)");
    const json_value *amp = json_object_get(root, "amp");
    const json_value *amp_on = amp && amp->type == JSON_OBJECT ? json_object_get(amp, "enabled") : NULL;
    if (amp_on && amp_on->type == JSON_BOOL && amp_on->u.b) {
        if (c->zero.stage > 0)
            return cfg_reject(cfg, "amp.enabled", amp_on, "Apex AMP cannot be combined with ZeRO (DeepSpeed "
                                                          "asserts); use \"fp16\" or \"bf16\" instead");
        if (c->precision != DSRT_PRECISION_FP32)
            return cfg_reject(cfg, "amp.enabled", amp_on, "Apex AMP cannot be combined with fp16/bf16 mode");
        dsrt_status st = cfg_degrade(cfg, "amp.enabled", amp_on,
                                     "Apex AMP is not available in dsrt; training runs in fp32");
        if (st)
            return st;
    }
    const json_value *el = json_object_get(root, "elasticity");
    const json_value *el_on = el && el->type == JSON_OBJECT ? json_object_get(el, "enabled") : NULL;
    if (el_on && el_on->type == JSON_BOOL && el_on->u.b) {
        dsrt_status st = cfg_degrade(cfg, "elasticity.enabled", el_on,
                                     "elastic training is not implemented: the batch sizes above are used as "
                                     "written instead of the elastic ones");
        if (st)
            return st;
    }
    /* ZeRO accepts only optimizers it has tested unless told otherwise */
    if (c->zero.stage > 0 && c->optimizer.kind != DS_OPT_NONE && !c->zero_allow_untested_optimizer) {
        bool tested = c->optimizer.kind == DS_OPT_ADAM || c->optimizer.kind == DS_OPT_ADAGRAD ||
                      c->optimizer.kind == DS_OPT_LION || c->optimizer.kind == DS_OPT_LAMB;
        if (!tested)
            return cfg_reject(cfg, "optimizer.type", json_object_get(json_object_get(root, "optimizer"), "type"),
                              "ZeRO runs only optimizers DeepSpeed has tested with it (Adam, AdamW, Adagrad, Lion, "
                              "Lamb); add \"zero_allow_untested_optimizer\": true to use this one");
    }
    if (c->optimizer.kind == DS_OPT_ONEBIT && c->zero.stage > 0)
        return cfg_reject(cfg, "optimizer.type", json_object_get(json_object_get(root, "optimizer"), "type"),
                          "1-bit optimizers cannot be combined with ZeRO in DeepSpeed");
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- loading */

static bool is_base64url(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isspace(ch))
            continue;
        if (!(isalnum(ch) || ch == '-' || ch == '_' || ch == '+' || ch == '/' || ch == '='))
            return false;
        k++;
    }
    return k >= 4;
}

static char *base64_decode(const char *s, size_t n, size_t *out_len)
{
    char *out = malloc(n / 4 * 3 + 4);
    if (!out)
        return NULL;
    unsigned acc = 0;
    int bits = 0;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i], v;
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '-' || ch == '+')
            v = 62;
        else if (ch == '_' || ch == '/')
            v = 63;
        else
            continue;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[j++] = (char)((acc >> bits) & 0xff);
        }
    }
    *out_len = j;
    return out;
}

static dsrt_status parse_text(struct dsrt_config *cfg, const char *text, size_t len)
{
    json_error err;
    cfg->doc = json_parse(text, len, &err);
    if (!cfg->doc) {
        if (strcmp(err.msg, "out of memory") == 0)
            return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "error: %s: out of memory parsing", cfg->source);
        return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG, "error: %s: invalid JSON/hjson: %s [%s:%d:%d]",
                              err.path[0] ? err.path : "(top level)", err.msg, cfg->source, err.line, err.col);
    }
    return DSRT_STATUS_OK;
}

dsrt_status config_create(const dsrt_config_create_args *a, struct dsrt_config **out)
{
    *out = NULL;
    if ((a->path != NULL) == (a->text != NULL))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "config_create: give exactly one of path and text");
    if (a->world_size < 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "config_create: world_size %d must be >= 1 (0 means 1)",
                              (int)a->world_size);
    hf_values hf;
    dsrt_status st = hf_values_parse(a->hf_values, a->hf_value_count, &hf);
    if (st)
        return st;

    struct dsrt_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "config_create: out of memory");
    cfg->c.world_size = a->world_size ? a->world_size : 1;
    cfg->source = dsrt_strdup(a->path ? a->path : "<text>");
    if (!cfg->source) {
        config_destroy(cfg);
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "config_create: out of memory");
    }

    char *text = NULL;
    size_t len = 0;
    if (a->path) {
        st = dsrt_read_text_file(a->path, "config file", CONFIG_MAX_BYTES, &text, &len);
        if (!st)
            st = parse_text(cfg, text, len);
        free(text);
    } else {
        const char *t = a->text;
        size_t n = a->text_length;
        /* DeepSpeed also takes a urlsafe-base64 JSON string in place of a path */
        if (is_base64url(t, n)) {
            char *dec = base64_decode(t, n, &len);
            if (!dec)
                st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "config_create: out of memory");
            else {
                free(cfg->source);
                cfg->source = dsrt_strdup("<base64 text>");
                st = cfg->source ? parse_text(cfg, dec, len)
                                 : dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "config_create: out of memory");
                free(dec);
            }
        } else {
            st = parse_text(cfg, t, n);
        }
    }
    const json_value *root = st ? NULL : json_doc_root(cfg->doc);
    if (!st && root->type != JSON_OBJECT)
        st = cfg_reject(cfg, "(top level)", root, "a ds_config must be a JSON object {...}");
    if (!st)
        st = config_fill_auto(cfg, &hf, cfg->c.world_size);
    if (!st) {
        /* "dsrt": {"strict": true} must be known before the warnings it turns into errors */
        const json_value *ds = json_object_get(root, "dsrt");
        const json_value *strict = ds && ds->type == JSON_OBJECT ? json_object_get(ds, "strict") : NULL;
        cfg->c.strict = strict && strict->type == JSON_BOOL && strict->u.b;
    }
    if (!st)
        st = read_top(cfg, root);
    if (!st)
        st = read_precision(cfg, root);
    if (!st)
        st = read_zero(cfg, json_object_get(root, "zero_optimization"));
    if (!st)
        st = read_optimizer(cfg, json_object_get(root, "optimizer"));
    if (!st)
        st = read_scheduler(cfg, json_object_get(root, "scheduler"));
    if (!st)
        st = resolve_batch(cfg, root);
    if (!st)
        st = check_rules(cfg, root);
    if (st) {
        config_destroy(cfg);
        return st;
    }
    *out = cfg;
    return DSRT_STATUS_OK;
}

void config_destroy(struct dsrt_config *cfg)
{
    if (!cfg)
        return;
    json_doc_free(cfg->doc);
    for (size_t i = 0; i < cfg->n_diags; i++) {
        free(cfg->diags[i].key);
        free(cfg->diags[i].message);
    }
    free(cfg->diags);
    for (size_t i = 0; i < cfg->n_json_texts; i++)
        free(cfg->json_texts[i]);
    free(cfg->json_texts);
    for (size_t i = 0; i < cfg->n_owned; i++)
        free(cfg->owned[i]);
    free(cfg->owned);
    free(cfg->source);
    free(cfg);
}

/* ---------------------------------------------------------------- printing */

/* Emits one block from its table: stored fields from `base`, everything else
 * as written (or the default). Stage-3-only and alias keys appear only when
 * the file has them. */
static void emit_block(jw *w, const cfg_block *blk, const json_value *given, const void *base)
{
    jw_object_begin(w);
    for (size_t i = 0; i < blk->n_keys; i++) {
        const cfg_key *k = &blk->keys[i];
        const json_value *v = given && given->type == JSON_OBJECT ? json_object_get(given, k->name) : NULL;
        bool auto_v = cfg_is_auto(v);
        if (auto_v)
            v = NULL; /* dropped, as DeepSpeed does inside its models */
        if ((k->flags & (KF_STAGE3 | KF_ALIAS)) && !v)
            continue;
        if (k->field != CFG_NO_FIELD && base && !(k->flags & KF_ALIAS)) {
            const void *src = (const char *)base + k->field;
            /* None survives resolution only as a sentinel: NaN or -1 */
            bool is_null = (k->type == CT_FLOAT && isnan(*(const double *)src)) ||
                           (k->type == CT_INT && !k->dflt && *(const int64_t *)src == -1);
            jw_key(w, k->name);
            if (is_null && (k->flags & KF_NULLABLE))
                jw_null(w);
            else
                switch (k->type) {
                case CT_BOOL: jw_bool(w, *(const bool *)src); break;
                case CT_INT: jw_int(w, *(const int64_t *)src); break;
                case CT_FLOAT: jw_double(w, *(const double *)src); break;
                case CT_PAIR:
                    jw_array_begin(w);
                    jw_double(w, ((const double *)src)[0]);
                    jw_double(w, ((const double *)src)[1]);
                    jw_array_end(w);
                    break;
                case CT_STRING:
                case CT_OBJECT:
                case CT_ANY:
                    if (v)
                        jw_value(w, v);
                    else
                        jw_raw(w, k->dflt ? k->dflt : "null");
                    break;
                }
            continue;
        }
        if (k->type == CT_OBJECT && k->sub) {
            jw_key(w, k->name);
            emit_block(w, k->sub, v, NULL);
            continue;
        }
        if (!v && !k->dflt && k->type == CT_ANY)
            continue;
        jw_key(w, k->name);
        if (v)
            jw_value(w, v);
        else
            jw_raw(w, k->dflt ? k->dflt : "null");
    }
    /* optimizer/scheduler params that the table does not know are not
     * possible (rejected); nothing else to add */
    jw_object_end(w);
}

static const char *precision_name(dsrt_precision p)
{
    return p == DSRT_PRECISION_FP16 ? "fp16" : p == DSRT_PRECISION_BF16 ? "bf16" : "fp32";
}

static const cfg_block *named_params(const cfg_named_block *t, size_t n, int kind, const char *type)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].kind == kind && t[i].params && strcasecmp(t[i].type, type) == 0)
            return t[i].params;
    return NULL;
}

static void emit_named(jw *w, const char *key, const json_value *given, const cfg_block *params, const void *base)
{
    jw_key(w, key);
    jw_object_begin(w);
    for (size_t i = 0; i < given->u.obj.count; i++) {
        const json_member *m = &given->u.obj.members[i];
        jw_key(w, m->key);
        if (strcmp(m->key, "params") == 0 && params)
            emit_block(w, params, m->value, base);
        else
            jw_value(w, m->value);
    }
    if (params && !json_object_get(given, "params")) {
        jw_key(w, "params");
        emit_block(w, params, NULL, base);
    }
    jw_object_end(w);
}

const char *config_to_json(struct dsrt_config *cfg, int indent, size_t *length)
{
    const ds_config *c = &cfg->c;
    const json_value *root = json_doc_root(cfg->doc);
    dsrt_buf b = {0};
    jw w;
    jw_init(&w, &b, indent);
    jw_object_begin(&w);
    jw_key(&w, "train_batch_size");
    jw_int(&w, c->train_batch_size);
    jw_key(&w, "train_micro_batch_size_per_gpu");
    jw_int(&w, c->train_micro_batch_size_per_gpu);
    jw_key(&w, "gradient_accumulation_steps");
    jw_int(&w, c->gradient_accumulation_steps);

    /* the remaining top-level scalars from the table, then the blocks */
    for (size_t i = 0; i < cfg_top_block.n_keys; i++) {
        const cfg_key *k = &cfg_top_block.keys[i];
        const json_value *v = json_object_get(root, k->name);
        if (k->type == CT_ANY || k->type == CT_OBJECT || (k->flags & KF_ALIAS) || strncmp(k->name, "train_", 6) == 0 ||
            strcmp(k->name, "gradient_accumulation_steps") == 0)
            continue;
        if (k->field == CFG_NO_FIELD && !v && !(k->flags & KF_NULLABLE) && !k->dflt)
            continue;
        jw_key(&w, k->name);
        if (k->field != CFG_NO_FIELD) {
            const void *src = (const char *)c + k->field;
            if (k->type == CT_BOOL)
                jw_bool(&w, *(const bool *)src);
            else if (k->type == CT_INT) {
                if (strcmp(k->name, "steps_per_print") == 0 && !v)
                    jw_null(&w);
                else
                    jw_int(&w, *(const int64_t *)src);
            } else
                jw_double(&w, *(const double *)src);
        } else if (v)
            jw_value(&w, v);
        else
            jw_raw(&w, k->dflt ? k->dflt : "null");
    }
    jw_key(&w, "zero_optimization");
    const json_value *z = json_object_get(root, "zero_optimization");
    emit_block(&w, &cfg_zero_block, z && z->type == JSON_OBJECT ? z : NULL, &c->zero);
    jw_key(&w, "fp16");
    emit_block(&w, &cfg_fp16_block, json_object_get(root, "fp16"), &c->fp16);
    jw_key(&w, "bf16");
    const json_value *bf = json_object_get(root, "bf16");
    emit_block(&w, &cfg_bf16_block, bf ? bf : json_object_get(root, "bfloat16"), &c->bf16);
    const json_value *opt = json_object_get(root, "optimizer");
    if (c->optimizer.kind != DS_OPT_NONE)
        emit_named(&w, "optimizer", opt,
                   named_params(cfg_optimizers, cfg_n_optimizers, c->optimizer.kind, c->optimizer.type),
                   &c->optimizer);
    const json_value *sch = json_object_get(root, "scheduler");
    if (c->scheduler.kind != DS_SCHED_NONE)
        emit_named(&w, "scheduler", sch,
                   named_params(cfg_schedulers, cfg_n_schedulers, c->scheduler.kind, c->scheduler.type),
                   &c->scheduler);

    /* other known blocks exactly as written (after "auto" filling) */
    for (size_t i = 0; i < root->u.obj.count; i++) {
        const json_member *m = &root->u.obj.members[i];
        const cfg_key *k = cfg_block_find(&cfg_top_block, m->key);
        if (!k || (k->type != CT_ANY && k->type != CT_OBJECT) || strcmp(m->key, "dsrt") == 0)
            continue;
        if (!strcmp(m->key, "optimizer") || !strcmp(m->key, "scheduler") || !strcmp(m->key, "fp16") ||
            !strcmp(m->key, "bf16") || !strcmp(m->key, "bfloat16") || !strcmp(m->key, "zero_optimization"))
            continue;
        jw_key(&w, m->key);
        jw_value(&w, m->value);
    }

    /* what dsrt runs; DeepSpeed ignores this key */
    jw_key(&w, "dsrt");
    jw_object_begin(&w);
    jw_key(&w, "strict");
    jw_bool(&w, c->strict);
    jw_key(&w, "resolved");
    jw_object_begin(&w);
    jw_key(&w, "world_size");
    jw_int(&w, c->world_size);
    jw_key(&w, "zero_stage");
    jw_int(&w, c->zero_stage);
    jw_key(&w, "precision");
    jw_string(&w, precision_name(c->precision));
    if (c->optimizer.kind == DS_OPT_ADAM) {
        jw_key(&w, "adam_mode");
        jw_string(&w, c->optimizer.adamw ? "adamw (decoupled weight decay)" : "adam (L2 weight decay)");
    }
    jw_key(&w, "from_auto");
    jw_array_begin(&w);
    for (size_t i = 0; i < cfg->n_diags; i++)
        if (cfg->diags[i].kind == DSRT_DIAG_AUTO)
            jw_string(&w, cfg->diags[i].key);
    jw_array_end(&w);
    jw_object_end(&w);
    jw_object_end(&w);
    jw_object_end(&w);
    if (w.indent)
        dsrt_buf_puts(&b, "\n");

    char *text = dsrt_buf_take(&b);
    if (!text)
        return NULL;
    char **list = realloc(cfg->json_texts, (cfg->n_json_texts + 1) * sizeof *list);
    if (!list) {
        free(text);
        return NULL;
    }
    cfg->json_texts = list;
    cfg->json_texts[cfg->n_json_texts++] = text;
    *length = strlen(text);
    return text;
}
