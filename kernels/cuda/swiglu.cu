/* SwiGLU (math in common/swiglu.h), element-wise: gu (N,2F) holds gate | up
 * per row (gate_proj and up_proj side by side), out (N,F) = silu(gate) * up.
 * backward: dgu (N,2F) = (overwrites) d gate | d up. One thread per (row, j);
 * fp32 arithmetic, each output rounded once to the storage type. */
#include "kernels/common/swiglu.h"
#include "kernels/cuda/cuda_common.cuh"

/* out (N,F) = silu(gu[:, :F]) * gu[:, F:] */
template <typename S>
__global__ void swiglu_forward_kernel(S *out, const S *gu, int N, int F)
{
    size_t n = (size_t)N * F;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / F, j = i % F;
        const S *g = gu + r * 2 * F; // (2F)
        out[i] = from_f32<S>(dsrt_swiglu(to_f32(g[j]), to_f32(g[F + j])));
    }
}

/* dgu (N,2F) = d gate | d up, from gu (N,2F) and dout (N,F) */
template <typename S>
__global__ void swiglu_backward_kernel(S *dgu, const S *gu, const S *dout, int N, int F)
{
    size_t n = (size_t)N * F;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / F, j = i % F;
        size_t g0 = r * 2 * F + j; /* gate element; up is F further */
        float dg, du;
        dsrt_swiglu_grad(to_f32(gu[g0]), to_f32(gu[g0 + F]), to_f32(dout[i]), &dg, &du);
        dgu[g0] = from_f32<S>(dg);
        dgu[g0 + F] = from_f32<S>(du);
    }
}

template <typename S>
static dsrt_status swiglu_forward(cuda_backend *cb, void *out, const void *gu, int N, int F)
{
    size_t n = (size_t)N * F;
    swiglu_forward_kernel<S>
        <<<cuda_blocks(n, 256), 256, 0, cb->stream>>>((S *)out, (const S *)gu, N, F);
    CUDA_LAUNCHED(swiglu_forward_kernel);
    return DSRT_STATUS_OK;
}

template <typename S>
static dsrt_status swiglu_backward(cuda_backend *cb, void *dgu, const void *gu, const void *dout,
                                   int N, int F)
{
    size_t n = (size_t)N * F;
    swiglu_backward_kernel<S><<<cuda_blocks(n, 256), 256, 0, cb->stream>>>(
        (S *)dgu, (const S *)gu, (const S *)dout, N, F);
    CUDA_LAUNCHED(swiglu_backward_kernel);
    return DSRT_STATUS_OK;
}

static dsrt_status check_dims(const char *op, int N, int F)
{
    if (N < 0 || F < 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "cuda backend: %s: N=%d F=%d", op, N,
                              F);
    return DSRT_STATUS_OK;
}

dsrt_status cuda_swiglu_forward(dsrt_backend *be, void *out, const void *gu, int N, int F)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check_dims("swiglu_forward", N, F));
    if (N == 0 || F == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, swiglu_forward, cb, out, gu, N, F);
}

dsrt_status cuda_swiglu_backward(dsrt_backend *be, void *dgu, const void *gu, const void *dout,
                                 int N, int F)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check_dims("swiglu_backward", N, F));
    if (N == 0 || F == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, swiglu_backward, cb, dgu, gu, dout, N, F);
}
