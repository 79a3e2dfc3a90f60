/* Hugging Face configs and folders (model/llama_config.c, model/model.c,
 * model/hf.c): the LLaMA-family config reader (both rope spellings, what it
 * refuses), parameter counts, and model folders in and out: an export loads
 * back bit for bit (also sharded), a folder missing a tensor, holding an
 * extra one, a wrong shape or an integer dtype is refused naming the tensor;
 * GPT2Model's unprefixed names and old buffers, a tied lm_head.weight and
 * 16-bit weights are read. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/hf.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "base/internal.h"

#define K_LLAMA \
    "{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 40," \
    " \"hidden_size\": 16, \"intermediate_size\": 24, \"num_hidden_layers\": 2," \
    " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"max_position_embeddings\": 64," \
    " \"rms_norm_eps\": 1e-5, \"rope_theta\": 500000.0, \"tie_word_embeddings\": %s %s}"

static dsrt_status parse(const char *text, dsrt_model_config *c)
{
    return dsrt_model_config_parse(text, strlen(text), "test.json", c);
}

static dsrt_status parse_llama(const char *tied, const char *extra, dsrt_model_config *c)
{
    char text[2048];
    snprintf(text, sizeof text, K_LLAMA, tied, extra);
    return parse(text, c);
}

static void expect_refused(const char *extra, const char *needle)
{
    dsrt_model_config c;
    dsrt_status st = parse_llama("false", extra, &c);
    if (st == DSRT_STATUS_OK)
        fail_msg("accepted: %s", extra);
    if (!strstr(dsrt_error_message(), needle))
        fail_msg("%s: message \"%s\" does not name %s", extra, dsrt_error_message(), needle);
}

static void test_llama_config(void **state)
{
    (void)state;
    dsrt_model_config c;
    assert_int_equal(parse_llama("false", "", &c), DSRT_STATUS_OK);
    assert_int_equal(c.arch, DSRT_ARCH_LLAMA);
    assert_int_equal(c.llama.head_dim, 4);
    assert_int_equal(c.llama.num_key_value_heads, 2);
    assert_true(c.llama.rope_theta == 500000.0);
    assert_int_equal(c.llama.rope_llama3, 0);
    assert_int_equal(c.llama.sliding_window, 0);
    /* transformers 4's rope_scaling and 5's rope_parameters */
    assert_int_equal(parse_llama("true", ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 32.0, "
                                         "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                                         "\"original_max_position_embeddings\": 8192}",
                                 &c),
                     DSRT_STATUS_OK);
    assert_int_equal(c.llama.rope_llama3, 1);
    assert_true(c.llama.rope_factor == 32.0);
    assert_int_equal(c.llama.rope_original_max_positions, 8192);
    assert_true(c.llama.tie_word_embeddings);
    assert_int_equal(parse_llama("false", ", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1e6}",
                                 &c),
                     DSRT_STATUS_OK);
    assert_true(c.llama.rope_theta == 1e6);
    assert_int_equal(parse_llama("false", ", \"attention_bias\": true, \"mlp_bias\": true, \"head_dim\": 8", &c),
                     DSRT_STATUS_OK);
    assert_true(c.llama.qkv_bias && c.llama.o_bias && c.llama.mlp_bias);
    assert_int_equal(c.llama.head_dim, 8);
    /* what changes the math and is not implemented is refused by name */
    expect_refused(", \"hidden_act\": \"gelu\"", "hidden_act");
    expect_refused(", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}", "yarn");
    expect_refused(", \"rope_parameters\": {\"rope_type\": \"default\", \"partial_rotary_factor\": 0.5}",
                   "partial_rotary_factor");
    expect_refused(", \"architectures\": [\"LlamaForSequenceClassification\"]", "architectures");
    expect_refused(", \"head_dim\": 5", "head_dim");
    expect_refused(", \"num_key_value_heads\": 3", "num_key_value_heads");
    expect_refused(", \"vocab_size\": -1", "vocab_size");
    assert_int_equal(parse("{\"model_type\": \"mamba\"}", &c), DSRT_STATUS_UNSUPPORTED);
    assert_non_null(strstr(dsrt_error_message(), "mamba"));
}

