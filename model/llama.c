/* LLaMA / Mistral / Qwen2 forward and backward over the backend's ops (see
 * llama.h). Memory as model/gpt2.c: one parameter buffer, one gradient
 * buffer, one activation buffer (storage dtype), one fp32 buffer (RMSNorm
 * statistics, the rotary table, losses) and one int32 buffer (tokens,
 * targets), all on the backend, made at creation.
 *
 * Shapes: N = B*T rows, C hidden, F intermediate, NH query heads and NKV
 * key/value heads of HS channels, Q = NH*HS, KV = NKV*HS, W = Q + 2 KV (a
 * packed q|k|v row). The three projections q, k, v write side by side into
 * one (N, W) row with strided GEMMs (their weights are not adjacent when
 * Qwen2's biases sit between them), as do gate and up into (N, 2F). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/llama.h"
#include "model/decoder.h"
#include "model/init_rng.h"
#include "base/internal.h"

/* a layer's parameters by index into the table; -1: absent (a bias the
 * config does not have) */
enum {
    LL_Q_W, LL_Q_B, LL_K_W, LL_K_B, LL_V_W, LL_V_B, LL_O_W, LL_O_B,
    LL_GATE_W, LL_GATE_B, LL_UP_W, LL_UP_B, LL_DOWN_W, LL_DOWN_B,
    LL_IN_NORM, LL_POST_NORM, LL_SLOTS
};

typedef struct llama_layer {
    long idx[LL_SLOTS];
    size_t first, last; /* its parameter indices */
    /* activations kept for the backward */
    void *ln1;          /* (N,C) input_layernorm's output */
    float *rstd1;       /* (N) */
    void *qkv;          /* (N,W) after the rotary embedding */
    void *att;          /* (B,NH,T,T) */
    void *atty;         /* (N,Q) */
    void *residual2;    /* (N,C) */
    void *ln2;          /* (N,C) */
    float *rstd2;       /* (N) */
    void *gu;           /* (N,2F) gate | up before the activation */
    void *h;            /* (N,F) silu(gate) * up */
    void *residual3;    /* (N,C) the layer's output */
} llama_layer;

struct dsrt_llama {
    decoder d;      /* the table, buffers, tokens, loss and hooks (decoder.h) */
    dsrt_llama_config cfg;
    int Q, KV, W;   /* NH*HS, NKV*HS, Q + 2 KV */
    size_t embed, norm, head; /* indices: embed_tokens, model.norm, the head (= embed when tied) */

    void *embedded; /* (N,C) */
    llama_layer *layers;
    void *lnf;      /* (N,C) */
    float *rstdf;   /* (N) */
    float *rope_cos, *rope_sin; /* (T, HS/2) */
    void *proj;     /* (N,C) */
    void *dresidual, *dln; /* (N,C) */
    void *datty;    /* (N,Q) */
    void *dqkv;     /* (N,W) */
    void *dgu;      /* (N,2F) */
    void *dh;       /* (N,F) */
};

static void *P(dsrt_llama *m, long i) { return decoder_param(&m->d, i); }

const dsrt_llama_config *dsrt_llama_get_config(const dsrt_llama *m) { return &m->cfg; }
size_t dsrt_llama_num_params(const dsrt_llama *m) { return m->d.numel; }
size_t dsrt_llama_activation_bytes(const dsrt_llama *m) { return m->d.act_bytes; }
void *dsrt_llama_param_buffer(dsrt_llama *m) { return m->d.param_mem; }
void *dsrt_llama_grad_buffer(dsrt_llama *m) { return m->d.grad_mem; }

const dsrt_param *dsrt_llama_params(const dsrt_llama *m, size_t *count)
{
    if (count)
        *count = m->d.n_params;
    return m->d.params;
}

/* ---- the parameter table, in transformers' named_parameters() order:
 * embed_tokens, per layer self_attn.{q,k,v,o}_proj (weight, bias), mlp.
 * {gate,up,down}_proj, input_layernorm, post_attention_layernorm; norm;
 * lm_head when untied */
