/* The GPT-2 model: config reading and presets, the parameter table (HF names,
 * shapes, order, counts), initialisation, input checks, the grad-ready hook,
 * and a finite-difference check of the whole model's gradient. The
 * comparison with PyTorch lives in compat_tests/test_gpt2_reference.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/gpt2.h"
#include "base/internal.h"

static dsrt_gpt2 *make_model(const dsrt_gpt2_config *cfg, dsrt_dtype dt, int B, int T,
                             dsrt_backend **be_out)
{
    dsrt_backend *be = NULL;
    dsrt_gpt2 *m = NULL;
    assert_int_equal(dsrt_backend_cpu_create(dt, &be), DSRT_STATUS_OK);
    if (dsrt_gpt2_create(cfg, be, B, T, &m))
        fail_msg("gpt2_create: %s", dsrt_error_message());
    *be_out = be;
    return m;
}

static void free_model(dsrt_gpt2 *m, dsrt_backend *be)
{
    dsrt_gpt2_destroy(m);
    be->ops->destroy(be);
}

static char *slurp(const char *path)
{
    char *text = NULL;
    size_t len;
    return dsrt_read_text_file(path, "preset file", 1u << 20, &text, &len) ? NULL : text;
}

static void test_presets_match_files(void **state)
{
    (void)state;
    const char *src = getenv("DSRT_SOURCE_DIR");
    if (!src)
        skip();
    for (const char *const *n = dsrt_gpt2_preset_names(); *n; n++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/configs/model/%s.json", src, *n);
        char *text = slurp(path);
        if (!text)
            fail_msg("cannot read %s", path);
        assert_string_equal(text, dsrt_gpt2_preset_json(*n));
        free(text);
    }
}

static void test_param_counts_and_names(void **state)
{
    (void)state;
    /* Hugging Face's own counts: GPT2LMHeadModel.num_parameters() */
    struct { const char *preset; size_t n; } want[] = {
        {"gpt2", 124439808}, {"gpt2-medium", 354823168}, {"gpt2-tiny", 858880}};
    for (size_t i = 0; i < 3; i++) {
        dsrt_gpt2_config cfg;
        assert_int_equal(dsrt_gpt2_config_load(want[i].preset, &cfg), DSRT_STATUS_OK);
        dsrt_backend *be;
        dsrt_gpt2 *m = make_model(&cfg, DSRT_F32, 1, 1, &be);
        assert_int_equal(dsrt_gpt2_num_params(m), want[i].n);
        size_t np;
        const dsrt_param *p = dsrt_gpt2_params(m, &np);
        assert_int_equal(np, 4 + 12 * (size_t)cfg.n_layer);
        assert_string_equal(p[0].name, "transformer.wte.weight");
        assert_string_equal(p[1].name, "transformer.wpe.weight");
        assert_string_equal(p[2].name, "transformer.h.0.ln_1.weight");
        assert_string_equal(p[4].name, "transformer.h.0.attn.c_attn.weight");
        assert_int_equal(p[4].shape[0], cfg.n_embd); /* Conv1D: (in, out) */
        assert_int_equal(p[4].shape[1], 3 * cfg.n_embd);
        assert_string_equal(p[np - 1].name, "transformer.ln_f.bias");
        size_t off = 0;
        for (size_t k = 0; k < np; k++) {
            assert_int_equal(p[k].offset, off);
            off += p[k].numel;
        }
        free_model(m, be);
    }
}

