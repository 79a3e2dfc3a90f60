/* Hugging Face model folders in and out (see hf.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/hf.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "base/internal.h"
#include "base/json.h"
#include "base/jsonw.h"

/* ---------------------------------------------------------------- reading */

typedef struct hf_files {
    st_file *f;
    char **names; /* file name of each */
    size_t n;
    json_doc *index;
    const json_value *weight_map; /* the index's, or NULL (one file) */
} hf_files;

static void hf_files_free(hf_files *h)
{
    for (size_t i = 0; i < h->n; i++) {
        st_close(&h->f[i]);
        free(h->names[i]);
    }
    free(h->f);
    free(h->names);
    json_doc_free(h->index);
    memset(h, 0, sizeof *h);
}

static dsrt_status open_one(hf_files *h, const char *dir, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (!strcmp(h->names[i], name))
            return DSRT_STATUS_OK;
    if (strchr(name, '/') || !strcmp(name, "..") || !*name)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "%s/model.safetensors.index.json: weight file \"%s\" is not a file name in "
                              "the folder",
                              dir, name);
    st_file *f = realloc(h->f, (h->n + 1) * sizeof *f);
    char **nm = f ? realloc(h->names, (h->n + 1) * sizeof *nm) : NULL;
    if (f)
        h->f = f;
    if (nm)
        h->names = nm;
    if (!f || !nm)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "model weights: file list");
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    memset(&h->f[h->n], 0, sizeof h->f[h->n]);
    DSRT_TRY(st_open(path, &h->f[h->n]));
    h->names[h->n] = dsrt_strdup(name);
    h->n++;
    return DSRT_STATUS_OK;
}

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static dsrt_status open_folder(const char *dir, hf_files *h)
{
    memset(h, 0, sizeof *h);
    char path[8192];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (!file_exists(path)) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (!file_exists(path)) {
            snprintf(path, sizeof path, "%s/pytorch_model.bin", dir);
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "%s: no model.safetensors or model.safetensors.index.json%s", dir,
                                  file_exists(path) ? " (only pytorch_model.bin, a pickle dsrt does not "
                                                      "read: save the model with safe_serialization)"
                                                    : "");
        }
        return open_one(h, dir, "model.safetensors");
    }
    char *text = NULL;
    size_t len = 0;
    DSRT_TRY(dsrt_read_text_file(path, "safetensors index", 64u << 20, &text, &len));
    json_error je;
    h->index = json_parse(text, len, &je);
    free(text);
    if (!h->index)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s:%d:%d: %s", path, je.line, je.col, je.msg);
    const json_value *root = json_doc_root(h->index);
    h->weight_map = root && root->type == JSON_OBJECT ? json_object_get(root, "weight_map") : NULL;
    if (!h->weight_map || h->weight_map->type != JSON_OBJECT)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s: no \"weight_map\" object", path);
    for (size_t i = 0; i < h->weight_map->u.obj.count; i++) {
        const json_member *mb = &h->weight_map->u.obj.members[i];
        if (mb->value->type != JSON_STRING)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s:%d: weight_map[\"%s\"] is not a file name",
                                  path, mb->value->line, mb->key);
        DSRT_TRY(open_one(h, dir, mb->value->u.str.s));
    }
    return DSRT_STATUS_OK;
}

/* Where tensor `name` is: its file index and entry, or NULL. */
static const st_tensor *find_tensor(const hf_files *h, const char *name, size_t *file)
{
    if (h->weight_map) {
        const json_value *v = json_object_get(h->weight_map, name);
        if (!v)
            return NULL;
        for (size_t i = 0; i < h->n; i++)
            if (!strcmp(h->names[i], v->u.str.s)) {
                *file = i;
                return st_find(&h->f[i], name);
            }
        return NULL;
    }
    *file = 0;
    return h->n ? st_find(&h->f[0], name) : NULL;
}

