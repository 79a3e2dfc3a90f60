/* GPT-2 forward and backward over the backend's ops (see gpt2.h).
 * Memory: one parameter buffer, one gradient buffer, one activation buffer
 * (storage dtype), one fp32 buffer (LayerNorm statistics, losses) and one
 * int32 buffer (tokens, targets), all on the backend, made at creation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpt2.h"
#include "model/init_rng.h"
#include "base/internal.h"

typedef struct gpt2_layer_acts {
    void *ln1;           /* (B,T,C) */
    float *ln1_mean;     /* (B,T) */
    float *ln1_rstd;     /* (B,T) */
    void *qkv;           /* (B,T,3C) */
    void *atty;          /* (B,T,C) */
    void *att;           /* (B,NH,T,T) */
    void *residual2;     /* (B,T,C) */
    void *ln2;           /* (B,T,C) */
    float *ln2_mean;     /* (B,T) */
    float *ln2_rstd;     /* (B,T) */
    void *fch;           /* (B,T,F) F = n_inner */
    void *fch_gelu;      /* (B,T,F) */
    void *residual3;     /* (B,T,C) */
} gpt2_layer_acts;

struct dsrt_gpt2 {
    dsrt_gpt2_config cfg;
    dsrt_backend *be;
    int B, T; /* capacity */
    size_t dsz;

    dsrt_param *params;
    size_t n_params; /* tensors */
    size_t numel;    /* elements */
    char *names;     /* storage for the names */

    void *param_mem, *grad_mem;
    void *act_mem;
    float *stat_mem;
    int32_t *idx_mem;
    size_t act_bytes, stat_bytes; /* sizes of act_mem and stat_mem, from carve_activations */

    void *encoded;  /* (B,T,C) */
    gpt2_layer_acts *layers;
    void *lnf;      /* (B,T,C) */
    float *lnf_mean, *lnf_rstd;
    void *logits;   /* (B,T,V) */
    float *losses;  /* (B,T) */
    void *proj;     /* (B,T,C) output of the two c_proj matmuls before the residual add */
    /* backward scratch */
    void *dresidual; /* (B,T,C) the residual stream's gradient */
    void *dln;       /* (B,T,C) */
    void *datty;     /* (B,T,C) */
    void *dqkv;      /* (B,T,3C) */
    void *dfch;      /* (B,T,F) */
    int32_t *tokens, *targets; /* (B,T) backend copies */

    float *losses_host; /* (B,T) */
    int cur_B, cur_T;
    int have_train_fwd, have_eval_fwd;
    /* no gradient buffer: the backward asks where each gradient goes */
    dsrt_grad_slot_fn slot_fn;
    void *slot_user;
    dsrt_grad_piece_fn piece_fn; /* parameter 0 in pieces (optional) */
    dsrt_grad_piece_done_fn piece_done;
    void *piece_user;
    /* the weights may still be arriving: wait per layer */
    dsrt_param_wait_fn wait_fn;
    void *wait_user;
};

static void *pofs(void *base, size_t elems, size_t dsz) { return (char *)base + elems * dsz; }

void *dsrt_gpt2_param_buffer(dsrt_gpt2 *m) { return m->param_mem; }
void *dsrt_gpt2_grad_buffer(dsrt_gpt2 *m) { return m->grad_mem; }
const dsrt_gpt2_config *dsrt_gpt2_get_config(const dsrt_gpt2 *m) { return &m->cfg; }
size_t dsrt_gpt2_num_params(const dsrt_gpt2 *m) { return m->numel; }
size_t dsrt_gpt2_activation_bytes(const dsrt_gpt2 *m) { return m->act_bytes; }

const dsrt_param *dsrt_gpt2_params(const dsrt_gpt2 *m, size_t *count)
{
    if (count)
        *count = m->n_params;
    return m->params;
}

static void *P(dsrt_gpt2 *m, size_t i) { return pofs(m->param_mem, m->params[i].offset, m->dsz); }
static void *G(dsrt_gpt2 *m, size_t i) { return pofs(m->grad_mem, m->params[i].offset, m->dsz); }
static size_t LP(int layer, int slot) { return 2 + (size_t)GPT2_PER_LAYER * layer + slot; }