static dsrt_status build_params(dsrt_llama *m)
{
    const dsrt_llama_config *c = &m->cfg;
    decoder *d = &m->d;
    int64_t V = c->vocab_size, C = c->hidden_size, F = c->intermediate_size, Q = m->Q, KV = m->KV;
    DSRT_TRY(decoder_table(d, 1 + (size_t)LL_SLOTS * c->num_hidden_layers + 2));
    m->embed = decoder_add(d, V, C, "model.embed_tokens.weight");
    static const char *const proj[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                       "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                       "mlp.down_proj"};
    const int64_t out_dim[] = {Q, KV, KV, C, F, F, C}, in_dim[] = {C, C, C, Q, C, C, F};
    for (int l = 0; l < c->num_hidden_layers; l++) {
        llama_layer *L = &m->layers[l];
        L->first = d->n_params;
        for (int s = 0; s < 7; s++) {
            bool bias = s < 3 ? c->qkv_bias : s == 3 ? c->o_bias : c->mlp_bias;
            L->idx[2 * s] = (long)decoder_add(d, out_dim[s], in_dim[s], "model.layers.%d.%s.weight", l, proj[s]);
            L->idx[2 * s + 1] = bias ? (long)decoder_add(d, out_dim[s], 0, "model.layers.%d.%s.bias", l, proj[s]) : -1;
        }
        L->idx[LL_IN_NORM] = (long)decoder_add(d, C, 0, "model.layers.%d.input_layernorm.weight", l);
        L->idx[LL_POST_NORM] = (long)decoder_add(d, C, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        L->last = d->n_params - 1;
    }
    m->norm = decoder_add(d, C, 0, "model.norm.weight");
    m->head = c->tie_word_embeddings ? m->embed : decoder_add(d, V, C, "lm_head.weight");
    return DSRT_STATUS_OK;
}

static void carve_activations(dsrt_llama *m, bool count_only)
{
    const dsrt_llama_config *c = &m->cfg;
    decoder *d = &m->d;
    size_t N = (size_t)d->B * d->T, C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t V = (size_t)c->vocab_size, NH = (size_t)c->num_attention_heads, T = (size_t)d->T;
    size_t Q = (size_t)m->Q, W = (size_t)m->W, half = (size_t)c->head_dim / 2;
    size_t a = 0, s = 0, dsz = d->dsz;
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
    ACT(m->embedded, N * C);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        llama_layer *L = &m->layers[l];
        ACT(L->ln1, N * C);
        STAT(L->rstd1, N);
        ACT(L->qkv, N * W);
        ACT(L->att, (size_t)d->B * NH * T * T);
        ACT(L->atty, N * Q);
        ACT(L->residual2, N * C);
        ACT(L->ln2, N * C);
        STAT(L->rstd2, N);
        ACT(L->gu, N * 2 * F);
        ACT(L->h, N * F);
        ACT(L->residual3, N * C);
    }
    ACT(m->lnf, N * C);
    STAT(m->rstdf, N);
    ACT(d->logits, N * V);
    STAT(d->losses, N);
    STAT(m->rope_cos, T * half);
    STAT(m->rope_sin, T * half);
    ACT(m->proj, N * C);
    ACT(m->dresidual, N * C);
    ACT(m->dln, N * C);
    ACT(m->datty, N * Q);
    ACT(m->dqkv, N * W);
    ACT(m->dgu, N * 2 * F);
    ACT(m->dh, N * F);
#undef ACT
#undef STAT
    if (count_only) {
        d->act_bytes = a;
        d->stat_bytes = s;
    }
}

void dsrt_llama_rope_table(const dsrt_llama_config *c, int T, float *cosv, float *sinv)
{
    int hs = c->head_dim, half = hs / 2;
    for (int i = 0; i < half; i++) {
        /* transformers: 1 / base ** (arange(0, dim, 2).float() / dim), in fp32 */
        float e = (float)(2 * i) / (float)hs;
        float inv = 1.0f / powf((float)c->rope_theta, e);
        if (c->rope_llama3) {
            /* _compute_llama3_parameters: long wavelengths divided by factor,
             * short ones kept, those between interpolated */
            float factor = (float)c->rope_factor, lo = (float)c->rope_low_freq_factor,
                  hi = (float)c->rope_high_freq_factor, old = (float)c->rope_original_max_positions;
            float low_wavelen = old / lo, high_wavelen = old / hi;
            float wavelen = (float)(2.0 * 3.141592653589793) / inv;
            float scaled = wavelen > low_wavelen ? inv / factor : inv;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                float smooth = (old / wavelen - lo) / (hi - lo);
                scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
            }
            inv = scaled;
        }
        for (int t = 0; t < T; t++) {
            float ang = (float)t * inv;
            cosv[(size_t)t * half + i] = (float)cos((double)ang);
            sinv[(size_t)t * half + i] = (float)sin((double)ang);
        }
    }
}

