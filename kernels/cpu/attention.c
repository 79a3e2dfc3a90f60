/* Causal multi-head self-attention, with grouped-query attention (LLaMA's
 * num_key_value_heads; GPT-2 is the case NKV = NH).
 *   qkv (B,T,W), W = (NH + 2 NKV) hs: q's NH heads | k's NKV | v's NKV, head
 *                   h at channels h*hs .. (h+1)*hs of its part; query head h
 *                   reads key/value head h / (NH / NKV)
 *   att (B,NH,T,T): softmax(q k^T / sqrt(hs)) over keys 0..t, 0 above the
 *                   diagonal; saved for the backward
 *   out (B,T,NH hs): att . v, heads side by side
 * Per (batch, head) the products are sgemm calls on strided views of qkv (no
 * permuted copies), done in row blocks so the part above the diagonal is
 * mostly skipped; the scale is folded into the q k^T product and the softmax
 * subtracts the row maximum. backward overwrites dqkv. The (batch, head)
 * pairs run in parallel (the backward: (batch, key/value head) pairs, each
 * summing its query heads' dk, dv in head order); OpenBLAS's OpenMP build runs each sgemm on the
 * calling thread inside a parallel region, so the threads do not nest.
 * 16-bit storage: the probabilities are rounded to the storage type before
 * they multiply v, as a GPU that stores att in 16 bits does. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/common/softmax.h"
#include "kernels/cpu/cpu_common.h"

enum { ATT_ROWS = 64 }; /* row block of the triangular products */

static void softmax_causal_rows(float *s, int T, dsrt_dtype dt)
{
    for (int t = 0; t < T; t++) {
        float *row = s + (size_t)t * T;
        float mx = -INFINITY;
        for (int j = 0; j <= t; j++)
            mx = row[j] > mx ? row[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j <= t; j++) {
            float e = expf(row[j] - mx);
            row[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int j = 0; j <= t; j++)
            row[j] = dsrt_round_to(dt, row[j] * inv);
        for (int j = t + 1; j < T; j++)
            row[j] = 0.0f;
    }
}

static dsrt_status att_check(const char *op, int NH, int NKV, int HS)
{
    if (NH < 1 || NKV < 1 || HS < 1 || NH % NKV)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "cpu backend: %s: %d query heads, %d key/value heads of %d: the query "
                              "heads must be a multiple of the key/value heads",
                              op, NH, NKV, HS);
    return DSRT_STATUS_OK;
}

dsrt_status cpu_attention_forward(dsrt_backend *be, void *out, void *att, const void *qkv, int B,
                                  int T, int NH, int NKV, int HS)
{
    DSRT_TRY(att_check("attention_forward", NH, NKV, HS));
    int W = (NH + 2 * NKV) * HS, CO = NH * HS, hs = HS, rep = NH / NKV;
    size_t nqkv = (size_t)B * T * W, natt = (size_t)B * NH * T * T, nout = (size_t)B * T * CO;
    dsrt_status st = cpu_check_reserved(be, nqkv > natt ? nqkv : natt, "attention_forward");
    if (st)
        return st;
    const float *x = cpu_in(be, 0, qkv, nqkv);
    float *a = cpu_out(be, 1, att, natt, false);
    float *y = cpu_out(be, 2, out, nout, false);
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *row = x + (size_t)b * T * W;
            const float *q = row + (size_t)h * hs;
            const float *k = row + (size_t)(NH + h / rep) * hs;
            const float *v = row + (size_t)(NH + NKV + h / rep) * hs;
            float *s = a + ((size_t)b * NH + h) * T * T;
            float *o = y + (size_t)b * T * CO + (size_t)h * hs;
            for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
                int r1 = r0 + ATT_ROWS < T ? r0 + ATT_ROWS : T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hs, scale,
                            q + (size_t)r0 * W, W, k, W, 0.0f, s + (size_t)r0 * T, T);
            }
            softmax_causal_rows(s, T, be->dt);
            for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
                int r1 = r0 + ATT_ROWS < T ? r0 + ATT_ROWS : T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hs, r1, 1.0f,
                            s + (size_t)r0 * T, T, v, W, 0.0f, o + (size_t)r0 * CO, CO);
            }
        }
    }
    cpu_out_put(be, att, a, natt);
    cpu_out_put(be, out, y, nout);
    return DSRT_STATUS_OK;
}

