/* Causal self-attention with grouped-query attention (as llm.c: permute,
 * cuBLAS strided-batched GEMMs, a fused causal softmax; GPT-2 is the case
 * NKV = NH, HS = C/NH):
 *   qkv (B,T,W), W = (NH + 2 NKV) HS: q's NH heads | k's NKV | v's NKV, head h
 *   at channels h*HS..(h+1)*HS of its part; query head h reads key/value head
 *   h / rep, rep = NH/NKV; scale = 1/sqrt(HS).
 *   forward:  pre = scale * q.k^T (fp32), att (B,NH,T,T) = causal softmax(pre)
 *             (zero above the diagonal, saved), out (B,T,NH HS) = att.v
 *   backward: datt = dout.v^T (fp32), dv = att^T.dout,
 *             dpre = att * (datt - sum_k att_k datt_k)   (common/softmax.h)
 *             dq = scale * dpre.k, dk = scale * dpre^T.q;  dqkv (B,T,W) =.
 * Key/value heads are never repeated: q is permuted to (B,NH,T,HS) and k, v to
 * (B,NKV,T,HS), so the rep query heads of a group are rep*T consecutive rows
 * (of q, att, out) that share one k and one v, and each GEMM is batched over
 * the B*NKV groups with rep*T rows. The dk and dv GEMMs then take the group's
 * query heads as rep*T terms of their inner dimension: the sum over a group's
 * heads happens inside one fp32 GEMM, rounded once.
 * All GEMMs accumulate in fp32; the pre-softmax scores and datt stay fp32
 * (GEMM output type fp32), so the only roundings to the storage type are the
 * outputs (att, out, dqkv) and, for 16-bit storage, dpre, which is a GEMM
 * operand and so must share the operands' type. out is computed from the
 * stored (rounded) att, the same att the backward reads.
 * Scratch (reserve()): q (B,NH,T,HS), k and v (B,NKV,T,HS) and one
 * (B,NH,T,HS) in S, each slot B*T*max(C, NH*HS) elements; scores (B,NH,T,T)
 * fp32, and for 16-bit storage dpre (B,NH,T,T) in S.
 * Everything is deterministic: fixed-order warp reductions, cuBLAS on one
 * stream. Needs NH a multiple of NKV. */
#include <float.h>

#include "kernels/common/softmax.h"
#include "kernels/cuda/cuda_common.cuh"

enum { ATT_ROWS_PER_BLOCK = 8 }; /* warps per block, one row each */

/* Element (b, t, col) of a (B,T,W) q|k|v row: its offset in the head layouts
 * q (B,NH,T,HS) or k, v (B,NKV,T,HS), and which of the three (0, 1, 2). */
static __device__ __forceinline__ size_t qkv_head_index(size_t b, int t, int col, int T, int NH,
                                                        int NKV, int HS, int *part)
{
    int h = col / HS, d = col % HS, nh = NH;
    *part = 0;
    if (h >= NH) {
        h -= NH;
        nh = NKV;
        *part = 1;
        if (h >= NKV) {
            h -= NKV;
            *part = 2;
        }
    }
    return ((b * nh + h) * T + t) * (size_t)HS + d;
}

/* qkv (B,T,W) -> q (B,NH,T,HS), k, v (B,NKV,T,HS) */
template <typename S>
__global__ void permute_qkv_kernel(S *q, S *k, S *v, const S *qkv, int B, int T, int NH, int NKV,
                                   int HS)
{
    int W = (NH + 2 * NKV) * HS;
    size_t n = (size_t)B * T * W;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        /* i indexes (b, t, col) */
        int col = (int)(i % W);
        size_t r = i / W;
        int t = (int)(r % T);
        size_t b = r / T;
        int part;
        size_t j = qkv_head_index(b, t, col, T, NH, NKV, HS, &part);
        S *dst = part == 0 ? q : part == 1 ? k : v;
        dst[j] = qkv[i];
    }
}

