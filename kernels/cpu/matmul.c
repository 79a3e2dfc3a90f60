/* Matmul with bias: out (N,OC) = inp (N,K) . W + bias, W stored (K,OC)
 * (Conv1D, DSRT_W_KN) or (OC,K) (tied LM head, DSRT_W_NK); OpenBLAS sgemm
 * through cpu_gemm_typed (gemm.c), which for 16-bit storage widens the
 * operands tile by tile and rounds each output once, as cuBLAS does with fp32
 * compute. backward: dinp (N,K) = dout . W^T (overwrites; skipped when NULL),
 * dW += inp^T . dout (skipped when NULL), dbias += column sums of dout (rows
 * summed in order inside each column, so independent of the thread count). */
#include "kernels/cpu/cpu_common.h"

dsrt_status cpu_matmul_forward(dsrt_backend *be, void *out, const void *inp, const void *w,
                               const void *bias, int N, int K, int OC, dsrt_wlayout wl)
{
    int nk = wl == DSRT_W_NK;
    return cpu_gemm_typed(be, 0, nk, N, OC, K, inp, K, w, nk ? K : OC, out, OC,
                          bias ? CPU_C_BIAS : CPU_C_ZERO, bias);
}

/* dbias (OC) += column sums of dout (N,OC), summed in fp32 in row order */
static void colsum(dsrt_dtype dt, void *dbias, const void *dout, int N, int OC)
{
    enum { BLK = 64 };
    int nblk = (OC + BLK - 1) / BLK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int o0 = blk * BLK, o1 = o0 + BLK < OC ? o0 + BLK : OC;
        float acc[BLK] = {0};
        if (dt == DSRT_F32) {
            for (int i = 0; i < N; i++) {
                const float *di = (const float *)dout + (size_t)i * OC;
                for (int o = o0; o < o1; o++)
                    acc[o - o0] += di[o];
            }
        } else {
            for (int i = 0; i < N; i++)
                for (int o = o0; o < o1; o++)
                    acc[o - o0] += dsrt_load(dt, dout, (size_t)i * OC + o);
        }
        for (int o = o0; o < o1; o++)
            dsrt_store(dt, dbias, (size_t)o, dsrt_load(dt, dbias, (size_t)o) + acc[o - o0]);
    }
}

dsrt_status cpu_matmul_backward(dsrt_backend *be, void *dinp, void *dw, void *dbias,
                                const void *dout, const void *inp, const void *w, int N, int K,
                                int OC, dsrt_wlayout wl)
{
    int nk = wl == DSRT_W_NK;
    if (dinp)
        DSRT_TRY(cpu_gemm_typed(be, 0, !nk, N, K, OC, dout, OC, w, nk ? K : OC, dinp, K,
                                CPU_C_ZERO, NULL));
    if (dw) {
        if (nk) /* dW (OC,K) += dout^T . inp */
            DSRT_TRY(cpu_gemm_typed(be, 1, 0, OC, K, N, dout, OC, inp, K, dw, K, CPU_C_LOAD,
                                    NULL));
        else /* dW (K,OC) += inp^T . dout */
            DSRT_TRY(cpu_gemm_typed(be, 1, 0, K, OC, N, inp, K, dout, OC, dw, OC, CPU_C_LOAD,
                                    NULL));
    }
    if (dbias)
        colsum(be->dt, dbias, dout, N, OC);
    return DSRT_STATUS_OK;
}
