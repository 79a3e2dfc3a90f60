/* Rotary position embeddings in transformers' rotate-half form
 * (modeling_llama.py apply_rotary_pos_emb): in each head of size hs, element
 * i < hs/2 pairs with i + hs/2 and the pair turns by the angle
 * pos * inv_freq[i]:
 *   y1 = x1 cos - x2 sin,  y2 = x2 cos + x1 sin
 * The backward turns the gradient back by the same angle (the transpose of a
 * rotation): dx1 = dy1 cos + dy2 sin,  dx2 = dy2 cos - dy1 sin.
 * The table (cos, sin per position and i) is made once on the host
 * (model/rope_table.c): inv_freq and the angle in fp32 as transformers
 * computes them, cos and sin of that fp32 angle. */
#ifndef DSRT_KERNELS_COMMON_ROPE_H
#define DSRT_KERNELS_COMMON_ROPE_H

#include "kernels/common/dtype.h"

/* the pair (x1, x2) turned forward (inverse = 0) or back (inverse = 1) */
DSRT_HD void dsrt_rope_pair(float *x1, float *x2, float c, float s, int inverse)
{
    float a = *x1, b = *x2;
    if (inverse)
        s = -s;
    *x1 = a * c - b * s;
    *x2 = b * c + a * s;
}

#endif
