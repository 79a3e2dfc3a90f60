/* Residual stream, element-wise over n values:
 * forward out = a + b; backward da += dout, db += dout.
 * fp32 arithmetic, each output rounded once to the storage type. da and db
 * must be distinct buffers (each is read, added to and written once). */
#include "kernels/cuda/cuda_common.cuh"

/* out (n) = a (n) + b (n) */
template <typename S>
__global__ void residual_forward_kernel(S *out, const S *a, const S *b, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = from_f32<S>(to_f32(a[i]) + to_f32(b[i]));
}

/* da (n) += dout (n), db (n) += dout (n) */
template <typename S>
__global__ void residual_backward_kernel(S *da, S *db, const S *dout, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float d = to_f32(dout[i]);
        da[i] = from_f32<S>(to_f32(da[i]) + d);
        db[i] = from_f32<S>(to_f32(db[i]) + d);
    }
}

template <typename S>
static dsrt_status residual_forward(cuda_backend *cb, void *out, const void *a, const void *b,
                                    size_t n)
{
    residual_forward_kernel<S>
        <<<cuda_blocks(n, 256), 256, 0, cb->stream>>>((S *)out, (const S *)a, (const S *)b, n);
    CUDA_LAUNCHED(residual_forward_kernel);
    return DSRT_STATUS_OK;
}

template <typename S>
static dsrt_status residual_backward(cuda_backend *cb, void *da, void *db, const void *dout,
                                     size_t n)
{
    residual_backward_kernel<S>
        <<<cuda_blocks(n, 256), 256, 0, cb->stream>>>((S *)da, (S *)db, (const S *)dout, n);
    CUDA_LAUNCHED(residual_backward_kernel);
    return DSRT_STATUS_OK;
}

dsrt_status cuda_residual_forward(dsrt_backend *be, void *out, const void *a, const void *b,
                                  size_t n)
{
    cuda_backend *cb = cuda_of(be);
    if (n == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, residual_forward, cb, out, a, b, n);
}

dsrt_status cuda_residual_backward(dsrt_backend *be, void *da, void *db, const void *dout, size_t n)
{
    cuda_backend *cb = cuda_of(be);
    if (n == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, residual_backward, cb, da, db, dout, n);
}
