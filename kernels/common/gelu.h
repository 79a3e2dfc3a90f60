/* GELU, tanh approximation (Hugging Face "gelu_new", PyTorch
 * gelu(approximate="tanh")): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
 * The derivative is written out so forward and backward agree on every
 * backend. */
#ifndef DSRT_KERNELS_COMMON_GELU_H
#define DSRT_KERNELS_COMMON_GELU_H

#include <math.h>

#include "kernels/common/dtype.h"

#define DSRT_GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define DSRT_GELU_CUBIC 0.044715f

DSRT_HD float dsrt_gelu(float x)
{
    float u = DSRT_GELU_SCALE * (x + DSRT_GELU_CUBIC * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

/* d gelu / dx */
DSRT_HD float dsrt_gelu_grad(float x)
{
    float u = DSRT_GELU_SCALE * (x + DSRT_GELU_CUBIC * x * x * x);
    float t = tanhf(u);
    float sech2 = 1.0f - t * t;
    float du = DSRT_GELU_SCALE * (1.0f + 3.0f * DSRT_GELU_CUBIC * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * sech2 * du;
}

#endif