/* x (B,T,NH HS) <-> xp (B,NH,T,HS); to_heads picks the direction */
template <typename S>
__global__ void permute_heads_kernel(S *dst, const S *src, int B, int T, int NH, int HS,
                                     bool to_heads)
{
    size_t n = (size_t)B * T * NH * HS;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        /* i indexes (b, h, t, d) in the head layout */
        int d = (int)(i % HS);
        size_t r = i / HS;
        int t = (int)(r % T);
        r /= T;
        int h = (int)(r % NH);
        size_t b = r / NH;
        size_t j = (b * T + t) * (size_t)NH * HS + (size_t)h * HS + d;
        if (to_heads)
            dst[i] = src[j];
        else
            dst[j] = src[i];
    }
}

/* dq (B,NH,T,HS), dk, dv (B,NKV,T,HS) -> dqkv (B,T,W) */
template <typename S>
__global__ void unpermute_dqkv_kernel(S *dqkv, const S *dq, const S *dk, const S *dv, int B, int T,
                                      int NH, int NKV, int HS)
{
    int W = (NH + 2 * NKV) * HS;
    size_t n = (size_t)B * T * W;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int col = (int)(i % W);
        size_t r = i / W;
        int t = (int)(r % T);
        size_t b = r / T;
        int part;
        size_t j = qkv_head_index(b, t, col, T, NH, NKV, HS, &part);
        const S *src = part == 0 ? dq : part == 1 ? dk : dv;
        dqkv[i] = src[j];
    }
}

/* att (rows, T) = causal softmax of pre (rows, T) fp32; row r is query t = r % T
 * and keeps keys 0..t. One warp per row: max, then sum of exp, then write. */
template <typename S>
__global__ void causal_softmax_kernel(S *att, const float *pre, size_t rows, int T)
{
    size_t row = (size_t)blockIdx.x * ATT_ROWS_PER_BLOCK + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows)
        return;
    int t = (int)(row % T);
    const float *x = pre + row * T; // (T)
    S *p = att + row * T;           // (T)
    float m = -FLT_MAX;
    for (int j = lane; j <= t; j += 32)
        m = fmaxf(m, x[j]);
    m = warp_max(m);
    float s = 0.0f;
    for (int j = lane; j <= t; j += 32)
        s += expf(x[j] - m);
    float inv = 1.0f / warp_sum(s);
    for (int j = lane; j < T; j += 32)
        p[j] = from_f32<S>(j <= t ? expf(x[j] - m) * inv : 0.0f);
}

/* dpre (rows, T) = att * (datt - sum_k att_k datt_k) over keys 0..t, 0 above.
 * dpre may be datt itself (fp32 storage): each element is read by the lane
 * that then overwrites it, after the row sum (a warp-wide exchange) is done. */
template <typename S>
__global__ void causal_softmax_backward_kernel(S *dpre, const float *datt, const S *att,
                                               size_t rows, int T)
{
    size_t row = (size_t)blockIdx.x * ATT_ROWS_PER_BLOCK + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows)
        return;
    int t = (int)(row % T);
    const float *dp = datt + row * T; // (T)
    const S *p = att + row * T;       // (T)
    S *g = dpre + row * T;            // (T)
    float s = 0.0f;
    for (int j = lane; j <= t; j += 32)
        s += to_f32(p[j]) * dp[j];
    s = warp_sum(s);
    for (int j = lane; j < T; j += 32)
        g[j] = from_f32<S>(j <= t ? dsrt_softmax_grad(to_f32(p[j]), dp[j], s) : 0.0f);
}

