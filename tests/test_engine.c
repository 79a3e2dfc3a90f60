#define _GNU_SOURCE
/* The training engine through the public ABI table: counters, accumulation
 * boundaries, the scheduler's lr sequence, determinism, the fp16 scaler's
 * skip/hysteresis/halving sequence with overflows that really happen, the
 * error at the scale floor, and argument errors. The numbers against PyTorch
 * are in the regression tests (compat_tests/curves). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dsrt.h"
#include "engine/engine_impl.h"

const dsrt_api *dsrt_api_table(void);
static const dsrt_api *api;

static char *last_error(void)
{
    static char buf[1024];
    dsrt_last_error_args le = {sizeof le, buf, sizeof buf, 0, 0};
    api->last_error(&le);
    return buf;
}

static dsrt_engine *make_engine(const char *config_text, dsrt_config **cfg_out)
{
    dsrt_config_create_args cc = {.struct_size = sizeof cc, .text = config_text,
                                  .text_length = strlen(config_text), .world_size = 1};
    if (api->config_create(&cc))
        fail_msg("config: %s", last_error());
    dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cc.config,
                                  .model = "gpt2-tiny", .seq_len = 32, .seed = 1234};
    if (api->engine_create(&ec))
        fail_msg("engine: %s", last_error());
    *cfg_out = cc.config;
    return ec.engine;
}

static void destroy(dsrt_engine *e, dsrt_config *c)
{
    dsrt_engine_destroy_args ed = {sizeof ed, e};
    api->engine_destroy(&ed);
    dsrt_config_destroy_args cd = {sizeof cd, c};
    api->config_destroy(&cd);
}

/* deterministic text-like tokens */
static void batch(int32_t *tok, int32_t *tgt, size_t n, unsigned seed)
{
    static const char text[] = "In the beginning God created the heaven and the earth. And the "
                               "earth was without form, and void; and darkness was upon the face.";
    for (size_t i = 0; i < n; i++) {
        tok[i] = (unsigned char)text[(i + seed) % (sizeof text - 1)];
        tgt[i] = (unsigned char)text[(i + seed + 1) % (sizeof text - 1)];
    }
}

static dsrt_step_report train(dsrt_engine *e, int micro, unsigned seed, dsrt_status want)
{
    size_t n = (size_t)micro * 4 * 32;
    int32_t *tok = malloc(n * sizeof(int32_t)), *tgt = malloc(n * sizeof(int32_t));
    batch(tok, tgt, n, seed);
    dsrt_engine_train_args tr = {.struct_size = sizeof tr, .engine = e, .tokens = tok,
                                 .targets = tgt, .micro_batches = micro};
    dsrt_status st = api->engine_train(&tr);
    if (st != want)
        fail_msg("engine_train: %s (%s)", dsrt_status_name(st), last_error());
    free(tok), free(tgt);
    return tr.report;
}

static const char k_fp32[] =
    "{\"train_micro_batch_size_per_gpu\": 4, \"gradient_accumulation_steps\": 2,"
    " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-3, \"weight_decay\": 0.01}},"
    " \"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {\"warmup_min_lr\": 0,"
    "   \"warmup_max_lr\": 1e-3, \"warmup_num_steps\": 4, \"total_num_steps\": 20,"
    "   \"warmup_type\": \"linear\"}},"
    " \"gradient_clipping\": 1.0}";

static void test_counters_and_schedule(void **state)
{
    (void)state;
    dsrt_config *c;
    dsrt_engine *e = make_engine(k_fp32, &c);
    dsrt_engine_info_args info = {.struct_size = sizeof info, .engine = e};
    assert_int_equal(api->engine_info(&info), DSRT_STATUS_OK);
    assert_int_equal(info.num_parameters, 858880);
    assert_int_equal(info.gradient_accumulation_steps, 2);
    /* one micro-batch: inside the accumulation window */
    dsrt_step_report r = train(e, 1, 0, DSRT_STATUS_OK);
    assert_int_equal(r.boundary, 0);
    assert_int_equal(r.global_steps, 0);
    r = train(e, 1, 1, DSRT_STATUS_OK);
    assert_int_equal(r.boundary, 1);
    assert_int_equal(r.global_steps, 1);
    assert_int_equal(r.global_samples, 8);
    assert_int_equal(r.micro_steps, 2);
    /* WarmupDecayLR, linear, W = 4: the k-th update uses lr(lbi = k - 2) */
    double want_lr[] = {0.0, 0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3 * 15 / 16};
    assert_float_equal(r.lr, want_lr[0], 1e-15);
    double first = r.loss, last = 0;
    for (int k = 2; k <= 7; k++) {
        r = train(e, 2, (unsigned)k, DSRT_STATUS_OK);
        assert_int_equal(r.global_steps, k);
        assert_float_equal(r.lr, want_lr[k - 1], 1e-12);
        assert_true(r.grad_norm > 0);
        assert_int_equal(r.skipped, 0);
        assert_true(r.loss_scale == 1.0);
        last = r.loss;
    }
    assert_true(last < first); /* it learns */
    /* evaluation does not change the state */
    int32_t tok[4 * 32], tgt[4 * 32];
    batch(tok, tgt, 4 * 32, 3);
    dsrt_engine_evaluate_args ev = {.struct_size = sizeof ev, .engine = e, .tokens = tok,
                                    .targets = tgt, .batch = 4};
    assert_int_equal(api->engine_evaluate(&ev), DSRT_STATUS_OK);
    double l1 = ev.loss;
    ev.batch = 3; /* a partial micro-batch */
    assert_int_equal(api->engine_evaluate(&ev), DSRT_STATUS_OK);
    ev.batch = 4;
    assert_int_equal(api->engine_evaluate(&ev), DSRT_STATUS_OK);
    assert_true(ev.loss == l1 && isfinite(l1));
    destroy(e, c);
}

