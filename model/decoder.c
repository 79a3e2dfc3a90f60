/* What the built-in decoder-only models share (see decoder.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/decoder.h"

dsrt_status decoder_table(decoder *d, size_t cap)
{
    d->params = calloc(cap, sizeof *d->params);
    d->names = calloc(cap, DECODER_NAME_LEN);
    d->cap_params = cap;
    if (!d->params || !d->names)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "%s: parameter table", d->who);
    return DSRT_STATUS_OK;
}

size_t decoder_add(decoder *d, int64_t d0, int64_t d1, const char *fmt, ...)
{
    size_t k = d->n_params++;
    dsrt_param *p = &d->params[k];
    char *name = d->names + k * DECODER_NAME_LEN;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, DECODER_NAME_LEN, fmt, ap);
    va_end(ap);
    p->name = name;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->ndim = d1 ? 2 : 1;
    p->numel = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    p->offset = d->numel;
    d->numel += p->numel;
    return k;
}

dsrt_status decoder_alloc(decoder *d, size_t param_align, unsigned flags)
{
    dsrt_backend *be = d->be;
    size_t align = param_align ? param_align : 1;
    size_t cap = (d->numel + align - 1) / align * align;
    size_t N = (size_t)d->B * d->T;
    d->losses_host = calloc(N, sizeof(float));
    if (!d->losses_host)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "%s_create", d->who);
    DSRT_TRY(be->ops->alloc(be, cap * d->dsz, &d->param_mem));
    if (!(flags & DSRT_GPT2_NO_GRAD_BUFFER))
        DSRT_TRY(be->ops->alloc(be, cap * d->dsz, &d->grad_mem));
    DSRT_TRY(be->ops->alloc(be, d->act_bytes, &d->act_mem));
    DSRT_TRY(be->ops->alloc(be, d->stat_bytes, (void **)&d->stat_mem));
    DSRT_TRY(be->ops->alloc(be, 2 * N * sizeof(int32_t), (void **)&d->idx_mem));
    d->tokens = d->idx_mem;
    d->targets = d->idx_mem + N;
    return DSRT_STATUS_OK;
}

void decoder_free(decoder *d)
{
    if (d->be) {
        d->be->ops->free(d->be, d->param_mem);
        d->be->ops->free(d->be, d->grad_mem);
        d->be->ops->free(d->be, d->act_mem);
        d->be->ops->free(d->be, d->stat_mem);
        d->be->ops->free(d->be, d->idx_mem);
    }
    free(d->params);
    free(d->names);
    free(d->losses_host);
}

dsrt_status decoder_check_inputs(const decoder *d, const int32_t *tokens, const int32_t *targets, int B, int T,
                                 int *n_valid)
{
    if (!tokens)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s_forward: tokens is NULL", d->who);
    if (B < 1 || T < 1 || B > d->B || T > d->T)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s_forward: batch %d x %d exceeds the model's %d x %d",
                              d->who, B, T, d->B, d->T);
    int V = d->V;
    *n_valid = 0;
    for (int i = 0; i < B * T; i++) {
        if (tokens[i] < 0 || tokens[i] >= V)
            return dsrt_error_set(DSRT_STATUS_OUT_OF_RANGE,
                                  "%s_forward: tokens[%d][%d] = %d is outside the vocabulary [0, %d)", d->who, i / T,
                                  i % T, (int)tokens[i], V);
        if (targets) {
            int32_t y = targets[i];
            if (y == -100)
                continue;
            if (y < 0 || y >= V)
                return dsrt_error_set(DSRT_STATUS_OUT_OF_RANGE,
                                      "%s_forward: targets[%d][%d] = %d is outside the vocabulary [0, %d) and is not "
                                      "the ignore index -100",
                                      d->who, i / T, i % T, (int)y, V);
            (*n_valid)++;
        }
    }
    return DSRT_STATUS_OK;
}

dsrt_status decoder_begin(decoder *d, dsrt_gpt2_mode mode, const int32_t *tokens, const int32_t *targets, int B,
                          int T, int *n_valid)
{
    if (mode == DSRT_GPT2_TRAIN && !targets)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s_forward: training needs targets", d->who);
    DSRT_TRY(decoder_check_inputs(d, tokens, targets, B, T, n_valid));
    dsrt_backend *be = d->be;
    size_t N = (size_t)B * T;
    d->have_train_fwd = d->have_eval_fwd = 0;
    DSRT_TRY(be->ops->upload(be, d->tokens, tokens, N * sizeof(int32_t)));
    if (targets)
        DSRT_TRY(be->ops->upload(be, d->targets, targets, N * sizeof(int32_t)));
    return DSRT_STATUS_OK;
}

dsrt_status decoder_params_ready(decoder *d, size_t first, size_t last)
{
    return d->wait_fn ? d->wait_fn(d->wait_user, first, last) : DSRT_STATUS_OK;
}

dsrt_status decoder_finish(decoder *d, const int32_t *targets, int B, int T, dsrt_gpt2_mode mode, float loss_scale,
                           int n_valid, float *loss)
{
    dsrt_backend *be = d->be;
    int N = B * T;
    d->cur_B = B;
    d->cur_T = T;
    if (!targets) {
        d->have_eval_fwd = 1;
        if (loss)
            *loss = NAN;
        return DSRT_STATUS_OK;
    }
    int grad = mode == DSRT_GPT2_TRAIN;
    float dloss = n_valid ? loss_scale / (float)n_valid : 0.0f;
    DSRT_TRY(be->ops->classifier_forward(be, d->losses, d->logits, d->targets, N, d->V, dloss, grad));
    DSRT_TRY(be->ops->download(be, d->losses_host, d->losses, (size_t)N * sizeof(float)));
    double sum = 0.0;
    for (int i = 0; i < N; i++)
        sum += d->losses_host[i];
    if (loss)
        *loss = n_valid ? (float)(sum / n_valid) : NAN;
    d->have_train_fwd = grad;
    d->have_eval_fwd = !grad;
    return DSRT_STATUS_OK;
}

dsrt_status decoder_get_logits_f32(decoder *d, float *dst)
{
    if (!d->have_eval_fwd)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "%s_get_logits: no evaluation forward to read (a training forward replaces the logits "
                              "by their gradient)",
                              d->who);
    return d->be->ops->download_f32(d->be, dst, d->logits, (size_t)d->cur_B * d->cur_T * d->V);
}

static dsrt_status no_grad_buffer(const decoder *d, const char *what)
{
    return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                          "%s_%s: this model was created without a gradient buffer (its gradients go to the slots "
                          "the reducer hands out)",
                          d->who, what);
}

dsrt_status decoder_backward_begin(decoder *d)
{
    if (!d->have_train_fwd)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "%s_backward: needs a training forward first (each forward allows one backward)", d->who);
    if (!d->grad_mem && !d->slot_fn)
        return no_grad_buffer(d, "backward");
    d->have_train_fwd = 0;
    return DSRT_STATUS_OK;
}

dsrt_status decoder_grad_at(decoder *d, long i, void **out)
{
    if (i < 0) {
        *out = NULL;
        return DSRT_STATUS_OK;
    }
    if (d->grad_mem) {
        *out = decoder_at(d, d->grad_mem, d->params[i].offset);
        return DSRT_STATUS_OK;
    }
    return d->slot_fn(d->slot_user, (size_t)i, out);
}

dsrt_status decoder_embedding_grad(decoder *d, size_t p, int C, decoder_rows_fn rows, void *ctx)
{
    int V = d->V;
    if (d->grad_mem || !d->piece_fn) {
        void *g;
        DSRT_TRY(decoder_grad_at(d, (long)p, &g));
        return rows(ctx, g, 0, V);
    }
    size_t end = (size_t)V * C;
    while (end) {
        size_t off = 0;
        void *g = NULL;
        DSRT_TRY(d->piece_fn(d->piece_user, p, end, (size_t)C, &off, &g));
        if (off >= end || off % (size_t)C)
            return dsrt_error_set(DSRT_STATUS_INTERNAL,
                                  "%s_backward: gradient piece [%zu, %zu) of %s is not whole rows", d->who, off, end,
                                  d->params[p].name);
        DSRT_TRY(rows(ctx, g, (int)(off / (size_t)C), (int)(end / (size_t)C)));
        DSRT_TRY(d->piece_done(d->piece_user, p, off));
        end = off;
    }
    return DSRT_STATUS_OK;
}

dsrt_status decoder_zero_grad(decoder *d)
{
    if (!d->grad_mem)
        return no_grad_buffer(d, "zero_grad");
    return d->be->ops->memset0(d->be, d->grad_mem, d->numel * d->dsz);
}

dsrt_status decoder_get_grads_f32(decoder *d, float *dst)
{
    if (!d->grad_mem)
        return no_grad_buffer(d, "get_grads");
    return d->be->ops->download_f32(d->be, dst, d->grad_mem, d->numel);
}
