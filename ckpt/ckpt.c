/* Checkpoint storage in HDF5: per-rank piece files, a main file of virtual
 * datasets over them, and a reader that refuses to let HDF5 fill a missing
 * source with fill values (see ckpt.h and docs/checkpoint-format.md).
 *
 * Mapping a flat range onto a tensor. A rank's piece is a flat row-major
 * range [a, a + n) of its parameter; in an N-D tensor that range is not one
 * hyperslab. split_range cuts it, by recursion over the dimensions, into at
 * most 2*ndim - 1 blocks in increasing order (for 2-D: the rest of the first
 * row, whole middle rows, the start of the last row). Each block is one
 * H5Pset_virtual mapping: the N-D block of the virtual dataset from the
 * matching 1-D sub-range of the piece. HDF5 (1.10 and later) accepts
 * selections of different ranks with the same number of elements and pairs
 * them in row-major order, so the piece files stay plain 1-D arrays and the
 * virtual datasets have the tensors' full shapes. Reads of a flat range use
 * the same cut, OR-ed into one file selection (HDF5 walks it row-major,
 * which is flat order).
 *
 * Every HDF5 call sequence runs with HDF5's automatic error printing off
 * (quiet_begin/quiet_end around each public function); the innermost HDF5
 * message is captured right after a failure, before any cleanup call clears
 * the error stack, and goes into our message. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "ckpt/ckpt.h"
#include "base/internal.h"

#if !H5_VERSION_GE(1, 10, 2)
#error "dsrt checkpoints need HDF5 >= 1.10.2 (virtual datasets, H5F_LIBVER_V110)"
#endif

#define CHUNK_ELEMS ((hsize_t)1 << 20) /* 4 MiB of float32 per chunk */
#define MAX_BLOCKS (2 * CKPT_MAX_DIMS - 1)
#define MAIN_FORMAT "dsrt.checkpoint.main"
#define RANK_FORMAT "dsrt.checkpoint.rank"
#define CAUSE_LEN 240

static const char *const KINDS[3] = {"master", "exp_avg", "exp_avg_sq"};

/* ------------------------------------------------------------------ HDF5 errors */

typedef struct quiet {
    H5E_auto2_t fn;
    void *data;
    bool saved;
} quiet;

/* Switch HDF5's automatic error printing off, remembering the host's handler.
 * When the handler cannot be read (a host that used the v1 API), nothing is
 * changed. */
static quiet quiet_begin(void)
{
    quiet q = {0};
    if (H5Eget_auto2(H5E_DEFAULT, &q.fn, &q.data) >= 0) {
        q.saved = true;
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    }
    return q;
}

static void quiet_end(quiet q)
{
    if (q.saved)
        H5Eset_auto2(H5E_DEFAULT, q.fn, q.data);
}

static herr_t cause_walk(unsigned n, const H5E_error2_t *e, void *data)
{
    if (n == 0 && e->desc && e->desc[0])
        snprintf((char *)data, CAUSE_LEN, "%s", e->desc);
    return 0;
}

/* The innermost message of the current HDF5 error stack (where the error was
 * detected). Call right after the failing call: the next API call clears it. */
static void save_cause(char cause[CAUSE_LEN])
{
    char found[CAUSE_LEN] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, cause_walk, found);
    if (found[0])
        memcpy(cause, found, CAUSE_LEN);
    else if (!cause[0]) /* a helper's cause stays; the stack is cleared by now */
        snprintf(cause, CAUSE_LEN, "HDF5 reported an error");
}

#define FAIL_IF(cond)                                                                              \
    do {                                                                                           \
        if (cond) {                                                                                \
            save_cause(cause);                                                                     \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

static void close_id(hid_t *id, herr_t (*fn)(hid_t))
{
    if (*id >= 0)
        fn(*id);
    *id = H5I_INVALID_HID;
}

/* ------------------------------------------------------------------ small helpers */

static char *str_printf(const char *fmt, ...) DSRT_PRINTF(1, 2);
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static dsrt_status oom(const char *what)
{
    return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "checkpoint: out of memory (%s)", what);
}

/* A tensor name is one HDF5 link name we can also print and list: not empty,
 * no '/', not "." or "..", no whitespace or control character. */
static bool valid_name(const char *s)
{
    if (!s || !s[0] || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p == '/' || *p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

/* A state key: valid names joined by single '/'. */
static bool valid_key(const char *key)
{
    if (!key || !key[0])
        return false;
    const char *p = key;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f)
                return false;
        if (!slash)
            return true;
        p = slash + 1;
    }
}

/* Whether the absolute path names an object: 1 yes, 0 no, -1 an HDF5 error
 * (a corrupt group; the cause is saved). Walks it link by link because
 * H5Lexists fails, rather than answering 0, under a missing group. A path
 * that goes on below a dataset does not exist. */
static int path_exists(hid_t loc, const char *path, char cause[CAUSE_LEN])
{
    size_t len = strlen(path);
    char *buf = malloc(len + 1);
    if (!buf) {
        snprintf(cause, CAUSE_LEN, "out of memory");
        return -1;
    }
    size_t parent = 0;
    int rc = 1;
    for (size_t i = 1; i <= len && rc == 1; i++) {
        if (i != len && path[i] != '/')
            continue;
        memcpy(buf, path, i);
        buf[i] = '\0';
        htri_t e = H5Lexists(loc, buf, H5P_DEFAULT);
        if (e == 0) {
            rc = 0;
        } else if (e < 0) {
            char why[CAUSE_LEN] = "";
            save_cause(why);
            rc = -1;
            if (parent) { /* below a dataset rather than a corrupt group? */
                buf[parent] = '\0';
                hid_t o = H5Oopen(loc, buf, H5P_DEFAULT);
                if (o >= 0 && H5Iget_type(o) != H5I_GROUP)
                    rc = 0;
                close_id(&o, H5Oclose);
            }
            if (rc < 0)
                memcpy(cause, why, CAUSE_LEN);
        }
        parent = i;
    }
    free(buf);
    return rc;
}

/* The directory part of a path ("." when there is none). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return dsrt_strdup(".");
    if (slash == path)
        return dsrt_strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

static dsrt_status fsync_path(const char *path, bool is_dir)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | (is_dir ? O_DIRECTORY : 0));
    if (fd < 0)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: cannot open %s to sync it: %s", path,
                              is_dir ? "the directory" : "the file", strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    /* some file systems do not sync directories (EINVAL): nothing to wait for */
    if (rc != 0 && !(is_dir && (err == EINVAL || err == EROFS)))
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: fsync failed: %s", path, strerror(err));
    return DSRT_STATUS_OK;
}

dsrt_status ckpt_sync_dir(const char *path) { return fsync_path(path, true); }

/* The file, then its directory entry, on disk. */
static dsrt_status sync_file_and_dir(const char *path)
{
    DSRT_TRY(fsync_path(path, false));
    char *dir = dir_of(path);
    if (!dir)
        return oom("directory name");
    dsrt_status st = fsync_path(dir, true);
    free(dir);
    return st;
}

/* ------------------------------------------------------------------ flat ranges */

typedef struct block {
    hsize_t start[CKPT_MAX_DIMS], count[CKPT_MAX_DIMS];
    hsize_t flat0, n; /* first flat index and number of elements */
} block;

static void split_rec(int ndim, const hsize_t *shape, int d, hsize_t *idx, hsize_t a, hsize_t n,
                      hsize_t base, block *out, size_t *nb)
{
    if (n == 0)
        return;
    hsize_t inner = 1;
    for (int i = d + 1; i < ndim; i++)
        inner *= shape[i];
    hsize_t r0 = a / inner, o0 = a % inner, r1 = (a + n) / inner, o1 = (a + n) % inner;
    if (r0 == r1) { /* inside one row of dimension d */
        idx[d] = r0;
        split_rec(ndim, shape, d + 1, idx, o0, n, base + r0 * inner, out, nb);
        return;
    }
    if (o0) { /* the rest of the first row */
        idx[d] = r0;
        split_rec(ndim, shape, d + 1, idx, o0, inner - o0, base + r0 * inner, out, nb);
        r0++;
    }
    if (r1 > r0) { /* whole rows */
        block *b = &out[(*nb)++];
        for (int i = 0; i < ndim; i++) {
            b->start[i] = i < d ? idx[i] : i == d ? r0 : 0;
            b->count[i] = i < d ? 1 : i == d ? r1 - r0 : shape[i];
        }
        b->flat0 = base + r0 * inner;
        b->n = (r1 - r0) * inner;
    }
    if (o1) { /* the start of the last row */
        idx[d] = r1;
        split_rec(ndim, shape, d + 1, idx, 0, o1, base + r1 * inner, out, nb);
    }
}

