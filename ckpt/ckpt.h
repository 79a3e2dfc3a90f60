/* Checkpoint storage in HDF5 (docs/checkpoint-format.md).
 *
 * Writing is done by every rank in parallel, nothing is gathered:
 *   - each rank writes its own ZeRO pieces (fp32 master weights and the Adam
 *     moments of the parameter ranges it owns) to a rank file with
 *     ckpt_write_rank, as 1-D float32 datasets /pieces/<k>/{master,exp_avg,
 *     exp_avg_sq};
 *   - rank 0 also writes the main file with ckpt_write_main: for every
 *     parameter a VIRTUAL dataset of its full shape per kind (/master/<name>,
 *     /exp_avg/<name>, /exp_avg_sq/<name>) whose parts map onto the rank
 *     files' pieces by RELATIVE file name, plus the engine state under
 *     /state/<key>. The main file does not need the rank files to exist yet.
 * Once every rank has returned, the directory holds one checkpoint that any
 * world size reads back as whole tensors (ckpt_open / ckpt_read_range), and
 * that h5py reads with no dsrt code.
 *
 * Integrity: every dataset is chunked with the Fletcher32 filter and the files
 * use the HDF5 1.10 format (checksummed metadata); each file is fsync()ed
 * with its directory before the write returns. A read that would touch a
 * missing, truncated or foreign source file, or a chunk whose checksum does
 * not match, fails with DSRT_STATUS_IO_ERROR naming the file and the dataset
 * (HDF5 itself would silently fill a missing source file's part).
 *
 * Errors follow the library's convention: a dsrt_status, with the message in
 * dsrt_error_message(). Nothing is printed: HDF5's automatic error printing
 * is switched off inside every call and the host's setting put back before
 * returning. The functions are not meant to be called concurrently from
 * several threads unless HDF5 is a thread-safe build. */
#ifndef DSRT_CKPT_H
#define DSRT_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsrt.h"

#define CKPT_MAX_DIMS 8
#define CKPT_FORMAT_VERSION 1
/* The names inside <save_dir>/<tag>/ (docs/checkpoint-format.md). */
#define CKPT_MAIN_FILE_NAME "checkpoint.h5"
#define CKPT_RANK_FILE_FORMAT "zero_rank_%05d.h5"

/* fsync a directory (its entries: a rename, a new file) onto the disk; a file
 * system that cannot sync directories (EINVAL, EROFS) has nothing to wait for. */
dsrt_status ckpt_sync_dir(const char *path);

/* ---- whole-file checksums (seal.c): no file reaches HDF5 unverified */
#define CKPT_SEAL_SUFFIX ".crc32c"
/* CRC-32C of n bytes, continuing from crc (0 to start). */
uint32_t ckpt_crc32c(uint32_t crc, const void *data, size_t n);
/* Writes "<path>.crc32c" (the file's CRC-32C and size), fsynced. */
dsrt_status ckpt_seal(const char *path);
/* Checks path against its "<path>.crc32c": a corrupt, truncated or extended
 * file is an IO error naming it. No sidecar: OK with *sealed false (a
 * checkpoint from before seals; the caller decides). */
dsrt_status ckpt_verify(const char *path, bool *sealed);

/* One contiguous range of one parameter owned by the writing rank: elements
 * [offset_in_param, offset_in_param + n) of the parameter flattened row-major.
 * n > 0; the three arrays hold n floats each (host memory). */
typedef struct ckpt_piece {
    const char *name; /* the parameter's name, kept for inspection */
    size_t offset_in_param, n;
    const float *master, *exp_avg, *exp_avg_sq;
} ckpt_piece;

/* One parameter, in registration order: 1 <= ndim <= CKPT_MAX_DIMS, every
 * extent > 0. Names are HDF5 link names: any text without '/' (dots are
 * fine), not "." or "..", no whitespace. */
typedef struct ckpt_tensor {
    const char *name;
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
} ckpt_tensor;

/* Where a piece lives: piece `piece_index` of the rank file `file` holds
 * elements [offset_in_param, offset_in_param + n) of tensor `tensor` (an index
 * into ckpt_write_main's tensors). `file` is a plain file name in the main
 * file's directory ("zero_rank_00001.h5"): no '/', no '%'. The sources of a
 * tensor must cover it exactly once. */
typedef struct ckpt_source {
    const char *file;
    size_t piece_index;
    size_t tensor;
    size_t offset_in_param, n;
} ckpt_source;

enum { CKPT_NONE = 0, CKPT_I64 = 1, CKPT_F64 = 2, CKPT_STR = 3 };

/* One engine-state value, stored as /state/<key>. A '/' in the key makes
 * groups ("loss_scaler/cur_scale"); no empty component, no leading or trailing
 * '/', no "." or ".." component, and no key may be a group of another. f64
 * values round-trip bit for bit (NaN payloads, infinities, denormals, -0). */
typedef struct ckpt_kv {
    const char *key;
    int type; /* CKPT_I64, CKPT_F64 or CKPT_STR */
    int64_t i;
    double f;
    const char *s; /* NUL-terminated, any length */
} ckpt_kv;

/* "zero_rank_00012.h5" for rank 12 (buffer of 32 bytes). */
void ckpt_rank_file_name(char out[32], int rank);

/* Writes (replacing) the rank file `path`: n pieces (n may be 0 for a rank
 * that owns only padding). On failure the partial file is removed. */
dsrt_status ckpt_write_rank(const char *path, int rank, int world, const ckpt_piece *pieces,
                            size_t n);

/* Writes (replacing) the main file `path` (the directory's checkpoint.h5). */
dsrt_status ckpt_write_main(const char *path, const ckpt_tensor *tensors, size_t n_tensors,
                            const ckpt_source *sources, size_t n_sources, const ckpt_kv *state,
                            size_t n_state);

typedef struct ckpt_reader ckpt_reader;

/* Opens a main file for reading; rank files are opened (and checked) when a
 * read needs them. *out is NULL on failure. */
dsrt_status ckpt_open(const char *main_path, ckpt_reader **out);
void ckpt_close(ckpt_reader *r); /* NULL is fine */

/* The tensors in registration order: count, then the i-th name (malloc'd). */
dsrt_status ckpt_tensor_count(ckpt_reader *r, size_t *count);
dsrt_status ckpt_tensor_name(ckpt_reader *r, size_t i, char **name);

/* Shape of a tensor (from /master/<name>); INVALID_ARGUMENT when absent. */
dsrt_status ckpt_tensor_info(ckpt_reader *r, const char *name, int *ndim,
                             int64_t shape[CKPT_MAX_DIMS]);

/* Elements [offset, offset + n) of the flattened (row-major) tensor `name` of
 * `kind` ("master", "exp_avg" or "exp_avg_sq") into dst[0..n). */
dsrt_status ckpt_read_range(ckpt_reader *r, const char *kind, const char *name, size_t offset,
                            size_t n, float *dst);

/* State values: INVALID_ARGUMENT when the key is absent or holds another
 * type. ckpt_read_str's *out is malloc'd and NUL-terminated. */
dsrt_status ckpt_read_i64(ckpt_reader *r, const char *key, int64_t *out);
dsrt_status ckpt_read_f64(ckpt_reader *r, const char *key, double *out);
dsrt_status ckpt_read_str(ckpt_reader *r, const char *key, char **out);
/* The type stored under a key: CKPT_I64, CKPT_F64, CKPT_STR, or CKPT_NONE
 * when the key is absent (for optional keys). */
dsrt_status ckpt_state_type(ckpt_reader *r, const char *key, int *type);

#endif /* DSRT_CKPT_H */
