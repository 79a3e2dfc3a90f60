/* GPT-2 as Hugging Face's GPT2LMHeadModel defines it: token + learned
 * position embeddings, n_layer pre-LayerNorm blocks (LN, causal
 * self-attention, residual, LN, MLP with tanh GELU, residual), a final LN and
 * an LM head tied to the token embedding; dropout 0. Loss: mean cross entropy
 * over the targets that are not -100.
 *
 * Parameters carry HF's names and shapes and sit in HF's named_parameters()
 * order in one flat buffer (the order ZeRO partitions in). Parameters,
 * gradients and activations live in buffers allocated once at creation on
 * the model's backend, in the backend's storage dtype; nothing is allocated
 * per step. */
#ifndef DSRT_MODEL_GPT2_H
#define DSRT_MODEL_GPT2_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "dsrt.h"

typedef struct dsrt_gpt2_config {
    int vocab_size;  /* V */
    int n_positions; /* max T */
    int n_embd;      /* C */
    int n_layer;     /* L */
    int n_head;      /* NH */
    int n_inner;     /* MLP width; HF's null means 4*C (filled in) */
    float layer_norm_epsilon;
    float initializer_range;
    char source[128]; /* preset name or file the config came from */
} dsrt_gpt2_config;

/* Read a Hugging Face GPT2Config (config.json text). Unknown keys are
 * ignored as transformers does; keys that change the math in ways this model
 * does not implement are refused naming the key. Nonzero dropout is
 * accepted with a warning (dsrt trains with dropout 0). */
dsrt_status dsrt_gpt2_config_parse(const char *text, size_t len, const char *source,
                                   dsrt_gpt2_config *out);
/* The same from a parsed document (model/model.c parses once for every
 * architecture); root may be any JSON value. */
struct json_value;
dsrt_status dsrt_gpt2_config_from_json(const struct json_value *root, const char *source, dsrt_gpt2_config *out);
/* A preset name ("gpt2-tiny", "gpt2", "gpt2-medium") or a config.json path. */
dsrt_status dsrt_gpt2_config_load(const char *path_or_preset, dsrt_gpt2_config *out);
/* The preset's config.json text, or NULL for an unknown name. */
const char *dsrt_gpt2_preset_json(const char *name);
/* The preset names, NULL-terminated. */
const char *const *dsrt_gpt2_preset_names(void);

typedef struct dsrt_param {
    const char *name; /* "transformer.h.0.attn.c_attn.weight" */
    size_t offset;    /* elements from the start of the flat buffer */
    size_t numel;
    int ndim;
    int64_t shape[2];
} dsrt_param;

typedef struct dsrt_gpt2 dsrt_gpt2;

/* A model for batches of up to B sequences of up to T tokens (T <=
 * n_positions) on `be` (not owned; must outlive the model). Parameters start
 * at zero: call dsrt_gpt2_init or dsrt_gpt2_set_params_f32. */
dsrt_status dsrt_gpt2_create(const dsrt_gpt2_config *cfg, dsrt_backend *be, int B, int T,
                             dsrt_gpt2 **out);
/* The same with the parameter buffer's length rounded up to a multiple of
 * param_align elements (zeros past the parameters): ZeRO all-gathers its
 * padded flat buffer straight into it (the gradient buffer is as long, so
 * ZeRO stage 1 can keep its reduced partition in it). Flags: DSRT_GPT2_NO_GRAD_BUFFER makes
 * no gradient buffer; the backward then writes each gradient where the
 * slot callback says (dsrt_gpt2_set_grad_slots; ZeRO stage 2). */
enum { DSRT_GPT2_NO_GRAD_BUFFER = 1 };
dsrt_status dsrt_gpt2_create_ex(const dsrt_gpt2_config *cfg, dsrt_backend *be, int B, int T,
                                size_t param_align, unsigned flags, dsrt_gpt2 **out);
void dsrt_gpt2_destroy(dsrt_gpt2 *m); /* NULL is fine */

const dsrt_gpt2_config *dsrt_gpt2_get_config(const dsrt_gpt2 *m);
const dsrt_param *dsrt_gpt2_params(const dsrt_gpt2 *m, size_t *count);
size_t dsrt_gpt2_num_params(const dsrt_gpt2 *m);
/* The same, from the config alone (no model made) */
size_t dsrt_gpt2_config_num_params(const dsrt_gpt2_config *c);
/* The backend shapes a model of B x T reserves its scratch for. */
void dsrt_gpt2_shapes(const dsrt_gpt2_config *cfg, int B, int T, dsrt_backend_shapes *s);
/* The bytes a model of B x T in dtype dt holds for activations, their
 * gradients, statistics and token indices (what create allocates besides
 * the parameters and gradients), without making it. */
size_t dsrt_gpt2_activation_bytes_for(const dsrt_gpt2_config *cfg, int B, int T, dsrt_dtype dt);
/* Bytes of activations (and their gradient scratch) held for B x T. */
size_t dsrt_gpt2_activation_bytes(const dsrt_gpt2 *m);
/* The flat parameter and gradient buffers (backend memory, storage dtype;
 * the gradient buffer is NULL with DSRT_GPT2_NO_GRAD_BUFFER). */