/* Cut the flat range [a, a + n) of a row-major tensor into hyperslab blocks,
 * in increasing order: at most MAX_BLOCKS. */
static size_t split_range(int ndim, const hsize_t *shape, hsize_t a, hsize_t n,
                          block out[MAX_BLOCKS])
{
    hsize_t idx[CKPT_MAX_DIMS] = {0};
    size_t nb = 0;
    split_rec(ndim, shape, 0, idx, a, n, 0, out, &nb);
    return nb;
}

static hsize_t ravel(int ndim, const hsize_t *shape, const hsize_t *index)
{
    hsize_t f = 0;
    for (int i = 0; i < ndim; i++)
        f = f * shape[i] + index[i];
    return f;
}

/* ------------------------------------------------------------------ writing */

static hid_t create_fapl(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0)
        return fapl;
    /* The 1.10 format: checksummed superblock, object headers and chunk
     * indexes. SEMI: H5Fclose fails rather than leaving the file open. */
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI) < 0) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

/* The helpers below save the HDF5 cause into `cause` where they fail, before
 * their own cleanup calls clear the error stack. */

/* Groups that list their members in creation (registration) order, which
 * h5py follows too. */
static hid_t create_ordered_group(hid_t loc, const char *name, char cause[CAUSE_LEN])
{
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t g = H5I_INVALID_HID;
    if (gcpl >= 0 &&
        H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) >= 0)
        g = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (g < 0)
        save_cause(cause);
    close_id(&gcpl, H5Pclose);
    return g;
}

/* A fixed-length UTF-8 string type of max(len, 1) bytes, NUL-padded (h5py
 * reads it as bytes; the padding is stripped). */
static hid_t string_type(size_t len, char cause[CAUSE_LEN])
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, len ? len : 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLPAD) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        save_cause(cause);
        close_id(&t, H5Tclose);
    }
    return t;
}

static herr_t write_attr(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *value,
                         char cause[CAUSE_LEN])
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = space >= 0 ? H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT)
                         : H5I_INVALID_HID;
    herr_t rc = a >= 0 ? H5Awrite(a, mtype, value) : -1;
    if (rc < 0)
        save_cause(cause);
    close_id(&space, H5Sclose);
    if (a >= 0 && H5Aclose(a) < 0) {
        save_cause(cause);
        rc = -1;
    }
    return rc;
}

static herr_t attr_i64(hid_t loc, const char *name, int64_t v, char cause[CAUSE_LEN])
{
    return write_attr(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, cause);
}

static herr_t attr_str(hid_t loc, const char *name, const char *value, char cause[CAUSE_LEN])
{
    size_t len = strlen(value);
    hid_t t = string_type(len, cause);
    if (t < 0)
        return -1;
    herr_t rc = write_attr(loc, name, t, t, len ? value : "", cause);
    H5Tclose(t);
    return rc;
}

/* A 1-D dataset of n elements, chunked (at most CHUNK_ELEMS per chunk) with
 * the Fletcher32 filter. On failure the cause is saved. */
static herr_t write_dataset(hid_t loc, const char *name, hid_t lcpl, hid_t ftype, hid_t mtype,
                            hsize_t n, const void *data, char cause[CAUSE_LEN])
{
    herr_t rc = -1;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    /* equal chunks of at most CHUNK_ELEMS: HDF5 stores a filtered edge chunk
     * at full size, so min(n, CHUNK_ELEMS) would waste up to a chunk per
     * dataset */
    hsize_t n_chunks = n ? (n + CHUNK_ELEMS - 1) / CHUNK_ELEMS : 1;
    hsize_t chunk = n ? (n + n_chunks - 1) / n_chunks : 1;
    space = H5Screate_simple(1, &n, NULL);
    FAIL_IF(space < 0);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    FAIL_IF(dcpl < 0);
    FAIL_IF(H5Pset_chunk(dcpl, 1, &chunk) < 0);
    FAIL_IF(H5Pset_fletcher32(dcpl) < 0);
    dset = H5Dcreate2(loc, name, ftype, space, lcpl, dcpl, H5P_DEFAULT);
    FAIL_IF(dset < 0);
    FAIL_IF(H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0);
    herr_t c = H5Dclose(dset);
    dset = H5I_INVALID_HID;
    FAIL_IF(c < 0);
    rc = 0;
done:
    close_id(&dset, H5Dclose);
    close_id(&dcpl, H5Pclose);
    close_id(&space, H5Sclose);
    return rc;
}

/* Close the file (SEMI: fails if anything in it is still open), then sync it.
 * On failure the partial file is removed. */
static dsrt_status finish_file(const char *path, hid_t *fid, dsrt_status st)
{
    if (*fid >= 0) {
        herr_t c = H5Fclose(*fid);
        *fid = H5I_INVALID_HID;
        if (c < 0 && st == DSRT_STATUS_OK) {
            char cause[CAUSE_LEN] = "";
            save_cause(cause);
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: closing the file failed: %s", path,
                                cause);
        }
    }
    if (st == DSRT_STATUS_OK)
        st = sync_file_and_dir(path);
    if (st != DSRT_STATUS_OK)
        unlink(path);
    return st;
}

void ckpt_rank_file_name(char out[32], int rank)
{
    snprintf(out, 32, CKPT_RANK_FILE_FORMAT, rank);
}

static dsrt_status write_rank_impl(const char *path, int rank, int world, const ckpt_piece *pieces,
                                   size_t n)
{
    dsrt_status st = DSRT_STATUS_OK;
    char cause[CAUSE_LEN] = "";
    char gname[32];
    const char *what = "creating the file", *dname = "";
    hid_t fapl = H5I_INVALID_HID, fid = H5I_INVALID_HID, pg = H5I_INVALID_HID,
          g = H5I_INVALID_HID;
    size_t k = n; /* the piece being written, n before and after */

    fapl = create_fapl();
    FAIL_IF(fapl < 0);
    fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    FAIL_IF(fid < 0);
    what = "writing the file attributes";
    FAIL_IF(attr_str(fid, "format", RANK_FORMAT, cause) < 0);
    FAIL_IF(attr_i64(fid, "format_version", CKPT_FORMAT_VERSION, cause) < 0);
    FAIL_IF(attr_i64(fid, "rank", rank, cause) < 0);
    FAIL_IF(attr_i64(fid, "world_size", world, cause) < 0);
    FAIL_IF(attr_i64(fid, "n_pieces", (int64_t)n, cause) < 0);
    what = "creating /pieces";
    pg = create_ordered_group(fid, "pieces", cause);
    FAIL_IF(pg < 0);
    for (k = 0; k < n; k++) {
        const ckpt_piece *p = &pieces[k];
        snprintf(gname, sizeof gname, "%zu", k);
        what = "creating the piece group";
        g = H5Gcreate2(pg, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        FAIL_IF(g < 0);
        FAIL_IF(attr_str(g, "name", p->name, cause) < 0);
        FAIL_IF(attr_i64(g, "offset_in_param", (int64_t)p->offset_in_param, cause) < 0);
        FAIL_IF(attr_i64(g, "n", (int64_t)p->n, cause) < 0);
        const float *data[3] = {p->master, p->exp_avg, p->exp_avg_sq};
        what = "writing the piece";
        for (int kind = 0; kind < 3; kind++) {
            dname = KINDS[kind];
            if (write_dataset(g, dname, H5P_DEFAULT, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                              (hsize_t)p->n, data[kind], cause) < 0)
                goto done;
        }
        dname = "";
        herr_t c = H5Gclose(g);
        g = H5I_INVALID_HID;
        FAIL_IF(c < 0);
    }
    close_id(&pg, H5Gclose);
    close_id(&fapl, H5Pclose);
    return finish_file(path, &fid, DSRT_STATUS_OK);

done:
    if (k < n)
        st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: /pieces/%zu%s%s (%s): %s: %s", path, k,
                            dname[0] ? "/" : "", dname, pieces[k].name, what, cause);
    else
        st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s: %s", path, what, cause);
    close_id(&g, H5Gclose);
    close_id(&pg, H5Gclose);
    close_id(&fapl, H5Pclose);
    if (fid >= 0)
        return finish_file(path, &fid, st);
    return st;
}