/* The parameter table in HF named_parameters() order. */
size_t dsrt_gpt2_config_num_params(const dsrt_gpt2_config *c)
{
    size_t V = (size_t)c->vocab_size, C = (size_t)c->n_embd, F = (size_t)c->n_inner;
    size_t per_layer = 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * F + F) + (F * C + C);
    return V * C + (size_t)c->n_positions * C + (size_t)c->n_layer * per_layer + 2 * C;
}

static dsrt_status build_params(dsrt_gpt2 *m)
{
    const dsrt_gpt2_config *c = &m->cfg;
    int64_t V = c->vocab_size, C = c->n_embd, F = c->n_inner, Tm = c->n_positions;
    size_t n = 2 + (size_t)GPT2_PER_LAYER * c->n_layer + 2;
    m->params = calloc(n, sizeof *m->params);
    m->names = calloc(n, 64);
    if (!m->params || !m->names)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "gpt2: parameter table");
    static const char *const slot_names[GPT2_PER_LAYER] = {
        "ln_1.weight",        "ln_1.bias",        "attn.c_attn.weight", "attn.c_attn.bias",
        "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight",        "ln_2.bias",
        "mlp.c_fc.weight",    "mlp.c_fc.bias",    "mlp.c_proj.weight",  "mlp.c_proj.bias",
    };
    const int64_t slot_shape[GPT2_PER_LAYER][2] = {
        {C, 0}, {C, 0}, {C, 3 * C}, {3 * C, 0}, {C, C}, {C, 0},
        {C, 0}, {C, 0}, {C, F},     {F, 0},     {F, C}, {C, 0},
    };
    size_t k = 0, off = 0;
#define ADD(nm, d0, d1)                                                                            \
    do {                                                                                           \
        dsrt_param *p = &m->params[k];                                                             \
        char *nm_ = m->names + k * 64;                                                               \
        snprintf(nm_, 64, "%s", nm);                                                               \
        p->name = nm_;                                                                             \
        p->shape[0] = (d0);                                                                        \
        p->shape[1] = (d1);                                                                        \
        p->ndim = (d1) ? 2 : 1;                                                                    \
        p->numel = (size_t)(d0) * (size_t)((d1) ? (d1) : 1);                                       \
        p->offset = off;                                                                           \
        off += p->numel;                                                                           \
        k++;                                                                                       \
    } while (0)
    ADD("transformer.wte.weight", V, C);
    ADD("transformer.wpe.weight", Tm, C);
    for (int l = 0; l < c->n_layer; l++) {
        for (int s = 0; s < GPT2_PER_LAYER; s++) {
            char nm[64];
            snprintf(nm, sizeof nm, "transformer.h.%d.%s", l, slot_names[s]);
            ADD(nm, slot_shape[s][0], slot_shape[s][1]);
        }
    }
    ADD("transformer.ln_f.weight", C, 0);
    ADD("transformer.ln_f.bias", C, 0);
#undef ADD
    m->n_params = k;
    m->numel = off;
    return DSRT_STATUS_OK;
}

/* Lays the activations out in act_mem and the fp32 statistics in stat_mem,
 * or with count_only just measures both (the sizes to allocate). */