static void test_config_errors(void **state)
{
    (void)state;
    dsrt_gpt2_config c;
    const char *relu = "{\"activation_function\": \"relu\"}";
    assert_int_equal(dsrt_gpt2_config_parse(relu, strlen(relu), "m.json", &c),
                     DSRT_STATUS_UNSUPPORTED);
    assert_non_null(strstr(dsrt_error_message(), "activation_function"));
    const char *heads = "{\"n_embd\": 100, \"n_head\": 3}";
    assert_int_equal(dsrt_gpt2_config_parse(heads, strlen(heads), "m.json", &c),
                     DSRT_STATUS_INVALID_CONFIG);
    assert_non_null(strstr(dsrt_error_message(), "n_head"));
    const char *neg = "{\n\"n_layer\": -2}";
    assert_int_equal(dsrt_gpt2_config_parse(neg, strlen(neg), "m.json", &c),
                     DSRT_STATUS_INVALID_CONFIG);
    assert_non_null(strstr(dsrt_error_message(), "m.json:2"));
    /* an epsilon of 0 (or one that rounds to 0 in float) divides by zero on a
     * constant row: found by fuzz_model_config */
    static const char *const eps[] = {"{\"layer_norm_epsilon\": 0e-05}", "{\"layer_norm_epsilon\": 1e-50}"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(dsrt_gpt2_config_parse(eps[i], strlen(eps[i]), "m.json", &c), DSRT_STATUS_INVALID_CONFIG);
        assert_non_null(strstr(dsrt_error_message(), "layer_norm_epsilon"));
    }
    /* sizes whose derived sizes (4 n_embd) overflow int: found by fuzz_model_config in CI */
    const char *huge = "{\"n_embd\": 702583728}";
    assert_int_equal(dsrt_gpt2_config_parse(huge, strlen(huge), "m.json", &c), DSRT_STATUS_INVALID_CONFIG);
    assert_non_null(strstr(dsrt_error_message(), "n_embd: must be a positive integer up to 1048576"));
    const char *bert = "{\"model_type\": \"bert\"}";
    assert_int_equal(dsrt_gpt2_config_parse(bert, strlen(bert), "m.json", &c),
                     DSRT_STATUS_UNSUPPORTED);
    const char *untied = "{\"tie_word_embeddings\": false}";
    assert_int_equal(dsrt_gpt2_config_parse(untied, strlen(untied), "m.json", &c),
                     DSRT_STATUS_UNSUPPORTED);
    /* GPT2Config defaults; n_ctx is the old name of n_positions; n_inner null -> 4C */
    const char *old = "{\"n_ctx\": 512, \"resid_pdrop\": 0.1, \"some_hf_key\": [1, 2]}";
    assert_int_equal(dsrt_gpt2_config_parse(old, strlen(old), "m.json", &c), DSRT_STATUS_OK);
    assert_int_equal(c.n_positions, 512);
    assert_int_equal(c.vocab_size, 50257);
    assert_int_equal(c.n_inner, 4 * 768);
    assert_int_equal(dsrt_gpt2_config_load("/nonexistent/config.json", &c), DSRT_STATUS_IO_ERROR);
    assert_non_null(strstr(dsrt_error_message(), "/nonexistent/config.json"));
}

static void test_init(void **state)
{
    (void)state;
    dsrt_gpt2_config cfg;
    assert_int_equal(dsrt_gpt2_config_load("gpt2-tiny", &cfg), DSRT_STATUS_OK);
    dsrt_backend *be;
    dsrt_gpt2 *m = make_model(&cfg, DSRT_F32, 1, 8, &be);
    size_t n = dsrt_gpt2_num_params(m), np;
    const dsrt_param *p = dsrt_gpt2_params(m, &np);
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    assert_int_equal(dsrt_gpt2_init(m, 1234), DSRT_STATUS_OK);
    assert_int_equal(dsrt_gpt2_get_params_f32(m, a), DSRT_STATUS_OK);
    assert_int_equal(dsrt_gpt2_init(m, 1234), DSRT_STATUS_OK);
    assert_int_equal(dsrt_gpt2_get_params_f32(m, b), DSRT_STATUS_OK);
    assert_memory_equal(a, b, n * sizeof(float));
    assert_int_equal(dsrt_gpt2_init(m, 1235), DSRT_STATUS_OK);
    assert_int_equal(dsrt_gpt2_get_params_f32(m, b), DSRT_STATUS_OK);
    assert_memory_not_equal(a, b, n * sizeof(float));
    double proj_std = 0.02 / sqrt(2.0 * cfg.n_layer);
    for (size_t k = 0; k < np; k++) {
        const float *w = a + p[k].offset;
        double s = 0, s2 = 0;
        for (size_t i = 0; i < p[k].numel; i++)
            s += w[i], s2 += (double)w[i] * w[i];
        double mean = s / p[k].numel, sd = sqrt(s2 / p[k].numel - mean * mean);
        if (strstr(p[k].name, ".bias")) {
            assert_true(s2 == 0.0);
        } else if (strstr(p[k].name, "ln_")) {
            assert_true(s == (double)p[k].numel && sd < 1e-12);
        } else {
            double want = strstr(p[k].name, "c_proj.weight") ? proj_std : 0.02;
            /* numel >= 16384: the sample sd is within 3% of sigma */
            if (fabs(sd - want) > 0.03 * want || fabs(mean) > 0.05 * want)
                fail_msg("%s: mean %g sd %g, want sd %g", p[k].name, mean, sd, want);
        }
    }
    /* bf16 storage: the same draws, rounded to nearest even */
    dsrt_backend *be16;
    dsrt_gpt2 *m16 = make_model(&cfg, DSRT_BF16, 1, 8, &be16);
    assert_int_equal(dsrt_gpt2_init(m16, 1234), DSRT_STATUS_OK);
    assert_int_equal(dsrt_gpt2_get_params_f32(m16, b), DSRT_STATUS_OK);
    for (size_t i = 0; i < n; i += 97)
        assert_true(b[i] == dsrt_round_to(DSRT_BF16, a[i]));
    free_model(m16, be16);
    free(a), free(b);
    free_model(m, be);
}

