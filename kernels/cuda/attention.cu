/* Causal self-attention of GPT-2 (as llm.c: permute, cuBLAS strided-batched
 * GEMMs, a fused causal softmax):
 *   qkv (B,T,3C) holds q|k|v, each (B,T,C); head h is channels h*hs..(h+1)*hs,
 *   hs = C/NH, scale = 1/sqrt(hs).
 *   forward:  pre = scale * q.k^T (fp32), att (B,NH,T,T) = causal softmax(pre)
 *             (zero above the diagonal, saved), out (B,T,C) = att.v
 *   backward: datt = dout.v^T (fp32), dv = att^T.dout,
 *             dpre = att * (datt - sum_k att_k datt_k)   (common/softmax.h)
 *             dq = scale * dpre.k, dk = scale * dpre^T.q;  dqkv (B,T,3C) =.
 * All GEMMs accumulate in fp32; the pre-softmax scores and datt stay fp32
 * (GEMM output type fp32), so the only roundings to the storage type are the
 * outputs (att, out, dqkv) and, for 16-bit storage, dpre, which is a GEMM
 * operand and so must share the operands' type. out is computed from the
 * stored (rounded) att, the same att the backward reads.
 * Scratch (reserve()): q|k|v permuted (3,B,NH,T,hs) and one (B,NH,T,hs) in S,
 * scores (B,NH,T,T) fp32, and for 16-bit storage dpre (B,NH,T,T) in S.
 * Everything is deterministic: fixed-order warp reductions, cuBLAS on one
 * stream. Needs C % NH == 0. */
#include <float.h>

#include "kernels/common/softmax.h"
#include "kernels/cuda/cuda_common.cuh"

enum { ATT_ROWS_PER_BLOCK = 8 }; /* warps per block, one row each */

/* qkv (B,T,3C) -> q, k, v (B,NH,T,hs) */
template <typename S>
__global__ void permute_qkv_kernel(S *q, S *k, S *v, const S *qkv, int B, int T, int C, int NH)
{
    int hs = C / NH;
    size_t n = (size_t)B * T * C;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        /* i indexes (b, h, t, d) */
        int d = (int)(i % hs);
        size_t r = i / hs;
        int t = (int)(r % T);
        r /= T;
        int h = (int)(r % NH);
        size_t b = r / NH;
        size_t src = (b * T + t) * 3 * (size_t)C + (size_t)h * hs + d;
        q[i] = qkv[src];
        k[i] = qkv[src + C];
        v[i] = qkv[src + 2 * (size_t)C];
    }
}

/* x (B,T,C) <-> xp (B,NH,T,hs); to_heads picks the direction */
template <typename S>
__global__ void permute_heads_kernel(S *dst, const S *src, int B, int T, int C, int NH,
                                     bool to_heads)
{
    int hs = C / NH;
    size_t n = (size_t)B * T * C;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        /* i indexes (b, h, t, d) in the head layout */
        int d = (int)(i % hs);
        size_t r = i / hs;
        int t = (int)(r % T);
        r /= T;
        int h = (int)(r % NH);
        size_t b = r / NH;
        size_t j = (b * T + t) * (size_t)C + (size_t)h * hs + d;
        if (to_heads)
            dst[i] = src[j];
        else
            dst[j] = src[i];
    }
}

/* dq, dk, dv (B,NH,T,hs) -> dqkv (B,T,3C) */
template <typename S>
__global__ void unpermute_dqkv_kernel(S *dqkv, const S *dq, const S *dk, const S *dv, int B, int T,
                                      int C, int NH)
{
    int hs = C / NH;
    size_t n = (size_t)B * T * C;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % hs);
        size_t r = i / hs;
        int t = (int)(r % T);
        r /= T;
        int h = (int)(r % NH);
        size_t b = r / NH;
        size_t dst = (b * T + t) * 3 * (size_t)C + (size_t)h * hs + d;
        dqkv[dst] = dq[i];
        dqkv[dst + C] = dk[i];
        dqkv[dst + 2 * (size_t)C] = dv[i];
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
                                     int T, int C, int NH)
{
    const cudaDataType_t st = cuda_dtype<S>::value;
    int hs = C / NH;
    size_t btc = (size_t)B * T * C;
    int batch = B * NH;
    long long sh = (long long)T * hs, stt = (long long)T * T; /* per-(b,h) strides */
    S *q = (S *)cb->att_qkvp, *k = q + btc, *v = k + btc;     // (B,NH,T,hs) each
    S *y = (S *)cb->att_tmp;                                  // (B,NH,T,hs)
    float *pre = cb->att_scores;                              // (B,NH,T,T)
    float scale = 1.0f / sqrtf((float)hs);

    permute_qkv_kernel<S>
        <<<cuda_blocks(btc, 256), 256, 0, cb->stream>>>(q, k, v, (const S *)qkv, B, T, C, NH);
    CUDA_LAUNCHED(permute_qkv_kernel);
    /* pre (T,T) = scale * q (T,hs) . k^T (hs,T), fp32 out */
    DSRT_TRY(cuda_gemm(cb, false, true, T, T, hs, scale, q, st, hs, sh, k, st, hs, sh, 0.0f, pre,
                       CUDA_R_32F, T, stt, batch));
    size_t rows = (size_t)batch * T;
    causal_softmax_kernel<S><<<(unsigned)((rows + ATT_ROWS_PER_BLOCK - 1) / ATT_ROWS_PER_BLOCK),
                               32 * ATT_ROWS_PER_BLOCK, 0, cb->stream>>>((S *)att, pre, rows, T);
    CUDA_LAUNCHED(causal_softmax_kernel);
    /* y (T,hs) = att (T,T) . v (T,hs) */
    DSRT_TRY(cuda_gemm(cb, false, false, T, hs, T, 1.0f, att, st, T, stt, v, st, hs, sh, 0.0f, y,
                       st, hs, sh, batch));
    permute_heads_kernel<S>
        <<<cuda_blocks(btc, 256), 256, 0, cb->stream>>>((S *)out, y, B, T, C, NH, false);
    CUDA_LAUNCHED(permute_heads_kernel);
    return DSRT_STATUS_OK;
}

