/* DeepSpeed's LR schedules (see lr_sched.h; spec section 5).
 *
 * The formulas are written operation for operation as DeepSpeed 0.19.6
 * evaluates them in Python (float = IEEE double, int / int = correctly
 * rounded true division, math.log/math.cos = the C library's), so that the
 * lr matches DeepSpeed's bit for bit rather than only mathematically: e.g.
 * the log warmup multiplies by a precomputed 1/ln(W) instead of dividing by
 * ln(W), and lr = min + (max - min) * gamma even where gamma is 1.
 * Python's max(a, b) returns a unless b > a, and min(a, b) returns a unless
 * b < a; the helpers below keep that order (it decides which zero comes back). */
#include <math.h>
#include <stddef.h>

#include "base/internal.h"
#include "engine/lr_sched.h"

/* No fused multiply-add: Python rounds every product and sum separately. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define ONE_CYCLE_BETA2 0.99 /* OneCycle pins beta2 while it cycles beta1 */

static double py_max(double a, double b) { return b > a ? b : a; }
static double py_min(double a, double b) { return b < a ? b : a; }

/* Python's float modulo: the result takes the sign of the divisor. */
static double py_fmod(double a, double b)
{
    double m = fmod(a, b);
    if (m != 0.0) {
        if ((b < 0) != (m < 0))
            m += b;
    } else {
        m = copysign(0.0, b);
    }
    return m;
}

/* The warmup length actually used: DeepSpeed clamps to at least 2 so that
 * ln(W) is not 0. */
static int64_t warmup_steps(const ds_scheduler_config *c)
{
    return c->warmup_num_steps > 2 ? c->warmup_num_steps : 2;
}

/* The warmup fraction for 0 <= lbi < W: log or linear. */
static double warmup_fraction(const ds_scheduler_config *c, int64_t lbi)
{
    int64_t w = warmup_steps(c);
    if (c->warmup_log) {
        double inverse_log_warm_up = 1.0 / log((double)w);
        return inverse_log_warm_up * log((double)(lbi + 1));
    }
    return (double)lbi / (double)w;
}

/* WarmupLR and WarmupDecayLR: lr = min + (max - min) * gamma. */
static double warmup_lr(const ds_scheduler_config *c, int64_t lbi, bool decay)
{
    double min_lr = c->warmup_min_lr;
    if (lbi < 0)
        return min_lr; /* DeepSpeed warns "before it has started" and returns the minimum */
    double delta = c->warmup_max_lr - min_lr;
    int64_t w = warmup_steps(c);
    double gamma;
    if (lbi < w) {
        gamma = warmup_fraction(c, lbi);
    } else if (!decay) {
        gamma = 1.0;
    } else {
        /* linear decay to 0 at total_num_steps, then held at 0 (lr = min) */
        double span = py_max(1.0, (double)(c->total_num_steps - w));
        gamma = py_max(0.0, (double)(c->total_num_steps - lbi) / span);
    }
    return min_lr + delta * gamma;
}

/* WarmupCosineLR: a ratio of the optimizer's own lr. */
static double cosine_ratio(const ds_scheduler_config *c, int64_t lbi)
{
    if (lbi < 0)
        return 0.0;
    int64_t w = warmup_steps(c);
    if (lbi < w) {
        double r = warmup_fraction(c, lbi);
        double ratio_delta = 1.0 - c->warmup_min_ratio;
        return c->warmup_min_ratio + r * ratio_delta;
    }
    int64_t real_last_step = lbi - w + 1;
    int64_t real_total_steps = c->total_num_steps - w > 1 ? c->total_num_steps - w : 1;
    /* >= 0.19.3 clamps the progress: past total_num_steps the ratio stays at
     * cos_min_ratio instead of climbing back up the cosine */
    double progress = py_min(1.0, (double)real_last_step / (double)real_total_steps);
    double ratio_delta = 1.0 - c->cos_min_ratio;
    double ratio = (1.0 + cos(M_PI * progress)) / 2.0;
    return py_max(0.0, c->cos_min_ratio + ratio_delta * ratio);
}

