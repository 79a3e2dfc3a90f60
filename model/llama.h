/* The LLaMA family as transformers defines it (LlamaForCausalLM,
 * MistralForCausalLM, Qwen2ForCausalLM): a token embedding, n_layer
 * pre-norm blocks (RMSNorm, causal self-attention with rotary position
 * embeddings and grouped-query heads, residual, RMSNorm, SwiGLU MLP,
 * residual), a final RMSNorm and an LM head, tied to the embedding or its own
 * weight. Dropout 0. Loss: mean cross entropy over the targets that are not
 * -100.
 *
 * The three architectures differ only in their configs: biases on q/k/v
 * (Qwen2 always; LLaMA's attention_bias also on o_proj), biases in the MLP
 * (LLaMA's mlp_bias), head_dim, the rope_scaling (LLaMA 3's "llama3"), and
 * Mistral's / Qwen2's sliding window, which dsrt refuses when a sequence is
 * longer than the window (shorter sequences never reach it).
 *
 * Parameters carry transformers' names and shapes in its named_parameters()
 * order in one flat buffer, as model/gpt2.h; the same memory rules and the
 * same hooks for ZeRO (param wait, gradient slots and pieces). */
#ifndef DSRT_MODEL_LLAMA_H
#define DSRT_MODEL_LLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "model/gpt2.h"
#include "dsrt.h"

typedef struct dsrt_llama_config {
    char model_type[16];     /* "llama", "mistral", "qwen2" */
    char architecture[32];   /* "LlamaForCausalLM", ... */
    int vocab_size;          /* V */
    int hidden_size;         /* C */
    int intermediate_size;   /* F */
    int num_hidden_layers;   /* L */
    int num_attention_heads; /* NH */
    int num_key_value_heads; /* NKV (absent: NH) */
    int head_dim;            /* HS (absent: C / NH) */
    int max_position_embeddings;
    float rms_norm_eps;
    float initializer_range;
    double rope_theta;
    /* rope_scaling / rope_parameters type "llama3" (0: the default rope) */
    int rope_llama3;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_positions;
    bool qkv_bias, o_bias, mlp_bias;
    bool tie_word_embeddings;
    int sliding_window; /* 0: none in use */
    int max_window_layers; /* Qwen2: the first layer with the window (export) */
    char source[256];   /* the file the config came from */
} dsrt_llama_config;

/* Reads a transformers LlamaConfig / MistralConfig / Qwen2Config from its
 * parsed config.json (model/model.c parses the text once for every
 * architecture; root may be any JSON value): transformers 4's rope_theta +
 * rope_scaling or 5's rope_parameters. Keys that change the math in ways this model does not
 * implement (another hidden_act, rope type, partial rotary factor, ...) are
 * refused naming the key; nonzero attention_dropout is accepted with a
 * warning (dsrt trains with dropout 0). */
struct json_value;
dsrt_status dsrt_llama_config_from_json(const struct json_value *root, const char *source, dsrt_llama_config *out);
size_t dsrt_llama_config_num_params(const dsrt_llama_config *c);

typedef struct dsrt_llama dsrt_llama;

/* As dsrt_gpt2_create_ex (the flags are DSRT_GPT2_*). */
dsrt_status dsrt_llama_create_ex(const dsrt_llama_config *cfg, dsrt_backend *be, int B, int T,
                                 size_t param_align, unsigned flags, dsrt_llama **out);
void dsrt_llama_destroy(dsrt_llama *m);

/* As dsrt_gpt2_shapes / dsrt_gpt2_activation_bytes_for. */
void dsrt_llama_shapes(const dsrt_llama_config *cfg, int B, int T, dsrt_backend_shapes *s);
size_t dsrt_llama_activation_bytes_for(const dsrt_llama_config *cfg, int B, int T, dsrt_dtype dt);

const dsrt_llama_config *dsrt_llama_get_config(const dsrt_llama *m);
const dsrt_param *dsrt_llama_params(const dsrt_llama *m, size_t *count);
size_t dsrt_llama_num_params(const dsrt_llama *m);
size_t dsrt_llama_activation_bytes(const dsrt_llama *m);
void *dsrt_llama_param_buffer(dsrt_llama *m);
void *dsrt_llama_grad_buffer(dsrt_llama *m);

/* transformers' _init_weights: Linear and Embedding weights
 * N(0, initializer_range), biases 0, RMSNorm weights 1 (init_rng.h streams). */
dsrt_status dsrt_llama_init(dsrt_llama *m, uint64_t seed);
dsrt_status dsrt_llama_zero_grad(dsrt_llama *m);
dsrt_status dsrt_llama_get_grads_f32(dsrt_llama *m, float *dst);

dsrt_status dsrt_llama_forward(dsrt_llama *m, const int32_t *tokens, const int32_t *targets, int B,
                               int T, dsrt_gpt2_mode mode, float loss_scale, float *loss);
dsrt_status dsrt_llama_get_logits_f32(dsrt_llama *m, float *dst);
void dsrt_llama_set_param_wait(dsrt_llama *m, dsrt_param_wait_fn fn, void *user);
void dsrt_llama_set_grad_slots(dsrt_llama *m, dsrt_grad_slot_fn fn, void *user);
/* Parameter 0 (embed_tokens; with a tied head also the head's gradient) in
 * pieces at the end of the backward, as dsrt_gpt2_set_grad_pieces. */
void dsrt_llama_set_grad_pieces(dsrt_llama *m, dsrt_grad_piece_fn piece,
                                dsrt_grad_piece_done_fn done, void *user);
dsrt_status dsrt_llama_backward(dsrt_llama *m, dsrt_grad_ready_fn ready, void *user);

/* The rotary table for positions 0..T-1: cos and sin (T, HS/2), fp32, as
 * transformers computes them (inv_freq and the angle in fp32; llama3's
 * scaling of inv_freq). */
void dsrt_llama_rope_table(const dsrt_llama_config *c, int T, float *cosv, float *sinv);

#endif
