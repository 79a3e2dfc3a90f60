/* Private to the CUDA backend: its state, the error macros, the storage-type
 * helpers every kernel uses, and the op table (one .cu file per op).
 *
 * Every op runs on the backend's one stream, so ops are ordered among
 * themselves and the scratch buffers below can be shared by all of them.
 * Storage is fp32, fp16 (__half) or bf16 (__nv_bfloat16); kernels are
 * templates over that type S, load S -> fp32, accumulate in fp32 and round
 * each output once to nearest even (__float2half_rn / __float2bfloat16_rn,
 * the same rounding as common/dtype.h on the CPU). */
#ifndef DSRT_KERNELS_CUDA_COMMON_CUH
#define DSRT_KERNELS_CUDA_COMMON_CUH

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

extern "C" {
#include "kernels/backend.h"
#include "base/internal.h"
}

/* ---- cuBLAS entry points, resolved at run time (cublas_loader.cu) */
typedef struct dsrt_cublas_api {
    bool loaded;
    decltype(&cublasCreate) Create;
    decltype(&cublasDestroy) Destroy;
    decltype(&cublasSetStream) SetStream;
    decltype(&cublasSetWorkspace) SetWorkspace;
    decltype(&cublasSetMathMode) SetMathMode;
    decltype(&cublasSetPointerMode) SetPointerMode;
    /* the C entry points (C++ also sees inline overloads taking cudaDataType) */
    cublasStatus_t (*GemmEx)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                             const void *, const void *, cudaDataType, int, const void *,
                             cudaDataType, int, const void *, void *, cudaDataType, int,
                             cublasComputeType_t, cublasGemmAlgo_t);
    cublasStatus_t (*GemmStridedBatchedEx)(cublasHandle_t, cublasOperation_t, cublasOperation_t,
                                           int, int, int, const void *, const void *, cudaDataType,
                                           int, long long int, const void *, cudaDataType, int,
                                           long long int, const void *, void *, cudaDataType, int,
                                           long long int, int, cublasComputeType_t,
                                           cublasGemmAlgo_t);
    decltype(&cublasGetStatusString) GetStatusString;
} dsrt_cublas_api;
extern dsrt_cublas_api dsrt_cublas;
/* dlopen()s cuBLAS once per process; UNSUPPORTED with the reason when it cannot. */
dsrt_status cuda_cublas_load(void);

/* ---- the backend */
typedef struct cuda_backend {
    dsrt_backend base; /* first member: a dsrt_backend * is a cuda_backend * */
    int device;
    cudaStream_t stream; /* every op, copy and memset runs on it */
    cublasHandle_t blas;
    void *blas_ws; /* cuBLAS workspace, set once (no allocation inside a step) */

    /* ---- scratch, allocated once by reserve() */
    bool reserved;
    dsrt_backend_shapes shapes;
    /* attention */
    size_t att_btc;    /* elements per (B,T,.) slot: B*T*max(C, NH*HS) */
    size_t att_tt;     /* elements reserved per (B,NH,T,T) tensor */
    void *att_qkvp;    /* 3 slots in S: q (B,NH,T,HS), k, v (B,NKV,T,HS) permuted;
                          backward: dK into k, dV into v */
    void *att_tmp;     /* (B,NH,T,HS) S: forward out before unpermute; backward dout, then dQ */
    float *att_scores; /* (B,NH,T,T) fp32: forward scaled q.k^T; backward datt */
    void *att_dpre;    /* (B,NH,T,T) S, 16-bit storage only: d(pre-softmax) as a GEMM operand
                          (fp32 storage writes it in place over att_scores) */
    /* column reductions (matmul and bias dbias, layernorm dw/db, rmsnorm dw):
     * fp32 partial sums per row chunk */
    float *partials;   /* (chunks(N), max(max_OC, 2C)) */
    size_t partials_n; /* floats */
    /* encoder backward: (token << 32 | position) keys, sorted */
    uint64_t *enc_keys; /* (2, N): unsorted | sorted */
    size_t enc_n;       /* N = B*T reserved */
    void *enc_sort_tmp; /* cub radix sort temporary storage */
    size_t enc_sort_bytes;
    /* grad_stats (adamw.cu): per-block partials and the result on the device,
     * the result in pinned host memory; allocated at creation */
    void *stats_dev;
    void *stats_host;
} cuda_backend;

static inline cuda_backend *cuda_of(dsrt_backend *be) { return (cuda_backend *)be; }

/* ---- errors: a failed call sets "file:line: call: reason" and returns from the
 * enclosing function (which returns dsrt_status). */