static void carve_activations(dsrt_gpt2 *m, bool count_only)
{
    const dsrt_gpt2_config *c = &m->cfg;
    size_t BT = (size_t)m->B * m->T, C = (size_t)c->n_embd, F = (size_t)c->n_inner;
    size_t V = (size_t)c->vocab_size, NH = (size_t)c->n_head, T = (size_t)m->T;
    size_t a = 0, s = 0, dsz = m->dsz;
    /* keep every array 256-byte aligned */
#define ACT(ptr, n)                                                                                \
    do {                                                                                           \
        if (!count_only)                                                                           \
            (ptr) = (void *)((char *)m->act_mem + a);                                              \
        a += (((n) * dsz) + 255) & ~(size_t)255;                                                   \
    } while (0)
#define STAT(ptr, n)                                                                               \
    do {                                                                                           \
        if (!count_only)                                                                           \
            (ptr) = (float *)((char *)m->stat_mem + s);                                            \
        s += (((n) * sizeof(float)) + 255) & ~(size_t)255;                                         \
    } while (0)
    ACT(m->encoded, BT * C);
    for (int l = 0; l < c->n_layer; l++) {
        gpt2_layer_acts *L = &m->layers[l];
        ACT(L->ln1, BT * C);
        STAT(L->ln1_mean, BT);
        STAT(L->ln1_rstd, BT);
        ACT(L->qkv, BT * 3 * C);
        ACT(L->atty, BT * C);
        ACT(L->att, (size_t)m->B * NH * T * T);
        ACT(L->residual2, BT * C);
        ACT(L->ln2, BT * C);
        STAT(L->ln2_mean, BT);
        STAT(L->ln2_rstd, BT);
        ACT(L->fch, BT * F);
        ACT(L->fch_gelu, BT * F);
        ACT(L->residual3, BT * C);
    }
    ACT(m->lnf, BT * C);
    STAT(m->lnf_mean, BT);
    STAT(m->lnf_rstd, BT);
    ACT(m->logits, BT * V);
    STAT(m->losses, BT);
    ACT(m->proj, BT * C);
    ACT(m->dresidual, BT * C);
    ACT(m->dln, BT * C);
    ACT(m->datty, BT * C);
    ACT(m->dqkv, BT * 3 * C);
    ACT(m->dfch, BT * F);
#undef ACT
#undef STAT
    if (count_only) {
        m->act_bytes = a;
        m->stat_bytes = s;
    }
}

void dsrt_gpt2_shapes(const dsrt_gpt2_config *cfg, int B, int T, dsrt_backend_shapes *s)
{
    int K = cfg->n_inner > cfg->n_embd ? cfg->n_inner : cfg->n_embd;
    int OC = cfg->vocab_size;
    if (3 * cfg->n_embd > OC)
        OC = 3 * cfg->n_embd;
    if (cfg->n_inner > OC)
        OC = cfg->n_inner;
    *s = (dsrt_backend_shapes){.B = B, .T = T, .C = cfg->n_embd, .NH = cfg->n_head, .V = cfg->vocab_size,
                               .max_K = K, .max_OC = OC};
}

size_t dsrt_gpt2_activation_bytes_for(const dsrt_gpt2_config *cfg, int B, int T, dsrt_dtype dt)
{
    dsrt_gpt2 m = {.cfg = *cfg, .B = B, .T = T, .dsz = dsrt_dtype_size(dt)};
    m.layers = calloc((size_t)cfg->n_layer, sizeof *m.layers);
    if (!m.layers)
        return 0;
    carve_activations(&m, true);
    free(m.layers);
    return m.act_bytes + m.stat_bytes + 2 * (size_t)B * T * sizeof(int32_t);
}

dsrt_status dsrt_gpt2_create(const dsrt_gpt2_config *cfg, dsrt_backend *be, int B, int T,
                             dsrt_gpt2 **out)
{
    return dsrt_gpt2_create_ex(cfg, be, B, T, 1, 0, out);
}

dsrt_status dsrt_gpt2_create_ex(const dsrt_gpt2_config *cfg, dsrt_backend *be, int B, int T,
                                size_t param_align, unsigned flags, dsrt_gpt2 **out)
{
    if (!out)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "gpt2_create: out is NULL");
    *out = NULL;
    if (!cfg || !be)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "gpt2_create: NULL config or backend");
    if (B < 1 || T < 1 || T > cfg->n_positions)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gpt2_create: batch %d x %d tokens: need B >= 1 and 1 <= T <= "
                              "n_positions (%d)",
                              B, T, cfg->n_positions);
    if (cfg->n_head < 1 || cfg->n_embd % cfg->n_head || cfg->n_inner < 1 || cfg->n_layer < 1 ||
        cfg->vocab_size < 1)
        return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG, "gpt2_create: inconsistent model config");
    dsrt_gpt2 *m = calloc(1, sizeof *m);
    if (!m)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "gpt2_create");
    m->cfg = *cfg;
    m->be = be;
    m->B = B;
    m->T = T;
    m->dsz = dsrt_dtype_size(be->dt);
    dsrt_status st = build_params(m);
    if (st)
        goto fail;
    m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    m->losses_host = calloc((size_t)B * T, sizeof(float));
    if (!m->layers || !m->losses_host) {
        st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "gpt2_create");
        goto fail;
    }
    carve_activations(m, true);
    size_t align = param_align ? param_align : 1;
    size_t cap = (m->numel + align - 1) / align * align;
    if ((st = be->ops->alloc(be, cap * m->dsz, &m->param_mem)) ||
        (!(flags & DSRT_GPT2_NO_GRAD_BUFFER) && (st = be->ops->alloc(be, cap * m->dsz, &m->grad_mem))) ||
        (st = be->ops->alloc(be, m->act_bytes, &m->act_mem)) ||
        (st = be->ops->alloc(be, m->stat_bytes, (void **)&m->stat_mem)) ||
        (st = be->ops->alloc(be, 2 * (size_t)B * T * sizeof(int32_t), (void **)&m->idx_mem)))
        goto fail;
    carve_activations(m, false);
    m->tokens = m->idx_mem;
    m->targets = m->idx_mem + (size_t)B * T;
    dsrt_backend_shapes shapes;
    dsrt_gpt2_shapes(cfg, B, T, &shapes);
    if ((st = be->ops->reserve(be, &shapes)))
        goto fail;
    *out = m;
    return DSRT_STATUS_OK;
