/* The CPU optimizer ops (backend.h: grad_stats, adamw_step; math in
 * kernels/common/adamw.h):
 *  - every FusedAdam row of the spec's reference vectors (deepspeed-semantics.md
 *    section 9 (f)): three scalars, three AdamW steps, bit for bit against the
 *    fp32 op-by-op emulation and within fp32 rounding of the fp64 column; the
 *    L2-mode row; the lr = 0 row;
 *  - random vectors, both modes, several steps, against a double-precision
 *    reference of the same step taken from the same state, within a few fp32
 *    ulps of the magnitudes involved (an error bound that follows the terms);
 *  - adamw_mode 0 vs 1, grad_mul folding, fp16/bf16 params written as the
 *    rounded master (and master/m/v the same bits as an fp32 run on the same
 *    gradient values), params aliasing master, params NULL;
 *  - grad_stats: sum of squares against double, deterministic whatever the
 *    thread count, inf / -inf / nan / fp16 overflow detection. */
#include <float.h>
#include <math.h>
#include <omp.h>
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
#include "base/internal.h"

/* ---------------------------------------------------------------- helpers */
/* |x| spread over many binades (10^-6 .. 10^1), random sign: exercises eps */
static float rnd_wide(void)
{
    double mag = pow(10.0, -6.0 + 7.0 * (rnd_uniform() * 0.5 + 0.5));
    return (float)(rnd_uniform() < 0 ? -mag : mag);
}

static dsrt_backend *cpu(dsrt_dtype dt)
{
    dsrt_backend *be = NULL;
    OK(dsrt_backend_cpu_create(dt, &be));
    return be;
}

