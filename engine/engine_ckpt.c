/* Checkpoints of the engine (dsrt.h: engine_save / engine_load; the format
 * in docs/checkpoint-format.md, the HDF5 layer in ckpt.c).
 *
 * Save (every rank calls it):
 *   rank 0 creates save_dir/.<tag>.tmp-<pid>/        barrier
 *   every rank writes zero_rank_<r>.h5: its ZeRO pieces of the fp32 masters
 *   and Adam moments, fsynced                       barrier (all ranks' outcome)
 *   rank 0 writes checkpoint.h5: the engine state and, per parameter, virtual
 *   datasets of the full tensor over the ranks' pieces; fsync; renames the
 *   directory to save_dir/<tag>; fsyncs save_dir; writes save_dir/latest
 *   through a temporary file and a rename          barrier
 * A crash at any moment leaves the previous checkpoint and `latest` intact:
 * nothing under <tag> or `latest` exists until it is complete.
 *
 * Load: every rank opens checkpoint.h5, checks the model (names, shapes), reads
 * the whole masters (the weights) and the ranges of the moments its own
 * partition covers, whatever world size saved them; the step counters, loss
 * scaler, scheduler and optimizer hyperparameters come from the checkpoint
 * (DeepSpeed's precedence, spec 8.2). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "engine/engine.h"
#include "engine/engine_impl.h"
#include "base/internal.h"
#include "base/jsonw.h"

/* elements per read on load: a small staging buffer, reused */
#define CHUNK ((size_t)1 << 20)

/* The keys of the built-in model's config that change the math, with this
 * engine's values (written at save, compared at load; the tensors' names
 * and shapes are compared apart). Returns how many. */
typedef struct model_key {
    const char *key;
    double value;
} model_key;

static int model_keys(const dsrt_engine *e, model_key *k)
{
    int n = 0;
    if (e->mcfg.arch == DSRT_ARCH_GPT2) {
        const dsrt_gpt2_config *m = &e->mcfg.gpt2;
        k[n++] = (model_key){"vocab_size", m->vocab_size};
        k[n++] = (model_key){"n_positions", m->n_positions};
        k[n++] = (model_key){"n_embd", m->n_embd};
        k[n++] = (model_key){"n_layer", m->n_layer};
        k[n++] = (model_key){"n_head", m->n_head};
        k[n++] = (model_key){"n_inner", m->n_inner};
        k[n++] = (model_key){"layer_norm_epsilon", m->layer_norm_epsilon};
        return n;
    }
    const dsrt_llama_config *m = &e->mcfg.llama;
    k[n++] = (model_key){"vocab_size", m->vocab_size};
    k[n++] = (model_key){"hidden_size", m->hidden_size};
    k[n++] = (model_key){"intermediate_size", m->intermediate_size};
    k[n++] = (model_key){"num_hidden_layers", m->num_hidden_layers};
    k[n++] = (model_key){"num_attention_heads", m->num_attention_heads};
    k[n++] = (model_key){"num_key_value_heads", m->num_key_value_heads};
    k[n++] = (model_key){"head_dim", m->head_dim};
    k[n++] = (model_key){"rms_norm_eps", m->rms_norm_eps};
    k[n++] = (model_key){"rope_theta", m->rope_theta};
    k[n++] = (model_key){"rope_llama3", m->rope_llama3};
    k[n++] = (model_key){"rope_factor", m->rope_factor};
    k[n++] = (model_key){"rope_low_freq_factor", m->rope_low_freq_factor};
    k[n++] = (model_key){"rope_high_freq_factor", m->rope_high_freq_factor};
    k[n++] = (model_key){"rope_original_max_position_embeddings", m->rope_original_max_positions};
    k[n++] = (model_key){"tie_word_embeddings", m->tie_word_embeddings};
    return n;
}

enum { MODEL_KEYS_MAX = 24 };

/* The model's config (built-in) or tensor list (host model), as JSON; malloc'd. */
static char *model_json(const dsrt_engine *e)
{
    dsrt_buf b = {0};
    jw w;
    jw_init(&w, &b, 0);
    jw_object_begin(&w);
    if (e->model) {
        model_key k[MODEL_KEYS_MAX];
        int nk = model_keys(e, k);
        jw_key(&w, "model_type"), jw_string(&w, dsrt_model_type(&e->mcfg));
        for (int i = 0; i < nk; i++) {
            jw_key(&w, k[i].key);
            if (k[i].value == (double)(int64_t)k[i].value)
                jw_int(&w, (int64_t)k[i].value);
            else
                jw_double(&w, k[i].value);
        }
        if (e->mcfg.arch == DSRT_ARCH_GPT2)
            jw_key(&w, "initializer_range"), jw_double(&w, e->mcfg.gpt2.initializer_range);
        jw_key(&w, "source"),
            jw_string(&w, e->mcfg.weights_dir[0]                ? e->mcfg.weights_dir
                          : e->mcfg.arch == DSRT_ARCH_GPT2 ? e->mcfg.gpt2.source
                                                           : e->mcfg.llama.source);
    } else {
        jw_key(&w, "model_type"), jw_string(&w, "host");
    }
    jw_key(&w, "tensors");
    jw_array_begin(&w);
    for (size_t i = 0; i < e->n_params; i++) {
        jw_object_begin(&w);
        jw_key(&w, "name"), jw_string(&w, e->params[i].name);
        jw_key(&w, "shape");
        jw_array_begin(&w);
        for (int k = 0; k < e->params[i].ndim; k++)
            jw_int(&w, e->params[i].shape[k]);
        jw_array_end(&w);
        jw_object_end(&w);
    }
    jw_array_end(&w);
    jw_object_end(&w);
    return dsrt_buf_take(&b);
}

