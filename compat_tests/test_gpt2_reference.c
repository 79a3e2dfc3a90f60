/* dsrt's GPT-2 against PyTorch: the reference files in compat_tests/reference/
 * hold, for fixed inputs and the initial weights dsrt makes from a seed, the
 * logits, loss and every parameter gradient that PyTorch computes in float64
 * (see reference/README.md for how they are made).
 *
 *   test_gpt2_reference [--backend cpu|cuda] [--dtype fp32|bf16|fp16] REFERENCE_DIR
 *
 * fp32 (the tolerances): loss within 1e-5, logits within 1e-4, every
 * gradient element within 1e-4 + 1e-3 |ref|.
 *
 * bf16 / fp16: weights, activations and gradients are stored in 16 bits, so
 * the comparison is against the same float64 reference and its error budget
 * is the storage type's unit roundoff u (bf16 2^-8, fp16 2^-11): every weight
 * starts up to u (relative) off, and each of the ~15 stored intermediates of a
 * block adds a rounding of relative size <= u. Independent roundings add up
 * like a random walk, so the logits and each gradient tensor as a whole end a
 * few u off (element-wise comparison means little at 8 bits of mantissa; the
 * tensor's relative L2 error is what training feels), and the mean loss,
 * which averages many such errors, far less. Measured on these cases (CPU):
 * logits 1.9 u, the worst gradient tensor 2.8 u, loss under 0.1 u. The bounds,
 * with room for another backend's different summation order: |loss - ref|
 * <= u |ref|, logits relative L2 <= 4 u, each gradient tensor relative L2 <=
 * 8 u. fp16 runs with loss scale 1024, as DeepSpeed's scaler would, so small
 * gradients do not flush to zero; the gradients are unscaled
 * before the comparison. */
#include <hdf5.h>
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

static const char *g_dir;
static const char *g_backend = "cpu";
static dsrt_dtype g_dt = DSRT_F32;

/* ---- HDF5 reading */
static char *read_str_attr(hid_t obj, const char *name)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return NULL;
    hid_t t = H5Aget_type(a);
    char *out = NULL;
    if (H5Tis_variable_str(t) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        char *s = NULL;
        if (H5Aread(a, mt, &s) >= 0 && s) {
            out = dsrt_strdup(s);
            H5free_memory(s);
        }
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(t);
        out = calloc(n + 1, 1);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n);
        H5Tset_cset(mt, H5Tget_cset(t));
        H5Tset_strpad(mt, H5T_STR_NULLPAD);
        if (H5Aread(a, mt, out) < 0) {
            free(out);
            out = NULL;
        }
        H5Tclose(mt);
    }
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

static long long read_int_attr(hid_t obj, const char *name)
{
    long long v = -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a >= 0) {
        H5Aread(a, H5T_NATIVE_LLONG, &v);
        H5Aclose(a);
    }
    return v;
}

/* a dataset as a malloc'd array of `mem_type`; *n = element count */
static void *read_dataset(hid_t f, const char *name, hid_t mem_type, size_t elem, size_t *n)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0)
        fail_msg("%s: no dataset %s", g_dir, name);
    hid_t s = H5Dget_space(d);
    hssize_t cnt = H5Sget_simple_extent_npoints(s);
    void *buf = malloc((size_t)(cnt > 0 ? cnt : 1) * elem);
    if (H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        fail_msg("cannot read dataset %s", name);
    H5Sclose(s);
    H5Dclose(d);
    *n = (size_t)cnt;
    return buf;
}