static void *balloc(dsrt_backend *be, size_t bytes)
{
    void *p = NULL;
    OK(be->ops->alloc(be, bytes, &p));
    return p;
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static dsrt_adamw_args args_for(float lr, float b1, float b2, float eps, float wd, float gmul,
                                long step, int adamw)
{
    dsrt_adamw_args a = {.lr = lr,
                         .beta1 = b1,
                         .beta2 = b2,
                         .eps = eps,
                         .weight_decay = wd,
                         .grad_mul = gmul,
                         .bc1 = dsrt_adamw_bias_correction(b1, step),
                         .bc2 = dsrt_adamw_bias_correction(b2, step),
                         .adamw_mode = adamw};
    return a;
}

/* ---------------------------------------------------------------- spec 9 (f) */
/* lr=2e-5 wd=0.01 b=(0.9,0.999) eps=1e-8, p0 = (1, -0.5, 0); the gradients of
 * the three steps (the section prints only the parameters; these inputs
 * reproduce every printed digit of both columns). */
static const float SPEC_P0[3] = {1.0f, -0.5f, 0.0f};
static const float SPEC_G[3][3] = {
    {0.5f, 1e-3f, -2.0f}, {0.25f, 2e-3f, -1.0f}, {-0.5f, 0.0f, 3.0f}};
static const char *const SPEC_F32[3][3] = {
    {"9.999797940e-01", "-5.000199080e-01", "1.999999949e-05"},
    {"9.999609590e-01", "-5.000391006e-01", "3.864358587e-05"},
    {"9.999585152e-01", "-5.000539422e-01", "3.700403977e-05"}};
static const double SPEC_F64[3][3] = {
    {9.999798000004e-01, -5.000198998000e-01, 1.999999990000e-05},
    {9.999609564121e-01, -5.000391033145e-01, 3.864358855830e-05},
    {9.999585407586e-01, -5.000539249611e-01, 3.700404488015e-05}};
static const char *const SPEC_L2_STEP1[3] = {"9.999799728e-01", "-4.999800026e-01",
                                             "1.999999949e-05"};

/* Run `steps` spec steps on the fp32 backend; `alias`: params == master. */
static void spec_run(int adamw, int steps, int alias, float lr, float out_p[3], float out_m[3],
                     float out_v[3])
{
    dsrt_backend *be = cpu(DSRT_F32);
    float *master = balloc(be, 3 * sizeof(float)), *m = balloc(be, 3 * sizeof(float));
    float *v = balloc(be, 3 * sizeof(float)), *g = balloc(be, 3 * sizeof(float));
    float *params = alias ? master : balloc(be, 3 * sizeof(float));
    memcpy(master, SPEC_P0, sizeof SPEC_P0);
    if (!alias)
        memcpy(params, SPEC_P0, sizeof SPEC_P0);
    for (int s = 1; s <= steps; s++) {
        memcpy(g, SPEC_G[s - 1], 3 * sizeof(float));
        dsrt_adamw_args a = args_for(lr, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, s, adamw);
        OK(dsrt_backend_adamw_step(be, params, master, m, v, g, 3, &a));
        if (!alias)
            for (int i = 0; i < 3; i++)
                assert_int_equal(bits(params[i]), bits(master[i]));
    }
    memcpy(out_p, master, 3 * sizeof(float));
    memcpy(out_m, m, 3 * sizeof(float));
    memcpy(out_v, v, 3 * sizeof(float));
    be->ops->free(be, master), be->ops->free(be, m), be->ops->free(be, v), be->ops->free(be, g);
    if (!alias)
        be->ops->free(be, params);
    be->ops->destroy(be);
}

static void test_spec_adamw_rows(void **state)
{
    (void)state;
    for (int alias = 0; alias <= 1; alias++)
        for (int steps = 1; steps <= 3; steps++) {
            float p[3], m[3], v[3];
            spec_run(1, steps, alias, 2e-5f, p, m, v);
            for (int i = 0; i < 3; i++) {
                float want = strtof(SPEC_F32[steps - 1][i], NULL);
                if (bits(p[i]) != bits(want))
                    fail_msg("spec 9(f) step %d p[%d]: %.9e, want %s (fp32 emulation)", steps, i,
                             (double)p[i], SPEC_F32[steps - 1][i]);
                /* the fp64 column: within fp32 rounding of the path (beta = 0.9
                 * exactly there, 0.9f here: ~1e-9 relative) */
                double ref = SPEC_F64[steps - 1][i];
                double tol = 2.0 * FLT_EPSILON * fmax(fabs(ref), 0.5);
                if (fabs((double)p[i] - ref) > tol)
                    fail_msg("spec 9(f) step %d p[%d]: %.12e vs fp64 %.12e", steps, i, (double)p[i],
                             ref);
            }
        }
}

static void test_spec_l2_row(void **state)
{
    (void)state;
    float p[3], m[3], v[3];
    spec_run(0, 1, 0, 2e-5f, p, m, v);
    for (int i = 0; i < 3; i++) {
        float want = strtof(SPEC_L2_STEP1[i], NULL);
        if (bits(p[i]) != bits(want))
            fail_msg("spec 9(f) L2 step 1 p[%d]: %.9e, want %s", i, (double)p[i],
                     SPEC_L2_STEP1[i]);
    }
}

/* "lr=0 step: p unchanged, m/v/step still advance" */
static void test_spec_lr0_row(void **state)
{
    (void)state;
    for (int steps = 1; steps <= 3; steps++) {
        float p0[3], m0[3], v0[3], p[3], m[3], v[3];
        spec_run(1, steps, 0, 0.0f, p0, m0, v0);
        spec_run(1, steps, 0, 2e-5f, p, m, v);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(bits(p0[i]), bits(SPEC_P0[i]));
            /* the moments do not depend on p in AdamW mode: the same as with lr > 0 */
            assert_int_equal(bits(m0[i]), bits(m[i]));
            assert_int_equal(bits(v0[i]), bits(v[i]));
        }
        assert_true(m0[0] != 0.0f && v0[0] != 0.0f);
    }
}

/* ---------------------------------------------------------------- double reference */
typedef struct ref_tol {
    double p, m, v; /* the step's result in double */
    double tp, tm, tv; /* allowed |fp32 - double| */
} ref_tol;

/* One step in double from the fp32 state (p, m, v), g the gradient as stored
 * (fp32 value). The bounds add up |terms| of each operation: fp32 rounds
 * every operation to within eps/2 of its result, so K eps of the magnitudes
 * that flowed into a value bounds the difference (K = 4..8). */
