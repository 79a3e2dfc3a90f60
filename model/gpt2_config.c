/* Hugging Face GPT2Config (config.json) for the built-in model, and the
 * presets shipped in configs/model/ (the same text is compiled in, so a
 * preset works wherever the library is installed; a unit test keeps the two
 * identical). Defaults are GPT2Config's (transformers/models/gpt2/
 * configuration_gpt2.py): vocab 50257, n_positions 1024, n_embd 768,
 * n_layer 12, n_head 12, layer_norm_epsilon 1e-5, initializer_range 0.02. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpt2.h"
#include "base/internal.h"
#include "base/json.h"
#include "model/config_json.h"

/* One config.json text per preset, differing only in the sizes. */
#define GPT2_PRESET_JSON(V, NPOS, C, L, NH)                                                        \
    "{\n"                                                                                          \
    "  \"model_type\": \"gpt2\",\n"                                                               \
    "  \"architectures\": [\"GPT2LMHeadModel\"],\n"                                               \
    "  \"vocab_size\": " #V ",\n"                                                                  \
    "  \"n_positions\": " #NPOS ",\n"                                                              \
    "  \"n_embd\": " #C ",\n"                                                                      \
    "  \"n_layer\": " #L ",\n"                                                                     \
    "  \"n_head\": " #NH ",\n"                                                                     \
    "  \"n_inner\": null,\n"                                                                       \
    "  \"activation_function\": \"gelu_new\",\n"                                                  \
    "  \"resid_pdrop\": 0.0,\n"                                                                    \
    "  \"embd_pdrop\": 0.0,\n"                                                                     \
    "  \"attn_pdrop\": 0.0,\n"                                                                     \
    "  \"layer_norm_epsilon\": 1e-05,\n"                                                           \
    "  \"initializer_range\": 0.02,\n"                                                             \
    "  \"tie_word_embeddings\": true\n"                                                            \
    "}\n"

static const char k_tiny[] = GPT2_PRESET_JSON(256, 256, 128, 4, 4);
static const char k_gpt2[] = GPT2_PRESET_JSON(50257, 1024, 768, 12, 12);
static const char k_gpt2_medium[] = GPT2_PRESET_JSON(50257, 1024, 1024, 24, 16);

static const char *const k_preset_names[] = {"gpt2-tiny", "gpt2", "gpt2-medium", NULL};
static const char *const k_preset_text[] = {k_tiny, k_gpt2, k_gpt2_medium};

const char *const *dsrt_gpt2_preset_names(void) { return k_preset_names; }

const char *dsrt_gpt2_preset_json(const char *name)
{
    for (int i = 0; k_preset_names[i]; i++)
        if (strcmp(name, k_preset_names[i]) == 0)
            return k_preset_text[i];
    return NULL;
}

dsrt_status mcfg_parse(const char *text, size_t len, const char *source, json_doc **doc)
{
    *doc = NULL;
    if (!text)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "model config: NULL argument");
    json_error jerr;
    *doc = json_parse(text, len, &jerr);
    if (!*doc)
        return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG, "%s:%d:%d: model config: %s", source, jerr.line,
                              jerr.col, jerr.msg);
    return DSRT_STATUS_OK;
}

dsrt_status mcfg_bad(const char *source, const json_value *v, const char *key, const char *what)
{
    return dsrt_error_set(DSRT_STATUS_INVALID_CONFIG, "%s:%d: model config: %s: %s", source,
                          v ? v->line : 0, key, what);
}

/* a positive integer key up to `max` (absent: keep the default). The limits
 * keep every size the model derives (4 n_embd, 3 n_embd, ...) inside int and
 * are far above any released model (n_embd 18432, vocab 256000, context 2^20). */