static void test_deterministic(void **state)
{
    (void)state;
    dsrt_config *c1, *c2;
    dsrt_engine *a = make_engine(k_fp32, &c1), *b = make_engine(k_fp32, &c2);
    for (int k = 0; k < 4; k++) {
        dsrt_step_report ra = train(a, 2, (unsigned)k, DSRT_STATUS_OK);
        dsrt_step_report rb = train(b, 2, (unsigned)k, DSRT_STATUS_OK);
        assert_memory_equal(&ra.loss, &rb.loss, sizeof ra.loss);
        assert_memory_equal(&ra.grad_norm, &rb.grad_norm, sizeof ra.grad_norm);
    }
    destroy(a, c1);
    destroy(b, c2);
}

/* fp16, ZeRO 2, dynamic scale starting far too high: gradients overflow in
 * fp16 until the scale has come down. Hysteresis 2: the first overflow only
 * uses up hysteresis, each later one halves the scale (spec 4.2). */
static void test_fp16_overflow_sequence(void **state)
{
    (void)state;
    static const char cfg[] =
        "{\"train_micro_batch_size_per_gpu\": 4, \"gradient_accumulation_steps\": 1,"
        " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-3}},"
        " \"fp16\": {\"enabled\": true, \"initial_scale_power\": 40, \"hysteresis\": 2,"
        "   \"loss_scale_window\": 1000, \"min_loss_scale\": 1},"
        " \"zero_optimization\": {\"stage\": 2}}";
    dsrt_config *c;
    dsrt_engine *e = make_engine(cfg, &c);
    double scale = ldexp(1.0, 40);
    dsrt_step_report r = train(e, 1, 0, DSRT_STATUS_OK);
    assert_int_equal(r.skipped, 1);
    assert_true(r.loss_scale == scale); /* hysteresis 2 -> 1, scale kept */
    int skipped = 1, k = 1;
    while (r.skipped && k < 60) {
        r = train(e, 1, (unsigned)k, DSRT_STATUS_OK);
        k++;
        if (r.skipped) {
            scale /= 2;
            skipped++;
            assert_true(r.loss_scale == scale);
            assert_true(r.grad_norm == -1);
        }
    }
    assert_int_equal(r.skipped, 0);
    assert_true(r.loss_scale == scale);
    assert_int_equal(r.skipped_steps, skipped);
    assert_int_equal(r.global_steps, k);
    /* the first applied update used the scheduler-less lr */
    assert_float_equal(r.lr, 1e-3, 1e-12);
    assert_true(scale < ldexp(1.0, 30) && scale >= 1.0);
    destroy(e, c);
}

/* at the floor with an overflow: DeepSpeed raises; dsrt returns OUT_OF_RANGE */
static void test_fp16_floor_error(void **state)
{
    (void)state;
    static const char cfg[] =
        "{\"train_micro_batch_size_per_gpu\": 4,"
        " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-3}},"
        " \"fp16\": {\"enabled\": true, \"initial_scale_power\": 40, \"hysteresis\": 1,"
        "   \"min_loss_scale\": 1099511627776},"
        " \"zero_optimization\": {\"stage\": 1}}";
    dsrt_config *c;
    dsrt_engine *e = make_engine(cfg, &c);
    train(e, 1, 0, DSRT_STATUS_OUT_OF_RANGE);
    assert_non_null(strstr(last_error(), "minimum"));
    destroy(e, c);
}

static double eval_loss(dsrt_engine *e)
{
    int32_t tok[4 * 32], tgt[4 * 32];
    batch(tok, tgt, 4 * 32, 5);
    dsrt_engine_evaluate_args ev = {.struct_size = sizeof ev, .engine = e, .tokens = tok,
                                    .targets = tgt, .batch = 4};
    assert_int_equal(api->engine_evaluate(&ev), DSRT_STATUS_OK);
    return ev.loss;
}

/* fp16 with ZeRO stage 0 is DeepSpeed's FP16_Optimizer: one zero-gradient
 * AdamW step at construction (weights x (1 - lr wd)), and a scaler without
 * hysteresis. Stage 1 has neither (spec 4.1, 6.5). */
