/* The CUDA ops against the CPU ops (the reference), for every op and every
 * storage type: both backends get the same random inputs (generated in fp32
 * on the host and stored with upload_f32, so both hold the same bits), run
 * forward and backward, and the results, read back with download_f32, must
 * agree within a per-dtype tolerance (see tol_for). Ops that accumulate
 * (+=) start from the same random gradient on both sides. Backward inputs
 * that a forward produced (att, mean, rstd) are copied from the CPU run to
 * the GPU, so each backward is compared on identical inputs.
 * The GPU's reductions must be deterministic: the encoder, matmul, layernorm,
 * rmsnorm and bias backwards are run twice on the GPU and must give the same
 * bits.
 * Without a usable GPU the whole program is skipped (exit 77). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_util.h"

#include "kernels/backend.h"
#include "kernels/common/adamw.h"
#include "kernels/common/softmax.h"
#include "base/internal.h"

/* ---------------------------------------------------------------- helpers */
static float *rnd_array(size_t n, float offset, float scale)
{
    float *a = malloc(n * sizeof(float));
    assert_non_null(a);
    for (size_t i = 0; i < n; i++)
        a[i] = offset + rnd_uniform() * scale;
    return a;
}

/* The largest shapes of every test below (both backends reserve them). */
static const dsrt_backend_shapes SHAPES = {
    .B = 4, .T = 160, .C = 96, .NH = 4, .V = 300, .max_K = 384, .max_OC = 384};

typedef struct pair {
    dsrt_dtype dt;
    dsrt_backend *cpu, *gpu;
} pair;

static pair pair_new(void **state)
{
    pair p = {.dt = *(const dsrt_dtype *)*state};
    OK(dsrt_backend_cpu_create(p.dt, &p.cpu));
    OK(dsrt_backend_cuda_create(p.dt, 0, &p.gpu));
    OK(p.cpu->ops->reserve(p.cpu, &SHAPES));
    OK(p.gpu->ops->reserve(p.gpu, &SHAPES));
    return p;
}

static void pair_free(pair *p)
{
    p->cpu->ops->destroy(p->cpu);
    p->gpu->ops->destroy(p->gpu);
}

/* One tensor on both backends: n elements of the storage type (typed), or
 * n raw fp32 / int32 values (es = 4, !typed). */
typedef struct tens {
    void *c, *g;
    size_t n, es;
    int typed;
} tens;

static tens tens_alloc(pair *p, size_t n, size_t es, int typed)
{
    tens t = {.n = n, .es = es, .typed = typed};
    OK(p->cpu->ops->alloc(p->cpu, n * es, &t.c));
    OK(p->gpu->ops->alloc(p->gpu, n * es, &t.g));
    return t;
}
static tens tens_new(pair *p, size_t n) { return tens_alloc(p, n, dsrt_dtype_size(p->dt), 1); }
static tens raw_new(pair *p, size_t n) { return tens_alloc(p, n, 4, 0); }

static void tens_set_one(dsrt_backend *be, const tens *t, void *dst, const void *host)
{
    if (t->typed)
        OK(be->ops->upload_f32(be, dst, host, t->n));
    else
        OK(be->ops->upload(be, dst, host, t->n * t->es));
}

/* host: n floats (typed or raw fp32) or n int32 (raw) */
static void tens_set(pair *p, const tens *t, const void *host)
{
    tens_set_one(p->cpu, t, t->c, host);
    tens_set_one(p->gpu, t, t->g, host);
}

static tens tens_rand(pair *p, size_t n, float offset, float scale)
{
    tens t = tens_new(p, n);
    float *h = rnd_array(n, offset, scale);
    tens_set(p, &t, h);
    free(h);
    return t;
}

static void tens_free(pair *p, tens *t)
{
    p->cpu->ops->free(p->cpu, t->c);
    p->gpu->ops->free(p->gpu, t->g);
    t->c = t->g = NULL;
}

/* n floats (typed tensors and raw fp32) */
static float *get_f32(dsrt_backend *be, const tens *t, const void *src)
{
    float *h = malloc(t->n * sizeof(float) + 1);
    assert_non_null(h);
    if (t->typed)
        OK(be->ops->download_f32(be, h, src, t->n));
    else
        OK(be->ops->download(be, h, src, t->n * sizeof(float)));
    return h;
}

/* the GPU copy's storage bits */
static void *gpu_bits(pair *p, const tens *t)
{
    void *h = malloc(t->n * t->es + 1);
    assert_non_null(h);
    OK(p->gpu->ops->download(p->gpu, h, t->g, t->n * t->es));
    return h;
}

/* Copy the CPU's values of t to the GPU (a forward's saved output). */
static void cpu_to_gpu(pair *p, const tens *t)
{
    float *h = get_f32(p->cpu, t, t->c);
    tens_set_one(p->gpu, t, t->g, h);
    free(h);
}

/* ---------------------------------------------------------------- tolerances
 * An element passes when |gpu - cpu| <= rel * |cpu| + abs * max|cpu| (the
 * max over the tensor).
 * fp32: both sides compute in fp32 and differ only in summation order (and
 * libm vs CUDA expf/tanhf, a couple of ulps): 1e-4 relative, plus 1e-5 of the
 * tensor's magnitude for the cancellation in sums (5e-5 for long reductions:
 * matmul over K or N, layernorm's dw/db, attention).
 * fp16 / bf16 (eps = 2^-10 / 2^-7, one unit in the last place at 1.0): each
 * side computes in fp32 and rounds each output once to nearest even, so two
 * fp32 values a few fp32 ulps apart round to the same value or to neighbours:
 * at most 1 ulp of the result, i.e. eps * |x|; 2 eps relative leaves a margin.
 * The absolute term (1 ulp of the magnitude) covers results that cancel to
 * far below their terms. Attention gets 4: the GPU rounds d(pre-softmax) to
 * the storage type before the dq/dk GEMMs (the CPU keeps it in fp32), an
 * error of half an ulp on each term, and a 1-ulp difference in a stored
 * probability moves out by up to an ulp of att times |v|. */
