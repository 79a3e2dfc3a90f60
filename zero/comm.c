/* Host-memory collectives (comm.h) over a point-to-point transport, and the
 * one-rank comm.
 *
 * A comm thread owns the transport: the engine queues collectives (a fixed
 * ring of jobs, no allocation per call) and goes on with its backward while
 * the thread runs them in order; wait(ticket) blocks until they are done.
 *
 * A transport may bring its own collectives (MPI's, for fp32 sums and for
 * moving bytes); the rest, and every 16-bit sum, run here as rings, as
 * NCCL's are for few ranks:
 *   all-reduce = reduce-scatter (N-1 steps: chunk (r-s-1) mod N arrives from
 *                the left and is added into the local copy) then all-gather
 *                of the reduced chunks (N-1 steps);
 *   all-gather = N-1 steps passing blocks to the right.
 * Each chunk is reduced by one rank and then copied to all, so every rank
 * ends with the same bits. A 16-bit sum is rounded after each addition, as
 * NCCL's half/bfloat16 ring does. Small host vectors of doubles (the step's
 * norm, overflow flag and loss) are all-gathered and summed in rank order. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "zero/comm.h"
#include "base/internal.h"
#include "zero/transport.h"

/* ---------------------------------------------------------------- one rank */

static void local_destroy(dsrt_comm *c) { free(c); }
static dsrt_status local_reserve(dsrt_comm *c, size_t b)
{
    (void)c;
    (void)b;
    return DSRT_STATUS_OK;
}
static dsrt_status local_allreduce(dsrt_comm *c, void *buf, size_t n, dsrt_dtype dt,
                                   dsrt_reduce_op op, const char *what, uint64_t *ticket)
{
    (void)c, (void)buf, (void)n, (void)dt, (void)op, (void)what;
    *ticket = 0;
    return DSRT_STATUS_OK;
}
static dsrt_status local_allgather(dsrt_comm *c, void *buf, size_t n, dsrt_dtype dt,
                                   const char *what, uint64_t *ticket)
{
    (void)c, (void)buf, (void)n, (void)dt, (void)what;
    *ticket = 0;
    return DSRT_STATUS_OK;
}
static dsrt_status local_allgather_strided(dsrt_comm *c, void *buf, size_t n, size_t stride, dsrt_dtype dt,
                                           const char *what, uint64_t *ticket)
{
    (void)c, (void)buf, (void)n, (void)stride, (void)dt, (void)what;
    *ticket = 0;
    return DSRT_STATUS_OK;
}
static dsrt_status local_reduce_scatter(dsrt_comm *c, void *buf, const size_t *counts, dsrt_dtype dt,
                                        const char *what, uint64_t *ticket)
{
    (void)c, (void)buf, (void)counts, (void)dt, (void)what;
    *ticket = 0;
    return DSRT_STATUS_OK;
}
static dsrt_status local_wait(dsrt_comm *c, uint64_t t)
{
    (void)c, (void)t;
    return DSRT_STATUS_OK;
}
static dsrt_status local_f64(dsrt_comm *c, double *v, int n, const char *what)
{
    (void)c, (void)v, (void)n, (void)what;
    return DSRT_STATUS_OK;
}

dsrt_status dsrt_comm_local_create(dsrt_comm **out)
{
    dsrt_comm *c = calloc(1, sizeof *c);
    if (!c)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "comm");
    c->name = "local";
    c->world = 1;
    c->timeout_s = 0;
    c->destroy = local_destroy;
    c->reserve = local_reserve;
    c->allreduce = local_allreduce;
    c->allgather = local_allgather;
    c->allgather_strided = local_allgather_strided;
    c->reduce_scatter = local_reduce_scatter;
    c->wait = local_wait;
    c->allreduce_host_f64 = local_f64;
    *out = c;
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- host comm */

enum { JOB_ALLREDUCE, JOB_REDUCE_SCATTER, JOB_ALLGATHER, JOB_F64, JOB_STOP };
enum { QUEUE = 128, WHAT_LEN = 160, F64_MAX = 16 };

typedef struct job {
    int kind;
    void *buf;
    size_t n;
    dsrt_dtype dt;
    dsrt_reduce_op op;
    uint64_t ticket;
    size_t stride;  /* all-gather: elements from one rank's block to the next (n: contiguous) */
    size_t *counts; /* reduce-scatter: world block sizes (the slot's own storage) */
    char what[WHAT_LEN];
} job;