static ref_tol ref_step(const dsrt_adamw_args *a, double p, double m, double v, double g)
{
    const double E = FLT_EPSILON;
    double b1 = a->beta1, b2 = a->beta2, wd = a->weight_decay, lr = a->lr;
    double omb1 = 1.0 - b1, omb2 = 1.0 - b2;
    double gg = g * a->grad_mul, G = fabs(gg);
    if (!a->adamw_mode) {
        gg += wd * p;
        G += fabs(wd * p);
    }
    double mm = b1 * m + omb1 * gg, M = fabs(b1 * m) + fabs(omb1) * G;
    double vv = b2 * v + omb2 * gg * gg;
    /* v's terms are positive (a few eps relative), but g itself is only good
     * to eps * G (L2 mode: g + wd p may cancel), which moves g^2 by 2 |g| eps G */
    double tv = 6.0 * E * vv + 4.0 * E * omb2 * fabs(gg) * G;
    double mh = mm / a->bc1, vh = vv / a->bc2;
    double den = sqrt(vh) + a->eps;
    double u = mh / den, U = (M / a->bc1) / den;
    /* the denominator's relative error (half of v's through the sqrt, plus
     * the sqrt, divisions and + eps) moves u relatively */
    double rden = (vv > 0 ? 0.5 * tv / vv : 0.0) + 4.0 * E;
    U += fabs(u) * (rden + 2.0 * E);
    if (a->adamw_mode) {
        u += wd * p;
        U += fabs(wd * p);
    }
    ref_tol r;
    r.p = p - lr * u;
    r.m = mm;
    r.v = vv;
    r.tp = 8.0 * E * (fabs(p) + lr * U) + 1e-38;
    r.tm = 4.0 * E * M + 1e-38;
    r.tv = tv + 1e-38;
    return r;
}

/* n random elements, `steps` steps on backend dtype dt; every step checked
 * against ref_step from the state before it. */
static void random_case(dsrt_dtype dt, size_t n, int adamw, float wd, float gmul, int steps)
{
    dsrt_backend *be = cpu(dt);
    size_t es = dsrt_dtype_size(dt);
    float *master = balloc(be, n * 4), *m = balloc(be, n * 4), *v = balloc(be, n * 4);
    void *params = balloc(be, n * es), *grads = balloc(be, n * es);
    float *hg = malloc(n * 4), *gv = malloc(n * 4), *p0 = malloc(n * 4), *m0 = malloc(n * 4),
          *v0 = malloc(n * 4), *pp = malloc(n * 4);
    for (size_t i = 0; i < n; i++)
        master[i] = rnd_uniform() * 2.0f;
    OK(be->ops->upload_f32(be, params, master, n));
    size_t bad = 0;
    for (int s = 1; s <= steps; s++) {
        for (size_t i = 0; i < n; i++)
            hg[i] = rnd_wide() * (1.0f / gmul) * 1e-1f;
        if (s == 1)
            hg[0] = 0.0f; /* zero gradient from zero moments: u = 0 */
        OK(be->ops->upload_f32(be, grads, hg, n));
        OK(be->ops->download_f32(be, gv, grads, n)); /* the values as stored */
        memcpy(p0, master, n * 4), memcpy(m0, m, n * 4), memcpy(v0, v, n * 4);
        dsrt_adamw_args a = args_for(1e-3f, 0.9f, 0.999f, 1e-8f, wd, gmul, s, adamw);
        OK(dsrt_backend_adamw_step(be, params, master, m, v, grads, n, &a));
        OK(be->ops->download_f32(be, pp, params, n));
        for (size_t i = 0; i < n; i++) {
            ref_tol r = ref_step(&a, p0[i], m0[i], v0[i], gv[i]);
            int ok = fabs(master[i] - r.p) <= r.tp && fabs(m[i] - r.m) <= r.tm &&
                     fabs(v[i] - r.v) <= r.tv &&
                     bits(pp[i]) == bits(dsrt_round_to(dt, master[i]));
            if (!ok && bad++ < 8)
                print_error("%s n=%zu mode=%d step %d [%zu]: p %.9g ref %.9g (tol %.3g) m %.9g "
                            "ref %.9g (tol %.3g) v %.9g ref %.9g (tol %.3g) param %.9g\n",
                            dsrt_dtype_name(dt), n, adamw, s, i, (double)master[i], r.p, r.tp,
                            (double)m[i], r.m, r.tm, (double)v[i], r.v, r.tv, (double)pp[i]);
        }
    }
    if (bad)
        fail_msg("%zu element-steps beyond the fp32 bound", bad);
    free(hg), free(gv), free(p0), free(m0), free(v0), free(pp);
    be->ops->free(be, master), be->ops->free(be, m), be->ops->free(be, v), be->ops->free(be, params);
    be->ops->free(be, grads);
    be->ops->destroy(be);
}

