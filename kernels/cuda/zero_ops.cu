/* The data-parallel ops of backend.h (ZeRO gradient buckets), CUDA:
 *   convert:    dst (dst_dt) = src (src_dt), between fp32, fp16 and bf16, so a
 *               bucket can travel in its communication_data_type;
 *   scale:      x *= s (the 1/world averaging, the loss-scale divide);
 *   accumulate: dst += src (a reduced bucket into the gradient partition);
 *   copy:       device to device bytes.
 * Element-wise grid-stride loops queued on the backend's stream, no host sync.
 * Arithmetic is one fp32 operation per element (a multiply or an add, never
 * contracted into an FMA: there is only the one) and each result is rounded
 * once to the storage type, to nearest even (from_f32 in cuda_common.cuh):
 * for every non-NaN value the same bits as common/dtype.h on the CPU backend
 * (kernels/cpu/zero_ops.c). A NaN stays a NaN; its payload bits may differ
 * from the CPU's (the hardware returns its canonical NaN), which only matters
 * to a step the overflow check skips anyway.
 * Converting between the two 16-bit types goes through fp32, where every
 * fp16 and bf16 value is exact, so it too rounds once. */
#include "kernels/cuda/cuda_common.cuh"

enum { ZERO_THREADS = 256 };

static bool known_dtype(dsrt_dtype dt)
{
    return dt == DSRT_F32 || dt == DSRT_F16 || dt == DSRT_BF16;
}

/* ---------------------------------------------------------------- kernels */
/* dst (n) = src (n), rounded to D */
template <typename D, typename S>
__global__ void zero_convert_kernel(D *__restrict__ dst, const S *__restrict__ src, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<D>(to_f32(src[i]));
}

/* x (n) = x * s */
template <typename S> __global__ void zero_scale_kernel(S *x, float s, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = from_f32<S>(to_f32(x[i]) * s);
}

/* dst (n) += src (n) */
template <typename S>
__global__ void zero_accumulate_kernel(S *__restrict__ dst, const S *__restrict__ src, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<S>(to_f32(dst[i]) + to_f32(src[i]));
}

/* ---------------------------------------------------------------- launches */
template <typename D, typename S>
static dsrt_status convert_launch(cuda_backend *cb, void *dst, const void *src, size_t n)
{
    zero_convert_kernel<D, S><<<cuda_blocks(n, ZERO_THREADS), ZERO_THREADS, 0, cb->stream>>>(
        (D *)dst, (const S *)src, n);
    CUDA_LAUNCHED(zero_convert_kernel);
    return DSRT_STATUS_OK;
}

/* the source type picked at run time, the destination type D by CUDA_DISPATCH */
template <typename D>
static dsrt_status convert_to(cuda_backend *cb, void *dst, const void *src, dsrt_dtype src_dt,
                              size_t n)
{
    switch (src_dt) {
    case DSRT_F32:
        return convert_launch<D, float>(cb, dst, src, n);
    case DSRT_F16:
        return convert_launch<D, __half>(cb, dst, src, n);
    default:
        return convert_launch<D, __nv_bfloat16>(cb, dst, src, n);
    }
}

template <typename S> static dsrt_status scale_launch(cuda_backend *cb, void *x, float s, size_t n)
{
    zero_scale_kernel<S>
        <<<cuda_blocks(n, ZERO_THREADS), ZERO_THREADS, 0, cb->stream>>>((S *)x, s, n);
    CUDA_LAUNCHED(zero_scale_kernel);
    return DSRT_STATUS_OK;
}

template <typename S>
static dsrt_status accumulate_launch(cuda_backend *cb, void *dst, const void *src, size_t n)
{
    zero_accumulate_kernel<S><<<cuda_blocks(n, ZERO_THREADS), ZERO_THREADS, 0, cb->stream>>>(
        (S *)dst, (const S *)src, n);
    CUDA_LAUNCHED(zero_accumulate_kernel);
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- the ops */
dsrt_status cuda_copy(dsrt_backend *be, void *dst, const void *src, size_t bytes)
{
    cuda_backend *cb = cuda_of(be);
    if (bytes == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cb->stream));
    return DSRT_STATUS_OK;
}

dsrt_status cuda_convert(dsrt_backend *be, void *dst, dsrt_dtype dst_dt, const void *src,
                         dsrt_dtype src_dt, size_t n)
{
    cuda_backend *cb = cuda_of(be);
    if (!known_dtype(dst_dt) || !known_dtype(src_dt))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "cuda backend: convert: unknown dtype (dst %d, src %d)", (int)dst_dt,
                              (int)src_dt);
    if (n == 0)
        return DSRT_STATUS_OK;
    if (dst_dt == src_dt) /* nothing to round: the bytes as they are */
        return cuda_copy(be, dst, src, n * dsrt_dtype_size(src_dt));
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(dst_dt, convert_to, cb, dst, src, src_dt, n);
}

dsrt_status cuda_scale(dsrt_backend *be, void *x, dsrt_dtype dt, float s, size_t n)
{
    cuda_backend *cb = cuda_of(be);
    if (!known_dtype(dt))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "cuda backend: scale: unknown dtype %d",
                              (int)dt);
    /* x * 1 is x (a NaN could only lose its payload): skipped, as on the CPU */
    if (n == 0 || s == 1.0f)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(dt, scale_launch, cb, x, s, n);
}

dsrt_status cuda_accumulate(dsrt_backend *be, void *dst, const void *src, dsrt_dtype dt, size_t n)
{
    cuda_backend *cb = cuda_of(be);
    if (!known_dtype(dt))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "cuda backend: accumulate: unknown dtype %d", (int)dt);
    if (n == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(dt, accumulate_launch, cb, dst, src, n);
}
