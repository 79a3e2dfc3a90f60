/* The MPI transport (transport.h): MPI_COMM_WORLD of a job started by
 * mpirun/mpiexec/srun, for the point-to-point transfers the ring collectives
 * of comm.c are built on, and MPI's own non-blocking collectives where MPI
 * has the type (fp32 and double sums; 16-bit sums stay on comm.c's ring,
 * which rounds after every addition as NCCL does, and MPI has no 16-bit
 * float type to sum anyway).
 *
 * libmpi is dlopen()ed on first use, never linked, and no mpi.h is needed to
 * build: libdsrt.so loads on hosts without MPI, and one build speaks both MPI
 * ABIs in use:
 *   Open MPI (libmpi.so.40): handles are pointers to global objects
 *     (ompi_mpi_comm_world, ompi_mpi_float, ...), looked up by symbol;
 *   the MPICH ABI (MPICH libmpich.so.12, Intel MPI libmpi.so.12, Cray MPICH,
 *     MVAPICH): handles are int constants, fixed by that ABI (the values
 *     below are those of MPICH 4.0's mpi.h; MPI_IN_PLACE and
 *     MPI_STATUS_IGNORE differ between the two ABIs too).
 * The ABI is told by the library's symbols (ompi_mpi_comm_world or not). The
 * library: DSRT_MPI_LIBRARY, else the one this process already loaded, else
 * the launcher's (Open MPI's when OMPI_* variables are set, else the MPICH
 * ABI's), else any of them.
 *
 * Transfers and collectives are non-blocking and polled with a deadline, so a
 * peer that hangs ends in an error naming it instead of a hang. Only the comm
 * thread calls MPI after initialisation (MPI_THREAD_SERIALIZED is enough).
 * DSRT_MPI_COLLECTIVES=ring keeps every collective on comm.c's rings (the
 * bytes each rank moves are then counted per transfer). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/internal.h"
#include "zero/transport.h"

/* ---------------------------------------------------------------- the two ABIs */

typedef uintptr_t mpi_h; /* a handle: Open MPI's pointer or the MPICH ABI's int */
typedef union mpi_req {
    void *p; /* Open MPI */
    int i;   /* MPICH ABI */
    uint64_t raw;
} mpi_req;

enum { ABI_OMPI = 1, ABI_MPICH = 2 };
enum { MPI_OK = 0, THREAD_SERIALIZED = 2, ERR_STRING_MAX = 1024 };

/* the MPICH ABI's constants (mpi.h of MPICH 4.0) */
#define MPICH_COMM_WORLD 0x44000000
#define MPICH_BYTE 0x4c00010d
#define MPICH_FLOAT 0x4c00040a
#define MPICH_DOUBLE 0x4c00080b
#define MPICH_SUM 0x58000003
#define MPICH_ERRORS_RETURN 0x54000001
#define MPICH_IN_PLACE ((void *)-1)
#define MPICH_STATUS_IGNORE ((void *)1)
/* Open MPI's: MPI_IN_PLACE (void *)1, MPI_STATUS_IGNORE NULL */
#define OMPI_IN_PLACE ((void *)1)
#define OMPI_STATUS_IGNORE ((void *)0)

/* Each call with Open MPI's handle types (void *) and with the MPICH ABI's
 * (int): the pointer of the loaded ABI is called through its own type. */
#define MPI_FN(name, ret, ompi_args, mpich_args)                                                   \
    union {                                                                                        \
        ret(*o) ompi_args;                                                                         \
        ret(*m) mpich_args;                                                                        \
        void *sym;                                                                                 \
    } name

