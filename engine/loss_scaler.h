/* fp16 loss scaling as DeepSpeed 0.19.6 does it (spec 4.1, 4.2):
 *   DYNAMIC  ZeRO 1/2 with fp16.loss_scale == 0: DynamicLossScaler
 *            (deepspeed/runtime/fp16/loss_scaler.py) with hysteresis, the
 *            >= 0.17.1 growth rule, and a hard stop when an overflow arrives
 *            with the scale already at its floor;
 *   STATIC   ZeRO 1/2 with fp16.loss_scale > 0: the scale never changes
 *            (overflowing steps are still skipped by the engine);
 *   STAGE0   ZeRO stage 0: FP16_Optimizer's built-in rule: halve on every
 *            overflow down to the floor, never stop, no hysteresis; with
 *            fp16.loss_scale > 0 it is static;
 *   NONE     bf16 / fp32: scale 1.
 *
 * The caller (the engine) calls dsrt_loss_scaler_update once per optimizer
 * boundary, overflow or not, before applying the update (spec 4.3). The
 * scale a boundary's backward used is the scale BEFORE that call; DeepSpeed
 * unscales the gradients with the scale AFTER it.
 *
 * Every field is public so that a checkpoint can save and restore them. */
#ifndef DSRT_LOSS_SCALER_H
#define DSRT_LOSS_SCALER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/ds_config.h"
#include "dsrt.h"

typedef enum dsrt_loss_scaler_mode {
    DSRT_SCALER_NONE,
    DSRT_SCALER_STATIC,
    DSRT_SCALER_DYNAMIC,
    DSRT_SCALER_STAGE0,
} dsrt_loss_scaler_mode;

typedef struct dsrt_loss_scaler {
    dsrt_loss_scaler_mode mode;
    bool dynamic;                /* the scale can change (DYNAMIC, STAGE0 with loss_scale 0) */
    double cur_scale;            /* 2^initial_scale_power, loss_scale, or 1 */
    int64_t cur_iter;            /* update() calls so far, overflowed ones included */
    int64_t last_overflow_iter;  /* -1 before the first overflow */
    int64_t cur_hysteresis;      /* overflows still tolerated before halving (DYNAMIC) */
    int64_t delayed_shift;       /* fp16.hysteresis: what cur_hysteresis refills to */
    int64_t window;              /* fp16.loss_scale_window */
    double min_scale;            /* fp16.min_loss_scale */
    bool consecutive_hysteresis; /* refill hysteresis on every clean step */
} dsrt_loss_scaler;

/* Sets up the scaler for `mode` from the fp16 block (fp16 may be NULL for
 * NONE). DSRT_STATUS_INVALID_CONFIG for values DeepSpeed cannot run with:
 * a window, hysteresis or min_loss_scale <= 0, an initial_scale_power outside
 * 0..1023, or a STATIC loss_scale that is not a finite positive number. */
dsrt_status dsrt_loss_scaler_init(dsrt_loss_scaler *s, dsrt_loss_scaler_mode mode,
                                  const ds_fp16_config *fp16);

/* One optimizer boundary's update. DYNAMIC: an overflow with hysteresis left
 * only spends one unit of hysteresis; otherwise the scale halves (not below
 * min_scale); an overflow while cur_scale == min_scale is where DeepSpeed
 * raises: DSRT_STATUS_OUT_OF_RANGE with "loss scale already at minimum (<min>)
 * - cannot decrease scale anymore", the state left exactly as before the
 * call. A clean step doubles the scale when the number of clean steps since
 * the last overflow, s = cur_iter - last_overflow_iter - 1, is a positive
 * multiple of the window (the >= 0.17.1 rule), with no upper bound. */
dsrt_status dsrt_loss_scaler_update(dsrt_loss_scaler *s, bool overflow);

/* The scale the next backward uses. */
double dsrt_loss_scaler_scale(const dsrt_loss_scaler *s);

/* DeepSpeed's rank-0 log line for an overflow, written into buf (always
 * NUL-terminated when size > 0). Call it after dsrt_loss_scaler_update(s, true)
 * with the scale from before that call:
 *   DYNAMIC  "[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768"
 *            or, when hysteresis absorbed it, "... Attempted loss scale: 65536, but hysteresis is 2.
 *            Reducing hysteresis to 1" (scales printed as Python's int() of them);
 *   STAGE0   "Overflow detected. Skipping step. Attempted loss scale: 65536.0, reducing to 32768.0"
 *            (scales printed as Python floats);
 *   STATIC, NONE: DeepSpeed logs nothing; buf = "" and 0 is returned.
 * Returns the length of the full line, as snprintf does. */
int dsrt_loss_scaler_overflow_message(const dsrt_loss_scaler *s, double prev_scale, char *buf,
                                      size_t size);

#endif /* DSRT_LOSS_SCALER_H */
