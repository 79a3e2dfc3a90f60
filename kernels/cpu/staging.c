/* fp32 staging for 16-bit storage (cpu_common.h): every CPU op is written
 * once in fp32; for fp16/bf16 storage its inputs are converted into the
 * backend's scratch slots (exact) and each output rounded once on the way out. */
#include <string.h>

#include "kernels/cpu/cpu_common.h"

void cpu_convert_in(dsrt_dtype dt, float *dst, const void *src, size_t n)
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

void cpu_convert_out(dsrt_dtype dt, void *dst, const float *src, size_t n)
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
    cpu_convert_in(be->dt, f, p, n);
    return f;
}

float *cpu_out(dsrt_backend *be, int slot, void *p, size_t n, bool load)
{
    if (be->dt == DSRT_F32 || !p)
        return p;
    float *f = cpu_of(be)->slot[slot];
    if (load)
        cpu_convert_in(be->dt, f, p, n);
    return f;
}

void cpu_out_put(dsrt_backend *be, void *p, const float *f, size_t n)
{
    if (be->dt != DSRT_F32 && p)
        cpu_convert_out(be->dt, p, f, n);
}