static void test_input_errors(void **state)
{
    (void)state;
    dsrt_gpt2_config cfg;
    assert_int_equal(dsrt_gpt2_config_load("gpt2-tiny", &cfg), DSRT_STATUS_OK);
    dsrt_backend *be;
    dsrt_gpt2 *m = NULL;
    assert_int_equal(dsrt_backend_cpu_create(DSRT_F32, &be), DSRT_STATUS_OK);
    assert_int_equal(dsrt_gpt2_create(&cfg, be, 1, 257, &m), DSRT_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(dsrt_error_message(), "n_positions"));
    be->ops->destroy(be);
    m = make_model(&cfg, DSRT_F32, 2, 4, &be);
    assert_int_equal(dsrt_gpt2_init(m, 1), DSRT_STATUS_OK);
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 256, 8}, tgt[8] = {2, 3, 4, 5, 6, 7, 8, -100};
    float loss;
    assert_int_equal(dsrt_gpt2_forward(m, tok, tgt, 2, 4, DSRT_GPT2_TRAIN, 1.0f, &loss),
                     DSRT_STATUS_OUT_OF_RANGE);
    assert_non_null(strstr(dsrt_error_message(), "tokens[1][2] = 256"));
    tok[6] = 7;
    tgt[0] = -1;
    assert_int_equal(dsrt_gpt2_forward(m, tok, tgt, 2, 4, DSRT_GPT2_TRAIN, 1.0f, &loss),
                     DSRT_STATUS_OUT_OF_RANGE);
    assert_non_null(strstr(dsrt_error_message(), "targets[0][0] = -1"));
    assert_int_equal(dsrt_gpt2_forward(m, tok, tgt, 3, 4, DSRT_GPT2_EVAL, 1.0f, &loss),
                     DSRT_STATUS_INVALID_ARGUMENT);
    assert_int_equal(dsrt_gpt2_backward(m, NULL, NULL), DSRT_STATUS_INVALID_ARGUMENT);
    /* all targets ignored: NaN loss (as torch), zero gradient */
    for (int i = 0; i < 8; i++)
        tgt[i] = -100;
    assert_int_equal(dsrt_gpt2_forward(m, tok, tgt, 2, 4, DSRT_GPT2_TRAIN, 1.0f, &loss),
                     DSRT_STATUS_OK);
    assert_true(isnan(loss));
    assert_int_equal(dsrt_gpt2_backward(m, NULL, NULL), DSRT_STATUS_OK);
    size_t n = dsrt_gpt2_num_params(m);
    float *g = malloc(n * sizeof(float));
    assert_int_equal(dsrt_gpt2_get_grads_f32(m, g), DSRT_STATUS_OK);
    for (size_t i = 0; i < n; i++)
        assert_true(g[i] == 0.0f);
    /* a training forward replaces the logits: reading them is refused */
    float lg[8 * 256];
    assert_int_equal(dsrt_gpt2_get_logits_f32(m, lg), DSRT_STATUS_INVALID_ARGUMENT);
    free(g);
    free_model(m, be);
}

typedef struct hook_log {
    int count[64];
    size_t order[64];
    int n;
} hook_log;

static void on_ready(void *user, size_t i)
{
    hook_log *h = user;
    h->count[i]++;
    h->order[h->n++] = i;
}

/* small enough for finite differences in fp32 */
static const char k_small[] = "{\"vocab_size\": 23, \"n_positions\": 16, \"n_embd\": 16, "
                              "\"n_layer\": 2, \"n_head\": 2}";

