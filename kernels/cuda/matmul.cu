/* Matmul with bias on cuBLAS (CUBLAS_COMPUTE_32F: fp32 accumulation, no TF32):
 *   out (N,OC) = inp (N,K) . W + bias        (bias may be NULL)
 * W stored (K,OC) (DSRT_W_KN, HF Conv1D) or (OC,K) (DSRT_W_NK, tied LM head).
 * Forward broadcasts the bias into out and lets the GEMM add to it (beta = 1),
 * so bias + inp.W is summed in fp32 and rounded once, exactly as the CPU does.
 * Backward: dinp (N,K) = dout . W^T (overwrites; skipped when dinp is NULL),
 * dW += (beta = 1: the old dW is read, added in fp32, rounded once),
 * dbias += column sums of dout (bias.cu), reduced in fp32 in two deterministic passes
 * (partials per 256-row chunk, then the chunks in order; no atomics), which
 * needs reserve()d scratch of chunks(N) * OC floats. cuBLAS is deterministic
 * on one stream with a fixed workspace.
 *
 * cuda_gemm (shared with attention) maps row-major to cuBLAS' column-major:
 * a row-major (R,C) matrix is the column-major (C,R) matrix with the same ld,
 * so C = op(A).op(B) is computed as C^T = op(B)^T . op(A)^T, operands swapped. */
#include "kernels/cuda/cuda_common.cuh"

dsrt_status cuda_gemm(cuda_backend *cb, bool tA, bool tB, int M, int N, int K, float alpha,
                      const void *A, cudaDataType_t Atype, int lda, long long strideA,
                      const void *B, cudaDataType_t Btype, int ldb, long long strideB, float beta,
                      void *C, cudaDataType_t Ctype, int ldc, long long strideC, int batch)
{
    cublasOperation_t opA = tA ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = tB ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (batch == 1)
        CUBLAS_CHECK(dsrt_cublas.GemmEx(cb->blas, opB, opA, N, M, K, &alpha, B, Btype, ldb, A, Atype, lda,
                                  &beta, C, Ctype, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_CHECK(dsrt_cublas.GemmStridedBatchedEx(
            cb->blas, opB, opA, N, M, K, &alpha, B, Btype, ldb, strideB, A, Atype, lda, strideA,
            &beta, C, Ctype, ldc, strideC, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return DSRT_STATUS_OK;
}

/* out (N,OC) <- bias (OC) on every row */
template <typename S> __global__ void bias_broadcast_kernel(S *out, const S *bias, size_t n, int OC)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = bias[i % (size_t)OC];
}

template <typename S>
static dsrt_status matmul_forward(cuda_backend *cb, void *out, const void *inp, const void *w,
                                  const void *bias, int N, int K, int OC, dsrt_wlayout wl)
{
    const cudaDataType_t t = cuda_dtype<S>::value;
    float beta = 0.0f;
    if (bias) {
        size_t n = (size_t)N * OC;
        bias_broadcast_kernel<S>
            <<<cuda_blocks(n, 256), 256, 0, cb->stream>>>((S *)out, (const S *)bias, n, OC);
        CUDA_LAUNCHED(bias_broadcast_kernel);
        beta = 1.0f;
    }
    /* out (N,OC) = inp (N,K) . op(W) (K,OC) */
    if (wl == DSRT_W_KN)
        return cuda_gemm(cb, false, false, N, OC, K, 1.0f, inp, t, K, 0, w, t, OC, 0, beta, out, t,
                         OC, 0, 1);
    return cuda_gemm(cb, false, true, N, OC, K, 1.0f, inp, t, K, 0, w, t, K, 0, beta, out, t, OC, 0,
                     1);
}

template <typename S>
static dsrt_status matmul_backward(cuda_backend *cb, void *dinp, void *dw, void *dbias,
                                   const void *dout, const void *inp, const void *w, int N, int K,
                                   int OC, dsrt_wlayout wl)
{
    const cudaDataType_t t = cuda_dtype<S>::value;
    if (dinp) {
        /* dinp (N,K) = dout (N,OC) . W^T (OC,K) */
        if (wl == DSRT_W_KN) /* W (K,OC): transposed */
            DSRT_TRY(cuda_gemm(cb, false, true, N, K, OC, 1.0f, dout, t, OC, 0, w, t, OC, 0, 0.0f,
                               dinp, t, K, 0, 1));
        else /* W (OC,K) is W^T already */
            DSRT_TRY(cuda_gemm(cb, false, false, N, K, OC, 1.0f, dout, t, OC, 0, w, t, K, 0, 0.0f,
                               dinp, t, K, 0, 1));
    }
    if (dw) {
        if (wl == DSRT_W_KN) /* dW (K,OC) += inp^T (K,N) . dout (N,OC) */
            DSRT_TRY(cuda_gemm(cb, true, false, K, OC, N, 1.0f, inp, t, K, 0, dout, t, OC, 0, 1.0f,
                               dw, t, OC, 0, 1));
        else /* dW (OC,K) += dout^T (OC,N) . inp (N,K) */
            DSRT_TRY(cuda_gemm(cb, true, false, OC, K, N, 1.0f, dout, t, OC, 0, inp, t, K, 0, 1.0f,
                               dw, t, K, 0, 1));
    }
    /* dbias += the column sums of dout: bias.cu's deterministic reduction */
    if (dbias)
        DSRT_TRY(cuda_bias_backward(&cb->base, dbias, dout, N, OC, OC));
    return DSRT_STATUS_OK;
}

static dsrt_status check_dims(const char *op, int N, int K, int OC)
{
    if (N < 0 || K <= 0 || OC < 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "cuda backend: %s: N=%d K=%d OC=%d", op,
                              N, K, OC);
    if ((size_t)N > 65535u * (size_t)CUDA_COLRED_ROWS)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "cuda backend: %s: N=%d rows is too many",
                              op, N);
    return DSRT_STATUS_OK;
}

dsrt_status cuda_matmul_forward(dsrt_backend *be, void *out, const void *inp, const void *w,
                                const void *bias, int N, int K, int OC, dsrt_wlayout wl)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check_dims("matmul_forward", N, K, OC));
    if (N == 0 || OC == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, matmul_forward, cb, out, inp, w, bias, N, K, OC, wl);
}