/* Buffers older checkpoints carry that are not parameters. */
static bool ignorable(const char *name)
{
    size_t n = strlen(name);
#define ENDS(s) (n >= sizeof(s) - 1 && !strcmp(name + n - (sizeof(s) - 1), s))
    return ENDS(".attn.bias") || ENDS(".attn.masked_bias") || ENDS(".rotary_emb.inv_freq");
#undef ENDS
}

dsrt_status dsrt_hf_load_weights(const char *dir, dsrt_backend *be, void *param_mem,
                                 const dsrt_param *params, size_t n, int tied_head)
{
    hf_files h;
    dsrt_status st = open_folder(dir, &h);
    enum { CHUNK = 1 << 20 };
    float *buf = st ? NULL : malloc(CHUNK * sizeof(float));
    unsigned char **used = NULL;
    if (!st && !buf)
        st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "model weights: host chunk");
    if (!st) {
        used = calloc(h.n, sizeof *used);
        for (size_t i = 0; used && i < h.n; i++)
            if (!(used[i] = calloc(h.f[i].n ? h.f[i].n : 1, 1)))
                st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "model weights");
        if (!used)
            st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "model weights");
    }
    size_t dsz = dsrt_dtype_size(be->dt);
    for (size_t i = 0; i < n && !st; i++) {
        const dsrt_param *p = &params[i];
        size_t fi = 0;
        const st_tensor *t = find_tensor(&h, p->name, &fi);
        /* GPT2Model's files: the same names without "transformer." */
        if (!t && !strncmp(p->name, "transformer.", 12))
            t = find_tensor(&h, p->name + 12, &fi);
        if (!t) {
            st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                "%s: tensor \"%s\" (%lld x %lld) is missing from the model's weights", dir,
                                p->name, (long long)p->shape[0], (long long)(p->ndim > 1 ? p->shape[1] : 1));
            break;
        }
        bool shape_ok = t->ndim == p->ndim;
        for (int k = 0; shape_ok && k < p->ndim; k++)
            shape_ok = t->shape[k] == p->shape[k];
        if (!shape_ok) {
            char got[128] = "", want[64];
            for (int k = 0; k < t->ndim; k++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", k ? " x " : "",
                         (long long)t->shape[k]);
            snprintf(want, sizeof want, p->ndim > 1 ? "%lld x %lld" : "%lld", (long long)p->shape[0],
                     (long long)p->shape[1]);
            st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                "%s: tensor \"%s\" has shape (%s) in %s; the config makes it (%s)", dir,
                                p->name, t->ndim ? got : "scalar", h.names[fi], want);
            break;
        }
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) {
            st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                "%s: tensor \"%s\" in %s is %s; weights must be F32, F16, BF16 or F64", dir,
                                p->name, h.names[fi], st_dtype_name(t->dtype));
            break;
        }
        used[fi][t - h.f[fi].tensors] = 1;
        for (size_t j = 0; j < p->numel && !st; j += CHUNK) {
            size_t k = p->numel - j < CHUNK ? p->numel - j : CHUNK;
            if (!(st = st_to_f32_range(t, j, k, buf)))
                st = be->ops->upload_f32(be, (char *)param_mem + (p->offset + j) * dsz, buf, k);
        }
    }
    /* what the model has no place for */
    for (size_t fi = 0; fi < h.n && !st; fi++)
        for (size_t i = 0; i < h.f[fi].n && !st; i++) {
            const char *name = h.f[fi].tensors[i].name;
            if (used[fi][i] || ignorable(name))
                continue;
            if (tied_head && !strcmp(name, "lm_head.weight")) {
                dsrt_log(DSRT_LOG_INFO, "%s: lm_head.weight is ignored: the head is tied to the token "
                                        "embedding (tie_word_embeddings), as transformers does", dir);
                continue;
            }
            if (h.weight_map) {
                const json_value *v = json_object_get(h.weight_map, name);
                if (!v || strcmp(v->u.str.s, h.names[fi]))
                    continue; /* not this file's by the index: another file has it */
            }
            st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                "%s: tensor \"%s\" in %s is not a parameter of this model (another "
                                "architecture or config?)",
                                dir, name, h.names[fi]);
        }
    for (size_t i = 0; used && i < h.n; i++)
        free(used[i]);
    free(used);
    free(buf);
    hf_files_free(&h);
    return st;
}

