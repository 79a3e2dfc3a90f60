/* The training engine (see engine.h): one rank of a data-parallel group
 * running DeepSpeed's step under ZeRO stage 0, 1 or 2 (spec 4-7).
 *
 * Buffers (backend memory, allocated once at creation):
 *   params, grads   (n)  the model's flat buffers in registration order (the
 *                        GPT-2's own, or the engine's for a host model)
 *   master, m, v    (P)  fp32; P = n at stage 0, else this rank's partition of
 *                        the padded flat buffer (spec 7.1); stage-0 fp32
 *                        masters are the weights themselves
 *   pgrad           (P)  stage 1/2: the reduced gradient slice this rank owns,
 *                        accumulated across micro-steps in the model dtype;
 *                        at stage 1 this rank's range of `grads` itself
 *                        (stage 2 has no `grads`: the backward writes into
 *                        bucket slots)
 *   buckets    (1 or 2)  reduce_bucket_size elements each (two with overlap_comm)
 *
 * Micro-step: the loss gradient is seeded with S / gas. As each parameter's
 * gradient completes, the grad-ready hook copies it into the open bucket; a
 * full bucket is pre-divided by N, cast to communication_data_type and
 * all-reduced on the comm thread while the backward goes on, then its owned
 * slices are added into pgrad (stage 1/2) or copied back (stage 0).
 * Stage 2 reduces on every micro-step; stages 0 and 1 on the boundary
 * micro-step only (in the hooks with overlap_comm, else after the backward).
 *
 * Boundary: one pass over the owned gradient gives the sum of squares and
 * the inf/nan check; one small all-reduce combines them (and the loss) over
 * ranks so every rank takes the same decision; then the scaler update, skip
 * or (unscale with the post-update scale and clip as one multiplier, AdamW on
 * the owned partition, all-gather of the new weights), the scheduler step. */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "zero/comm.h"
#include "kernels/common/adamw.h"
#include "config/config.h"
#include "zero/dist.h"
#include "engine/engine.h"
#include "engine/engine_impl.h"
#include "model/hf.h"
#include "model/model.h"
#include "base/internal.h"
#include "engine/loss_scaler.h"
#include "engine/lr_sched.h"
#include "zero/partition.h"
#include "zero/reducer.h"

static void *at(void *base, size_t elems, size_t esz) { return (char *)base + elems * esz; }

void engine_destroy(dsrt_engine *e)
{
    if (!e)
        return;
    dsrt_backend *be = e->be;
    if (be) {
        /* nothing may still be in flight on our buffers */
        if (e->ag.pending)
            (void)engine_params_settle(e);
        zero_reducer_free(&e->red);
        if (e->opt.master && e->opt.master != e->buf.params)
            be->ops->free(be, e->opt.master);
        be->ops->free(be, e->opt.m);
        be->ops->free(be, e->opt.v);
        if (!e->buf.pgrad_in_grads)
            be->ops->free(be, e->buf.pgrad);
        be->ops->free(be, e->buf.gather);
        if (e->buf.owned) {
            be->ops->free(be, e->buf.params);
            be->ops->free(be, e->buf.grads);
        }
    }
    engine_monitor_free(e); /* the comms summary: the comm is idle and still there */
    dsrt_model_destroy(e->model);
    if (e->own_comm && e->comm)
        e->comm->destroy(e->comm);
    if (be)
        be->ops->destroy(be);
    for (size_t i = 0; i < e->n_params && e->params; i++)
        free(e->params[i].owned_name);
    free(e->params);
    free(e->buf.tied);
    free(e->ag.ticket);
    free(e->ag.need);
    free(e->config_json);
    free(e->client_state);
    zero_layout_free(&e->lay);
    engine_groups_free(e);
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
        a.bc1 = dsrt_adamw_bias_correction(b1, (long)e->opt.step);
        a.bc2 = dsrt_adamw_bias_correction(b2, (long)e->opt.step);
    }
    return a;
}

/* ---------------------------------------------------------------- communicator */

static dsrt_status make_comm(dsrt_engine *e, dsrt_dist *d)
{
    return dist_make_comm(d, strcmp(e->be->name, "cpu") != 0, dsrt_backend_cuda_stream(e->be), &e->comm,
                          &e->own_comm);
}

/* ---------------------------------------------------------------- creation */

static dsrt_status host_params(dsrt_engine *e, const dsrt_engine_create_args *a)
{
    if (a->num_params < 1)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_create: a host model needs num_params >= 1 (got %d)",
                              (int)a->num_params);
    e->n_params = (size_t)a->num_params;
    e->params = calloc(e->n_params, sizeof *e->params);
    e->buf.tied = calloc(e->n_params, 1);
    if (!e->params || !e->buf.tied)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create: parameters");
    size_t off = 0;
    for (size_t i = 0; i < e->n_params; i++) {
        const dsrt_param_desc *d = &a->params[i];
        if (!d->name || !*d->name)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "engine_create: parameter %zu has no name", i);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(e->params[j].name, d->name))
                return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                      "engine_create: parameter name \"%s\" is used twice "
                                      "(indices %zu and %zu)",
                                      d->name, j, i);
        if (d->dtype != e->cfg.precision)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "engine_create: parameter \"%s\" is %s but the config trains in "
                                  "%s: register tensors in the config's precision",
                                  d->name,
                                  d->dtype == DSRT_PRECISION_FP16   ? "fp16"
                                  : d->dtype == DSRT_PRECISION_BF16 ? "bf16"
                                                                     : "fp32",
                                  dsrt_dtype_name(e->dt));
        if (d->ndim < 1 || d->ndim > 8)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "engine_create: parameter \"%s\": ndim %d (1..8)", d->name,
                                  (int)d->ndim);
        size_t numel = 1;
        for (int k = 0; k < d->ndim; k++) {
            if (d->shape[k] < 1)
                return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                      "engine_create: parameter \"%s\": dimension %d is %lld",
                                      d->name, k, (long long)d->shape[k]);
            numel *= (size_t)d->shape[k];
        }
        if (!d->data)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "engine_create: parameter \"%s\" has no initial data", d->name);
        e->params[i].owned_name = dsrt_strdup(d->name);
        if (!e->params[i].owned_name)
            return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create");
        e->params[i].name = e->params[i].owned_name;
        e->params[i].offset = off;
        e->params[i].numel = numel;
        e->params[i].ndim = d->ndim;
        for (int k = 0; k < d->ndim; k++)
            e->params[i].shape[k] = d->shape[k];
        off += numel;
    }
    e->n = off;
    return DSRT_STATUS_OK;
}