/* OneCycle's position in the cycle, 0 at the ends and 1 at the peak. */
static double one_cycle_scale_factor(const ds_scheduler_config *c, int64_t lbi)
{
    double first = (double)c->cycle_first_step_size;
    double second = (double)c->cycle_second_step_size;
    double total = first + second;
    double step_ratio = first / total;
    int64_t batch_iteration = lbi + 1;
    double cycle = floor(1.0 + (double)batch_iteration / total);
    double x = 1.0 + (double)batch_iteration / total - cycle;
    double scale_factor;
    int64_t stair_count;
    if (x <= step_ratio) {
        scale_factor = x / step_ratio;
        stair_count = c->cycle_first_stair_count;
    } else {
        scale_factor = (x - 1.0) / (step_ratio - 1.0);
        stair_count = c->cycle_second_stair_count;
    }
    /* >= 0.19.4: stairs hold the value flat over count equal slices of each
     * half, quantised from the integer offset in the cycle (not from
     * scale_factor, which can land a hair under an exact stair) */
    if (stair_count > 0) {
        double cycle_iteration = py_fmod((double)batch_iteration, total);
        double stair_position;
        if (cycle_iteration <= first)
            stair_position = cycle_iteration * (double)stair_count / first;
        else
            stair_position = (total - cycle_iteration) * (double)stair_count / second;
        scale_factor = floor(stair_position) / (double)stair_count;
    }
    return scale_factor;
}

static double one_cycle_eval(const ds_scheduler_config *c, int64_t lbi, double *beta1)
{
    double total = (double)c->cycle_first_step_size + (double)c->cycle_second_step_size;
    if ((double)lbi < total) {
        double sf = one_cycle_scale_factor(c, lbi);
        *beta1 = c->cycle_max_mom - (c->cycle_max_mom - c->cycle_min_mom) * sf;
        return c->cycle_min_lr + (c->cycle_max_lr - c->cycle_min_lr) * sf;
    }
    /* after the cycle: lr decays from the minimum, beta1 from the maximum;
     * a decay_step_size or rate of 0 switches the decay off */
    double decay_iteration = (double)lbi - total + 1.0;
    bool no_step = c->decay_step_size == 0;
    double lr = c->cycle_min_lr;
    if (!no_step && c->decay_lr_rate != 0.0) {
        double interval = decay_iteration / (double)c->decay_step_size;
        lr = c->cycle_min_lr / (1.0 + c->decay_lr_rate * interval);
    }
    *beta1 = c->cycle_max_mom;
    if (!no_step && c->decay_mom_rate != 0.0) {
        double interval = decay_iteration / (double)c->decay_step_size;
        *beta1 = c->cycle_max_mom * (1.0 + c->decay_mom_rate * interval);
    }
    return lr;
}

static double range_test_lr(const ds_scheduler_config *c, int64_t lbi)
{
    double interval = (double)(lbi + 1) / (double)c->lr_range_test_step_size;
    if (c->lr_range_test_staircase)
        interval = floor(interval);
    return c->lr_range_test_min_lr * (1.0 + c->lr_range_test_step_rate * interval);
}

/* The Hugging Face Trainer's schedules (transformers/optimization.py, the
 * lambdas get_scheduler builds; torch's LambdaLR multiplies the optimizer's
 * initial lr by lambda(k), k = the scheduler's step count, which is lbi + 1
 * in DeepSpeed's counting: construction steps once). Python's float
 * arithmetic in the same order. */
static double hf_warm(double k, double w) { return k / py_max(1.0, w); }