template <typename S>
static dsrt_status attention_forward(cuda_backend *cb, void *out, void *att, const void *qkv, int B,
                                     int T, int NH, int NKV, int HS)
{
    const cudaDataType_t st = cuda_dtype<S>::value;
    int rep = NH / NKV, M = rep * T; /* a group's query rows */
    size_t slot = cb->att_btc;
    size_t nqkv = (size_t)B * T * (NH + 2 * NKV) * HS, nout = (size_t)B * T * NH * HS;
    int batch = B * NKV;
    /* per-group strides: q, out, y (M,HS); k, v (T,HS); pre, att (M,T) */
    long long sq = (long long)M * HS, skv = (long long)T * HS, satt = (long long)M * T;
    S *q = (S *)cb->att_qkvp;       // (B,NH,T,HS)
    S *k = q + slot, *v = k + slot; // (B,NKV,T,HS) each
    S *y = (S *)cb->att_tmp;        // (B,NH,T,HS)
    float *pre = cb->att_scores;    // (B,NH,T,T)
    float scale = 1.0f / sqrtf((float)HS);

    permute_qkv_kernel<S><<<cuda_blocks(nqkv, 256), 256, 0, cb->stream>>>(q, k, v, (const S *)qkv,
                                                                           B, T, NH, NKV, HS);
    CUDA_LAUNCHED(permute_qkv_kernel);
    /* pre (M,T) = scale * q (M,HS) . k^T (HS,T), fp32 out */
    DSRT_TRY(cuda_gemm(cb, false, true, M, T, HS, scale, q, st, HS, sq, k, st, HS, skv, 0.0f, pre,
                       CUDA_R_32F, T, satt, batch));
    size_t rows = (size_t)B * NH * T;
    causal_softmax_kernel<S><<<(unsigned)((rows + ATT_ROWS_PER_BLOCK - 1) / ATT_ROWS_PER_BLOCK),
                               32 * ATT_ROWS_PER_BLOCK, 0, cb->stream>>>((S *)att, pre, rows, T);
    CUDA_LAUNCHED(causal_softmax_kernel);
    /* y (M,HS) = att (M,T) . v (T,HS) */
    DSRT_TRY(cuda_gemm(cb, false, false, M, HS, T, 1.0f, att, st, T, satt, v, st, HS, skv, 0.0f, y,
                       st, HS, sq, batch));
    permute_heads_kernel<S>
        <<<cuda_blocks(nout, 256), 256, 0, cb->stream>>>((S *)out, y, B, T, NH, HS, false);
    CUDA_LAUNCHED(permute_heads_kernel);
    return DSRT_STATUS_OK;
}

