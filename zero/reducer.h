/* The gradient reducer: DeepSpeed's IPG ("independent partition gradient")
 * buckets (deepspeed/runtime/zero/stage_1_and_2.py: IPGBucket,
 * reduce_independent_p_g_buckets_and_remove_grads, reduce_ipg_grads,
 * average_tensor). The engine reports each parameter whose gradient is
 * complete (the grad-ready hook); the reducer copies it into the open bucket,
 * reduces a full bucket on the comm while the backward goes on, and hands the
 * reduced elements to their owner:
 *   stage 0        copied back into the model's gradient buffer (all-reduce);
 *   stage 1 and 2  this rank's slice of the flat layout added into `pgrad`,
 *                  the partition's gradient accumulator (P elements).
 * With overlap_comm there are two buckets: one fills while the other is
 * reduced; without it each bucket is waited for at once.
 *
 * Averaging (DeepSpeed's average_tensor / allreduce_bucket): with
 * reduce_scatter (stages 1, 2) the bucket is divided by N before the sum; on
 * the all-reduce path prescale_gradients does the same, else the bucket is
 * divided by gradient_predivide_factor f before and multiplied by f / N after;
 * gradient_allreduce_op "sum" makes N = 1.
 *
 * A micro-step: zero_reducer_begin, zero_reducer_ready per parameter (from
 * the hook; errors are kept and returned by zero_reducer_status), then
 * zero_reducer_drain, which reduces what no hook reported (last registered
 * first, the backward's order) and waits for every bucket. */
#ifndef DSRT_ZERO_REDUCER_H
#define DSRT_ZERO_REDUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsrt.h"
#include "kernels/backend.h"
#include "zero/comm.h"
#include "zero/partition.h"

/* The options, as plain values (the reducer never reads a config). */
typedef struct zero_reducer_opts {
    int stage;                      /* 0, 1 or 2 */
    size_t bucket_elems;            /* reduce_bucket_size */
    bool overlap_comm;
    bool reduce_scatter;
    bool prescale_gradients;
    double gradient_predivide_factor; /* <= 0: 1 */
    bool allreduce_sum;             /* gradient_allreduce_op "sum": no 1/N */
    dsrt_dtype dt, cdt;             /* the gradients' and the communication's dtype */
} zero_reducer_opts;

/* elements [off, off + n) of parameter `param`, at element `at` of a bucket */
typedef struct zero_piece {
    size_t param, off, n, at;
} zero_piece;

typedef struct zero_bucket {
    void *buf;          /* (cap) gradient dtype */
    void *cbuf;         /* (cap) communication dtype, when it differs */
    zero_piece *pieces;
    size_t npieces, fill;
    uint64_t ticket;
    bool pending;       /* a reduction in flight */
    int seq;
} zero_bucket;

typedef struct zero_reducer {
    zero_reducer_opts o;
    dsrt_backend *be;             /* not owned */
    dsrt_comm *comm;              /* not owned */
    const zero_layout *lay;       /* not owned */
    int rank;
    size_t n_params;
    size_t *offset, *numel;       /* (n_params) each parameter in grads */
    void *grads;                  /* the model's gradient buffer, registration order; not owned */
    void *pgrad;                  /* (P) stage 1/2: this rank's accumulator; not owned */
    size_t P;
    size_t esz, csz;              /* bytes per element of dt, cdt */
    float pre, post;              /* averaging factors around the sum */
    zero_bucket bk[2];
    int nbk, cur;
    size_t cap;                   /* elements per bucket */
    int seq;                      /* buckets reduced so far, for messages */
    long long step, micro;        /* labels of the micro-step, for messages */
    bool reducing;                /* this micro-step reduces */
    bool hooks_on;                /* ... from the grad-ready hook */
    unsigned char *seen;          /* (n_params) reported this micro-step */
    dsrt_status err;              /* the first failure inside a hook */
    char err_msg[1024];
} zero_reducer;

/* Parameters are given by their offset and size in `grads` (in registration
 * order) and must match `lay`. */
dsrt_status zero_reducer_init(zero_reducer *r, const zero_reducer_opts *o, dsrt_backend *be,
                              dsrt_comm *comm, const zero_layout *lay, int rank, const size_t *offset,
                              const size_t *numel, size_t n_params, void *grads, void *pgrad, size_t P);
void zero_reducer_free(zero_reducer *r);

/* A micro-step starts: `reduce` whether it reduces at all, `hooks` whether
 * from the grad-ready hook (else all at zero_reducer_drain). */
void zero_reducer_begin(zero_reducer *r, bool reduce, bool hooks, long long step, long long micro);
/* Parameter p's gradient is complete. Ignored unless hooks are on and p is
 * new this micro-step. A failure is kept for zero_reducer_status. */
void zero_reducer_ready(zero_reducer *r, size_t p);
/* The same as a grad-ready callback (model/gpt2.h's hook type). */
void zero_reducer_hook(void *reducer, size_t p);
/* The failure a hook kept (its message set again), or OK. */
dsrt_status zero_reducer_status(const zero_reducer *r);
/* Reduce every parameter not yet reported and wait for every bucket. */
dsrt_status zero_reducer_drain(zero_reducer *r);

/* Bucket memory on the backend, in bytes. */
int64_t zero_reducer_bytes(const zero_reducer *r);

#endif
