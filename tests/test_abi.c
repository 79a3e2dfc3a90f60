/* The ABI as a host sees it: this program is not linked to libdsrt.so; it
 * dlopen()s the file named on its command line and goes through the table.
 * Covers the size handshake in both directions, errors as values, the log
 * callback, handle lifetimes, and repeated load/use/unload cycles (run under
 * LeakSanitizer in the asan variant and under valgrind by ctest). */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dsrt.h"

static const char *lib_path;

typedef struct loaded {
    void *so;
    const dsrt_api *api;
} loaded;

static loaded load(void)
{
    loaded l;
    l.so = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
    if (!l.so)
        fail_msg("dlopen %s: %s", lib_path, dlerror());
    dsrt_get_api_fn get = (dsrt_get_api_fn)dlsym(l.so, DSRT_GET_API_SYMBOL);
    assert_non_null(get);
    l.api = get();
    assert_non_null(l.api);
    return l;
}

static void unload(loaded *l)
{
    assert_int_equal(dlclose(l->so), 0);
    l->so = NULL;
    l->api = NULL;
}

static const char design_card[] =
    "{\n"
    "  \"train_batch_size\": 8,\n"
    "  \"gradient_accumulation_steps\": 1,\n"
    "  \"steps_per_print\": 100,\n"
    "  \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 2e-5, \"weight_decay\": 0.01,\n"
    "                 \"betas\": [0.9, 0.999], \"eps\": 1e-8}},\n"
    "  \"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {\"warmup_min_lr\": 0, \"warmup_max_lr\": 2e-5,\n"
    "                 \"warmup_num_steps\": 500, \"total_num_steps\": 10000}},\n"
    "  \"fp16\": {\"enabled\": true, \"loss_scale\": 0, \"loss_scale_window\": 1000, \"hysteresis\": 2,\n"
    "            \"min_loss_scale\": 1},\n"
    "  \"zero_optimization\": {\"stage\": 2, \"allgather_partitions\": true, \"reduce_scatter\": true,\n"
    "                        \"allgather_bucket_size\": 2e8, \"reduce_bucket_size\": 2e8,\n"
    "                        \"overlap_comm\": true, \"contiguous_gradients\": true}\n"
    "}\n";

static dsrt_config *create_text(const dsrt_api *api, const char *text, int32_t world, dsrt_status *status)
{
    dsrt_config_create_args a = {.struct_size = sizeof a, .text = text, .text_length = strlen(text),
                                 .world_size = world};
    *status = api->config_create(&a);
    return a.config;
}

static void destroy(const dsrt_api *api, dsrt_config *c)
{
    dsrt_config_destroy_args d = {.struct_size = sizeof d, .config = c};
    assert_int_equal(api->config_destroy(&d), DSRT_STATUS_OK);
}

static const char *last_error(const dsrt_api *api, dsrt_status *status)
{
    static char buf[1024];
    dsrt_last_error_args e = {.struct_size = sizeof e, .buffer = buf, .buffer_size = sizeof buf};
    assert_int_equal(api->last_error(&e), DSRT_STATUS_OK);
    if (status)
        *status = e.status;
    return buf;
}

/* ---------------------------------------------------------------- the table */

static void test_table(void **state)
{
    (void)state;
    loaded l = load();
    assert_int_equal(l.api->abi_major, DSRT_ABI_MAJOR);
    assert_true(l.api->struct_size >= offsetof(dsrt_api, config_summary) + sizeof(void *));
    assert_non_null(l.api->version);
    assert_non_null(l.api->config_summary);
    /* the table is process-lifetime constant: the same pointer every time */
    dsrt_get_api_fn get = (dsrt_get_api_fn)dlsym(l.so, DSRT_GET_API_SYMBOL);
    assert_ptr_equal(get(), l.api);
    /* nothing but the entry point is visible */
    assert_null(dlsym(l.so, "config_create"));
    assert_null(dlsym(l.so, "json_parse"));
    assert_null(dlsym(l.so, "cudaGetDeviceCount"));
    unload(&l);
}

