/* safetensors reader and writer (safetensors.h). */
#define _GNU_SOURCE
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/internal.h"
#include "base/json.h"
#include "kernels/common/dtype.h"

/* the format's reference reader refuses headers above 100 MB */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

static const struct {
    const char *name;
    size_t size;
} k_dtypes[ST_N_DTYPES] = {
    [ST_F64] = {"F64", 8}, [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4}, [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1},   [ST_BOOL] = {"BOOL", 1},
};

const char *st_dtype_name(st_dtype dt) { return (unsigned)dt < ST_N_DTYPES ? k_dtypes[dt].name : "?"; }
size_t st_dtype_size(st_dtype dt) { return (unsigned)dt < ST_N_DTYPES ? k_dtypes[dt].size : 0; }

static int dtype_of(const char *s)
{
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (!strcmp(s, k_dtypes[i].name))
            return i;
    return -1;
}

static dsrt_status bad(const char *what, const char *name, const char *fmt, ...) DSRT_PRINTF(3, 4);
static dsrt_status bad(const char *what, const char *name, const char *fmt, ...)
{
    char m[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s: %s%s%s%s", what, name ? "tensor \"" : "",
                          name ? name : "", name ? "\": " : "", m);
}

typedef struct span {
    uint64_t b, e;
    size_t i;
} span;

static int by_begin(const void *a, const void *b)
{
    uint64_t x = ((const span *)a)->b, y = ((const span *)b)->b;
    return x < y ? -1 : x > y;
}

/* The JSON reader also takes hjson (the config files' superset): a string
 * without quotes is not JSON, so a header holding one is refused. (hjson's
 * comments and trailing commas pass unnoticed: harmless here.) */
static bool quoteless(const json_value *v)
{
    if (v->type == JSON_STRING)
        return v->u.str.quoteless;
    if (v->type == JSON_ARRAY)
        for (size_t i = 0; i < v->u.arr.count; i++)
            if (quoteless(v->u.arr.items[i]))
                return true;
    if (v->type == JSON_OBJECT)
        for (size_t i = 0; i < v->u.obj.count; i++)
            if (quoteless(v->u.obj.members[i].value))
                return true;
    return false;
}

static void free_parsed(st_file *f)
{
    free(f->tensors);
    free(f->meta);
    json_doc_free(f->doc);
    f->tensors = NULL, f->meta = NULL, f->doc = NULL, f->n = f->n_meta = 0;
}

