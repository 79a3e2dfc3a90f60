/* FusedAdam's per-element update (DeepSpeed csrc/adam/multi_tensor_adam.cu,
 * spec section 6.2), shared by the CPU and CUDA backends. All math is fp32,
 * in the kernel's order of operations:
 *
 *   g  = grad * grad_mul                      (unscale / clip / 1/gas, folded)
 *   L2 mode only:     g = g + wd * p
 *   m  = beta1 * m + (1 - beta1) * g
 *   v  = beta2 * v + (1 - beta2) * g * g
 *   m^ = m / bc1;  v^ = v / bc2
 *   u  = m^ / (sqrt(v^) + eps)                (eps after the sqrt, as torch)
 *   AdamW mode only:  u = u + wd * p          (p before this update)
 *   p  = p - lr * u
 *
 * (1 - beta) is an fp32 subtraction, as in the kernel. The CPU backend is
 * compiled with -ffp-contract=off (CMakeLists.txt), so it gives exactly these
 * roundings, op by op (spec section 9 (f) bit for bit); nvcc contracts a*b+c
 * into FMA as DeepSpeed's own build does, so the GPU may differ in the last
 * bits. */
#ifndef DSRT_KERNELS_COMMON_ADAMW_H
#define DSRT_KERNELS_COMMON_ADAMW_H

#include <math.h>
#include <stdint.h>

#include "kernels/common/dtype.h"

/* The per-step scalars, ready for the loop (see dsrt_adamw_coefs_of). */
typedef struct dsrt_adamw_coefs {
    float lr, beta1, beta2, omb1, omb2; /* omb = 1 - beta, in fp32 */
    float eps, wd, grad_mul, bc1, bc2;
} dsrt_adamw_coefs;

DSRT_HD dsrt_adamw_coefs dsrt_adamw_coefs_make(float lr, float beta1, float beta2, float eps,
                                               float wd, float grad_mul, float bc1, float bc2)
{
    dsrt_adamw_coefs k;
    k.lr = lr;
    k.beta1 = beta1;
    k.beta2 = beta2;
    k.omb1 = 1.0f - beta1;
    k.omb2 = 1.0f - beta2;
    k.eps = eps;
    k.wd = wd;
    k.grad_mul = grad_mul;
    k.bc1 = bc1;
    k.bc2 = bc2;
    return k;
}

/* FusedAdam's bias correction for the step-th applied update (step >= 1):
 * 1 - beta^step with beta as fp32, the power and the subtraction in double
 * (C++ std::pow(float, int)), stored as fp32. Host only. */
static inline float dsrt_adamw_bias_correction(float beta, long step)
{
    return (float)(1.0 - pow((double)beta, (double)step));
}

/* One element. `adamw` is 1 for decoupled weight decay (AdamW), 0 for L2;
 * callers pass a constant so the branch folds away. p is the fp32 master
 * value before the step, g the stored gradient as fp32 (before grad_mul);
 * m and v are updated in place; returns the new p. */
DSRT_HD float dsrt_adamw_elem(const dsrt_adamw_coefs *k, int adamw, float p, float g, float *m,
                              float *v)
{
    g = g * k->grad_mul;
    if (!adamw)
        g = g + (k->wd * p);
    float mm = k->beta1 * *m + k->omb1 * g;
    float vv = k->beta2 * *v + k->omb2 * g * g;
    *m = mm;
    *v = vv;
    float m_hat = mm / k->bc1;
    float v_hat = vv / k->bc2;
    float denom = sqrtf(v_hat) + k->eps;
    float u = m_hat / denom;
    if (adamw)
        u = u + (k->wd * p);
    return p - (k->lr * u);
}

/* Is an fp32 value inf or nan? (bit test: immune to -ffinite-math) */
DSRT_HD int dsrt_f32_nonfinite(float x)
{
    return (dsrt_f32_bits(x) & 0x7f800000u) == 0x7f800000u;
}

/* Is a 16-bit stored value inf or nan? (fp16: exponent 0x1f; bf16: 0xff) */
DSRT_HD int dsrt_f16_nonfinite(uint16_t h) { return (h & 0x7c00u) == 0x7c00u; }
DSRT_HD int dsrt_bf16_nonfinite(uint16_t h) { return (h & 0x7f80u) == 0x7f80u; }

#endif /* DSRT_KERNELS_COMMON_ADAMW_H */
