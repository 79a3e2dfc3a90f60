/* The fused AdamW step (backend adamw_step) as a memory stream, against
 * baselines measured in the same run:
 *
 *   bench_adamw [--n N] [--steps S] [--warmup W] [--threads T] [--dtype fp32|bf16|both]
 *               [--backend cpu|cuda] [--python PATH] [--torch-script PATH] [--no-torch]
 *
 * Bytes moved per element by adamw_step (each counted once, as STREAM does):
 *   read  grad (storage type), master, m, v (fp32)
 *   write master, m, v (fp32), params (storage type) -- for fp32 the params are
 *         the master (aliased), so nothing more is written
 *   fp32: 4 + 12 read + 12 written = 28 B;  bf16: 2 + 12 read + 12 + 2 written = 28 B.
 *
 * CPU: against a STREAM triad a[i] = b[i] + s*c[i] over three arrays whose total
 * size equals adamw's working set (master, m, v, grad[, params]), counted as
 * STREAM does (12 B per element, no write-allocate), same threads; target
 * >= 80%. (adamw writes only lines it has just read, so it pays no
 * write-allocate; the triad's a[] does, and on a machine whose few cores
 * cannot keep many reads in flight that lets adamw's counted rate exceed the
 * triad's: ratios above 100% are expected there.) And against
 * torch.optim.AdamW (bench/torch_adamw.py, the best of its variants) on one
 * flat fp32 parameter of n elements, same threads; target >= 3x.
 * grad_stats is timed too (its stream reads the gradient once).
 * CUDA: against cudaMemcpy device-to-device moving the same bytes (a copy of
 * B/2 bytes reads B/2 and writes B/2); target >= 85%.
 *
 * Buffers come from the backend's alloc (CPU: mmap with huge pages) once, are
 * first touched by the same static OpenMP split the ops use, and every timed
 * op runs after an untimed warm-up. */
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "kernels/backend.h"
#include "bench_util.h"
#include "kernels/common/adamw.h"
#include "base/internal.h"

#ifdef DSRT_WITH_CUDA
#include <cuda_runtime.h>
#endif

static void die(const char *what)
{
    fprintf(stderr, "bench_adamw: %s: %s\n", what, dsrt_error_message());
    exit(1);
}

static void *balloc(dsrt_backend *be, size_t bytes)
{
    void *p = NULL;
    if (be->ops->alloc(be, bytes, &p))
        die("alloc");
    return p;
}

/* cheap deterministic values in [-1, 1) */
static inline float hash_uniform(uint64_t i, uint64_t seed)
{
    uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ seed;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    return (float)((x >> 40) * 0x1.0p-24 * 2.0 - 1.0);
}

/* ---------------------------------------------------------------- baselines */
/* The reference stream, timed interleaved with the op (so both see the same
 * machine: other work on a small VM moves bandwidth a lot): CPU a STREAM triad
 * over three arrays of `bytes` in all, CUDA a device-to-device copy. */
typedef struct baseline {
    dsrt_backend *be; /* CPU: a backend of its own, for its allocator (mmap, huge pages) */
    float *a, *b, *c;
    size_t len;       /* elements per triad array */
    void *src, *dst;  /* CUDA */
    size_t half;      /* bytes copied */
    double bytes;     /* counted per pass */
} baseline;

static baseline baseline_new(dsrt_backend *be, bool cuda, size_t bytes)
{
    baseline bl = {0};
    if (cuda) {
        bl.be = be;
        bl.half = bytes / 2 / 256 * 256;
        bl.src = balloc(be, bl.half);
        bl.dst = balloc(be, bl.half);
        bl.bytes = 2.0 * (double)bl.half;
        return bl;
    }
    if (dsrt_backend_cpu_create(DSRT_F32, &bl.be))
        die("cpu backend");
    bl.len = bytes / (3 * sizeof(float));
    bl.a = balloc(bl.be, bl.len * sizeof(float));
    bl.b = balloc(bl.be, bl.len * sizeof(float));
    bl.c = balloc(bl.be, bl.len * sizeof(float));
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < bl.len; i++) {
        bl.a[i] = 0.0f;
        bl.b[i] = hash_uniform(i, 1);
        bl.c[i] = hash_uniform(i, 2);
    }
    bl.bytes = 3.0 * sizeof(float) * (double)bl.len; /* STREAM's count: no write-allocate */
    return bl;
}

