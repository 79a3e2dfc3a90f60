/* dsrt.h — the whole public ABI of libdsrt.so, a DeepSpeed-compatible
 * training runtime loaded with dlopen().
 *
 * C99. No CUDA, NCCL, MPI or HDF5 types appear here.
 *
 * How to use it
 *   void *so = dlopen("libdsrt.so", RTLD_NOW | RTLD_LOCAL);
 *   dsrt_get_api_fn get = (dsrt_get_api_fn)dlsym(so, DSRT_GET_API_SYMBOL);
 *   const dsrt_api *api = get();
 *   if (api->abi_major != DSRT_ABI_MAJOR) { refuse: incompatible library }
 *   if (api->struct_size < offsetof(dsrt_api, <newest member you need>) + sizeof(void *))
 *       { that call is missing: the library is older than your header }
 *
 * Rules every call follows
 *   - Every function returns a dsrt_status and takes one args struct whose first
 *     member is `struct_size`; set it with sizeof(). Fields marked `// out` are
 *     written by the library; all others are read.
 *   - Size handshake (both directions are safe):
 *       * struct_size smaller than the struct's DSRT_..._ARGS_MIN_SIZE (the
 *         fields every host must pass; members after it are optional and say
 *         so): DSRT_STATUS_INVALID_ARGUMENT.
 *       * struct_size between the minimum and the library's own size (a host built
 *         against an older header): accepted; the missing trailing fields take
 *         their documented zero defaults, and the library never reads or writes
 *         past struct_size.
 *       * struct_size larger than the library's own size (a host built against a
 *         newer header): accepted when every byte the library does not know is
 *         zero (the host left the newer fields at their defaults);
 *         DSRT_STATUS_UNSUPPORTED otherwise, since the host asked for something
 *         this library cannot do. Outputs past the library's size are left as the
 *         host set them.
 *   - Errors are values. On failure the call returns a non-OK status and leaves
 *     a one-line message for the calling thread, read with api->last_error().
 *     The library never calls exit()/abort(), never prints and never installs
 *     signal handlers; diagnostics go to the host's log callback (log_set).
 *   - Handles are opaque; every *_create has a *_destroy that accepts NULL.
 *     Strings the library returns are owned by the object named next to them
 *     and live until that object is destroyed, unless stated otherwise.
 *   - Thread safety: distinct handles may be used from different threads at the
 *     same time; one handle must not be used by two threads at once. The API
 *     table, version() and last_error() are always safe.
 *   - The table is append-only within a major version; any incompatible change
 *     bumps DSRT_ABI_MAJOR.
 */
#ifndef DSRT_H
#define DSRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DSRT_ABI_MAJOR 1
#define DSRT_ABI_MINOR 7

#define DSRT_GET_API_SYMBOL "dsrt_get_api"

/* Smallest struct_size covering the members up to and including `member`. */
#define DSRT_STRUCT_SIZE(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

typedef enum dsrt_status {
    DSRT_STATUS_OK = 0,
    DSRT_STATUS_INVALID_ARGUMENT = 1, /* a NULL, a bad struct_size, a bad option      */
    DSRT_STATUS_INVALID_CONFIG = 2,   /* the ds_config (or a value for "auto") is rejected */
    DSRT_STATUS_IO_ERROR = 3,         /* a file could not be read or written          */
    DSRT_STATUS_OUT_OF_MEMORY = 4,
    DSRT_STATUS_UNSUPPORTED = 5,      /* valid request this build cannot serve        */
    DSRT_STATUS_INTERNAL = 6,         /* a bug in dsrt: please report it              */
    DSRT_STATUS_OUT_OF_RANGE = 7,     /* an index past the end of a list              */
} dsrt_status;

typedef enum dsrt_log_level {
    DSRT_LOG_DEBUG = 0,
    DSRT_LOG_INFO = 1,
    DSRT_LOG_WARNING = 2,
    DSRT_LOG_ERROR = 3,
} dsrt_log_level;

/* Host log sink. `message` is one line without a trailing newline and is only
 * valid during the call. May be called from any thread that is inside a dsrt
 * call; it must not call back into dsrt. */
typedef void (*dsrt_log_fn)(void *user_data, dsrt_log_level level, const char *message);

/* ---------------------------------------------------------------- version */

