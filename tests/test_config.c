/* The ds_config reader, rule by rule (spec sections 1-3 and 6.1): batch
 * resolution row by row, "auto", unknown keys, duplicate keys, integer
 * forms, optimizer and scheduler blocks, stage 3 and offload, strict mode,
 * the one-line error form, and a corpus of hostile inputs. Goes through the
 * API table linked statically (the same code the .so exports). */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dsrt.h"

const dsrt_api *dsrt_api_table(void);
#define API dsrt_api_table()

static dsrt_status last_status;

static dsrt_config *rd_hf(const char *text, int world, const char *const *hf, size_t n_hf)
{
    dsrt_config_create_args a = {.struct_size = sizeof a, .text = text, .text_length = strlen(text),
                                 .world_size = world, .hf_values = hf, .hf_value_count = n_hf};
    last_status = API->config_create(&a);
    return a.config;
}

static dsrt_config *rd(const char *text) { return rd_hf(text, 1, NULL, 0); }

static const char *err(void)
{
    static char buf[2048];
    dsrt_last_error_args e = {.struct_size = sizeof e, .buffer = buf, .buffer_size = sizeof buf};
    API->last_error(&e);
    return buf;
}

static void drop(dsrt_config *c)
{
    dsrt_config_destroy_args d = {.struct_size = sizeof d, .config = c};
    API->config_destroy(&d);
}

static dsrt_config_summary_args summary(dsrt_config *c)
{
    dsrt_config_summary_args s = {.struct_size = sizeof s, .config = c};
    assert_int_equal(API->config_summary(&s), DSRT_STATUS_OK);
    return s;
}

static const char *json_of(dsrt_config *c)
{
    dsrt_config_to_json_args j = {.struct_size = sizeof j, .config = c, .indent = 0};
    assert_int_equal(API->config_to_json(&j), DSRT_STATUS_OK);
    return j.json;
}

/* accepted, and the printed config contains `needle` */
#define ASSERT_OK_HAS(cfg, needle)                                                                           \
    do {                                                                                                     \
        if (!(cfg))                                                                                          \
            fail_msg("rejected: %s", err());                                                                 \
        const char *js_ = json_of(cfg);                                                                      \
        if (!strstr(js_, needle))                                                                            \
            fail_msg("%s not in %s", needle, js_);                                                           \
    } while (0)

/* rejected with a message that starts with `prefix` */
#define ASSERT_REJECT(cfg, prefix)                                                                           \
    do {                                                                                                     \
        if (cfg)                                                                                             \
            fail_msg("accepted, expected %s: %s", prefix, json_of(cfg));                                     \
        assert_int_equal(last_status, DSRT_STATUS_INVALID_CONFIG);                                           \
        if (strncmp(err(), prefix, strlen(prefix)))                                                          \
            fail_msg("got '%s', expected a message starting '%s'", err(), prefix);                           \
    } while (0)

static size_t count_diags(dsrt_config *c, dsrt_diagnostic_kind kind, const char *needle)
{
    size_t n = 0;
    dsrt_config_diagnostic_args d = {.struct_size = sizeof d, .config = c};
    for (d.index = 0; API->config_diagnostic(&d) == DSRT_STATUS_OK; d.index++)
        if (d.kind == kind && (!needle || strstr(d.message, needle)))
            n++;
    return n;
}

/* ---------------------------------------------------------------- batch sizes: spec 9(i) row by row */

typedef struct batch_row {
    const char *tb, *mb, *gas; /* NULL = absent */
    int world;
    int64_t e_tb, e_mb, e_gas; /* expected, or 0 when rejected */
    const char *e_error;       /* expected message start when rejected */
} batch_row;

static const batch_row batch_rows[] = {
    {"32", NULL, "1", 4, 32, 8, 1, NULL},
    {"32", NULL, NULL, 4, 32, 8, 1, NULL},
    {"32", "4", NULL, 4, 32, 4, 2, NULL},
    {"32", NULL, "2", 4, 32, 4, 2, NULL},
    {NULL, "4", "2", 4, 32, 4, 2, NULL},
    {NULL, "4", NULL, 4, 16, 4, 1, NULL},
    {"30", NULL, NULL, 4, 0, 0, 0, "error: train_batch_size: must equal train_micro_batch_size_per_gpu x "
                                   "gradient_accumulation_steps x world size, but 30 != 7 x 1 x 4"},
    {"2", NULL, NULL, 4, 0, 0, 0, "error: train_micro_batch_size_per_gpu: derived"},
    {"32", "3", NULL, 4, 0, 0, 0, "error: train_batch_size: must equal train_micro_batch_size_per_gpu x "
                                  "gradient_accumulation_steps x world size, but 32 != 3 x 2 x 4"},
    {"32", "4", "4", 4, 0, 0, 0, "error: train_batch_size: must equal train_micro_batch_size_per_gpu x "
                                 "gradient_accumulation_steps x world size, but 32 != 4 x 4 x 4"},
    {NULL, NULL, "4", 4, 0, 0, 0, "error: train_batch_size: missing"},
    {NULL, NULL, NULL, 4, 0, 0, 0, "error: train_batch_size: missing"},
    /* the design card at 1 rank; tb < micro x W gives gas 0 */
    {"8", NULL, "1", 1, 8, 8, 1, NULL},
    {"8", "4", NULL, 4, 0, 0, 0, "error: gradient_accumulation_steps: derived"},
    {"0", NULL, NULL, 1, 0, 0, 0, "error: train_batch_size: must be > 0"},
    {"8", "0", NULL, 1, 0, 0, 0, "error: train_micro_batch_size_per_gpu: must be > 0"},
    {NULL, "2", "-1", 1, 0, 0, 0, "error: train_batch_size: must be > 0"},
    {"8.0", "2e0", NULL, 2, 8, 2, 2, NULL},
};

