/* RMSNorm over the last dimension (LLaMA, Mistral, Qwen2: transformers'
 * LlamaRMSNorm): the row's mean square is accumulated in fp32 and saved as
 * rstd = 1/sqrt(mean(x^2) + eps) for the backward:
 *   xhat = x * rstd,  y = w * xhat
 *   dxhat = dy * w
 *   dx = rstd * (dxhat - xhat * mean(dxhat * xhat)),  dw += dy * xhat
 * transformers rounds xhat to the input dtype before the weight multiplies;
 * dsrt computes y in fp32 and rounds it once (the same for fp32). */
#ifndef DSRT_KERNELS_COMMON_RMSNORM_H
#define DSRT_KERNELS_COMMON_RMSNORM_H

#include "kernels/common/dtype.h"

DSRT_HD float dsrt_rms_out(float x, float rstd, float w) { return w * (x * rstd); }

DSRT_HD float dsrt_rms_dx(float dxhat, float xhat, float rstd, float mean_dxhat_xhat)
{
    return rstd * (dxhat - xhat * mean_dxhat_xhat);
}

#endif
