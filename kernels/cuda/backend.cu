/* The CUDA backend: device memory, one stream for everything, a cuBLAS
 * handle with a fixed workspace, the scratch reserve() allocates once from the
 * largest shapes, and the op table (kernels/cuda/<op>.cu).
 * Copies are synchronous (issued on the stream, then waited for), so host
 * buffers can be reused as soon as upload/download return. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

enum { CUDA_BLAS_WORKSPACE = 32 << 20 }; /* cuBLAS' recommendation for Hopper */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

dsrt_status cuda_fail(const char *file, int line, const char *call, cudaError_t err)
{
    (void)cudaGetLastError(); /* clear a non-sticky error so later calls start clean */
    dsrt_status st =
        err == cudaErrorMemoryAllocation ? DSRT_STATUS_OUT_OF_MEMORY : DSRT_STATUS_INTERNAL;
    return dsrt_error_set(st, "%s:%d: %s: %s (%s)", base_name(file), line, call,
                          cudaGetErrorString(err), cudaGetErrorName(err));
}

dsrt_status cublas_fail(const char *file, int line, const char *call, cublasStatus_t st)
{
    dsrt_status s =
        st == CUBLAS_STATUS_ALLOC_FAILED ? DSRT_STATUS_OUT_OF_MEMORY : DSRT_STATUS_INTERNAL;
    return dsrt_error_set(s, "%s:%d: %s: %s", base_name(file), line, call,
                          dsrt_cublas.GetStatusString(st));
}

dsrt_status cuda_enter(cuda_backend *cb)
{
    CUDA_CHECK(cudaSetDevice(cb->device));
    return DSRT_STATUS_OK;
}

dsrt_status cuda_need(cuda_backend *cb, size_t need, size_t have, const char *op, const char *what)
{
    if (!cb->reserved || need > have)
        return dsrt_error_set(DSRT_STATUS_INTERNAL,
                              "cuda backend: %s needs %zu %s of scratch, %zu reserved; call "
                              "reserve() with the largest shapes first",
                              op, need, what, cb->reserved ? have : (size_t)0);
    return DSRT_STATUS_OK;
}

/* ---- memory */
static dsrt_status cu_alloc(dsrt_backend *be, size_t bytes, void **out)
{
    cuda_backend *cb = cuda_of(be);
    *out = NULL;
    DSRT_TRY(cuda_enter(cb));
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1); /* 256-byte aligned */
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY,
                              "cuda backend: cannot allocate %zu bytes on device %d: %s", bytes,
                              cb->device, cudaGetErrorString(err));
    }
    err = cudaMemsetAsync(p, 0, bytes, cb->stream);
    if (err != cudaSuccess) {
        (void)cudaFree(p);
        return cuda_fail(__FILE__, __LINE__, "cudaMemsetAsync(alloc)", err);
    }
    *out = p;
    return DSRT_STATUS_OK;
}

static void cu_free(dsrt_backend *be, void *p)
{
    cuda_backend *cb = cuda_of(be);
    if (!p)
        return;
    /* the stream is non-blocking: let its work on p finish first */
    if (cudaSetDevice(cb->device) == cudaSuccess)
        (void)cudaStreamSynchronize(cb->stream);
    (void)cudaFree(p);
    (void)cudaGetLastError();
}

static dsrt_status cu_memset0(dsrt_backend *be, void *p, size_t bytes)
{
    cuda_backend *cb = cuda_of(be);
    if (!bytes)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cb->stream));
    return DSRT_STATUS_OK;
}

static dsrt_status cu_upload(dsrt_backend *be, void *dst, const void *src, size_t bytes)
{
    cuda_backend *cb = cuda_of(be);
    if (!bytes)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cb->stream));
    CUDA_CHECK(cudaStreamSynchronize(cb->stream));
    return DSRT_STATUS_OK;
}

static dsrt_status cu_download(dsrt_backend *be, void *dst, const void *src, size_t bytes)
{
    cuda_backend *cb = cuda_of(be);
    if (!bytes)
        return DSRT_STATUS_OK;
    DSRT_TRY(cuda_enter(cb));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cb->stream));
    CUDA_CHECK(cudaStreamSynchronize(cb->stream));
    return DSRT_STATUS_OK;
}

/* typed <-> fp32: converted on the host with common/dtype.h (the same bits as
 * the CPU backend), then copied. Not on a step's path. */
