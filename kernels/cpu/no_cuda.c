/* Stand-in for the CUDA backend's device query in builds without CUDA (no
 * nvcc, or the sanitizer variant): there are never any devices. */
#include "internal.h"

int dsrt_cuda_device_count(void) { return 0; }