static void test_random_vs_double(void **state)
{
    (void)state;
    /* odd sizes: simd tails, 16-bit tiles and the threaded path (> 32768) */
    static const size_t sizes[] = {1, 7, 513, 100003};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int mode = 0; mode <= 1; mode++) {
            random_case(DSRT_F32, sizes[k], mode, 0.01f, 1.0f, 4);
            random_case(DSRT_F32, sizes[k], mode, 0.1f, 1.0f / 3000.0f, 3);
            random_case(DSRT_BF16, sizes[k], mode, 0.01f, 1.0f / 65536.0f, 3);
            random_case(DSRT_F16, sizes[k], mode, 0.01f, 1.0f / 1024.0f, 3);
        }
}

/* ---------------------------------------------------------------- modes, folding */
typedef struct state {
    dsrt_backend *be;
    size_t n;
    float *master, *m, *v;
    void *params, *grads;
} state_t;

static state_t state_new(dsrt_dtype dt, size_t n, uint64_t seed, float gscale)
{
    state_t s = {.be = cpu(dt), .n = n};
    size_t es = dsrt_dtype_size(dt);
    s.master = balloc(s.be, n * 4), s.m = balloc(s.be, n * 4), s.v = balloc(s.be, n * 4);
    s.params = balloc(s.be, n * es), s.grads = balloc(s.be, n * es);
    uint64_t keep = rng_state;
    rng_state = seed;
    float *h = malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        s.master[i] = rnd_uniform();
        s.m[i] = rnd_uniform() * 1e-2f;
        s.v[i] = fabsf(rnd_uniform()) * 1e-4f;
        h[i] = rnd_uniform() * gscale;
    }
    OK(s.be->ops->upload_f32(s.be, s.params, s.master, n));
    OK(s.be->ops->upload_f32(s.be, s.grads, h, n));
    free(h);
    rng_state = keep;
    return s;
}

static void state_free(state_t *s)
{
    s->be->ops->free(s->be, s->master), s->be->ops->free(s->be, s->m), s->be->ops->free(s->be, s->v);
    s->be->ops->free(s->be, s->params), s->be->ops->free(s->be, s->grads);
    s->be->ops->destroy(s->be);
}

static void expect_same(const float *a, const float *b, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (bits(a[i]) != bits(b[i]))
            fail_msg("%s: [%zu] %.9g vs %.9g", what, i, (double)a[i], (double)b[i]);
}

static void test_modes(void **state)
{
    (void)state;
    size_t n = 40000;
    /* wd = 0: both modes give the same bits (g + 0 p = g, u + 0 p = u) */
    state_t a = state_new(DSRT_F32, n, 11, 1.0f), b = state_new(DSRT_F32, n, 11, 1.0f);
    dsrt_adamw_args x = args_for(1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 7, 1);
    dsrt_adamw_args y = x;
    y.adamw_mode = 0;
    OK(dsrt_backend_adamw_step(a.be, a.params, a.master, a.m, a.v, a.grads, n, &x));
    OK(dsrt_backend_adamw_step(b.be, b.params, b.master, b.m, b.v, b.grads, n, &y));
    expect_same(a.master, b.master, n, "wd=0 mode 1 vs 0 master");
    expect_same(a.m, b.m, n, "wd=0 mode 1 vs 0 m");
    state_free(&a), state_free(&b);

    /* wd > 0: L2 moves the moments, AdamW does not */
    a = state_new(DSRT_F32, n, 12, 1.0f), b = state_new(DSRT_F32, n, 12, 1.0f);
    state_t c = state_new(DSRT_F32, n, 12, 1.0f);
    x.weight_decay = y.weight_decay = 0.1f;
    dsrt_adamw_args z = x;
    z.weight_decay = 0.0f;
    OK(dsrt_backend_adamw_step(a.be, a.params, a.master, a.m, a.v, a.grads, n, &x));
    OK(dsrt_backend_adamw_step(b.be, b.params, b.master, b.m, b.v, b.grads, n, &y));
    OK(dsrt_backend_adamw_step(c.be, c.params, c.master, c.m, c.v, c.grads, n, &z));
    expect_same(a.m, c.m, n, "AdamW moments independent of wd");
    size_t differ = 0;
    for (size_t i = 0; i < n; i++)
        differ += bits(a.m[i]) != bits(b.m[i]);
    assert_true(differ > n / 2);
    /* AdamW: the decay is lr * wd * p_old on top of the same Adam step */
    state_t d = state_new(DSRT_F32, n, 12, 1.0f); /* the state before the step */
    for (size_t i = 0; i < n; i++) {
        double dec = (double)c.master[i] - (double)a.master[i];
        double want = 1e-3 * 0.1 * (double)d.master[i];
        if (fabs(dec - want) > 4.0 * FLT_EPSILON * (fabs((double)d.master[i]) + 1e-3))
            fail_msg("AdamW decay [%zu]: %.9g, want lr wd p = %.9g", i, dec, want);
    }
    state_free(&a), state_free(&b), state_free(&c), state_free(&d);
}

