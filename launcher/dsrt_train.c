/* dsrt-train: the reference host launcher. It loads libdsrt.so with dlopen
 * (it is not linked to it), as a user's own launcher would, and trains a
 * built-in model (GPT-2 presets, or a Hugging Face GPT-2 / LLaMA / Mistral /
 * Qwen2 folder with its weights) under a DeepSpeed config on a data file.
 *
 *   dsrt-train [--deepspeed_config FILE] [--model PRESET|config.json|DIR]
 *              [--data FILE] [--steps N] [--seed S] [--seq_len T] [--device D]
 *              [--eval_every K] [--eval_batches N] [--loss_csv FILE]
 *              [--reference_curve FILE --curve_rtol X [--curve_window N]]
 *              [--<TrainingArguments name> VALUE]...   (fill "auto", as dsrt-config --set)
 *
 * Data (launcher/dataset.h): JSONL token sequences with labels (-100 prompt
 * masks), Megatron-LM .bin/.idx, llm.c .bin shards or raw uint16 tokens, or
 * text read as bytes (vocabulary 256). Token streams are cut into
 * consecutive windows as llm.c's loader does (B*T+1 tokens at the cursor,
 * which advances by B*T and wraps); sequences are samples, shuffled each
 * epoch from the seed, cut or padded to T. With --eval_every, the last 10%
 * is held out for evaluation. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"
#include "loader.h"
#include "plot.h"
#include "options.h"

static const char *const k_hf_names[] = {
    "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "adam_beta1",
    "adam_beta2", "adam_epsilon", "weight_decay", "max_grad_norm", "warmup_steps", "warmup_ratio",
    "max_steps", "fp16", "bf16", "hidden_size", "lr_scheduler_type", NULL};

static int log_level_min = 1;
static void on_log(void *user, dsrt_log_level level, const char *msg)
{
    (void)user;
    static const char *const names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
    if ((int)level >= log_level_min)
        fprintf(stderr, "[dsrt %s] %s\n", names[level], msg);
}

typedef struct curve_row {
    long step;
    double loss, lr, loss_scale; /* lr, loss_scale NaN when the curve has no such column */
    int skipped;                 /* -1 when the curve has no such column */
} curve_row;

/* A loss CSV with a header naming its columns: step and loss are required;
 * loss_scale and skipped, when present, must match exactly, and lr to 1e-6
 * relative (the schedule, including its not stepping on skipped steps). */
static int load_curve(const char *path, curve_row **rows, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "dsrt-train: --reference_curve %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int col_step = -1, col_loss = -1, col_lr = -1, col_scale = -1, col_skip = -1;
    if (fgets(line, sizeof line, f)) {
        int c = 0;
        for (char *tok = strtok(line, ",\r\n"); tok; tok = strtok(NULL, ",\r\n"), c++) {
            if (!strcmp(tok, "step")) col_step = c;
            else if (!strcmp(tok, "loss")) col_loss = c;
            else if (!strcmp(tok, "lr")) col_lr = c;
            else if (!strcmp(tok, "loss_scale")) col_scale = c;
            else if (!strcmp(tok, "skipped")) col_skip = c;
        }
    }
    if (col_step < 0 || col_loss < 0) {
        fprintf(stderr, "dsrt-train: --reference_curve %s: the header must name step and loss\n",
                path);
        fclose(f);
        return -1;
    }
    size_t cap = 0;
    *rows = NULL;
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        curve_row r = {0, 0, NAN, NAN, -1};
        int c = 0;
        for (char *tok = strtok(line, ",\r\n"); tok; tok = strtok(NULL, ",\r\n"), c++) {
            if (c == col_step) r.step = atol(tok);
            else if (c == col_loss) r.loss = strtod(tok, NULL);
            else if (c == col_lr) r.lr = strtod(tok, NULL);
            else if (c == col_scale) r.loss_scale = strtod(tok, NULL);
            else if (c == col_skip) r.skipped = atoi(tok);
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            *rows = realloc(*rows, cap * sizeof **rows);
        }
        (*rows)[(*n)++] = r;
    }
    fclose(f);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- options */

typedef struct opts {
    const char *config_path, *model, *data, *device, *loss_csv, *ref_curve, *dist_backend, *plot;
    const char *save_dir, *load_dir, *export_hf;
    double comm_timeout, curve_rtol;
    int64_t save_interval, steps, eval_every, eval_batches, curve_window, seq_len, local_rank, estimate_ranks;
    int resume, load_module_only, skip_optimizer_states, estimate;
    uint64_t seed;
    const char **sets; /* "name=value" TrainingArguments values for "auto" */
    char **owned;
    size_t n_sets;
} opts;