fail:
    dsrt_gpt2_destroy(m);
    return st;
}

void dsrt_gpt2_destroy(dsrt_gpt2 *m)
{
    if (!m)
        return;
    if (m->be) {
        m->be->ops->free(m->be, m->param_mem);
        m->be->ops->free(m->be, m->grad_mem);
        m->be->ops->free(m->be, m->act_mem);
        m->be->ops->free(m->be, m->stat_mem);
        m->be->ops->free(m->be, m->idx_mem);
    }
    free(m->params);
    free(m->names);
    free(m->layers);
    free(m->losses_host);
    free(m);
}

/* HF GPT-2's _init_weights: LayerNorm weights 1, biases 0, the c_proj
 * weights N(0, range / sqrt(2 n_layer)), every other weight N(0, range) */
static dsrt_init_kind gpt2_init_rule(const dsrt_param *p, const void *user, double *std)
{
    const dsrt_gpt2_config *c = user;
    const char *nm = p->name;
    size_t len = strlen(nm);
    if (len > 5 && strcmp(nm + len - 5, ".bias") == 0)
        return DSRT_INIT_ZEROS;
    if (strstr(nm, ".ln_"))
        return DSRT_INIT_ONES;
    *std = c->initializer_range;
    if (strstr(nm, "c_proj.weight"))
        *std /= sqrt(2.0 * c->n_layer);
    return DSRT_INIT_NORMAL;
}

dsrt_status dsrt_gpt2_init(dsrt_gpt2 *m, uint64_t seed)
{
    return dsrt_init_params(m->be, m->param_mem, m->params, m->n_params, seed, gpt2_init_rule, &m->cfg);
}

dsrt_status dsrt_gpt2_set_params_f32(dsrt_gpt2 *m, const float *src)
{
    return m->be->ops->upload_f32(m->be, m->param_mem, src, m->numel);
}

dsrt_status dsrt_gpt2_get_params_f32(dsrt_gpt2 *m, float *dst)
{
    return m->be->ops->download_f32(m->be, dst, m->param_mem, m->numel);
}

void dsrt_gpt2_set_param_wait(dsrt_gpt2 *m, dsrt_param_wait_fn fn, void *user)
{
    m->wait_fn = fn;
    m->wait_user = user;
}

static dsrt_status params_ready(dsrt_gpt2 *m, size_t first, size_t last)
{
    return m->wait_fn ? m->wait_fn(m->wait_user, first, last) : DSRT_STATUS_OK;
}

void dsrt_gpt2_set_grad_slots(dsrt_gpt2 *m, dsrt_grad_slot_fn fn, void *user)
{
    m->slot_fn = fn;
    m->slot_user = user;
}

void dsrt_gpt2_set_grad_pieces(dsrt_gpt2 *m, dsrt_grad_piece_fn piece, dsrt_grad_piece_done_fn done,
                               void *user)
{
    m->piece_fn = piece;
    m->piece_done = done;
    m->piece_user = user;
}

