/* SwiGLU (see common/swiglu.h): gu (N, 2F) holds gate | up per row (the
 * gate_proj and up_proj outputs side by side), out (N, F) = silu(gate) * up.
 * backward: dgu (N, 2F) = (overwrites). */
#include "kernels/common/swiglu.h"
#include "kernels/cpu/cpu_common.h"

dsrt_status cpu_swiglu_forward(dsrt_backend *be, void *out, const void *gu, int N, int F)
{
    dsrt_dtype dt = be->dt;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < N; r++) {
        size_t i0 = (size_t)r * 2 * F, o0 = (size_t)r * F;
        for (int j = 0; j < F; j++)
            dsrt_store(dt, out, o0 + j, dsrt_swiglu(dsrt_load(dt, gu, i0 + j), dsrt_load(dt, gu, i0 + F + j)));
    }
    return DSRT_STATUS_OK;
}

dsrt_status cpu_swiglu_backward(dsrt_backend *be, void *dgu, const void *gu, const void *dout, int N,
                                int F)
{
    dsrt_dtype dt = be->dt;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < N; r++) {
        size_t i0 = (size_t)r * 2 * F, o0 = (size_t)r * F;
        for (int j = 0; j < F; j++) {
            float dg, du;
            dsrt_swiglu_grad(dsrt_load(dt, gu, i0 + j), dsrt_load(dt, gu, i0 + F + j),
                             dsrt_load(dt, dout, o0 + j), &dg, &du);
            dsrt_store(dt, dgu, i0 + j, dg);
            dsrt_store(dt, dgu, i0 + F + j, du);
        }
    }
    return DSRT_STATUS_OK;
}