dsrt_status mcfg_pos_int(const json_value *root, const char *key, const char *source,
                               int *out, bool nullable, int max)
{
    const json_value *v = json_object_get(root, key);
    if (!v || (nullable && v->type == JSON_NULL))
        return DSRT_STATUS_OK;
    if (v->type != JSON_NUMBER ||
        (v->u.num.kind != JSON_NUM_INT && v->u.num.kind != JSON_NUM_INTEGRAL) ||
        v->u.num.i < 1 || v->u.num.i > max) {
        char what[96];
        snprintf(what, sizeof what, "must be a positive integer up to %d", max);
        return mcfg_bad(source, v, key, what);
    }
    *out = (int)v->u.num.i;
    return DSRT_STATUS_OK;
}

/* lo_open: lo itself is excluded, after rounding to float (an epsilon of
 * 1e-50 is 0 in float: a division by zero on a constant row) */
dsrt_status mcfg_float(const json_value *root, const char *key, const char *source,
                             float *out, double lo, double hi, bool lo_open)
{
    const json_value *v = json_object_get(root, key);
    if (!v)
        return DSRT_STATUS_OK;
    if (v->type != JSON_NUMBER || v->u.num.kind == JSON_NUM_NONFINITE || v->u.num.d < lo ||
        v->u.num.d > hi || (lo_open && (double)(float)v->u.num.d <= lo)) {
        char msg[128];
        snprintf(msg, sizeof msg, "must be a number in %c%g, %g]%s", lo_open ? '(' : '[', lo, hi,
                 lo_open ? " that a float holds" : "");
        return mcfg_bad(source, v, key, msg);
    }
    *out = (float)v->u.num.d;
    return DSRT_STATUS_OK;
}

/* a boolean key that must have the given value for this implementation */
dsrt_status mcfg_require_bool(const json_value *root, const char *key, const char *source,
                                bool want, const char *why)
{
    const json_value *v = json_object_get(root, key);
    if (!v)
        return DSRT_STATUS_OK;
    if (v->type != JSON_BOOL)
        return mcfg_bad(source, v, key, "must be true or false");
    if (v->u.b != want) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s is not supported (%s)", want ? "false" : "true", why);
        return dsrt_error_set(DSRT_STATUS_UNSUPPORTED, "%s:%d: model config: %s: %s", source,
                              v->line, key, msg);
    }
    return DSRT_STATUS_OK;
}

dsrt_status dsrt_gpt2_config_parse(const char *text, size_t len, const char *source,
                                   dsrt_gpt2_config *out)
{
    if (!out)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "model config: NULL argument");
    if (!source)
        source = "<model config>";
    json_doc *doc;
    DSRT_TRY(mcfg_parse(text, len, source, &doc));
    dsrt_status st = dsrt_gpt2_config_from_json(json_doc_root(doc), source, out);
    json_doc_free(doc);
    return st;
}

