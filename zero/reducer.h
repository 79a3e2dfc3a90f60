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
 * Reduction: stages 1 and 2 with reduce_scatter send each rank only the
 * elements of its partition (a reduce-scatter with one block per owner: the
 * bucket is laid out in flat order, filled from its top down while the
 * backward visits the parameters last to first; a bucket whose pieces came
 * in another order, as LLaMA's layers finish their input_layernorm last or a
 * host reports out of order, is first put in flat order through one spare
 * bucket-sized buffer); stage 0, reduce_scatter false, and pieces outside
 * the partitions (round-robin layouts) are all-reduced.
 *
 * Two ways to get the gradients in:
 *   copy  (stages 0 and 1, host models that keep a gradient buffer): the
 *         model writes a full-size gradient buffer (`grads`); each ready
 *         parameter is copied into the open bucket.
 *   slots (stage 2): no full-size buffer. Before it writes a gradient the
 *         model asks zero_reducer_slot where: a zeroed place in the open
 *         bucket (DeepSpeed's contiguous IPG buffer). A bucket that is full
 *         is reduced once every slot in it is ready, and reused only after
 *         that reduction completed. A parameter whose gradient accumulates
 *         over the whole backward (ZERO_GRAD_OWN) keeps its own buffer; one
 *         larger than a bucket is staged in one of two scratch halves
 *         (DeepSpeed's extra-large parameter); both are copied into buckets
 *         when ready. A model that can write a gradient in pieces
 *         (ZERO_GRAD_PIECES: GPT-2's tied wte/lm_head, made at the end of
 *         the backward a block of rows at a time) gets bucket room for one
 *         piece at a time and needs neither. Without overlap_comm the second
 *         bucket is allocated only if a slot has to wait for one.
 *
 * A micro-step: zero_reducer_begin, then per parameter zero_reducer_slot (slots
 * mode) and zero_reducer_ready (from the hook; errors are kept and returned
 * by zero_reducer_status), then zero_reducer_drain, which reduces what no
 * hook reported (last registered first, the backward's order) and waits for
 * every bucket. */
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
    bool slots;                     /* gradients written into buckets (no `grads`) */
    bool partition_in_grads;        /* stage 1: pgrad is this rank's range of `grads`: one
                                       reduction per window, written over the local values */
    dsrt_dtype dt, cdt;             /* the gradients' and the communication's dtype */
} zero_reducer_opts;

/* elements [off, off + n) of parameter `param`, at element `at` of a bucket */
typedef struct zero_piece {
    size_t param, off, n, at;
} zero_piece;

typedef struct zero_bucket {
    void *buf;          /* (cap) gradient dtype */
    void *cbuf;         /* (cap) communication dtype, when it differs */
    zero_piece *pieces; /* in the order they were placed (top down) */
    size_t npieces, fill;
    size_t outstanding; /* slots handed out and not yet ready */
    bool closed;        /* no room left: reduced once `outstanding` is 0 */
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
    void *grads;                  /* copy mode: the model's gradient buffer; not owned */
    void *pgrad;                  /* (P) stage 1/2: this rank's accumulator; not owned */
    size_t P;
    size_t esz, csz;              /* bytes per element of dt, cdt */
    float pre, post;              /* averaging factors around the sum */
    zero_bucket bk[2];
    int nbk, cur;                 /* buckets allocated; the open one */
    size_t cap;                   /* elements per bucket */
    int seq;                      /* buckets reduced so far, for messages */
    long long step, micro;        /* labels of the micro-step, for messages */
    bool reducing;                /* this micro-step reduces */
    bool hooks_on;                /* ... from the grad-ready hook */
    unsigned char *seen;          /* (n_params) reported this micro-step */
    /* slots mode */
    unsigned char *state;         /* (n_params) 0 no slot, 1 slot handed out, 2 ready */
    signed char *where;           /* (n_params) 0/1 bucket, 2 own buffer, 3/4 large half */
    void **slot;                  /* (n_params) where the gradient is written */
    void **own;                   /* (n_params) own buffers of accumulating parameters */
    unsigned char *pieces_ok;     /* (n_params) delivered in pieces (zero_reducer_slot_piece) */
    size_t *next_end;             /* (n_params) where the next piece ends */
    void *large;                  /* 2 x large_cap elements */
    size_t large_cap;
    long large_user[2];           /* parameter staged in each half, -1 free */
    size_t *counts;               /* (world) reduce-scatter blocks */
    void *spare;                  /* (cap) a bucket's pieces sorted into flat order; made when first needed */
    /* what ran, for benchmarks and tests */
    long long n_reduce_scatter, n_allreduce;
    long long n_sorted;           /* buckets whose pieces were put in flat order first */
    dsrt_status err;              /* the first failure inside a hook */
    char err_msg[1024];
} zero_reducer;

/* How a parameter's gradient arrives in slots mode (zero_reducer_init's
 * `accumulates`): in one slot (0), in its own buffer (ZERO_GRAD_OWN), or a
 * piece at a time from its end down (ZERO_GRAD_PIECES: no staging, however
 * large; GPT-2's tied wte). */
enum { ZERO_GRAD_SLOT = 0, ZERO_GRAD_OWN = 1, ZERO_GRAD_PIECES = 2 };

/* Parameters are given by their offset and size in `grads` (in registration
 * order) and must match `lay`. Copy mode needs `grads`; slots mode takes
 * NULL, and `accumulates` (n_params ZERO_GRAD_* values, or NULL: all slots)
 * says how each gradient arrives. */
dsrt_status zero_reducer_init(zero_reducer *r, const zero_reducer_opts *o, dsrt_backend *be,
                              dsrt_comm *comm, const zero_layout *lay, int rank, const size_t *offset,
                              const size_t *numel, size_t n_params, void *grads, void *pgrad, size_t P,
                              const unsigned char *accumulates);
void zero_reducer_free(zero_reducer *r);

/* A micro-step starts: `reduce` whether it reduces at all, `hooks` whether
 * from the grad-ready hook (else all at zero_reducer_drain). Slots mode
 * needs both. */
void zero_reducer_begin(zero_reducer *r, bool reduce, bool hooks, long long step, long long micro);
/* Slots mode: where parameter p's gradient of this micro-step is written
 * (zeroed, the model's dtype; the same place when asked again before it is
 * ready). Valid until zero_reducer_ready(p). */
dsrt_status zero_reducer_slot(zero_reducer *r, size_t p, void **out);
/* The same as the model's slot callback (model/gpt2.h). */
dsrt_status zero_reducer_slot_fn(void *reducer, size_t p, void **out);
/* Slots mode, a parameter registered ZERO_GRAD_PIECES: zeroed memory for its
 * elements [*off, end), as many as fit the open bucket in multiples of `unit`
 * (at least one unit: a bucket with less room is reduced first; unit <= the
 * bucket size). The first piece ends at numel, each next one where the last
 * began; each is marked written with zero_reducer_piece_done before the next
 * is asked. The piece starting at 0 completes the parameter (its hook's
 * ready is then ignored). */
dsrt_status zero_reducer_slot_piece(zero_reducer *r, size_t p, size_t end, size_t unit, size_t *off,
                                    void **out);
dsrt_status zero_reducer_piece_done(zero_reducer *r, size_t p, size_t off);
/* The same as the model's piece callbacks (model/gpt2.h); failures are kept. */
dsrt_status zero_reducer_piece_fn(void *reducer, size_t p, size_t end, size_t unit, size_t *off, void **out);
dsrt_status zero_reducer_piece_done_fn(void *reducer, size_t p, size_t off);
/* Parameter p's gradient is complete. Ignored unless hooks are on and p is
 * new this micro-step. A failure is kept for zero_reducer_status. */
void zero_reducer_ready(zero_reducer *r, size_t p);
/* The same as a grad-ready callback (model/gpt2.h's hook type). */
void zero_reducer_hook(void *reducer, size_t p);
/* The failure a hook kept (its message set again), or OK. */
dsrt_status zero_reducer_status(const zero_reducer *r);
/* Reduce every parameter not yet reported and wait for every bucket. */
dsrt_status zero_reducer_drain(zero_reducer *r);

/* Bucket memory on the backend, in bytes (allocated so far). */
int64_t zero_reducer_bytes(const zero_reducer *r);
/* Slots mode: own buffers and large-parameter staging, in bytes. */
int64_t zero_reducer_own_bytes(const zero_reducer *r);
int64_t zero_reducer_staging_bytes(const zero_reducer *r);

#endif
