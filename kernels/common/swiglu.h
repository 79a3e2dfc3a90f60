/* The gated MLP activation of LLaMA, Mistral and Qwen2 (hidden_act "silu"):
 * h = silu(gate) * up with silu(g) = g * sigmoid(g).
 * Backward, with s = sigmoid(g):
 *   dup   = dh * silu(g)
 *   dgate = dh * up * s * (1 + g * (1 - s)) */
#ifndef DSRT_KERNELS_COMMON_SWIGLU_H
#define DSRT_KERNELS_COMMON_SWIGLU_H

#include <math.h>

#include "kernels/common/dtype.h"

DSRT_HD float dsrt_sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

DSRT_HD float dsrt_swiglu(float g, float u) { return g * dsrt_sigmoid(g) * u; }

DSRT_HD void dsrt_swiglu_grad(float g, float u, float dh, float *dg, float *du)
{
    float s = dsrt_sigmoid(g);
    *du = dh * g * s;
    *dg = dh * u * s * (1.0f + g * (1.0f - s));
}

#endif