typedef struct mpi_fns {
    void *lib;
    const char *path;
    int abi;
    int (*Initialized)(int *);
    int (*Finalized)(int *);
    int (*Init_thread)(int *, char ***, int, int *);
    int (*Query_thread)(int *);
    int (*Finalize)(void);
    int (*Error_string)(int, char *, int *);
    MPI_FN(Comm_rank, int, (void *, int *), (int, int *));
    MPI_FN(Comm_size, int, (void *, int *), (int, int *));
    MPI_FN(Comm_dup, int, (void *, void **), (int, int *));
    MPI_FN(Comm_free, int, (void **), (int *));
    MPI_FN(Comm_set_errhandler, int, (void *, void *), (int, int));
    MPI_FN(Isend, int, (const void *, int, void *, int, int, void *, void **),
           (const void *, int, int, int, int, int, int *));
    MPI_FN(Irecv, int, (void *, int, void *, int, int, void *, void **), (void *, int, int, int, int, int, int *));
    MPI_FN(Test, int, (void **, int *, void *), (int *, int *, void *));
    MPI_FN(Iallreduce, int, (const void *, void *, int, void *, void *, void *, void **),
           (const void *, void *, int, int, int, int, int *));
    MPI_FN(Ireduce_scatter, int, (const void *, void *, const int *, void *, void *, void *, void **),
           (const void *, void *, const int *, int, int, int, int *));
    MPI_FN(Cancel, int, (void **), (int *));
    MPI_FN(Request_free, int, (void **), (int *));
    MPI_FN(Iallgather, int, (const void *, int, void *, void *, int, void *, void *, void **),
           (const void *, int, int, void *, int, int, int, int *));
    mpi_h world, byte, flt, dbl, sum, errors_return;
    void *in_place, *status_ignore;
    int we_initialized;
    int users;
} mpi_fns;

static mpi_fns M;

/* Handles as each ABI passes them. */
#define HO(h) ((void *)(h))
#define HM(h) ((int)(h))

static int x_comm_rank(mpi_h c, int *r) { return M.abi == ABI_OMPI ? M.Comm_rank.o(HO(c), r) : M.Comm_rank.m(HM(c), r); }
static int x_comm_size(mpi_h c, int *n) { return M.abi == ABI_OMPI ? M.Comm_size.o(HO(c), n) : M.Comm_size.m(HM(c), n); }
static int x_comm_dup(mpi_h c, mpi_h *out)
{
    if (M.abi == ABI_OMPI) {
        void *p = NULL;
        int rc = M.Comm_dup.o(HO(c), &p);
        *out = (mpi_h)p;
        return rc;
    }
    int i = 0;
    int rc = M.Comm_dup.m(HM(c), &i);
    *out = (mpi_h)(unsigned)i;
    return rc;
}
static void x_comm_free(mpi_h *c)
{
    if (M.abi == ABI_OMPI) {
        void *p = HO(*c);
        M.Comm_free.o(&p);
    } else {
        int i = HM(*c);
        M.Comm_free.m(&i);
    }
    *c = 0;
}
static void x_set_errhandler(mpi_h c, mpi_h e)
{
    if (M.abi == ABI_OMPI)
        M.Comm_set_errhandler.o(HO(c), HO(e));
    else
        M.Comm_set_errhandler.m(HM(c), HM(e));
}
static int x_isend(const void *b, int n, mpi_h dt, int to, int tag, mpi_h c, mpi_req *r)
{
    r->raw = 0;
    return M.abi == ABI_OMPI ? M.Isend.o(b, n, HO(dt), to, tag, HO(c), &r->p)
                             : M.Isend.m(b, n, HM(dt), to, tag, HM(c), &r->i);
}
static int x_irecv(void *b, int n, mpi_h dt, int from, int tag, mpi_h c, mpi_req *r)
{
    r->raw = 0;
    return M.abi == ABI_OMPI ? M.Irecv.o(b, n, HO(dt), from, tag, HO(c), &r->p)
                             : M.Irecv.m(b, n, HM(dt), from, tag, HM(c), &r->i);
}
static int x_test(mpi_req *r, int *flag)
{
    return M.abi == ABI_OMPI ? M.Test.o(&r->p, flag, M.status_ignore) : M.Test.m(&r->i, flag, M.status_ignore);
}
static int x_iallreduce(void *buf, int n, mpi_h dt, mpi_h c, mpi_req *r)
{
    r->raw = 0;
    return M.abi == ABI_OMPI ? M.Iallreduce.o(M.in_place, buf, n, HO(dt), HO(M.sum), HO(c), &r->p)
                             : M.Iallreduce.m(M.in_place, buf, n, HM(dt), HM(M.sum), HM(c), &r->i);
}
static int x_ireduce_scatter(void *recv, const int *counts, mpi_h dt, mpi_h c, mpi_req *r)
{
    r->raw = 0;
    return M.abi == ABI_OMPI ? M.Ireduce_scatter.o(M.in_place, recv, counts, HO(dt), HO(M.sum), HO(c), &r->p)
                             : M.Ireduce_scatter.m(M.in_place, recv, counts, HM(dt), HM(M.sum), HM(c), &r->i);
}
static int x_iallgather(void *buf, int n, mpi_h dt, mpi_h c, mpi_req *r)
{
    r->raw = 0;
    return M.abi == ABI_OMPI ? M.Iallgather.o(M.in_place, 0, HO(dt), buf, n, HO(dt), HO(c), &r->p)
                             : M.Iallgather.m(M.in_place, 0, HM(dt), buf, n, HM(dt), HM(c), &r->i);
}