static void test_grad_mul_folding(void **state)
{
    (void)state;
    size_t n = 50001;
    /* grads * 2^-16 with grad_mul 1  ==  grads with grad_mul 2^-16 (exact scaling) */
    for (int mode = 0; mode <= 1; mode++) {
        state_t a = state_new(DSRT_F32, n, 21, 1000.0f), b = state_new(DSRT_F32, n, 21, 1000.0f);
        float *g = b.grads;
        for (size_t i = 0; i < n; i++)
            g[i] *= 0x1p-16f;
        dsrt_adamw_args x = args_for(6e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, 0x1p-16f, 3, mode);
        dsrt_adamw_args y = x;
        y.grad_mul = 1.0f;
        OK(dsrt_backend_adamw_step(a.be, a.params, a.master, a.m, a.v, a.grads, n, &x));
        OK(dsrt_backend_adamw_step(b.be, b.params, b.master, b.m, b.v, b.grads, n, &y));
        expect_same(a.master, b.master, n, "folded grad_mul master");
        expect_same(a.m, b.m, n, "folded grad_mul m");
        expect_same(a.v, b.v, n, "folded grad_mul v");
        state_free(&a), state_free(&b);
    }
    /* a non-power-of-two multiplier is one fp32 multiply of the stored value */
    state_t a = state_new(DSRT_F32, 3, 22, 1.0f);
    float g0 = ((float *)a.grads)[0], m0 = a.m[0];
    dsrt_adamw_args x = args_for(1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f / 3.0f, 1, 1);
    OK(dsrt_backend_adamw_step(a.be, a.params, a.master, a.m, a.v, a.grads, 3, &x));
    volatile float gm = g0 * (1.0f / 3.0f);
    volatile float t1 = 0.9f * m0, t2 = (1.0f - 0.9f) * gm;
    assert_int_equal(bits(a.m[0]), bits(t1 + t2));
    state_free(&a);
}