static void test_version(void **state)
{
    (void)state;
    loaded l = load();
    dsrt_version_args v = {.struct_size = sizeof v};
    assert_int_equal(l.api->version(&v), DSRT_STATUS_OK);
    assert_int_equal(v.abi_major, DSRT_ABI_MAJOR);
    assert_non_null(v.version);
    assert_true(strlen(v.version) > 0);
    assert_non_null(v.build);
    assert_string_equal(v.deepspeed_compat, "0.19.6");
    assert_true(v.cuda_devices >= 0);
    unload(&l);
}

/* ---------------------------------------------------------------- size handshake */

static void test_older_smaller_struct(void **state)
{
    (void)state;
    loaded l = load();
    /* version(): a host whose header ended at `version` */
    struct {
        dsrt_version_args a;
    } buf;
    memset(&buf, 0xAB, sizeof buf);
    buf.a.struct_size = DSRT_VERSION_ARGS_MIN_SIZE;
    assert_int_equal(l.api->version(&buf.a), DSRT_STATUS_OK);
    assert_int_equal(buf.a.abi_major, DSRT_ABI_MAJOR);
    assert_non_null(buf.a.version);
    /* nothing written past the caller's struct_size */
    const unsigned char *p = (const unsigned char *)&buf + DSRT_VERSION_ARGS_MIN_SIZE;
    for (size_t i = 0; i < sizeof buf - DSRT_VERSION_ARGS_MIN_SIZE; i++)
        assert_int_equal(p[i], 0xAB);

    /* config_create(): a host without the optional hf_values fields */
    struct old_create {
        size_t struct_size;
        const char *path;
        const char *text;
        size_t text_length;
        int32_t world_size;
        dsrt_config *config;
    } oc = {sizeof oc, NULL, design_card, sizeof design_card - 1, 2, NULL};
    assert_int_equal(sizeof oc, DSRT_CONFIG_CREATE_ARGS_MIN_SIZE);
    assert_int_equal(l.api->config_create((dsrt_config_create_args *)&oc), DSRT_STATUS_OK);
    assert_non_null(oc.config);
    dsrt_config_summary_args s = {.struct_size = sizeof s, .config = oc.config};
    assert_int_equal(l.api->config_summary(&s), DSRT_STATUS_OK);
    assert_int_equal(s.world_size, 2);
    assert_int_equal(s.train_micro_batch_size_per_gpu, 4);
    destroy(l.api, oc.config);
    unload(&l);
}

static void test_too_small_struct(void **state)
{
    (void)state;
    loaded l = load();
    dsrt_version_args v = {.struct_size = 4};
    assert_int_equal(l.api->version(&v), DSRT_STATUS_INVALID_ARGUMENT);
    dsrt_status st;
    const char *msg = last_error(l.api, &st);
    assert_int_equal(st, DSRT_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "struct_size 4"));
    assert_int_equal(l.api->version(NULL), DSRT_STATUS_INVALID_ARGUMENT);
    dsrt_config_create_args c = {.struct_size = DSRT_CONFIG_CREATE_ARGS_MIN_SIZE - 1, .text = "{}"};
    assert_int_equal(l.api->config_create(&c), DSRT_STATUS_INVALID_ARGUMENT);
    unload(&l);
}

static void test_newer_larger_struct(void **state)
{
    (void)state;
    loaded l = load();
    /* A host built against a newer header: unknown trailing fields at zero
     * are accepted, a set one is refused (the host wants a feature we lack). */
    struct {
        dsrt_version_args a;
        uint64_t future[4];
    } big;
    memset(&big, 0, sizeof big);
    big.a.struct_size = sizeof big;
    assert_int_equal(l.api->version(&big.a), DSRT_STATUS_OK);
    assert_int_equal(big.a.abi_major, DSRT_ABI_MAJOR);
    assert_true(big.future[0] == 0 && big.future[3] == 0);

    big.future[2] = 7;
    assert_int_equal(l.api->version(&big.a), DSRT_STATUS_UNSUPPORTED);
    dsrt_status st;
    const char *msg = last_error(l.api, &st);
    assert_int_equal(st, DSRT_STATUS_UNSUPPORTED);
    assert_non_null(strstr(msg, "larger than this library's"));
    unload(&l);
}

/* ---------------------------------------------------------------- configs and errors */