#define O(f) offsetof(opts, f)
#define INT_OPT(name, f, lo, hi, meta, help) {name, 0, OPT_INT, O(f), lo, hi, 0, 0, meta, help}
#define STR_OPT(name, f, meta, help) {name, 0, OPT_STR, O(f), 0, 0, 0, 0, meta, help}
#define FLOAT_OPT(name, f, lo, hi, meta, help) {name, 0, OPT_FLOAT, O(f), 0, 0, lo, hi, meta, help}
static const opt_spec k_options[] = {
    STR_OPT("deepspeed_config", config_path, "FILE", "DeepSpeed config (default configs/ds_config.json)"),
    STR_OPT("deepspeed", config_path, "FILE", NULL),
    STR_OPT("model", model, "M",
            "GPT-2 preset (gpt2-tiny, gpt2, gpt2-medium), a config.json (random weights), or a Hugging Face\n"
            "model folder (config.json + safetensors: GPT-2, LLaMA, Mistral, Qwen2) (default gpt2-tiny)"),
    STR_OPT("data", data, "FILE",
            ".jsonl token sequences ({\"input_ids\": [..], \"labels\": [..]}, -100 = masked), Megatron\n"
            ".bin/.idx, llm.c .bin tokens, or text (byte tokens)"),
    INT_OPT("steps", steps, 0, INT64_MAX, "N", "optimizer steps (default 100; 0: none, e.g. to --export_hf a checkpoint)"),
    {"estimate", 0, OPT_FLAG, O(estimate), 0, 0, 0, 0, NULL,
     "print each rank's memory (weights, gradients, optimizer, buckets, activations, scratch) for the\n"
     "config, model and --seq_len, and exit without allocating it"},
    INT_OPT("estimate_ranks", estimate_ranks, 1, INT32_MAX, "N",
            "with --estimate: for N data-parallel ranks (default: this process group's size)"),
    STR_OPT("export_hf", export_hf, "DIR",
            "at the end, write the model as a Hugging Face folder (config.json + safetensors) into DIR"),
    {"seed", 0, OPT_UINT64, O(seed), 0, 0, 0, 0, "S", "initial weights (default 1234)"},
    INT_OPT("seq_len", seq_len, 1, INT32_MAX, "T", "tokens per sequence (default min(256, n_positions))"),
    STR_OPT("device", device, "D", "cpu (default), cuda, cuda:N"),
    INT_OPT("local_rank", local_rank, -1, INT32_MAX, "N",
            "as the deepspeed launcher and HF scripts pass it (-1: not distributed); checked against the "
            "process group's local rank"),
    STR_OPT("dist_backend", dist_backend, "B",
            "auto (default: MPI under mpirun, TCP when RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT are set, "
            "else one rank), local, mpi, tcp"),
    FLOAT_OPT("comm_timeout", comm_timeout, 1e-3, 1e9, "S", "seconds a collective may wait for a peer (default 1800)"),
    STR_OPT("save_dir", save_dir, "D", "save a checkpoint (HDF5) every --save_interval steps and at the end"),
    INT_OPT("save_interval", save_interval, 0, INT64_MAX, "K", "steps between checkpoints (0, the default: only at the end)"),
    {"resume", 0, OPT_FLAG, O(resume), 0, 0, 0, 0, NULL, "continue from the latest checkpoint in --save_dir, if any"},
    STR_OPT("load_dir", load_dir, "D", "continue from the latest checkpoint in D (an error if none)"),
    {"load_module_only", 0, OPT_FLAG, O(load_module_only), 0, 0, 0, 0, NULL,
     "with --resume/--load_dir: only the weights (DeepSpeed's load_module_only): from step 1"},
    {"skip_optimizer_states", 0, OPT_FLAG, O(skip_optimizer_states), 0, 0, 0, 0, NULL,
     "with --resume/--load_dir: weights, step and schedule, but fresh Adam moments and loss scaler"},
    INT_OPT("eval_every", eval_every, 0, INT64_MAX, "K", "evaluate on the held-out last 10% every K steps (0: never)"),
    INT_OPT("eval_batches", eval_batches, 1, INT32_MAX, "N", "sequences per evaluation (default 16)"),
    STR_OPT("loss_csv", loss_csv, "FILE", "one row per optimizer step"),
    STR_OPT("plot", plot, "FILE.svg",
            "the run's curves as one self-contained SVG (loss, held-out loss, lr, loss scale, skipped\n"
            "                          steps; the --reference_curve over the loss), written at the end"),
    STR_OPT("reference_curve", ref_curve, "FILE", "a loss CSV to stay within --curve_rtol of (exit 3 if not)"),
    FLOAT_OPT("curve_rtol", curve_rtol, 0, 1e9, "X", "relative tolerance per step (default 1e-4)"),
    INT_OPT("curve_window", curve_window, 1, INT32_MAX, "N", "compare means over windows of N steps instead"),
};
#undef O

static const char k_epilog[] =
    "  --per_device_train_batch_size, --gradient_accumulation_steps, --learning_rate,\n"
    "  --adam_beta1, --adam_beta2, --adam_epsilon, --weight_decay, --max_grad_norm,\n"
    "  --warmup_steps, --warmup_ratio, --max_steps, --fp16, --bf16, --hidden_size,\n"
    "  --lr_scheduler_type VALUE\n"
    "                          Hugging Face TrainingArguments values: they fill \"auto\", and without an\n"
    "                          optimizer / scheduler block they configure the Trainer's AdamW and schedule\n"
    "                          (max_steps defaults to --steps, hidden_size to the model's)\n"
    "  --deepspeed [FILE]      as the deepspeed launcher (a flag beside --deepspeed_config) and Hugging\n"
    "                          Face scripts (--deepspeed FILE: the config) pass it\n"
    "Every option also takes the --name=VALUE form. LOCAL_RANK in the environment is read as\n"
    "--local_rank when that is not given.\n"
    "Exit status: 0 done, 1 error, 2 usage, 3 left the reference curve.\n";

