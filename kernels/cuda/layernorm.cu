/* LayerNorm over channels (math in common/layernorm.h): one warp per row.
 * forward: out (N,C); mean, rstd (N) fp32 saved for backward; two-pass
 * statistics (mean, then sum of squared deviations), rstd = 1/sqrtf(var+eps)
 * (IEEE sqrtf and division, not rsqrtf).
 * backward: dinp += (the residual stream; one warp per row), dw +=, db +=.
 * The parameter gradients are column reductions over rows: fp32 partials per
 * 256-row chunk, then a second kernel adds the chunks in order and touches each
 * dw/db element once (deterministic, no atomics). Needs reserve()d scratch of
 * chunks(N) * 2C floats. Rows are independent, so any N works. */
#include "kernels/common/layernorm.h"
#include "kernels/cuda/cuda_common.cuh"

enum { LN_ROWS_PER_BLOCK = 8 }; /* warps per block, one row each */

/* out (N,C), mean (N), rstd (N) <- inp (N,C), w (C), b (C) */
template <typename S>
__global__ void layernorm_forward_kernel(S *out, float *mean, float *rstd, const S *inp, const S *w,
                                         const S *b, int N, int C, float eps)
{
    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (int)(threadIdx.x / 32);
    int lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const S *x = inp + (size_t)row * C; // (C)
    S *y = out + (size_t)row * C;       // (C)
    float s = 0.0f;
    for (int c = lane; c < C; c += 32)
        s += to_f32(x[c]);
    float m = warp_sum(s) / (float)C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = to_f32(x[c]) - m;
        v += d * d;
    }
    v = warp_sum(v) / (float)C;
    float rs = 1.0f / sqrtf(v + eps);
    for (int c = lane; c < C; c += 32)
        y[c] = from_f32<S>(dsrt_ln_out(to_f32(x[c]), m, rs, to_f32(w[c]), to_f32(b[c])));
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = rs;
    }
}

/* dinp (N,C) += dx of each row; dout, inp (N,C), w (C), mean, rstd (N) */
template <typename S>
__global__ void layernorm_dinp_kernel(S *dinp, const S *dout, const S *inp, const S *w,
                                      const float *mean, const float *rstd, int N, int C)
{
    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (int)(threadIdx.x / 32);
    int lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const S *x = inp + (size_t)row * C;   // (C)
    const S *dy = dout + (size_t)row * C; // (C)
    S *dx = dinp + (size_t)row * C;       // (C)
    float m = mean[row], rs = rstd[row];
    float s1 = 0.0f, s2 = 0.0f; /* sum dxhat, sum dxhat * xhat */
    for (int c = lane; c < C; c += 32) {
        float xhat = (to_f32(x[c]) - m) * rs;
        float dxhat = to_f32(dy[c]) * to_f32(w[c]);
        s1 += dxhat;
        s2 += dxhat * xhat;
    }
    s1 = warp_sum(s1) / (float)C;
    s2 = warp_sum(s2) / (float)C;
    for (int c = lane; c < C; c += 32) {
        float xhat = (to_f32(x[c]) - m) * rs;
        float dxhat = to_f32(dy[c]) * to_f32(w[c]);
        dx[c] = from_f32<S>(to_f32(dx[c]) + dsrt_ln_dx(dxhat, xhat, rs, s1, s2));
    }
}

/* part (chunks, 2, C) fp32: per chunk of rows, sum dout * xhat (dw) and sum dout (db).
 * block (32, 8): 32 channels, 8 row lanes combined in a fixed order. */
template <typename S>
__global__ void layernorm_dwdb_partial_kernel(float *part, const S *dout, const S *inp,
                                              const float *mean, const float *rstd, int N, int C)
{
    __shared__ float shw[8][33], shb[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * CUDA_COLRED_ROWS;
    int r1 = min(N, r0 + CUDA_COLRED_ROWS);
    float gw = 0.0f, gb = 0.0f;
    if (c < C)
        for (int r = r0 + (int)threadIdx.y; r < r1; r += 8) {
            size_t i = (size_t)r * C + c;
            float dy = to_f32(dout[i]);
            gw += dy * (to_f32(inp[i]) - mean[r]) * rstd[r];
            gb += dy;
        }
    shw[threadIdx.y][threadIdx.x] = gw;
    shb[threadIdx.y][threadIdx.x] = gb;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float sw = 0.0f, sb = 0.0f;
        for (int y = 0; y < 8; y++) {
            sw += shw[y][threadIdx.x];
            sb += shb[y][threadIdx.x];
        }
        part[((size_t)blockIdx.y * 2 + 0) * C + c] = sw;
        part[((size_t)blockIdx.y * 2 + 1) * C + c] = sb;
    }
}