void dsrt_llama_shapes(const dsrt_llama_config *cfg, int B, int T, dsrt_backend_shapes *s)
{
    int C = cfg->hidden_size, F = cfg->intermediate_size, V = cfg->vocab_size;
    int Q = cfg->num_attention_heads * cfg->head_dim, W = Q + 2 * cfg->num_key_value_heads * cfg->head_dim;
    int K = C > F ? C : F;
    K = K > Q ? K : Q;
    int OC = V > C ? V : C;
    OC = OC > W ? OC : W;
    OC = OC > 2 * F ? OC : 2 * F;
    *s = (dsrt_backend_shapes){.B = B, .T = T, .C = C, .NH = cfg->num_attention_heads, .V = V, .max_K = K,
                               .max_OC = OC, .NKV = cfg->num_key_value_heads, .HS = cfg->head_dim};
}

size_t dsrt_llama_activation_bytes_for(const dsrt_llama_config *cfg, int B, int T, dsrt_dtype dt)
{
    dsrt_llama m = {.cfg = *cfg, .d = {.B = B, .T = T, .dsz = dsrt_dtype_size(dt)}};
    m.Q = cfg->num_attention_heads * cfg->head_dim;
    m.KV = cfg->num_key_value_heads * cfg->head_dim;
    m.W = m.Q + 2 * m.KV;
    m.layers = calloc((size_t)cfg->num_hidden_layers, sizeof *m.layers);
    if (!m.layers)
        return 0;
    carve_activations(&m, true);
    free(m.layers);
    return m.d.act_bytes + m.d.stat_bytes + 2 * (size_t)B * T * sizeof(int32_t);
}

dsrt_status dsrt_llama_create_ex(const dsrt_llama_config *cfg, dsrt_backend *be, int B, int T,
                                 size_t param_align, unsigned flags, dsrt_llama **out)
{
    if (!out)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "llama_create: out is NULL");
    *out = NULL;
    if (!cfg || !be)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "llama_create: NULL config or backend");
    if (B < 1 || T < 1 || T > cfg->max_position_embeddings)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "llama_create: batch %d x %d tokens: need B >= 1 and 1 <= T <= "
                              "max_position_embeddings (%d)",
                              B, T, cfg->max_position_embeddings);
    if (cfg->sliding_window > 0 && T > cfg->sliding_window)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "%s: sliding_window %d: sequences of %d tokens are longer than the "
                              "attention window, which dsrt does not implement; train with "
                              "sequences of at most %d tokens",
                              cfg->source, cfg->sliding_window, T, cfg->sliding_window);
    if (cfg->num_attention_heads < 1 || cfg->num_key_value_heads < 1 ||
        cfg->num_attention_heads % cfg->num_key_value_heads || cfg->head_dim < 2 || cfg->head_dim % 2 ||
        cfg->intermediate_size < 1 || cfg->num_hidden_layers < 1 || cfg->vocab_size < 1 ||
        cfg->hidden_size < 1)
        return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG, "llama_create: inconsistent model config");
    dsrt_llama *m = calloc(1, sizeof *m);
    if (!m)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "llama_create");
    m->cfg = *cfg;
    m->d = (decoder){.who = "llama", .be = be, .dsz = dsrt_dtype_size(be->dt), .B = B, .T = T,
                     .V = cfg->vocab_size};
    m->Q = cfg->num_attention_heads * cfg->head_dim;
    m->KV = cfg->num_key_value_heads * cfg->head_dim;
    m->W = m->Q + 2 * m->KV;
    dsrt_status st;
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layers);
    float *table = calloc((size_t)T * cfg->head_dim, sizeof(float));
    if (!m->layers || !table) {
        free(table);
        st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "llama_create");
        goto fail;
    }
    if ((st = build_params(m)))
        goto fail_table;
    carve_activations(m, true);
    if ((st = decoder_alloc(&m->d, param_align, flags)))
        goto fail_table;
    carve_activations(m, false);
    {
        size_t half = (size_t)T * (cfg->head_dim / 2);
        dsrt_llama_rope_table(cfg, T, table, table + half);
        if ((st = be->ops->upload(be, m->rope_cos, table, half * sizeof(float))) ||
            (st = be->ops->upload(be, m->rope_sin, table + half, half * sizeof(float))))
            goto fail_table;
    }
    free(table);
    table = NULL;
    dsrt_backend_shapes shapes;
    dsrt_llama_shapes(cfg, B, T, &shapes);
    if ((st = be->ops->reserve(be, &shapes)))
        goto fail;
    *out = m;
    return DSRT_STATUS_OK;