/* ---------------------------------------------------------------- writing */

static size_t g_shard_bytes = (size_t)5000000000ull; /* transformers' "5GB" */

void dsrt_hf_set_shard_bytes(size_t bytes) { g_shard_bytes = bytes ? bytes : (size_t)5000000000ull; }

/* a float as the shortest decimal that reads back as the same float (1e-06,
 * not 9.99999997e-07) */
static void jw_float(jw *w, float f)
{
    char text[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(text, sizeof text, "%.*g", prec, (double)f);
        if (strtof(text, NULL) == f)
            break;
    }
    if (!strpbrk(text, ".eEn"))
        strcat(text, ".0");
    jw_raw(w, text);
}

static const char *dtype_torch_name(dsrt_dtype dt)
{
    return dt == DSRT_F32 ? "float32" : dt == DSRT_F16 ? "float16" : "bfloat16";
}

char *dsrt_hf_config_json(const dsrt_model_config *cfg, dsrt_dtype dt)
{
    dsrt_buf b = {0};
    jw w;
    jw_init(&w, &b, 2);
    jw_object_begin(&w);
    if (cfg->arch == DSRT_ARCH_GPT2) {
        const dsrt_gpt2_config *c = &cfg->gpt2;
        jw_key(&w, "architectures"), jw_array_begin(&w), jw_string(&w, "GPT2LMHeadModel"), jw_array_end(&w);
        jw_key(&w, "model_type"), jw_string(&w, "gpt2");
        jw_key(&w, "vocab_size"), jw_int(&w, c->vocab_size);
        jw_key(&w, "n_positions"), jw_int(&w, c->n_positions);
        jw_key(&w, "n_embd"), jw_int(&w, c->n_embd);
        jw_key(&w, "n_layer"), jw_int(&w, c->n_layer);
        jw_key(&w, "n_head"), jw_int(&w, c->n_head);
        jw_key(&w, "n_inner"), jw_int(&w, c->n_inner);
        jw_key(&w, "activation_function"), jw_string(&w, "gelu_new");
        jw_key(&w, "layer_norm_epsilon"), jw_float(&w, c->layer_norm_epsilon);
        jw_key(&w, "initializer_range"), jw_float(&w, c->initializer_range);
        jw_key(&w, "resid_pdrop"), jw_double(&w, 0.0);
        jw_key(&w, "embd_pdrop"), jw_double(&w, 0.0);
        jw_key(&w, "attn_pdrop"), jw_double(&w, 0.0);
        jw_key(&w, "tie_word_embeddings"), jw_bool(&w, true);
    } else {
        const dsrt_llama_config *c = &cfg->llama;
        jw_key(&w, "architectures"), jw_array_begin(&w), jw_string(&w, c->architecture), jw_array_end(&w);
        jw_key(&w, "model_type"), jw_string(&w, c->model_type);
        jw_key(&w, "vocab_size"), jw_int(&w, c->vocab_size);
        jw_key(&w, "hidden_size"), jw_int(&w, c->hidden_size);
        jw_key(&w, "intermediate_size"), jw_int(&w, c->intermediate_size);
        jw_key(&w, "num_hidden_layers"), jw_int(&w, c->num_hidden_layers);
        jw_key(&w, "num_attention_heads"), jw_int(&w, c->num_attention_heads);
        jw_key(&w, "num_key_value_heads"), jw_int(&w, c->num_key_value_heads);
        jw_key(&w, "head_dim"), jw_int(&w, c->head_dim);
        jw_key(&w, "max_position_embeddings"), jw_int(&w, c->max_position_embeddings);
        jw_key(&w, "rms_norm_eps"), jw_float(&w, c->rms_norm_eps);
        jw_key(&w, "initializer_range"), jw_float(&w, c->initializer_range);
        jw_key(&w, "hidden_act"), jw_string(&w, "silu");
        jw_key(&w, "attention_dropout"), jw_double(&w, 0.0);
        /* transformers 4's spelling: 5 reads it too */
        jw_key(&w, "rope_theta"), jw_double(&w, c->rope_theta);
        jw_key(&w, "rope_scaling");
        if (c->rope_llama3) {
            jw_object_begin(&w);
            jw_key(&w, "rope_type"), jw_string(&w, "llama3");
            jw_key(&w, "factor"), jw_double(&w, c->rope_factor);
            jw_key(&w, "low_freq_factor"), jw_double(&w, c->rope_low_freq_factor);
            jw_key(&w, "high_freq_factor"), jw_double(&w, c->rope_high_freq_factor);
            jw_key(&w, "original_max_position_embeddings"), jw_int(&w, c->rope_original_max_positions);
            jw_object_end(&w);
        } else {
            jw_null(&w);
        }
        jw_key(&w, "tie_word_embeddings"), jw_bool(&w, c->tie_word_embeddings);
        if (!strcmp(c->model_type, "llama")) {
            jw_key(&w, "attention_bias"), jw_bool(&w, c->qkv_bias);
            jw_key(&w, "mlp_bias"), jw_bool(&w, c->mlp_bias);
        } else if (!strcmp(c->model_type, "mistral")) {
            jw_key(&w, "sliding_window");
            if (c->sliding_window)
                jw_int(&w, c->sliding_window);
            else
                jw_null(&w);
        } else {
            jw_key(&w, "use_sliding_window"), jw_bool(&w, c->sliding_window > 0);
            jw_key(&w, "sliding_window");
            if (c->sliding_window)
                jw_int(&w, c->sliding_window);
            else
                jw_null(&w);
            jw_key(&w, "max_window_layers"), jw_int(&w, c->max_window_layers);
        }
    }
    jw_key(&w, "dtype"), jw_string(&w, dtype_torch_name(dt));
    jw_key(&w, "torch_dtype"), jw_string(&w, dtype_torch_name(dt));
    jw_object_end(&w);
    dsrt_buf_puts(&b, "\n");
    return dsrt_buf_take(&b);
}

