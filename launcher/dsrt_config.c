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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dsrt-config [--world-size N] [--set NAME=VALUE]... [--compact] [--quiet] FILE|-\n"
            "       dsrt-config --version\n"
            "\n"
            "Reads a DeepSpeed ds_config (JSON or hjson) and prints it resolved as DeepSpeed 0.19 would run it.\n"
            "  --world-size N    data-parallel ranks used to resolve the batch sizes (default 1)\n"
            "  --set NAME=VALUE  a Hugging Face TrainingArguments value that fills \"auto\":\n"
            "                    per_device_train_batch_size, gradient_accumulation_steps, learning_rate,\n"
            "                    adam_beta1, adam_beta2, adam_epsilon, weight_decay, max_grad_norm,\n"
            "                    warmup_steps, warmup_ratio, max_steps, fp16, bf16, hidden_size\n"
            "  --compact         print the JSON on one line\n"
            "  --quiet           do not print warnings and \"auto\" fills\n"
            "Exit status: 0 accepted, 2 rejected, 1 usage or library error.\n");
}

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
    const char *file = NULL;
    long world = 1;
    int compact = 0, quiet = 0, show_version = 0;
    const char **sets = calloc((size_t)argc, sizeof *sets);
    size_t n_sets = 0;
    if (!sets)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--version")) {
            show_version = 1;
        } else if (!strcmp(a, "--compact")) {
            compact = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (!strcmp(a, "--world-size") || !strncmp(a, "--world-size=", 13)) {
            const char *v = a[12] == '=' ? a + 13 : (i + 1 < argc ? argv[++i] : NULL);
            char *end;
            errno = 0;
            world = v ? strtol(v, &end, 10) : 0;
            if (!v || *end || errno || world < 1 || world > 1 << 24) {
                fprintf(stderr, "dsrt-config: --world-size needs a positive integer\n");
                free(sets);
                return 1;
            }
        } else if (!strcmp(a, "--set") || !strncmp(a, "--set=", 6)) {
            const char *v = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || !strchr(v, '=')) {
                fprintf(stderr, "dsrt-config: --set needs NAME=VALUE\n");
                free(sets);
                return 1;
            }
            sets[n_sets++] = v;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "dsrt-config: unknown option %s\n", a);
            usage(stderr);
            free(sets);
            return 1;
        } else if (file) {
            fprintf(stderr, "dsrt-config: one config file at a time (got %s and %s)\n", file, a);
            free(sets);
            return 1;
        } else {
            file = a;
        }
    }

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
        usage(stderr);
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
