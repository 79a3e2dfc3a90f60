/* Optimizer parameter groups (torch's param_groups): a weight decay and an lr
 * factor per group, each parameter in one group.
 *
 *   - An optimizer block in the config: one group, its weight_decay on every
 *     parameter (DeepSpeed builds its optimizer from model.parameters()).
 *   - No optimizer block: the Hugging Face Trainer's AdamW and its two groups
 *     (Trainer.create_optimizer / get_decay_parameter_names): weight_decay on
 *     every parameter except biases and norm weights, which get 0. "Norm" is
 *     the Trainer's rule: a LayerNorm module (GPT-2's ln_1, ln_2, ln_f), or a
 *     name with "bias", "layernorm" or "rmsnorm" in it, or a "norm" or
 *     "*_norm" component (LLaMA's input_layernorm, model.norm, ...).
 *   - A host's own groups (dsrt_engine_create_args.groups / .param_group).
 *
 * The AdamW step runs over contiguous runs of elements that share a group: a
 * run list per coordinate system (the model's buffer at stage 0, ZeRO's flat
 * layout at stages 1 and 2), built once. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/internal.h"
#include "base/json.h"
#include "base/jsonw.h"
#include "engine/engine_impl.h"

/* a name component (between dots) equal to "norm" or ending in "_norm", or the
 * substrings the Trainer forbids */
static bool trainer_no_decay_name(const char *name)
{
    char low[256];
    size_t n = strlen(name);
    if (n >= sizeof low)
        n = sizeof low - 1;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    low[n] = 0;
    if (strstr(low, "bias") || strstr(low, "layernorm") || strstr(low, "rmsnorm"))
        return true;
    for (const char *c = low; c && *c;) {
        const char *dot = strchr(c, '.');
        size_t len = dot ? (size_t)(dot - c) : strlen(c);
        if ((len == 4 && !strncmp(c, "norm", 4)) || (len >= 5 && !strncmp(c + len - 5, "_norm", 5)))
            return true;
        c = dot ? dot + 1 : NULL;
    }
    return false;
}

typedef struct run_src {
    size_t lo, n;
    int g;
} run_src;

static int by_lo(const void *a, const void *b)
{
    size_t x = ((const run_src *)a)->lo, y = ((const run_src *)b)->lo;
    return x < y ? -1 : x > y;
}

/* Runs of equal group over [0, total): parameters sorted by offset, neighbours
 * of one group merged, gaps (ZeRO's padding) in group 0. */
static dsrt_status build_runs(dsrt_engine *e, bool flat, eng_group_run **out, size_t *n_out)
{
    size_t np = e->n_params;
    run_src *src = malloc(np * sizeof *src);
    eng_group_run *runs = malloc((2 * np + 1) * sizeof *runs);
    if (!src || !runs) {
        free(src);
        free(runs);
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create: parameter groups");
    }
    for (size_t i = 0; i < np; i++)
        src[i] = (run_src){flat ? e->lay.param_offset[i] : e->params[i].offset, e->params[i].numel,
                           e->grp.of[i]};
    qsort(src, np, sizeof *src, by_lo);
    size_t k = 0, at = 0;
    for (size_t i = 0; i < np; i++) {
        if (!src[i].n)
            continue;
        if (src[i].lo > at) /* a gap: padding */
            runs[k++] = (eng_group_run){at, src[i].lo, 0};
        if (k && runs[k - 1].g == src[i].g && runs[k - 1].hi == src[i].lo)
            runs[k - 1].hi = src[i].lo + src[i].n;
        else
            runs[k++] = (eng_group_run){src[i].lo, src[i].lo + src[i].n, src[i].g};
        at = src[i].lo + src[i].n;
    }
    free(src);
    *out = runs;
    *n_out = k;
    return DSRT_STATUS_OK;
}

