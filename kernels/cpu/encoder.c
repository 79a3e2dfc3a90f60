/* Token + position embedding (GPT-2's "encoder"):
 *   out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]
 * wpe may be NULL: the token embedding alone (LLaMA's embed_tokens).
 * backward scatters dout into dwte (by token) and dwpe (by position), +=;
 * dwte holds rows [v0, v1) and other tokens are skipped; either may be NULL.
 * The backward runs rows in order so repeated tokens add up in one fixed
 * order (deterministic). Token ids must be in [0, V); the model checks them
 * before they reach a kernel. */
#include <string.h>

#include "kernels/cpu/cpu_common.h"

dsrt_status cpu_encoder_forward(dsrt_backend *be, void *out, const int32_t *tokens, const void *wte,
                                const void *wpe, int B, int T, int C)
{
    dsrt_dtype dt = be->dt;
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        int t = bt % T;
        size_t o = (size_t)bt * C, e = (size_t)tokens[bt] * C, p = (size_t)t * C;
        if (!wpe) {
            memcpy((char *)out + o * dsrt_dtype_size(dt), (const char *)wte + e * dsrt_dtype_size(dt),
                   (size_t)C * dsrt_dtype_size(dt));
        } else if (dt == DSRT_F32) {
            float *y = (float *)out + o;
            const float *a = (const float *)wte + e, *b = (const float *)wpe + p;
            for (int c = 0; c < C; c++)
                y[c] = a[c] + b[c];
        } else {
            for (int c = 0; c < C; c++)
                dsrt_store(dt, out, o + c, dsrt_load(dt, wte, e + c) + dsrt_load(dt, wpe, p + c));
        }
    }
    return DSRT_STATUS_OK;
}

dsrt_status cpu_encoder_backward(dsrt_backend *be, void *dwte, void *dwpe, const void *dout,
                                 const int32_t *tokens, int B, int T, int C, int v0, int v1)
{
    dsrt_dtype dt = be->dt;
    if (dt == DSRT_F32) {
        if (dwpe) {
            /* dwpe: positions are independent, split over channels-free rows */
#pragma omp parallel for schedule(static)
            for (int t = 0; t < T; t++) {
                float *g = (float *)dwpe + (size_t)t * C;
                for (int b = 0; b < B; b++) {
                    const float *d = (const float *)dout + ((size_t)b * T + t) * C;
                    for (int c = 0; c < C; c++)
                        g[c] += d[c];
                }
            }
        }
        for (int bt = 0; dwte && bt < B * T; bt++) {
            if (tokens[bt] < v0 || tokens[bt] >= v1)
                continue;
            float *g = (float *)dwte + (size_t)(tokens[bt] - v0) * C;
            const float *d = (const float *)dout + (size_t)bt * C;
            for (int c = 0; c < C; c++)
                g[c] += d[c];
        }
        return DSRT_STATUS_OK;
    }
    /* 16-bit: each gradient element is read once, summed in fp32 over every
     * contribution, and rounded once (what a GPU kernel that gathers the
     * contributions per row does). */
#pragma omp parallel for schedule(static) if (dwpe)
    for (int t = 0; t < (dwpe ? T : 0); t++) {
        for (int c = 0; c < C; c++) {
            size_t gi = (size_t)t * C + c;
            float acc = dsrt_load(dt, dwpe, gi);
            for (int b = 0; b < B; b++)
                acc += dsrt_load(dt, dout, ((size_t)b * T + t) * C + c);
            dsrt_store(dt, dwpe, gi, acc);
        }
    }
    for (int bt = 0; dwte && bt < B * T; bt++) {
        /* the first occurrence of a token gathers every later one */
        int tok = tokens[bt], seen = 0;
        if (tok < v0 || tok >= v1)
            continue;
        for (int j = 0; j < bt && !seen; j++)
            seen = tokens[j] == tok;
        if (seen)
            continue;
        for (int c = 0; c < C; c++) {
            size_t gi = (size_t)(tok - v0) * C + c;
            float acc = dsrt_load(dt, dwte, gi);
            for (int j = bt; j < B * T; j++)
                if (tokens[j] == tok)
                    acc += dsrt_load(dt, dout, (size_t)j * C + c);
            dsrt_store(dt, dwte, gi, acc);
        }
    }
    return DSRT_STATUS_OK;
}
