/* The CPU ops, one table row each:
 *  - storage conversions against the compiler's own fp16 (and exhaustive
 *    bf16/fp16 round trips);
 *  - a finite-difference gradient check of every op's backward against its
 *    forward. The kernels compute in fp32, so the perturbed forwards run in
 *    fp32 and the objective sum(w * out) is accumulated in double; with
 *    central differences (h = 1e-2 on O(1) inputs) the truncation error is
 *    ~h^2 and the rounding error ~1e-6 / h, so 1e-3 + 1e-2 |g| separates a
 *    correct gradient from a wrong one by orders of magnitude;
 *  - 16-bit storage: an op on fp16/bf16 data gives exactly the fp32 op's
 *    result rounded once to the storage type (the contract "compute in fp32,
 *    round each output once, nearest even"). */
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
#include "kernels/cpu/cpu_common.h"
#include "kernels/common/gelu.h"
#include "base/internal.h"

/* ---------------------------------------------------------------- helpers */
static float *rnd_array(size_t n, float scale)
{
    float *a = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        a[i] = rnd_uniform() * scale;
    return a;
}
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

static dsrt_backend *make_cpu(dsrt_dtype dt, int B, int T, int C, int NH, int V, int K, int OC)
{
    dsrt_backend *be = NULL;
    assert_int_equal(dsrt_backend_cpu_create(dt, &be), DSRT_STATUS_OK);
    dsrt_backend_shapes s = {.B = B, .T = T, .C = C, .NH = NH, .V = V, .max_K = K, .max_OC = OC};
    assert_int_equal(be->ops->reserve(be, &s), DSRT_STATUS_OK);
    return be;
}