static void x_cancel_free(mpi_req *r)
{
    if (M.abi == ABI_OMPI) {
        M.Cancel.o(&r->p);
        M.Request_free.o(&r->p);
    } else {
        M.Cancel.m(&r->i);
        M.Request_free.m(&r->i);
    }
}

/* ---------------------------------------------------------------- loading */

static void *open_lib(const char *path, int flags) { return dlopen(path, flags | RTLD_GLOBAL | RTLD_NODELETE); }

static dsrt_status mpi_load(void)
{
    if (M.lib)
        return DSRT_STATUS_OK;
    static const char *const ompi[] = {"libmpi.so.40", NULL};
    static const char *const mpich[] = {"libmpich.so.12", "libmpi.so.12", "libmpi_cray.so.12", NULL};
    const char *env = getenv("DSRT_MPI_LIBRARY");
    void *lib = NULL;
    const char *path = NULL;
    char tried[512] = "";
    if (env && *env) {
        path = env;
        lib = open_lib(path, RTLD_NOW);
        if (!lib)
            return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "MPI: cannot load %s (DSRT_MPI_LIBRARY): %s", path,
                                  dlerror());
    } else {
        /* one this process (its host) already loaded, then the launcher's family first */
        bool ompi_first = getenv("OMPI_COMM_WORLD_SIZE") != NULL;
        const char *const *order[2] = {ompi_first ? ompi : mpich, ompi_first ? mpich : ompi};
        for (int pass = 0; pass < 2 && !lib; pass++)
            for (int g = 0; g < 2 && !lib; g++)
                for (int i = 0; order[g][i] && !lib; i++) {
                    lib = open_lib(order[g][i], RTLD_NOW | (pass == 0 ? RTLD_NOLOAD : 0));
                    if (lib)
                        path = order[g][i];
                    else if (pass == 1)
                        snprintf(tried + strlen(tried), sizeof tried - strlen(tried), "%s%s", *tried ? ", " : "",
                                 order[g][i]);
                }
        if (!lib)
            return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                                  "MPI: no MPI library could be loaded (tried %s); install Open MPI (Debian: "
                                  "openmpi-bin) or MPICH (mpich), or name the library in DSRT_MPI_LIBRARY",
                                  tried);
    }
    M.abi = dlsym(lib, "ompi_mpi_comm_world") ? ABI_OMPI : ABI_MPICH;
#define SYM(field, name)                                                                           \
    do {                                                                                           \
        *(void **)&M.field = dlsym(lib, name);                                                     \
        if (!M.field)                                                                              \
            return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "MPI: %s has no %s", path, name);       \
    } while (0)