/* one pass (CUDA: reps passes), seconds per pass */
static double baseline_run(baseline *bl, bool cuda, int reps)
{
    double t0 = bench_now();
    if (cuda) {
#ifdef DSRT_WITH_CUDA
        for (int k = 0; k < reps; k++)
            if (cudaMemcpyAsync(bl->dst, bl->src, bl->half, cudaMemcpyDeviceToDevice, 0) !=
                cudaSuccess) {
                fprintf(stderr, "bench_adamw: cudaMemcpyAsync failed\n");
                exit(1);
            }
        if (cudaDeviceSynchronize() != cudaSuccess) {
            fprintf(stderr, "bench_adamw: cudaDeviceSynchronize failed\n");
            exit(1);
        }
#endif
        return (bench_now() - t0) / reps;
    }
    float *a = bl->a;
    const float *b = bl->b, *c = bl->c;
    const float s = 3.0f;
    size_t len = bl->len;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < len; i++)
        a[i] = b[i] + s * c[i];
    return bench_now() - t0;
}

static void baseline_free(baseline *bl, bool cuda)
{
    if (cuda) {
        bl->be->ops->free(bl->be, bl->src);
        bl->be->ops->free(bl->be, bl->dst);
        return;
    }
    bl->be->ops->free(bl->be, bl->a), bl->be->ops->free(bl->be, bl->b), bl->be->ops->free(bl->be, bl->c);
    bl->be->ops->destroy(bl->be);
}

/* ---------------------------------------------------------------- torch */
static double torch_step_s(const char *python, const char *script, size_t n, int threads,
                           char *line_out, size_t line_len)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s --n %zu --threads %d --steps 3 --warmup 1 2>&1", python,
             script, n, threads);
    char last[4096];
    int rc;
    double s = bench_run_for_number(cmd, "best_s", last, sizeof last, &rc);
    if (s > 0)
        snprintf(line_out, line_len, "%s", last);
    else
        snprintf(line_out, line_len, "skipped (exit %d): %s", rc, last);
    return s;
}

/* ---------------------------------------------------------------- one dtype */
typedef struct result {
    double step_s, gbs, stats_s, stats_gbs, base_gbs;
    size_t bytes_step, bytes_working_set;
} result;

