/* A bias over columns, for outputs a GEMM wrote into part of a wider row
 * (q | k | v and gate | up side by side):
 *   forward:  x (N rows of OC at stride ld) += bias (OC)
 *   backward: dbias (OC) += the column sums of dout (N rows of OC at stride ld)
 * fp32 arithmetic, each output rounded once to the storage type. The column
 * sums (also matmul_backward's dbias) are reduced in two deterministic passes: fp32
 * partials per 256-row chunk (8 row lanes combined in a fixed order), then the
 * chunks added in order, touching each dbias element once (no atomics). Needs
 * reserve()d scratch of chunks(N) * OC floats. */
#include "kernels/cuda/cuda_common.cuh"

/* x (N, ld)[:, :OC] += bias (OC) */
template <typename S>
__global__ void bias_forward_kernel(S *x, const S *bias, int N, int OC, int ld)
{
    size_t n = (size_t)N * OC;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / OC, j = i % OC;
        S *p = x + r * ld + j;
        *p = from_f32<S>(to_f32(*p) + to_f32(bias[j]));
    }
}

/* part (chunks, OC) fp32: sums of dout (N, ld)[:, :OC] over each chunk of rows.
 * block (32, 8): 32 columns, 8 row lanes combined in a fixed order. */
template <typename S>
__global__ void bias_partial_kernel(float *part, const S *dout, int N, int OC, int ld)
{
    __shared__ float sh[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * CUDA_COLRED_ROWS;
    int r1 = min(N, r0 + CUDA_COLRED_ROWS);
    float acc = 0.0f;
    if (col < OC)
        for (int r = r0 + (int)threadIdx.y; r < r1; r += 8)
            acc += to_f32(dout[(size_t)r * ld + col]);
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < OC) {
        float s = 0.0f;
        for (int y = 0; y < 8; y++)
            s += sh[y][threadIdx.x];
        part[(size_t)blockIdx.y * OC + col] = s;
    }
}

/* dbias (OC) += sum over chunks of part (chunks, OC), chunks in order */
template <typename S>
__global__ void bias_finish_kernel(S *dbias, const float *part, int chunks, int OC)
{
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= OC)
        return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++)
        s += part[(size_t)k * OC + col];
    dbias[col] = from_f32<S>(to_f32(dbias[col]) + s);
}

template <typename S>
static dsrt_status bias_forward(cuda_backend *cb, void *x, const void *bias, int N, int OC, int ld)
{
    size_t n = (size_t)N * OC;
    bias_forward_kernel<S>
        <<<cuda_blocks(n, 256), 256, 0, cb->stream>>>((S *)x, (const S *)bias, N, OC, ld);
    CUDA_LAUNCHED(bias_forward_kernel);
    return DSRT_STATUS_OK;
}

template <typename S>
static dsrt_status bias_backward(cuda_backend *cb, void *dbias, const void *dout, int N, int OC,
                                 int ld)
{
    size_t chunks = cuda_colred_chunks((size_t)N);
    DSRT_TRY(cuda_need(cb, chunks * (size_t)OC, cb->partials_n, "bias_backward", "floats"));
    dim3 grid((unsigned)((OC + 31) / 32), (unsigned)chunks);
    bias_partial_kernel<S>
        <<<grid, dim3(32, 8), 0, cb->stream>>>(cb->partials, (const S *)dout, N, OC, ld);
    CUDA_LAUNCHED(bias_partial_kernel);
    bias_finish_kernel<S><<<(unsigned)((OC + 255) / 256), 256, 0, cb->stream>>>(
        (S *)dbias, cb->partials, (int)chunks, OC);
    CUDA_LAUNCHED(bias_finish_kernel);
    return DSRT_STATUS_OK;
}

static dsrt_status check_dims(const char *op, int N, int OC, int ld)
{
    if (N < 0 || OC < 0 || ld < OC)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "cuda backend: %s: N=%d OC=%d ld=%d (ld must be at least OC)", op, N,
                              OC, ld);
    if ((size_t)N > 65535u * (size_t)CUDA_COLRED_ROWS)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "cuda backend: %s: N=%d rows is too many",
                              op, N);
    return DSRT_STATUS_OK;
}

dsrt_status cuda_bias_forward(dsrt_backend *be, void *x, const void *bias, int N, int OC, int ld)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check_dims("bias_forward", N, OC, ld));
    if (N == 0 || OC == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, bias_forward, cb, x, bias, N, OC, ld);
}

dsrt_status cuda_bias_backward(dsrt_backend *be, void *dbias, const void *dout, int N, int OC,
                               int ld)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check_dims("bias_backward", N, OC, ld));
    if (N == 0 || OC == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, bias_backward, cb, dbias, dout, N, OC, ld);
}
