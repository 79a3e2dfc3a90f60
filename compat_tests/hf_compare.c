/* hf_compare EXPORT_DIR WANT.safetensors [RTOL]: the folder dsrt-train
 * --export_hf wrote loads back through dsrt's own Hugging Face reader (its
 * config.json parses, every tensor is there with its shape, none is extra)
 * and each tensor matches WANT's: max |got - want| <= RTOL x max |want| (default
 * 1e-2: AdamW's first steps turn a gradient's sign into a full lr step, so
 * elements whose gradient is near zero move by ~lr either way) and the mean
 * difference <= RTOL / 100 x max |want|. Exit 0 when all match. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/model.h"
#include "model/safetensors.h"
#include "base/internal.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s EXPORT_DIR WANT.safetensors [RTOL]\n", argv[0]);
        return 2;
    }
    double rtol = argc > 3 ? atof(argv[3]) : 1e-2;
    dsrt_model_config cfg;
    dsrt_backend *be = NULL;
    dsrt_model *m = NULL;
    st_file want;
    if (dsrt_model_config_load(argv[1], &cfg) || dsrt_backend_cpu_create(DSRT_F32, &be) ||
        dsrt_model_create(&cfg, be, 1, 1, 1, 0, &m) || dsrt_model_init(m, 0) || st_open(argv[2], &want)) {
        fprintf(stderr, "hf_compare: %s\n", dsrt_error_message());
        return 1;
    }
    size_t n = 0, bad = 0;
    const dsrt_param *p = dsrt_model_params(m, &n);
    float *got = malloc(dsrt_model_num_params(m) * sizeof(float));
    be->ops->download_f32(be, got, dsrt_model_param_buffer(m), dsrt_model_num_params(m));
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_find(&want, p[i].name);
        if (!t) {
            fprintf(stderr, "hf_compare: %s has no %s\n", argv[2], p[i].name);
            bad++;
            continue;
        }
        float *w = malloc(p[i].numel * sizeof(float));
        if (st_to_f32(t, w) || t->nbytes / st_dtype_size(t->dtype) != p[i].numel) {
            fprintf(stderr, "hf_compare: %s: %s is not %zu floats\n", argv[2], p[i].name, p[i].numel);
            bad++;
            free(w);
            continue;
        }
        double maxw = 0, maxd = 0, sumd = 0;
        for (size_t k = 0; k < p[i].numel; k++) {
            double d = fabs((double)got[p[i].offset + k] - w[k]);
            maxw = fmax(maxw, fabs(w[k]));
            maxd = fmax(maxd, d);
            sumd += d;
        }
        double mean = sumd / (double)p[i].numel;
        if (maxd > rtol * maxw + 1e-12 || mean > rtol / 100 * maxw + 1e-12) {
            fprintf(stderr, "hf_compare: %s: max difference %.3g, mean %.3g (largest value %.3g, rtol %g)\n",
                    p[i].name, maxd, mean, maxw, rtol);
            bad++;
        }
        free(w);
    }
    printf("hf_compare: %s: %zu tensors, %zu differ beyond rtol %g from %s\n", argv[1], n, bad, rtol, argv[2]);
    free(got);
    st_close(&want);
    dsrt_model_destroy(m);
    be->ops->destroy(be);
    return bad ? 1 : 0;
}