static void test_batch_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof batch_rows / sizeof batch_rows[0]; i++) {
        const batch_row *r = &batch_rows[i];
        char text[256];
        int n = snprintf(text, sizeof text, "{\"steps_per_print\": 1");
        if (r->tb)
            n += snprintf(text + n, sizeof text - (size_t)n, ", \"train_batch_size\": %s", r->tb);
        if (r->mb)
            n += snprintf(text + n, sizeof text - (size_t)n, ", \"train_micro_batch_size_per_gpu\": %s", r->mb);
        if (r->gas)
            n += snprintf(text + n, sizeof text - (size_t)n, ", \"gradient_accumulation_steps\": %s", r->gas);
        snprintf(text + n, sizeof text - (size_t)n, "}");
        dsrt_config *c = rd_hf(text, r->world, NULL, 0);
        if (r->e_error) {
            if (c)
                fail_msg("row %zu accepted: %s", i, text);
            if (strncmp(err(), r->e_error, strlen(r->e_error)))
                fail_msg("row %zu: got '%s', expected '%s'", i, err(), r->e_error);
        } else {
            if (!c)
                fail_msg("row %zu rejected: %s: %s", i, text, err());
            dsrt_config_summary_args s = summary(c);
            assert_int_equal(s.train_batch_size, r->e_tb);
            assert_int_equal(s.train_micro_batch_size_per_gpu, r->e_mb);
            assert_int_equal(s.gradient_accumulation_steps, r->e_gas);
            drop(c);
        }
    }
}

/* ---------------------------------------------------------------- loading */

static void test_hjson_leniency(void **state)
{
    (void)state;
    dsrt_config *c = rd("\xEF\xBB\xBF// a comment\n{\n  # another\n  \"train_batch_size\": 8, /* block */\n"
                        "  \"zero_optimization\": {\"stage\": 1,},\n}\n");
    ASSERT_OK_HAS(c, "\"stage\": 1");
    drop(c);
    /* root braces omitted, as hjson allows */
    c = rd("\"train_batch_size\": 8\n\"fp16\": {\"enabled\": true}\n");
    ASSERT_OK_HAS(c, "\"precision\": \"fp16\"");
    drop(c);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    dsrt_config *c = rd("{\"train_batch_size\": 8,\n \"train_batch_size\": 16}");
    assert_null(c);
    assert_non_null(strstr(err(), "duplicate key \"train_batch_size\""));
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 1,\n \"stage\": 2}}");
    assert_null(c);
    assert_non_null(strstr(err(), "duplicate key \"stage\""));
    assert_non_null(strstr(err(), "zero_optimization"));
}

static void test_integer_forms(void **state)
{
    (void)state;
    dsrt_config *c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 2, \"reduce_bucket_size\": 2e8,"
                        " \"allgather_bucket_size\": 5.0E8}}");
    ASSERT_OK_HAS(c, "\"reduce_bucket_size\": 200000000");
    ASSERT_OK_HAS(c, "\"allgather_bucket_size\": 500000000");
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true, \"min_loss_scale\": 0.5}}");
    ASSERT_REJECT(c, "error: fp16.min_loss_scale: must be an integer, not a fraction (got 0.5) [<text>:1]");
    /* the dynamic-scaling fields are checked only when the scaling is dynamic
     * (DeepSpeed 0.19.6): a static loss_scale may carry unused zeros */
    c = rd("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true, \"min_loss_scale\": 0}}");
    ASSERT_REJECT(c, "error: fp16.min_loss_scale: must be > 0 when dynamic loss scaling is enabled");
    c = rd("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true, \"loss_scale_window\": 0}}");
    ASSERT_REJECT(c, "error: fp16.loss_scale_window: must be > 0 when dynamic loss scaling is enabled");
    c = rd("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true, \"loss_scale\": 512, \"min_loss_scale\": 0,"
           " \"loss_scale_window\": 0}}");
    if (!c)
        fail_msg("a static scale with unused zero dynamic fields: %s", err());
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": false, \"min_loss_scale\": 0}}");
    if (!c)
        fail_msg("fp16 disabled with min_loss_scale 0: %s", err());
    drop(c);
    c = rd("{\"train_batch_size\": 8.5}");
    ASSERT_REJECT(c, "error: train_batch_size: must be an integer, not a fraction (got 8.5)");
    /* the int64 range, exactly */
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"reduce_bucket_size\": 9223372036854775807}}");
    ASSERT_OK_HAS(c, "\"reduce_bucket_size\": 9223372036854775807");
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"reduce_bucket_size\": 9223372036854775808}}");
    ASSERT_REJECT(c, "error: zero_optimization.reduce_bucket_size: is outside the 64-bit integer range");
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"reduce_bucket_size\": 1e19}}");
    ASSERT_REJECT(c, "error: zero_optimization.reduce_bucket_size: is outside the 64-bit integer range");
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"reduce_bucket_size\": -1}}");
    ASSERT_REJECT(c, "error: zero_optimization.reduce_bucket_size: must be >= 0 (got -1)");
    /* pydantic lax mode: "2" reads as 2 inside zero_optimization */
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": \"2\", \"overlap_comm\": \"true\"}}");
    ASSERT_OK_HAS(c, "\"zero_stage\": 2");
    ASSERT_OK_HAS(c, "\"overlap_comm\": true");
    drop(c);
    /* but a placeholder left in a template is refused */
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": ZERO_STAGE\n}}");
    ASSERT_REJECT(c, "error: zero_optimization.stage: must be an integer (got \"ZERO_STAGE\")");
}

