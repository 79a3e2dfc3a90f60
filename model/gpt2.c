/* GPT-2 forward and backward over the backend's ops (see gpt2.h).
 * Memory: one parameter buffer, one gradient buffer, one activation buffer
 * (storage dtype), one fp32 buffer (LayerNorm statistics, losses) and one
 * int32 buffer (tokens, targets), all on the backend, made at creation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpt2.h"
#include "model/decoder.h"
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
    decoder d;      /* the table, buffers, tokens, loss and hooks (decoder.h) */
    dsrt_gpt2_config cfg;

    void *encoded;  /* (B,T,C) */
    gpt2_layer_acts *layers;
    void *lnf;      /* (B,T,C) */
    float *lnf_mean, *lnf_rstd;
    void *proj;     /* (B,T,C) output of the two c_proj matmuls before the residual add */
    /* backward scratch */
    void *dresidual; /* (B,T,C) the residual stream's gradient */
    void *dln;       /* (B,T,C) */
    void *datty;     /* (B,T,C) */
    void *dqkv;      /* (B,T,3C) */
    void *dfch;      /* (B,T,F) */
};

void *dsrt_gpt2_param_buffer(dsrt_gpt2 *m) { return m->d.param_mem; }
void *dsrt_gpt2_grad_buffer(dsrt_gpt2 *m) { return m->d.grad_mem; }
const dsrt_gpt2_config *dsrt_gpt2_get_config(const dsrt_gpt2 *m) { return &m->cfg; }
size_t dsrt_gpt2_num_params(const dsrt_gpt2 *m) { return m->d.numel; }
size_t dsrt_gpt2_activation_bytes(const dsrt_gpt2 *m) { return m->d.act_bytes; }

const dsrt_param *dsrt_gpt2_params(const dsrt_gpt2 *m, size_t *count)
{
    if (count)
        *count = m->d.n_params;
    return m->d.params;
}

static void *P(dsrt_gpt2 *m, size_t i) { return decoder_param(&m->d, (long)i); }
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
    decoder *d = &m->d;
    int64_t V = c->vocab_size, C = c->n_embd, F = c->n_inner, Tm = c->n_positions;
    DSRT_TRY(decoder_table(d, 2 + (size_t)GPT2_PER_LAYER * c->n_layer + 2));
    static const char *const slot_names[GPT2_PER_LAYER] = {
        "ln_1.weight",        "ln_1.bias",        "attn.c_attn.weight", "attn.c_attn.bias",
        "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight",        "ln_2.bias",
        "mlp.c_fc.weight",    "mlp.c_fc.bias",    "mlp.c_proj.weight",  "mlp.c_proj.bias",
    };
    const int64_t slot_shape[GPT2_PER_LAYER][2] = {
        {C, 0}, {C, 0}, {C, 3 * C}, {3 * C, 0}, {C, C}, {C, 0},
        {C, 0}, {C, 0}, {C, F},     {F, 0},     {F, C}, {C, 0},
    };
    decoder_add(d, V, C, "transformer.wte.weight");
    decoder_add(d, Tm, C, "transformer.wpe.weight");
    for (int l = 0; l < c->n_layer; l++)
        for (int s = 0; s < GPT2_PER_LAYER; s++)
            decoder_add(d, slot_shape[s][0], slot_shape[s][1], "transformer.h.%d.%s", l, slot_names[s]);
    decoder_add(d, C, 0, "transformer.ln_f.weight");
    decoder_add(d, C, 0, "transformer.ln_f.bias");
    return DSRT_STATUS_OK;
}

/* Lays the activations out in act_mem and the fp32 statistics in stat_mem,
 * or with count_only just measures both (the sizes to allocate). */