typedef struct host_comm {
    dsrt_comm base;
    dsrt_transport *t;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job q[QUEUE];
    size_t *counts; /* QUEUE x world: each job slot's reduce-scatter block sizes */
    uint64_t submitted, done; /* tickets: job k has ticket k (1-based) */
    dsrt_status failed;       /* sticky */
    char message[1024];
    unsigned char *scratch; /* one chunk of the largest collective */
    size_t scratch_bytes;
    double f64_gather[F64_MAX * 64];
    long latency_us; /* DSRT_COMM_LATENCY_US: an emulated wire delay per collective */
    int lost;        /* a peer seen gone while idle (transport's closed_peer), else -1 */
} host_comm;

/* acc[i] = acc[i] (op) in[i], rounded to dt once */
static void reduce_into(void *acc, const void *in, size_t n, dsrt_dtype dt, dsrt_reduce_op op)
{
    if (dt == DSRT_F32) {
        float *a = acc;
        const float *b = in;
        if (op == DSRT_REDUCE_SUM)
            for (size_t i = 0; i < n; i++)
                a[i] += b[i];
        else
            for (size_t i = 0; i < n; i++)
                a[i] = b[i] > a[i] || b[i] != b[i] ? b[i] : a[i];
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float a = dsrt_load(dt, acc, i), b = dsrt_load(dt, in, i);
        dsrt_store(dt, acc, i, op == DSRT_REDUCE_SUM ? a + b : (b > a || b != b ? b : a));
    }
}

/* One transfer through the transport, counted in the comm's byte totals. */
static dsrt_status xfer(host_comm *h, int to, const void *sbuf, size_t sbytes, int from, void *rbuf,
                        size_t rbytes, const char *what)
{
    dsrt_transport *t = h->t;
    DSRT_TRY(t->sendrecv(t, to, sbuf, sbytes, from, rbuf, rbytes, dsrt_now() + h->base.timeout_s, what));
    __atomic_add_fetch(&h->base.bytes_sent, (uint64_t)(to >= 0 ? sbytes : 0), __ATOMIC_RELAXED);
    __atomic_add_fetch(&h->base.bytes_recv, (uint64_t)(from >= 0 ? rbytes : 0), __ATOMIC_RELAXED);
    return DSRT_STATUS_OK;
}

static size_t chunk_lo(size_t n, int world, int c) { return n * (size_t)c / (size_t)world; }

static dsrt_status ring_allreduce(host_comm *h, job *j)
{
    dsrt_transport *t = h->t;
    int N = t->world, r = t->rank;
    if (N == 1 || j->n == 0)
        return DSRT_STATUS_OK;
    size_t es = dsrt_dtype_size(j->dt);
    int right = (r + 1) % N, left = (r - 1 + N) % N;
    unsigned char *b = j->buf;
    for (int s = 0; s < N - 1; s++) {
        int cs = ((r - s) % N + N) % N, cr = ((r - s - 1) % N + N) % N;
        size_t s0 = chunk_lo(j->n, N, cs), s1 = chunk_lo(j->n, N, cs + 1);
        size_t r0 = chunk_lo(j->n, N, cr), r1 = chunk_lo(j->n, N, cr + 1);
        if ((r1 - r0) * es > h->scratch_bytes)
            return dsrt_error_set(DSRT_STATUS_INTERNAL,
                                  "comm: %s needs %zu bytes of scratch, %zu reserved", j->what,
                                  (r1 - r0) * es, h->scratch_bytes);
        DSRT_TRY(xfer(h, right, b + s0 * es, (s1 - s0) * es, left, h->scratch, (r1 - r0) * es, j->what));
        reduce_into(b + r0 * es, h->scratch, r1 - r0, j->dt, j->op);
    }
    for (int s = 0; s < N - 1; s++) {
        int cs = ((r + 1 - s) % N + N) % N, cr = ((r - s) % N + N) % N;
        size_t s0 = chunk_lo(j->n, N, cs), s1 = chunk_lo(j->n, N, cs + 1);
        size_t r0 = chunk_lo(j->n, N, cr), r1 = chunk_lo(j->n, N, cr + 1);
        DSRT_TRY(xfer(h, right, b + s0 * es, (s1 - s0) * es, left, b + r0 * es, (r1 - r0) * es, j->what));
    }
    return DSRT_STATUS_OK;
}