static void test_config_roundtrip(void **state)
{
    (void)state;
    loaded l = load();
    dsrt_status st;
    dsrt_config *c = create_text(l.api, design_card, 1, &st);
    assert_int_equal(st, DSRT_STATUS_OK);
    assert_non_null(c);
    dsrt_config_summary_args s = {.struct_size = sizeof s, .config = c};
    assert_int_equal(l.api->config_summary(&s), DSRT_STATUS_OK);
    assert_int_equal(s.train_batch_size, 8);
    assert_int_equal(s.train_micro_batch_size_per_gpu, 8);
    assert_int_equal(s.gradient_accumulation_steps, 1);
    assert_int_equal(s.zero_stage, 2);
    assert_int_equal(s.precision, DSRT_PRECISION_FP16);
    assert_int_equal(s.steps_per_print, 100);
    /* no gradient_clipping key: DeepSpeed >= 0.19.3's default 1.0 */
    assert_true(s.gradient_clipping == 1.0);

    dsrt_config_to_json_args j = {.struct_size = sizeof j, .config = c, .indent = 2};
    assert_int_equal(l.api->config_to_json(&j), DSRT_STATUS_OK);
    assert_non_null(j.json);
    assert_int_equal(strlen(j.json), j.json_length);
    assert_non_null(strstr(j.json, "\"reduce_bucket_size\": 200000000"));
    assert_non_null(strstr(j.json, "\"initial_scale_power\": 16"));

    /* the printed config reads back to the same printed config */
    dsrt_config *c2 = create_text(l.api, j.json, 1, &st);
    assert_int_equal(st, DSRT_STATUS_OK);
    dsrt_config_to_json_args j2 = {.struct_size = sizeof j2, .config = c2, .indent = 2};
    assert_int_equal(l.api->config_to_json(&j2), DSRT_STATUS_OK);
    assert_string_equal(j.json, j2.json);
    destroy(l.api, c2);
    destroy(l.api, c);
    destroy(l.api, NULL); /* NULL is fine */
    unload(&l);
}

static void test_rejection_is_one_line(void **state)
{
    (void)state;
    loaded l = load();
    dsrt_status st;
    dsrt_config *c = create_text(l.api, "{\"train_batch_size\": 8,\n \"zero_optimization\": {\"stage\": 7}}", 1, &st);
    assert_int_equal(st, DSRT_STATUS_INVALID_CONFIG);
    assert_null(c);
    dsrt_status est;
    const char *msg = last_error(l.api, &est);
    assert_int_equal(est, DSRT_STATUS_INVALID_CONFIG);
    assert_string_equal(msg, "error: zero_optimization.stage: must be <= 3 (got 7) [<text>:2]");
    assert_null(strchr(msg, '\n'));

    /* a later successful call clears it */
    dsrt_version_args v = {.struct_size = sizeof v};
    assert_int_equal(l.api->version(&v), DSRT_STATUS_OK);
    msg = last_error(l.api, &est);
    assert_int_equal(est, DSRT_STATUS_OK);
    assert_string_equal(msg, "");

    /* truncation and the full length */
    c = create_text(l.api, "{\"train_batch_size\": \"eight\"}", 1, &st);
    assert_int_equal(st, DSRT_STATUS_INVALID_CONFIG);
    char small[8];
    dsrt_last_error_args e = {.struct_size = sizeof e, .buffer = small, .buffer_size = sizeof small};
    assert_int_equal(l.api->last_error(&e), DSRT_STATUS_OK);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_true(e.message_length > sizeof small);
    unload(&l);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    loaded l = load();
    dsrt_config_create_args a = {.struct_size = sizeof a};
    assert_int_equal(l.api->config_create(&a), DSRT_STATUS_INVALID_ARGUMENT); /* neither path nor text */
    a.path = "/nonexistent/ds_config.json";
    assert_int_equal(l.api->config_create(&a), DSRT_STATUS_IO_ERROR);
    assert_non_null(strstr(last_error(l.api, NULL), "/nonexistent/ds_config.json"));
    const char *bad[] = {"learning_rat=1e-4"};
    dsrt_config_create_args b = {.struct_size = sizeof b, .text = design_card, .text_length = strlen(design_card),
                                 .hf_values = bad, .hf_value_count = 1};
    assert_int_equal(l.api->config_create(&b), DSRT_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(last_error(l.api, NULL), "learning_rat"));
    dsrt_config_to_json_args j = {.struct_size = sizeof j};
    assert_int_equal(l.api->config_to_json(&j), DSRT_STATUS_INVALID_ARGUMENT);
    dsrt_log_set_args ls = {.struct_size = sizeof ls, .min_level = (dsrt_log_level)9};
    assert_int_equal(l.api->log_set(&ls), DSRT_STATUS_INVALID_ARGUMENT);
    unload(&l);
}

