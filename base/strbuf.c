/* A growable byte buffer with a sticky out-of-memory flag, so that callers
 * can build a whole text and check for failure once at the end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "base/internal.h"

void dsrt_buf_free(dsrt_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static bool buf_reserve(dsrt_buf *b, size_t extra)
{
    if (b->oom)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > ((size_t)-1) / 2) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void dsrt_buf_append(dsrt_buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void dsrt_buf_puts(dsrt_buf *b, const char *s) { dsrt_buf_append(b, s, strlen(s)); }

void dsrt_buf_vprintf(dsrt_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || !buf_reserve(b, (size_t)n))
        return;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void dsrt_buf_printf(dsrt_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dsrt_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

char *dsrt_buf_take(dsrt_buf *b)
{
    if (b->oom) {
        dsrt_buf_free(b);
        return NULL;
    }
    char *p = b->data ? b->data : dsrt_strdup("");
    memset(b, 0, sizeof *b);
    return p;
}

char *dsrt_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void dsrt_format_double(char out[32], double d)
{
    if (isnan(d)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(d)) {
        strcpy(out, d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    /* the fewest significant digits that read back exactly, laid out as
     * Python's repr does: positional for exponents -4..15, else scientific */
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(out, 32, "%.*e", prec - 1, d);
        if (strtod(out, NULL) == d)
            break;
    }
    int exp10 = d == 0 ? 0 : (int)floor(log10(fabs(d)));
    snprintf(out, 32, "%.*e", prec - 1, d);
    const char *e = strchr(out, 'e');
    if (e)
        exp10 = atoi(e + 1);
    if (exp10 >= -4 && exp10 < 16)
        snprintf(out, 32, "%.*f", prec - 1 - exp10 > 0 ? prec - 1 - exp10 : 0, d);
    else
        snprintf(out, 32, "%.*g", prec, d);
    /* keep it a float in JSON terms, as Python prints 1.0 rather than 1 */
    if (!strpbrk(out, ".eEn"))
        strcat(out, ".0");
}

dsrt_status dsrt_read_text_file(const char *path, const char *what, size_t max_bytes, char **text,
                                size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "error: %s: cannot open the %s: %s", path, what,
                              strerror(errno));
    struct stat stbuf;
    if (fstat(fileno(f), &stbuf) == 0 && S_ISDIR(stbuf.st_mode)) {
        fclose(f);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "error: %s: is a directory, not a %s", path,
                              what);
    }
    dsrt_buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > max_bytes) {
            fclose(f);
            dsrt_buf_free(&b);
            return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG,
                                  "error: %s: larger than %zu MiB; is this really a %s?", path,
                                  max_bytes >> 20, what);
        }
        dsrt_buf_append(&b, chunk, n);
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        dsrt_buf_free(&b);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "error: %s: read failed", path);
    }
    *len = b.len;
    *text = dsrt_buf_take(&b);
    if (!*text)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "error: %s: out of memory reading the file",
                              path);
    return DSRT_STATUS_OK;
}