/* The tokenizer and generation files of the folder the model came from go
 * with it (as the Trainer's save_model writes the tokenizer beside the
 * weights), so the export is a folder transformers can run as it is. */
static dsrt_status copy_side_files(const char *from, const char *to)
{
    static const char *const names[] = {"tokenizer.json",     "tokenizer_config.json", "special_tokens_map.json",
                                        "tokenizer.model",    "vocab.json",            "merges.txt",
                                        "added_tokens.json",  "generation_config.json", "chat_template.jinja"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char src[8192], dst[8192];
        snprintf(src, sizeof src, "%s/%s", from, names[i]);
        snprintf(dst, sizeof dst, "%s/%s", to, names[i]);
        if (!strcmp(src, dst))
            continue;
        FILE *f = fopen(src, "rb");
        if (!f)
            continue;
        dsrt_buf b = {0};
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
            dsrt_buf_append(&b, chunk, n);
        int err = ferror(f);
        fclose(f);
        dsrt_status st = err || b.oom ? dsrt_error_set(DSRT_STATUS_IO_ERROR, "export: cannot read %s", src)
                                      : dsrt_write_file_atomic(dst, b.data ? b.data : "", b.len, "export");
        dsrt_buf_free(&b);
        DSRT_TRY(st);
    }
    return DSRT_STATUS_OK;
}

