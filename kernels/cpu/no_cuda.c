/* Stand-in for the CUDA backend in builds without CUDA (no nvcc, or the
 * sanitizer variant): there are never any devices, and no NCCL. */
#include "backend.h"
#include "transport.h" /* before comm.h, which names dsrt_transport */
#include "comm.h"
#include "internal.h"

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

void *dsrt_backend_cuda_stream(dsrt_backend *be)
{
    (void)be;
    return NULL;
}

dsrt_status dsrt_comm_nccl_create(int rank, int world, int device, double timeout_s,
                                  void *cuda_stream, dsrt_comm_share_fn share_id, void *user,
                                  dsrt_comm **out)
{
    (void)rank;
    (void)world;
    (void)device;
    (void)timeout_s;
    (void)cuda_stream;
    (void)share_id;
    (void)user;
    if (out)
        *out = NULL;
    return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                          "this libdsrt was built without CUDA (no nvcc at build time, or a "
                          "sanitizer build): no NCCL communication");
}