/* ---------------------------------------------------------------- file-system steps */

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

/* This process's part of temporary names: "<host>-<pid>", so a leftover can
 * be told to be of a dead process of this host. */
static void owner_tag(long long pid, char *out, size_t n)
{
    char host[64] = "host";
    if (gethostname(host, sizeof host) || !host[0])
        snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++)
        if (*c == '/' || *c == '.' || *c == '-')
            *c = '_';
    snprintf(out, n, "%s-%lld", host, pid);
}

/* Leftovers of interrupted saves in save_dir (".<tag>.tmp-<host>-<pid>",
 * ".<tag>.old-...", ".latest.tmp-..."; from before: "...-<pid>"): those of
 * a process of this host that no longer runs are removed (`remove`) or only
 * reported. Each is one rank file or more (1.5 GB for GPT-2 124M). */
static void sweep_leftovers(const char *save_dir, bool remove)
{
    DIR *d = opendir(save_dir);
    if (!d)
        return;
    char host_pid[128];
    owner_tag(0, host_pid, sizeof host_pid);
    size_t host_len = strlen(host_pid) - 1; /* "<host>-" */
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name, *mark = NULL;
        if (n[0] != '.' || !((mark = strstr(n, ".tmp-")) || (mark = strstr(n, ".old-"))))
            continue;
        const char *owner = mark + 5;
        const char *pid_text = owner;
        if (!strncmp(owner, host_pid, host_len))
            pid_text = owner + host_len;
        else if (strchr(owner, '-'))
            continue; /* another host's: it may be saving right now */
        char *end;
        long long pid = strtoll(pid_text, &end, 10);
        if (*end || pid <= 0 || pid == (long long)getpid() || (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", save_dir, n);
        if (remove) {
            struct stat sb;
            if (!lstat(p, &sb) && S_ISDIR(sb.st_mode))
                remove_tree(p);
            else
                unlink(p);
            dsrt_log(DSRT_LOG_WARNING, "checkpoint: removed %s, left by an interrupted save (process %lld is gone)",
                     p, pid);
        } else {
            dsrt_log(DSRT_LOG_WARNING,
                     "checkpoint: %s was left by an interrupted save (process %lld is gone); the next save "
                     "into this directory removes it",
                     p, pid);
        }
    }
    closedir(d);
}

static dsrt_status check_tag(const char *tag)
{
    if (!*tag || strchr(tag, '/') || !strcmp(tag, ".") || !strcmp(tag, "..") || tag[0] == '.' ||
        strlen(tag) > 200)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "checkpoint: tag \"%s\" is not a plain directory name", tag);
    return DSRT_STATUS_OK;
}

