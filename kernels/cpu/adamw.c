/* The optimizer's two passes over a flat partition (see backend.h):
 *   grad_stats: sum of squares (double) and an inf/nan flag, one read of the
 *               gradients, in a fixed order: fixed chunks (by n alone), each
 *               summed into 16 interleaved double accumulators (element j of
 *               every 16 goes to accumulator j, added in index order), then
 *               the accumulators and the chunk sums added in order. The same
 *               bits whatever the thread count or vector width.
 *   adamw_step: FusedAdam (common/adamw.h) over grads, master, m, v, writing
 *               master, m, v and the storage-type params in the same pass.
 * Both are streams: OpenMP splits the range statically, each thread runs a
 * simd loop over its part. FusedAdam's two divisions and a sqrt per element
 * make the fp32 math, not memory, the limit with 4-wide SSE2 on a core with
 * a lot of bandwidth, so the loops are also compiled for AVX2 and AVX-512 and
 * picked at load time (target_clones); every clone rounds identically
 * (IEEE division and sqrt, no FMA contraction: -ffp-contract=off for this
 * file, see CMakeLists.txt).
 * 16-bit stores go through a small fp32 tile so the math stays vectorised
 * (fp16 rounding is branchy); bf16 and fp16 loads are branch-free. */
#include <omp.h>

#include "kernels/common/adamw.h"
#include "kernels/cpu/cpu_common.h"

#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef ISA_CLONES
#define ISA_CLONES
#endif

/* Below this many elements an op stays on the calling thread. */
enum { ADAMW_PAR_MIN = 1 << 15 };

/* ---------------------------------------------------------------- loads */
/* fp16 -> fp32 without branches (selects vectorise): exact for every input,
 * subnormals through one exact fp32 subtraction, inf/nan kept. */
static inline float f16_to_f32_vec(uint16_t h)
{
    uint32_t o = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t e = o & 0x0f800000u;
    o += (uint32_t)(127 - 15) << 23;
    uint32_t inf_nan = o + ((uint32_t)(128 - 16) << 23);
    float sub = dsrt_bits_f32(o + (1u << 23)) - dsrt_bits_f32(113u << 23);
    uint32_t is_special = 0u - (uint32_t)(e == 0x0f800000u); /* all ones or zero */
    uint32_t is_sub = 0u - (uint32_t)(e == 0u);
    uint32_t r = (o & ~(is_special | is_sub)) | (inf_nan & is_special) |
                 (dsrt_f32_bits(sub) & is_sub);
    return dsrt_bits_f32(r | ((uint32_t)(h & 0x8000u) << 16));
}

static inline float bf16_to_f32_vec(uint16_t h) { return dsrt_bits_f32((uint32_t)h << 16); }

/* This thread's share [*lo, *hi) of n, split at multiples of 16 elements
 * (64-byte lines of fp32) so no two threads write the same line. */
static void thread_range(size_t n, size_t *lo, size_t *hi)
{
    size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
    size_t blocks = (n + 15) / 16;
    size_t b0 = blocks * t / T, b1 = blocks * (t + 1) / T;
    *lo = b0 * 16 < n ? b0 * 16 : n;
    *hi = b1 * 16 < n ? b1 * 16 : n;
}

/* ---------------------------------------------------------------- grad_stats */
enum { STATS_MAX_CHUNKS = 1024, STATS_MIN_CHUNK = 8192, STATS_LANES = 16 };

