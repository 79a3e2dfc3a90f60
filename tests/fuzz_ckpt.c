/* libFuzzer target: a checkpoint whose main file (first input byte even) or
 * rank file (odd) is replaced by the input's remaining bytes must fail to load
 * cleanly (or load, when the bytes are the original's): never a crash inside
 * HDF5 or an error path that leaves HDF5 unable to close. The seed checkpoint
 * (a small host model, so the files are a few KB) is made at start-up; with
 * DSRT_FUZZ_CORPUS set, its two files are written there as the first inputs. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsrt.h"

const dsrt_api *dsrt_api_table(void);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const dsrt_api *api;
static dsrt_engine *engine;
static char dir[64], main_path[128], rank_path[128];

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int bad = fwrite(data, 1, n, f) != n;
    return fclose(f) || bad ? -1 : 0;
}

static void seed_corpus(const char *corpus, int which, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b + 1, 1, (size_t)n, f) == (size_t)n) {
        b[0] = (unsigned char)which;
        char out[512];
        snprintf(out, sizeof out, "%s/seed_%d", corpus, which);
        write_file(out, b, (size_t)n + 1);
    }
    free(b);
    fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    api = dsrt_api_table();
    snprintf(dir, sizeof dir, "/tmp/dsrt_fuzz_ckpt_%d", (int)getpid());
    static const char cfg[] = "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": 1, "
                              "\"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-3}}}";
    dsrt_config_create_args cc = {.struct_size = sizeof cc, .text = cfg, .text_length = sizeof cfg - 1,
                                  .world_size = 1};
    dsrt_log_set_args ls = {.struct_size = sizeof ls, .fn = NULL};
    api->log_set(&ls);
    if (api->config_create(&cc))
        abort();
    static float w[8 * 4], b[8];
    for (int i = 0; i < 32; i++)
        w[i] = (float)i / 32.0f - 0.5f;
    dsrt_param_desc params[2] = {
        {.name = "fc.weight", .dtype = DSRT_PRECISION_FP32, .ndim = 2, .shape = {8, 4}, .data = w},
        {.name = "fc.bias", .dtype = DSRT_PRECISION_FP32, .ndim = 1, .shape = {8}, .data = b},
    };
    dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cc.config, .params = params,
                                  .num_params = 2, .seed = 1};
    if (api->engine_create(&ec))
        abort();
    engine = ec.engine; /* lives for the process; the engine keeps its own copy of the config */
    dsrt_config_destroy_args cd = {.struct_size = sizeof cd, .config = cc.config};
    api->config_destroy(&cd);
    dsrt_engine_save_args sv = {.struct_size = sizeof sv, .engine = engine, .save_dir = dir, .tag = "t"};
    if (api->engine_save(&sv))
        abort();
    snprintf(main_path, sizeof main_path, "%s/t/checkpoint.h5", dir);
    snprintf(rank_path, sizeof rank_path, "%s/t/zero_rank_00000.h5", dir);
    const char *corpus = getenv("DSRT_FUZZ_CORPUS");
    if (corpus) {
        seed_corpus(corpus, 0, main_path);
        seed_corpus(corpus, 1, rank_path);
    }
    return 0;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        abort();
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n ? *n : 1);
    if (!b || fread(b, 1, *n, f) != *n)
        abort();
    fclose(f);
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static unsigned char *orig[2];
    static size_t orig_n[2];
    const char *paths[2] = {main_path, rank_path};
    int which = data[0] & 1;
    if (!orig[which])
        orig[which] = slurp(paths[which], &orig_n[which]);
    if (write_file(paths[which], data + 1, size - 1))
        abort();
    dsrt_engine_load_args ld = {.struct_size = sizeof ld, .engine = engine, .load_dir = dir, .tag = "t"};
    dsrt_status st = api->engine_load(&ld);
    int same = size - 1 == orig_n[which] && !memcmp(data + 1, orig[which], orig_n[which]);
    if (same != (st == DSRT_STATUS_OK))
        __builtin_trap(); /* the original must load; anything else must be refused */
    write_file(paths[which], orig[which], orig_n[which]);
    return 0;
}