dsrt_status engine_groups_init(dsrt_engine *e, const dsrt_engine_create_args *a)
{
    const ds_optimizer_config *o = &e->cfg.optimizer;
    size_t np = e->n_params;
    bool host_groups = a->struct_size >= DSRT_STRUCT_SIZE(dsrt_engine_create_args, param_group) &&
                       (a->groups || a->param_group || a->num_groups);
    e->grp.of = calloc(np, sizeof *e->grp.of);
    int ng = host_groups ? a->num_groups : o->trainer ? 2 : 1;
    if (host_groups && (ng < 1 || !a->groups || !a->param_group))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_create: parameter groups need groups, num_groups >= 1 and param_group "
                              "(got %d groups)",
                              (int)a->num_groups);
    e->grp.g = calloc((size_t)ng, sizeof *e->grp.g);
    if (!e->grp.of || !e->grp.g)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create: parameter groups");
    e->grp.n = ng;
    if (host_groups) {
        for (int g = 0; g < ng; g++) {
            e->grp.g[g] = a->groups[g];
            if (!(a->groups[g].weight_decay >= 0) || !(a->groups[g].lr_scale >= 0) ||
                a->groups[g].lr_scale > 1e30 || a->groups[g].weight_decay > 1e30)
                return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                      "engine_create: groups[%d]: weight_decay %g and lr_scale %g must be finite "
                                      "and >= 0",
                                      g, a->groups[g].weight_decay, a->groups[g].lr_scale);
        }
        for (size_t i = 0; i < np; i++) {
            int32_t g = a->param_group[i];
            if (g < 0 || g >= ng)
                return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                      "engine_create: param_group[%zu] (%s) = %d is not a group (0..%d)", i,
                                      e->params[i].name, (int)g, ng - 1);
            e->grp.of[i] = g;
        }
    } else {
        e->grp.g[0] = (dsrt_param_group){o->weight_decay, 1.0};
        if (o->trainer) { /* group 1: no decay */
            e->grp.g[1] = (dsrt_param_group){0.0, 1.0};
            for (size_t i = 0; i < np; i++)
                e->grp.of[i] = trainer_no_decay_name(e->params[i].name) ||
                                       (e->model && dsrt_model_is_norm_param(&e->mcfg, e->params[i].name))
                                   ? 1
                                   : 0;
        }
    }
    DSRT_TRY(engine_groups_changed(e));
    return DSRT_STATUS_OK;
}

dsrt_status engine_groups_changed(dsrt_engine *e)
{
    free(e->grp.runs_model);
    free(e->grp.runs_flat);
    e->grp.runs_model = e->grp.runs_flat = NULL;
    /* one AdamW call when every group steps alike */
    e->grp.uniform = true;
    for (int g = 1; g < e->grp.n; g++)
        if (e->grp.g[g].weight_decay != e->grp.g[0].weight_decay || e->grp.g[g].lr_scale != e->grp.g[0].lr_scale)
            e->grp.uniform = false;
    if (e->grp.uniform)
        return DSRT_STATUS_OK;
    DSRT_TRY(build_runs(e, false, &e->grp.runs_model, &e->grp.n_model));
    if (!e->lay.param_offset) /* no ZeRO layout (stage 0 on one rank) */
        return DSRT_STATUS_OK;
    return build_runs(e, true, &e->grp.runs_flat, &e->grp.n_flat);
}

void engine_groups_free(dsrt_engine *e)
{
    free(e->grp.of);
    free(e->grp.g);
    free(e->grp.runs_model);
    free(e->grp.runs_flat);
    memset(&e->grp, 0, sizeof e->grp);
}

static dsrt_adamw_args group_args(const dsrt_engine *e, const dsrt_adamw_args *aa, int g)
{
    dsrt_adamw_args x = *aa;
    x.weight_decay = (float)e->grp.g[g].weight_decay;
    x.lr = (float)((double)aa->lr * e->grp.g[g].lr_scale);
    return x;
}