static dsrt_status upload_host_params(dsrt_engine *e, const dsrt_engine_create_args *a)
{
    dsrt_backend *be = e->be;
    size_t align = 2 * (size_t)e->world;
    e->buf.param_cap = (e->n + align - 1) / align * align;
    e->buf.owned = true;
    DSRT_TRY(be->ops->alloc(be, e->buf.param_cap * e->dsz, &e->buf.params));
    e->buf.slots = e->stage == 2 && a->grad_slots;
    if (!e->buf.slots) /* as long as the padded flat buffer: stage 1 keeps its reduced partition in it */
        DSRT_TRY(be->ops->alloc(be, e->buf.param_cap * e->dsz, &e->buf.grads));
    if (a->num_tied_params < 0 || (a->num_tied_params > 0 && !a->tied_params))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_create: num_tied_params %d needs tied_params", (int)a->num_tied_params);
    for (int32_t i = 0; i < a->num_tied_params; i++) {
        int64_t t = a->tied_params[i];
        if (t < 0 || (size_t)t >= e->n_params)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "engine_create: tied_params[%d] = %lld is not a parameter index (0..%zu)", (int)i,
                                  (long long)t, e->n_params - 1);
        e->buf.tied[t] = 1;
    }
    for (size_t i = 0; i < e->n_params; i++) {
        const dsrt_param_desc *d = &a->params[i];
        void *dst = at(e->buf.params, e->params[i].offset, e->dsz);
        size_t bytes = e->params[i].numel * e->dsz;
        if (d->on_device) {
            if (!strcmp(be->name, "cpu"))
                return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                      "engine_create: parameter \"%s\" says on_device, but the "
                                      "engine runs on the CPU",
                                      d->name);
            DSRT_TRY(be->ops->copy(be, dst, d->data, bytes));
        } else {
            DSRT_TRY(be->ops->upload(be, dst, d->data, bytes));
        }
    }
    return DSRT_STATUS_OK;
}

/* fp32 masters of the owned elements, from the (rounded) weights; padding 0.
 * Copied through a small host buffer, a chunk at a time. */
static dsrt_status init_masters(dsrt_engine *e)
{
    dsrt_backend *be = e->be;
    if (e->stage == 0 && e->dt == DSRT_F32) {
        e->opt.master = e->buf.params;
        return DSRT_STATUS_OK;
    }
    DSRT_TRY(be->ops->alloc(be, e->P * sizeof(float), (void **)&e->opt.master));
    enum { CHUNK = 1 << 20 };
    float *h = malloc(CHUNK * sizeof(float));
    if (!h)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create: master weights");
    dsrt_status st = DSRT_STATUS_OK;
    /* stage 0: the whole flat buffer; else this rank's slices of it */
    zero_slice all = {0, 0, e->n, 0};
    const zero_slice *sl = e->stage ? e->lay.slices + e->lay.rank_slices[e->rank] : &all;
    size_t nsl = e->stage ? e->lay.rank_slices[e->rank + 1] - e->lay.rank_slices[e->rank] : 1;
    size_t lo = e->stage ? (size_t)e->rank * e->P : 0;
    for (size_t s = 0; s < nsl && !st; s++) {
        size_t src = e->stage ? e->params[sl[s].param].offset + sl[s].offset_in_param : 0;
        size_t dst = e->stage ? sl[s].flat_offset - lo : 0;
        for (size_t j = 0; j < sl[s].n && !st; j += CHUNK) {
            size_t n = sl[s].n - j < CHUNK ? sl[s].n - j : CHUNK;
            if (!(st = be->ops->download_f32(be, h, at(e->buf.params, src + j, e->dsz), n)))
                st = be->ops->upload(be, e->opt.master + dst + j, h, n * sizeof(float));
        }
    }
    free(h);
    return st;
}

/* The all-gather buckets: ranges of offsets of every partition, and for each
 * parameter the last bucket its elements fall in (in whichever partition). */
static dsrt_status init_allgather(dsrt_engine *e)
{
    size_t P = e->P, c = (size_t)e->cfg.zero.allgather_bucket_size;
    if (c < 1 || c > P)
        c = P;
    e->ag.bucket = c;
    e->ag.nbk = (int)((P + c - 1) / c);
    e->ag.ticket = calloc((size_t)e->ag.nbk, sizeof *e->ag.ticket);
    e->ag.need = calloc(e->n_params, sizeof *e->ag.need);
    if (!e->ag.ticket || !e->ag.need)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create: all-gather buckets");
    for (size_t p = 0; p < e->n_params; p++) {
        size_t f0 = e->lay.param_offset[p], f1 = f0 + e->params[p].numel;
        size_t r0 = f0 / P, r1 = (f1 - 1) / P;
        /* the largest offset it covers in any partition */
        size_t last = r1 > r0 ? P - 1 : (f1 - 1) - r0 * P;
        if (r1 > r0 && (f1 - 1) - r1 * P > last)
            last = (f1 - 1) - r1 * P;
        e->ag.need[p] = (int)(last / c);
    }
    return DSRT_STATUS_OK;
}

/* Wait for all-gather buckets up to k (tickets complete in order). */
static dsrt_status ag_wait_upto(dsrt_engine *e, int k)
{
    if (!e->ag.pending || k < e->ag.done)
        return DSRT_STATUS_OK;
    if (k >= e->ag.nbk)
        k = e->ag.nbk - 1;
    DSRT_TRY(e->comm->wait(e->comm, e->ag.ticket[k]));
    e->ag.done = k + 1;
    if (e->ag.done == e->ag.nbk)
        e->ag.pending = false;
    return DSRT_STATUS_OK;
}

