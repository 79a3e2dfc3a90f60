/* The CPU backend: host memory, fp32 staging for 16-bit storage, and the op
 * table. Ops run synchronously (sync is a no-op); OpenBLAS does the matmuls,
 * OpenMP the element-wise and row loops. */
#define _GNU_SOURCE
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cpu_common.h"

/* ---- memory. A 256-byte header in front of each block keeps its mapping size. */
enum { CPU_ALLOC_HEADER = 256 };

void *dsrt_cpu_alloc(size_t bytes)
{
    size_t total = bytes + CPU_ALLOC_HEADER;
    void *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (total >= (2u << 20))
        (void)madvise(base, total, MADV_HUGEPAGE);
#endif
    *(size_t *)base = total;
    return (char *)base + CPU_ALLOC_HEADER;
}

void dsrt_cpu_free(void *p)
{
    if (!p)
        return;
    char *base = (char *)p - CPU_ALLOC_HEADER;
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

static void convert_in(dsrt_dtype dt, float *dst, const void *src, size_t n)
{
    if (dt == DSRT_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    const uint16_t *h = src;
    if (dt == DSRT_F16) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++)
            dst[i] = dsrt_f16_to_f32(h[i]);
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++)
            dst[i] = dsrt_bf16_to_f32(h[i]);
    }
}

static void convert_out(dsrt_dtype dt, void *dst, const float *src, size_t n)
{
    if (dt == DSRT_F32) {
        if (dst != src)
            memcpy(dst, src, n * sizeof(float));
        return;
    }
    uint16_t *h = dst;
    if (dt == DSRT_F16) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++)
            h[i] = dsrt_f32_to_f16(src[i]);
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++)
            h[i] = dsrt_f32_to_bf16(src[i]);
    }
}

static dsrt_status cpu_upload_f32(dsrt_backend *be, void *dst, const float *src, size_t n)
{
    convert_out(be->dt, dst, src, n);
    return DSRT_STATUS_OK;
}

static dsrt_status cpu_download_f32(dsrt_backend *be, float *dst, const void *src, size_t n)
{
    convert_in(be->dt, dst, src, n);
    return DSRT_STATUS_OK;
}

/* ---- fp32 staging */
dsrt_status cpu_check_reserved(dsrt_backend *be, size_t n, const char *op)
{
    cpu_backend *cb = cpu_of(be);
    if (be->dt == DSRT_F32)
        return DSRT_STATUS_OK;
    if (!cb->reserved || n > cb->slot_n)
        return dsrt_error_set(DSRT_STATUS_INTERNAL,
                              "cpu backend: %s on %zu elements exceeds the reserved shapes "
                              "(%zu per staging buffer); call reserve() with the largest shapes",
                              op, n, cb->slot_n);
    return DSRT_STATUS_OK;
}

const float *cpu_in(dsrt_backend *be, int slot, const void *p, size_t n)
{
    if (be->dt == DSRT_F32 || !p)
        return p;
    float *f = cpu_of(be)->slot[slot];
    convert_in(be->dt, f, p, n);
    return f;
}

float *cpu_out(dsrt_backend *be, int slot, void *p, size_t n, bool load)
{
    if (be->dt == DSRT_F32 || !p)
        return p;
    float *f = cpu_of(be)->slot[slot];
    if (load)
        convert_in(be->dt, f, p, n);
    return f;
}

void cpu_out_put(dsrt_backend *be, void *p, const float *f, size_t n)
{
    if (be->dt != DSRT_F32 && p)
        convert_out(be->dt, p, f, n);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static dsrt_status cpu_reserve(dsrt_backend *be, const dsrt_backend_shapes *s)
{
    cpu_backend *cb = cpu_of(be);
    size_t N = (size_t)s->B * s->T;
    size_t att = (size_t)s->B * s->NH * s->T * s->T;
    size_t work = 2 * (size_t)s->T * s->T + 2 * (size_t)s->T;
    int threads = omp_get_max_threads();
    if (cb->reserved) {
        const dsrt_backend_shapes *o = &cb->shapes;
        if (s->B <= o->B && s->T <= o->T && s->C <= o->C && s->NH >= 1 && s->V <= o->V &&
            s->max_K <= o->max_K && s->max_OC <= o->max_OC && work <= cb->att_work_n &&
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
        size_t n = 0;
        n = max_sz(n, N * (size_t)max_sz(s->max_K, s->max_OC));
        n = max_sz(n, (size_t)s->max_K * s->max_OC);
        n = max_sz(n, att);
        n = max_sz(n, N * 3 * (size_t)s->C);
        n = max_sz(n, N * (size_t)s->V);
        n = max_sz(n, (size_t)s->V * s->C);
        cb->slot_n = n;
        for (int i = 0; i < CPU_SCRATCH_SLOTS; i++) {
            cb->slot[i] = dsrt_cpu_alloc(n * sizeof(float));
            if (!cb->slot[i])
                return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY,
                                      "cpu backend: fp32 staging for %s (%zu bytes)",
                                      dsrt_dtype_name(be->dt), n * sizeof(float));
        }
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
    dsrt_cpu_free(cb->att_work);
    free(cb);
}

dsrt_status dsrt_backend_cpu_create(dsrt_dtype dt, dsrt_backend **out)
{
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
    be->destroy = cpu_destroy;
    be->reserve = cpu_reserve;
    be->sync = cpu_sync;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->memset0 = cpu_memset0;
    be->upload = cpu_copy;
    be->download = cpu_copy;
    be->upload_f32 = cpu_upload_f32;
    be->download_f32 = cpu_download_f32;
    be->encoder_forward = cpu_encoder_forward;
    be->encoder_backward = cpu_encoder_backward;
    be->layernorm_forward = cpu_layernorm_forward;
    be->layernorm_backward = cpu_layernorm_backward;
    be->matmul_forward = cpu_matmul_forward;
    be->matmul_backward = cpu_matmul_backward;
    be->attention_forward = cpu_attention_forward;
    be->attention_backward = cpu_attention_backward;
    be->gelu_forward = cpu_gelu_forward;
    be->gelu_backward = cpu_gelu_backward;
    be->residual_forward = cpu_residual_forward;
    be->residual_backward = cpu_residual_backward;
    be->classifier_forward = cpu_classifier_forward;
    be->grad_stats = cpu_grad_stats;
    be->adamw_step = cpu_adamw_step;
    be->convert = cpu_convert;
    be->scale = cpu_scale;
    be->accumulate = cpu_accumulate;
    be->copy = cpu_copy_bytes;
    *out = be;
    return DSRT_STATUS_OK;
}
