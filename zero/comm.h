/* Collectives for data parallelism behind one small interface (spec 7.2).
 * Two implementations: host memory over a transport (local, MPI, TCP: comm.c,
 * a comm thread runs the queued collectives so a reduction overlaps the
 * backward) and NCCL on device memory (comm_nccl.cu: a comm stream ordered
 * with events). Buffers are the compute backend's memory.
 *
 * allreduce/reduce_scatter/allgather are queued and return a ticket; wait(t) returns once
 * every collective up to t is done (CUDA: once the compute stream is ordered
 * after them, with no host sync). Results are the same bits on every rank.
 * Sums of 16-bit values round after every addition, as NCCL's ring does.
 * Any failure (a peer gone, the timeout) names the rank that saw it, the
 * peer and the collective's `what`; after a failure the comm is unusable. */
#ifndef DSRT_ZERO_COMM_H
#define DSRT_ZERO_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/common/dtype.h"
#include "dsrt.h"
#include "zero/transport.h"

typedef enum dsrt_reduce_op { DSRT_REDUCE_SUM = 0, DSRT_REDUCE_MAX = 1 } dsrt_reduce_op;

typedef struct dsrt_comm dsrt_comm;

/* one row of the comms logger: an op at one message size */
enum { DSRT_COMM_LOG_ROWS = 64 };
typedef struct dsrt_comm_log_row {
    int op;             /* 0 all_reduce, 1 reduce_scatter, 2 all_gather */
    uint64_t bytes;     /* the message: the whole buffer (DeepSpeed's msg_size) */
    uint64_t count;
    double total_s;
} dsrt_comm_log_row;
struct dsrt_comm {
    const char *name; /* "local", "mpi", "tcp", "nccl" */
    int rank, world, local_rank;
    double timeout_s;
    void *impl;
    void (*destroy)(dsrt_comm *c);
    /* scratch for the largest collective to come (no allocation in the step) */
    dsrt_status (*reserve)(dsrt_comm *c, size_t max_bytes);
    /* in place: buf (n elements of dt) = reduction over ranks of buf */
    dsrt_status (*allreduce)(dsrt_comm *c, void *buf, size_t n, dsrt_dtype dt, dsrt_reduce_op op,
                             const char *what, uint64_t *ticket);
    /* in place: rank r's n_per_rank elements at buf + r * n_per_rank go to every rank */
    dsrt_status (*allgather)(dsrt_comm *c, void *buf, size_t n_per_rank, dsrt_dtype dt,
                             const char *what, uint64_t *ticket);
    /* the same with rank r's block at buf + r * stride elements (stride >=
     * n_per_rank): one bucket of the ZeRO all-gather, a range of offsets of
     * every rank's partition */
    dsrt_status (*allgather_strided)(dsrt_comm *c, void *buf, size_t n_per_rank, size_t stride, dsrt_dtype dt,
                                     const char *what, uint64_t *ticket);
    /* in place: buf holds sum(counts) elements, rank k's block of counts[k]
     * elements right after the blocks of ranks 0..k-1; afterwards this rank's
     * block holds the sum over ranks (the other blocks are undefined). counts
     * (world entries, equal on every rank) is copied. */
    dsrt_status (*reduce_scatter)(dsrt_comm *c, void *buf, const size_t *counts, dsrt_dtype dt,
                                  const char *what, uint64_t *ticket);
    dsrt_status (*wait)(dsrt_comm *c, uint64_t ticket);
    /* blocking, host doubles: v[i] = sum over ranks, added in rank order */
    dsrt_status (*allreduce_host_f64)(dsrt_comm *c, double *v, int n, const char *what);
    /* bytes this rank has put on and taken off the wire so far (host comms:
     * counted by the transport calls; NCCL: 0, not measured) */
    uint64_t bytes_sent, bytes_recv;
    /* comms_logger (host comms; NCCL records nothing): when `log_on`, each
     * collective's time from start to completion on the comm thread, by op and
     * message size. Read only once the comm is idle (after the last wait). */
    bool log_on;
    dsrt_comm_log_row log[DSRT_COMM_LOG_ROWS];
    int n_log;
};

/* DeepSpeed's comms logger summary of what `c` recorded, as text (malloc'd) */
char *dsrt_comm_log_summary(const dsrt_comm *c);

/* One rank: every collective is the identity. */
dsrt_status dsrt_comm_local_create(dsrt_comm **out);
/* Host-memory collectives over a transport (owned by the comm from here on,
 * destroyed with it, also on failure). */
dsrt_status dsrt_comm_host_create(dsrt_transport *t, double timeout_s, dsrt_comm **out);

/* NCCL on device memory; the id is shared through share_id (rank 0 writes,
 * the others read). DSRT_STATUS_UNSUPPORTED without CUDA/NCCL. */
typedef dsrt_status (*dsrt_comm_share_fn)(void *user, void *bytes, size_t n);
dsrt_status dsrt_comm_nccl_create(int rank, int world, int device, double timeout_s,
                                  void *cuda_stream, dsrt_comm_share_fn share_id, void *user,
                                  dsrt_comm **out);

#endif