static void add_set(opts *o, const char *name, const char *value)
{
    size_t len = strlen(name) + strlen(value) + 2;
    o->owned[o->n_sets] = malloc(len);
    snprintf(o->owned[o->n_sets], len, "%s=%s", name, value);
    o->sets[o->n_sets] = o->owned[o->n_sets];
    o->n_sets++;
}

static int has_set(const opts *o, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < o->n_sets; i++)
        if (!strncmp(o->sets[i], name, n) && o->sets[i][n] == '=')
            return 1;
    return 0;
}

/* a Trainer value for "auto" (checked by the library's reader) */
static int hf_value(void *target, const char *name, const char *value)
{
    opts *o = target;
    int known = 0;
    for (int j = 0; k_hf_names[j]; j++)
        known |= !strcmp(name, k_hf_names[j]);
    if (!known)
        return 0;
    add_set(o, name, value);
    return 1;
}

static void opts_free(opts *o)
{
    for (size_t i = 0; i < o->n_sets; i++)
        free(o->owned[i]);
    free(o->owned);
    free(o->sets);
}

/* Returns -1 to go on, else the exit status (0 after --help, 2 on a usage error). */
static int parse_args(int argc, char **argv, opts *o)
{
    *o = (opts){.config_path = "configs/ds_config.json", .model = "gpt2-tiny", .device = "cpu",
                .steps = 100, .eval_batches = 16, .curve_window = 1, .seed = 1234, .curve_rtol = 1e-4,
                .local_rank = -1};
    /* room for every argument and the values dsrt-train adds (max_steps, hidden_size) */
    o->sets = calloc((size_t)argc + 4, sizeof *o->sets);
    o->owned = calloc((size_t)argc + 4, sizeof *o->owned);
    /* What the deepspeed launcher and Hugging Face scripts pass: `--deepspeed`
     * alone (deepspeed.add_config_arguments' flag, with --deepspeed_config
     * FILE), or `--deepspeed FILE` / `--deepspeed=FILE` (TrainingArguments):
     * the file is the config. Taken out before the table parser sees them. */
    char **args = calloc((size_t)argc + 1, sizeof *args);
    int nargs = 0;
    const char *ds_file = NULL;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && !strcmp(argv[i], "--deepspeed")) {
            if (i + 1 < argc && argv[i + 1][0] != '-')
                ds_file = argv[++i];
            continue;
        }
        if (i > 0 && !strncmp(argv[i], "--deepspeed=", 12)) {
            ds_file = argv[i] + 12;
            continue;
        }
        args[nargs++] = argv[i];
    }
    opt_parser p = {.prog = "dsrt-train", .synopsis = "dsrt-train [options]", .specs = k_options,
                    .n_specs = sizeof k_options / sizeof k_options[0], .target = o, .extra = hf_value,
                    .epilog = k_epilog};
    const char *default_config = o->config_path;
    int rc = opt_parse(&p, nargs, args);
    free(args);
    if (rc)
        return rc > 0 ? 0 : 2;
    if (ds_file) {
        if (o->config_path != default_config && strcmp(o->config_path, ds_file)) {
            fprintf(stderr, "dsrt-train: --deepspeed %s and --deepspeed_config %s name two configs\n", ds_file,
                    o->config_path);
            return 2;
        }
        o->config_path = ds_file;
    }
    /* the deepspeed launcher sets LOCAL_RANK when it does not pass --local_rank */
    const char *lr_env = getenv("LOCAL_RANK");
    if (o->local_rank < 0 && lr_env && *lr_env) {
        char *end = NULL;
        long v = strtol(lr_env, &end, 10);
        if (*end || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "dsrt-train: LOCAL_RANK=%s in the environment is not a rank\n", lr_env);
            return 2;
        }
        o->local_rank = v;
    }
    if (!o->data && !o->estimate) {
        fprintf(stderr, "dsrt-train: --data FILE is required (.jsonl sequences, Megatron .bin/.idx, .bin tokens or "
                        "text)\n");
        return 2;
    }
    if (o->estimate_ranks && !o->estimate) {
        fprintf(stderr, "dsrt-train: --estimate_ranks goes with --estimate\n");
        return 2;
    }
    if (o->resume && !o->save_dir && !o->load_dir) {
        fprintf(stderr, "dsrt-train: --resume needs --save_dir (or use --load_dir)\n");
        return 2;
    }
    return -1;
}

/* ---------------------------------------------------------------- the run */

typedef struct run {
    dsrt_lib lib;
    const dsrt_api *api;
    dsrt_dist_create_args dc;
    dsrt_config *config;
    dsrt_engine *e;
    dsrt_engine_info_args info;
    int rank, world, B, T, gas;
    plot_data *plot;             /* --plot on rank 0, else NULL */
    dataset ds;
    int tty;
} run;