dsrt_status ckpt_write_rank(const char *path, int rank, int world, const ckpt_piece *pieces,
                            size_t n)
{
    if (!path || !path[0])
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "ckpt_write_rank: no path");
    if (world < 1 || rank < 0 || rank >= world)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "ckpt_write_rank: %s: rank %d is not in a world of %d", path, rank,
                              world);
    if (n && !pieces)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "ckpt_write_rank: %s: pieces is NULL",
                              path);
    for (size_t k = 0; k < n; k++) {
        const ckpt_piece *p = &pieces[k];
        if (!valid_name(p->name))
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "ckpt_write_rank: %s: piece %zu: bad parameter name \"%s\"",
                                  path, k, p->name ? p->name : "(null)");
        if (p->n == 0 || !p->master || !p->exp_avg || !p->exp_avg_sq)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "ckpt_write_rank: %s: piece %zu (%s): %s", path, k, p->name,
                                  p->n == 0 ? "no elements" : "a data pointer is NULL");
        if (p->offset_in_param > INT64_MAX || p->n > INT64_MAX - p->offset_in_param)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "ckpt_write_rank: %s: piece %zu (%s): range too large", path, k,
                                  p->name);
    }
    quiet q = quiet_begin();
    dsrt_status st = write_rank_impl(path, rank, world, pieces, n);
    quiet_end(q);
    return st;
}

/* ---- the main file */

typedef struct src_ref {
    size_t tensor, offset, index;
} src_ref;

static int src_ref_cmp(const void *a, const void *b)
{
    const src_ref *x = a, *y = b;
    if (x->tensor != y->tensor)
        return x->tensor < y->tensor ? -1 : 1;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return 0;
}

static bool tensor_numel(const ckpt_tensor *t, hsize_t shape[CKPT_MAX_DIMS], hsize_t *numel)
{
    if (t->ndim < 1 || t->ndim > CKPT_MAX_DIMS)
        return false;
    hsize_t nel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] <= 0 || (hsize_t)t->shape[d] > (hsize_t)INT64_MAX / nel)
            return false;
        shape[d] = (hsize_t)t->shape[d];
        nel *= shape[d];
    }
    *numel = nel;
    return true;
}

/* Whether key a is key b or one of its groups ("a" vs "a/b"). */
static bool key_prefix(const char *a, const char *b)
{
    size_t la = strlen(a);
    return !strncmp(a, b, la) && (b[la] == '\0' || b[la] == '/');
}

static dsrt_status validate_main(const char *path, const ckpt_tensor *tensors, size_t n_tensors,
                                 const ckpt_source *sources, size_t n_sources, const ckpt_kv *state,
                                 size_t n_state, src_ref **sorted_out)
{
    *sorted_out = NULL;
    if ((n_tensors && !tensors) || (n_sources && !sources) || (n_state && !state))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "ckpt_write_main: %s: a NULL array with a nonzero count", path);
    for (size_t t = 0; t < n_tensors; t++) {
        hsize_t shape[CKPT_MAX_DIMS], numel;
        if (!valid_name(tensors[t].name))
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "ckpt_write_main: %s: tensor %zu: bad name \"%s\" (no '/', "
                                  "whitespace, \".\" or \"..\")",
                                  path, t, tensors[t].name ? tensors[t].name : "(null)");
        if (!tensor_numel(&tensors[t], shape, &numel))
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "ckpt_write_main: %s: tensor %s: ndim must be 1..%d and every "
                                  "extent positive (ndim %d)",
                                  path, tensors[t].name, CKPT_MAX_DIMS, tensors[t].ndim);
    }
    for (size_t i = 0; i < n_sources; i++) {
        const ckpt_source *s = &sources[i];
        if (!s->file || !s->file[0] || strchr(s->file, '/') || strchr(s->file, '%') ||
            !strcmp(s->file, ".") || !strcmp(s->file, ".."))
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "ckpt_write_main: %s: source %zu: file \"%s\" must be a plain "
                                  "file name in the checkpoint directory (no '/' or '%%')",
                                  path, i, s->file ? s->file : "(null)");
        if (s->tensor >= n_tensors)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "ckpt_write_main: %s: source %zu: tensor index %zu but only %zu "
                                  "tensors",
                                  path, i, s->tensor, n_tensors);
        if (s->n == 0)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "ckpt_write_main: %s: source %zu (%s piece %zu): no elements",
                                  path, i, s->file, s->piece_index);
    }
    for (size_t i = 0; i < n_state; i++) {
        const ckpt_kv *kv = &state[i];
        if (!valid_key(kv->key))
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "ckpt_write_main: %s: state %zu: bad key \"%s\"", path, i,
                                  kv->key ? kv->key : "(null)");
        if (kv->type != CKPT_I64 && kv->type != CKPT_F64 && kv->type != CKPT_STR)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "ckpt_write_main: %s: state %s: unknown type %d", path, kv->key,
                                  kv->type);
        if (kv->type == CKPT_STR && !kv->s)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "ckpt_write_main: %s: state %s: string is NULL", path, kv->key);
        for (size_t j = 0; j < i; j++)
            if (key_prefix(state[j].key, kv->key) || key_prefix(kv->key, state[j].key))
                return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                      "ckpt_write_main: %s: state keys \"%s\" and \"%s\" collide "
                                      "(the same key, or one is a group of the other)",
                                      path, state[j].key, kv->key);
    }

    /* The sources of every tensor must cover it exactly once. */
    src_ref *sorted = malloc((n_sources ? n_sources : 1) * sizeof *sorted);
    if (!sorted)
        return oom("source list");
    for (size_t i = 0; i < n_sources; i++)
        sorted[i] = (src_ref){sources[i].tensor, sources[i].offset_in_param, i};
    qsort(sorted, n_sources, sizeof *sorted, src_ref_cmp);
    size_t i = 0;
    for (size_t t = 0; t < n_tensors; t++) {
        hsize_t shape[CKPT_MAX_DIMS], numel = 0, next = 0;
        tensor_numel(&tensors[t], shape, &numel);
        for (; i < n_sources && sorted[i].tensor == t; i++) {
            const ckpt_source *s = &sources[sorted[i].index];
            if (s->offset_in_param != next || s->n > numel - next) {
                free(sorted);
                if (s->offset_in_param > next)
                    return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                          "ckpt_write_main: %s: tensor %s: no source holds "
                                          "elements [%llu, %zu)",
                                          path, tensors[t].name, (unsigned long long)next,
                                          s->offset_in_param);
                return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                      "ckpt_write_main: %s: tensor %s: %s piece %zu (elements "
                                      "[%zu, +%zu)) overlaps another source or runs past the %llu "
                                      "elements",
                                      path, tensors[t].name, s->file, s->piece_index,
                                      s->offset_in_param, s->n, (unsigned long long)numel);
            }
            next += s->n;
        }
        if (next != numel) {
            free(sorted);
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "ckpt_write_main: %s: tensor %s: no source holds elements "
                                  "[%llu, %llu)",
                                  path, tensors[t].name, (unsigned long long)next,
                                  (unsigned long long)numel);
        }
    }
    *sorted_out = sorted;
    return DSRT_STATUS_OK;
}

