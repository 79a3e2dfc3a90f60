/* The NCCL comm (comm.h) on device memory: the data-parallel collectives of a
 * CUDA run.
 *
 * Not yet run on a GPU: this file is compiled (sm_80 and sm_90, every warning
 * an error) but no collective has been executed; treat it as untested until
 * a multi-GPU test passes.
 *
 * NCCL is opened at run time, as cuBLAS is (kernels/cuda/cublas_loader.cu):
 * libdsrt.so must load on hosts without it, so libnccl is never a link-time
 * dependency. The first create dlopen()s libnccl.so.2 (or the file named by
 * DSRT_NCCL_LIBRARY) and resolves the entry points below; nccl.h is included
 * for its types only. The library stays loaded for the life of the process.
 *
 * Ordering. The collectives run on a comm stream of their own, so a bucket's
 * reduction overlaps the rest of the backward on the compute stream (the
 * backend's, given at creation):
 *   allreduce/allgather: an event recorded on the compute stream, waited for
 *     by the comm stream (the bucket is complete), the NCCL call, then a
 *     "done" event recorded on the comm stream for the ticket;
 *   wait(t): the compute stream waits for ticket t's done event. No host
 *     sync: the host learns about the collective at the step's one sync.
 * Done events live in a ring; a slot reused by a later ticket is still a
 * correct thing to wait for (the comm stream is in order, so the later event
 * completes after the earlier collective), only a later one.
 *
 * allreduce_host_f64 (a handful of doubles: the global gradient norm, the
 * overflow flag) is blocking and has a deadline: the host polls the comm
 * stream and NCCL's asynchronous error until timeout_s, then aborts the
 * communicator (a peer died or stalled) and fails with a message naming the
 * rank and the collective. The doubles are all-gathered and added on the host
 * in rank order (comm.h: "added in rank order"), so the result is the same
 * bits as the host comms give, which an NCCL sum would not promise.
 *
 * Limits: the queued collectives have no deadline of their own (no host sync
 * to hang a timeout on); a dead peer shows as the next host_f64 timing out,
 * or as NCCL's asynchronous error, which wait() checks. Any failure makes the
 * comm unusable (comm.h); destroy then aborts instead of destroying. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>
#include <nccl.h>

extern "C" {
#include "zero/transport.h" /* before comm.h, which names dsrt_transport */
#include "zero/comm.h"
#include "base/internal.h"
}

/* ---------------------------------------------------------------- the library */
typedef struct nccl_api {
    bool loaded;
    int version; /* ncclGetVersion's code: 2.10.3 is 21003 */
    decltype(&ncclGetUniqueId) GetUniqueId;
    decltype(&ncclCommInitRank) CommInitRank;
    decltype(&ncclAllReduce) AllReduce;
    decltype(&ncclAllGather) AllGather;
    decltype(&ncclReduce) Reduce;
    decltype(&ncclBroadcast) Broadcast;
    decltype(&ncclGroupStart) GroupStart;
    decltype(&ncclGroupEnd) GroupEnd;
    decltype(&ncclCommDestroy) CommDestroy;
    decltype(&ncclCommAbort) CommAbort;
    decltype(&ncclCommGetAsyncError) CommGetAsyncError;
    decltype(&ncclGetErrorString) GetErrorString;
    decltype(&ncclGetVersion) GetVersion;
} nccl_api;

static nccl_api g_nccl;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char g_load_error[768];

/* bf16 reductions (ncclBfloat16) came with NCCL 2.10 */
enum { NCCL_MIN_VERSION = 21000 };

static void version_parts(int code, int *major, int *minor, int *patch)
{
    /* 2.8.x and older: X*1000 + Y*100 + Z; 2.9 on: X*10000 + Y*100 + Z */
    if (code < 10000) {
        *major = code / 1000;
        *minor = code / 100 % 10;
    } else {
        *major = code / 10000;
        *minor = code / 100 % 100;
    }
    *patch = code % 100;
}

static void load_once(void)
{
    const char *env = getenv("DSRT_NCCL_LIBRARY");
    const bool from_env = env && env[0];
    const char *name = from_env ? env : "libnccl.so.2";
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(g_load_error, sizeof g_load_error, "cannot load %s%s: %s", name,
                 from_env ? " (DSRT_NCCL_LIBRARY)" : " (install NCCL 2, or name the library in "
                                                     "DSRT_NCCL_LIBRARY)",
                 e ? e : "unknown error");
        return;
    }