/* one chunk [lo, hi): *sum = sum of squares, *bad = any inf/nan */
static ISA_CLONES void stats_range(dsrt_dtype dt, const void *grads, size_t lo, size_t hi,
                                   double *sum, int *bad)
{
    double acc[STATS_LANES] = {0};
    int fl[STATS_LANES] = {0};
    size_t i = lo, body = lo + (hi - lo) / STATS_LANES * STATS_LANES;
    if (dt == DSRT_F32) {
        const float *g = grads;
        for (; i < body; i += STATS_LANES)
#pragma omp simd
            for (int j = 0; j < STATS_LANES; j++) {
                double x = (double)g[i + j];
                acc[j] += x * x;
                fl[j] |= dsrt_f32_nonfinite(g[i + j]);
            }
        for (int j = 0; i < hi; i++, j++) {
            double x = (double)g[i];
            acc[j] += x * x;
            fl[j] |= dsrt_f32_nonfinite(g[i]);
        }
    } else if (dt == DSRT_BF16) {
        const uint16_t *g = grads;
        for (; i < body; i += STATS_LANES)
#pragma omp simd
            for (int j = 0; j < STATS_LANES; j++) {
                double x = (double)bf16_to_f32_vec(g[i + j]);
                acc[j] += x * x;
                fl[j] |= dsrt_bf16_nonfinite(g[i + j]);
            }
        for (int j = 0; i < hi; i++, j++) {
            double x = (double)bf16_to_f32_vec(g[i]);
            acc[j] += x * x;
            fl[j] |= dsrt_bf16_nonfinite(g[i]);
        }
    } else {
        const uint16_t *g = grads;
        for (; i < body; i += STATS_LANES)
#pragma omp simd
            for (int j = 0; j < STATS_LANES; j++) {
                double x = (double)f16_to_f32_vec(g[i + j]);
                acc[j] += x * x;
                fl[j] |= dsrt_f16_nonfinite(g[i + j]);
            }
        for (int j = 0; i < hi; i++, j++) {
            double x = (double)f16_to_f32_vec(g[i]);
            acc[j] += x * x;
            fl[j] |= dsrt_f16_nonfinite(g[i]);
        }
    }
    double s = 0.0;
    int f = 0;
    for (int j = 0; j < STATS_LANES; j++) {
        s += acc[j];
        f |= fl[j];
    }
    *sum = s;
    *bad = f;
}

dsrt_status cpu_grad_stats(dsrt_backend *be, const void *grads, size_t n, double *sumsq,
                           int *nonfinite)
{
    if (!sumsq || !nonfinite || (n && !grads))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "cpu backend: grad_stats: NULL %s",
                              !grads ? "grads" : "output");
    /* the chunking depends on n only, so the sum does not depend on threads */
    size_t chunks = (n + STATS_MIN_CHUNK - 1) / STATS_MIN_CHUNK;
    if (chunks > STATS_MAX_CHUNKS)
        chunks = STATS_MAX_CHUNKS;
    if (chunks == 0)
        chunks = 1;
    size_t per = (n + chunks - 1) / chunks;
    per = (per + 63) & ~(size_t)63; /* whole cache lines per chunk */
    double part[STATS_MAX_CHUNKS];
    int bad[STATS_MAX_CHUNKS];
    dsrt_dtype dt = be->dt;
#pragma omp parallel for schedule(static) if (n > ADAMW_PAR_MIN)
    for (size_t c = 0; c < chunks; c++) {
        size_t lo = c * per, hi = lo + per;
        if (lo > n)
            lo = n;
        if (hi > n)
            hi = n;
        stats_range(dt, grads, lo, hi, &part[c], &bad[c]);
    }
    double s = 0.0;
    int f = 0;
    for (size_t c = 0; c < chunks; c++) {
        s += part[c];
        f |= bad[c];
    }
    *sumsq = s;
    *nonfinite = f;
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- adamw_step */
/* fp32 storage over [lo, hi). `params` NULL: master is the parameter. */
static ISA_CLONES void step_f32(const dsrt_adamw_coefs *kp, int adamw, float *params,
                                float *master, float *m, float *v, const float *g, size_t lo,
                                size_t hi)
{
    const dsrt_adamw_coefs k = *kp;
    if (!params) {
        if (adamw) {
#pragma omp simd
            for (size_t i = lo; i < hi; i++)
                master[i] = dsrt_adamw_elem(&k, 1, master[i], g[i], &m[i], &v[i]);
        } else {
#pragma omp simd
            for (size_t i = lo; i < hi; i++)
                master[i] = dsrt_adamw_elem(&k, 0, master[i], g[i], &m[i], &v[i]);
        }
        return;
    }
    if (adamw) {
#pragma omp simd
        for (size_t i = lo; i < hi; i++) {
            float p = dsrt_adamw_elem(&k, 1, master[i], g[i], &m[i], &v[i]);
            master[i] = p;
            params[i] = p;
        }
    } else {
#pragma omp simd
        for (size_t i = lo; i < hi; i++) {
            float p = dsrt_adamw_elem(&k, 0, master[i], g[i], &m[i], &v[i]);
            master[i] = p;
            params[i] = p;
        }
    }
}

