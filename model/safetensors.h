/* safetensors files (Hugging Face's weight format): an 8-byte little-endian
 * header length N, N bytes of JSON header {"name": {"dtype": "F32", "shape":
 * [..], "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v"}}, then
 * the raw little-endian tensor bytes, offsets relative to the end of the
 * header.
 *
 * Reading maps the file and validates everything before any tensor is used:
 * the header length against the file, the header as one JSON object, each
 * tensor's dtype, shape (non-negative, product x element size = its byte
 * range), and that the byte ranges are in bounds, do not overlap and leave no
 * hole in the data section (as the format's reference reader requires).
 * Every refusal names the file and the tensor or key. Writing is atomic (a
 * temporary file, fsync, rename), tensors in the given order, the header
 * padded with spaces to a multiple of 8 bytes. */
#ifndef DSRT_MODEL_SAFETENSORS_H
#define DSRT_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dsrt.h"

typedef enum st_dtype {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_N_DTYPES
} st_dtype;

enum { ST_MAX_DIMS = 8 };

typedef struct st_tensor {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;  /* reading: into the mapping; writing: the caller's bytes */
    size_t nbytes;
} st_tensor;

typedef struct st_file {
    char *path;
    void *map;
    size_t size;
    st_tensor *tensors;
    size_t n;
    char **meta;       /* __metadata__ as key, value, key, value, ... */
    size_t n_meta;
    void *doc;         /* the parsed header (owns the names) */
} st_file;

const char *st_dtype_name(st_dtype dt);
size_t st_dtype_size(st_dtype dt);

/* Maps and validates `path`. */
dsrt_status st_open(const char *path, st_file *out);
void st_close(st_file *f);
/* The tensor named `name`, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);
/* A tensor's elements as fp32 (F32, F16, BF16, F64 rounded to nearest);
 * DSRT_STATUS_UNSUPPORTED for integer dtypes. dst holds numel floats. */
dsrt_status st_to_f32(const st_tensor *t, float *dst);
/* Elements [first, first + n) only. */
dsrt_status st_to_f32_range(const st_tensor *t, size_t first, size_t n, float *dst);

/* Writes n tensors (and n_meta key/value string pairs of __metadata__). */
dsrt_status st_write(const char *path, const st_tensor *t, size_t n, const char *const *meta, size_t n_meta);

/* Validates a header buffer held in memory (the whole file's bytes): what
 * st_open checks, for fuzzing without files. */
dsrt_status st_check_bytes(const void *bytes, size_t size, const char *what);

#endif
