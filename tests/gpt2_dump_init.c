/* gpt2_dump_init MODEL SEED OUT.h5: writes the initial GPT-2 weights dsrt
 * makes from SEED, for the PyTorch reference generator
 * (compat_tests/reference/). HDF5: root attributes "config" (the HF
 * config.json text) and "seed"; datasets params/<HF name>, float32, HF shapes. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpt2.h"
#include "base/internal.h"

static int write_str_attr(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, t, value);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return e < 0 ? -1 : 0;
}

static char *read_text(const char *model)
{
    const char *preset = dsrt_gpt2_preset_json(model);
    if (preset)
        return dsrt_strdup(preset);
    char *text = NULL;
    size_t len;
    return dsrt_read_text_file(model, "model config", 16u << 20, &text, &len) ? NULL : text;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL_CONFIG.json|PRESET SEED OUT.h5\n", argv[0]);
        return 2;
    }
    dsrt_gpt2_config cfg;
    dsrt_backend *be = NULL;
    dsrt_gpt2 *m = NULL;
    uint64_t seed = strtoull(argv[2], NULL, 10);
    if (dsrt_gpt2_config_load(argv[1], &cfg) || dsrt_backend_cpu_create(DSRT_F32, &be) ||
        dsrt_gpt2_create(&cfg, be, 1, 1, &m) || dsrt_gpt2_init(m, seed)) {
        fprintf(stderr, "gpt2_dump_init: %s\n", dsrt_error_message());
        return 1;
    }
    size_t np;
    const dsrt_param *ps = dsrt_gpt2_params(m, &np);
    float *w = malloc(dsrt_gpt2_num_params(m) * sizeof(float));
    char *text = read_text(argv[1]);
    if (!w || !text || dsrt_gpt2_get_params_f32(m, w)) {
        fprintf(stderr, "gpt2_dump_init: out of memory or read failure\n");
        return 1;
    }
    hid_t f = H5Fcreate(argv[3], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "gpt2_dump_init: cannot create %s\n", argv[3]);
        return 1;
    }
    int bad = write_str_attr(f, "config", text);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "seed", H5T_NATIVE_UINT64, sp, H5P_DEFAULT, H5P_DEFAULT);
    bad |= a < 0 || H5Awrite(a, H5T_NATIVE_UINT64, &seed) < 0;
    H5Aclose(a);
    H5Sclose(sp);
    hid_t g = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (size_t i = 0; i < np && !bad; i++) {
        hsize_t dims[2] = {(hsize_t)ps[i].shape[0], (hsize_t)ps[i].shape[1]};
        hid_t s = H5Screate_simple(ps[i].ndim, dims, NULL);
        hid_t d = H5Dcreate2(g, ps[i].name, H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
        bad |= d < 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                 w + ps[i].offset) < 0;
        H5Dclose(d);
        H5Sclose(s);
    }
    H5Gclose(g);
    bad |= H5Fclose(f) < 0;
    if (bad) {
        fprintf(stderr, "gpt2_dump_init: HDF5 write to %s failed\n", argv[3]);
        return 1;
    }
    printf("%s: %zu tensors, %zu parameters, seed %llu\n", argv[3], np, dsrt_gpt2_num_params(m),
           (unsigned long long)seed);
    free(w);
    free(text);
    dsrt_gpt2_destroy(m);
    be->ops->destroy(be);
    return 0;
}