/* ---------------------------------------------------------------- 16-bit params */
static void test_half_params(void **state)
{
    (void)state;
    size_t n = 70001;
    dsrt_dtype dts[2] = {DSRT_F16, DSRT_BF16};
    for (int k = 0; k < 2; k++) {
        dsrt_dtype dt = dts[k];
        state_t h = state_new(dt, n, 31, 3.0f);
        /* special gradient values: fp16 subnormals, the largest finite, zero */
        float *hg = malloc(n * 4);
        OK(h.be->ops->download_f32(h.be, hg, h.grads, n));
        hg[1] = 3e-7f, hg[2] = -6e-8f, hg[3] = 65504.0f, hg[4] = -0.0f, hg[5] = 1e-5f;
        OK(h.be->ops->upload_f32(h.be, h.grads, hg, n));
        OK(h.be->ops->download_f32(h.be, hg, h.grads, n));
        /* an fp32 run on the same gradient values and state */
        state_t f = state_new(DSRT_F32, n, 31, 3.0f);
        memcpy(f.grads, hg, n * 4);
        memcpy(f.master, h.master, n * 4), memcpy(f.m, h.m, n * 4), memcpy(f.v, h.v, n * 4);
        for (int s = 1; s <= 2; s++) {
            dsrt_adamw_args a = args_for(3e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f, s, 1);
            OK(dsrt_backend_adamw_step(h.be, h.params, h.master, h.m, h.v, h.grads, n, &a));
            OK(dsrt_backend_adamw_step(f.be, f.params, f.master, f.m, f.v, f.grads, n, &a));
        }
        expect_same(h.master, f.master, n, "16-bit run master vs fp32 run");
        expect_same(h.m, f.m, n, "16-bit run m vs fp32 run");
        expect_same(h.v, f.v, n, "16-bit run v vs fp32 run");
        const uint16_t *p = h.params;
        for (size_t i = 0; i < n; i++) {
            uint16_t want = dt == DSRT_F16 ? dsrt_f32_to_f16(h.master[i])
                                           : dsrt_f32_to_bf16(h.master[i]);
            if (p[i] != want)
                fail_msg("%s params[%zu] = 0x%04x, want 0x%04x (master %.9g rounded)",
                         dsrt_dtype_name(dt), i, p[i], want, (double)h.master[i]);
        }
        /* params NULL: master, m, v advance, nothing else is written */
        uint16_t *before = malloc(n * 2);
        memcpy(before, h.params, n * 2);
        dsrt_adamw_args a = args_for(3e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f, 3, 1);
        OK(dsrt_backend_adamw_step(h.be, NULL, h.master, h.m, h.v, h.grads, n, &a));
        OK(dsrt_backend_adamw_step(f.be, f.params, f.master, f.m, f.v, f.grads, n, &a));
        expect_same(h.master, f.master, n, "params NULL master");
        assert_memory_equal(before, h.params, n * 2);
        /* 16-bit params cannot alias the fp32 master */
        assert_int_equal(dsrt_backend_adamw_step(h.be, h.master, h.master, h.m, h.v, h.grads, n, &a),
                         DSRT_STATUS_INVALID_ARGUMENT);
        free(before), free(hg);
        state_free(&h), state_free(&f);
    }
}

/* fp32: params == master, a separate params copy, and params NULL agree */
static void test_alias_fp32(void **state)
{
    (void)state;
    size_t n = 65537;
    state_t a = state_new(DSRT_F32, n, 41, 1.0f), b = state_new(DSRT_F32, n, 41, 1.0f);
    state_t c = state_new(DSRT_F32, n, 41, 1.0f);
    for (int s = 1; s <= 3; s++) {
        dsrt_adamw_args x = args_for(1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, s, 1);
        OK(dsrt_backend_adamw_step(a.be, a.master, a.master, a.m, a.v, a.grads, n, &x));
        OK(dsrt_backend_adamw_step(b.be, b.params, b.master, b.m, b.v, b.grads, n, &x));
        OK(dsrt_backend_adamw_step(c.be, NULL, c.master, c.m, c.v, c.grads, n, &x));
    }
    expect_same(a.master, b.master, n, "aliased vs separate master");
    expect_same(b.params, b.master, n, "separate params == master");
    expect_same(a.master, c.master, n, "aliased vs NULL params");
    expect_same(a.v, b.v, n, "aliased vs separate v");
    state_free(&a), state_free(&b), state_free(&c);
    /* n = 0 is a no-op; NULL arguments are refused */
    dsrt_backend *be = cpu(DSRT_F32);
    dsrt_adamw_args x = args_for(1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, 1, 1);
    OK(dsrt_backend_adamw_step(be, NULL, NULL, NULL, NULL, NULL, 0, &x));
    float one = 1.0f;
    assert_int_equal(dsrt_backend_adamw_step(be, NULL, &one, NULL, &one, &one, 1, &x),
                     DSRT_STATUS_INVALID_ARGUMENT);
    be->ops->destroy(be);
}

/* Every finite fp16 bit pattern (and every bf16 one) as a gradient: the
 * loads (branch-free in the op) must give exactly dsrt_f16_to_f32 /
 * dsrt_bf16_to_f32; with m = 0 and beta1 = 0.5 the new m is exactly g / 2. */