static void carve_activations(dsrt_gpt2 *m, bool count_only)
{
    const dsrt_gpt2_config *c = &m->cfg;
    decoder *d = &m->d;
    size_t BT = (size_t)d->B * d->T, C = (size_t)c->n_embd, F = (size_t)c->n_inner;
    size_t V = (size_t)c->vocab_size, NH = (size_t)c->n_head, T = (size_t)d->T;
    size_t a = 0, s = 0, dsz = d->dsz;
    /* keep every array 256-byte aligned */
#define ACT(ptr, n)                                                                                \
    do {                                                                                           \
        if (!count_only)                                                                           \
            (ptr) = (void *)((char *)d->act_mem + a);                                              \
        a += (((n) * dsz) + 255) & ~(size_t)255;                                                   \
    } while (0)
#define STAT(ptr, n)                                                                               \
    do {                                                                                           \
        if (!count_only)                                                                           \
            (ptr) = (float *)((char *)d->stat_mem + s);                                            \
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
        ACT(L->att, (size_t)d->B * NH * T * T);
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
    ACT(d->logits, BT * V);
    STAT(d->losses, BT);
    ACT(m->proj, BT * C);
    ACT(m->dresidual, BT * C);
    ACT(m->dln, BT * C);
    ACT(m->datty, BT * C);
    ACT(m->dqkv, BT * 3 * C);
    ACT(m->dfch, BT * F);
#undef ACT
#undef STAT
    if (count_only) {
        d->act_bytes = a;
        d->stat_bytes = s;
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
    dsrt_gpt2 m = {.cfg = *cfg, .d = {.B = B, .T = T, .dsz = dsrt_dtype_size(dt)}};
    m.layers = calloc((size_t)cfg->n_layer, sizeof *m.layers);
    if (!m.layers)
        return 0;
    carve_activations(&m, true);
    free(m.layers);
    return m.d.act_bytes + m.d.stat_bytes + 2 * (size_t)B * T * sizeof(int32_t);
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
    m->d = (decoder){.who = "gpt2", .be = be, .dsz = dsrt_dtype_size(be->dt), .B = B, .T = T,
                     .V = cfg->vocab_size};
    dsrt_status st = build_params(m);
    if (st)
        goto fail;
    m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    if (!m->layers) {
        st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "gpt2_create");
        goto fail;
    }
    carve_activations(m, true);
    if ((st = decoder_alloc(&m->d, param_align, flags)))
        goto fail;
    carve_activations(m, false);
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
    decoder_free(&m->d);
    free(m->layers);
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
    return dsrt_init_params(m->d.be, m->d.param_mem, m->d.params, m->d.n_params, seed, gpt2_init_rule, &m->cfg);
}

dsrt_status dsrt_gpt2_set_params_f32(dsrt_gpt2 *m, const float *src)
{
    return m->d.be->ops->upload_f32(m->d.be, m->d.param_mem, src, m->d.numel);
}

dsrt_status dsrt_gpt2_get_params_f32(dsrt_gpt2 *m, float *dst)
{
    return m->d.be->ops->download_f32(m->d.be, dst, m->d.param_mem, m->d.numel);
}

void dsrt_gpt2_set_param_wait(dsrt_gpt2 *m, dsrt_param_wait_fn fn, void *user)
{
    m->d.wait_fn = fn;
    m->d.wait_user = user;
}

void dsrt_gpt2_set_grad_slots(dsrt_gpt2 *m, dsrt_grad_slot_fn fn, void *user)
{
    m->d.slot_fn = fn;
    m->d.slot_user = user;
}

void dsrt_gpt2_set_grad_pieces(dsrt_gpt2 *m, dsrt_grad_piece_fn piece, dsrt_grad_piece_done_fn done,
                               void *user)
{
    m->d.piece_fn = piece;
    m->d.piece_done = done;
    m->d.piece_user = user;
}

dsrt_status dsrt_gpt2_get_grads_f32(dsrt_gpt2 *m, float *dst) { return decoder_get_grads_f32(&m->d, dst); }

dsrt_status dsrt_gpt2_zero_grad(dsrt_gpt2 *m) { return decoder_zero_grad(&m->d); }

/* ---- forward */
dsrt_status dsrt_gpt2_forward(dsrt_gpt2 *m, const int32_t *tokens, const int32_t *targets, int B,
                              int T, dsrt_gpt2_mode mode, float loss_scale, float *loss)
{
    int n_valid = 0;
    decoder *d = &m->d;
    DSRT_TRY(decoder_begin(d, mode, tokens, targets, B, T, &n_valid));
    dsrt_backend *be = d->be;
    const dsrt_gpt2_config *c = &m->cfg;
    int C = c->n_embd, NH = c->n_head, F = c->n_inner, V = c->vocab_size, N = B * T;

    DSRT_TRY(decoder_params_ready(d, 0, 1));
    DSRT_TRY(be->ops->encoder_forward(be, m->encoded, d->tokens, P(m, 0), P(m, 1), B, T, C));
    for (int l = 0; l < c->n_layer; l++) {
        gpt2_layer_acts *L = &m->layers[l];
        DSRT_TRY(decoder_params_ready(d, LP(l, 0), LP(l, GPT2_PER_LAYER - 1)));
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
    size_t lnf = d->n_params - 2;
    DSRT_TRY(decoder_params_ready(d, lnf, lnf + 1));
    DSRT_TRY(be->ops->layernorm_forward(be, m->lnf, m->lnf_mean, m->lnf_rstd,
                              m->layers[c->n_layer - 1].residual3, P(m, lnf), P(m, lnf + 1), N, C,
                              c->layer_norm_epsilon));
    DSRT_TRY(be->ops->matmul_forward(be, d->logits, m->lnf, P(m, 0), NULL, N, C, V, DSRT_W_NK));
    return decoder_finish(d, targets, B, T, mode, loss_scale, n_valid, loss);
}

dsrt_status dsrt_gpt2_get_logits_f32(dsrt_gpt2 *m, float *dst) { return decoder_get_logits_f32(&m->d, dst); }

/* ---- backward (reverse of the forward; the residual stream's gradient
 * accumulates in one buffer since the residual add passes it through) */
static dsrt_status grad_at(dsrt_gpt2 *m, size_t i, void **out) { return decoder_grad_at(&m->d, (long)i, out); }

static void ready(dsrt_grad_ready_fn fn, void *user, size_t i) { decoder_ready(fn, user, (long)i); }

/* The tied wte's gradient, rows [v0, v1) into g (row v0 first): the LM head's
 * part dlogits[:, v0:v1]^T . ln_f(x), then the embedding's (one rounding
 * each, in that order, as before the split) */
static dsrt_status wte_rows(void *ctx, void *g, int v0, int v1)
{
    dsrt_gpt2 *m = ctx;
    decoder *d = &m->d;
    dsrt_backend *be = d->be;
    int N = d->cur_B * d->cur_T, C = m->cfg.n_embd, V = m->cfg.vocab_size;
    DSRT_TRY(be->ops->gemm(be, 1, 0, v1 - v0, C, N, decoder_at(d, d->logits, (size_t)v0), V,
                           m->lnf, C, g, C, 1));
    return be->ops->encoder_backward(be, g, NULL, m->dresidual, d->tokens, d->cur_B, d->cur_T, C,
                                     v0, v1);
}

dsrt_status dsrt_gpt2_backward(dsrt_gpt2 *m, dsrt_grad_ready_fn fn, void *user)
{
    decoder *d = &m->d;
    DSRT_TRY(decoder_backward_begin(d));
    dsrt_backend *be = d->be;
    const dsrt_gpt2_config *c = &m->cfg;
    int B = d->cur_B, T = d->cur_T, N = B * T;
    int C = c->n_embd, NH = c->n_head, F = c->n_inner, V = c->vocab_size;
    size_t NC = (size_t)N * C;
    size_t lnf = d->n_params - 2;

    DSRT_TRY(be->ops->memset0(be, m->dresidual, NC * d->dsz));
    /* logits hold dlogits after the fused classifier. Only ln_f's input
     * gradient here: the LM head's weight gradient (the tied wte's) is made
     * at the end, next to the embedding's part, so no one holds it meanwhile */
    DSRT_TRY(be->ops->matmul_backward(be, m->dln, NULL, NULL, d->logits, m->lnf, P(m, 0), N, C, V,
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
        DSRT_TRY(be->ops->encoder_backward(be, NULL, g1, m->dresidual, d->tokens, B, T, C, 0, 0));
    }
    ready(fn, user, 1);
    DSRT_TRY(decoder_embedding_grad(d, 0, C, wte_rows, m));
    ready(fn, user, 0);
    return DSRT_STATUS_OK;
}