/* All ranks agree on an outcome: the number of ranks that failed. */
static dsrt_status agree(dsrt_engine *e, dsrt_status mine, const char *what, int *failed)
{
    double v[1] = {mine != DSRT_STATUS_OK};
    char saved[1024];
    snprintf(saved, sizeof saved, "%s", dsrt_error_message());
    DSRT_TRY(e->comm->allreduce_host_f64(e->comm, v, 1, what));
    *failed = (int)v[0];
    if (mine)
        dsrt_error_set(mine, "%s", saved);
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- save */

/* HDF5's own text for a failed write runs over several lines with buffer
 * addresses; say what matters: which file, and a full disk by name. */
static dsrt_status save_error(dsrt_status st, const char *path)
{
    char m[1024];
    snprintf(m, sizeof m, "%s", dsrt_error_message());
    for (char *c = m; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    if (strstr(m, "No space left on device") || strstr(m, "errno = 28"))
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "engine_save: no space left on device while writing %s; the "
                              "previous checkpoint is untouched",
                              path);
    char *cut = strstr(m, ", filename = ");
    if (cut)
        *cut = '\0';
    return dsrt_error_set(st, "engine_save: %s", m);
}

static dsrt_status write_rank_file(dsrt_engine *e, const char *path)
{
    dsrt_backend *be = e->be;
    size_t s0 = e->lay.rank_slices[e->rank], s1 = e->lay.rank_slices[e->rank + 1];
    size_t held = e->stage ? e->P : e->n; /* elements in master/m/v on this rank */
    /* the CPU backend's buffers are host memory already: written as they
     * are (a copy would cost more than the write, first touch included) */
    bool host = !strcmp(be->name, "cpu");
    float *h = host ? NULL : malloc((3 * held + 1) * sizeof(float));
    ckpt_piece *pc = calloc(s1 - s0 + 1, sizeof *pc);
    dsrt_status st = DSRT_STATUS_OK;
    if ((!host && !h) || !pc) {
        st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "checkpoint: %zu elements", held);
        goto out;
    }
    const float *hm = e->opt.master, *h1 = e->opt.m, *h2 = e->opt.v;
    if (!host) {
        if ((st = be->ops->download(be, h, e->opt.master, held * sizeof(float))) ||
            (st = be->ops->download(be, h + held, e->opt.m, held * sizeof(float))) ||
            (st = be->ops->download(be, h + 2 * held, e->opt.v, held * sizeof(float))))
            goto out;
        hm = h, h1 = h + held, h2 = h + 2 * held;
    }
    size_t lo = (size_t)e->rank * e->lay.partition_size;
    for (size_t s = s0; s < s1; s++) {
        const zero_slice *z = &e->lay.slices[s];
        /* where the piece lives in this rank's arrays: the partition (stage
         * >= 1) or the whole model (stage 0) */
        size_t at = e->stage ? z->flat_offset - lo : e->params[z->param].offset + z->offset_in_param;
        pc[s - s0] = (ckpt_piece){e->params[z->param].name, z->offset_in_param, z->n, hm + at,
                                  h1 + at, h2 + at};
    }
    st = ckpt_write_rank(path, e->rank, e->world, pc, s1 - s0);
out:
    free(h);
    free(pc);
    return st;
}

static dsrt_status write_main_file(dsrt_engine *e, const char *path, const char *tag,
                                   const char *client_state)
{
    size_t ns = e->lay.rank_slices[e->world];
    ckpt_tensor *t = calloc(e->n_params, sizeof *t);
    ckpt_source *src = calloc(ns + 1, sizeof *src);
    char (*files)[32] = calloc((size_t)e->world, 32);
    char *mjson = model_json(e);
    char *gjson = engine_groups_json(e);
    dsrt_status st = DSRT_STATUS_OK;
    if (!t || !src || !files || !mjson || !gjson) {
        st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "checkpoint");
        goto out;
    }
    for (size_t i = 0; i < e->n_params; i++) {
        t[i].name = e->params[i].name;
        t[i].ndim = e->params[i].ndim;
        memcpy(t[i].shape, e->params[i].shape, sizeof t[i].shape);
    }
    for (int r = 0; r < e->world; r++) {
        snprintf(files[r], 32, CKPT_RANK_FILE_FORMAT, r);
        for (size_t s = e->lay.rank_slices[r]; s < e->lay.rank_slices[r + 1]; s++) {
            const zero_slice *z = &e->lay.slices[s];
            src[s] = (ckpt_source){files[r], s - e->lay.rank_slices[r], z->param,
                                   z->offset_in_param, z->n};
        }
    }
    const dsrt_loss_scaler *ls = &e->scaler;
    const ds_optimizer_config *o = &e->cfg.optimizer;
    ckpt_kv kv[] = {
        {"format_version", CKPT_I64, CKPT_FORMAT_VERSION, 0, NULL},
        {"dsrt_version", CKPT_STR, 0, 0, DSRT_VERSION_STRING},
        {"tag", CKPT_STR, 0, 0, tag},
        {"ds_config", CKPT_STR, 0, 0, e->config_json},
        {"model_config", CKPT_STR, 0, 0, mjson},
        {"client_state", CKPT_STR, 0, 0, client_state ? client_state : "{}"},
        {"dp_world_size", CKPT_I64, e->world, 0, NULL},
        {"zero_stage", CKPT_I64, e->stage, 0, NULL},
        {"precision", CKPT_STR, 0, 0, dsrt_dtype_name(e->dt)},
        {"global_steps", CKPT_I64, e->count.global_steps, 0, NULL},
        {"skipped_steps", CKPT_I64, e->count.skipped_steps, 0, NULL},
        {"global_samples", CKPT_I64, e->count.global_samples, 0, NULL},
        {"micro_steps", CKPT_I64, e->count.micro_steps, 0, NULL},
        {"optimizer/step", CKPT_I64, e->opt.step, 0, NULL},
        {"optimizer/lr", CKPT_F64, 0, dsrt_lr_sched_lr(&e->sched), NULL},
        {"optimizer/beta1", CKPT_F64, 0, o->betas[0], NULL},
        {"optimizer/beta2", CKPT_F64, 0, o->betas[1], NULL},
        {"optimizer/eps", CKPT_F64, 0, o->eps, NULL},
        {"optimizer/weight_decay", CKPT_F64, 0, o->weight_decay, NULL},
        {"optimizer/gradient_clipping", CKPT_F64, 0, e->cfg.gradient_clipping, NULL},
        /* the parameter groups: each group's weight decay and lr factor, each
         * parameter's group (JSON: {"groups": [[wd, lr_scale], ...], "param_group": [...]}) */
        {"optimizer/param_groups", CKPT_STR, 0, 0, gjson},
        {"lr_scheduler/last_batch_iteration", CKPT_I64, dsrt_lr_sched_state_save(&e->sched), 0, NULL},
        {"loss_scaler/cur_scale", CKPT_F64, 0, ls->cur_scale, NULL},
        {"loss_scaler/cur_iter", CKPT_I64, ls->cur_iter, 0, NULL},
        {"loss_scaler/last_overflow_iter", CKPT_I64, ls->last_overflow_iter, 0, NULL},
        {"loss_scaler/cur_hysteresis", CKPT_I64, ls->cur_hysteresis, 0, NULL},
        {"loss_scaler/delayed_shift", CKPT_I64, ls->delayed_shift, 0, NULL},
        {"loss_scaler/window", CKPT_I64, ls->window, 0, NULL},
        {"loss_scaler/min_scale", CKPT_F64, 0, ls->min_scale, NULL},
        {"loss_scaler/consecutive_hysteresis", CKPT_I64, ls->consecutive_hysteresis, 0, NULL},
        {"loss_scaler/dynamic", CKPT_I64, ls->dynamic, 0, NULL},
        /* the engine draws random numbers only at initialisation (dropout is
         * 0): the seed and the number of draws since are its whole RNG state */
        {"rng/seed", CKPT_I64, (int64_t)e->seed, 0, NULL},
        {"rng/draws_after_init", CKPT_I64, 0, 0, NULL},
    };
    st = ckpt_write_main(path, t, e->n_params, src, ns, kv, sizeof kv / sizeof kv[0]);
