/* The gradient reducer (reducer.h): DeepSpeed's IPG buckets. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/internal.h"
#include "zero/reducer.h"

enum { IN_BUCKET0 = 0, IN_BUCKET1 = 1, IN_OWN = 2, IN_LARGE0 = 3 };
enum { NO_SLOT = 0, SLOT_OUT = 1, SLOT_READY = 2, SLOT_PIECES = 3 /* some pieces written */ };

static void *at(void *base, size_t elems, size_t esz) { return (char *)base + elems * esz; }

static dsrt_status alloc_bucket(zero_reducer *r, int b)
{
    dsrt_backend *be = r->be;
    DSRT_TRY(be->ops->alloc(be, r->cap * r->esz, &r->bk[b].buf));
    if (r->o.cdt != r->o.dt)
        DSRT_TRY(be->ops->alloc(be, r->cap * r->csz, &r->bk[b].cbuf));
    /* a bucket holds at most every parameter plus the two split ones at its ends */
    r->bk[b].pieces = malloc((r->n_params + 2) * sizeof(zero_piece));
    if (!r->bk[b].pieces)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "gradient buckets");
    if (b >= r->nbk)
        r->nbk = b + 1;
    return DSRT_STATUS_OK;
}

dsrt_status zero_reducer_init(zero_reducer *r, const zero_reducer_opts *o, dsrt_backend *be,
                              dsrt_comm *comm, const zero_layout *lay, int rank, const size_t *offset,
                              const size_t *numel, size_t n_params, void *grads, void *pgrad, size_t P,
                              const unsigned char *accumulates)
{
    memset(r, 0, sizeof *r);
    r->o = *o;
    r->be = be;
    r->comm = comm;
    r->lay = lay;
    r->rank = rank;
    r->n_params = n_params;
    r->grads = grads;
    r->pgrad = pgrad;
    r->P = P;
    r->esz = dsrt_dtype_size(o->dt);
    r->csz = dsrt_dtype_size(o->cdt);
    r->large_user[0] = r->large_user[1] = -1;
    if (o->slots == (grads != NULL))
        return dsrt_error_set(DSRT_STATUS_INTERNAL, "gradient reducer: %s",
                              o->slots ? "slots mode takes no gradient buffer" : "copy mode needs the gradient buffer");
    r->offset = malloc(n_params * sizeof *r->offset);
    r->numel = malloc(n_params * sizeof *r->numel);
    r->seen = calloc(n_params, 1);
    r->counts = calloc((size_t)comm->world, sizeof *r->counts);
    if (!r->offset || !r->numel || !r->seen || !r->counts)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create: gradient reducer");
    size_t n = 0;
    for (size_t i = 0; i < n_params; i++) {
        r->offset[i] = offset[i];
        r->numel[i] = numel[i];
        n += numel[i];
    }
    r->cap = o->bucket_elems < n ? o->bucket_elems : n;
    if (r->cap == 0)
        r->cap = 1;
    /* with overlap_comm two buckets alternate; slots mode without it makes
     * the second only when a slot has to wait for the first (alloc_bucket) */
    DSRT_TRY(alloc_bucket(r, 0));
    if (o->overlap_comm)
        DSRT_TRY(alloc_bucket(r, 1));
    if (o->slots) {
        r->state = calloc(n_params, 1);
        r->where = calloc(n_params, 1);
        r->slot = calloc(n_params, sizeof *r->slot);
        r->own = calloc(n_params, sizeof *r->own);
        r->next_end = calloc(n_params, sizeof *r->next_end);
        r->pieces_ok = calloc(n_params, 1);
        if (!r->state || !r->where || !r->slot || !r->own || !r->next_end || !r->pieces_ok)
            return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create: gradient slots");
        for (size_t i = 0; i < n_params; i++) {
            if (accumulates && accumulates[i] == ZERO_GRAD_PIECES)
                r->pieces_ok[i] = 1; /* through the buckets a piece at a time: no staging */
            else if (accumulates && accumulates[i])
                DSRT_TRY(be->ops->alloc(be, numel[i] * r->esz, &r->own[i]));
            else if (numel[i] > r->cap && numel[i] > r->large_cap)
                r->large_cap = numel[i];
        }
        if (r->large_cap)
            DSRT_TRY(be->ops->alloc(be, 2 * r->large_cap * r->esz, &r->large));
    }
    double N = o->allreduce_sum ? 1.0 : (double)comm->world;
    double f = o->gradient_predivide_factor > 0 ? o->gradient_predivide_factor : 1.0;
    if ((o->stage && o->reduce_scatter) || o->prescale_gradients) {
        r->pre = (float)(1.0 / N);
        r->post = 1.0f;
    } else {
        r->pre = (float)(1.0 / f);
        r->post = (float)(f / N);
    }
    return DSRT_STATUS_OK;
}

