/* Errors as values: the per-thread last error behind api->last_error(), and
 * the args-struct size handshake every entry point goes through. */
#include <stdio.h>
#include <string.h>

#include "base/internal.h"

/* A fixed buffer in TLS: no allocation, so nothing is left behind when the
 * host unloads the library while threads still exist. 1 KiB holds any of our
 * one-line messages; longer ones are truncated with "...". */
static _Thread_local struct {
    dsrt_status status;
    char message[1024];
} tls_error;

dsrt_status dsrt_error_set(dsrt_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tls_error.message, sizeof tls_error.message, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof tls_error.message)
        memcpy(tls_error.message + sizeof tls_error.message - 4, "...", 4);
    tls_error.status = status;
    return status;
}

void dsrt_error_clear(void)
{
    tls_error.status = DSRT_STATUS_OK;
    tls_error.message[0] = '\0';
}

dsrt_status dsrt_error_status(void) { return tls_error.status; }
const char *dsrt_error_message(void) { return tls_error.message; }

dsrt_status dsrt_args_load(const void *caller, size_t lib_size, size_t min_size,
                           void *local, const char *what)
{
    if (!caller)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s: args is NULL", what);
    size_t size;
    memcpy(&size, caller, sizeof size);
    if (size < min_size)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "%s: struct_size %zu is smaller than the smallest supported size %zu "
                              "(was struct_size set with sizeof?)",
                              what, size, min_size);
    memset(local, 0, lib_size);
    memcpy(local, caller, size < lib_size ? size : lib_size);
    if (size > lib_size) {
        /* A newer header: fine as long as the host left every field we do not
         * know at its zero default. */
        const unsigned char *tail = (const unsigned char *)caller + lib_size;
        for (size_t i = 0; i < size - lib_size; i++)
            if (tail[i])
                return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                                      "%s: struct_size %zu is larger than this library's %zu and byte %zu "
                                      "past it is set: the host uses a field that libdsrt %s does not have",
                                      what, size, lib_size, lib_size + i, DSRT_VERSION_STRING);
    }
    return DSRT_STATUS_OK;
}

void dsrt_args_store(void *caller, const void *local, size_t lib_size)
{
    size_t size;
    memcpy(&size, caller, sizeof size);
    /* struct_size itself is not ours to change */
    size_t n = (size < lib_size ? size : lib_size);
    if (n > sizeof(size_t))
        memcpy((char *)caller + sizeof(size_t), (const char *)local + sizeof(size_t), n - sizeof(size_t));
}