/* dw, db (C) += the chunks' partials, in chunk order */
template <typename S>
__global__ void layernorm_dwdb_finish_kernel(S *dw, S *db, const float *part, int chunks, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    float sw = 0.0f, sb = 0.0f;
    for (int k = 0; k < chunks; k++) {
        sw += part[((size_t)k * 2 + 0) * C + c];
        sb += part[((size_t)k * 2 + 1) * C + c];
    }
    dw[c] = from_f32<S>(to_f32(dw[c]) + sw);
    db[c] = from_f32<S>(to_f32(db[c]) + sb);
}

template <typename S>
static dsrt_status layernorm_forward(cuda_backend *cb, void *out, float *mean, float *rstd,
                                     const void *inp, const void *w, const void *b, int N, int C,
                                     float eps)
{
    unsigned blocks = (unsigned)((N + LN_ROWS_PER_BLOCK - 1) / LN_ROWS_PER_BLOCK);
    layernorm_forward_kernel<S><<<blocks, 32 * LN_ROWS_PER_BLOCK, 0, cb->stream>>>(
        (S *)out, mean, rstd, (const S *)inp, (const S *)w, (const S *)b, N, C, eps);
    CUDA_LAUNCHED(layernorm_forward_kernel);
    return DSRT_STATUS_OK;
}

template <typename S>
static dsrt_status layernorm_backward(cuda_backend *cb, void *dinp, void *dw, void *db,
                                      const void *dout, const void *inp, const void *w,
                                      const float *mean, const float *rstd, int N, int C)
{
    size_t chunks = cuda_colred_chunks((size_t)N);
    DSRT_TRY(cuda_need(cb, chunks * 2 * (size_t)C, cb->partials_n, "layernorm_backward", "floats"));
    unsigned blocks = (unsigned)((N + LN_ROWS_PER_BLOCK - 1) / LN_ROWS_PER_BLOCK);
    layernorm_dinp_kernel<S><<<blocks, 32 * LN_ROWS_PER_BLOCK, 0, cb->stream>>>(
        (S *)dinp, (const S *)dout, (const S *)inp, (const S *)w, mean, rstd, N, C);
    CUDA_LAUNCHED(layernorm_dinp_kernel);
    dim3 grid((unsigned)((C + 31) / 32), (unsigned)chunks);
    layernorm_dwdb_partial_kernel<S><<<grid, dim3(32, 8), 0, cb->stream>>>(
        cb->partials, (const S *)dout, (const S *)inp, mean, rstd, N, C);
    CUDA_LAUNCHED(layernorm_dwdb_partial_kernel);
    layernorm_dwdb_finish_kernel<S><<<(unsigned)((C + 255) / 256), 256, 0, cb->stream>>>(
        (S *)dw, (S *)db, cb->partials, (int)chunks, C);
    CUDA_LAUNCHED(layernorm_dwdb_finish_kernel);
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

dsrt_status cuda_layernorm_forward(dsrt_backend *be, void *out, float *mean, float *rstd,
                                   const void *inp, const void *w, const void *b, int N, int C,
                                   float eps)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check_dims("layernorm_forward", N, C));
    if (N == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, layernorm_forward, cb, out, mean, rstd, inp, w, b, N, C, eps);
}

dsrt_status cuda_layernorm_backward(dsrt_backend *be, void *dinp, void *dw, void *db,
                                    const void *dout, const void *inp, const void *w,
                                    const float *mean, const float *rstd, int N, int C)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check_dims("layernorm_backward", N, C));
    if (N == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, layernorm_backward, cb, dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}