static void test_fp16_stage0_quirks(void **state)
{
    (void)state;
    static const char fmt[] =
        "{\"train_micro_batch_size_per_gpu\": 4,"
        " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.1, \"weight_decay\": %s}},"
        " \"fp16\": {\"enabled\": true, \"initial_scale_power\": 40, \"hysteresis\": 2},"
        " \"zero_optimization\": {\"stage\": %d}}";
    char cfg[512];
    dsrt_config *c0, *c1, *c2, *c3;
    snprintf(cfg, sizeof cfg, fmt, "0.5", 0);
    dsrt_engine *s0 = make_engine(cfg, &c0);
    snprintf(cfg, sizeof cfg, fmt, "0.5", 1);
    dsrt_engine *s1 = make_engine(cfg, &c1);
    snprintf(cfg, sizeof cfg, fmt, "0.0", 0);
    dsrt_engine *s0_nowd = make_engine(cfg, &c2);
    snprintf(cfg, sizeof cfg, fmt, "0.0", 1);
    dsrt_engine *s1_nowd = make_engine(cfg, &c3);
    /* the init step scaled every weight by 0.95: a different model */
    assert_true(eval_loss(s0) != eval_loss(s1));
    /* without weight decay the init step changes nothing (m = v = 0) */
    assert_true(eval_loss(s0_nowd) == eval_loss(s1_nowd));
    /* the first overflow: stage 0 halves at once, stage 1 spends hysteresis */
    dsrt_step_report r0 = train(s0, 1, 0, DSRT_STATUS_OK);
    dsrt_step_report r1 = train(s1, 1, 0, DSRT_STATUS_OK);
    assert_int_equal(r0.skipped, 1);
    assert_int_equal(r1.skipped, 1);
    assert_true(r0.loss_scale == ldexp(1.0, 39));
    assert_true(r1.loss_scale == ldexp(1.0, 40));
    destroy(s0, c0);
    destroy(s1, c1);
    destroy(s0_nowd, c2);
    destroy(s1_nowd, c3);
}

static void test_errors(void **state)
{
    (void)state;
    dsrt_config *c;
    dsrt_engine *e = make_engine(k_fp32, &c);
    dsrt_engine_train_args tr = {.struct_size = sizeof tr, .engine = e, .micro_batches = 1};
    assert_int_equal(api->engine_train(&tr), DSRT_STATUS_INVALID_ARGUMENT);
    int32_t tok[4 * 32], tgt[4 * 32];
    batch(tok, tgt, 4 * 32, 0);
    tok[5] = 300;
    tr.tokens = tok;
    tr.targets = tgt;
    assert_int_equal(api->engine_train(&tr), DSRT_STATUS_OUT_OF_RANGE);
    assert_non_null(strstr(last_error(), "300"));
    dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = c, .model = "gpt2-huge"};
    assert_int_equal(api->engine_create(&ec), DSRT_STATUS_IO_ERROR);
    assert_non_null(strstr(last_error(), "gpt2-huge"));
    ec.model = "gpt2-tiny";
    ec.device = "tpu";
    assert_int_equal(api->engine_create(&ec), DSRT_STATUS_INVALID_ARGUMENT);
    ec.device = "cuda";
    dsrt_status st = api->engine_create(&ec);
    if (st == DSRT_STATUS_OK) { /* a GPU is present */
        dsrt_engine_destroy_args ed = {sizeof ed, ec.engine};
        api->engine_destroy(&ed);
    } else {
        assert_int_equal(st, DSRT_STATUS_UNSUPPORTED);
    }
    destroy(e, c);
}

static void expect_error(dsrt_status st, dsrt_status want, const char *needle)
{
    if (st != want)
        fail_msg("got %s, wanted %s (%s)", dsrt_status_name(st), dsrt_status_name(want),
                 last_error());
    if (!strstr(last_error(), needle))
        fail_msg("message \"%s\" does not contain \"%s\"", last_error(), needle);
}

/* A checkpoint of another model (same shapes, n_head 4 vs 8) or another
 * precision (fp32 into fp16) is refused naming both values; the precision
 * crosses only with the weights alone (ABI 1.4). */
