/* The training engine (see engine.h). One rank, ZeRO stage 0 layout: every
 * parameter, gradient, master and moment is local. The step sequence follows
 * DeepSpeed 0.19 (spec 4.3, 6.2, 6.3, 7.3):
 *   micro-step: loss gradient seeded with S / gas (S = loss scale before this
 *               boundary's update), gradients accumulate in the storage type;
 *   boundary:   one pass over the gradients: sum of squares + inf/nan;
 *               overflow -> scaler update, drop the gradients, count a skipped
 *               step, no scheduler step;
 *               else the scaler update, unscale with the *post-update* scale and
 *               clip, both as one multiplier, AdamW, scheduler step. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "common/adamw.h"
#include "config.h"
#include "engine.h"
#include "gpt2.h"
#include "internal.h"
#include "loss_scaler.h"
#include "lr_sched.h"

struct dsrt_engine {
    ds_config cfg;
    dsrt_gpt2_config mcfg;
    dsrt_backend *be;
    dsrt_gpt2 *model;
    size_t n;       /* parameters */
    float *master;  /* (n) fp32 masters; the parameter buffer itself for fp32 */
    float *m, *v;   /* (n) Adam moments */
    dsrt_lr_sched sched;
    dsrt_loss_scaler scaler;
    bool fp16, check_overflow;
    int64_t adam_step, global_steps, skipped_steps, global_samples, micro_steps;
    double window_loss;
    int window_n;
    int B, T, gas;
    char device[32];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static dsrt_status make_backend(const char *device, dsrt_dtype dt, dsrt_backend **be, char *name,
                                size_t name_len)
{
    if (!device || !*device || !strcmp(device, "cpu")) {
        snprintf(name, name_len, "cpu");
        return dsrt_backend_cpu_create(dt, be);
    }
    if (!strncmp(device, "cuda", 4)) {
        int idx = 0;
        if (device[4] == ':')
            idx = atoi(device + 5);
        else if (device[4])
            goto bad;
        snprintf(name, name_len, "cuda:%d", idx);
        return dsrt_backend_cuda_create(dt, idx, be);
    }
bad:
    return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                          "engine_create: device \"%s\": use \"cpu\", \"cuda\" or \"cuda:N\"", device);
}

void engine_destroy(dsrt_engine *e)
{
    if (!e)
        return;
    if (e->be) {
        if (e->master && e->master != dsrt_gpt2_param_buffer(e->model))
            e->be->free(e->be, e->master);
        e->be->free(e->be, e->m);
        e->be->free(e->be, e->v);
    }
    dsrt_gpt2_destroy(e->model);
    if (e->be)
        e->be->destroy(e->be);
    free(e);
}

static dsrt_adamw_args adam_args(dsrt_engine *e, double lr, float grad_mul)
{
    const ds_optimizer_config *o = &e->cfg.optimizer;
    /* the scheduler holds the betas of the next update: the optimizer's, or
     * OneCycle's cycled ones */
    float b1 = (float)e->sched.beta1, b2 = (float)e->sched.beta2;
    dsrt_adamw_args a = {
        .lr = (float)lr, .beta1 = b1, .beta2 = b2, .eps = (float)o->eps,
        .weight_decay = (float)o->weight_decay, .grad_mul = grad_mul, .bc1 = 1.0f, .bc2 = 1.0f,
        .adamw_mode = o->adamw ? 1 : 0,
    };
    if (o->bias_correction) {
        a.bc1 = dsrt_adamw_bias_correction(b1, (long)e->adam_step);
        a.bc2 = dsrt_adamw_bias_correction(b2, (long)e->adam_step);
    }
    return a;
}