#define RESOLVE(field, fn)                                                                         \
    do {                                                                                           \
        g_nccl.field = (decltype(g_nccl.field))dlsym(h, #fn);                                      \
        if (!g_nccl.field) {                                                                       \
            snprintf(g_load_error, sizeof g_load_error, "%s has no %s", name, #fn);                \
            return;                                                                                \
        }                                                                                          \
    } while (0)
    RESOLVE(GetUniqueId, ncclGetUniqueId);
    RESOLVE(CommInitRank, ncclCommInitRank);
    RESOLVE(AllReduce, ncclAllReduce);
    RESOLVE(AllGather, ncclAllGather);
    RESOLVE(Reduce, ncclReduce);
    RESOLVE(Broadcast, ncclBroadcast);
    RESOLVE(GroupStart, ncclGroupStart);
    RESOLVE(GroupEnd, ncclGroupEnd);
    RESOLVE(CommDestroy, ncclCommDestroy);
    RESOLVE(CommAbort, ncclCommAbort);
    RESOLVE(CommGetAsyncError, ncclCommGetAsyncError);
    RESOLVE(GetErrorString, ncclGetErrorString);
    RESOLVE(GetVersion, ncclGetVersion);
#undef RESOLVE
    int v = 0;
    if (g_nccl.GetVersion(&v) != ncclSuccess) {
        snprintf(g_load_error, sizeof g_load_error, "%s: ncclGetVersion failed", name);
        return;
    }
    if (v < NCCL_MIN_VERSION) {
        int major, minor, patch;
        version_parts(v, &major, &minor, &patch);
        snprintf(g_load_error, sizeof g_load_error,
                 "%s is NCCL %d.%d.%d; 2.10 or newer is needed (bf16 reductions)", name, major,
                 minor, patch);
        return;
    }
    g_nccl.version = v;
    g_nccl.loaded = true;
}

static dsrt_status nccl_load(void)
{
    pthread_once(&g_once, load_once);
    if (!g_nccl.loaded)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "nccl comm: %s", g_load_error);
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- the comm */
enum {
    DONE_RING = 64, /* done events of the most recent tickets */
};

typedef struct nccl_comm {
    dsrt_comm base; /* first member: a dsrt_comm * is an nccl_comm * */
    int device;
    ncclComm_t comm;
    cudaStream_t compute; /* the backend's stream (not ours: never destroyed here) */
    cudaStream_t stream;  /* the comm stream, non-blocking */
    cudaEvent_t ready;    /* compute stream -> comm stream, re-recorded per collective */
    cudaEvent_t done[DONE_RING];
    cudaEvent_t host_done; /* allreduce_host_f64's completion, polled by the host */
    uint64_t ticket;       /* the last ticket handed out (0: none yet) */
    /* allreduce_host_f64: world * n doubles on the device and in pinned memory
     * (pinned, so the copy back is asynchronous and the host can keep time) */
    double *f64_dev, *f64_host;
    size_t f64_cap; /* doubles */
    /* after a failure the comm is unusable: the first failure, repeated */
    bool failed;
    dsrt_status failure_st;
    char failure[1024];
} nccl_comm;

static nccl_comm *nccl_of(dsrt_comm *c) { return (nccl_comm *)c; }

static const char *what_or(const char *what) { return what && what[0] ? what : "collective"; }

/* Keep the message just set as the comm's failure (comm.h: a failed comm is
 * unusable); later calls repeat it. */
static dsrt_status poison(nccl_comm *nc, dsrt_status st)
{
    if (!nc->failed) {
        nc->failed = true;
        nc->failure_st = st;
        snprintf(nc->failure, sizeof nc->failure, "%s", dsrt_error_message());
    }
    return st;
}

static dsrt_status check_usable(nccl_comm *nc, const char *what)
{
    if (!nc->failed)
        return DSRT_STATUS_OK;
    return dsrt_error_set(nc->failure_st,
                          "nccl comm, rank %d: %s: the communicator is unusable after an earlier "
                          "failure: %s",
                          nc->base.rank, what_or(what), nc->failure);
}

static dsrt_status cuda_status(cudaError_t err)
{
    return err == cudaErrorMemoryAllocation ? DSRT_STATUS_OUT_OF_MEMORY : DSRT_STATUS_INTERNAL;
}

/* a peer or the network (system, remote) is an I/O failure; the rest are ours */
static dsrt_status nccl_status(ncclResult_t r)
{
    return r == ncclSystemError || r == ncclRemoteError ? DSRT_STATUS_IO_ERROR
                                                        : DSRT_STATUS_INTERNAL;
}

static dsrt_status comm_cuda_fail(nccl_comm *nc, const char *what, const char *call,
                                  cudaError_t err)
{
    (void)cudaGetLastError(); /* clear a non-sticky error so later calls start clean */
    dsrt_status st = cuda_status(err);
    dsrt_error_set(st, "nccl comm, rank %d: %s: %s: %s (%s)", nc->base.rank, what_or(what), call,
                   cudaGetErrorString(err), cudaGetErrorName(err));
    return poison(nc, st);
}

static dsrt_status comm_nccl_fail(nccl_comm *nc, const char *what, const char *call,
                                  ncclResult_t r)
{
    dsrt_status st = nccl_status(r);
    dsrt_error_set(st, "nccl comm, rank %d of %d: %s: %s: %s (ncclResult_t %d)", nc->base.rank,
                   nc->base.world, what_or(what), call, g_nccl.GetErrorString(r), (int)r);
    return poison(nc, st);
}

/* return from the enclosing function (dsrt_status) when the call fails */
#define NC_CUDA(nc, what, call)                                                                    \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return comm_cuda_fail((nc), (what), #call, e_);                                        \
    } while (0)