typedef struct dsrt_version_args {
    size_t struct_size;
    uint32_t abi_major;        // out: DSRT_ABI_MAJOR the library was built with
    uint32_t abi_minor;        // out
    const char *version;       // out: release, e.g. "0.1.0"; static storage
    /* optional from here on */
    const char *build;         // out: compiler, build type, backends compiled in
                               //      (e.g. "gcc 12.2.0, Release, cpu, cuda sm_80 sm_90"); static
    const char *deepspeed_compat; // out: the DeepSpeed version whose semantics are matched; static
    int32_t cuda_compiled;     // out: 1 if the CUDA backend is compiled in
    int32_t cuda_devices;      // out: CUDA devices usable now (0 when none, no driver, or not compiled)
} dsrt_version_args;
#define DSRT_VERSION_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_version_args, version)

/* ---------------------------------------------------------------- errors */

/* Copies the message left by the calling thread's most recent dsrt call
 * ("" when that call succeeded; every call but this one resets it) into
 * `buffer`, always NUL-terminated when buffer_size > 0, truncated if needed.
 * `status` is that call's status. */
typedef struct dsrt_last_error_args {
    size_t struct_size;
    char *buffer;
    size_t buffer_size;
    dsrt_status status;        // out
    size_t message_length;     // out: full length, so the host can retry with a bigger buffer
} dsrt_last_error_args;
#define DSRT_LAST_ERROR_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_last_error_args, message_length)

/* ---------------------------------------------------------------- logging */

/* Installs the process-wide log sink (NULL: discard everything, the default).
 * Messages below `min_level` are not formatted at all. */
typedef struct dsrt_log_set_args {
    size_t struct_size;
    dsrt_log_fn fn;
    void *user_data;
    dsrt_log_level min_level;
} dsrt_log_set_args;
#define DSRT_LOG_SET_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_log_set_args, min_level)

/* ---------------------------------------------------------------- config */

/* A parsed, validated and resolved ds_config: batch sizes for a world size,
 * "auto" filled, every default made explicit. Immutable once created. */
typedef struct dsrt_config dsrt_config;

/* Reads a DeepSpeed config from a file (`path`) or from memory (`text`,
 * `text_length` bytes; NUL termination not needed). Exactly one of the two.
 * `text` may also be the urlsafe-base64 encoding of a JSON config, as DeepSpeed
 * accepts on its command line.
 *
 * `hf_values` fills "auto" the way the Hugging Face Trainer does. Each entry
 * is "NAME=VALUE" with a TrainingArguments name (docs/config.md lists them):
 *   per_device_train_batch_size, gradient_accumulation_steps, learning_rate,
 *   adam_beta1, adam_beta2, adam_epsilon, weight_decay, max_grad_norm,
 *   warmup_steps, warmup_ratio, max_steps, fp16, bf16, hidden_size.
 * Names not given fall back to the Trainer's defaults where it has one. An
 * explicitly given value that contradicts a non-"auto" value in the file is an
 * error, as in the Trainer. Unknown names are an error.
 *
 * On success *config is a new handle (destroy with config_destroy). On
 * DSRT_STATUS_INVALID_CONFIG *config is NULL and last_error() holds one line:
 *   error: <key path>: <what is wrong> (got <value>) [<file>:<line>]
 * Warnings (unknown top-level keys, stage 3 run as stage 2, ...) go to the log
 * callback as they are found and stay readable from the handle. */
typedef struct dsrt_config_create_args {
    size_t struct_size;
    const char *path;          // file to read, or NULL
    const char *text;          // config text, or NULL
    size_t text_length;
    int32_t world_size;        // data-parallel ranks for batch resolution; 0 means 1
    dsrt_config *config;       // out
    /* optional from here on: a host that leaves them out (or zero) gets no
     * hf values, i.e. the Trainer's defaults */
    const char *const *hf_values; // "NAME=VALUE" strings, may be NULL
    size_t hf_value_count;
} dsrt_config_create_args;
#define DSRT_CONFIG_CREATE_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_config_create_args, config)

typedef struct dsrt_config_destroy_args {
    size_t struct_size;
    dsrt_config *config;       // may be NULL
} dsrt_config_destroy_args;
#define DSRT_CONFIG_DESTROY_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_config_destroy_args, config)