/* The virtual dataset /<kind>/<name> over the tensor's sources. */
static herr_t write_virtual(hid_t group, const ckpt_tensor *t, const ckpt_source *sources,
                            const src_ref *refs, size_t n_refs, const char *kind,
                            char cause[CAUSE_LEN])
{
    herr_t rc = -1;
    hid_t vspace = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, src = H5I_INVALID_HID,
          dset = H5I_INVALID_HID;
    hsize_t shape[CKPT_MAX_DIMS], numel;
    block blocks[MAX_BLOCKS];
    float fill = NAN; /* what HDF5 shows for a part it cannot read: never silent zeros */

    tensor_numel(t, shape, &numel);
    vspace = H5Screate_simple(t->ndim, shape, NULL);
    FAIL_IF(vspace < 0);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    FAIL_IF(dcpl < 0);
    FAIL_IF(H5Pset_fill_value(dcpl, H5T_NATIVE_FLOAT, &fill) < 0);
    for (size_t i = 0; i < n_refs; i++) {
        const ckpt_source *s = &sources[refs[i].index];
        char src_name[64];
        snprintf(src_name, sizeof src_name, "/pieces/%zu/%s", s->piece_index, kind);
        hsize_t piece_n = (hsize_t)s->n;
        size_t nb = split_range(t->ndim, shape, (hsize_t)s->offset_in_param, piece_n, blocks);
        for (size_t b = 0; b < nb; b++) {
            hsize_t s_start = blocks[b].flat0 - (hsize_t)s->offset_in_param, s_count = blocks[b].n;
            FAIL_IF(H5Sselect_hyperslab(vspace, H5S_SELECT_SET, blocks[b].start, NULL,
                                        blocks[b].count, NULL) < 0);
            src = H5Screate_simple(1, &piece_n, NULL);
            FAIL_IF(src < 0);
            FAIL_IF(H5Sselect_hyperslab(src, H5S_SELECT_SET, &s_start, NULL, &s_count, NULL) < 0);
            FAIL_IF(H5Pset_virtual(dcpl, vspace, s->file, src_name, src) < 0);
            close_id(&src, H5Sclose);
        }
    }
    FAIL_IF(H5Sselect_all(vspace) < 0);
    dset = H5Dcreate2(group, t->name, H5T_IEEE_F32LE, vspace, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    FAIL_IF(dset < 0);
    herr_t c = H5Dclose(dset);
    dset = H5I_INVALID_HID;
    FAIL_IF(c < 0);
    rc = 0;
done:
    close_id(&dset, H5Dclose);
    close_id(&src, H5Sclose);
    close_id(&dcpl, H5Pclose);
    close_id(&vspace, H5Sclose);
    return rc;
}

static herr_t write_state(hid_t group, hid_t lcpl, const ckpt_kv *kv, char cause[CAUSE_LEN])
{
    if (kv->type == CKPT_I64)
        return write_dataset(group, kv->key, lcpl, H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &kv->i,
                             cause);
    if (kv->type == CKPT_F64)
        return write_dataset(group, kv->key, lcpl, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &kv->f,
                             cause);
    size_t len = strlen(kv->s);
    hid_t t = string_type(len, cause);
    if (t < 0)
        return -1;
    herr_t rc = write_dataset(group, kv->key, lcpl, t, t, 1, len ? kv->s : "", cause);
    H5Tclose(t);
    return rc;
}

static dsrt_status write_main_impl(const char *path, const ckpt_tensor *tensors, size_t n_tensors,
                                   const ckpt_source *sources, const src_ref *sorted,
                                   size_t n_sources, const ckpt_kv *state, size_t n_state)
{
    char cause[CAUSE_LEN] = "";
    const char *what = "creating the file", *item = "";
    const char *kind = "";
    hid_t fapl = H5I_INVALID_HID, fid = H5I_INVALID_HID, lcpl = H5I_INVALID_HID,
          sg = H5I_INVALID_HID;
    hid_t groups[3] = {H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID};

    fapl = create_fapl();
    FAIL_IF(fapl < 0);
    fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    FAIL_IF(fid < 0);
    what = "writing the file attributes";
    FAIL_IF(attr_str(fid, "format", MAIN_FORMAT, cause) < 0);
    FAIL_IF(attr_i64(fid, "format_version", CKPT_FORMAT_VERSION, cause) < 0);
    FAIL_IF(attr_i64(fid, "n_tensors", (int64_t)n_tensors, cause) < 0);
    what = "creating the groups";
    for (int k = 0; k < 3; k++) {
        groups[k] = create_ordered_group(fid, KINDS[k], cause);
        FAIL_IF(groups[k] < 0);
    }
    what = "creating the virtual dataset";
    size_t i = 0;
    for (size_t t = 0; t < n_tensors; t++) {
        size_t first = i;
        while (i < n_sources && sorted[i].tensor == t)
            i++;
        item = tensors[t].name;
        for (int k = 0; k < 3; k++) {
            kind = KINDS[k];
            if (write_virtual(groups[k], &tensors[t], sources, sorted + first, i - first, kind,
                              cause) < 0)
                goto done;
        }
    }
    kind = "";
    what = "writing the state";
    item = "";
    sg = create_ordered_group(fid, "state", cause);
    FAIL_IF(sg < 0);
    lcpl = H5Pcreate(H5P_LINK_CREATE);
    FAIL_IF(lcpl < 0);
    FAIL_IF(H5Pset_create_intermediate_group(lcpl, 1) < 0);
    kind = "state";
    for (size_t s = 0; s < n_state; s++) {
        item = state[s].key;
        if (write_state(sg, lcpl, &state[s], cause) < 0)
            goto done;
    }
    close_id(&lcpl, H5Pclose);
    close_id(&sg, H5Gclose);
    for (int k = 0; k < 3; k++)
        close_id(&groups[k], H5Gclose);
    close_id(&fapl, H5Pclose);
    return finish_file(path, &fid, DSRT_STATUS_OK);

done:;
    dsrt_status st;
    if (item[0])
        st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: /%s/%s: %s: %s", path, kind, item, what,
                            cause);
    else
        st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s: %s", path, what, cause);
    close_id(&lcpl, H5Pclose);
    close_id(&sg, H5Gclose);
    for (int k = 0; k < 3; k++)
        close_id(&groups[k], H5Gclose);
    close_id(&fapl, H5Pclose);
    if (fid >= 0)
        return finish_file(path, &fid, st);
    return st;
}

dsrt_status ckpt_write_main(const char *path, const ckpt_tensor *tensors, size_t n_tensors,
                            const ckpt_source *sources, size_t n_sources, const ckpt_kv *state,
                            size_t n_state)
{
    if (!path || !path[0])
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "ckpt_write_main: no path");
    src_ref *sorted;
    DSRT_TRY(validate_main(path, tensors, n_tensors, sources, n_sources, state, n_state, &sorted));
    /* duplicate tensor names: HDF5 would refuse the second link, say why */
    for (size_t t = 1; t < n_tensors; t++)
        for (size_t u = 0; u < t; u++)
            if (!strcmp(tensors[t].name, tensors[u].name)) {
                free(sorted);
                return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                      "ckpt_write_main: %s: tensor name %s appears twice", path,
                                      tensors[t].name);
            }
    quiet q = quiet_begin();
    dsrt_status st =
        write_main_impl(path, tensors, n_tensors, sources, sorted, n_sources, state, n_state);
    quiet_end(q);
    free(sorted);
    return st;
}

/* ------------------------------------------------------------------ reading */

typedef struct src_file {
    char *path;
    hid_t fid;
    dev_t dev; /* the file it was when opened: a replaced file is opened again */
    ino_t ino;
} src_file;

struct ckpt_reader {
    char *path; /* the main file, as given */
    char *dir;  /* its directory, absolute: relative sources are resolved here */
    hid_t fid;
    src_file *srcs; /* source files opened so far */
    size_t n_srcs, cap_srcs;
};

