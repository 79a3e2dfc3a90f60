/* The MPI transport (transport.h): MPI_COMM_WORLD of a job started by
 * mpirun, used for point-to-point transfers that the ring collectives of
 * comm.c are built on.
 *
 * libmpi is dlopen()ed on first use, never linked: libdsrt.so loads on hosts
 * without MPI, and only processes that ask for MPI pay for it. mpi.h is read
 * for its types only; the handles Open MPI exposes as global objects
 * (MPI_COMM_WORLD, MPI_BYTE, MPI_ERRORS_RETURN) are looked up by their
 * symbol names, so this speaks Open MPI's ABI (libmpi.so.40, Debian's
 * Open MPI 4); DSRT_MPI_LIBRARY names another library file.
 *
 * Transfers are non-blocking and polled with a deadline, so a peer that hangs
 * ends in an error naming it instead of a hang. Only the comm thread calls
 * MPI after initialisation (MPI_THREAD_SERIALIZED is enough). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/internal.h"
#include "zero/transport.h"

#if defined(DSRT_HAVE_MPI_H)
#include <mpi.h>

typedef struct mpi_fns {
    void *lib;
    int (*Initialized)(int *);
    int (*Finalized)(int *);
    int (*Init_thread)(int *, char ***, int, int *);
    int (*Query_thread)(int *);
    int (*Finalize)(void);
    int (*Comm_rank)(MPI_Comm, int *);
    int (*Comm_size)(MPI_Comm, int *);
    int (*Comm_dup)(MPI_Comm, MPI_Comm *);
    int (*Comm_free)(MPI_Comm *);
    int (*Comm_set_errhandler)(MPI_Comm, MPI_Errhandler);
    int (*Isend)(const void *, int, MPI_Datatype, int, int, MPI_Comm, MPI_Request *);
    int (*Irecv)(void *, int, MPI_Datatype, int, int, MPI_Comm, MPI_Request *);
    int (*Test)(MPI_Request *, int *, MPI_Status *);
    int (*Error_string)(int, char *, int *);
    MPI_Comm world;
    MPI_Datatype byte;
    MPI_Errhandler errors_return;
    int we_initialized;
    int users;
} mpi_fns;

static mpi_fns M;

static dsrt_status mpi_load(void)
{
    if (M.lib)
        return DSRT_STATUS_OK;
    const char *path = getenv("DSRT_MPI_LIBRARY");
    if (!path || !*path)
        path = "libmpi.so.40";
    /* RTLD_GLOBAL: Open MPI's own plugins resolve libmpi's symbols globally.
     * NODELETE: MPI cannot be unloaded and initialised again in one process. */
    void *lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE);
    if (!lib)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "MPI: cannot load %s (%s); install Open MPI (Debian: openmpi-bin) "
                              "or set DSRT_MPI_LIBRARY",
                              path, dlerror());
#define SYM(field, name)                                                                           \
    do {                                                                                           \
        *(void **)&M.field = dlsym(lib, name);                                                     \
        if (!M.field)                                                                              \
            return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,                                        \
                                  "MPI: %s has no %s: dsrt speaks Open MPI's ABI", path, name);   \
    } while (0)
    SYM(Initialized, "MPI_Initialized");
    SYM(Finalized, "MPI_Finalized");
    SYM(Init_thread, "MPI_Init_thread");
    SYM(Query_thread, "MPI_Query_thread");
    SYM(Finalize, "MPI_Finalize");
    SYM(Comm_rank, "MPI_Comm_rank");
    SYM(Comm_size, "MPI_Comm_size");
    SYM(Comm_dup, "MPI_Comm_dup");
    SYM(Comm_free, "MPI_Comm_free");
    SYM(Comm_set_errhandler, "MPI_Comm_set_errhandler");
    SYM(Isend, "MPI_Isend");
    SYM(Irecv, "MPI_Irecv");
    SYM(Test, "MPI_Test");
    SYM(Error_string, "MPI_Error_string");
    SYM(world, "ompi_mpi_comm_world");
    SYM(byte, "ompi_mpi_byte");
    SYM(errors_return, "ompi_mpi_errors_return");
#undef SYM
    M.lib = lib;
    return DSRT_STATUS_OK;
}

typedef struct mpi_transport {
    dsrt_transport base;
    MPI_Comm comm;
} mpi_transport;

static const char *mpi_err(int code, char *buf)
{
    int len = 0;
    if (M.Error_string(code, buf, &len) != MPI_SUCCESS)
        snprintf(buf, 64, "MPI error %d", code);
    return buf;
}

/* Largest piece per message: MPI counts are int. */
#define PIECE ((size_t)1 << 30)

