/* The built-in models behind one interface (see model.h): the config
 * reader picks the architecture, every other call forwards to it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model.h"
#include "model/config_json.h"
#include "model/hf.h"
#include "base/internal.h"
#include "base/json.h"

struct dsrt_model {
    dsrt_model_config cfg;
    dsrt_backend *be;
    dsrt_gpt2 *gpt2;
    dsrt_llama *llama;
};

dsrt_status dsrt_model_config_parse(const char *text, size_t len, const char *source,
                                    dsrt_model_config *out)
{
    memset(out, 0, sizeof *out);
    json_doc *doc;
    DSRT_TRY(mcfg_parse(text, len, source, &doc));
    /* the model_type decides the reader; GPT-2's config may leave it out */
    const json_value *root = json_doc_root(doc);
    const json_value *mt = root && root->type == JSON_OBJECT ? json_object_get(root, "model_type") : NULL;
    const char *type = mt && mt->type == JSON_STRING ? mt->u.str.s : "";
    dsrt_status st;
    if (!strcmp(type, "llama") || !strcmp(type, "mistral") || !strcmp(type, "qwen2")) {
        out->arch = DSRT_ARCH_LLAMA;
        st = dsrt_llama_config_from_json(root, source, &out->llama);
    } else {
        out->arch = DSRT_ARCH_GPT2;
        st = dsrt_gpt2_config_from_json(root, source, &out->gpt2);
        if (st == DSRT_STATUS_UNSUPPORTED && type[0] && strcmp(type, "gpt2"))
            dsrt_error_set(st, "%s: model_type \"%s\": dsrt trains gpt2, llama, mistral and qwen2", source, type);
    }
    json_doc_free(doc);
    return st;
}

static bool is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

dsrt_status dsrt_model_config_load(const char *spec, dsrt_model_config *out)
{
    if (!spec || !out)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "model config: NULL argument");
    const char *preset = dsrt_gpt2_preset_json(spec);
    if (preset)
        return dsrt_model_config_parse(preset, strlen(preset), spec, out);
    char path[4200];
    bool folder = is_dir(spec);
    if (folder) {
        if (strlen(spec) >= sizeof out->weights_dir)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "model folder: the path is too long");
        snprintf(path, sizeof path, "%s/config.json", spec);
        if (!is_file(path))
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "model folder %s has no config.json (a Hugging Face model folder, as "
                                  "save_pretrained writes it)",
                                  spec);
    } else {
        snprintf(path, sizeof path, "%s", spec);
    }
    char *text = NULL;
    size_t len = 0;
    DSRT_TRY(dsrt_read_text_file(path, "model config (presets: gpt2-tiny, gpt2, gpt2-medium; or a model "
                                       "folder)",
                                 16u << 20, &text, &len));
    dsrt_status st = dsrt_model_config_parse(text, len, path, out);
    free(text);
    if (st || !folder)
        return st;
    snprintf(out->weights_dir, sizeof out->weights_dir, "%s", spec);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", spec);
    out->sharded = is_file(path);
    return DSRT_STATUS_OK;
}

const char *dsrt_model_type(const dsrt_model_config *c)
{
    return c->arch == DSRT_ARCH_GPT2 ? "gpt2" : c->llama.model_type;
}

size_t dsrt_model_config_num_params(const dsrt_model_config *c)
{
    return c->arch == DSRT_ARCH_GPT2 ? dsrt_gpt2_config_num_params(&c->gpt2)
                                     : dsrt_llama_config_num_params(&c->llama);
}

int dsrt_model_max_positions(const dsrt_model_config *c)
{
    return c->arch == DSRT_ARCH_GPT2 ? c->gpt2.n_positions : c->llama.max_position_embeddings;
}

int dsrt_model_vocab_size(const dsrt_model_config *c)
{
    return c->arch == DSRT_ARCH_GPT2 ? c->gpt2.vocab_size : c->llama.vocab_size;
}

int dsrt_model_hidden_size(const dsrt_model_config *c)
{
    return c->arch == DSRT_ARCH_GPT2 ? c->gpt2.n_embd : c->llama.hidden_size;
}

int dsrt_model_num_layers(const dsrt_model_config *c)
{
    return c->arch == DSRT_ARCH_GPT2 ? c->gpt2.n_layer : c->llama.num_hidden_layers;
}