static void test_half_loads_exhaustive(void **state)
{
    (void)state;
    dsrt_dtype dts[2] = {DSRT_F16, DSRT_BF16};
    for (int k = 0; k < 2; k++) {
        dsrt_dtype dt = dts[k];
        dsrt_backend *be = cpu(dt);
        size_t n = 65536;
        uint16_t *g = balloc(be, n * 2);
        float *master = balloc(be, n * 4), *m = balloc(be, n * 4), *v = balloc(be, n * 4);
        size_t cnt = 0;
        long double ref = 0.0L;
        for (uint32_t b = 0; b < 65536; b++) {
            float x = dt == DSRT_F16 ? dsrt_f16_to_f32((uint16_t)b) : dsrt_bf16_to_f32((uint16_t)b);
            if (!isfinite(x))
                continue;
            g[cnt++] = (uint16_t)b;
            ref += (long double)x * x;
        }
        double s = 0;
        int bad = -1;
        OK(be->ops->grad_stats(be, g, cnt, &s, &bad));
        assert_int_equal(bad, 0);
        if (fabs(s - (double)ref) > 1e-13 * (double)ref)
            fail_msg("%s exhaustive sumsq %.17g vs %.17Lg", dsrt_dtype_name(dt), s, ref);
        dsrt_adamw_args a = args_for(0.0f, 0.5f, 0.999f, 1e-8f, 0.0f, 1.0f, 1, 1);
        OK(dsrt_backend_adamw_step(be, NULL, master, m, v, g, cnt, &a));
        for (size_t i = 0; i < cnt; i++) {
            float x = dt == DSRT_F16 ? dsrt_f16_to_f32(g[i]) : dsrt_bf16_to_f32(g[i]);
            float want = 0.5f * 0.0f + 0.5f * x; /* beta1 m + (1 - beta1) g: -0 -> +0 */
            if (bits(m[i]) != bits(want))
                fail_msg("%s load of 0x%04x: m %a, want %a", dsrt_dtype_name(dt), g[i],
                         (double)m[i], (double)want);
        }
        /* every non-finite pattern is flagged */
        for (uint32_t b = 0; b < 65536; b++) {
            float x = dt == DSRT_F16 ? dsrt_f16_to_f32((uint16_t)b) : dsrt_bf16_to_f32((uint16_t)b);
            if (isfinite(x))
                continue;
            g[0] = (uint16_t)b;
            OK(be->ops->grad_stats(be, g, 1, &s, &bad));
            if (bad != 1)
                fail_msg("%s: 0x%04x not flagged", dsrt_dtype_name(dt), b);
        }
        be->ops->free(be, g), be->ops->free(be, master), be->ops->free(be, m), be->ops->free(be, v);
        be->ops->destroy(be);
    }
}

/* ---------------------------------------------------------------- grad_stats */
static void stats_of(dsrt_backend *be, const float *h, size_t n, double *sumsq, int *bad)
{
    void *g = balloc(be, n * dsrt_dtype_size(be->dt) + 1);
    OK(be->ops->upload_f32(be, g, h, n));
    OK(be->ops->grad_stats(be, g, n, sumsq, bad));
    be->ops->free(be, g);
}

