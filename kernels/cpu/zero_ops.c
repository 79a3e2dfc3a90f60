/* The data-parallel helper ops of the CPU backend (backend.h, "data
 * parallelism"): type conversion for communication_data_type, in-place
 * scaling (the 1/N pre-division of a gradient bucket), accumulation of
 * reduced gradient slices across micro-steps, and plain copies. Each element
 * is computed in fp32 and rounded once, as the CUDA versions do. */
#include <string.h>

#include "kernels/cpu/cpu_common.h"

/* Large arrays only: the bucket copies are memory-bound, and a second thread
 * helps there even on a machine whose cores share one FPU. */
#define PAR_MIN 65536

dsrt_status cpu_convert(dsrt_backend *be, void *dst, dsrt_dtype dst_dt, const void *src,
                        dsrt_dtype src_dt, size_t n)
{
    (void)be;
    if (dst_dt == src_dt) {
        memcpy(dst, src, n * dsrt_dtype_size(dst_dt));
        return DSRT_STATUS_OK;
    }
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++)
        dsrt_store(dst_dt, dst, i, dsrt_load(src_dt, src, i));
    return DSRT_STATUS_OK;
}

dsrt_status cpu_scale(dsrt_backend *be, void *x, dsrt_dtype dt, float s, size_t n)
{
    (void)be;
    if (s == 1.0f)
        return DSRT_STATUS_OK;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++)
        dsrt_store(dt, x, i, dsrt_load(dt, x, i) * s);
    return DSRT_STATUS_OK;
}

dsrt_status cpu_accumulate(dsrt_backend *be, void *dst, const void *src, dsrt_dtype dt, size_t n)
{
    (void)be;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++)
        dsrt_store(dt, dst, i, dsrt_load(dt, dst, i) + dsrt_load(dt, src, i));
    return DSRT_STATUS_OK;
}

dsrt_status cpu_copy_bytes(dsrt_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes)
        memcpy(dst, src, bytes);
    return DSRT_STATUS_OK;
}