void zero_reducer_free(zero_reducer *r)
{
    for (int b = 0; b < 2; b++) {
        if (r->bk[b].pending && r->comm)
            (void)r->comm->wait(r->comm, r->bk[b].ticket);
        if (r->be) {
            r->be->ops->free(r->be, r->bk[b].buf);
            r->be->ops->free(r->be, r->bk[b].cbuf);
        }
        free(r->bk[b].pieces);
    }
    if (r->be) {
        for (size_t i = 0; r->own && i < r->n_params; i++)
            r->be->ops->free(r->be, r->own[i]);
        r->be->ops->free(r->be, r->large);
        r->be->ops->free(r->be, r->spare);
    }
    free(r->offset);
    free(r->numel);
    free(r->seen);
    free(r->state);
    free(r->where);
    free(r->slot);
    free(r->own);
    free(r->next_end);
    free(r->pieces_ok);
    free(r->counts);
    memset(r, 0, sizeof *r);
}

int64_t zero_reducer_bytes(const zero_reducer *r)
{
    return (int64_t)((size_t)r->nbk * r->cap * (r->esz + (r->o.cdt != r->o.dt ? r->csz : 0)) +
                     (r->spare ? r->cap * r->esz : 0));
}

int64_t zero_reducer_own_bytes(const zero_reducer *r)
{
    size_t b = 0;
    for (size_t i = 0; r->own && i < r->n_params; i++)
        if (r->own[i])
            b += r->numel[i] * r->esz;
    return (int64_t)b;
}

int64_t zero_reducer_staging_bytes(const zero_reducer *r) { return (int64_t)(2 * r->large_cap * r->esz); }

static void keep_failure(zero_reducer *r, dsrt_status st)
{
    if (!r->err) {
        r->err = st;
        snprintf(r->err_msg, sizeof r->err_msg, "%s", dsrt_error_message());
    }
}

dsrt_status zero_reducer_status(const zero_reducer *r)
{
    return r->err ? dsrt_error_set(r->err, "%s", r->err_msg) : DSRT_STATUS_OK;
}

/* The filled part of a bucket: it fills from the top down. */
static size_t region(const zero_reducer *r, const zero_bucket *k) { return r->cap - k->fill; }

/* The reduced bucket b: wait for it, cast back, post-scale, hand out its slices. */
static dsrt_status finish(zero_reducer *r, int b)
{
    zero_bucket *k = &r->bk[b];
    if (!k->pending)
        return DSRT_STATUS_OK;
    k->pending = false;
    dsrt_backend *be = r->be;
    size_t r0 = region(r, k);
    DSRT_TRY(r->comm->wait(r->comm, k->ticket));
    if (k->cbuf)
        DSRT_TRY(be->ops->convert(be, at(k->buf, r0, r->esz), r->o.dt, at(k->cbuf, r0, r->csz), r->o.cdt,
                                  k->fill));
    if (r->post != 1.0f)
        DSRT_TRY(be->ops->scale(be, at(k->buf, r0, r->esz), r->o.dt, r->post, k->fill));
    size_t lo = (size_t)r->rank * r->P, hi = lo + r->P;
    for (size_t i = 0; i < k->npieces; i++) {
        const zero_piece *p = &k->pieces[i];
        if (r->o.stage == 0) {
            DSRT_TRY(be->ops->copy(be, at(r->grads, r->offset[p->param] + p->off, r->esz),
                                   at(k->buf, p->at, r->esz), p->n * r->esz));
            continue;
        }
        /* the part of the piece inside this rank's partition of the flat layout
         * (after a reduce-scatter only that part is valid) */
        size_t f0 = r->lay->param_offset[p->param] + p->off, f1 = f0 + p->n;
        size_t a = f0 > lo ? f0 : lo, z = f1 < hi ? f1 : hi;
        if (a < z && r->o.partition_in_grads) /* each element once per window, after its copy into a bucket */
            DSRT_TRY(be->ops->copy(be, at(r->pgrad, a - lo, r->esz), at(k->buf, p->at + (a - f0), r->esz),
                                   (z - a) * r->esz));
        else if (a < z)
            DSRT_TRY(be->ops->accumulate(be, at(r->pgrad, a - lo, r->esz), at(k->buf, p->at + (a - f0), r->esz),
                                         r->o.dt, z - a));
    }
    k->npieces = 0;
    k->fill = 0;
    k->closed = false;
    return DSRT_STATUS_OK;
}

