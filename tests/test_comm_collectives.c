/* The comm's collectives against sums computed here, on whatever process
 * group the environment gives (mpiexec of Open MPI or of MPICH, torchrun-style
 * TCP variables, or one rank): reduce-scatter with unequal blocks (empty ones
 * too), all-reduce and all-gather in fp32, bf16 and fp16, and the small
 * all-reduce of doubles; MPI's own collectives and comm.c's rings
 * (DSRT_MPI_COLLECTIVES=ring) must give the same answers. Then an engine on
 * the same group: GPT-2 tiny under ZeRO stage 2 for a few steps, whose
 * weights must be the same bits on every rank.
 *
 * Each rank fills its buffer from (rank, index) so every rank can compute
 * every other rank's contribution. fp32 sums of a few values are compared
 * with a relative tolerance (MPI's summation order is its own); 16-bit sums
 * must equal a left-to-right sum rounded after each addition, up to one
 * rounding (the ring's order starts at a rank-dependent place). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dsrt.h"
#include "kernels/common/dtype.h"
#include "zero/comm.h"
#include "zero/dist.h"

const dsrt_api *dsrt_api_table(void);
static const dsrt_api *api;
static dsrt_dist *dist;
static dsrt_comm *comm;
static int rank_, world_;

static float value(int rank, size_t i) { return (float)((double)((i * 37 + (size_t)rank * 101) % 97) / 16.0 - 3.0); }

static void check_ok(dsrt_status st, const char *what)
{
    if (st) {
        char buf[1024];
        dsrt_last_error_args le = {sizeof le, buf, sizeof buf, 0, 0};
        api->last_error(&le);
        fail_msg("%s: %s: %s", what, dsrt_status_name(st), buf);
    }
}

/* what rank `r`'s element i of the sum is, rounded to dt after each addition */
static float expected(dsrt_dtype dt, size_t i)
{
    float acc = 0;
    for (int r = 0; r < world_; r++) {
        float v = dsrt_round_to(dt, value(r, i));
        acc = dt == DSRT_F32 ? acc + v : dsrt_round_to(dt, acc + v);
    }
    return acc;
}

static void fill(dsrt_dtype dt, void *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dsrt_store(dt, buf, i, value(rank_, i));
}

static void close_enough(dsrt_dtype dt, float got, float want, const char *what, size_t i)
{
    /* fp32: summation order; 16-bit: one rounding step of the result's size */
    double tol = dt == DSRT_F32 ? 1e-5 * (fabs(want) + 1) : (dt == DSRT_BF16 ? 1.0 / 64 : 1.0 / 512) * (fabs(want) + 1) * world_;
    if (fabs((double)got - want) > tol)
        fail_msg("rank %d: %s (%s) element %zu: %.8g, expected %.8g", rank_, what, dsrt_dtype_name(dt), i, got, want);
}

static void test_reduce_scatter(void **state)
{
    (void)state;
    static const dsrt_dtype dts[] = {DSRT_F32, DSRT_BF16, DSRT_F16};
    for (int d = 0; d < 3; d++) {
        dsrt_dtype dt = dts[d];
        for (int pattern = 0; pattern < 3; pattern++) {
            size_t counts[64], total = 0;
            assert_true(world_ <= 64);
            for (int k = 0; k < world_; k++) {
                /* unequal blocks; pattern 1 leaves rank 1's block empty; pattern 2 is one big block */
                counts[k] = pattern == 0 ? (size_t)(1000 + 313 * k) : pattern == 1 ? (k == 1 ? 0 : 7) : (k == 0 ? 300000 : 5);
                total += counts[k];
            }
            void *buf = malloc(total * dsrt_dtype_size(dt));
            fill(dt, buf, total);
            uint64_t t = 0;
            check_ok(comm->reduce_scatter(comm, buf, counts, dt, "test reduce-scatter", &t), "reduce_scatter");
            check_ok(comm->wait(comm, t), "wait");
            size_t lo = 0;
            for (int k = 0; k < rank_; k++)
                lo += counts[k];
            for (size_t i = lo; i < lo + counts[rank_]; i++)
                close_enough(dt, dsrt_load(dt, buf, i), expected(dt, i), "reduce-scatter", i);
            free(buf);
        }
    }
}

static void test_allreduce_allgather(void **state)
{
    (void)state;
    static const dsrt_dtype dts[] = {DSRT_F32, DSRT_BF16, DSRT_F16};
    for (int d = 0; d < 3; d++) {
        dsrt_dtype dt = dts[d];
        size_t n = 100003;
        void *buf = malloc(n * dsrt_dtype_size(dt));
        fill(dt, buf, n);
        uint64_t t = 0;
        check_ok(comm->allreduce(comm, buf, n, dt, DSRT_REDUCE_SUM, "test all-reduce", &t), "allreduce");
        check_ok(comm->wait(comm, t), "wait");
        for (size_t i = 0; i < n; i++)
            close_enough(dt, dsrt_load(dt, buf, i), expected(dt, i), "all-reduce", i);
        /* all-gather: block r of rank r's values */
        size_t per = 4099;
        void *g = calloc((size_t)world_ * per, dsrt_dtype_size(dt));
        for (size_t i = 0; i < per; i++)
            dsrt_store(dt, g, (size_t)rank_ * per + i, value(rank_, i));
        check_ok(comm->allgather(comm, g, per, dt, "test all-gather", &t), "allgather");
        check_ok(comm->wait(comm, t), "wait");
        for (int r = 0; r < world_; r++)
            for (size_t i = 0; i < per; i++)
                if (dsrt_load(dt, g, (size_t)r * per + i) != dsrt_round_to(dt, value(r, i)))
                    fail_msg("rank %d: all-gather block %d element %zu differs", rank_, r, i);
        free(buf);
        free(g);
    }
    double v[3] = {rank_ + 0.5, 1.0, -2.0 * rank_};
    check_ok(comm->allreduce_host_f64(comm, v, 3, "test f64"), "f64");
    double s = 0;
    for (int r = 0; r < world_; r++)
        s += r + 0.5;
    assert_true(v[0] == s && v[1] == world_ && v[2] == -2.0 * (world_ - 1) * world_ / 2);
}