dsrt_status engine_params_settle(dsrt_engine *e) { return ag_wait_upto(e, e->ag.nbk - 1); }

/* The forward's wait (model/gpt2.h): parameters first..last are about to be read. */
static dsrt_status params_wait(void *user, size_t first, size_t last)
{
    dsrt_engine *e = user;
    if (!e->ag.pending)
        return DSRT_STATUS_OK;
    int k = -1;
    for (size_t p = first; p <= last && p < e->n_params; p++)
        if (e->ag.need[p] > k)
            k = e->ag.need[p];
    return ag_wait_upto(e, k);
}

static dsrt_status init_zero(dsrt_engine *e)
{
    dsrt_backend *be = e->be;
    const ds_config *c = &e->cfg;
    size_t *numels = malloc(e->n_params * sizeof(size_t));
    if (!numels)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create");
    for (size_t i = 0; i < e->n_params; i++)
        numels[i] = e->params[i].numel;
    dsrt_status st = zero_layout_build(numels, e->n_params, e->world,
                                       c->zero.round_robin_gradients && e->stage > 0, &e->lay);
    free(numels);
    DSRT_TRY(st);
    e->P = e->stage ? e->lay.partition_size : e->n;
    DSRT_TRY(init_masters(e));
    DSRT_TRY(be->ops->alloc(be, e->P * sizeof(float), (void **)&e->opt.m));
    DSRT_TRY(be->ops->alloc(be, e->P * sizeof(float), (void **)&e->opt.v));
    if (e->stage) {
        /* stage 1 reduces once per accumulation window, each element after the
         * backward is done with it: the reduced partition can overwrite this
         * rank's own range of the full gradient buffer (flat order, padded
         * capacity), as DeepSpeed's stage-1 figure (4 + 12/N) assumes */
        e->buf.pgrad_in_grads = e->stage == 1 && e->buf.grads && !c->zero.round_robin_gradients &&
                                e->buf.param_cap >= e->lay.padded;
        if (e->buf.pgrad_in_grads)
            e->buf.pgrad = at(e->buf.grads, (size_t)e->rank * e->P, e->dsz);
        else
            DSRT_TRY(be->ops->alloc(be, e->P * e->dsz, &e->buf.pgrad));
        e->buf.gather_in_place = !c->zero.round_robin_gradients && e->buf.param_cap >= e->lay.padded;
        if (!e->buf.gather_in_place)
            DSRT_TRY(be->ops->alloc(be, e->lay.padded * e->dsz, &e->buf.gather));
    }
    /* reduction: every stage with several ranks; stages 1/2 on one rank too,
     * for DeepSpeed's partition arithmetic (stage 2 accumulates reduced
     * gradients per micro-step, a second rounding in 16-bit) */
    e->use_buckets = e->world > 1 || e->stage > 0;
    if (e->use_buckets) {
        zero_reducer_opts ro = {
            .stage = e->stage,
            .bucket_elems = (size_t)(c->zero.reduce_bucket_size > 0 ? c->zero.reduce_bucket_size : 500000000),
            .overlap_comm = c->zero.overlap_comm,
            .reduce_scatter = c->zero.reduce_scatter,
            .prescale_gradients = c->prescale_gradients,
            .gradient_predivide_factor = c->gradient_predivide_factor,
            .allreduce_sum = c->gradient_allreduce_sum,
            .slots = e->buf.slots,
            .partition_in_grads = e->buf.pgrad_in_grads,
            .dt = e->dt,
            .cdt = e->cdt,
        };
        size_t *offset = malloc(e->n_params * sizeof(size_t)), *numel = malloc(e->n_params * sizeof(size_t));
        if (!offset || !numel) {
            free(offset);
            free(numel);
            return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create");
        }
        for (size_t i = 0; i < e->n_params; i++) {
            offset[i] = e->params[i].offset;
            numel[i] = e->params[i].numel;
        }
        /* the token embedding (GPT-2's tied wte, LLaMA's embed_tokens): its
         * gradient is made at the end of the backward,
         * through the buckets a block of rows at a time when a bucket holds a
         * row, else in its own buffer */
        if (e->model && e->buf.slots)
            e->buf.tied[0] = ro.bucket_elems >= (size_t)dsrt_model_hidden_size(&e->mcfg) ? ZERO_GRAD_PIECES
                                                                                          : ZERO_GRAD_OWN;
        st = zero_reducer_init(&e->red, &ro, be, e->comm, &e->lay, e->rank, offset, numel, e->n_params,
                               e->buf.grads, e->buf.pgrad, e->P, e->buf.tied);
        free(offset);
        free(numel);
        DSRT_TRY(st);
        size_t need = e->red.cap * e->csz;
        if (e->stage && e->lay.padded * e->dsz > need)
            need = e->lay.padded * e->dsz;
        DSRT_TRY(e->comm->reserve(e->comm, need));
        if (e->buf.slots && e->model)
            dsrt_model_set_grad_slots(e->model, zero_reducer_slot_fn, &e->red);
        if (e->buf.slots && e->model && e->buf.tied[0] == ZERO_GRAD_PIECES)
            dsrt_model_set_grad_pieces(e->model, zero_reducer_piece_fn, zero_reducer_piece_done_fn, &e->red);
        if (e->model)
            dsrt_model_set_param_wait(e->model, params_wait, e);
    }
    if (e->stage && e->world > 1)
        DSRT_TRY(init_allgather(e));
    /* model-state bytes of this rank (spec 7.5; docs/api.md) */
    e->mem.params = (int64_t)(e->n * e->dsz);
    e->mem.grads = (int64_t)((e->stage == 2 ? e->P : e->n) * e->dsz);
    e->mem.transient = e->stage == 1      ? (e->buf.pgrad_in_grads ? 0 : (int64_t)(e->P * e->dsz))
                       : e->buf.slots     ? zero_reducer_own_bytes(&e->red) + zero_reducer_staging_bytes(&e->red)
                       : e->stage == 2    ? (int64_t)(e->n * e->dsz)
                                          : 0;
    e->mem.masters = e->opt.master == e->buf.params ? 0 : (int64_t)(e->P * 4);
    e->mem.moments = (int64_t)(e->P * 8);
    e->mem.gather = e->buf.gather ? (int64_t)(e->lay.padded * e->dsz) : 0;
    return DSRT_STATUS_OK;
}