out:
    free(gjson);
    free(t);
    free(src);
    free(files);
    free(mjson);
    return st;
}

dsrt_status engine_save(dsrt_engine *e, const char *save_dir, const char *tag_in,
                        const char *client_state)
{
    if (!save_dir || !*save_dir)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "engine_save: save_dir is required");
    if (e->in_micro || e->count.micro_steps % e->gas)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_save: inside a gradient accumulation window (micro-step "
                              "%lld of %d): save at an optimizer boundary",
                              (long long)(e->count.micro_steps % e->gas), e->gas);
    DSRT_TRY(engine_params_settle(e));
    char tag[256];
    if (tag_in && *tag_in)
        snprintf(tag, sizeof tag, "%s", tag_in);
    else
        snprintf(tag, sizeof tag, "global_step%lld", (long long)e->count.global_steps);
    DSRT_TRY(check_tag(tag));
    if (client_state && *client_state) {
        json_error je;
        json_doc *d = json_parse(client_state, strlen(client_state), &je);
        if (!d)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "engine_save: client_state is not JSON (%s at line %d)",
                                  je.msg, je.line);
        json_doc_free(d);
    }
    char tmp[4096], final[4096], path[4200];
    /* every rank computes the same temporary name from rank 0's pid */
    double pid = e->rank == 0 ? (double)getpid() : 0;
    DSRT_TRY(e->comm->allreduce_host_f64(e->comm, &pid, 1, "checkpoint: agreeing on a name"));
    char owner[128];
    owner_tag((long long)pid, owner, sizeof owner);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp-%s", save_dir, tag, owner);
    snprintf(final, sizeof final, "%s/%s", save_dir, tag);
    dsrt_status st = DSRT_STATUS_OK;
    int failed = 0;
    if (e->rank == 0) {
        if (mkdir(save_dir, 0777) && errno != EEXIST)
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "engine_save: cannot create %s: %s",
                                save_dir, strerror(errno));
        else {
            sweep_leftovers(save_dir, true);
            remove_tree(tmp);
            if (mkdir(tmp, 0777))
                st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "engine_save: cannot create %s: %s",
                                    tmp, strerror(errno));
        }
    }
    DSRT_TRY(agree(e, st, "checkpoint: directory created", &failed));
    if (failed)
        return st ? st
                  : dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                   "engine_save: rank 0 could not create %s", tmp);
    snprintf(path, sizeof path, "%s/" CKPT_RANK_FILE_FORMAT, tmp, e->rank);
    st = write_rank_file(e, path);
    if (!st)
        st = ckpt_seal(path);
    if (st)
        st = save_error(st, path);
    DSRT_TRY(agree(e, st, "checkpoint: rank files written", &failed));
    if (failed) {
        if (e->rank == 0)
            remove_tree(tmp);
        return st ? st
                  : dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                   "engine_save: %d rank(s) could not write their part of %s "
                                   "(see their errors); the previous checkpoint is untouched",
                                   failed, final);
    }
    if (e->rank == 0) {
        snprintf(path, sizeof path, "%s/%s", tmp, CKPT_MAIN_FILE_NAME);
        st = write_main_file(e, path, tag, client_state);
        if (!st)
            st = ckpt_seal(path);
        if (st)
            st = save_error(st, path);
        if (!st)
            st = ckpt_sync_dir(tmp);
        if (!st) {
            /* an existing checkpoint of the same tag is replaced: moved aside
             * first, removed after the new one is in place */
            char old[4200];
            snprintf(old, sizeof old, "%s/.%s.old-%s", save_dir, tag, owner);
            bool had_old = rename(final, old) == 0;
            if (rename(tmp, final))
                st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "engine_save: rename %s -> %s: %s", tmp,
                                    final, strerror(errno));
            else if (had_old)
                remove_tree(old);
        }
        if (!st)
            st = ckpt_sync_dir(save_dir);
        if (!st) {
            char lt[4200], lf[4200];
            snprintf(lt, sizeof lt, "%s/.latest.tmp-%s", save_dir, owner);
            snprintf(lf, sizeof lf, "%s/latest", save_dir);
            FILE *f = fopen(lt, "w");
            if (!f || fputs(tag, f) < 0 || fflush(f) || fsync(fileno(f))) {
                st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "engine_save: writing %s: %s", lt,
                                    strerror(errno));
                if (f)
                    fclose(f);
                unlink(lt);
            } else if (fclose(f) || rename(lt, lf)) {
                st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "engine_save: %s -> %s: %s", lt, lf,
                                    strerror(errno));
                unlink(lt);
            } else {
                st = ckpt_sync_dir(save_dir);
            }
        }
        if (st)
            remove_tree(tmp);
    }
    DSRT_TRY(agree(e, st, "checkpoint: published", &failed));
    if (failed)
        return st ? st
                  : dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                   "engine_save: rank 0 could not finish %s (see its error)", final);
    if (e->rank == 0)
        dsrt_log(DSRT_LOG_INFO, "checkpoint saved: %s (%d rank file%s)", final, e->world,
                 e->world == 1 ? "" : "s");
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- load */