static void test_windows(void **state)
{
    (void)state;
    dsrt_model_config c;
    const char *mistral = "{\"model_type\": \"mistral\", \"vocab_size\": 40, \"hidden_size\": 16, "
                          "\"intermediate_size\": 24, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
                          "\"num_key_value_heads\": 1, \"max_position_embeddings\": 64, \"sliding_window\": 16}";
    assert_int_equal(parse(mistral, &c), DSRT_STATUS_OK);
    assert_int_equal(c.llama.sliding_window, 16);
    dsrt_backend *be = NULL;
    assert_int_equal(dsrt_backend_cpu_create(DSRT_F32, &be), 0);
    dsrt_model *m = NULL;
    assert_int_equal(dsrt_model_create(&c, be, 1, 16, 1, 0, &m), DSRT_STATUS_OK);
    dsrt_model_destroy(m);
    m = NULL;
    /* longer sequences would meet the window, which dsrt does not implement */
    assert_int_equal(dsrt_model_create(&c, be, 1, 17, 1, 0, &m), DSRT_STATUS_UNSUPPORTED);
    assert_non_null(strstr(dsrt_error_message(), "sliding_window"));
    be->ops->destroy(be);
    /* Qwen2: only with use_sliding_window, from max_window_layers on */
#define QWEN2_WINDOW "{\"model_type\": \"qwen2\", \"vocab_size\": 40, \"hidden_size\": 16, \"intermediate_size\": 24, " \
                    "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, " \
                    "\"sliding_window\": 8, \"use_sliding_window\": %s, \"max_window_layers\": %d}"
    char text[512];
    snprintf(text, sizeof text, QWEN2_WINDOW, "false", 0);
    assert_int_equal(parse(text, &c), DSRT_STATUS_OK);
    assert_int_equal(c.llama.sliding_window, 0);
    assert_true(c.llama.qkv_bias && !c.llama.o_bias);
    snprintf(text, sizeof text, QWEN2_WINDOW, "true", 2);
    assert_int_equal(parse(text, &c), DSRT_STATUS_OK);
    assert_int_equal(c.llama.sliding_window, 0); /* no layer at or past 2 */
    snprintf(text, sizeof text, QWEN2_WINDOW, "true", 1);
    assert_int_equal(parse(text, &c), DSRT_STATUS_OK);
    assert_int_equal(c.llama.sliding_window, 8);
}

/* ---- folders */
static char g_tmp[256];

static void path_in(char *out, size_t n, const char *sub) { snprintf(out, n, "%s/%s", g_tmp, sub); }

/* a model on its own CPU backend (a backend reserves its scratch once, for
 * one model's shapes) */
typedef struct owned {
    dsrt_model *m;
    dsrt_backend *be;
} owned;

static owned make(const dsrt_model_config *c, uint64_t seed)
{
    owned o = {0};
    if (dsrt_backend_cpu_create(DSRT_F32, &o.be) || dsrt_model_create(c, o.be, 1, 4, 1, 0, &o.m) ||
        dsrt_model_init(o.m, seed))
        fail_msg("%s", dsrt_error_message());
    return o;
}

static void drop(owned *o)
{
    dsrt_model_destroy(o->m);
    o->be->ops->destroy(o->be);
}

static float *params_of(owned *o)
{
    size_t n = dsrt_model_num_params(o->m);
    float *p = malloc(n * sizeof *p);
    assert_int_equal(o->be->ops->download_f32(o->be, p, dsrt_model_param_buffer(o->m), n), 0);
    return p;
}

/* export m into sub, load the folder into a fresh model: the same bits */
static void roundtrip(const dsrt_model_config *c, const char *sub, int expect_shards)
{
    owned m = make(c, 7);
    char dir[512], probe[600];
    path_in(dir, sizeof dir, sub);
    size_t n = 0;
    const dsrt_param *p = dsrt_model_params(m.m, &n);
    assert_int_equal(dsrt_hf_export(dir, c, m.be, dsrt_model_param_buffer(m.m), p, n), DSRT_STATUS_OK);
    snprintf(probe, sizeof probe, "%s/model.safetensors.index.json", dir);
    assert_int_equal(access(probe, F_OK) == 0, expect_shards);
    dsrt_model_config c2;
    assert_int_equal(dsrt_model_config_load(dir, &c2), DSRT_STATUS_OK);
    assert_int_equal(c2.sharded, expect_shards);
    assert_int_equal(dsrt_model_config_num_params(&c2), dsrt_model_config_num_params(c));
    owned m2 = make(&c2, 99); /* the folder's weights, not seed 99's */
    float *a = params_of(&m), *b = params_of(&m2);
    assert_memory_equal(a, b, dsrt_model_num_params(m.m) * sizeof(float));
    free(a), free(b);
    drop(&m);
    drop(&m2);
}