/* The arguments and the config against what the built-in engine runs. */
static dsrt_status check_create_args(const dsrt_engine_create_args *a, const ds_config **cfg)
{
    bool host_model = !a->model && a->params;
    if (!a->config || (!a->model && !host_model))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_create: config and a model (a GPT-2 preset or config.json, "
                              "or host params) are required");
    if (a->model && a->params)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_create: give either model or params, not both");
    const ds_config *c = config_resolved(a->config);
    if (c->optimizer.kind != DS_OPT_ADAM)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "engine_create: optimizer \"%s\": the built-in engine runs "
                              "Adam/AdamW (FusedAdam) only",
                              c->optimizer.type ? c->optimizer.type : "(none)");
    if (c->optimizer.amsgrad)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "engine_create: optimizer.params.amsgrad "
                                                       "is not supported by FusedAdam");
    /* the ABI reports these as int32 (engine_info) and the step counts micro-batches in int */
    if (c->train_micro_batch_size_per_gpu > INT32_MAX)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_create: train_micro_batch_size_per_gpu %lld is more than this engine "
                              "supports (%d)",
                              (long long)c->train_micro_batch_size_per_gpu, INT32_MAX);
    if (c->gradient_accumulation_steps > INT32_MAX)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_create: gradient_accumulation_steps %lld is more than this engine "
                              "supports (%d)",
                              (long long)c->gradient_accumulation_steps, INT32_MAX);
    int world = a->dist ? a->dist->world : 1;
    if (c->world_size != world)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_create: the config was resolved for world_size %d but the "
                              "process group has %d rank%s: pass the group's world_size to "
                              "config_create",
                              (int)c->world_size, world, world == 1 ? "" : "s");
    *cfg = c;
    return DSRT_STATUS_OK;
}

void engine_config_dtypes(const ds_config *c, dsrt_dtype *dt, dsrt_dtype *cdt)
{
    *dt = c->precision == DSRT_PRECISION_FP16   ? DSRT_F16
          : c->precision == DSRT_PRECISION_BF16 ? DSRT_BF16
                                                : DSRT_F32;
    *cdt = c->communication_data_type == DS_COMM_FP16   ? DSRT_F16
           : c->communication_data_type == DS_COMM_BF16 ? DSRT_BF16
           : c->communication_data_type == DS_COMM_FP32 ? DSRT_F32
                                                        : *dt;
}

/* The run's shape from the config: ranks, stage, batch, dtypes. */
static void setup_from_config(dsrt_engine *e, const ds_config *c, const dsrt_dist *dist)
{
    e->wcb.on = c->wall_clock_breakdown;
    /* benchmarks: DSRT_ALLGATHER_WAIT=1 waits for the all-gather at the step,
     * as DeepSpeed does, while the reduction still overlaps the backward (how
     * much each overlap hides is measured apart: bench/bench_zero.sh) */
    const char *agw = getenv("DSRT_ALLGATHER_WAIT");
    e->ag.wait_now = agw && !strcmp(agw, "1");
    e->cfg = *c;
    /* the strings point into the config handle, which the host may destroy */
    e->cfg.optimizer.type = NULL;
    e->cfg.scheduler.type = NULL;
    e->world = dist ? dist->world : 1;
    e->rank = dist ? dist->rank : 0;
    e->stage = c->zero_stage;
    e->B = (int)c->train_micro_batch_size_per_gpu;
    e->gas = (int)c->gradient_accumulation_steps;
    engine_config_dtypes(c, &e->dt, &e->cdt);
    e->dsz = dsrt_dtype_size(e->dt);
    e->csz = dsrt_dtype_size(e->cdt);
    e->fp16 = e->dt == DSRT_F16;
    e->check_overflow = e->fp16 || (e->dt == DSRT_BF16 && c->bf16.check_grad_overflow);
}

/* The built-in model (a preset, a config.json or a Hugging Face folder),
 * its flat buffers and its tensor list. */
static dsrt_status build_model(dsrt_engine *e, const dsrt_engine_create_args *a)
{
    DSRT_TRY(dsrt_model_config_load(a->model, &e->mcfg));
    int max_t = dsrt_model_max_positions(&e->mcfg);
    e->T = a->seq_len > 0 ? a->seq_len : max_t;
    if (e->T > max_t)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_create: seq_len %d exceeds the model's %s %d", e->T,
                              e->mcfg.arch == DSRT_ARCH_GPT2 ? "n_positions" : "max_position_embeddings",
                              max_t);
    /* room for the padded flat buffer (a multiple of 2N, spec 7.1): ZeRO
     * all-gathers straight into it */
    size_t cnt = 0, align = 2 * (size_t)e->world;
    /* stage 2: no full-size gradient buffer; the backward writes into the
     * reducer's bucket slots */
    e->buf.slots = e->stage == 2;
    DSRT_TRY(dsrt_model_create(&e->mcfg, e->be, e->B, e->T, align, e->buf.slots ? DSRT_GPT2_NO_GRAD_BUFFER : 0,
                               &e->model));
    DSRT_TRY(dsrt_model_init(e->model, a->seed));
    e->n = dsrt_model_num_params(e->model);
    e->buf.param_cap = (e->n + align - 1) / align * align;
    e->buf.params = dsrt_model_param_buffer(e->model);
    e->buf.grads = dsrt_model_grad_buffer(e->model);
    const dsrt_param *gp = dsrt_model_params(e->model, &cnt);
    e->n_params = cnt;
    e->params = calloc(cnt, sizeof *e->params);
    e->buf.tied = calloc(cnt, 1);
    if (!e->params || !e->buf.tied)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create");
    e->buf.tied[0] = ZERO_GRAD_OWN; /* wte, at stage 2: pieces when a bucket holds a row (reducer setup) */
    for (size_t i = 0; i < cnt; i++) {
        e->params[i] = (eng_param){gp[i].name, NULL, gp[i].offset, gp[i].numel, gp[i].ndim, {0}};
        for (int k = 0; k < gp[i].ndim; k++)
            e->params[i].shape[k] = gp[i].shape[k];
    }
    return DSRT_STATUS_OK;
}

