/* The engine's state, shared by engine.c (the step) and engine_ckpt.c
 * (checkpoints). Private to the plugin. */
#ifndef DSRT_ENGINE_IMPL_H
#define DSRT_ENGINE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "zero/comm.h"
#include "config/config.h"
#include "model/gpt2.h"
#include "engine/loss_scaler.h"
#include "engine/lr_sched.h"
#include "zero/partition.h"
#include "zero/reducer.h"

typedef struct eng_param {
    const char *name;
    char *owned_name; /* host models: our copy */
    size_t offset, numel;
    int ndim;
    int64_t shape[8];
} eng_param;

struct dsrt_engine {
    ds_config cfg;
    dsrt_gpt2_config mcfg;
    dsrt_backend *be;
    dsrt_gpt2 *model; /* NULL: host model */
    dsrt_comm *comm;
    bool own_comm;
    dsrt_dtype dt, cdt;
    size_t dsz, csz;
    int stage, rank, world;
    size_t n, n_params;
    eng_param *params;
    void *param_buf, *grad_buf;
    bool own_bufs;
    size_t param_cap;
    zero_layout lay;
    size_t P;
    float *master, *m, *v;
    void *pgrad;
    void *gather;
    bool gather_in_place, use_buckets;
    zero_reducer red;
    dsrt_lr_sched sched;
    dsrt_loss_scaler scaler;
    bool fp16, check_overflow, in_micro;
    int64_t adam_step, global_steps, skipped_steps, global_samples, micro_steps;
    double window_loss;
    int window_n;
    int B, T, gas;
    char device[32];
    char *config_json;      /* the resolved ds_config, for checkpoints */
    char *model_json;       /* the model's config (GPT-2) or tensor list (host) */
    char *client_state;     /* the last load's (engine_load_keep) */
    uint64_t seed;
    int64_t mem_params, mem_grads, mem_transient, mem_masters, mem_moments, mem_buckets,
        mem_gather;
};


/* engine_ckpt.c */
char *engine_model_json(const dsrt_engine *e); /* malloc'd */

#endif
