/* Forward+backward throughput of a built-in model (GPT-2, or the LLaMA
 * family from a config.json or model folder) on the CPU backend, against
 * PyTorch on the same model, batch and thread count, measured in the same
 * run, and against the machine's own sgemm rate (also measured here).
 *
 *   bench_gpt2 [--model PRESET|config.json|DIR] [--batch B] [--seq T] [--steps S]
 *              [--warmup W] [--threads N] [--dtype fp32|bf16|fp16]
 *              [--torch-script PATH] [--python PATH]
 *              [--backend cpu|cuda] [--peak-tflops X]
 *
 * On CUDA the report is MFU: achieved FLOP/s over --peak-tflops (default
 * 989.4, NVIDIA's dense BF16/FP16 tensor-core figure for the H100 SXM; 756 for
 * the H100 PCIe), with the same FLOP count as below.
 *
 * FLOPs per token of a training step (PaLM's convention, Chowdhery et al.
 * 2022, appendix B): 6 * N_matmul + 12 * L * (NH * HS) * T, where N_matmul
 * counts every weight that takes part in a matmul (the tied LM head included)
 * and the second term is attention's q.k and att.v without a causal
 * discount: 3 x dsrt_model_forward_flops. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "model/model.h"
#include "base/internal.h"

/* sgemm rate on the shape of the model's widest matmul (N x C x 4C) */
static double sgemm_gflops(int M, int K, int N)
{
    float *a = malloc((size_t)M * K * sizeof(float)), *b = malloc((size_t)K * N * sizeof(float));
    float *c = calloc((size_t)M * N, sizeof(float));
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = (float)(i % 13) * 0.01f;
    for (size_t i = 0; i < (size_t)K * N; i++)
        b[i] = (float)(i % 7) * 0.01f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
    int reps = 0;
    double t0 = bench_now(), t;
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c,
                    N);
        reps++;
        t = bench_now() - t0;
    } while (t < 2.0 || reps < 3);
    free(a), free(b), free(c);
    return 2.0 * M * K * (double)N * reps / t / 1e9;
}

static double torch_tokens_per_s(const char *python, const char *script, const char *config_path,
                                 int B, int T, int steps, int warmup, int threads, char *why,
                                 size_t why_len)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s %s --config %s --batch %d --seq %d --steps %d --warmup %d --threads %d 2>&1",
             python, script, config_path, B, T, steps, warmup, threads);
    char last[4096];
    int rc;
    double tps = bench_run_for_number(cmd, "tokens_per_s", last, sizeof last, &rc);
    if (tps <= 0)
        snprintf(why, why_len, "PyTorch run skipped (exit %d): %s", rc, last);
    return tps;
}

