/* ZeRO data parallelism on the CPU: one process per rank, started by mpiexec
 * (bench/bench_zero.sh runs it on 1, 2 and 4 ranks and prints the table).
 *
 *   mpiexec -n N bench_zero [--steps S] [--warmup W] [--seq T] [--batch B]
 *                           [--bucket ELEMENTS] [--dtypes fp32,bf16] [--stages 2,1]
 *                           [--mem-seq T] [--no-mem]
 *
 * For each dtype and ZeRO stage, in one run on N ranks:
 *  - the step time of GPT-2 "gpt2-tiny" (engine_train, one micro-batch of
 *    B x T tokens, gradient_accumulation_steps 1) with "overlap_comm": true
 *    and false. Both engines live side by side and their steps alternate, so
 *    a slow patch of the machine hits both alike; W warm-up steps each, then
 *    the median of S steps, timed on rank 0 (every train call ends with the
 *    step's all-gather, so the ranks leave it together).
 *  - the same step's communication alone, with no compute, on the process
 *    group's comm (zero/comm.h): the gradient reduce-scatters (stage 0:
 *    all-reduces) in the engine's
 *    bucket schedule (the parameters in backward order, DeepSpeed's rule that
 *    a parameter which does not fit closes the bucket first, buckets of
 *    reduce_bucket_size elements in the communication dtype), the all-reduce
 *    of the norm / overflow flag / loss (4 doubles), then the all-gather of
 *    the updated partition (P = padded / N elements per rank, model dtype).
 *    Each collective is waited for before the next, as without overlap.
 *    Its iterations are interleaved with the two engines' steps.
 *  - per-rank model-state memory (engine_info) for stages 0, 1 and 2 in fp16
 *    on the same model with a short sequence (the figures do not depend on it).
 *
 * Rank 0 prints one record per line ("info", "step", "mem": key=value
 * fields, times in milliseconds) for the driver script to tabulate. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "zero/comm.h"
#include "zero/dist.h"
#include "dsrt.h"

const dsrt_api *dsrt_api_table(void);

static const dsrt_api *api;
static dsrt_dist *dist;
static int rank_, world_;

static const char *last_error(void)
{
    static char buf[1024];
    dsrt_last_error_args le = {sizeof le, buf, sizeof buf, 0, 0};
    api->last_error(&le);
    return buf;
}

static void die(const char *what, dsrt_status st)
{
    fprintf(stderr, "bench_zero: rank %d: %s: %s: %s\n", rank_, what, dsrt_status_name(st),
            last_error());
    /* a rank that leaves leaves the others in a collective: they time out */
    exit(1);
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        dsrt_status st_ = (call);                                                                  \
        if (st_)                                                                                   \
            die(#call, st_);                                                                       \
    } while (0)

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench_zero: rank %d: out of memory (%zu bytes)\n", rank_, n);
        exit(1);
    }
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double *s = xmalloc((size_t)n * sizeof *s);
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

/* median absolute deviation: the spread of the timed steps */
static double mad(const double *v, int n)
{
    double m = median(v, n), *d = xmalloc((size_t)n * sizeof *d);
    for (int i = 0; i < n; i++)
        d[i] = fabs(v[i] - m);
    double r = median(d, n);
    free(d);
    return r;
}

/* A collective over every rank that returns when all have reached it. */
static void barrier(void)
{
    double v[1] = {0};
    CHECK(dist->comm->allreduce_host_f64(dist->comm, v, 1, "bench_zero barrier"));
}

static dsrt_config *make_config(int stage, const char *dtype, int B, int bucket, int overlap)
{
    char prec[96] = "", text[1024];
    if (!strcmp(dtype, "fp16"))
        snprintf(prec, sizeof prec, "\"fp16\": {\"enabled\": true, \"initial_scale_power\": 12},");
    else if (!strcmp(dtype, "bf16"))
        snprintf(prec, sizeof prec, "\"bf16\": {\"enabled\": true},");
    snprintf(text, sizeof text,
             "{\"train_batch_size\": %d, \"train_micro_batch_size_per_gpu\": %d,"
             " \"gradient_accumulation_steps\": 1, %s"
             " \"gradient_clipping\": 1.0,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-4, \"weight_decay\": 0.01}},"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": %d,"
             "   \"allgather_bucket_size\": %d, \"overlap_comm\": %s}}",
             B * world_, B, prec, stage, bucket, bucket, overlap ? "true" : "false");
    dsrt_config_create_args cc = {.struct_size = sizeof cc, .text = text,
                                  .text_length = strlen(text), .world_size = world_};
    CHECK(api->config_create(&cc));
    return cc.config;
}