dsrt_status engine_adamw(dsrt_engine *e, void *params, float *master, float *m, float *v, const void *grads,
                         size_t lo, size_t n, const dsrt_adamw_args *aa, bool flat)
{
    if (e->grp.uniform) {
        dsrt_adamw_args x = group_args(e, aa, 0);
        return dsrt_backend_adamw_step(e->be, params, master, m, v, grads, n, &x);
    }
    /* the runs cover [0, end of the last parameter) without gaps; beyond is padding */
    const eng_group_run *runs = flat ? e->grp.runs_flat : e->grp.runs_model;
    size_t nr = flat ? e->grp.n_flat : e->grp.n_model, hi = lo + n, done = lo;
    for (size_t r = 0; r <= nr && done < hi; r++) {
        if (r < nr && runs[r].hi <= done)
            continue;
        size_t z = r < nr && runs[r].hi < hi ? runs[r].hi : hi, off = done - lo;
        dsrt_adamw_args x = group_args(e, aa, r < nr ? runs[r].g : 0);
        DSRT_TRY(dsrt_backend_adamw_step(e->be, params ? (char *)params + off * e->dsz : NULL, master + off,
                                         m + off, v + off, (const char *)grads + off * e->dsz, z - done, &x));
        done = z;
    }
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- checkpoints */

char *engine_groups_json(const dsrt_engine *e)
{
    dsrt_buf b = {0};
    jw w;
    jw_init(&w, &b, 0);
    jw_object_begin(&w);
    jw_key(&w, "groups");
    jw_array_begin(&w);
    for (int g = 0; g < e->grp.n; g++) {
        jw_array_begin(&w);
        jw_double(&w, e->grp.g[g].weight_decay);
        jw_double(&w, e->grp.g[g].lr_scale);
        jw_array_end(&w);
    }
    jw_array_end(&w);
    jw_key(&w, "param_group");
    jw_array_begin(&w);
    for (size_t i = 0; i < e->n_params; i++)
        jw_int(&w, e->grp.of[i]);
    jw_array_end(&w);
    jw_object_end(&w);
    return dsrt_buf_take(&b);
}

dsrt_status engine_groups_parse(const dsrt_engine *e, const char *text, const char *path, dsrt_param_group **out,
                                int *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!text)
        return DSRT_STATUS_OK;
    json_error jerr;
    json_doc *doc = json_parse(text, strlen(text), &jerr);
    const json_value *root = doc ? json_doc_root(doc) : NULL;
    const json_value *gs = root ? json_object_get(root, "groups") : NULL;
    const json_value *pg = root ? json_object_get(root, "param_group") : NULL;
    dsrt_status st = DSRT_STATUS_OK;
    if (!gs || gs->type != JSON_ARRAY || !pg || pg->type != JSON_ARRAY || gs->u.arr.count < 1 ||
        gs->u.arr.count > 1000000) {
        st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "engine_load: %s: optimizer/param_groups is not readable", path);
        goto out;
    }
    if (pg->u.arr.count != e->n_params) {
        st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                            "engine_load: %s: the checkpoint's optimizer has %zu parameters in its groups, this "
                            "model %zu",
                            path, pg->u.arr.count, e->n_params);
        goto out;
    }
    int n = (int)gs->u.arr.count;
    dsrt_param_group *g = calloc((size_t)n, sizeof *g);
    if (!g) {
        st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_load");
        goto out;
    }
    for (int k = 0; k < n; k++) {
        const json_value *a = gs->u.arr.items[k];
        if (a->type != JSON_ARRAY || a->u.arr.count != 2 || a->u.arr.items[0]->type != JSON_NUMBER ||
            a->u.arr.items[1]->type != JSON_NUMBER) {
            free(g);
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "engine_load: %s: optimizer/param_groups[%d] is not readable",
                                path, k);
            goto out;
        }
        g[k] = (dsrt_param_group){a->u.arr.items[0]->u.num.d, a->u.arr.items[1]->u.num.d};
    }
    /* a parameter in another group than in the checkpoint: another optimizer
     * setup (DeepSpeed refuses a param_groups mismatch on load too) */
    for (size_t i = 0; i < e->n_params; i++) {
        const json_value *v = pg->u.arr.items[i];
        if (v->type != JSON_NUMBER || v->u.num.d != (double)e->grp.of[i] || e->grp.of[i] >= n) {
            free(g);
            st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                "engine_load: %s: parameter %s is in optimizer group %s of the checkpoint and in "
                                "group %d here (another optimizer setup: an optimizer block where the checkpoint "
                                "had none, or other host groups)",
                                path, e->params[i].name, v->type == JSON_NUMBER ? v->u.num.text : "?",
                                e->grp.of[i]);
            goto out;
        }
    }
    if (n != e->grp.n) {
        free(g);
        st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                            "engine_load: %s: the checkpoint's optimizer has %d parameter groups, this one %d", path,
                            n, e->grp.n);
        goto out;
    }
    *out = g;
    *n_out = n;
out:
    json_doc_free(doc);
    return st;
}

void engine_groups_restore(dsrt_engine *e, const dsrt_param_group *g, int n, double wd)
{
    if (g && n == e->grp.n) {
        /* DeepSpeed: the checkpoint's param_groups hyperparameters win */
        for (int k = 0; k < n; k++)
            e->grp.g[k] = g[k];
        return;
    }
    e->grp.g[0].weight_decay = wd; /* one saved value: the decaying group's */
}