dsrt_status dsrt_gpt2_config_from_json(const json_value *root, const char *source, dsrt_gpt2_config *out)
{
    dsrt_gpt2_config c = {
        .vocab_size = 50257, .n_positions = 1024, .n_embd = 768, .n_layer = 12, .n_head = 12,
        .n_inner = 0, .layer_norm_epsilon = 1e-5f, .initializer_range = 0.02f,
    };
    snprintf(c.source, sizeof c.source, "%s", source);
    dsrt_status st = DSRT_STATUS_OK;
    if (!root || root->type != JSON_OBJECT) {
        st = mcfg_bad(source, root, "(top level)", "must be a JSON object");
        goto done;
    }
    const json_value *mt = json_object_get(root, "model_type");
    if (mt && (mt->type != JSON_STRING || strcmp(mt->u.str.s, "gpt2") != 0)) {
        st = dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                            "%s:%d: model config: model_type: only \"gpt2\" is built in (got %s%s%s)",
                            source, mt->line, mt->type == JSON_STRING ? "\"" : "",
                            mt->type == JSON_STRING ? mt->u.str.s : json_type_name(mt->type),
                            mt->type == JSON_STRING ? "\"" : "");
        goto done;
    }
    /* n_ctx is GPT2Config's older name for n_positions */
    if ((st = mcfg_pos_int(root, "n_ctx", source, &c.n_positions, false, 1 << 24)) ||
        (st = mcfg_pos_int(root, "n_positions", source, &c.n_positions, false, 1 << 24)) ||
        (st = mcfg_pos_int(root, "vocab_size", source, &c.vocab_size, false, 1 << 24)) ||
        (st = mcfg_pos_int(root, "n_embd", source, &c.n_embd, false, 1 << 20)) ||
        (st = mcfg_pos_int(root, "n_layer", source, &c.n_layer, false, 1 << 16)) ||
        (st = mcfg_pos_int(root, "n_head", source, &c.n_head, false, 1 << 16)) ||
        (st = mcfg_pos_int(root, "n_inner", source, &c.n_inner, true, 1 << 22)) ||
        (st = mcfg_float(root, "layer_norm_epsilon", source, &c.layer_norm_epsilon, 0.0, 1.0, true)) ||
        (st = mcfg_float(root, "initializer_range", source, &c.initializer_range, 0.0, 10.0, false)))
        goto done;
    const json_value *act = json_object_get(root, "activation_function");
    if (act && (act->type != JSON_STRING || (strcmp(act->u.str.s, "gelu_new") != 0 &&
                                             strcmp(act->u.str.s, "gelu_pytorch_tanh") != 0))) {
        st = dsrt_error_set(DSRT_STATUS_UNSUPPORTED,
                            "%s:%d: model config: activation_function: only the tanh GELU "
                            "(\"gelu_new\" or \"gelu_pytorch_tanh\") is implemented (got %s)",
                            source, act->line,
                            act->type == JSON_STRING ? act->u.str.s : json_type_name(act->type));
        goto done;
    }
    if ((st = mcfg_require_bool(root, "tie_word_embeddings", source, true,
                           "the LM head is the token embedding")) ||
        (st = mcfg_require_bool(root, "scale_attn_weights", source, true,
                           "attention is scaled by 1/sqrt(head size)")) ||
        (st = mcfg_require_bool(root, "scale_attn_by_inverse_layer_idx", source, false,
                           "no per-layer attention scaling")) ||
        (st = mcfg_require_bool(root, "add_cross_attention", source, false, "decoder-only model")))
        goto done;
    static const char *const drops[] = {"resid_pdrop", "embd_pdrop", "attn_pdrop"};
    for (int i = 0; i < 3; i++) {
        float p = 0.0f;
        if ((st = mcfg_float(root, drops[i], source, &p, 0.0, 1.0, false)))
            goto done;
        if (p != 0.0f)
            dsrt_log(DSRT_LOG_WARNING, "%s: model config: %s = %g: dsrt trains with dropout 0",
                     source, drops[i], (double)p);
    }
    if (c.n_embd % c.n_head != 0) {
        st = mcfg_bad(source, json_object_get(root, "n_head"), "n_head",
                 "must divide n_embd (the head size is n_embd / n_head)");
        goto done;
    }
    if (c.n_inner == 0)
        c.n_inner = 4 * c.n_embd;
    *out = c;
done:
    return st;
}

dsrt_status dsrt_gpt2_config_load(const char *path_or_preset, dsrt_gpt2_config *out)
{
    if (!path_or_preset || !out)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "model config: NULL argument");
    const char *preset = dsrt_gpt2_preset_json(path_or_preset);
    if (preset)
        return dsrt_gpt2_config_parse(preset, strlen(preset), path_or_preset, out);
    char *text = NULL;
    size_t len = 0;
    dsrt_status st = dsrt_read_text_file(path_or_preset, "model config (presets: gpt2-tiny, gpt2, "
                                         "gpt2-medium)", 16u << 20, &text, &len);
    if (st)
        return st;
    st = dsrt_gpt2_config_parse(text, len, path_or_preset, out);
    free(text);
    return st;
}