#define SYMU(field, name)                                                                          \
    do {                                                                                           \
        M.field.sym = dlsym(lib, name);                                                            \
        if (!M.field.sym)                                                                          \
            return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "MPI: %s has no %s", path, name);       \
    } while (0)
    SYM(Initialized, "MPI_Initialized");
    SYM(Finalized, "MPI_Finalized");
    SYM(Init_thread, "MPI_Init_thread");
    SYM(Query_thread, "MPI_Query_thread");
    SYM(Finalize, "MPI_Finalize");
    SYM(Error_string, "MPI_Error_string");
    SYMU(Comm_rank, "MPI_Comm_rank");
    SYMU(Comm_size, "MPI_Comm_size");
    SYMU(Comm_dup, "MPI_Comm_dup");
    SYMU(Comm_free, "MPI_Comm_free");
    SYMU(Comm_set_errhandler, "MPI_Comm_set_errhandler");
    SYMU(Isend, "MPI_Isend");
    SYMU(Irecv, "MPI_Irecv");
    SYMU(Test, "MPI_Test");
    SYMU(Iallreduce, "MPI_Iallreduce");
    SYMU(Ireduce_scatter, "MPI_Ireduce_scatter");
    SYMU(Iallgather, "MPI_Iallgather");
    SYMU(Cancel, "MPI_Cancel");
    SYMU(Request_free, "MPI_Request_free");
    if (M.abi == ABI_OMPI) {
        void *p;
#define OBJ(field, name)                                                                           \
    do {                                                                                           \
        if (!(p = dlsym(lib, name)))                                                               \
            return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "MPI: %s (Open MPI) has no %s", path, name); \
        M.field = (mpi_h)p;                                                                        \
    } while (0)
        OBJ(world, "ompi_mpi_comm_world");
        OBJ(byte, "ompi_mpi_byte");
        OBJ(flt, "ompi_mpi_float");
        OBJ(dbl, "ompi_mpi_double");
        OBJ(sum, "ompi_mpi_op_sum");
        OBJ(errors_return, "ompi_mpi_errors_return");
#undef OBJ
        M.in_place = OMPI_IN_PLACE;
        M.status_ignore = OMPI_STATUS_IGNORE;
    } else {
        M.world = MPICH_COMM_WORLD;
        M.byte = MPICH_BYTE;
        M.flt = MPICH_FLOAT;
        M.dbl = MPICH_DOUBLE;
        M.sum = MPICH_SUM;
        M.errors_return = MPICH_ERRORS_RETURN;
        M.in_place = MPICH_IN_PLACE;
        M.status_ignore = MPICH_STATUS_IGNORE;
    }
#undef SYM
#undef SYMU
    M.path = path;
    M.lib = lib;
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- the transport */

typedef struct mpi_transport {
    dsrt_transport base;
    mpi_h comm;
    int *counts; /* (world) reduce-scatter counts as MPI's int */
    /* beacons: entering MPI collective k, each rank sends k to every peer, so
     * a collective that times out can name the ranks that never reached it */
    uint64_t seq, beacon_out;
    uint64_t *beacon_in; /* (world) */
    mpi_req *reqs;       /* (2 * world + 1) */
    int *active, *peer;  /* (2 * world + 1) */
    /* pings: while polling, every rank answers a peer's ping with a pong, so
     * after a timeout in which every rank entered the collective the ranks
     * still alive can be told from a stopped one */
    mpi_req *ping_rx, *pong_tx;  /* (world) */
    int *ping_posted, *pong_busy;
    uint64_t *ping_in, pong_out;
} mpi_transport;

static const char *mpi_err(int code, char *buf)
{
    int len = 0;
    if (M.Error_string(code, buf, &len) != MPI_OK)
        snprintf(buf, 64, "MPI error %d", code);
    return buf;
}

enum { TAG_DATA = 7, TAG_BEACON = 8, TAG_PING = 9, TAG_PONG = 10 };

/* Answer the pings that arrived (a pong each) and keep one receive posted per peer. */
static void service_pings(mpi_transport *mt)
{
    dsrt_transport *t = &mt->base;
    for (int p = 0; p < t->world; p++) {
        if (p == t->rank)
            continue;
        int flag = 0;
        if (mt->pong_busy[p] && x_test(&mt->pong_tx[p], &flag) == MPI_OK && flag)
            mt->pong_busy[p] = 0;
        if (!mt->ping_posted[p]) {
            if (x_irecv(&mt->ping_in[p], 8, M.byte, p, TAG_PING, mt->comm, &mt->ping_rx[p]) == MPI_OK)
                mt->ping_posted[p] = 1;
            continue;
        }
        flag = 0;
        if (x_test(&mt->ping_rx[p], &flag) == MPI_OK && flag) {
            mt->ping_posted[p] = 0;
            if (!mt->pong_busy[p] && x_isend(&mt->pong_out, 8, M.byte, p, TAG_PONG, mt->comm, &mt->pong_tx[p]) == MPI_OK)
                mt->pong_busy[p] = 1;
        }
    }
}

