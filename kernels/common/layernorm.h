/* LayerNorm over the last dimension (biased variance, eps inside the square
 * root, as torch.nn.LayerNorm). Row statistics are accumulated in fp32 and
 * saved as mean and rstd = 1/sqrt(var + eps) for the backward:
 *   xhat = (x - mean) * rstd,  y = xhat * w + b
 *   dxhat = dy * w
 *   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) */
#ifndef DSRT_KERNELS_COMMON_LAYERNORM_H
#define DSRT_KERNELS_COMMON_LAYERNORM_H

#include "kernels/common/dtype.h"

DSRT_HD float dsrt_ln_out(float x, float mean, float rstd, float w, float b)
{
    return (x - mean) * rstd * w + b;
}

DSRT_HD float dsrt_ln_dx(float dxhat, float xhat, float rstd, float mean_dxhat,
                         float mean_dxhat_xhat)
{
    return rstd * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
}

#endif
