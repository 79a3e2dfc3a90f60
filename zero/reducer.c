/* The gradient reducer (reducer.h): DeepSpeed's IPG buckets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/internal.h"
#include "zero/reducer.h"

static void *at(void *base, size_t elems, size_t esz) { return (char *)base + elems * esz; }

dsrt_status zero_reducer_init(zero_reducer *r, const zero_reducer_opts *o, dsrt_backend *be,
                              dsrt_comm *comm, const zero_layout *lay, int rank, const size_t *offset,
                              const size_t *numel, size_t n_params, void *grads, void *pgrad, size_t P)
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
    r->offset = malloc(n_params * sizeof *r->offset);
    r->numel = malloc(n_params * sizeof *r->numel);
    r->seen = calloc(n_params, 1);
    if (!r->offset || !r->numel || !r->seen)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create: gradient reducer");
    size_t n = 0;
    for (size_t i = 0; i < n_params; i++) {
        r->offset[i] = offset[i];
        r->numel[i] = numel[i];
        n += numel[i];
    }
    r->cap = o->bucket_elems < n ? o->bucket_elems : n;
    r->nbk = o->overlap_comm ? 2 : 1;
    for (int b = 0; b < r->nbk; b++) {
        DSRT_TRY(be->ops->alloc(be, r->cap * r->esz, &r->bk[b].buf));
        if (o->cdt != o->dt)
            DSRT_TRY(be->ops->alloc(be, r->cap * r->csz, &r->bk[b].cbuf));
        /* a bucket holds at most every parameter plus the two split ones at its ends */
        r->bk[b].pieces = malloc((n_params + 2) * sizeof(zero_piece));
        if (!r->bk[b].pieces)
            return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create: buckets");
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
    free(r->offset);
    free(r->numel);
    free(r->seen);
    memset(r, 0, sizeof *r);
}

int64_t zero_reducer_bytes(const zero_reducer *r)
{
    return (int64_t)((size_t)r->nbk * r->cap * (r->esz + (r->o.cdt != r->o.dt ? r->csz : 0)));
}

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

/* The reduced bucket b: wait for it, cast back, post-scale, hand out its slices. */
static dsrt_status finish(zero_reducer *r, int b)
{
    zero_bucket *k = &r->bk[b];
    if (!k->pending)
        return DSRT_STATUS_OK;
    k->pending = false;
    dsrt_backend *be = r->be;
    DSRT_TRY(r->comm->wait(r->comm, k->ticket));
    if (k->cbuf)
        DSRT_TRY(be->ops->convert(be, k->buf, r->o.dt, k->cbuf, r->o.cdt, k->fill));
    if (r->post != 1.0f)
        DSRT_TRY(be->ops->scale(be, k->buf, r->o.dt, r->post, k->fill));
    size_t lo = (size_t)r->rank * r->P, hi = lo + r->P;
    for (size_t i = 0; i < k->npieces; i++) {
        const zero_piece *p = &k->pieces[i];
        if (r->o.stage == 0) {
            DSRT_TRY(be->ops->copy(be, at(r->grads, r->offset[p->param] + p->off, r->esz),
                              at(k->buf, p->at, r->esz), p->n * r->esz));
            continue;
        }
        /* the part of the piece inside this rank's partition of the flat layout */
        size_t f0 = r->lay->param_offset[p->param] + p->off, f1 = f0 + p->n;
        size_t a = f0 > lo ? f0 : lo, z = f1 < hi ? f1 : hi;
        if (a < z)
            DSRT_TRY(be->ops->accumulate(be, at(r->pgrad, a - lo, r->esz),
                                    at(k->buf, p->at + (a - f0), r->esz), r->o.dt, z - a));
    }
    k->npieces = 0;
    k->fill = 0;
    return DSRT_STATUS_OK;
}

/* Reduce the open bucket; the next one opens in the other buffer. */
static dsrt_status flush(zero_reducer *r)
{
    zero_bucket *k = &r->bk[r->cur];
    if (!k->fill)
        return DSRT_STATUS_OK;
    dsrt_backend *be = r->be;
    if (r->pre != 1.0f)
        DSRT_TRY(be->ops->scale(be, k->buf, r->o.dt, r->pre, k->fill));
    void *send = k->buf;
    if (k->cbuf) {
        DSRT_TRY(be->ops->convert(be, k->cbuf, r->o.cdt, k->buf, r->o.dt, k->fill));
        send = k->cbuf;
    }
    char what[128];
    k->seq = ++r->seq;
    snprintf(what, sizeof what, "all-reduce of gradient bucket %d (step %lld, micro-step %lld)", k->seq,
             r->step, r->micro);
    DSRT_TRY(r->comm->allreduce(r->comm, send, k->fill, r->o.cdt, DSRT_REDUCE_SUM, what, &k->ticket));
    k->pending = true;
    if (!r->o.overlap_comm)
        DSRT_TRY(finish(r, r->cur));
    r->cur = (r->cur + 1) % r->nbk;
    /* double buffering: the buffer we move to must be free again */
    return finish(r, r->cur);
}

static dsrt_status add_param(zero_reducer *r, size_t p)
{
    size_t off = 0, len = r->numel[p];
    while (len) {
        zero_bucket *k = &r->bk[r->cur];
        size_t room = r->cap - k->fill;
        /* DeepSpeed reduces the bucket first when the parameter would not fit;
         * one larger than a whole bucket goes through in bucket-sized pieces */
        if (room == 0 || (k->fill && len > room && off == 0)) {
            DSRT_TRY(flush(r));
            continue;
        }
        size_t take = len < room ? len : room;
        DSRT_TRY(r->be->ops->copy(r->be, at(k->buf, k->fill, r->esz), at(r->grads, r->offset[p] + off, r->esz),
                             take * r->esz));
        k->pieces[k->npieces++] = (zero_piece){p, off, take, k->fill};
        k->fill += take;
        off += take;
        len -= take;
        if (k->fill == r->cap)
            DSRT_TRY(flush(r));
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
}

void zero_reducer_ready(zero_reducer *r, size_t p)
{
    if (!r->hooks_on || r->err || p >= r->n_params || r->seen[p])
        return;
    r->seen[p] = 1;
    dsrt_status st = add_param(r, p);
    if (st)
        keep_failure(r, st);
}

void zero_reducer_hook(void *reducer, size_t p) { zero_reducer_ready(reducer, p); }

dsrt_status zero_reducer_drain(zero_reducer *r)
{
    DSRT_TRY(zero_reducer_status(r));
    if (!r->reducing)
        return DSRT_STATUS_OK;
    r->hooks_on = false;
    /* parameters no hook reported, last registered first (backward order) */
    for (size_t i = r->n_params; i-- > 0;)
        if (!r->seen[i]) {
            r->seen[i] = 1;
            DSRT_TRY(add_param(r, i));
        }
    DSRT_TRY(flush(r));
    for (int b = 0; b < r->nbk; b++)
        DSRT_TRY(finish(r, b));
    r->reducing = false;
    return DSRT_STATUS_OK;
}
