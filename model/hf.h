/* Hugging Face model folders in and out.
 *
 * Reading: the weights of a folder written by transformers' save_pretrained
 * (model.safetensors, or model.safetensors.index.json and its shards) go
 * into a model's flat parameter buffer, converted from F32, F16, BF16 or F64
 * to the run's dtype (nearest even). Every parameter must be there with its
 * exact shape; a tensor the model has no place for is refused by name,
 * except the buffers older checkpoints carry (GPT-2's attn.bias and
 * attn.masked_bias, rotary_emb.inv_freq) and a tied lm_head.weight, which
 * transformers also drops. GPT-2 files saved from GPT2Model (no
 * "transformer." prefix, as the hub's gpt2) are read too.
 *
 * Writing: config.json and model.safetensors (shards of at most 5 GB with
 * model.safetensors.index.json above that) that from_pretrained loads with no
 * missing or unexpected keys; tensors in the run's dtype; the tokenizer and
 * generation files of the folder the model came from, copied. Every file is
 * written atomically. */
#ifndef DSRT_MODEL_HF_H
#define DSRT_MODEL_HF_H

#include <stddef.h>

#include "kernels/backend.h"
#include "model/gpt2.h"
#include "dsrt.h"

struct dsrt_model_config;

/* Loads `dir`'s weights into param_mem (backend memory, be->dt) by the
 * parameter table. tied_head: the model ties its head to parameter 0. */
dsrt_status dsrt_hf_load_weights(const char *dir, dsrt_backend *be, void *param_mem,
                                 const dsrt_param *params, size_t n, int tied_head);

/* Writes config.json and the weights (param_mem: backend memory, be->dt)
 * into `dir` (made if missing). */
dsrt_status dsrt_hf_export(const char *dir, const struct dsrt_model_config *cfg, dsrt_backend *be,
                           const void *param_mem, const dsrt_param *params, size_t n);

/* The config.json text dsrt_hf_export writes (malloc'd). */
char *dsrt_hf_config_json(const struct dsrt_model_config *cfg, dsrt_dtype dt);

/* Shard size limit of the export, bytes (tests lower it). */
void dsrt_hf_set_shard_bytes(size_t bytes);

#endif