fail_table:
    free(table);
fail:
    dsrt_llama_destroy(m);
    return st;
}

void dsrt_llama_destroy(dsrt_llama *m)
{
    if (!m)
        return;
    decoder_free(&m->d);
    free(m->layers);
    free(m);
}

static dsrt_init_kind llama_init_rule(const dsrt_param *p, const void *user, double *std)
{
    const dsrt_llama_config *c = user;
    const char *nm = p->name;
    size_t len = strlen(nm);
    if (len > 5 && !strcmp(nm + len - 5, ".bias"))
        return DSRT_INIT_ZEROS;
    if (strstr(nm, "norm.weight"))
        return DSRT_INIT_ONES;
    *std = c->initializer_range;
    return DSRT_INIT_NORMAL;
}

dsrt_status dsrt_llama_init(dsrt_llama *m, uint64_t seed)
{
    return dsrt_init_params(m->d.be, m->d.param_mem, m->d.params, m->d.n_params, seed, llama_init_rule, &m->cfg);
}

dsrt_status dsrt_llama_zero_grad(dsrt_llama *m) { return decoder_zero_grad(&m->d); }

dsrt_status dsrt_llama_get_grads_f32(dsrt_llama *m, float *dst) { return decoder_get_grads_f32(&m->d, dst); }

void dsrt_llama_set_param_wait(dsrt_llama *m, dsrt_param_wait_fn fn, void *user)
{
    m->d.wait_fn = fn;
    m->d.wait_user = user;
}

void dsrt_llama_set_grad_slots(dsrt_llama *m, dsrt_grad_slot_fn fn, void *user)
{
    m->d.slot_fn = fn;
    m->d.slot_user = user;
}

void dsrt_llama_set_grad_pieces(dsrt_llama *m, dsrt_grad_piece_fn piece, dsrt_grad_piece_done_fn done,
                                void *user)
{
    m->d.piece_fn = piece;
    m->d.piece_done = done;
    m->d.piece_user = user;
}

/* ---- forward */
/* y (N, OC at stride ldy) = x (N,K) . Wt (OC,K)^T [+ bias]: an nn.Linear
 * writing into part of a wider row */
static dsrt_status linear_into(dsrt_llama *m, void *y, int ldy, const void *x, int K, long w, long b,
                               int N, int OC)
{
    dsrt_backend *be = m->d.be;
    DSRT_TRY(be->ops->gemm(be, 0, 1, N, OC, K, x, K, P(m, w), K, y, ldy, 0));
    if (b >= 0)
        DSRT_TRY(be->ops->bias_forward(be, y, P(m, b), N, OC, ldy));
    return DSRT_STATUS_OK;
}