static dsrt_engine *make_engine(const dsrt_config *cfg, int T)
{
    dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cfg, .model = "gpt2-tiny",
                                  .seq_len = T, .seed = 7, .dist = dist};
    CHECK(api->engine_create(&ec));
    return ec.engine;
}

static void free_engine(dsrt_engine *e)
{
    dsrt_engine_destroy_args ed = {sizeof ed, e};
    api->engine_destroy(&ed);
}

static void free_config(dsrt_config *c)
{
    dsrt_config_destroy_args cd = {sizeof cd, c};
    api->config_destroy(&cd);
}

static double train_step(dsrt_engine *e, const int32_t *tok, const int32_t *tgt)
{
    dsrt_engine_train_args tr = {.struct_size = sizeof tr, .engine = e, .tokens = tok,
                                 .targets = tgt, .micro_batches = 1};
    double t0 = bench_now();
    CHECK(api->engine_train(&tr));
    return bench_now() - t0;
}

/* ---------------------------------------------------------------- the communication alone */

typedef struct comm_plan {
    size_t *bucket; /* elements of each bucket, in reduction order */
    size_t *counts; /* (nbuckets x N) stages 1/2: each owner's elements of the bucket (reduce-scatter) */
    bool scatter;
    int nbuckets;
    size_t P;       /* partition elements per rank */
    size_t ag_bucket; /* allgather_bucket_size */
    dsrt_dtype dt;  /* model (and, with no communication_data_type, gradient) dtype */
    void *bk[2];    /* the two bucket buffers the engine alternates between */
    void *flat;     /* padded = P * N elements, the all-gather's buffer */
} comm_plan;

/* The engine's bucket schedule: parameters in backward order (the GPT-2
 * backward reports them last registered first), a parameter that does not
 * fit the open bucket closes it, one larger than a bucket goes in pieces. */
static void plan_buckets(dsrt_engine *e, const dsrt_engine_info_args *in, size_t cap, comm_plan *cp)
{
    /* every bucket holds at least one piece: pieces <= tensors + elements / cap */
    size_t most = (size_t)in->num_param_tensors + (size_t)in->num_parameters / cap + 2, fill = 0;
    cp->bucket = xmalloc(most * sizeof(size_t));
    cp->counts = xmalloc(most * (size_t)world_ * sizeof(size_t));
    memset(cp->counts, 0, most * (size_t)world_ * sizeof(size_t));
    cp->nbuckets = 0;
    /* the flat offset where the backward is: parameters in registration order,
     * visited last first, so each bucket holds one contiguous flat range */
    size_t flat = (size_t)in->num_parameters;
    for (int64_t i = in->num_param_tensors; i-- > 0;) {
        dsrt_engine_param_args pa = {.struct_size = sizeof pa, .engine = e, .index = i};
        CHECK(api->engine_param(&pa));
        size_t len = (size_t)pa.numel, off = 0;
        while (len) {
            size_t room = cap - fill;
            if (room == 0 || (fill && len > room && off == 0)) {
                cp->bucket[cp->nbuckets++] = fill;
                fill = 0;
                continue;
            }
            size_t take = len < room ? len : room;
            /* elements [flat - len, flat - len + take) of the flat buffer, by owner */
            size_t *cnt = cp->counts + (size_t)cp->nbuckets * world_;
            for (size_t f = flat - len, f1 = f + take; f < f1;) {
                size_t owner = f / cp->P, end = (owner + 1) * cp->P;
                size_t n = (f1 < end ? f1 : end) - f;
                cnt[owner] += n;
                f += n;
            }
            fill += take, off += take, len -= take;
        }
        flat -= (size_t)pa.numel;
    }
    if (fill)
        cp->bucket[cp->nbuckets++] = fill;
}