/* Largest piece per message: MPI counts are int. */
#define PIECE ((size_t)1 << 30)

static void pause_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/* Poll requests until done or the deadline; `peer` names who a timeout waits on. */
static dsrt_status poll_reqs(dsrt_transport *t, mpi_req *req, int *active, int n, double deadline, const char *what,
                             const int *peer)
{
    char eb[ERR_STRING_MAX];
    double t0 = dsrt_now();
    long spins = 0;
    for (;;) {
        service_pings((mpi_transport *)t);
        int left = 0;
        for (int k = 0; k < n; k++) {
            if (!active[k])
                continue;
            int flag = 0;
            int rc = x_test(&req[k], &flag);
            if (rc != MPI_OK) {
                if (peer[k] >= 0)
                    return dsrt_error_set(DSRT_STATUS_IO_ERROR, "rank %d: MPI failed during %s with rank %d: %s",
                                          t->rank, what, peer[k], mpi_err(rc, eb));
                return dsrt_error_set(DSRT_STATUS_IO_ERROR, "rank %d: MPI failed during %s: %s", t->rank, what,
                                      mpi_err(rc, eb));
            }
            if (flag)
                active[k] = 0;
            else
                left++;
        }
        if (!left)
            return DSRT_STATUS_OK;
        if (dsrt_now() > deadline) {
            int p = -1;
            for (int k = 0; k < n; k++)
                if (active[k])
                    p = peer[k];
            if (p >= 0)
                return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                      "rank %d: %s timed out after %.0f s waiting for rank %d (MPI): a peer failed, "
                                      "hung, or is itself waiting on a failed rank",
                                      t->rank, what, dsrt_now() - t0, p);
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "rank %d: %s timed out after %.0f s (MPI collective): a peer failed, hung, or is "
                                  "itself waiting on a failed rank",
                                  t->rank, what, dsrt_now() - t0);
        }
        /* MPI progresses only inside its calls: spin briefly, then back off
         * so a waiting comm thread leaves the cores to the backward */
        if (++spins > 200)
            pause_us(spins > 2000 ? 200 : 20);
    }
}

static dsrt_status mpi_sendrecv(dsrt_transport *t, int to, const void *sbuf, size_t sbytes,
                                int from, void *rbuf, size_t rbytes, double deadline,
                                const char *what)
{
    mpi_transport *mt = (mpi_transport *)t;
    char eb[ERR_STRING_MAX];
    size_t soff = 0, roff = 0;
    bool sfirst = true, rfirst = true;
    /* pieces of both directions in lockstep; 0-byte messages still travel */
    while ((to >= 0 && (soff < sbytes || sfirst)) || (from >= 0 && (roff < rbytes || rfirst))) {
        mpi_req req[2];
        int active[2] = {0, 0}, peer[2] = {to, from};
        size_t sn = 0, rn = 0;
        if (to >= 0 && (soff < sbytes || sfirst)) {
            sn = sbytes - soff < PIECE ? sbytes - soff : PIECE;
            int rc = x_isend((const char *)sbuf + soff, (int)sn, M.byte, to, TAG_DATA, mt->comm, &req[0]);
            if (rc != MPI_OK)
                return dsrt_error_set(DSRT_STATUS_IO_ERROR, "rank %d: sending to rank %d during %s: %s",
                                      t->rank, to, what, mpi_err(rc, eb));
            active[0] = 1;
        }
        if (from >= 0 && (roff < rbytes || rfirst)) {
            rn = rbytes - roff < PIECE ? rbytes - roff : PIECE;
            int rc = x_irecv((char *)rbuf + roff, (int)rn, M.byte, from, TAG_DATA, mt->comm, &req[1]);
            if (rc != MPI_OK)
                return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                      "rank %d: receiving from rank %d during %s: %s", t->rank,
                                      from, what, mpi_err(rc, eb));
            active[1] = 1;
        }
        DSRT_TRY(poll_reqs(t, req, active, 2, deadline, what, peer));
        soff += sn;
        roff += rn;
        sfirst = rfirst = false;
    }
    return DSRT_STATUS_OK;
}

