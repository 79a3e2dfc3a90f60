/* Point-to-point transports under the host-memory collectives (comm.c):
 * MPI (comm_mpi.c, under mpirun) and TCP sockets (comm_tcp.c, ranks started
 * by the deepspeed / torchrun launchers with RANK, WORLD_SIZE, MASTER_ADDR,
 * MASTER_PORT). The collectives are written once (rings over sendrecv); a
 * transport only moves bytes between two ranks and notices dead peers. */
#ifndef DSRT_ZERO_TRANSPORT_H
#define DSRT_ZERO_TRANSPORT_H

#include <stddef.h>

#include "dsrt.h"
#include "kernels/common/dtype.h"

typedef struct dsrt_transport dsrt_transport;
struct dsrt_transport {
    const char *name; /* "mpi", "tcp" */
    int rank, world, local_rank;
    int failed; /* set by the comm before destroy when a collective failed */
    void *impl;
    /* Send sbytes of sbuf to rank `to` while receiving rbytes into rbuf from
     * rank `from` (to == -1 or from == -1: that half is skipped; 0 bytes is a
     * valid message). Returns when both halves are done. Fails, with a message
     * that names `what` (the collective) and the peer, when a peer's
     * connection is gone (its process died) or when the transfer is not done
     * by `deadline` (CLOCK_MONOTONIC seconds). Called from one thread at a time. */
    dsrt_status (*sendrecv)(dsrt_transport *t, int to, const void *sbuf, size_t sbytes, int from,
                            void *rbuf, size_t rbytes, double deadline, const char *what);
    /* Optional (NULL, or DSRT_STATUS_UNSUPPORTED for a type or size it does
     * not take: comm.c then runs its ring): the transport's own collectives,
     * same semantics as comm.h's, sums only, polled against the deadline.
     * Called from the comm thread, like sendrecv. */
    dsrt_status (*allreduce)(dsrt_transport *t, void *buf, size_t n, dsrt_dtype dt, double deadline,
                             const char *what);
    dsrt_status (*reduce_scatter)(dsrt_transport *t, void *buf, const size_t *counts, dsrt_dtype dt,
                                  double deadline, const char *what);
    dsrt_status (*allgather)(dsrt_transport *t, void *buf, size_t block_bytes, double deadline,
                             const char *what);
    /* Optional: the first peer whose connection is closed (its process died,
     * or it failed and hung up), or -1; returns at once. The comm thread asks
     * while it has no collective to run, so a death is pinned on the rank that
     * died even when the ranks that saw it first have exited since. */
    int (*closed_peer)(dsrt_transport *t);
    /* With closed_peer: the error for peer p gone, during collective `what`. */
    dsrt_status (*peer_gone)(dsrt_transport *t, int p, const char *what);
    void (*destroy)(dsrt_transport *t);
};

/* MPI_COMM_WORLD of the running MPI job (libmpi is dlopen()ed; the library
 * never links it): Open MPI's ABI or the MPICH ABI (MPICH, Intel MPI, Cray
 * MPICH, MVAPICH). DSRT_STATUS_UNSUPPORTED when no MPI library can be loaded. */
dsrt_status dsrt_transport_mpi_create(dsrt_transport **out);
/* True when this process looks started by mpirun/mpiexec/srun
 * (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMI_RANK or PMIX_RANK in the environment). */
int dsrt_transport_mpi_launched(void);

/* TCP: rank, world from the caller (RANK / WORLD_SIZE), rendezvous at
 * master_addr:master_port (rank 0 listens there), then a full mesh of
 * connections so that any peer's death is seen by every rank. Connecting
 * gives up after timeout_s with a message naming the address. */
typedef struct dsrt_tcp_options {
    int rank, world, local_rank;
    const char *master_addr;
    int master_port;
    double timeout_s;
} dsrt_tcp_options;
dsrt_status dsrt_transport_tcp_create(const dsrt_tcp_options *o, dsrt_transport **out);

#endif