#define NC_NCCL(nc, what, name, call)                                                              \
    do {                                                                                           \
        ncclResult_t r_ = (call);                                                                  \
        if (r_ != ncclSuccess)                                                                     \
            return comm_nccl_fail((nc), (what), (name), r_);                                       \
    } while (0)

/* An error NCCL found while running queued work (a peer gone, a network
 * failure): the comm is aborted (the recommended handling) and unusable. */
static dsrt_status check_async(nccl_comm *nc, const char *what)
{
    ncclResult_t ar = ncclSuccess;
    NC_NCCL(nc, what, "ncclCommGetAsyncError", g_nccl.CommGetAsyncError(nc->comm, &ar));
    if (ar == ncclSuccess || ar == ncclInProgress)
        return DSRT_STATUS_OK;
    (void)g_nccl.CommAbort(nc->comm);
    nc->comm = NULL;
    dsrt_status st = nccl_status(ar);
    dsrt_error_set(st,
                   "nccl comm, rank %d of %d: %s: NCCL reported an asynchronous error: %s "
                   "(ncclResult_t %d); the communicator was aborted",
                   nc->base.rank, nc->base.world, what_or(what), g_nccl.GetErrorString(ar),
                   (int)ar);
    return poison(nc, st);
}

/* The host waits for `ev` (recorded on the comm stream) until timeout_s
 * (<= 0: no limit), checking NCCL's asynchronous error as it goes; on the
 * deadline the comm is aborted, which also ends NCCL kernels stuck waiting
 * for a peer. `during` says what was queued, for the message. */
static dsrt_status host_wait(nccl_comm *nc, cudaEvent_t ev, const char *what, const char *during)
{
    const double start = dsrt_now();
    long sleep_ns = 20000; /* 20 us, doubling to 1 ms: small collectives finish fast */
    for (;;) {
        cudaError_t q = cudaEventQuery(ev);
        if (q == cudaSuccess)
            return DSRT_STATUS_OK;
        if (q != cudaErrorNotReady)
            return comm_cuda_fail(nc, what, "cudaEventQuery", q);
        DSRT_TRY(check_async(nc, what));
        const double waited = dsrt_now() - start;
        if (nc->base.timeout_s > 0 && waited > nc->base.timeout_s) {
            (void)g_nccl.CommAbort(nc->comm);
            nc->comm = NULL;
            dsrt_error_set(DSRT_STATUS_IO_ERROR,
                           "nccl comm, rank %d of %d: %s timed out after %g s in NCCL (%s); a "
                           "peer may have died or stalled; the communicator was aborted",
                           nc->base.rank, nc->base.world, what_or(what), nc->base.timeout_s,
                           during);
            return poison(nc, DSRT_STATUS_IO_ERROR);
        }
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 1000000)
            sleep_ns *= 2;
    }
}