/* Append rank p to a message's list of ranks ("0, 1"), counting them in *n. */
static void add_rank(char *list, size_t cap, int *n, int p)
{
    size_t len = strlen(list);
    if (len < cap - 16)
        snprintf(list + len, cap - len, "%s%d", (*n)++ ? ", " : "", p);
}

/* Run MPI collective `coll` (already started, request *r) with the beacons
 * of this collective, polled against the deadline. */
static dsrt_status run_native(dsrt_transport *t, mpi_req *r, double deadline, const char *what)
{
    mpi_transport *mt = (mpi_transport *)t;
    char eb[ERR_STRING_MAX];
    int N = t->world, n = 0;
    mt->reqs[n] = *r;
    mt->active[n] = 1;
    mt->peer[n++] = -1;
    for (int p = 0; p < N; p++) {
        if (p == t->rank)
            continue;
        int rc = x_irecv(&mt->beacon_in[p], 8, M.byte, p, TAG_BEACON, mt->comm, &mt->reqs[n]);
        if (rc != MPI_OK)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR, "rank %d: MPI_Irecv from rank %d during %s: %s", t->rank, p,
                                  what, mpi_err(rc, eb));
        mt->active[n] = 1;
        mt->peer[n++] = p;
        rc = x_isend(&mt->beacon_out, 8, M.byte, p, TAG_BEACON, mt->comm, &mt->reqs[n]);
        if (rc != MPI_OK)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR, "rank %d: MPI_Isend to rank %d during %s: %s", t->rank, p,
                                  what, mpi_err(rc, eb));
        mt->active[n] = 1;
        mt->peer[n++] = -1; /* a send completes locally; the receive names the peer */
    }
    double t0 = dsrt_now();
    dsrt_status st = poll_reqs(t, mt->reqs, mt->active, n, deadline, what, mt->peer);
    if (st == DSRT_STATUS_IO_ERROR && dsrt_now() > deadline) {
        /* name the ranks whose beacon for this collective never came */
        char missing[256] = "";
        int nm = 0;
        for (int k = 1; k < n; k++)
            if (mt->active[k] && mt->peer[k] >= 0)
                add_rank(missing, sizeof missing, &nm, mt->peer[k]);
        if (nm)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "rank %d: %s timed out after %.0f s waiting for rank%s %s (MPI): %s never "
                                  "reached this collective (failed, hung, or itself waiting on a failed rank)",
                                  t->rank, what, dsrt_now() - t0, nm > 1 ? "s" : "", missing, nm > 1 ? "they" : "it");
        /* every rank entered it: ping them; one that was stopped inside it does not answer */
        static uint64_t ping_out = 1;
        int m = 0;
        for (int p = 0; p < N; p++) {
            if (p == t->rank)
                continue;
            if (x_irecv(&mt->beacon_in[p], 8, M.byte, p, TAG_PONG, mt->comm, &mt->reqs[m]) != MPI_OK) {
                add_rank(missing, sizeof missing, &nm, p); /* no way to hear it: count it as silent */
                continue;
            }
            mt->active[m] = 1;
            mt->peer[m++] = p;
            mpi_req sreq;
            (void)x_isend(&ping_out, 8, M.byte, p, TAG_PING, mt->comm, &sreq);
        }
        (void)poll_reqs(t, mt->reqs, mt->active, m, dsrt_now() + 3.0, what, mt->peer);
        for (int k = 0; k < m; k++)
            if (mt->active[k])
                add_rank(missing, sizeof missing, &nm, mt->peer[k]);
        if (nm)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "rank %d: %s timed out after %.0f s waiting for rank%s %s (MPI): every rank "
                                  "entered this collective and %s not answer since (stopped or hung)",
                                  t->rank, what, dsrt_now() - t0, nm > 1 ? "s" : "", missing, nm > 1 ? "they do" : "it does");
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "rank %d: %s timed out after %.0f s (MPI): every rank entered it and answers, but it "
                              "did not complete (the network or MPI failed)",
                              t->rank, what, dsrt_now() - t0);
    }
    return st;
}

