/* DeepSpeed's five learning-rate schedules (WarmupLR, WarmupDecayLR,
 * WarmupCosineLR, OneCycle, LRRangeTest; deepspeed/runtime/lr_schedules.py
 * of 0.19.6, spec section 5) for the one parameter group dsrt trains, in
 * double, with DeepSpeed's operations in DeepSpeed's order so that the lr is
 * the same double Python computes.
 *
 * Step rule (the caller's side of the contract, spec 5 and 4.3):
 *   - dsrt_lr_sched_init writes the lr for the configured last_batch_iteration
 *     (lbi, default -1); that lr is the one the FIRST applied update uses.
 *   - The engine calls dsrt_lr_sched_step exactly once after every APPLIED
 *     optimizer step: never on a step skipped for overflow, never on a
 *     micro-step inside a gradient accumulation window. So the k-th applied
 *     update (k = 1, 2, ...) uses lr(lbi = k - 2), and after T boundaries
 *     of which S were skipped, lbi = T - S - 1.
 *   - dsrt_lr_sched_lr is the lr to use for the next update.
 *
 * State: last_batch_iteration is the whole state (DeepSpeed's state_dict is
 * {"last_batch_iteration": lbi}); everything else follows from the config.
 *
 * DeepSpeed writes the lr (and OneCycle's betas) at construction only when
 * lbi == -1; constructed at another lbi it leaves the optimizer's own lr and
 * betas in place until the first step(). dsrt_lr_sched_init does the same:
 * lr = base_lr and betas = the optimizer's until the first step. */
#ifndef DSRT_LR_SCHED_H
#define DSRT_LR_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "config/ds_config.h"
#include "dsrt.h"

typedef struct dsrt_lr_sched {
    /* The schedule's parameters as used: warmup_max_lr NaN resolved to base_lr,
     * OneCycle's second step size / stair count -1 resolved to the first's,
     * type cleared (it pointed into the config document). */
    ds_scheduler_config cfg;
    double base_lr;               /* optimizer.params.lr: WarmupCosineLR's org_lr */
    int64_t last_batch_iteration; /* lbi: the whole state */
    double lr;                    /* the lr for the next update */
    double beta1, beta2;          /* the Adam betas for the next update */
    bool sets_betas;              /* OneCycle with cycle_momentum: beta1/beta2 come from
                                     the schedule (beta2 = 0.99); else they are the
                                     optimizer's, as passed to init */
} dsrt_lr_sched;

/* Builds the schedule as DeepSpeed's constructor does: lbi = cfg->last_batch_iteration,
 * lr (and betas) written for it as described above.
 *   DS_SCHED_NONE: no schedule, lr = base_lr for ever (step only counts).
 *   DS_SCHED_TORCH: DSRT_STATUS_UNSUPPORTED (torch.optim.lr_scheduler classes).
 *   warmup_num_steps <= 0 (WarmupLR/WarmupDecayLR/WarmupCosineLR), a OneCycle
 *   cycle_first_step_size <= 0 or an lr_range_test_step_size of 0:
 *   DSRT_STATUS_INVALID_CONFIG, where DeepSpeed raises (ValueError or a
 *   division by zero). A negative cycle_second_step_size/_stair_count means
 *   None: the first's value. */
dsrt_status dsrt_lr_sched_init(dsrt_lr_sched *s, const ds_scheduler_config *cfg, double base_lr,
                               double beta1, double beta2);

/* lbi += 1, then lr (and betas when sets_betas) recomputed for the new lbi. */
void dsrt_lr_sched_step(dsrt_lr_sched *s);

/* The lr for the next update. */
double dsrt_lr_sched_lr(const dsrt_lr_sched *s);

/* What step() writes at a given lbi (DeepSpeed's get_lr()/get_mom()), without
 * touching s. beta1/beta2 may be NULL; they receive the optimizer's betas when
 * the schedule does not set them. Note OneCycle at lbi = -1: step() formulas
 * give beta1 = cycle_max_mom, while construction writes cycle_min_mom. */
double dsrt_lr_sched_eval(const dsrt_lr_sched *s, int64_t lbi, double *beta1, double *beta2);

/* Checkpoint state: save returns lbi; restore sets it and re-derives lr and
 * betas as the schedule last wrote them (construction values at lbi -1, step()
 * values otherwise), which is what DeepSpeed's checkpointed optimizer
 * param_group holds in a run whose schedule wrote them. */
int64_t dsrt_lr_sched_state_save(const dsrt_lr_sched *s);
void dsrt_lr_sched_state_restore(dsrt_lr_sched *s, int64_t last_batch_iteration);

#endif /* DSRT_LR_SCHED_H */