static void test_load_checks(void **state)
{
    (void)state;
    char dir[] = "/tmp/dsrt_test_load_XXXXXX";
    assert_non_null(mkdtemp(dir));
    dsrt_config *c;
    dsrt_engine *e = make_engine(k_fp32, &c);
    train(e, 2, 0, DSRT_STATUS_OK);
    dsrt_engine_save_args sv = {.struct_size = sizeof sv, .engine = e, .save_dir = dir, .tag = "t"};
    if (api->engine_save(&sv))
        fail_msg("save: %s", last_error());
    destroy(e, c);

    /* n_head 8: every tensor has the same shape as with 4 heads */
    char model[600];
    snprintf(model, sizeof model, "%s/heads8.json", dir);
    FILE *f = fopen(model, "w");
    assert_non_null(f);
    fputs("{\"model_type\": \"gpt2\", \"vocab_size\": 256, \"n_positions\": 256, \"n_embd\": 128, "
          "\"n_layer\": 4, \"n_head\": 8, \"n_inner\": null, \"activation_function\": \"gelu_new\", "
          "\"resid_pdrop\": 0.0, \"embd_pdrop\": 0.0, \"attn_pdrop\": 0.0, \"layer_norm_epsilon\": 1e-05, "
          "\"initializer_range\": 0.02, \"tie_word_embeddings\": true}",
          f);
    fclose(f);
    dsrt_config_create_args cc = {.struct_size = sizeof cc, .text = k_fp32, .text_length = strlen(k_fp32),
                                  .world_size = 1};
    assert_int_equal(api->config_create(&cc), DSRT_STATUS_OK);
    dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cc.config, .model = model, .seq_len = 32,
                                  .seed = 1};
    if (api->engine_create(&ec))
        fail_msg("engine: %s", last_error());
    dsrt_engine_load_args ld = {.struct_size = sizeof ld, .engine = ec.engine, .load_dir = dir, .tag = "t"};
    expect_error(api->engine_load(&ld), DSRT_STATUS_INVALID_ARGUMENT, "n_head 4; this model has n_head 8");
    destroy(ec.engine, cc.config);

    /* fp16 from an fp32 checkpoint */
    static const char fp16[] =
        "{\"train_micro_batch_size_per_gpu\": 4, \"gradient_accumulation_steps\": 2,"
        " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-3}},"
        " \"fp16\": {\"enabled\": true, \"initial_scale_power\": 12}, \"zero_optimization\": {\"stage\": 1}}";
    e = make_engine(fp16, &c);
    ld.engine = e;
    expect_error(api->engine_load(&ld), DSRT_STATUS_INVALID_ARGUMENT, "saved by a fp32 run; this run trains in fp16");
    ld.skip_optimizer_states = 1;
    if (api->engine_load(&ld))
        fail_msg("skip_optimizer_states: %s", last_error());
    assert_int_equal(ld.global_steps, 1);
    dsrt_step_report r = train(e, 2, 1, DSRT_STATUS_OK);
    assert_true(r.loss_scale == 4096.0); /* the config's scaler, not the checkpoint's static 1 */
    assert_int_equal(r.global_steps, 2);
    ld.skip_optimizer_states = 0;
    ld.load_module_only = 1;
    if (api->engine_load(&ld))
        fail_msg("load_module_only: %s", last_error());
    assert_int_equal(ld.global_steps, 2); /* the engine's own counters go on */
    r = train(e, 2, 1, DSRT_STATUS_OK);
    assert_int_equal(r.global_steps, 3);
    destroy(e, c);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* 64-bit batch values stay 64-bit up to the engine, which refuses what it
 * cannot run instead of truncating it (4294967298 was run as 2). */
static void test_batch_range(void **state)
{
    (void)state;
    static const struct {
        const char *text, *needle;
    } cases[] = {
        {"{\"train_batch_size\": 4294967298, \"train_micro_batch_size_per_gpu\": 1, "
         "\"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-3}}}",
         "gradient_accumulation_steps 4294967298"},
        {"{\"train_micro_batch_size_per_gpu\": 4294967296, \"gradient_accumulation_steps\": 1, "
         "\"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-3}}}",
         "train_micro_batch_size_per_gpu 4294967296"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsrt_config_create_args cc = {.struct_size = sizeof cc, .text = cases[i].text,
                                      .text_length = strlen(cases[i].text), .world_size = 1};
        if (api->config_create(&cc))
            fail_msg("config: %s", last_error());
        dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cc.config, .model = "gpt2-tiny",
                                      .seq_len = 32, .seed = 1};
        dsrt_status st = api->engine_create(&ec);
        if (st == DSRT_STATUS_OK) {
            dsrt_engine_info_args in = {.struct_size = sizeof in, .engine = ec.engine};
            api->engine_info(&in);
            fail_msg("engine created from %s: micro batch %d, accumulation %d", cases[i].text,
                     in.micro_batch_size, in.gradient_accumulation_steps);
        }
        assert_int_equal(st, DSRT_STATUS_INVALID_ARGUMENT);
        if (!strstr(last_error(), cases[i].needle))
            fail_msg("'%s' not in '%s'", cases[i].needle, last_error());
        dsrt_config_destroy_args cd = {sizeof cd, cc.config};
        api->config_destroy(&cd);
    }
}

/* The host-model and checkpoint calls refuse misuse with a message that says
 * what is wrong, and leave the engine usable. */

/* The weights of parameter `index` (host copies: CPU engine) */
static const float *param_data(dsrt_engine *e, int64_t index, size_t *n, const char **name)
{
    dsrt_engine_param_args pa = {.struct_size = sizeof pa, .engine = e, .index = index};
    if (api->engine_param(&pa))
        fail_msg("engine_param: %s", last_error());
    *n = (size_t)pa.numel;
    *name = pa.name;
    return pa.data;
}

/* After one step from the same weights and batch, each tensor's bits with
 * weight decay 0.1 against weight decay 0: a tensor whose group decays
 * differs, one exempt from decay is identical. Returns how many differ;
 * `wrong` counts tensors whose verdict disagrees with the Trainer's rule
 * (biases and LayerNorm weights exempt) when `trainer`. */
static dsrt_engine *groups_engine(const char *text, const char *wd, dsrt_config **cfg)
{
    const char *hf[] = {wd, "learning_rate=0.01", "lr_scheduler_type=constant"};
    dsrt_config_create_args cc = {.struct_size = sizeof cc, .text = text, .text_length = strlen(text),
                                  .world_size = 1, .hf_values = hf, .hf_value_count = 3};
    if (api->config_create(&cc))
        fail_msg("config: %s", last_error());
    dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cc.config, .model = "gpt2-tiny",
                                  .seq_len = 32, .seed = 1234};
    if (api->engine_create(&ec))
        fail_msg("engine: %s", last_error());
    *cfg = cc.config;
    return ec.engine;
}