dsrt_status cpu_attention_backward(dsrt_backend *be, void *dqkv, const void *dout, const void *qkv,
                                   const void *att, int B, int T, int NH, int NKV, int HS)
{
    DSRT_TRY(att_check("attention_backward", NH, NKV, HS));
    int W = (NH + 2 * NKV) * HS, CO = NH * HS, hs = HS, rep = NH / NKV;
    size_t nqkv = (size_t)B * T * W, natt = (size_t)B * NH * T * T, nout = (size_t)B * T * CO;
    dsrt_status st = cpu_check_reserved(be, nqkv > natt ? nqkv : natt, "attention_backward");
    if (st)
        return st;
    cpu_backend *cb = cpu_of(be);
    const float *x = cpu_in(be, 0, qkv, nqkv);
    const float *dy = cpu_in(be, 1, dout, nout);
    const float *a = cpu_in(be, 2, att, natt);
    float *dx = cpu_out(be, 3, dqkv, nqkv, false);
    float scale = 1.0f / sqrtf((float)hs);
    /* at most as many threads as reserve() made work rows for */
#pragma omp parallel for collapse(2) schedule(static) num_threads(cb->threads)
    for (int b = 0; b < B; b++) {
        for (int g = 0; g < NKV; g++) {
            float *ds = cb->att_work + (size_t)omp_get_thread_num() * cb->att_work_n; /* (T,T) */
            size_t row = (size_t)b * T * W;
            const float *k = x + row + (size_t)(NH + g) * hs, *v = x + row + (size_t)(NH + NKV + g) * hs;
            float *dk = dx + row + (size_t)(NH + g) * hs, *dv = dx + row + (size_t)(NH + NKV + g) * hs;
            for (int h = g * rep; h < (g + 1) * rep; h++) {
                const float *q = x + row + (size_t)h * hs;
                float *dq = dx + row + (size_t)h * hs;
                const float *p = a + ((size_t)b * NH + h) * T * T;
                const float *go = dy + (size_t)b * T * CO + (size_t)h * hs;
                float beta = h == g * rep ? 0.0f : 1.0f; /* dk, dv: the group's heads summed in order */
                /* datt = dout . v^T (lower triangle) */
                for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
                    int r1 = r0 + ATT_ROWS < T ? r0 + ATT_ROWS : T;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hs, 1.0f,
                                go + (size_t)r0 * CO, CO, v, W, 0.0f, ds + (size_t)r0 * T, T);
                }
                /* dv (+)= att^T . dout: key block [c0,c1) sees query rows c0..T-1 */
                for (int c0 = 0; c0 < T; c0 += ATT_ROWS) {
                    int c1 = c0 + ATT_ROWS < T ? c0 + ATT_ROWS : T;
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, hs, T - c0, 1.0f,
                                p + (size_t)c0 * T + c0, T, go + (size_t)c0 * CO, CO, beta,
                                dv + (size_t)c0 * W, W);
                }
                /* softmax backward, the 1/sqrt(hs) of the forward folded in */
                for (int t = 0; t < T; t++) {
                    const float *pr = p + (size_t)t * T;
                    float *dr = ds + (size_t)t * T;
                    float dot = 0.0f;
                    for (int j = 0; j <= t; j++)
                        dot += pr[j] * dr[j];
                    for (int j = 0; j <= t; j++)
                        dr[j] = dsrt_softmax_grad(pr[j], dr[j], dot) * scale;
                    for (int j = t + 1; j < T; j++)
                        dr[j] = 0.0f;
                }
                /* dq = ds . k ; dk (+)= ds^T . q */
                for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
                    int r1 = r0 + ATT_ROWS < T ? r0 + ATT_ROWS : T;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hs, r1, 1.0f,
                                ds + (size_t)r0 * T, T, k, W, 0.0f, dq + (size_t)r0 * W, W);
                }
                for (int c0 = 0; c0 < T; c0 += ATT_ROWS) {
                    int c1 = c0 + ATT_ROWS < T ? c0 + ATT_ROWS : T;
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, hs, T - c0, 1.0f,
                                ds + (size_t)c0 * T + c0, T, q + (size_t)c0 * W, W, beta,
                                dk + (size_t)c0 * W, W);
                }
            }
        }
    }
    cpu_out_put(be, dqkv, dx, nqkv);
    return DSRT_STATUS_OK;
}