static void test_unknown_keys(void **state)
{
    (void)state;
    dsrt_config *c = rd("{\"train_batch_size\": 8, \"gradient_acumulation_steps\": 2, \"my_key\": 1}");
    assert_non_null(c);
    assert_int_equal(count_diags(c, DSRT_DIAG_WARNING, NULL), 1); /* one warning listing both */
    assert_int_equal(count_diags(c, DSRT_DIAG_WARNING, "\"gradient_acumulation_steps\" (line 1, did you mean "
                                                       "\"gradient_accumulation_steps\"?)"),
                     1);
    assert_int_equal(count_diags(c, DSRT_DIAG_WARNING, "\"my_key\""), 1);
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 2, \"overlap_com\": true}}");
    ASSERT_REJECT(c, "error: zero_optimization.overlap_com: unknown key in zero_optimization; did you mean "
                     "\"overlap_comm\"?");
    c = rd("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true, \"opt_level\": \"O2\"}}");
    ASSERT_REJECT(c, "error: fp16.opt_level: unknown key in fp16");
    c = rd("{\"train_batch_size\": 8, \"bf16\": {\"enabled\": true, \"loss_scale\": 0}}");
    ASSERT_REJECT(c, "error: bf16.loss_scale: unknown key in bf16");
    c = rd("{\"train_batch_size\": 8, \"tensorboard\": {\"enabled\": true, \"output_dir\": \"runs\"}}");
    ASSERT_REJECT(c, "error: tensorboard.output_dir: unknown key in tensorboard (DeepSpeed rejects unknown keys "
                     "here); known keys: enabled, output_path, job_name [<text>:1]");
    assert_string_equal(strstr(err(), "[<text>"), "[<text>:1]"); /* one location, at the key */
    c = rd("{\"train_batch_size\": 8, \"wandb\": {\"enabled\": true, \"project\": \"p\"}}");
    ASSERT_OK_HAS(c, "\"wandb\": {\"enabled\": true, \"project\": \"p\"}");
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"grad_hooks\": true}}");
    ASSERT_REJECT(c, "error: zero_optimization.grad_hooks: unknown key");
}

/* ---------------------------------------------------------------- "auto" */

static const char hf_config[] =
    "{\"train_batch_size\": \"auto\", \"train_micro_batch_size_per_gpu\": \"auto\",\n"
    " \"gradient_accumulation_steps\": \"auto\", \"gradient_clipping\": \"auto\",\n"
    " \"fp16\": {\"enabled\": \"auto\"}, \"bf16\": {\"enabled\": \"auto\"},\n"
    " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": \"auto\", \"betas\": \"auto\", \"eps\": \"auto\",\n"
    "   \"weight_decay\": \"auto\"}},\n"
    " \"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {\"warmup_min_lr\": \"auto\",\n"
    "   \"warmup_max_lr\": \"auto\", \"warmup_num_steps\": \"auto\", \"total_num_steps\": \"auto\"}},\n"
    " \"zero_optimization\": {\"stage\": 2, \"reduce_bucket_size\": \"auto\", \"overlap_comm\": \"auto\"}}";

static void test_auto_trainer_defaults(void **state)
{
    (void)state;
    const char *hf[] = {"max_steps=1000", "warmup_steps=30", "hidden_size=1024"};
    dsrt_config *c = rd_hf(hf_config, 2, hf, 3);
    if (!c)
        fail_msg("%s", err());
    dsrt_config_summary_args s = summary(c);
    assert_int_equal(s.train_micro_batch_size_per_gpu, 8); /* per_device_train_batch_size default */
    assert_int_equal(s.gradient_accumulation_steps, 1);
    assert_int_equal(s.train_batch_size, 16);
    assert_true(s.gradient_clipping == 1.0);
    assert_int_equal(s.precision, DSRT_PRECISION_FP32); /* fp16/bf16 default false */
    const char *js = json_of(c);
    assert_non_null(strstr(js, "\"lr\": 5e-05"));
    assert_non_null(strstr(js, "\"betas\": [0.9, 0.999]"));
    assert_non_null(strstr(js, "\"eps\": 1e-08"));
    assert_non_null(strstr(js, "\"weight_decay\": 0.0"));
    assert_non_null(strstr(js, "\"warmup_max_lr\": 5e-05"));
    assert_non_null(strstr(js, "\"warmup_min_lr\": 0.0"));
    assert_non_null(strstr(js, "\"warmup_num_steps\": 30"));
    assert_non_null(strstr(js, "\"total_num_steps\": 1000"));
    assert_non_null(strstr(js, "\"reduce_bucket_size\": 1048576"));
    assert_non_null(strstr(js, "\"overlap_comm\": false")); /* dropped: None => stage == 3 */
    /* every fill reported */
    assert_int_equal(count_diags(c, DSRT_DIAG_AUTO, NULL), 16); /* 15 Trainer fills + overlap_comm dropped */
    assert_int_equal(count_diags(c, DSRT_DIAG_AUTO, "train_batch_size: \"auto\" -> 16 (world_size 2 x "
                                                    "per_device_train_batch_size 8 x gradient_accumulation_steps 1)"),
                     1);
    drop(c);
}