/* The loss scaler and the LR schedule; fp16 at stage 0 takes FP16_Optimizer's
 * construction-time step. */
static dsrt_status build_optimizer(dsrt_engine *e, const ds_config *c)
{
    dsrt_loss_scaler_mode mode = DSRT_SCALER_NONE;
    if (e->fp16)
        mode = c->zero_stage == 0 ? DSRT_SCALER_STAGE0 : c->fp16.loss_scale > 0 ? DSRT_SCALER_STATIC
                                                                                 : DSRT_SCALER_DYNAMIC;
    DSRT_TRY(dsrt_loss_scaler_init(&e->scaler, mode, &c->fp16));
    DSRT_TRY(dsrt_lr_sched_init(&e->sched, &e->cfg.scheduler, c->optimizer.lr, c->optimizer.betas[0],
                                c->optimizer.betas[1]));
    if (e->fp16 && c->zero_stage == 0) {
        /* FP16_Optimizer steps once with zero gradients at construction, in
         * every DeepSpeed version (spec 6.5): Adam step 1, and with AdamW every
         * master scaled by (1 - lr * wd) at the config's lr. The gradient
         * buffer is still all zeros (allocated zeroed, no backward yet). */
        e->opt.step = 1;
        dsrt_adamw_args aa = adam_args(e, c->optimizer.lr, 1.0f);
        DSRT_TRY(engine_adamw(e, e->buf.params, e->opt.master, e->opt.m, e->opt.v, e->buf.grads, 0, e->n,
                              &aa, false));
        if (e->rank == 0)
            dsrt_log(DSRT_LOG_INFO, "fp16 with ZeRO stage 0: one zero-gradient AdamW step at "
                                    "init, as DeepSpeed's FP16_Optimizer does");
    }
    return DSRT_STATUS_OK;
}

static void log_summary(const dsrt_engine *e, bool host_model)
{
    if (e->rank != 0)
        return;
    if (host_model)
        dsrt_log(DSRT_LOG_INFO, "engine: host model, %zu tensors, %zu parameters, %s %s", e->n_params,
                 e->n, e->device, dsrt_dtype_name(e->dt));
    else
        dsrt_log(DSRT_LOG_INFO,
                 "engine: %s %s%s, %zu parameters, %s %s, micro batch %d x %d tokens, "
                 "gradient accumulation %d",
                 dsrt_model_type(&e->mcfg),
                 e->mcfg.arch == DSRT_ARCH_GPT2 ? e->mcfg.gpt2.source : e->mcfg.llama.source,
                 e->mcfg.weights_dir[0] ? " (pretrained weights)" : "", e->n, e->device,
                 dsrt_dtype_name(e->dt), e->B, e->T, e->gas);
    if (e->world > 1 || e->stage)
        dsrt_log(DSRT_LOG_INFO,
                 "engine: ZeRO stage %d over %d rank%s (%s), partition %zu elements, "
                 "buckets %d x %zu elements (%s), communication in %s",
                 e->stage, e->world, e->world == 1 ? "" : "s", e->comm->name, e->P, e->red.nbk,
                 e->red.cap, e->cfg.zero.overlap_comm ? "overlapped" : "not overlapped",
                 dsrt_dtype_name(e->cdt));
}

dsrt_status engine_create(const dsrt_engine_create_args *a, dsrt_engine **out)
{
    *out = NULL;
    const ds_config *c = NULL;
    DSRT_TRY(check_create_args(a, &c));
    bool host_model = !a->model;
    dsrt_engine *e = calloc(1, sizeof *e);
    if (!e)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create");
    setup_from_config(e, c, a->dist);
    e->seed = a->seed;
    dsrt_status st;
    if ((st = dsrt_backend_create(a->device, e->dt, &e->be, e->device, sizeof e->device)) ||
        (st = make_comm(e, a->dist)))
        goto fail;
    if (host_model)
        st = host_params(e, a);
    if (host_model && !st)
        st = upload_host_params(e, a);
    if (!host_model)
        st = build_model(e, a);
    if (st || (st = init_zero(e)))
        goto fail;
    /* what a checkpoint records of the run's setup */
    size_t cj_len = 0;
    const char *cj = config_to_json((struct dsrt_config *)a->config, 2, &cj_len);
    e->config_json = dsrt_strdup(cj ? cj : "{}");
    if (!e->config_json) {
        st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_create");
        goto fail;
    }
    if ((st = engine_groups_init(e, a)) || (st = build_optimizer(e, c)) || (st = engine_monitor_init(e)))
        goto fail;
    log_summary(e, host_model);
    *out = e;
    return DSRT_STATUS_OK;
fail:
    engine_destroy(e);
    return st;
}

/* ---------------------------------------------------------------- the step */

/* consecutive steps skipped with no loss scale left to lower that end a run */
enum { DEAD_RUN_SKIPS = 100 };

