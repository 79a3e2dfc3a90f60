/* Rotary embeddings in place (see common/rope.h): N rows of x at stride ld,
 * heads 0 .. nh-1 of size hs at the start of each row (q's heads then k's
 * in a packed q|k|v row), row r at position r % T. cos and sin are (T, hs/2)
 * fp32 tables. inverse turns back: the backward on the gradient. */
#include "kernels/common/rope.h"
#include "kernels/cpu/cpu_common.h"

dsrt_status cpu_rope(dsrt_backend *be, void *x, const float *cosv, const float *sinv, int N, int T,
                     int nh, int hs, int ld, int inverse)
{
    if (N < 0 || T < 1 || nh < 0 || hs < 2 || hs % 2 || ld < nh * hs)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "cpu backend: rope: N=%d T=%d nh=%d hs=%d ld=%d (hs even, rows of ld >= nh*hs)", N, T,
                              nh, hs, ld);
    dsrt_dtype dt = be->dt;
    int half = hs / 2;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < N; r++) {
        const float *c = cosv + (size_t)(r % T) * half, *s = sinv + (size_t)(r % T) * half;
        for (int h = 0; h < nh; h++) {
            size_t base = (size_t)r * ld + (size_t)h * hs;
            for (int i = 0; i < half; i++) {
                float a = dsrt_load(dt, x, base + i), b = dsrt_load(dt, x, base + half + i);
                dsrt_rope_pair(&a, &b, c[i], s[i], inverse);
                dsrt_store(dt, x, base + i, a);
                dsrt_store(dt, x, base + half + i, b);
            }
        }
    }
    return DSRT_STATUS_OK;
}