/* 16-bit storage over [lo, hi), in tiles of TILE elements: the fp32 math
 * (vectorised) leaves the new values in a tile on the stack, then they are
 * rounded to the storage type (params NULL: not written). */
enum { TILE = 512 };

static ISA_CLONES void step_16(const dsrt_adamw_coefs *kp, int adamw, dsrt_dtype dt,
                               uint16_t *params, float *master, float *m, float *v,
                               const uint16_t *g, size_t lo, size_t hi)
{
    const dsrt_adamw_coefs k = *kp;
    float out[TILE];
    for (size_t t0 = lo; t0 < hi; t0 += TILE) {
        size_t len = hi - t0 < TILE ? hi - t0 : TILE;
        float *pm = master + t0, *mm = m + t0, *vv = v + t0;
        const uint16_t *gg = g + t0;
        if (dt == DSRT_BF16) {
            if (adamw) {
#pragma omp simd
                for (size_t i = 0; i < len; i++)
                    out[i] = pm[i] = dsrt_adamw_elem(&k, 1, pm[i], bf16_to_f32_vec(gg[i]), &mm[i],
                                                     &vv[i]);
            } else {
#pragma omp simd
                for (size_t i = 0; i < len; i++)
                    out[i] = pm[i] = dsrt_adamw_elem(&k, 0, pm[i], bf16_to_f32_vec(gg[i]), &mm[i],
                                                     &vv[i]);
            }
        } else {
            if (adamw) {
#pragma omp simd
                for (size_t i = 0; i < len; i++)
                    out[i] = pm[i] = dsrt_adamw_elem(&k, 1, pm[i], f16_to_f32_vec(gg[i]), &mm[i],
                                                     &vv[i]);
            } else {
#pragma omp simd
                for (size_t i = 0; i < len; i++)
                    out[i] = pm[i] = dsrt_adamw_elem(&k, 0, pm[i], f16_to_f32_vec(gg[i]), &mm[i],
                                                     &vv[i]);
            }
        }
        if (!params)
            continue;
        uint16_t *pp = params + t0;
        if (dt == DSRT_BF16) {
#pragma omp simd
            for (size_t i = 0; i < len; i++)
                pp[i] = dsrt_f32_to_bf16(out[i]);
        } else {
            for (size_t i = 0; i < len; i++)
                pp[i] = dsrt_f32_to_f16(out[i]);
        }
    }
}

dsrt_status cpu_adamw_step(dsrt_backend *be, void *params, float *master, float *m, float *v,
                           const void *grads, size_t n, const dsrt_adamw_args *a)
{
    /* arguments checked by dsrt_backend_adamw_step; params NULL: master is the weight */
    dsrt_dtype dt = be->dt;
    dsrt_adamw_coefs k = dsrt_adamw_coefs_make(a->lr, a->beta1, a->beta2, a->eps, a->weight_decay,
                                               a->grad_mul, a->bc1, a->bc2);
    int adamw = a->adamw_mode != 0;
#pragma omp parallel if (n > ADAMW_PAR_MIN)
    {
        size_t lo, hi;
        thread_range(n, &lo, &hi);
        if (dt == DSRT_F32)
            step_f32(&k, adamw, params, master, m, v, grads, lo, hi);
        else
            step_16(&k, adamw, dt, params, master, m, v, grads, lo, hi);
    }
    return DSRT_STATUS_OK;
}
