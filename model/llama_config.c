/* transformers' LlamaConfig, MistralConfig and Qwen2Config (config.json) for
 * model/llama.c. Defaults are each class's own (transformers 5.25,
 * models/<name>/configuration_<name>.py): vocab 32000 / 32000 / 151936,
 * hidden 4096, intermediate 11008 / 14336 / 22016, 32 layers, 32 heads,
 * key/value heads = heads / 8 / heads, max positions 2048 / 131072 / 32768,
 * rms_norm_eps 1e-6, rope_theta 10000, untied head; Mistral's sliding window
 * 4096; Qwen2's window only with use_sliding_window, from layer
 * max_window_layers (28) on. Both spellings of the rotary settings are read:
 * transformers 4's rope_theta + rope_scaling and 5's rope_parameters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/llama.h"
#include "model/config_json.h"
#include "base/internal.h"
#include "base/json.h"

static const char *str_of(const json_value *v) { return v && v->type == JSON_STRING ? v->u.str.s : NULL; }

static dsrt_status unsupported(const char *source, const json_value *v, const char *key,
                               const char *what)
{
    return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "%s:%d: model config: %s: %s", source,
                          v ? v->line : 0, key, what);
}

static dsrt_status get_bool(const json_value *root, const char *key, const char *source, bool *out)
{
    const json_value *v = json_object_get(root, key);
    if (!v || v->type == JSON_NULL)
        return DSRT_STATUS_OK;
    if (v->type != JSON_BOOL)
        return mcfg_bad(source, v, key, "must be true or false");
    *out = v->u.b;
    return DSRT_STATUS_OK;
}

static dsrt_status get_double(const json_value *obj, const char *key, const char *source, double *out,
                              double lo)
{
    const json_value *v = json_object_get(obj, key);
    if (!v || v->type == JSON_NULL)
        return DSRT_STATUS_OK;
    if (v->type != JSON_NUMBER || v->u.num.kind == JSON_NUM_NONFINITE || !(v->u.num.d > lo))
        return mcfg_bad(source, v, key, "must be a finite number above its lower limit");
    *out = v->u.num.d;
    return DSRT_STATUS_OK;
}

/* The rotary settings: rope_parameters (transformers 5) or rope_theta +
 * rope_scaling (4). Types other than "default" and "llama3" are refused. */
static dsrt_status read_rope(const json_value *root, const char *source, dsrt_llama_config *c)
{
    DSRT_TRY(get_double(root, "rope_theta", source, &c->rope_theta, 0.0));
    const char *key = "rope_parameters";
    const json_value *rp = json_object_get(root, key);
    if (!rp || rp->type == JSON_NULL) {
        key = "rope_scaling";
        rp = json_object_get(root, key);
    }
    if (!rp || rp->type == JSON_NULL)
        return DSRT_STATUS_OK;
    if (rp->type != JSON_OBJECT)
        return mcfg_bad(source, rp, key, "must be an object or null");
    /* per-layer-type dictionaries (Gemma-style) are not these models' */
    DSRT_TRY(get_double(rp, "rope_theta", source, &c->rope_theta, 0.0));
    const json_value *prf = json_object_get(rp, "partial_rotary_factor");
    if (prf && !(prf->type == JSON_NUMBER && prf->u.num.d == 1.0))
        return unsupported(source, prf, "partial_rotary_factor",
                           "only rotary embeddings over the whole head are implemented");
    const json_value *tv = json_object_get(rp, "rope_type");
    if (!tv)
        tv = json_object_get(rp, "type");
    const char *type = str_of(tv);
    if (tv && !type)
        return mcfg_bad(source, tv, "rope_type", "must be a string");
    if (!type || !strcmp(type, "default"))
        return DSRT_STATUS_OK;
    if (strcmp(type, "llama3")) {
        char what[160];
        snprintf(what, sizeof what,
                 "rope type \"%.40s\" is not implemented (\"default\" and \"llama3\" are)", type);
        return unsupported(source, tv, key, what);
    }
    c->rope_llama3 = 1;
    c->rope_factor = 8.0;
    c->rope_low_freq_factor = 1.0;
    c->rope_high_freq_factor = 4.0;
    c->rope_original_max_positions = 0;
    DSRT_TRY(get_double(rp, "factor", source, &c->rope_factor, 0.0));
    DSRT_TRY(get_double(rp, "low_freq_factor", source, &c->rope_low_freq_factor, 0.0));
    DSRT_TRY(get_double(rp, "high_freq_factor", source, &c->rope_high_freq_factor, 0.0));
    DSRT_TRY(mcfg_pos_int(rp, "original_max_position_embeddings", source,
                          &c->rope_original_max_positions, true, 1 << 24));
    if (!c->rope_original_max_positions)
        c->rope_original_max_positions = c->max_position_embeddings;
    if (c->rope_high_freq_factor <= c->rope_low_freq_factor)
        return mcfg_bad(source, rp, key, "llama3 needs high_freq_factor > low_freq_factor");
    return DSRT_STATUS_OK;
}

