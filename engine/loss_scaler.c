/* fp16 loss scaling (see loss_scaler.h; spec 4.1-4.3).
 *
 * The scale is a double, as DeepSpeed's Python float; every value it takes is
 * 2^k or min_loss_scale * 2^k, so halving and doubling are exact and the
 * floor test `cur_scale == min_scale` is the same comparison DeepSpeed makes. */
#include <math.h>
#include <stdio.h>

#include "base/internal.h"
#include "engine/loss_scaler.h"

#define SCALE_FACTOR 2.0 /* DeepSpeed's scale_factor: not configurable */

dsrt_status dsrt_loss_scaler_init(dsrt_loss_scaler *s, dsrt_loss_scaler_mode mode,
                                  const ds_fp16_config *fp16)
{
    if (!s)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "loss_scaler_init: NULL scaler");
    *s = (dsrt_loss_scaler){
        .mode = mode,
        .dynamic = false,
        .cur_scale = 1.0,
        .cur_iter = 0,
        .last_overflow_iter = -1,
        .cur_hysteresis = 1,
        .delayed_shift = 1,
        .window = 1000,
        .min_scale = 1.0,
    };
    if (mode == DSRT_SCALER_NONE)
        return DSRT_STATUS_OK;
    if (mode != DSRT_SCALER_STATIC && mode != DSRT_SCALER_DYNAMIC && mode != DSRT_SCALER_STAGE0)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "loss_scaler_init: unknown mode %d",
                              (int)mode);
    if (!fp16)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "loss_scaler_init: fp16 scaling needs the fp16 config");
    bool is_static = mode == DSRT_SCALER_STATIC || (mode == DSRT_SCALER_STAGE0 && fp16->loss_scale > 0);
    if (is_static) {
        if (!(fp16->loss_scale > 0) || !isfinite(fp16->loss_scale))
            return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG,
                                  "fp16.loss_scale: a static loss scale must be a finite number > 0 (got %g)",
                                  fp16->loss_scale);
        s->cur_scale = fp16->loss_scale;
        return DSRT_STATUS_OK;
    }
    if (fp16->initial_scale_power < 0 || fp16->initial_scale_power > 1023)
        return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG,
                              "fp16.initial_scale_power: 2^%lld is not a finite positive scale",
                              (long long)fp16->initial_scale_power);
    if (fp16->loss_scale_window <= 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG, "fp16.loss_scale_window: must be > 0 (got %lld)",
                              (long long)fp16->loss_scale_window);
    if (fp16->min_loss_scale <= 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG, "fp16.min_loss_scale: must be > 0 (got %lld)",
                              (long long)fp16->min_loss_scale);
    /* stage 0 ignores hysteresis, so only the dynamic scaler needs a usable one */
    if (mode == DSRT_SCALER_DYNAMIC && fp16->hysteresis <= 0)
        return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG, "fp16.hysteresis: must be > 0 (got %lld)",
                              (long long)fp16->hysteresis);
    s->dynamic = true;
    s->cur_scale = ldexp(1.0, (int)fp16->initial_scale_power);
    s->window = fp16->loss_scale_window;
    s->min_scale = (double)fp16->min_loss_scale;
    if (mode == DSRT_SCALER_DYNAMIC) {
        s->delayed_shift = fp16->hysteresis;
        s->cur_hysteresis = fp16->hysteresis;
        s->consecutive_hysteresis = fp16->consecutive_hysteresis;
    }
    return DSRT_STATUS_OK;
}