/* --estimate: the memory of one rank, then the run ends (setup returns 2) */
static int print_estimate(run *r, const opts *o, int world)
{
    if (r->api->abi_minor < 7) {
        fprintf(stderr, "dsrt-train: --estimate: %s has no memory estimate (ABI %u.%u)\n", r->lib.path,
                r->api->abi_major, r->api->abi_minor);
        return -1;
    }
    dsrt_estimate_memory_args a = {.struct_size = sizeof a, .config = r->config, .model = o->model,
                                   .seq_len = (int32_t)(o->seq_len ? o->seq_len : 256), .device = o->device};
    dsrt_status st = r->api->estimate_memory(&a);
    if (st == DSRT_STATUS_INVALID_ARGUMENT && !o->seq_len) {
        a.seq_len = 0; /* the model's context is below 256, as engine_create falls back */
        st = r->api->estimate_memory(&a);
    }
    if (st) {
        fprintf(stderr, "dsrt-train: --estimate: %s\n", dsrt_lib_error(&r->lib));
        return -1;
    }
    dsrt_config_summary_args cs = {.struct_size = sizeof cs, .config = r->config};
    r->api->config_summary(&cs);
    if (r->rank != 0)
        return 0;
    const double M = 1024.0 * 1024.0;
    printf("dsrt-train --estimate: %s, %lld parameters, %s, %d rank%s, sequences of %d tokens on %s\n", o->model,
           (long long)a.num_parameters, o->config_path, world, world == 1 ? "" : "s", (int)a.seq_len,
           o->device ? o->device : "cpu");
    static const char *const prec[] = {"fp32", "fp16", "bf16"};
    printf("  ZeRO stage %d, %s, micro batch %lld x %d, gradient accumulation %lld\n", (int)cs.zero_stage,
           (unsigned)cs.precision < 3 ? prec[cs.precision] : "?", (long long)cs.train_micro_batch_size_per_gpu,
           (int)a.seq_len, (long long)cs.gradient_accumulation_steps);
    printf("  per rank                                   MiB\n");
    const struct {
        const char *what;
        int64_t b;
    } rows[] = {
        {"parameters (run dtype)", a.bytes_params},         {"gradients kept", a.bytes_grads},
        {"gradient staging (stage 1/2)", a.bytes_grad_transient}, {"fp32 master weights", a.bytes_masters},
        {"Adam moments (fp32)", a.bytes_moments},          {"reduction buckets", a.bytes_buckets},
        {"all-gather staging", a.bytes_gather},            {"= model states", a.bytes_total_model_states},
        {"activations (one micro-batch)", a.bytes_activations}, {"op and comm scratch", a.bytes_scratch},
        {"= total", a.bytes_total},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        printf("  %-36s %12.1f\n", rows[i].what, (double)rows[i].b / M);
    return 0;
}

/* OpenBLAS picks its kernels for the processor when it is loaded (with
 * libdsrt, below), from its own list of processor models; Debian 12's 0.3.21
 * does not know recent Xeons and falls back to its SSE3 ("Prescott")
 * kernels, a quarter of an AVX-512 machine's sgemm rate. Unless the user
 * chose (OPENBLAS_CORETYPE set), name the kernels the processor runs: the
 * same choice OpenBLAS makes for the processors it knows. */
static void choose_openblas_kernels(void)
{
    if (getenv("OPENBLAS_CORETYPE"))
        return;
    __builtin_cpu_init();
    const char *core = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        core = "Haswell";
    if (core)
        setenv("OPENBLAS_CORETYPE", core, 0);
}

/* libdsrt, the process group, the config, the engine and the data. */
static int setup(run *r, opts *o)
{
    char err[4096];
    choose_openblas_kernels();
    if (dsrt_lib_open(&r->lib, NULL, err, sizeof err)) {
        fprintf(stderr, "dsrt-train: %s\n", err);
        return 1;
    }
    const dsrt_api *api = r->api = r->lib.api;
    if (api->struct_size < offsetof(dsrt_api, engine_info) + sizeof api->engine_info) {
        fprintf(stderr, "dsrt-train: %s is too old (ABI %u.%u): it has no training engine\n",
                r->lib.path, api->abi_major, api->abi_minor);
        return 1;
    }
    dsrt_log_set_args ls = {sizeof ls, on_log, NULL, DSRT_LOG_INFO};
    api->log_set(&ls);

    /* the process group first: the config's batch sizes depend on its size */
    r->dc = (dsrt_dist_create_args){.struct_size = sizeof r->dc, .backend = o->dist_backend,
                                    .timeout_s = o->comm_timeout, .world_size = 1};
    if (api->abi_minor >= 2 && api->dist_create(&r->dc)) {
        fprintf(stderr, "dsrt-train: %s\n", dsrt_lib_error(&r->lib));
        return 1;
    }
    r->rank = r->dc.rank, r->world = r->dc.world_size;
    if (o->local_rank >= 0 && o->local_rank != r->dc.local_rank)
        fprintf(stderr,
                "dsrt-train: warning: --local_rank %" PRId64 " but the process group (%s) says local rank %d; "
                "the group's is used\n",
                o->local_rank, r->dc.backend_used ? r->dc.backend_used : "local", (int)r->dc.local_rank);
    if (r->rank != 0)
        log_level_min = 3; /* rank 0 speaks for the group; the others report errors */
    /* What the Trainer knows and fills "auto" from: the run's length and the
     * model's hidden size (an explicit --max_steps / --hidden_size wins) */
    char num[32];
    if (!has_set(o, "max_steps") && o->steps > 0) {
        snprintf(num, sizeof num, "%ld", (long)o->steps);
        add_set(o, "max_steps", num);
    }
    if (!has_set(o, "hidden_size") && api->abi_minor >= 6) {
        dsrt_model_info_args mi = {.struct_size = sizeof mi, .model = o->model};
        if (api->model_info(&mi)) {
            fprintf(stderr, "dsrt-train: %s\n", dsrt_lib_error(&r->lib));
            return 1;
        }
        snprintf(num, sizeof num, "%d", (int)mi.n_embd);
        add_set(o, "hidden_size", num);
    }
    dsrt_config_create_args cc = {.struct_size = sizeof cc, .path = o->config_path,
                                  .world_size = o->estimate && o->estimate_ranks ? (int32_t)o->estimate_ranks : r->world,
                                  .hf_values = o->sets, .hf_value_count = o->n_sets};
    if (api->config_create(&cc)) {
        fprintf(stderr, "dsrt-train: %s\n", dsrt_lib_error(&r->lib));
        return 1;
    }
    r->config = cc.config;
    if (o->estimate)
        return print_estimate(r, o, cc.world_size ? cc.world_size : 1) ? 1 : 2;
    dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cc.config, .model = o->model,
                                  .seq_len = (int32_t)o->seq_len, .seed = o->seed, .device = o->device,
                                  .dist = r->dc.dist};
    if (!o->seq_len) /* default T: 256, or the model's context when shorter */
        ec.seq_len = 256;
    dsrt_status st = api->engine_create(&ec);
    if (st == DSRT_STATUS_INVALID_ARGUMENT && !o->seq_len) {
        ec.seq_len = 0; /* the model's n_positions is below 256 */
        st = api->engine_create(&ec);
    }
    if (st) {
        fprintf(stderr, "dsrt-train: %s\n", dsrt_lib_error(&r->lib));
        return 1;
    }
    r->e = ec.engine;
    r->info = (dsrt_engine_info_args){.struct_size = sizeof r->info, .engine = r->e};
    api->engine_info(&r->info);
    r->B = r->info.micro_batch_size, r->T = r->info.seq_len, r->gas = r->info.gradient_accumulation_steps;

    if (dataset_load(o->data, r->info.vocab_size, o->eval_every > 0, o->seed, &r->ds) ||
        dataset_check(&r->ds, o->data, r->B, r->T))
        return 1;
    if (r->rank == 0) {
        const char *unit = "";
        size_t held = dataset_heldout(&r->ds, &unit);
        fprintf(stderr,
                "dsrt-train: %s, %lld parameters on %s; %s (%s): %zu %s for training, %zu held out; "
                "micro batch %d x %d, gradient accumulation %d, %d rank%s (%s, ZeRO stage %d); "
                "%ld steps\n",
                o->model, (long long)r->info.num_parameters, r->info.device, o->data, r->ds.format,
                r->ds.n_train, unit, held, r->B, r->T, r->gas, r->world, r->world == 1 ? "" : "s",
                r->dc.backend_used ? r->dc.backend_used : "local", r->info.zero_stage, o->steps);
    }
    r->tty = r->rank == 0 && isatty(2);
    return 0;
}

