/* GELU, tanh approximation (common/gelu.h), element-wise over n values:
 * forward out = gelu(inp); backward dinp = gelu'(inp) * dout (overwrites).
 * Each output is computed in fp32 and rounded once to the storage type. */
#include "kernels/common/gelu.h"
#include "kernels/cuda/cuda_common.cuh"

/* out (n) = gelu(inp (n)) */
template <typename S>
__global__ void gelu_forward_kernel(S *out, const S *inp, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = from_f32<S>(dsrt_gelu(to_f32(inp[i])));
}

/* dinp (n) = gelu'(inp (n)) * dout (n) */
template <typename S>
__global__ void gelu_backward_kernel(S *dinp, const S *inp, const S *dout, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dinp[i] = from_f32<S>(dsrt_gelu_grad(to_f32(inp[i])) * to_f32(dout[i]));
}

template <typename S>
static dsrt_status gelu_forward(cuda_backend *cb, void *out, const void *inp, size_t n)
{
    gelu_forward_kernel<S>
        <<<cuda_blocks(n, 256), 256, 0, cb->stream>>>((S *)out, (const S *)inp, n);
    CUDA_LAUNCHED(gelu_forward_kernel);
    return DSRT_STATUS_OK;
}

template <typename S>
static dsrt_status gelu_backward(cuda_backend *cb, void *dinp, const void *inp, const void *dout,
                                 size_t n)
{
    gelu_backward_kernel<S><<<cuda_blocks(n, 256), 256, 0, cb->stream>>>((S *)dinp, (const S *)inp,
                                                                         (const S *)dout, n);
    CUDA_LAUNCHED(gelu_backward_kernel);
    return DSRT_STATUS_OK;
}

dsrt_status cuda_gelu_forward(dsrt_backend *be, void *out, const void *inp, size_t n)
{
    cuda_backend *cb = cuda_of(be);
    if (n == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, gelu_forward, cb, out, inp, n);
}

dsrt_status cuda_gelu_backward(dsrt_backend *be, void *dinp, const void *inp, const void *dout,
                               size_t n)
{
    cuda_backend *cb = cuda_of(be);
    if (n == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, gelu_backward, cb, dinp, inp, dout, n);
}