/* The owners' blocks of bucket k for a reduce-scatter, or false when its
 * pieces are not in flat order from the bottom of the filled region up
 * (then the bucket is all-reduced). */
static bool owner_blocks(zero_reducer *r, const zero_bucket *k)
{
    int N = r->comm->world;
    memset(r->counts, 0, (size_t)N * sizeof *r->counts);
    size_t prev_end = 0;
    /* pieces were placed top down: the last placed is lowest in the bucket */
    for (size_t i = k->npieces; i-- > 0;) {
        const zero_piece *p = &k->pieces[i];
        size_t f0 = r->lay->param_offset[p->param] + p->off, f1 = f0 + p->n;
        if (f0 < prev_end)
            return false;
        prev_end = f1;
        for (size_t f = f0; f < f1;) {
            size_t owner = f / r->P, end = (owner + 1) * r->P;
            if (owner >= (size_t)N)
                return false;
            size_t take = (f1 < end ? f1 : end) - f;
            r->counts[owner] += take;
            f += take;
        }
    }
    return true;
}

static int by_flat_desc(const void *a, const void *b, void *lay)
{
    const zero_layout *l = lay;
    const zero_piece *x = a, *y = b;
    size_t fx = l->param_offset[x->param] + x->off, fy = l->param_offset[y->param] + y->off;
    return fx < fy ? 1 : fx > fy ? -1 : 0;
}

/* Bucket k's pieces moved into flat order (the highest at the top, as the
 * backward of a model whose hooks run in reverse registration order places
 * them), through the spare buffer, which takes the old one's place: a model
 * that finishes some gradients out of order (LLaMA's input_layernorm, whose
 * weight's gradient is the last of its layer) is still reduce-scattered. */
static dsrt_status sort_bucket(zero_reducer *r, zero_bucket *k)
{
    dsrt_backend *be = r->be;
    if (!r->spare)
        DSRT_TRY(be->ops->alloc(be, r->cap * r->esz, &r->spare));
    qsort_r(k->pieces, k->npieces, sizeof *k->pieces, by_flat_desc, (void *)r->lay);
    size_t pos = r->cap;
    for (size_t i = 0; i < k->npieces; i++) {
        zero_piece *p = &k->pieces[i];
        pos -= p->n;
        DSRT_TRY(be->ops->copy(be, at(r->spare, pos, r->esz), at(k->buf, p->at, r->esz), p->n * r->esz));
        p->at = pos;
    }
    void *t = k->buf;
    k->buf = r->spare;
    r->spare = t;
    r->n_sorted++;
    return DSRT_STATUS_OK;
}

/* Reduce bucket b (filled, no slot outstanding). */
static dsrt_status flush(zero_reducer *r, int b)
{
    zero_bucket *k = &r->bk[b];
    if (!k->fill || k->pending)
        return DSRT_STATUS_OK;
    dsrt_backend *be = r->be;
    /* owner_blocks also fills r->counts for the reduce-scatter */
    bool scatter = r->o.stage > 0 && r->o.reduce_scatter && owner_blocks(r, k);
    if (!scatter && r->o.stage > 0 && r->o.reduce_scatter) {
        DSRT_TRY(sort_bucket(r, k));
        scatter = owner_blocks(r, k);
    }
    size_t r0 = region(r, k);
    if (r->pre != 1.0f)
        DSRT_TRY(be->ops->scale(be, at(k->buf, r0, r->esz), r->o.dt, r->pre, k->fill));
    void *send = at(k->buf, r0, r->esz);
    if (k->cbuf) {
        DSRT_TRY(be->ops->convert(be, at(k->cbuf, r0, r->csz), r->o.cdt, send, r->o.dt, k->fill));
        send = at(k->cbuf, r0, r->csz);
    }
    char what[128];
    k->seq = ++r->seq;
    snprintf(what, sizeof what, "%s of gradient bucket %d (step %lld, micro-step %lld)",
             scatter ? "reduce-scatter" : "all-reduce", k->seq, r->step, r->micro);
    if (scatter) {
        DSRT_TRY(r->comm->reduce_scatter(r->comm, send, r->counts, r->o.cdt, what, &k->ticket));
        r->n_reduce_scatter++;
    } else {
        DSRT_TRY(r->comm->allreduce(r->comm, send, k->fill, r->o.cdt, DSRT_REDUCE_SUM, what, &k->ticket));
        r->n_allreduce++;
    }
    k->pending = true;
    k->closed = true;
    if (!r->o.overlap_comm)
        DSRT_TRY(finish(r, b));
    return DSRT_STATUS_OK;
}

