/* Checked reads of a Hugging Face config.json's keys, shared by the model
 * configs (gpt2_config.c, llama_config.c). Each refusal names the file, the
 * line and the key. An absent key leaves *out as it was (the default). */
#ifndef DSRT_MODEL_CONFIG_JSON_H
#define DSRT_MODEL_CONFIG_JSON_H

#include <stdbool.h>

#include "base/json.h"
#include "dsrt.h"

/* config.json text as a JSON document (*doc: json_doc_free), a syntax error
 * named with its file, line and column */
dsrt_status mcfg_parse(const char *text, size_t len, const char *source, json_doc **doc);
dsrt_status mcfg_bad(const char *source, const json_value *v, const char *key, const char *what);
/* a positive integer up to max; nullable: null keeps the default */
dsrt_status mcfg_pos_int(const json_value *root, const char *key, const char *source, int *out,
                         bool nullable, int max);
/* a number in [lo, hi] (lo_open: lo itself excluded, after rounding to float) */
dsrt_status mcfg_float(const json_value *root, const char *key, const char *source, float *out,
                       double lo, double hi, bool lo_open);
/* a boolean that must have the value `want` here (why: what dsrt implements) */
dsrt_status mcfg_require_bool(const json_value *root, const char *key, const char *source, bool want,
                              const char *why);

#endif