/* MPI's type for a sum of dt, or 0 where MPI has none (16-bit floats). */
static mpi_h sum_type(dsrt_dtype dt) { return dt == DSRT_F32 ? M.flt : 0; }

static dsrt_status started(dsrt_transport *t, int rc, const char *call, const char *what)
{
    char eb[ERR_STRING_MAX];
    if (rc != MPI_OK)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "rank %d: %s failed during %s: %s", t->rank, call, what,
                              mpi_err(rc, eb));
    return DSRT_STATUS_OK;
}

static dsrt_status mpi_allreduce(dsrt_transport *t, void *buf, size_t n, dsrt_dtype dt, double deadline,
                                 const char *what)
{
    mpi_transport *mt = (mpi_transport *)t;
    mpi_h type = sum_type(dt);
    if (!type || n > INT_MAX)
        return DSRT_STATUS_UNSUPPORTED;
    mpi_req r;
    mt->beacon_out = ++mt->seq;
    DSRT_TRY(started(t, x_iallreduce(buf, (int)n, type, mt->comm, &r), "MPI_Iallreduce", what));
    return run_native(t, &r, deadline, what);
}

static dsrt_status mpi_reduce_scatter(dsrt_transport *t, void *buf, const size_t *counts, dsrt_dtype dt,
                                      double deadline, const char *what)
{
    mpi_transport *mt = (mpi_transport *)t;
    mpi_h type = sum_type(dt);
    size_t total = 0, before = 0;
    for (int k = 0; k < t->world; k++) {
        if (counts[k] > INT_MAX)
            return DSRT_STATUS_UNSUPPORTED;
        mt->counts[k] = (int)counts[k];
        total += counts[k];
        if (k < t->rank)
            before += counts[k];
    }
    if (!type || total > INT_MAX)
        return DSRT_STATUS_UNSUPPORTED;
    mpi_req r;
    mt->beacon_out = ++mt->seq;
    /* in place: the whole buffer goes in, this rank's block comes back at its start */
    DSRT_TRY(started(t, x_ireduce_scatter(buf, mt->counts, type, mt->comm, &r), "MPI_Ireduce_scatter", what));
    DSRT_TRY(run_native(t, &r, deadline, what));
    if (before && counts[t->rank])
        memmove((char *)buf + before * sizeof(float), buf, counts[t->rank] * sizeof(float));
    return DSRT_STATUS_OK;
}

static dsrt_status mpi_allgather(dsrt_transport *t, void *buf, size_t block_bytes, double deadline,
                                 const char *what)
{
    mpi_transport *mt = (mpi_transport *)t;
    if (block_bytes > INT_MAX || block_bytes * (size_t)t->world > INT_MAX)
        return DSRT_STATUS_UNSUPPORTED;
    mpi_req r;
    mt->beacon_out = ++mt->seq;
    DSRT_TRY(started(t, x_iallgather(buf, (int)block_bytes, M.byte, mt->comm, &r), "MPI_Iallgather", what));
    return run_native(t, &r, deadline, what);
}

static void mpi_destroy(dsrt_transport *t)
{
    mpi_transport *mt = (mpi_transport *)t;
    /* the ping receives still posted */
    for (int p = 0; mt->ping_posted && p < t->world; p++)
        if (mt->ping_posted[p])
            x_cancel_free(&mt->ping_rx[p]);
    if (mt->comm)
        x_comm_free(&mt->comm);
    if (--M.users == 0 && M.we_initialized && !t->failed) {
        /* MPI_Finalize waits for every rank: after a failure it would hang, and
         * mpirun ends the job anyway */
        int fin = 0;
        M.Finalized(&fin);
        if (!fin)
            M.Finalize();
    }
    free(mt->counts);
    free(mt->beacon_in);
    free(mt->reqs);
    free(mt->active);
    free(mt->peer);
    free(mt->ping_rx);
    free(mt->pong_tx);
    free(mt->ping_posted);
    free(mt->pong_busy);
    free(mt->ping_in);
    free(mt);
}