typedef struct tol {
    double rel, abs;
} tol;

static tol tol_for(dsrt_dtype dt, int long_sum, double abs_ulps)
{
    if (dt == DSRT_F32)
        return (tol){1e-4, long_sum ? 5e-5 : 1e-5};
    double eps = dt == DSRT_F16 ? 0x1p-10 : 0x1p-7;
    return (tol){2.0 * eps, abs_ulps * eps};
}

/* fp32 results (mean, rstd, losses) from identical inputs, any storage type */
static const tol TOL_F32 = {1e-4, 1e-5};

static void expect_close(const char *what, const pair *p, const float *cpu, const float *gpu,
                         size_t n, tol tl)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)cpu[i]) > scale)
            scale = fabs((double)cpu[i]);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double c = cpu[i], g = gpu[i];
        int ok;
        if (isnan(c) || isnan(g))
            ok = isnan(c) && isnan(g);
        else
            ok = fabs(g - c) <= tl.rel * fabs(c) + tl.abs * scale;
        if (!ok) {
            if (bad < 8)
                print_error("%s (%s): [%zu] cpu %.9g gpu %.9g (|diff| %.3g, allowed %.3g)\n", what,
                            dsrt_dtype_name(p->dt), i, c, g, fabs(g - c),
                            tl.rel * fabs(c) + tl.abs * scale);
            bad++;
        }
    }
    if (bad)
        fail_msg("%s (%s): %zu of %zu values beyond tolerance", what, dsrt_dtype_name(p->dt), bad,
                 n);
}

static void check(pair *p, const tens *t, const char *what, tol tl)
{
    float *c = get_f32(p->cpu, t, t->c);
    float *g = get_f32(p->gpu, t, t->g);
    expect_close(what, p, c, g, t->n, tl);
    free(c);
    free(g);
}

static void expect_same_bits(pair *p, const void *a, const void *b, const tens *t, const char *what)
{
    if (memcmp(a, b, t->n * t->es) != 0)
        fail_msg("%s (%s): two GPU runs differ (not deterministic)", what, dsrt_dtype_name(p->dt));
}

/* ---------------------------------------------------------------- memory */
static void test_memory(void **state)
{
    pair p = pair_new(state);
    size_t n = 1000;
    tens t = tens_new(&p, n);
    float *z = get_f32(p.gpu, &t, t.g);
    for (size_t i = 0; i < n; i++)
        assert_true(z[i] == 0.0f); /* alloc zero-fills */
    free(z);
    float *h = rnd_array(n, 0.0f, 3.0f);
    tens_set(&p, &t, h);
    void *cb = malloc(n * t.es), *gb = gpu_bits(&p, &t);
    OK(p.cpu->ops->download(p.cpu, cb, t.c, n * t.es));
    assert_memory_equal(cb, gb, n * t.es); /* upload_f32 rounds as the CPU does */
    OK(p.gpu->ops->memset0(p.gpu, t.g, n * t.es));
    z = get_f32(p.gpu, &t, t.g);
    for (size_t i = 0; i < n; i++)
        assert_true(z[i] == 0.0f);
    OK(p.gpu->ops->sync(p.gpu));
    free(z);
    free(h);
    free(cb);
    free(gb);
    tens_free(&p, &t);
    pair_free(&p);
}

