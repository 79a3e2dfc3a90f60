/* Stand-in for the NCCL comm (comm_nccl.cu) in builds without CUDA. */
#include "base/internal.h"
#include "zero/comm.h"

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
