/* Checkpoint storage (ckpt/ckpt.c): rank files written as the ZeRO layout
 * partitions a small model over 1, 4 and 8 ranks (pieces straddling rows,
 * a rank with nothing but padding), the main file's virtual datasets read
 * back whole and by the ranges a reader of 1, 2 or 3 ranks would ask for,
 * bit for bit; engine state (int64, float64 with NaN payloads, infinities and
 * denormals, a 100 KB string); argument errors; and corruption: a flipped
 * data byte, a truncated or deleted rank file, a truncated or foreign main
 * file, damaged main-file metadata. Every failure must be an error naming
 * the file (and dataset), never a silent fill.
 *
 * DSRT_CKPT_KEEP=<dir>: the 4-rank checkpoint is written to <dir>/global_step5
 * (with <dir>/latest) and kept, with <dir>/expected.txt for
 * tests/ckpt_h5py_check.py, which checks it with h5py alone. */
#define _GNU_SOURCE
#include <errno.h>
#include <float.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "test_util.h"
#include "ckpt/ckpt.h"

#define NT 4
#define TAG "global_step5"

static const ckpt_tensor TENSORS[NT] = {
    {"transformer.h.0.attn.c_attn.weight", 2, {7, 5}},
    {"transformer.h.0.ln_1.bias", 1, {5}},
    {"transformer.h.0.mlp.c_proj.weight", 3, {3, 4, 2}},
    {"lm_head.scale", 1, {1}},
};
static const char *const KIND[3] = {"master", "exp_avg", "exp_avg_sq"};

static size_t numel_of(size_t t)
{
    size_t n = 1;
    for (int d = 0; d < TENSORS[t].ndim; d++)
        n *= (size_t)TENSORS[t].shape[d];
    return n;
}

/* ------------------------------------------------------------------ helpers */