/* The window in use: Mistral's sliding_window; Qwen2's only with
 * use_sliding_window and a layer at or past max_window_layers (transformers
 * 5 lists them in layer_types). */
static dsrt_status read_window(const json_value *root, const char *source, dsrt_llama_config *c)
{
    bool qwen2 = !strcmp(c->model_type, "qwen2");
    int window = strcmp(c->model_type, "llama") ? 4096 : 0;
    const json_value *sw = json_object_get(root, "sliding_window");
    if (sw && sw->type == JSON_NULL)
        window = 0;
    else
        DSRT_TRY(mcfg_pos_int(root, "sliding_window", source, &window, true, 1 << 30));
    if (qwen2) {
        bool use = false;
        DSRT_TRY(get_bool(root, "use_sliding_window", source, &use));
        int from = 28;
        const json_value *mw = json_object_get(root, "max_window_layers");
        if (mw && mw->type == JSON_NUMBER && mw->u.num.kind != JSON_NUM_NONFINITE && mw->u.num.d == 0.0)
            from = 0;
        else
            DSRT_TRY(mcfg_pos_int(root, "max_window_layers", source, &from, true, 1 << 20));
        bool any = false;
        const json_value *lt = json_object_get(root, "layer_types");
        if (lt && lt->type == JSON_ARRAY) {
            for (size_t i = 0; i < lt->u.arr.count; i++)
                any |= str_of(lt->u.arr.items[i]) && !strcmp(str_of(lt->u.arr.items[i]), "sliding_attention");
            if (!use)
                any = false;
        } else {
            any = use && from < c->num_hidden_layers;
        }
        if (!any)
            window = 0;
        c->max_window_layers = from;
    }
    c->sliding_window = window;
    return DSRT_STATUS_OK;
}

