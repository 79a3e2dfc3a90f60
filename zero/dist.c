/* Process groups (dist.h). */
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "internal.h"

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
        dsrt_status st = dsrt_comm_from_env(a->backend, a->timeout_s, &d->comm);
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