int dsrt_model_num_heads(const dsrt_model_config *c)
{
    return c->arch == DSRT_ARCH_GPT2 ? c->gpt2.n_head : c->llama.num_attention_heads;
}

int dsrt_model_intermediate_size(const dsrt_model_config *c)
{
    return c->arch == DSRT_ARCH_GPT2 ? c->gpt2.n_inner : c->llama.intermediate_size;
}

double dsrt_model_forward_flops(const dsrt_model_config *c, int B, int T)
{
    double tok = (double)B * T, attn_sq = 2.0 * 2.0 * B * (double)T * T;
    if (c->arch == DSRT_ARCH_GPT2) {
        double C = c->gpt2.n_embd, F = c->gpt2.n_inner, V = c->gpt2.vocab_size;
        double per_layer = 2.0 * tok * (C * 3 * C + C * C + C * F + F * C) + attn_sq * C;
        return c->gpt2.n_layer * per_layer + 2.0 * tok * C * V;
    }
    const dsrt_llama_config *l = &c->llama;
    double C = l->hidden_size, F = l->intermediate_size, V = l->vocab_size;
    double Q = (double)l->num_attention_heads * l->head_dim, KV = (double)l->num_key_value_heads * l->head_dim;
    double per_layer = 2.0 * tok * (C * (Q + 2 * KV) + Q * C + 3 * C * F) + attn_sq * Q;
    return l->num_hidden_layers * per_layer + 2.0 * tok * C * V;
}

void dsrt_model_shapes(const dsrt_model_config *c, int B, int T, dsrt_backend_shapes *s)
{
    if (c->arch == DSRT_ARCH_GPT2)
        dsrt_gpt2_shapes(&c->gpt2, B, T, s);
    else
        dsrt_llama_shapes(&c->llama, B, T, s);
}

size_t dsrt_model_activation_bytes_for(const dsrt_model_config *c, int B, int T, dsrt_dtype dt)
{
    return c->arch == DSRT_ARCH_GPT2 ? dsrt_gpt2_activation_bytes_for(&c->gpt2, B, T, dt)
                                     : dsrt_llama_activation_bytes_for(&c->llama, B, T, dt);
}

static size_t max3(size_t a, size_t b, size_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

size_t dsrt_model_largest_param(const dsrt_model_config *c)
{
    if (c->arch == DSRT_ARCH_GPT2) {
        size_t C = (size_t)c->gpt2.n_embd, F = (size_t)c->gpt2.n_inner;
        return max3((size_t)c->gpt2.n_positions * C, 3 * C * C, C * F);
    }
    const dsrt_llama_config *l = &c->llama;
    size_t C = (size_t)l->hidden_size, F = (size_t)l->intermediate_size;
    size_t Q = (size_t)l->num_attention_heads * l->head_dim;
    return max3(l->tie_word_embeddings ? 0 : (size_t)l->vocab_size * C, C * F, C * Q);
}

bool dsrt_model_is_norm_param(const dsrt_model_config *c, const char *name)
{
    if (c->arch == DSRT_ARCH_GPT2)
        return strstr(name, ".ln_1.") || strstr(name, ".ln_2.") || strstr(name, ".ln_f.");
    return strstr(name, "layernorm.weight") || !strcmp(name, "model.norm.weight");
}

dsrt_status dsrt_model_create(const dsrt_model_config *cfg, dsrt_backend *be, int B, int T,
                              size_t param_align, unsigned flags, dsrt_model **out)
{
    *out = NULL;
    dsrt_model *m = calloc(1, sizeof *m);
    if (!m)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "model_create");
    m->cfg = *cfg;
    m->be = be;
    dsrt_status st = cfg->arch == DSRT_ARCH_GPT2
                         ? dsrt_gpt2_create_ex(&cfg->gpt2, be, B, T, param_align, flags, &m->gpt2)
                         : dsrt_llama_create_ex(&cfg->llama, be, B, T, param_align, flags, &m->llama);
    if (st) {
        free(m);
        return st;
    }
    *out = m;
    return DSRT_STATUS_OK;
}

void dsrt_model_destroy(dsrt_model *m)
{
    if (!m)
        return;
    dsrt_gpt2_destroy(m->gpt2);
    dsrt_llama_destroy(m->llama);
    free(m);
}