static void teardown(run *r)
{
    const dsrt_api *api = r->api;
    if (api) {
        dsrt_engine_destroy_args ed = {sizeof ed, r->e};
        api->engine_destroy(&ed);
        dsrt_config_destroy_args cd = {sizeof cd, r->config};
        api->config_destroy(&cd);
        dsrt_dist_destroy_args dd = {sizeof dd, r->dc.dist};
        if (api->abi_minor >= 2)
            api->dist_destroy(&dd);
        dsrt_lib_close(&r->lib);
    }
    dataset_free(&r->ds);
}

/* --resume / --load_dir: the engine's state from the checkpoint; the data
 * position follows from its global step (every step consumes gas x world
 * micro-batches, whatever the world size). *start: the first step to run. */
static int resume(run *r, const opts *o, long *start)
{
    *start = 1;
    const char *from = o->load_dir ? o->load_dir : o->resume ? o->save_dir : NULL;
    if (from) {
        char lp[4200];
        snprintf(lp, sizeof lp, "%s/latest", from);
        if (o->load_dir || access(lp, F_OK) == 0) {
            dsrt_engine_load_args la = {.struct_size = sizeof la, .engine = r->e, .load_dir = from,
                                        .load_module_only = o->load_module_only,
                                        .skip_optimizer_states = o->skip_optimizer_states};
            if ((o->load_module_only || o->skip_optimizer_states) && r->api->abi_minor < 4) {
                fprintf(stderr, "dsrt-train: %s cannot load weights alone (ABI %u.%u; 1.4 can)\n",
                        r->lib.path, r->api->abi_major, r->api->abi_minor);
                return 1;
            }
            if (r->api->abi_minor < 3) {
                fprintf(stderr, "dsrt-train: %s has no checkpoints (ABI %u.%u)\n", r->lib.path,
                        r->api->abi_major, r->api->abi_minor);
                return 1;
            }
            if (r->api->engine_load(&la)) {
                fprintf(stderr, "dsrt-train: %s%s\n", r->world > 1 ? "rank error: " : "",
                        dsrt_lib_error(&r->lib));
                return 1;
            }
            *start = (long)la.global_steps + 1;
            if (r->rank == 0)
                fprintf(stderr, "dsrt-train: resumed from %s at step %ld\n", from, *start);
        } else if (r->rank == 0) {
            fprintf(stderr, "dsrt-train: --resume: no checkpoint in %s yet, starting at step 1\n",
                    from);
        }
    }
    if (*start > o->steps && r->rank == 0)
        fprintf(stderr, "dsrt-train: the checkpoint is at step %ld already (--steps %ld)\n",
                *start - 1, o->steps);
    return 0;
}