static dsrt_status read_latest(const char *dir, char *tag, size_t size)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/latest", dir);
    FILE *f = fopen(p, "r");
    if (!f)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "engine_load: %s: %s (no checkpoint has been completed there)", p,
                              strerror(errno));
    size_t n = fread(tag, 1, size - 1, f);
    fclose(f);
    tag[n] = '\0';
    while (n && (tag[n - 1] == '\n' || tag[n - 1] == ' ' || tag[n - 1] == '\r'))
        tag[--n] = '\0';
    return check_tag(tag);
}


/* The saved model against this engine's: every key that changes the math
 * (shapes alone let a checkpoint of another head count load). */
static dsrt_status check_model(const dsrt_engine *e, ckpt_reader *r, const char *path)
{
    char *saved = NULL;
    DSRT_TRY(ckpt_read_str(r, "model_config", &saved));
    json_error je;
    json_doc *d = json_parse(saved, strlen(saved), &je);
    const json_value *root = d ? json_doc_root(d) : NULL;
    dsrt_status st = DSRT_STATUS_OK;
    if (!root || root->type != JSON_OBJECT) {
        st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "engine_load: %s: its model_config is not a JSON object",
                            path);
        goto out;
    }
    const json_value *type = json_object_get(root, "model_type");
    const char *saved_type = type && type->type == JSON_STRING ? type->u.str.s : "?";
    const char *this_type = e->model ? dsrt_model_type(&e->mcfg) : "host";
    if (strcmp(saved_type, this_type)) {
        st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                            "engine_load: %s was saved from a %s model; this engine trains a %s model", path,
                            saved_type, this_type);
        goto out;
    }
    if (!e->model)
        goto out; /* a host model: its tensors' names and shapes are compared below */
    model_key keys[MODEL_KEYS_MAX];
    int nkeys = model_keys(e, keys);
    for (int i = 0; i < nkeys; i++) {
        const json_value *v = json_object_get(root, keys[i].key);
        if (!v || v->type != JSON_NUMBER) {
            st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                "engine_load: %s: its model_config has no %s", path, keys[i].key);
            goto out;
        }
        /* the float keys were saved as the float this engine holds, printed exactly */
        if (v->u.num.d != keys[i].value) {
            st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                "engine_load: %s was saved from a model with %s %.9g; this model has %s %.9g: "
                                "a checkpoint of another model",
                                path, keys[i].key, v->u.num.d, keys[i].key, keys[i].value);
            goto out;
        }
    }
out:
    json_doc_free(d);
    free(saved);
    return st;
}

/* Every HDF5 file of a checkpoint directory against its checksum, before
 * HDF5 parses any of them (ckpt.h: ckpt_verify). A checkpoint whose main
 * file is sealed must have every file sealed; one from before seals loads
 * with a warning. */