template <typename S>
static dsrt_status attention_backward(cuda_backend *cb, void *dqkv, const void *dout,
                                      const void *qkv, const void *att, int B, int T, int C, int NH)
{
    const cudaDataType_t st = cuda_dtype<S>::value;
    int hs = C / NH;
    size_t btc = (size_t)B * T * C;
    int batch = B * NH;
    long long sh = (long long)T * hs, stt = (long long)T * T;
    S *q = (S *)cb->att_qkvp, *k = q + btc, *v = k + btc; // (B,NH,T,hs) each
    S *dy = (S *)cb->att_tmp;                             // (B,NH,T,hs): dout, later dq
    float *datt = cb->att_scores;                         // (B,NH,T,T) fp32
    /* (B,NH,T,T): 16-bit -> its own buffer; fp32 -> in place over datt */
    S *dpre = cb->att_dpre ? (S *)cb->att_dpre : (S *)(void *)cb->att_scores;
    float scale = 1.0f / sqrtf((float)hs);

    permute_qkv_kernel<S>
        <<<cuda_blocks(btc, 256), 256, 0, cb->stream>>>(q, k, v, (const S *)qkv, B, T, C, NH);
    CUDA_LAUNCHED(permute_qkv_kernel);
    permute_heads_kernel<S>
        <<<cuda_blocks(btc, 256), 256, 0, cb->stream>>>(dy, (const S *)dout, B, T, C, NH, true);
    CUDA_LAUNCHED(permute_heads_kernel);
    /* datt (T,T) = dy (T,hs) . v^T (hs,T), fp32 out */
    DSRT_TRY(cuda_gemm(cb, false, true, T, T, hs, 1.0f, dy, st, hs, sh, v, st, hs, sh, 0.0f, datt,
                       CUDA_R_32F, T, stt, batch));
    /* dv (T,hs) = att^T (T,T) . dy (T,hs), into v's slot (v is no longer needed) */
    S *dv = v;
    DSRT_TRY(cuda_gemm(cb, true, false, T, hs, T, 1.0f, att, st, T, stt, dy, st, hs, sh, 0.0f, dv,
                       st, hs, sh, batch));
    size_t rows = (size_t)batch * T;
    causal_softmax_backward_kernel<S>
        <<<(unsigned)((rows + ATT_ROWS_PER_BLOCK - 1) / ATT_ROWS_PER_BLOCK),
           32 * ATT_ROWS_PER_BLOCK, 0, cb->stream>>>(dpre, datt, (const S *)att, rows, T);
    CUDA_LAUNCHED(causal_softmax_backward_kernel);
    /* dq (T,hs) = scale * dpre (T,T) . k (T,hs), into dy's slot (dout is used up) */
    S *dq = dy;
    DSRT_TRY(cuda_gemm(cb, false, false, T, hs, T, scale, dpre, st, T, stt, k, st, hs, sh, 0.0f, dq,
                       st, hs, sh, batch));
    /* dk (T,hs) = scale * dpre^T (T,T) . q (T,hs), into k's slot (read by dq above) */
    S *dk = k;
    DSRT_TRY(cuda_gemm(cb, true, false, T, hs, T, scale, dpre, st, T, stt, q, st, hs, sh, 0.0f, dk,
                       st, hs, sh, batch));
    unpermute_dqkv_kernel<S>
        <<<cuda_blocks(btc, 256), 256, 0, cb->stream>>>((S *)dqkv, dq, dk, dv, B, T, C, NH);
    CUDA_LAUNCHED(unpermute_dqkv_kernel);
    return DSRT_STATUS_OK;
}

static dsrt_status check(cuda_backend *cb, const char *op, int B, int T, int C, int NH)
{
    if (B < 0 || T < 0 || C <= 0 || NH <= 0 || C % NH != 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "cuda backend: %s: B=%d T=%d C=%d NH=%d (C must be a multiple of NH)",
                              op, B, T, C, NH);
    if ((long long)B * NH > INT32_MAX)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "cuda backend: %s: B*NH is too large", op);
    DSRT_TRY(cuda_need(cb, (size_t)B * T * C, cb->att_btc, op, "(B,T,C) elements"));
    DSRT_TRY(cuda_need(cb, (size_t)B * NH * T * T, cb->att_tt, op, "(B,NH,T,T) elements"));
    return DSRT_STATUS_OK;
}

dsrt_status cuda_attention_forward(dsrt_backend *be, void *out, void *att, const void *qkv, int B,
                                   int T, int C, int NH)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check(cb, "attention_forward", B, T, C, NH));
    if (B == 0 || T == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, attention_forward, cb, out, att, qkv, B, T, C, NH);
}

dsrt_status cuda_attention_backward(dsrt_backend *be, void *dqkv, const void *dout, const void *qkv,
                                    const void *att, int B, int T, int C, int NH)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check(cb, "attention_backward", B, T, C, NH));
    if (B == 0 || T == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, attention_backward, cb, dqkv, dout, qkv, att, B, T, C, NH);
}
