/* The optimizer's two passes over a flat partition (backend.h), CUDA:
 *   grad_stats: sum of squares and an inf/nan flag in one read of the
 *     gradients. Each thread accumulates in double (fp32 squares are exact in
 *     double, so FMA contraction changes nothing) over a fixed grid-stride
 *     sequence; blocks reduce in a fixed tree to one double partial each; one
 *     block adds the partials in a fixed tree. The grid depends on n only, so
 *     the result is the same bits every run on every GPU. The result is copied
 *     to pinned host memory and the stream is waited for (the step's one
 *     host sync).
 *   adamw_step: FusedAdam (common/adamw.h) in one grid-stride pass, four
 *     elements per thread with 16-byte fp32 loads (8-byte for 16-bit storage)
 *     when every pointer allows, streaming cache hints (each byte is touched
 *     once); a scalar grid-stride loop otherwise. */
#include "kernels/common/adamw.h"
#include "kernels/cuda/cuda_common.cuh"

enum {
    STATS_THREADS = 256,
    STATS_BLOCKS = 1024,          /* at most; fixed by n alone */
    STATS_PER_THREAD_MIN = 16,    /* elements per thread before another block is added */
    ADAMW_THREADS = 256,
};

/* device scratch: partial sums, partial flags, then the result */
typedef struct stats_result {
    double sumsq;
    int nonfinite;
    int pad_;
} stats_result;

static size_t stats_dev_bytes(void)
{
    return STATS_BLOCKS * sizeof(double) + STATS_BLOCKS * sizeof(int) + sizeof(stats_result);
}

dsrt_status cuda_adamw_init(cuda_backend *cb)
{
    CUDA_CHECK(cudaMalloc(&cb->stats_dev, stats_dev_bytes()));
    CUDA_CHECK(cudaMallocHost(&cb->stats_host, sizeof(stats_result)));
    return DSRT_STATUS_OK;
}

void cuda_adamw_free(cuda_backend *cb)
{
    if (cb->stats_dev)
        (void)cudaFree(cb->stats_dev);
    if (cb->stats_host)
        (void)cudaFreeHost(cb->stats_host);
    cb->stats_dev = NULL;
    cb->stats_host = NULL;
    (void)cudaGetLastError();
}

/* ---------------------------------------------------------------- packs of 4 */
static inline bool aligned_to(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

template <typename S> struct vec4;
template <> struct vec4<float> {
    typedef float4 raw;
};
template <> struct vec4<__half> {
    typedef uint2 raw;
};
template <> struct vec4<__nv_bfloat16> {
    typedef uint2 raw;
};

__device__ __forceinline__ float half_bits_f32(unsigned short b, const __half *)
{
    return __half2float(__ushort_as_half(b));
}
__device__ __forceinline__ float half_bits_f32(unsigned short b, const __nv_bfloat16 *)
{
    return __bfloat162float(__ushort_as_bfloat16(b));
}
__device__ __forceinline__ unsigned short f32_half_bits(float x, const __half *)
{
    return __half_as_ushort(__float2half_rn(x));
}
__device__ __forceinline__ unsigned short f32_half_bits(float x, const __nv_bfloat16 *)
{
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}

/* four consecutive elements (p aligned to 4 elements) <-> fp32 */
template <typename S> __device__ __forceinline__ void load4(const S *p, float r[4])
{
    uint2 u = __ldcs(reinterpret_cast<const uint2 *>(p));
    r[0] = half_bits_f32((unsigned short)(u.x & 0xffffu), p);
    r[1] = half_bits_f32((unsigned short)(u.x >> 16), p);
    r[2] = half_bits_f32((unsigned short)(u.y & 0xffffu), p);
    r[3] = half_bits_f32((unsigned short)(u.y >> 16), p);
}
template <> __device__ __forceinline__ void load4<float>(const float *p, float r[4])
{
    float4 f = __ldcs(reinterpret_cast<const float4 *>(p));
    r[0] = f.x, r[1] = f.y, r[2] = f.z, r[3] = f.w;
}

template <typename S> __device__ __forceinline__ void store4(S *p, const float r[4])
{
    uint2 u;
    u.x = (unsigned)f32_half_bits(r[0], p) | ((unsigned)f32_half_bits(r[1], p) << 16);
    u.y = (unsigned)f32_half_bits(r[2], p) | ((unsigned)f32_half_bits(r[3], p) << 16);
    __stcs(reinterpret_cast<uint2 *>(p), u);
}
template <> __device__ __forceinline__ void store4<float>(float *p, const float r[4])
{
    __stcs(reinterpret_cast<float4 *>(p), make_float4(r[0], r[1], r[2], r[3]));
}

__device__ __forceinline__ bool nonfinite_f32(float x) { return !isfinite(x); }

/* ---------------------------------------------------------------- grad_stats */
__device__ __forceinline__ double warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block in a fixed tree; the result is valid in thread 0. */
__device__ __forceinline__ double block_sum_d(double v)
{
    __shared__ double warps[STATS_THREADS / 32];
    v = warp_sum_d(v);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0)
        warps[w] = v;
    __syncthreads();
    double s = 0.0;
    if (w == 0) {
        s = lane < STATS_THREADS / 32 ? warps[lane] : 0.0;
        s = warp_sum_d(s);
    }
    return s;
}

