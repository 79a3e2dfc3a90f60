/* Matmul with bias: out (N,OC) = inp (N,K) . W + bias, W stored (K,OC)
 * (Conv1D, DSRT_W_KN) or (OC,K) (tied LM head, DSRT_W_NK); OpenBLAS sgemm.
 * backward: dinp (N,K) = dout . W^T (overwrites; skipped when NULL),
 * dW += inp^T . dout (beta = 1), dbias += column sums of dout (rows summed in
 * order inside each column, so independent of the thread count).
 * 16-bit storage: the operands are widened to fp32 and each output rounded
 * once, as cuBLAS does with fp32 compute. */
#include <cblas.h>

#include "kernels/cpu/cpu_common.h"

dsrt_status cpu_matmul_forward(dsrt_backend *be, void *out, const void *inp, const void *w,
                               const void *bias, int N, int K, int OC, dsrt_wlayout wl)
{
    size_t nin = (size_t)N * K, nw = (size_t)K * OC, nout = (size_t)N * OC;
    dsrt_status st = cpu_check_reserved(be, nin > nout ? nin : nout, "matmul_forward");
    if (st || (st = cpu_check_reserved(be, nw, "matmul_forward")))
        return st;
    const float *x = cpu_in(be, 0, inp, nin);
    const float *wf = cpu_in(be, 1, w, nw);
    const float *bf = cpu_in(be, 3, bias, OC);
    float *y = cpu_out(be, 2, out, nout, false);
    float beta = 0.0f;
    if (bf) {
#pragma omp parallel for schedule(static) if ((size_t)N * OC > 65536)
        for (int i = 0; i < N; i++) {
            float *yi = y + (size_t)i * OC;
            for (int o = 0; o < OC; o++)
                yi[o] = bf[o];
        }
        beta = 1.0f;
    }
    if (wl == DSRT_W_KN)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, K, 1.0f, x, K, wf, OC, beta,
                    y, OC);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, K, 1.0f, x, K, wf, K, beta, y,
                    OC);
    cpu_out_put(be, out, y, nout);
    return DSRT_STATUS_OK;
}

dsrt_status cpu_matmul_backward(dsrt_backend *be, void *dinp, void *dw, void *dbias,
                                const void *dout, const void *inp, const void *w, int N, int K,
                                int OC, dsrt_wlayout wl)
{
    size_t nin = (size_t)N * K, nw = (size_t)K * OC, nout = (size_t)N * OC;
    dsrt_status st = cpu_check_reserved(be, nin > nout ? nin : nout, "matmul_backward");
    if (st || (st = cpu_check_reserved(be, nw, "matmul_backward")))
        return st;
    const float *dy = cpu_in(be, 0, dout, nout);
    if (dinp) {
        const float *wf = cpu_in(be, 2, w, nw);
        float *dx = cpu_out(be, 3, dinp, nin, false);
        if (wl == DSRT_W_KN)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, K, OC, 1.0f, dy, OC, wf, OC,
                        0.0f, dx, K);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, OC, 1.0f, dy, OC, wf, K,
                        0.0f, dx, K);
        cpu_out_put(be, dinp, dx, nin);
    }
    const float *x = cpu_in(be, 1, inp, nin);
    float *dwf = cpu_out(be, 4, dw, nw, true);
    if (wl == DSRT_W_KN)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, OC, N, 1.0f, x, K, dy, OC, 1.0f,
                    dwf, OC);
    else
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, K, N, 1.0f, dy, OC, x, K, 1.0f,
                    dwf, K);
    cpu_out_put(be, dw, dwf, nw);
    if (dbias) {
        float *dbf = cpu_out(be, 5, dbias, OC, true);
        enum { BLK = 64 };
        int nblk = (OC + BLK - 1) / BLK;
#pragma omp parallel for schedule(static)
        for (int blk = 0; blk < nblk; blk++) {
            int o0 = blk * BLK, o1 = o0 + BLK < OC ? o0 + BLK : OC;
            float acc[BLK] = {0};
            for (int i = 0; i < N; i++) {
                const float *di = dy + (size_t)i * OC;
                for (int o = o0; o < o1; o++)
                    acc[o - o0] += di[o];
            }
            for (int o = o0; o < o1; o++)
                dbf[o] += acc[o - o0];
        }
        cpu_out_put(be, dbias, dbf, OC);
    }
    return DSRT_STATUS_OK;
}