/* The open bucket has no room for what comes next: reduce it (at once, or
 * once its last slot is ready) and open the other one, which must be free. */
static dsrt_status advance(zero_reducer *r)
{
    zero_bucket *k = &r->bk[r->cur];
    if (k->fill) {
        k->closed = true;
        if (!k->outstanding)
            DSRT_TRY(flush(r, r->cur));
    }
    int next = r->cur;
    if (r->o.overlap_comm || k->outstanding)
        next = (r->cur + 1) % 2;
    if (next >= r->nbk)
        DSRT_TRY(alloc_bucket(r, next));
    zero_bucket *n = &r->bk[next];
    if (n->outstanding)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gradient buckets: both buckets hold gradients that are not ready yet (step "
                              "%lld, micro-step %lld): mark each gradient ready (engine_grad_ready) before "
                              "asking for more than a bucket's worth (%zu elements) of slots",
                              r->step, r->micro, r->cap);
    DSRT_TRY(flush(r, next)); /* closed earlier, its last slot since ready */
    DSRT_TRY(finish(r, next));
    r->cur = next;
    return DSRT_STATUS_OK;
}

/* Copy parameter p's gradient (at src) into buckets, top down. */
static dsrt_status add_param(zero_reducer *r, size_t p, const void *src)
{
    size_t off = 0, len = r->numel[p];
    while (len) {
        zero_bucket *k = &r->bk[r->cur];
        size_t room = k->closed ? 0 : r->cap - k->fill;
        /* DeepSpeed reduces the bucket first when the parameter would not fit;
         * one larger than a whole bucket goes through in bucket-sized pieces */
        if (room == 0 || (k->fill && len > room && off == 0)) {
            DSRT_TRY(advance(r));
            continue;
        }
        size_t take = len < room ? len : room;
        size_t pos = r->cap - k->fill - take;
        DSRT_TRY(r->be->ops->copy(r->be, at(k->buf, pos, r->esz), at((void *)src, off, r->esz), take * r->esz));
        k->pieces[k->npieces++] = (zero_piece){p, off, take, pos};
        k->fill += take;
        off += take;
        len -= take;
        if (k->fill == r->cap)
            DSRT_TRY(advance(r));
    }
    return DSRT_STATUS_OK;
}

void zero_reducer_begin(zero_reducer *r, bool reduce, bool hooks, long long step, long long micro)
{
    r->reducing = reduce;
    r->hooks_on = reduce && hooks;
    r->err = DSRT_STATUS_OK;
    r->step = step;
    r->micro = micro;
    if (r->seen)
        memset(r->seen, 0, r->n_params);
    if (r->state)
        memset(r->state, 0, r->n_params);
    /* what an aborted micro-step left in buckets not in flight is dropped */
    for (int b = 0; b < r->nbk; b++)
        if (!r->bk[b].pending) {
            r->bk[b].fill = r->bk[b].npieces = r->bk[b].outstanding = 0;
            r->bk[b].closed = false;
        }
    r->large_user[0] = r->large_user[1] = -1;
}

