/* dsrt's Hugging Face models against transformers: compat_tests/hf/ holds
 * model folders that transformers' save_pretrained wrote (a tiny LLaMA with
 * grouped-query attention, an untied head and llama3 rope scaling; a tiny
 * Qwen2 with q/k/v biases and a tied head; a tiny GPT-2) and, per model, one
 * micro-batch's loss, logits and every gradient that transformers computes in
 * float64 from the same weights (hf/gen_hf_reference.py). One more case is a
 * single LLaMA-3.2-1B-wide layer (2048 wide, 32 heads over 8 key/value heads,
 * 8192 MLP, llama3 rope, tied head) from dsrt's initial weights (seed 7): its
 * reference keeps each gradient's sum of squares and 4096 of its elements.
 *
 *   test_hf_reference [--backend cpu|cuda] [--dtype fp32|bf16] HF_DIR
 *
 * fp32: loss within 1e-6 relative, logits within 1e-5 of the largest logit,
 * each gradient element within 1e-4 of the tensor's largest (a few fp32
 * roundings over sums of up to 8192 terms). bf16: the budget of
 * test_gpt2_reference (u = 2^-8): loss within u relative, logits and each
 * gradient tensor within 4 u and 8 u relative L2. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/hf.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "base/internal.h"

static const char *g_dir;
static const char *g_backend = "cpu";
static dsrt_dtype g_dt = DSRT_F32;

static const st_tensor *need(const st_file *f, const char *name)
{
    const st_tensor *t = st_find(f, name);
    if (!t)
        fail_msg("%s: no tensor %s", f->path, name);
    return t;
}

static size_t numel(const st_tensor *t)
{
    size_t n = 1;
    for (int k = 0; k < t->ndim; k++)
        n *= (size_t)t->shape[k];
    return n;
}

/* element i of a float64 tensor (or float32: transformers computes its loss
 * in fp32 even for a float64 model) */
static double f64_at(const st_tensor *t, size_t i)
{
    if (t->dtype == ST_F32) {
        float f;
        memcpy(&f, (const char *)t->data + 4 * i, 4);
        return f;
    }
    double d;
    assert_int_equal(t->dtype, ST_F64);
    memcpy(&d, (const char *)t->data + 8 * i, 8);
    return d;
}

static int64_t i64_at(const st_tensor *t, size_t i)
{
    int64_t v;
    assert_int_equal(t->dtype, ST_I64);
    memcpy(&v, (const char *)t->data + 8 * i, 8);
    return v;
}

static dsrt_backend *make_backend(void)
{
    dsrt_backend *be = NULL;
    char name[32];
    dsrt_status st = dsrt_backend_create(!strcmp(g_backend, "cuda") ? "cuda" : "cpu", g_dt, &be, name, sizeof name);
    if (st == DSRT_STATUS_UNSUPPORTED) {
        print_message("skipped: %s\n", dsrt_error_message());
        return NULL;
    }
    assert_int_equal(st, DSRT_STATUS_OK);
    return be;
}

static double u_of(void) { return g_dt == DSRT_BF16 ? 1.0 / 256 : 1.0 / 2048; }

/* got (fp32) against want (float64 tensor, or the given values): fp32 bound
 * per element relative to the largest |want|; 16-bit bound on the relative L2 */
static void compare(const char *what, const float *got, const double *want, size_t n, double tol32,
                    double tol16_u)
{
    double maxw = 0, err2 = 0, want2 = 0, maxerr = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        maxw = fmax(maxw, fabs(want[i]));
        double e = fabs((double)got[i] - want[i]);
        if (e > maxerr)
            maxerr = e, at = i;
        err2 += e * e;
        want2 += want[i] * want[i];
    }
    if (g_dt == DSRT_F32) {
        if (maxerr > tol32 * maxw + 1e-9)
            fail_msg("%s: element %zu is %.9g, reference %.9g (error %.3g > %.3g of the largest %.4g)", what, at,
                     (double)got[at], want[at], maxerr, tol32, maxw);
    } else {
        double rel = sqrt(err2 / fmax(want2, 1e-300));
        if (rel > tol16_u * u_of())
            fail_msg("%s: relative L2 error %.3g > %.0f u", what, rel, tol16_u);
    }
}