static dsrt_status verify_files(const char *dir, bool speak)
{
    char main_path[4600];
    snprintf(main_path, sizeof main_path, "%s/%s", dir, CKPT_MAIN_FILE_NAME);
    bool main_sealed = false;
    struct stat sb;
    if (stat(main_path, &sb) != 0)
        return DSRT_STATUS_OK; /* ckpt_open names the missing file */
    DSRT_TRY(ckpt_verify(main_path, &main_sealed));
    DIR *d = opendir(dir);
    if (!d)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "engine_load: %s: %s", dir, strerror(errno));
    dsrt_status st = DSRT_STATUS_OK;
    struct dirent *de;
    while (!st && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 4 || strcmp(de->d_name + n - 3, ".h5") || !strcmp(de->d_name, CKPT_MAIN_FILE_NAME))
            continue;
        char p[4600];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        bool sealed = false;
        st = ckpt_verify(p, &sealed);
        if (!st && !sealed && main_sealed)
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                "%s: its checksum record %s%s is missing (every file of this checkpoint has one)", p,
                                de->d_name, CKPT_SEAL_SUFFIX);
    }
    closedir(d);
    if (!st && !main_sealed && speak)
        dsrt_log(DSRT_LOG_WARNING,
                 "checkpoint %s has no checksum records (written before dsrt sealed its files): HDF5 reads it "
                 "unverified, and a corrupt file can crash it",
                 dir);
    return st;
}