static void test_auto_host_values(void **state)
{
    (void)state;
    const char *hf[] = {"per_device_train_batch_size=4", "gradient_accumulation_steps=2", "learning_rate=3e-4",
                        "adam_beta1=0.8", "adam_beta2=0.95", "adam_epsilon=1e-6", "weight_decay=0.1",
                        "max_grad_norm=0.5", "warmup_ratio=0.1", "max_steps=205", "bf16=true", "hidden_size=64"};
    dsrt_config *c = rd_hf(hf_config, 4, hf, sizeof hf / sizeof hf[0]);
    if (!c)
        fail_msg("%s", err());
    dsrt_config_summary_args s = summary(c);
    assert_int_equal(s.train_batch_size, 32);
    assert_int_equal(s.precision, DSRT_PRECISION_BF16);
    assert_true(s.gradient_clipping == 0.5);
    const char *js = json_of(c);
    assert_non_null(strstr(js, "\"lr\": 0.0003"));
    assert_non_null(strstr(js, "\"betas\": [0.8, 0.95]"));
    assert_non_null(strstr(js, "\"eps\": 1e-06"));
    assert_non_null(strstr(js, "\"warmup_num_steps\": 21")); /* ceil(0.1 x 205) */
    assert_non_null(strstr(js, "\"reduce_bucket_size\": 4096"));
    drop(c);
}

static void test_auto_needs_host(void **state)
{
    (void)state;
    const char *no_steps[] = {"hidden_size=64", "warmup_steps=5"};
    dsrt_config *c = rd_hf(hf_config, 1, no_steps, 2);
    ASSERT_REJECT(c, "error: scheduler.params.total_num_steps: \"auto\" needs the number of optimizer steps");
    assert_non_null(strstr(err(), "max_steps"));
    /* no hidden size: DeepSpeed's config drops "auto", so its default, with a warning */
    const char *no_hidden[] = {"max_steps=10", "warmup_steps=5"};
    c = rd_hf(hf_config, 1, no_hidden, 2);
    if (!c)
        fail_msg("%s", err());
    assert_non_null(strstr(json_of(c), "\"reduce_bucket_size\": 500000000"));
    assert_int_equal(count_diags(c, DSRT_DIAG_WARNING, "DeepSpeed's default (its config drops"), 1);
    drop(c);
    /* no warmup: the Trainer fills 0, which DeepSpeed 0.19.3+ refuses and 0.19.2 ran as 2 steps */
    const char *no_warmup[] = {"max_steps=10", "hidden_size=64"};
    c = rd_hf(hf_config, 1, no_warmup, 2);
    if (!c)
        fail_msg("%s", err());
    assert_non_null(strstr(json_of(c), "\"warmup_num_steps\": 2"));
    assert_int_equal(count_diags(c, DSRT_DIAG_WARNING, "0.19.2 and earlier ran as max(2, 0) = 2"), 1);
    drop(c);
    /* "auto" where the Trainer fills nothing */
    c = rd("{\"train_batch_size\": 8, \"steps_per_print\": \"auto\"}");
    ASSERT_REJECT(c, "error: steps_per_print: \"auto\" is not filled here");
    c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"torch_adam\": \"auto\"}}}");
    ASSERT_REJECT(c, "error: optimizer.params.torch_adam: \"auto\" is not filled here");
}

static void test_auto_file_values_and_mismatch(void **state)
{
    (void)state;
    /* no host value: the file's concrete micro batch is the Trainer's value */
    dsrt_config *c = rd("{\"train_batch_size\": \"auto\", \"train_micro_batch_size_per_gpu\": 4}");
    if (!c)
        fail_msg("%s", err());
    assert_int_equal(summary(c).train_batch_size, 4);
    drop(c);
    /* an explicit host value that contradicts the file: refused as the Trainer does */
    const char *hf[] = {"per_device_train_batch_size=2"};
    c = rd_hf("{\"train_batch_size\": \"auto\", \"train_micro_batch_size_per_gpu\": 4}", 1, hf, 1);
    ASSERT_REJECT(c, "error: train_micro_batch_size_per_gpu: the file's value disagrees with "
                     "per_device_train_batch_size=2.0");
    const char *fp16[] = {"fp16=true"};
    c = rd_hf("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": false}}", 1, fp16, 1);
    ASSERT_REJECT(c, "error: fp16.enabled: the file's value disagrees with fp16=true");
    c = rd_hf("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": \"auto\"}}", 1, fp16, 1);
    assert_non_null(c);
    assert_int_equal(summary(c).precision, DSRT_PRECISION_FP16);
    drop(c);
    /* the run length a launcher always passes does not override a written schedule */
    const char *steps[] = {"max_steps=100"};
    c = rd_hf("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": "
              "{\"total_num_steps\": 10000, \"warmup_num_steps\": 500}}}", 1, steps, 1);
    ASSERT_OK_HAS(c, "\"total_num_steps\": 10000");
    assert_int_equal(count_diags(c, DSRT_DIAG_NOTE, "the file's 10000 is used; max_steps=100 only fills"), 1);
    drop(c);
    /* bad host values */
    const char *bad[] = {"max_steps=ten"};
    dsrt_config_create_args a = {.struct_size = sizeof a, .text = "{}", .text_length = 2, .hf_values = bad,
                                 .hf_value_count = 1};
    assert_int_equal(API->config_create(&a), DSRT_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(err(), "max_steps=ten"));
}

