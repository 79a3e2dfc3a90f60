/* A bias over columns, for outputs a GEMM wrote into part of a wider row
 * (q | k | v and gate | up side by side): x (N rows of OC at stride ld) +=
 * bias (OC). backward: dbias += the column sums of dout, rows in order inside
 * each column (parallel over column blocks: the same bits for any thread
 * count). */
#include "kernels/cpu/cpu_common.h"

static dsrt_status check(const char *op, int N, int OC, int ld)
{
    if (N < 0 || OC < 0 || ld < OC)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "cpu backend: %s: N=%d OC=%d ld=%d (ld >= OC)", op, N, OC,
                              ld);
    return DSRT_STATUS_OK;
}

dsrt_status cpu_bias_forward(dsrt_backend *be, void *x, const void *bias, int N, int OC, int ld)
{
    DSRT_TRY(check("bias_forward", N, OC, ld));
    dsrt_dtype dt = be->dt;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < N; r++)
        for (int j = 0; j < OC; j++) {
            size_t i = (size_t)r * ld + j;
            dsrt_store(dt, x, i, dsrt_load(dt, x, i) + dsrt_load(dt, bias, j));
        }
    return DSRT_STATUS_OK;
}

dsrt_status cpu_bias_backward(dsrt_backend *be, void *dbias, const void *dout, int N, int OC, int ld)
{
    DSRT_TRY(check("bias_backward", N, OC, ld));
    dsrt_dtype dt = be->dt;
    enum { BLK = 64 };
    int nblk = (OC + BLK - 1) / BLK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * BLK, c1 = c0 + BLK < OC ? c0 + BLK : OC;
        float g[BLK] = {0};
        for (int r = 0; r < N; r++)
            for (int c = c0; c < c1; c++)
                g[c - c0] += dsrt_load(dt, dout, (size_t)r * ld + c);
        for (int c = c0; c < c1; c++)
            dsrt_store(dt, dbias, c, dsrt_load(dt, dbias, c) + g[c - c0]);
    }
    return DSRT_STATUS_OK;
}
