/* dsrt-train's data (launcher/dataset.c): JSONL sequences with -100 masks
 * and Megatron-LM indexed datasets read and checked, every refusal naming
 * the file, line or sequence; the rows a micro-batch gets (cut to T, padded,
 * labels shifted by one inside each sequence as transformers shifts them);
 * a fresh shuffle each epoch from the seed alone; the held-out split; and
 * the llm.c token stream unchanged. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "launcher/dataset.h"

static char g_dir[64];

static const char *write_file(const char *name, const void *data, size_t n)
{
    static char path[8][256];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 256, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return p;
}

static const char *write_text(const char *name, const char *text) { return write_file(name, text, strlen(text)); }

static void test_jsonl_rows(void **state)
{
    (void)state;
    const char *p = write_text("a.jsonl", "{\"input_ids\": [5, 6, 7, 8], \"labels\": [-100, -100, 7, 8]}\n"
                                          "\n"
                                          "{\"attention_mask\": [1, 1], \"input_ids\": [9, 10], \"extra\": {\"x\": [1, "
                                          "\"]\"]}}\n"
                                          "{\"input_ids\": [1, 2, 3, 4, 5, 6, 7]}\n");
    dataset d;
    assert_int_equal(dataset_load(p, 16, 0, 1, &d), 0);
    assert_int_equal(d.sequences, 1);
    assert_int_equal(d.n_seq, 3);
    assert_int_equal(d.n_train, 3);
    /* one epoch of 3 single-sequence micro-batches is a permutation */
    int seen[3] = {0};
    int32_t inp[5], tgt[5];
    for (long c = 0; c < 3; c++) {
        dataset_batch(&d, c, 1, 5, inp, tgt);
        int which = inp[0] == 5 ? 0 : inp[0] == 9 ? 1 : 2;
        seen[which]++;
        if (which == 0) { /* padded: targets are the next labels, -100 past the end */
            int32_t want_in[5] = {5, 6, 7, 8, 0}, want_tg[5] = {-100, 7, 8, -100, -100};
            assert_memory_equal(inp, want_in, sizeof inp);
            assert_memory_equal(tgt, want_tg, sizeof tgt);
        } else if (which == 2) { /* cut to 5: the last position has no target */
            int32_t want_in[5] = {1, 2, 3, 4, 5}, want_tg[5] = {2, 3, 4, 5, -100};
            assert_memory_equal(inp, want_in, sizeof inp);
            assert_memory_equal(tgt, want_tg, sizeof tgt);
        } else { /* no labels: the ids */
            int32_t want_tg[5] = {10, -100, -100, -100, -100};
            assert_memory_equal(tgt, want_tg, sizeof tgt);
        }
    }
    assert_true(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
    dataset_free(&d);
}

static void test_shuffle(void **state)
{
    (void)state;
    char text[8192] = "";
    for (int i = 0; i < 50; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "{\"input_ids\": [%d, 1]}\n", i + 2);
    const char *p = write_text("s.jsonl", text);
    dataset d1, d2;
    assert_int_equal(dataset_load(p, 64, 0, 42, &d1), 0);
    assert_int_equal(dataset_load(p, 64, 0, 42, &d2), 0);
    int32_t a[50 * 2], t[50 * 2], b[50 * 2];
    /* epoch 0 and epoch 1 (samples 50..99): each a permutation, not the same */
    dataset_batch(&d1, 0, 50, 2, a, t);
    dataset_batch(&d1, 1, 50, 2, b, t);
    int in_a[52] = {0}, in_b[52] = {0}, same = 0, identity = 0;
    for (int i = 0; i < 50; i++) {
        in_a[a[2 * i]]++, in_b[b[2 * i]]++;
        same += a[2 * i] == b[2 * i];
        identity += a[2 * i] == i + 2;
    }
    for (int v = 2; v < 52; v++)
        assert_true(in_a[v] == 1 && in_b[v] == 1);
    assert_true(same < 10 && identity < 10);
    /* the order depends on the seed and the sample alone: batch 1 first on a
     * fresh reader (a resumed run) gives the same rows */
    int32_t c1[2 * 5], c2[2 * 5];
    dataset_batch(&d2, 13, 5, 2, c2, t);
    dataset_batch(&d1, 13, 5, 2, c1, t);
    assert_memory_equal(c1, c2, sizeof c1);
    dataset_free(&d1);
    dataset_free(&d2);
    /* another seed, another order */
    assert_int_equal(dataset_load(p, 64, 0, 43, &d1), 0);
    dataset_batch(&d1, 0, 50, 2, b, t);
    assert_true(memcmp(a, b, sizeof a) != 0);
    /* the held-out split: the last 10% of the sequences */
    dataset_free(&d1);
    assert_int_equal(dataset_load(p, 64, 1, 42, &d1), 0);
    assert_int_equal(d1.n_train, 45);
    const char *unit = NULL;
    assert_int_equal(dataset_heldout(&d1, &unit), 5);
    assert_string_equal(unit, "sequences");
    int32_t e[5 * 2];
    assert_int_equal(dataset_eval(&d1, 16, 2, e, t), 5);
    assert_int_equal(e[0], 47);
    dataset_free(&d1);
}

static void expect_refused(const char *name, const char *text, const char *needle)
{
    const char *p = write_text(name, text);
    dataset d;
    char *buf = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&buf, &len);
    FILE *saved = stderr;
    stderr = err;
    int rc = dataset_load(p, 16, 0, 1, &d);
    stderr = saved;
    fclose(err);
    if (rc == 0)
        fail_msg("%s loaded: %s", name, text);
    if (!strstr(buf, needle))
        fail_msg("%s: \"%s\" does not say %s", name, buf, needle);
    free(buf);
}