/* Reduce-scatter with a block per rank, in place: N-1 ring steps in which
 * block (r-s-1) mod N goes right and block (r-s-2) mod N arrives from the
 * left and is added into the local copy, so the last block to arrive is this
 * rank's own, reduced by every rank. Blocks larger than the scratch travel
 * in scratch-sized pieces. Each rank sends the whole buffer but its own block:
 * (N-1)/N of it for equal blocks, half of an all-reduce's bytes. */
static dsrt_status ring_reduce_scatter(host_comm *h, job *j)
{
    dsrt_transport *t = h->t;
    int N = t->world, r = t->rank;
    if (N == 1)
        return DSRT_STATUS_OK;
    size_t es = dsrt_dtype_size(j->dt), displ[2] = {0, 0};
    size_t piece = h->scratch_bytes / es;
    if (piece == 0)
        return dsrt_error_set(DSRT_STATUS_INTERNAL, "comm: %s with no scratch reserved", j->what);
    size_t maxc = 0;
    for (int k = 0; k < N; k++)
        maxc = j->counts[k] > maxc ? j->counts[k] : maxc;
    size_t iters = maxc ? (maxc + piece - 1) / piece : 1;
    int right = (r + 1) % N, left = (r - 1 + N) % N;
    unsigned char *b = j->buf;
    for (int s = 0; s < N - 1; s++) {
        int bs = ((r - s - 1) % N + N) % N, br = ((r - s - 2) % N + N) % N;
        displ[0] = displ[1] = 0;
        for (int k = 0; k < bs; k++)
            displ[0] += j->counts[k];
        for (int k = 0; k < br; k++)
            displ[1] += j->counts[k];
        size_t ns = j->counts[bs], nr = j->counts[br];
        /* both directions in lockstep pieces, as many on every rank and step
         * (the largest block's count), so every send meets its receive; a side
         * that has run out moves 0 bytes */
        for (size_t it = 0; it < iters; it++) {
            size_t o = it * piece;
            size_t ps = o < ns ? (ns - o < piece ? ns - o : piece) : 0;
            size_t pr = o < nr ? (nr - o < piece ? nr - o : piece) : 0;
            DSRT_TRY(xfer(h, right, b + (displ[0] + (ps ? o : 0)) * es, ps * es, left, h->scratch, pr * es,
                          j->what));
            if (pr)
                reduce_into(b + (displ[1] + o) * es, h->scratch, pr, j->dt, DSRT_REDUCE_SUM);
        }
    }
    return DSRT_STATUS_OK;
}

static dsrt_status ring_allgather_strided(host_comm *h, void *buf, size_t block_bytes, size_t stride_bytes,
                                          const char *what)
{
    dsrt_transport *t = h->t;
    int N = t->world, r = t->rank;
    int right = (r + 1) % N, left = (r - 1 + N) % N;
    unsigned char *b = buf;
    for (int s = 0; s < N - 1; s++) {
        int bs = ((r - s) % N + N) % N, br = ((r - s - 1) % N + N) % N;
        DSRT_TRY(xfer(h, right, b + (size_t)bs * stride_bytes, block_bytes, left, b + (size_t)br * stride_bytes,
                      block_bytes, what));
    }
    return DSRT_STATUS_OK;
}

static dsrt_status ring_allgather(host_comm *h, void *buf, size_t block_bytes, const char *what)
{
    return ring_allgather_strided(h, buf, block_bytes, block_bytes, what);
}

/* The transport's own collective when it has one for this job (MPI's, for
 * fp32 sums and bytes), else comm.c's ring. */
static dsrt_status all_gather_bytes(host_comm *h, void *buf, size_t block_bytes, const char *what)
{
    dsrt_transport *t = h->t;
    if (t->allgather) {
        dsrt_status st = t->allgather(t, buf, block_bytes, dsrt_now() + h->base.timeout_s, what);
        if (st != DSRT_STATUS_UNSUPPORTED)
            return st;
    }
    return ring_allgather(h, buf, block_bytes, what);
}