static dsrt_status no_grad_buffer(const char *who)
{
    return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                          "%s: this model was created without a gradient buffer (its gradients go to "
                          "the slots the reducer hands out)",
                          who);
}

dsrt_status dsrt_gpt2_get_grads_f32(dsrt_gpt2 *m, float *dst)
{
    if (!m->grad_mem)
        return no_grad_buffer("gpt2_get_grads");
    return m->be->ops->download_f32(m->be, dst, m->grad_mem, m->numel);
}

dsrt_status dsrt_gpt2_zero_grad(dsrt_gpt2 *m)
{
    if (!m->grad_mem)
        return no_grad_buffer("gpt2_zero_grad");
    return m->be->ops->memset0(m->be, m->grad_mem, m->numel * m->dsz);
}

/* ---- forward */
static dsrt_status check_inputs(dsrt_gpt2 *m, const int32_t *tokens, const int32_t *targets,
                                int B, int T, int *n_valid)
{
    if (!tokens)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "gpt2_forward: tokens is NULL");
    if (B < 1 || T < 1 || B > m->B || T > m->T)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gpt2_forward: batch %d x %d exceeds the model's %d x %d", B, T, m->B,
                              m->T);
    int V = m->cfg.vocab_size;
    *n_valid = 0;
    for (int i = 0; i < B * T; i++) {
        if (tokens[i] < 0 || tokens[i] >= V)
            return dsrt_error_set(DSRT_STATUS_OUT_OF_RANGE,
                                  "gpt2_forward: tokens[%d][%d] = %d is outside the vocabulary "
                                  "[0, %d)",
                                  i / T, i % T, (int)tokens[i], V);
        if (targets) {
            int32_t y = targets[i];
            if (y == -100)
                continue;
            if (y < 0 || y >= V)
                return dsrt_error_set(DSRT_STATUS_OUT_OF_RANGE,
                                      "gpt2_forward: targets[%d][%d] = %d is outside the vocabulary "
                                      "[0, %d) and is not the ignore index -100",
                                      i / T, i % T, (int)y, V);
            (*n_valid)++;
        }
    }
    return DSRT_STATUS_OK;
}

