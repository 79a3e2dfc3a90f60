/* Residual stream: out = a + b; backward da += dout, db += dout. */
#include "kernels/cpu/cpu_common.h"

dsrt_status cpu_residual_forward(dsrt_backend *be, void *out, const void *a, const void *b, size_t n)
{
    dsrt_dtype dt = be->dt;
    if (dt == DSRT_F32) {
        float *y = out;
        const float *x1 = a, *x2 = b;
#pragma omp parallel for simd schedule(static) if (n > 32768)
        for (size_t i = 0; i < n; i++)
            y[i] = x1[i] + x2[i];
        return DSRT_STATUS_OK;
    }
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++)
        dsrt_store(dt, out, i, dsrt_load(dt, a, i) + dsrt_load(dt, b, i));
    return DSRT_STATUS_OK;
}

dsrt_status cpu_residual_backward(dsrt_backend *be, void *da, void *db, const void *dout, size_t n)
{
    dsrt_dtype dt = be->dt;
    if (dt == DSRT_F32) {
        float *ga = da, *gb = db;
        const float *d = dout;
#pragma omp parallel for simd schedule(static) if (n > 32768)
        for (size_t i = 0; i < n; i++) {
            ga[i] += d[i];
            gb[i] += d[i];
        }
        return DSRT_STATUS_OK;
    }
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++) {
        float d = dsrt_load(dt, dout, i);
        dsrt_store(dt, da, i, dsrt_load(dt, da, i) + d);
        dsrt_store(dt, db, i, dsrt_load(dt, db, i) + d);
    }
    return DSRT_STATUS_OK;
}