/* The resolved config as JSON in DeepSpeed's own schema, every default filled
 * in, plus a "dsrt" block saying what dsrt will actually run (effective ZeRO
 * stage, precision, Adam mode). `json` is owned by the config handle and lives
 * until it is destroyed. `indent` 0 gives one line, otherwise that many spaces. */
typedef struct dsrt_config_to_json_args {
    size_t struct_size;
    const dsrt_config *config;
    int32_t indent;
    const char *json;          // out
    size_t json_length;        // out
} dsrt_config_to_json_args;
#define DSRT_CONFIG_TO_JSON_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_config_to_json_args, json_length)

typedef enum dsrt_diagnostic_kind {
    DSRT_DIAG_WARNING = 0,     /* accepted, but something differs from what the file asks */
    DSRT_DIAG_AUTO = 1,        /* a value that came from "auto": which, from what         */
    DSRT_DIAG_NOTE = 2,        /* informational (a default that changed across versions)  */
} dsrt_diagnostic_kind;

/* Diagnostics recorded while reading the config, in the order found. Call with
 * index 0.. until DSRT_STATUS_OUT_OF_RANGE; `count` is always set. `key` is the
 * dotted key path ("" when the message is about the whole file) and `message`
 * the full one-line text; both are owned by the config handle. */
typedef struct dsrt_config_diagnostic_args {
    size_t struct_size;
    const dsrt_config *config;
    size_t index;
    size_t count;              // out
    dsrt_diagnostic_kind kind; // out
    const char *key;           // out
    const char *message;       // out
} dsrt_config_diagnostic_args;
#define DSRT_CONFIG_DIAGNOSTIC_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_config_diagnostic_args, message)

/* The handful of resolved values a launcher needs without parsing JSON. */
typedef enum dsrt_precision {
    DSRT_PRECISION_FP32 = 0,
    DSRT_PRECISION_FP16 = 1,
    DSRT_PRECISION_BF16 = 2,
} dsrt_precision;

typedef struct dsrt_config_summary_args {
    size_t struct_size;
    const dsrt_config *config;
    int64_t train_batch_size;             // out
    int64_t train_micro_batch_size_per_gpu; // out
    int64_t gradient_accumulation_steps;  // out
    int32_t world_size;                   // out
    int32_t zero_stage_requested;         // out: as written (0..3)
    int32_t zero_stage;                   // out: what dsrt runs (0..2)
    dsrt_precision precision;             // out
    int64_t steps_per_print;              // out: 0 when the file sets none
    double gradient_clipping;             // out: 0 = off
} dsrt_config_summary_args;
#define DSRT_CONFIG_SUMMARY_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_config_summary_args, gradient_clipping)

/* ---------------------------------------------------------------- engine (ABI 1.1) */

/* A training engine: one model (the built-in GPT-2) trained under one
 * resolved config on one backend, as DeepSpeed's engine would: loss scaling,
 * gradient accumulation, clipping, fused AdamW on fp32 masters, the LR
 * scheduler, the step counters. Not thread-safe: one thread drives an engine. */
typedef struct dsrt_engine dsrt_engine;

/* ---------------------------------------------------------------- process group (ABI 1.2)
 *
 * The data-parallel group this process belongs to, found the way
 * torch.distributed finds it: under mpirun (Open MPI) from MPI; otherwise from
 * RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT as the deepspeed
 * and torchrun launchers set them (TCP between the ranks); otherwise one rank.
 * Create it before the config (config_create wants world_size) and pass it to
 * every engine; destroy it last. With MPI, dsrt initialises MPI if the host
 * has not and finalises it at dist_destroy (MPI cannot start twice in one
 * process). A collective that does not complete within timeout_s, or a peer
 * process that dies, fails the engine call on every rank with a message
 * naming the rank and the collective; the group is unusable afterwards. */
typedef struct dsrt_dist dsrt_dist;

/* Shares bytes between ranks under a key, for the NCCL unique id when the
 * host brings its own rendezvous (PJRT's kv_put / kv_get): put stores, get
 * blocks until the key exists. Return 0 on success. */
typedef int (*dsrt_kv_put_fn)(void *user, const char *key, const void *bytes, size_t n);
typedef int (*dsrt_kv_get_fn)(void *user, const char *key, void *bytes, size_t n);