/* ---------------------------------------------------------------- the reference curve */

typedef struct deviation {
    long step;
    double got, want, rel;
} deviation;

typedef struct curve_check {
    curve_row *ref;
    size_t n_ref;
    double *got, *want; /* (steps) */
    char *have;
    long n_event_bad;
} curve_check;

/* One step against the reference: skipped, loss scale and lr at once; the
 * loss kept for curve_verdict. */
static void curve_record(curve_check *cc, long step, const dsrt_step_report *r)
{
    for (size_t i = 0; i < cc->n_ref; i++) {
        const curve_row *f = &cc->ref[i];
        if (f->step != step)
            continue;
        if ((f->skipped >= 0 && f->skipped != r->skipped) ||
            (!isnan(f->loss_scale) && f->loss_scale != r->loss_scale) ||
            (!isnan(f->lr) && !(fabs(r->lr - f->lr) <= 1e-6 * fabs(f->lr)))) {
            fprintf(stderr,
                    "dsrt-train: step %ld: skipped %d, loss scale %g, lr %.9g; the reference "
                    "has skipped %d, loss scale %g, lr %.9g\n",
                    step, r->skipped, r->loss_scale, r->lr, f->skipped, f->loss_scale, f->lr);
            cc->n_event_bad++;
        }
        cc->got[step - 1] = r->loss;
        cc->want[step - 1] = f->loss;
        cc->have[step - 1] = 1;
        break;
    }
}

/* The losses per step, or the means of consecutive windows of --curve_window
 * steps, within --curve_rtol: 0, or 3 when the run left the curve. */
static int curve_verdict(const curve_check *cc, const opts *o)
{
    deviation worst[5] = {{0}};
    long w = o->curve_window > 0 ? o->curve_window : 1, compared = 0, n_bad = 0;
    for (long s0 = 0; s0 + w <= o->steps; s0 += w) {
        double g = 0, h = 0;
        int complete = 1;
        for (long k = s0; k < s0 + w; k++) {
            complete &= cc->have[k];
            g += cc->got[k];
            h += cc->want[k];
        }
        if (!complete)
            continue;
        compared++;
        g /= (double)w;
        h /= (double)w;
        double rel = fabs(g - h) / fmax(fabs(h), 1e-12);
        if (rel <= o->curve_rtol)
            continue;
        n_bad++;
        if (isnan(rel))
            rel = INFINITY;
        for (int k = 0; k < 5; k++) {
            if (rel > worst[k].rel) {
                memmove(&worst[k + 1], &worst[k], (size_t)(4 - k) * sizeof worst[0]);
                worst[k] = (deviation){s0 + 1, g, h, rel};
                break;
            }
        }
    }
    const char *unit = w > 1 ? "windows" : "steps";
    if (n_bad || cc->n_event_bad || !compared) {
        fprintf(stderr,
                "dsrt-train: left the reference curve %s: %ld of %ld %s beyond rtol %g, %ld "
                "steps differ in skipped/loss scale/lr%s\n",
                o->ref_curve, n_bad, compared, unit, o->curve_rtol, cc->n_event_bad,
                compared ? "" : " (no step compared)");
        for (int k = 0; k < 5 && worst[k].step; k++)
            fprintf(stderr, "  %s %ld%s: loss %.9g, reference %.9g, relative diff %.3g\n",
                    w > 1 ? "window from step" : "step", worst[k].step, "", worst[k].got,
                    worst[k].want, worst[k].rel);
        return 3;
    }
    fprintf(stderr,
            "dsrt-train: all %ld %s within rtol %g of %s; skipped steps and loss scales "
            "identical, lr within 1e-6\n",
            compared, unit, o->curve_rtol, o->ref_curve);
    return 0;
}

/* ---------------------------------------------------------------- the loss CSV */

static const char k_csv_header[] = "step,loss,lr,loss_scale,grad_norm,skipped,tokens_per_s\n";

/* The --loss_csv file of a run starting at `start`. A resumed run continues
 * the file of the run it resumes: rows of steps after the checkpoint (written
 * by the killed run before it died, and about to be run again) are dropped,
 * and a file left empty gets its header. Rows are flushed as they are
 * written, and synced with every checkpoint. NULL: the error is printed. */