/* ---------------------------------------------------------------- encoder */
static void test_encoder(void **state)
{
    pair p = pair_new(state);
    int B = 4, T = 150, C = 80, V = SHAPES.V, NT = B * T;
    int32_t *tok = malloc((size_t)NT * sizeof(int32_t));
    for (int i = 0; i < NT; i++) /* few distinct tokens: many repeats to gather */
        tok[i] = (int32_t)(rnd_u64() % 50) * 5 + (i % 3 == 0 ? 1 : 0);
    tok[0] = V - 1;
    tens tokens = raw_new(&p, (size_t)NT);
    tens_set(&p, &tokens, tok);
    tens wte = tens_rand(&p, (size_t)V * C, 0.0f, 1.0f);
    tens wpe = tens_rand(&p, (size_t)T * C, 0.0f, 0.5f);
    tens out = tens_new(&p, (size_t)NT * C);
    OK(p.cpu->ops->encoder_forward(p.cpu, out.c, tokens.c, wte.c, wpe.c, B, T, C));
    OK(p.gpu->ops->encoder_forward(p.gpu, out.g, tokens.g, wte.g, wpe.g, B, T, C));
    check(&p, &out, "encoder out", tol_for(p.dt, 0, 1));

    float *dwte0 = rnd_array((size_t)V * C, 0.0f, 0.1f);
    float *dwpe0 = rnd_array((size_t)T * C, 0.0f, 0.1f);
    tens dwte = tens_new(&p, (size_t)V * C), dwpe = tens_new(&p, (size_t)T * C);
    tens_set(&p, &dwte, dwte0);
    tens_set(&p, &dwpe, dwpe0);
    tens dout = tens_rand(&p, (size_t)NT * C, 0.0f, 1.0f);
    OK(p.cpu->ops->encoder_backward(p.cpu, dwte.c, dwpe.c, dout.c, tokens.c, B, T, C, 0, V));
    OK(p.gpu->ops->encoder_backward(p.gpu, dwte.g, dwpe.g, dout.g, tokens.g, B, T, C, 0, V));
    check(&p, &dwte, "encoder dwte", tol_for(p.dt, 1, 1));
    check(&p, &dwpe, "encoder dwpe", tol_for(p.dt, 0, 1));

    /* the same again on the GPU: the same bits */
    void *w1 = gpu_bits(&p, &dwte), *e1 = gpu_bits(&p, &dwpe);
    tens_set_one(p.gpu, &dwte, dwte.g, dwte0);
    tens_set_one(p.gpu, &dwpe, dwpe.g, dwpe0);
    OK(p.gpu->ops->encoder_backward(p.gpu, dwte.g, dwpe.g, dout.g, tokens.g, B, T, C, 0, V));
    void *w2 = gpu_bits(&p, &dwte), *e2 = gpu_bits(&p, &dwpe);
    expect_same_bits(&p, w1, w2, &dwte, "encoder dwte");
    expect_same_bits(&p, e1, e2, &dwpe, "encoder dwpe");

    free(w1), free(w2), free(e1), free(e2), free(dwte0), free(dwpe0), free(tok);
    tens *all[] = {&tokens, &wte, &wpe, &out, &dwte, &dwpe, &dout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(&p, all[i]);
    pair_free(&p);
}

/* ---------------------------------------------------------------- layernorm */
static void layernorm_case(pair *p, int N, int C)
{
    size_t n = (size_t)N * C;
    tens inp = tens_rand(p, n, 0.3f, 2.0f);
    tens w = tens_rand(p, (size_t)C, 1.0f, 0.3f);
    tens b = tens_rand(p, (size_t)C, 0.0f, 0.3f);
    tens out = tens_new(p, n);
    tens mean = raw_new(p, (size_t)N), rstd = raw_new(p, (size_t)N);
    OK(p->cpu->ops->layernorm_forward(p->cpu, out.c, mean.c, rstd.c, inp.c, w.c, b.c, N, C, 1e-5f));
    OK(p->gpu->ops->layernorm_forward(p->gpu, out.g, mean.g, rstd.g, inp.g, w.g, b.g, N, C, 1e-5f));
    check(p, &out, "layernorm out", tol_for(p->dt, 0, 1));
    check(p, &mean, "layernorm mean", TOL_F32);
    check(p, &rstd, "layernorm rstd", TOL_F32);

    cpu_to_gpu(p, &mean);
    cpu_to_gpu(p, &rstd);
    float *dinp0 = rnd_array(n, 0.0f, 0.5f);
    float *dw0 = rnd_array((size_t)C, 0.0f, 0.5f), *db0 = rnd_array((size_t)C, 0.0f, 0.5f);
    tens dinp = tens_new(p, n), dw = tens_new(p, (size_t)C), db = tens_new(p, (size_t)C);
    tens_set(p, &dinp, dinp0);
    tens_set(p, &dw, dw0);
    tens_set(p, &db, db0);
    tens dout = tens_rand(p, n, 0.0f, 1.0f);
    OK(p->cpu->ops->layernorm_backward(p->cpu, dinp.c, dw.c, db.c, dout.c, inp.c, w.c, mean.c, rstd.c, N,
                                  C));
    OK(p->gpu->ops->layernorm_backward(p->gpu, dinp.g, dw.g, db.g, dout.g, inp.g, w.g, mean.g, rstd.g, N,
                                  C));
    check(p, &dinp, "layernorm dinp", tol_for(p->dt, 0, 1));
    check(p, &dw, "layernorm dw", tol_for(p->dt, 1, 1));
    check(p, &db, "layernorm db", tol_for(p->dt, 1, 1));

    void *a1 = gpu_bits(p, &dw), *b1 = gpu_bits(p, &db);
    tens_set_one(p->gpu, &dinp, dinp.g, dinp0);
    tens_set_one(p->gpu, &dw, dw.g, dw0);
    tens_set_one(p->gpu, &db, db.g, db0);
    OK(p->gpu->ops->layernorm_backward(p->gpu, dinp.g, dw.g, db.g, dout.g, inp.g, w.g, mean.g, rstd.g, N,
                                  C));
    void *a2 = gpu_bits(p, &dw), *b2 = gpu_bits(p, &db);
    expect_same_bits(p, a1, a2, &dw, "layernorm dw");
    expect_same_bits(p, b1, b2, &db, "layernorm db");

    free(a1), free(a2), free(b1), free(b2), free(dinp0), free(dw0), free(db0);
    tens *all[] = {&inp, &w, &b, &out, &mean, &rstd, &dinp, &dw, &db, &dout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(p, all[i]);
}

static void test_layernorm(void **state)
{
    pair p = pair_new(state);
    layernorm_case(&p, SHAPES.B * SHAPES.T, SHAPES.C); /* 3 row chunks of the reductions */
    layernorm_case(&p, 37, 40);                        /* C not a multiple of 32 */
    pair_free(&p);
}

/* ---------------------------------------------------------------- matmul */
static void matmul_case(pair *p, int N, int K, int OC, dsrt_wlayout wl, int with_bias,
                        int with_dinp)
{
    char what[96];
    int long_sum = K > 64 || N > 64;
    tens inp = tens_rand(p, (size_t)N * K, 0.0f, 1.0f);
    tens w = tens_rand(p, (size_t)K * OC, 0.0f, 1.0f);
    tens bias = with_bias ? tens_rand(p, (size_t)OC, 0.0f, 1.0f) : (tens){0};
    tens out = tens_new(p, (size_t)N * OC);
    OK(p->cpu->ops->matmul_forward(p->cpu, out.c, inp.c, w.c, bias.c, N, K, OC, wl));
    OK(p->gpu->ops->matmul_forward(p->gpu, out.g, inp.g, w.g, bias.g, N, K, OC, wl));
    snprintf(what, sizeof what, "matmul N=%d K=%d OC=%d %s%s out", N, K, OC,
             wl == DSRT_W_KN ? "KN" : "NK", with_bias ? " bias" : "");
    check(p, &out, what, tol_for(p->dt, long_sum, 1));

    float *dw0 = rnd_array((size_t)K * OC, 0.0f, 0.5f);
    float *db0 = with_bias ? rnd_array((size_t)OC, 0.0f, 0.5f) : NULL;
    tens dinp = with_dinp ? tens_new(p, (size_t)N * K) : (tens){0};
    tens dw = tens_new(p, (size_t)K * OC);
    tens dbias = with_bias ? tens_new(p, (size_t)OC) : (tens){0};
    tens_set(p, &dw, dw0);
    if (with_bias)
        tens_set(p, &dbias, db0);
    tens dout = tens_rand(p, (size_t)N * OC, 0.0f, 1.0f);
    OK(p->cpu->ops->matmul_backward(p->cpu, dinp.c, dw.c, dbias.c, dout.c, inp.c, w.c, N, K, OC, wl));
    OK(p->gpu->ops->matmul_backward(p->gpu, dinp.g, dw.g, dbias.g, dout.g, inp.g, w.g, N, K, OC, wl));
    what[strlen(what) - 4] = '\0'; /* drop " out" */
    char name[128];
    if (with_dinp) {
        snprintf(name, sizeof name, "%s dinp", what);
        check(p, &dinp, name, tol_for(p->dt, OC > 64, 1));
    }
    snprintf(name, sizeof name, "%s dw", what);
    check(p, &dw, name, tol_for(p->dt, N > 64, 1));
    if (with_bias) {
        snprintf(name, sizeof name, "%s dbias", what);
        check(p, &dbias, name, tol_for(p->dt, N > 64, 1));
    }

    /* determinism of dw and dbias */
    void *w1 = gpu_bits(p, &dw), *b1 = with_bias ? gpu_bits(p, &dbias) : NULL;
    tens_set_one(p->gpu, &dw, dw.g, dw0);
    if (with_bias)
        tens_set_one(p->gpu, &dbias, dbias.g, db0);
    OK(p->gpu->ops->matmul_backward(p->gpu, dinp.g, dw.g, dbias.g, dout.g, inp.g, w.g, N, K, OC, wl));
    void *w2 = gpu_bits(p, &dw);
    expect_same_bits(p, w1, w2, &dw, "matmul dw");
    if (with_bias) {
        void *b2 = gpu_bits(p, &dbias);
        expect_same_bits(p, b1, b2, &dbias, "matmul dbias");
        free(b2);
    }

    free(w1), free(w2), free(b1), free(dw0), free(db0);
    tens *all[] = {&inp, &w, &out, &dw, &dout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(p, all[i]);
    if (with_bias) {
        tens_free(p, &bias);
        tens_free(p, &dbias);
    }
    if (with_dinp)
        tens_free(p, &dinp);
}

static void test_matmul(void **state)
{
    pair p = pair_new(state);
    int NT = SHAPES.B * SHAPES.T, C = SHAPES.C;
    matmul_case(&p, 70, 48, 200, DSRT_W_KN, 1, 1);
    matmul_case(&p, 70, 48, 200, DSRT_W_NK, 1, 1);
    matmul_case(&p, NT, C, 3 * C, DSRT_W_KN, 1, 1);    /* c_attn */
    matmul_case(&p, NT, 4 * C, C, DSRT_W_KN, 1, 1);    /* c_proj of the MLP */
    matmul_case(&p, NT, C, SHAPES.V, DSRT_W_NK, 0, 1); /* tied LM head */
    matmul_case(&p, 33, C, SHAPES.V, DSRT_W_NK, 0, 0); /* dinp skipped */
    matmul_case(&p, 1, 7, 3, DSRT_W_KN, 1, 0);
    pair_free(&p);
}

/* ---------------------------------------------------------------- attention */
/* NH query heads, NKV key/value heads of HS channels (GPT-2: NKV = NH) */
static void attention_case(pair *p, int B, int T, int NH, int NKV, int HS)
{
    char what[96];
    int W = (NH + 2 * NKV) * HS;
    size_t nqkv = (size_t)B * T * W, nout = (size_t)B * T * NH * HS;
    size_t natt = (size_t)B * NH * T * T;
    tens qkv = tens_rand(p, nqkv, 0.0f, 1.5f);
    tens out = tens_new(p, nout), att = tens_new(p, natt);
    OK(p->cpu->ops->attention_forward(p->cpu, out.c, att.c, qkv.c, B, T, NH, NKV, HS));
    OK(p->gpu->ops->attention_forward(p->gpu, out.g, att.g, qkv.g, B, T, NH, NKV, HS));
    snprintf(what, sizeof what, "attention B=%d T=%d NH=%d NKV=%d HS=%d att", B, T, NH, NKV, HS);
    check(p, &att, what, tol_for(p->dt, 1, 1));
    snprintf(what, sizeof what, "attention B=%d T=%d NH=%d NKV=%d HS=%d out", B, T, NH, NKV, HS);
    check(p, &out, what, tol_for(p->dt, 1, 4));

    cpu_to_gpu(p, &att);
    tens dout = tens_rand(p, nout, 0.0f, 1.0f);
    tens dqkv = tens_rand(p, nqkv, 0.0f, 1.0f); /* overwritten */
    OK(p->cpu->ops->attention_backward(p->cpu, dqkv.c, dout.c, qkv.c, att.c, B, T, NH, NKV, HS));
    OK(p->gpu->ops->attention_backward(p->gpu, dqkv.g, dout.g, qkv.g, att.g, B, T, NH, NKV, HS));
    snprintf(what, sizeof what, "attention B=%d T=%d NH=%d NKV=%d HS=%d dqkv", B, T, NH, NKV, HS);
    check(p, &dqkv, what, tol_for(p->dt, 1, 4));

    tens *all[] = {&qkv, &out, &att, &dout, &dqkv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(p, all[i]);
}

static void test_attention(void **state)
{
    pair p = pair_new(state);
    int C = SHAPES.C, NH = SHAPES.NH;
    attention_case(&p, 2, 70, NH, NH, C / NH);       /* T over two warps' widths */
    attention_case(&p, 1, SHAPES.T, 6, 6, C / 6);    /* hs = 16 */
    attention_case(&p, SHAPES.B, 5, NH, NH, C / NH); /* T below a warp */
    attention_case(&p, 2, 70, 6, 2, 16);             /* grouped-query: 3 heads a group */
    attention_case(&p, 1, SHAPES.T, NH, 1, C / NH);  /* multi-query: one k, v head */
    attention_case(&p, SHAPES.B, 5, 6, 3, 16);       /* GQA, T below a warp */
    pair_free(&p);
}

/* ---------------------------------------------------------------- rmsnorm */
static void rmsnorm_case(pair *p, int N, int C, int with_dw)
{
    size_t n = (size_t)N * C;
    tens inp = tens_rand(p, n, 0.3f, 2.0f);
    tens w = tens_rand(p, (size_t)C, 1.0f, 0.3f);
    tens out = tens_new(p, n);
    tens rstd = raw_new(p, (size_t)N);
    OK(p->cpu->ops->rmsnorm_forward(p->cpu, out.c, rstd.c, inp.c, w.c, N, C, 1e-6f));
    OK(p->gpu->ops->rmsnorm_forward(p->gpu, out.g, rstd.g, inp.g, w.g, N, C, 1e-6f));
    check(p, &out, "rmsnorm out", tol_for(p->dt, 0, 1));
    check(p, &rstd, "rmsnorm rstd", TOL_F32);

    cpu_to_gpu(p, &rstd);
    float *dinp0 = rnd_array(n, 0.0f, 0.5f), *dw0 = rnd_array((size_t)C, 0.0f, 0.5f);
    tens dinp = tens_new(p, n), dw = with_dw ? tens_new(p, (size_t)C) : (tens){0};
    tens_set(p, &dinp, dinp0);
    if (with_dw)
        tens_set(p, &dw, dw0);
    tens dout = tens_rand(p, n, 0.0f, 1.0f);
    OK(p->cpu->ops->rmsnorm_backward(p->cpu, dinp.c, dw.c, dout.c, inp.c, w.c, rstd.c, N, C));
    OK(p->gpu->ops->rmsnorm_backward(p->gpu, dinp.g, dw.g, dout.g, inp.g, w.g, rstd.g, N, C));
    check(p, &dinp, with_dw ? "rmsnorm dinp" : "rmsnorm dinp (no dw)", tol_for(p->dt, 0, 1));
    if (with_dw) {
        check(p, &dw, "rmsnorm dw", tol_for(p->dt, 1, 1));
        void *a1 = gpu_bits(p, &dw);
        tens_set_one(p->gpu, &dinp, dinp.g, dinp0);
        tens_set_one(p->gpu, &dw, dw.g, dw0);
        OK(p->gpu->ops->rmsnorm_backward(p->gpu, dinp.g, dw.g, dout.g, inp.g, w.g, rstd.g, N, C));
        void *a2 = gpu_bits(p, &dw);
        expect_same_bits(p, a1, a2, &dw, "rmsnorm dw");
        free(a1), free(a2);
        tens_free(p, &dw);
    }

    free(dinp0), free(dw0);
    tens *all[] = {&inp, &w, &out, &rstd, &dinp, &dout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(p, all[i]);
}

static void test_rmsnorm(void **state)
{
    pair p = pair_new(state);
    rmsnorm_case(&p, SHAPES.B * SHAPES.T, SHAPES.C, 1); /* 3 row chunks of the reduction */
    rmsnorm_case(&p, 37, 40, 1);                        /* C not a multiple of 32 */
    rmsnorm_case(&p, 37, 40, 0);                        /* dw NULL */
    pair_free(&p);
}

/* ---------------------------------------------------------------- rope */
/* Packed q|k|v rows (NH + 2 NKV heads of HS): rope turns the NH + NKV heads of
 * q and k at the start of each row (ld > nh * hs) and leaves v alone. */
static void rope_case(pair *p, int B, int T, int NH, int NKV, int HS)
{
    char what[96];
    int N = B * T, nh = NH + NKV, half = HS / 2, ld = (NH + 2 * NKV) * HS;
    /* a table of theta 10000, as LLaMA's */
    float *cs = malloc((size_t)T * half * sizeof(float));
    float *sn = malloc((size_t)T * half * sizeof(float));
    assert_true(cs && sn);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            float inv_freq = 1.0f / powf(10000.0f, (float)(2 * i) / (float)HS);
            float a = (float)t * inv_freq;
            cs[(size_t)t * half + i] = cosf(a);
            sn[(size_t)t * half + i] = sinf(a);
        }
    tens cosv = raw_new(p, (size_t)T * half), sinv = raw_new(p, (size_t)T * half);
    tens_set(p, &cosv, cs);
    tens_set(p, &sinv, sn);
    tens x = tens_rand(p, (size_t)N * ld, 0.0f, 2.0f);
    OK(p->cpu->ops->rope(p->cpu, x.c, cosv.c, sinv.c, N, T, nh, HS, ld, 0));
    OK(p->gpu->ops->rope(p->gpu, x.g, cosv.g, sinv.g, N, T, nh, HS, ld, 0));
    snprintf(what, sizeof what, "rope N=%d T=%d nh=%d hs=%d ld=%d", N, T, nh, HS, ld);
    check(p, &x, what, tol_for(p->dt, 0, 1));
    /* the inverse (the backward), from the same input on both */
    cpu_to_gpu(p, &x);
    OK(p->cpu->ops->rope(p->cpu, x.c, cosv.c, sinv.c, N, T, nh, HS, ld, 1));
    OK(p->gpu->ops->rope(p->gpu, x.g, cosv.g, sinv.g, N, T, nh, HS, ld, 1));
    snprintf(what, sizeof what, "rope inverse N=%d T=%d nh=%d hs=%d ld=%d", N, T, nh, HS, ld);
    check(p, &x, what, tol_for(p->dt, 0, 1));

    free(cs), free(sn);
    tens *all[] = {&cosv, &sinv, &x};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(p, all[i]);
}

static void test_rope(void **state)
{
    pair p = pair_new(state);
    rope_case(&p, 2, 70, 6, 2, 16);
    rope_case(&p, 1, SHAPES.T, 4, 4, 24);
    pair_free(&p);
}

/* ---------------------------------------------------------------- swiglu */
static void test_swiglu(void **state)
{
    pair p = pair_new(state);
    int N = 37, F = 271;
    size_t n = (size_t)N * F;
    tens gu = tens_rand(&p, 2 * n, 0.0f, 5.0f);
    tens out = tens_new(&p, n);
    OK(p.cpu->ops->swiglu_forward(p.cpu, out.c, gu.c, N, F));
    OK(p.gpu->ops->swiglu_forward(p.gpu, out.g, gu.g, N, F));
    check(&p, &out, "swiglu out", tol_for(p.dt, 0, 1));
    tens dout = tens_rand(&p, n, 0.0f, 1.0f);
    tens dgu = tens_rand(&p, 2 * n, 0.0f, 1.0f); /* overwritten */
    OK(p.cpu->ops->swiglu_backward(p.cpu, dgu.c, gu.c, dout.c, N, F));
    OK(p.gpu->ops->swiglu_backward(p.gpu, dgu.g, gu.g, dout.g, N, F));
    check(&p, &dgu, "swiglu dgu", tol_for(p.dt, 0, 1));
    tens *all[] = {&gu, &out, &dout, &dgu};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(&p, all[i]);
    pair_free(&p);
}

/* ---------------------------------------------------------------- bias */
/* x and dout: N rows of OC at stride ld > OC, starting at column off of
 * their rows (a part of a wider row); the columns outside stay as they are */
static void bias_case(pair *p, int N, int OC, int ld, int off)
{
    char what[96];
    size_t n = (size_t)N * ld, es = dsrt_dtype_size(p->dt);
    tens x = tens_rand(p, n, 0.0f, 2.0f);
    tens bias = tens_rand(p, (size_t)OC, 0.0f, 1.0f);
    OK(p->cpu->ops->bias_forward(p->cpu, (char *)x.c + off * es, bias.c, N, OC, ld));
    OK(p->gpu->ops->bias_forward(p->gpu, (char *)x.g + off * es, bias.g, N, OC, ld));
    snprintf(what, sizeof what, "bias N=%d OC=%d ld=%d off=%d x", N, OC, ld, off);
    check(p, &x, what, tol_for(p->dt, 0, 1));

    float *db0 = rnd_array((size_t)OC, 0.0f, 0.5f);
    tens dbias = tens_new(p, (size_t)OC);
    tens_set(p, &dbias, db0);
    tens dout = tens_rand(p, n, 0.0f, 1.0f);
    const void *dc = (const char *)dout.c + off * es, *dg = (const char *)dout.g + off * es;
    OK(p->cpu->ops->bias_backward(p->cpu, dbias.c, dc, N, OC, ld));
    OK(p->gpu->ops->bias_backward(p->gpu, dbias.g, dg, N, OC, ld));
    snprintf(what, sizeof what, "bias N=%d OC=%d ld=%d off=%d dbias", N, OC, ld, off);
    check(p, &dbias, what, tol_for(p->dt, N > 64, 1));

    void *b1 = gpu_bits(p, &dbias);
    tens_set_one(p->gpu, &dbias, dbias.g, db0);
    OK(p->gpu->ops->bias_backward(p->gpu, dbias.g, dg, N, OC, ld));
    void *b2 = gpu_bits(p, &dbias);
    expect_same_bits(p, b1, b2, &dbias, "bias dbias");

    free(b1), free(b2), free(db0);
    tens *all[] = {&x, &bias, &dbias, &dout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(p, all[i]);
}

static void test_bias(void **state)
{
    pair p = pair_new(state);
    int NT = SHAPES.B * SHAPES.T, C = SHAPES.C;
    bias_case(&p, NT, C, 3 * C, 0);     /* q's part of q|k|v; 3 row chunks */
    bias_case(&p, NT, 2 * C, 3 * C, C); /* k|v's part */
    bias_case(&p, 37, 100, 131, 31);    /* OC not a multiple of 32, odd start */
    pair_free(&p);
}

/* ---------------------------------------------------------------- gelu */
static void test_gelu(void **state)
{
    pair p = pair_new(state);
    size_t n = 10007;
    tens inp = tens_rand(&p, n, 0.0f, 5.0f);
    tens out = tens_new(&p, n);
    OK(p.cpu->ops->gelu_forward(p.cpu, out.c, inp.c, n));
    OK(p.gpu->ops->gelu_forward(p.gpu, out.g, inp.g, n));
    check(&p, &out, "gelu out", tol_for(p.dt, 0, 1));
    tens dout = tens_rand(&p, n, 0.0f, 1.0f);
    tens dinp = tens_new(&p, n);
    OK(p.cpu->ops->gelu_backward(p.cpu, dinp.c, inp.c, dout.c, n));
    OK(p.gpu->ops->gelu_backward(p.gpu, dinp.g, inp.g, dout.g, n));
    check(&p, &dinp, "gelu dinp", tol_for(p.dt, 0, 1));
    tens *all[] = {&inp, &out, &dout, &dinp};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(&p, all[i]);
    pair_free(&p);
}

/* ---------------------------------------------------------------- residual */
static void test_residual(void **state)
{
    pair p = pair_new(state);
    size_t n = 10007;
    tens a = tens_rand(&p, n, 0.0f, 2.0f), b = tens_rand(&p, n, 0.0f, 2.0f);
    tens out = tens_new(&p, n);
    OK(p.cpu->ops->residual_forward(p.cpu, out.c, a.c, b.c, n));
    OK(p.gpu->ops->residual_forward(p.gpu, out.g, a.g, b.g, n));
    check(&p, &out, "residual out", tol_for(p.dt, 0, 1));
    tens da = tens_rand(&p, n, 0.0f, 1.0f), db = tens_rand(&p, n, 0.0f, 1.0f);
    tens dout = tens_rand(&p, n, 0.0f, 1.0f);
    OK(p.cpu->ops->residual_backward(p.cpu, da.c, db.c, dout.c, n));
    OK(p.gpu->ops->residual_backward(p.gpu, da.g, db.g, dout.g, n));
    check(&p, &da, "residual da", tol_for(p.dt, 0, 1));
    check(&p, &db, "residual db", tol_for(p.dt, 0, 1));
    tens *all[] = {&a, &b, &out, &da, &db, &dout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(&p, all[i]);
    pair_free(&p);
}

/* ---------------------------------------------------------------- classifier */
static void test_classifier(void **state)
{
    pair p = pair_new(state);
    int N = 37, V = SHAPES.V, counted = 0;
    int32_t *tgt = malloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++) {
        tgt[i] = i % 5 == 3 ? DSRT_IGNORE_INDEX : (int32_t)(rnd_u64() % (uint64_t)V);
        counted += tgt[i] != DSRT_IGNORE_INDEX;
    }
    tgt[0] = 0;
    tgt[1] = V - 1;
    float dloss = 1.0f / (float)counted;
    tens targets = raw_new(&p, (size_t)N);
    tens_set(&p, &targets, tgt);
    float *lg = rnd_array((size_t)N * V, 0.0f, 4.0f);
    tens logits = tens_new(&p, (size_t)N * V);
    tens_set(&p, &logits, lg);
    tens losses = raw_new(&p, (size_t)N);

    /* losses only: the logits stay as they are */
    void *before = gpu_bits(&p, &logits);
    OK(p.cpu->ops->classifier_forward(p.cpu, losses.c, logits.c, targets.c, N, V, dloss, 0));
    OK(p.gpu->ops->classifier_forward(p.gpu, losses.g, logits.g, targets.g, N, V, dloss, 0));
    check(&p, &losses, "classifier losses (no grad)", TOL_F32);
    void *after = gpu_bits(&p, &logits);
    expect_same_bits(&p, before, after, &logits, "classifier logits without grad");

    /* losses and the gradient in place of the logits */
    OK(p.gpu->ops->memset0(p.gpu, losses.g, (size_t)N * sizeof(float)));
    OK(p.cpu->ops->classifier_forward(p.cpu, losses.c, logits.c, targets.c, N, V, dloss, 1));
    OK(p.gpu->ops->classifier_forward(p.gpu, losses.g, logits.g, targets.g, N, V, dloss, 1));
    check(&p, &losses, "classifier losses", TOL_F32);
    check(&p, &logits, "classifier dlogits", tol_for(p.dt, 1, 1));
    float *gl = get_f32(p.gpu, &logits, logits.g), *ls = get_f32(p.gpu, &losses, losses.g);
    for (int i = 0; i < N; i++) {
        if (tgt[i] != DSRT_IGNORE_INDEX)
            continue;
        assert_true(ls[i] == 0.0f);
        for (int j = 0; j < V; j++)
            assert_true(gl[(size_t)i * V + j] == 0.0f);
    }

    free(gl), free(ls), free(before), free(after), free(lg), free(tgt);
    tens *all[] = {&targets, &logits, &losses};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(&p, all[i]);
    pair_free(&p);
}

/* ---------------------------------------------------------------- optimizer */
/* Both backends run the same FusedAdam steps from the same state. nvcc may
 * contract a*b+c into FMA (as DeepSpeed's build does) where the CPU rounds
 * op by op, so master, m and v may differ in the last bits: master within a
 * few fp32 ulps, m and v within 1e-6 of their magnitudes. The GPU's params
 * are exactly its own master rounded to the storage type. `off` shifts every
 * pointer by that many elements (1: the unaligned, scalar path). */
static void adamw_case(pair *p, size_t n, size_t off, int adamw, int params_mode)
{
    char what[96];
    size_t es = dsrt_dtype_size(p->dt);
    size_t nn = n + off;
    tens master = raw_new(p, nn), m = raw_new(p, nn), v = raw_new(p, nn);
    tens params = tens_new(p, nn), grads = tens_new(p, nn);
    float *h = rnd_array(nn, 0.0f, 1.0f);
    tens_set(p, &master, h);
    tens_set(p, &params, h);
    free(h);
    h = rnd_array(nn, 0.0f, 1e-2f);
    tens_set(p, &m, h);
    free(h);
    h = rnd_array(nn, 1e-4f, 1e-4f); /* v >= 0 */
    tens_set(p, &v, h);
    free(h);
    float gscale = p->dt == DSRT_F32 ? 1.0f : 256.0f;
    for (int s = 1; s <= 3; s++) {
        h = rnd_array(nn, 0.0f, gscale);
        if (s == 1 && nn > 5)
            h[off] = 0.0f, h[off + 1] = 1e-6f * gscale, h[off + 2] = -3e-7f * gscale;
        tens_set(p, &grads, h);
        free(h);
        dsrt_adamw_args a = {.lr = 1e-3f,
                             .beta1 = 0.9f,
                             .beta2 = 0.999f,
                             .eps = 1e-8f,
                             .weight_decay = 0.01f,
                             .grad_mul = 1.0f / gscale,
                             .bc1 = dsrt_adamw_bias_correction(0.9f, s),
                             .bc2 = dsrt_adamw_bias_correction(0.999f, s),
                             .adamw_mode = adamw};
        /* params_mode 0: separate params, 1: NULL, 2: aliasing master (fp32) */
        void *pc = (char *)params.c + off * es, *pg = (char *)params.g + off * es;
        float *mc = (float *)master.c + off, *mg = (float *)master.g + off;
        if (params_mode == 1)
            pc = pg = NULL;
        if (params_mode == 2)
            pc = mc, pg = mg;
        OK(dsrt_backend_adamw_step(p->cpu, pc, mc, (float *)m.c + off, (float *)v.c + off,
                              (char *)grads.c + off * es, n, &a));
        OK(dsrt_backend_adamw_step(p->gpu, pg, mg, (float *)m.g + off, (float *)v.g + off,
                              (char *)grads.g + off * es, n, &a));
    }
    snprintf(what, sizeof what, "adamw n=%zu off=%zu mode=%d params=%d", n, off, adamw,
             params_mode);
    char name[128];
    snprintf(name, sizeof name, "%s master", what);
    check(p, &master, name, (tol){5e-7, 1e-7});
    snprintf(name, sizeof name, "%s m", what);
    check(p, &m, name, (tol){1e-6, 1e-6});
    snprintf(name, sizeof name, "%s v", what);
    check(p, &v, name, (tol){1e-6, 1e-6});
    if (params_mode == 0) {
        snprintf(name, sizeof name, "%s params", what);
        check(p, &params, name, tol_for(p->dt, 0, 1));
        float *gm = get_f32(p->gpu, &master, master.g), *gp = get_f32(p->gpu, &params, params.g);
        for (size_t i = off; i < nn; i++)
            if (dsrt_round_to(p->dt, gm[i]) != gp[i])
                fail_msg("%s: GPU params[%zu] %.9g is not its master %.9g rounded", what, i,
                         (double)gp[i], (double)gm[i]);
        free(gm), free(gp);
    }
    tens *all[] = {&master, &m, &v, &params, &grads};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(p, all[i]);
}

static void test_adamw(void **state)
{
    pair p = pair_new(state);
    for (int adamw = 0; adamw <= 1; adamw++) {
        adamw_case(&p, 100003, 0, adamw, 0); /* packs of 4 and a tail */
        adamw_case(&p, 1001, 1, adamw, 0);   /* unaligned: the scalar loop */
    }
    adamw_case(&p, 4099, 0, 1, 1); /* params NULL */
    if (p.dt == DSRT_F32)
        adamw_case(&p, 4099, 0, 1, 2); /* params aliasing master */
    pair_free(&p);
}

static void stats_case(pair *p, size_t n, size_t off, float special, size_t at)
{
    size_t es = dsrt_dtype_size(p->dt);
    tens g = tens_new(p, n + off);
    float *h = rnd_array(n + off, 0.0f, 2.0f);
    if (special != 0.0f)
        h[off + at] = special;
    tens_set(p, &g, h);
    free(h);
    double sc = 0, sg = 0, sg2 = 0;
    int bc = -1, bg = -1, bg2 = -1;
    OK(p->cpu->ops->grad_stats(p->cpu, (char *)g.c + off * es, n, &sc, &bc));
    OK(p->gpu->ops->grad_stats(p->gpu, (char *)g.g + off * es, n, &sg, &bg));
    OK(p->gpu->ops->grad_stats(p->gpu, (char *)g.g + off * es, n, &sg2, &bg2));
    if (bc != bg)
        fail_msg("grad_stats n=%zu (%s): nonfinite cpu %d gpu %d", n, dsrt_dtype_name(p->dt), bc,
                 bg);
    if (special != 0.0f && !isfinite(dsrt_round_to(p->dt, special)))
        assert_int_equal(bg, 1);
    if (!bc && fabs(sg - sc) > 1e-12 * sc)
        fail_msg("grad_stats n=%zu off=%zu (%s): sumsq cpu %.17g gpu %.17g", n, off,
                 dsrt_dtype_name(p->dt), sc, sg);
    if (bc)
        assert_false(isfinite(sg));
    assert_memory_equal(&sg, &sg2, sizeof sg); /* deterministic */
    assert_int_equal(bg, bg2);
    tens_free(p, &g);
}

static void test_grad_stats(void **state)
{
    pair p = pair_new(state);
    static const size_t sizes[] = {1, 3, 1000, 100003, 5000011};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        stats_case(&p, sizes[k], 0, 0.0f, 0);
        stats_case(&p, sizes[k], 1, 0.0f, 0);
    }
    stats_case(&p, 100003, 0, INFINITY, 100002);
    stats_case(&p, 100003, 1, -INFINITY, 0);
    stats_case(&p, 5000011, 0, NAN, 2500000);
    stats_case(&p, 1000, 0, 70000.0f, 999); /* fp16: overflows to inf */
    stats_case(&p, 1000, 0, 65504.0f, 5);   /* fp16 max: finite */
    double s = -1;
    int b = -1;
    OK(p.gpu->ops->grad_stats(p.gpu, NULL, 0, &s, &b));
    assert_true(s == 0.0 && b == 0);
    pair_free(&p);
}

/* ---------------------------------------------------------------- main */
static dsrt_dtype dt_f32 = DSRT_F32, dt_f16 = DSRT_F16, dt_bf16 = DSRT_BF16;

#define GPU_TEST(f, name)                                                                          \
    {name "_fp32", f, NULL, NULL, &dt_f32}, {name "_fp16", f, NULL, NULL, &dt_f16},                \
    {                                                                                              \
        name "_bf16", f, NULL, NULL, &dt_bf16                                                      \
    }

int main(void)
{
    dsrt_backend *be = NULL;
    dsrt_status st = dsrt_backend_cuda_create(DSRT_F32, 0, &be);
    if (st == DSRT_STATUS_UNSUPPORTED) {
        printf("SKIP: no usable CUDA GPU (%s)\n", dsrt_error_message());
        return 77;
    }
    if (st != DSRT_STATUS_OK) {
        fprintf(stderr, "cuda backend: %s\n", dsrt_error_message());
        return 1;
    }
    be->ops->destroy(be);

    const struct CMUnitTest tests[] = {
        GPU_TEST(test_memory, "memory"),       GPU_TEST(test_encoder, "encoder"),
        GPU_TEST(test_layernorm, "layernorm"), GPU_TEST(test_matmul, "matmul"),
        GPU_TEST(test_attention, "attention"), GPU_TEST(test_rmsnorm, "rmsnorm"),
        GPU_TEST(test_rope, "rope"),           GPU_TEST(test_swiglu, "swiglu"),
        GPU_TEST(test_bias, "bias"),           GPU_TEST(test_gelu, "gelu"),
        GPU_TEST(test_residual, "residual"),   GPU_TEST(test_classifier, "classifier"),
        GPU_TEST(test_adamw, "adamw"),         GPU_TEST(test_grad_stats, "grad_stats"),
    };
    return cmocka_run_group_tests_name("ops_gpu", tests, NULL, NULL);
}
