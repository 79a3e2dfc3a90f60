/* Printing a resolved config in DeepSpeed's schema, every default explicit
 * (dsrt-config, config_to_json). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config_impl.h"
#include "base/jsonw.h"

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
                /* None (absent or null) prints as null, which reads back as None */
                if ((strcmp(k->name, "steps_per_print") == 0 && !v) ||
                    ((k->flags & KF_NULLABLE) && v && v->type == JSON_NULL))
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
    if (c->optimizer.kind != DS_OPT_NONE && !c->optimizer.trainer)
        emit_named(&w, "optimizer", opt,
                   named_params(cfg_optimizers, cfg_n_optimizers, c->optimizer.kind, c->optimizer.type),
                   &c->optimizer);
    const json_value *sch = json_object_get(root, "scheduler");
    if (c->scheduler.kind != DS_SCHED_NONE && c->scheduler.kind != DS_SCHED_HF)
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
    if (c->optimizer.trainer) { /* what the Trainer hands DeepSpeed in place of the blocks */
        jw_key(&w, "trainer_optimizer");
        jw_object_begin(&w);
        jw_key(&w, "type");
        jw_string(&w, "torch.optim.AdamW, no weight decay on biases and norm weights");
        jw_key(&w, "lr");
        jw_double(&w, c->optimizer.lr);
        jw_key(&w, "betas");
        jw_array_begin(&w);
        jw_double(&w, c->optimizer.betas[0]);
        jw_double(&w, c->optimizer.betas[1]);
        jw_array_end(&w);
        jw_key(&w, "eps");
        jw_double(&w, c->optimizer.eps);
        jw_key(&w, "weight_decay");
        jw_double(&w, c->optimizer.weight_decay);
        jw_object_end(&w);
    }
    if (c->scheduler.kind == DS_SCHED_HF) {
        jw_key(&w, "trainer_scheduler");
        jw_object_begin(&w);
        jw_key(&w, "lr_scheduler_type");
        jw_string(&w, c->scheduler.type);
        jw_key(&w, "warmup_steps");
        jw_int(&w, c->scheduler.warmup_num_steps);
        jw_key(&w, "max_steps");
        jw_int(&w, c->scheduler.total_num_steps);
        jw_object_end(&w);
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