/* Parses and validates the file's bytes into f->tensors (data pointing into bytes). */
static dsrt_status parse(const unsigned char *bytes, size_t size, const char *what, st_file *f)
{
    if (size < 8)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "%s: %zu bytes: not a safetensors file (it starts with an 8-byte header length)",
                              what, size);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | bytes[i];
    if (hl > ST_MAX_HEADER || hl > size - 8)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "%s: the header length %llu exceeds the file (%zu bytes) or 100 MB: truncated or "
                              "not a safetensors file",
                              what, (unsigned long long)hl, size);
    json_error jerr;
    json_doc *doc = json_parse((const char *)bytes + 8, (size_t)hl, &jerr);
    if (!doc)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s: the header is not JSON (line %d: %s)", what,
                              jerr.line, jerr.msg);
    f->doc = doc;
    const json_value *root = json_doc_root(doc);
    if (root->type != JSON_OBJECT || quoteless(root)) {
        const char *kind = root->type != JSON_OBJECT ? json_type_name(root->type) : "";
        free_parsed(f);
        if (*kind)
            return bad(what, NULL, "the header is a JSON %s, not an object", kind);
        return bad(what, NULL, "the header has an unquoted string: it must be JSON");
    }
    size_t n = root->u.obj.count;
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    span *sp = calloc(n ? n : 1, sizeof *sp);
    if (!f->tensors || !sp) {
        free(sp);
        free_parsed(f);
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "%s: header of %zu entries", what, n);
    }
    uint64_t data_size = size - 8 - hl;
    dsrt_status st = DSRT_STATUS_OK;
    size_t nt = 0;
    for (size_t i = 0; i < n && !st; i++) {
        const json_member *m = &root->u.obj.members[i];
        const json_value *v = m->value;
        /* (a duplicate name is refused by the JSON reader, naming it) */
        if (!strcmp(m->key, "__metadata__")) {
            if (v->type != JSON_OBJECT) {
                st = bad(what, NULL, "__metadata__ must be an object of strings%s", "");
                break;
            }
            f->meta = calloc(2 * v->u.obj.count + 1, sizeof *f->meta);
            if (!f->meta) {
                st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "%s", what);
                break;
            }
            for (size_t k = 0; k < v->u.obj.count; k++) {
                const json_member *mm = &v->u.obj.members[k];
                if (mm->value->type != JSON_STRING) {
                    st = bad(what, NULL, "__metadata__.%s must be a string", mm->key);
                    break;
                }
                f->meta[2 * k] = (char *)mm->key;
                f->meta[2 * k + 1] = (char *)mm->value->u.str.s;
            }
            f->n_meta = v->u.obj.count;
            continue;
        }
        if (v->type != JSON_OBJECT) {
            st = bad(what, m->key, "must be an object {\"dtype\", \"shape\", \"data_offsets\"}%s", "");
            break;
        }
        st_tensor *t = &f->tensors[nt];
        t->name = m->key;
        const json_value *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
                         *off = json_object_get(v, "data_offsets");
        int d = dt && dt->type == JSON_STRING ? dtype_of(dt->u.str.s) : -1;
        if (d < 0) {
            st = bad(what, m->key, "dtype %s is not one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL",
                     dt && dt->type == JSON_STRING ? dt->u.str.s : "(missing)");
            break;
        }
        t->dtype = (st_dtype)d;
        if (!sh || sh->type != JSON_ARRAY || sh->u.arr.count > ST_MAX_DIMS) {
            st = bad(what, m->key, "shape must be a list of at most 8 sizes%s", "");
            break;
        }
        t->ndim = (int)sh->u.arr.count;
        uint64_t numel = 1;
        for (int k = 0; k < t->ndim && !st; k++) {
            const json_value *x = sh->u.arr.items[k];
            if (x->type != JSON_NUMBER || x->u.num.kind != JSON_NUM_INT || x->u.num.i < 0) {
                st = bad(what, m->key, "shape[%s] must be an integer >= 0", x->type == JSON_NUMBER ? x->u.num.text : "?");
                break;
            }
            t->shape[k] = x->u.num.i;
            if (t->shape[k] && numel > UINT64_MAX / 16 / (uint64_t)t->shape[k])
                st = bad(what, m->key, "the shape's element count overflows%s", "");
            numel *= (uint64_t)t->shape[k];
        }
        if (st)
            break;
        if (!off || off->type != JSON_ARRAY || off->u.arr.count != 2 ||
            off->u.arr.items[0]->type != JSON_NUMBER || off->u.arr.items[1]->type != JSON_NUMBER ||
            off->u.arr.items[0]->u.num.kind != JSON_NUM_INT || off->u.arr.items[1]->u.num.kind != JSON_NUM_INT ||
            off->u.arr.items[0]->u.num.i < 0 || off->u.arr.items[1]->u.num.i < off->u.arr.items[0]->u.num.i) {
            st = bad(what, m->key, "data_offsets must be [begin, end] with 0 <= begin <= end%s", "");
            break;
        }
        uint64_t b = (uint64_t)off->u.arr.items[0]->u.num.i, e = (uint64_t)off->u.arr.items[1]->u.num.i;
        if (e > data_size) {
            char det[192];
            snprintf(det, sizeof det, "[%llu, %llu] past the data section's %llu bytes (truncated file?)",
                     (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_size);
            st = bad(what, m->key, "data_offsets %s", det);
            break;
        }
        if (e - b != numel * st_dtype_size(t->dtype)) {
            char det[256];
            snprintf(det, sizeof det, "holds %llu bytes, but its shape and %s need %llu", (unsigned long long)(e - b),
                     st_dtype_name(t->dtype), (unsigned long long)(numel * st_dtype_size(t->dtype)));
            st = bad(what, m->key, "%s", det);
            break;
        }
        t->data = bytes + 8 + hl + b;
        t->nbytes = (size_t)(e - b);
        sp[nt] = (span){b, e, nt};
        nt++;
    }
    if (!st) { /* the ranges tile the data section: no overlap, no hole */
        qsort(sp, nt, sizeof *sp, by_begin);
        uint64_t at = 0;
        for (size_t i = 0; i < nt && !st; i++) {
            if (sp[i].b != at) {
                char det[256];
                snprintf(det, sizeof det, "starts at byte %llu where %llu was expected (%s)",
                         (unsigned long long)sp[i].b, (unsigned long long)at,
                         sp[i].b < at ? "it overlaps the tensor before it" : "a hole in the data");
                st = bad(what, f->tensors[sp[i].i].name, "%s", det);
            }
            at = sp[i].e;
        }
        if (!st && at != data_size) {
            char det[192];
            snprintf(det, sizeof det, "the tensors cover %llu of the data section's %llu bytes",
                     (unsigned long long)at, (unsigned long long)data_size);
            st = bad(what, NULL, "%s", det);
        }
    }
    free(sp);
    if (st) {
        free_parsed(f);
        return st;
    }
    f->n = nt;
    return DSRT_STATUS_OK;
}