dsrt_status dsrt_llama_config_from_json(const json_value *root, const char *source, dsrt_llama_config *out)
{
    dsrt_status st = DSRT_STATUS_OK;
    dsrt_llama_config c = {
        .vocab_size = 32000, .hidden_size = 4096, .intermediate_size = 11008,
        .num_hidden_layers = 32, .num_attention_heads = 32, .max_position_embeddings = 2048,
        .rms_norm_eps = 1e-6f, .initializer_range = 0.02f, .rope_theta = 10000.0,
    };
    snprintf(c.source, sizeof c.source, "%s", source);
    if (!root || root->type != JSON_OBJECT) {
        st = mcfg_bad(source, root, "(top level)", "must be a JSON object");
        goto done;
    }
    const json_value *mt = json_object_get(root, "model_type");
    const char *type = str_of(mt);
    static const char *const types[][2] = {{"llama", "LlamaForCausalLM"},
                                           {"mistral", "MistralForCausalLM"},
                                           {"qwen2", "Qwen2ForCausalLM"}};
    int ti = -1;
    for (int i = 0; i < 3 && type; i++)
        if (!strcmp(type, types[i][0]))
            ti = i;
    if (ti < 0) {
        st = unsupported(source, mt, "model_type", "not one of llama, mistral, qwen2");
        goto done;
    }
    snprintf(c.model_type, sizeof c.model_type, "%s", types[ti][0]);
    snprintf(c.architecture, sizeof c.architecture, "%s", types[ti][1]);
    const json_value *arch = json_object_get(root, "architectures");
    if (arch && arch->type == JSON_ARRAY) {
        for (size_t i = 0; i < arch->u.arr.count; i++) {
            const char *a = str_of(arch->u.arr.items[i]);
            if (!a || strcmp(a, types[ti][1])) {
                char what[200];
                snprintf(what, sizeof what, "\"%.60s\" is not implemented (dsrt trains %s)",
                         a ? a : "(not a string)", types[ti][1]);
                st = unsupported(source, arch, "architectures", what);
                goto done;
            }
        }
    }
    if (ti == 1) {
        c.intermediate_size = 14336;
        c.num_key_value_heads = 8;
        c.max_position_embeddings = 131072;
    } else if (ti == 2) {
        c.vocab_size = 151936;
        c.intermediate_size = 22016;
        c.max_position_embeddings = 32768;
        c.qkv_bias = true; /* Qwen2Attention: q, k, v with bias, o without */
    }
    if ((st = mcfg_pos_int(root, "vocab_size", source, &c.vocab_size, false, 1 << 24)) ||
        (st = mcfg_pos_int(root, "hidden_size", source, &c.hidden_size, false, 1 << 20)) ||
        (st = mcfg_pos_int(root, "intermediate_size", source, &c.intermediate_size, false, 1 << 22)) ||
        (st = mcfg_pos_int(root, "num_hidden_layers", source, &c.num_hidden_layers, false, 1 << 16)) ||
        (st = mcfg_pos_int(root, "num_attention_heads", source, &c.num_attention_heads, false, 1 << 16)) ||
        (st = mcfg_pos_int(root, "num_key_value_heads", source, &c.num_key_value_heads, true, 1 << 16)) ||
        (st = mcfg_pos_int(root, "head_dim", source, &c.head_dim, true, 1 << 16)) ||
        (st = mcfg_pos_int(root, "max_position_embeddings", source, &c.max_position_embeddings, false,
                           1 << 24)) ||
        (st = mcfg_float(root, "rms_norm_eps", source, &c.rms_norm_eps, 0.0, 1.0, true)) ||
        (st = mcfg_float(root, "initializer_range", source, &c.initializer_range, 0.0, 10.0, false)) ||
        (st = get_bool(root, "tie_word_embeddings", source, &c.tie_word_embeddings)))
        goto done;
    if (!c.num_key_value_heads)
        c.num_key_value_heads = c.num_attention_heads;
    if (!c.head_dim) {
        if (c.hidden_size % c.num_attention_heads) {
            st = mcfg_bad(source, json_object_get(root, "num_attention_heads"), "num_attention_heads",
                          "must divide hidden_size when head_dim is not given");
            goto done;
        }
        c.head_dim = c.hidden_size / c.num_attention_heads;
    }
    if (c.num_attention_heads % c.num_key_value_heads) {
        st = mcfg_bad(source, json_object_get(root, "num_key_value_heads"), "num_key_value_heads",
                      "must divide num_attention_heads");
        goto done;
    }
    if (c.head_dim % 2) {
        st = mcfg_bad(source, json_object_get(root, "head_dim"), "head_dim",
                      "must be even (rotary embeddings turn pairs of channels)");
        goto done;
    }
    if (ti == 0) {
        bool ab = false;
        if ((st = get_bool(root, "attention_bias", source, &ab)) ||
            (st = get_bool(root, "mlp_bias", source, &c.mlp_bias)))
            goto done;
        c.qkv_bias = c.o_bias = ab;
    }
    const json_value *act = json_object_get(root, "hidden_act");
    if (act && (!str_of(act) || (strcmp(str_of(act), "silu") && strcmp(str_of(act), "swish")))) {
        st = unsupported(source, act, "hidden_act", "only \"silu\" (SwiGLU) is implemented");
        goto done;
    }
    float drop = 0.0f;
    if ((st = mcfg_float(root, "attention_dropout", source, &drop, 0.0, 1.0, false)))
        goto done;
    if (drop != 0.0f)
        dsrt_log(DSRT_LOG_WARNING, "%s: model config: attention_dropout = %g: dsrt trains with dropout 0",
                 source, (double)drop);
    if ((st = read_rope(root, source, &c)) || (st = read_window(root, source, &c)))
        goto done;
    *out = c;
done:
    return st;
}

size_t dsrt_llama_config_num_params(const dsrt_llama_config *c)
{
    size_t V = (size_t)c->vocab_size, C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t Q = (size_t)c->num_attention_heads * c->head_dim, KV = (size_t)c->num_key_value_heads * c->head_dim;
    size_t per_layer = C * Q + C * 2 * KV + Q * C + 3 * C * F + 2 * C;
    if (c->qkv_bias)
        per_layer += Q + 2 * KV;
    if (c->o_bias)
        per_layer += C;
    if (c->mlp_bias)
        per_layer += 2 * F + C;
    return V * C * (c->tie_word_embeddings ? 1 : 2) + (size_t)c->num_hidden_layers * per_layer + C;
}
