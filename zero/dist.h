/* The process group behind api->dist_create (dsrt.h): the host comm of this
 * process (MPI, TCP or one rank) or, for the "kv" backend, only the host's
 * rank numbers and key-value callbacks (NCCL then bootstraps through them). */
#ifndef DSRT_ZERO_DIST_H
#define DSRT_ZERO_DIST_H

#include <stdbool.h>

#include "zero/comm.h"
#include "dsrt.h"

struct dsrt_dist {
    dsrt_comm *comm; /* NULL for "kv" */
    int rank, world, local_rank;
    const char *backend;
    dsrt_kv_put_fn kv_put;
    dsrt_kv_get_fn kv_get;
    void *kv_user;
};

dsrt_status dist_create(dsrt_dist_create_args *a);
void dist_destroy(dsrt_dist *d);

/* The comm of an engine in group `d` (NULL: one rank): one rank -> a local
 * comm; CPU -> the group's host comm (not owned: *owned false); CUDA -> NCCL,
 * its unique id shared through the host comm or the host's kv callbacks. */
dsrt_status dist_make_comm(const dsrt_dist *d, bool cuda, void *cuda_stream, dsrt_comm **comm, bool *owned);

#endif
