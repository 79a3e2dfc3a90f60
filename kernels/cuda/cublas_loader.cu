/* cuBLAS, opened at run time. libdsrt.so must load on machines without the
 * CUDA libraries (a CPU-only host), and must not drag a 700 MB library into
 * every process that only reads configs, so cuBLAS is not a link-time
 * dependency: the first CUDA backend dlopen()s the cuBLAS of the toolkit it
 * was built with (libcublas.so.<major>) and resolves the few entry points the
 * kernels use. The library stays loaded for the life of the process. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "kernels/cuda/cuda_common.cuh"

dsrt_cublas_api dsrt_cublas;

#define DSRT_XSTR(x) DSRT_STR(x)
#define DSRT_STR(x) #x

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char g_error[512];

static void load_once(void)
{
    char name[64];
    snprintf(name, sizeof name, "libcublas.so.%d", CUBLAS_VER_MAJOR);
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(g_error, sizeof g_error, "cannot load %s (the CUDA %d toolkit's cuBLAS): %s", name,
                 CUBLAS_VER_MAJOR, e ? e : "unknown error");
        return;
    }
    /* the real symbol names: cublas_v2.h maps e.g. cublasCreate to cublasCreate_v2 */
#define RESOLVE(field, fn)                                                                         \
    do {                                                                                           \
        dsrt_cublas.field = (decltype(dsrt_cublas.field))dlsym(h, DSRT_XSTR(fn));                  \
        if (!dsrt_cublas.field) {                                                                  \
            snprintf(g_error, sizeof g_error, "%s has no %s", name, DSRT_XSTR(fn));                \
            return;                                                                                \
        }                                                                                          \
    } while (0)
    RESOLVE(Create, cublasCreate);
    RESOLVE(Destroy, cublasDestroy);
    RESOLVE(SetStream, cublasSetStream);
    RESOLVE(SetWorkspace, cublasSetWorkspace);
    RESOLVE(SetMathMode, cublasSetMathMode);
    RESOLVE(SetPointerMode, cublasSetPointerMode);
    RESOLVE(GemmEx, cublasGemmEx);
    RESOLVE(GemmStridedBatchedEx, cublasGemmStridedBatchedEx);
    RESOLVE(GetStatusString, cublasGetStatusString);
#undef RESOLVE
    dsrt_cublas.loaded = true;
}

dsrt_status cuda_cublas_load(void)
{
    pthread_once(&g_once, load_once);
    if (!dsrt_cublas.loaded)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "cuda backend: %s", g_error);
    return DSRT_STATUS_OK;
}