/* ---------------------------------------------------------------- precision */

static void test_precision_blocks(void **state)
{
    (void)state;
    dsrt_config *c = rd("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true}, \"bf16\": {\"enabled\": true}}");
    ASSERT_REJECT(c, "error: fp16.enabled: fp16 and bf16 cannot both be enabled");
    c = rd("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true}}");
    /* 0.19 defaults even when the block names none of them (spec 0, 4.2) */
    ASSERT_OK_HAS(c, "\"fp16\": {\"enabled\": true, \"auto_cast\": false, \"loss_scale\": 0.0, "
                     "\"initial_scale_power\": 16, \"loss_scale_window\": 1000, \"hysteresis\": 2, "
                     "\"consecutive_hysteresis\": false, \"min_loss_scale\": 1");
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"bfloat16\": {\"enabled\": true}}");
    assert_non_null(c);
    assert_int_equal(summary(c).precision, DSRT_PRECISION_BF16);
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true, \"loss_scale_window\": 0}}");
    ASSERT_REJECT(c, "error: fp16.loss_scale_window: must be > 0 when dynamic loss scaling is enabled");
    c = rd("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true, \"loss_scale\": -1}}");
    ASSERT_REJECT(c, "error: fp16.loss_scale: must be >= 0 (got -1)");
    c = rd("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": \"FP16_ENABLE\"}}");
    ASSERT_REJECT(c, "error: fp16.enabled: must be true or false (got \"FP16_ENABLE\")");
    c = rd("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true, \"loss_scale\": 1e999}}");
    ASSERT_REJECT(c, "error: fp16.loss_scale: must be finite");
}

/* ---------------------------------------------------------------- optimizer (spec 6.1) */

static void test_optimizer(void **state)
{
    (void)state;
    dsrt_config *c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adam\", \"params\": {\"lr\": 1e-3}}}");
    ASSERT_OK_HAS(c, "\"adam_mode\": \"adamw");
    ASSERT_OK_HAS(c, "\"weight_decay\": 0.0"); /* FusedAdam's default, not torch's 0.01 */
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adam\", \"params\": {\"adam_w_mode\": false}}}");
    ASSERT_OK_HAS(c, "\"adam_mode\": \"adam (L2");
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"adam_w_mode\": false}}}");
    ASSERT_OK_HAS(c, "\"adam_mode\": \"adamw");
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"adamw\"}}");
    ASSERT_OK_HAS(c, "\"lr\": 0.001");
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"max_grad_norm\": 1.0}}}");
    ASSERT_REJECT(c, "error: optimizer.params.max_grad_norm: is not an optimizer parameter in DeepSpeed; use the "
                     "top-level \"gradient_clipping\"");
    c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"beta1\": 0.9}}}");
    ASSERT_REJECT(c, "error: optimizer.params.beta1: unknown key in optimizer.params");
    c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"betas\": [0.9]}}}");
    ASSERT_REJECT(c, "error: optimizer.params.betas: must be a list of two numbers");
    c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"betas\": [0.9, 1.5]}}}");
    ASSERT_REJECT(c, "error: optimizer.params.betas[1]: each beta must be in [0, 1)");
    c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"amsgrad\": true}}}");
    ASSERT_REJECT(c, "error: optimizer.params.amsgrad: FusedAdam does not support amsgrad");
    c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adamm\"}}");
    ASSERT_REJECT(c, "error: optimizer.type: unknown optimizer");
    c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"params\": {}}}");
    ASSERT_REJECT(c, "error: optimizer.type: missing");
    /* an optimizer DeepSpeed runs and dsrt does not: refused by the reader
     * (never accepted and then refused when training starts), with or
     * without ZeRO's untested-optimizer switch */
    c = rd("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Lion\", \"params\": {\"lr\": 1e-4}}}");
    ASSERT_REJECT(c, "error: optimizer.type: Lion: dsrt implements Adam and AdamW only");
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 1}, \"optimizer\": {\"type\": \"SGD\"}}");
    ASSERT_REJECT(c, "error: optimizer.type: SGD: dsrt implements Adam and AdamW only");
    c = rd("{\"train_batch_size\": 8, \"zero_allow_untested_optimizer\": true, \"zero_optimization\": {\"stage\": 1},"
           " \"optimizer\": {\"type\": \"SGD\"}}");
    ASSERT_REJECT(c, "error: optimizer.type: SGD: dsrt implements Adam and AdamW only");
}

/* ---------------------------------------------------------------- scheduler (spec 5) */

