/* Backend creation from a device string (the engine's "cpu", "cuda", "cuda:N"),
 * and the front functions that check an op's arguments once for every backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/internal.h"
#include "kernels/backend.h"

dsrt_status dsrt_backend_create(const char *device, dsrt_dtype dt, dsrt_backend **be, char *name, size_t name_len)
{
    if (!device || !*device || !strcmp(device, "cpu")) {
        snprintf(name, name_len, "cpu");
        return dsrt_backend_cpu_create(dt, be);
    }
    if (!strncmp(device, "cuda", 4)) {
        int idx = 0;
        if (device[4] == ':')
            idx = atoi(device + 5);
        else if (device[4])
            goto bad;
        snprintf(name, name_len, "cuda:%d", idx);
        return dsrt_backend_cuda_create(dt, idx, be);
    }
bad:
    return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                          "engine_create: device \"%s\": use \"cpu\", \"cuda\" or \"cuda:N\"", device);
}

size_t dsrt_backend_scratch_bytes(const char *device, dsrt_dtype dt, const dsrt_backend_shapes *s)
{
    if (device && !strncmp(device, "cuda", 4))
        return dsrt_cuda_scratch_bytes(dt, s);
    return dsrt_cpu_scratch_bytes(dt, s);
}

dsrt_status dsrt_backend_adamw_step(dsrt_backend *be, void *params, float *master, float *m, float *v,
                                    const void *grads, size_t n, const dsrt_adamw_args *a)
{
    if (!a)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s backend: adamw_step: args NULL", be->name);
    if (n == 0)
        return DSRT_STATUS_OK;
    if (!master || !m || !v || !grads)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "%s backend: adamw_step: NULL master, m, v or grads",
                              be->name);
    if (params == (void *)master) {
        if (be->dt != DSRT_F32)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "%s backend: adamw_step: %s params cannot alias the fp32 master", be->name,
                                  dsrt_dtype_name(be->dt));
        params = NULL; /* master is the parameter */
    }
    return be->ops->adamw_step(be, params, master, m, v, grads, n, a);
}