static dsrt_status cu_upload_f32(dsrt_backend *be, void *dst, const float *src, size_t n)
{
    if (be->dt == DSRT_F32)
        return cu_upload(be, dst, src, n * sizeof(float));
    if (!n)
        return DSRT_STATUS_OK;
    uint16_t *h = (uint16_t *)malloc(n * sizeof(uint16_t));
    if (!h)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY,
                              "cuda backend: upload_f32 staging (%zu bytes)", n * sizeof(uint16_t));
    if (be->dt == DSRT_F16)
        for (size_t i = 0; i < n; i++)
            h[i] = dsrt_f32_to_f16(src[i]);
    else
        for (size_t i = 0; i < n; i++)
            h[i] = dsrt_f32_to_bf16(src[i]);
    dsrt_status st = cu_upload(be, dst, h, n * sizeof(uint16_t));
    free(h);
    return st;
}

static dsrt_status cu_download_f32(dsrt_backend *be, float *dst, const void *src, size_t n)
{
    if (be->dt == DSRT_F32)
        return cu_download(be, dst, src, n * sizeof(float));
    if (!n)
        return DSRT_STATUS_OK;
    uint16_t *h = (uint16_t *)malloc(n * sizeof(uint16_t));
    if (!h)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY,
                              "cuda backend: download_f32 staging (%zu bytes)",
                              n * sizeof(uint16_t));
    dsrt_status st = cu_download(be, h, src, n * sizeof(uint16_t));
    if (st == DSRT_STATUS_OK) {
        if (be->dt == DSRT_F16)
            for (size_t i = 0; i < n; i++)
                dst[i] = dsrt_f16_to_f32(h[i]);
        else
            for (size_t i = 0; i < n; i++)
                dst[i] = dsrt_bf16_to_f32(h[i]);
    }
    free(h);
    return st;
}

/* ---- scratch */
static void free_dev(void *p)
{
    if (p)
        (void)cudaFree(p);
}

static void scratch_free(cuda_backend *cb)
{
    free_dev(cb->att_qkvp);
    free_dev(cb->att_tmp);
    free_dev(cb->att_scores);
    free_dev(cb->att_dpre);
    free_dev(cb->partials);
    free_dev(cb->enc_keys);
    free_dev(cb->enc_sort_tmp);
    cb->att_qkvp = cb->att_tmp = cb->att_dpre = cb->enc_sort_tmp = NULL;
    cb->att_scores = cb->partials = NULL;
    cb->enc_keys = NULL;
    (void)cudaGetLastError();
    cb->reserved = false;
}

static dsrt_status scratch_alloc(void **p, size_t bytes, const char *what)
{
    *p = NULL;
    cudaError_t err = cudaMalloc(p, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        *p = NULL;
        (void)cudaGetLastError();
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY,
                              "cuda backend: reserve: cannot allocate %zu bytes for %s: %s", bytes,
                              what, cudaGetErrorString(err));
    }
    return DSRT_STATUS_OK;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

size_t dsrt_cuda_scratch_bytes(dsrt_dtype dt, const dsrt_backend_shapes *s)
{
    size_t N = (size_t)s->B * s->T, es = dsrt_dtype_size(dt);
    size_t HS = s->HS ? (size_t)s->HS : (size_t)(s->C / (s->NH ? s->NH : 1));
    size_t btc = N * max_sz((size_t)s->C, (size_t)s->NH * HS);
    size_t tt = (size_t)s->B * s->NH * s->T * s->T;
    size_t cols = max_sz((size_t)s->max_OC, 2 * (size_t)s->C);
    size_t b = 4 * btc * es + tt * sizeof(float) + (dt != DSRT_F32 ? tt * es : 0) +
               cuda_colred_chunks(N) * cols * sizeof(float) + 2 * N * sizeof(uint64_t);
    /* the encoder sort's temporary (cub asks the device; about the keys
     * again) and cuBLAS's workspace */
    return b + 2 * N * sizeof(uint64_t) + CUDA_BLAS_WORKSPACE;
}