static bool nccl_type(dsrt_dtype dt, ncclDataType_t *out)
{
    switch (dt) {
    case DSRT_F32:
        *out = ncclFloat32;
        return true;
    case DSRT_F16:
        *out = ncclFloat16;
        return true;
    case DSRT_BF16:
        *out = ncclBfloat16;
        return true;
    }
    return false;
}

/* The start of a queued collective: the device current on this thread, and
 * the comm stream after everything queued so far on the compute stream. */
static dsrt_status begin_collective(nccl_comm *nc, const char *what)
{
    NC_CUDA(nc, what, cudaSetDevice(nc->device));
    NC_CUDA(nc, what, cudaEventRecord(nc->ready, nc->compute));
    NC_CUDA(nc, what, cudaStreamWaitEvent(nc->stream, nc->ready, 0));
    return DSRT_STATUS_OK;
}

/* The end: a done event for a new ticket. */
static dsrt_status end_collective(nccl_comm *nc, const char *what, uint64_t *ticket)
{
    uint64_t t = nc->ticket + 1;
    NC_CUDA(nc, what, cudaEventRecord(nc->done[t % DONE_RING], nc->stream));
    nc->ticket = t;
    *ticket = t;
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- the interface */
static dsrt_status nc_reserve(dsrt_comm *c, size_t max_bytes)
{
    (void)c;
    (void)max_bytes; /* in place: NCCL needs no scratch of ours */
    return DSRT_STATUS_OK;
}

static dsrt_status nc_allreduce(dsrt_comm *c, void *buf, size_t n, dsrt_dtype dt,
                                dsrt_reduce_op op, const char *what, uint64_t *ticket)
{
    nccl_comm *nc = nccl_of(c);
    DSRT_TRY(check_usable(nc, what));
    ncclDataType_t type;
    if (!nccl_type(dt, &type) || (op != DSRT_REDUCE_SUM && op != DSRT_REDUCE_MAX))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "nccl comm, rank %d: %s: allreduce: bad dtype %d or op %d",
                              c->rank, what_or(what), (int)dt, (int)op);
    if (n == 0) { /* nothing queued: the last ticket is as good */
        *ticket = nc->ticket;
        return DSRT_STATUS_OK;
    }
    DSRT_TRY(begin_collective(nc, what));
    NC_NCCL(nc, what, "ncclAllReduce",
            g_nccl.AllReduce(buf, buf, n, type, op == DSRT_REDUCE_SUM ? ncclSum : ncclMax,
                             nc->comm, nc->stream));
    return end_collective(nc, what, ticket);
}

static dsrt_status nc_allgather(dsrt_comm *c, void *buf, size_t n_per_rank, dsrt_dtype dt,
                                const char *what, uint64_t *ticket)
{
    nccl_comm *nc = nccl_of(c);
    DSRT_TRY(check_usable(nc, what));
    ncclDataType_t type;
    if (!nccl_type(dt, &type))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "nccl comm, rank %d: %s: allgather: bad dtype %d", c->rank,
                              what_or(what), (int)dt);
    if (n_per_rank == 0) {
        *ticket = nc->ticket;
        return DSRT_STATUS_OK;
    }
    DSRT_TRY(begin_collective(nc, what));
    /* NCCL's in-place form: the send buffer is this rank's slice of the output */
    const char *mine = (const char *)buf + (size_t)c->rank * n_per_rank * dsrt_dtype_size(dt);
    NC_NCCL(nc, what, "ncclAllGather",
            g_nccl.AllGather(mine, buf, n_per_rank, type, nc->comm, nc->stream));
    return end_collective(nc, what, ticket);
}

/* Blocks of unequal sizes, which ncclReduceScatter cannot take: one
 * ncclReduce per block to its rank, in place, fused into one launch by a
 * group (DeepSpeed's average_tensor reduces a bucket's pieces to their
 * owners the same way). Each rank sends about the buffer less its own block. */
