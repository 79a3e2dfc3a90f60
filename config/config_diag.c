/* The reader's messages and document edits: rejections in the one-line form
 * (error: <key>: <what> (got <value>) [<file>:<line>]), diagnostics sent to
 * the log, and the in-place replacement of "auto" values. Used by every pass
 * of the reader (config.c, config_read.c, config_auto.c). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config_impl.h"

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

dsrt_status cfg_reject_key(const struct dsrt_config *cfg, const char *key, int line, const char *fmt, ...)
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

dsrt_status cfg_degrade(struct dsrt_config *cfg, const char *key, const json_value *at, const char *fmt, ...)
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
