/* Storage types and their conversions to and from fp32, shared by the CPU and
 * CUDA backends. Rounding is round-to-nearest-even with overflow to infinity
 * and gradual underflow, exactly what __float2half_rn / __float2bfloat16_rn
 * do on a GPU, so a CPU run in fp16 overflows where a GPU run would.
 * Written on the bit patterns (no _Float16, no intrinsics) so host and device
 * give the same bits; the CUDA files may use the hardware intrinsics instead. */
#ifndef DSRT_KERNELS_DTYPE_H
#define DSRT_KERNELS_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define DSRT_HD __host__ __device__ __forceinline__
#else
#define DSRT_HD static inline
#endif

typedef enum dsrt_dtype {
    DSRT_F32 = 0,
    DSRT_F16 = 1,
    DSRT_BF16 = 2,
} dsrt_dtype;

static inline size_t dsrt_dtype_size(dsrt_dtype dt) { return dt == DSRT_F32 ? 4 : 2; }
static inline const char *dsrt_dtype_name(dsrt_dtype dt)
{
    return dt == DSRT_F32 ? "fp32" : dt == DSRT_F16 ? "fp16" : "bf16";
}

DSRT_HD uint32_t dsrt_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

DSRT_HD float dsrt_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* bf16: the top half of an fp32, rounded to nearest even; NaN stays a (quiet) NaN. */
DSRT_HD uint16_t dsrt_f32_to_bf16(float f)
{
    uint32_t u = dsrt_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

DSRT_HD float dsrt_bf16_to_f32(uint16_t h) { return dsrt_bits_f32((uint32_t)h << 16); }

/* IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
DSRT_HD uint16_t dsrt_f32_to_f16(float f)
{
    uint32_t u = dsrt_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: keep it quiet and non-zero */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* >= 65520 rounds to infinity (and inf stays inf) */
        return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* normal half: >= 2^-14 */
        uint32_t r = a - 0x38000000u; /* rebias exponent 127 -> 15 */
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (a < 0x33000001u) /* <= 2^-25: rounds to zero (2^-25 itself is a tie to even 0) */
        return sign;
    /* subnormal half: value = m * 2^-24 with m in [1, 1023] */
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 for e in 102..112 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return (uint16_t)(sign | q);
}

DSRT_HD float dsrt_f16_to_f32(uint16_t h)
{
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0x1fu)
        return dsrt_bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        if (m == 0)
            return dsrt_bits_f32(sign);
        /* subnormal: m * 2^-24, exact in fp32 */
        float v = (float)m * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return dsrt_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* Load element i of a typed array as fp32 / store an fp32 rounded to the type. */
DSRT_HD float dsrt_load(dsrt_dtype dt, const void *p, size_t i)
{
    if (dt == DSRT_F32)
        return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return dt == DSRT_F16 ? dsrt_f16_to_f32(h) : dsrt_bf16_to_f32(h);
}

DSRT_HD void dsrt_store(dsrt_dtype dt, void *p, size_t i, float v)
{
    if (dt == DSRT_F32)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = dt == DSRT_F16 ? dsrt_f32_to_f16(v) : dsrt_f32_to_bf16(v);
}

/* fp32 rounded through the storage type and back (identity for fp32). */
DSRT_HD float dsrt_round_to(dsrt_dtype dt, float v)
{
    if (dt == DSRT_F32)
        return v;
    return dt == DSRT_F16 ? dsrt_f16_to_f32(dsrt_f32_to_f16(v)) : dsrt_bf16_to_f32(dsrt_f32_to_bf16(v));
}

#endif /* DSRT_KERNELS_DTYPE_H */