static dsrt_status nc_reduce_scatter(dsrt_comm *c, void *buf, const size_t *counts, dsrt_dtype dt,
                                     const char *what, uint64_t *ticket)
{
    nccl_comm *nc = nccl_of(c);
    DSRT_TRY(check_usable(nc, what));
    ncclDataType_t type;
    if (!nccl_type(dt, &type))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "nccl comm, rank %d: %s: reduce_scatter: bad dtype %d", c->rank,
                              what_or(what), (int)dt);
    size_t total = 0;
    for (int k = 0; k < c->world; k++)
        total += counts[k];
    if (total == 0) {
        *ticket = nc->ticket;
        return DSRT_STATUS_OK;
    }
    DSRT_TRY(begin_collective(nc, what));
    size_t es = dsrt_dtype_size(dt), off = 0;
    NC_NCCL(nc, what, "ncclGroupStart", g_nccl.GroupStart());
    for (int k = 0; k < c->world; k++) {
        char *blk = (char *)buf + off * es;
        if (counts[k]) {
            ncclResult_t r = g_nccl.Reduce(blk, blk, counts[k], type, ncclSum, k, nc->comm, nc->stream);
            if (r != ncclSuccess) {
                (void)g_nccl.GroupEnd();
                NC_NCCL(nc, what, "ncclReduce", r);
            }
        }
        off += counts[k];
    }
    NC_NCCL(nc, what, "ncclGroupEnd", g_nccl.GroupEnd());
    return end_collective(nc, what, ticket);
}

/* Blocks at a stride, which ncclAllGather cannot write: one in-place
 * ncclBroadcast per rank's block, fused by a group (the same bytes as an
 * all-gather: each rank receives the N-1 other blocks). */
static dsrt_status nc_allgather_strided(dsrt_comm *c, void *buf, size_t n_per_rank, size_t stride, dsrt_dtype dt,
                                        const char *what, uint64_t *ticket)
{
    nccl_comm *nc = nccl_of(c);
    DSRT_TRY(check_usable(nc, what));
    ncclDataType_t type;
    if (!nccl_type(dt, &type) || stride < n_per_rank)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "nccl comm, rank %d: %s: allgather_strided: bad dtype %d or stride %zu < %zu", c->rank,
                              what_or(what), (int)dt, stride, n_per_rank);
    if (n_per_rank == 0) {
        *ticket = nc->ticket;
        return DSRT_STATUS_OK;
    }
    if (stride == n_per_rank)
        return nc_allgather(c, buf, n_per_rank, dt, what, ticket);
    DSRT_TRY(begin_collective(nc, what));
    size_t es = dsrt_dtype_size(dt);
    NC_NCCL(nc, what, "ncclGroupStart", g_nccl.GroupStart());
    for (int k = 0; k < c->world; k++) {
        char *blk = (char *)buf + (size_t)k * stride * es;
        ncclResult_t r = g_nccl.Broadcast(blk, blk, n_per_rank, type, k, nc->comm, nc->stream);
        if (r != ncclSuccess) {
            (void)g_nccl.GroupEnd();
            NC_NCCL(nc, what, "ncclBroadcast", r);
        }
    }
    NC_NCCL(nc, what, "ncclGroupEnd", g_nccl.GroupEnd());
    return end_collective(nc, what, ticket);
}

static dsrt_status nc_wait(dsrt_comm *c, uint64_t ticket)
{
    nccl_comm *nc = nccl_of(c);
    const char *what = "wait";
    DSRT_TRY(check_usable(nc, what));
    if (ticket > nc->ticket)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "nccl comm, rank %d: wait for ticket %llu, but only %llu were "
                              "handed out",
                              c->rank, (unsigned long long)ticket,
                              (unsigned long long)nc->ticket);
    if (ticket == 0)
        return DSRT_STATUS_OK;
    /* a cheap host-side look at errors of work already run (no sync) */
    DSRT_TRY(check_async(nc, what));
    NC_CUDA(nc, what, cudaSetDevice(nc->device));
    NC_CUDA(nc, what, cudaStreamWaitEvent(nc->compute, nc->done[ticket % DONE_RING], 0));
    return DSRT_STATUS_OK;
}