static void plan_create(dsrt_engine *e, const dsrt_engine_info_args *in, size_t cap,
                        dsrt_dtype dt, comm_plan *cp)
{
    memset(cp, 0, sizeof *cp);
    cp->dt = dt;
    cp->P = (size_t)in->partition_size;
    cp->scatter = in->zero_stage > 0; /* stages 1/2 reduce-scatter (reduce_scatter: true) */
    cp->ag_bucket = cap < cp->P ? cap : cp->P; /* the bench sets allgather_bucket_size = reduce_bucket_size */
    if (cap > (size_t)in->num_parameters)
        cap = (size_t)in->num_parameters;
    plan_buckets(e, in, cap, cp);
    size_t es = dsrt_dtype_size(dt), padded = cp->P * (size_t)world_;
    for (int b = 0; b < 2; b++) {
        cp->bk[b] = xmalloc(cap * es);
        /* small finite values: the sums cost what real gradients cost */
        for (size_t i = 0; i < cap; i++)
            dsrt_store(dt, cp->bk[b], i, 1e-3f * (float)(i % 97));
    }
    cp->flat = xmalloc(padded * es);
    memset(cp->flat, 0, padded * es);
    size_t need = cap * es > padded * es ? cap * es : padded * es;
    CHECK(dist->comm->reserve(dist->comm, need));
}

static void plan_free(comm_plan *cp)
{
    free(cp->bucket);
    free(cp->counts);
    free(cp->bk[0]);
    free(cp->bk[1]);
    free(cp->flat);
}

/* One step's collectives; returns the seconds of each part on this rank. */
static void comm_step(const comm_plan *cp, double *t_reduce, double *t_norm, double *t_gather)
{
    dsrt_comm *c = dist->comm;
    uint64_t t;
    double t0 = bench_now();
    for (int b = 0; b < cp->nbuckets; b++) {
        if (cp->scatter)
            CHECK(c->reduce_scatter(c, cp->bk[b % 2], cp->counts + (size_t)b * world_, cp->dt,
                                    "bench_zero gradient bucket", &t));
        else
            CHECK(c->allreduce(c, cp->bk[b % 2], cp->bucket[b], cp->dt, DSRT_REDUCE_SUM,
                               "bench_zero gradient bucket", &t));
        CHECK(c->wait(c, t));
    }
    double t1 = bench_now();
    double v[4] = {1, 0, 2, 1};
    CHECK(c->allreduce_host_f64(c, v, 4, "bench_zero norm"));
    double t2 = bench_now();
    /* the engine's all-gather buckets: allgather_bucket_size offsets of every partition */
    for (size_t a = 0; a < cp->P; a += cp->ag_bucket) {
        size_t n = cp->P - a < cp->ag_bucket ? cp->P - a : cp->ag_bucket;
        CHECK(c->allgather_strided(c, (char *)cp->flat + a * dsrt_dtype_size(cp->dt), n, cp->P, cp->dt,
                                   "bench_zero all-gather", &t));
        CHECK(c->wait(c, t));
    }
    double t3 = bench_now();
    *t_reduce = t1 - t0;
    *t_norm = t2 - t1;
    *t_gather = t3 - t2;
}

/* ---------------------------------------------------------------- step times */