static result run_adamw(dsrt_backend *be, size_t n, int steps, int warmup, bool cuda)
{
    dsrt_dtype dt = be->dt;
    size_t es = dsrt_dtype_size(dt);
    float *master = balloc(be, n * 4), *m = balloc(be, n * 4), *v = balloc(be, n * 4);
    void *grads = balloc(be, n * es);
    void *params = dt == DSRT_F32 ? (void *)master : balloc(be, n * es);

    /* initial values (CPU: first touch by the ops' static split) */
    if (!cuda) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            float p = hash_uniform(i, 3) * 0.1f;
            master[i] = p;
            m[i] = 0.0f;
            v[i] = 0.0f;
            dsrt_store(dt, grads, i, hash_uniform(i, 4) * 1e-3f);
            if (dt != DSRT_F32)
                dsrt_store(dt, params, i, p);
        }
    } else {
        float *h = malloc(n * sizeof(float));
        if (!h) {
            fprintf(stderr, "bench_adamw: host staging: out of memory\n");
            exit(1);
        }
        for (size_t i = 0; i < n; i++)
            h[i] = hash_uniform(i, 4) * 1e-3f;
        if (be->ops->upload_f32(be, grads, h, n))
            die("upload grads");
        for (size_t i = 0; i < n; i++)
            h[i] = hash_uniform(i, 3) * 0.1f;
        if (be->ops->upload(be, master, h, n * 4) ||
            (dt != DSRT_F32 && be->ops->upload_f32(be, params, h, n)))
            die("upload params");
        free(h);
    }

    result r = {0};
    r.bytes_step = n * (2 * es + 24) - (dt == DSRT_F32 ? n * es : 0); /* see the header */
    r.bytes_working_set = n * (12 + es) + (dt == DSRT_F32 ? 0 : n * es);
    /* CPU: a triad over the working set's size; CUDA: a copy moving the step's bytes */
    baseline bl = baseline_new(be, cuda, cuda ? r.bytes_step : r.bytes_working_set);
    int reps = cuda ? 20 : 1; /* GPU steps are ~1 ms: time a batch of them */
    long step = 0;
    double best = 1e30, best_base = 1e30, best_stats = 1e30;
    for (int it = 0; it < warmup + steps; it++) {
        double t0 = bench_now();
        for (int k = 0; k < reps; k++) {
            step++;
            dsrt_adamw_args a = {.lr = 1e-3f,
                                 .beta1 = 0.9f,
                                 .beta2 = 0.999f,
                                 .eps = 1e-8f,
                                 .weight_decay = 0.01f,
                                 .grad_mul = 1.0f / 1024.0f,
                                 .bc1 = dsrt_adamw_bias_correction(0.9f, step),
                                 .bc2 = dsrt_adamw_bias_correction(0.999f, step),
                                 .adamw_mode = 1};
            if (dsrt_backend_adamw_step(be, params, master, m, v, grads, n, &a))
                die("adamw_step");
        }
        if (be->ops->sync(be))
            die("sync");
        double t = (bench_now() - t0) / reps;
        double tb = baseline_run(&bl, cuda, reps);
        /* grad_stats: one read of the gradient (and a sync on CUDA) */
        double s = 0;
        int bad = 0;
        t0 = bench_now();
        for (int k = 0; k < reps; k++)
            if (be->ops->grad_stats(be, grads, n, &s, &bad))
                die("grad_stats");
        double ts = (bench_now() - t0) / reps;
        if (bad)
            fprintf(stderr, "bench_adamw: unexpected non-finite gradient\n");
        if (it >= warmup) {
            best = t < best ? t : best;
            best_base = tb < best_base ? tb : best_base;
            best_stats = ts < best_stats ? ts : best_stats;
        }
    }
    r.step_s = best;
    r.gbs = (double)r.bytes_step / best / 1e9;
    r.base_gbs = bl.bytes / best_base / 1e9;
    r.stats_s = best_stats;
    r.stats_gbs = (double)(n * es) / best_stats / 1e9;
    baseline_free(&bl, cuda);
    be->ops->free(be, master), be->ops->free(be, m), be->ops->free(be, v), be->ops->free(be, grads);
    if (dt != DSRT_F32)
        be->ops->free(be, params);
    return r;
}