static dsrt_status grow_f64(nccl_comm *nc, size_t need, const char *what)
{
    if (need <= nc->f64_cap)
        return DSRT_STATUS_OK;
    /* the comm stream is idle here: every earlier host_f64 was waited for */
    if (nc->f64_dev)
        (void)cudaFree(nc->f64_dev);
    if (nc->f64_host)
        (void)cudaFreeHost(nc->f64_host);
    nc->f64_dev = nc->f64_host = NULL;
    nc->f64_cap = 0;
    NC_CUDA(nc, what, cudaMalloc((void **)&nc->f64_dev, need * sizeof(double)));
    NC_CUDA(nc, what, cudaMallocHost((void **)&nc->f64_host, need * sizeof(double)));
    nc->f64_cap = need;
    return DSRT_STATUS_OK;
}

static dsrt_status nc_allreduce_host_f64(dsrt_comm *c, double *v, int n, const char *what)
{
    nccl_comm *nc = nccl_of(c);
    DSRT_TRY(check_usable(nc, what));
    if (n < 0 || (n > 0 && !v))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "nccl comm, rank %d: %s: allreduce_host_f64 of %d values at %p",
                              c->rank, what_or(what), n, (void *)v);
    if (n == 0)
        return DSRT_STATUS_OK;
    const size_t nn = (size_t)n, world = (size_t)c->world, mine = (size_t)c->rank * nn;
    NC_CUDA(nc, what, cudaSetDevice(nc->device));
    DSRT_TRY(grow_f64(nc, world * nn, what));
    memcpy(nc->f64_host + mine, v, nn * sizeof(double));
    NC_CUDA(nc, what,
            cudaMemcpyAsync(nc->f64_dev + mine, nc->f64_host + mine, nn * sizeof(double),
                            cudaMemcpyHostToDevice, nc->stream));
    NC_NCCL(nc, what, "ncclAllGather",
            g_nccl.AllGather(nc->f64_dev + mine, nc->f64_dev, nn, ncclFloat64, nc->comm,
                             nc->stream));
    NC_CUDA(nc, what,
            cudaMemcpyAsync(nc->f64_host, nc->f64_dev, world * nn * sizeof(double),
                            cudaMemcpyDeviceToHost, nc->stream));
    NC_CUDA(nc, what, cudaEventRecord(nc->host_done, nc->stream));
    char during[96];
    snprintf(during, sizeof during, "an allgather of %d double%s per rank", n, n == 1 ? "" : "s");
    DSRT_TRY(host_wait(nc, nc->host_done, what, during));
    /* rank order, starting from rank 0's value (not 0.0: -0.0 stays -0.0) */
    for (size_t i = 0; i < nn; i++) {
        double s = nc->f64_host[i];
        for (size_t r = 1; r < world; r++)
            s += nc->f64_host[r * nn + i];
        v[i] = s;
    }
    return DSRT_STATUS_OK;
}

static void nc_destroy(dsrt_comm *c)
{
    if (!c)
        return;
    nccl_comm *nc = nccl_of(c);
    if (cudaSetDevice(nc->device) == cudaSuccess) {
        if (nc->comm) {
            /* ncclCommDestroy waits for the work queued on the comm; with a peer
             * gone it would wait forever, so the queue gets timeout_s to drain
             * and the comm is aborted otherwise (host_wait does). A failure here
             * must not replace the message the caller may be about to report. */
            dsrt_status saved_st = dsrt_error_status();
            char saved[1024];
            snprintf(saved, sizeof saved, "%s", dsrt_error_message());
            bool drained = !nc->failed && nc->stream && nc->host_done &&
                           cudaEventRecord(nc->host_done, nc->stream) == cudaSuccess &&
                           host_wait(nc, nc->host_done, "destroy", "the queued collectives") ==
                               DSRT_STATUS_OK;
            if (saved_st == DSRT_STATUS_OK)
                dsrt_error_clear();
            else
                dsrt_error_set(saved_st, "%s", saved);
            if (nc->comm) { /* host_wait aborts (and clears) it on a failure */
                if (drained)
                    (void)g_nccl.CommDestroy(nc->comm);
                else
                    (void)g_nccl.CommAbort(nc->comm);
            }
            nc->comm = NULL;
        }
        if (nc->stream)
            (void)cudaStreamSynchronize(nc->stream);
        for (int i = 0; i < DONE_RING; i++)
            if (nc->done[i])
                (void)cudaEventDestroy(nc->done[i]);
        if (nc->ready)
            (void)cudaEventDestroy(nc->ready);
        if (nc->host_done)
            (void)cudaEventDestroy(nc->host_done);
        if (nc->stream)
            (void)cudaStreamDestroy(nc->stream);
        if (nc->f64_dev)
            (void)cudaFree(nc->f64_dev);
        if (nc->f64_host)
            (void)cudaFreeHost(nc->f64_host);
    }
    (void)cudaGetLastError();
    free(nc);
}