dsrt_status dsrt_llama_forward(dsrt_llama *m, const int32_t *tokens, const int32_t *targets, int B,
                               int T, dsrt_gpt2_mode mode, float loss_scale, float *loss)
{
    int n_valid = 0;
    decoder *d = &m->d;
    DSRT_TRY(decoder_begin(d, mode, tokens, targets, B, T, &n_valid));
    dsrt_backend *be = d->be;
    const dsrt_llama_config *c = &m->cfg;
    int C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size, N = B * T;
    int NH = c->num_attention_heads, NKV = c->num_key_value_heads, HS = c->head_dim;
    int Q = m->Q, KV = m->KV, W = m->W;
    float eps = c->rms_norm_eps;

    DSRT_TRY(decoder_params_ready(d, m->embed, m->embed));
    DSRT_TRY(be->ops->encoder_forward(be, m->embedded, d->tokens, P(m, (long)m->embed), NULL, B, T, C));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        llama_layer *L = &m->layers[l];
        const long *ix = L->idx;
        DSRT_TRY(decoder_params_ready(d, L->first, L->last));
        void *res = l == 0 ? m->embedded : m->layers[l - 1].residual3;
        /* attention: residual2 = res + o_proj(attn(rope(q, k), v)) of input_layernorm(res) */
        DSRT_TRY(be->ops->rmsnorm_forward(be, L->ln1, L->rstd1, res, P(m, ix[LL_IN_NORM]), N, C, eps));
        DSRT_TRY(linear_into(m, L->qkv, W, L->ln1, C, ix[LL_Q_W], ix[LL_Q_B], N, Q));
        DSRT_TRY(linear_into(m, decoder_at(d, L->qkv, (size_t)Q), W, L->ln1, C, ix[LL_K_W], ix[LL_K_B], N, KV));
        DSRT_TRY(linear_into(m, decoder_at(d, L->qkv, (size_t)(Q + KV)), W, L->ln1, C, ix[LL_V_W],
                             ix[LL_V_B], N, KV));
        DSRT_TRY(be->ops->rope(be, L->qkv, m->rope_cos, m->rope_sin, N, T, NH + NKV, HS, W, 0));
        DSRT_TRY(be->ops->attention_forward(be, L->atty, L->att, L->qkv, B, T, NH, NKV, HS));
        DSRT_TRY(be->ops->matmul_forward(be, m->proj, L->atty, P(m, ix[LL_O_W]), P(m, ix[LL_O_B]), N, Q,
                                         C, DSRT_W_NK));
        DSRT_TRY(be->ops->residual_forward(be, L->residual2, res, m->proj, (size_t)N * C));
        /* MLP: residual3 = residual2 + down(silu(gate(x)) * up(x)), x = post_attention_layernorm */
        DSRT_TRY(be->ops->rmsnorm_forward(be, L->ln2, L->rstd2, L->residual2, P(m, ix[LL_POST_NORM]), N,
                                          C, eps));
        DSRT_TRY(linear_into(m, L->gu, 2 * F, L->ln2, C, ix[LL_GATE_W], ix[LL_GATE_B], N, F));
        DSRT_TRY(linear_into(m, decoder_at(d, L->gu, (size_t)F), 2 * F, L->ln2, C, ix[LL_UP_W], ix[LL_UP_B],
                             N, F));
        DSRT_TRY(be->ops->swiglu_forward(be, L->h, L->gu, N, F));
        DSRT_TRY(be->ops->matmul_forward(be, m->proj, L->h, P(m, ix[LL_DOWN_W]), P(m, ix[LL_DOWN_B]), N,
                                         F, C, DSRT_W_NK));
        DSRT_TRY(be->ops->residual_forward(be, L->residual3, L->residual2, m->proj, (size_t)N * C));
    }
    DSRT_TRY(decoder_params_ready(d, m->norm, d->n_params - 1));
    DSRT_TRY(be->ops->rmsnorm_forward(be, m->lnf, m->rstdf, m->layers[c->num_hidden_layers - 1].residual3,
                                      P(m, (long)m->norm), N, C, eps));
    DSRT_TRY(be->ops->matmul_forward(be, d->logits, m->lnf, P(m, (long)m->head), NULL, N, C, V, DSRT_W_NK));
    return decoder_finish(d, targets, B, T, mode, loss_scale, n_valid, loss);
}

