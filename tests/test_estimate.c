#define _GNU_SOURCE
/* estimate_memory (ABI 1.7) against what a run really holds:
 *  - its model-state figures equal engine_info's after two training steps
 *    (the same rules, nothing left out);
 *  - its total is within 10% of the measured peak: each case runs in a
 *    child process, which reads its resident set before the engine exists
 *    and its high-water mark (VmHWM) after two steps, with 4 KiB pages
 *    (DSRT_HUGEPAGES=0) so untouched memory is not counted in 2 MiB steps.
 * Cases: a LLaMA of 26M parameters (GQA, untied) in fp32 at stage 0 and in
 * bf16 at stage 2 (one bucket, and buckets of 2M elements with lm_head
 * staged apart), and GPT-2 124M in fp16 at stage 1. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "dsrt.h"

const dsrt_api *dsrt_api_table(void);
static const dsrt_api *api;
static char g_llama[256];

static char *last_error(void)
{
    static char buf[1024];
    dsrt_last_error_args le = {sizeof le, buf, sizeof buf, 0, 0};
    api->last_error(&le);
    return buf;
}

/* a /proc/self/status field in bytes */
static long long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':')
            v = atoll(line + n + 1);
    if (f)
        fclose(f);
    return v * 1024;
}

static dsrt_config *make_config(const char *text)
{
    dsrt_config_create_args cc = {.struct_size = sizeof cc, .text = text, .text_length = strlen(text),
                                  .world_size = 1};
    if (api->config_create(&cc))
        fail_msg("config: %s", last_error());
    return cc.config;
}

typedef struct measured {
    long long peak;              /* VmHWM - VmRSS before the engine */
    dsrt_engine_info_args info;  /* after two steps */
    int ok;
} measured;

/* in a child: the engine, two steps, the high-water mark */
static measured run_child(const char *config_text, const char *model, int T)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        measured m = {0};
        dsrt_config *cfg = make_config(config_text);
        long long base = status_kb("VmRSS");
        dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cfg, .model = model, .seq_len = T,
                                      .seed = 1};
        if (!api->engine_create(&ec)) {
            m.info = (dsrt_engine_info_args){.struct_size = sizeof m.info, .engine = ec.engine};
            api->engine_info(&m.info);
            size_t n = (size_t)m.info.micro_batch_size * T;
            int32_t *tok = calloc(n, sizeof *tok), *tgt = calloc(n, sizeof *tgt);
            for (size_t i = 0; i < n; i++)
                tok[i] = (int32_t)(i * 31 % 97), tgt[i] = (int32_t)(i * 17 % 89);
            dsrt_engine_train_args tr = {.struct_size = sizeof tr, .engine = ec.engine, .tokens = tok,
                                         .targets = tgt, .micro_batches = 1};
            m.ok = !api->engine_train(&tr) && !api->engine_train(&tr);
            api->engine_info(&m.info);
            m.peak = status_kb("VmHWM") - base;
        }
        if (write(fd[1], &m, sizeof m) != (ssize_t)sizeof m)
            _exit(1);
        _exit(0);
    }
    close(fd[1]);
    measured m = {0};
    assert_int_equal(read(fd[0], &m, sizeof m), (ssize_t)sizeof m);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(m.ok);
    return m;
}

static void check_case(const char *what, const char *config_text, const char *model, int T)
{
    dsrt_config *cfg = make_config(config_text);
    dsrt_estimate_memory_args a = {.struct_size = sizeof a, .config = cfg, .model = model, .seq_len = T};
    if (api->estimate_memory(&a))
        fail_msg("estimate: %s", last_error());
    dsrt_config_destroy_args cd = {sizeof cd, cfg};
    api->config_destroy(&cd);
    measured m = run_child(config_text, model, T);
    const dsrt_engine_info_args *i = &m.info;
    /* the model states: the engine's own figures */
    assert_int_equal(a.num_parameters, i->num_parameters);
    assert_int_equal(a.bytes_params, i->bytes_params);
    assert_int_equal(a.bytes_grads, i->bytes_grads);
    assert_int_equal(a.bytes_grad_transient, i->bytes_grad_transient);
    assert_int_equal(a.bytes_masters, i->bytes_masters);
    assert_int_equal(a.bytes_moments, i->bytes_moments);
    assert_int_equal(a.bytes_buckets, i->bytes_buckets);
    assert_int_equal(a.bytes_gather, i->bytes_gather);
    double ratio = (double)a.bytes_total / (double)m.peak;
    print_message("%s: estimated %.1f MiB (model states %.1f, activations %.1f, scratch %.1f), measured peak "
                  "%.1f MiB: %.3f\n",
                  what, a.bytes_total / 1048576.0, a.bytes_total_model_states / 1048576.0,
                  a.bytes_activations / 1048576.0, a.bytes_scratch / 1048576.0, m.peak / 1048576.0, ratio);
    if (fabs(ratio - 1.0) > 0.10)
        fail_msg("%s: the estimate %lld B is %.1f%% off the measured peak %lld B", what, (long long)a.bytes_total,
                 100.0 * (ratio - 1.0), m.peak);
}