dsrt_status st_check_bytes(const void *bytes, size_t size, const char *what)
{
    st_file f = {0};
    DSRT_TRY(parse(bytes, size, what, &f));
    free_parsed(&f);
    return DSRT_STATUS_OK;
}

dsrt_status st_open(const char *path, st_file *out)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (size && map == MAP_FAILED)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: cannot map it: %s", path, strerror(errno));
    out->map = map;
    out->size = size;
    out->path = dsrt_strdup(path);
    dsrt_status st = parse(map, size, path, out);
    if (st) {
        st_close(out);
        return st;
    }
    return DSRT_STATUS_OK;
}

void st_close(st_file *f)
{
    free_parsed(f);
    if (f->map && f->size)
        munmap(f->map, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name))
            return &f->tensors[i];
    return NULL;
}

dsrt_status st_to_f32(const st_tensor *t, float *dst)
{
    size_t esz = st_dtype_size(t->dtype);
    return st_to_f32_range(t, 0, esz ? t->nbytes / esz : 0, dst);
}

dsrt_status st_to_f32_range(const st_tensor *t, size_t first, size_t n, float *dst)
{
    size_t esz = st_dtype_size(t->dtype);
    if (!esz || first > t->nbytes / esz || n > t->nbytes / esz - first)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_RANGE, "tensor \"%s\": elements [%zu, %zu) of %zu", t->name,
                              first, first + n, esz ? t->nbytes / esz : 0);
    const unsigned char *p = (const unsigned char *)t->data + first * esz;
    switch (t->dtype) {
    case ST_F32:
        memcpy(dst, p, n * 4);
        return DSRT_STATUS_OK;
    case ST_F16:
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            dst[i] = t->dtype == ST_F16 ? dsrt_f16_to_f32(h) : dsrt_bf16_to_f32(h);
        }
        return DSRT_STATUS_OK;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return DSRT_STATUS_OK;
    default:
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "tensor \"%s\": %s is not a floating-point dtype", t->name,
                              st_dtype_name(t->dtype));
    }
}

/* ---------------------------------------------------------------- writing */

static void json_str(dsrt_buf *b, const char *s)
{
    dsrt_buf_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            dsrt_buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            dsrt_buf_printf(b, "\\u%04x", c);
        else
            dsrt_buf_printf(b, "%c", c);
    }
    dsrt_buf_puts(b, "\"");
}

dsrt_status st_write(const char *path, const st_tensor *t, size_t n, const char *const *meta, size_t n_meta)
{
    dsrt_buf h = {0};
    dsrt_buf_puts(&h, "{");
    if (n_meta) {
        dsrt_buf_puts(&h, "\"__metadata__\":{");
        for (size_t k = 0; k < n_meta; k++) {
            if (k)
                dsrt_buf_puts(&h, ",");
            json_str(&h, meta[2 * k]);
            dsrt_buf_puts(&h, ":");
            json_str(&h, meta[2 * k + 1]);
        }
        dsrt_buf_puts(&h, "}");
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int k = 0; k < t[i].ndim; k++)
            numel *= (uint64_t)t[i].shape[k];
        uint64_t nb = numel * st_dtype_size(t[i].dtype);
        if ((unsigned)t[i].dtype >= ST_N_DTYPES || t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS || nb != t[i].nbytes) {
            free(dsrt_buf_take(&h));
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "st_write %s: tensor \"%s\": %zu bytes for %llu elements of %s", path, t[i].name,
                                  t[i].nbytes, (unsigned long long)numel, st_dtype_name(t[i].dtype));
        }
        if (i || n_meta)
            dsrt_buf_puts(&h, ",");
        json_str(&h, t[i].name);
        dsrt_buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t[i].dtype));
        for (int k = 0; k < t[i].ndim; k++)
            dsrt_buf_printf(&h, "%s%lld", k ? "," : "", (long long)t[i].shape[k]);
        dsrt_buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                        (unsigned long long)(off + nb));
        off += nb;
    }
    dsrt_buf_puts(&h, "}");
    char *hdr = dsrt_buf_take(&h);
    if (!hdr)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "st_write %s", path);
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    dsrt_status st = DSRT_STATUS_OK;
    if (!f) {
        free(hdr);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s", tmp, strerror(errno));
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len, 1, 8, f) == 8 && fwrite(hdr, 1, hl, f) == hl;
    for (size_t i = hl; ok && i < padded; i++)
        ok = fputc(' ', f) != EOF;
    for (size_t i = 0; ok && i < n; i++)
        ok = !t[i].nbytes || fwrite(t[i].data, 1, t[i].nbytes, f) == t[i].nbytes;
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) || !ok || rename(tmp, path)) {
        st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: cannot write it: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(hdr);
    return st;
}