static double dot_d(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* Central differences of `loss` wrt x[i] at `count` random positions. */
typedef double (*loss_fn)(void *ctx);
static void fd_check(const char *what, float *x, size_t n, const float *grad, loss_fn loss,
                     void *ctx, int count)
{
    const float h = 1e-2f;
    int bad = 0;
    for (int k = 0; k < count; k++) {
        size_t i = (size_t)(rnd_u64() % n);
        float orig = x[i];
        x[i] = orig + h;
        double lp = loss(ctx);
        x[i] = orig - h;
        double lm = loss(ctx);
        x[i] = orig;
        double fd = (lp - lm) / (2.0 * (double)h);
        double tol = 1e-3 + 1e-2 * fabs(fd);
        if (fabs(fd - grad[i]) > tol) {
            print_error("%s: d/dx[%zu]: analytic %.7g, finite difference %.7g\n", what, i,
                        (double)grad[i], fd);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

/* ---------------------------------------------------------------- conversions */
static void test_fp16_matches_compiler(void **state)
{
    (void)state;
#if defined(__FLT16_MAX__)
    /* every fp16 bit pattern round-trips, and random fp32 values round as
     * the compiler's _Float16 conversion (IEEE, nearest even) does */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dsrt_f16_to_f32((uint16_t)h);
        _Float16 ref;
        uint16_t rb = (uint16_t)h;
        memcpy(&ref, &rb, 2);
        if (isnan(f)) {
            assert_true(isnan((float)ref));
            continue;
        }
        assert_true(f == (float)ref);
        assert_int_equal(dsrt_f32_to_f16(f), h);
    }
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)rnd_u64();
        float f = dsrt_bits_f32(u);
        if (isnan(f))
            continue;
        _Float16 r = (_Float16)f;
        uint16_t rb;
        memcpy(&rb, &r, 2);
        if (dsrt_f32_to_f16(f) != rb)
            fail_msg("fp16 rounding of %a (0x%08x): got 0x%04x, compiler 0x%04x", (double)f, u,
                     dsrt_f32_to_f16(f), rb);
    }
#else
    skip();
#endif
    /* the edges, written out */
    assert_int_equal(dsrt_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(dsrt_f32_to_f16(65519.996f), 0x7bff);
    assert_int_equal(dsrt_f32_to_f16(65520.0f), 0x7c00); /* overflows as a GPU does */
    assert_int_equal(dsrt_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(dsrt_f32_to_f16(0x1.0p-24f), 0x0001);  /* smallest subnormal */
    assert_int_equal(dsrt_f32_to_f16(0x1.0p-25f), 0x0000);  /* tie to even: 0 */
    assert_int_equal(dsrt_f32_to_f16(0x1.8p-24f), 0x0002);  /* tie to even: 2 */
    assert_true(isnan(dsrt_f16_to_f32(dsrt_f32_to_f16(NAN))));
}

static void test_bf16_rounding(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dsrt_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            assert_int_equal(dsrt_f32_to_bf16(f), h);
    }
    /* ties go to the even neighbour; anything above a tie rounds up */
    assert_int_equal(dsrt_f32_to_bf16(dsrt_bits_f32(0x3f808000u)), 0x3f80);
    assert_int_equal(dsrt_f32_to_bf16(dsrt_bits_f32(0x3f818000u)), 0x3f82);
    assert_int_equal(dsrt_f32_to_bf16(dsrt_bits_f32(0x3f808001u)), 0x3f81);
    assert_int_equal(dsrt_f32_to_bf16(dsrt_bits_f32(0x7f7fffffu)), 0x7f80); /* to inf */
    assert_true(isnan(dsrt_bf16_to_f32(dsrt_f32_to_bf16(NAN))));
    /* random values: compare with the definition (nearest, ties to even) */
    for (int i = 0; i < 1000000; i++) {
        float f = dsrt_bits_f32((uint32_t)rnd_u64());
        if (isnan(f) || isinf(f) || fabsf(f) > 0x1.fep127f) /* near the top: tested above */
            continue;
        float r = dsrt_bf16_to_f32(dsrt_f32_to_bf16(f));
        uint32_t u = dsrt_f32_bits(f);
        float lo = dsrt_bits_f32(u & 0xffff0000u), hi = dsrt_bits_f32((u & 0xffff0000u) + 0x10000u);
        double dl = fabs((double)f - lo), dh = fabs((double)f - hi);
        float want = dl < dh ? lo : dh < dl ? hi : ((dsrt_f32_bits(lo) >> 16) & 1 ? hi : lo);
        if (dsrt_f32_bits(r) != dsrt_f32_bits(want))
            fail_msg("bf16 rounding of %a", (double)f);
    }
}

/* ---------------------------------------------------------------- finite differences */
typedef struct op_ctx {
    dsrt_backend *be;
    int B, T, C, NH, V, K, OC;
    int NKV, HS, ld;    /* attention's key/value heads and head size; a row stride */
    dsrt_wlayout wl;
    float *x[4];  /* inputs */
    float *out;   /* forward output */
    float *w;     /* objective weights (= dout) */
    size_t nout;
    int32_t *tok;
    float *aux, *aux2; /* mean/rstd, att */
} op_ctx;

static double loss_matmul(void *p)
{
    op_ctx *c = p;
    int N = c->B * c->T;
    assert_int_equal(c->be->ops->matmul_forward(c->be, c->out, c->x[0], c->x[1], c->x[2], N, c->K, c->OC,
                                           c->wl),
                     DSRT_STATUS_OK);
    return dot_d(c->out, c->w, c->nout);
}

static void run_matmul_fd(dsrt_wlayout wl)
{
    op_ctx c = {.B = 2, .T = 5, .K = 7, .OC = 9, .wl = wl};
    int N = c.B * c.T;
    c.be = make_cpu(DSRT_F32, c.B, c.T, 8, 1, 16, 16, 16);
    c.x[0] = rnd_array((size_t)N * c.K, 1.0f);
    c.x[1] = rnd_array((size_t)c.K * c.OC, 1.0f);
    c.x[2] = rnd_array(c.OC, 1.0f);
    c.nout = (size_t)N * c.OC;
    c.out = zeros(c.nout);
    c.w = rnd_array(c.nout, 1.0f);
    float *dx = zeros((size_t)N * c.K), *dw = zeros((size_t)c.K * c.OC), *db = zeros(c.OC);
    assert_int_equal(c.be->ops->matmul_backward(c.be, dx, dw, db, c.w, c.x[0], c.x[1], N, c.K, c.OC, wl),
                     DSRT_STATUS_OK);
    fd_check("matmul dinp", c.x[0], (size_t)N * c.K, dx, loss_matmul, &c, 30);
    fd_check("matmul dweight", c.x[1], (size_t)c.K * c.OC, dw, loss_matmul, &c, 30);
    fd_check("matmul dbias", c.x[2], c.OC, db, loss_matmul, &c, 9);
    /* dw and dbias accumulate: a second backward doubles them */
    float dw0 = dw[3], db0 = db[2];
    assert_int_equal(c.be->ops->matmul_backward(c.be, NULL, dw, db, c.w, c.x[0], c.x[1], N, c.K, c.OC, wl),
                     DSRT_STATUS_OK);
    assert_float_equal(dw[3], 2 * dw0, 1e-5 * fabsf(dw0) + 1e-6);
    assert_float_equal(db[2], 2 * db0, 1e-5 * fabsf(db0) + 1e-6);
    for (int i = 0; i < 3; i++)
        free(c.x[i]);
    free(c.out), free(c.w), free(dx), free(dw), free(db);
    c.be->ops->destroy(c.be);
}

static void test_fd_matmul(void **state)
{
    (void)state;
    run_matmul_fd(DSRT_W_KN);
    run_matmul_fd(DSRT_W_NK);
}

static double loss_layernorm(void *p)
{
    op_ctx *c = p;
    int N = c->B * c->T;
    assert_int_equal(c->be->ops->layernorm_forward(c->be, c->out, c->aux, c->aux + N, c->x[0], c->x[1],
                                              c->x[2], N, c->C, 1e-5f),
                     DSRT_STATUS_OK);
    return dot_d(c->out, c->w, c->nout);
}

static void test_fd_layernorm(void **state)
{
    (void)state;
    op_ctx c = {.B = 3, .T = 4, .C = 70}; /* C > 64: two channel blocks in the reduction */
    int N = c.B * c.T;
    c.be = make_cpu(DSRT_F32, c.B, c.T, c.C, 1, 8, c.C, c.C);
    c.nout = (size_t)N * c.C;
    c.x[0] = rnd_array(c.nout, 2.0f);
    c.x[1] = rnd_array(c.C, 1.0f);
    c.x[2] = rnd_array(c.C, 1.0f);
    c.out = zeros(c.nout);
    c.aux = zeros(2 * (size_t)N);
    c.w = rnd_array(c.nout, 1.0f);
    loss_layernorm(&c);
    float *dx = rnd_array(c.nout, 1.0f), *dx0 = malloc(c.nout * sizeof(float));
    memcpy(dx0, dx, c.nout * sizeof(float)); /* dinp accumulates: start from noise */
    float *dw = zeros(c.C), *db = zeros(c.C);
    assert_int_equal(c.be->ops->layernorm_backward(c.be, dx, dw, db, c.w, c.x[0], c.x[1], c.aux,
                                              c.aux + N, N, c.C),
                     DSRT_STATUS_OK);
    for (size_t i = 0; i < c.nout; i++)
        dx[i] -= dx0[i];
    fd_check("layernorm dinp", c.x[0], c.nout, dx, loss_layernorm, &c, 40);
    fd_check("layernorm dweight", c.x[1], c.C, dw, loss_layernorm, &c, 20);
    fd_check("layernorm dbias", c.x[2], c.C, db, loss_layernorm, &c, 20);
    for (int i = 0; i < 3; i++)
        free(c.x[i]);
    free(c.out), free(c.w), free(c.aux), free(dx), free(dx0), free(dw), free(db);
    c.be->ops->destroy(c.be);
}

static double loss_attention(void *p)
{
    op_ctx *c = p;
    assert_int_equal(c->be->ops->attention_forward(c->be, c->out, c->aux, c->x[0], c->B, c->T, c->NH,
                                                   c->NKV, c->HS),
                     DSRT_STATUS_OK);
    return dot_d(c->out, c->w, c->nout);
}

/* NH query heads over NKV key/value heads of HS channels (GPT-2: NKV = NH) */
static void run_attention_fd(int B, int T, int NH, int NKV, int HS)
{
    op_ctx c = {.B = B, .T = T, .C = NH * HS, .NH = NH, .NKV = NKV, .HS = HS};
    size_t N = (size_t)B * T, W = (size_t)(NH + 2 * NKV) * HS;
    c.be = make_cpu(DSRT_F32, B, T, NH * HS, NH, 8, (int)W, (int)W);
    c.x[0] = rnd_array(N * W, 1.5f);
    c.nout = N * NH * HS;
    c.out = zeros(c.nout);
    c.aux = zeros((size_t)B * NH * T * T);
    c.w = rnd_array(c.nout, 1.0f);
    loss_attention(&c);
    /* causal: probabilities sum to one over keys 0..t and are 0 above */
    for (int bh = 0; bh < B * NH; bh++)
        for (int t = 0; t < T; t++) {
            const float *row = c.aux + ((size_t)bh * T + t) * T;
            double s = 0;
            for (int j = 0; j < T; j++) {
                if (j > t)
                    assert_true(row[j] == 0.0f);
                s += row[j];
            }
            assert_float_equal(s, 1.0, 1e-5);
        }
    float *dqkv = rnd_array(N * W, 1.0f); /* overwritten */
    assert_int_equal(c.be->ops->attention_backward(c.be, dqkv, c.w, c.x[0], c.aux, B, T, NH, NKV, HS),
                     DSRT_STATUS_OK);
    fd_check("attention dqkv", c.x[0], N * W, dqkv, loss_attention, &c, 120);
    free(c.x[0]), free(c.out), free(c.aux), free(c.w), free(dqkv);
    c.be->ops->destroy(c.be);
}

static void test_fd_attention(void **state)
{
    (void)state;
    run_attention_fd(2, 5, 3, 3, 4);
    run_attention_fd(1, 70, 2, 2, 4); /* T > the 64-row block of the triangular products */
    run_attention_fd(2, 6, 4, 2, 3); /* grouped-query: two query heads per key/value head */
    run_attention_fd(1, 67, 3, 1, 4); /* multi-query */
    /* a query head count that is not a multiple of the key/value heads is refused */
    dsrt_backend *be = make_cpu(DSRT_F32, 1, 4, 12, 3, 8, 12, 12);
    float buf[1024] = {0};
    assert_int_equal(be->ops->attention_forward(be, buf, buf, buf, 1, 2, 3, 2, 2),
                     DSRT_STATUS_INVALID_ARGUMENT);
    be->ops->destroy(be);
}

/* ---- RMSNorm: x[0] input (N,C), x[1] weight (C); aux rstd */
static double loss_rmsnorm(void *p)
{
    op_ctx *c = p;
    assert_int_equal(c->be->ops->rmsnorm_forward(c->be, c->out, c->aux, c->x[0], c->x[1],
                                                 c->B * c->T, c->C, 1e-6f),
                     DSRT_STATUS_OK);
    return dot_d(c->out, c->w, c->nout);
}

static void test_fd_rmsnorm(void **state)
{
    (void)state;
    op_ctx c = {.B = 3, .T = 5, .C = 70};
    int N = c.B * c.T;
    c.be = make_cpu(DSRT_F32, c.B, c.T, c.C, 2, 8, c.C, c.C);
    c.x[0] = rnd_array((size_t)N * c.C, 1.5f);
    c.x[1] = rnd_array(c.C, 1.0f);
    c.nout = (size_t)N * c.C;
    c.out = zeros(c.nout);
    c.aux = zeros(N);
    c.w = rnd_array(c.nout, 1.0f);
    loss_rmsnorm(&c);
    /* the saved statistic is 1/rms */
    for (int i = 0; i < N; i++) {
        double ss = 0;
        for (int k = 0; k < c.C; k++)
            ss += (double)c.x[0][(size_t)i * c.C + k] * c.x[0][(size_t)i * c.C + k];
        assert_float_equal(c.aux[i], 1.0 / sqrt(ss / c.C + 1e-6), 1e-5 * c.aux[i]);
    }
    float *dx0 = rnd_array(c.nout, 1.0f), *dx = malloc(c.nout * sizeof(float));
    memcpy(dx, dx0, c.nout * sizeof(float));
    float *dw = rnd_array(c.C, 1.0f), *dw0 = malloc((size_t)c.C * sizeof(float));
    memcpy(dw0, dw, (size_t)c.C * sizeof(float));
    assert_int_equal(c.be->ops->rmsnorm_backward(c.be, dx, dw, c.w, c.x[0], c.x[1], c.aux, N, c.C),
                     DSRT_STATUS_OK);
    /* both accumulate: take the old values off before comparing */
    for (size_t i = 0; i < c.nout; i++)
        dx[i] -= dx0[i];
    for (int i = 0; i < c.C; i++)
        dw[i] -= dw0[i];
    fd_check("rmsnorm dinp", c.x[0], c.nout, dx, loss_rmsnorm, &c, 60);
    fd_check("rmsnorm dweight", c.x[1], c.C, dw, loss_rmsnorm, &c, 30);
    free(c.x[0]), free(c.x[1]), free(c.out), free(c.aux), free(c.w), free(dx), free(dx0), free(dw), free(dw0);
    c.be->ops->destroy(c.be);
}

/* ---- rotary embeddings: x[0] (N rows of ld), the first nh heads turned;
 * cos/sin tables in x[1], x[2] */
static double loss_rope(void *p)
{
    op_ctx *c = p;
    size_t n = (size_t)c->B * c->T * c->ld;
    memcpy(c->out, c->x[0], n * sizeof(float));
    assert_int_equal(c->be->ops->rope(c->be, c->out, c->x[1], c->x[2], c->B * c->T, c->T, c->NH,
                                      c->HS, c->ld, 0),
                     DSRT_STATUS_OK);
    return dot_d(c->out, c->w, c->nout);
}

static void test_fd_rope(void **state)
{
    (void)state;
    op_ctx c = {.B = 2, .T = 7, .NH = 3, .HS = 6, .ld = 25};
    size_t N = (size_t)c.B * c.T, n = N * c.ld;
    int half = c.HS / 2;
    c.be = make_cpu(DSRT_F32, c.B, c.T, 18, 3, 8, 25, 25);
    c.x[0] = rnd_array(n, 1.5f);
    c.x[1] = zeros((size_t)c.T * half);
    c.x[2] = zeros((size_t)c.T * half);
    for (int t = 0; t < c.T; t++)
        for (int i = 0; i < half; i++) {
            double a = t * pow(10000.0, -2.0 * i / c.HS);
            c.x[1][t * half + i] = (float)cos(a);
            c.x[2][t * half + i] = (float)sin(a);
        }
    c.nout = n;
    c.out = zeros(n);
    c.w = rnd_array(n, 1.0f);
    loss_rope(&c);
    /* transformers' rotate-half form at one element, and columns past the heads untouched */
    {
        int r = 9, t = r % c.T, h = 1, i = 2;
        size_t b = (size_t)r * c.ld + (size_t)h * c.HS;
        float x1 = c.x[0][b + i], x2 = c.x[0][b + half + i];
        float co = c.x[1][t * half + i], si = c.x[2][t * half + i];
        assert_float_equal(c.out[b + i], x1 * co - x2 * si, 1e-6);
        assert_float_equal(c.out[b + half + i], x2 * co + x1 * si, 1e-6);
        for (int k = c.NH * c.HS; k < c.ld; k++)
            assert_true(c.out[(size_t)r * c.ld + k] == c.x[0][(size_t)r * c.ld + k]);
    }
    /* the backward is the inverse turn applied to the output gradient */
    float *g = malloc(n * sizeof(float));
    memcpy(g, c.w, n * sizeof(float));
    assert_int_equal(c.be->ops->rope(c.be, g, c.x[1], c.x[2], (int)N, c.T, c.NH, c.HS, c.ld, 1),
                     DSRT_STATUS_OK);
    fd_check("rope dx", c.x[0], n, g, loss_rope, &c, 80);
    /* an odd head size, rows narrower than the heads, no positions: refused */
    assert_int_equal(c.be->ops->rope(c.be, g, c.x[1], c.x[2], (int)N, c.T, c.NH, 5, c.ld, 0),
                     DSRT_STATUS_INVALID_ARGUMENT);
    assert_int_equal(c.be->ops->rope(c.be, g, c.x[1], c.x[2], (int)N, c.T, 5, c.HS, c.ld, 0),
                     DSRT_STATUS_INVALID_ARGUMENT);
    assert_int_equal(c.be->ops->rope(c.be, g, c.x[1], c.x[2], (int)N, 0, c.NH, c.HS, c.ld, 0),
                     DSRT_STATUS_INVALID_ARGUMENT);
    free(c.x[0]), free(c.x[1]), free(c.x[2]), free(c.out), free(c.w), free(g);
    c.be->ops->destroy(c.be);
}

/* ---- SwiGLU: x[0] gate|up (N, 2F) */
static double loss_swiglu(void *p)
{
    op_ctx *c = p;
    assert_int_equal(c->be->ops->swiglu_forward(c->be, c->out, c->x[0], c->B * c->T, c->C),
                     DSRT_STATUS_OK);
    return dot_d(c->out, c->w, c->nout);
}

static void test_fd_swiglu(void **state)
{
    (void)state;
    op_ctx c = {.B = 2, .T = 3, .C = 11}; /* C plays F */
    size_t N = (size_t)c.B * c.T;
    c.be = make_cpu(DSRT_F32, c.B, c.T, 8, 2, 8, 22, 22);
    c.x[0] = rnd_array(N * 2 * c.C, 3.0f);
    c.nout = N * c.C;
    c.out = zeros(c.nout);
    c.w = rnd_array(c.nout, 1.0f);
    loss_swiglu(&c);
    float g = c.x[0][0], u = c.x[0][c.C];
    assert_float_equal(c.out[0], g / (1.0 + exp(-g)) * u, 1e-5 * (1 + fabs(c.out[0])));
    float *dgu = rnd_array(N * 2 * c.C, 1.0f); /* overwritten */
    assert_int_equal(c.be->ops->swiglu_backward(c.be, dgu, c.x[0], c.w, (int)N, c.C), DSRT_STATUS_OK);
    fd_check("swiglu dgate|dup", c.x[0], N * 2 * c.C, dgu, loss_swiglu, &c, 80);
    free(c.x[0]), free(c.out), free(c.w), free(dgu);
    c.be->ops->destroy(c.be);
}

/* ---- a bias over part of wider rows: x[0] (N, ld), x[1] bias (OC) */
static double loss_bias(void *p)
{
    op_ctx *c = p;
    size_t n = (size_t)c->B * c->T * c->ld;
    memcpy(c->out, c->x[0], n * sizeof(float));
    assert_int_equal(c->be->ops->bias_forward(c->be, c->out, c->x[1], c->B * c->T, c->OC, c->ld),
                     DSRT_STATUS_OK);
    return dot_d(c->out, c->w, c->nout);
}

static void test_fd_bias(void **state)
{
    (void)state;
    op_ctx c = {.B = 3, .T = 30, .OC = 70, .ld = 83};
    size_t N = (size_t)c.B * c.T, n = N * c.ld;
    c.be = make_cpu(DSRT_F32, c.B, c.T, 8, 2, 8, 83, 83);
    c.x[0] = rnd_array(n, 1.0f);
    c.x[1] = rnd_array(c.OC, 1.0f);
    c.nout = n;
    c.out = zeros(n);
    c.w = rnd_array(n, 1.0f);
    loss_bias(&c);
    assert_true(c.out[c.ld - 1] == c.x[0][c.ld - 1]); /* past OC: untouched */
    float *db = rnd_array(c.OC, 1.0f), *db0 = malloc((size_t)c.OC * sizeof(float));
    memcpy(db0, db, (size_t)c.OC * sizeof(float));
    assert_int_equal(c.be->ops->bias_backward(c.be, db, c.w, (int)N, c.OC, c.ld), DSRT_STATUS_OK);
    for (int i = 0; i < c.OC; i++)
        db[i] -= db0[i];
    fd_check("bias dbias", c.x[1], c.OC, db, loss_bias, &c, 40);
    assert_int_equal(c.be->ops->bias_forward(c.be, c.out, c.x[1], (int)N, c.OC, c.OC - 1),
                     DSRT_STATUS_INVALID_ARGUMENT);
    free(c.x[0]), free(c.x[1]), free(c.out), free(c.w), free(db), free(db0);
    c.be->ops->destroy(c.be);
}

static double loss_gelu(void *p)
{
    op_ctx *c = p;
    assert_int_equal(c->be->ops->gelu_forward(c->be, c->out, c->x[0], c->nout), DSRT_STATUS_OK);
    return dot_d(c->out, c->w, c->nout);
}

static void test_fd_gelu(void **state)
{
    (void)state;
    op_ctx c = {.nout = 300};
    c.be = make_cpu(DSRT_F32, 1, 1, 8, 1, 8, 8, 8);
    c.x[0] = rnd_array(c.nout, 4.0f);
    c.out = zeros(c.nout);
    c.w = rnd_array(c.nout, 1.0f);
    float *dx = zeros(c.nout);
    assert_int_equal(c.be->ops->gelu_backward(c.be, dx, c.x[0], c.w, c.nout), DSRT_STATUS_OK);
    fd_check("gelu", c.x[0], c.nout, dx, loss_gelu, &c, 60);
    /* values from torch.nn.functional.gelu(x, approximate="tanh") */
    assert_float_equal(dsrt_gelu(1.0f), 0.8411920070648193f, 1e-6);
    assert_float_equal(dsrt_gelu(-2.5f), -0.015084296464920044f, 1e-7);
    free(c.x[0]), free(c.out), free(c.w), free(dx);
    c.be->ops->destroy(c.be);
}

static double loss_residual(void *p)
{
    op_ctx *c = p;
    assert_int_equal(c->be->ops->residual_forward(c->be, c->out, c->x[0], c->x[1], c->nout),
                     DSRT_STATUS_OK);
    return dot_d(c->out, c->w, c->nout);
}

static void test_fd_residual(void **state)
{
    (void)state;
    op_ctx c = {.nout = 100};
    c.be = make_cpu(DSRT_F32, 1, 1, 8, 1, 8, 8, 8);
    c.x[0] = rnd_array(c.nout, 1.0f);
    c.x[1] = rnd_array(c.nout, 1.0f);
    c.out = zeros(c.nout);
    c.w = rnd_array(c.nout, 1.0f);
    float *da = zeros(c.nout), *db = zeros(c.nout);
    assert_int_equal(c.be->ops->residual_backward(c.be, da, db, c.w, c.nout), DSRT_STATUS_OK);
    fd_check("residual a", c.x[0], c.nout, da, loss_residual, &c, 20);
    fd_check("residual b", c.x[1], c.nout, db, loss_residual, &c, 20);
    free(c.x[0]), free(c.x[1]), free(c.out), free(c.w), free(da), free(db);
    c.be->ops->destroy(c.be);
}

static double loss_encoder(void *p)
{
    op_ctx *c = p;
    assert_int_equal(c->be->ops->encoder_forward(c->be, c->out, c->tok, c->x[0], c->x[1], c->B, c->T,
                                            c->C),
                     DSRT_STATUS_OK);
    return dot_d(c->out, c->w, c->nout);
}

static void test_fd_encoder(void **state)
{
    (void)state;
    op_ctx c = {.B = 3, .T = 6, .C = 5, .V = 4}; /* V < B*T: tokens repeat */
    c.be = make_cpu(DSRT_F32, c.B, c.T, c.C, 1, c.V, 8, 8);
    size_t N = (size_t)c.B * c.T;
    c.tok = malloc(N * sizeof(int32_t));
    for (size_t i = 0; i < N; i++)
        c.tok[i] = (int32_t)(rnd_u64() % (uint64_t)c.V);
    c.x[0] = rnd_array((size_t)c.V * c.C, 1.0f);
    c.x[1] = rnd_array((size_t)c.T * c.C, 1.0f);
    c.nout = N * c.C;
    c.out = zeros(c.nout);
    c.w = rnd_array(c.nout, 1.0f);
    float *dwte = zeros((size_t)c.V * c.C), *dwpe = zeros((size_t)c.T * c.C);
    assert_int_equal(c.be->ops->encoder_backward(c.be, dwte, dwpe, c.w, c.tok, c.B, c.T, c.C, 0, c.V),
                     DSRT_STATUS_OK);
    fd_check("encoder dwte", c.x[0], (size_t)c.V * c.C, dwte, loss_encoder, &c, 20);
    fd_check("encoder dwpe", c.x[1], (size_t)c.T * c.C, dwpe, loss_encoder, &c, 20);
    free(c.tok), free(c.x[0]), free(c.x[1]), free(c.out), free(c.w), free(dwte), free(dwpe);
    c.be->ops->destroy(c.be);
}

static double loss_classifier(void *p)
{
    op_ctx *c = p;
    size_t N = (size_t)c->B * c->T;
    memcpy(c->out, c->x[0], N * c->V * sizeof(float));
    assert_int_equal(c->be->ops->classifier_forward(c->be, c->aux, c->out, c->tok, (int)N, c->V, 0.0f, 0),
                     DSRT_STATUS_OK);
    double s = 0;
    for (size_t i = 0; i < N; i++)
        s += c->aux[i];
    return s * c->w[0];
}

static void test_fd_classifier(void **state)
{
    (void)state;
    op_ctx c = {.B = 2, .T = 5, .V = 11};
    size_t N = (size_t)c.B * c.T;
    c.be = make_cpu(DSRT_F32, c.B, c.T, 8, 1, c.V, 16, 16);
    c.tok = malloc(N * sizeof(int32_t));
    int counted = 0;
    for (size_t i = 0; i < N; i++) {
        c.tok[i] = i % 3 == 1 ? -100 : (int32_t)(rnd_u64() % (uint64_t)c.V);
        counted += c.tok[i] != -100;
    }
    c.x[0] = rnd_array(N * c.V, 3.0f);
    c.out = zeros(N * c.V);
    c.aux = zeros(N);
    float dloss = 1.0f / (float)counted;
    c.w = &dloss;
    /* the loss itself: logsumexp - target logit, computed here in double */
    loss_classifier(&c);
    for (size_t i = 0; i < N; i++) {
        if (c.tok[i] == -100) {
            assert_true(c.aux[i] == 0.0f);
            continue;
        }
        double mx = -1e30, s = 0;
        for (int j = 0; j < c.V; j++)
            mx = fmax(mx, c.x[0][i * c.V + j]);
        for (int j = 0; j < c.V; j++)
            s += exp(c.x[0][i * c.V + j] - mx);
        assert_float_equal(c.aux[i], log(s) + mx - c.x[0][i * c.V + c.tok[i]], 1e-5);
    }
    float *g = malloc(N * c.V * sizeof(float));
    memcpy(g, c.x[0], N * c.V * sizeof(float));
    assert_int_equal(c.be->ops->classifier_forward(c.be, c.aux, g, c.tok, (int)N, c.V, dloss, 1),
                     DSRT_STATUS_OK);
    fd_check("classifier dlogits", c.x[0], N * c.V, g, loss_classifier, &c, 60);
    free(c.tok), free(c.x[0]), free(c.out), free(c.aux), free(g);
    c.be->ops->destroy(c.be);
}

/* ---------------------------------------------------------------- 16-bit storage */
static dsrt_dtype g_dt16;

/* fp32 values that the 16-bit type represents exactly */
static float *rnd_exact(size_t n, float scale)
{
    float *a = rnd_array(n, scale);
    for (size_t i = 0; i < n; i++)
        a[i] = dsrt_round_to(g_dt16, a[i]);
    return a;
}

/* upload a host fp32 array into a new 16-bit array of `be` */
static void *up(dsrt_backend *be, const float *src, size_t n)
{
    void *p = NULL;
    assert_int_equal(be->ops->alloc(be, n * 2, &p), DSRT_STATUS_OK);
    if (src)
        assert_int_equal(be->ops->upload_f32(be, p, src, n), DSRT_STATUS_OK);
    return p;
}

/* a 16-bit result must be the fp32 result rounded once */
static void expect_rounded(const char *what, dsrt_backend *be16, const void *got16,
                           const float *want32, size_t n)
{
    float *got = malloc(n * sizeof(float));
    assert_int_equal(be16->ops->download_f32(be16, got, got16, n), DSRT_STATUS_OK);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = dsrt_round_to(be16->dt, want32[i]);
        if (dsrt_f32_bits(got[i]) != dsrt_f32_bits(want) && !(isnan(got[i]) && isnan(want))) {
            if (bad++ < 3)
                print_error("%s %s[%zu]: got %.8g, fp32 result %.8g rounds to %.8g\n",
                            dsrt_dtype_name(be16->dt), what, i, (double)got[i], (double)want32[i],
                            (double)want);
        }
    }
    free(got);
    assert_int_equal(bad, 0);
}

static void run_16bit(dsrt_dtype dt)
{
    g_dt16 = dt;
    int B = 2, T = 9, C = 16, NH = 2, V = 13, N = B * T, F = 4 * C;
    dsrt_backend *b32 = make_cpu(DSRT_F32, B, T, C, NH, V, F, F);
    dsrt_backend *b16 = make_cpu(dt, B, T, C, NH, V, F, F);
    size_t NC = (size_t)N * C, NF = (size_t)N * F;

    /* matmul forward and backward (fresh zero gradients: one rounding each) */
    float *x = rnd_exact(NC, 1.0f), *w = rnd_exact((size_t)C * F, 0.5f), *bias = rnd_exact(F, 0.5f);
    float *y = zeros(NF), *dy = rnd_exact(NF, 1.0f);
    float *dx = zeros(NC), *dw = zeros((size_t)C * F), *db = zeros(F);
    void *x16 = up(b16, x, NC), *w16 = up(b16, w, (size_t)C * F), *b16b = up(b16, bias, F);
    void *y16 = up(b16, NULL, NF), *dy16 = up(b16, dy, NF);
    void *dx16 = up(b16, NULL, NC), *dw16 = up(b16, NULL, (size_t)C * F), *db16 = up(b16, NULL, F);
    assert_int_equal(b32->ops->matmul_forward(b32, y, x, w, bias, N, C, F, DSRT_W_KN), 0);
    assert_int_equal(b16->ops->matmul_forward(b16, y16, x16, w16, b16b, N, C, F, DSRT_W_KN), 0);
    expect_rounded("matmul out", b16, y16, y, NF);
    assert_int_equal(b32->ops->matmul_backward(b32, dx, dw, db, dy, x, w, N, C, F, DSRT_W_KN), 0);
    assert_int_equal(b16->ops->matmul_backward(b16, dx16, dw16, db16, dy16, x16, w16, N, C, F, DSRT_W_KN), 0);
    expect_rounded("matmul dinp", b16, dx16, dx, NC);
    expect_rounded("matmul dweight", b16, dw16, dw, (size_t)C * F);
    expect_rounded("matmul dbias", b16, db16, db, F);

    /* the LLaMA ops: RMSNorm (the statistic identical), rotary embeddings in
     * place, SwiGLU, a bias over part of wider rows */
    {
        float *rs32 = zeros(N), *rs16 = zeros(N), *ry = zeros(NC), *rdx = zeros(NC), *rdw = zeros(C);
        void *ry16 = up(b16, NULL, NC), *rdx16 = up(b16, NULL, NC), *rdw16 = up(b16, NULL, C);
        float *rw = rnd_exact(C, 1.0f);
        void *rw16 = up(b16, rw, C);
        assert_int_equal(b32->ops->rmsnorm_forward(b32, ry, rs32, x, rw, N, C, 1e-6f), 0);
        assert_int_equal(b16->ops->rmsnorm_forward(b16, ry16, rs16, x16, rw16, N, C, 1e-6f), 0);
        expect_rounded("rmsnorm out", b16, ry16, ry, NC);
        assert_memory_equal(rs32, rs16, (size_t)N * sizeof(float));
        float *rdy = rnd_exact(NC, 1.0f);
        void *rdy16 = up(b16, rdy, NC);
        assert_int_equal(b32->ops->rmsnorm_backward(b32, rdx, rdw, rdy, x, rw, rs32, N, C), 0);
        assert_int_equal(b16->ops->rmsnorm_backward(b16, rdx16, rdw16, rdy16, x16, rw16, rs16, N, C), 0);
        expect_rounded("rmsnorm dinp", b16, rdx16, rdx, NC);
        expect_rounded("rmsnorm dweight", b16, rdw16, rdw, C);
        /* rope over the first 3 heads of 4 (rows of C = 16, head size 4) */
        float *cs = zeros((size_t)T * 2), *sn = zeros((size_t)T * 2);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < 2; i++)
                cs[t * 2 + i] = cosf(0.3f * t * (i + 1)), sn[t * 2 + i] = sinf(0.3f * t * (i + 1));
        float *rx = malloc(NC * sizeof(float));
        memcpy(rx, x, NC * sizeof(float));
        void *rx16 = up(b16, x, NC);
        assert_int_equal(b32->ops->rope(b32, rx, cs, sn, N, T, 3, 4, C, 0), 0);
        assert_int_equal(b16->ops->rope(b16, rx16, cs, sn, N, T, 3, 4, C, 0), 0);
        expect_rounded("rope", b16, rx16, rx, NC);
        /* swiglu: gate|up of F/2 each */
        int F2 = F / 2;
        float *sg = zeros((size_t)N * F2), *sdgu = zeros(NF), *sdh = rnd_exact((size_t)N * F2, 1.0f);
        float *gu = rnd_exact(NF, 3.0f);
        void *gu16 = up(b16, gu, NF), *sg16 = up(b16, NULL, (size_t)N * F2), *sdgu16 = up(b16, NULL, NF);
        void *sdh16 = up(b16, sdh, (size_t)N * F2);
        assert_int_equal(b32->ops->swiglu_forward(b32, sg, gu, N, F2), 0);
        assert_int_equal(b16->ops->swiglu_forward(b16, sg16, gu16, N, F2), 0);
        expect_rounded("swiglu out", b16, sg16, sg, (size_t)N * F2);
        assert_int_equal(b32->ops->swiglu_backward(b32, sdgu, gu, sdh, N, F2), 0);
        assert_int_equal(b16->ops->swiglu_backward(b16, sdgu16, gu16, sdh16, N, F2), 0);
        expect_rounded("swiglu dgate|dup", b16, sdgu16, sdgu, NF);
        /* bias over columns 0..F2-1 of rows of F */
        float *bx = malloc(NF * sizeof(float)), *bdb = zeros(F2);
        memcpy(bx, gu, NF * sizeof(float));
        void *bx16 = up(b16, gu, NF), *bdb16 = up(b16, NULL, F2);
        assert_int_equal(b32->ops->bias_forward(b32, bx, bias, N, F2, F), 0);
        assert_int_equal(b16->ops->bias_forward(b16, bx16, b16b, N, F2, F), 0);
        expect_rounded("bias out", b16, bx16, bx, NF);
        assert_int_equal(b32->ops->bias_backward(b32, bdb, gu, N, F2, F), 0);
        assert_int_equal(b16->ops->bias_backward(b16, bdb16, gu16, N, F2, F), 0);
        expect_rounded("bias dbias", b16, bdb16, bdb, F2);
        free(rs32), free(rs16), free(ry), free(rdx), free(rdw), free(rw), free(rdy), free(cs), free(sn), free(rx);
        free(sg), free(sdgu), free(sdh), free(gu), free(bx), free(bdb);
        void *p16[] = {ry16, rdx16, rdw16, rw16, rdy16, rx16, gu16, sg16, sdgu16, sdh16, bx16, bdb16};
        for (size_t i = 0; i < sizeof p16 / sizeof p16[0]; i++)
            b16->ops->free(b16, p16[i]);
    }

    /* gelu */
    float *g = zeros(NF), *dg = zeros(NF);
    float *h = rnd_exact(NF, 3.0f);
    void *h16 = up(b16, h, NF), *g16 = up(b16, NULL, NF), *dg16 = up(b16, NULL, NF);
    assert_int_equal(b32->ops->gelu_forward(b32, g, h, NF), 0);
    assert_int_equal(b16->ops->gelu_forward(b16, g16, h16, NF), 0);
    expect_rounded("gelu out", b16, g16, g, NF);
    assert_int_equal(b32->ops->gelu_backward(b32, dg, h, dy, NF), 0);
    assert_int_equal(b16->ops->gelu_backward(b16, dg16, h16, dy16, NF), 0);
    expect_rounded("gelu dinp", b16, dg16, dg, NF);

    /* layernorm */
    float *lw = rnd_exact(C, 1.0f), *lb = rnd_exact(C, 1.0f), *ly = zeros(NC);
    float *st32 = zeros(2 * (size_t)N), *st16 = zeros(2 * (size_t)N);
    void *lw16 = up(b16, lw, C), *lb16 = up(b16, lb, C), *ly16 = up(b16, NULL, NC);
    assert_int_equal(b32->ops->layernorm_forward(b32, ly, st32, st32 + N, x, lw, lb, N, C, 1e-5f), 0);
    assert_int_equal(b16->ops->layernorm_forward(b16, ly16, st16, st16 + N, x16, lw16, lb16, N, C, 1e-5f), 0);
    expect_rounded("layernorm out", b16, ly16, ly, NC);
    assert_memory_equal(st32, st16, 2 * (size_t)N * sizeof(float));
    float *ldx = zeros(NC), *ldw = zeros(C), *ldb = zeros(C);
    void *ldx16 = up(b16, NULL, NC), *ldw16 = up(b16, NULL, C), *ldb16 = up(b16, NULL, C);
    float *ldy = rnd_exact(NC, 1.0f);
    void *ldy16 = up(b16, ldy, NC);
    assert_int_equal(b32->ops->layernorm_backward(b32, ldx, ldw, ldb, ldy, x, lw, st32, st32 + N, N, C), 0);
    assert_int_equal(b16->ops->layernorm_backward(b16, ldx16, ldw16, ldb16, ldy16, x16, lw16, st16,
                                             st16 + N, N, C), 0);
    expect_rounded("layernorm dinp", b16, ldx16, ldx, NC);
    expect_rounded("layernorm dweight", b16, ldw16, ldw, C);
    expect_rounded("layernorm dbias", b16, ldb16, ldb, C);

    /* attention: the stored probabilities are the fp32 ones rounded */
    size_t natt = (size_t)B * NH * T * T;
    float *qkv = rnd_exact(NC * 3, 1.0f), *att = zeros(natt), *ao = zeros(NC);
    void *qkv16 = up(b16, qkv, NC * 3), *att16 = up(b16, NULL, natt), *ao16 = up(b16, NULL, NC);
    assert_int_equal(b32->ops->attention_forward(b32, ao, att, qkv, B, T, NH, NH, C / NH), 0);
    assert_int_equal(b16->ops->attention_forward(b16, ao16, att16, qkv16, B, T, NH, NH, C / NH), 0);
    expect_rounded("attention probabilities", b16, att16, att, natt);

    /* classifier: losses from the same logits are identical; gradients rounded once */
    size_t NV = (size_t)N * V;
    float *lg = rnd_exact(NV, 4.0f), *loss32 = zeros(N), *loss16 = zeros(N);
    int32_t *tg = malloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++)
        tg[i] = i == 3 ? -100 : (int32_t)(rnd_u64() % (uint64_t)V);
    void *lg16 = up(b16, lg, NV);
    float dl = 1024.0f / (float)(N - 1); /* a loss scale in the gradient */
    assert_int_equal(b32->ops->classifier_forward(b32, loss32, lg, tg, N, V, dl, 1), 0);
    assert_int_equal(b16->ops->classifier_forward(b16, loss16, lg16, tg, N, V, dl, 1), 0);
    assert_memory_equal(loss32, loss16, (size_t)N * sizeof(float));
    expect_rounded("classifier dlogits", b16, lg16, lg, NV);

    /* encoder forward */
    int32_t *tok = malloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++)
        tok[i] = (int32_t)(rnd_u64() % (uint64_t)V);
    float *wte = rnd_exact((size_t)V * C, 1.0f), *wpe = rnd_exact((size_t)T * C, 1.0f), *enc = zeros(NC);
    void *wte16 = up(b16, wte, (size_t)V * C), *wpe16 = up(b16, wpe, (size_t)T * C), *enc16 = up(b16, NULL, NC);
    assert_int_equal(b32->ops->encoder_forward(b32, enc, tok, wte, wpe, B, T, C), 0);
    assert_int_equal(b16->ops->encoder_forward(b16, enc16, tok, wte16, wpe16, B, T, C), 0);
    expect_rounded("encoder out", b16, enc16, enc, NC);
    /* encoder backward: each gradient element sums its contributions in fp32, rounds once */
    float *gte = zeros((size_t)V * C), *gpe = zeros((size_t)T * C);
    void *gte16 = up(b16, NULL, (size_t)V * C), *gpe16 = up(b16, NULL, (size_t)T * C);
    float *de = rnd_exact(NC, 1.0f);
    void *de16 = up(b16, de, NC);
    assert_int_equal(b32->ops->encoder_backward(b32, gte, gpe, de, tok, B, T, C, 0, V), 0);
    assert_int_equal(b16->ops->encoder_backward(b16, gte16, gpe16, de16, tok, B, T, C, 0, V), 0);
    expect_rounded("encoder dwte", b16, gte16, gte, (size_t)V * C);
    expect_rounded("encoder dwpe", b16, gpe16, gpe, (size_t)T * C);

    /* fp16 overflows where a GPU would: 60000 + 60000 is inf in fp16, finite in bf16 */
    float big[2] = {60000.0f, 60000.0f}, sum32;
    void *a16 = up(b16, big, 1), *c16 = up(b16, big + 1, 1), *s16 = up(b16, NULL, 1);
    assert_int_equal(b16->ops->residual_forward(b16, s16, a16, c16, 1), 0);
    assert_int_equal(b16->ops->download_f32(b16, &sum32, s16, 1), 0);
    if (dt == DSRT_F16)
        assert_true(isinf(sum32));
    else
        assert_true(sum32 == 119808.0f); /* 120000 rounded to bf16 (torch agrees) */

    void *all16[] = {x16, w16, b16b, y16, dy16, dx16, dw16, db16, h16, g16, dg16, lw16, lb16,
                     ly16, ldx16, ldw16, ldb16, ldy16, qkv16, att16, ao16, lg16, wte16, wpe16,
                     enc16, gte16, gpe16, de16, a16, c16, s16};
    for (size_t i = 0; i < sizeof all16 / sizeof all16[0]; i++)
        b16->ops->free(b16, all16[i]);
    float *all32[] = {x, w, bias, y, dy, dx, dw, db, g, dg, h, lw, lb, ly, st32, st16, ldx, ldw,
                      ldb, ldy, qkv, att, ao, lg, loss32, loss16, wte, wpe, enc, gte, gpe, de};
    for (size_t i = 0; i < sizeof all32 / sizeof all32[0]; i++)
        free(all32[i]);
    free(tg), free(tok);
    b32->ops->destroy(b32);
    b16->ops->destroy(b16);
}