/* The optimizer boundary (spec 4.3, 7.4). */
static dsrt_status boundary(dsrt_engine *e, dsrt_step_report *r)
{
    dsrt_backend *be = e->be;
    DSRT_TRY(engine_params_settle(e)); /* buckets no layer needed (padding) */
    const void *grads = e->stage ? e->buf.pgrad : e->buf.grads;
    double sumsq = 0;
    int nonfinite = 0;
    DSRT_TRY(be->ops->grad_stats(be, grads, e->P, &sumsq, &nonfinite));
    /* each rank's squares cast to float32 as DeepSpeed does, then summed;
     * stage 0 holds identical full gradients on every rank: local values */
    double v[4] = {(double)(float)sumsq, (double)nonfinite, e->count.window_loss, (double)e->count.window_n};
    if (e->world > 1) {
        char what[96];
        snprintf(what, sizeof what, "all-reduce of the gradient norm and overflow flag (step %lld)",
                 (long long)e->count.global_steps + 1);
        DSRT_TRY(e->comm->allreduce_host_f64(e->comm, v, 4, what));
        if (e->stage == 0) {
            v[0] = (double)(float)sumsq;
            v[1] = nonfinite;
        }
    }
    r->loss = v[3] > 0 ? v[2] / v[3] : NAN;
    e->count.window_loss = 0;
    e->count.window_n = 0;
    bool bad_step = v[1] > 0 || (v[3] > 0 && !isfinite(r->loss));
    bool overflow = e->check_overflow && v[1] > 0;
    if (bad_step && !e->fp16) {
        /* fp32 and bf16 have no loss scale to lower: a non-finite step means the
         * run has diverged. bf16's check_grad_overflow skips it, as DeepSpeed's
         * BF16_Optimizer does; else it is an error unless asked to skip. */
        long long step = (long long)e->count.global_steps + 1;
        if (!overflow && !e->cfg.skip_nonfinite_steps)
            return dsrt_error_set(DSRT_STATUS_OUT_OF_RANGE,
                                  "the %s is not finite at optimizer step %lld (loss %g) in %s training, "
                                  "which has no loss scale to lower: the run has diverged (lower the learning "
                                  "rate; \"dsrt\": {\"skip_nonfinite_steps\": true} skips such steps instead)",
                                  v[1] > 0 ? "gradient" : "loss", step, r->loss, dsrt_dtype_name(e->dt));
        overflow = true;
        e->count.nonfinite_skips++;
        if (e->rank == 0 && (e->count.nonfinite_skips <= 10 || e->count.nonfinite_skips % 100 == 0))
            dsrt_log(DSRT_LOG_WARNING, "step %lld skipped: non-finite %s (%lld such steps so far%s)", step,
                     v[1] > 0 ? "gradients" : "loss", (long long)e->count.nonfinite_skips,
                     e->count.nonfinite_skips == 10 ? "; from now on every 100th is reported" : "");
    }
    double prev = dsrt_loss_scaler_scale(&e->scaler);
    double lr = dsrt_lr_sched_lr(&e->sched);
    if (e->fp16) {
        char msg[256];
        DSRT_TRY(dsrt_loss_scaler_update(&e->scaler, overflow));
        if (overflow && e->rank == 0 &&
            dsrt_loss_scaler_overflow_message(&e->scaler, prev, msg, sizeof msg) > 0)
            dsrt_log(DSRT_LOG_INFO, "%s", msg);
    }
    double scale = dsrt_loss_scaler_scale(&e->scaler);
    e->count.global_steps++;
    e->count.global_samples += e->cfg.train_batch_size;
    r->lr = lr;
    r->loss_scale = scale;
    if (overflow) {
        e->count.skipped_steps++;
        r->skipped = 1;
        r->grad_norm = -1;
        /* a step skipped with no scale left to lower: fp16 at its minimum
         * scale (FP16_Optimizer skips there for ever), or a non-finite bf16/fp32
         * step. After DEAD_RUN_SKIPS in a row nothing can recover: stop. */
        if (!e->fp16 || prev <= e->scaler.min_scale)
            e->count.floor_skips++;
        if (e->count.floor_skips >= DEAD_RUN_SKIPS)
            return dsrt_error_set(DSRT_STATUS_OUT_OF_RANGE,
                                  "%d steps in a row skipped %s, up to optimizer step %lld: the run is not "
                                  "training",
                                  DEAD_RUN_SKIPS,
                                  e->fp16 ? "at the minimum loss scale" : "for non-finite gradients or loss",
                                  (long long)e->count.global_steps);
    } else {
        e->count.floor_skips = 0;
        /* the norm of the scaled gradients, as float32 (spec 7.4) */
        float norm_s = (float)sqrt((double)(float)v[0]);
        double combined = scale;
        double clip = e->cfg.gradient_clipping;
        if (clip > 0) {
            double k = ((double)norm_s / scale + 1e-6) / clip;
            if (k > 1)
                combined = k * scale;
        }
        r->grad_norm = isfinite(norm_s) ? (double)norm_s / prev : -1;
        e->opt.step++;
        dsrt_adamw_args aa = adam_args(e, lr, (float)(1.0 / combined));
        if (!e->stage) {
            DSRT_TRY(engine_adamw(e, e->buf.params, e->opt.master, e->opt.m, e->opt.v, grads, 0, e->n, &aa, false));
        } else {
            void *flat = e->buf.gather_in_place ? e->buf.params : e->buf.gather;
            DSRT_TRY(engine_adamw(e, at(flat, (size_t)e->rank * e->P, e->dsz), e->opt.master, e->opt.m, e->opt.v,
                                  grads, (size_t)e->rank * e->P, e->P, &aa, true));
            if (e->world > 1) {
                /* in buckets of allgather_bucket_size offsets of every
                 * partition; with overlap_comm the next forward waits for a
                 * layer's buckets only (DeepSpeed waits for all of them here) */
                for (int k = 0; k < e->ag.nbk; k++) {
                    char what[128];
                    size_t a = (size_t)k * e->ag.bucket, n = e->P - a < e->ag.bucket ? e->P - a : e->ag.bucket;
                    snprintf(what, sizeof what, "all-gather of the updated weights, bucket %d of %d (step %lld)",
                             k + 1, e->ag.nbk, (long long)e->count.global_steps);
                    DSRT_TRY(e->comm->allgather_strided(e->comm, at(flat, a, e->dsz), n, e->P, e->dt, what,
                                                        &e->ag.ticket[k]));
                }
                e->ag.done = 0;
                e->ag.pending = true;
                if (!e->cfg.zero.overlap_comm || !e->buf.gather_in_place || !e->model || e->ag.wait_now)
                    DSRT_TRY(engine_params_settle(e));
            }
            if (!e->buf.gather_in_place)
                for (size_t p = 0; p < e->n_params; p++)
                    DSRT_TRY(be->ops->copy(be, at(e->buf.params, e->params[p].offset, e->dsz),
                                      at(flat, e->lay.param_offset[p], e->dsz),
                                      e->params[p].numel * e->dsz));
        }
        dsrt_lr_sched_step(&e->sched);
    }
    if (e->stage)
        DSRT_TRY(be->ops->memset0(be, e->buf.pgrad, e->P * e->dsz));
    if (e->stage < 2)
        DSRT_TRY(be->ops->memset0(be, e->buf.grads, e->n * e->dsz));
    if (e->rank == 0 && e->cfg.steps_per_print > 0 &&
        e->count.global_steps % e->cfg.steps_per_print == 0) {
        /* DeepSpeed's engine log line (rank 0) */
        dsrt_log(DSRT_LOG_INFO, "step=%lld, skipped=%lld, lr=[%g], mom=[[%g, %g]]",
                 (long long)e->count.global_steps, (long long)e->count.skipped_steps,
                 dsrt_lr_sched_lr(&e->sched), e->sched.beta1, e->sched.beta2);
    }
    return DSRT_STATUS_OK;
}

