/* ZeRO stage 1/2 flat-buffer layout of one parameter group (spec 7.1):
 * parameters in registration order (or round-robin by index mod N), one
 * flat buffer zero-padded at the tail to a multiple of 2*N elements, N equal
 * partitions; rank r owns flat elements [r*P, (r+1)*P). Parameters straddle
 * partitions; a rank may own only padding. Pure bookkeeping: no memory of
 * the tensors themselves. */
#ifndef DSRT_ZERO_PARTITION_H
#define DSRT_ZERO_PARTITION_H

#include <stdbool.h>
#include <stddef.h>

#include "dsrt.h"

/* A piece of one parameter inside one rank's partition. */
typedef struct zero_slice {
    size_t param;           /* index in registration order */
    size_t offset_in_param; /* first element of the piece inside the parameter */
    size_t n;               /* elements */
    size_t flat_offset;     /* where the piece starts in the flat buffer */
} zero_slice;

typedef struct zero_layout {
    int world;               /* N */
    size_t n_params;
    size_t *order;           /* (n_params) flatten order: order[k] = parameter at position k */
    size_t *param_offset;    /* (n_params) flat offset of each parameter, by parameter index */
    size_t total;            /* sum of numels */
    size_t padded;           /* total rounded up to a multiple of 2N */
    size_t partition_size;   /* padded / N */
    zero_slice *slices;      /* every rank's pieces, rank 0 first, in flat order */
    size_t *rank_slices;     /* (N + 1): rank r's pieces are slices[rank_slices[r] .. rank_slices[r+1]) */
} zero_layout;

/* numels[i] > 0 for every parameter i. */
dsrt_status zero_layout_build(const size_t *numels, size_t n_params, int world,
                              bool round_robin_gradients, zero_layout *out);
void zero_layout_free(zero_layout *l);

/* Offset of rank r's first owned element inside its first parameter (0 when
 * the partition starts on a parameter boundary or owns nothing). */
size_t zero_layout_first_offset(const zero_layout *l, int rank);
/* Padding elements inside rank r's partition. */
size_t zero_layout_padding(const zero_layout *l, int rank);

#endif