/* targets of dsrt's forward from transformers' labels: shifted by one */
static void shift_labels(const st_tensor *labels, int B, int T, int32_t *tgt)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            tgt[b * T + t] = t + 1 < T ? (int32_t)i64_at(labels, (size_t)b * T + t + 1) : -100;
}

typedef struct run_out {
    float loss_eval, loss_train;
    float *logits, *grads;
    dsrt_model *m;
    dsrt_backend *be;
} run_out;

/* forward (eval: logits), forward (train), backward, as fp32 on the host */
static int run(const char *model, uint64_t seed, const st_file *ref, run_out *o)
{
    const st_tensor *ids = need(ref, "input_ids"), *labels = need(ref, "labels");
    int B = (int)ids->shape[0], T = (int)ids->shape[1];
    dsrt_model_config cfg;
    if (dsrt_model_config_load(model, &cfg))
        fail_msg("%s", dsrt_error_message());
    o->be = make_backend();
    if (!o->be)
        return 0;
    if (dsrt_model_create(&cfg, o->be, B, T, 1, 0, &o->m) || dsrt_model_init(o->m, seed))
        fail_msg("%s", dsrt_error_message());
    int32_t *tok = malloc((size_t)B * T * sizeof *tok), *tgt = malloc((size_t)B * T * sizeof *tgt);
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)i64_at(ids, (size_t)i);
    shift_labels(labels, B, T, tgt);
    int V = dsrt_model_vocab_size(&cfg);
    o->logits = malloc((size_t)B * T * V * sizeof(float));
    o->grads = malloc(dsrt_model_num_params(o->m) * sizeof(float));
    assert_int_equal(dsrt_model_forward(o->m, tok, tgt, B, T, DSRT_GPT2_EVAL, 1.0f, &o->loss_eval), 0);
    assert_int_equal(dsrt_model_get_logits_f32(o->m, o->logits), 0);
    float scale = g_dt == DSRT_F16 ? 1024.0f : 1.0f;
    assert_int_equal(dsrt_model_zero_grad(o->m), 0);
    assert_int_equal(dsrt_model_forward(o->m, tok, tgt, B, T, DSRT_GPT2_TRAIN, scale, &o->loss_train), 0);
    assert_int_equal(dsrt_model_backward(o->m, NULL, NULL), 0);
    assert_int_equal(dsrt_model_get_grads_f32(o->m, o->grads), 0);
    for (size_t i = 0; i < dsrt_model_num_params(o->m); i++)
        o->grads[i] /= scale;
    free(tok), free(tgt);
    return 1;
}

static void run_free(run_out *o)
{
    dsrt_model_destroy(o->m);
    if (o->be)
        o->be->ops->destroy(o->be);
    free(o->logits), free(o->grads);
}

static void check_loss(const char *what, float got, double want)
{
    double tol = g_dt == DSRT_F32 ? 1e-6 : u_of();
    if (!(fabs(got - want) <= tol * fabs(want)))
        fail_msg("%s: loss %.9g, reference %.9g (relative %.3g > %.3g)", what, (double)got, want,
                 fabs(got - want) / fabs(want), tol);
}