static int decayed_tensors(const char *text, bool trainer, int *wrong)
{
    dsrt_config *c0, *c1;
    dsrt_engine *e0 = groups_engine(text, "weight_decay=0", &c0), *e1 = groups_engine(text, "weight_decay=0.1", &c1);
    int micro = strstr(text, "\"gradient_accumulation_steps\": 2") ? 2 : 1;
    train(e0, micro, 0, DSRT_STATUS_OK);
    train(e1, micro, 0, DSRT_STATUS_OK);
    dsrt_engine_info_args in = {.struct_size = sizeof in, .engine = e0};
    assert_int_equal(api->engine_info(&in), DSRT_STATUS_OK);
    int decayed = 0;
    *wrong = 0;
    for (int64_t i = 0; i < in.num_param_tensors; i++) {
        size_t n;
        const char *nm;
        const float *a = param_data(e0, i, &n, &nm);
        const float *b = param_data(e1, i, &n, &nm);
        bool differs = memcmp(a, b, n * sizeof(float)) != 0;
        bool exempt = strstr(nm, "bias") || strstr(nm, "ln_");
        decayed += differs;
        if (trainer && differs == exempt)
            (*wrong)++, print_error("%s: %s\n", nm, differs ? "decayed" : "not decayed");
    }
    destroy(e0, c0);
    destroy(e1, c1);
    return decayed;
}

/* No optimizer block: the Trainer's AdamW, whose parameter groups exempt
 * biases and LayerNorm weights from weight decay; an optimizer block decays
 * every tensor (DeepSpeed); a checkpoint keeps the groups. */
static void test_trainer_param_groups(void **state)
{
    (void)state;
    const char *text = "{\"train_micro_batch_size_per_gpu\": 4, \"gradient_accumulation_steps\": 1}";
    int wrong = 0;
    int decayed = decayed_tensors(text, true, &wrong);
    assert_int_equal(wrong, 0);
    assert_int_equal(decayed, 2 + 4 * 4); /* wte, wpe and 4 weight matrices per layer */
    /* DeepSpeed with an optimizer block ("weight_decay": "auto" takes the Trainer value): every tensor */
    const char *block = "{\"train_micro_batch_size_per_gpu\": 4, \"gradient_accumulation_steps\": 1,"
                        " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": \"auto\", \"weight_decay\": \"auto\"}}}";
    decayed = decayed_tensors(block, false, &wrong);
    /* every weight and LayerNorm weight; the biases start at 0, where one
     * step's decay changes nothing */
    assert_int_equal(decayed, 2 + 4 * 4 + 2 * 4 + 1);
    /* and the groups themselves: biases and LayerNorm tensors in the
     * Trainer's no-decay group (weight decay 0), the rest in the decaying one */
    {
        dsrt_config *c;
        dsrt_engine *e = groups_engine(text, "weight_decay=0.1", &c);
        assert_int_equal(e->grp.n, 2);
        assert_true(e->grp.g[0].weight_decay == 0.1 && e->grp.g[1].weight_decay == 0.0);
        for (size_t i = 0; i < e->n_params; i++) {
            const char *nm = e->params[i].name;
            int want = strstr(nm, "bias") || strstr(nm, "ln_") ? 1 : 0;
            if (e->grp.of[i] != want)
                fail_msg("%s in group %d", nm, e->grp.of[i]);
        }
        destroy(e, c);
    }

    /* the checkpoint keeps the groups: the same setup loads, an optimizer
     * block (one group) is refused naming a tensor */
    dsrt_config *c;
    dsrt_engine *e = groups_engine(text, "weight_decay=0.1", &c);
    train(e, 1, 0, DSRT_STATUS_OK);
    char dir[] = "/tmp/dsrt_test_groups_XXXXXX";
    assert_non_null(mkdtemp(dir));
    dsrt_engine_save_args sv = {.struct_size = sizeof sv, .engine = e, .save_dir = dir, .tag = "t"};
    if (api->engine_save(&sv))
        fail_msg("save: %s", last_error());
    dsrt_engine_load_args ld = {.struct_size = sizeof ld, .engine = e, .load_dir = dir, .tag = "t"};
    if (api->engine_load(&ld))
        fail_msg("load: %s", last_error());
    destroy(e, c);
    e = make_engine(k_fp32, &c);
    ld.engine = e;
    assert_int_equal(api->engine_load(&ld), DSRT_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(last_error(), "is in optimizer group"));
    destroy(e, c);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* A host's own groups: the lr factor and weight decay per group */
static void test_host_param_groups(void **state)
{
    (void)state;
    dsrt_config_create_args cc = {.struct_size = sizeof cc, .text = k_fp32, .text_length = strlen(k_fp32),
                                  .world_size = 1};
    assert_int_equal(api->config_create(&cc), DSRT_STATUS_OK);
    float w0[6] = {1, 2, 3, 4, 5, 6}, w1[3] = {1, 1, 1};
    dsrt_param_desc pd[2] = {{.name = "a.weight", .dtype = DSRT_PRECISION_FP32, .ndim = 1, .shape = {6}, .data = w0},
                             {.name = "b.weight", .dtype = DSRT_PRECISION_FP32, .ndim = 1, .shape = {3}, .data = w1}};
    dsrt_param_group groups[2] = {{.weight_decay = 0.5, .lr_scale = 1.0}, {.weight_decay = 0.0, .lr_scale = 0.0}};
    int32_t of[2] = {0, 1};
    dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cc.config, .params = pd, .num_params = 2,
                                  .groups = groups, .num_groups = 2, .param_group = of};
    if (api->engine_create(&ec))
        fail_msg("engine: %s", last_error());
    /* four optimizer steps (gas 2) with zero gradients: the linear warmup
     * from 0 gives the first two updates lr 0, the next ones a positive lr */
    for (int m = 0; m < 8; m++) {
        dsrt_engine_micro_begin_args mb = {.struct_size = sizeof mb, .engine = ec.engine};
        assert_int_equal(api->engine_micro_begin(&mb), DSRT_STATUS_OK);
        dsrt_engine_step_args st = {.struct_size = sizeof st, .engine = ec.engine, .loss = 1.0};
        if (api->engine_step(&st))
            fail_msg("step: %s", last_error());
    }
    size_t n;
    const char *nm;
    const float *a = param_data(ec.engine, 0, &n, &nm);
    const float *b = param_data(ec.engine, 1, &n, &nm);
    assert_true(a[5] < 6.0f);                         /* group 0 decays */
    assert_true(b[0] == 1.0f && b[1] == 1.0f && b[2] == 1.0f); /* group 1: lr x 0 */
    destroy(ec.engine, cc.config);
    /* a group index out of range is refused naming the tensor */
    assert_int_equal(api->config_create(&cc), DSRT_STATUS_OK);
    of[1] = 2;
    ec.engine = NULL;
    ec.config = cc.config;
    assert_int_equal(api->engine_create(&ec), DSRT_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(last_error(), "param_group[1] (b.weight) = 2"));
    dsrt_config_destroy_args cd = {sizeof cd, cc.config};
    api->config_destroy(&cd);
}