static dsrt_status run_job(host_comm *h, job *j)
{
    dsrt_transport *t = h->t;
    double deadline = dsrt_now() + h->base.timeout_s;
    if (h->lost >= 0) /* seen while idle: this collective cannot complete */
        return t->peer_gone(t, h->lost, j->what);
    if (h->latency_us > 0 && j->kind != JOB_F64) {
        /* the comm thread waits, as it would for a slow network: no CPU is
         * used, so the overlap of buckets with the backward can hide it (the
         * benchmark's way to measure overlap on a machine whose "network" is
         * its own memory) */
        struct timespec ts = {h->latency_us / 1000000, (h->latency_us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
    if (t->world == 1 && j->kind != JOB_F64)
        return DSRT_STATUS_OK;
    dsrt_status st = DSRT_STATUS_UNSUPPORTED;
    switch (j->kind) {
    case JOB_ALLREDUCE:
        if (t->allreduce && j->op == DSRT_REDUCE_SUM && j->n)
            st = t->allreduce(t, j->buf, j->n, j->dt, deadline, j->what);
        return st != DSRT_STATUS_UNSUPPORTED ? st : ring_allreduce(h, j);
    case JOB_REDUCE_SCATTER:
        if (t->reduce_scatter && j->n)
            st = t->reduce_scatter(t, j->buf, j->counts, j->dt, deadline, j->what);
        return st != DSRT_STATUS_UNSUPPORTED ? st : ring_reduce_scatter(h, j);
    case JOB_ALLGATHER:
        if (j->stride != j->n) /* MPI's all-gather takes contiguous blocks only */
            return ring_allgather_strided(h, j->buf, j->n * dsrt_dtype_size(j->dt), j->stride * dsrt_dtype_size(j->dt),
                                          j->what);
        return all_gather_bytes(h, j->buf, j->n * dsrt_dtype_size(j->dt), j->what);
    case JOB_F64: {
        int N = h->t->world, r = h->t->rank;
        size_t n = j->n;
        double *g = h->f64_gather, *v = j->buf;
        memcpy(g + (size_t)r * n, v, n * sizeof(double));
        if (N > 1)
            DSRT_TRY(all_gather_bytes(h, g, n * sizeof(double), j->what));
        for (size_t i = 0; i < n; i++) {
            double s = 0;
            for (int k = 0; k < N; k++)
                s += g[(size_t)k * n + i];
            v[i] = s;
        }
        return DSRT_STATUS_OK;
    }
    }
    return DSRT_STATUS_OK;
}

/* comms_logger: one finished collective */
static void comm_log(dsrt_comm *c, const job *j, double dt)
{
    int op = j->kind == JOB_ALLREDUCE ? 0 : j->kind == JOB_REDUCE_SCATTER ? 1 : j->kind == JOB_ALLGATHER ? 2 : -1;
    if (op < 0)
        return;
    size_t esz = dsrt_dtype_size(j->dt), n = j->n;
    if (j->kind == JOB_ALLGATHER)
        n = j->n * (size_t)c->world;
    uint64_t bytes = (uint64_t)(n * esz);
    for (int i = 0; i < c->n_log; i++)
        if (c->log[i].op == op && c->log[i].bytes == bytes) {
            c->log[i].count++;
            c->log[i].total_s += dt;
            return;
        }
    if (c->n_log < DSRT_COMM_LOG_ROWS)
        c->log[c->n_log++] = (dsrt_comm_log_row){op, bytes, 1, dt};
}

char *dsrt_comm_log_summary(const dsrt_comm *c)
{
    static const char *const names[3] = {"all_reduce", "reduce_scatter", "all_gather"};
    dsrt_buf b = {0};
    int N = c->world;
    dsrt_buf_printf(&b, "%-20s%-20s%-20s%-20s%-20s%-20s%s\n", "Comm. Op", "Message Size", "Count",
                    "Total Latency(ms)", "Avg Latency(ms)", "tput_avg (Gbps)", "busbw_avg (Gbps)");
    for (int op = 0; op < 3; op++) {
        int any = 0;
        for (int i = 0; i < c->n_log; i++) {
            const dsrt_comm_log_row *r = &c->log[i];
            if (r->op != op)
                continue;
            if (!any++)
                dsrt_buf_printf(&b, "%s\n", names[op]);
            double avg = r->total_s / (double)r->count;
            /* algorithm bandwidth and DeepSpeed's bus bandwidth factors */
            double tput = avg > 0 ? (double)r->bytes * 8 / avg / 1e9 : 0;
            double f = op == 0 ? 2.0 * (N - 1) / N : (double)(N - 1) / N;
            char size[32];
            if (r->bytes >= (1u << 20))
                snprintf(size, sizeof size, "%.2f MB", (double)r->bytes / (1 << 20));
            else
                snprintf(size, sizeof size, "%.2f KB", (double)r->bytes / 1024);
            dsrt_buf_printf(&b, "%-20s%-20s%-20llu%-20.2f%-20.2f%-20.2f%.2f\n", "", size,
                            (unsigned long long)r->count, r->total_s * 1e3, avg * 1e3, tput, tput * f);
        }
    }
    return dsrt_buf_take(&b);
}

static void *comm_thread(void *arg)
{
    host_comm *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (h->done == h->submitted) {
            if (!h->t->closed_peer || h->lost >= 0) {
                pthread_cond_wait(&h->cv, &h->mu);
                continue;
            }
            /* idle: look at the peers' connections every 50 ms */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            if (pthread_cond_timedwait(&h->cv, &h->mu, &ts) == ETIMEDOUT && h->done == h->submitted) {
                pthread_mutex_unlock(&h->mu);
                int p = h->t->closed_peer(h->t);
                pthread_mutex_lock(&h->mu);
                h->lost = p;
            }
        }
        job *j = &h->q[h->done % QUEUE];
        if (j->kind == JOB_STOP) {
            h->done++;
            pthread_cond_broadcast(&h->cv);
            break;
        }
        bool skip = h->failed != DSRT_STATUS_OK;
        pthread_mutex_unlock(&h->mu);
        double t_job = h->base.log_on ? dsrt_now() : 0;
        dsrt_status s = skip ? DSRT_STATUS_OK : run_job(h, j);
        if (h->base.log_on && !skip && !s)
            comm_log(&h->base, j, dsrt_now() - t_job);
        pthread_mutex_lock(&h->mu);
        if (s != DSRT_STATUS_OK) {
            h->failed = s;
            snprintf(h->message, sizeof h->message, "%s", dsrt_error_message());
        }
        h->done++;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static dsrt_status fail_status(host_comm *h)
{
    return dsrt_error_set(h->failed, "%s", h->message);
}

/* called with the lock held */
static dsrt_status submit_locked(host_comm *h, const job *j, uint64_t *ticket)
{
    while (h->submitted - h->done >= QUEUE && h->failed == DSRT_STATUS_OK)
        pthread_cond_wait(&h->cv, &h->mu);
    if (h->failed)
        return fail_status(h);
    job *slot = &h->q[h->submitted % QUEUE];
    *slot = *j;
    slot->ticket = ++h->submitted;
    *ticket = slot->ticket;
    pthread_cond_broadcast(&h->cv);
    return DSRT_STATUS_OK;
}

static dsrt_status submit(host_comm *h, const job *j, uint64_t *ticket)
{
    pthread_mutex_lock(&h->mu);
    dsrt_status s = submit_locked(h, j, ticket);
    pthread_mutex_unlock(&h->mu);
    return s;
}

static dsrt_status host_wait(dsrt_comm *c, uint64_t ticket)
{
    host_comm *h = c->impl;
    pthread_mutex_lock(&h->mu);
    while (h->done < ticket)
        pthread_cond_wait(&h->cv, &h->mu);
    dsrt_status s = h->failed ? fail_status(h) : DSRT_STATUS_OK;
    pthread_mutex_unlock(&h->mu);
    return s;
}

static void set_what(job *j, const char *what)
{
    snprintf(j->what, sizeof j->what, "%s", what ? what : "collective");
}

static dsrt_status host_allreduce(dsrt_comm *c, void *buf, size_t n, dsrt_dtype dt,
                                  dsrt_reduce_op op, const char *what, uint64_t *ticket)
{
    job j = {.kind = JOB_ALLREDUCE, .buf = buf, .n = n, .dt = dt, .op = op};
    set_what(&j, what);
    return submit(c->impl, &j, ticket);
}

static dsrt_status host_allgather(dsrt_comm *c, void *buf, size_t n_per_rank, dsrt_dtype dt,
                                  const char *what, uint64_t *ticket)
{
    job j = {.kind = JOB_ALLGATHER, .buf = buf, .n = n_per_rank, .stride = n_per_rank, .dt = dt};
    set_what(&j, what);
    return submit(c->impl, &j, ticket);
}

static dsrt_status host_allgather_strided(dsrt_comm *c, void *buf, size_t n_per_rank, size_t stride, dsrt_dtype dt,
                                          const char *what, uint64_t *ticket)
{
    job j = {.kind = JOB_ALLGATHER, .buf = buf, .n = n_per_rank, .stride = stride, .dt = dt};
    set_what(&j, what);
    return submit(c->impl, &j, ticket);
}

static dsrt_status host_reduce_scatter(dsrt_comm *c, void *buf, const size_t *counts, dsrt_dtype dt,
                                       const char *what, uint64_t *ticket)
{
    host_comm *h = c->impl;
    job j = {.kind = JOB_REDUCE_SCATTER, .buf = buf, .dt = dt, .op = DSRT_REDUCE_SUM};
    set_what(&j, what);
    pthread_mutex_lock(&h->mu);
    /* the slot's counts are written under the lock, once the slot is free */
    while (h->submitted - h->done >= QUEUE && h->failed == DSRT_STATUS_OK)
        pthread_cond_wait(&h->cv, &h->mu);
    j.counts = h->counts + (h->submitted % QUEUE) * (size_t)c->world;
    for (int k = 0; k < c->world; k++)
        j.n += j.counts[k] = counts[k];
    dsrt_status s = submit_locked(h, &j, ticket);
    pthread_mutex_unlock(&h->mu);
    return s;
}

static dsrt_status host_f64(dsrt_comm *c, double *v, int n, const char *what)
{
    if (n < 1 || n > F64_MAX || c->world > 64)
        return dsrt_error_set(DSRT_STATUS_INTERNAL, "comm: %d doubles over %d ranks", n, c->world);
    job j = {.kind = JOB_F64, .buf = v, .n = (size_t)n};
    set_what(&j, what);
    uint64_t t = 0;
    DSRT_TRY(submit(c->impl, &j, &t));
    return host_wait(c, t);
}

static dsrt_status host_reserve(dsrt_comm *c, size_t max_bytes)
{
    host_comm *h = c->impl;
    /* a ring chunk is at most ceil(n / N) elements; keep a margin for rounding */
    size_t need = max_bytes / (size_t)c->world + 64;
    pthread_mutex_lock(&h->mu);
    /* only between collectives: the thread may be reading the old buffer */
    while (h->done < h->submitted)
        pthread_cond_wait(&h->cv, &h->mu);
    dsrt_status s = DSRT_STATUS_OK;
    if (need > h->scratch_bytes) {
        unsigned char *p = realloc(h->scratch, need);
        if (!p)
            s = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "comm: %zu bytes of scratch", need);
        else {
            h->scratch = p;
            h->scratch_bytes = need;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return s;
}

static void host_destroy(dsrt_comm *c)
{
    if (!c)
        return;
    host_comm *h = c->impl;
    if (h->started) {
        pthread_mutex_lock(&h->mu);
        /* a failed comm may have a thread stuck nowhere: jobs after a failure
         * are skipped, so the stop job is always reached */
        job stop = {.kind = JOB_STOP};
        while (h->submitted - h->done >= QUEUE)
            pthread_cond_wait(&h->cv, &h->mu);
        h->q[h->submitted % QUEUE] = stop;
        h->submitted++;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->thread, NULL);
    }
    if (h->t) {
        h->t->failed = h->failed != DSRT_STATUS_OK;
        h->t->destroy(h->t);
    }
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h->scratch);
    free(h->counts);
    free(h);
}

dsrt_status dsrt_comm_host_create(dsrt_transport *t, double timeout_s, dsrt_comm **out)
{
    *out = NULL;
    host_comm *h = calloc(1, sizeof *h);
    if (!h) {
        t->destroy(t);
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "comm");
    }
    h->t = t;
    h->lost = -1;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    dsrt_comm *c = &h->base;
    c->name = t->name;
    c->rank = t->rank;
    c->world = t->world;
    c->local_rank = t->local_rank;
    c->timeout_s = timeout_s > 0 ? timeout_s : 1800;
    c->impl = h;
    c->destroy = host_destroy;
    c->reserve = host_reserve;
    c->allreduce = host_allreduce;
    c->allgather = host_allgather;
    c->allgather_strided = host_allgather_strided;
    c->reduce_scatter = host_reduce_scatter;
    c->wait = host_wait;
    c->allreduce_host_f64 = host_f64;
    h->counts = calloc((size_t)QUEUE * (size_t)t->world, sizeof *h->counts);
    if (!h->counts) {
        host_destroy(c);
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "comm");
    }
    const char *lat = getenv("DSRT_COMM_LATENCY_US");
    h->latency_us = lat ? atol(lat) : 0;
    if (pthread_create(&h->thread, NULL, comm_thread, h) != 0) {
        host_destroy(c);
        return dsrt_error_set(DSRT_STATUS_INTERNAL, "comm: cannot start the comm thread");
    }
    h->started = true;
    *out = c;
    return DSRT_STATUS_OK;
}
