/* Random initial weights (see init_rng.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/init_rng.h"
#include "base/internal.h"

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) /* (0, 1] */
{
    return ((double)(splitmix64(s) >> 11) + 1.0) * 0x1.0p-53;
}

/* Normal draws produced in chunks of an even length: the stream's state
 * carries over, so the values do not depend on the chunking. */
static uint64_t normal_start(uint64_t seed, uint64_t stream)
{
    uint64_t s = seed ^ (0xd1b54a32d192ed03ull * (stream + 1));
    (void)splitmix64(&s);
    return s;
}

static void fill_normal(uint64_t *s, float *dst, size_t n, double std)
{
    for (size_t i = 0; i < n; i += 2) {
        double u1 = uniform01(s), u2 = uniform01(s);
        double r = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
        dst[i] = (float)(std * r * cos(th));
        if (i + 1 < n)
            dst[i + 1] = (float)(std * r * sin(th));
    }
}

dsrt_status dsrt_init_params(dsrt_backend *be, void *param_mem, const dsrt_param *params, size_t n,
                             uint64_t seed, dsrt_init_rule_fn rule, const void *user)
{
    /* the host holds 4 MiB, not a float per parameter */
    enum { CHUNK = 1 << 20 };
    float *h = malloc(CHUNK * sizeof(float));
    if (!h)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "model init: host chunk");
    size_t dsz = dsrt_dtype_size(be->dt);
    dsrt_status st = DSRT_STATUS_OK;
    for (size_t i = 0; i < n && !st; i++) {
        const dsrt_param *p = &params[i];
        double std = 0;
        dsrt_init_kind kind = rule(p, user, &std);
        uint64_t s = normal_start(seed, i);
        for (size_t j = 0; j < p->numel && !st; j += CHUNK) {
            size_t k = p->numel - j < CHUNK ? p->numel - j : CHUNK;
            if (kind == DSRT_INIT_ONES)
                for (size_t q = 0; q < k; q++)
                    h[q] = 1.0f;
            else if (kind == DSRT_INIT_ZEROS)
                memset(h, 0, k * sizeof(float));
            else
                fill_normal(&s, h, k, std);
            st = be->ops->upload_f32(be, (char *)param_mem + (p->offset + j) * dsz, h, k);
        }
    }
    free(h);
    return st;
}