static dsrt_status cu_reserve(dsrt_backend *be, const dsrt_backend_shapes *s)
{
    cuda_backend *cb = cuda_of(be);
    if (s->B <= 0 || s->T <= 0 || s->C <= 0 || s->NH <= 0 || s->V < 0 || s->max_K < 0 ||
        s->max_OC < 0 || s->NKV < 0 || s->HS < 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "cuda backend: reserve: bad shapes B=%d T=%d C=%d NH=%d V=%d "
                              "max_K=%d max_OC=%d NKV=%d HS=%d",
                              s->B, s->T, s->C, s->NH, s->V, s->max_K, s->max_OC, s->NKV, s->HS);
    size_t N = (size_t)s->B * s->T;
    /* attention's (B,T,.) slots hold q, k, v, out in heads: the wider of C
     * and NH * HS channels (NKV <= NH, so k and v fit too) */
    size_t HS = s->HS ? (size_t)s->HS : (size_t)(s->C / s->NH);
    size_t btc = N * max_sz((size_t)s->C, (size_t)s->NH * HS);
    if (cb->reserved) {
        const dsrt_backend_shapes *o = &cb->shapes;
        if (s->B <= o->B && s->T <= o->T && s->C <= o->C && s->NH <= o->NH && s->V <= o->V &&
            s->max_K <= o->max_K && s->max_OC <= o->max_OC && btc <= cb->att_btc)
            return DSRT_STATUS_OK;
        return dsrt_error_set(DSRT_STATUS_INTERNAL,
                              "cuda backend: reserve() may be called once (larger shapes asked)");
    }
    DSRT_TRY(cuda_enter(cb));
    scratch_free(cb); /* leftovers of a reserve() that failed part way */

    size_t es = dsrt_dtype_size(be->dt);
    size_t tt = (size_t)s->B * s->NH * s->T * s->T;
    size_t cols = max_sz((size_t)s->max_OC, 2 * (size_t)s->C);
    size_t partials_n = cuda_colred_chunks(N) * cols;
    size_t sort_bytes = 0;
    DSRT_TRY(cuda_encoder_sort_bytes(N, &sort_bytes));

    void *p = NULL;
    DSRT_TRY(scratch_alloc(&cb->att_qkvp, 3 * btc * es, "attention q|k|v (3,B,NH,T,HS)"));
    DSRT_TRY(scratch_alloc(&cb->att_tmp, btc * es, "attention (B,NH,T,HS)"));
    DSRT_TRY(scratch_alloc(&p, tt * sizeof(float), "attention scores (B,NH,T,T) fp32"));
    cb->att_scores = (float *)p;
    if (be->dt != DSRT_F32)
        DSRT_TRY(scratch_alloc(&cb->att_dpre, tt * es, "attention dpreatt (B,NH,T,T)"));
    DSRT_TRY(scratch_alloc(&p, partials_n * sizeof(float), "column-reduction partials"));
    cb->partials = (float *)p;
    DSRT_TRY(scratch_alloc(&p, 2 * N * sizeof(uint64_t), "encoder sort keys"));
    cb->enc_keys = (uint64_t *)p;
    DSRT_TRY(scratch_alloc(&cb->enc_sort_tmp, sort_bytes, "encoder sort temporary"));

    cb->shapes = *s;
    cb->att_btc = btc;
    cb->att_tt = tt;
    cb->partials_n = partials_n;
    cb->enc_n = N;
    cb->enc_sort_bytes = sort_bytes;
    cb->reserved = true;
    return DSRT_STATUS_OK;
}

static dsrt_status cu_sync(dsrt_backend *be)
{
    cuda_backend *cb = cuda_of(be);
    DSRT_TRY(cuda_enter(cb));
    CUDA_CHECK(cudaStreamSynchronize(cb->stream));
    return DSRT_STATUS_OK;
}

static void cu_destroy(dsrt_backend *be)
{
    if (!be)
        return;
    cuda_backend *cb = cuda_of(be);
    if (cudaSetDevice(cb->device) == cudaSuccess) {
        if (cb->stream)
            (void)cudaStreamSynchronize(cb->stream);
        scratch_free(cb);
        cuda_adamw_free(cb);
        if (cb->blas)
            (void)dsrt_cublas.Destroy(cb->blas);
        if (cb->blas_ws)
            (void)cudaFree(cb->blas_ws);
        if (cb->stream)
            (void)cudaStreamDestroy(cb->stream);
    }
    (void)cudaGetLastError();
    free(cb);
}