/* The 16-bit GEMM in tiles (kernels/cpu/gemm.c): every transpose, C from zero,
 * from its old values and from a bias, shapes that cross tile edges and
 * chunks of the inner dimension: always within one rounding of the 16-bit
 * type from the exact (double) result. (Not bit for bit against one tile:
 * OpenBLAS's edge kernels may order a sum differently.) */
/* out: the exact result; mag: the sum of the magnitudes of its terms (what
 * fp32 accumulation errors scale with) */
static void gemm_ref(int ta, int tb, int M, int N, int K, const float *A, const float *B,
                     const float *C0, double *out, double *mag)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = C0 ? C0[(size_t)i * N + j] : 0.0, a = fabs(s);
            for (int k = 0; k < K; k++) {
                double t = (double)(ta ? A[(size_t)k * M + i] : A[(size_t)i * K + k]) *
                           (tb ? B[(size_t)j * K + k] : B[(size_t)k * N + j]);
                s += t;
                a += fabs(t);
            }
            out[(size_t)i * N + j] = s;
            mag[(size_t)i * N + j] = a;
        }
}

/* within one rounding of the 16-bit type from the exact result, plus what
 * fp32 accumulation of the terms may add */
static void expect_near_exact(dsrt_dtype dt, const void *c16, dsrt_backend *b16, const double *ref,
                              const double *mag, float *got, size_t n, int ta, int tb, int init,
                              int tiles)
{
    assert_int_equal(b16->ops->download_f32(b16, got, c16, n), 0);
    double ulp = dt == DSRT_F16 ? 0x1p-10 : 0x1p-7;
    for (size_t i = 0; i < n; i++) {
        double tol = ulp * fmax(fabs(ref[i]), 0x1p-14) * 1.01 + 0x1p-20 * mag[i];
        if (fabs((double)got[i] - ref[i]) > tol)
            fail_msg("%s gemm ta=%d tb=%d init=%d tiles %d [%zu]: %.8g, exact %.8g",
                     dsrt_dtype_name(dt), ta, tb, init, tiles, i, (double)got[i], ref[i]);
    }
}

