/* The CPU backend: host memory and the op table (the fp32 staging for
 * 16-bit storage is staging.c). Ops run synchronously (sync is a no-op); OpenBLAS does the matmuls,
 * OpenMP the element-wise and row loops. */
#define _GNU_SOURCE
#include <cblas.h>
#include <omp.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/cpu/cpu_common.h"

/* ---- memory. A 256-byte header in front of each block keeps its mapping size. */
enum { CPU_ALLOC_HEADER = 256 };

/* bytes of blocks mapped and not yet unmapped, over every CPU backend */
static size_t cpu_live_bytes;

/* DSRT_HUGEPAGES=0: no transparent huge pages for big blocks (resident memory
 * then grows by 4 KiB pages, not 2 MiB ones: slower first touch, tighter
 * figures) */
static int cpu_hugepages(void)
{
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("DSRT_HUGEPAGES");
        on = !(v && !strcmp(v, "0"));
    }
    return on;
}

size_t dsrt_cpu_allocated_bytes(void) { return __atomic_load_n(&cpu_live_bytes, __ATOMIC_RELAXED); }

void *dsrt_cpu_alloc(size_t bytes)
{
    size_t total = bytes + CPU_ALLOC_HEADER;
    void *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (total >= (2u << 20) && cpu_hugepages())
        (void)madvise(base, total, MADV_HUGEPAGE);
#endif
    *(size_t *)base = total;
    __atomic_add_fetch(&cpu_live_bytes, total, __ATOMIC_RELAXED);
    return (char *)base + CPU_ALLOC_HEADER;
}

void dsrt_cpu_free(void *p)
{
    if (!p)
        return;
    char *base = (char *)p - CPU_ALLOC_HEADER;
    __atomic_sub_fetch(&cpu_live_bytes, *(size_t *)base, __ATOMIC_RELAXED);
    munmap(base, *(size_t *)base);
}

static dsrt_status cpu_alloc(dsrt_backend *be, size_t bytes, void **out)
{
    (void)be;
    *out = dsrt_cpu_alloc(bytes ? bytes : 1);
    if (!*out)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "cpu backend: cannot allocate %zu bytes",
                              bytes);
    return DSRT_STATUS_OK;
}

static void cpu_free(dsrt_backend *be, void *p)
{
    (void)be;
    dsrt_cpu_free(p);
}

static dsrt_status cpu_memset0(dsrt_backend *be, void *p, size_t bytes)
{
    (void)be;
    memset(p, 0, bytes);
    return DSRT_STATUS_OK;
}

static dsrt_status cpu_copy(dsrt_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    memmove(dst, src, bytes);
    return DSRT_STATUS_OK;
}

static dsrt_status cpu_upload_f32(dsrt_backend *be, void *dst, const float *src, size_t n)
{
    cpu_convert_out(be->dt, dst, src, n);
    return DSRT_STATUS_OK;
}

static dsrt_status cpu_download_f32(dsrt_backend *be, float *dst, const void *src, size_t n)
{
    cpu_convert_in(be->dt, dst, src, n);
    return DSRT_STATUS_OK;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* floats per fp32 staging slot for 16-bit storage: what layernorm and
 * attention widen whole (activation-sized: q|k|v rows, the attention
 * probabilities); the matmuls go through gemm.c's tiles, the classifier a
 * row at a time */
/* a packed q|k|v row: (NH + 2 NKV) HS, GPT-2's 3C when HS is 0 */
static size_t qkv_row(const dsrt_backend_shapes *s)
{
    return s->HS ? (size_t)(s->NH + 2 * (s->NKV ? s->NKV : s->NH)) * s->HS : 3 * (size_t)s->C;
}

static size_t slot_floats(const dsrt_backend_shapes *s)
{
    size_t N = (size_t)s->B * s->T;
    size_t att = (size_t)s->B * s->NH * s->T * s->T;
    return max_sz(N * qkv_row(s), att);
}

static size_t att_work_floats(const dsrt_backend_shapes *s) { return 2 * (size_t)s->T * s->T + 2 * (size_t)s->T; }

static size_t gemm_tile_floats(void)
{
    return (size_t)CPU_GEMM_TK * (CPU_GEMM_TM > CPU_GEMM_TN ? CPU_GEMM_TM : CPU_GEMM_TN);
}

size_t dsrt_cpu_scratch_bytes(dsrt_dtype dt, const dsrt_backend_shapes *s)
{
    size_t threads = (size_t)omp_get_max_threads(), h = CPU_ALLOC_HEADER;
    size_t b = att_work_floats(s) * sizeof(float) * threads + h;
    if (dt != DSRT_F32)
        b += CPU_SCRATCH_SLOTS * (slot_floats(s) * sizeof(float) + h) + 2 * (gemm_tile_floats() * sizeof(float) + h) +
             (size_t)CPU_GEMM_TM * CPU_GEMM_TN * sizeof(float) + h +
             threads * (size_t)(s->V > 0 ? s->V : 1) * sizeof(float) + h;
    return b;
}

static dsrt_status cpu_reserve(dsrt_backend *be, const dsrt_backend_shapes *s)
{
    cpu_backend *cb = cpu_of(be);
    size_t work = att_work_floats(s);
    int threads = omp_get_max_threads();
    if (cb->reserved) {
        const dsrt_backend_shapes *o = &cb->shapes;
        if (s->B <= o->B && s->T <= o->T && s->C <= o->C && s->NH >= 1 && s->V <= o->V &&
            s->max_K <= o->max_K && s->max_OC <= o->max_OC && qkv_row(s) <= qkv_row(o) && work <= cb->att_work_n &&
            threads <= cb->threads)
            return DSRT_STATUS_OK;
        dsrt_error_set(DSRT_STATUS_INTERNAL, "cpu backend: reserve() may be called once");
        return DSRT_STATUS_INTERNAL;
    }
    cb->shapes = *s;
    cb->threads = threads;
    cb->att_work_n = work;
    cb->att_work = dsrt_cpu_alloc(work * sizeof(float) * (size_t)threads);
    if (!cb->att_work)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "cpu backend: attention work rows");
    if (be->dt != DSRT_F32) {
        size_t n = slot_floats(s);
        cb->slot_n = n;
        for (int i = 0; i < CPU_SCRATCH_SLOTS; i++) {
            cb->slot[i] = dsrt_cpu_alloc(n * sizeof(float));
            if (!cb->slot[i])
                return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY,
                                      "cpu backend: fp32 staging for %s (%zu bytes)",
                                      dsrt_dtype_name(be->dt), n * sizeof(float));
        }
        size_t ab = gemm_tile_floats();
        cb->gemm_a = dsrt_cpu_alloc(ab * sizeof(float));
        cb->gemm_b = dsrt_cpu_alloc(ab * sizeof(float));
        cb->gemm_c = dsrt_cpu_alloc((size_t)CPU_GEMM_TM * CPU_GEMM_TN * sizeof(float));
        cb->cls_work = dsrt_cpu_alloc((size_t)threads * (size_t)(s->V > 0 ? s->V : 1) * sizeof(float));
        if (!cb->gemm_a || !cb->gemm_b || !cb->gemm_c || !cb->cls_work)
            return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "cpu backend: fp32 tiles for %s",
                                  dsrt_dtype_name(be->dt));
    }
    cb->reserved = true;
    return DSRT_STATUS_OK;
}