/* Everything but the communicator itself, local to this rank: done before
 * the id is shared, so a local failure cannot leave peers waiting in the
 * NCCL bootstrap for a rank that gave up. */
static dsrt_status local_init(nccl_comm *nc)
{
    const char *what = "create";
    cudaError_t err = cudaSetDevice(nc->device);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "nccl comm, rank %d: device %d is not usable: %s (%s)",
                              nc->base.rank, nc->device, cudaGetErrorString(err),
                              cudaGetErrorName(err));
    }
    NC_CUDA(nc, what, cudaStreamCreateWithFlags(&nc->stream, cudaStreamNonBlocking));
    NC_CUDA(nc, what, cudaEventCreateWithFlags(&nc->ready, cudaEventDisableTiming));
    NC_CUDA(nc, what, cudaEventCreateWithFlags(&nc->host_done, cudaEventDisableTiming));
    for (int i = 0; i < DONE_RING; i++)
        NC_CUDA(nc, what, cudaEventCreateWithFlags(&nc->done[i], cudaEventDisableTiming));
    /* room for a few doubles per rank up front (host_f64 grows it if need be) */
    DSRT_TRY(grow_f64(nc, (size_t)nc->base.world * 8, what));
    return DSRT_STATUS_OK;
}

static dsrt_status comm_init(nccl_comm *nc, dsrt_comm_share_fn share_id, void *user)
{
    const char *what = "create";
    DSRT_TRY(local_init(nc));
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (nc->base.rank == 0)
        NC_NCCL(nc, what, "ncclGetUniqueId", g_nccl.GetUniqueId(&id));
    /* every rank calls it: rank 0 writes the id, the others read it */
    DSRT_TRY(share_id(user, &id, sizeof id));
    /* waits until every rank has joined (NCCL's bootstrap); the handle is
     * kept only on success, so destroy never sees a half-made one */
    ncclComm_t comm = NULL;
    NC_NCCL(nc, what, "ncclCommInitRank",
            g_nccl.CommInitRank(&comm, nc->base.world, id, nc->base.rank));
    nc->comm = comm;
    return DSRT_STATUS_OK;
}

extern "C" dsrt_status dsrt_comm_nccl_create(int rank, int world, int device, double timeout_s,
                                             void *cuda_stream, dsrt_comm_share_fn share_id,
                                             void *user, dsrt_comm **out)
{
    if (!out)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "nccl comm: out is NULL");
    *out = NULL;
    if (world < 1 || rank < 0 || rank >= world || device < 0 || !share_id)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "nccl comm: bad arguments: rank %d, world %d, device %d%s", rank,
                              world, device, share_id ? "" : ", no share_id callback");
    DSRT_TRY(nccl_load());

    nccl_comm *nc = (nccl_comm *)calloc(1, sizeof *nc);
    if (!nc)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "nccl comm");
    dsrt_comm *c = &nc->base;
    c->name = "nccl";
    c->rank = rank;
    c->world = world;
    c->local_rank = device;
    c->timeout_s = timeout_s;
    c->impl = nc;
    c->destroy = nc_destroy;
    c->reserve = nc_reserve;
    c->allreduce = nc_allreduce;
    c->allgather = nc_allgather;
    c->reduce_scatter = nc_reduce_scatter;
    c->allgather_strided = nc_allgather_strided;
    c->wait = nc_wait;
    c->allreduce_host_f64 = nc_allreduce_host_f64;
    nc->device = device;
    /* NULL is the legacy default stream, a valid (if unusual) compute stream */
    nc->compute = (cudaStream_t)cuda_stream;

    dsrt_status st = comm_init(nc, share_id, user);
    if (st != DSRT_STATUS_OK) {
        nc->failed = true; /* destroy: abort what exists, drain nothing */
        nc_destroy(c);
        return st;
    }
    *out = c;
    return DSRT_STATUS_OK;
}