int main(int argc, char **argv)
{
    size_t n = 124439808; /* GPT-2 124M */
    int steps = 3, warmup = 1, threads = omp_get_max_threads(), torch = 1;
    const char *dtype = "both", *backend = "cpu";
    const char *python = "/usr/bin/python3", *script = "bench/torch_adamw.py";
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--no-torch")) {
            torch = 0;
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench_adamw: %s needs a value\n", k);
            return 2;
        }
        i++;
        if (!strcmp(k, "--n")) n = (size_t)strtoull(v, NULL, 10);
        else if (!strcmp(k, "--steps")) steps = atoi(v);
        else if (!strcmp(k, "--warmup")) warmup = atoi(v);
        else if (!strcmp(k, "--threads")) threads = atoi(v);
        else if (!strcmp(k, "--dtype")) dtype = v;
        else if (!strcmp(k, "--backend")) backend = v;
        else if (!strcmp(k, "--python")) python = v;
        else if (!strcmp(k, "--torch-script")) script = v;
        else {
            fprintf(stderr, "bench_adamw: unknown option %s\n", k);
            return 2;
        }
    }
    if (n < 1 || steps < 1 || warmup < 0 || threads < 1) {
        fprintf(stderr, "bench_adamw: n, steps, threads >= 1, warmup >= 0\n");
        return 2;
    }
    bool cuda = !strcmp(backend, "cuda");
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("== fused AdamW step, %s backend, n = %zu\n", backend, n);
    printf("threads %d; OPENBLAS_CORETYPE=%s\n", threads, coretype ? coretype : "(unset)");
    printf("bytes per element counted: read grad + master + m + v, write master + m + v (+ params "
           "when not aliased): fp32 4+12+12 = 28 B (params alias master), bf16 2+12+12+2 = 28 B\n");

    dsrt_dtype dts[2];
    int ndt = 0;
    if (!strcmp(dtype, "fp32") || !strcmp(dtype, "both"))
        dts[ndt++] = DSRT_F32;
    if (!strcmp(dtype, "bf16") || !strcmp(dtype, "both"))
        dts[ndt++] = DSRT_BF16;
    if (!strcmp(dtype, "fp16"))
        dts[ndt++] = DSRT_F16;
    if (!ndt) {
        fprintf(stderr, "bench_adamw: --dtype fp32|bf16|fp16|both\n");
        return 2;
    }

    double fp32_step = 0;
    for (int d = 0; d < ndt; d++) {
        dsrt_backend *be = NULL;
        if (cuda ? dsrt_backend_cuda_create(dts[d], 0, &be) : dsrt_backend_cpu_create(dts[d], &be))
            die("backend");
        result r = run_adamw(be, n, steps, warmup, cuda);
        if (dts[d] == DSRT_F32)
            fp32_step = r.step_s;
        printf("\n-- %s params (master, m, v fp32): working set %.2f GB, %.2f GB moved per step\n",
               dsrt_dtype_name(dts[d]), r.bytes_working_set / 1e9, r.bytes_step / 1e9);
        printf("dsrt adamw_step: %.4f s/step, %.2f GB/s\n", r.step_s, r.gbs);
        printf("dsrt grad_stats: %.4f s, %.2f GB/s (reads the gradient once)\n", r.stats_s,
               r.stats_gbs);
        if (cuda) {
            printf("cudaMemcpy D2D of %.2f GB (moves %.2f GB): %.2f GB/s\n", r.bytes_step / 2e9,
                   r.bytes_step / 1e9, r.base_gbs);
            printf("adamw_step / memcpy: %.1f%% (target >= 85%%)\n", 100.0 * r.gbs / r.base_gbs);
        } else {
            printf("STREAM triad over 3 x %.2f GB (12 B/element counted), interleaved: %.2f GB/s\n",
                   r.bytes_working_set / 3e9, r.base_gbs);
            printf("adamw_step / triad: %.1f%% (target >= 80%%)\n", 100.0 * r.gbs / r.base_gbs);
        }
        be->ops->destroy(be);
    }

    if (!cuda && torch && fp32_step > 0) {
        char line[4096];
        double ts = torch_step_s(python, script, n, threads, line, sizeof line);
        printf("\n-- torch.optim.AdamW, one flat fp32 parameter of n elements, %d threads\n",
               threads);
        printf("pytorch: %s\n", line);
        if (ts > 0)
            printf("dsrt fp32 %.4f s/step vs torch %.4f s/step: %.2fx (target >= 3x)\n", fp32_step,
                   ts, ts / fp32_step);
    } else if (!cuda && torch) {
        printf("\npytorch: comparison runs with fp32 (--dtype fp32 or both)\n");
    }
    return 0;
}