template <typename S>
static dsrt_status attention_backward(cuda_backend *cb, void *dqkv, const void *dout,
                                      const void *qkv, const void *att, int B, int T, int NH,
                                      int NKV, int HS)
{
    const cudaDataType_t st = cuda_dtype<S>::value;
    int rep = NH / NKV, M = rep * T;
    size_t slot = cb->att_btc;
    size_t nqkv = (size_t)B * T * (NH + 2 * NKV) * HS, nout = (size_t)B * T * NH * HS;
    int batch = B * NKV;
    long long sq = (long long)M * HS, skv = (long long)T * HS, satt = (long long)M * T;
    S *q = (S *)cb->att_qkvp;       // (B,NH,T,HS)
    S *k = q + slot, *v = k + slot; // (B,NKV,T,HS) each
    S *dy = (S *)cb->att_tmp;       // (B,NH,T,HS): dout, later dq
    float *datt = cb->att_scores;   // (B,NH,T,T) fp32
    /* (B,NH,T,T): 16-bit -> its own buffer; fp32 -> in place over datt */
    S *dpre = cb->att_dpre ? (S *)cb->att_dpre : (S *)(void *)cb->att_scores;
    float scale = 1.0f / sqrtf((float)HS);

    permute_qkv_kernel<S><<<cuda_blocks(nqkv, 256), 256, 0, cb->stream>>>(q, k, v, (const S *)qkv,
                                                                           B, T, NH, NKV, HS);
    CUDA_LAUNCHED(permute_qkv_kernel);
    permute_heads_kernel<S>
        <<<cuda_blocks(nout, 256), 256, 0, cb->stream>>>(dy, (const S *)dout, B, T, NH, HS, true);
    CUDA_LAUNCHED(permute_heads_kernel);
    /* datt (M,T) = dy (M,HS) . v^T (HS,T), fp32 out */
    DSRT_TRY(cuda_gemm(cb, false, true, M, T, HS, 1.0f, dy, st, HS, sq, v, st, HS, skv, 0.0f, datt,
                       CUDA_R_32F, T, satt, batch));
    /* dv (T,HS) = att^T (T,M) . dy (M,HS): the group's heads summed inside the
     * GEMM; into v's slot (v is no longer needed) */
    S *dv = v;
    DSRT_TRY(cuda_gemm(cb, true, false, T, HS, M, 1.0f, att, st, T, satt, dy, st, HS, sq, 0.0f, dv,
                       st, HS, skv, batch));
    size_t rows = (size_t)B * NH * T;
    causal_softmax_backward_kernel<S>
        <<<(unsigned)((rows + ATT_ROWS_PER_BLOCK - 1) / ATT_ROWS_PER_BLOCK),
           32 * ATT_ROWS_PER_BLOCK, 0, cb->stream>>>(dpre, datt, (const S *)att, rows, T);
    CUDA_LAUNCHED(causal_softmax_backward_kernel);
    /* dq (M,HS) = scale * dpre (M,T) . k (T,HS), into dy's slot (dout is used up) */
    S *dq = dy;
    DSRT_TRY(cuda_gemm(cb, false, false, M, HS, T, scale, dpre, st, T, satt, k, st, HS, skv, 0.0f,
                       dq, st, HS, sq, batch));
    /* dk (T,HS) = scale * dpre^T (T,M) . q (M,HS), into k's slot (read by dq above) */
    S *dk = k;
    DSRT_TRY(cuda_gemm(cb, true, false, T, HS, M, scale, dpre, st, T, satt, q, st, HS, sq, 0.0f, dk,
                       st, HS, skv, batch));
    unpermute_dqkv_kernel<S><<<cuda_blocks(nqkv, 256), 256, 0, cb->stream>>>(
        (S *)dqkv, dq, dk, dv, B, T, NH, NKV, HS);
    CUDA_LAUNCHED(unpermute_dqkv_kernel);
    return DSRT_STATUS_OK;
}

static dsrt_status check(cuda_backend *cb, const char *op, int B, int T, int NH, int NKV, int HS)
{
    if (B < 0 || T < 0 || NH <= 0 || NKV <= 0 || HS <= 0 || NH % NKV != 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "cuda backend: %s: B=%d T=%d NH=%d NKV=%d HS=%d (NH must be a "
                              "multiple of NKV)",
                              op, B, T, NH, NKV, HS);
    if ((long long)B * NH > INT32_MAX || (long long)T * NH > INT32_MAX ||
        (long long)(NH + 2 * (long long)NKV) * HS > INT32_MAX)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "cuda backend: %s: B=%d T=%d NH=%d NKV=%d HS=%d is too large", op,
                              B, T, NH, NKV, HS);
    /* q, out and dout in heads are the widest of the (B,T,.) slots */
    DSRT_TRY(cuda_need(cb, (size_t)B * T * NH * HS, cb->att_btc, op, "(B,T,NH*HS) elements"));
    DSRT_TRY(cuda_need(cb, (size_t)B * NH * T * T, cb->att_tt, op, "(B,NH,T,T) elements"));
    return DSRT_STATUS_OK;
}

dsrt_status cuda_attention_forward(dsrt_backend *be, void *out, void *att, const void *qkv, int B,
                                   int T, int NH, int NKV, int HS)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check(cb, "attention_forward", B, T, NH, NKV, HS));
    if (B == 0 || T == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, attention_forward, cb, out, att, qkv, B, T, NH, NKV, HS);
}

dsrt_status cuda_attention_backward(dsrt_backend *be, void *dqkv, const void *dout, const void *qkv,
                                    const void *att, int B, int T, int NH, int NKV, int HS)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check(cb, "attention_backward", B, T, NH, NKV, HS));
    if (B == 0 || T == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, attention_backward, cb, dqkv, dout, qkv, att, B, T, NH, NKV, HS);
}
