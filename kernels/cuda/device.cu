/* CUDA device discovery. Any failure (no driver, "insufficient driver" on a
 * machine with the toolkit but no GPU, no device) means "no GPU": the CPU
 * backend runs instead and nothing is reported as an error. */
#include <cuda_runtime.h>

extern "C" {
#include "base/internal.h"
}

extern "C" int dsrt_cuda_device_count(void)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the sticky error for later callers */
        return 0;
    }
    return n;
}