dsrt_status dsrt_llama_get_logits_f32(dsrt_llama *m, float *dst) { return decoder_get_logits_f32(&m->d, dst); }

/* ---- backward */
static dsrt_status grad_at(dsrt_llama *m, long i, void **out) { return decoder_grad_at(&m->d, i, out); }

static void ready(dsrt_grad_ready_fn fn, void *user, long i) { decoder_ready(fn, user, i); }

/* The backward of linear_into for one projection that read x (N,K): its
 * weight's (and bias's) gradients, and dx (N,K) = or += dy . W */
static dsrt_status linear_back(dsrt_llama *m, void *dx, int accumulate, const void *dy, int ldy,
                               const void *x, int K, long w, long b, int N, int OC,
                               dsrt_grad_ready_fn fn, void *user)
{
    dsrt_backend *be = m->d.be;
    void *gw, *gb;
    DSRT_TRY(grad_at(m, b, &gb));
    DSRT_TRY(grad_at(m, w, &gw));
    DSRT_TRY(be->ops->gemm(be, 1, 0, OC, K, N, dy, ldy, x, K, gw, K, 1));
    if (gb)
        DSRT_TRY(be->ops->bias_backward(be, gb, dy, N, OC, ldy));
    ready(fn, user, b);
    ready(fn, user, w);
    return be->ops->gemm(be, 0, 0, N, K, OC, dy, ldy, P(m, w), K, dx, K, accumulate);
}

/* The embedding's gradient rows [v0, v1) into g (row v0 first): with a tied
 * head first the head's part dlogits[:, v0:v1]^T . lnf, then the lookup's */
static dsrt_status embed_rows(void *ctx, void *g, int v0, int v1)
{
    dsrt_llama *m = ctx;
    decoder *d = &m->d;
    dsrt_backend *be = d->be;
    int N = d->cur_B * d->cur_T, C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    if (m->head == m->embed)
        DSRT_TRY(be->ops->gemm(be, 1, 0, v1 - v0, C, N, decoder_at(d, d->logits, (size_t)v0), V,
                               m->lnf, C, g, C, 1));
    return be->ops->encoder_backward(be, g, NULL, m->dresidual, d->tokens, d->cur_B, d->cur_T, C, v0, v1);
}