static void test_scheduler(void **state)
{
    (void)state;
    dsrt_config *c = rd("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {}}}");
    ASSERT_REJECT(c, "error: scheduler.params.total_num_steps: missing; WarmupDecayLR requires it");
    c = rd("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_num_steps\": 0}}}");
    ASSERT_REJECT(c, "error: scheduler.params.warmup_num_steps: must be > 0 (got 0)");
    c = rd("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_num_steps\": "
           "100.0}}}");
    ASSERT_REJECT(c, "error: scheduler.params.warmup_num_steps: must be written as an integer");
    c = rd("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"warmuplr\"}}");
    ASSERT_REJECT(c, "error: scheduler.type: unknown schedule; names are case-sensitive: did you mean \"WarmupLR\"?");
    c = rd("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_type\": "
           "\"cosine\"}}}");
    assert_non_null(c);
    assert_int_equal(count_diags(c, DSRT_DIAG_WARNING, "uses \"log\""), 1);
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"OneCycle\", \"params\": {\"cycle_min_lr\": 1e-5,"
           " \"cycle_max_lr\": 1e-4, \"cycle_first_step_size\": 1000}}}");
    ASSERT_OK_HAS(c, "\"cycle_second_step_size\": 1000");
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"OneCycle\", \"params\": {\"cycle_max_lr\": 1e-4}}}");
    ASSERT_REJECT(c, "error: scheduler.params.cycle_min_lr: missing; OneCycle requires it");
    c = rd("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {\"total_num_steps\":"
           " 100, \"warmup_num_steps\": 500}}}");
    assert_non_null(c);
    assert_int_equal(count_diags(c, DSRT_DIAG_WARNING, "less than warmup_num_steps"), 1);
    /* WarmupDecayLR keeps 0.001 as its max default (spec 5) */
    ASSERT_OK_HAS(c, "\"warmup_max_lr\": 0.001");
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_min_lr\": 0,"
           " \"bogus\": 1}}}");
    ASSERT_REJECT(c, "error: scheduler.params.bogus: unknown key in scheduler.params");
    /* per-group lists: one parameter group, so one entry */
    c = rd("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_min_lr\": [0.0001]}}}");
    ASSERT_OK_HAS(c, "\"warmup_min_lr\": 0.0001");
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_min_lr\": [0, 1]}}}");
    ASSERT_REJECT(c, "error: scheduler.params.warmup_min_lr: must be a number, or a list with one number per");
    c = rd("{\"train_batch_size\": 8, \"gradient_clipping\": [1.0]}");
    ASSERT_REJECT(c, "error: gradient_clipping: must be a number (got [...] (a list of 1))");
    c = rd("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"StepLR\", \"params\": {\"step_size\": 10}}}");
    ASSERT_REJECT(c, "error: scheduler.type: torch.optim.lr_scheduler.StepLR: dsrt implements DeepSpeed's five");
}

/* ---------------------------------------------------------------- ZeRO */

static void test_zero_stage3_and_offload(void **state)
{
    (void)state;
    dsrt_config *c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 3,"
                        " \"stage3_prefetch_bucket_size\": 5e7, \"offload_optimizer\": {\"device\": \"cpu\"},"
                        " \"offload_param\": {\"device\": \"nvme\", \"nvme_path\": \"/local\"}}}");
    if (!c)
        fail_msg("%s", err());
    dsrt_config_summary_args s = summary(c);
    assert_int_equal(s.zero_stage_requested, 3);
    assert_int_equal(s.zero_stage, 2);
    assert_int_equal(count_diags(c, DSRT_DIAG_WARNING, NULL), 3);
    assert_int_equal(count_diags(c, DSRT_DIAG_WARNING, "memory"), 3);
    ASSERT_OK_HAS(c, "\"overlap_comm\": true"); /* None => true for stage 3 */
    drop(c);
    c = rd("{\"dsrt\": {\"strict\": true}, \"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 3}}");
    ASSERT_REJECT(c, "error: zero_optimization.stage: ZeRO stage 3 runs as stage 2");
    assert_non_null(strstr(err(), "strict"));
    c = rd("{\"dsrt\": {\"strict\": true}, \"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 2,"
           " \"cpu_offload\": true}}");
    ASSERT_REJECT(c, "error: zero_optimization.offload_optimizer: optimizer offload is not implemented");
    c = rd("{\"train_batch_size\": 8, \"elasticity\": {\"enabled\": true, \"max_train_batch_size\": 64}}");
    assert_non_null(c);
    assert_int_equal(count_diags(c, DSRT_DIAG_WARNING, "elastic training is not implemented"), 1);
    drop(c);
    c = rd("{\"dsrt\": {\"strictness\": 1}, \"train_batch_size\": 8}");
    ASSERT_REJECT(c, "error: dsrt.strictness: unknown key in dsrt");
    /* the legacy boolean form */
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": true}");
    assert_non_null(c);
    assert_int_equal(summary(c).zero_stage, 1);
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": {\"device\": "
           "\"gpu\"}}}");
    ASSERT_REJECT(c, "error: zero_optimization.offload_optimizer.device: must be one of none, cpu, nvme (got \"gpu\")");
    c = rd("{\"train_batch_size\": 8, \"prescale_gradients\": true, \"zero_optimization\": {\"stage\": 2}}");
    ASSERT_REJECT(c, "error: prescale_gradients: ZeRO stage 2 with reduce_scatter");
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 1, \"allgather_bucket_size\": 3}}");
    ASSERT_REJECT(c, "error: zero_optimization.allgather_bucket_size: must be even");
}

static void test_output_has_every_default(void **state)
{
    (void)state;
    dsrt_config *c = rd("{\"train_batch_size\": 8}");
    assert_non_null(c);
    const char *js = json_of(c);
    static const char *const keys[] = {
        "\"train_batch_size\": 8", "\"train_micro_batch_size_per_gpu\": 8", "\"gradient_accumulation_steps\": 1",
        "\"gradient_clipping\": 1.0", "\"zero_optimization\": {\"stage\": 0", "\"reduce_bucket_size\": 500000000",
        "\"overlap_comm\": false", "\"fp16\": {\"enabled\": false", "\"loss_scale\": 0.0",
        "\"initial_scale_power\": 16", "\"loss_scale_window\": 1000", "\"hysteresis\": 2",
        "\"consecutive_hysteresis\": false", "\"min_loss_scale\": 1", "\"bf16\": {\"enabled\": false",
        "\"check_grad_overflow\": true", "\"steps_per_print\": null", "\"prescale_gradients\": false",
        "\"gradient_predivide_factor\": 1.0", "\"communication_data_type\": null"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(js, keys[i]))
            fail_msg("%s missing from %s", keys[i], js);
    drop(c);
}