/* A string attribute of the root group ("" when absent or not a string). */
static char *read_attr_str(hid_t fid, const char *name)
{
    if (H5Aexists(fid, name) <= 0)
        return dsrt_strdup("");
    char *out = NULL;
    hid_t a = H5Aopen(fid, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) == 0) {
        size_t size = H5Tget_size(t);
        out = calloc(size + 1, 1);
        if (out && H5Aread(a, t, out) < 0)
            out[0] = '\0';
    } else {
        out = dsrt_strdup("");
    }
    close_id(&t, H5Tclose);
    close_id(&a, H5Aclose);
    return out;
}

static int64_t read_attr_i64(hid_t fid, const char *name, int64_t absent)
{
    int64_t v = absent;
    if (H5Aexists(fid, name) <= 0)
        return absent;
    hid_t a = H5Aopen(fid, name, H5P_DEFAULT);
    if (a >= 0 && H5Aread(a, H5T_NATIVE_INT64, &v) < 0)
        v = absent;
    close_id(&a, H5Aclose);
    return v;
}

static dsrt_status open_impl(const char *main_path, ckpt_reader **out)
{
    char cause[CAUSE_LEN] = "";
    struct stat sb;
    if (stat(main_path, &sb) != 0)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: cannot open the checkpoint: %s", main_path,
                              strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "%s: is a directory, not a checkpoint main file (%s)", main_path,
                              CKPT_MAIN_FILE_NAME);
    hid_t fid = H5Fopen(main_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fid < 0) {
        save_cause(cause);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "%s: cannot open the checkpoint (not an HDF5 file, truncated or "
                              "corrupt): %s",
                              main_path, cause);
    }
    char *format = read_attr_str(fid, "format");
    int64_t version = read_attr_i64(fid, "format_version", -1);
    dsrt_status st = DSRT_STATUS_OK;
    if (!format)
        st = oom("format");
    else if (strcmp(format, MAIN_FORMAT) != 0)
        st = dsrt_error_set(DSRT_STATUS_IO_ERROR,
                            "%s: not a dsrt checkpoint main file (root attribute format is \"%s\", "
                            "expected \"%s\")",
                            main_path, format, MAIN_FORMAT);
    else if (version < 1 || version > CKPT_FORMAT_VERSION)
        st = dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                            "%s: checkpoint format version %lld; this dsrt reads up to version %d",
                            main_path, (long long)version, CKPT_FORMAT_VERSION);
    else
        for (int k = 0; k < 3 && st == DSRT_STATUS_OK; k++)
            if (H5Lexists(fid, KINDS[k], H5P_DEFAULT) <= 0)
                st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: the group /%s is missing", main_path,
                                    KINDS[k]);
    free(format);
    if (st != DSRT_STATUS_OK) {
        H5Fclose(fid);
        return st;
    }

    ckpt_reader *r = calloc(1, sizeof *r);
    char *dir = dir_of(main_path);
    if (r && dir && dir[0] != '/') {
        char *cwd = getcwd(NULL, 0);
        char *abs = cwd ? str_printf("%s/%s", cwd, dir) : NULL;
        free(cwd);
        free(dir);
        dir = abs;
    }
    if (!r || !dir || !(r->path = dsrt_strdup(main_path))) {
        free(dir);
        free(r);
        H5Fclose(fid);
        return oom("reader");
    }
    r->dir = dir;
    r->fid = fid;
    *out = r;
    return DSRT_STATUS_OK;
}

dsrt_status ckpt_open(const char *main_path, ckpt_reader **out)
{
    if (!out)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "ckpt_open: out is NULL");
    *out = NULL;
    if (!main_path || !main_path[0])
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "ckpt_open: no path");
    quiet q = quiet_begin();
    dsrt_status st = open_impl(main_path, out);
    quiet_end(q);
    return st;
}

void ckpt_close(ckpt_reader *r)
{
    if (!r)
        return;
    quiet q = quiet_begin();
    for (size_t i = 0; i < r->n_srcs; i++) {
        H5Fclose(r->srcs[i].fid);
        free(r->srcs[i].path);
    }
    free(r->srcs);
    if (r->fid >= 0)
        H5Fclose(r->fid);
    quiet_end(q);
    free(r->path);
    free(r->dir);
    free(r);
}

/* ---- sources */

typedef struct vds_ctx {
    ckpt_reader *r;
    const char *vds; /* "/master/<name>" */
} vds_ctx;

/* A source file, opened once per reader. Errors name the file, the source
 * dataset and the virtual dataset that needs it. */
static dsrt_status open_source(const vds_ctx *c, const char *fpath, const char *sdset, hid_t *fid)
{
    ckpt_reader *r = c->r;
    /* stat even when cached: HDF5 opens the source by name for every read
     * through the virtual dataset, and fills silently if the name is gone */
    struct stat sb;
    if (stat(fpath, &sb) != 0)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "%s: %s: cannot open the file: %s (source of %s in %s)", fpath, sdset,
                              strerror(errno), c->vds, r->path);
    for (size_t i = 0; i < r->n_srcs; i++)
        if (!strcmp(r->srcs[i].path, fpath)) {
            if (r->srcs[i].dev == sb.st_dev && r->srcs[i].ino == sb.st_ino) {
                *fid = r->srcs[i].fid;
                return DSRT_STATUS_OK;
            }
            H5Fclose(r->srcs[i].fid); /* replaced since: check the new one */
            free(r->srcs[i].path);
            r->srcs[i] = r->srcs[--r->n_srcs];
            break;
        }
    hid_t f = H5Fopen(fpath, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        char cause[CAUSE_LEN] = "";
        save_cause(cause);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "%s: %s: cannot open the file (truncated or corrupt?): %s (source of "
                              "%s in %s)",
                              fpath, sdset, cause, c->vds, r->path);
    }
    if (r->n_srcs == r->cap_srcs) {
        size_t cap = r->cap_srcs ? 2 * r->cap_srcs : 8;
        src_file *s = realloc(r->srcs, cap * sizeof *s);
        if (!s) {
            H5Fclose(f);
            return oom("source files");
        }
        r->srcs = s;
        r->cap_srcs = cap;
    }
    char *p = dsrt_strdup(fpath);
    if (!p) {
        H5Fclose(f);
        return oom("source files");
    }
    r->srcs[r->n_srcs++] = (src_file){p, f, sb.st_dev, sb.st_ino};
    *fid = f;
    return DSRT_STATUS_OK;
}

/* Mapping i of a virtual dataset's creation plist: its source file (resolved
 * as HDF5 does without HDF5_VDS_PREFIX: relative to the main file's
 * directory; "." is the main file itself), the source dataset, and the
 * selections. */
typedef struct mapping {
    char *file, *dset;
    hid_t vspace, sspace;
} mapping;

static void mapping_free(mapping *m)
{
    free(m->file);
    free(m->dset);
    close_id(&m->vspace, H5Sclose);
    close_id(&m->sspace, H5Sclose);
}

static dsrt_status get_mapping(const vds_ctx *c, hid_t dcpl, size_t i, mapping *m)
{
    *m = (mapping){NULL, NULL, H5I_INVALID_HID, H5I_INVALID_HID};
    char cause[CAUSE_LEN] = "";
    ssize_t fl = H5Pget_virtual_filename(dcpl, i, NULL, 0);
    ssize_t dl = H5Pget_virtual_dsetname(dcpl, i, NULL, 0);
    char *fname = NULL;
    if (fl < 0 || dl < 0)
        goto fail;
    fname = malloc((size_t)fl + 1);
    m->dset = malloc((size_t)dl + 1);
    if (!fname || !m->dset) {
        free(fname);
        mapping_free(m);
        return oom("virtual mapping");
    }
    if (H5Pget_virtual_filename(dcpl, i, fname, (size_t)fl + 1) < 0 ||
        H5Pget_virtual_dsetname(dcpl, i, m->dset, (size_t)dl + 1) < 0)
        goto fail;
    m->vspace = H5Pget_virtual_vspace(dcpl, i);
    m->sspace = H5Pget_virtual_srcspace(dcpl, i);
    if (m->vspace < 0 || m->sspace < 0)
        goto fail;
    if (!strcmp(fname, "."))
        m->file = dsrt_strdup(c->r->path);
    else if (fname[0] == '/')
        m->file = dsrt_strdup(fname);
    else
        m->file = str_printf("%s/%s", c->r->dir, fname);
    free(fname);
    if (!m->file) {
        mapping_free(m);
        return oom("virtual mapping");
    }
    return DSRT_STATUS_OK;
fail:
    save_cause(cause);
    free(fname);
    mapping_free(m);
    return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s: cannot read virtual mapping %zu: %s",
                          c->r->path, c->vds, i, cause);
}

