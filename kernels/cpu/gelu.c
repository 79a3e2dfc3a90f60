/* GELU (tanh approximation, see common/gelu.h), element-wise.
 * backward: dinp = gelu'(inp) * dout (overwrites). */
#include "kernels/common/gelu.h"
#include "kernels/cpu/cpu_common.h"

dsrt_status cpu_gelu_forward(dsrt_backend *be, void *out, const void *inp, size_t n)
{
    dsrt_dtype dt = be->dt;
    if (dt == DSRT_F32) {
        float *y = out;
        const float *x = inp;
#pragma omp parallel for simd schedule(static) if (n > 16384)
        for (size_t i = 0; i < n; i++)
            y[i] = dsrt_gelu(x[i]);
        return DSRT_STATUS_OK;
    }
#pragma omp parallel for schedule(static) if (n > 16384)
    for (size_t i = 0; i < n; i++)
        dsrt_store(dt, out, i, dsrt_gelu(dsrt_load(dt, inp, i)));
    return DSRT_STATUS_OK;
}

dsrt_status cpu_gelu_backward(dsrt_backend *be, void *dinp, const void *inp, const void *dout,
                              size_t n)
{
    dsrt_dtype dt = be->dt;
    if (dt == DSRT_F32) {
        float *dx = dinp;
        const float *x = inp, *dy = dout;
#pragma omp parallel for simd schedule(static) if (n > 16384)
        for (size_t i = 0; i < n; i++)
            dx[i] = dsrt_gelu_grad(x[i]) * dy[i];
        return DSRT_STATUS_OK;
    }
#pragma omp parallel for schedule(static) if (n > 16384)
    for (size_t i = 0; i < n; i++)
        dsrt_store(dt, dinp, i, dsrt_gelu_grad(dsrt_load(dt, inp, i)) * dsrt_load(dt, dout, i));
    return DSRT_STATUS_OK;
}
