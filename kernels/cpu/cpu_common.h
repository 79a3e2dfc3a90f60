/* Private to the CPU backend: its state and the helpers that let every op be
 * written once in fp32. For fp16/bf16 storage an op converts its inputs into
 * fp32 scratch (exact), computes in fp32 exactly as the fp32 path does, and
 * rounds each output once to the storage type (nearest even) — the rounding a
 * GPU kernel that accumulates in fp32 does when it writes its result. */
#ifndef DSRT_KERNELS_CPU_COMMON_H
#define DSRT_KERNELS_CPU_COMMON_H

#include <stdbool.h>

#include "kernels/backend.h"
#include "base/internal.h"

enum { CPU_SCRATCH_SLOTS = 6 };
/* gemm.c's fp32 tiles for 16-bit storage: C tiles of TM x TN, inner chunks of
 * at most TK (A block TM x TK, B block TK x TN) */
enum { CPU_GEMM_TM = 1024, CPU_GEMM_TN = 1024, CPU_GEMM_TK = 2048 };

typedef struct cpu_backend {
    dsrt_backend base;
    dsrt_backend_shapes shapes;
    bool reserved;
    /* fp32 staging for 16-bit storage (unused for fp32): the element-wise and
     * attention ops' operands (activation-sized), gemm.c's tiles, and one
     * logits row per thread for the classifier */
    float *slot[CPU_SCRATCH_SLOTS];
    size_t slot_n; /* floats per slot */
    float *gemm_a, *gemm_b, *gemm_c;
    int gemm_tm, gemm_tn, gemm_tk; /* tile sizes in use (tests shrink them) */
    float *cls_work; /* threads x V */
    /* attention: per-thread (T,T) fp32 work rows */
    float *att_work;
    size_t att_work_n; /* floats per thread */
    int threads;
} cpu_backend;

static inline cpu_backend *cpu_of(dsrt_backend *be) { return (cpu_backend *)be; }

/* Large zeroed host buffers: mmap'd, huge pages requested (first touch of
 * fresh memory is the slow part on small machines), 256-byte aligned. */
void *dsrt_cpu_alloc(size_t bytes);
void dsrt_cpu_free(void *p);

/* ---- staging.c */
/* n elements of storage type dt <-> fp32 (round to nearest even on the way out) */
void cpu_convert_in(dsrt_dtype dt, float *dst, const void *src, size_t n);
void cpu_convert_out(dsrt_dtype dt, void *dst, const float *src, size_t n);
/* Typed array -> fp32. Returns `p` itself for fp32 storage, else scratch `slot`. */
const float *cpu_in(dsrt_backend *be, int slot, const void *p, size_t n);
/* Writable fp32 view of a typed output. `load`: the op accumulates into it
 * (+=), so the current values are converted in first. Finish with cpu_out_put. */
float *cpu_out(dsrt_backend *be, int slot, void *p, size_t n, bool load);
void cpu_out_put(dsrt_backend *be, void *p, const float *f, size_t n);
/* Is a 16-bit run missing its reserve()? (ops need the scratch) */
dsrt_status cpu_check_reserved(dsrt_backend *be, size_t n, const char *op);

/* ---- gemm.c: row-major C (M,N) = op(A) (M,K) . op(B) (K,N) on the storage
 * type, fp32 accumulation, each C element rounded once. C starts from zero,
 * from its old values (+=) or from `bias` (N) on every row. */
typedef enum { CPU_C_ZERO, CPU_C_LOAD, CPU_C_BIAS } cpu_c_init;
dsrt_status cpu_gemm_typed(dsrt_backend *be, int ta, int tb, int M, int N, int K, const void *A,
                           int lda, const void *B, int ldb, void *C, int ldc, cpu_c_init init,
                           const void *bias);

/* the op table (one file each) */
dsrt_status cpu_convert(dsrt_backend *be, void *dst, dsrt_dtype dst_dt, const void *src,
                        dsrt_dtype src_dt, size_t n);