dsrt_status dsrt_gpt2_forward(dsrt_gpt2 *m, const int32_t *tokens, const int32_t *targets, int B,
                              int T, dsrt_gpt2_mode mode, float loss_scale, float *loss)
{
    if (mode == DSRT_GPT2_TRAIN && !targets)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gpt2_forward: training needs targets");
    int n_valid = 0;
    DSRT_TRY(check_inputs(m, tokens, targets, B, T, &n_valid));
    dsrt_backend *be = m->be;
    const dsrt_gpt2_config *c = &m->cfg;
    int C = c->n_embd, NH = c->n_head, F = c->n_inner, V = c->vocab_size, N = B * T;
    m->have_train_fwd = m->have_eval_fwd = 0;
    DSRT_TRY(be->ops->upload(be, m->tokens, tokens, (size_t)N * sizeof(int32_t)));
    if (targets)
        DSRT_TRY(be->ops->upload(be, m->targets, targets, (size_t)N * sizeof(int32_t)));

    DSRT_TRY(params_ready(m, 0, 1));
    DSRT_TRY(be->ops->encoder_forward(be, m->encoded, m->tokens, P(m, 0), P(m, 1), B, T, C));
    for (int l = 0; l < c->n_layer; l++) {
        gpt2_layer_acts *L = &m->layers[l];
        DSRT_TRY(params_ready(m, LP(l, 0), LP(l, GPT2_PER_LAYER - 1)));
        void *res = l == 0 ? m->encoded : m->layers[l - 1].residual3;
        float eps = c->layer_norm_epsilon;
        DSRT_TRY(be->ops->layernorm_forward(be, L->ln1, L->ln1_mean, L->ln1_rstd, res,
                                  P(m, LP(l, GPT2_LN1_W)), P(m, LP(l, GPT2_LN1_B)), N, C, eps));
        DSRT_TRY(be->ops->matmul_forward(be, L->qkv, L->ln1, P(m, LP(l, GPT2_QKV_W)),
                               P(m, LP(l, GPT2_QKV_B)), N, C, 3 * C, DSRT_W_KN));
        DSRT_TRY(be->ops->attention_forward(be, L->atty, L->att, L->qkv, B, T, NH, NH, C / NH));
        DSRT_TRY(be->ops->matmul_forward(be, m->proj, L->atty, P(m, LP(l, GPT2_ATTPROJ_W)),
                               P(m, LP(l, GPT2_ATTPROJ_B)), N, C, C, DSRT_W_KN));
        DSRT_TRY(be->ops->residual_forward(be, L->residual2, res, m->proj, (size_t)N * C));
        DSRT_TRY(be->ops->layernorm_forward(be, L->ln2, L->ln2_mean, L->ln2_rstd, L->residual2,
                                  P(m, LP(l, GPT2_LN2_W)), P(m, LP(l, GPT2_LN2_B)), N, C, eps));
        DSRT_TRY(be->ops->matmul_forward(be, L->fch, L->ln2, P(m, LP(l, GPT2_FC_W)), P(m, LP(l, GPT2_FC_B)),
                               N, C, F, DSRT_W_KN));
        DSRT_TRY(be->ops->gelu_forward(be, L->fch_gelu, L->fch, (size_t)N * F));
        DSRT_TRY(be->ops->matmul_forward(be, m->proj, L->fch_gelu, P(m, LP(l, GPT2_FCPROJ_W)),
                               P(m, LP(l, GPT2_FCPROJ_B)), N, F, C, DSRT_W_KN));
        DSRT_TRY(be->ops->residual_forward(be, L->residual3, L->residual2, m->proj, (size_t)N * C));
    }
    size_t lnf = m->n_params - 2;
    DSRT_TRY(params_ready(m, lnf, lnf + 1));
    DSRT_TRY(be->ops->layernorm_forward(be, m->lnf, m->lnf_mean, m->lnf_rstd,
                              m->layers[c->n_layer - 1].residual3, P(m, lnf), P(m, lnf + 1), N, C,
                              c->layer_norm_epsilon));
    DSRT_TRY(be->ops->matmul_forward(be, m->logits, m->lnf, P(m, 0), NULL, N, C, V, DSRT_W_NK));
    m->cur_B = B;
    m->cur_T = T;
    if (!targets) {
        m->have_eval_fwd = 1;
        if (loss)
            *loss = NAN;
        return DSRT_STATUS_OK;
    }
    int grad = mode == DSRT_GPT2_TRAIN;
    float dloss = n_valid ? loss_scale / (float)n_valid : 0.0f;
    DSRT_TRY(be->ops->classifier_forward(be, m->losses, m->logits, m->targets, N, V, dloss, grad));
    DSRT_TRY(be->ops->download(be, m->losses_host, m->losses, (size_t)N * sizeof(float)));
    double sum = 0.0;
    for (int i = 0; i < N; i++)
        sum += m->losses_host[i];
    if (loss)
        *loss = n_valid ? (float)(sum / n_valid) : NAN;
    m->have_train_fwd = grad;
    m->have_eval_fwd = !grad;
    return DSRT_STATUS_OK;
}

dsrt_status dsrt_gpt2_get_logits_f32(dsrt_gpt2 *m, float *dst)
{
    if (!m->have_eval_fwd)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gpt2_get_logits: no evaluation forward to read (a training "
                              "forward replaces the logits by their gradient)");
    return m->be->ops->download_f32(m->be, dst, m->logits,
                               (size_t)m->cur_B * m->cur_T * m->cfg.vocab_size);
}

/* ---- backward (reverse of the forward; the residual stream's gradient
 * accumulates in one buffer since the residual add passes it through) */
/* Where parameter i's gradient is written: the gradient buffer, or the slot
 * the reducer hands out (asked for right before the kernel that writes it). */
static dsrt_status grad_at(dsrt_gpt2 *m, size_t i, void **out)
{
    if (m->grad_mem) {
        *out = G(m, i);
        return DSRT_STATUS_OK;
    }
    return m->slot_fn(m->slot_user, i, out);
}

static void ready(dsrt_grad_ready_fn fn, void *user, size_t i)
{
    if (fn)
        fn(user, i);
}

