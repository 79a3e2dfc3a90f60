/* Stand-in for the CUDA backend in builds without CUDA (no nvcc, or the
 * sanitizer variant): there are never any devices. zero/comm_nccl_stub.c
 * stands in for NCCL likewise. */
#include "kernels/backend.h"
#include "base/internal.h"

int dsrt_cuda_device_count(void) { return 0; }

dsrt_status dsrt_backend_cuda_create(dsrt_dtype dt, int device, dsrt_backend **out)
{
    (void)dt;
    (void)device;
    *out = NULL;
    return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                          "this libdsrt was built without CUDA (no nvcc at build time, or a "
                          "sanitizer build)");
}

size_t dsrt_cuda_scratch_bytes(dsrt_dtype dt, const dsrt_backend_shapes *s)
{
    (void)dt;
    (void)s;
    return 0;
}

void *dsrt_backend_cuda_stream(dsrt_backend *be)
{
    (void)be;
    return NULL;
}