const dsrt_model_config *dsrt_model_get_config(const dsrt_model *m) { return &m->cfg; }

const dsrt_param *dsrt_model_params(const dsrt_model *m, size_t *count)
{
    return m->gpt2 ? dsrt_gpt2_params(m->gpt2, count) : dsrt_llama_params(m->llama, count);
}

size_t dsrt_model_num_params(const dsrt_model *m)
{
    return m->gpt2 ? dsrt_gpt2_num_params(m->gpt2) : dsrt_llama_num_params(m->llama);
}

size_t dsrt_model_activation_bytes(const dsrt_model *m)
{
    return m->gpt2 ? dsrt_gpt2_activation_bytes(m->gpt2) : dsrt_llama_activation_bytes(m->llama);
}

void *dsrt_model_param_buffer(dsrt_model *m)
{
    return m->gpt2 ? dsrt_gpt2_param_buffer(m->gpt2) : dsrt_llama_param_buffer(m->llama);
}

void *dsrt_model_grad_buffer(dsrt_model *m)
{
    return m->gpt2 ? dsrt_gpt2_grad_buffer(m->gpt2) : dsrt_llama_grad_buffer(m->llama);
}

dsrt_status dsrt_model_init(dsrt_model *m, uint64_t seed)
{
    if (m->cfg.weights_dir[0]) {
        size_t n = 0;
        const dsrt_param *p = dsrt_model_params(m, &n);
        int tied = m->gpt2 ? 1 : m->cfg.llama.tie_word_embeddings;
        return dsrt_hf_load_weights(m->cfg.weights_dir, m->be, dsrt_model_param_buffer(m), p, n, tied);
    }
    return m->gpt2 ? dsrt_gpt2_init(m->gpt2, seed) : dsrt_llama_init(m->llama, seed);
}

dsrt_status dsrt_model_forward(dsrt_model *m, const int32_t *tokens, const int32_t *targets, int B,
                               int T, dsrt_gpt2_mode mode, float loss_scale, float *loss)
{
    return m->gpt2 ? dsrt_gpt2_forward(m->gpt2, tokens, targets, B, T, mode, loss_scale, loss)
                   : dsrt_llama_forward(m->llama, tokens, targets, B, T, mode, loss_scale, loss);
}

dsrt_status dsrt_model_get_logits_f32(dsrt_model *m, float *dst)
{
    return m->gpt2 ? dsrt_gpt2_get_logits_f32(m->gpt2, dst) : dsrt_llama_get_logits_f32(m->llama, dst);
}

dsrt_status dsrt_model_backward(dsrt_model *m, dsrt_grad_ready_fn ready, void *user)
{
    return m->gpt2 ? dsrt_gpt2_backward(m->gpt2, ready, user) : dsrt_llama_backward(m->llama, ready, user);
}

dsrt_status dsrt_model_zero_grad(dsrt_model *m)
{
    return m->gpt2 ? dsrt_gpt2_zero_grad(m->gpt2) : dsrt_llama_zero_grad(m->llama);
}

dsrt_status dsrt_model_get_grads_f32(dsrt_model *m, float *dst)
{
    return m->gpt2 ? dsrt_gpt2_get_grads_f32(m->gpt2, dst) : dsrt_llama_get_grads_f32(m->llama, dst);
}

void dsrt_model_set_param_wait(dsrt_model *m, dsrt_param_wait_fn fn, void *user)
{
    if (m->gpt2)
        dsrt_gpt2_set_param_wait(m->gpt2, fn, user);
    else
        dsrt_llama_set_param_wait(m->llama, fn, user);
}

void dsrt_model_set_grad_slots(dsrt_model *m, dsrt_grad_slot_fn fn, void *user)
{
    if (m->gpt2)
        dsrt_gpt2_set_grad_slots(m->gpt2, fn, user);
    else
        dsrt_llama_set_grad_slots(m->llama, fn, user);
}

void dsrt_model_set_grad_pieces(dsrt_model *m, dsrt_grad_piece_fn piece, dsrt_grad_piece_done_fn done,
                                void *user)
{
    if (m->gpt2)
        dsrt_gpt2_set_grad_pieces(m->gpt2, piece, done, user);
    else
        dsrt_llama_set_grad_pieces(m->llama, piece, done, user);
}