dsrt_status engine_create(const dsrt_engine_create_args *a, dsrt_engine **out)
{
    *out = NULL;
    if (!a->config || !a->model)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_create: config and model are required");
    const ds_config *c = &a->config->c;
    if (c->optimizer.kind != DS_OPT_ADAM)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "engine_create: optimizer \"%s\": the built-in engine runs "
                              "Adam/AdamW (FusedAdam) only",
                              c->optimizer.type ? c->optimizer.type : "(none)");
    if (c->optimizer.amsgrad)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "engine_create: optimizer.params.amsgrad "
                                                       "is not supported by FusedAdam");
    dsrt_engine *e = calloc(1, sizeof *e);
    if (!e)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create");
    e->cfg = *c;
    /* the strings point into the config handle, which the host may destroy */
    e->cfg.optimizer.type = NULL;
    e->cfg.scheduler.type = NULL;
    dsrt_status st = dsrt_gpt2_config_load(a->model, &e->mcfg);
    if (st)
        goto fail;
    e->B = (int)c->train_micro_batch_size_per_gpu;
    e->gas = (int)c->gradient_accumulation_steps;
    e->T = a->seq_len > 0 ? a->seq_len : e->mcfg.n_positions;
    if (e->T > e->mcfg.n_positions) {
        st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                            "engine_create: seq_len %d exceeds the model's n_positions %d", e->T,
                            e->mcfg.n_positions);
        goto fail;
    }
    dsrt_dtype dt = c->precision == DSRT_PRECISION_FP16   ? DSRT_F16
                    : c->precision == DSRT_PRECISION_BF16 ? DSRT_BF16
                                                          : DSRT_F32;
    e->fp16 = dt == DSRT_F16;
    e->check_overflow = e->fp16 || (dt == DSRT_BF16 && c->bf16.check_grad_overflow);
    if ((st = make_backend(a->device, dt, &e->be, e->device, sizeof e->device)) ||
        (st = dsrt_gpt2_create(&e->mcfg, e->be, e->B, e->T, &e->model)) ||
        (st = dsrt_gpt2_init(e->model, a->seed)))
        goto fail;
    e->n = dsrt_gpt2_num_params(e->model);
    dsrt_backend *be = e->be;
    if ((st = be->alloc(be, e->n * sizeof(float), (void **)&e->m)) ||
        (st = be->alloc(be, e->n * sizeof(float), (void **)&e->v)))
        goto fail;
    if (dt == DSRT_F32) {
        e->master = dsrt_gpt2_param_buffer(e->model);
    } else {
        /* masters start from the 16-bit-rounded weights (spec 6.5) */
        float *h = malloc(e->n * sizeof(float));
        if (!h) {
            st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create: master weights");
            goto fail;
        }
        if (!(st = be->alloc(be, e->n * sizeof(float), (void **)&e->master)) &&
            !(st = dsrt_gpt2_get_params_f32(e->model, h)))
            st = be->upload(be, e->master, h, e->n * sizeof(float));
        free(h);
        if (st)
            goto fail;
    }
    dsrt_loss_scaler_mode mode = DSRT_SCALER_NONE;
    if (e->fp16)
        mode = c->zero_stage == 0 ? DSRT_SCALER_STAGE0 : c->fp16.loss_scale > 0 ? DSRT_SCALER_STATIC
                                                                                 : DSRT_SCALER_DYNAMIC;
    if ((st = dsrt_loss_scaler_init(&e->scaler, mode, &c->fp16)) ||
        (st = dsrt_lr_sched_init(&e->sched, &e->cfg.scheduler, c->optimizer.lr,
                                 c->optimizer.betas[0], c->optimizer.betas[1])))
        goto fail;
    if (e->fp16 && c->zero_stage == 0) {
        /* FP16_Optimizer steps once with zero gradients at construction, in
         * every DeepSpeed version (spec 6.5): Adam step 1, and with AdamW every
         * master scaled by (1 - lr * wd) at the config's lr. The model's
         * gradient buffer is still all zeros (allocated zeroed, no backward yet). */
        e->adam_step = 1;
        dsrt_adamw_args aa = adam_args(e, c->optimizer.lr, 1.0f);
        if ((st = be->adamw_step(be, dsrt_gpt2_param_buffer(e->model), e->master, e->m, e->v,
                                 dsrt_gpt2_grad_buffer(e->model), e->n, &aa)))
            goto fail;
        dsrt_log(DSRT_LOG_INFO, "fp16 with ZeRO stage 0: one zero-gradient AdamW step at init, "
                                "as DeepSpeed's FP16_Optimizer does");
    }
    dsrt_log(DSRT_LOG_INFO,
             "engine: GPT-2 %s, %zu parameters, %s %s, micro batch %d x %d tokens, "
             "gradient accumulation %d",
             e->mcfg.source, e->n, e->device, dsrt_dtype_name(dt), e->B, e->T, e->gas);
    *out = e;
    return DSRT_STATUS_OK;
fail:
    engine_destroy(e);
    return st;
}