/* grid (G), STATS_THREADS: part[b], bad[b] for block b */
template <typename S>
__global__ void __launch_bounds__(STATS_THREADS)
    grad_stats_kernel(const S *g, size_t n, int vec, double *part, int *bad)
{
    size_t tid = (size_t)blockIdx.x * STATS_THREADS + threadIdx.x;
    size_t stride = (size_t)gridDim.x * STATS_THREADS;
    double s = 0.0;
    int f = 0;
    size_t done = 0;
    if (vec) {
        size_t packs = n / 4;
        for (size_t i = tid; i < packs; i += stride) {
            float r[4];
            load4(g + 4 * i, r);
            for (int j = 0; j < 4; j++) {
                double x = (double)r[j];
                s += x * x;
                f |= nonfinite_f32(r[j]);
            }
        }
        done = packs * 4;
    }
    for (size_t i = done + tid; i < n; i += stride) {
        float r = to_f32(g[i]);
        double x = (double)r;
        s += x * x;
        f |= nonfinite_f32(r);
    }
    int any = __syncthreads_or(f);
    s = block_sum_d(s);
    if (threadIdx.x == 0) {
        part[blockIdx.x] = s;
        bad[blockIdx.x] = any != 0;
    }
}

/* one block: the G partials in a fixed order */
__global__ void __launch_bounds__(STATS_THREADS)
    grad_stats_final_kernel(const double *part, const int *bad, int G, stats_result *out)
{
    double s = 0.0;
    int f = 0;
    for (int i = threadIdx.x; i < G; i += STATS_THREADS) {
        s += part[i];
        f |= bad[i];
    }
    int any = __syncthreads_or(f);
    s = block_sum_d(s);
    if (threadIdx.x == 0) {
        out->sumsq = s;
        out->nonfinite = any != 0;
        out->pad_ = 0;
    }
}

static unsigned stats_blocks(size_t n)
{
    size_t per_block = (size_t)STATS_THREADS * STATS_PER_THREAD_MIN;
    size_t b = (n + per_block - 1) / per_block;
    if (b > STATS_BLOCKS)
        b = STATS_BLOCKS;
    return (unsigned)(b ? b : 1);
}

template <typename S>
static dsrt_status grad_stats(cuda_backend *cb, const void *grads, size_t n, double *sumsq,
                              int *nonfinite)
{
    double *part = (double *)cb->stats_dev;
    int *bad = (int *)(part + STATS_BLOCKS);
    stats_result *res = (stats_result *)(bad + STATS_BLOCKS);
    unsigned G = stats_blocks(n);
    int vec = aligned_to(grads, 4 * sizeof(S));
    grad_stats_kernel<S><<<G, STATS_THREADS, 0, cb->stream>>>((const S *)grads, n, vec, part, bad);
    CUDA_LAUNCHED(grad_stats_kernel);
    grad_stats_final_kernel<<<1, STATS_THREADS, 0, cb->stream>>>(part, bad, (int)G, res);
    CUDA_LAUNCHED(grad_stats_final_kernel);
    stats_result *host = (stats_result *)cb->stats_host;
    CUDA_CHECK(cudaMemcpyAsync(host, res, sizeof *host, cudaMemcpyDeviceToHost, cb->stream));
    CUDA_CHECK(cudaStreamSynchronize(cb->stream));
    *sumsq = host->sumsq;
    *nonfinite = host->nonfinite;
    return DSRT_STATUS_OK;
}

dsrt_status cuda_grad_stats(dsrt_backend *be, const void *grads, size_t n, double *sumsq,
                            int *nonfinite)
{
    cuda_backend *cb = cuda_of(be);
    if (!sumsq || !nonfinite || (n && !grads))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "cuda backend: grad_stats: NULL %s",
                              !grads ? "grads" : "output");
    if (n == 0) {
        *sumsq = 0.0;
        *nonfinite = 0;
        return DSRT_STATUS_OK;
    }
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, grad_stats, cb, grads, n, sumsq, nonfinite);
}