/* GPT-2 tiny, ZeRO stage 2 in fp32 and fp16: the same weights on every rank */
static void test_engine_on_group(void **state)
{
    (void)state;
    static const char *const prec[] = {"", "\"fp16\": {\"enabled\": true, \"initial_scale_power\": 10},"};
    for (int p = 0; p < 2; p++) {
        char text[768];
        snprintf(text, sizeof text,
                 "{\"train_batch_size\": %d, \"train_micro_batch_size_per_gpu\": 2, %s"
                 " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-3}},"
                 " \"zero_optimization\": {\"stage\": 2, \"reduce_bucket_size\": 30000, \"overlap_comm\": true}}",
                 2 * world_, prec[p]);
        dsrt_config_create_args cc = {.struct_size = sizeof cc, .text = text, .text_length = strlen(text),
                                      .world_size = world_};
        check_ok(api->config_create(&cc), "config_create");
        dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cc.config, .model = "gpt2-tiny",
                                      .seq_len = 16, .seed = 3, .dist = dist};
        check_ok(api->engine_create(&ec), "engine_create");
        int32_t tok[32], tgt[32];
        for (int s = 0; s < 3; s++) {
            for (int i = 0; i < 32; i++) {
                tok[i] = (i * 7 + s * 3 + rank_ * 11) % 200;
                tgt[i] = (tok[i] + 1) % 200;
            }
            dsrt_engine_train_args tr = {.struct_size = sizeof tr, .engine = ec.engine, .tokens = tok,
                                         .targets = tgt, .micro_batches = 1};
            check_ok(api->engine_train(&tr), "engine_train");
            assert_true(isfinite(tr.report.loss));
        }
        /* a checksum of the weights' bits, compared over ranks */
        dsrt_engine_info_args in = {.struct_size = sizeof in, .engine = ec.engine};
        check_ok(api->engine_info(&in), "engine_info");
        uint64_t h = 1469598103934665603ull;
        for (int64_t k = 0; k < in.num_param_tensors; k++) {
            dsrt_engine_param_args pa = {.struct_size = sizeof pa, .engine = ec.engine, .index = k};
            check_ok(api->engine_param(&pa), "engine_param");
            const unsigned char *b = pa.data;
            size_t bytes = (size_t)pa.numel * (p ? 2 : 4);
            for (size_t i = 0; i < bytes; i++)
                h = (h ^ b[i]) * 1099511628211ull;
        }
        double v[2] = {(double)(h >> 32), (double)(h & 0xffffffffu)}, mine[2] = {v[0], v[1]};
        check_ok(comm->allreduce_host_f64(comm, v, 2, "weights checksum"), "checksum");
        if (v[0] != mine[0] * world_ || v[1] != mine[1] * world_)
            fail_msg("rank %d: the weights differ between ranks after 3 steps (%s)", rank_, p ? "fp16" : "fp32");
        dsrt_engine_destroy_args ed = {sizeof ed, ec.engine};
        api->engine_destroy(&ed);
        dsrt_config_destroy_args cd = {sizeof cd, cc.config};
        api->config_destroy(&cd);
    }
}

int main(void)
{
    api = dsrt_api_table();
    dsrt_dist_create_args dc = {.struct_size = sizeof dc, .timeout_s = 120};
    if (api->dist_create(&dc)) {
        char buf[1024];
        dsrt_last_error_args le = {sizeof le, buf, sizeof buf, 0, 0};
        api->last_error(&le);
        fprintf(stderr, "dist_create: %s\n", buf);
        return 1;
    }
    dist = dc.dist;
    comm = dist->comm;
    rank_ = dc.rank;
    world_ = dc.world_size;
    const char *coll = getenv("DSRT_MPI_COLLECTIVES");
    if (rank_ == 0)
        printf("test_comm_collectives: %d rank%s over %s%s\n", world_, world_ == 1 ? "" : "s", dc.backend_used,
               !strcmp(dc.backend_used, "mpi") ? (coll && !strcmp(coll, "ring") ? " (rings)" : " (MPI's collectives)")
                                               : "");
    check_ok(comm->reserve(comm, 4u << 20), "reserve");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduce_scatter),
        cmocka_unit_test(test_allreduce_allgather),
        cmocka_unit_test(test_engine_on_group),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    dsrt_dist_destroy_args dd = {sizeof dd, dist};
    if (rc == 0)
        api->dist_destroy(&dd);
    return rc;
}