typedef struct dsrt_dist_create_args {
    size_t struct_size;
    const char *backend;       // NULL or "auto", "local", "mpi", "tcp"; "kv" (see below)
    double timeout_s;          // per collective; 0 = 1800 (torch.distributed's default)
    int32_t rank;              // out (in for "kv")
    int32_t world_size;        // out (in for "kv")
    int32_t local_rank;        // out (in for "kv")
    dsrt_dist *dist;           // out
    const char *backend_used;  // out: "local", "mpi", "tcp", "kv"; static string
    /* "kv": the host gives rank/world/local_rank and these callbacks; only CUDA
     * engines (NCCL) can run on such a group. */
    dsrt_kv_put_fn kv_put;
    dsrt_kv_get_fn kv_get;
    void *kv_user;
} dsrt_dist_create_args;
#define DSRT_DIST_CREATE_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_dist_create_args, backend_used)

typedef struct dsrt_dist_destroy_args {
    size_t struct_size;
    dsrt_dist *dist;           // may be NULL; destroy every engine using it first
} dsrt_dist_destroy_args;
#define DSRT_DIST_DESTROY_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_dist_destroy_args, dist)

/* A host model's parameter tensor (engine_create_args.params). Like
 * DeepSpeed, the engine flattens the parameters into its own buffers: after
 * engine_create the host computes with the engine's copy (engine_param
 * gives the pointers), not with `data`. */
typedef struct dsrt_param_desc {
    const char *name;          // unique, e.g. "fc1.weight"
    dsrt_precision dtype;      // must be the config's precision
    int32_t ndim;              // 1..8
    int64_t shape[8];
    const void *data;          // initial values (host memory, or device memory when on_device)
    int32_t on_device;         // data is memory of the engine's CUDA device
} dsrt_param_desc;

/* ABI 1.6: an optimizer parameter group (torch's param_groups): its weight
 * decay and a factor on the scheduled lr. */
typedef struct dsrt_param_group {
    double weight_decay;
    double lr_scale;           // 1.0: the schedule's lr
} dsrt_param_group;

typedef struct dsrt_engine_create_args {
    size_t struct_size;
    const dsrt_config *config; // the resolved ds_config; the engine keeps its own copy
    // GPT-2 preset ("gpt2-tiny", "gpt2", "gpt2-medium"), a config.json path
    // (gpt2, llama, mistral, qwen2: random weights from seed) or a Hugging Face
    // model folder (config.json + safetensors: its weights)
    const char *model;
    int32_t seq_len;           // T of every micro-batch; 0 = the model's n_positions
    uint64_t seed;             // initial weights (identical on every backend and rank)
    dsrt_engine *engine;       // out
    /* optional from here on */
    const char *device;        // "cpu" (default, NULL), "cuda", "cuda:N"
    /* ABI 1.2 */
    dsrt_dist *dist;           // the process group (dist_create); NULL = one rank
    /* A host model instead of the built-in GPT-2 (model = NULL): its parameter
     * tensors, in registration order (the order ZeRO flattens them in). */
    const struct dsrt_param_desc *params;
    int32_t num_params;
    /* ABI 1.5: a host model's gradients under ZeRO stage 2.
     * grad_slots 0: the engine keeps a full-size gradient buffer (engine_param's
     *   grad) the host accumulates into; it costs 2 bytes per parameter in fp16
     *   on every rank, as at stage 1.
     * grad_slots 1: no full-size buffer at stage 2 (2 bytes per parameter less
     *   on each rank, DeepSpeed's stage-2 saving). Each micro-step the host asks
     *   engine_grad_slot(index) where to write a gradient (zeroed; valid until
     *   its engine_grad_ready) right before writing it, in the order the
     *   backward produces them, and marks it ready as soon as it is written:
     *   a bucket is reduced only once all its slots are ready, and at most two
     *   buckets' worth of slots can be outstanding. engine_param's grad is NULL.
     *   Stages 0 and 1 answer engine_grad_slot from their full buffer, so one
     *   host code runs at every stage.
     * tied_params: indices of parameters whose gradient is written more than
     *   once in a backward (tied weights); they keep a buffer of their own. */
    int32_t grad_slots;
    const int64_t *tied_params;
    int32_t num_tied_params;
    /* ABI 1.6: parameter groups. groups[num_groups]; param_group[num_params]
     * gives each host parameter's group (an index into groups). Without them:
     * with an optimizer block every parameter decays by its weight_decay
     * (DeepSpeed); without one (the Hugging Face Trainer's AdamW) biases and
     * norm weights do not decay (the Trainer's two groups, chosen by name:
     * "bias", "layernorm", "rmsnorm", "norm" and "_norm" components, and
     * GPT-2's LayerNorms). Saved in checkpoints. */
    const dsrt_param_group *groups;
    int32_t num_groups;
    const int32_t *param_group;
} dsrt_engine_create_args;
#define DSRT_ENGINE_CREATE_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_create_args, engine)

