/* LayerNorm over channels (see common/layernorm.h for the math).
 * forward: out (N,C), mean and rstd (N) saved in fp32.
 * backward: dinp += (the residual stream), dw +=, db +=. Parameter gradients
 * are reduced over rows in row order inside each channel (parallel over
 * channel blocks), so the result does not depend on the thread count. */
#include <math.h>

#include "kernels/common/layernorm.h"
#include "kernels/cpu/cpu_common.h"

dsrt_status cpu_layernorm_forward(dsrt_backend *be, void *out, float *mean, float *rstd,
                                  const void *inp, const void *w, const void *b, int N, int C,
                                  float eps)
{
    size_t n = (size_t)N * C;
    dsrt_status st = cpu_check_reserved(be, n, "layernorm_forward");
    if (st)
        return st;
    const float *x = cpu_in(be, 0, inp, n);
    const float *wf = cpu_in(be, 1, w, C);
    const float *bf = cpu_in(be, 2, b, C);
    float *y = cpu_out(be, 3, out, n, false);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C;
        float m = 0.0f;
        for (int c = 0; c < C; c++)
            m += xi[c];
        m /= (float)C;
        float v = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = xi[c] - m;
            v += d * d;
        }
        v /= (float)C;
        float rs = 1.0f / sqrtf(v + eps);
        float *yi = y + (size_t)i * C;
        for (int c = 0; c < C; c++)
            yi[c] = dsrt_ln_out(xi[c], m, rs, wf[c], bf[c]);
        mean[i] = m;
        rstd[i] = rs;
    }
    cpu_out_put(be, out, y, n);
    return DSRT_STATUS_OK;
}

dsrt_status cpu_layernorm_backward(dsrt_backend *be, void *dinp, void *dw, void *db,
                                   const void *dout, const void *inp, const void *w,
                                   const float *mean, const float *rstd, int N, int C)
{
    size_t n = (size_t)N * C;
    dsrt_status st = cpu_check_reserved(be, n, "layernorm_backward");
    if (st)
        return st;
    const float *x = cpu_in(be, 0, inp, n);
    const float *dy = cpu_in(be, 1, dout, n);
    const float *wf = cpu_in(be, 2, w, C);
    float *dx = cpu_out(be, 3, dinp, n, true);
    float *dwf = cpu_out(be, 4, dw, C, true);
    float *dbf = cpu_out(be, 5, db, C, true);

#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C, *dyi = dy + (size_t)i * C;
        float m = mean[i], rs = rstd[i];
        float s1 = 0.0f, s2 = 0.0f; /* sum dxhat, sum dxhat * xhat */
        for (int c = 0; c < C; c++) {
            float xhat = (xi[c] - m) * rs, dxhat = dyi[c] * wf[c];
            s1 += dxhat;
            s2 += dxhat * xhat;
        }
        s1 /= (float)C;
        s2 /= (float)C;
        float *dxi = dx + (size_t)i * C;
        for (int c = 0; c < C; c++) {
            float xhat = (xi[c] - m) * rs, dxhat = dyi[c] * wf[c];
            dxi[c] += dsrt_ln_dx(dxhat, xhat, rs, s1, s2);
        }
    }
    enum { BLK = 64 };
    int nblk = (C + BLK - 1) / BLK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * BLK, c1 = c0 + BLK < C ? c0 + BLK : C;
        float gw[BLK] = {0}, gb[BLK] = {0};
        for (int i = 0; i < N; i++) {
            const float *xi = x + (size_t)i * C, *dyi = dy + (size_t)i * C;
            float m = mean[i], rs = rstd[i];
            for (int c = c0; c < c1; c++) {
                gw[c - c0] += dyi[c] * (xi[c] - m) * rs;
                gb[c - c0] += dyi[c];
            }
        }
        for (int c = c0; c < c1; c++) {
            dwf[c] += gw[c - c0];
            dbf[c] += gb[c - c0];
        }
    }
    cpu_out_put(be, dinp, dx, n);
    cpu_out_put(be, dw, dwf, C);
    cpu_out_put(be, db, dbf, C);
    return DSRT_STATUS_OK;
}
