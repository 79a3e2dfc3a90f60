/* ZeRO flat-buffer layout (see partition.h; spec 7.1 and the vectors of 9(g)). */
#include <stdlib.h>
#include <string.h>

#include "base/internal.h"
#include "zero/partition.h"

void zero_layout_free(zero_layout *l)
{
    if (!l)
        return;
    free(l->order);
    free(l->param_offset);
    free(l->slices);
    free(l->rank_slices);
    memset(l, 0, sizeof *l);
}

dsrt_status zero_layout_build(const size_t *numels, size_t n_params, int world,
                              bool round_robin_gradients, zero_layout *out)
{
    memset(out, 0, sizeof *out);
    if (world < 1 || (n_params && !numels))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "zero layout: world size %d, %zu parameters", world, n_params);
    out->world = world;
    out->n_params = n_params;
    out->order = malloc((n_params ? n_params : 1) * sizeof(size_t));
    out->param_offset = malloc((n_params ? n_params : 1) * sizeof(size_t));
    out->rank_slices = calloc((size_t)world + 1, sizeof(size_t));
    /* a rank's pieces: at most one per parameter it touches; in all, at most
     * n_params + world (each partition boundary splits one parameter) */
    out->slices = malloc((n_params + (size_t)world + 1) * sizeof(zero_slice));
    if (!out->order || !out->param_offset || !out->rank_slices || !out->slices) {
        zero_layout_free(out);
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "zero layout");
    }
    /* flatten order: registration order, or all i % N == 0 first, then 1, ... */
    size_t k = 0;
    if (round_robin_gradients) {
        for (int r = 0; r < world; r++)
            for (size_t i = (size_t)r; i < n_params; i += (size_t)world)
                out->order[k++] = i;
    } else {
        for (size_t i = 0; i < n_params; i++)
            out->order[k++] = i;
    }
    size_t off = 0;
    for (k = 0; k < n_params; k++) {
        size_t p = out->order[k];
        if (numels[p] == 0) {
            zero_layout_free(out);
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "zero layout: parameter %zu has no elements", p);
        }
        out->param_offset[p] = off;
        off += numels[p];
    }
    size_t align = 2 * (size_t)world;
    out->total = off;
    out->padded = (off + align - 1) / align * align;
    if (out->padded == 0)
        out->padded = align;
    out->partition_size = out->padded / (size_t)world;
    /* walk the flat buffer once, cutting at partition boundaries */
    size_t ns = 0;
    k = 0;
    for (int r = 0; r < world; r++) {
        out->rank_slices[r] = ns;
        size_t lo = (size_t)r * out->partition_size, hi = lo + out->partition_size;
        while (k < n_params) {
            size_t p = out->order[k];
            size_t a = out->param_offset[p], b = a + numels[p];
            if (a >= hi)
                break;
            size_t s = a > lo ? a : lo, e = b < hi ? b : hi;
            if (e > s)
                out->slices[ns++] = (zero_slice){p, s - a, e - s, s};
            if (b > hi)
                break; /* the parameter goes on into the next partition */
            k++;
        }
    }
    out->rank_slices[world] = ns;
    return DSRT_STATUS_OK;
}

size_t zero_layout_first_offset(const zero_layout *l, int rank)
{
    size_t s = l->rank_slices[rank];
    return s < l->rank_slices[rank + 1] ? l->slices[s].offset_in_param : 0;
}

size_t zero_layout_padding(const zero_layout *l, int rank)
{
    size_t owned = 0;
    for (size_t s = l->rank_slices[rank]; s < l->rank_slices[rank + 1]; s++)
        owned += l->slices[s].n;
    return l->partition_size - owned;
}
