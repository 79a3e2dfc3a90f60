/* dsrt-config: read a DeepSpeed config the way dsrt (and DeepSpeed 0.19)
 * would, and print it resolved: batch sizes for a world size, "auto" filled
 * from Trainer-named values, every default explicit.
 *
 *   dsrt-config [--world-size N] [--set NAME=VALUE]... [--compact] FILE|-
 *
 * stdout: the resolved config as JSON; stderr: warnings and "auto" fills.
 * Exit 0 when accepted, 2 when rejected (the one-line error on stderr),
 * 1 when the library cannot be loaded. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"
#include "options.h"

typedef struct cli {
    const char *file;
    int64_t world;
    int compact, quiet, show_version;
    opt_list sets;
} cli;

#define O(f) offsetof(cli, f)
static const opt_spec k_options[] = {
    {"world-size", 0, OPT_INT, O(world), 1, 1 << 24, 0, 0, "N", "data-parallel ranks used to resolve the batch sizes (default 1)"},
    {"set", 0, OPT_LIST, O(sets), 0, 0, 0, 0, "NAME=VALUE",
     "a Hugging Face TrainingArguments value that fills \"auto\": per_device_train_batch_size,\n"
     "                          gradient_accumulation_steps, learning_rate, adam_beta1, adam_beta2, adam_epsilon,\n"
     "                          weight_decay, max_grad_norm, warmup_steps, warmup_ratio, max_steps, fp16, bf16,\n"
     "                          hidden_size, lr_scheduler_type (without a scheduler block: linear, cosine,\n"
     "                          cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt)"},
    {"compact", 0, OPT_FLAG, O(compact), 0, 0, 0, 0, NULL, "print the JSON on one line"},
    {"quiet", 'q', OPT_FLAG, O(quiet), 0, 0, 0, 0, NULL, "do not print warnings and \"auto\" fills"},
    {"version", 0, OPT_FLAG, O(show_version), 0, 0, 0, 0, NULL, "the library's version, build and CUDA devices"},
};
#undef O

static int take_file(void *target, const char *arg)
{
    cli *c = target;
    if (c->file) {
        fprintf(stderr, "dsrt-config: one config file at a time (got %s and %s)\n", c->file, arg);
        return -1;
    }
    c->file = arg;
    return 0;
}

static const opt_parser k_parser = {
    .prog = "dsrt-config",
    .synopsis = "dsrt-config [--world-size N] [--set NAME=VALUE]... [--compact] [--quiet] FILE|-\n"
                "       dsrt-config --version\n\n"
                "Reads a DeepSpeed ds_config (JSON or hjson) and prints it resolved as DeepSpeed 0.19 would run it.",
    .specs = k_options,
    .n_specs = sizeof k_options / sizeof k_options[0],
    .positional = take_file,
    .epilog = "Every option also takes the --name=VALUE form.\n"
              "Exit status: 0 accepted, 2 rejected, 1 usage or library error.\n",
};

static void log_to_stderr(void *user, dsrt_log_level level, const char *msg)
{
    (void)user;
    (void)level;
    fprintf(stderr, "%s\n", msg);
}

static char *read_stdin(size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) {
                free(buf);
                return NULL;
            }
            buf = p;
        }
    }
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    cli c = {.world = 1};
    c.sets.items = calloc((size_t)argc, sizeof *c.sets.items);
    if (!c.sets.items)
        return 1;
    opt_parser p = k_parser;
    p.target = &c;
    int prc = opt_parse(&p, argc, argv);
    if (prc) {
        free(c.sets.items);
        return prc > 0 ? 0 : 1;
    }
    for (size_t i = 0; i < c.sets.n; i++)
        if (!strchr(c.sets.items[i], '=')) {
            fprintf(stderr, "dsrt-config: --set %s: needs NAME=VALUE\n", c.sets.items[i]);
            free(c.sets.items);
            return 1;
        }
    const char *file = c.file;
    long world = (long)c.world;
    int compact = c.compact, quiet = c.quiet, show_version = c.show_version;
    const char **sets = c.sets.items;
    size_t n_sets = c.sets.n;

    dsrt_lib lib;
    char err[2048];
    if (dsrt_lib_open(&lib, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "dsrt-config: %s\n", err);
        free(sets);
        return 1;
    }
    const dsrt_api *api = lib.api;
    if (show_version) {
        dsrt_version_args v = {.struct_size = sizeof v};
        api->version(&v);
        printf("dsrt %s (ABI %u.%u), DeepSpeed %s semantics\nbuild: %s\nlibrary: %s\nCUDA devices: %d\n", v.version,
               v.abi_major, v.abi_minor, v.deepspeed_compat, v.build, lib.path, v.cuda_devices);
        dsrt_lib_close(&lib);
        free(sets);
        return 0;
    }
    if (!file) {
        opt_usage(&k_parser, stderr);
        dsrt_lib_close(&lib);
        free(sets);
        return 1;
    }
    dsrt_log_set_args ls = {.struct_size = sizeof ls, .fn = quiet ? NULL : log_to_stderr, .min_level = DSRT_LOG_INFO};
    api->log_set(&ls);

    dsrt_config_create_args ca = {.struct_size = sizeof ca,
                                  .world_size = (int32_t)world,
                                  .hf_values = sets,
                                  .hf_value_count = n_sets};
    char *text = NULL;
    if (!strcmp(file, "-")) {
        text = read_stdin(&ca.text_length);
        if (!text) {
            fprintf(stderr, "dsrt-config: out of memory reading stdin\n");
            return 1;
        }
        ca.text = text;
    } else {
        ca.path = file;
    }
    dsrt_status st = api->config_create(&ca);
    int rc = 0;
    if (st != DSRT_STATUS_OK) {
        fprintf(stderr, "%s\n", dsrt_lib_error(&lib));
        rc = st == DSRT_STATUS_INVALID_CONFIG || st == DSRT_STATUS_IO_ERROR ? 2 : 1;
    } else {
        dsrt_config_to_json_args ja = {.struct_size = sizeof ja, .config = ca.config, .indent = compact ? 0 : 2};
        if (api->config_to_json(&ja) == DSRT_STATUS_OK) {
            fwrite(ja.json, 1, ja.json_length, stdout);
            if (compact)
                fputc('\n', stdout);
        } else {
            fprintf(stderr, "dsrt-config: %s\n", dsrt_lib_error(&lib));
            rc = 1;
        }
        dsrt_config_destroy_args da = {.struct_size = sizeof da, .config = ca.config};
        api->config_destroy(&da);
    }
    ls.fn = NULL;
    api->log_set(&ls);
    dsrt_lib_close(&lib);
    free(text);
    free(sets);
    if (fflush(stdout) != 0)
        return 1;
    return rc;
}