/* ---------------------------------------------------------------- diagnostics and logging */

static int n_logged;
static char logged[4][512];

static void collect(void *user, dsrt_log_level level, const char *msg)
{
    assert_ptr_equal(user, &n_logged);
    if (level >= DSRT_LOG_WARNING && n_logged < 4)
        snprintf(logged[n_logged++], sizeof logged[0], "%s", msg);
}

static void test_diagnostics_and_log(void **state)
{
    (void)state;
    loaded l = load();
    n_logged = 0;
    dsrt_log_set_args ls = {.struct_size = sizeof ls, .fn = collect, .user_data = &n_logged,
                            .min_level = DSRT_LOG_INFO};
    assert_int_equal(l.api->log_set(&ls), DSRT_STATUS_OK);
    const char *text = "{\"train_micro_batch_size_per_gpu\": \"auto\", \"gradient_acumulation_steps\": 4,\n"
                       " \"zero_optimization\": {\"stage\": 3}}";
    dsrt_status st;
    dsrt_config *c = create_text(l.api, text, 1, &st);
    assert_int_equal(st, DSRT_STATUS_OK);
    assert_int_equal(n_logged, 2);
    assert_non_null(strstr(logged[0], "gradient_acumulation_steps"));
    assert_non_null(strstr(logged[0], "did you mean \"gradient_accumulation_steps\""));
    assert_non_null(strstr(logged[1], "stage 3 runs as stage 2"));

    dsrt_config_diagnostic_args d = {.struct_size = sizeof d, .config = c, .index = 0};
    assert_int_equal(l.api->config_diagnostic(&d), DSRT_STATUS_OK);
    size_t count = d.count, n_auto = 0, n_warn = 0;
    assert_true(count >= 3);
    for (size_t i = 0; i < count; i++) {
        d.index = i;
        assert_int_equal(l.api->config_diagnostic(&d), DSRT_STATUS_OK);
        assert_non_null(d.message);
        if (d.kind == DSRT_DIAG_AUTO) {
            n_auto++;
            assert_string_equal(d.key, "train_micro_batch_size_per_gpu");
            assert_non_null(strstr(d.message, "-> 8"));
        }
        n_warn += d.kind == DSRT_DIAG_WARNING;
    }
    assert_int_equal(n_auto, 1);
    assert_int_equal(n_warn, 2);
    d.index = count;
    assert_int_equal(l.api->config_diagnostic(&d), DSRT_STATUS_OUT_OF_RANGE);
    ls.fn = NULL;
    assert_int_equal(l.api->log_set(&ls), DSRT_STATUS_OK);
    destroy(l.api, c);
    unload(&l);
}

/* ---------------------------------------------------------------- load/use/unload cycles */

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static bool library_mapped(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    bool found = false;
    const char *base = strrchr(lib_path, '/');
    base = base ? base + 1 : lib_path;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, base))
            found = true;
    if (f)
        fclose(f);
    return found;
}

/* ABI 1.6: model_info reads a preset or a config.json without making the
 * model; the parameter count is the one engine_info reports */
