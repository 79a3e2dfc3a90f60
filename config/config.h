/* The resolved ds_config: what DeepSpeed 0.19 would run for a given file,
 * world size and set of Hugging Face Trainer values for "auto".
 *
 * Reading happens in passes over the parsed document (json.h):
 *   1. "auto" is filled the way the HF Trainer does (config_auto.c);
 *   2. every block is checked against the key tables (config_keys.c) and its
 *      values stored into the typed structs below (config.c);
 *   3. batch sizes are resolved for the world size (spec section 2) and the
 *      cross-key rules applied (fp16 vs bf16, Adam vs AdamW, stage 3 -> 2).
 * The first rejection stops the read with one line naming the key path. */
#ifndef DSRT_CONFIG_H
#define DSRT_CONFIG_H

#include <stddef.h>

#include "config/ds_config.h"
#include "dsrt.h"

/* The handle behind dsrt_config* (config_impl.h): opaque outside config/. */
struct dsrt_config;

/* One diagnostic (dsrt.h: dsrt_config_diagnostic_args). */
typedef struct cfg_diag {
    dsrt_diagnostic_kind kind;
    char *key;
    char *message;
} cfg_diag;

dsrt_status config_create(const dsrt_config_create_args *args, struct dsrt_config **out);
void config_destroy(struct dsrt_config *cfg);
const char *config_to_json(struct dsrt_config *cfg, int indent, size_t *length);

/* The resolved values; lives as long as the handle. */
const ds_config *config_resolved(const struct dsrt_config *cfg);
/* Diagnostics recorded while reading, in order; NULL past the end. */
size_t config_diagnostic_count(const struct dsrt_config *cfg);
const cfg_diag *config_diagnostic(const struct dsrt_config *cfg, size_t index);

#endif /* DSRT_CONFIG_H */