typedef struct flat_iv {
    hsize_t lo, hi; /* [lo, hi] */
} flat_iv;

static int flat_iv_cmp(const void *a, const void *b)
{
    const flat_iv *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : 0;
}

/* The flat interval a mapping's virtual selection covers, when it is one
 * flat-contiguous block (always so for our writer). */
static bool mapping_flat(int ndim, const hsize_t *shape, hid_t vspace, flat_iv *iv)
{
    hsize_t lo[CKPT_MAX_DIMS], hi[CKPT_MAX_DIMS];
    hssize_t np = H5Sget_select_npoints(vspace);
    if (np <= 0 || H5Sget_select_bounds(vspace, lo, hi) < 0)
        return false;
    iv->lo = ravel(ndim, shape, lo);
    iv->hi = ravel(ndim, shape, hi);
    return iv->hi >= iv->lo && iv->hi - iv->lo + 1 == (hsize_t)np;
}

/* The previous mapping's source dataset (mappings come piece by piece). */
typedef struct src_seen {
    char *file, *dset;
    int ndims;
    hsize_t dims[CKPT_MAX_DIMS];
} src_seen;

/* Mapping m's source dataset exists, is float32, and its extent holds the
 * selection the mapping reads. (HDF5 does not keep the source's extent in
 * the mapping, only the selection, so that is what can be checked.) */
static dsrt_status check_source(const vds_ctx *c, mapping *m, src_seen *seen)
{
    char cause[CAUSE_LEN] = "";
    if (!seen->file || strcmp(seen->file, m->file) != 0 || strcmp(seen->dset, m->dset) != 0) {
        free(seen->file);
        free(seen->dset);
        seen->file = seen->dset = NULL;
        hid_t fid = H5I_INVALID_HID;
        DSRT_TRY(open_source(c, m->file, m->dset, &fid));
        int exists = path_exists(fid, m->dset, cause);
        if (exists < 0)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "%s: %s: cannot look the dataset up: %s (source of %s in %s)",
                                  m->file, m->dset, cause, c->vds, c->r->path);
        if (!exists)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "%s: %s: no such dataset (source of %s in %s)", m->file, m->dset,
                                  c->vds, c->r->path);
        hid_t sd = H5Dopen2(fid, m->dset, H5P_DEFAULT);
        hid_t t = sd >= 0 ? H5Dget_type(sd) : H5I_INVALID_HID;
        hid_t sp = t >= 0 ? H5Dget_space(sd) : H5I_INVALID_HID;
        if (sp < 0)
            save_cause(cause);
        int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        bool f32 = t >= 0 && H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 4;
        if (nd >= 1 && nd <= CKPT_MAX_DIMS)
            H5Sget_simple_extent_dims(sp, seen->dims, NULL);
        close_id(&sp, H5Sclose);
        close_id(&t, H5Tclose);
        close_id(&sd, H5Dclose);
        if (nd < 0)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "%s: %s: cannot open the dataset: %s (source of %s in %s)",
                                  m->file, m->dset, cause, c->vds, c->r->path);
        if (!f32 || nd < 1 || nd > CKPT_MAX_DIMS)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "%s: %s: not a float32 array (source of %s in %s)", m->file,
                                  m->dset, c->vds, c->r->path);
        seen->ndims = nd;
        seen->file = m->file;
        seen->dset = m->dset;
        m->file = m->dset = NULL;
    }
    hsize_t lo[CKPT_MAX_DIMS], hi[CKPT_MAX_DIMS];
    bool ok = H5Sget_simple_extent_ndims(m->sspace) == seen->ndims &&
              H5Sget_select_bounds(m->sspace, lo, hi) >= 0;
    for (int d = 0; ok && d < seen->ndims; d++)
        ok = hi[d] < seen->dims[d];
    if (!ok)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "%s: %s: its extent does not hold the part that %s in %s maps "
                              "(a file from another checkpoint?)",
                              seen->file, seen->dset, c->vds, c->r->path);
    return DSRT_STATUS_OK;
}

/* Before a read: every source file exists and opens, every source dataset
 * exists and holds what the mappings read, and the mappings cover the tensor
 * exactly once. HDF5 would fill what it cannot open and say nothing. */
static dsrt_status check_sources(const vds_ctx *c, hid_t dset, int ndim, const hsize_t *shape,
                                 hsize_t numel)
{
    char cause[CAUSE_LEN] = "";
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0) {
        save_cause(cause);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s: cannot read the dataset's layout: %s",
                              c->r->path, c->vds, cause);
    }
    if (H5Pget_layout(dcpl) != H5D_VIRTUAL) { /* data stored in the main file itself */
        H5Pclose(dcpl);
        return DSRT_STATUS_OK;
    }
    size_t count = 0;
    if (H5Pget_virtual_count(dcpl, &count) < 0) {
        save_cause(cause);
        H5Pclose(dcpl);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s: cannot read the virtual mappings: %s",
                              c->r->path, c->vds, cause);
    }
    flat_iv *ivs = malloc((count ? count : 1) * sizeof *ivs);
    if (!ivs) {
        H5Pclose(dcpl);
        return oom("virtual mappings");
    }
    dsrt_status st = DSRT_STATUS_OK;
    src_seen seen = {0};
    bool flat = true;
    hsize_t covered = 0;
    for (size_t i = 0; i < count && st == DSRT_STATUS_OK; i++) {
        mapping m;
        st = get_mapping(c, dcpl, i, &m);
        if (st != DSRT_STATUS_OK)
            break;
        hssize_t np = H5Sget_select_npoints(m.vspace);
        covered += np > 0 ? (hsize_t)np : 0;
        if (flat && !mapping_flat(ndim, shape, m.vspace, &ivs[i]))
            flat = false;
        st = check_source(c, &m, &seen);
        mapping_free(&m);
    }
    free(seen.file);
    free(seen.dset);
    H5Pclose(dcpl);
    if (st == DSRT_STATUS_OK) {
        bool ok = covered == numel;
        if (ok && flat) {
            qsort(ivs, count, sizeof *ivs, flat_iv_cmp);
            hsize_t next = 0;
            for (size_t i = 0; i < count && ok; i++) {
                ok = ivs[i].lo == next;
                next = ivs[i].hi + 1;
            }
            ok = ok && next == numel;
        }
        if (!ok)
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                "%s: %s: the virtual mappings do not cover the tensor exactly once "
                                "(%llu of %llu elements): corrupt main file?",
                                c->r->path, c->vds, (unsigned long long)covered,
                                (unsigned long long)numel);
    }
    free(ivs);
    return st;
}

/* Elements [off, off + n) of the tensor read straight from the source
 * datasets the virtual dataset maps (opened by this reader, next to the main
 * file), one intersecting mapping at a time. Used when HDF5_VDS_PREFIX is set
 * (HDF5 would look for the sources there first, whatever the dataset access
 * plist says, and could read another checkpoint's files), and after a failed
 * read through the virtual dataset, to name the source that fails. Needs
 * mappings that are flat ranges, which is what ckpt_write_main writes. */
