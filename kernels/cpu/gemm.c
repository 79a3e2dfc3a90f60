/* Row-major GEMM on the storage type: C (M,N) = op(A) (M,K) . op(B) (K,N)
 * [+ C | + a bias row], accumulated in fp32 and rounded once per element.
 *
 * fp32 storage goes straight to OpenBLAS. For fp16/bf16 the product is done in
 * tiles of C (GEMM_TM x GEMM_TN) with the inner dimension in chunks of at most
 * GEMM_TK: each tile's fp32 accumulator starts from zero, the old C or the
 * bias, every chunk of A and B is widened into a bounded fp32 block (exact)
 * and multiplied onto it by sgemm (beta = 1), and the tile is rounded once on
 * the way out. The staging is three fixed blocks (about 20 MB at most), not
 * copies of whole operands: a 16-bit GPT-2 124M no longer holds fp32 images
 * of its 38.6M-element embedding. A block already staged for the previous
 * tile is not converted again, so an operand that fits one block (the
 * activations of a short batch, a weight narrower than a tile) is widened
 * once per call. Chunking the inner dimension only moves where the fp32 sum
 * is held between chunks (OpenBLAS itself adds K-blocks onto C the same way).
 */
#include <cblas.h>
#include <string.h>

#include "kernels/cpu/cpu_common.h"

/* rows r0..r0+nr-1, columns c0..c0+nc-1 of a typed row-major matrix (ld) -> dst (nr,nc) fp32 */
static void widen_block(dsrt_dtype dt, float *dst, const void *src, int ld, int r0, int nr, int c0,
                        int nc)
{
    const uint16_t *s = src;
#pragma omp parallel for schedule(static) if ((size_t)nr * nc > 65536)
    for (int r = 0; r < nr; r++)
        cpu_convert_in(dt, dst + (size_t)r * nc, s + (size_t)(r0 + r) * ld + c0, (size_t)nc);
}

static void narrow_block(dsrt_dtype dt, void *dst, int ld, int r0, int nr, int c0, int nc,
                         const float *src)
{
    uint16_t *d = dst;
#pragma omp parallel for schedule(static) if ((size_t)nr * nc > 65536)
    for (int r = 0; r < nr; r++)
        cpu_convert_out(dt, d + (size_t)(r0 + r) * ld + c0, src + (size_t)r * nc, (size_t)nc);
}

static int imin(int a, int b) { return a < b ? a : b; }

dsrt_status cpu_gemm_typed(dsrt_backend *be, int ta, int tb, int M, int N, int K, const void *A,
                           int lda, const void *B, int ldb, void *C, int ldc, cpu_c_init init,
                           const void *bias)
{
    if (M <= 0 || N <= 0)
        return DSRT_STATUS_OK;
    dsrt_dtype dt = be->dt;
    if (dt == DSRT_F32) {
        float *c = C;
        float beta = init == CPU_C_LOAD ? 1.0f : 0.0f;
        if (init == CPU_C_BIAS) {
            const float *bf = bias;
#pragma omp parallel for schedule(static) if ((size_t)M * N > 65536)
            for (int i = 0; i < M; i++)
                memcpy(c + (size_t)i * ldc, bf, (size_t)N * sizeof(float));
            beta = 1.0f;
        }
        if (K <= 0) {
            if (init == CPU_C_ZERO)
                for (int i = 0; i < M; i++)
                    memset(c + (size_t)i * ldc, 0, (size_t)N * sizeof(float));
            return DSRT_STATUS_OK;
        }
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, 1.0f, A, lda, B, ldb, beta, c, ldc);
        return DSRT_STATUS_OK;
    }
    cpu_backend *cb = cpu_of(be);
    if (!cb->gemm_a)
        return dsrt_error_set(DSRT_STATUS_INTERNAL,
                              "cpu backend: gemm on %s storage before reserve()",
                              dsrt_dtype_name(dt));
    int nk = K > 0 ? (K + cb->gemm_tk - 1) / cb->gemm_tk : 0;
    int TK = nk ? (K + nk - 1) / nk : 0; /* even chunks */
    /* the block held in each buffer, to skip converting it again */
    int a_key[3] = {-1, -1, -1}, b_key[3] = {-1, -1, -1};
    for (int i0 = 0; i0 < M; i0 += cb->gemm_tm) {
        int tm = imin(cb->gemm_tm, M - i0);
        for (int j0 = 0; j0 < N; j0 += cb->gemm_tn) {
            int tn = imin(cb->gemm_tn, N - j0);
            float *ct = cb->gemm_c;
            if (init == CPU_C_LOAD)
                widen_block(dt, ct, C, ldc, i0, tm, j0, tn);
            else if (init == CPU_C_BIAS) {
                float *row = ct;
                cpu_convert_in(dt, row, (const uint16_t *)bias + j0, (size_t)tn);
                for (int i = 1; i < tm; i++)
                    memcpy(ct + (size_t)i * tn, row, (size_t)tn * sizeof(float));
            } else
                memset(ct, 0, (size_t)tm * tn * sizeof(float));
            for (int k0 = 0; k0 < K; k0 += TK) {
                int tk = imin(TK, K - k0);
                /* op(A) block rows i0.., cols k0..: stored (K,M) when transposed */
                if (a_key[0] != i0 || a_key[1] != k0 || a_key[2] != tk) {
                    if (ta)
                        widen_block(dt, cb->gemm_a, A, lda, k0, tk, i0, tm);
                    else
                        widen_block(dt, cb->gemm_a, A, lda, i0, tm, k0, tk);
                    a_key[0] = i0, a_key[1] = k0, a_key[2] = tk;
                }
                if (b_key[0] != j0 || b_key[1] != k0 || b_key[2] != tk) {
                    if (tb)
                        widen_block(dt, cb->gemm_b, B, ldb, j0, tn, k0, tk);
                    else
                        widen_block(dt, cb->gemm_b, B, ldb, k0, tk, j0, tn);
                    b_key[0] = j0, b_key[1] = k0, b_key[2] = tk;
                }
                cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                            tb ? CblasTrans : CblasNoTrans, tm, tn, tk, 1.0f, cb->gemm_a,
                            ta ? tm : tk, cb->gemm_b, tb ? tk : tn, 1.0f, ct, tn);
            }
            narrow_block(dt, C, ldc, i0, tm, j0, tn, ct);
        }
    }
    return DSRT_STATUS_OK;
}

dsrt_status cpu_gemm(dsrt_backend *be, int ta, int tb, int M, int N, int K, const void *A, int lda,
                     const void *B, int ldb, void *C, int ldc, int accumulate)
{
    return cpu_gemm_typed(be, ta, tb, M, N, K, A, lda, B, ldb, C, ldc,
                          accumulate ? CPU_C_LOAD : CPU_C_ZERO, NULL);
}

void dsrt_cpu_set_gemm_tiles(dsrt_backend *be, int tm, int tn, int tk)
{
    cpu_backend *cb = cpu_of(be);
    cb->gemm_tm = tm > 0 && tm <= CPU_GEMM_TM ? tm : CPU_GEMM_TM;
    cb->gemm_tn = tn > 0 && tn <= CPU_GEMM_TN ? tn : CPU_GEMM_TN;
    cb->gemm_tk = tk > 0 && tk <= CPU_GEMM_TK ? tk : CPU_GEMM_TK;
}
