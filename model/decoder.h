/* What the built-in decoder-only models (model/gpt2.c, model/llama.c)
 * share: the parameter table, the buffers made once at creation (flat
 * parameters and gradients, activations, fp32 statistics, int32 tokens and
 * targets), the input checks, the loss of the fused classifier, and the
 * hooks ZeRO drives the forward and backward with (parameter waits,
 * gradient slots, the embedding's gradient in pieces). Private to model/. */
#ifndef DSRT_MODEL_DECODER_H
#define DSRT_MODEL_DECODER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "model/gpt2.h"
#include "base/internal.h"

typedef struct decoder {
    const char *who;   /* "gpt2", "llama": messages */
    dsrt_backend *be;  /* not owned */
    size_t dsz;
    int B, T, V;       /* capacity and vocabulary */

    dsrt_param *params;
    size_t n_params, cap_params, numel;
    char *names;

    void *param_mem, *grad_mem, *act_mem;
    float *stat_mem;
    int32_t *idx_mem;
    size_t act_bytes, stat_bytes; /* measured by the model's carve (count_only) */

    void *logits;      /* (B,T,V) in act_mem, carved by the model */
    float *losses;     /* (B,T) in stat_mem, carved by the model */
    int32_t *tokens, *targets; /* (B,T) backend copies */
    float *losses_host;
    int cur_B, cur_T;
    int have_train_fwd, have_eval_fwd;

    dsrt_grad_slot_fn slot_fn;
    void *slot_user;
    dsrt_grad_piece_fn piece_fn;
    dsrt_grad_piece_done_fn piece_done;
    void *piece_user;
    dsrt_param_wait_fn wait_fn;
    void *wait_user;
} decoder;

enum { DECODER_NAME_LEN = 80 };

/* the table for up to cap parameters */
dsrt_status decoder_table(decoder *d, size_t cap);
/* appends a parameter of shape (d0) or (d0, d1) (d1 = 0), named by fmt */
size_t decoder_add(decoder *d, int64_t d0, int64_t d1, const char *fmt, ...) DSRT_PRINTF(4, 5);
/* the buffers, once the table is built and act_bytes / stat_bytes measured:
 * parameters and gradients (DSRT_GPT2_NO_GRAD_BUFFER: none) rounded up to a
 * multiple of param_align elements, the activations, statistics and indices */
dsrt_status decoder_alloc(decoder *d, size_t param_align, unsigned flags);
void decoder_free(decoder *d);

static inline void *decoder_at(const decoder *d, void *base, size_t elems) { return (char *)base + elems * d->dsz; }
/* parameter i's weights (NULL for i < 0: a bias the config does not have) */
static inline void *decoder_param(const decoder *d, long i)
{
    return i < 0 ? NULL : decoder_at(d, d->param_mem, d->params[i].offset);
}

/* ---- forward */
/* tokens in the vocabulary, targets too or -100; *n_valid counted targets */
dsrt_status decoder_check_inputs(const decoder *d, const int32_t *tokens, const int32_t *targets, int B, int T,
                                 int *n_valid);
/* the checks, then tokens and targets uploaded */
dsrt_status decoder_begin(decoder *d, dsrt_gpt2_mode mode, const int32_t *tokens, const int32_t *targets, int B,
                          int T, int *n_valid);
/* the ZeRO all-gather may still be writing parameters first..last */
dsrt_status decoder_params_ready(decoder *d, size_t first, size_t last);
/* after the logits: the fused classifier (TRAIN: logits replaced by their
 * gradient, scaled by loss_scale / n_valid), *loss the mean over counted
 * targets (NaN when none, or without targets) */
dsrt_status decoder_finish(decoder *d, const int32_t *targets, int B, int T, dsrt_gpt2_mode mode, float loss_scale,
                           int n_valid, float *loss);
dsrt_status decoder_get_logits_f32(decoder *d, float *dst);

/* ---- backward */
/* needs a training forward; the gradient buffer or slots */
dsrt_status decoder_backward_begin(decoder *d);
/* where parameter i's gradient goes (NULL for i < 0) */
dsrt_status decoder_grad_at(decoder *d, long i, void **out);
static inline void decoder_ready(dsrt_grad_ready_fn fn, void *user, long i)
{
    if (fn && i >= 0)
        fn(user, (size_t)i);
}
/* the embedding's gradient (parameter p, V rows of C), made by rows(ctx, g,
 * v0, v1) into g (row v0 first): whole, or in the pieces the slot hooks
 * hand out from the last row down */
typedef dsrt_status (*decoder_rows_fn)(void *ctx, void *g, int v0, int v1);
dsrt_status decoder_embedding_grad(decoder *d, size_t p, int C, decoder_rows_fn rows, void *ctx);

dsrt_status decoder_zero_grad(decoder *d);
dsrt_status decoder_get_grads_f32(decoder *d, float *dst);

#endif