static void tiny_case(const char *name)
{
    char model[4096], refp[4096];
    snprintf(model, sizeof model, "%s/models/%s", g_dir, name);
    snprintf(refp, sizeof refp, "%s/ref/%s_step.safetensors", g_dir, name);
    st_file ref;
    if (st_open(refp, &ref))
        fail_msg("%s", dsrt_error_message());
    run_out o = {0};
    if (!run(model, 0, &ref, &o)) {
        st_close(&ref);
        skip();
    }
    double want_loss = f64_at(need(&ref, "loss"), 0);
    check_loss(name, o.loss_eval, want_loss);
    check_loss(name, o.loss_train, want_loss);
    const st_tensor *lg = need(&ref, "logits");
    size_t nl = numel(lg);
    double *w = malloc(nl * sizeof *w);
    for (size_t i = 0; i < nl; i++)
        w[i] = f64_at(lg, i);
    char what[256];
    snprintf(what, sizeof what, "%s logits", name);
    compare(what, o.logits, w, nl, 1e-5, 4);
    free(w);
    size_t np = 0;
    const dsrt_param *p = dsrt_model_params(o.m, &np);
    for (size_t i = 0; i < np; i++) {
        char key[200];
        snprintf(key, sizeof key, "grad.%s", p[i].name);
        const st_tensor *g = need(&ref, key);
        assert_int_equal(numel(g), p[i].numel);
        double *gw = malloc(p[i].numel * sizeof *gw);
        for (size_t k = 0; k < p[i].numel; k++)
            gw[k] = f64_at(g, k);
        snprintf(what, sizeof what, "%s d%s", name, p[i].name);
        compare(what, o.grads + p[i].offset, gw, p[i].numel, 1e-4, 8);
        free(gw);
    }
    print_message("%s: loss %.7f (reference %.7f), %zu gradient tensors compared\n", name, (double)o.loss_train,
                  want_loss, np);
    run_free(&o);
    st_close(&ref);
}

static void test_tiny_llama(void **state)
{
    (void)state;
    tiny_case("tiny-llama");
}

static void test_tiny_qwen2(void **state)
{
    (void)state;
    tiny_case("tiny-qwen2");
}

static void test_tiny_gpt2(void **state)
{
    (void)state;
    tiny_case("tiny-gpt2");
}

/* one LLaMA-3.2-1B-wide layer: sums of squares and strided samples */
static void test_llama32_1b_layer(void **state)
{
    (void)state;
    if (getenv("DSRT_HF_QUICK")) /* the sanitizer run: the tiny models only */
        skip();
    char model[4096], refp[4096];
    snprintf(model, sizeof model, "%s/llama32-1b-layer/config.json", g_dir);
    snprintf(refp, sizeof refp, "%s/ref/llama32-1b-layer_step.safetensors", g_dir);
    st_file ref;
    if (st_open(refp, &ref))
        fail_msg("%s", dsrt_error_message());
    run_out o = {0};
    if (!run(model, 7, &ref, &o)) {
        st_close(&ref);
        skip();
    }
    double want_loss = f64_at(need(&ref, "loss"), 0);
    check_loss("llama32-1b-layer", o.loss_train, want_loss);
    const st_tensor *lg = need(&ref, "logits");
    size_t nl = numel(lg);
    double *w = malloc(nl * sizeof *w);
    for (size_t i = 0; i < nl; i++)
        w[i] = f64_at(lg, i);
    compare("llama32-1b-layer logits", o.logits, w, nl, 1e-5, 4);
    free(w);
    size_t np = 0;
    const dsrt_param *p = dsrt_model_params(o.m, &np);
    for (size_t i = 0; i < np; i++) {
        char key[200], what[256];
        snprintf(key, sizeof key, "grad_sample.%s", p[i].name);
        const st_tensor *s = need(&ref, key);
        snprintf(key, sizeof key, "grad_stride.%s", p[i].name);
        int64_t stride = i64_at(need(&ref, key), 0);
        snprintf(key, sizeof key, "grad_sumsq.%s", p[i].name);
        double sumsq = f64_at(need(&ref, key), 0), got2 = 0;
        const float *g = o.grads + p[i].offset;
        for (size_t k = 0; k < p[i].numel; k++)
            got2 += (double)g[k] * g[k];
        double tol = g_dt == DSRT_F32 ? 1e-4 : 16 * u_of();
        if (!(fabs(sqrt(got2) - sqrt(sumsq)) <= tol * sqrt(sumsq)))
            fail_msg("llama32-1b-layer d%s: L2 norm %.9g, reference %.9g", p[i].name, sqrt(got2), sqrt(sumsq));
        size_t ns = numel(s);
        float *gs = malloc(ns * sizeof *gs);
        double *ws = malloc(ns * sizeof *ws);
        for (size_t k = 0; k < ns; k++) {
            gs[k] = g[k * (size_t)stride];
            ws[k] = f64_at(s, k);
        }
        snprintf(what, sizeof what, "llama32-1b-layer d%s (every %lld-th element)", p[i].name, (long long)stride);
        compare(what, gs, ws, ns, 1e-4, 8);
        free(gs), free(ws);
    }
    print_message("llama32-1b-layer: loss %.7f (reference %.7f), %zu gradient tensors compared\n",
                  (double)o.loss_train, want_loss, np);
    run_free(&o);
    st_close(&ref);
}