static void test_model_info(void **state)
{
    (void)state;
    loaded l = load();
    assert_true(l.api->abi_minor >= 6);
    dsrt_model_info_args mi = {.struct_size = sizeof mi, .model = "gpt2"};
    assert_int_equal(l.api->model_info(&mi), DSRT_STATUS_OK);
    assert_string_equal(mi.model_type, "gpt2");
    assert_int_equal(mi.n_embd, 768);
    assert_int_equal(mi.n_layer, 12);
    assert_int_equal(mi.vocab_size, 50257);
    assert_int_equal(mi.n_inner, 3072);
    assert_int_equal(mi.num_parameters, 124439808); /* GPT-2 small, tied head (HF's count) */
    /* a config.json, and the count of the model engine_create then makes */
    char path[] = "/tmp/dsrt_test_abi_model_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *js = "{\"model_type\": \"gpt2\", \"vocab_size\": 300, \"n_positions\": 32, "
                     "\"n_embd\": 48, \"n_layer\": 3, \"n_head\": 4, \"n_inner\": 100}";
    assert_true(write(fd, js, strlen(js)) == (ssize_t)strlen(js));
    close(fd);
    mi = (dsrt_model_info_args){.struct_size = sizeof mi, .model = path};
    assert_int_equal(l.api->model_info(&mi), DSRT_STATUS_OK);
    assert_int_equal(mi.n_inner, 100);
    dsrt_status st;
    dsrt_config *cfg = create_text(l.api, "{\"train_batch_size\": 2, \"optimizer\": {\"type\": \"AdamW\", "
                                          "\"params\": {\"lr\": 1e-3}}}", 1, &st);
    assert_int_equal(st, DSRT_STATUS_OK);
    dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cfg, .model = path, .seq_len = 8};
    assert_int_equal(l.api->engine_create(&ec), DSRT_STATUS_OK);
    dsrt_engine_info_args in = {.struct_size = sizeof in, .engine = ec.engine};
    assert_int_equal(l.api->engine_info(&in), DSRT_STATUS_OK);
    assert_int_equal(in.num_parameters, mi.num_parameters);
    dsrt_engine_destroy_args ed = {sizeof ed, ec.engine};
    l.api->engine_destroy(&ed);
    dsrt_config_destroy_args cd = {sizeof cd, cfg};
    l.api->config_destroy(&cd);
    unlink(path);
    /* a bad model is refused naming it */
    mi = (dsrt_model_info_args){.struct_size = sizeof mi, .model = "/nonexistent/config.json"};
    assert_int_equal(l.api->model_info(&mi), DSRT_STATUS_IO_ERROR);
    unload(&l);
}

static void test_load_use_unload_cycles(void **state)
{
    (void)state;
    const char *env = getenv("DSRT_TEST_CYCLES");
    int cycles = env ? atoi(env) : 200;
    int fds = count_fds();
    for (int i = 0; i < cycles; i++) {
        loaded l = load();
        dsrt_log_set_args ls = {.struct_size = sizeof ls, .fn = collect, .user_data = &n_logged,
                                .min_level = DSRT_LOG_DEBUG};
        n_logged = 0;
        assert_int_equal(l.api->log_set(&ls), DSRT_STATUS_OK);
        dsrt_version_args v = {.struct_size = sizeof v};
        assert_int_equal(l.api->version(&v), DSRT_STATUS_OK);
        dsrt_status st;
        dsrt_config *c = create_text(l.api, design_card, 1 << (i % 4), &st);
        assert_int_equal(st, DSRT_STATUS_OK);
        dsrt_config_to_json_args j = {.struct_size = sizeof j, .config = c, .indent = i % 3};
        assert_int_equal(l.api->config_to_json(&j), DSRT_STATUS_OK);
        destroy(l.api, c);
        /* a rejected config and an unknown key each time too */
        assert_null(create_text(l.api, "{\"train_batch_size\": 8, \"fp16\": {\"enable\": true}}", 1, &st));
        assert_int_equal(st, DSRT_STATUS_INVALID_CONFIG);
        c = create_text(l.api, "{\"train_batch_size\": 8, \"foo\": 1}", 1, &st);
        assert_int_equal(st, DSRT_STATUS_OK);
        destroy(l.api, c);
        assert_int_equal(n_logged, 1);
        unload(&l);
    }
    /* really unloaded, and no file descriptor left behind */
    assert_false(library_mapped());
    assert_int_equal(count_fds(), fds);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s /path/to/libdsrt.so\n", argv[0]);
        return 2;
    }
    lib_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_older_smaller_struct),
        cmocka_unit_test(test_too_small_struct),
        cmocka_unit_test(test_newer_larger_struct),
        cmocka_unit_test(test_config_roundtrip),
        cmocka_unit_test(test_rejection_is_one_line),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_diagnostics_and_log),
        cmocka_unit_test(test_load_use_unload_cycles),
        cmocka_unit_test(test_model_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