static void pause_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static dsrt_status mpi_sendrecv(dsrt_transport *t, int to, const void *sbuf, size_t sbytes,
                                int from, void *rbuf, size_t rbytes, double deadline,
                                const char *what)
{
    mpi_transport *mt = (mpi_transport *)t;
    char eb[MPI_MAX_ERROR_STRING + 64];
    double t0 = dsrt_now();
    size_t soff = 0, roff = 0;
    bool sfirst = true, rfirst = true;
    /* pieces of both directions in lockstep; 0-byte messages still travel */
    while ((to >= 0 && (soff < sbytes || sfirst)) || (from >= 0 && (roff < rbytes || rfirst))) {
        MPI_Request req[2];
        int active[2] = {0, 0};
        size_t sn = 0, rn = 0;
        if (to >= 0 && (soff < sbytes || sfirst)) {
            sn = sbytes - soff < PIECE ? sbytes - soff : PIECE;
            int rc = M.Isend((const char *)sbuf + soff, (int)sn, M.byte, to, 7, mt->comm, &req[0]);
            if (rc != MPI_SUCCESS)
                return dsrt_error_set(DSRT_STATUS_IO_ERROR, "rank %d: sending to rank %d during %s: %s",
                                      t->rank, to, what, mpi_err(rc, eb));
            active[0] = 1;
        }
        if (from >= 0 && (roff < rbytes || rfirst)) {
            rn = rbytes - roff < PIECE ? rbytes - roff : PIECE;
            int rc = M.Irecv((char *)rbuf + roff, (int)rn, M.byte, from, 7, mt->comm, &req[1]);
            if (rc != MPI_SUCCESS)
                return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                      "rank %d: receiving from rank %d during %s: %s", t->rank,
                                      from, what, mpi_err(rc, eb));
            active[1] = 1;
        }
        long spins = 0;
        while (active[0] || active[1]) {
            for (int k = 0; k < 2; k++) {
                if (!active[k])
                    continue;
                int flag = 0;
                int rc = M.Test(&req[k], &flag, MPI_STATUS_IGNORE);
                if (rc != MPI_SUCCESS)
                    return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                          "rank %d: MPI failed during %s with rank %d: %s", t->rank,
                                          what, k ? from : to, mpi_err(rc, eb));
                if (flag)
                    active[k] = 0;
            }
            if (!active[0] && !active[1])
                break;
            if (dsrt_now() > deadline)
                return dsrt_error_set(
                    DSRT_STATUS_IO_ERROR,
                    "rank %d: %s timed out after %.0f s waiting for rank %d (MPI): a peer failed, "
                    "hung, or is itself waiting on a failed rank",
                    t->rank, what, dsrt_now() - t0, active[1] ? from : to);
            /* MPI progresses only inside its calls: spin briefly, then back off
             * so a waiting comm thread leaves the cores to the backward */
            if (++spins > 200)
                pause_us(spins > 2000 ? 200 : 20);
        }
        soff += sn;
        roff += rn;
        sfirst = rfirst = false;
    }
    return DSRT_STATUS_OK;
}

static void mpi_destroy(dsrt_transport *t)
{
    mpi_transport *mt = (mpi_transport *)t;
    if (mt->comm)
        M.Comm_free(&mt->comm);
    if (--M.users == 0 && M.we_initialized && !t->failed) {
        /* MPI_Finalize waits for every rank: after a failure it would hang, and
         * mpirun ends the job anyway */
        int fin = 0;
        M.Finalized(&fin);
        if (!fin)
            M.Finalize();
    }
    free(mt);
}

int dsrt_transport_mpi_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
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
        int rc = M.Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
        if (rc != MPI_SUCCESS)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR, "MPI_Init_thread failed (code %d)", rc);
        M.we_initialized = 1;
    }
    int provided = 0;
    M.Query_thread(&provided);
    if (provided < MPI_THREAD_SERIALIZED)
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
    /* our own communicator: our tags never meet the host's messages */
    if (M.Comm_dup(M.world, &mt->comm) != MPI_SUCCESS) {
        mt->comm = NULL;
        mpi_destroy(t);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "MPI_Comm_dup failed");
    }
    M.Comm_set_errhandler(mt->comm, M.errors_return);
    M.Comm_rank(mt->comm, &t->rank);
    M.Comm_size(mt->comm, &t->world);
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    t->local_rank = lr ? atoi(lr) : t->rank;
    *out = t;
    return DSRT_STATUS_OK;
}

#else /* no mpi.h at build time */

int dsrt_transport_mpi_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

dsrt_status dsrt_transport_mpi_create(dsrt_transport **out)
{
    *out = NULL;
    return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                          "this libdsrt was built without MPI headers (Debian: libopenmpi-dev)");
}

#endif