static FILE *open_loss_csv(const char *path, long start)
{
    FILE *old = start > 1 ? fopen(path, "r") : NULL;
    if (!old) {
        FILE *f = fopen(path, "w");
        if (!f || fputs(k_csv_header, f) < 0 || fflush(f)) {
            fprintf(stderr, "dsrt-train: --loss_csv %s: %s\n", path, strerror(errno));
            if (f)
                fclose(f);
            return NULL;
        }
        return f;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "dsrt-train: --loss_csv %s: %s\n", tmp, strerror(errno));
        fclose(old);
        return NULL;
    }
    char line[4096];
    long kept = 0, dropped = 0;
    fputs(k_csv_header, f);
    while (fgets(line, sizeof line, old)) {
        char *end;
        long step = strtol(line, &end, 10);
        if (end == line || *end != ',')
            continue; /* the header, or a torn last line */
        if (step < start) {
            fputs(line, f);
            kept++;
        } else {
            dropped++;
        }
    }
    fclose(old);
    if (fflush(f) || fsync(fileno(f)) || rename(tmp, path)) {
        fprintf(stderr, "dsrt-train: --loss_csv %s: %s\n", path, strerror(errno));
        fclose(f);
        unlink(tmp);
        return NULL;
    }
    if (dropped)
        fprintf(stderr, "dsrt-train: --loss_csv %s: kept the %ld rows before step %ld, dropped %ld rows of steps "
                        "that run again\n", path, kept, start, dropped);
    return f;
}

/* ---------------------------------------------------------------- the loop */

/* The held-out loss on rank 0: 0, or 1 on an error. */
static int evaluate(run *r, const opts *o, long step)
{
    size_t want = (size_t)o->eval_batches;
    int32_t *ei = malloc(want * r->T * sizeof(int32_t)), *et = malloc(want * r->T * sizeof(int32_t));
    size_t nb = ei && et ? dataset_eval(&r->ds, want, r->T, ei, et) : 0;
    if (nb == 0) {
        static int said;
        const char *unit = "";
        size_t held = dataset_heldout(&r->ds, &unit);
        if (!said++)
            fprintf(stderr,
                    "%sdsrt-train: warning: --eval_every: the held-out last 10%% of the data (%zu %s) does not "
                    "make one sequence of %d tokens: nothing is evaluated\n",
                    r->tty ? "\r\033[K" : "", held, unit, r->T);
        free(ei), free(et);
        return 0;
    }
    dsrt_engine_evaluate_args ev = {.struct_size = sizeof ev, .engine = r->e, .tokens = ei,
                                    .targets = et, .batch = (int32_t)nb};
    int rc = 0;
    if (r->api->engine_evaluate(&ev)) {
        fprintf(stderr, "dsrt-train: eval: %s\n", dsrt_lib_error(&r->lib));
        rc = 1;
    } else {
        fprintf(stderr, "%sstep %ld: eval loss %.4f (%zu held-out sequences)\n",
                r->tty ? "\r\033[K" : "", step, ev.loss, nb);
        if (r->plot)
            plot_add_eval(r->plot, step, ev.loss);
    }
    free(ei), free(et);
    return rc;
}

/* A checkpoint after `step`, with the data position as client state. */
static int save(run *r, const opts *o, long step)
{
    char cs[160];
    snprintf(cs, sizeof cs, "{\"next_step\": %ld, \"global_micro_batches\": %ld}", step + 1,
             step * (long)r->gas * r->world);
    dsrt_engine_save_args sa = {.struct_size = sizeof sa, .engine = r->e, .save_dir = o->save_dir,
                                .client_state = cs};
    if (r->api->abi_minor < 3 || r->api->engine_save(&sa)) {
        fprintf(stderr, "%sdsrt-train: step %ld: %s\n", r->tty ? "\r\033[K" : "", step,
                r->api->abi_minor < 3 ? "this libdsrt has no checkpoints" : dsrt_lib_error(&r->lib));
        return 1;
    }
    return 0;
}

static void progress(const run *r, const opts *o, long step, long start, double t0,
                     const dsrt_step_report *rep)
{
    if (r->tty) {
        double el = now_s() - t0, eta = el / (double)(step - start + 1) * (double)(o->steps - step);
        fprintf(stderr, "\r\033[Kstep %ld/%ld  loss %.4f  lr %.3g  scale %g  %.0f tok/s  ETA %.0fs",
                step, o->steps, rep->loss, rep->lr, rep->loss_scale, rep->tokens_per_s, eta);
        if (step == o->steps)
            fputc('\n', stderr);
    } else if (r->rank == 0 && (step == 1 || step % 10 == 0 || step == o->steps)) {
        fprintf(stderr, "step %ld/%ld loss %.4f lr %.4g scale %g grad_norm %.4g%s %.0f tok/s\n",
                step, o->steps, rep->loss, rep->lr, rep->loss_scale, rep->grad_norm,
                rep->skipped ? " (skipped)" : "", rep->tokens_per_s);
    }
}

/* Steps start..steps: batches, the step, the CSV row, the reference,
 * evaluation, checkpoints, progress. 0, or 1 on an error. */