static void test_jsonl_errors(void **state)
{
    (void)state;
    expect_refused("e1.jsonl", "{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, 99]}\n", "e1.jsonl:2: input_ids[1] = 99");
    expect_refused("e2.jsonl", "{\"input_ids\": [1, 2], \"labels\": [1]}\n", "e2.jsonl:1: \"labels\" has 1 entries");
    expect_refused("e3.jsonl", "{\"input_ids\": [1, 2], \"labels\": [-100, -7]}\n", "labels[1] = -7");
    expect_refused("e4.jsonl", "{\"labels\": [1, 2]}\n", "e4.jsonl:1: no \"input_ids\"");
    expect_refused("e5.jsonl", "{\"input_ids\": [1, 2.5]}\n", "\"input_ids\"[1] is not an integer");
    expect_refused("e6.jsonl", "[1, 2]\n", "e6.jsonl:1: each line must be a JSON object");
    expect_refused("e7.jsonl", "{\"input_ids\": [1, 2]} x\n", "text after the object");
    expect_refused("e8.jsonl", "{\"input_ids\": []}\n", "is empty");
    expect_refused("e9.jsonl", "\n\n", "no sequences");
    expect_refused("e10.jsonl", "{\"input_ids\": [1, 2], \"note\": \"unterminated}\n", "unterminated string");
}

/* a Megatron index: magic, version, dtype code, counts, lengths, pointers, documents */
static void write_megatron(const char *prefix, int code, const int32_t *lens, int n, const void *tokens,
                           size_t token_bytes)
{
    static const int esz[9] = {0, 1, 1, 2, 4, 8, 8, 4, 2};
    char name[64];
    size_t isz = 34 + 12 * (size_t)n + 8 * (size_t)(n + 1);
    unsigned char *ix = calloc(1, isz);
    memcpy(ix, "MMIDIDX\0\0", 9);
    uint64_t v = 1, ns = (uint64_t)n, nd = (uint64_t)n + 1;
    memcpy(ix + 9, &v, 8);
    ix[17] = (unsigned char)code;
    memcpy(ix + 18, &ns, 8);
    memcpy(ix + 26, &nd, 8);
    int64_t ptr = 0;
    for (int i = 0; i < n; i++) {
        memcpy(ix + 34 + 4 * i, &lens[i], 4);
        memcpy(ix + 34 + 4 * (size_t)n + 8 * i, &ptr, 8);
        ptr += lens[i] * esz[code];
    }
    snprintf(name, sizeof name, "%s.idx", prefix);
    write_file(name, ix, isz);
    snprintf(name, sizeof name, "%s.bin", prefix);
    write_file(name, tokens, token_bytes);
    free(ix);
}

static void test_megatron(void **state)
{
    (void)state;
    int32_t lens[3] = {3, 1, 2};
    uint16_t toks[6] = {4, 5, 6, 7, 8, 9};
    write_megatron("m", 8, lens, 3, toks, sizeof toks);
    char path[256];
    snprintf(path, sizeof path, "%s/m.bin", g_dir); /* the .bin names the pair when its .idx is there */
    dataset d;
    assert_int_equal(dataset_load(path, 16, 0, 1, &d), 0);
    assert_string_equal(d.format, "megatron");
    assert_int_equal(d.n_seq, 3);
    assert_int_equal(d.off[3], 6);
    int32_t want[6] = {4, 5, 6, 7, 8, 9};
    assert_memory_equal(d.ids, want, sizeof want);
    assert_memory_equal(d.labels, want, sizeof want);
    dataset_free(&d);
    /* int32 tokens through the .idx name */
    int32_t t32[6] = {1, 2, 3, 4, 5, 6};
    write_megatron("m32", 4, lens, 3, t32, sizeof t32);
    snprintf(path, sizeof path, "%s/m32.idx", g_dir);
    assert_int_equal(dataset_load(path, 16, 0, 1, &d), 0);
    assert_int_equal(d.ids[5], 6);
    dataset_free(&d);
    /* a token past the vocabulary, a sequence past the .bin */
    toks[4] = 40;
    write_megatron("bad", 8, lens, 3, toks, sizeof toks);
    snprintf(path, sizeof path, "%s/bad.idx", g_dir);
    assert_int_equal(dataset_load(path, 16, 0, 1, &d), -1);
    toks[4] = 8;
    write_megatron("short", 8, lens, 3, toks, 8);
    snprintf(path, sizeof path, "%s/short.idx", g_dir);
    assert_int_equal(dataset_load(path, 16, 0, 1, &d), -1);
}

/* llm.c tokens: a stream, windows as before */
static void test_stream(void **state)
{
    (void)state;
    uint16_t t[40];
    for (int i = 0; i < 40; i++)
        t[i] = (uint16_t)i;
    const char *p = write_file("s.bin", t, sizeof t);
    dataset d;
    assert_int_equal(dataset_load(p, 64, 0, 1, &d), 0);
    assert_int_equal(d.sequences, 0);
    assert_int_equal(dataset_check(&d, p, 2, 8), 0);
    assert_int_equal(dataset_check(&d, p, 5, 8), -1); /* 41 tokens needed */
    int32_t inp[16], tgt[16];
    dataset_batch(&d, 1, 2, 8, inp, tgt);
    assert_int_equal(inp[0], 16);
    assert_int_equal(tgt[15], 32);
    dataset_batch(&d, 2, 2, 8, inp, tgt); /* wraps: 2 windows fit 39 targets */
    assert_int_equal(inp[0], 0);
    dataset_free(&d);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/dsrt_test_dataset.XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonl_rows), cmocka_unit_test(test_shuffle),   cmocka_unit_test(test_jsonl_errors),
        cmocka_unit_test(test_megatron),   cmocka_unit_test(test_stream),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
