/* Fused classifier: softmax + cross entropy (+ its gradient) over logits (N,V),
 * one block per row, the probabilities never stored:
 *   pass 1 (online): running max m and sum s of exp(x - m), per thread, then
 *           merged across the block in a fixed order;
 *   losses[i] (fp32) = m + log(s) - x[target]  (= -log softmax(x)[target]);
 *   pass 2 (grad != 0): logits[i,j] overwritten by
 *           (softmax_j - [j == target]) * dloss   (common/softmax.h).
 * Rows whose target is -100 (DSRT_IGNORE_INDEX) get loss 0 and, with grad, a
 * zero gradient row. A target outside [0,V) otherwise gives a NaN loss.
 * Deterministic: per-thread sequential loops and a fixed reduction tree. */
#include <float.h>

#include "kernels/common/softmax.h"
#include "kernels/cuda/cuda_common.cuh"

enum { CLS_THREADS = 1024 };

/* (m, s) <- the pair for the union of both sets. m starts at -FLT_MAX (not
 * -inf) so no inf - inf appears. (With FMA contraction the lanes of the xor
 * butterfly may differ in the last bit; only lane 0's pair is used.) */
__device__ __forceinline__ void online_merge(float &m, float &s, float m2, float s2)
{
    float mn = fmaxf(m, m2);
    s = s * expf(m - mn) + s2 * expf(m2 - mn);
    m = mn;
}

__device__ __forceinline__ void warp_merge(float &m, float &s)
{
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        float s2 = __shfl_xor_sync(0xffffffffu, s, o);
        online_merge(m, s, m2, s2);
    }
}

/* grid (N): losses (N) fp32, logits (N,V) (the gradient is written in place), targets (N) */
template <typename S>
__global__ void __launch_bounds__(CLS_THREADS)
    classifier_kernel(float *losses, S *logits, const int32_t *targets, int V, float dloss,
                      int grad)
{
    __shared__ float shm[CLS_THREADS / 32], shs[CLS_THREADS / 32];
    size_t row = blockIdx.x;
    S *x = logits + row * V; // (V)
    int target = targets[row];
    int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    int nwarps = blockDim.x / 32;

    if (target == DSRT_IGNORE_INDEX) {
        if (tid == 0)
            losses[row] = 0.0f;
        if (grad)
            for (int j = tid; j < V; j += blockDim.x)
                x[j] = from_f32<S>(0.0f);
        return;
    }

    float m = -FLT_MAX, s = 0.0f;
    for (int j = tid; j < V; j += blockDim.x) {
        float v = to_f32(x[j]);
        if (v > m) {
            s = s * expf(m - v) + 1.0f;
            m = v;
        } else {
            s += expf(v - m);
        }
    }
    warp_merge(m, s);
    if (lane == 0) {
        shm[warp] = m;
        shs[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
        m = lane < nwarps ? shm[lane] : -FLT_MAX;
        s = lane < nwarps ? shs[lane] : 0.0f;
        warp_merge(m, s);
        if (lane == 0) {
            shm[0] = m;
            shs[0] = s;
        }
    }
    __syncthreads();
    m = shm[0];
    s = shs[0];

    bool valid = target >= 0 && target < V;
    if (tid == 0)
        losses[row] = valid ? m + logf(s) - to_f32(x[target]) : __int_as_float(0x7fc00000);
    if (!grad)
        return;
    __syncthreads(); /* x[target] is read above before any thread overwrites it */
    float inv = 1.0f / s;
    for (int j = tid; j < V; j += blockDim.x) {
        float p = expf(to_f32(x[j]) - m) * inv;
        x[j] = from_f32<S>(dsrt_xent_grad(p, j == target, dloss));
    }
}

template <typename S>
static dsrt_status classifier_forward(cuda_backend *cb, float *losses, void *logits,
                                      const int32_t *targets, int N, int V, float dloss, int grad)
{
    classifier_kernel<S>
        <<<(unsigned)N, CLS_THREADS, 0, cb->stream>>>(losses, (S *)logits, targets, V, dloss, grad);
    CUDA_LAUNCHED(classifier_kernel);
    return DSRT_STATUS_OK;
}

dsrt_status cuda_classifier_forward(dsrt_backend *be, float *losses, void *logits,
                                    const int32_t *targets, int N, int V, float dloss, int grad)
{
    cuda_backend *cb = cuda_of(be);
    if (N < 0 || V <= 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "cuda backend: classifier_forward: N=%d V=%d", N, V);
    if (N == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, classifier_forward, cb, losses, logits, targets, N, V, dloss, grad);
}