typedef struct dsrt_engine_destroy_args {
    size_t struct_size;
    dsrt_engine *engine;       // may be NULL
} dsrt_engine_destroy_args;
#define DSRT_ENGINE_DESTROY_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_destroy_args, engine)

/* What a training call did. Counters match DeepSpeed's engine: global_steps
 * counts optimizer boundaries including skipped ones; skipped_steps those
 * dropped for overflow; global_samples += train_batch_size per boundary. */
typedef struct dsrt_step_report {
    double loss;               // mean loss of the micro-batches since the last boundary
    double lr;                 // lr the update used (or would have used, if skipped)
    double loss_scale;         // scale after this step's update (1 for bf16/fp32)
    double grad_norm;          // global norm of the unscaled gradient before clipping; -1 if inf/nan
    int32_t boundary;          // 1 when this call ended at an optimizer boundary
    int32_t skipped;           // 1 when that boundary's update was skipped (overflow)
    int64_t global_steps;
    int64_t skipped_steps;
    int64_t global_samples;
    int64_t micro_steps;
    double tokens_per_s;       // over this call
} dsrt_step_report;

/* Trains on `micro_batches` micro-batches of (train_micro_batch_size_per_gpu,
 * seq_len) tokens each, laid out one after the other (host memory, int32).
 * targets has the same shape; -100 = not counted. Pass
 * gradient_accumulation_steps micro-batches to run one whole optimizer step;
 * fewer leaves the engine inside an accumulation window. A status other than
 * OK leaves the engine usable unless the message says otherwise (the fp16
 * scale at its floor is DSRT_STATUS_OUT_OF_RANGE, as DeepSpeed raises). */
typedef struct dsrt_engine_train_args {
    size_t struct_size;
    dsrt_engine *engine;
    const int32_t *tokens;
    const int32_t *targets;
    int32_t micro_batches;
    dsrt_step_report report;   // out
} dsrt_engine_train_args;
#define DSRT_ENGINE_TRAIN_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_train_args, report)

/* Mean loss over `batch` sequences of seq_len tokens (no gradients, no state change). */
typedef struct dsrt_engine_evaluate_args {
    size_t struct_size;
    dsrt_engine *engine;
    const int32_t *tokens;
    const int32_t *targets;
    int32_t batch;             // sequences; any number (evaluated in micro-batch chunks)
    double loss;               // out
} dsrt_engine_evaluate_args;
#define DSRT_ENGINE_EVALUATE_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_evaluate_args, loss)

typedef struct dsrt_engine_info_args {
    size_t struct_size;
    dsrt_engine *engine;
    int64_t num_parameters;    // out
    int32_t seq_len;           // out
    int32_t vocab_size;        // out
    int32_t micro_batch_size;  // out: train_micro_batch_size_per_gpu
    int32_t gradient_accumulation_steps; // out
    const char *device;        // out: "cpu" / "cuda:0"; owned by the engine
    dsrt_precision precision;  // out
    /* ABI 1.2: data parallelism and this rank's model-state memory (bytes) */
    int32_t rank;              // out
    int32_t world_size;        // out
    int32_t zero_stage;        // out: what runs (0..2)
    const char *comm;          // out: "local", "mpi", "tcp", "nccl"
    int64_t num_param_tensors; // out
    int64_t partition_size;    // out: elements this rank owns (stage >= 1; else all)
    int64_t bytes_params;      // out: model-dtype weights (all of them)
    int64_t bytes_grads;       // out: gradients kept across micro-steps (stage 2: the owned partition)
    int64_t bytes_grad_transient; // out: stage 1: 0 (the reduced partition lives in the gradient buffer;
                               //      P·d with round_robin_gradients); stage 2 with slots:
                               //      own buffers of tied weights and the staging of parameters larger
                               //      than a bucket; stage 2 without slots: the full gradient buffer
    int64_t bytes_masters;     // out: fp32 masters (0 when they are the fp32 weights)
    int64_t bytes_moments;     // out: Adam m and v
    int64_t bytes_buckets;     // out: reduction buckets
    int64_t bytes_gather;      // out: all-gather staging (round_robin_gradients only)
    int64_t bytes_total;       // out: the sum
} dsrt_engine_info_args;
#define DSRT_ENGINE_INFO_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_info_args, precision)