void *dsrt_gpt2_param_buffer(dsrt_gpt2 *m);
void *dsrt_gpt2_grad_buffer(dsrt_gpt2 *m);

/* GPT-2's initialisation (HF _init_weights): weights and embeddings
 * N(0, initializer_range), the two c_proj weights of each block
 * N(0, initializer_range / sqrt(2 n_layer)), biases 0, LayerNorm 1 and 0.
 * Drawn on the host in fp32 from `seed` with a counter-based generator keyed
 * by (seed, parameter index): the same values on every backend and rank. */
dsrt_status dsrt_gpt2_init(dsrt_gpt2 *m, uint64_t seed);
/* Host fp32 copies of all parameters / gradients, flat, in parameter order. */
dsrt_status dsrt_gpt2_set_params_f32(dsrt_gpt2 *m, const float *src);
dsrt_status dsrt_gpt2_get_params_f32(dsrt_gpt2 *m, float *dst);
dsrt_status dsrt_gpt2_get_grads_f32(dsrt_gpt2 *m, float *dst);
dsrt_status dsrt_gpt2_zero_grad(dsrt_gpt2 *m);

typedef enum dsrt_gpt2_mode {
    DSRT_GPT2_EVAL = 0,  /* logits kept (read with get_logits_f32), loss if targets */
    DSRT_GPT2_TRAIN = 1, /* fused classifier: logits replaced by their gradient */
} dsrt_gpt2_mode;

/* Forward over tokens (B,T) (host memory; B, T up to the created sizes).
 * targets (B,T), host, -100 = ignored; NULL computes logits only (EVAL).
 * TRAIN needs targets; `loss_scale` multiplies the loss gradient (the fp16
 * loss scale; 1 otherwise). *loss: mean over counted targets (NaN when every
 * target is ignored, as torch gives; the gradient is then zero). */
dsrt_status dsrt_gpt2_forward(dsrt_gpt2 *m, const int32_t *tokens, const int32_t *targets, int B,
                              int T, dsrt_gpt2_mode mode, float loss_scale, float *loss);
/* Logits (B,T,V) of the last EVAL forward, as fp32 on the host. */
dsrt_status dsrt_gpt2_get_logits_f32(dsrt_gpt2 *m, float *dst);

/* Called once per parameter, in the order their gradients become final
 * during a backward (the hook ZeRO buckets on). */
typedef void (*dsrt_grad_ready_fn)(void *user, size_t param_index);
/* Called by the forward before it reads parameters first..last (their
 * indices; a layer at a time): ZeRO's bucketed all-gather of the last
 * update may still be writing them. */
typedef dsrt_status (*dsrt_param_wait_fn)(void *user, size_t first, size_t last);
void dsrt_gpt2_set_param_wait(dsrt_gpt2 *m, dsrt_param_wait_fn fn, void *user);
/* Where parameter i's gradient of this backward goes (zeroed memory of its
 * numel elements, storage dtype), asked right before the kernel that writes
 * it, in the order the gradients become ready. */
typedef dsrt_status (*dsrt_grad_slot_fn)(void *user, size_t param_index, void **out);
void dsrt_gpt2_set_grad_slots(dsrt_gpt2 *m, dsrt_grad_slot_fn fn, void *user);
/* Optional with slots: the embedding's gradient (parameter 0, the tied
 * wte/lm_head) is then filled a piece at a time at the end of the backward,
 * whole rows from the last down: `piece` hands out zeroed memory for its
 * elements [*off, end) (a multiple of `unit` = n_embd elements, as many as
 * fit where it puts them) and `done` says that piece is written. Without
 * pieces parameter 0 takes one slot of its whole size. The LM head's part of
 * that gradient is computed at the end of the backward in every mode (the
 * logits' gradient and ln_f's output stay intact until then), so nothing
 * holds it across the backward. */
typedef dsrt_status (*dsrt_grad_piece_fn)(void *user, size_t param_index, size_t end, size_t unit,
                                          size_t *off, void **out);
typedef dsrt_status (*dsrt_grad_piece_done_fn)(void *user, size_t param_index, size_t off);
void dsrt_gpt2_set_grad_pieces(dsrt_gpt2 *m, dsrt_grad_piece_fn piece, dsrt_grad_piece_done_fn done,
                               void *user);
/* Backward of the last TRAIN forward; gradients accumulate (+=) into the
 * gradient buffer (or the slots). */
dsrt_status dsrt_gpt2_backward(dsrt_gpt2 *m, dsrt_grad_ready_fn ready, void *user);

/* Parameters of a block, in HF order (index = 2 + 12 * layer + slot). */
enum {
    GPT2_LN1_W, GPT2_LN1_B, GPT2_QKV_W, GPT2_QKV_B, GPT2_ATTPROJ_W, GPT2_ATTPROJ_B,
    GPT2_LN2_W, GPT2_LN2_B, GPT2_FC_W, GPT2_FC_B, GPT2_FCPROJ_W, GPT2_FCPROJ_B,
    GPT2_PER_LAYER
};

#endif /* DSRT_MODEL_GPT2_H */