static double rel_l2(const float *got, const float *want, size_t n, double scale)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] * scale - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void run_case(const char *name)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s.h5", g_dir, name);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        fail_msg("cannot open reference file %s (regenerate with compat_tests/reference/"
                 "make_references.sh)",
                 path);
    char *cfg_text = read_str_attr(f, "config");
    assert_non_null(cfg_text);
    long long seed = read_int_attr(f, "init_seed"), B = read_int_attr(f, "B"),
              T = read_int_attr(f, "T");
    assert_true(seed >= 0 && B > 0 && T > 0);

    dsrt_gpt2_config cfg;
    if (dsrt_gpt2_config_parse(cfg_text, strlen(cfg_text), path, &cfg))
        fail_msg("%s", dsrt_error_message());
    dsrt_backend *be = NULL;
    dsrt_status st = !strcmp(g_backend, "cuda") ? dsrt_backend_cuda_create(g_dt, 0, &be)
                                                : dsrt_backend_cpu_create(g_dt, &be);
    if (st)
        fail_msg("backend %s: %s", g_backend, dsrt_error_message());
    dsrt_gpt2 *m = NULL;
    if (dsrt_gpt2_create(&cfg, be, (int)B, (int)T, &m) || dsrt_gpt2_init(m, (uint64_t)seed))
        fail_msg("%s", dsrt_error_message());

    size_t np, n;
    const dsrt_param *ps = dsrt_gpt2_params(m, &np);
    size_t total = dsrt_gpt2_num_params(m);
    float *w = malloc(total * sizeof(float)), *g = malloc(total * sizeof(float));
    /* the weights PyTorch used are the ones dsrt makes from the seed (fp32 init) */
    if (g_dt == DSRT_F32) {
        assert_int_equal(dsrt_gpt2_get_params_f32(m, w), 0);
        for (size_t k = 0; k < np; k++) {
            char ds[256];
            snprintf(ds, sizeof ds, "param_sums/%s", ps[k].name);
            double *ref = read_dataset(f, ds, H5T_NATIVE_DOUBLE, sizeof(double), &n);
            double s = 0, sa = 0;
            for (size_t i = 0; i < ps[k].numel; i++)
                s += w[ps[k].offset + i], sa += fabs(w[ps[k].offset + i]);
            if (fabs(s - ref[0]) > 1e-9 * sa + 1e-12)
                fail_msg("%s: %s: initial weights differ from those the reference was made "
                         "with (sum %.17g vs %.17g)",
                         name, ps[k].name, s, ref[0]);
            free(ref);
        }
    }

    int32_t *tok = read_dataset(f, "tokens", H5T_NATIVE_INT32, 4, &n);
    assert_int_equal(n, (size_t)(B * T));
    int32_t *tgt = read_dataset(f, "targets", H5T_NATIVE_INT32, 4, &n);
    float *ref_logits = read_dataset(f, "logits", H5T_NATIVE_FLOAT, 4, &n);
    assert_int_equal(n, (size_t)(B * T * cfg.vocab_size));
    double *ref_loss = read_dataset(f, "loss", H5T_NATIVE_DOUBLE, 8, &n);

    double u = g_dt == DSRT_BF16 ? 0x1p-8 : g_dt == DSRT_F16 ? 0x1p-11 : 0.0;
    float loss = 0;
    float *logits = malloc((size_t)(B * T * cfg.vocab_size) * sizeof(float));
    assert_int_equal(dsrt_gpt2_forward(m, tok, tgt, (int)B, (int)T, DSRT_GPT2_EVAL, 1.0f, &loss), 0);
    assert_int_equal(dsrt_gpt2_get_logits_f32(m, logits), 0);
    size_t nl = (size_t)(B * T * cfg.vocab_size);
    double worst_logit = 0;
    for (size_t i = 0; i < nl; i++)
        worst_logit = fmax(worst_logit, fabs((double)logits[i] - ref_logits[i]));
    double logit_rel = rel_l2(logits, ref_logits, nl, 1.0);
    print_message("%s %s/%s: loss %.8f (ref %.8f, diff %.2e), logits max diff %.2e rel L2 %.2e\n",
                  name, g_backend, dsrt_dtype_name(g_dt), (double)loss, ref_loss[0],
                  fabs(loss - ref_loss[0]), worst_logit, logit_rel);
    if (g_dt == DSRT_F32) {
        assert_true(fabs(loss - ref_loss[0]) <= 1e-5);
        assert_true(worst_logit <= 1e-4);
    } else {
        assert_true(fabs(loss - ref_loss[0]) <= u * fabs(ref_loss[0]));
        assert_true(logit_rel <= 4 * u);
    }

    float scale = g_dt == DSRT_F16 ? 1024.0f : 1.0f;
    assert_int_equal(dsrt_gpt2_zero_grad(m), 0);
    assert_int_equal(dsrt_gpt2_forward(m, tok, tgt, (int)B, (int)T, DSRT_GPT2_TRAIN, scale, &loss), 0);
    assert_int_equal(dsrt_gpt2_backward(m, NULL, NULL), 0);
    assert_int_equal(dsrt_gpt2_get_grads_f32(m, g), 0);
    int bad = 0;
    double worst_rel = 0;
    const char *worst_name = "";
    for (size_t k = 0; k < np; k++) {
        char ds[256];
        snprintf(ds, sizeof ds, "grads/%s", ps[k].name);
        float *ref = read_dataset(f, ds, H5T_NATIVE_FLOAT, 4, &n);
        assert_int_equal(n, ps[k].numel);
        const float *got = g + ps[k].offset;
        if (g_dt == DSRT_F32) {
            for (size_t i = 0; i < n; i++) {
                double d = fabs((double)got[i] - ref[i]);
                if (d > 1e-4 + 1e-3 * fabs(ref[i])) {
                    if (bad++ < 5)
                        print_error("%s: %s[%zu]: dsrt %.8g, PyTorch %.8g\n", name, ps[k].name, i,
                                    (double)got[i], (double)ref[i]);
                }
            }
        }
        double r = rel_l2(got, ref, n, 1.0 / scale);
        if (r > worst_rel)
            worst_rel = r, worst_name = ps[k].name;
        if (g_dt != DSRT_F32 && r > 8 * u) {
            print_error("%s: %s: relative L2 error %.3g > 8 u = %.3g\n", name, ps[k].name, r,
                        8 * u);
            bad++;
        }
        free(ref);
    }
    print_message("%s %s/%s: %zu gradient tensors, worst relative L2 error %.2e (%s)\n", name,
                  g_backend, dsrt_dtype_name(g_dt), np, worst_rel, worst_name);
    assert_int_equal(bad, 0);

    free(w), free(g), free(tok), free(tgt), free(ref_logits), free(ref_loss), free(logits);
    free(cfg_text);
    H5Fclose(f);
    dsrt_gpt2_destroy(m);
    be->ops->destroy(be);
}

static void test_tiny(void **state) { (void)state; run_case("tiny"); }
static void test_odd(void **state) { (void)state; run_case("odd"); }
static void test_mask(void **state) { (void)state; run_case("mask"); }
static void test_layer124m(void **state) { (void)state; run_case("layer124m"); }

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
        fprintf(stderr, "usage: %s [--backend cpu|cuda] [--dtype fp32|bf16|fp16] REFERENCE_DIR\n",
                argv[0]);
        return 2;
    }
    if (!strcmp(g_backend, "cuda")) {
        dsrt_backend *be = NULL;
        if (dsrt_backend_cuda_create(g_dt, 0, &be)) {
            printf("SKIP: no usable CUDA GPU (%s)\n", dsrt_error_message());
            return 77;
        }
        be->ops->destroy(be);
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported by the test */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny),
        cmocka_unit_test(test_odd),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_layer124m),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