int main(int argc, char **argv)
{
    const char *model = "gpt2-tiny", *dtype = "fp32", *backend = "cpu";
    double peak_tflops = 989.4;
    const char *script = "bench/torch_gpt2.py", *python = "/usr/bin/python3";
    int B = 8, T = 256, steps = 5, warmup = 1, threads = omp_get_max_threads();
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--batch")) B = atoi(v);
        else if (!strcmp(k, "--seq")) T = atoi(v);
        else if (!strcmp(k, "--steps")) steps = atoi(v);
        else if (!strcmp(k, "--warmup")) warmup = atoi(v);
        else if (!strcmp(k, "--threads")) threads = atoi(v);
        else if (!strcmp(k, "--dtype")) dtype = v;
        else if (!strcmp(k, "--torch-script")) script = v;
        else if (!strcmp(k, "--python")) python = v;
        else if (!strcmp(k, "--backend")) backend = v;
        else if (!strcmp(k, "--peak-tflops")) peak_tflops = atof(v);
        else {
            fprintf(stderr, "bench_gpt2: unknown option %s\n", k);
            return 2;
        }
    }
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    dsrt_dtype dt = !strcmp(dtype, "bf16") ? DSRT_BF16 : !strcmp(dtype, "fp16") ? DSRT_F16 : DSRT_F32;

    dsrt_model_config cfg;
    dsrt_backend *be = NULL;
    dsrt_model *m = NULL;
    bool cuda = !strcmp(backend, "cuda");
    if (dsrt_model_config_load(model, &cfg) ||
        (cuda ? dsrt_backend_cuda_create(dt, 0, &be) : dsrt_backend_cpu_create(dt, &be)) ||
        dsrt_model_create(&cfg, be, B, T, 1, 0, &m) || dsrt_model_init(m, 1234)) {
        fprintf(stderr, "bench_gpt2: %s\n", dsrt_error_message());
        return 1;
    }
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    int N = B * T, C = dsrt_model_hidden_size(&cfg), L = dsrt_model_num_layers(&cfg), F = dsrt_model_intermediate_size(&cfg),
        V = dsrt_model_vocab_size(&cfg);
    printf("== %s forward+backward, %s backend\n", dsrt_model_type(&cfg), backend);
    printf("model %s: L=%d C=%d F=%d NH=%d V=%d, %zu parameters; batch %d x %d; %s; threads %d\n", model, L, C,
           F, dsrt_model_num_heads(&cfg), V, dsrt_model_num_params(m), B, T, dtype, threads);
    printf("OpenBLAS: %s; OPENBLAS_CORETYPE=%s\n", openblas_get_config(),
           coretype ? coretype : "(unset)");

    double flops_tok = 3.0 * dsrt_model_forward_flops(&cfg, 1, T) / T;

    /* the sgemm rate on the widest MLP matmul (N x C x F) */
    double sg = cuda ? 0 : sgemm_gflops(N, C, F);
    if (!cuda)
        printf("sgemm %d x %d x %d: %.1f GFLOP/s\n", N, C, F, sg);

    int32_t *tok = malloc((size_t)N * sizeof(int32_t)), *tgt = malloc((size_t)N * sizeof(int32_t));
    uint64_t s = 42;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((s >> 33) % (uint64_t)V);
        tgt[i] = (int32_t)((s >> 13) % (uint64_t)V);
    }
    double t_total = 0, t_fwd = 0;
    float loss = 0;
    for (int it = 0; it < warmup + steps; it++) {
        double t0 = bench_now();
        if (dsrt_model_zero_grad(m) || dsrt_model_forward(m, tok, tgt, B, T, DSRT_GPT2_TRAIN, 1.0f, &loss)) {
            fprintf(stderr, "bench_gpt2: %s\n", dsrt_error_message());
            return 1;
        }
        double t1 = bench_now();
        if (dsrt_model_backward(m, NULL, NULL) || be->ops->sync(be)) {
            fprintf(stderr, "bench_gpt2: %s\n", dsrt_error_message());
            return 1;
        }
        double t2 = bench_now();
        if (it >= warmup) {
            t_total += t2 - t0;
            t_fwd += t1 - t0;
        }
    }
    double step = t_total / steps, tps = N / step;
    double achieved = flops_tok * N / step / 1e9;
    printf("FLOPs per token (6 N_matmul + 12 L (NH HS) T): %.4g\n", flops_tok);
    if (cuda) {
        printf("dsrt:    %.4f s/step (forward %.4f s), %.0f tokens/s, %.1f TFLOP/s, MFU %.1f%% of "
               "%.1f TFLOP/s (loss %.4f)\n",
               step, t_fwd / steps, tps, achieved / 1e3, 100.0 * achieved / 1e3 / peak_tflops,
               peak_tflops, (double)loss);
        dsrt_model_destroy(m);
        be->ops->destroy(be);
        return 0;
    }
    printf("dsrt:    %.3f s/step (forward %.3f s), %.0f tokens/s, %.1f GFLOP/s = %.0f%% of sgemm "
           "(loss %.4f)\n",
           step, t_fwd / steps, tps, achieved, 100.0 * achieved / sg, (double)loss);

    /* PyTorch: same config file, batch, threads */
    char cfg_path[1024], why[1024] = "";
    const char *preset = dsrt_gpt2_preset_json(model);
    if (preset) {
        snprintf(cfg_path, sizeof cfg_path, "/tmp/dsrt_bench_%s_%d.json", model, (int)getpid());
        FILE *f = fopen(cfg_path, "w");
        if (f) {
            fputs(preset, f);
            fclose(f);
        }
    } else if (cfg.weights_dir[0]) {
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", model);
    } else {
        snprintf(cfg_path, sizeof cfg_path, "%s", model);
    }
    double ttps = 0;
    if (dt == DSRT_F32)
        ttps = torch_tokens_per_s(python, script, cfg_path, B, T, steps, warmup, threads, why,
                                  sizeof why);
    else
        snprintf(why, sizeof why, "PyTorch comparison runs in fp32 only");
    if (preset)
        remove(cfg_path);
    if (ttps > 0)
        printf("pytorch: %.0f tokens/s\nratio dsrt/pytorch: %.2fx\n", ttps, tps / ttps);
    else
        printf("pytorch: %s\n", why);
    free(tok), free(tgt);
    dsrt_model_destroy(m);
    be->ops->destroy(be);
    return 0;
}