static void bench_config(const char *dtype, int stage, int B, int T, int bucket, int warmup,
                         int steps)
{
    /* 0: overlap_comm false; 1: true; 2: true, but the all-gather waited for
     * at the step (DSRT_ALLGATHER_WAIT=1): only the reduction overlaps */
    dsrt_config *cfg[3];
    dsrt_engine *eng[3];
    for (int o = 0; o < 3; o++) {
        if (o == 2)
            setenv("DSRT_ALLGATHER_WAIT", "1", 1);
        cfg[o] = make_config(stage, dtype, B, bucket, o > 0);
        eng[o] = make_engine(cfg[o], T);
        if (o == 2)
            unsetenv("DSRT_ALLGATHER_WAIT");
    }
    dsrt_engine_info_args in = {.struct_size = sizeof in, .engine = eng[0]};
    CHECK(api->engine_info(&in));
    dsrt_dtype dt = !strcmp(dtype, "bf16") ? DSRT_BF16 : !strcmp(dtype, "fp16") ? DSRT_F16 : DSRT_F32;
    comm_plan cp;
    plan_create(eng[0], &in, (size_t)bucket, dt, &cp);

    size_t ntok = (size_t)B * (size_t)T;
    int32_t *tok = xmalloc(ntok * sizeof *tok), *tgt = xmalloc(ntok * sizeof *tgt);
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(rank_ + 1);
    for (size_t i = 0; i < ntok; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((s >> 33) % (uint64_t)in.vocab_size);
        tgt[i] = (int32_t)((s >> 13) % (uint64_t)in.vocab_size);
    }
    double *ts[3], *tc = xmalloc((size_t)steps * sizeof *tc), *tr = xmalloc((size_t)steps * sizeof *tr),
                   *tn = xmalloc((size_t)steps * sizeof *tn), *tg = xmalloc((size_t)steps * sizeof *tg);
    for (int o = 0; o < 3; o++)
        ts[o] = xmalloc((size_t)steps * sizeof(double));
    for (int w = 0; w < warmup; w++) {
        double a, b, c;
        for (int o = 2; o >= 0; o--)
            train_step(eng[o], tok, tgt);
        comm_step(&cp, &a, &b, &c);
    }
    barrier();
    for (int i = 0; i < steps; i++) {
        /* rotate which engine goes first, so none always follows the comm-only run */
        for (int k = 0; k < 3; k++) {
            int o = (i + k) % 3;
            ts[o][i] = train_step(eng[o], tok, tgt);
        }
        comm_step(&cp, &tr[i], &tn[i], &tg[i]);
        tc[i] = tr[i] + tn[i] + tg[i];
    }
    /* no overlap minus overlap, step by step: the pair ran back to back */
    double *td = xmalloc((size_t)steps * sizeof *td);
    for (int i = 0; i < steps; i++)
        td[i] = ts[0][i] - ts[1][i];
    if (rank_ == 0) {
        printf("step ranks=%d dtype=%s stage=%d zero_stage=%d params=%lld tensors=%lld "
               "partition=%lld bucket_elems=%d buckets=%d seq=%d batch=%d steps=%d warmup=%d "
               "overlap_ms=%.3f overlap_mad_ms=%.3f no_overlap_ms=%.3f no_overlap_mad_ms=%.3f "
               "comm_ms=%.3f comm_mad_ms=%.3f allreduce_ms=%.3f norm_ms=%.3f allgather_ms=%.3f "
               "paired_diff_ms=%.3f paired_diff_mad_ms=%.3f ag_waited_ms=%.3f ag_waited_mad_ms=%.3f\n",
               world_, dtype, stage, (int)in.zero_stage, (long long)in.num_parameters,
               (long long)in.num_param_tensors, (long long)in.partition_size, bucket, cp.nbuckets,
               T, B, steps, warmup, 1e3 * median(ts[1], steps), 1e3 * mad(ts[1], steps),
               1e3 * median(ts[0], steps), 1e3 * mad(ts[0], steps), 1e3 * median(tc, steps),
               1e3 * mad(tc, steps), 1e3 * median(tr, steps), 1e3 * median(tn, steps),
               1e3 * median(tg, steps), 1e3 * median(td, steps), 1e3 * mad(td, steps),
               1e3 * median(ts[2], steps), 1e3 * mad(ts[2], steps));
        fflush(stdout);
    }
    free(tok), free(tgt), free(tc), free(tr), free(tn), free(tg), free(ts[0]), free(ts[1]), free(ts[2]), free(td);
    plan_free(&cp);
    for (int o = 0; o < 3; o++) {
        free_engine(eng[o]);
        free_config(cfg[o]);
    }
}

/* ---------------------------------------------------------------- memory */