static dsrt_status cu_init(cuda_backend *cb)
{
    cudaError_t err = cudaSetDevice(cb->device);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "cuda backend: device %d is not usable: %s (%s)", cb->device,
                              cudaGetErrorString(err), cudaGetErrorName(err));
    }
    DSRT_TRY(cuda_cublas_load());
    CUDA_CHECK(cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(dsrt_cublas.Create(&cb->blas));
    CUBLAS_CHECK(dsrt_cublas.SetStream(cb->blas, cb->stream)); /* resets the workspace: set it after */
    CUDA_CHECK(cudaMalloc(&cb->blas_ws, CUDA_BLAS_WORKSPACE));
    CUBLAS_CHECK(dsrt_cublas.SetWorkspace(cb->blas, cb->blas_ws, CUDA_BLAS_WORKSPACE));
    /* fp32 compute everywhere: no TF32 / BF16x9 (default math), and split-K
     * reductions of 16-bit outputs stay in fp32 */
    CUBLAS_CHECK(dsrt_cublas.SetMathMode(
        cb->blas,
        (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    CUBLAS_CHECK(dsrt_cublas.SetPointerMode(cb->blas, CUBLAS_POINTER_MODE_HOST));
    DSRT_TRY(cuda_adamw_init(cb));
    return DSRT_STATUS_OK;
}

static const dsrt_backend_ops cuda_ops = {
    /* .destroy = */ cu_destroy,
    /* .reserve = */ cu_reserve,
    /* .sync = */ cu_sync,
    /* .alloc = */ cu_alloc,
    /* .free = */ cu_free,
    /* .memset0 = */ cu_memset0,
    /* .upload = */ cu_upload,
    /* .download = */ cu_download,
    /* .upload_f32 = */ cu_upload_f32,
    /* .download_f32 = */ cu_download_f32,
    /* .encoder_forward = */ cuda_encoder_forward,
    /* .encoder_backward = */ cuda_encoder_backward,
    /* .layernorm_forward = */ cuda_layernorm_forward,
    /* .layernorm_backward = */ cuda_layernorm_backward,
    /* .matmul_forward = */ cuda_matmul_forward,
    /* .matmul_backward = */ cuda_matmul_backward,
    /* .gemm = */ cuda_gemm_op,
    /* .attention_forward = */ cuda_attention_forward,
    /* .attention_backward = */ cuda_attention_backward,
    /* .rmsnorm_forward = */ cuda_rmsnorm_forward,
    /* .rmsnorm_backward = */ cuda_rmsnorm_backward,
    /* .rope = */ cuda_rope,
    /* .swiglu_forward = */ cuda_swiglu_forward,
    /* .swiglu_backward = */ cuda_swiglu_backward,
    /* .bias_forward = */ cuda_bias_forward,
    /* .bias_backward = */ cuda_bias_backward,
    /* .gelu_forward = */ cuda_gelu_forward,
    /* .gelu_backward = */ cuda_gelu_backward,
    /* .residual_forward = */ cuda_residual_forward,
    /* .residual_backward = */ cuda_residual_backward,
    /* .classifier_forward = */ cuda_classifier_forward,
    /* .grad_stats = */ cuda_grad_stats,
    /* .adamw_step = */ cuda_adamw_step,
    /* .convert = */ cuda_convert,
    /* .scale = */ cuda_scale,
    /* .accumulate = */ cuda_accumulate,
    /* .copy = */ cuda_copy,
};

extern "C" dsrt_status dsrt_backend_cuda_create(dsrt_dtype dt, int device, dsrt_backend **out)
{
    if (!out)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "cuda backend: out is NULL");
    *out = NULL;
    if (dt != DSRT_F32 && dt != DSRT_F16 && dt != DSRT_BF16)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "cuda backend: unknown dtype %d",
                              (int)dt);
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "cuda backend: no usable CUDA device: %s (%s)",
                              cudaGetErrorString(err), cudaGetErrorName(err));
    }
    if (n <= 0)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "cuda backend: no CUDA device found");
    if (device < 0 || device >= n)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "cuda backend: device %d out of range (%d device%s found)", device, n,
                              n == 1 ? "" : "s");
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
        (void)cudaGetLastError();
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "cuda backend: cannot query device %d's compute capability", device);
    }
    if (major < 8) /* built for sm_80 and sm_90 (+ PTX for newer); bf16 needs sm_80 */
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "cuda backend: device %d has compute capability %d.%d; 8.0 or "
                              "newer is needed",
                              device, major, minor);

    cuda_backend *cb = (cuda_backend *)calloc(1, sizeof *cb);
    if (!cb)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "cuda backend");
    cb->device = device;
    dsrt_backend *be = &cb->base;
    dsrt_status st = cu_init(cb);
    if (st != DSRT_STATUS_OK) {
        cu_destroy(be);
        return st;
    }
    be->name = "cuda";
    be->dt = dt;
    be->impl = cb;
    be->ops = &cuda_ops;
    *out = be;
    return DSRT_STATUS_OK;
}

/* The stream every op of a CUDA backend runs on, for the NCCL comm
 * (zero/comm_nccl.cu) to order its comm stream against with events. */
extern "C" void *dsrt_backend_cuda_stream(dsrt_backend *be)
{
    if (!be || !be->name || strcmp(be->name, "cuda") != 0)
        return NULL;
    return (void *)cuda_of(be)->stream;
}
