/* The JSON/hjson reader (base/json.c): what hjson-py accepts, duplicate
 * keys, exact integers, locations, and hostile input. Expected values were
 * checked against hjson-py 3.1 (DeepSpeed's loader). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/json.h"

static json_doc *parse(const char *s, json_error *e) { return json_parse(s, strlen(s), e); }

static const json_value *root_of(json_doc *d)
{
    assert_non_null(d);
    return json_doc_root(d);
}

static void test_plain_json(void **state)
{
    (void)state;
    json_error e;
    json_doc *d = parse("{\"a\": 1, \"b\": [true, false, null, \"x\\u00e9\\ud83d\\ude00\"], \"c\": {\"d\": -2.5}}", &e);
    const json_value *r = root_of(d);
    assert_int_equal(r->type, JSON_OBJECT);
    assert_int_equal(r->u.obj.count, 3);
    assert_int_equal(json_object_get(r, "a")->u.num.i, 1);
    const json_value *b = json_object_get(r, "b");
    assert_int_equal(b->u.arr.count, 4);
    assert_int_equal(b->u.arr.items[2]->type, JSON_NULL);
    assert_string_equal(b->u.arr.items[3]->u.str.s, "x\xc3\xa9\xf0\x9f\x98\x80");
    assert_true(json_object_get(json_object_get(r, "c"), "d")->u.num.d == -2.5);
    json_doc_free(d);
}

static void test_hjson_forms(void **state)
{
    (void)state;
    json_error e;
    /* comments, trailing commas, missing commas at line ends, quoteless keys, BOM */
    json_doc *d = parse("\xEF\xBB\xBF# c\n{\n // c\n a: 1\n \"b\": 2, /* c */\n c: [1\n 2,],\n}\n", &e);
    const json_value *r = root_of(d);
    assert_int_equal(r->u.obj.count, 3);
    assert_int_equal(json_object_get(r, "c")->u.arr.count, 2);
    json_doc_free(d);
    /* quoteless strings run to the end of the line; literals end at a separator */
    d = parse("{\n\"m\": BATCH_SIZE_PER_GPU,\n\"s\": 2,\n\"t\": 2 # c\n\"u\": 2 x\n\"v\": true,\n\"w\": 0x10\n}", &e);
    r = root_of(d);
    assert_string_equal(json_object_get(r, "m")->u.str.s, "BATCH_SIZE_PER_GPU,");
    assert_int_equal(json_object_get(r, "s")->u.num.i, 2);
    assert_int_equal(json_object_get(r, "t")->u.num.i, 2);
    assert_string_equal(json_object_get(r, "u")->u.str.s, "2 x");
    assert_int_equal(json_object_get(r, "v")->type, JSON_BOOL);
    assert_string_equal(json_object_get(r, "w")->u.str.s, "0x10");
    json_doc_free(d);
    /* root braces omitted */
    d = parse("// comment\n\"a\": 1\n\"b\": {\"c\": 2}\n", &e);
    r = root_of(d);
    assert_int_equal(r->type, JSON_OBJECT);
    assert_int_equal(r->u.obj.count, 2);
    json_doc_free(d);
    /* single quotes and multiline strings */
    d = parse("{a: 'it''s'}", &e);
    assert_null(d);
    d = parse("{a: 'x\\'y', b: '''\n  one\n  two\n  '''}", &e);
    r = root_of(d);
    assert_string_equal(json_object_get(r, "a")->u.str.s, "x'y");
    json_doc_free(d);
}

