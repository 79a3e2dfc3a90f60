/* RMSNorm over channels (see common/rmsnorm.h for the math).
 * forward: out (N,C), rstd (N) saved in fp32.
 * backward: dinp += (the residual stream), dw +=. The weight's gradient is
 * reduced over rows in row order inside each channel (parallel over channel
 * blocks), so the result does not depend on the thread count. Elements are
 * read and written in the storage type directly (fp32 arithmetic, each output
 * rounded once). */
#include <math.h>

#include "kernels/common/rmsnorm.h"
#include "kernels/cpu/cpu_common.h"

dsrt_status cpu_rmsnorm_forward(dsrt_backend *be, void *out, float *rstd, const void *inp,
                                const void *w, int N, int C, float eps)
{
    dsrt_dtype dt = be->dt;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        size_t r = (size_t)i * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) {
            float x = dsrt_load(dt, inp, r + c);
            ss += x * x;
        }
        float rs = 1.0f / sqrtf(ss / (float)C + eps);
        for (int c = 0; c < C; c++)
            dsrt_store(dt, out, r + c, dsrt_rms_out(dsrt_load(dt, inp, r + c), rs, dsrt_load(dt, w, c)));
        rstd[i] = rs;
    }
    return DSRT_STATUS_OK;
}

dsrt_status cpu_rmsnorm_backward(dsrt_backend *be, void *dinp, void *dw, const void *dout,
                                 const void *inp, const void *w, const float *rstd, int N, int C)
{
    dsrt_dtype dt = be->dt;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        size_t r = (size_t)i * C;
        float rs = rstd[i], s2 = 0.0f; /* sum dxhat * xhat */
        for (int c = 0; c < C; c++)
            s2 += dsrt_load(dt, dout, r + c) * dsrt_load(dt, w, c) * (dsrt_load(dt, inp, r + c) * rs);
        s2 /= (float)C;
        for (int c = 0; c < C; c++) {
            float xhat = dsrt_load(dt, inp, r + c) * rs;
            float dxhat = dsrt_load(dt, dout, r + c) * dsrt_load(dt, w, c);
            dsrt_store(dt, dinp, r + c, dsrt_load(dt, dinp, r + c) + dsrt_rms_dx(dxhat, xhat, rs, s2));
        }
    }
    if (!dw)
        return DSRT_STATUS_OK;
    enum { BLK = 64 };
    int nblk = (C + BLK - 1) / BLK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * BLK, c1 = c0 + BLK < C ? c0 + BLK : C;
        float gw[BLK] = {0};
        for (int i = 0; i < N; i++) {
            size_t r = (size_t)i * C;
            for (int c = c0; c < c1; c++)
                gw[c - c0] += dsrt_load(dt, dout, r + c) * (dsrt_load(dt, inp, r + c) * rstd[i]);
        }
        for (int c = c0; c < c1; c++)
            dsrt_store(dt, dw, c, dsrt_load(dt, dw, c) + gw[c - c0]);
    }
    return DSRT_STATUS_OK;
}