static void expect_error(dsrt_status st, dsrt_status want, const char *has1, const char *has2,
                         const char *has3)
{
    const char *msg = dsrt_error_message();
    if (st != want)
        fail_msg("status %d, expected %d; message: %s", (int)st, (int)want, msg);
    const char *has[3] = {has1, has2, has3};
    for (int i = 0; i < 3; i++)
        if (has[i] && !strstr(msg, has[i]))
            fail_msg("the message does not name \"%s\": %s", has[i], msg);
}

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static char *make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = path_join(base && base[0] ? base : "/tmp", "dsrt_ckpt_XXXXXX");
    if (!mkdtemp(tmpl))
        fail_msg("mkdtemp %s: %s", tmpl, strerror(errno));
    return tmpl;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_tree(char *dir)
{
    if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fail_msg("removing %s: %s", dir, strerror(errno));
    free(dir);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("%s: %s", path, strerror(errno));
    assert_int_equal(fwrite(b, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* the only offset of `pat` in `b` (fails unless it occurs exactly once) */
static size_t find_once(const unsigned char *b, size_t len, const void *pat, size_t plen)
{
    const unsigned char *hit = memmem(b, len, pat, plen);
    if (!hit)
        fail_msg("pattern not found in the file");
    const unsigned char *again = memmem(hit + 1, len - (size_t)(hit + 1 - b), pat, plen);
    if (again)
        fail_msg("pattern found twice in the file");
    return (size_t)(hit - b);
}

static uint64_t fnv1a64(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static float f32_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static double f64_bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static uint64_t bits64(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* ------------------------------------------------------------------ the model */

typedef struct model {
    float *data[NT][3];
} model;

static void model_init(model *m)
{
    for (size_t t = 0; t < NT; t++)
        for (int k = 0; k < 3; k++) {
            size_t n = numel_of(t);
            m->data[t][k] = malloc(n * sizeof(float));
            assert_non_null(m->data[t][k]);
            for (size_t i = 0; i < n; i++) {
                float v = rnd_uniform() * (k == 0 ? 0.5f : 1e-3f);
                m->data[t][k][i] = k == 2 ? v * v : v;
            }
        }
    /* values that only survive if nothing converts them */
    float *w = m->data[0][0];
    w[1] = f32_bits(0x00000001u);  /* smallest denormal */
    w[2] = f32_bits(0x80000000u);  /* -0 */
    w[3] = f32_bits(0x7fc01234u);  /* NaN with a payload */
    w[4] = FLT_MAX;
    w[33] = f32_bits(0xff800000u); /* -inf */
}

static void model_free(model *m)
{
    for (size_t t = 0; t < NT; t++)
        for (int k = 0; k < 3; k++)
            free(m->data[t][k]);
}

typedef struct lpiece {
    size_t tensor, off, n;
} lpiece;

/* Rank `rank`'s pieces in ZeRO's flat layout: parameters concatenated in
 * order, padded to a multiple of 2 * world, cut in `world` equal partitions. */
static size_t zero_pieces(int world, int rank, lpiece out[NT])
{
    size_t total = 0;
    for (size_t t = 0; t < NT; t++)
        total += numel_of(t);
    size_t align = 2 * (size_t)world, padded = (total + align - 1) / align * align;
    size_t part = padded / (size_t)world, lo = (size_t)rank * part, hi = lo + part;
    size_t start = 0, k = 0;
    for (size_t t = 0; t < NT; t++) {
        size_t s = start, e = start + numel_of(t);
        size_t a = s > lo ? s : lo, b = e < hi ? e : hi;
        if (a < b)
            out[k++] = (lpiece){t, a - s, b - a};
        start = e;
    }
    return k;
}

/* ------------------------------------------------------------------ state */

#define BIG_LEN (100 * 1024)

typedef struct state_set {
    ckpt_kv kv[16];
    size_t n;
    char *big;
} state_set;

static void state_init(state_set *s)
{
    s->big = malloc(BIG_LEN + 1);
    assert_non_null(s->big);
    for (size_t i = 0; i < BIG_LEN; i++)
        s->big[i] = (char)(' ' + 1 + rnd_u64() % 94);
    memcpy(s->big, "{\"ds_config\": ", 14);
    s->big[BIG_LEN] = '\0';
    size_t n = 0;
    s->kv[n++] = (ckpt_kv){.key = "global_steps", .type = CKPT_I64, .i = 5};
    s->kv[n++] = (ckpt_kv){.key = "int64_min", .type = CKPT_I64, .i = INT64_MIN};
    s->kv[n++] = (ckpt_kv){.key = "int64_max", .type = CKPT_I64, .i = INT64_MAX};
    s->kv[n++] = (ckpt_kv){.key = "loss_scaler/cur_scale", .type = CKPT_F64, .f = 65536.0};
    s->kv[n++] = (ckpt_kv){.key = "loss_scaler/cur_iter", .type = CKPT_I64, .i = -1};
    s->kv[n++] = (ckpt_kv){.key = "f/nan_payload", .type = CKPT_F64,
                           .f = f64_bits(0x7ff8000000012345ull)};
    s->kv[n++] = (ckpt_kv){.key = "f/neg_nan", .type = CKPT_F64,
                           .f = f64_bits(0xfff8000000000001ull)};
    s->kv[n++] = (ckpt_kv){.key = "f/inf", .type = CKPT_F64, .f = INFINITY};
    s->kv[n++] = (ckpt_kv){.key = "f/neg_inf", .type = CKPT_F64, .f = -INFINITY};
    s->kv[n++] = (ckpt_kv){.key = "f/denormal", .type = CKPT_F64, .f = f64_bits(1)};
    s->kv[n++] = (ckpt_kv){.key = "f/neg_zero", .type = CKPT_F64, .f = -0.0};
    s->kv[n++] = (ckpt_kv){.key = "f/tenth", .type = CKPT_F64, .f = 0.1};
    s->kv[n++] = (ckpt_kv){.key = "ds_config", .type = CKPT_STR, .s = s->big};
    s->kv[n++] = (ckpt_kv){.key = "empty", .type = CKPT_STR, .s = ""};
    s->kv[n++] = (ckpt_kv){.key = "client/utf8", .type = CKPT_STR,
                           .s = "h\xc3\xa9llo \xe2\x86\x92 \xe4\xb8\x96\xe7\x95\x8c \"q\""};
    s->n = n;
}

static void check_state(ckpt_reader *r, const state_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        const ckpt_kv *kv = &s->kv[i];
        int type = -1;
        OK(ckpt_state_type(r, kv->key, &type));
        assert_int_equal(type, kv->type);
        if (kv->type == CKPT_I64) {
            int64_t v = 0;
            OK(ckpt_read_i64(r, kv->key, &v));
            assert_true(v == kv->i);
        } else if (kv->type == CKPT_F64) {
            double v = 0;
            OK(ckpt_read_f64(r, kv->key, &v));
            if (bits64(v) != bits64(kv->f))
                fail_msg("%s: bits %016llx, wrote %016llx", kv->key,
                         (unsigned long long)bits64(v), (unsigned long long)bits64(kv->f));
        } else {
            char *v = NULL;
            OK(ckpt_read_str(r, kv->key, &v));
            assert_string_equal(v, kv->s);
            free(v);
        }
    }
}

/* ------------------------------------------------------------------ writing */

/* Every rank file and the main file of `m` partitioned over `world` ranks.
 * The main file is written first: it does not need the rank files. */
static void write_checkpoint(const char *dir, const model *m, int world, const state_set *st)
{
    ckpt_source *src = calloc((size_t)world * NT, sizeof *src);
    char(*fname)[32] = calloc((size_t)world, sizeof *fname);
    assert_non_null(src);
    assert_non_null(fname);
    size_t nsrc = 0;
    for (int r = 0; r < world; r++) {
        lpiece lp[NT];
        size_t np = zero_pieces(world, r, lp);
        ckpt_rank_file_name(fname[r], r);
        for (size_t k = 0; k < np; k++)
            src[nsrc++] = (ckpt_source){fname[r], k, lp[k].tensor, lp[k].off, lp[k].n};
    }
    char *main_path = path_join(dir, CKPT_MAIN_FILE_NAME);
    OK(ckpt_write_main(main_path, TENSORS, NT, src, nsrc, st ? st->kv : NULL, st ? st->n : 0));
    free(main_path);
    for (int r = 0; r < world; r++) {
        lpiece lp[NT];
        ckpt_piece pc[NT];
        size_t np = zero_pieces(world, r, lp);
        for (size_t k = 0; k < np; k++) {
            size_t t = lp[k].tensor, o = lp[k].off;
            pc[k] = (ckpt_piece){TENSORS[t].name, o, lp[k].n, m->data[t][0] + o,
                                 m->data[t][1] + o, m->data[t][2] + o};
        }
        char *p = path_join(dir, fname[r]);
        OK(ckpt_write_rank(p, r, world, pc, np));
        free(p);
    }
    free(src);
    free(fname);
}

/* <parent>/<TAG>.tmp written, then renamed to <parent>/<TAG> with <parent>/latest,
 * as the engine does: the relative source paths must survive the rename. */
static char *save(const char *parent, const model *m, int world, const state_set *st)
{
    char *tmp = path_join(parent, TAG ".tmp"), *final = path_join(parent, TAG);
    struct stat sb;
    if (stat(final, &sb) == 0) /* a kept directory from an earlier run */
        rm_tree(dsrt_strdup(final));
    if (mkdir(tmp, 0755) != 0)
        fail_msg("mkdir %s: %s", tmp, strerror(errno));
    write_checkpoint(tmp, m, world, st);
    if (rename(tmp, final) != 0)
        fail_msg("rename %s: %s", tmp, strerror(errno));
    char *latest = path_join(parent, "latest");
    spit(latest, (const unsigned char *)TAG, strlen(TAG));
    free(latest);
    free(tmp);
    char *main_path = path_join(final, CKPT_MAIN_FILE_NAME);
    free(final);
    return main_path;
}

static void write_expectations(const char *dir, const model *m, const state_set *st)
{
    char *p = path_join(dir, "expected.txt");
    FILE *f = fopen(p, "w");
    if (!f)
        fail_msg("%s: %s", p, strerror(errno));
    fprintf(f, "# dsrt checkpoint expectations for tests/ckpt_h5py_check.py\n");
    fprintf(f, "latest %s\norder", TAG);
    for (size_t t = 0; t < NT; t++)
        fprintf(f, " %s", TENSORS[t].name);
    fprintf(f, "\n");
    for (int k = 0; k < 3; k++)
        for (size_t t = 0; t < NT; t++) {
            fprintf(f, "tensor %s %s ", KIND[k], TENSORS[t].name);
            for (int d = 0; d < TENSORS[t].ndim; d++)
                fprintf(f, "%s%lld", d ? "," : "", (long long)TENSORS[t].shape[d]);
            for (size_t i = 0; i < numel_of(t); i++) {
                uint32_t u;
                memcpy(&u, &m->data[t][k][i], sizeof u);
                fprintf(f, " %08x", u);
            }
            fprintf(f, "\n");
        }
    for (size_t i = 0; i < st->n; i++) {
        const ckpt_kv *kv = &st->kv[i];
        if (kv->type == CKPT_I64)
            fprintf(f, "i64 %s %lld\n", kv->key, (long long)kv->i);
        else if (kv->type == CKPT_F64)
            fprintf(f, "f64 %s %016llx\n", kv->key, (unsigned long long)bits64(kv->f));
        else
            fprintf(f, "str %s %zu %016llx\n", kv->key, strlen(kv->s),
                    (unsigned long long)fnv1a64(kv->s, strlen(kv->s)));
    }
    assert_int_equal(fclose(f), 0);
    free(p);
}

/* ------------------------------------------------------------------ reading */

static void expect_range(ckpt_reader *r, const model *m, size_t t, int k, size_t off, size_t n)
{
    float *buf = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(buf);
    OK(ckpt_read_range(r, KIND[k], TENSORS[t].name, off, n, buf));
    if (n && memcmp(buf, m->data[t][k] + off, n * sizeof(float)) != 0)
        fail_msg("%s/%s [%zu, +%zu) differs", KIND[k], TENSORS[t].name, off, n);
    free(buf);
}

static void check_all(ckpt_reader *r, const model *m)
{
    size_t count = 0;
    OK(ckpt_tensor_count(r, &count));
    assert_int_equal(count, NT);
    for (size_t t = 0; t < NT; t++) {
        char *name = NULL;
        OK(ckpt_tensor_name(r, t, &name));
        assert_string_equal(name, TENSORS[t].name); /* registration order */
        free(name);
        int ndim = 0;
        int64_t shape[CKPT_MAX_DIMS];
        OK(ckpt_tensor_info(r, TENSORS[t].name, &ndim, shape));
        assert_int_equal(ndim, TENSORS[t].ndim);
        assert_memory_equal(shape, TENSORS[t].shape, (size_t)ndim * sizeof shape[0]);
        for (int k = 0; k < 3; k++)
            expect_range(r, m, t, k, 0, numel_of(t));
    }
    char *name = NULL;
    assert_int_equal(ckpt_tensor_name(r, NT, &name), DSRT_STATUS_OUT_OF_RANGE);
    /* the ranges a reader of 1, 2 or 3 ranks owns */
    for (int w = 1; w <= 3; w++)
        for (int rank = 0; rank < w; rank++) {
            lpiece lp[NT];
            size_t np = zero_pieces(w, rank, lp);
            for (size_t i = 0; i < np; i++)
                for (int k = 0; k < 3; k++)
                    expect_range(r, m, lp[i].tensor, k, lp[i].off, lp[i].n);
        }
    /* every range of every tensor, empty ones included */
    for (size_t t = 0; t < NT; t++)
        for (size_t off = 0; off <= numel_of(t); off++)
            for (size_t n = 0; off + n <= numel_of(t); n++)
                expect_range(r, m, t, (int)((off + n) % 3), off, n);
}

static void check_read_errors(ckpt_reader *r, const char *main_path)
{
    float buf[64];
    expect_error(ckpt_read_range(r, "master", TENSORS[0].name, 30, 6, buf),
                 DSRT_STATUS_INVALID_ARGUMENT, main_path, "/master/", "35");
    expect_error(ckpt_read_range(r, "master", TENSORS[0].name, 36, 0, buf),
                 DSRT_STATUS_INVALID_ARGUMENT, main_path, NULL, NULL);
    expect_error(ckpt_read_range(r, "momentum", TENSORS[0].name, 0, 1, buf),
                 DSRT_STATUS_INVALID_ARGUMENT, "momentum", NULL, NULL);
    expect_error(ckpt_read_range(r, "exp_avg", "no.such.weight", 0, 1, buf),
                 DSRT_STATUS_INVALID_ARGUMENT, main_path, "/exp_avg/no.such.weight", NULL);
    expect_error(ckpt_read_range(r, "exp_avg", "a/b", 0, 1, buf), DSRT_STATUS_INVALID_ARGUMENT,
                 "a/b", NULL, NULL);
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
    expect_error(ckpt_tensor_info(r, "no.such.weight", &ndim, shape),
                 DSRT_STATUS_INVALID_ARGUMENT, main_path, "/master/no.such.weight", NULL);
    int64_t i;
    double f;
    char *s;
    int type = -1;
    expect_error(ckpt_read_i64(r, "no_such_key", &i), DSRT_STATUS_INVALID_ARGUMENT, main_path,
                 "/state/no_such_key", NULL);
    expect_error(ckpt_read_i64(r, "loss_scaler/nope", &i), DSRT_STATUS_INVALID_ARGUMENT,
                 "/state/loss_scaler/nope", NULL, NULL);
    expect_error(ckpt_read_f64(r, "global_steps", &f), DSRT_STATUS_INVALID_ARGUMENT,
                 "/state/global_steps", "int64", NULL);
    expect_error(ckpt_read_str(r, "f/tenth", &s), DSRT_STATUS_INVALID_ARGUMENT, "/state/f/tenth",
                 NULL, NULL);
    expect_error(ckpt_read_i64(r, "loss_scaler", &i), DSRT_STATUS_INVALID_ARGUMENT,
                 "/state/loss_scaler", "group", NULL);
    expect_error(ckpt_read_i64(r, "global_steps/below", &i), DSRT_STATUS_INVALID_ARGUMENT,
                 "global_steps/below", NULL, NULL);
    expect_error(ckpt_read_i64(r, "a//b", &i), DSRT_STATUS_INVALID_ARGUMENT, "a//b", NULL, NULL);
    OK(ckpt_state_type(r, "not/there", &type));
    assert_int_equal(type, CKPT_NONE);
}

static void roundtrip(int world, const char *keep)
{
    model m;
    model_init(&m);
    state_set st;
    state_init(&st);
    char *dir = keep ? NULL : make_tmpdir();
    char *main_path = save(keep ? keep : dir, &m, world, &st);
    if (keep)
        write_expectations(keep, &m, &st);

    ckpt_reader *r = NULL;
    OK(ckpt_open(main_path, &r));
    check_all(r, &m);
    check_state(r, &st);
    check_read_errors(r, main_path);
    ckpt_close(r);

    /* opened by a relative path, read after the working directory changed */
    char *cwd = getcwd(NULL, 0);
    assert_non_null(cwd);
    assert_int_equal(chdir(keep ? keep : dir), 0);
    OK(ckpt_open(TAG "/" CKPT_MAIN_FILE_NAME, &r));
    assert_int_equal(chdir("/"), 0);
    expect_range(r, &m, 0, 0, 0, numel_of(0));
    expect_range(r, &m, 2, 2, 3, 17);
    ckpt_close(r);
    assert_int_equal(chdir(cwd), 0);
    free(cwd);

    free(main_path);
    if (dir)
        rm_tree(dir);
    free(st.big);
    model_free(&m);
}

static void test_roundtrip_world4(void **state)
{
    (void)state;
    const char *keep = getenv("DSRT_CKPT_KEEP");
    roundtrip(4, keep && keep[0] ? keep : NULL);
}

static void test_roundtrip_world1(void **state)
{
    (void)state;
    roundtrip(1, NULL);
}

/* 65 elements padded to 80 over 8 ranks: rank 7 owns only padding */
static void test_roundtrip_world8(void **state)
{
    (void)state;
    lpiece lp[NT];
    assert_int_equal(zero_pieces(8, 7, lp), 0);
    roundtrip(8, NULL);
}

/* HDF5 would look for relative source files under $HDF5_VDS_PREFIX first: a
 * host's setting must not make the reader use another checkpoint's files of
 * the same layout (the same names and extents: nothing else would notice). */
static void test_vds_prefix_env(void **state)
{
    (void)state;
    model a, b;
    model_init(&a);
    model_init(&b);
    char *dir_a = make_tmpdir(), *dir_b = make_tmpdir();
    char *main_a = save(dir_a, &a, 4, NULL), *main_b = save(dir_b, &b, 4, NULL);
    char *decoy = path_join(dir_b, TAG);
    const char *old = getenv("HDF5_VDS_PREFIX");
    char *saved = old ? dsrt_strdup(old) : NULL;
    assert_int_equal(setenv("HDF5_VDS_PREFIX", decoy, 1), 0);
    ckpt_reader *r;
    OK(ckpt_open(main_a, &r));
    for (size_t t = 0; t < NT; t++)
        for (int k = 0; k < 3; k++)
            expect_range(r, &a, t, k, 0, numel_of(t));
    ckpt_close(r);
    if (saved)
        setenv("HDF5_VDS_PREFIX", saved, 1);
    else
        unsetenv("HDF5_VDS_PREFIX");
    free(saved);
    free(decoy);
    free(main_a);
    free(main_b);
    rm_tree(dir_a);
    rm_tree(dir_b);
    model_free(&a);
    model_free(&b);
}

/* ------------------------------------------------------------------ argument errors */

static void test_write_errors(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char *rank_path = path_join(dir, "zero_rank_00000.h5");
    char *main_path = path_join(dir, CKPT_MAIN_FILE_NAME);
    float v[4] = {1, 2, 3, 4};
    ckpt_piece good = {"w", 0, 4, v, v, v};
    ckpt_piece bad = good;

    bad.n = 0;
    expect_error(ckpt_write_rank(rank_path, 0, 1, &bad, 1), DSRT_STATUS_INVALID_ARGUMENT,
                 rank_path, "no elements", NULL);
    bad = good;
    bad.exp_avg = NULL;
    expect_error(ckpt_write_rank(rank_path, 0, 1, &bad, 1), DSRT_STATUS_INVALID_ARGUMENT,
                 rank_path, NULL, NULL);
    bad = good;
    bad.name = "a/b";
    expect_error(ckpt_write_rank(rank_path, 0, 1, &bad, 1), DSRT_STATUS_INVALID_ARGUMENT,
                 "a/b", NULL, NULL);
    expect_error(ckpt_write_rank(rank_path, 2, 2, &good, 1), DSRT_STATUS_INVALID_ARGUMENT,
                 rank_path, NULL, NULL);
    expect_error(ckpt_write_rank(NULL, 0, 1, &good, 1), DSRT_STATUS_INVALID_ARGUMENT, NULL, NULL,
                 NULL);
    assert_int_equal(access(rank_path, F_OK), -1); /* nothing was created */
    char *nodir = path_join(dir, "missing/zero_rank_00000.h5");
    expect_error(ckpt_write_rank(nodir, 0, 1, &good, 1), DSRT_STATUS_IO_ERROR, nodir, NULL, NULL);

    ckpt_tensor t[2] = {{"w", 2, {2, 2}}, {"b", 1, {3}}};
    ckpt_source s[3] = {{"zero_rank_00000.h5", 0, 0, 0, 4},
                        {"zero_rank_00000.h5", 1, 1, 0, 2},
                        {"zero_rank_00001.h5", 0, 1, 2, 1}};
    ckpt_kv kv[2] = {{.key = "a", .type = CKPT_I64}, {.key = "b", .type = CKPT_F64}};
    OK(ckpt_write_main(main_path, t, 2, s, 3, kv, 2));

    ckpt_source s2[3];
    memcpy(s2, s, sizeof s2);
    s2[2].offset_in_param = 1; /* overlap */
    expect_error(ckpt_write_main(main_path, t, 2, s2, 3, kv, 2), DSRT_STATUS_INVALID_ARGUMENT,
                 main_path, "overlaps", " b:");
    expect_error(ckpt_write_main(main_path, t, 2, s, 2, kv, 2), DSRT_STATUS_INVALID_ARGUMENT,
                 "tensor b", "[2, 3)", NULL); /* gap at the end */
    memcpy(s2, s, sizeof s2);
    s2[1].offset_in_param = 1;
    s2[1].n = 1;
    expect_error(ckpt_write_main(main_path, t, 2, s2, 3, kv, 2), DSRT_STATUS_INVALID_ARGUMENT,
                 "tensor b", "[0, 1)", NULL);
    memcpy(s2, s, sizeof s2);
    s2[0].file = "/abs/zero_rank_00000.h5";
    expect_error(ckpt_write_main(main_path, t, 2, s2, 3, kv, 2), DSRT_STATUS_INVALID_ARGUMENT,
                 "/abs/zero_rank_00000.h5", NULL, NULL);
    s2[0].file = "rank%d.h5";
    expect_error(ckpt_write_main(main_path, t, 2, s2, 3, kv, 2), DSRT_STATUS_INVALID_ARGUMENT,
                 "rank%d.h5", NULL, NULL);
    memcpy(s2, s, sizeof s2);
    s2[2].tensor = 2;
    expect_error(ckpt_write_main(main_path, t, 2, s2, 3, kv, 2), DSRT_STATUS_INVALID_ARGUMENT,
                 "tensor index 2", NULL, NULL);

    ckpt_tensor t2[2] = {t[0], t[1]};
    t2[1].ndim = 0;
    expect_error(ckpt_write_main(main_path, t2, 2, s, 3, kv, 2), DSRT_STATUS_INVALID_ARGUMENT,
                 "tensor b", "ndim", NULL);
    t2[1] = t[1];
    t2[1].shape[0] = 0;
    expect_error(ckpt_write_main(main_path, t2, 2, s, 3, kv, 2), DSRT_STATUS_INVALID_ARGUMENT,
                 "tensor b", NULL, NULL);
    t2[1] = t[1];
    t2[1].name = "w";
    expect_error(ckpt_write_main(main_path, t2, 2, s, 3, kv, 2), DSRT_STATUS_INVALID_ARGUMENT,
                 "w appears twice", NULL, NULL);
    t2[1].name = "has space";
    expect_error(ckpt_write_main(main_path, t2, 2, s, 3, kv, 2), DSRT_STATUS_INVALID_ARGUMENT,
                 "has space", NULL, NULL);

    static const char *const bad_keys[] = {"", "/a", "a/", "a//b", "a/./b", ".."};
    for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
        ckpt_kv k1 = {.key = bad_keys[i], .type = CKPT_I64};
        expect_error(ckpt_write_main(main_path, t, 2, s, 3, &k1, 1), DSRT_STATUS_INVALID_ARGUMENT,
                     "bad key", NULL, NULL);
    }
    ckpt_kv clash[2] = {{.key = "loss_scaler/x", .type = CKPT_I64},
                        {.key = "loss_scaler", .type = CKPT_F64}};
    expect_error(ckpt_write_main(main_path, t, 2, s, 3, clash, 2), DSRT_STATUS_INVALID_ARGUMENT,
                 "\"loss_scaler/x\" and \"loss_scaler\"", NULL, NULL);
    clash[1].key = "loss_scaler/x";
    expect_error(ckpt_write_main(main_path, t, 2, s, 3, clash, 2), DSRT_STATUS_INVALID_ARGUMENT,
                 "collide", NULL, NULL);
    clash[1].key = "loss_scaler/xy"; /* a longer name is no clash */
    OK(ckpt_write_main(main_path, t, 2, s, 3, clash, 2));
    ckpt_kv k2 = {.key = "s", .type = CKPT_STR, .s = NULL};
    expect_error(ckpt_write_main(main_path, t, 2, s, 3, &k2, 1), DSRT_STATUS_INVALID_ARGUMENT,
                 "string is NULL", NULL, NULL);
    k2.type = 9;
    expect_error(ckpt_write_main(main_path, t, 2, s, 3, &k2, 1), DSRT_STATUS_INVALID_ARGUMENT,
                 "unknown type", NULL, NULL);
    char *nodir_main = path_join(dir, "missing/checkpoint.h5");
    expect_error(ckpt_write_main(nodir_main, t, 2, s, 3, kv, 2), DSRT_STATUS_IO_ERROR, nodir_main,
                 NULL, NULL);

    ckpt_reader *r = (ckpt_reader *)1;
    expect_error(ckpt_open(NULL, &r), DSRT_STATUS_INVALID_ARGUMENT, NULL, NULL, NULL);
    assert_null(r);
    ckpt_close(NULL);

    free(nodir);
    free(nodir_main);
    free(rank_path);
    free(main_path);
    rm_tree(dir);
}

/* ------------------------------------------------------------------ corruption */

typedef struct fixture {
    model m;
    char *dir, *ckpt, *main_path;
} fixture;

static void fixture_setup(fixture *fx)
{
    model_init(&fx->m);
    fx->dir = make_tmpdir();
    fx->main_path = save(fx->dir, &fx->m, 4, NULL);
    fx->ckpt = path_join(fx->dir, TAG);
}

/* Nothing of HDF5's left open: every error path closes what it opened (an
 * identifier left open makes HDF5 print "infinite loop closing library" at
 * exit, and holds the file). */
static void assert_no_open_hdf5(const char *after)
{
    ssize_t n = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n != 0)
        fail_msg("%zd HDF5 identifiers still open after %s", n, after);
}

static void fixture_teardown(fixture *fx)
{
    assert_no_open_hdf5("the test's last close");
    free(fx->main_path);
    free(fx->ckpt);
    rm_tree(fx->dir);
    model_free(&fx->m);
}

static dsrt_status read_whole(ckpt_reader *r, int k, size_t t)
{
    float buf[64];
    return ckpt_read_range(r, KIND[k], TENSORS[t].name, 0, numel_of(t), buf);
}

/* One flipped bit in the data of rank 1's first piece (tensor 0, elements
 * 18..34): Fletcher32 must catch it through the virtual dataset. */
static void test_flipped_data_byte(void **state)
{
    (void)state;
    fixture fx;
    fixture_setup(&fx);
    char *rank1 = path_join(fx.ckpt, "zero_rank_00001.h5");
    size_t len;
    unsigned char *b = slurp(rank1, &len);
    size_t at = find_once(b, len, fx.m.data[0][0] + 20, 4 * sizeof(float));
    b[at + 5] ^= 0x10;
    spit(rank1, b, len);
    free(b);

    ckpt_reader *r;
    OK(ckpt_open(fx.main_path, &r));
    char vds[128];
    snprintf(vds, sizeof vds, "/master/%s", TENSORS[0].name);
    expect_error(read_whole(r, 0, 0), DSRT_STATUS_IO_ERROR, "zero_rank_00001.h5",
                 "/pieces/0/master", vds);
    assert_non_null(strstr(dsrt_error_message(), "Fletcher32"));
    float buf[64];
    expect_error(ckpt_read_range(r, "master", TENSORS[0].name, 21, 1, buf), DSRT_STATUS_IO_ERROR,
                 "zero_rank_00001.h5", "/pieces/0/master", vds);
    expect_range(r, &fx.m, 0, 0, 0, 18); /* rank 0's part is intact */
    expect_range(r, &fx.m, 0, 1, 0, numel_of(0));
    expect_range(r, &fx.m, 1, 0, 0, numel_of(1)); /* rank 1's other piece */
    ckpt_close(r);
    free(rank1);
    fixture_teardown(&fx);
}

static void test_truncated_rank_file(void **state)
{
    (void)state;
    fixture fx;
    fixture_setup(&fx);
    char *rank2 = path_join(fx.ckpt, "zero_rank_00002.h5");
    struct stat sb;
    assert_int_equal(stat(rank2, &sb), 0);
    assert_int_equal(truncate(rank2, sb.st_size / 2), 0);

    ckpt_reader *r;
    OK(ckpt_open(fx.main_path, &r));
    char vds[128];
    snprintf(vds, sizeof vds, "/exp_avg/%s", TENSORS[1].name);
    expect_error(read_whole(r, 1, 1), DSRT_STATUS_IO_ERROR, rank2, "/pieces/0/exp_avg", vds);
    assert_non_null(strstr(dsrt_error_message(), "truncated"));
    expect_error(read_whole(r, 0, 2), DSRT_STATUS_IO_ERROR, rank2, "/pieces/1/master", NULL);
    expect_range(r, &fx.m, 0, 2, 0, numel_of(0)); /* ranks 0 and 1 */
    /* element 0 of tensor 1 is rank 1's, but the tensor is incomplete */
    float one;
    expect_error(ckpt_read_range(r, "master", TENSORS[1].name, 0, 1, &one), DSRT_STATUS_IO_ERROR,
                 rank2, "truncated", NULL);
    ckpt_close(r);
    free(rank2);
    fixture_teardown(&fx);
}

static void test_missing_rank_file(void **state)
{
    (void)state;
    fixture fx;
    fixture_setup(&fx);
    char *rank3 = path_join(fx.ckpt, "zero_rank_00003.h5");
    ckpt_reader *r;
    OK(ckpt_open(fx.main_path, &r));
    expect_range(r, &fx.m, 3, 2, 0, 1); /* opens rank 3's file, which the reader keeps */
    assert_int_equal(unlink(rank3), 0);
    char vds[128];
    snprintf(vds, sizeof vds, "/exp_avg_sq/%s", TENSORS[3].name);
    expect_error(read_whole(r, 2, 3), DSRT_STATUS_IO_ERROR, rank3, "/pieces/1/exp_avg_sq", vds);
    assert_non_null(strstr(dsrt_error_message(), "No such file"));
    /* even a range rank 3 does not hold: the tensor is incomplete */
    float buf[4];
    expect_error(ckpt_read_range(r, "master", TENSORS[2].name, 0, 2, buf), DSRT_STATUS_IO_ERROR,
                 rank3, NULL, NULL);
    expect_range(r, &fx.m, 0, 0, 0, numel_of(0));
    ckpt_close(r);
    free(rank3);
    fixture_teardown(&fx);
}

static void test_bad_main_file(void **state)
{
    (void)state;
    fixture fx;
    fixture_setup(&fx);
    ckpt_reader *r = NULL;
    size_t len;
    unsigned char *orig = slurp(fx.main_path, &len);

    assert_int_equal(truncate(fx.main_path, (off_t)(len / 2)), 0);
    expect_error(ckpt_open(fx.main_path, &r), DSRT_STATUS_IO_ERROR, fx.main_path, "truncated",
                 NULL);
    assert_null(r);
    assert_no_open_hdf5("a truncated main file");
    assert_int_equal(truncate(fx.main_path, 0), 0);
    expect_error(ckpt_open(fx.main_path, &r), DSRT_STATUS_IO_ERROR, fx.main_path, NULL, NULL);
    assert_no_open_hdf5("an empty main file");
    spit(fx.main_path, (const unsigned char *)"{\"not\": \"hdf5\"}\n", 16);
    expect_error(ckpt_open(fx.main_path, &r), DSRT_STATUS_IO_ERROR, fx.main_path, NULL, NULL);
    assert_no_open_hdf5("a main file that is not HDF5");
    char *missing = path_join(fx.ckpt, "nope.h5");
    expect_error(ckpt_open(missing, &r), DSRT_STATUS_IO_ERROR, missing, "No such file", NULL);
    free(missing);
    expect_error(ckpt_open(fx.ckpt, &r), DSRT_STATUS_IO_ERROR, fx.ckpt, "directory", NULL);
    char *rank0 = path_join(fx.ckpt, "zero_rank_00000.h5");
    expect_error(ckpt_open(rank0, &r), DSRT_STATUS_IO_ERROR, rank0, "not a dsrt checkpoint", NULL);
    assert_no_open_hdf5("a rank file opened as the main file");
    free(rank0);

    /* a changed source file name in the mappings (a global heap object,
     * checksummed in the 1.10 format) */
    unsigned char *b = malloc(len);
    assert_non_null(b);
    memcpy(b, orig, len);
    unsigned char *hit = memmem(b, len, "zero_rank_0000", 14);
    assert_non_null(hit);
    hit[0] = 'Z';
    spit(fx.main_path, b, len);
    OK(ckpt_open(fx.main_path, &r));
    int failed = 0;
    for (int k = 0; k < 3; k++)
        for (size_t t = 0; t < NT; t++) {
            dsrt_status st = read_whole(r, k, t);
            if (st == DSRT_STATUS_OK) {
                expect_range(r, &fx.m, t, k, 0, numel_of(t));
            } else {
                expect_error(st, DSRT_STATUS_IO_ERROR, fx.main_path, KIND[k], "checksum");
                failed++;
            }
        }
    assert_true(failed >= 1);
    ckpt_close(r);
    free(b);
    free(orig);
    fixture_teardown(&fx);
}

/* A flipped byte in a link name of the main file: a checksummed object
 * header. HDF5 1.10.8 itself loses 424 bytes on this error path (a plain
 * H5Fopen + H5Lexists + H5Fclose shows it under valgrind), so the valgrind
 * run sets DSRT_CKPT_SKIP_HDF5_LEAK=1 to skip it. */
static void test_corrupt_main_metadata(void **state)
{
    (void)state;
    const char *skip_it = getenv("DSRT_CKPT_SKIP_HDF5_LEAK");
    if (skip_it && skip_it[0] == '1')
        skip();
    fixture fx;
    fixture_setup(&fx);
    ckpt_reader *r = NULL;
    size_t len;
    unsigned char *b = slurp(fx.main_path, &len);
    unsigned char *hit = memmem(b, len, TENSORS[1].name, strlen(TENSORS[1].name));
    assert_non_null(hit);
    hit[3] ^= 0x01;
    spit(fx.main_path, b, len);
    dsrt_status st = ckpt_open(fx.main_path, &r);
    if (st == DSRT_STATUS_OK) {
        int failed = 0;
        for (int k = 0; k < 3; k++) {
            st = read_whole(r, k, 1);
            if (st == DSRT_STATUS_OK)
                expect_range(r, &fx.m, 1, k, 0, numel_of(1));
            else {
                expect_error(st, DSRT_STATUS_IO_ERROR, fx.main_path, KIND[k], "checksum");
                failed++;
            }
        }
        assert_true(failed >= 1);
        ckpt_close(r);
    } else {
        expect_error(st, DSRT_STATUS_IO_ERROR, fx.main_path, NULL, NULL);
        assert_no_open_hdf5("a main file with a corrupt object header");
    }
    free(b);
    fixture_teardown(&fx);
}

/* ------------------------------------------------------------------ whole-file checksums */

/* CRC-32C against its published check value (RFC 3720 B.4: "123456789" ->
 * 0xE3069283), in pieces as in one go, and a sealed file verified, then
 * refused after one changed byte, a truncation, an extension. */
static void test_seal(void **state)
{
    (void)state;
    assert_int_equal(ckpt_crc32c(0, "123456789", 9), 0xE3069283u);
    unsigned char buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 31 + 7);
    uint32_t whole = ckpt_crc32c(0, buf, sizeof buf);
    assert_int_equal(ckpt_crc32c(ckpt_crc32c(0, buf, 3), buf + 3, sizeof buf - 3), whole);
    assert_int_equal(ckpt_crc32c(ckpt_crc32c(0, buf, 501), buf + 501, sizeof buf - 501), whole);
    char *dir = make_tmpdir();
    char *f = path_join(dir, "x.h5");
    spit(f, buf, sizeof buf);
    bool sealed = true;
    OK(ckpt_verify(f, &sealed));
    assert_false(sealed); /* no record yet */
    OK(ckpt_seal(f));
    OK(ckpt_verify(f, &sealed));
    assert_true(sealed);
    buf[500] ^= 1;
    spit(f, buf, sizeof buf);
    expect_error(ckpt_verify(f, &sealed), DSRT_STATUS_IO_ERROR, f, "corrupt: its CRC-32C", NULL);
    spit(f, buf, sizeof buf - 1);
    expect_error(ckpt_verify(f, &sealed), DSRT_STATUS_IO_ERROR, f, "999 bytes, but the save wrote 1000", NULL);
    free(f);
    rm_tree(dir);
}

/* ------------------------------------------------------------------ HDF5's error printing */

static int handler_calls;
static herr_t counting_handler(hid_t stack, void *data)
{
    (void)stack;
    (void)data;
    handler_calls++;
    return 0;
}

/* The host's HDF5 error handler is untouched: never called for our errors,
 * in place again after every call. */
static void test_host_error_handler(void **state)
{
    (void)state;
    H5E_auto2_t saved_fn;
    void *saved_data;
    assert_true(H5Eget_auto2(H5E_DEFAULT, &saved_fn, &saved_data) >= 0);
    int token;
    assert_true(H5Eset_auto2(H5E_DEFAULT, counting_handler, &token) >= 0);

    fixture fx;
    fixture_setup(&fx);
    char *rank3 = path_join(fx.ckpt, "zero_rank_00003.h5");
    assert_int_equal(unlink(rank3), 0);
    ckpt_reader *r;
    OK(ckpt_open(fx.main_path, &r));
    assert_int_equal(read_whole(r, 0, 3), DSRT_STATUS_IO_ERROR);
    int64_t i;
    assert_int_equal(ckpt_read_i64(r, "x/y", &i), DSRT_STATUS_INVALID_ARGUMENT);
    ckpt_close(r);
    assert_int_equal(truncate(fx.main_path, 100), 0);
    assert_int_equal(ckpt_open(fx.main_path, &r), DSRT_STATUS_IO_ERROR);
    H5E_auto2_t fn;
    void *data;
    assert_true(H5Eget_auto2(H5E_DEFAULT, &fn, &data) >= 0);
    assert_true(fn == counting_handler);
    assert_ptr_equal(data, &token);
    assert_int_equal(handler_calls, 0);
    /* and it still works for the host's own calls */
    assert_true(H5Fopen(fx.main_path, H5F_ACC_RDONLY, H5P_DEFAULT) < 0);
    assert_true(handler_calls > 0);

    H5Eset_auto2(H5E_DEFAULT, saved_fn, saved_data);
    free(rank3);
    fixture_teardown(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_world4),
        cmocka_unit_test(test_roundtrip_world1),
        cmocka_unit_test(test_roundtrip_world8),
        cmocka_unit_test(test_vds_prefix_env),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_flipped_data_byte),
        cmocka_unit_test(test_truncated_rank_file),
        cmocka_unit_test(test_missing_rank_file),
        cmocka_unit_test(test_bad_main_file),
        cmocka_unit_test(test_corrupt_main_metadata),
        cmocka_unit_test(test_seal),
        cmocka_unit_test(test_host_error_handler),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    /* HDF5 1.10.8 keeps a few free-list blocks after the metadata checksum
     * failure test_corrupt_main_metadata provokes, and with error printing on it
     * says "HDF5: infinite loop closing library" at exit (a plain program
     * doing the same H5Lexists shows it too). Not ours, and harmless: keep
     * the log clean. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return failed;
}
