/* Random initial weights shared by the built-in models: each parameter's
 * values come from its own splitmix64 stream keyed by (seed, parameter
 * index), Box-Muller normals, drawn on the host in fp32 and uploaded in
 * chunks. The same values on every backend, rank and chunking. */
#ifndef DSRT_MODEL_INIT_RNG_H
#define DSRT_MODEL_INIT_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "model/gpt2.h"

typedef enum dsrt_init_kind { DSRT_INIT_NORMAL, DSRT_INIT_ONES, DSRT_INIT_ZEROS } dsrt_init_kind;

/* How parameter p starts (std for DSRT_INIT_NORMAL). */
typedef dsrt_init_kind (*dsrt_init_rule_fn)(const dsrt_param *p, const void *user, double *std);

/* Fills the flat parameter buffer (backend memory, be->dt) tensor by tensor. */
dsrt_status dsrt_init_params(dsrt_backend *be, void *param_mem, const dsrt_param *params, size_t n,
                             uint64_t seed, dsrt_init_rule_fn rule, const void *user);

#endif