/* ---- the tensorboard and csv_monitor blocks write DeepSpeed's files */
static uint64_t rd_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t rd_varint(const unsigned char *p, size_t n, size_t *at)
{
    uint64_t v = 0;
    for (int s = 0; *at < n && s < 64; s += 7) {
        unsigned char b = p[(*at)++];
        v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80))
            break;
    }
    return v;
}

/* Event -> (step, tag, simple_value) when it holds one scalar; 0 if not */
static int decode_scalar(const unsigned char *p, size_t n, int64_t *step, char *tag, float *val)
{
    size_t at = 0;
    int got = 0;
    while (at < n) {
        uint64_t key = rd_varint(p, n, &at);
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (wire == 0) {
            uint64_t v = rd_varint(p, n, &at);
            if (field == 2)
                *step = (int64_t)v;
        } else if (wire == 1)
            at += 8;
        else if (wire == 2) {
            size_t len = (size_t)rd_varint(p, n, &at), end = at + len;
            if (field == 5) { /* Summary { 1: Value { 1: tag, 2: simple_value } } */
                size_t a = at;
                rd_varint(p, end, &a); /* key of Summary.value */
                size_t vl = (size_t)rd_varint(p, end, &a), ve = a + vl;
                while (a < ve) {
                    uint64_t k = rd_varint(p, ve, &a);
                    if ((k >> 3) == 1 && (k & 7) == 2) {
                        size_t tl = (size_t)rd_varint(p, ve, &a);
                        memcpy(tag, p + a, tl);
                        tag[tl] = 0;
                        a += tl;
                    } else if ((k >> 3) == 2 && (k & 7) == 5) {
                        uint32_t b = (uint32_t)rd_le(p + a, 4);
                        memcpy(val, &b, 4);
                        a += 4;
                        got = 1;
                    } else
                        break;
                }
            }
            at = end;
        } else if (wire == 5)
            at += 4;
        else
            return 0;
    }
    return got;
}