/* ---- a host model's training step (ABI 1.2). Per micro-batch:
 *   engine_micro_begin          -> grad_scale: multiply the loss gradient by it
 *                                  (the fp16 loss scale / gradient_accumulation_steps)
 *   the host's forward and backward, accumulating (+=) each parameter's
 *   gradient into its engine_param grad buffer (or, with grad_slots, into
 *   the engine_grad_slot it asks for right before); as each one is complete:
 *   engine_grad_ready(index)    -> its bucket may be reduced while the backward goes on
 *   engine_step(loss)           -> the micro-step's end; at an accumulation boundary
 *                                  the optimizer step (overflow check, clipping,
 *                                  AdamW on this rank's partition, all-gather)
 * Gradients the host never marked ready are reduced at engine_step. */
typedef struct dsrt_engine_param_args {
    size_t struct_size;
    dsrt_engine *engine;
    int64_t index;             // 0 .. num_param_tensors-1
    const char *name;          // out; owned by the engine
    void *data;                // out: the weights (engine's backend memory, the config's dtype)
    void *grad;                // out: where the host's backward accumulates the gradient
    int64_t numel;             // out
} dsrt_engine_param_args;
#define DSRT_ENGINE_PARAM_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_param_args, numel)

typedef struct dsrt_engine_micro_begin_args {
    size_t struct_size;
    dsrt_engine *engine;
    double grad_scale;         // out
} dsrt_engine_micro_begin_args;
#define DSRT_ENGINE_MICRO_BEGIN_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_micro_begin_args, grad_scale)

typedef struct dsrt_engine_grad_ready_args {
    size_t struct_size;
    dsrt_engine *engine;
    int64_t index;
} dsrt_engine_grad_ready_args;
#define DSRT_ENGINE_GRAD_READY_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_grad_ready_args, index)

/* ABI 1.5: where to write parameter `index`'s gradient in this micro-step
 * (see dsrt_engine_create_args.grad_slots). */
typedef struct dsrt_engine_grad_slot_args {
    size_t struct_size;
    dsrt_engine *engine;
    int64_t index;
    void *grad;                // out: zeroed, numel elements of the config's dtype (backend memory)
} dsrt_engine_grad_slot_args;
#define DSRT_ENGINE_GRAD_SLOT_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_grad_slot_args, grad)

typedef struct dsrt_engine_step_args {
    size_t struct_size;
    dsrt_engine *engine;
    double loss;               // this micro-batch's loss (for the report; averaged over ranks)
    dsrt_step_report report;   // out
} dsrt_engine_step_args;
#define DSRT_ENGINE_STEP_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_step_args, report)

/* ---------------------------------------------------------------- checkpoints (ABI 1.3)
 *
 * DeepSpeed's layout and names (save_dir/<tag>/, save_dir/latest holding the
 * tag, default tag "global_step<N>"), stored in HDF5: docs/checkpoint-format.md.
 * Every rank calls save and load (collectively) at an optimizer boundary.
 * Each rank writes its own ZeRO partition; the checkpoint reads back as whole
 * tensors at any world size. A save is atomic: written under a temporary
 * name, synced, renamed, `latest` replaced last; a failed or interrupted save
 * leaves the previous checkpoint loadable. Every dataset carries a Fletcher32
 * checksum; a truncated, corrupted or other-model checkpoint is refused naming
 * the file and dataset. On load, as in DeepSpeed, the checkpoint's optimizer
 * hyperparameters, gradient_clipping, loss-scaler state and scheduler position
 * take precedence over the config. */