int dsrt_transport_mpi_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMI_RANK") || getenv("PMIX_RANK");
}

/* The node-local rank from whichever launcher started us. */
static int local_rank_from_env(int rank)
{
    static const char *const keys[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK",
                                       "MPI_LOCAL_RANK", "SLURM_LOCALID", NULL};
    for (int i = 0; keys[i]; i++) {
        const char *v = getenv(keys[i]);
        if (v && *v)
            return atoi(v);
    }
    return rank;
}

dsrt_status dsrt_transport_mpi_create(dsrt_transport **out)
{
    *out = NULL;
    DSRT_TRY(mpi_load());
    int init = 0, fin = 0;
    M.Initialized(&init);
    M.Finalized(&fin);
    if (fin)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "MPI: already finalized in this process; MPI cannot start twice");
    if (!init) {
        int provided = 0;
        int rc = M.Init_thread(NULL, NULL, THREAD_SERIALIZED, &provided);
        if (rc != MPI_OK)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR, "MPI_Init_thread failed (code %d, %s)", rc, M.path);
        M.we_initialized = 1;
    }
    int provided = 0;
    M.Query_thread(&provided);
    if (provided < THREAD_SERIALIZED)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "MPI: the host initialised MPI with thread level %d; dsrt's comm "
                              "thread needs MPI_THREAD_SERIALIZED or higher",
                              provided);
    mpi_transport *mt = calloc(1, sizeof *mt);
    if (!mt)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "MPI transport");
    M.users++;
    dsrt_transport *t = &mt->base;
    t->name = "mpi";
    t->impl = mt;
    t->sendrecv = mpi_sendrecv;
    t->destroy = mpi_destroy;
    const char *coll = getenv("DSRT_MPI_COLLECTIVES");
    if (!coll || strcmp(coll, "ring") != 0) {
        t->allreduce = mpi_allreduce;
        t->reduce_scatter = mpi_reduce_scatter;
        t->allgather = mpi_allgather;
    }
    /* our own communicator: our tags never meet the host's messages */
    if (x_comm_dup(M.world, &mt->comm) != MPI_OK) {
        mt->comm = 0;
        mpi_destroy(t);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "MPI_Comm_dup failed (%s)", M.path);
    }
    x_set_errhandler(mt->comm, M.errors_return);
    x_comm_rank(mt->comm, &t->rank);
    x_comm_size(mt->comm, &t->world);
    t->local_rank = local_rank_from_env(t->rank);
    size_t W = (size_t)t->world;
    mt->counts = calloc(W, sizeof *mt->counts);
    mt->beacon_in = calloc(W, sizeof *mt->beacon_in);
    mt->reqs = calloc(2 * W + 1, sizeof *mt->reqs);
    mt->active = calloc(2 * W + 1, sizeof *mt->active);
    mt->peer = calloc(2 * W + 1, sizeof *mt->peer);
    mt->ping_rx = calloc(W, sizeof *mt->ping_rx);
    mt->pong_tx = calloc(W, sizeof *mt->pong_tx);
    mt->ping_posted = calloc(W, sizeof *mt->ping_posted);
    mt->pong_busy = calloc(W, sizeof *mt->pong_busy);
    mt->ping_in = calloc(W, sizeof *mt->ping_in);
    if (!mt->counts || !mt->beacon_in || !mt->reqs || !mt->active || !mt->peer || !mt->ping_rx || !mt->pong_tx ||
        !mt->ping_posted || !mt->pong_busy || !mt->ping_in) {
        mpi_destroy(t);
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "MPI transport");
    }
    if (t->rank == 0)
        dsrt_log(DSRT_LOG_INFO, "MPI: %s (%s ABI), %d ranks, %s", M.path,
                 M.abi == ABI_OMPI ? "Open MPI" : "MPICH", t->world,
                 t->allreduce ? "MPI's collectives for fp32 sums and bytes" : "rings only (DSRT_MPI_COLLECTIVES=ring)");
    *out = t;
    return DSRT_STATUS_OK;
}