dsrt_status zero_reducer_slot(zero_reducer *r, size_t p, void **out)
{
    *out = NULL;
    if (!r->o.slots || !r->hooks_on)
        return dsrt_error_set(DSRT_STATUS_INTERNAL, "gradient slots asked for outside a reducing micro-step");
    if (p >= r->n_params)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "gradient slot: parameter %zu of %zu", p, r->n_params);
    if (r->state[p] == SLOT_OUT) {
        *out = r->slot[p];
        return DSRT_STATUS_OK;
    }
    if (r->state[p] == SLOT_READY)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gradient slot: parameter %zu was already marked ready in this micro-step", p);
    if (r->state[p] == SLOT_PIECES)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gradient slot: parameter %zu is half delivered in pieces (%zu elements left)", p,
                              r->next_end[p]);
    size_t n = r->numel[p];
    dsrt_backend *be = r->be;
    void *s;
    if (r->own[p]) {
        r->where[p] = IN_OWN;
        s = r->own[p];
    } else if (n > r->cap) {
        int h = r->large_user[0] < 0 ? 0 : r->large_user[1] < 0 ? 1 : -1;
        if (h < 0)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "gradient slot: parameters %ld and %ld, both larger than a bucket (%zu "
                                  "elements), are not ready yet; a third (%zu) cannot be staged",
                                  r->large_user[0], r->large_user[1], r->cap, p);
        r->large_user[h] = (long)p;
        r->where[p] = (signed char)(IN_LARGE0 + h);
        s = at(r->large, (size_t)h * r->large_cap, r->esz);
    } else {
        zero_bucket *k = &r->bk[r->cur];
        if (k->closed || r->cap - k->fill < n) {
            DSRT_TRY(advance(r));
            k = &r->bk[r->cur];
        }
        size_t pos = r->cap - k->fill - n;
        k->pieces[k->npieces++] = (zero_piece){p, 0, n, pos};
        k->fill += n;
        k->outstanding++;
        r->where[p] = (signed char)r->cur;
        s = at(k->buf, pos, r->esz);
    }
    DSRT_TRY(be->ops->memset0(be, s, n * r->esz));
    r->state[p] = SLOT_OUT;
    r->slot[p] = s;
    *out = s;
    return DSRT_STATUS_OK;
}

dsrt_status zero_reducer_slot_fn(void *reducer, size_t p, void **out)
{
    zero_reducer *r = reducer;
    dsrt_status st = zero_reducer_slot(r, p, out);
    if (st)
        keep_failure(r, st);
    return st;
}

/* A slot (or piece) in bucket w is written: reduce the bucket once it is
 * full, or closed, and nothing in it is still being written. */
static dsrt_status bucket_slot_done(zero_reducer *r, int w)
{
    zero_bucket *k = &r->bk[w];
    k->outstanding--;
    if (k->fill == r->cap && w == r->cur && !k->outstanding)
        return advance(r);
    if (k->closed && !k->outstanding && w != r->cur)
        return flush(r, w);
    return DSRT_STATUS_OK;
}

dsrt_status zero_reducer_slot_piece(zero_reducer *r, size_t p, size_t end, size_t unit, size_t *off,
                                    void **out)
{
    *out = NULL;
    *off = end;
    if (!r->o.slots || !r->hooks_on)
        return dsrt_error_set(DSRT_STATUS_INTERNAL, "gradient pieces asked for outside a reducing micro-step");
    if (p >= r->n_params || !r->pieces_ok[p])
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gradient piece: parameter %zu was not registered to come in pieces", p);
    size_t n_all = r->numel[p];
    if (unit == 0 || unit > r->cap || end == 0 || end > n_all)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gradient piece of parameter %zu: end %zu of %zu, unit %zu, buckets of %zu "
                              "elements",
                              p, end, n_all, unit, r->cap);
    if (r->state[p] == SLOT_OUT || r->state[p] == SLOT_READY)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gradient piece of parameter %zu asked while %s", p,
                              r->state[p] == SLOT_OUT ? "its previous piece is not done"
                                                      : "it is already complete in this micro-step");
    size_t want_end = r->state[p] == SLOT_PIECES ? r->next_end[p] : n_all;
    if (end != want_end)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gradient piece of parameter %zu: pieces go from its end down; asked to end "
                              "at %zu, the next ends at %zu",
                              p, end, want_end);
    zero_bucket *k = &r->bk[r->cur];
    size_t room = k->closed ? 0 : r->cap - k->fill;
    if (room < end && room < unit) {
        DSRT_TRY(advance(r));
        k = &r->bk[r->cur];
        room = r->cap - k->fill;
    }
    size_t n = end <= room ? end : room / unit * unit;
    size_t pos = r->cap - k->fill - n;
    k->pieces[k->npieces++] = (zero_piece){p, end - n, n, pos};
    k->fill += n;
    k->outstanding++;
    r->where[p] = (signed char)r->cur;
    void *s = at(k->buf, pos, r->esz);
    DSRT_TRY(r->be->ops->memset0(r->be, s, n * r->esz));
    r->state[p] = SLOT_OUT;
    r->slot[p] = s;
    r->next_end[p] = end - n;
    *off = end - n;
    *out = s;
    return DSRT_STATUS_OK;
}