static dsrt_status read_direct(const vds_ctx *c, hid_t dcpl, int ndim, const hsize_t *shape,
                               hsize_t off, hsize_t n, float *dst)
{
    char cause[CAUSE_LEN] = "";
    size_t count = 0;
    if (H5Pget_virtual_count(dcpl, &count) < 0) {
        save_cause(cause);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s: cannot read the virtual mappings: %s",
                              c->r->path, c->vds, cause);
    }
    for (size_t i = 0; i < count; i++) {
        mapping m;
        DSRT_TRY(get_mapping(c, dcpl, i, &m));
        flat_iv iv;
        hsize_t s_lo[CKPT_MAX_DIMS], s_hi[CKPT_MAX_DIMS];
        if (!mapping_flat(ndim, shape, m.vspace, &iv) ||
            H5Sget_simple_extent_ndims(m.sspace) != 1 ||
            H5Sget_select_bounds(m.sspace, s_lo, s_hi) < 0 ||
            s_hi[0] - s_lo[0] != iv.hi - iv.lo) {
            mapping_free(&m);
            return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                                  "%s: %s: virtual mapping %zu is not a flat range of a 1-D "
                                  "source (not written by dsrt?)",
                                  c->r->path, c->vds, i);
        }
        hsize_t lo = off > iv.lo ? off : iv.lo;
        hsize_t hi = off + n < iv.hi + 1 ? off + n : iv.hi + 1;
        if (lo >= hi) {
            mapping_free(&m);
            continue;
        }
        hid_t fid = H5I_INVALID_HID;
        dsrt_status st = open_source(c, m.file, m.dset, &fid);
        if (st != DSRT_STATUS_OK) {
            mapping_free(&m);
            return st;
        }
        hsize_t start = s_lo[0] + (lo - iv.lo), len = hi - lo;
        hid_t sd = H5Dopen2(fid, m.dset, H5P_DEFAULT);
        hid_t fs = sd >= 0 ? H5Dget_space(sd) : H5I_INVALID_HID;
        hid_t ms = fs >= 0 ? H5Screate_simple(1, &len, NULL) : H5I_INVALID_HID;
        bool ok = ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &len, NULL) >= 0 &&
                  H5Dread(sd, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, dst + (lo - off)) >= 0;
        if (!ok)
            save_cause(cause);
        close_id(&ms, H5Sclose);
        close_id(&fs, H5Sclose);
        close_id(&sd, H5Dclose);
        if (!ok) {
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                "%s: %s: read failed: %s (elements [%llu, %llu) of %s in %s)", m.file,
                                m.dset, cause, (unsigned long long)lo, (unsigned long long)hi,
                                c->vds, c->r->path);
            mapping_free(&m);
            return st;
        }
        mapping_free(&m);
    }
    return DSRT_STATUS_OK;
}

/* Opens /<kind>/<name> after checking it exists (INVALID_ARGUMENT if not). */
static dsrt_status open_tensor(ckpt_reader *r, const char *vds, const char *name, hid_t *dset,
                               int *ndim, hsize_t shape[CKPT_MAX_DIMS])
{
    char cause[CAUSE_LEN] = "";
    int exists = path_exists(r->fid, vds, cause);
    if (exists < 0)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s: cannot look the dataset up: %s",
                              r->path, vds, cause);
    if (!exists)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "%s: no tensor \"%s\" in the checkpoint (dataset %s)", r->path, name,
                              vds);
    hid_t d = H5Dopen2(r->fid, vds, H5P_DEFAULT);
    hid_t sp = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
    hid_t t = sp >= 0 ? H5Dget_type(d) : H5I_INVALID_HID;
    if (t < 0) {
        save_cause(cause);
        close_id(&sp, H5Sclose);
        close_id(&d, H5Dclose);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s: cannot open the dataset: %s", r->path,
                              vds, cause);
    }
    int nd = H5Sget_simple_extent_ndims(sp);
    bool f32 = H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 4;
    if (nd >= 1 && nd <= CKPT_MAX_DIMS)
        H5Sget_simple_extent_dims(sp, shape, NULL);
    H5Tclose(t);
    H5Sclose(sp);
    if (nd < 1 || nd > CKPT_MAX_DIMS || !f32) {
        H5Dclose(d);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "%s: %s: not a float32 tensor of 1..%d dimensions (ndim %d)", r->path,
                              vds, CKPT_MAX_DIMS, nd);
    }
    *ndim = nd;
    *dset = d;
    return DSRT_STATUS_OK;
}

static int kind_index(const char *kind)
{
    for (int k = 0; kind && k < 3; k++)
        if (!strcmp(kind, KINDS[k]))
            return k;
    return -1;
}

dsrt_status ckpt_tensor_info(ckpt_reader *r, const char *name, int *ndim,
                             int64_t shape[CKPT_MAX_DIMS])
{
    if (!r || !ndim || !shape)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "ckpt_tensor_info: NULL argument");
    if (!valid_name(name))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s: bad tensor name \"%s\"", r->path,
                              name ? name : "(null)");
    char *vds = str_printf("/master/%s", name);
    if (!vds)
        return oom("dataset name");
    quiet q = quiet_begin();
    hid_t d;
    int nd = 0;
    hsize_t dims[CKPT_MAX_DIMS];
    dsrt_status st = open_tensor(r, vds, name, &d, &nd, dims);
    if (st == DSRT_STATUS_OK) {
        H5Dclose(d);
        *ndim = nd;
        for (int i = 0; i < CKPT_MAX_DIMS; i++)
            shape[i] = i < nd ? (int64_t)dims[i] : 0;
    }
    quiet_end(q);
    free(vds);
    return st;
}

static dsrt_status read_range_impl(ckpt_reader *r, const char *vds, const char *name,
                                   size_t offset, size_t n, float *dst)
{
    hid_t dset, dcpl = H5I_INVALID_HID, fs = H5I_INVALID_HID, ms = H5I_INVALID_HID;
    int ndim;
    hsize_t shape[CKPT_MAX_DIMS], numel = 1;
    char cause[CAUSE_LEN] = "";
    DSRT_TRY(open_tensor(r, vds, name, &dset, &ndim, shape));
    for (int d = 0; d < ndim; d++)
        numel *= shape[d];
    vds_ctx c = {r, vds};
    dsrt_status st = DSRT_STATUS_OK;
    if (offset > numel || n > numel - offset)
        st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                            "%s: %s: elements [%zu, +%zu) are past the tensor's %llu elements",
                            r->path, vds, offset, n, (unsigned long long)numel);
    if (st == DSRT_STATUS_OK)
        st = check_sources(&c, dset, ndim, shape, numel);
    if (st == DSRT_STATUS_OK && n > 0) {
        dcpl = H5Dget_create_plist(dset);
        if (dcpl < 0) {
            save_cause(cause);
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s: cannot read the layout: %s",
                                r->path, vds, cause);
        }
    }
    if (st != DSRT_STATUS_OK || n == 0)
        goto done;
    bool virtual = H5Pget_layout(dcpl) == H5D_VIRTUAL;
    const char *env_prefix = getenv("HDF5_VDS_PREFIX");
    if (virtual && env_prefix && env_prefix[0]) {
        st = read_direct(&c, dcpl, ndim, shape, offset, n, dst);
        goto done;
    }
    block blocks[MAX_BLOCKS];
    size_t nb = split_range(ndim, shape, offset, n, blocks);
    hsize_t mn = n;
    bool ok = (fs = H5Dget_space(dset)) >= 0 && (ms = H5Screate_simple(1, &mn, NULL)) >= 0;
    for (size_t b = 0; ok && b < nb; b++)
        ok = H5Sselect_hyperslab(fs, b ? H5S_SELECT_OR : H5S_SELECT_SET, blocks[b].start, NULL,
                                 blocks[b].count, NULL) >= 0;
    ok = ok && H5Dread(dset, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, dst) >= 0;
    if (!ok) {
        save_cause(cause);
        /* which source? read them one by one; if they all read, the fault is
         * the main file's */
        if (virtual)
            st = read_direct(&c, dcpl, ndim, shape, offset, n, dst);
        if (!virtual || st != DSRT_STATUS_IO_ERROR)
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                "%s: %s: reading elements [%zu, %zu) failed: %s", r->path, vds,
                                offset, offset + n, cause);
    }
done:
    close_id(&ms, H5Sclose);
    close_id(&fs, H5Sclose);
    close_id(&dcpl, H5Pclose);
    H5Dclose(dset);
    return st;
}

