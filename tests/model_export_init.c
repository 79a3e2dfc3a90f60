/* model_export_init MODEL SEED OUT_DIR: writes the initial weights dsrt
 * makes for MODEL (a preset, a config.json, or a model folder, whose own
 * weights then pass through) as a Hugging Face folder, for the reference
 * generators (compat_tests/hf/gen_hf_reference.py) to load into
 * transformers. fp32, CPU. */
#include <stdio.h>
#include <stdlib.h>

#include "model/hf.h"
#include "model/model.h"
#include "base/internal.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL SEED OUT_DIR\n", argv[0]);
        return 2;
    }
    dsrt_model_config cfg;
    dsrt_backend *be = NULL;
    dsrt_model *m = NULL;
    int T = 1;
    if (dsrt_model_config_load(argv[1], &cfg) || dsrt_backend_cpu_create(DSRT_F32, &be) ||
        dsrt_model_create(&cfg, be, 1, T, 1, 0, &m) || dsrt_model_init(m, strtoull(argv[2], NULL, 10))) {
        fprintf(stderr, "model_export_init: %s\n", dsrt_error_message());
        return 1;
    }
    size_t n = 0;
    const dsrt_param *p = dsrt_model_params(m, &n);
    if (dsrt_hf_export(argv[3], &cfg, be, dsrt_model_param_buffer(m), p, n)) {
        fprintf(stderr, "model_export_init: %s\n", dsrt_error_message());
        return 1;
    }
    dsrt_model_destroy(m);
    be->ops->destroy(be);
    return 0;
}
