/* Finding and opening libdsrt.so; see loader.h. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader.h"

static int try_open(dsrt_lib *lib, const char *path, char *err, size_t err_size)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, err_size, "%s", dlerror());
        return -1;
    }
    dsrt_get_api_fn get = (dsrt_get_api_fn)dlsym(h, DSRT_GET_API_SYMBOL);
    if (!get) {
        snprintf(err, err_size, "%s: no symbol %s: not a dsrt library", path, DSRT_GET_API_SYMBOL);
        dlclose(h);
        return -1;
    }
    const dsrt_api *api = get();
    if (!api || api->abi_major != DSRT_ABI_MAJOR) {
        snprintf(err, err_size, "%s: ABI %u.x, but this program needs %d.x", path, api ? api->abi_major : 0,
                 DSRT_ABI_MAJOR);
        dlclose(h);
        return -1;
    }
    lib->handle = h;
    lib->api = api;
    snprintf(lib->path, sizeof lib->path, "%s", path);
    return 0;
}

int dsrt_lib_open(dsrt_lib *lib, const char *path, char *err, size_t err_size)
{
    memset(lib, 0, sizeof *lib);
    if (path)
        return try_open(lib, path, err, err_size);
    const char *env = getenv("DSRT_LIBRARY");
    if (env && *env)
        return try_open(lib, env, err, err_size);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char first_err[1024] = "";
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            static const char *const rel[] = {"/libdsrt.so", "/../lib/libdsrt.so", "/../lib64/libdsrt.so"};
            for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
                char cand[PATH_MAX + 32];
                snprintf(cand, sizeof cand, "%s%s", exe, rel[i]);
                if (access(cand, F_OK) != 0)
                    continue;
                if (try_open(lib, cand, err, err_size) == 0)
                    return 0;
                if (!first_err[0])
                    snprintf(first_err, sizeof first_err, "%s", err);
            }
        }
    }
    if (try_open(lib, "libdsrt.so", err, err_size) == 0)
        return 0;
    if (first_err[0])
        snprintf(err, err_size, "%s", first_err);
    else {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", err);
        snprintf(err, err_size, "cannot find libdsrt.so (looked beside the program, in ../lib and on the loader path; "
                                "set DSRT_LIBRARY=/path/to/libdsrt.so): %s", tmp);
    }
    return -1;
}

void dsrt_lib_close(dsrt_lib *lib)
{
    if (lib->handle)
        dlclose(lib->handle);
    memset(lib, 0, sizeof *lib);
}

const char *dsrt_lib_error(const dsrt_lib *lib)
{
    static _Thread_local char buf[1024];
    dsrt_last_error_args a = {.struct_size = sizeof a, .buffer = buf, .buffer_size = sizeof buf};
    if (!lib->api || lib->api->last_error(&a) != DSRT_STATUS_OK)
        snprintf(buf, sizeof buf, "(no message)");
    return buf;
}