static void bench_memory(int B, int T, int bucket)
{
    for (int stage = 0; stage <= 2; stage++) {
        dsrt_config *cfg = make_config(stage, "fp16", B, bucket, 1);
        dsrt_engine *e = make_engine(cfg, T);
        dsrt_engine_info_args in = {.struct_size = sizeof in, .engine = e};
        CHECK(api->engine_info(&in));
        double psi = (double)in.num_parameters, N = world_;
        /* spec 7.5, fp16 + Adam: 2 + 2 + 12 bytes per parameter, partitioned */
        double coef = stage == 0 ? 16.0 : stage == 1 ? 4.0 + 12.0 / N : 2.0 + 14.0 / N;
        int64_t model_state = in.bytes_params + in.bytes_grads + in.bytes_masters + in.bytes_moments;
        if (rank_ == 0) {
            printf("mem ranks=%d stage=%d zero_stage=%d seq=%d params=%lld partition=%lld "
                   "bytes_params=%lld bytes_grads=%lld bytes_grad_transient=%lld "
                   "bytes_masters=%lld bytes_moments=%lld bytes_buckets=%lld bytes_gather=%lld "
                   "bytes_total=%lld model_state=%lld formula=%.0f formula_coef=%.4f "
                   "measured_coef=%.4f ratio=%.6f\n",
                   world_, stage, (int)in.zero_stage, T, (long long)in.num_parameters,
                   (long long)in.partition_size, (long long)in.bytes_params,
                   (long long)in.bytes_grads, (long long)in.bytes_grad_transient,
                   (long long)in.bytes_masters, (long long)in.bytes_moments,
                   (long long)in.bytes_buckets, (long long)in.bytes_gather,
                   (long long)in.bytes_total, (long long)model_state, coef * psi, coef,
                   (double)model_state / psi, (double)model_state / (coef * psi));
            fflush(stdout);
        }
        free_engine(e);
        free_config(cfg);
    }
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    int steps = 10, warmup = 3, T = 128, B = 4, bucket = 50000, mem_T = 16, mem = 1;
    const char *dtypes = "fp32,bf16", *stages = "2,1";
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--no-mem")) {
            mem = 0;
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench_zero: %s needs a value\n", k);
            return 2;
        }
        i++;
        if (!strcmp(k, "--steps")) steps = atoi(v);
        else if (!strcmp(k, "--warmup")) warmup = atoi(v);
        else if (!strcmp(k, "--seq")) T = atoi(v);
        else if (!strcmp(k, "--batch")) B = atoi(v);
        else if (!strcmp(k, "--bucket")) bucket = atoi(v);
        else if (!strcmp(k, "--dtypes")) dtypes = v;
        else if (!strcmp(k, "--stages")) stages = v;
        else if (!strcmp(k, "--mem-seq")) mem_T = atoi(v);
        else {
            fprintf(stderr, "bench_zero: unknown option %s\n", k);
            return 2;
        }
    }
    if (steps < 1 || warmup < 0 || T < 1 || B < 1 || bucket < 1 || mem_T < 1) {
        fprintf(stderr, "bench_zero: bad option value\n");
        return 2;
    }
    api = dsrt_api_table();
    dsrt_dist_create_args dc = {.struct_size = sizeof dc, .timeout_s = 300};
    CHECK(api->dist_create(&dc));
    dist = dc.dist;
    rank_ = dc.rank;
    world_ = dc.world_size;
    if (!dist->comm) {
        fprintf(stderr, "bench_zero: the process group has no host comm (backend %s)\n",
                dc.backend_used);
        return 1;
    }
    if (rank_ == 0) {
        const char *omp = getenv("OMP_NUM_THREADS"), *coretype = getenv("OPENBLAS_CORETYPE");
        printf("info ranks=%d backend=%s omp_max_threads=%d OMP_NUM_THREADS=%s "
               "OPENBLAS_CORETYPE=%s openblas=\"%s\"\n",
               world_, dc.backend_used, omp_get_max_threads(), omp ? omp : "(unset)",
               coretype ? coretype : "(unset)", openblas_get_config());
        fflush(stdout);
    }
    char list[256];
    snprintf(list, sizeof list, "%s", dtypes);
    for (char *sv = NULL, *d = strtok_r(list, ",", &sv); d; d = strtok_r(NULL, ",", &sv)) {
        if (strcmp(d, "fp32") && strcmp(d, "bf16") && strcmp(d, "fp16")) {
            fprintf(stderr, "bench_zero: dtype %s (fp32, bf16, fp16)\n", d);
            return 2;
        }
        for (const char *s = stages; *s; s++)
            if (*s >= '0' && *s <= '2')
                bench_config(d, *s - '0', B, T, bucket, warmup, steps);
    }
    if (mem)
        bench_memory(B, mem_T, bucket);
    dsrt_dist_destroy_args dd = {sizeof dd, dist};
    api->dist_destroy(&dd);
    return 0;
}