typedef struct dsrt_engine_save_args {
    size_t struct_size;
    dsrt_engine *engine;
    const char *save_dir;
    const char *tag;           // NULL: "global_step<global_steps>"
    const char *client_state;  // the host's own state as JSON text, or NULL
} dsrt_engine_save_args;
#define DSRT_ENGINE_SAVE_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_save_args, client_state)

typedef struct dsrt_engine_load_args {
    size_t struct_size;
    dsrt_engine *engine;
    const char *load_dir;
    const char *tag;           // NULL: the tag in load_dir/latest
    const char *client_state;  // out: JSON text saved with it; owned by the engine until the
                               // next load or destroy
    int64_t global_steps;      // out: the step the run continues from
    /* ABI 1.4. A checkpoint of another model (any math-changing key of its
     * config) is always refused; one of another precision loads only with
     * one of these, which take the weights alone (as fp32 masters). */
    int32_t load_module_only;  // 1: DeepSpeed's load_module_only: the weights and fresh Adam
                               // moments; the engine keeps its own scaler, schedule and counters
    int32_t skip_optimizer_states; // 1: DeepSpeed's load_optimizer_states=False: the weights,
                               // counters and scheduler position; fresh Adam moments and scaler
} dsrt_engine_load_args;
#define DSRT_ENGINE_LOAD_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_load_args, global_steps)

/* ---------------------------------------------------------------- models (ABI 1.6)
 *
 * What a model string of engine_create_args.model (a preset, a config.json
 * or a model folder) describes, without making the model: a host fills the
 * Trainer's "auto" values that depend on the model (hidden_size for the
 * bucket sizes) before config_create, as the Hugging Face Trainer does. */
typedef struct dsrt_model_info_args {
    size_t struct_size;
    const char *model;         // preset name, config.json path or Hugging Face model folder
    const char *model_type;    // out: "gpt2", "llama", "mistral" or "qwen2" (static)
    int64_t num_parameters;    // out
    // out, in GPT-2's names: vocab_size, max positions, hidden size, layers,
    // attention heads, MLP width (LLaMA's intermediate_size)
    int32_t vocab_size, n_positions, n_embd, n_layer, n_head, n_inner;
} dsrt_model_info_args;
#define DSRT_MODEL_INFO_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_model_info_args, n_inner)

/* ---------------------------------------------------------------- Hugging Face export (ABI 1.7)
 *
 * The engine's built-in model as a Hugging Face folder: config.json and
 * model.safetensors (shards of at most 5 GB and model.safetensors.index.json
 * above that), the weights in the run's dtype (a 16-bit run writes its
 * 16-bit weights, as DeepSpeed's save_16bit_model), names and shapes as
 * transformers' from_pretrained expects them. Every rank calls it (the
 * weights are settled first); rank 0 writes. Files are written atomically. */
typedef struct dsrt_engine_export_hf_args {
    size_t struct_size;
    dsrt_engine *engine;
    const char *dir;           // the folder, made when missing
} dsrt_engine_export_hf_args;
#define DSRT_ENGINE_EXPORT_HF_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_engine_export_hf_args, dir)

/* ---------------------------------------------------------------- memory estimate (ABI 1.7)
 *
 * What one rank will hold, before anything is allocated: for a resolved
 * config (its world size, ZeRO stage, precision, micro batch, buckets), a
 * built-in model (as dsrt_engine_create_args.model) and a sequence length.
 * The model-state figures are what engine_info reports once the engine has
 * stepped; activations and scratch are what the model and the backend add.
 * The host process itself (libraries, MPI) is not counted. */
typedef struct dsrt_estimate_memory_args {
    size_t struct_size;
    const dsrt_config *config; // resolved; estimated for its world size
    const char *model;         // a preset, a config.json or a model folder
    int32_t seq_len;           // T of every micro-batch; 0 = the model's maximum
    const char *device;        // "cpu" (NULL) or "cuda", "cuda:N"
    int64_t num_parameters;    // out
    // out, bytes per rank, as dsrt_engine_info_args names them:
    int64_t bytes_params, bytes_grads, bytes_grad_transient, bytes_masters, bytes_moments;
    int64_t bytes_buckets, bytes_gather;
    int64_t bytes_total_model_states; // out: the sum of the seven above
    int64_t bytes_activations; // out: activations and their gradients for one micro-batch, the
                               //      model's statistics and index buffers, the 2N padding
    int64_t bytes_scratch;     // out: the backend's op scratch and the comm's
    int64_t bytes_total;       // out
} dsrt_estimate_memory_args;
#define DSRT_ESTIMATE_MEMORY_ARGS_MIN_SIZE DSRT_STRUCT_SIZE(dsrt_estimate_memory_args, bytes_total)