/* wall_clock_breakdown: the time now, after the backend's queued work (as
 * DeepSpeed's timers synchronize the device); 0 when off */
enum { WCB_FORWARD, WCB_BACKWARD, WCB_ALLREDUCE, WCB_STEP };
static double wcb_now(dsrt_engine *e)
{
    if (!e->wcb.on)
        return 0;
    (void)e->be->ops->sync(e->be);
    return dsrt_now();
}

static void wcb_add(dsrt_engine *e, int k, double t0)
{
    if (!e->wcb.on)
        return;
    double ms = (wcb_now(e) - t0) * 1e3;
    e->wcb.step[k] += ms;
    e->wcb.acc[k] += ms;
}

/* Start a micro-step: returns the loss-gradient multiplier S / gas. */
static double micro_begin(dsrt_engine *e)
{
    bool last = (e->count.micro_steps + 1) % e->gas == 0;
    /* stage 2 reduces every micro-step, stages 0 and 1 at the boundary; from
     * the hooks when the reduction can overlap the backward */
    if (e->count.micro_steps % e->gas == 0)
        engine_profiler_begin(e);
    zero_reducer_begin(&e->red, e->use_buckets && (e->stage == 2 || last),
                       e->stage == 2 || e->cfg.zero.overlap_comm, (long long)e->count.global_steps + 1,
                       (long long)e->count.micro_steps + 1);
    e->in_micro = true;
    return dsrt_loss_scaler_scale(&e->scaler) / e->gas;
}

/* End a micro-step: reduce what is left, then the boundary if this is one. */
/* counted: the micro-batch had targets (a built-in model's batch whose every
 * target is -100 has a zero gradient and no loss: it is left out of the
 * step's mean loss) */
static dsrt_status micro_end(dsrt_engine *e, double loss, bool counted, dsrt_step_report *r)
{
    e->in_micro = false;
    bool reduced = e->red.reducing;
    double tw = wcb_now(e);
    DSRT_TRY(zero_reducer_drain(&e->red));
    wcb_add(e, WCB_ALLREDUCE, tw);
    /* stage 2: the reduced gradients live in the partition accumulator only */
    if (reduced && e->stage == 2 && e->buf.grads)
        DSRT_TRY(e->be->ops->memset0(e->be, e->buf.grads, e->n * e->dsz));
    e->count.micro_steps++;
    if (counted) {
        e->count.window_loss += loss;
        e->count.window_n++;
    }
    r->boundary = 0;
    if (e->count.micro_steps % e->gas == 0) {
        tw = wcb_now(e);
        DSRT_TRY(boundary(e, r));
        wcb_add(e, WCB_STEP, tw);
        r->boundary = 1;
        if (e->wcb.on && e->rank == 0 &&
            (e->cfg.steps_per_print <= 0 || e->count.global_steps % e->cfg.steps_per_print == 0)) {
            /* DeepSpeed's timer line: ms since the last one */
            dsrt_log(DSRT_LOG_INFO,
                     "time (ms) | forward: %.2f | backward: %.2f | backward_allreduce: %.2f | step: %.2f",
                     e->wcb.acc[0], e->wcb.acc[1], e->wcb.acc[2], e->wcb.acc[3]);
            memset(e->wcb.acc, 0, sizeof e->wcb.acc);
        }
        DSRT_TRY(engine_monitor_step(e, r));
        DSRT_TRY(engine_profiler_end(e));
        memset(e->wcb.step, 0, sizeof e->wcb.step);
    } else {
        r->loss = e->count.window_loss / e->count.window_n;
        r->lr = dsrt_lr_sched_lr(&e->sched);
        r->loss_scale = dsrt_loss_scaler_scale(&e->scaler);
    }
    r->global_steps = e->count.global_steps;
    r->skipped_steps = e->count.skipped_steps;
    r->global_samples = e->count.global_samples;
    r->micro_steps = e->count.micro_steps;
    return DSRT_STATUS_OK;
}

dsrt_status engine_train(dsrt_engine *e, const int32_t *tokens, const int32_t *targets,
                         int micro_batches, dsrt_step_report *r)
{
    if (!e->model)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_train: this engine trains a host model: use "
                              "engine_micro_begin / engine_grad_ready / engine_step");
    if (!tokens || !targets || micro_batches < 1)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_train: tokens, targets and micro_batches >= 1 are required");
    memset(r, 0, sizeof *r);
    double t0 = dsrt_now();
    size_t per = (size_t)e->B * e->T;
    for (int i = 0; i < micro_batches; i++) {
        float dloss = (float)micro_begin(e);
        float loss = 0;
        double tw = wcb_now(e);
        dsrt_status st = dsrt_model_forward(e->model, tokens + i * per, targets + i * per, e->B,
                                           e->T, DSRT_GPT2_TRAIN, dloss, &loss);
        wcb_add(e, WCB_FORWARD, tw);
        tw = wcb_now(e);
        if (!st)
            st = dsrt_model_backward(e->model, e->red.hooks_on ? zero_reducer_hook : NULL, &e->red);
        wcb_add(e, WCB_BACKWARD, tw);
        if (st) {
            e->in_micro = false;
            return st;
        }
        size_t counted = 0;
        for (size_t k = 0; k < per; k++)
            counted += targets[i * per + k] != -100;
        if (!counted && e->rank == 0)
            dsrt_log(DSRT_LOG_WARNING,
                     "step %lld, micro-batch %d: every target is -100 (prompts longer than the sequence, or "
                     "fully masked data): its gradient is zero and its loss is left out of the step's",
                     (long long)e->count.global_steps + 1, i + 1);
        DSRT_TRY(micro_end(e, loss, counted > 0, r));
    }
    DSRT_TRY(e->be->ops->sync(e->be));
    double dt = dsrt_now() - t0;
    r->tokens_per_s = dt > 0 ? (double)per * micro_batches / dt : 0;
    return DSRT_STATUS_OK;
}

