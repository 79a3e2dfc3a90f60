/* The built-in models behind one interface: what the engine trains. A model
 * is named by a GPT-2 preset ("gpt2-tiny", "gpt2", "gpt2-medium"), a
 * config.json (random initial weights), or a Hugging Face model folder
 * (config.json plus model.safetensors or a sharded
 * model.safetensors.index.json: the pretrained weights). The architecture
 * comes from the config's model_type: gpt2 (model/gpt2.h), llama, mistral,
 * qwen2 (model/llama.h). */
#ifndef DSRT_MODEL_MODEL_H
#define DSRT_MODEL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "model/gpt2.h"
#include "model/llama.h"
#include "dsrt.h"

typedef enum dsrt_arch { DSRT_ARCH_GPT2 = 1, DSRT_ARCH_LLAMA = 2 } dsrt_arch;

typedef struct dsrt_model_config {
    dsrt_arch arch;
    dsrt_gpt2_config gpt2;   /* DSRT_ARCH_GPT2 */
    dsrt_llama_config llama; /* DSRT_ARCH_LLAMA */
    char weights_dir[4096];  /* a model folder: its weights are loaded; "" none */
    bool sharded;            /* the folder has model.safetensors.index.json */
} dsrt_model_config;

/* From a preset name, a config.json path or a model folder. */
dsrt_status dsrt_model_config_load(const char *spec, dsrt_model_config *out);
/* The same from config.json text (source names it in messages). */
dsrt_status dsrt_model_config_parse(const char *text, size_t len, const char *source,
                                    dsrt_model_config *out);

/* Figures from the config alone. */
const char *dsrt_model_type(const dsrt_model_config *c); /* "gpt2", "llama", ... */
size_t dsrt_model_config_num_params(const dsrt_model_config *c);
int dsrt_model_max_positions(const dsrt_model_config *c);
int dsrt_model_vocab_size(const dsrt_model_config *c);
int dsrt_model_hidden_size(const dsrt_model_config *c);
int dsrt_model_num_layers(const dsrt_model_config *c);
int dsrt_model_num_heads(const dsrt_model_config *c);
int dsrt_model_intermediate_size(const dsrt_model_config *c);
/* Forward FLOPs of one micro-batch of B x T (2 per multiply-add, the
 * attention's two T x T products counted over the whole square as
 * DeepSpeed's flops profiler does). */
double dsrt_model_forward_flops(const dsrt_model_config *c, int B, int T);
/* The backend shapes and the activation bytes of a model of B x T in dt
 * (see dsrt_gpt2_activation_bytes_for), without making it. */
void dsrt_model_shapes(const dsrt_model_config *c, int B, int T, dsrt_backend_shapes *s);
size_t dsrt_model_activation_bytes_for(const dsrt_model_config *c, int B, int T, dsrt_dtype dt);
/* The largest parameter's elements, the token embedding left out (its
 * gradient goes through the buckets in pieces). */
size_t dsrt_model_largest_param(const dsrt_model_config *c);
/* Is parameter `name` a normalisation weight (the Trainer's no-decay group)? */
bool dsrt_model_is_norm_param(const dsrt_model_config *c, const char *name);

typedef struct dsrt_model dsrt_model;

/* As dsrt_gpt2_create_ex; the weights are the config's (random until
 * dsrt_model_init or dsrt_model_load_weights). */
dsrt_status dsrt_model_create(const dsrt_model_config *cfg, dsrt_backend *be, int B, int T,
                              size_t param_align, unsigned flags, dsrt_model **out);
void dsrt_model_destroy(dsrt_model *m);

const dsrt_model_config *dsrt_model_get_config(const dsrt_model *m);
const dsrt_param *dsrt_model_params(const dsrt_model *m, size_t *count);
size_t dsrt_model_num_params(const dsrt_model *m);
size_t dsrt_model_activation_bytes(const dsrt_model *m);
void *dsrt_model_param_buffer(dsrt_model *m);
void *dsrt_model_grad_buffer(dsrt_model *m);

/* The initial weights: the folder's when the config names one
 * (model/hf.h), else the architecture's random initialisation from seed. */
dsrt_status dsrt_model_init(dsrt_model *m, uint64_t seed);

dsrt_status dsrt_model_forward(dsrt_model *m, const int32_t *tokens, const int32_t *targets, int B,
                               int T, dsrt_gpt2_mode mode, float loss_scale, float *loss);
dsrt_status dsrt_model_get_logits_f32(dsrt_model *m, float *dst);
dsrt_status dsrt_model_backward(dsrt_model *m, dsrt_grad_ready_fn ready, void *user);
dsrt_status dsrt_model_zero_grad(dsrt_model *m);
dsrt_status dsrt_model_get_grads_f32(dsrt_model *m, float *dst);
void dsrt_model_set_param_wait(dsrt_model *m, dsrt_param_wait_fn fn, void *user);
void dsrt_model_set_grad_slots(dsrt_model *m, dsrt_grad_slot_fn fn, void *user);
void dsrt_model_set_grad_pieces(dsrt_model *m, dsrt_grad_piece_fn piece, dsrt_grad_piece_done_fn done,
                                void *user);

#endif