static void test_base64_text(void **state)
{
    (void)state;
    /* {"train_batch_size": 4} in urlsafe base64, as DeepSpeed's --deepspeed_config accepts */
    dsrt_config *c = rd("eyJ0cmFpbl9iYXRjaF9zaXplIjogNH0=");
    if (!c)
        fail_msg("%s", err());
    assert_int_equal(summary(c).train_batch_size, 4);
    drop(c);
}

/* ---------------------------------------------------------------- the one-line form */

static void test_error_form(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"train_batch_size\": [8]}",
        "{\"train_batch_size\": 8, \"gradient_clipping\": \"1.0\"}",
        "{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": -1}}",
        "{\"train_batch_size\": 8, \"fp16\": {\"hysteresis\": 0}}",
        "{\"train_batch_size\": 8, \"zero_optimization\": {\"offload_param\": {\"device\": 3}}}",
        "{\"train_batch_size\": 8, \"scheduler\": {\"type\": 3}}",
        "{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": -1}}}",
        "{\"train_batch_size\": 8, \"optimizer\": \"AdamW\"}",
        "{\"train_batch_size\": 8,, }",
        "{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": }}",
        "[1, 2]",
        "",
    };
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^error: [A-Za-z_()][A-Za-z0-9_ ().]*(\\[[0-9]+\\])?(\\.[A-Za-z0-9_]+)*: [^\n]+"
                             "\\[<text>(:[0-9]+)*\\]$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dsrt_config *c = rd(bad[i]);
        if (c)
            fail_msg("accepted: %s", bad[i]);
        if (regexec(&re, err(), 0, NULL, 0) != 0)
            fail_msg("input %zu: '%s' is not in the one-line form", i, err());
    }
    regfree(&re);
}

/* ---------------------------------------------------------------- hostile inputs */

/* Every float must be finite, wherever it is (issue 15: "lr": 1e999 trained
 * with lr inf), and every printed config reads back (steps_per_print null). */
static void test_nonfinite_and_round_trip(void **state)
{
    (void)state;
    static const struct {
        const char *text, *prefix;
    } cases[] = {
        {"{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e999}}}",
         "error: optimizer.params.lr: must be finite"},
        {"{\"train_batch_size\": 1, \"gradient_clipping\": 1e999}", "error: gradient_clipping: must be finite"},
        {"{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"weight_decay\": -1e400}}}",
         "error: optimizer.params.weight_decay: must be finite"},
        {"{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"eps\": 1e999}}}",
         "error: optimizer.params.eps: must be finite"},
        {"{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"betas\": [0.9, 1e400]}}}",
         "error: optimizer.params.betas[1]: must be finite"},
        {"{\"train_batch_size\": 1, \"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_max_lr\": 1e999}}}",
         "error: scheduler.params.warmup_max_lr: must be finite"},
        {"{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": Infinity}}}",
         "error: optimizer.params.lr: must be finite"},
        {"{\"train_batch_size\": 1, \"tensorboard\": {\"x\": [1, NaN]}}", "error: tensorboard.x[1]: must be finite"},
        {"{\"train_batch_size\": 1, \"gradient_clipping\": NaN}", "error: gradient_clipping: must be finite"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsrt_config *c = rd(cases[i].text);
        ASSERT_REJECT(c, cases[i].prefix);
    }
    /* what is printed reads back, and prints the same */
    static const char *const accepted[] = {
        "{\"train_batch_size\": 1, \"steps_per_print\": null}",
        "{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1.7976931348623157e308}}}",
        "{\"train_batch_size\": 1, \"gradient_clipping\": 5e-324}",
    };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        dsrt_config *c = rd(accepted[i]);
        if (!c)
            fail_msg("rejected %s: %s", accepted[i], err());
        char *first = strdup(json_of(c));
        dsrt_config *again = rd(first);
        if (!again)
            fail_msg("the printed config of %s does not read back: %s\n%s", accepted[i], err(), first);
        assert_string_equal(first, json_of(again));
        free(first);
        drop(again);
        drop(c);
    }
}

/* A monitor or profiler that is asked for and that dsrt does not write is
 * named in a warning (an error under "strict"), never ignored in silence. */