/* ---- the host-model step (dsrt.h, ABI 1.2) */

dsrt_status engine_param(dsrt_engine *e, int64_t index, dsrt_engine_param_args *a)
{
    if (index < 0 || (size_t)index >= e->n_params)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_param: index %lld outside 0..%zu", (long long)index,
                              e->n_params - 1);
    DSRT_TRY(engine_params_settle(e));
    const eng_param *p = &e->params[index];
    a->name = p->name;
    a->data = at(e->buf.params, p->offset, e->dsz);
    a->grad = e->buf.grads ? at(e->buf.grads, p->offset, e->dsz) : NULL;
    a->numel = (int64_t)p->numel;
    return DSRT_STATUS_OK;
}

dsrt_status engine_micro_begin(dsrt_engine *e, double *grad_scale)
{
    if (e->in_micro)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_micro_begin: the previous micro-step has not ended "
                              "(engine_step)");
    DSRT_TRY(engine_params_settle(e)); /* the host's forward reads the weights */
    *grad_scale = micro_begin(e);
    return DSRT_STATUS_OK;
}

dsrt_status engine_grad_ready(dsrt_engine *e, int64_t index)
{
    if (!e->in_micro)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_grad_ready: no micro-step is open (engine_micro_begin)");
    if (index < 0 || (size_t)index >= e->n_params)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_grad_ready: index %lld outside 0..%zu", (long long)index,
                              e->n_params - 1);
    zero_reducer_ready(&e->red, (size_t)index);
    return zero_reducer_status(&e->red);
}

dsrt_status engine_grad_slot(dsrt_engine *e, int64_t index, void **grad)
{
    *grad = NULL;
    if (!e->in_micro)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_grad_slot: no micro-step is open (engine_micro_begin)");
    if (index < 0 || (size_t)index >= e->n_params)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "engine_grad_slot: index %lld outside 0..%zu",
                              (long long)index, e->n_params - 1);
    if (!e->buf.slots) {
        *grad = at(e->buf.grads, e->params[index].offset, e->dsz);
        return DSRT_STATUS_OK;
    }
    return zero_reducer_slot(&e->red, (size_t)index, grad);
}

dsrt_status engine_step(dsrt_engine *e, double loss, dsrt_step_report *r)
{
    if (!e->in_micro)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_step: no micro-step is open (engine_micro_begin)");
    memset(r, 0, sizeof *r);
    DSRT_TRY(e->be->ops->sync(e->be));
    DSRT_TRY(micro_end(e, loss, true, r));
    return e->be->ops->sync(e->be);
}

dsrt_status engine_evaluate(dsrt_engine *e, const int32_t *tokens, const int32_t *targets,
                            int batch, double *loss)
{
    if (!e->model)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_evaluate: the host evaluates its own model");
    if (!tokens || !targets || batch < 1)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_evaluate: tokens, targets and batch >= 1 are required");
    DSRT_TRY(engine_params_settle(e));
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
        DSRT_TRY(dsrt_model_forward(e->model, tk, tg, nb, e->T, DSRT_GPT2_EVAL, 1.0f, &l));
        sum += (double)l * (double)c;
        counted += c;
    }
    *loss = counted ? sum / (double)counted : NAN;
    return DSRT_STATUS_OK;
}

dsrt_status engine_export_hf(dsrt_engine *e, const char *dir)
{
    if (!e->model)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_export_hf: this engine trains a host model: the host saves its own");
    if (!dir || !*dir)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "engine_export_hf: dir is NULL or empty");
    DSRT_TRY(engine_params_settle(e));
    if (e->rank != 0)
        return DSRT_STATUS_OK;
    size_t n = 0;
    const dsrt_param *p = dsrt_model_params(e->model, &n);
    DSRT_TRY(dsrt_hf_export(dir, &e->mcfg, e->be, e->buf.params, p, n));
    dsrt_log(DSRT_LOG_INFO, "exported the %s model (%zu tensors, %s) to %s", dsrt_model_type(&e->mcfg), n,
             dsrt_dtype_name(e->dt), dir);
    return DSRT_STATUS_OK;
}

void engine_info(dsrt_engine *e, dsrt_engine_info_args *a)
{
    a->num_parameters = (int64_t)e->n;
    a->seq_len = e->T;
    a->vocab_size = e->model ? dsrt_model_vocab_size(&e->mcfg) : 0;
    a->micro_batch_size = e->B;
    a->gradient_accumulation_steps = e->gas;
    a->device = e->device;
    a->precision = e->cfg.precision;
    a->rank = e->rank;
    a->world_size = e->world;
    a->zero_stage = e->stage;
    a->comm = e->comm->name;
    a->num_param_tensors = (int64_t)e->n_params;
    a->partition_size = (int64_t)e->P;
    a->bytes_params = e->mem.params;
    a->bytes_grads = e->mem.grads;
    a->bytes_grad_transient = e->mem.transient;
    a->bytes_masters = e->mem.masters;
    a->bytes_moments = e->mem.moments;
    a->bytes_buckets = e->use_buckets ? zero_reducer_bytes(&e->red) : 0; /* the second may come later */
    a->bytes_gather = e->mem.gather;
    a->bytes_total = e->mem.params + e->mem.grads + e->mem.transient + e->mem.masters +
                     e->mem.moments + a->bytes_buckets + e->mem.gather;
}