dsrt_status cpu_scale(dsrt_backend *be, void *x, dsrt_dtype dt, float s, size_t n);
dsrt_status cpu_accumulate(dsrt_backend *be, void *dst, const void *src, dsrt_dtype dt, size_t n);
dsrt_status cpu_copy_bytes(dsrt_backend *be, void *dst, const void *src, size_t bytes);
dsrt_status cpu_encoder_forward(dsrt_backend *be, void *out, const int32_t *tokens, const void *wte,
                                const void *wpe, int B, int T, int C);
dsrt_status cpu_encoder_backward(dsrt_backend *be, void *dwte, void *dwpe, const void *dout,
                                 const int32_t *tokens, int B, int T, int C, int v0, int v1);
dsrt_status cpu_layernorm_forward(dsrt_backend *be, void *out, float *mean, float *rstd,
                                  const void *inp, const void *w, const void *b, int N, int C,
                                  float eps);
dsrt_status cpu_layernorm_backward(dsrt_backend *be, void *dinp, void *dw, void *db,
                                   const void *dout, const void *inp, const void *w,
                                   const float *mean, const float *rstd, int N, int C);
dsrt_status cpu_matmul_forward(dsrt_backend *be, void *out, const void *inp, const void *w,
                               const void *bias, int N, int K, int OC, dsrt_wlayout wl);
dsrt_status cpu_matmul_backward(dsrt_backend *be, void *dinp, void *dw, void *dbias,
                                const void *dout, const void *inp, const void *w, int N, int K,
                                int OC, dsrt_wlayout wl);
dsrt_status cpu_attention_forward(dsrt_backend *be, void *out, void *att, const void *qkv, int B,
                                  int T, int NH, int NKV, int HS);
dsrt_status cpu_attention_backward(dsrt_backend *be, void *dqkv, const void *dout, const void *qkv,
                                   const void *att, int B, int T, int NH, int NKV, int HS);
dsrt_status cpu_rmsnorm_forward(dsrt_backend *be, void *out, float *rstd, const void *inp,
                                const void *w, int N, int C, float eps);
dsrt_status cpu_rmsnorm_backward(dsrt_backend *be, void *dinp, void *dw, const void *dout,
                                 const void *inp, const void *w, const float *rstd, int N, int C);
dsrt_status cpu_rope(dsrt_backend *be, void *x, const float *cosv, const float *sinv, int N, int T,
                     int nh, int hs, int ld, int inverse);
dsrt_status cpu_swiglu_forward(dsrt_backend *be, void *out, const void *gu, int N, int F);
dsrt_status cpu_swiglu_backward(dsrt_backend *be, void *dgu, const void *gu, const void *dout, int N,
                                int F);
dsrt_status cpu_bias_forward(dsrt_backend *be, void *x, const void *bias, int N, int OC, int ld);
dsrt_status cpu_bias_backward(dsrt_backend *be, void *dbias, const void *dout, int N, int OC, int ld);
dsrt_status cpu_gelu_forward(dsrt_backend *be, void *out, const void *inp, size_t n);
dsrt_status cpu_gelu_backward(dsrt_backend *be, void *dinp, const void *inp, const void *dout,
                              size_t n);
dsrt_status cpu_residual_forward(dsrt_backend *be, void *out, const void *a, const void *b,
                                 size_t n);
dsrt_status cpu_residual_backward(dsrt_backend *be, void *da, void *db, const void *dout, size_t n);
dsrt_status cpu_classifier_forward(dsrt_backend *be, float *losses, void *logits,
                                   const int32_t *targets, int N, int V, float dloss, int grad);
dsrt_status cpu_gemm(dsrt_backend *be, int ta, int tb, int M, int N, int K, const void *A, int lda,
                     const void *B, int ldb, void *C, int ldc, int accumulate);
dsrt_status cpu_grad_stats(dsrt_backend *be, const void *grads, size_t n, double *sumsq,
                           int *nonfinite);
dsrt_status cpu_adamw_step(dsrt_backend *be, void *params, float *master, float *m, float *v,
                           const void *grads, size_t n, const dsrt_adamw_args *a);

#endif