static void test_export_load(void **state)
{
    (void)state;
    dsrt_model_config c;
    assert_int_equal(parse_llama("false", ", \"attention_bias\": true", &c), 0);
    roundtrip(&c, "llama", 0);
    assert_int_equal(parse_llama("true", "", &c), 0);
    roundtrip(&c, "llama_tied", 0);
    assert_int_equal(dsrt_model_config_load("gpt2-tiny", &c), 0);
    roundtrip(&c, "gpt2", 0);
    /* shards: a small limit makes several files and the index */
    dsrt_hf_set_shard_bytes(20000);
    assert_int_equal(parse_llama("false", "", &c), 0);
    roundtrip(&c, "llama_sharded", 1);
    dsrt_hf_set_shard_bytes(0);
}

/* a folder with config.json and a model.safetensors made of the given tensors */
static void write_folder(const char *sub, const char *config, const st_tensor *t, size_t n)
{
    char dir[512], path[600];
    path_in(dir, sizeof dir, sub);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_int_equal(dsrt_write_file_atomic(path, config, strlen(config), "test"), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(st_write(path, t, n, NULL, 0), 0);
}

/* the model's tensors as fp32 st_tensors over `data` */
static st_tensor *tensors_of(owned *m, const float *data, size_t *n)
{
    const dsrt_param *p = dsrt_model_params(m->m, n);
    st_tensor *t = calloc(*n + 4, sizeof *t);
    for (size_t i = 0; i < *n; i++) {
        t[i] = (st_tensor){.name = p[i].name, .dtype = ST_F32, .ndim = p[i].ndim,
                           .data = data + p[i].offset, .nbytes = p[i].numel * 4};
        t[i].shape[0] = p[i].shape[0];
        t[i].shape[1] = p[i].shape[1];
    }
    return t;
}

static dsrt_status load_sub(const char *sub, const dsrt_model_config *c)
{
    char dir[512];
    path_in(dir, sizeof dir, sub);
    dsrt_model_config c2 = *c;
    snprintf(c2.weights_dir, sizeof c2.weights_dir, "%s", dir);
    dsrt_backend *be = NULL;
    dsrt_model *m = NULL;
    dsrt_status st = dsrt_backend_cpu_create(DSRT_F32, &be);
    if (!st)
        st = dsrt_model_create(&c2, be, 1, 4, 1, 0, &m);
    if (!st)
        st = dsrt_model_init(m, 0);
    dsrt_model_destroy(m);
    if (be)
        be->ops->destroy(be);
    return st;
}

static void expect_load_error(const char *sub, const dsrt_model_config *c, const char *needle)
{
    dsrt_status st = load_sub(sub, c);
    if (st == DSRT_STATUS_OK)
        fail_msg("%s loaded", sub);
    if (!strstr(dsrt_error_message(), needle))
        fail_msg("%s: \"%s\" does not name %s", sub, dsrt_error_message(), needle);
}

static void test_bad_folders(void **state)
{
    (void)state;
    dsrt_model_config c;
    char config[1024];
    snprintf(config, sizeof config, K_LLAMA, "false", "");
    assert_int_equal(parse(config, &c), 0);
    owned m = make(&c, 3);
    float *data = params_of(&m);
    size_t n = 0;
    st_tensor *t = tensors_of(&m, data, &n);
    /* all there: loads */
    write_folder("ok", config, t, n);
    assert_int_equal(load_sub("ok", &c), DSRT_STATUS_OK);
    /* one missing */
    write_folder("missing", config, t, n - 1);
    expect_load_error("missing", &c, "lm_head.weight");
    /* one extra */
    t[n] = (st_tensor){.name = "model.layers.0.mlp.extra.weight", .dtype = ST_F32, .ndim = 1,
                       .shape = {4}, .data = data, .nbytes = 16};
    write_folder("extra", config, t, n + 1);
    expect_load_error("extra", &c, "model.layers.0.mlp.extra.weight");
    /* a wrong shape (k_proj's bytes, transposed) */
    st_tensor keep = t[2];
    assert_true(keep.shape[0] != keep.shape[1]);
    t[2].shape[0] = keep.shape[1];
    t[2].shape[1] = keep.shape[0];
    write_folder("shape", config, t, n);
    expect_load_error("shape", &c, t[2].name);
    t[2] = keep;
    /* an integer dtype */
    t[3].dtype = ST_I32;
    write_folder("dtype", config, t, n);
    expect_load_error("dtype", &c, "I32");
    t[3].dtype = ST_F32;
    /* old rotary buffers are not parameters and are skipped */
    t[n] = (st_tensor){.name = "model.layers.0.self_attn.rotary_emb.inv_freq", .dtype = ST_F32, .ndim = 1,
                       .shape = {2}, .data = data, .nbytes = 8};
    write_folder("buffers", config, t, n + 1);
    assert_int_equal(load_sub("buffers", &c), DSRT_STATUS_OK);
    /* 16-bit weights are widened exactly */
    uint16_t *h = malloc(dsrt_model_num_params(m.m) * 2);
    for (size_t i = 0; i < dsrt_model_num_params(m.m); i++)
        h[i] = dsrt_f32_to_bf16(data[i]);
    st_tensor *tb = calloc(n, sizeof *tb);
    for (size_t i = 0; i < n; i++) {
        tb[i] = t[i];
        tb[i].dtype = ST_BF16;
        tb[i].data = h + ((const float *)t[i].data - data);
        tb[i].nbytes = t[i].nbytes / 2;
    }
    write_folder("bf16", config, tb, n);
    char dir[512];
    path_in(dir, sizeof dir, "bf16");
    dsrt_model_config cb;
    assert_int_equal(dsrt_model_config_load(dir, &cb), 0);
    owned mb = make(&cb, 0);
    float *got = params_of(&mb);
    for (size_t i = 0; i < dsrt_model_num_params(m.m); i++)
        assert_true(got[i] == dsrt_bf16_to_f32(h[i]));
    free(got), free(h), free(tb), free(t), free(data);
    drop(&mb);
    drop(&m);
}

/* GPT2Model's files (the hub's gpt2): no "transformer." prefix, the
 * attention's causal-mask buffers, and a tied lm_head.weight */
static void test_gpt2_base_names(void **state)
{
    (void)state;
    dsrt_model_config c;
    assert_int_equal(dsrt_model_config_load("gpt2-tiny", &c), 0);
    owned m = make(&c, 5);
    float *data = params_of(&m);
    size_t n = 0;
    st_tensor *t = tensors_of(&m, data, &n);
    for (size_t i = 0; i < n; i++)
        t[i].name += strlen("transformer.");
    float mask[16] = {0};
    t[n] = (st_tensor){.name = "h.0.attn.bias", .dtype = ST_F32, .ndim = 2, .shape = {4, 4}, .data = mask,
                       .nbytes = sizeof mask};
    t[n + 1] = (st_tensor){.name = "lm_head.weight", .dtype = ST_F32, .ndim = 2, .shape = {t[0].shape[0], t[0].shape[1]},
                           .data = t[0].data, .nbytes = t[0].nbytes};
    write_folder("gpt2_base", dsrt_gpt2_preset_json("gpt2-tiny"), t, n + 2);
    char dir[512];
    path_in(dir, sizeof dir, "gpt2_base");
    dsrt_model_config c2;
    assert_int_equal(dsrt_model_config_load(dir, &c2), 0);
    owned m2 = make(&c2, 0);
    float *got = params_of(&m2);
    assert_memory_equal(got, data, dsrt_model_num_params(m.m) * sizeof(float));
    free(got), free(t), free(data);
    drop(&m2);
    drop(&m);
}

/* the counts from the config alone equal the models' */
static void test_param_counts(void **state)
{
    (void)state;
    const char *variants[][2] = {{"false", ""},
                                 {"true", ""},
                                 {"false", ", \"attention_bias\": true, \"mlp_bias\": true"},
                                 {"true", ", \"head_dim\": 6"}};
    for (int v = 0; v < 4; v++) {
        dsrt_model_config c;
        assert_int_equal(parse_llama(variants[v][0], variants[v][1], &c), 0);
        owned m = make(&c, 1);
        assert_int_equal(dsrt_model_num_params(m.m), dsrt_model_config_num_params(&c));
        drop(&m);
    }
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/dsrt_test_hf.XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_config), cmocka_unit_test(test_windows),
        cmocka_unit_test(test_export_load),  cmocka_unit_test(test_bad_folders),
        cmocka_unit_test(test_gpt2_base_names), cmocka_unit_test(test_param_counts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