dsrt_status ckpt_read_range(ckpt_reader *r, const char *kind, const char *name, size_t offset,
                            size_t n, float *dst)
{
    if (!r || (n && !dst))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "ckpt_read_range: NULL argument");
    if (kind_index(kind) < 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "%s: unknown tensor kind \"%s\" (master, exp_avg or exp_avg_sq)",
                              r->path, kind ? kind : "(null)");
    if (!valid_name(name))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s: bad tensor name \"%s\"", r->path,
                              name ? name : "(null)");
    char *vds = str_printf("/%s/%s", kind, name);
    if (!vds)
        return oom("dataset name");
    quiet q = quiet_begin();
    dsrt_status st = read_range_impl(r, vds, name, offset, n, dst);
    quiet_end(q);
    free(vds);
    return st;
}

dsrt_status ckpt_tensor_count(ckpt_reader *r, size_t *count)
{
    if (!r || !count)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "ckpt_tensor_count: NULL argument");
    quiet q = quiet_begin();
    H5G_info_t info;
    dsrt_status st = DSRT_STATUS_OK;
    if (H5Gget_info_by_name(r->fid, "/master", &info, H5P_DEFAULT) < 0) {
        char cause[CAUSE_LEN] = "";
        save_cause(cause);
        st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: /master: cannot list the tensors: %s",
                            r->path, cause);
    } else {
        *count = (size_t)info.nlinks;
    }
    quiet_end(q);
    return st;
}

dsrt_status ckpt_tensor_name(ckpt_reader *r, size_t i, char **name)
{
    if (!r || !name)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "ckpt_tensor_name: NULL argument");
    *name = NULL;
    quiet q = quiet_begin();
    dsrt_status st = DSRT_STATUS_OK;
    H5_index_t idx = H5_INDEX_CRT_ORDER;
    ssize_t len = H5Lget_name_by_idx(r->fid, "/master", idx, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
    if (len < 0) { /* not tracked (another writer): name order */
        idx = H5_INDEX_NAME;
        len = H5Lget_name_by_idx(r->fid, "/master", idx, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
    }
    if (len < 0) {
        st = dsrt_error_set(DSRT_STATUS_OUT_OF_RANGE, "%s: /master: no tensor number %zu", r->path,
                            i);
    } else if (!(*name = malloc((size_t)len + 1))) {
        st = oom("tensor name");
    } else if (H5Lget_name_by_idx(r->fid, "/master", idx, H5_ITER_INC, i, *name, (size_t)len + 1,
                                  H5P_DEFAULT) < 0) {
        char cause[CAUSE_LEN] = "";
        save_cause(cause);
        free(*name);
        *name = NULL;
        st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: /master: cannot read name %zu: %s", r->path,
                            i, cause);
    }
    quiet_end(q);
    return st;
}

/* ---- state */

/* Opens /state/<key> as a 1-element dataset; *type is CKPT_NONE when absent. */
static dsrt_status open_state(ckpt_reader *r, const char *key, hid_t *dset, hid_t *ftype,
                              int *type)
{
    *dset = *ftype = H5I_INVALID_HID;
    *type = CKPT_NONE;
    if (!valid_key(key))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s: bad state key \"%s\"", r->path,
                              key ? key : "(null)");
    char *p = str_printf("/state/%s", key);
    if (!p)
        return oom("state key");
    dsrt_status st = DSRT_STATUS_OK;
    char cause[CAUSE_LEN] = "";
    int exists = path_exists(r->fid, p, cause);
    if (exists < 0) {
        st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s: cannot look the key up: %s", r->path, p,
                            cause);
    } else if (exists) {
        hid_t o = H5Oopen(r->fid, p, H5P_DEFAULT);
        if (o < 0) {
            save_cause(cause);
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s: cannot open: %s", r->path, p, cause);
        } else if (H5Iget_type(o) != H5I_DATASET) {
            H5Oclose(o);
            st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                "%s: %s: a group of state keys, not a value", r->path, p);
        } else {
            hid_t t = H5Dget_type(o);
            hid_t sp = t >= 0 ? H5Dget_space(o) : H5I_INVALID_HID;
            if (sp < 0) {
                save_cause(cause);
                close_id(&t, H5Tclose);
                H5Oclose(o);
                st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s: cannot open: %s", r->path, p,
                                    cause);
            } else {
                H5T_class_t cls = H5Tget_class(t);
                size_t size = H5Tget_size(t);
                hssize_t np = H5Sget_simple_extent_npoints(sp);
                H5Sclose(sp);
                if (np == 1 && cls == H5T_INTEGER && size == 8)
                    *type = CKPT_I64;
                else if (np == 1 && cls == H5T_FLOAT && size == 8)
                    *type = CKPT_F64;
                else if (np == 1 && cls == H5T_STRING && H5Tis_variable_str(t) == 0)
                    *type = CKPT_STR;
                if (*type == CKPT_NONE) {
                    H5Tclose(t);
                    H5Oclose(o);
                    st = dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                        "%s: %s: not a dsrt state value (1 int64, float64 or "
                                        "fixed-length string)",
                                        r->path, p);
                } else {
                    *dset = o;
                    *ftype = t;
                }
            }
        }
    }
    free(p);
    return st;
}

static const char *type_name(int type)
{
    return type == CKPT_I64 ? "int64" : type == CKPT_F64 ? "float64" : "string";
}

static dsrt_status read_state(ckpt_reader *r, const char *key, int want, void *out)
{
    hid_t dset, ftype;
    int type;
    DSRT_TRY(open_state(r, key, &dset, &ftype, &type));
    dsrt_status st = DSRT_STATUS_OK;
    char *buf = NULL;
    if (type == CKPT_NONE) {
        st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                            "%s: no state key \"%s\" in the checkpoint (dataset /state/%s)",
                            r->path, key, key);
    } else if (type != want) {
        st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                            "%s: /state/%s holds a %s, not a %s", r->path, key, type_name(type),
                            type_name(want));
    } else {
        hid_t mtype = want == CKPT_I64 ? H5T_NATIVE_INT64 : want == CKPT_F64 ? H5T_NATIVE_DOUBLE
                                                                              : ftype;
        void *dst = out;
        if (want == CKPT_STR) {
            size_t size = H5Tget_size(ftype);
            buf = calloc(size + 1, 1);
            if (!buf)
                st = oom("state string");
            dst = buf;
        }
        if (st == DSRT_STATUS_OK && H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
            char cause[CAUSE_LEN] = "";
            save_cause(cause);
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: /state/%s: read failed: %s", r->path,
                                key, cause);
        }
        if (want == CKPT_STR) {
            if (st == DSRT_STATUS_OK)
                *(char **)out = buf;
            else
                free(buf);
        }
    }
    H5Tclose(ftype);
    H5Oclose(dset);
    return st;
}

/* One state value of the given type (CKPT_I64 into int64_t, CKPT_F64 into
 * double, CKPT_STR into a malloc'd char *), HDF5's own error stack silenced. */
static dsrt_status read_state_typed(ckpt_reader *r, const char *key, int type, void *out, const char *fn)
{
    if (!r || !out)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s: NULL argument", fn);
    if (type == CKPT_STR)
        *(char **)out = NULL;
    quiet q = quiet_begin();
    dsrt_status st = read_state(r, key, type, out);
    quiet_end(q);
    return st;
}

dsrt_status ckpt_read_i64(ckpt_reader *r, const char *key, int64_t *out)
{
    return read_state_typed(r, key, CKPT_I64, out, "ckpt_read_i64");
}

dsrt_status ckpt_read_f64(ckpt_reader *r, const char *key, double *out)
{
    return read_state_typed(r, key, CKPT_F64, out, "ckpt_read_f64");
}

dsrt_status ckpt_read_str(ckpt_reader *r, const char *key, char **out)
{
    return read_state_typed(r, key, CKPT_STR, out, "ckpt_read_str");
}

dsrt_status ckpt_state_type(ckpt_reader *r, const char *key, int *type)
{
    if (!r || !type)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "ckpt_state_type: NULL argument");
    quiet q = quiet_begin();
    hid_t dset, ftype;
    dsrt_status st = open_state(r, key, &dset, &ftype, type);
    close_id(&ftype, H5Tclose);
    close_id(&dset, H5Oclose);
    quiet_end(q);
    return st;
}