/* The tied wte's gradient, rows [v0, v1) into g (row v0 first): the LM head's
 * part dlogits[:, v0:v1]^T . ln_f(x), then the embedding's (one rounding
 * each, in that order, as before the split) */
static dsrt_status wte_rows(dsrt_gpt2 *m, void *g, int v0, int v1)
{
    dsrt_backend *be = m->be;
    int N = m->cur_B * m->cur_T, C = m->cfg.n_embd, V = m->cfg.vocab_size;
    DSRT_TRY(be->ops->gemm(be, 1, 0, v1 - v0, C, N, (char *)m->logits + (size_t)v0 * m->dsz, V,
                           m->lnf, C, g, C, 1));
    return be->ops->encoder_backward(be, g, NULL, m->dresidual, m->tokens, m->cur_B, m->cur_T, C,
                                     v0, v1);
}

static dsrt_status wte_grad(dsrt_gpt2 *m)
{
    int C = m->cfg.n_embd, V = m->cfg.vocab_size;
    if (m->grad_mem || !m->piece_fn) {
        void *g0;
        DSRT_TRY(grad_at(m, 0, &g0));
        return wte_rows(m, g0, 0, V);
    }
    size_t end = (size_t)V * C;
    while (end) {
        size_t off = 0;
        void *g = NULL;
        DSRT_TRY(m->piece_fn(m->piece_user, 0, end, (size_t)C, &off, &g));
        if (off >= end || off % (size_t)C)
            return dsrt_error_set(DSRT_STATUS_INTERNAL,
                                  "gpt2_backward: gradient piece [%zu, %zu) of wte is not whole rows",
                                  off, end);
        DSRT_TRY(wte_rows(m, g, (int)(off / (size_t)C), (int)(end / (size_t)C)));
        DSRT_TRY(m->piece_done(m->piece_user, 0, off));
        end = off;
    }
    return DSRT_STATUS_OK;
}