/* ---------------------------------------------------------------- the table */

typedef struct dsrt_api {
    size_t struct_size;        /* sizeof(dsrt_api) of the library */
    uint32_t abi_major;
    uint32_t abi_minor;

    /* ABI 1.0 */
    dsrt_status (*version)(dsrt_version_args *args);
    dsrt_status (*last_error)(dsrt_last_error_args *args);
    dsrt_status (*log_set)(dsrt_log_set_args *args);
    dsrt_status (*config_create)(dsrt_config_create_args *args);
    dsrt_status (*config_destroy)(dsrt_config_destroy_args *args);
    dsrt_status (*config_to_json)(dsrt_config_to_json_args *args);
    dsrt_status (*config_diagnostic)(dsrt_config_diagnostic_args *args);
    dsrt_status (*config_summary)(dsrt_config_summary_args *args);

    /* ABI 1.1 */
    dsrt_status (*engine_create)(dsrt_engine_create_args *args);
    dsrt_status (*engine_destroy)(dsrt_engine_destroy_args *args);
    dsrt_status (*engine_train)(dsrt_engine_train_args *args);
    dsrt_status (*engine_evaluate)(dsrt_engine_evaluate_args *args);
    dsrt_status (*engine_info)(dsrt_engine_info_args *args);

    /* ABI 1.2 */
    dsrt_status (*dist_create)(dsrt_dist_create_args *args);
    dsrt_status (*dist_destroy)(dsrt_dist_destroy_args *args);
    dsrt_status (*engine_param)(dsrt_engine_param_args *args);
    dsrt_status (*engine_micro_begin)(dsrt_engine_micro_begin_args *args);
    dsrt_status (*engine_grad_ready)(dsrt_engine_grad_ready_args *args);
    dsrt_status (*engine_step)(dsrt_engine_step_args *args);

    /* ABI 1.3 */
    dsrt_status (*engine_save)(dsrt_engine_save_args *args);
    dsrt_status (*engine_load)(dsrt_engine_load_args *args);

    /* ABI 1.5 */
    dsrt_status (*engine_grad_slot)(dsrt_engine_grad_slot_args *args);

    /* ABI 1.6 */
    dsrt_status (*model_info)(dsrt_model_info_args *args);

    /* ABI 1.7 */
    dsrt_status (*engine_export_hf)(dsrt_engine_export_hf_args *args);
    dsrt_status (*estimate_memory)(dsrt_estimate_memory_args *args);
} dsrt_api;

/* The one exported symbol. Returns a pointer to a constant table that lives
 * as long as the library stays loaded. Never NULL. */
typedef const dsrt_api *(*dsrt_get_api_fn)(void);
const dsrt_api *dsrt_get_api(void);

/* The name of a status ("DSRT_STATUS_INVALID_CONFIG"), for hosts' messages.
 * Header-only so it needs no library call. */
static inline const char *dsrt_status_name(dsrt_status s)
{
    switch (s) {
    case DSRT_STATUS_OK: return "DSRT_STATUS_OK";
    case DSRT_STATUS_INVALID_ARGUMENT: return "DSRT_STATUS_INVALID_ARGUMENT";
    case DSRT_STATUS_INVALID_CONFIG: return "DSRT_STATUS_INVALID_CONFIG";
    case DSRT_STATUS_IO_ERROR: return "DSRT_STATUS_IO_ERROR";
    case DSRT_STATUS_OUT_OF_MEMORY: return "DSRT_STATUS_OUT_OF_MEMORY";
    case DSRT_STATUS_UNSUPPORTED: return "DSRT_STATUS_UNSUPPORTED";
    case DSRT_STATUS_INTERNAL: return "DSRT_STATUS_INTERNAL";
    case DSRT_STATUS_OUT_OF_RANGE: return "DSRT_STATUS_OUT_OF_RANGE";
    }
    return "DSRT_STATUS_UNKNOWN";
}

#ifdef __cplusplus
}
#endif

#endif /* DSRT_H */
