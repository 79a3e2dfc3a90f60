/* The training engine behind api->engine_*: what one DeepSpeed engine step
 * does on one rank (spec sections 4-6): scaled backward with gradient
 * accumulation, the overflow check and gradient norm in one pass, the loss
 * scaler update, unscale + clip folded into one multiplier, fused AdamW on
 * fp32 masters (16-bit weights written in the same pass), the LR scheduler
 * step, DeepSpeed's counters and log line. */
#ifndef DSRT_ENGINE_H
#define DSRT_ENGINE_H

#include <stdbool.h>

#include "dsrt.h"

struct dsrt_config;

dsrt_status engine_create(const dsrt_engine_create_args *a, dsrt_engine **out);
void engine_destroy(dsrt_engine *e);
dsrt_status engine_train(dsrt_engine *e, const int32_t *tokens, const int32_t *targets,
                         int micro_batches, dsrt_step_report *report);
dsrt_status engine_evaluate(dsrt_engine *e, const int32_t *tokens, const int32_t *targets,
                            int batch, double *loss);
void engine_info(dsrt_engine *e, dsrt_engine_info_args *a);
/* the host-model step (dsrt.h, ABI 1.2) */
dsrt_status engine_param(dsrt_engine *e, int64_t index, dsrt_engine_param_args *a);
dsrt_status engine_micro_begin(dsrt_engine *e, double *grad_scale);
dsrt_status engine_grad_ready(dsrt_engine *e, int64_t index);
/* Wait for the last boundary's all-gather (before anything reads the weights
 * outside the forward's per-layer waits). */
dsrt_status engine_params_settle(dsrt_engine *e);
/* The built-in model as a Hugging Face folder (rank 0 writes; model/hf.h). */
dsrt_status engine_export_hf(dsrt_engine *e, const char *dir);
/* A rank's memory for a config, model and sequence length (estimate.c). */
struct ds_config;
dsrt_status engine_estimate(const struct ds_config *c, const char *model, int32_t seq_len, const char *device,
                            dsrt_estimate_memory_args *out);
dsrt_status engine_grad_slot(dsrt_engine *e, int64_t index, void **grad);
dsrt_status engine_step(dsrt_engine *e, double loss, dsrt_step_report *report);
/* checkpoints (engine_ckpt.c, ABI 1.3); *client_state: malloc'd JSON text */
dsrt_status engine_save(dsrt_engine *e, const char *save_dir, const char *tag,
                        const char *client_state);
/* What a load takes (dsrt.h, ABI 1.4); all false: everything */
typedef struct engine_load_opts {
    bool module_only;           /* DeepSpeed's load_module_only: the weights alone */
    bool skip_optimizer_states; /* DeepSpeed's load_optimizer_states=False */
} engine_load_opts;
/* opts NULL: everything */
dsrt_status engine_load(dsrt_engine *e, const char *load_dir, const char *tag,
                        const engine_load_opts *opts, char **client_state);
/* the same, keeping the client state in the engine (api.c) */
dsrt_status engine_load_keep(dsrt_engine *e, const char *load_dir, const char *tag,
                             const engine_load_opts *opts, const char **client_state, int64_t *global_steps);

#endif