static void run_gemm_tiles(dsrt_dtype dt)
{
    g_dt16 = dt;
    int M = 37, N = 29, K = 61;
    dsrt_backend *b16 = make_cpu(dt, 1, 4, 8, 1, 8, 8, 8);
    float *A = rnd_exact((size_t)M * K, 1.0f), *B = rnd_exact((size_t)K * N, 1.0f);
    float *C0 = rnd_exact((size_t)M * N, 4.0f), *bias = rnd_exact(N, 2.0f);
    float *got = zeros((size_t)M * N), *brow = zeros((size_t)M * N);
    double *ref = malloc((size_t)M * N * sizeof(double)), *mag = malloc((size_t)M * N * sizeof(double));
    for (int i = 0; i < M; i++)
        memcpy(brow + (size_t)i * N, bias, (size_t)N * sizeof(float));
    void *A16 = up(b16, A, (size_t)M * K), *B16 = up(b16, B, (size_t)K * N);
    void *C16 = up(b16, NULL, (size_t)M * N), *W16 = up(b16, NULL, (size_t)M * N);
    void *bias16 = up(b16, bias, N);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int init = 0; init < 3; init++) {
                gemm_ref(ta, tb, M, N, K, A, B, init == 1 ? C0 : init == 2 ? brow : NULL, ref,
                         mag);
                /* one tile (the default sizes); rows and columns in tiles of
                 * 8 x 5; and the inner dimension in chunks of at most 16 */
                int tiles[3][3] = {{0, 0, 0}, {8, 5, 0}, {8, 5, 16}};
                for (int t = 0; t < 3; t++) {
                    dsrt_cpu_set_gemm_tiles(b16, tiles[t][0], tiles[t][1], tiles[t][2]);
                    assert_int_equal(b16->ops->upload_f32(b16, C16, C0, (size_t)M * N), 0);
                    assert_int_equal(cpu_gemm_typed(b16, ta, tb, M, N, K, A16, ta ? M : K, B16,
                                                    tb ? K : N, C16, N, (cpu_c_init)init, bias16),
                                     0);
                    expect_near_exact(dt, C16, b16, ref, mag, got, (size_t)M * N, ta, tb, init,
                                      t);
                }
            }
    /* the op table's gemm accumulates or overwrites */
    dsrt_cpu_set_gemm_tiles(b16, 0, 0, 0);
    assert_int_equal(b16->ops->upload_f32(b16, W16, C0, (size_t)M * N), 0);
    assert_int_equal(b16->ops->gemm(b16, 0, 0, M, N, K, A16, K, B16, N, W16, N, 1), 0);
    assert_int_equal(b16->ops->upload_f32(b16, C16, C0, (size_t)M * N), 0);
    assert_int_equal(cpu_gemm_typed(b16, 0, 0, M, N, K, A16, K, B16, N, C16, N, CPU_C_LOAD, NULL),
                     0);
    assert_memory_equal(C16, W16, (size_t)M * N * 2);
    void *all16[] = {A16, B16, C16, W16, bias16};
    for (size_t i = 0; i < 5; i++)
        b16->ops->free(b16, all16[i]);
    free(A), free(B), free(C0), free(bias), free(got), free(brow), free(ref), free(mag);
    b16->ops->destroy(b16);
}

