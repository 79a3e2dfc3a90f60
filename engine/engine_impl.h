/* The engine's state, shared by engine.c (the step) and engine_ckpt.c
 * (checkpoints). Private to the plugin. */
#ifndef DSRT_ENGINE_IMPL_H
#define DSRT_ENGINE_IMPL_H

#include <stdio.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "zero/comm.h"
#include "config/config.h"
#include "model/model.h"
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

/* elements [lo, hi) of a coordinate system all in group g (param_groups.c) */
typedef struct eng_group_run {
    size_t lo, hi;
    int g;
} eng_group_run;

struct dsrt_engine {
    ds_config cfg;               /* the engine's own copy of the resolved config */
    /* ---- what runs */
    dsrt_model_config mcfg;
    dsrt_backend *be;
    dsrt_model *model;           /* NULL: host model */
    dsrt_comm *comm;
    bool own_comm;
    dsrt_dtype dt, cdt;          /* model (storage) and communication dtypes */
    size_t dsz, csz;             /* their sizes in bytes */
    int stage, rank, world;
    int B, T, gas;               /* micro-batch, sequence, gradient accumulation */
    char device[32];
    /* ---- the parameters */
    size_t n, n_params;          /* elements in all; tensors */
    eng_param *params;           /* (n_params) registration order */
    zero_layout lay;             /* the flat layout and this rank's partition */
    size_t P;                    /* elements this rank owns (stage >= 1), else n */
    /* ---- buffers (backend memory, allocated once) */
    struct {
        void *params, *grads;    /* (n) the model's flat weights and gradients */
        bool owned;              /* ours (host model), else the GPT-2's */
        bool slots;              /* stage 2 without `grads`: gradients go to reducer slots */
        unsigned char *tied;     /* (n_params) gradients written twice in a backward */
        size_t param_cap;        /* params rounded up to 2N (the in-place all-gather) */
        void *pgrad;             /* (P) stage 1/2: the owned gradient, accumulated */
        bool pgrad_in_grads;     /* stage 1: pgrad is the owned range of `grads` itself */
        void *gather;            /* (padded) all-gather staging, round_robin_gradients only */
        bool gather_in_place;
    } buf;
    /* ---- optimizer state of the owned partition */
    struct {
        float *master, *m, *v;   /* (P) fp32; master == buf.params for fp32 stage 0 */
        int64_t step;            /* Adam steps taken (bias correction) */
    } opt;
    /* ---- optimizer parameter groups (param_groups.c) */
    struct {
        dsrt_param_group *g;     /* (n) weight decay and lr factor */
        int n;
        int *of;                 /* (n_params) each parameter's group */
        bool uniform;            /* every group steps alike: one AdamW call */
        eng_group_run *runs_model, *runs_flat; /* stage 0 buffer / ZeRO flat layout */
        size_t n_model, n_flat;
    } grp;
    zero_reducer red;            /* the gradient buckets (zero/reducer.h) */
    /* ---- wall_clock_breakdown: ms in forward, backward, the reductions left
     * after the backward, and the optimizer step; this step's and the sums
     * since the last print (DeepSpeed's timers) */
    struct {
        bool on;
        double step[4], acc[4];
    } wcb;
    /* ---- the flops_profiler block: a summary of step `step` (monitor.c) */
    struct {
        int64_t step;            /* profile_step; 0: off */
        char *output_file;       /* NULL: the log */
        double t0;               /* when the profiled step's first micro-step began */
    } prof;
    /* ---- DeepSpeed's monitors, rank 0 (monitor.c) */
    struct {
        FILE *tb;                /* TensorBoard event file */
        char *csv_dir;           /* csv_monitor's folder */
        unsigned csv_seen;       /* files given their header in this run */
        bool comms_log;          /* comms_logger: a summary at destroy */
    } mon;
    /* ---- the all-gather of updated weights, in buckets of allgather_bucket_size
     * offsets of every partition; with overlap_comm the next forward waits per
     * layer for the buckets holding its parameters only */
    struct {
        size_t bucket;           /* offsets per bucket */
        int nbk;
        uint64_t *ticket;        /* (nbk) of the last boundary */
        int *need;               /* (n_params) the last bucket a parameter's elements are in */
        int done;                /* buckets known complete */
        bool pending;
        bool wait_now;           /* DSRT_ALLGATHER_WAIT=1: no overlap with the next forward */
    } ag;
    bool use_buckets;            /* several ranks, or stage >= 1 */
    dsrt_lr_sched sched;
    dsrt_loss_scaler scaler;
    bool fp16, check_overflow, in_micro;
    /* ---- DeepSpeed's counters */
    struct {
        int64_t global_steps, skipped_steps, global_samples, micro_steps;
        int64_t nonfinite_skips; /* fp32/bf16 steps skipped for a non-finite loss or gradient */
        int64_t floor_skips;     /* in a row, with no loss scale left to lower */
        double window_loss;      /* loss summed over the accumulation window */
        int window_n;
    } count;
    /* ---- checkpoints */
    char *config_json;           /* the resolved ds_config */
    char *client_state;          /* the last load's (engine_load_keep) */
    uint64_t seed;
    /* ---- model-state bytes of this rank (engine_info) */
    struct {
        int64_t params, grads, transient, masters, moments, gather; /* buckets: zero_reducer_bytes, live (stage 2 may add one) */
    } mem;
};


/* ---- monitor.c: the tensorboard and csv_monitor blocks */
/* The storage and communication dtypes a config asks for. */
void engine_config_dtypes(const ds_config *c, dsrt_dtype *dt, dsrt_dtype *cdt);

dsrt_status engine_monitor_init(dsrt_engine *e);
dsrt_status engine_monitor_step(dsrt_engine *e, const dsrt_step_report *r);
void engine_monitor_free(dsrt_engine *e);
/* flops_profiler: the profiled step starts (its first micro-step) / ended */
void engine_profiler_begin(dsrt_engine *e);
dsrt_status engine_profiler_end(dsrt_engine *e);
/* CRC32C (Castagnoli) and TFRecord's masked form of it */
uint32_t dsrt_crc32c(const void *data, size_t n);
uint32_t dsrt_crc32c_masked(const void *data, size_t n);

/* ---- param_groups.c */
dsrt_status engine_groups_init(dsrt_engine *e, const dsrt_engine_create_args *a);
/* after a group's values changed (a checkpoint's): the run lists again */
dsrt_status engine_groups_changed(dsrt_engine *e);
void engine_groups_free(dsrt_engine *e);
/* checkpoints: the groups as JSON (malloc'd), read back (NULL text: none
 * saved; a different assignment of parameters to groups is refused naming
 * the file), and applied (no groups saved: `wd` for the decaying group) */
char *engine_groups_json(const dsrt_engine *e);
dsrt_status engine_groups_parse(const dsrt_engine *e, const char *text, const char *path, dsrt_param_group **out,
                                int *n_out);
void engine_groups_restore(dsrt_engine *e, const dsrt_param_group *g, int n, double wd);
/* AdamW over elements [lo, lo + n) of the model's buffer (flat false, stage 0)
 * or of ZeRO's flat layout (flat true); the pointers are at element lo; one
 * call per run of a group (its weight decay, lr x its lr_scale) */
dsrt_status engine_adamw(dsrt_engine *e, void *params, float *master, float *m, float *v, const void *grads,
                         size_t lo, size_t n, const dsrt_adamw_args *aa, bool flat);

#endif
