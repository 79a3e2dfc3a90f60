/* Token + position embedding (GPT-2's "encoder"):
 *   forward  out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]       out (B,T,C)
 *   backward dwte[tokens[b,t],:] += dout[b,t,:], dwpe[t,:] += dout[b,t,:]
 * The backward is deterministic and gathers instead of scattering (no atomics):
 * - dwpe: one thread per (t,c) sums b = 0..B-1 in order onto the old value;
 * - dwte: the keys (token << 32 | position) are radix-sorted (cub), so every
 *   token's positions are contiguous and ascending; the first key of each run
 *   owns the token's row and sums its positions in ascending order onto the
 *   old value. That is the order of the CPU backend, and each gradient element
 *   is rounded once. A very frequent token is summed serially by one thread
 *   per channel (correct, slower for pathological batches).
 * Token ids must be in [0, V) (the model checks them). The backward needs
 * reserve()d scratch for B*T keys. */
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/cuda_common.cuh"

/* out (B,T,C) = wte (V,C) [tokens (B,T)] + wpe (T,C) (wpe NULL: the token
 * embedding alone, LLaMA's embed_tokens); n = B*T*C */
template <typename S>
__global__ void encoder_forward_kernel(S *out, const int32_t *tokens, const S *wte, const S *wpe,
                                       int T, int C, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t bt = i / (size_t)C;
        int c = (int)(i % (size_t)C);
        int t = (int)(bt % (size_t)T);
        size_t e = (size_t)tokens[bt] * C + c;
        out[i] = wpe ? from_f32<S>(to_f32(wte[e]) + to_f32(wpe[(size_t)t * C + c])) : wte[e];
    }
}

/* dwpe (T,C) += sum over b of dout (B,T,C) */
template <typename S>
__global__ void encoder_dwpe_kernel(S *dwpe, const S *dout, int B, int T, int C)
{
    size_t n = (size_t)T * C;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float acc = to_f32(dwpe[i]);
        for (int b = 0; b < B; b++)
            acc += to_f32(dout[(size_t)b * n + i]);
        dwpe[i] = from_f32<S>(acc);
    }
}

/* keys (N) = token << 32 | position: unique, so the sort needs no stability */
__global__ void encoder_keys_kernel(uint64_t *keys, const int32_t *tokens, int N)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N)
        keys[i] = ((uint64_t)(uint32_t)tokens[i] << 32) | (uint32_t)i;
}

/* grid (N, channel blocks): block x owns sorted key x when it starts a run of
 * one token; it adds the run's dout rows, in position order, to dwte[token]. */
template <typename S>
__global__ void encoder_dwte_kernel(S *dwte, const S *dout, const uint64_t *sorted, int N, int C,
                                    uint32_t v0, uint32_t v1)
{
    int i = blockIdx.x;
    uint32_t tok = (uint32_t)(sorted[i] >> 32);
    if (i > 0 && (uint32_t)(sorted[i - 1] >> 32) == tok)
        return; /* not the first position of this token */
    if (tok < v0 || tok >= v1)
        return; /* outside the rows this call fills */
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    size_t g = (size_t)(tok - v0) * C + c;
    float acc = to_f32(dwte[g]);
    for (int j = i; j < N; j++) {
        uint64_t k = sorted[j];
        if ((uint32_t)(k >> 32) != tok)
            break;
        acc += to_f32(dout[(size_t)(uint32_t)k * C + c]);
    }
    dwte[g] = from_f32<S>(acc);
}

dsrt_status cuda_encoder_sort_bytes(size_t n, size_t *bytes)
{
    *bytes = 0;
    if (n == 0)
        return DSRT_STATUS_OK;
    if (n > (size_t)INT32_MAX)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "cuda backend: %zu token positions", n);
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, *bytes, (const uint64_t *)nullptr,
                                              (uint64_t *)nullptr, (int)n, 0, 64));
    return DSRT_STATUS_OK;
}

template <typename S>
static dsrt_status encoder_forward(cuda_backend *cb, void *out, const int32_t *tokens,
                                   const void *wte, const void *wpe, int B, int T, int C)
{
    size_t n = (size_t)B * T * C;
    encoder_forward_kernel<S><<<cuda_blocks(n, 256), 256, 0, cb->stream>>>(
        (S *)out, tokens, (const S *)wte, (const S *)wpe, T, C, n);
    CUDA_LAUNCHED(encoder_forward_kernel);
    return DSRT_STATUS_OK;
}

template <typename S>
static dsrt_status encoder_backward(cuda_backend *cb, void *dwte, void *dwpe, const void *dout,
                                    const int32_t *tokens, int B, int T, int C, int v0, int v1)
{
    int N = B * T;
    if (dwpe) {
        encoder_dwpe_kernel<S><<<cuda_blocks((size_t)T * C, 256), 256, 0, cb->stream>>>(
            (S *)dwpe, (const S *)dout, B, T, C);
        CUDA_LAUNCHED(encoder_dwpe_kernel);
    }
    if (!dwte || v1 <= v0)
        return DSRT_STATUS_OK;

    uint64_t *keys = cb->enc_keys, *sorted = cb->enc_keys + cb->enc_n; // (N), (N)
    encoder_keys_kernel<<<(unsigned)((N + 255) / 256), 256, 0, cb->stream>>>(keys, tokens, N);
    CUDA_LAUNCHED(encoder_keys_kernel);
    size_t bytes = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, bytes, (const uint64_t *)keys, sorted, N, 0,
                                              64, cb->stream));
    DSRT_TRY(cuda_need(cb, bytes, cb->enc_sort_bytes, "encoder_backward", "bytes of sort storage"));
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(cb->enc_sort_tmp, bytes, (const uint64_t *)keys,
                                              sorted, N, 0, 64, cb->stream));
    dim3 grid((unsigned)N, (unsigned)((C + 255) / 256));
    encoder_dwte_kernel<S><<<grid, 256, 0, cb->stream>>>((S *)dwte, (const S *)dout, sorted, N, C,
                                                          (uint32_t)v0, (uint32_t)v1);
    CUDA_LAUNCHED(encoder_dwte_kernel);
    return DSRT_STATUS_OK;
}

static dsrt_status check_dims(const char *op, int B, int T, int C)
{
    if (B < 0 || T < 0 || C <= 0 || (T > 0 && B > INT32_MAX / T))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "cuda backend: %s: B=%d T=%d C=%d", op,
                              B, T, C);
    if ((C + 255) / 256 > 65535)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "cuda backend: %s: C=%d is too large", op,
                              C);
    return DSRT_STATUS_OK;
}

dsrt_status cuda_encoder_forward(dsrt_backend *be, void *out, const int32_t *tokens,
                                 const void *wte, const void *wpe, int B, int T, int C)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check_dims("encoder_forward", B, T, C));
    if (B == 0 || T == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, encoder_forward, cb, out, tokens, wte, wpe, B, T, C);
}

dsrt_status cuda_encoder_backward(dsrt_backend *be, void *dwte, void *dwpe, const void *dout,
                                  const int32_t *tokens, int B, int T, int C, int v0, int v1)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(check_dims("encoder_backward", B, T, C));
    if (v0 < 0 || v1 < v0)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "cuda backend: encoder_backward: rows [%d, %d)", v0, v1);
    if (B == 0 || T == 0)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_need(cb, (size_t)B * T, cb->enc_n, "encoder_backward", "token positions"));
    DSRT_TRY(cuda_enter(cb));
    CUDA_DISPATCH(be->dt, encoder_backward, cb, dwte, dwpe, dout, tokens, B, T, C, v0, v1);
}