static void test_gemm_tiles(void **state)
{
    (void)state;
    run_gemm_tiles(DSRT_F16);
    run_gemm_tiles(DSRT_BF16);
}

/* The embedding's gradient filled a piece at a time (rows [v0, v1) per call,
 * as the GPT-2 backward does at ZeRO stage 2) has the bits of one call. */
static void test_encoder_pieces(void **state)
{
    (void)state;
    dsrt_dtype dts[] = {DSRT_F32, DSRT_F16};
    for (int d = 0; d < 2; d++) {
        g_dt16 = dts[d] == DSRT_F32 ? DSRT_BF16 : dts[d];
        int B = 2, T = 7, C = 6, V = 11, N = B * T;
        size_t esz = dts[d] == DSRT_F32 ? 4 : 2;
        dsrt_backend *be = make_cpu(dts[d], B, T, C, 1, V, C, C);
        int32_t tok[14];
        for (int i = 0; i < N; i++)
            tok[i] = (int32_t)(rnd_u64() % (uint64_t)V);
        tok[3] = tok[9] = 10; /* a repeated token in the last piece */
        float *de = rnd_exact((size_t)N * C, 1.0f), *g0 = rnd_exact((size_t)V * C, 1.0f);
        void *de_b = NULL, *whole = NULL, *pieces = NULL;
        assert_int_equal(be->ops->alloc(be, (size_t)N * C * esz, &de_b), 0);
        assert_int_equal(be->ops->alloc(be, (size_t)V * C * esz, &whole), 0);
        assert_int_equal(be->ops->alloc(be, (size_t)V * C * esz, &pieces), 0);
        assert_int_equal(be->ops->upload_f32(be, de_b, de, (size_t)N * C), 0);
        assert_int_equal(be->ops->upload_f32(be, whole, g0, (size_t)V * C), 0);
        assert_int_equal(be->ops->upload_f32(be, pieces, g0, (size_t)V * C), 0);
        assert_int_equal(be->ops->encoder_backward(be, whole, NULL, de_b, tok, B, T, C, 0, V), 0);
        int cuts[] = {11, 8, 3, 0}; /* last rows first, as the backward asks */
        for (int k = 0; k < 3; k++) {
            int v1 = cuts[k], v0 = cuts[k + 1];
            assert_int_equal(be->ops->encoder_backward(be, (char *)pieces + (size_t)v0 * C * esz,
                                                       NULL, de_b, tok, B, T, C, v0, v1),
                             0);
        }
        assert_memory_equal(whole, pieces, (size_t)V * C * esz);
        be->ops->free(be, de_b), be->ops->free(be, whole), be->ops->free(be, pieces);
        free(de), free(g0);
        be->ops->destroy(be);
    }
}

static void test_fp16_storage(void **state)
{
    (void)state;
    run_16bit(DSRT_F16);
}

static void test_bf16_storage(void **state)
{
    (void)state;
    run_16bit(DSRT_BF16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_matches_compiler),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_fd_matmul),
        cmocka_unit_test(test_fd_layernorm),
        cmocka_unit_test(test_fd_attention),
        cmocka_unit_test(test_fd_rmsnorm),
        cmocka_unit_test(test_fd_rope),
        cmocka_unit_test(test_fd_swiglu),
        cmocka_unit_test(test_fd_bias),
        cmocka_unit_test(test_fd_gelu),
        cmocka_unit_test(test_fd_residual),
        cmocka_unit_test(test_fd_encoder),
        cmocka_unit_test(test_fd_classifier),
        cmocka_unit_test(test_fp16_storage),
        cmocka_unit_test(test_bf16_storage),
        cmocka_unit_test(test_gemm_tiles),
        cmocka_unit_test(test_encoder_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