static double hf_lambda(const ds_scheduler_config *c, double base_lr, int64_t lbi)
{
    double k = (double)(lbi + 1), w = (double)c->warmup_num_steps, t = (double)c->total_num_steps;
    bool warming = k < w;
    switch (c->hf) {
    case DS_HF_CONSTANT: return 1.0;
    case DS_HF_CONSTANT_WITH_WARMUP: return warming ? hf_warm(k, w) : 1.0;
    case DS_HF_LINEAR:
        if (warming)
            return hf_warm(k, w);
        return py_max(0.0, (t - k) / py_max(1.0, t - w));
    case DS_HF_COSINE: {
        if (warming)
            return hf_warm(k, w);
        double progress = (k - w) / py_max(1.0, t - w);
        return py_max(0.0, 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress))); /* num_cycles 0.5 */
    }
    case DS_HF_COSINE_WITH_RESTARTS: {
        if (warming)
            return hf_warm(k, w);
        double progress = (k - w) / py_max(1.0, t - w);
        if (progress >= 1.0)
            return 0.0;
        return py_max(0.0, 0.5 * (1.0 + cos(M_PI * py_fmod(1.0 * progress, 1.0)))); /* num_cycles 1 */
    }
    case DS_HF_POLYNOMIAL: {
        /* lr_end 1e-7, power 1.0; lr_init is the optimizer's initial lr */
        const double lr_end = 1e-7, power = 1.0;
        if (warming)
            return hf_warm(k, w);
        if (k > t)
            return lr_end / base_lr;
        double lr_range = base_lr - lr_end, decay_steps = t - w;
        double pct_remaining = 1.0 - (k - w) / decay_steps;
        double decay = lr_range * pow(pct_remaining, power) + lr_end;
        return decay / base_lr;
    }
    case DS_HF_INVERSE_SQRT: {
        double timescale = w > 0 ? w : 10000.0; /* num_warmup_steps or 10_000 */
        if (warming)
            return hf_warm(k, w);
        double shift = timescale - w;
        return 1.0 / sqrt((k + shift) / timescale);
    }
    }
    return 1.0;
}

double dsrt_lr_sched_eval(const dsrt_lr_sched *s, int64_t lbi, double *beta1, double *beta2)
{
    const ds_scheduler_config *c = &s->cfg;
    double b1 = s->beta1, b2 = s->beta2, lr = s->base_lr;
    switch (c->kind) {
    case DS_SCHED_WARMUP_LR: lr = warmup_lr(c, lbi, false); break;
    case DS_SCHED_WARMUP_DECAY_LR: lr = warmup_lr(c, lbi, true); break;
    case DS_SCHED_WARMUP_COSINE_LR: lr = s->base_lr * cosine_ratio(c, lbi); break;
    case DS_SCHED_ONE_CYCLE: {
        double m;
        lr = one_cycle_eval(c, lbi, &m);
        if (s->sets_betas) {
            b1 = m;
            b2 = ONE_CYCLE_BETA2;
        }
        break;
    }
    case DS_SCHED_LR_RANGE_TEST: lr = range_test_lr(c, lbi); break;
    case DS_SCHED_HF: lr = s->base_lr * hf_lambda(c, s->base_lr, lbi); break;
    case DS_SCHED_NONE:
    case DS_SCHED_TORCH: break;
    }
    if (beta1)
        *beta1 = b1;
    if (beta2)
        *beta2 = b2;
    return lr;
}

/* What the constructor writes at lbi == -1: the step() value at -1, except
 * that OneCycle sets lr = cycle_min_lr and betas = (cycle_min_mom, 0.99)
 * directly (step() at -1 would give beta1 = cycle_max_mom). */
static void write_initial(dsrt_lr_sched *s)
{
    if (s->cfg.kind == DS_SCHED_ONE_CYCLE) {
        s->lr = s->cfg.cycle_min_lr;
        if (s->sets_betas) {
            s->beta1 = s->cfg.cycle_min_mom;
            s->beta2 = ONE_CYCLE_BETA2;
        }
        return;
    }
    s->lr = dsrt_lr_sched_eval(s, -1, NULL, NULL);
}

static const char *sched_name(const ds_scheduler_config *c)
{
    switch (c->kind) {
    case DS_SCHED_WARMUP_LR: return "WarmupLR";
    case DS_SCHED_WARMUP_DECAY_LR: return "WarmupDecayLR";
    case DS_SCHED_WARMUP_COSINE_LR: return "WarmupCosineLR";
    default: return "scheduler";
    }
}

