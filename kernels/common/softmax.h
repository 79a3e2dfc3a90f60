/* Softmax pieces shared by attention and the fused classifier: both subtract
 * the row maximum before exp (no overflow for any finite input) and both use
 * the same backward identity
 *   dlogit_j = p_j * (dp_j - sum_k p_k dp_k).
 * GPT-2 masks future positions by leaving them out of the row (probability 0),
 * equivalent to HF's fill with the dtype's minimum before softmax. */
#ifndef DSRT_KERNELS_COMMON_SOFTMAX_H
#define DSRT_KERNELS_COMMON_SOFTMAX_H

#include "kernels/common/dtype.h"

#define DSRT_IGNORE_INDEX (-100) /* torch CrossEntropyLoss / Hugging Face default */

DSRT_HD float dsrt_softmax_grad(float p, float dp, float sum_p_dp) { return p * (dp - sum_p_dp); }

/* gradient of cross entropy wrt one logit: (p - [j == target]) * dloss */
DSRT_HD float dsrt_xent_grad(float p, int is_target, float dloss)
{
    return (p - (is_target ? 1.0f : 0.0f)) * dloss;
}

#endif