dsrt_status dsrt_hf_export(const char *dir, const dsrt_model_config *cfg, dsrt_backend *be,
                           const void *param_mem, const dsrt_param *params, size_t n)
{
    if (mkdir(dir, 0755) && errno != EEXIST)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "export: cannot make the folder %s: %s", dir,
                              strerror(errno));
    dsrt_dtype dt = be->dt;
    size_t dsz = dsrt_dtype_size(dt);
    /* the tensors' bytes on the host: the CPU backend's own memory, else a copy */
    const char *host = param_mem;
    char *copy = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += params[i].numel * dsz;
    if (strcmp(be->name, "cpu")) {
        size_t end = params[n - 1].offset + params[n - 1].numel;
        copy = malloc(end * dsz);
        if (!copy)
            return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "export: host copy of %zu bytes", end * dsz);
        dsrt_status st = be->ops->download(be, copy, param_mem, end * dsz);
        if (!st)
            st = be->ops->sync(be);
        if (st) {
            free(copy);
            return st;
        }
        host = copy;
    }
    st_tensor *t = calloc(n, sizeof *t);
    size_t *shard_of = calloc(n, sizeof *shard_of);
    dsrt_status st = DSRT_STATUS_OK;
    if (!t || !shard_of)
        st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "export");
    size_t n_shards = 1, in_shard = 0;
    for (size_t i = 0; i < n && !st; i++) {
        size_t bytes = params[i].numel * dsz;
        t[i] = (st_tensor){.name = params[i].name,
                           .dtype = dt == DSRT_F32 ? ST_F32 : dt == DSRT_F16 ? ST_F16 : ST_BF16,
                           .ndim = params[i].ndim,
                           .data = host + params[i].offset * dsz,
                           .nbytes = bytes};
        for (int k = 0; k < params[i].ndim; k++)
            t[i].shape[k] = params[i].shape[k];
        if (in_shard && in_shard + bytes > g_shard_bytes) {
            n_shards++;
            in_shard = 0;
        }
        shard_of[i] = n_shards - 1;
        in_shard += bytes;
    }
    static const char *const meta[] = {"format", "pt"};
    char path[8192];
    if (!st && n_shards == 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        st = st_write(path, t, n, meta, 1);
    } else if (!st) {
        dsrt_buf b = {0};
        jw w;
        jw_init(&w, &b, 2);
        jw_object_begin(&w);
        jw_key(&w, "metadata"), jw_object_begin(&w), jw_key(&w, "total_size"), jw_int(&w, (int64_t)total),
            jw_object_end(&w);
        jw_key(&w, "weight_map"), jw_object_begin(&w);
        size_t first = 0;
        for (size_t s = 0; s < n_shards && !st; s++) {
            size_t last = first;
            while (last < n && shard_of[last] == s)
                last++;
            char name[64];
            snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, n_shards);
            snprintf(path, sizeof path, "%s/%s", dir, name);
            st = st_write(path, t + first, last - first, meta, 1);
            for (size_t i = first; i < last; i++)
                jw_key(&w, params[i].name), jw_string(&w, name);
            first = last;
        }
        jw_object_end(&w);
        jw_object_end(&w);
        dsrt_buf_puts(&b, "\n");
        if (!st) {
            snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
            st = b.oom ? dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "export: index")
                       : dsrt_write_file_atomic(path, b.data, b.len, "export");
        }
        dsrt_buf_free(&b);
    }
    if (!st) {
        char *text = dsrt_hf_config_json(cfg, dt);
        snprintf(path, sizeof path, "%s/config.json", dir);
        st = text ? dsrt_write_file_atomic(path, text, strlen(text), "export")
                  : dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "export: config.json");
        free(text);
    }
    if (!st && cfg->weights_dir[0])
        st = copy_side_files(cfg->weights_dir, dir);
    free(t);
    free(shard_of);
    free(copy);
    return st;
}