#define CFG(PREC, STAGE, B)                                                                                   \
    "{\"train_micro_batch_size_per_gpu\": " #B ", \"gradient_accumulation_steps\": 1, "                     \
    "\"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-4}}, " PREC                                \
    "\"zero_optimization\": {\"stage\": " #STAGE "}}"

static void test_llama_fp32_stage0(void **state)
{
    (void)state;
    check_case("llama 26M fp32 stage 0, 2 x 128", CFG("", 0, 2), g_llama, 128);
}

static void test_llama_bf16_stage2(void **state)
{
    (void)state;
    check_case("llama 26M bf16 stage 2, 2 x 128", CFG("\"bf16\": {\"enabled\": true}, ", 2, 2), g_llama, 128);
}

static void test_llama_small_buckets(void **state)
{
    (void)state;
    /* buckets of 2M elements: several per backward, lm_head (4M) staged apart */
    check_case("llama 26M bf16 stage 2, 2M-element buckets",
               "{\"train_micro_batch_size_per_gpu\": 2, \"optimizer\": {\"type\": \"AdamW\", \"params\": "
               "{\"lr\": 1e-4}}, \"bf16\": {\"enabled\": true}, \"zero_optimization\": {\"stage\": 2, "
               "\"reduce_bucket_size\": 2000000, \"overlap_comm\": false}}",
               g_llama, 128);
}

static void test_gpt2_fp16_stage1(void **state)
{
    (void)state;
    check_case("gpt2 124M fp16 stage 1, 1 x 64", CFG("\"fp16\": {\"enabled\": true}, ", 1, 1), "gpt2", 64);
}

/* argument errors name what is wrong */
static void test_errors(void **state)
{
    (void)state;
    dsrt_config *cfg = make_config(CFG("", 0, 1));
    dsrt_estimate_memory_args a = {.struct_size = sizeof a, .config = cfg, .model = "gpt2-tiny", .seq_len = 100000};
    assert_int_equal(api->estimate_memory(&a), DSRT_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(last_error(), "seq_len"));
    a.model = "no-such-model";
    a.seq_len = 8;
    assert_int_not_equal(api->estimate_memory(&a), DSRT_STATUS_OK);
    a.model = NULL;
    assert_int_equal(api->estimate_memory(&a), DSRT_STATUS_INVALID_ARGUMENT);
    dsrt_config_destroy_args cd = {sizeof cd, cfg};
    api->config_destroy(&cd);
}

static int setup(void **state)
{
    (void)state;
    api = dsrt_api_table();
    setenv("DSRT_HUGEPAGES", "0", 1);
    snprintf(g_llama, sizeof g_llama, "/tmp/dsrt_test_estimate_%d.json", (int)getpid());
    FILE *f = fopen(g_llama, "w");
    if (!f)
        return -1;
    fputs("{\"model_type\": \"llama\", \"vocab_size\": 8000, \"hidden_size\": 512, \"intermediate_size\": 1408, "
          "\"num_hidden_layers\": 4, \"num_attention_heads\": 8, \"num_key_value_heads\": 2, "
          "\"max_position_embeddings\": 512, \"tie_word_embeddings\": false}",
          f);
    return fclose(f);
}

static int teardown(void **state)
{
    (void)state;
    unlink(g_llama);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_llama_fp32_stage0),
        cmocka_unit_test(test_llama_bf16_stage2),
        cmocka_unit_test(test_llama_small_buckets),
        cmocka_unit_test(test_gpt2_fp16_stage1),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