static dsrt_status load_from(dsrt_engine *e, ckpt_reader *r, const char *path, const engine_load_opts *lo_opts)
{
    bool weights_only = lo_opts->module_only || lo_opts->skip_optimizer_states;
    dsrt_backend *be = e->be;
    int64_t fv = 0;
    DSRT_TRY(ckpt_read_i64(r, "format_version", &fv));
    if (fv != CKPT_FORMAT_VERSION)
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                              "engine_load: %s has format version %lld; this libdsrt reads %d",
                              path, (long long)fv, CKPT_FORMAT_VERSION);
    DSRT_TRY(check_model(e, r, path));
    /* the precision: the optimizer state of another precision (a loss scaler
     * that is static 1 in fp32) must not run this one */
    char *prec = NULL;
    DSRT_TRY(ckpt_read_str(r, "precision", &prec));
    bool same_precision = !strcmp(prec, dsrt_dtype_name(e->dt));
    if (!same_precision && !weights_only) {
        dsrt_status pst = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                         "engine_load: %s was saved by a %s run; this run trains in %s: its "
                                         "optimizer and loss-scaler state do not carry over (load only the "
                                         "weights: load_module_only, or skip_optimizer_states)",
                                         path, prec, dsrt_dtype_name(e->dt));
        free(prec);
        return pst;
    }
    free(prec);
    /* the model: every tensor by name and shape */
    for (size_t i = 0; i < e->n_params; i++) {
        int nd = 0;
        int64_t sh[8] = {0};
        DSRT_TRY(ckpt_tensor_info(r, e->params[i].name, &nd, sh));
        bool same = nd == e->params[i].ndim;
        for (int k = 0; same && k < nd; k++)
            same = sh[k] == e->params[i].shape[k];
        if (!same) {
            char a[128] = "", b[128] = "";
            for (int k = 0; k < nd; k++)
                snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", k ? ", " : "", (long long)sh[k]);
            for (int k = 0; k < e->params[i].ndim; k++)
                snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", k ? ", " : "",
                         (long long)e->params[i].shape[k]);
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "engine_load: %s: dataset /master/%s has shape (%s) but this "
                                  "model's parameter has (%s): a checkpoint of another model",
                                  path, e->params[i].name, a, b);
        }
    }
    int64_t saved_world = 0, gs, ss, gsm, step, lbi;
    DSRT_TRY(ckpt_read_i64(r, "dp_world_size", &saved_world));
    DSRT_TRY(ckpt_read_i64(r, "global_steps", &gs));
    DSRT_TRY(ckpt_read_i64(r, "skipped_steps", &ss));
    DSRT_TRY(ckpt_read_i64(r, "global_samples", &gsm));
    DSRT_TRY(ckpt_read_i64(r, "optimizer/step", &step));
    DSRT_TRY(ckpt_read_i64(r, "lr_scheduler/last_batch_iteration", &lbi));
    dsrt_loss_scaler ls = e->scaler;
    int64_t ch, dyn;
    DSRT_TRY(ckpt_read_f64(r, "loss_scaler/cur_scale", &ls.cur_scale));
    DSRT_TRY(ckpt_read_i64(r, "loss_scaler/cur_iter", &ls.cur_iter));
    DSRT_TRY(ckpt_read_i64(r, "loss_scaler/last_overflow_iter", &ls.last_overflow_iter));
    DSRT_TRY(ckpt_read_i64(r, "loss_scaler/cur_hysteresis", &ls.cur_hysteresis));
    DSRT_TRY(ckpt_read_i64(r, "loss_scaler/delayed_shift", &ls.delayed_shift));
    DSRT_TRY(ckpt_read_i64(r, "loss_scaler/window", &ls.window));
    DSRT_TRY(ckpt_read_f64(r, "loss_scaler/min_scale", &ls.min_scale));
    DSRT_TRY(ckpt_read_i64(r, "loss_scaler/consecutive_hysteresis", &ch));
    DSRT_TRY(ckpt_read_i64(r, "loss_scaler/dynamic", &dyn));
    ls.consecutive_hysteresis = ch != 0;
    ls.dynamic = dyn != 0;
    double b1, b2, eps, wd, clip;
    DSRT_TRY(ckpt_read_f64(r, "optimizer/beta1", &b1));
    DSRT_TRY(ckpt_read_f64(r, "optimizer/beta2", &b2));
    DSRT_TRY(ckpt_read_f64(r, "optimizer/eps", &eps));
    DSRT_TRY(ckpt_read_f64(r, "optimizer/weight_decay", &wd));
    DSRT_TRY(ckpt_read_f64(r, "optimizer/gradient_clipping", &clip));
    /* the groups the checkpoint's optimizer had (absent in checkpoints of
     * earlier dsrt versions: one group, its weight_decay) */
    char *gjson = NULL;
    int gtype = CKPT_NONE;
    if (!weights_only) /* a weights-only load keeps this engine's optimizer */
        DSRT_TRY(ckpt_state_type(r, "optimizer/param_groups", &gtype));
    if (gtype == CKPT_STR)
        DSRT_TRY(ckpt_read_str(r, "optimizer/param_groups", &gjson));
    dsrt_param_group *groups = NULL;
    int ngroups = 0;
    dsrt_status gst = engine_groups_parse(e, gjson, path, &groups, &ngroups);
    free(gjson);
    DSRT_TRY(gst);

    /* From here the engine's buffers are overwritten. Everything that can be
     * checked without reading the tensors has been; a read error below (a
     * corrupt chunk) leaves the weights partly loaded, and says so. */
    dsrt_status st = DSRT_STATUS_OK;
    float *tmp = malloc(CHUNK * sizeof(float));
    if (!tmp)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "engine_load");
    /* the weights: every rank needs all of them (the fp32 masters, rounded
     * to the model dtype as the optimizer step rounds them) */
    for (size_t i = 0; i < e->n_params && !st; i++)
        for (size_t o = 0; o < e->params[i].numel && !st; o += CHUNK) {
            size_t k = e->params[i].numel - o < CHUNK ? e->params[i].numel - o : CHUNK;
            st = ckpt_read_range(r, "master", e->params[i].name, o, k, tmp);
            if (!st)
                st = be->ops->upload_f32(be, (char *)e->buf.params + (e->params[i].offset + o) * e->dsz,
                                    tmp, k);
        }
    /* this rank's optimizer state: masters and moments of its pieces (stage
     * >= 1) or of everything (stage 0) */
    static const char *const kinds[3] = {"master", "exp_avg", "exp_avg_sq"};
    float *dst[3] = {e->opt.master == e->buf.params ? NULL : e->opt.master, e->opt.m, e->opt.v};
    size_t lo = (size_t)e->rank * e->lay.partition_size;
    size_t nsl = e->stage ? e->lay.rank_slices[e->rank + 1] - e->lay.rank_slices[e->rank] : e->n_params;
    for (size_t j = 0; j < nsl && !st; j++) {
        size_t p, off, n, at;
        if (e->stage) {
            const zero_slice *z = &e->lay.slices[e->lay.rank_slices[e->rank] + j];
            p = z->param, off = z->offset_in_param, n = z->n, at = z->flat_offset - lo;
        } else {
            p = j, off = 0, n = e->params[j].numel, at = e->params[j].offset;
        }
        for (int kd = 0; kd < (weights_only ? 1 : 3) && !st; kd++) {
            if (!dst[kd])
                continue;
            for (size_t o = 0; o < n && !st; o += CHUNK) {
                size_t k = n - o < CHUNK ? n - o : CHUNK;
                st = ckpt_read_range(r, kinds[kd], e->params[p].name, off + o, k, tmp);
                if (!st)
                    st = be->ops->upload(be, dst[kd] + at + o, tmp, k * sizeof(float));
            }
        }
    }
    free(tmp);
    if (!st && weights_only && /* fresh Adam moments */
        ((st = be->ops->memset0(be, e->opt.m, e->P * sizeof(float))) ||
         (st = be->ops->memset0(be, e->opt.v, e->P * sizeof(float)))))
        return st;
    if (!st && ((e->buf.grads && (st = be->ops->memset0(be, e->buf.grads, e->n * e->dsz))) ||
                (e->buf.pgrad && (st = be->ops->memset0(be, e->buf.pgrad, e->P * e->dsz)))))
        return st;
    if (st) {
        char m[1024];
        snprintf(m, sizeof m, "%s", dsrt_error_message());
        free(groups);
        return dsrt_error_set(st,
                              "%s (the engine's weights are now partly overwritten: load another "
                              "checkpoint or create the engine again)",
                              m);
    }
    if (lo_opts->module_only) {
        /* DeepSpeed's load_module_only: the weights, nothing else */
        if (e->rank == 0)
            dsrt_log(DSRT_LOG_INFO, "checkpoint loaded (weights only, load_module_only): %s; fresh Adam "
                                    "moments, the engine's own loss scaler, schedule and counters", path);
        return DSRT_STATUS_OK;
    }
    if (lo_opts->skip_optimizer_states) {
        /* DeepSpeed's load_optimizer_states=False: the weights, the counters and
         * the scheduler's position; a fresh optimizer and loss scaler */
        e->count.global_steps = gs;
        e->count.skipped_steps = ss;
        e->count.global_samples = gsm;
        e->count.micro_steps = gs * e->gas;
        e->count.window_loss = 0;
        e->count.window_n = 0;
        e->opt.step = 0;
        dsrt_lr_sched_state_restore(&e->sched, lbi);
        if (e->rank == 0)
            dsrt_log(DSRT_LOG_INFO, "checkpoint loaded without optimizer states: %s at global step %lld; "
                                    "fresh Adam moments and loss scaler", path, (long long)gs);
        return DSRT_STATUS_OK;
    }
    e->count.global_steps = gs;
    e->count.skipped_steps = ss;
    e->count.global_samples = gsm;
    /* per-rank micro-steps: the saved count belongs to the saving run's
     * gradient accumulation (another world size has another gas) */
    e->count.micro_steps = gs * e->gas;
    e->opt.step = step;
    e->count.window_loss = 0;
    e->count.window_n = 0;
    e->scaler = ls;
    e->cfg.optimizer.betas[0] = b1;
    e->cfg.optimizer.betas[1] = b2;
    e->cfg.optimizer.eps = eps;
    e->cfg.optimizer.weight_decay = wd;
    e->cfg.gradient_clipping = clip;
    engine_groups_restore(e, groups, ngroups, wd);
    free(groups);
    DSRT_TRY(engine_groups_changed(e));
    e->sched.beta1 = b1;
    e->sched.beta2 = b2;
    dsrt_lr_sched_state_restore(&e->sched, lbi);
    if (e->rank == 0) {
        dsrt_log(DSRT_LOG_INFO,
                 "checkpoint loaded: %s (saved on %lld rank%s, now %d): global step %lld, "
                 "skipped %lld, loss scale %g",
                 path, (long long)saved_world, saved_world == 1 ? "" : "s", e->world,
                 (long long)gs, (long long)ss, dsrt_loss_scaler_scale(&e->scaler));
        dsrt_log(DSRT_LOG_INFO,
                 "as in DeepSpeed, the checkpoint's optimizer hyperparameters (betas, eps, "
                 "weight_decay), gradient_clipping, loss-scaler state and scheduler position take "
                 "precedence over the config");
    }
    return DSRT_STATUS_OK;
}