dsrt_status dsrt_llama_backward(dsrt_llama *m, dsrt_grad_ready_fn fn, void *user)
{
    decoder *d = &m->d;
    DSRT_TRY(decoder_backward_begin(d));
    dsrt_backend *be = d->be;
    const dsrt_llama_config *c = &m->cfg;
    int B = d->cur_B, T = d->cur_T, N = B * T;
    int C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    int NH = c->num_attention_heads, NKV = c->num_key_value_heads, HS = c->head_dim;
    int Q = m->Q, KV = m->KV, W = m->W;
    size_t dsz = d->dsz;

    DSRT_TRY(be->ops->memset0(be, m->dresidual, (size_t)N * C * dsz));
    /* logits hold dlogits after the fused classifier. An untied head's
     * weight gradient here; a tied one's at the end with the embedding's */
    {
        void *gh = NULL;
        if (m->head != m->embed)
            DSRT_TRY(grad_at(m, (long)m->head, &gh));
        DSRT_TRY(be->ops->matmul_backward(be, m->dln, gh, NULL, d->logits, m->lnf, P(m, (long)m->head), N,
                                          C, V, DSRT_W_NK));
        if (gh)
            ready(fn, user, (long)m->head);
    }
    {
        void *g;
        DSRT_TRY(grad_at(m, (long)m->norm, &g));
        DSRT_TRY(be->ops->rmsnorm_backward(be, m->dresidual, g, m->dln,
                                           m->layers[c->num_hidden_layers - 1].residual3,
                                           P(m, (long)m->norm), m->rstdf, N, C));
        ready(fn, user, (long)m->norm);
    }
    for (int l = c->num_hidden_layers - 1; l >= 0; l--) {
        llama_layer *L = &m->layers[l];
        const long *ix = L->idx;
        void *res = l == 0 ? m->embedded : m->layers[l - 1].residual3;
        /* MLP */
        {
            void *gw, *gb;
            DSRT_TRY(grad_at(m, ix[LL_DOWN_B], &gb));
            DSRT_TRY(grad_at(m, ix[LL_DOWN_W], &gw));
            DSRT_TRY(be->ops->matmul_backward(be, m->dh, gw, gb, m->dresidual, L->h, P(m, ix[LL_DOWN_W]), N,
                                              F, C, DSRT_W_NK));
            ready(fn, user, ix[LL_DOWN_B]);
            ready(fn, user, ix[LL_DOWN_W]);
        }
        DSRT_TRY(be->ops->swiglu_backward(be, m->dgu, L->gu, m->dh, N, F));
        DSRT_TRY(linear_back(m, m->dln, 0, decoder_at(d, m->dgu, (size_t)F), 2 * F, L->ln2, C, ix[LL_UP_W],
                             ix[LL_UP_B], N, F, fn, user));
        DSRT_TRY(linear_back(m, m->dln, 1, m->dgu, 2 * F, L->ln2, C, ix[LL_GATE_W], ix[LL_GATE_B], N, F,
                             fn, user));
        {
            void *g;
            DSRT_TRY(grad_at(m, ix[LL_POST_NORM], &g));
            DSRT_TRY(be->ops->rmsnorm_backward(be, m->dresidual, g, m->dln, L->residual2,
                                               P(m, ix[LL_POST_NORM]), L->rstd2, N, C));
            ready(fn, user, ix[LL_POST_NORM]);
        }
        /* attention */
        {
            void *gw, *gb;
            DSRT_TRY(grad_at(m, ix[LL_O_B], &gb));
            DSRT_TRY(grad_at(m, ix[LL_O_W], &gw));
            DSRT_TRY(be->ops->matmul_backward(be, m->datty, gw, gb, m->dresidual, L->atty, P(m, ix[LL_O_W]),
                                              N, Q, C, DSRT_W_NK));
            ready(fn, user, ix[LL_O_B]);
            ready(fn, user, ix[LL_O_W]);
        }
        DSRT_TRY(be->ops->attention_backward(be, m->dqkv, m->datty, L->qkv, L->att, B, T, NH, NKV, HS));
        DSRT_TRY(be->ops->rope(be, m->dqkv, m->rope_cos, m->rope_sin, N, T, NH + NKV, HS, W, 1));
        DSRT_TRY(linear_back(m, m->dln, 0, decoder_at(d, m->dqkv, (size_t)(Q + KV)), W, L->ln1, C, ix[LL_V_W],
                             ix[LL_V_B], N, KV, fn, user));
        DSRT_TRY(linear_back(m, m->dln, 1, decoder_at(d, m->dqkv, (size_t)Q), W, L->ln1, C, ix[LL_K_W],
                             ix[LL_K_B], N, KV, fn, user));
        DSRT_TRY(linear_back(m, m->dln, 1, m->dqkv, W, L->ln1, C, ix[LL_Q_W], ix[LL_Q_B], N, Q, fn, user));
        {
            void *g;
            DSRT_TRY(grad_at(m, ix[LL_IN_NORM], &g));
            DSRT_TRY(be->ops->rmsnorm_backward(be, m->dresidual, g, m->dln, res, P(m, ix[LL_IN_NORM]),
                                               L->rstd1, N, C));
            ready(fn, user, ix[LL_IN_NORM]);
        }
    }
    DSRT_TRY(decoder_embedding_grad(d, m->embed, C, embed_rows, m));
    ready(fn, user, (long)m->embed);
    return DSRT_STATUS_OK;
}