static int train_loop(run *r, const opts *o, long start, FILE *csv, curve_check *cc)
{
    size_t window = (size_t)r->B * r->T;
    int gas = r->gas;
    int32_t *inp = malloc((size_t)gas * window * sizeof(int32_t));
    int32_t *tgt = malloc((size_t)gas * window * sizeof(int32_t));
    /* rank r's k-th micro-batch is global micro-batch (k / gas) * gas * N +
     * (k % gas) * N + r: an optimizer step sees the same samples on N ranks
     * as on one rank with gas * N micro-batches (DistributedSampler's
     * interleaving) */
    long micro = (start - 1) * gas;
    double t0 = now_s();
    int rc = 0;
    for (long step = start; step <= o->steps; step++) {
        for (int g = 0; g < gas; g++, micro++) {
            long c = (micro / gas) * gas * r->world + (micro % gas) * r->world + r->rank;
            dataset_batch(&r->ds, c, r->B, r->T, inp + g * window, tgt + g * window);
        }
        dsrt_engine_train_args tr = {.struct_size = sizeof tr, .engine = r->e, .tokens = inp,
                                     .targets = tgt, .micro_batches = gas};
        if (r->api->engine_train(&tr)) {
            if (r->world > 1)
                fprintf(stderr, "dsrt-train: rank %d: step %ld: %s\n", r->rank, step,
                        dsrt_lib_error(&r->lib));
            else
                fprintf(stderr, "dsrt-train: step %ld: %s\n", step, dsrt_lib_error(&r->lib));
            rc = 1;
            break;
        }
        const dsrt_step_report *rep = &tr.report;
        if (csv) {
            /* flushed per row: a killed run keeps its log up to the last step */
            fprintf(csv, "%ld,%.17g,%.9g,%.9g,%.9g,%d,%.1f\n", step, rep->loss, rep->lr,
                    rep->loss_scale, rep->grad_norm, rep->skipped, rep->tokens_per_s);
            fflush(csv);
        }
        curve_record(cc, step, rep);
        if (r->plot)
            plot_add_step(r->plot, step, rep->loss, rep->lr, rep->loss_scale, rep->skipped);
        if (o->eval_every > 0 && step % o->eval_every == 0 && r->rank == 0 && evaluate(r, o, step))
            rc = 1;
        if (o->save_dir && ((o->save_interval > 0 && step % o->save_interval == 0) || step == o->steps)) {
            if (csv)
                fsync(fileno(csv)); /* the log on disk with the checkpoint it leads to */
            if (save(r, o, step)) {
                rc = 1;
                break;
            }
        }
        progress(r, o, step, start, t0, rep);
    }
    free(inp), free(tgt);
    return rc;
}

int main(int argc, char **argv)
{
    opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) {
        opts_free(&o);
        return rc;
    }
    /* a failure before the loop ends the process at once, as a rank of a
     * group must: the launcher (mpirun, torchrun) then ends the others */
    run r = {0};
    long start = 1;
    if ((rc = setup(&r, &o)) == 2) { /* --estimate printed */
        teardown(&r);
        opts_free(&o);
        return 0;
    }
    if (rc || (rc = resume(&r, &o, &start)))
        return rc;
    FILE *csv = NULL;
    if (o.loss_csv && r.rank == 0 && !(csv = open_loss_csv(o.loss_csv, start)))
        return 1;
    curve_check cc = {0};
    if (o.ref_curve && r.rank == 0 && load_curve(o.ref_curve, &cc.ref, &cc.n_ref))
        return 1;
    if (o.ref_curve && r.rank == 0) {
        size_t ns = o.steps > 0 ? (size_t)o.steps : 1;
        cc.got = calloc(ns, sizeof(double));
        cc.want = calloc(ns, sizeof(double));
        cc.have = calloc(ns, 1);
        if (!cc.got || !cc.want || !cc.have) {
            fprintf(stderr, "dsrt-train: --reference_curve: no memory for %" PRId64 " steps\n", o.steps);
            return 1;
        }
    }
    plot_data pd = {0};
    char title[1024];
    if (o.plot && r.rank == 0) {
        snprintf(title, sizeof title, "dsrt-train: %s, %s, %s", o.config_path, o.model, o.data);
        pd.title = title;
        pd.ref = calloc(cc.n_ref ? cc.n_ref : 1, sizeof *pd.ref);
        for (size_t i = 0; pd.ref && i < cc.n_ref; i++)
            pd.ref[pd.n_ref++] = (plot_xy){(double)cc.ref[i].step, cc.ref[i].loss};
        r.plot = &pd;
    }
    rc = train_loop(&r, &o, start, csv, &cc);
    if (csv)
        fclose(csv);
    if (!rc && o.export_hf) {
        dsrt_engine_export_hf_args ex = {.struct_size = sizeof ex, .engine = r.e, .dir = o.export_hf};
        if (r.api->abi_minor < 7 || r.api->engine_export_hf(&ex)) {
            fprintf(stderr, "dsrt-train: --export_hf %s: %s\n", o.export_hf,
                    r.api->abi_minor < 7 ? "this libdsrt cannot export" : dsrt_lib_error(&r.lib));
            rc = 1;
        } else if (r.rank == 0) {
            fprintf(stderr, "dsrt-train: exported the model to %s (transformers: from_pretrained(\"%s\"))\n",
                    o.export_hf, o.export_hf);
        }
    }
    if (!rc && o.ref_curve && r.rank == 0)
        rc = curve_verdict(&cc, &o);
    if (r.plot) { /* also after a failure: the picture of what ran */
        if (plot_write_svg(o.plot, &pd)) {
            fprintf(stderr, "dsrt-train: --plot %s: %s\n", o.plot, strerror(errno));
            if (!rc)
                rc = 1;
        } else
            fprintf(stderr, "dsrt-train: curves written to %s (%zu steps)\n", o.plot, pd.n);
        plot_free(&pd);
    }
    teardown(&r);
    opts_free(&o);
    free(cc.ref), free(cc.got), free(cc.want), free(cc.have);
    return rc;
}
