/* RMSNorm over channels (math in common/rmsnorm.h): one warp per row.
 * forward: out (N,C); rstd (N) fp32 saved for backward, rstd =
 * 1/sqrtf(mean(x^2) + eps) (IEEE sqrtf and division, not rsqrtf).
 * backward: dinp += (the residual stream; one warp per row), dw += (skipped
 * when dw is NULL). dw is a column reduction over rows: fp32 partials per
 * 256-row chunk, then a second kernel adds the chunks in order and touches each
 * dw element once (deterministic, no atomics). Needs reserve()d scratch of
 * chunks(N) * C floats. Rows are independent, so any N works. */
#include "kernels/common/rmsnorm.h"
#include "kernels/cuda/cuda_common.cuh"

enum { RMS_ROWS_PER_BLOCK = 8 }; /* warps per block, one row each */

/* out (N,C), rstd (N) <- inp (N,C), w (C) */
template <typename S>
__global__ void rmsnorm_forward_kernel(S *out, float *rstd, const S *inp, const S *w, int N, int C,
                                       float eps)
{
    int row = blockIdx.x * RMS_ROWS_PER_BLOCK + (int)(threadIdx.x / 32);
    int lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const S *x = inp + (size_t)row * C; // (C)
    S *y = out + (size_t)row * C;       // (C)
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float v = to_f32(x[c]);
        ss += v * v;
    }
    float rs = 1.0f / sqrtf(warp_sum(ss) / (float)C + eps);
    for (int c = lane; c < C; c += 32)
        y[c] = from_f32<S>(dsrt_rms_out(to_f32(x[c]), rs, to_f32(w[c])));
    if (lane == 0)
        rstd[row] = rs;
}

/* dinp (N,C) += dx of each row; dout, inp (N,C), w (C), rstd (N) */
template <typename S>
__global__ void rmsnorm_dinp_kernel(S *dinp, const S *dout, const S *inp, const S *w,
                                    const float *rstd, int N, int C)
{
    int row = blockIdx.x * RMS_ROWS_PER_BLOCK + (int)(threadIdx.x / 32);
    int lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const S *x = inp + (size_t)row * C;   // (C)
    const S *dy = dout + (size_t)row * C; // (C)
    S *dx = dinp + (size_t)row * C;       // (C)
    float rs = rstd[row];
    float s2 = 0.0f; /* sum dxhat * xhat */
    for (int c = lane; c < C; c += 32)
        s2 += to_f32(dy[c]) * to_f32(w[c]) * (to_f32(x[c]) * rs);
    s2 = warp_sum(s2) / (float)C;
    for (int c = lane; c < C; c += 32) {
        float xhat = to_f32(x[c]) * rs;
        float dxhat = to_f32(dy[c]) * to_f32(w[c]);
        dx[c] = from_f32<S>(to_f32(dx[c]) + dsrt_rms_dx(dxhat, xhat, rs, s2));
    }
}

/* part (chunks, C) fp32: per chunk of rows, sum dout * xhat.
 * block (32, 8): 32 channels, 8 row lanes combined in a fixed order. */
template <typename S>
__global__ void rmsnorm_dw_partial_kernel(float *part, const S *dout, const S *inp,
                                          const float *rstd, int N, int C)
{
    __shared__ float sh[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * CUDA_COLRED_ROWS;
    int r1 = min(N, r0 + CUDA_COLRED_ROWS);
    float gw = 0.0f;
    if (c < C)
        for (int r = r0 + (int)threadIdx.y; r < r1; r += 8) {
            size_t i = (size_t)r * C + c;
            gw += to_f32(dout[i]) * (to_f32(inp[i]) * rstd[r]);
        }
    sh[threadIdx.y][threadIdx.x] = gw;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float s = 0.0f;
        for (int y = 0; y < 8; y++)
            s += sh[y][threadIdx.x];
        part[(size_t)blockIdx.y * C + c] = s;
    }
}

/* dw (C) += the chunks' partials, in chunk order */
template <typename S>
__global__ void rmsnorm_dw_finish_kernel(S *dw, const float *part, int chunks, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++)
        s += part[(size_t)k * C + c];
    dw[c] = from_f32<S>(to_f32(dw[c]) + s);
}

template <typename S>
static dsrt_status rmsnorm_forward(cuda_backend *cb, void *out, float *rstd, const void *inp,
                                   const void *w, int N, int C, float eps)
{
    unsigned blocks = (unsigned)((N + RMS_ROWS_PER_BLOCK - 1) / RMS_ROWS_PER_BLOCK);
    rmsnorm_forward_kernel<S><<<blocks, 32 * RMS_ROWS_PER_BLOCK, 0, cb->stream>>>(
        (S *)out, rstd, (const S *)inp, (const S *)w, N, C, eps);
    CUDA_LAUNCHED(rmsnorm_forward_kernel);
    return DSRT_STATUS_OK;
}

template <typename S>
static dsrt_status rmsnorm_backward(cuda_backend *cb, void *dinp, void *dw, const void *dout,
                                    const void *inp, const void *w, const float *rstd, int N,
                                    int C)
{
    size_t chunks = cuda_colred_chunks((size_t)N);
    if (dw)
        DSRT_TRY(cuda_need(cb, chunks * (size_t)C, cb->partials_n, "rmsnorm_backward (dw)",
                           "floats"));
    unsigned blocks = (unsigned)((N + RMS_ROWS_PER_BLOCK - 1) / RMS_ROWS_PER_BLOCK);
    rmsnorm_dinp_kernel<S><<<blocks, 32 * RMS_ROWS_PER_BLOCK, 0, cb->stream>>>(
        (S *)dinp, (const S *)dout, (const S *)inp, (const S *)w, rstd, N, C);
    CUDA_LAUNCHED(rmsnorm_dinp_kernel);
    if (!dw)
        return DSRT_STATUS_OK;
    dim3 grid((unsigned)((C + 31) / 32), (unsigned)chunks);
    rmsnorm_dw_partial_kernel<S><<<grid, dim3(32, 8), 0, cb->stream>>>(
        cb->partials, (const S *)dout, (const S *)inp, rstd, N, C);
    CUDA_LAUNCHED(rmsnorm_dw_partial_kernel);
    rmsnorm_dw_finish_kernel<S><<<(unsigned)((C + 255) / 256), 256, 0, cb->stream>>>(
        (S *)dw, cb->partials, (int)chunks, C);
    CUDA_LAUNCHED(rmsnorm_dw_finish_kernel);
    return DSRT_STATUS_OK;
}

static dsrt_status check_dims(const char *op, int N, int C)
{
    if (N < 0 || C <= 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "cuda backend: %s: N=%d C=%d", op, N,
                              C);
    if ((size_t)N > 65535u * (size_t)CUDA_COLRED_ROWS)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "cuda backend: %s: N=%d rows is too many",
                              op, N);
    return DSRT_STATUS_OK;
}

dsrt_status cuda_rmsnorm_forward(dsrt_backend *be, void *out, float *rstd, const void *inp,
                                 const void *w, int N, int C, float eps)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check_dims("rmsnorm_forward", N, C));
    if (N == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, rmsnorm_forward, cb, out, rstd, inp, w, N, C, eps);
}

dsrt_status cuda_rmsnorm_backward(dsrt_backend *be, void *dinp, void *dw, const void *dout,
                                  const void *inp, const void *w, const float *rstd, int N, int C)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check_dims("rmsnorm_backward", N, C));
    if (N == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, rmsnorm_backward, cb, dinp, dw, dout, inp, w, rstd, N, C);
}
