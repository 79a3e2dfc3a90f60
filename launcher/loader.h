/* How dsrt's own launchers find and open libdsrt.so, exactly as a user's
 * launcher would: dlopen + dlsym("dsrt_get_api"), never linked. */
#ifndef DSRT_LOADER_H
#define DSRT_LOADER_H

#include <stddef.h>

#include "dsrt.h"

typedef struct dsrt_lib {
    void *handle;
    const dsrt_api *api;
    char path[4096];   /* the file that was opened */
} dsrt_lib;

/* Opens the library: `path` if non-NULL, else $DSRT_LIBRARY, else
 * libdsrt.so beside the executable, in ../lib, then the loader's search path.
 * Checks the ABI major version. Returns 0, or -1 with a message in err. */
int dsrt_lib_open(dsrt_lib *lib, const char *path, char *err, size_t err_size);
void dsrt_lib_close(dsrt_lib *lib);

/* The library's last error for this thread, as a static string of the caller's thread. */
const char *dsrt_lib_error(const dsrt_lib *lib);

#endif /* DSRT_LOADER_H */