static void test_numbers(void **state)
{
    (void)state;
    json_error e;
    json_doc *d = parse("[2e8, 16.0, 1E3, 0.5, 9223372036854775807, -9223372036854775808, 9223372036854775808,"
                        " 1e19, 1e999, 9007199254740993.0, 12345678901234567890e-1, -0, 1.5e0]",
                        &e);
    const json_value *r = root_of(d);
    json_value **it = r->u.arr.items;
    assert_int_equal(it[0]->u.num.kind, JSON_NUM_INTEGRAL);
    assert_int_equal(it[0]->u.num.i, 200000000);
    assert_int_equal(it[1]->u.num.kind, JSON_NUM_INTEGRAL);
    assert_int_equal(it[1]->u.num.i, 16);
    assert_int_equal(it[2]->u.num.i, 1000);
    assert_int_equal(it[3]->u.num.kind, JSON_NUM_FRACTIONAL);
    assert_int_equal(it[4]->u.num.kind, JSON_NUM_INT);
    assert_true(it[4]->u.num.i == INT64_MAX);
    assert_true(it[5]->u.num.i == INT64_MIN);
    assert_int_equal(it[6]->u.num.kind, JSON_NUM_OUT_OF_RANGE);
    assert_int_equal(it[7]->u.num.kind, JSON_NUM_OUT_OF_RANGE);
    assert_int_equal(it[8]->u.num.kind, JSON_NUM_NONFINITE);
    assert_int_equal(it[9]->u.num.kind, JSON_NUM_INTEGRAL);
    assert_true(it[9]->u.num.i == 9007199254740993LL);
    assert_int_equal(it[10]->u.num.kind, JSON_NUM_INTEGRAL);
    assert_true(it[10]->u.num.i == 1234567890123456789LL);
    assert_int_equal(it[11]->u.num.kind, JSON_NUM_INT);
    assert_int_equal(it[12]->u.num.kind, JSON_NUM_FRACTIONAL);
    assert_string_equal(it[0]->u.num.text, "2e8");
    json_doc_free(d);
}

static void test_errors_and_locations(void **state)
{
    (void)state;
    json_error e;
    assert_null(parse("{\"a\": {\"b\": 1,\n \"b\": 2}}", &e));
    assert_string_equal(e.msg, "duplicate key \"b\" (first defined on line 1)");
    assert_int_equal(e.line, 2);
    assert_string_equal(e.path, "a.b");
    assert_null(parse("{\"a\": [1, \"x]}", &e));
    assert_string_equal(e.msg, "unterminated string");
    assert_null(parse("{\"a\" 1}", &e));
    assert_non_null(strstr(e.msg, "expected ':'"));
    assert_null(parse("{\"a\": 1", &e));
    assert_non_null(strstr(e.msg, "unterminated object"));
    assert_null(parse("", &e));
    assert_null(parse("{\"a\": \"\\q\"}", &e));
    assert_non_null(strstr(e.msg, "invalid escape"));
    assert_null(json_parse("{\"a\": 1}\0x", 10, &e));
    assert_non_null(strstr(e.msg, "NUL"));
    assert_null(parse("{\"a\": \"\xff\"}", &e));
    assert_non_null(strstr(e.msg, "UTF-8"));
    assert_null(parse("{\"a\": 1} {", &e));
    assert_null(parse("{\"a\": 1, \"b\": [1, 2,, 3]}", &e));
    assert_string_equal(e.path, "b[2]");
}

static void test_hostile(void **state)
{
    (void)state;
    json_error e;
    size_t depth = 100000;
    char *s = malloc(depth + 1);
    memset(s, '[', depth);
    s[depth] = '\0';
    assert_null(parse(s, &e));
    assert_non_null(strstr(e.msg, "nesting deeper"));
    free(s);
    /* many keys: duplicate detection must stay linear */
    size_t n = 200000, cap = n * 24 + 16, k = 0;
    s = malloc(cap);
    k += (size_t)sprintf(s + k, "{");
    for (size_t i = 0; i < n; i++)
        k += (size_t)sprintf(s + k, "%s\"k%zu\": %zu", i ? "," : "", i, i);
    sprintf(s + k, "}");
    json_doc *d = parse(s, &e);
    assert_int_equal(root_of(d)->u.obj.count, n);
    json_doc_free(d);
    free(s);
    /* random bytes */
    unsigned seed = 7;
    char buf[512];
    for (int r = 0; r < 2000; r++) {
        size_t len = (size_t)r % sizeof buf;
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1664525u + 1013904223u;
            buf[i] = "{}[]\":,'#/*\n 0123456789.eE-+truefalsnl\\abc"[(seed >> 16) % 43];
        }
        json_doc_free(json_parse(buf, len, &e));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_json),  cmocka_unit_test(test_hjson_forms), cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_errors_and_locations), cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