static void test_monitors_write(void **state)
{
    (void)state;
    /* the CRC the records carry: CRC32C's check value */
    assert_int_equal(dsrt_crc32c("123456789", 9), 0xE3069283u);
    char dir[] = "/tmp/dsrt_test_mon_XXXXXX", cwd[1024];
    assert_non_null(mkdtemp(dir));
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    const char *text = "{\"train_micro_batch_size_per_gpu\": 4, \"gradient_accumulation_steps\": 1,"
                       " \"fp16\": {\"enabled\": true, \"initial_scale_power\": 8},"
                       " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-3}},"
                       " \"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_num_steps\": 4,"
                       "   \"warmup_type\": \"linear\"}},"
                       " \"tensorboard\": {\"enabled\": true, \"output_path\": \"out/tb\", \"job_name\": \"job\"},"
                       " \"csv_monitor\": {\"enabled\": true, \"output_path\": \"out/csv\"},"
                       " \"wall_clock_breakdown\": true,"
                       " \"flops_profiler\": {\"enabled\": true, \"profile_step\": 2, \"output_file\": \"out/prof.txt\"}}";
    dsrt_config *c;
    dsrt_engine *e = make_engine(text, &c);
    dsrt_step_report rep[3];
    for (int s = 0; s < 3; s++)
        rep[s] = train(e, 1, (unsigned)s, DSRT_STATUS_OK);
    destroy(e, c);
    /* csv_monitor: DeepSpeedJobName (the default job), one file per event */
    FILE *f = fopen("out/csv/DeepSpeedJobName/Train_Samples_train_loss.csv", "r");
    assert_non_null(f);
    char line[256];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "step,train_loss\r\n");
    for (int s = 0; s < 3; s++) {
        assert_non_null(fgets(line, sizeof line, f));
        long long step;
        double v;
        assert_int_equal(sscanf(line, "%lld,%lf", &step, &v), 2);
        assert_int_equal(step, 4 * (s + 1)); /* global samples */
        assert_true(v == rep[s].loss);
    }
    fclose(f);
    assert_int_equal(access("out/csv/DeepSpeedJobName/Train_Samples_lr.csv", R_OK), 0);
    assert_int_equal(access("out/csv/DeepSpeedJobName/Train_Samples_loss_scale.csv", R_OK), 0);
    /* flops_profiler: the summary of step 2, with GPT-2's forward FLOPs counted
     * from its shapes: 4 layers x (2 x 128 tokens x (128x384 + 128x128 + 2 x
     * 128x512) + 2 x 2 x 4 x 32 x 32 x 128) + 2 x 128 x 128 x 256 = 0.2181 G */
    f = fopen("out/prof.txt", "r");
    assert_non_null(f);
    char prof[4096];
    size_t pn = fread(prof, 1, sizeof prof - 1, f);
    prof[pn] = 0;
    fclose(f);
    assert_non_null(strstr(prof, "Profile Summary at step 2"));
    assert_non_null(strstr(prof, "params per GPU:                               858880"));
    assert_non_null(strstr(prof, "fwd flops per GPU:                            0.2181 G"));
    /* wall_clock_breakdown: each step's forward, backward, reductions and step in ms */
    f = fopen("out/csv/DeepSpeedJobName/Train_Samples_elapsed_time_ms_backward.csv", "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "step,elapsed_time_ms_backward\r\n");
    for (int s = 0; s < 3; s++) {
        long long step;
        double ms = -1;
        assert_non_null(fgets(line, sizeof line, f));
        assert_int_equal(sscanf(line, "%lld,%lf", &step, &ms), 2);
        assert_true(ms > 0 && ms < 600000);
    }
    fclose(f);
    /* tensorboard: every record's two CRCs, the version record, then the scalars */
    FILE *p = popen("ls out/tb/job/events.out.tfevents.*", "r");
    char path[512] = "";
    assert_non_null(fgets(path, sizeof path, p));
    pclose(p);
    path[strcspn(path, "\n")] = 0;
    f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char head[12], buf[1024], tail[4];
    int records = 0, scalars = 0;
    while (fread(head, 1, 12, f) == 12) {
        uint64_t len = rd_le(head, 8);
        assert_true(len < sizeof buf);
        assert_int_equal((uint32_t)rd_le(head + 8, 4), dsrt_crc32c_masked(head, 8));
        assert_int_equal(fread(buf, 1, len, f), len);
        assert_int_equal(fread(tail, 1, 4, f), 4);
        assert_int_equal((uint32_t)rd_le(tail, 4), dsrt_crc32c_masked(buf, len));
        if (records++ == 0) {
            assert_non_null(memmem(buf, len, "brain.Event:2", 13));
            continue;
        }
        int64_t step = -1;
        char tag[128] = "";
        float v = 0;
        assert_true(decode_scalar(buf, len, &step, tag, &v));
        int s = (int)(step / 4) - 1;
        assert_true(s >= 0 && s < 3);
        if (!strcmp(tag, "Train/Samples/train_loss"))
            assert_true(v == (float)rep[s].loss);
        else if (!strcmp(tag, "Train/Samples/loss_scale"))
            assert_true(v == (float)rep[s].loss_scale);
        else if (strncmp(tag, "Train/Samples/elapsed_time_ms_", 30))
            assert_string_equal(tag, "Train/Samples/lr");
        scalars++;
    }
    fclose(f);
    assert_int_equal(scalars, 3 * (3 + 4));
    assert_int_equal(chdir(cwd), 0);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_host_api_errors(void **state)
{
    (void)state;
    static const char text[] = "{\"train_batch_size\": 4, \"gradient_accumulation_steps\": 2,"
                               " \"optimizer\": {\"type\": \"AdamW\"}}";
    dsrt_config_create_args cc = {.struct_size = sizeof cc, .text = text,
                                  .text_length = sizeof text - 1, .world_size = 1};
    assert_int_equal(api->config_create(&cc), DSRT_STATUS_OK);
    float w[6] = {1, 2, 3, 4, 5, 6}, b[3] = {0};
    dsrt_param_desc pd[2] = {
        {.name = "w", .dtype = DSRT_PRECISION_FP32, .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "b", .dtype = DSRT_PRECISION_FP32, .ndim = 1, .shape = {3}, .data = b},
    };
    dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cc.config, .params = pd,
                                  .num_params = 2};
    /* bad descriptions */
    pd[1].name = "w";
    expect_error(api->engine_create(&ec), DSRT_STATUS_INVALID_ARGUMENT, "\"w\" is used twice");
    pd[1].name = "b";
    pd[1].dtype = DSRT_PRECISION_BF16;
    expect_error(api->engine_create(&ec), DSRT_STATUS_INVALID_ARGUMENT, "\"b\" is bf16");
    pd[1].dtype = DSRT_PRECISION_FP32;
    pd[1].shape[0] = 0;
    expect_error(api->engine_create(&ec), DSRT_STATUS_INVALID_ARGUMENT, "dimension 0 is 0");
    pd[1].shape[0] = 3;
    ec.model = "gpt2-tiny";
    expect_error(api->engine_create(&ec), DSRT_STATUS_INVALID_ARGUMENT, "not both");
    ec.model = NULL;
    assert_int_equal(api->engine_create(&ec), DSRT_STATUS_OK);
    dsrt_engine *e = ec.engine;
    /* the engine's copies, not the host's arrays */
    dsrt_engine_param_args pa = {.struct_size = sizeof pa, .engine = e, .index = 0};
    assert_int_equal(api->engine_param(&pa), DSRT_STATUS_OK);
    assert_string_equal(pa.name, "w");
    assert_int_equal(pa.numel, 6);
    assert_ptr_not_equal(pa.data, w);
    assert_memory_equal(pa.data, w, sizeof w);
    pa.index = 2;
    expect_error(api->engine_param(&pa), DSRT_STATUS_INVALID_ARGUMENT, "index 2 outside 0..1");
    /* the micro-step state machine */
    dsrt_engine_grad_ready_args gr = {sizeof gr, e, 0};
    expect_error(api->engine_grad_ready(&gr), DSRT_STATUS_INVALID_ARGUMENT, "no micro-step is open");
    dsrt_engine_step_args sa = {.struct_size = sizeof sa, .engine = e, .loss = 1.0};
    expect_error(api->engine_step(&sa), DSRT_STATUS_INVALID_ARGUMENT, "no micro-step is open");
    dsrt_engine_micro_begin_args mb = {sizeof mb, e, 0};
    assert_int_equal(api->engine_micro_begin(&mb), DSRT_STATUS_OK);
    assert_true(mb.grad_scale == 0.5); /* 1 / gas */
    expect_error(api->engine_micro_begin(&mb), DSRT_STATUS_INVALID_ARGUMENT, "has not ended");
    gr.index = 7;
    expect_error(api->engine_grad_ready(&gr), DSRT_STATUS_INVALID_ARGUMENT, "index 7");
    assert_int_equal(api->engine_step(&sa), DSRT_STATUS_OK);
    assert_int_equal(sa.report.boundary, 0);
    /* GPT-2 calls on a host model */
    int32_t tok[4] = {0};
    dsrt_engine_train_args tr = {.struct_size = sizeof tr, .engine = e, .tokens = tok,
                                 .targets = tok, .micro_batches = 1};
    expect_error(api->engine_train(&tr), DSRT_STATUS_INVALID_ARGUMENT, "host model");
    /* checkpoints: not inside an accumulation window; a directory without one */
    dsrt_engine_save_args sv = {.struct_size = sizeof sv, .engine = e, .save_dir = "/tmp"};
    expect_error(api->engine_save(&sv), DSRT_STATUS_INVALID_ARGUMENT, "accumulation window");
    assert_int_equal(api->engine_micro_begin(&mb), DSRT_STATUS_OK);
    assert_int_equal(api->engine_step(&sa), DSRT_STATUS_OK);
    assert_int_equal(sa.report.boundary, 1);
    sv.tag = "../escape";
    expect_error(api->engine_save(&sv), DSRT_STATUS_INVALID_ARGUMENT, "not a plain directory name");
    sv.tag = NULL;
    sv.client_state = "{not json";
    expect_error(api->engine_save(&sv), DSRT_STATUS_INVALID_ARGUMENT, "client_state is not JSON");
    dsrt_engine_load_args la = {.struct_size = sizeof la, .engine = e,
                                .load_dir = "/nonexistent/dsrt"};
    expect_error(api->engine_load(&la), DSRT_STATUS_IO_ERROR, "/nonexistent/dsrt/latest");
    /* still usable */
    assert_int_equal(api->engine_micro_begin(&mb), DSRT_STATUS_OK);
    assert_int_equal(api->engine_step(&sa), DSRT_STATUS_OK);
    destroy(e, cc.config);
}

int main(void)
{
    api = dsrt_api_table();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_schedule),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_fp16_overflow_sequence),
        cmocka_unit_test(test_fp16_floor_error),
        cmocka_unit_test(test_fp16_stage0_quirks),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_batch_range),
        cmocka_unit_test(test_load_checks),
        cmocka_unit_test(test_trainer_param_groups),
        cmocka_unit_test(test_host_param_groups),
        cmocka_unit_test(test_monitors_write),
        cmocka_unit_test(test_host_api_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