static void test_grad_ready_hook(void **state)
{
    (void)state;
    dsrt_gpt2_config cfg;
    assert_int_equal(dsrt_gpt2_config_parse(k_small, strlen(k_small), "small", &cfg), 0);
    dsrt_backend *be;
    dsrt_gpt2 *m = make_model(&cfg, DSRT_F32, 2, 7, &be);
    assert_int_equal(dsrt_gpt2_init(m, 7), 0);
    int32_t tok[14], tgt[14];
    for (int i = 0; i < 14; i++)
        tok[i] = (i * 5) % 23, tgt[i] = (i * 7 + 3) % 23;
    float loss;
    assert_int_equal(dsrt_gpt2_forward(m, tok, tgt, 2, 7, DSRT_GPT2_TRAIN, 1.0f, &loss), 0);
    hook_log h = {0};
    assert_int_equal(dsrt_gpt2_backward(m, on_ready, &h), 0);
    size_t np;
    dsrt_gpt2_params(m, &np);
    assert_int_equal(h.n, (int)np);
    for (size_t i = 0; i < np; i++)
        assert_int_equal(h.count[i], 1);
    assert_int_equal(h.order[0], np - 1);    /* ln_f first */
    assert_int_equal(h.order[np - 1], 0);    /* the tied wte last */
    free_model(m, be);
}

typedef struct fd_model {
    dsrt_gpt2 *m;
    float *w;
    int32_t tok[14], tgt[14];
} fd_model;

static double model_loss(fd_model *f)
{
    assert_int_equal(dsrt_gpt2_set_params_f32(f->m, f->w), 0);
    float loss;
    assert_int_equal(dsrt_gpt2_forward(f->m, f->tok, f->tgt, 2, 7, DSRT_GPT2_EVAL, 1.0f, &loss), 0);
    return loss;
}

/* The model's gradient against central differences of its loss, on the
 * largest-gradient entries of every tensor (where fp32 differences are well
 * above rounding). */
static void test_model_finite_differences(void **state)
{
    (void)state;
    dsrt_gpt2_config cfg;
    assert_int_equal(dsrt_gpt2_config_parse(k_small, strlen(k_small), "small", &cfg), 0);
    cfg.initializer_range = 0.3f; /* larger weights: gradients well above fp32 noise */
    dsrt_backend *be;
    fd_model f;
    f.m = make_model(&cfg, DSRT_F32, 2, 7, &be);
    assert_int_equal(dsrt_gpt2_init(f.m, 11), 0);
    for (int i = 0; i < 14; i++) {
        f.tok[i] = (i * 5 + 1) % 23;
        f.tgt[i] = i == 4 ? -100 : (i * 7 + 3) % 23;
    }
    size_t n = dsrt_gpt2_num_params(f.m), np;
    const dsrt_param *p = dsrt_gpt2_params(f.m, &np);
    f.w = malloc(n * sizeof(float));
    float *g = malloc(n * sizeof(float));
    assert_int_equal(dsrt_gpt2_get_params_f32(f.m, f.w), 0);
    float loss;
    assert_int_equal(dsrt_gpt2_forward(f.m, f.tok, f.tgt, 2, 7, DSRT_GPT2_TRAIN, 1.0f, &loss), 0);
    assert_int_equal(dsrt_gpt2_backward(f.m, NULL, NULL), 0);
    assert_int_equal(dsrt_gpt2_get_grads_f32(f.m, g), 0);
    int bad = 0;
    for (size_t k = 0; k < np; k++) {
        size_t best = p[k].offset;
        for (size_t i = p[k].offset; i < p[k].offset + p[k].numel; i++)
            if (fabsf(g[i]) > fabsf(g[best]))
                best = i;
        float orig = f.w[best], h = 3e-3f;
        f.w[best] = orig + h;
        double lp = model_loss(&f);
        f.w[best] = orig - h;
        double lm = model_loss(&f);
        f.w[best] = orig;
        double fd = (lp - lm) / (2.0 * h);
        if (fabs(fd - g[best]) > 2e-4 + 2e-2 * fabs(fd)) {
            print_error("%s[%zu]: analytic %.6g, finite difference %.6g\n", p[k].name,
                        best - p[k].offset, (double)g[best], fd);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
    free(f.w), free(g);
    free_model(f.m, be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_match_files),
        cmocka_unit_test(test_param_counts_and_names),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_input_errors),
        cmocka_unit_test(test_grad_ready_hook),
        cmocka_unit_test(test_model_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