dsrt_status engine_load(dsrt_engine *e, const char *load_dir, const char *tag_in,
                        const engine_load_opts *opts, char **client_state)
{
    static const engine_load_opts all = {0};
    if (!opts)
        opts = &all;
    *client_state = NULL;
    DSRT_TRY(engine_params_settle(e)); /* nothing may still write the weights */
    if (!load_dir || !*load_dir)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "engine_load: load_dir is required");
    if (e->in_micro || e->count.micro_steps % e->gas)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "engine_load: inside a gradient accumulation window");
    char tag[256];
    if (tag_in && *tag_in) {
        snprintf(tag, sizeof tag, "%s", tag_in);
        DSRT_TRY(check_tag(tag));
    } else {
        DSRT_TRY(read_latest(load_dir, tag, sizeof tag));
    }
    if (e->rank == 0)
        sweep_leftovers(load_dir, false);
    char path[4600];
    snprintf(path, sizeof path, "%s/%s/%s", load_dir, tag, CKPT_MAIN_FILE_NAME);
    ckpt_reader *r = NULL;
    char tag_dir[4400];
    snprintf(tag_dir, sizeof tag_dir, "%s/%s", load_dir, tag);
    dsrt_status st = verify_files(tag_dir, e->rank == 0);
    if (!st)
        st = ckpt_open(path, &r);
    if (!st)
        st = load_from(e, r, path, opts);
    if (!st)
        st = ckpt_read_str(r, "client_state", client_state);
    ckpt_close(r);
    /* every rank must have loaded, or none goes on */
    int failed = 0;
    DSRT_TRY(agree(e, st, "checkpoint: loaded", &failed));
    if (failed && !st)
        st = dsrt_error_set(DSRT_STATUS_IO_ERROR,
                            "engine_load: %d other rank(s) could not load %s (see their errors)",
                            failed, path);
    if (st) {
        free(*client_state);
        *client_state = NULL;
    }
    return st;
}

dsrt_status engine_load_keep(dsrt_engine *e, const char *load_dir, const char *tag,
                             const engine_load_opts *opts, const char **client_state, int64_t *global_steps)
{
    char *cs = NULL;
    dsrt_status st = engine_load(e, load_dir, tag, opts, &cs);
    if (st)
        return st;
    free(e->client_state);
    e->client_state = cs;
    *client_state = cs;
    *global_steps = e->count.global_steps;
    return DSRT_STATUS_OK;
}