/* DeepSpeed's DynamicLossScaler.update_scale. */
static dsrt_status update_dynamic(dsrt_loss_scaler *s, bool overflow)
{
    if (overflow) {
        if (s->delayed_shift == 1 || s->cur_hysteresis == 1) {
            /* DeepSpeed raises here and the run ends; returning before any
             * field changes leaves the scaler as it was before this call */
            if (s->cur_scale == s->min_scale)
                return dsrt_error_set(DSRT_STATUS_OUT_OF_RANGE,
                                      "loss scale already at minimum (%g) - cannot decrease scale anymore",
                                      s->min_scale);
            double next = s->cur_scale / SCALE_FACTOR;
            s->cur_scale = s->min_scale > next ? s->min_scale : next;
        } else {
            /* hysteresis: this overflow costs a skipped step but not the scale */
            s->cur_hysteresis -= 1;
        }
        s->last_overflow_iter = s->cur_iter;
    } else {
        if (s->consecutive_hysteresis)
            s->cur_hysteresis = s->delayed_shift;
        /* >= 0.17.1: grow on the (window+1)-th clean iteration after an
         * overflow (from the start: at iteration index `window`) */
        int64_t stable_interval = s->cur_iter - s->last_overflow_iter - 1;
        if (stable_interval > 0 && stable_interval % s->window == 0) {
            /* only growth refills hysteresis, unless consecutive_hysteresis did */
            if (!s->consecutive_hysteresis)
                s->cur_hysteresis = s->delayed_shift;
            s->cur_scale *= SCALE_FACTOR;
        }
    }
    s->cur_iter += 1;
    return DSRT_STATUS_OK;
}

/* FP16_Optimizer._update_scale (ZeRO stage 0): no hysteresis, and at the
 * floor it simply stays there. */
static void update_stage0(dsrt_loss_scaler *s, bool overflow)
{
    if (s->dynamic) {
        if (overflow) {
            double next = s->cur_scale / SCALE_FACTOR;
            s->cur_scale = s->min_scale > next ? s->min_scale : next;
            s->last_overflow_iter = s->cur_iter;
        } else {
            int64_t stable_interval = s->cur_iter - s->last_overflow_iter - 1;
            if (stable_interval > 0 && stable_interval % s->window == 0)
                s->cur_scale *= SCALE_FACTOR;
        }
    }
    s->cur_iter += 1;
}

dsrt_status dsrt_loss_scaler_update(dsrt_loss_scaler *s, bool overflow)
{
    switch (s->mode) {
    case DSRT_SCALER_DYNAMIC: return update_dynamic(s, overflow);
    case DSRT_SCALER_STAGE0: update_stage0(s, overflow); return DSRT_STATUS_OK;
    case DSRT_SCALER_STATIC:
    case DSRT_SCALER_NONE: break;
    }
    /* the scale is fixed; count the boundary so cur_iter means the same everywhere */
    s->cur_iter += 1;
    return DSRT_STATUS_OK;
}

double dsrt_loss_scaler_scale(const dsrt_loss_scaler *s) { return s->cur_scale; }

int dsrt_loss_scaler_overflow_message(const dsrt_loss_scaler *s, double prev_scale, char *buf,
                                      size_t size)
{
    switch (s->mode) {
    case DSRT_SCALER_DYNAMIC:
        /* the scale is unchanged after an overflow exactly when hysteresis took
         * it (halving always moves it: at the floor update() fails instead) */
        if (s->cur_scale == prev_scale)
            return snprintf(buf, size,
                            "[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: %.0f, "
                            "but hysteresis is %lld. Reducing hysteresis to %lld",
                            trunc(prev_scale), (long long)(s->cur_hysteresis + 1),
                            (long long)s->cur_hysteresis);
        return snprintf(buf, size,
                        "[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: %.0f, "
                        "reducing to %.0f",
                        trunc(prev_scale), trunc(s->cur_scale));
    case DSRT_SCALER_STAGE0: {
        char a[32], b[32];
        dsrt_format_double(a, prev_scale);
        dsrt_format_double(b, s->cur_scale);
        return snprintf(buf, size, "Overflow detected. Skipping step. Attempted loss scale: %s, reducing to %s",
                        a, b);
    }
    case DSRT_SCALER_STATIC:
    case DSRT_SCALER_NONE: break;
    }
    if (size > 0)
        buf[0] = '\0';
    return 0;
}