dsrt_status cuda_matmul_backward(dsrt_backend *be, void *dinp, void *dw, void *dbias,
                                 const void *dout, const void *inp, const void *w, int N, int K,
                                 int OC, dsrt_wlayout wl)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check_dims("matmul_backward", N, K, OC));
    if (N == 0 || OC == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, matmul_backward, cb, dinp, dw, dbias, dout, inp, w, N, K, OC, wl);
}

template <typename S>
static dsrt_status gemm_op(cuda_backend *cb, int ta, int tb, int M, int N, int K, const void *A,
                           int lda, const void *B, int ldb, void *C, int ldc, int accumulate)
{
    const cudaDataType_t t = cuda_dtype<S>::value;
    return cuda_gemm(cb, ta != 0, tb != 0, M, N, K, 1.0f, A, t, lda, 0, B, t, ldb, 0,
                     accumulate ? 1.0f : 0.0f, C, t, ldc, 0, 1);
}

dsrt_status cuda_gemm_op(dsrt_backend *be, int ta, int tb, int M, int N, int K, const void *A,
                         int lda, const void *B, int ldb, void *C, int ldc, int accumulate)
{
    cuda_backend *cb = cuda_of(be);
    if (M < 0 || N < 0 || K < 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "cuda backend: gemm: M=%d N=%d K=%d",
                              M, N, K);
    if (M == 0 || N == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    if (K == 0) {
        if (accumulate)
            return DSRT_STATUS_OK;
        /* C = 0: a GEMM with K = 0 is not guaranteed to write C */
        size_t esz = dsrt_dtype_size(be->dt);
        CUDA_CHECK(cudaMemset2DAsync(C, (size_t)ldc * esz, 0, (size_t)N * esz, (size_t)M,
                                     cb->stream));
        return DSRT_STATUS_OK;
    }
    CUDA_DISPATCH(be->dt, gemm_op, cb, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}