dsrt_status zero_reducer_piece_done(zero_reducer *r, size_t p, size_t off)
{
    if (p >= r->n_params || !r->pieces_ok || !r->pieces_ok[p] || r->state[p] != SLOT_OUT ||
        off != r->next_end[p])
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "gradient piece of parameter %zu starting at %zu: no such piece is out", p, off);
    if (off == 0) { /* the last piece: the parameter is complete */
        r->state[p] = SLOT_READY;
        r->seen[p] = 1;
    } else
        r->state[p] = SLOT_PIECES;
    return bucket_slot_done(r, r->where[p]);
}

dsrt_status zero_reducer_piece_fn(void *reducer, size_t p, size_t end, size_t unit, size_t *off, void **out)
{
    zero_reducer *r = reducer;
    dsrt_status st = zero_reducer_slot_piece(r, p, end, unit, off, out);
    if (st)
        keep_failure(r, st);
    return st;
}

dsrt_status zero_reducer_piece_done_fn(void *reducer, size_t p, size_t off)
{
    zero_reducer *r = reducer;
    dsrt_status st = zero_reducer_piece_done(r, p, off);
    if (st)
        keep_failure(r, st);
    return st;
}

/* Slots mode: parameter p's slot is written. */
static dsrt_status slot_ready(zero_reducer *r, size_t p)
{
    r->state[p] = SLOT_READY;
    int w = r->where[p];
    if (w == IN_OWN || w >= IN_LARGE0) {
        DSRT_TRY(add_param(r, p, r->slot[p]));
        if (w >= IN_LARGE0)
            r->large_user[w - IN_LARGE0] = -1;
        return DSRT_STATUS_OK;
    }
    return bucket_slot_done(r, w);
}

/* What is left of a parameter that comes in pieces, delivered as zeros
 * (nothing wrote it this micro-step). */
static dsrt_status pieces_rest_zero(zero_reducer *r, size_t p)
{
    if (r->state[p] == SLOT_OUT)
        DSRT_TRY(zero_reducer_piece_done(r, p, r->next_end[p]));
    size_t end = r->state[p] == SLOT_PIECES ? r->next_end[p] : r->numel[p];
    while (r->state[p] != SLOT_READY && end) {
        size_t off;
        void *s;
        DSRT_TRY(zero_reducer_slot_piece(r, p, end, 1, &off, &s));
        DSRT_TRY(zero_reducer_piece_done(r, p, off));
        end = off;
    }
    return DSRT_STATUS_OK;
}

static dsrt_status ready(zero_reducer *r, size_t p)
{
    if (!r->o.slots)
        return add_param(r, p, at(r->grads, r->offset[p], r->esz));
    if (r->pieces_ok[p])
        return pieces_rest_zero(r, p);
    if (r->state[p] == NO_SLOT) {
        /* nothing was written for it this micro-step: its gradient is zero */
        void *s;
        DSRT_TRY(zero_reducer_slot(r, p, &s));
    }
    return slot_ready(r, p);
}

void zero_reducer_ready(zero_reducer *r, size_t p)
{
    if (!r->hooks_on || r->err || p >= r->n_params || r->seen[p])
        return;
    r->seen[p] = 1;
    dsrt_status st = ready(r, p);
    if (st)
        keep_failure(r, st);
}

void zero_reducer_hook(void *reducer, size_t p) { zero_reducer_ready(reducer, p); }

dsrt_status zero_reducer_drain(zero_reducer *r)
{
    DSRT_TRY(zero_reducer_status(r));
    if (!r->reducing)
        return DSRT_STATUS_OK;
    r->hooks_on = r->o.slots; /* slots mode still hands out slots for the missing ones */
    /* slots handed out and never reported, then parameters nobody reported,
     * last registered first (backward order) */
    for (size_t i = r->n_params; r->o.slots && i-- > 0;)
        if (!r->seen[i] && r->state[i] == SLOT_OUT) {
            r->seen[i] = 1;
            DSRT_TRY(r->pieces_ok[i] ? pieces_rest_zero(r, i) : slot_ready(r, i));
        }
    for (size_t i = r->n_params; i-- > 0;)
        if (!r->seen[i]) {
            r->seen[i] = 1;
            DSRT_TRY(ready(r, i));
        }
    r->hooks_on = false;
    for (int b = 0; b < r->nbk; b++)
        DSRT_TRY(flush(r, b));
    for (int b = 0; b < r->nbk; b++)
        DSRT_TRY(finish(r, b));
    r->reducing = false;
    return DSRT_STATUS_OK;
}
