/* The safetensors reader and writer (model/safetensors.c): a round trip of
 * every float dtype with metadata and a scalar, fp16/bf16/f64 widened to fp32,
 * and every malformed file refused naming the tensor or key: truncated file,
 * header longer than the file, not JSON, not an object, unknown dtype, bad
 * shape, offsets past the data, a byte range that does not match the shape,
 * overlapping ranges, a hole, bytes left over, a duplicate name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/internal.h"
#include "kernels/common/dtype.h"
#include "model/safetensors.h"

static char dir[] = "/tmp/dsrt_test_st_XXXXXX";

static void test_round_trip(void **state)
{
    (void)state;
    float a[6] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 65504.0f};
    uint16_t h[4], bf[4];
    double d[2] = {0.1, -7.0};
    float want_h[4] = {0.5f, -1.0f, 2.0f, 3.0f};
    for (int i = 0; i < 4; i++) {
        h[i] = dsrt_f32_to_f16(want_h[i]);
        bf[i] = dsrt_f32_to_bf16(want_h[i]);
    }
    float scalar = 42.0f;
    st_tensor t[5] = {
        {.name = "model.layers.0.weight", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = a, .nbytes = sizeof a},
        {.name = "h", .dtype = ST_F16, .ndim = 1, .shape = {4}, .data = h, .nbytes = sizeof h},
        {.name = "b \"quoted\"", .dtype = ST_BF16, .ndim = 2, .shape = {2, 2}, .data = bf, .nbytes = sizeof bf},
        {.name = "d", .dtype = ST_F64, .ndim = 1, .shape = {2}, .data = d, .nbytes = sizeof d},
        {.name = "scalar", .dtype = ST_F32, .ndim = 0, .data = &scalar, .nbytes = 4},
    };
    const char *meta[] = {"format", "pt", "producer", "dsrt"};
    char path[256];
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    assert_int_equal(st_write(path, t, 5, meta, 2), DSRT_STATUS_OK);
    st_file f;
    if (st_open(path, &f))
        fail_msg("%s", dsrt_error_message());
    assert_int_equal(f.n, 5);
    assert_int_equal(f.n_meta, 2);
    assert_string_equal(f.meta[0], "format");
    assert_string_equal(f.meta[1], "pt");
    float got[6];
    const st_tensor *x = st_find(&f, "model.layers.0.weight");
    assert_non_null(x);
    assert_int_equal(x->ndim, 2);
    assert_int_equal(x->shape[1], 3);
    assert_int_equal(st_to_f32(x, got), DSRT_STATUS_OK);
    assert_memory_equal(got, a, sizeof a);
    assert_int_equal(st_to_f32(st_find(&f, "h"), got), DSRT_STATUS_OK);
    assert_memory_equal(got, want_h, sizeof want_h);
    assert_int_equal(st_to_f32(st_find(&f, "b \"quoted\""), got), DSRT_STATUS_OK);
    assert_memory_equal(got, want_h, sizeof want_h);
    assert_int_equal(st_to_f32(st_find(&f, "d"), got), DSRT_STATUS_OK);
    assert_true(got[0] == 0.1f && got[1] == -7.0f);
    x = st_find(&f, "scalar");
    assert_int_equal(x->ndim, 0);
    assert_int_equal(st_to_f32(x, got), DSRT_STATUS_OK);
    assert_true(got[0] == 42.0f);
    assert_null(st_find(&f, "missing"));
    /* the header is padded to 8 bytes, so the data starts aligned */
    assert_int_equal(((const char *)st_find(&f, "model.layers.0.weight")->data - (const char *)f.map) % 8, 0);
    st_close(&f);
}

/* a file from a header text and n data bytes */
static dsrt_status try_header(const char *hdr, size_t data_bytes, long header_len_delta)
{
    size_t hl = strlen(hdr), size = 8 + hl + data_bytes;
    unsigned char *b = calloc(1, size);
    uint64_t len = (uint64_t)((long)hl + header_len_delta);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(len >> (8 * i));
    memcpy(b + 8, hdr, hl);
    dsrt_status st = st_check_bytes(b, size, "x.safetensors");
    free(b);
    return st;
}

static void expect_refused(const char *hdr, size_t data, long delta, const char *needle)
{
    dsrt_status st = try_header(hdr, data, delta);
    if (st == DSRT_STATUS_OK)
        fail_msg("accepted: %s", hdr);
    if (!strstr(dsrt_error_message(), needle))
        fail_msg("for %s: '%s' does not say '%s'", hdr, dsrt_error_message(), needle);
}

static void test_malformed(void **state)
{
    (void)state;
    const char *ok = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    assert_int_equal(try_header(ok, 8, 0), DSRT_STATUS_OK);
    assert_int_equal(st_check_bytes("abc", 3, "t.safetensors"), DSRT_STATUS_INVALID_ARGUMENT);
    expect_refused(ok, 8, 100, "exceeds the file");
    expect_refused("{\"w\": [", 0, 0, "not JSON");
    expect_refused("[1, 2]", 0, 0, "not an object");
    expect_refused("{\"w\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, 0, "tensor \"w\": dtype F8");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0, "tensor \"w\": shape[-2]");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, 0, "shape[2.0]");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, 0, "past the data section");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0, "need 12");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                   8, 0, "overlaps");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, "a hole");
    expect_refused(ok, 12, 0, "cover 8 of the data section's 12 bytes");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                   8, 0, "duplicate key \"w\"");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, 0, "data_offsets must be");
    expect_refused("{\"__metadata__\":{\"k\":1}}", 0, 0, "__metadata__.k must be a string");
    /* a truncated copy of a real file: refused naming the tensor past the end */
    char path[256];
    snprintf(path, sizeof path, "%s/trunc.safetensors", dir);
    float v[4] = {1, 2, 3, 4};
    st_tensor t = {.name = "v", .dtype = ST_F32, .ndim = 1, .shape = {4}, .data = v, .nbytes = sizeof v};
    assert_int_equal(st_write(path, &t, 1, NULL, 0), DSRT_STATUS_OK);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long full = ftell(fp);
    fclose(fp);
    assert_int_equal(truncate(path, full - 8), 0); /* the last two floats gone */
    st_file f;
    dsrt_status st = st_open(path, &f);
    assert_int_not_equal(st, DSRT_STATUS_OK);
    assert_non_null(strstr(dsrt_error_message(), "trunc.safetensors"));
    /* a wrong byte count is refused by the writer */
    t.nbytes = 12;
    assert_int_equal(st_write(path, &t, 1, NULL, 0), DSRT_STATUS_INVALID_ARGUMENT);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_malformed),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd))
        rc = rc ? rc : 1;
    return rc;
}
