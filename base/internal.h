/* The ground floor of libdsrt (base/): knows nothing of training. The plumbing every folder uses: the per-thread error, the host log sink,
 * the args-struct size handshake, and small string helpers. Everything here
 * is private to libdsrt.so (hidden visibility, see CMakeLists.txt). */
#ifndef DSRT_INTERNAL_H
#define DSRT_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "dsrt.h"

#if defined(__GNUC__)
#define DSRT_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define DSRT_PRINTF(fmt, args)
#endif

/* Return the status of `expr` from the enclosing function unless it is OK
 * (the message is already set by whoever failed). */
#define DSRT_TRY(expr)                                                                             \
    do {                                                                                           \
        dsrt_status dsrt_try_st_ = (expr);                                                         \
        if (dsrt_try_st_ != DSRT_STATUS_OK)                                                        \
            return dsrt_try_st_;                                                                   \
    } while (0)

/* ---- errors: one message per thread, read back with api->last_error() */
dsrt_status dsrt_error_set(dsrt_status status, const char *fmt, ...) DSRT_PRINTF(2, 3);
void dsrt_error_clear(void);
dsrt_status dsrt_error_status(void);
const char *dsrt_error_message(void);

/* ---- logging through the host's callback */
void dsrt_log_install(dsrt_log_fn fn, void *user_data, dsrt_log_level min_level);
bool dsrt_log_enabled(dsrt_log_level level);
void dsrt_log(dsrt_log_level level, const char *fmt, ...) DSRT_PRINTF(2, 3);

/* ---- args structs: see the size handshake in dsrt.h.
 * dsrt_args_load copies the caller's struct into `local` (library-sized,
 * zero-filled where the caller's header is older) and checks the bounds;
 * dsrt_args_store copies the outputs back without writing past either size. */
dsrt_status dsrt_args_load(const void *caller, size_t lib_size, size_t min_size,
                           void *local, const char *what);
void dsrt_args_store(void *caller, const void *local, size_t lib_size);

/* ---- growable string (the JSON writer and messages build on it) */
typedef struct dsrt_buf {
    char *data;
    size_t len, cap;
    bool oom; /* sticky: once an append failed, everything after is dropped */
} dsrt_buf;

void dsrt_buf_free(dsrt_buf *b);
void dsrt_buf_append(dsrt_buf *b, const char *s, size_t n);
void dsrt_buf_puts(dsrt_buf *b, const char *s);
void dsrt_buf_printf(dsrt_buf *b, const char *fmt, ...) DSRT_PRINTF(2, 3);
void dsrt_buf_vprintf(dsrt_buf *b, const char *fmt, va_list ap);
/* Take ownership of the data (NUL-terminated; "" when empty); b is reset. NULL on OOM. */
char *dsrt_buf_take(dsrt_buf *b);

char *dsrt_strdup(const char *s);
/* A whole file as NUL-terminated text (*text: free()). Errors name the file
 * and call it a `what` ("config file", "model config"); more than max_bytes
 * is refused. */
dsrt_status dsrt_read_text_file(const char *path, const char *what, size_t max_bytes, char **text,
                                size_t *len);
/* Writes a whole file atomically: a temporary beside it, fsync, rename,
 * then the folder's fsync. Errors name the file and call it a `what`. */
dsrt_status dsrt_write_file_atomic(const char *path, const void *data, size_t len, const char *what);
/* Shortest decimal text that reads back as exactly `d` (like Python's repr). */
void dsrt_format_double(char out[32], double d);

/* ---- the monotonic clock, in seconds (timeouts, step timing) */
static inline double dsrt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif /* DSRT_INTERNAL_H */