dsrt_status dsrt_gpt2_backward(dsrt_gpt2 *m, dsrt_grad_ready_fn fn, void *user)
{
    if (!m->have_train_fwd)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gpt2_backward: needs a training forward first (each forward "
                              "allows one backward)");
    if (!m->grad_mem && !m->slot_fn)
        return no_grad_buffer("gpt2_backward");
    m->have_train_fwd = 0;
    dsrt_backend *be = m->be;
    const dsrt_gpt2_config *c = &m->cfg;
    int B = m->cur_B, T = m->cur_T, N = B * T;
    int C = c->n_embd, NH = c->n_head, F = c->n_inner, V = c->vocab_size;
    size_t NC = (size_t)N * C;
    size_t lnf = m->n_params - 2;

    DSRT_TRY(be->ops->memset0(be, m->dresidual, NC * m->dsz));
    /* logits hold dlogits after the fused classifier. Only ln_f's input
     * gradient here: the LM head's weight gradient (the tied wte's) is made
     * at the end, next to the embedding's part, so no one holds it meanwhile */
    DSRT_TRY(be->ops->matmul_backward(be, m->dln, NULL, NULL, m->logits, m->lnf, P(m, 0), N, C, V,
                                      DSRT_W_NK));
    {
        void *g0, *g1;
        DSRT_TRY(grad_at(m, lnf + 1, &g1));
        DSRT_TRY(grad_at(m, lnf, &g0));
        DSRT_TRY(be->ops->layernorm_backward(be, m->dresidual, g0, g1, m->dln,
                                   m->layers[c->n_layer - 1].residual3, P(m, lnf), m->lnf_mean,
                                   m->lnf_rstd, N, C));
    }
    ready(fn, user, lnf + 1);
    ready(fn, user, lnf);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        gpt2_layer_acts *L = &m->layers[l];
        void *res = l == 0 ? m->encoded : m->layers[l - 1].residual3;
        /* MLP: residual3 = residual2 + c_proj(gelu(c_fc(ln_2(residual2)))) */
        {
            void *g0, *g1;
            DSRT_TRY(grad_at(m, LP(l, GPT2_FCPROJ_B), &g1));
            DSRT_TRY(grad_at(m, LP(l, GPT2_FCPROJ_W), &g0));
            DSRT_TRY(be->ops->matmul_backward(be, m->dfch, g0, g1,
                                    m->dresidual, L->fch_gelu, P(m, LP(l, GPT2_FCPROJ_W)), N, F, C,
                                    DSRT_W_KN));
        }
        ready(fn, user, LP(l, GPT2_FCPROJ_B));
        ready(fn, user, LP(l, GPT2_FCPROJ_W));
        DSRT_TRY(be->ops->gelu_backward(be, m->dfch, L->fch, m->dfch, (size_t)N * F));
        {
            void *g0, *g1;
            DSRT_TRY(grad_at(m, LP(l, GPT2_FC_B), &g1));
            DSRT_TRY(grad_at(m, LP(l, GPT2_FC_W), &g0));
            DSRT_TRY(be->ops->matmul_backward(be, m->dln, g0, g1, m->dfch,
                                    L->ln2, P(m, LP(l, GPT2_FC_W)), N, C, F, DSRT_W_KN));
        }
        ready(fn, user, LP(l, GPT2_FC_B));
        ready(fn, user, LP(l, GPT2_FC_W));
        {
            void *g0, *g1;
            DSRT_TRY(grad_at(m, LP(l, GPT2_LN2_B), &g1));
            DSRT_TRY(grad_at(m, LP(l, GPT2_LN2_W), &g0));
            DSRT_TRY(be->ops->layernorm_backward(be, m->dresidual, g0,
                                       g1, m->dln, L->residual2,
                                       P(m, LP(l, GPT2_LN2_W)), L->ln2_mean, L->ln2_rstd, N, C));
        }
        ready(fn, user, LP(l, GPT2_LN2_B));
        ready(fn, user, LP(l, GPT2_LN2_W));
        /* attention: residual2 = residual + c_proj(attn(c_attn(ln_1(residual)))) */
        {
            void *g0, *g1;
            DSRT_TRY(grad_at(m, LP(l, GPT2_ATTPROJ_B), &g1));
            DSRT_TRY(grad_at(m, LP(l, GPT2_ATTPROJ_W), &g0));
            DSRT_TRY(be->ops->matmul_backward(be, m->datty, g0,
                                    g1, m->dresidual, L->atty,
                                    P(m, LP(l, GPT2_ATTPROJ_W)), N, C, C, DSRT_W_KN));
        }
        ready(fn, user, LP(l, GPT2_ATTPROJ_B));
        ready(fn, user, LP(l, GPT2_ATTPROJ_W));
        DSRT_TRY(be->ops->attention_backward(be, m->dqkv, m->datty, L->qkv, L->att, B, T, NH, NH, C / NH));
        {
            void *g0, *g1;
            DSRT_TRY(grad_at(m, LP(l, GPT2_QKV_B), &g1));
            DSRT_TRY(grad_at(m, LP(l, GPT2_QKV_W), &g0));
            DSRT_TRY(be->ops->matmul_backward(be, m->dln, g0, g1,
                                    m->dqkv, L->ln1, P(m, LP(l, GPT2_QKV_W)), N, C, 3 * C, DSRT_W_KN));
        }
        ready(fn, user, LP(l, GPT2_QKV_B));
        ready(fn, user, LP(l, GPT2_QKV_W));
        {
            void *g0, *g1;
            DSRT_TRY(grad_at(m, LP(l, GPT2_LN1_B), &g1));
            DSRT_TRY(grad_at(m, LP(l, GPT2_LN1_W), &g0));
            DSRT_TRY(be->ops->layernorm_backward(be, m->dresidual, g0,
                                       g1, m->dln, res, P(m, LP(l, GPT2_LN1_W)),
                                       L->ln1_mean, L->ln1_rstd, N, C));
        }
        ready(fn, user, LP(l, GPT2_LN1_B));
        ready(fn, user, LP(l, GPT2_LN1_W));
    }
    {
        void *g1;
        DSRT_TRY(grad_at(m, 1, &g1));
        DSRT_TRY(be->ops->encoder_backward(be, NULL, g1, m->dresidual, m->tokens, B, T, C, 0, 0));
    }
    ready(fn, user, 1);
    DSRT_TRY(wte_grad(m));
    ready(fn, user, 0);
    return DSRT_STATUS_OK;
}
