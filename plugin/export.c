/* The one exported symbol of libdsrt.so. Kept in its own file so that the
 * static core archive, which the unit tests link, exports nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>

#include "dsrt.h"

const dsrt_api *dsrt_api_table(void);

__attribute__((visibility("default"))) const dsrt_api *dsrt_get_api(void) { return dsrt_api_table(); }

/* The OpenMP runtime keeps worker threads alive between parallel regions.
 * If a host dlclose()s libdsrt.so and that takes libgomp (and OpenMP
 * OpenBLAS) out of the process, those threads wake up in unmapped code and
 * the process crashes (seen at exit under load). So the first load pins both
 * for the life of the process, as if the host had linked them; libdsrt.so
 * itself still unloads. HDF5 likewise: once used it registers an atexit()
 * handler in its own code, which must still be mapped at exit. */
__attribute__((constructor)) static void dsrt_pin_thread_runtimes(void)
{
    static const char *const libs[] = {"libgomp.so.1", "libopenblas.so.0",
                                       "libhdf5_serial.so.103", "libhdf5.so.103"};
    for (unsigned i = 0; i < sizeof libs / sizeof libs[0]; i++)
        (void)dlopen(libs[i], RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
}