static dsrt_status cpu_sync(dsrt_backend *be)
{
    (void)be;
    return DSRT_STATUS_OK;
}

static void cpu_destroy(dsrt_backend *be)
{
    if (!be)
        return;
    cpu_backend *cb = cpu_of(be);
    for (int i = 0; i < CPU_SCRATCH_SLOTS; i++)
        dsrt_cpu_free(cb->slot[i]);
    dsrt_cpu_free(cb->gemm_a);
    dsrt_cpu_free(cb->gemm_b);
    dsrt_cpu_free(cb->gemm_c);
    dsrt_cpu_free(cb->cls_work);
    dsrt_cpu_free(cb->att_work);
    free(cb);
}

static const dsrt_backend_ops cpu_ops = {
    .destroy = cpu_destroy,
    .reserve = cpu_reserve,
    .sync = cpu_sync,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memset0 = cpu_memset0,
    .upload = cpu_copy,
    .download = cpu_copy,
    .upload_f32 = cpu_upload_f32,
    .download_f32 = cpu_download_f32,
    .encoder_forward = cpu_encoder_forward,
    .encoder_backward = cpu_encoder_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
    .gemm = cpu_gemm,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .rope = cpu_rope,
    .swiglu_forward = cpu_swiglu_forward,
    .swiglu_backward = cpu_swiglu_backward,
    .bias_forward = cpu_bias_forward,
    .bias_backward = cpu_bias_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .residual_forward = cpu_residual_forward,
    .residual_backward = cpu_residual_backward,
    .classifier_forward = cpu_classifier_forward,
    .grad_stats = cpu_grad_stats,
    .adamw_step = cpu_adamw_step,
    .convert = cpu_convert,
    .scale = cpu_scale,
    .accumulate = cpu_accumulate,
    .copy = cpu_copy_bytes,
};

/* Once per process: which OpenBLAS kernels run, and a warning when they are
 * older than the processor (Debian 12's OpenBLAS 0.3.21 falls back to its
 * SSE3 kernels on processors it does not know: a quarter of the AVX-512
 * sgemm rate; OPENBLAS_CORETYPE=SkylakeX picks the right ones, and
 * dsrt-train sets it). */
static void say_openblas_kernels(void)
{
    static int said;
    if (__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
        return;
    const char *core = openblas_get_corename();
    __builtin_cpu_init();
    bool avx512 = __builtin_cpu_supports("avx512f"), avx2 = __builtin_cpu_supports("avx2");
    bool old = core && (!strcasecmp(core, "prescott") || !strcasecmp(core, "core2") || !strcasecmp(core, "nehalem") ||
                        !strcasecmp(core, "penryn") || !strcasecmp(core, "dunnington") || !strcasecmp(core, "atom") ||
                        !strcasecmp(core, "katmai") || !strcasecmp(core, "coppermine"));
    if (old && (avx512 || avx2))
        dsrt_log(DSRT_LOG_WARNING,
                 "cpu backend: OpenBLAS runs its %s kernels on a processor with %s: its matmuls run at a fraction "
                 "of the machine's rate; set OPENBLAS_CORETYPE=%s before the library loads (dsrt-train does when it is unset)",
                 core, avx512 ? "AVX-512" : "AVX2", avx512 ? "SkylakeX" : "Haswell");
    else
        dsrt_log(DSRT_LOG_DEBUG, "cpu backend: OpenBLAS %s kernels", core ? core : "?");
}

dsrt_status dsrt_backend_cpu_create(dsrt_dtype dt, dsrt_backend **out)
{
    say_openblas_kernels();
    *out = NULL;
    if (dt != DSRT_F32 && dt != DSRT_F16 && dt != DSRT_BF16)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "cpu backend: unknown dtype %d",
                              (int)dt);
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "cpu backend");
    dsrt_backend *be = &cb->base;
    be->name = "cpu";
    be->dt = dt;
    be->impl = cb;
    be->ops = &cpu_ops;
    dsrt_cpu_set_gemm_tiles(be, 0, 0, 0);
    *out = be;
    return DSRT_STATUS_OK;
}