/* ---------------------------------------------------------------- adamw_step */
/* ADAMW: decoupled decay (1) or L2 (0); WP: write params (storage S); VEC:
 * packs of 4 (every pointer aligned to 4 elements), else one element a step. */
template <typename S, int ADAMW, int WP, int VEC>
__global__ void __launch_bounds__(ADAMW_THREADS)
    adamw_kernel(S *params, float *master, float *m, float *v, const S *g, size_t n,
                 dsrt_adamw_coefs k)
{
    size_t tid = (size_t)blockIdx.x * ADAMW_THREADS + threadIdx.x;
    size_t stride = (size_t)gridDim.x * ADAMW_THREADS;
    size_t done = 0;
    if (VEC) {
        size_t packs = n / 4;
        for (size_t i = tid; i < packs; i += stride) {
            size_t o = 4 * i;
            float rg[4], rp[4], rm[4], rv[4];
            load4(g + o, rg);
            load4(master + o, rp);
            load4(m + o, rm);
            load4(v + o, rv);
#pragma unroll
            for (int j = 0; j < 4; j++)
                rp[j] = dsrt_adamw_elem(&k, ADAMW, rp[j], rg[j], &rm[j], &rv[j]);
            store4(master + o, rp);
            store4(m + o, rm);
            store4(v + o, rv);
            if (WP)
                store4(params + o, rp);
        }
        done = packs * 4;
    }
    for (size_t i = done + tid; i < n; i += stride) {
        float mi = m[i], vi = v[i];
        float p = dsrt_adamw_elem(&k, ADAMW, master[i], to_f32(g[i]), &mi, &vi);
        master[i] = p;
        m[i] = mi;
        v[i] = vi;
        if (WP)
            params[i] = from_f32<S>(p);
    }
}

template <typename S, int ADAMW, int WP>
static dsrt_status adamw_launch(cuda_backend *cb, S *params, float *master, float *m, float *v,
                                const S *g, size_t n, const dsrt_adamw_coefs &k)
{
    size_t ws = 4 * sizeof(S);
    bool vec = aligned_to(master, 16) && aligned_to(m, 16) && aligned_to(v, 16) &&
               aligned_to(g, ws) && (!WP || aligned_to(params, ws));
    if (vec) {
        unsigned blocks = cuda_blocks(n / 4 > 0 ? n / 4 : 1, ADAMW_THREADS);
        adamw_kernel<S, ADAMW, WP, 1>
            <<<blocks, ADAMW_THREADS, 0, cb->stream>>>(params, master, m, v, g, n, k);
    } else {
        adamw_kernel<S, ADAMW, WP, 0>
            <<<cuda_blocks(n, ADAMW_THREADS), ADAMW_THREADS, 0, cb->stream>>>(params, master, m,
                                                                              v, g, n, k);
    }
    CUDA_LAUNCHED(adamw_kernel);
    return DSRT_STATUS_OK;
}

template <typename S>
static dsrt_status adamw_step(cuda_backend *cb, void *params, float *master, float *m, float *v,
                              const void *grads, size_t n, const dsrt_adamw_coefs &k, int adamw)
{
    S *p = (S *)params;
    const S *g = (const S *)grads;
    if (adamw)
        return p ? adamw_launch<S, 1, 1>(cb, p, master, m, v, g, n, k)
                 : adamw_launch<S, 1, 0>(cb, p, master, m, v, g, n, k);
    return p ? adamw_launch<S, 0, 1>(cb, p, master, m, v, g, n, k)
             : adamw_launch<S, 0, 0>(cb, p, master, m, v, g, n, k);
}

dsrt_status cuda_adamw_step(dsrt_backend *be, void *params, float *master, float *m, float *v,
                            const void *grads, size_t n, const dsrt_adamw_args *a)
{
    cuda_backend *cb = cuda_of(be);
    /* arguments checked by dsrt_backend_adamw_step; params NULL: master is the weight */
    DSRT_TRY(cuda_enter(cb));
    dsrt_adamw_coefs k = dsrt_adamw_coefs_make(a->lr, a->beta1, a->beta2, a->eps, a->weight_decay,
                                               a->grad_mul, a->bc1, a->bc2);
    int adamw = a->adamw_mode != 0;
    CUDA_DISPATCH(be->dt, adamw_step, cb, params, master, m, v, grads, n, k, adamw);
}
