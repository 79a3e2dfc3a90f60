/* Process groups (dist.h): which comm this process uses, from the launcher's
 * environment, and the comm an engine gets from its group (the NCCL bootstrap
 * included). The transports (comm_mpi.c, comm_tcp.c) and the rings (comm.c)
 * know nothing of the environment. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zero/dist.h"
#include "base/internal.h"
#include "zero/transport.h"

/* ---------------------------------------------------------------- from the environment */

static dsrt_status env_int(const char *name, int *v, bool required, int dflt)
{
    const char *s = getenv(name);
    if (!s || !*s) {
        if (required)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "distributed: %s is not set (torchrun and the deepspeed "
                                  "launcher set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)",
                                  name);
        *v = dflt;
        return DSRT_STATUS_OK;
    }
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || *end || x < 0 || x > 1000000)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "distributed: %s=\"%s\" is not a non-negative integer", name, s);
    *v = (int)x;
    return DSRT_STATUS_OK;
}

/* The host comm of this process, as torch.distributed would find it:
 * under mpirun -> MPI; else RANK/WORLD_SIZE (+ LOCAL_RANK, MASTER_ADDR,
 * MASTER_PORT) with WORLD_SIZE > 1 -> TCP; else local. `backend` forces one
 * ("auto", "local", "mpi", "tcp"). Errors name the variable or value at fault. */
static dsrt_status comm_from_env(const char *backend, double timeout_s, dsrt_comm **out)
{
    *out = NULL;
    if (!backend || !*backend)
        backend = "auto";
    if (timeout_s <= 0)
        timeout_s = 1800;
    bool is_auto = !strcmp(backend, "auto");
    if (!is_auto && strcmp(backend, "local") && strcmp(backend, "mpi") && strcmp(backend, "tcp"))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "distributed: backend \"%s\": use \"auto\", \"local\", \"mpi\" or "
                              "\"tcp\" (NCCL is chosen by the engine for CUDA devices)",
                              backend);
    if (!strcmp(backend, "local"))
        return dsrt_comm_local_create(out);
    dsrt_transport *t = NULL;
    if (!strcmp(backend, "mpi") || (is_auto && dsrt_transport_mpi_launched())) {
        DSRT_TRY(dsrt_transport_mpi_create(&t));
        if (t->world == 1) {
            t->destroy(t);
            return dsrt_comm_local_create(out);
        }
        return dsrt_comm_host_create(t, timeout_s, out);
    }
    int world = 1;
    DSRT_TRY(env_int("WORLD_SIZE", &world, !is_auto, 1));
    if (world <= 1 && is_auto)
        return dsrt_comm_local_create(out);
    if (world < 1)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "distributed: WORLD_SIZE=0");
    dsrt_tcp_options o = {0};
    o.world = world;
    DSRT_TRY(env_int("RANK", &o.rank, true, 0));
    DSRT_TRY(env_int("LOCAL_RANK", &o.local_rank, false, o.rank));
    DSRT_TRY(env_int("MASTER_PORT", &o.master_port, true, 0));
    o.master_addr = getenv("MASTER_ADDR");
    if (!o.master_addr || !*o.master_addr)
        return env_int("MASTER_ADDR", &o.rank, true, 0);
    if (o.rank >= world)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "distributed: RANK=%d is not below WORLD_SIZE=%d", o.rank, world);
    o.timeout_s = timeout_s;
    DSRT_TRY(dsrt_transport_tcp_create(&o, &t));
    return dsrt_comm_host_create(t, timeout_s, out);
}

/* ---------------------------------------------------------------- process groups */

dsrt_status dist_create(dsrt_dist_create_args *a)
{
    a->dist = NULL;
    dsrt_dist *d = calloc(1, sizeof *d);
    if (!d)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "dist_create");
    if (a->backend && !strcmp(a->backend, "kv")) {
        if (!a->kv_put || !a->kv_get || a->world_size < 1 || a->rank < 0 ||
            a->rank >= a->world_size) {
            free(d);
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "dist_create: backend \"kv\" needs kv_put, kv_get and 0 <= rank "
                                  "(%d) < world_size (%d)",
                                  (int)a->rank, (int)a->world_size);
        }
        d->rank = a->rank;
        d->world = a->world_size;
        d->local_rank = a->local_rank;
        d->backend = "kv";
        d->kv_put = a->kv_put;
        d->kv_get = a->kv_get;
        d->kv_user = a->kv_user;
    } else {
        dsrt_status st = comm_from_env(a->backend, a->timeout_s, &d->comm);
        if (st) {
            free(d);
            return st;
        }
        d->rank = d->comm->rank;
        d->world = d->comm->world;
        d->local_rank = d->comm->local_rank;
        d->backend = d->comm->name;
    }
    a->rank = d->rank;
    a->world_size = d->world;
    a->local_rank = d->local_rank;
    a->backend_used = d->backend;
    a->dist = d;
    return DSRT_STATUS_OK;
}

void dist_destroy(dsrt_dist *d)
{
    if (!d)
        return;
    if (d->comm)
        d->comm->destroy(d->comm);
    free(d);
}

/* ---------------------------------------------------------------- an engine's comm */

/* NCCL's unique id from rank 0 to all: through the host comm (an all-gather
 * of one block per rank) or the host's key-value callbacks */
static dsrt_status share_id(void *user, void *bytes, size_t n)
{
    const dsrt_dist *d = user;
    if (!d->comm) {
        int rc = d->rank == 0 ? d->kv_put(d->kv_user, "dsrt/nccl_unique_id", bytes, n)
                              : d->kv_get(d->kv_user, "dsrt/nccl_unique_id", bytes, n);
        return rc ? dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                   "rank %d: the host's kv_%s for the NCCL id returned %d", d->rank,
                                   d->rank == 0 ? "put" : "get", rc)
                  : DSRT_STATUS_OK;
    }
    size_t words = (n + 3) / 4;
    float *g = calloc(words * (size_t)d->world, sizeof(float));
    if (!g)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "NCCL id exchange");
    memcpy(g + words * (size_t)d->rank, bytes, n);
    uint64_t t;
    dsrt_status st = d->comm->reserve(d->comm, words * 4 * (size_t)d->world);
    if (!st)
        st = d->comm->allgather(d->comm, g, words, DSRT_F32, "NCCL id exchange", &t);
    if (!st)
        st = d->comm->wait(d->comm, t);
    if (!st)
        memcpy(bytes, g, n);
    free(g);
    return st;
}

dsrt_status dist_make_comm(const dsrt_dist *d, bool cuda, void *cuda_stream, dsrt_comm **comm, bool *owned)
{
    *comm = NULL;
    *owned = false;
    if (!d || d->world == 1) {
        *owned = true;
        return dsrt_comm_local_create(comm);
    }
    if (!cuda) {
        if (!d->comm)
            return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                                  "engine_create: a \"kv\" process group bootstraps NCCL only; "
                                  "CPU ranks need the \"mpi\" or \"tcp\" backend");
        *comm = d->comm;
        return DSRT_STATUS_OK;
    }
    *owned = true;
    double timeout = d->comm ? d->comm->timeout_s : 1800;
    return dsrt_comm_nccl_create(d->rank, d->world, d->local_rank, timeout, cuda_stream, share_id, (void *)d,
                                 comm);
}
