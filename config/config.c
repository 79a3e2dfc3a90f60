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

#include "config/config_impl.h"
#include "base/jsonw.h"

/* Files larger than this are refused before reading: no real config comes
 * near it, and it bounds the memory a mistaken path (a dataset) can take. */
#define CONFIG_MAX_BYTES (64u << 20)


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
    dsrt_status st = cfg_read_int(cfg, key, &k, false, v, out);
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
        const char *s = cfg_suggest(&cfg_top_block, m->key);
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
    dsrt_status st = cfg_read_block(cfg, &cfg_top_block, "", root, &cfg->c);
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
        st = cfg_read_block(cfg, &cfg_dsrt_block, "dsrt", ds, &cfg->c);
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
        st = cfg_check_finite(cfg, root, "");
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
        st = cfg_read_precision(cfg, root);
    if (!st)
        st = cfg_read_zero(cfg, json_object_get(root, "zero_optimization"));
    if (!st)
        st = cfg_read_optimizer(cfg, json_object_get(root, "optimizer"));
    if (!st)
        st = cfg_read_scheduler(cfg, json_object_get(root, "scheduler"));
    if (!st)
        st = config_trainer_defaults(cfg, &hf);
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

const ds_config *config_resolved(const struct dsrt_config *cfg) { return &cfg->c; }

size_t config_diagnostic_count(const struct dsrt_config *cfg) { return cfg->n_diags; }

const cfg_diag *config_diagnostic(const struct dsrt_config *cfg, size_t index)
{
    return index < cfg->n_diags ? &cfg->diags[index] : NULL;
}