dsrt_status cuda_fail(const char *file, int line, const char *call, cudaError_t err);
dsrt_status cublas_fail(const char *file, int line, const char *call, cublasStatus_t st);

#define CUDA_CHECK(call)                                                                           \
    do {                                                                                           \
        cudaError_t err_ = (call);                                                                 \
        if (err_ != cudaSuccess)                                                                   \
            return cuda_fail(__FILE__, __LINE__, #call, err_);                                     \
    } while (0)

#define CUBLAS_CHECK(call)                                                                         \
    do {                                                                                           \
        cublasStatus_t st_ = (call);                                                               \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                          \
            return cublas_fail(__FILE__, __LINE__, #call, st_);                                    \
    } while (0)

/* after a <<<launch>>>: configuration errors show at once, faults at sync */
#define CUDA_LAUNCHED(kernel)                                                                      \
    do {                                                                                           \
        cudaError_t err_ = cudaGetLastError();                                                     \
        if (err_ != cudaSuccess)                                                                   \
            return cuda_fail(__FILE__, __LINE__, "launch " #kernel, err_);                         \
    } while (0)

/* DSRT_TRY comes from internal.h */

/* Make the backend's device current on the calling thread (ops may be called
 * from any host thread). */
dsrt_status cuda_enter(cuda_backend *cb);
/* The op needs reserve()d scratch for `need` units where `have` are reserved. */
dsrt_status cuda_need(cuda_backend *cb, size_t need, size_t have, const char *op, const char *what);

/* Call fn<S>(args...) for the backend's storage type (inside a function
 * returning dsrt_status). */
#define CUDA_DISPATCH(dt, fn, ...)                                                                 \
    switch (dt) {                                                                                  \
    case DSRT_F32:                                                                                 \
        return fn<float>(__VA_ARGS__);                                                             \
    case DSRT_F16:                                                                                 \
        return fn<__half>(__VA_ARGS__);                                                            \
    default:                                                                                       \
        return fn<__nv_bfloat16>(__VA_ARGS__);                                                     \
    }

/* ---- storage type <-> fp32 */
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename S> __device__ __forceinline__ S from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v)
{
    return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}

template <typename S> struct cuda_dtype;
template <> struct cuda_dtype<float> {
    static constexpr cudaDataType_t value = CUDA_R_32F;
};
template <> struct cuda_dtype<__half> {
    static constexpr cudaDataType_t value = CUDA_R_16F;
};
template <> struct cuda_dtype<__nv_bfloat16> {
    static constexpr cudaDataType_t value = CUDA_R_16BF;
};

/* ---- reductions. The xor butterfly leaves the same value in every lane
 * (each step adds the same two numbers, fp addition being commutative), and
 * the order is fixed, so results are deterministic. */
__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Grid size for a grid-stride loop over n elements with `threads` per block. */
static inline unsigned cuda_blocks(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    const size_t cap = (size_t)1 << 20;
    return (unsigned)(b < cap ? b : cap);
}

/* Column reductions (matmul and bias dbias, layernorm and rmsnorm dw) split
 * the N rows into chunks of this many rows; each chunk writes an fp32 partial
 * per column and a second kernel adds the partials in chunk order
 * (deterministic). */
enum { CUDA_COLRED_ROWS = 256 };
static inline size_t cuda_colred_chunks(size_t N)
{
    return (N + CUDA_COLRED_ROWS - 1) / CUDA_COLRED_ROWS;
}

/* Row-major GEMM on the backend's stream, fp32 accumulation (CUBLAS_COMPUTE_32F,
 * no TF32), strided-batched when batch > 1:
 *   C (M,N) = alpha * op(A) (M,K) . op(B) (K,N) + beta * C
 * op(X) = X^T when tX; lda/ldb/ldc are the row-major leading dimensions
 * (columns of the matrix as stored). */
dsrt_status cuda_gemm(cuda_backend *cb, bool tA, bool tB, int M, int N, int K, float alpha,
                      const void *A, cudaDataType_t Atype, int lda, long long strideA,
                      const void *B, cudaDataType_t Btype, int ldb, long long strideB, float beta,
                      void *C, cudaDataType_t Ctype, int ldc, long long strideC, int batch);

/* ---- the op table (one file each) */
dsrt_status cuda_encoder_forward(dsrt_backend *be, void *out, const int32_t *tokens,
                                 const void *wte, const void *wpe, int B, int T, int C);
dsrt_status cuda_encoder_backward(dsrt_backend *be, void *dwte, void *dwpe, const void *dout,
                                  const int32_t *tokens, int B, int T, int C, int v0, int v1);
/* cub's temporary storage for sorting n encoder keys (reserve() sizes it) */
dsrt_status cuda_encoder_sort_bytes(size_t n, size_t *bytes);
dsrt_status cuda_layernorm_forward(dsrt_backend *be, void *out, float *mean, float *rstd,
                                   const void *inp, const void *w, const void *b, int N, int C,
                                   float eps);
dsrt_status cuda_layernorm_backward(dsrt_backend *be, void *dinp, void *dw, void *db,
                                    const void *dout, const void *inp, const void *w,
                                    const float *mean, const float *rstd, int N, int C);
dsrt_status cuda_matmul_forward(dsrt_backend *be, void *out, const void *inp, const void *w,
                                const void *bias, int N, int K, int OC, dsrt_wlayout wl);
dsrt_status cuda_matmul_backward(dsrt_backend *be, void *dinp, void *dw, void *dbias,
                                 const void *dout, const void *inp, const void *w, int N, int K,
                                 int OC, dsrt_wlayout wl);
dsrt_status cuda_gemm_op(dsrt_backend *be, int ta, int tb, int M, int N, int K, const void *A,
                         int lda, const void *B, int ldb, void *C, int ldc, int accumulate);
dsrt_status cuda_attention_forward(dsrt_backend *be, void *out, void *att, const void *qkv, int B,
                                   int T, int NH, int NKV, int HS);
dsrt_status cuda_attention_backward(dsrt_backend *be, void *dqkv, const void *dout, const void *qkv,
                                    const void *att, int B, int T, int NH, int NKV, int HS);
dsrt_status cuda_rmsnorm_forward(dsrt_backend *be, void *out, float *rstd, const void *inp,
                                 const void *w, int N, int C, float eps);
dsrt_status cuda_rmsnorm_backward(dsrt_backend *be, void *dinp, void *dw, const void *dout,
                                  const void *inp, const void *w, const float *rstd, int N, int C);
dsrt_status cuda_rope(dsrt_backend *be, void *x, const float *cosv, const float *sinv, int N, int T,
                      int nh, int hs, int ld, int inverse);
dsrt_status cuda_swiglu_forward(dsrt_backend *be, void *out, const void *gu, int N, int F);
dsrt_status cuda_swiglu_backward(dsrt_backend *be, void *dgu, const void *gu, const void *dout,
                                 int N, int F);
dsrt_status cuda_bias_forward(dsrt_backend *be, void *x, const void *bias, int N, int OC, int ld);
dsrt_status cuda_bias_backward(dsrt_backend *be, void *dbias, const void *dout, int N, int OC,
                               int ld);
dsrt_status cuda_gelu_forward(dsrt_backend *be, void *out, const void *inp, size_t n);
dsrt_status cuda_gelu_backward(dsrt_backend *be, void *dinp, const void *inp, const void *dout,
                               size_t n);
dsrt_status cuda_residual_forward(dsrt_backend *be, void *out, const void *a, const void *b,
                                  size_t n);
dsrt_status cuda_residual_backward(dsrt_backend *be, void *da, void *db, const void *dout,
                                   size_t n);
dsrt_status cuda_classifier_forward(dsrt_backend *be, float *losses, void *logits,
                                    const int32_t *targets, int N, int V, float dloss, int grad);
dsrt_status cuda_grad_stats(dsrt_backend *be, const void *grads, size_t n, double *sumsq,
                            int *nonfinite);
dsrt_status cuda_adamw_step(dsrt_backend *be, void *params, float *master, float *m, float *v,
                            const void *grads, size_t n, const dsrt_adamw_args *a);
/* the optimizer's fixed scratch (creation / destruction, device current) */
dsrt_status cuda_adamw_init(cuda_backend *cb);
void cuda_adamw_free(cuda_backend *cb);
/* data parallelism (zero_ops.cu): ZeRO bucket conversions and arithmetic */
dsrt_status cuda_convert(dsrt_backend *be, void *dst, dsrt_dtype dst_dt, const void *src,
                         dsrt_dtype src_dt, size_t n);
dsrt_status cuda_scale(dsrt_backend *be, void *x, dsrt_dtype dt, float s, size_t n);
dsrt_status cuda_accumulate(dsrt_backend *be, void *dst, const void *src, dsrt_dtype dt, size_t n);
dsrt_status cuda_copy(dsrt_backend *be, void *dst, const void *src, size_t bytes);

#endif /* DSRT_KERNELS_CUDA_COMMON_CUH */