dsrt_status dsrt_lr_sched_init(dsrt_lr_sched *s, const ds_scheduler_config *cfg, double base_lr,
                               double beta1, double beta2)
{
    if (!s || !cfg)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "lr_sched_init: NULL argument");
    *s = (dsrt_lr_sched){0};
    s->cfg = *cfg;
    s->cfg.type = NULL;
    s->base_lr = base_lr;
    s->lr = base_lr;
    s->beta1 = beta1;
    s->beta2 = beta2;
    ds_scheduler_config *c = &s->cfg;
    switch (c->kind) {
    case DS_SCHED_NONE:
        /* no scheduler: the optimizer's lr stays; lbi only counts applied steps */
        s->last_batch_iteration = -1;
        return DSRT_STATUS_OK;
    case DS_SCHED_TORCH:
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "scheduler.type: torch.optim.lr_scheduler.%s is not implemented by dsrt; "
                              "use one of DeepSpeed's schedules (WarmupLR, WarmupDecayLR, "
                              "WarmupCosineLR, OneCycle, LRRangeTest)",
                              cfg->type ? cfg->type : "<class>");
    case DS_SCHED_WARMUP_LR:
    case DS_SCHED_WARMUP_DECAY_LR:
    case DS_SCHED_WARMUP_COSINE_LR:
        if (c->warmup_num_steps <= 0)
            return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG,
                                  "scheduler.params.warmup_num_steps: %s needs a positive integer (got %lld)",
                                  sched_name(c), (long long)c->warmup_num_steps);
        /* >= 0.17.2: no warmup_max_lr means the optimizer's lr */
        if (isnan(c->warmup_max_lr))
            c->warmup_max_lr = base_lr;
        break;
    case DS_SCHED_ONE_CYCLE:
        if (c->cycle_second_step_size < 0)
            c->cycle_second_step_size = c->cycle_first_step_size;
        if (c->cycle_second_stair_count < 0)
            c->cycle_second_stair_count = c->cycle_first_stair_count;
        /* DeepSpeed divides by the first half's length (and by the cycle's) */
        if (c->cycle_first_step_size <= 0)
            return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG,
                                  "scheduler.params.cycle_first_step_size: OneCycle needs a positive "
                                  "integer (got %lld)",
                                  (long long)c->cycle_first_step_size);
        s->sets_betas = c->cycle_momentum;
        break;
    case DS_SCHED_HF:
        /* polynomial divides by max_steps - warmup past the warmup, as transformers does */
        if (c->hf == DS_HF_POLYNOMIAL && c->total_num_steps <= c->warmup_num_steps)
            return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG,
                                  "scheduler: the Trainer's polynomial schedule needs max_steps (%lld) above "
                                  "its warmup steps (%lld)",
                                  (long long)c->total_num_steps, (long long)c->warmup_num_steps);
        break;
    case DS_SCHED_LR_RANGE_TEST:
        if (c->lr_range_test_step_size == 0)
            return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG,
                                  "scheduler.params.lr_range_test_step_size: LRRangeTest divides by it; "
                                  "0 is not allowed");
        break;
    default:
        return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG, "scheduler: unknown kind %d", (int)c->kind);
    }
    s->last_batch_iteration = c->last_batch_iteration;
    if (s->last_batch_iteration == -1)
        write_initial(s);
    return DSRT_STATUS_OK;
}

void dsrt_lr_sched_step(dsrt_lr_sched *s)
{
    s->last_batch_iteration += 1;
    if (s->cfg.kind == DS_SCHED_NONE)
        return;
    s->lr = dsrt_lr_sched_eval(s, s->last_batch_iteration, &s->beta1, &s->beta2);
}

double dsrt_lr_sched_lr(const dsrt_lr_sched *s) { return s->lr; }

int64_t dsrt_lr_sched_state_save(const dsrt_lr_sched *s) { return s->last_batch_iteration; }

void dsrt_lr_sched_state_restore(dsrt_lr_sched *s, int64_t last_batch_iteration)
{
    s->last_batch_iteration = last_batch_iteration;
    if (s->cfg.kind == DS_SCHED_NONE)
        return;
    if (last_batch_iteration == -1)
        write_initial(s);
    else
        s->lr = dsrt_lr_sched_eval(s, last_batch_iteration, &s->beta1, &s->beta2);
}