static void test_monitors_named(void **state)
{
    (void)state;
    static const struct {
        const char *block, *needle;
    } cases[] = {
        {"\"wandb\": {\"enabled\": true, \"project\": \"x\"}", "Weights & Biases"},
        {"\"comet\": {\"enabled\": true}", "Comet"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, "{\"train_batch_size\": 8, %s}", cases[i].block);
        dsrt_config *c = rd(text);
        if (!c)
            fail_msg("rejected %s: %s", text, err());
        if (count_diags(c, DSRT_DIAG_WARNING, cases[i].needle) != 1)
            fail_msg("no warning naming %s for %s", cases[i].needle, text);
        drop(c);
        snprintf(text, sizeof text, "{\"train_batch_size\": 8, \"dsrt\": {\"strict\": true}, %s}", cases[i].block);
        c = rd(text);
        if (c)
            fail_msg("accepted under strict: %s", text);
        /* disabled: no word */
    }
    dsrt_config *c = rd("{\"train_batch_size\": 8, \"tensorboard\": {\"enabled\": false}, \"wall_clock_breakdown\": false}");
    assert_non_null(c);
    assert_int_equal(count_diags(c, DSRT_DIAG_WARNING, "not implemented"), 0);
    drop(c);
    /* DeepSpeed lower-cases gradient_allreduce_op too */
    c = rd("{\"train_batch_size\": 8, \"gradient_allreduce_op\": \"SUM\"}");
    if (!c)
        fail_msg("%s", err());
    assert_non_null(strstr(json_of(c), "\"gradient_allreduce_op\": \"sum\""));
    drop(c);
    /* partial optimizer offload is stage 3's (DeepSpeedZeroConfig.offload_ratio_check) */
    c = rd("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 2, \"offload_optimizer\": "
           "{\"device\": \"cpu\", \"ratio\": 0.5}}}");
    ASSERT_REJECT(c, "error: zero_optimization.offload_optimizer.ratio: partial offloading");
    /* DeepSpeed lower-cases communication_data_type before comparing */
    c = rd("{\"train_batch_size\": 8, \"communication_data_type\": \"FP16\"}");
    if (!c)
        fail_msg("%s", err());
    assert_non_null(strstr(json_of(c), "\"communication_data_type\": \"fp16\""));
    drop(c);
    c = rd("{\"train_batch_size\": 8, \"communication_data_type\": \"fp8\"}");
    ASSERT_REJECT(c, "error: communication_data_type: must be one of");
    /* the monitors dsrt writes (engine/monitor.c): no warning, even under strict */
    c = rd("{\"train_batch_size\": 8, \"dsrt\": {\"strict\": true}, \"tensorboard\": {\"enabled\": true, "
           "\"output_path\": \"tb\"}, \"csv_monitor\": {\"enabled\": true}}");
    if (!c)
        fail_msg("%s", err());
    assert_int_equal(count_diags(c, DSRT_DIAG_WARNING, ""), 0);
    drop(c);
}

static void test_nasty_inputs(void **state)
{
    (void)state;
    /* deep nesting */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 32);
    assert_non_null(deep);
    size_t n = (size_t)sprintf(deep, "{\"a\": ");
    for (size_t i = 0; i < depth; i++)
        deep[n++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    assert_null(rd(deep));
    assert_non_null(strstr(err(), "nesting"));
    free(deep);

    static const char *const inputs[] = {
        "", " \n\t ", "// only a comment\n", "{", "}", "{\"train_batch_size\": 1e999999}",
        "{\"train_batch_size\": -1e999}", "{\"train_batch_size\": NaN}", "{\"train_batch_size\": Infinity}",
        "{\"train_batch_size\": 99999999999999999999999999999999999}",
        "{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true, \"initial_scale_power\": 1e400}}",
        "{\"train_batch_size\": \"\\ud800\"}", "{\"a\": \"\\u0000\"}", "\xff\xfe\x00\x01",
        "{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"betas\": [NaN, 0.9]}}}",
        "{\"train_batch_size\": 4611686018427387904, \"train_micro_batch_size_per_gpu\": 4611686018427387904}",
        "{\"train_micro_batch_size_per_gpu\": 4611686018427387904, \"gradient_accumulation_steps\": 4}",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        dsrt_config *c = rd_hf(inputs[i], 4, NULL, 0);
        if (c) {
            json_of(c);
            drop(c);
        } else {
            assert_true(strncmp(err(), "error: ", 7) == 0);
        }
    }
    /* binary garbage from a fixed-seed generator */
    unsigned s = 12345;
    char buf[4096];
    for (int round = 0; round < 500; round++) {
        size_t len = (size_t)(round * 8) % sizeof buf;
        for (size_t i = 0; i < len; i++) {
            s = s * 1103515245u + 12345u;
            buf[i] = (char)(s >> 16);
        }
        dsrt_config_create_args a = {.struct_size = sizeof a, .text = buf, .text_length = len};
        dsrt_status st = API->config_create(&a);
        if (st == DSRT_STATUS_OK)
            drop(a.config);
        else
            assert_int_equal(st, DSRT_STATUS_INVALID_CONFIG);
    }
    /* a 10 MB file through the path API */
    char path[] = "/tmp/dsrt_big_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("{\"train_batch_size\": 8, \"comment\": [", f);
    for (int i = 0; i < 1000000; i++)
        fprintf(f, "%s%d", i ? "," : "", i);
    fputs("]}\n", f);
    fclose(f);
    dsrt_config_create_args a = {.struct_size = sizeof a, .path = path};
    assert_int_equal(API->config_create(&a), DSRT_STATUS_OK);
    drop(a.config);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_table),
        cmocka_unit_test(test_hjson_leniency),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_integer_forms),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_auto_trainer_defaults),
        cmocka_unit_test(test_auto_host_values),
        cmocka_unit_test(test_auto_needs_host),
        cmocka_unit_test(test_auto_file_values_and_mismatch),
        cmocka_unit_test(test_precision_blocks),
        cmocka_unit_test(test_optimizer),
        cmocka_unit_test(test_scheduler),
        cmocka_unit_test(test_zero_stage3_and_offload),
        cmocka_unit_test(test_output_has_every_default),
        cmocka_unit_test(test_base64_text),
        cmocka_unit_test(test_error_form),
        cmocka_unit_test(test_nasty_inputs),
        cmocka_unit_test(test_nonfinite_and_round_trip),
        cmocka_unit_test(test_monitors_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