/* The GPT-2 124M preset and the same weights read back from a Hugging Face
 * folder (written by dsrt_hf_export, as transformers names them): the same
 * loss and logits to the last bit. No reference file: fp32 and bf16 both. */
static void test_gpt2_124m_folder(void **state)
{
    (void)state;
    if (strcmp(g_backend, "cpu") || getenv("DSRT_HF_QUICK"))
        skip();
    enum { B = 1, T = 64 };
    dsrt_model_config preset, folder;
    assert_int_equal(dsrt_model_config_load("gpt2", &preset), 0);
    run_out a = {0}, b = {0};
    a.be = make_backend();
    if (dsrt_model_create(&preset, a.be, B, T, 1, 0, &a.m) || dsrt_model_init(a.m, 1234))
        fail_msg("%s", dsrt_error_message());
    char dir[] = "/tmp/dsrt_gpt2_124m.XXXXXX";
    assert_non_null(mkdtemp(dir));
    size_t n = 0;
    const dsrt_param *p = dsrt_model_params(a.m, &n);
    assert_int_equal(dsrt_hf_export(dir, &preset, a.be, dsrt_model_param_buffer(a.m), p, n), 0);
    assert_int_equal(dsrt_model_config_load(dir, &folder), 0);
    assert_string_equal(folder.weights_dir, dir);
    b.be = make_backend();
    if (dsrt_model_create(&folder, b.be, B, T, 1, 0, &b.m) || dsrt_model_init(b.m, 999))
        fail_msg("%s", dsrt_error_message());
    int32_t tok[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)((i * 7919u + 13u) % 50257u);
        tgt[i] = (int32_t)(((i + 1) * 7919u + 13u) % 50257u);
    }
    float la = 0, lb = 0;
    assert_int_equal(dsrt_model_forward(a.m, tok, tgt, B, T, DSRT_GPT2_EVAL, 1.0f, &la), 0);
    assert_int_equal(dsrt_model_forward(b.m, tok, tgt, B, T, DSRT_GPT2_EVAL, 1.0f, &lb), 0);
    size_t nl = (size_t)B * T * 50257;
    a.logits = malloc(nl * sizeof(float));
    b.logits = malloc(nl * sizeof(float));
    assert_int_equal(dsrt_model_get_logits_f32(a.m, a.logits), 0);
    assert_int_equal(dsrt_model_get_logits_f32(b.m, b.logits), 0);
    if (la != lb)
        fail_msg("GPT-2 124M: preset loss %.9g, from the folder %.9g", (double)la, (double)lb);
    assert_memory_equal(a.logits, b.logits, nl * sizeof(float));
    print_message("gpt2 (124M, %zu parameters): the preset and its Hugging Face folder give loss %.7f both\n",
                  dsrt_model_num_params(a.m), (double)la);
    run_free(&a);
    run_free(&b);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            g_backend = argv[++i];
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            const char *d = argv[++i];
            g_dt = !strcmp(d, "bf16") ? DSRT_BF16 : !strcmp(d, "fp16") ? DSRT_F16 : DSRT_F32;
        } else
            g_dir = argv[i];
    }
    if (!g_dir) {
        fprintf(stderr, "usage: %s [--backend cpu|cuda] [--dtype fp32|bf16|fp16] HF_DIR\n", argv[0]);
        return 2;
    }
    if (!strcmp(g_backend, "cuda") && dsrt_cuda_device_count() == 0) {
        printf("skipped: no CUDA device (or no CUDA in this build): the CUDA backend is not compared\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_llama),
        cmocka_unit_test(test_tiny_qwen2),
        cmocka_unit_test(test_tiny_gpt2),
        cmocka_unit_test(test_llama32_1b_layer),
        cmocka_unit_test(test_gpt2_124m_folder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
