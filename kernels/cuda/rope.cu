/* Rotary position embeddings in place (math in common/rope.h): N rows of x at
 * stride ld elements, heads 0..nh-1 of hs channels at the start of each row
 * (q's heads then k's in a packed q|k|v row), row r at position r % T; cos,
 * sin (T, hs/2) fp32 tables on the device. Element i < hs/2 of a head pairs
 * with i + hs/2; one thread turns one pair, forward (inverse = 0) or back
 * (inverse = 1: the backward, on the gradient). fp32 arithmetic, each output
 * rounded once to the storage type. Needs hs even and ld >= nh * hs. */
#include "kernels/common/rope.h"
#include "kernels/cuda/cuda_common.cuh"

/* x (N rows at stride ld): heads 0..nh-1 turned in place */
template <typename S>
__global__ void rope_kernel(S *x, const float *cosv, const float *sinv, int N, int T, int nh,
                            int hs, int ld, int inverse)
{
    int half = hs / 2;
    size_t n = (size_t)N * nh * half;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        /* i indexes (r, h, j) */
        int j = (int)(i % half);
        size_t q = i / half;
        int h = (int)(q % nh);
        size_t r = q / nh;
        size_t t = r % (size_t)T;
        S *p = x + r * ld + (size_t)h * hs;
        float a = to_f32(p[j]), b = to_f32(p[half + j]);
        dsrt_rope_pair(&a, &b, cosv[t * half + j], sinv[t * half + j], inverse);
        p[j] = from_f32<S>(a);
        p[half + j] = from_f32<S>(b);
    }
}

template <typename S>
static dsrt_status rope(cuda_backend *cb, void *x, const float *cosv, const float *sinv, int N,
                        int T, int nh, int hs, int ld, int inverse)
{
    size_t n = (size_t)N * nh * (hs / 2);
    rope_kernel<S><<<cuda_blocks(n, 256), 256, 0, cb->stream>>>((S *)x, cosv, sinv, N, T, nh, hs,
                                                                ld, inverse);
    CUDA_LAUNCHED(rope_kernel);
    return DSRT_STATUS_OK;
}

dsrt_status cuda_rope(dsrt_backend *be, void *x, const float *cosv, const float *sinv, int N, int T,
                      int nh, int hs, int ld, int inverse)
{
    cuda_backend *cb = cuda_of(be);
    if (N < 0 || T <= 0 || nh < 0 || hs <= 0 || hs % 2 != 0 || ld < 0 ||
        (long long)nh * hs > ld)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "cuda backend: rope: N=%d T=%d nh=%d hs=%d ld=%d (hs must be even, "
                              "nh * hs at most ld)",
                              N, T, nh, hs, ld);
    if (N == 0 || nh == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, rope, cb, x, cosv, sinv, N, T, nh, hs, ld, inverse);
}