/* The optimizer boundary (spec 4.3). */
static dsrt_status boundary(dsrt_engine *e, dsrt_step_report *r)
{
    dsrt_backend *be = e->be;
    void *grads = dsrt_gpt2_grad_buffer(e->model);
    double sumsq = 0;
    int nonfinite = 0;
    DSRT_TRY(be->grad_stats(be, grads, e->n, &sumsq, &nonfinite));
    bool overflow = e->check_overflow && nonfinite;
    double prev = dsrt_loss_scaler_scale(&e->scaler);
    double lr = dsrt_lr_sched_lr(&e->sched);
    if (e->fp16) {
        char msg[256];
        dsrt_status st = dsrt_loss_scaler_update(&e->scaler, overflow);
        if (st)
            return st;
        if (overflow && dsrt_loss_scaler_overflow_message(&e->scaler, prev, msg, sizeof msg) > 0)
            dsrt_log(DSRT_LOG_INFO, "%s", msg);
    }
    double scale = dsrt_loss_scaler_scale(&e->scaler);
    e->global_steps++;
    e->global_samples += e->cfg.train_batch_size;
    r->lr = lr;
    r->loss_scale = scale;
    if (overflow) {
        e->skipped_steps++;
        r->skipped = 1;
        r->grad_norm = -1;
    } else {
        /* the norm of the scaled gradients, as float32 (spec 7.4) */
        float norm_s = (float)sqrt(sumsq);
        double combined = scale;
        double clip = e->cfg.gradient_clipping;
        if (clip > 0) {
            double k = ((double)norm_s / scale + 1e-6) / clip;
            if (k > 1)
                combined = k * scale;
        }
        r->grad_norm = isfinite(norm_s) ? (double)norm_s / prev : -1;
        e->adam_step++;
        dsrt_adamw_args aa = adam_args(e, lr, (float)(1.0 / combined));
        DSRT_TRY(be->adamw_step(be, dsrt_gpt2_param_buffer(e->model), e->master, e->m, e->v, grads,
                           e->n, &aa));
        dsrt_lr_sched_step(&e->sched);
    }
    DSRT_TRY(dsrt_gpt2_zero_grad(e->model));
    if (e->cfg.steps_per_print > 0 && e->global_steps % e->cfg.steps_per_print == 0) {
        /* DeepSpeed's engine log line (rank 0) */
        dsrt_log(DSRT_LOG_INFO, "step=%lld, skipped=%lld, lr=[%g], mom=[[%g, %g]]",
                 (long long)e->global_steps, (long long)e->skipped_steps,
                 dsrt_lr_sched_lr(&e->sched), e->sched.beta1, e->sched.beta2);
    }
    return DSRT_STATUS_OK;
}

dsrt_status engine_train(dsrt_engine *e, const int32_t *tokens, const int32_t *targets,
                         int micro_batches, dsrt_step_report *r)
{
    if (!tokens || !targets || micro_batches < 1)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_train: tokens, targets and micro_batches >= 1 are required");
    memset(r, 0, sizeof *r);
    double t0 = now_s();
    size_t per = (size_t)e->B * e->T;
    for (int i = 0; i < micro_batches; i++) {
        /* the scale this micro-step's backward uses is the current one */
        float dloss = (float)(dsrt_loss_scaler_scale(&e->scaler) / e->gas);
        float loss = 0;
        DSRT_TRY(dsrt_gpt2_forward(e->model, tokens + i * per, targets + i * per, e->B, e->T,
                              DSRT_GPT2_TRAIN, dloss, &loss));
        DSRT_TRY(dsrt_gpt2_backward(e->model, NULL, NULL));
        e->micro_steps++;
        e->window_loss += loss;
        e->window_n++;
        r->boundary = 0;
        if (e->micro_steps % e->gas == 0) {
            r->loss = e->window_loss / e->window_n;
            e->window_loss = 0;
            e->window_n = 0;
            DSRT_TRY(boundary(e, r));
            r->boundary = 1;
        } else {
            r->loss = e->window_loss / e->window_n;
            r->lr = dsrt_lr_sched_lr(&e->sched);
            r->loss_scale = dsrt_loss_scaler_scale(&e->scaler);
        }
    }
    DSRT_TRY(e->be->sync(e->be));
    r->global_steps = e->global_steps;
    r->skipped_steps = e->skipped_steps;
    r->global_samples = e->global_samples;
    r->micro_steps = e->micro_steps;
    double dt = now_s() - t0;
    r->tokens_per_s = dt > 0 ? (double)per * micro_batches / dt : 0;
    return DSRT_STATUS_OK;
}

dsrt_status engine_evaluate(dsrt_engine *e, const int32_t *tokens, const int32_t *targets,
                            int batch, double *loss)
{
    if (!tokens || !targets || batch < 1)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_evaluate: tokens, targets and batch >= 1 are required");
    double sum = 0;
    long long counted = 0;
    for (int b0 = 0; b0 < batch; b0 += e->B) {
        int nb = batch - b0 < e->B ? batch - b0 : e->B;
        const int32_t *tk = tokens + (size_t)b0 * e->T, *tg = targets + (size_t)b0 * e->T;
        long long c = 0;
        for (size_t i = 0; i < (size_t)nb * e->T; i++)
            c += tg[i] != -100;
        if (!c)
            continue;
        float l = 0;
        DSRT_TRY(dsrt_gpt2_forward(e->model, tk, tg, nb, e->T, DSRT_GPT2_EVAL, 1.0f, &l));
        sum += (double)l * (double)c;
        counted += c;
    }
    *loss = counted ? sum / (double)counted : NAN;
    return DSRT_STATUS_OK;
}

void engine_info(dsrt_engine *e, dsrt_engine_info_args *a)
{
    a->num_parameters = (int64_t)e->n;
    a->seq_len = e->T;
    a->vocab_size = e->mcfg.vocab_size;
    a->micro_batch_size = e->B;
    a->gradient_accumulation_steps = e->gas;
    a->device = e->device;
    a->precision = e->cfg.precision;
}