static void test_grad_stats_sum(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 2, 63, 8193, 100003, 3000017};
    dsrt_dtype dts[3] = {DSRT_F32, DSRT_F16, DSRT_BF16};
    for (int k = 0; k < 3; k++) {
        dsrt_backend *be = cpu(dts[k]);
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
            size_t n = sizes[z];
            float *h = malloc(n * 4), *back = malloc(n * 4);
            for (size_t i = 0; i < n; i++)
                h[i] = rnd_uniform() * (i % 5 == 0 ? 100.0f : 0.01f);
            void *g = balloc(be, n * dsrt_dtype_size(be->dt));
            OK(be->ops->upload_f32(be, g, h, n));
            OK(be->ops->download_f32(be, back, g, n));
            long double acc = 0.0L; /* x87 extended: ~n 2^-64 relative */
            for (size_t i = 0; i < n; i++)
                acc += (long double)back[i] * back[i];
            double ref = (double)acc;
            double s1 = 0, s2 = 0, s3 = 0;
            int b1 = -1, b2 = -1, b3 = -1;
            OK(be->ops->grad_stats(be, g, n, &s1, &b1));
            OK(be->ops->grad_stats(be, g, n, &s2, &b2));
            int threads = omp_get_max_threads();
            omp_set_num_threads(threads > 1 ? 1 : 2);
            OK(be->ops->grad_stats(be, g, n, &s3, &b3));
            omp_set_num_threads(threads);
            assert_int_equal(b1, 0);
            assert_int_equal(b2, 0);
            assert_int_equal(b3, 0);
            if (fabs(s1 - ref) > 1e-12 * ref)
                fail_msg("%s n=%zu: sumsq %.17g, double reference %.17g",
                         dsrt_dtype_name(be->dt), n, s1, ref);
            /* the same bits again, and with another thread count */
            assert_memory_equal(&s1, &s2, sizeof s1);
            assert_memory_equal(&s1, &s3, sizeof s1);
            be->ops->free(be, g);
            free(h), free(back);
        }
        double s = -1;
        int b = -1;
        OK(be->ops->grad_stats(be, NULL, 0, &s, &b));
        assert_true(s == 0.0 && b == 0);
        be->ops->destroy(be);
    }
}

static void test_grad_stats_nonfinite(void **state)
{
    (void)state;
    size_t n = 50003;
    const float specials[3] = {INFINITY, -INFINITY, NAN};
    const size_t where[4] = {0, 1, 25000, 50002};
    dsrt_dtype dts[3] = {DSRT_F32, DSRT_F16, DSRT_BF16};
    float *h = malloc(n * 4);
    for (int k = 0; k < 3; k++) {
        dsrt_backend *be = cpu(dts[k]);
        for (int sp = 0; sp < 3; sp++)
            for (int w = 0; w < 4; w++) {
                for (size_t i = 0; i < n; i++)
                    h[i] = rnd_uniform();
                h[where[w]] = specials[sp];
                double s = 0;
                int b = 0;
                stats_of(be, h, n, &s, &b);
                if (b != 1)
                    fail_msg("%s: %g at %zu not detected", dsrt_dtype_name(be->dt),
                             (double)specials[sp], where[w]);
                assert_false(isfinite(s));
            }
        /* large finite values: no flag; fp16 overflows beyond 65504 */
        for (size_t i = 0; i < n; i++)
            h[i] = 0.0f;
        h[7] = 65504.0f; /* fp16 max (bf16: rounds to 65536) */
        h[8] = -65504.0f;
        double s = 0, big = dsrt_round_to(be->dt, 65504.0f);
        int b = -1;
        stats_of(be, h, n, &s, &b);
        assert_int_equal(b, 0);
        assert_true(s == 2.0 * big * big);
        h[9] = be->dt == DSRT_F16 ? 70000.0f : 3.0e38f; /* fp16: rounds to inf; others finite */
        stats_of(be, h, n, &s, &b);
        assert_int_equal(b, be->dt == DSRT_F16 ? 1 : 0);
        if (be->dt != DSRT_F16) /* squares of fp32 values cannot overflow a double */
            assert_true(isfinite(s) && s > 8.9e76);
        h[9] = 65519.0f; /* fp16: still rounds to 65504 */
        stats_of(be, h, n, &s, &b);
        assert_int_equal(b, 0);
        h[9] = 65520.0f; /* fp16: the first value that rounds to inf */
        stats_of(be, h, n, &s, &b);
        assert_int_equal(b, be->dt == DSRT_F16 ? 1 : 0);
        be->ops->destroy(be);
    }
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_adamw_rows),    cmocka_unit_test(test_spec_l2_row),
        cmocka_unit_test(test_spec_lr0_row),       cmocka_unit_test(test_random_vs_double),
        cmocka_unit_test(test_modes),              cmocka_unit_test(test_grad_mul_folding),
        cmocka_unit_test(test_half_params),        cmocka_unit_test(test_alias_fp32),
        cmocka_unit_test(test_half_loads_exhaustive),
        cmocka_unit_test(test_grad_stats_sum),     cmocka_unit_test(test_grad_stats_nonfinite),
    };
    return cmocka_run_group_tests_name("adamw", tests, NULL, NULL);
}
