/* A compute backend: its memory and the op table the GPT-2 model (and later
 * the engine) runs on. CPU and CUDA are peers behind this one interface; the
 * core never includes a CUDA header. Every pointer an op takes is backend
 * memory (host memory for cpu, device memory for cuda), typed by the
 * backend's storage dtype `dt` unless the signature says float/int32_t.
 *
 * Shapes use the same letters everywhere: B batch, T time, C channels,
 * NH heads, V vocabulary, N = B*T rows, K inner dimension, OC output columns.
 *
 * One rule, as in llm.c: parameter gradients always accumulate (+=);
 * activation gradients overwrite (=) except where the signature says +=
 * (the residual stream). Ops queue work and may return before it is done
 * (CUDA: on the backend's stream); `sync` waits. Ops return DSRT_STATUS_OK or a
 * status with the message already set (dsrt_error_set). */
#ifndef DSRT_KERNELS_BACKEND_H
#define DSRT_KERNELS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "dsrt.h"
#include "kernels/common/dtype.h"

/* Weight layouts of a matmul. Hugging Face GPT-2 stores its Conv1D weights as
 * (K, OC) (y = x W + b) and the tied LM head as the embedding (OC, K)
 * (y = x W^T); both are kept as stored so names and shapes match HF. */
typedef enum dsrt_wlayout {
    DSRT_W_KN = 0, /* W (K, OC): Conv1D */
    DSRT_W_NK = 1, /* W (OC, K): nn.Linear, tied LM head */
} dsrt_wlayout;

/* The largest shapes an instance will see; the backend sizes its scratch
 * once from these (no allocation in the step). */
typedef struct dsrt_backend_shapes {
    int B, T, C, NH, V;
    int max_K, max_OC; /* over every matmul */
    /* attention's key/value heads and head size (0: NH and C / NH, GPT-2) */
    int NKV, HS;
} dsrt_backend_shapes;

/* One FusedAdam step's scalars (adamw_step; math in common/adamw.h). */
typedef struct dsrt_adamw_args {
    float lr, beta1, beta2, eps, weight_decay;
    /* every gradient multiplier folded into one: 1 / (loss scale * clip
     * coefficient), times whatever else the caller applies (e.g. 1/gas) */
    float grad_mul;
    /* bias corrections computed by the caller: 1 - beta^step (beta as fp32, the
     * power in double, stored fp32: dsrt_adamw_bias_correction), or 1 */
    float bc1, bc2;
    int adamw_mode; /* 1: decoupled weight decay (AdamW), 0: L2 (g += wd * p) */
} dsrt_adamw_args;

typedef struct dsrt_backend dsrt_backend;

/* A backend's operations: one const table per backend (kernels/cpu/backend.c,
 * kernels/cuda/backend.cu), so an unset op shows in one place. Callers use
 * be->ops->op(be, ...), or the checked front functions below where an op
 * takes arguments worth checking once for every backend. */
typedef struct dsrt_backend_ops {
    void (*destroy)(dsrt_backend *be);
    dsrt_status (*reserve)(dsrt_backend *be, const dsrt_backend_shapes *s);
    dsrt_status (*sync)(dsrt_backend *be);

    /* ---- memory. alloc: zero-filled, aligned to 256 bytes. */
    dsrt_status (*alloc)(dsrt_backend *be, size_t bytes, void **out);
    void (*free)(dsrt_backend *be, void *p);
    dsrt_status (*memset0)(dsrt_backend *be, void *p, size_t bytes);
    dsrt_status (*upload)(dsrt_backend *be, void *dst, const void *host_src, size_t bytes);
    dsrt_status (*download)(dsrt_backend *be, void *host_dst, const void *src, size_t bytes);
    /* typed <-> fp32 host arrays (rounding to nearest even on the way in) */
    dsrt_status (*upload_f32)(dsrt_backend *be, void *dst, const float *host_src, size_t n);
    dsrt_status (*download_f32)(dsrt_backend *be, float *host_dst, const void *src, size_t n);

    /* ---- ops (see kernels/cpu/<op>.c for the readable definition of each) */
    /* out (B,T,C) = wte[tokens] + wpe[t] (wpe NULL: wte[tokens] alone);  dwte, dwpe +=.
     * backward: dwte holds rows v0 .. v1-1 of the embedding's gradient (its
     * first element is row v0's): only tokens in [v0, v1) are added, so a
     * caller can fill the gradient a piece at a time. dwte or dwpe may be
     * NULL (not computed). */
    dsrt_status (*encoder_forward)(dsrt_backend *be, void *out, const int32_t *tokens,
                                   const void *wte, const void *wpe, int B, int T, int C);
    dsrt_status (*encoder_backward)(dsrt_backend *be, void *dwte, void *dwpe, const void *dout,
                                    const int32_t *tokens, int B, int T, int C, int v0, int v1);
    /* out (N,C); mean, rstd (N) fp32, saved for backward. dinp +=, dw +=, db += */
    dsrt_status (*layernorm_forward)(dsrt_backend *be, void *out, float *mean, float *rstd,
                                     const void *inp, const void *w, const void *b, int N, int C,
                                     float eps);
    dsrt_status (*layernorm_backward)(dsrt_backend *be, void *dinp, void *dw, void *db,
                                      const void *dout, const void *inp, const void *w,
                                      const float *mean, const float *rstd, int N, int C);
    /* out (N,OC) = inp (N,K) . W + bias (bias may be NULL).
     * backward: dinp (N,K) = dout . W^T (skipped when dinp is NULL), dw += (skipped
     * when NULL), dbias += */
    dsrt_status (*matmul_forward)(dsrt_backend *be, void *out, const void *inp, const void *w,
                                  const void *bias, int N, int K, int OC, dsrt_wlayout wl);
    dsrt_status (*matmul_backward)(dsrt_backend *be, void *dinp, void *dw, void *dbias,
                                   const void *dout, const void *inp, const void *w, int N, int K,
                                   int OC, dsrt_wlayout wl);
    /* Row-major C (M,N) = op(A) (M,K) . op(B) (K,N), plus the old C when
     * `accumulate`; op transposes when ta / tb is set; leading dimensions in
     * elements. Every operand in the storage type, fp32 accumulation, each C
     * element rounded once (what a piece of a matmul_backward's dW needs). */
    dsrt_status (*gemm)(dsrt_backend *be, int ta, int tb, int M, int N, int K, const void *A,
                        int lda, const void *B, int ldb, void *C, int ldc, int accumulate);
    /* Causal attention with NH query heads and NKV key/value heads (NH a
     * multiple of NKV; GPT-2: NKV = NH) of HS channels:
     * qkv (B,T,(NH+2 NKV) HS) = q | k | v -> out (B,T,NH HS); att (B,NH,T,T)
     * softmax probabilities, saved. backward: dqkv (B,T,(NH+2 NKV) HS) = */
    dsrt_status (*attention_forward)(dsrt_backend *be, void *out, void *att, const void *qkv, int B,
                                     int T, int NH, int NKV, int HS);
    dsrt_status (*attention_backward)(dsrt_backend *be, void *dqkv, const void *dout,
                                      const void *qkv, const void *att, int B, int T, int NH,
                                      int NKV, int HS);
    /* RMSNorm (common/rmsnorm.h): out (N,C); rstd (N) fp32, saved.
     * backward: dinp +=, dw += (dw may be NULL) */
    dsrt_status (*rmsnorm_forward)(dsrt_backend *be, void *out, float *rstd, const void *inp,
                                   const void *w, int N, int C, float eps);
    dsrt_status (*rmsnorm_backward)(dsrt_backend *be, void *dinp, void *dw, const void *dout,
                                    const void *inp, const void *w, const float *rstd, int N,
                                    int C);
    /* Rotary embeddings in place (common/rope.h): N rows of x at stride ld
     * elements, heads 0..nh-1 of hs channels at each row's start, row r at
     * position r % T; cos, sin (T, hs/2) fp32 tables in backend memory.
     * inverse = 1 turns back (the backward, on the gradient). */
    dsrt_status (*rope)(dsrt_backend *be, void *x, const float *cos, const float *sin, int N, int T,
                        int nh, int hs, int ld, int inverse);
    /* SwiGLU (common/swiglu.h): gu (N,2F) = gate | up -> out (N,F).
     * backward: dgu (N,2F) = */
    dsrt_status (*swiglu_forward)(dsrt_backend *be, void *out, const void *gu, int N, int F);
    dsrt_status (*swiglu_backward)(dsrt_backend *be, void *dgu, const void *gu, const void *dout,
                                   int N, int F);
    /* x (N rows of OC at stride ld) += bias (OC); backward: dbias += column
     * sums of dout (N rows of OC at stride ld) */
    dsrt_status (*bias_forward)(dsrt_backend *be, void *x, const void *bias, int N, int OC, int ld);
    dsrt_status (*bias_backward)(dsrt_backend *be, void *dbias, const void *dout, int N, int OC,
                                 int ld);
    /* tanh-approximated GELU ("gelu_new"); backward dinp = */
    dsrt_status (*gelu_forward)(dsrt_backend *be, void *out, const void *inp, size_t n);
    dsrt_status (*gelu_backward)(dsrt_backend *be, void *dinp, const void *inp, const void *dout,
                                 size_t n);
    /* out = a + b;  backward: da += dout, db += dout */
    dsrt_status (*residual_forward)(dsrt_backend *be, void *out, const void *a, const void *b,
                                    size_t n);
    dsrt_status (*residual_backward)(dsrt_backend *be, void *da, void *db, const void *dout,
                                     size_t n);
    /* Fused classifier over logits (N,V): losses[i] = -log softmax(logits[i])[target[i]]
     * (0 where target == -100). When `grad` is set the logits are overwritten in
     * the same pass by their gradient, (softmax - onehot) * dloss, zero on
     * ignored rows; dloss is the loss scale divided by the number of counted
     * targets. The full probabilities are never stored. */
    dsrt_status (*classifier_forward)(dsrt_backend *be, float *losses, void *logits,
                                      const int32_t *targets, int N, int V, float dloss, int grad);

    /* ---- optimizer (kernels/cpu/adamw.c, common/adamw.h) */
    /* One read of the gradients (storage type): *sumsq = sum of g^2 (double
     * accumulation, a fixed summation order: the same bits every run), and
     * *nonfinite = 1 when any element is inf or nan, else 0. Both land in host
     * memory: on CUDA this waits for the stream (the step's one host sync). */
    dsrt_status (*grad_stats)(dsrt_backend *be, const void *grads, size_t n, double *sumsq,
                              int *nonfinite);
    /* FusedAdam over n elements in one pass: g = grads (storage type) *
     * grad_mul, then m, v (fp32) and master (fp32) are updated as in
     * common/adamw.h, and params (storage type) = master rounded to nearest
     * even. params may be NULL (not written) or, for fp32 storage, equal to
     * master; otherwise no buffer may overlap another. */
    dsrt_status (*adamw_step)(dsrt_backend *be, void *params, float *master, float *m, float *v,
                              const void *grads, size_t n, const dsrt_adamw_args *a);

    /* ---- data parallelism (ZeRO buckets; kernels/cpu/zero_ops.c, kernels/cuda/zero_ops.cu).
     * Element types are explicit here: a bucket may travel in another type
     * (communication_data_type). Rounding is to nearest even, once per element. */
    /* dst (dst_dt) = src (src_dt), n elements; dst and src do not overlap */
    dsrt_status (*convert)(dsrt_backend *be, void *dst, dsrt_dtype dst_dt, const void *src,
                           dsrt_dtype src_dt, size_t n);
    /* x (dt) = x * s */
    dsrt_status (*scale)(dsrt_backend *be, void *x, dsrt_dtype dt, float s, size_t n);
    /* dst (dt) += src (dt); dst and src do not overlap */
    dsrt_status (*accumulate)(dsrt_backend *be, void *dst, const void *src, dsrt_dtype dt,
                              size_t n);
    /* bytes within the backend's memory; dst and src do not overlap */
    dsrt_status (*copy)(dsrt_backend *be, void *dst, const void *src, size_t bytes);
} dsrt_backend_ops;

struct dsrt_backend {
    const char *name; /* "cpu", "cuda" */
    dsrt_dtype dt;    /* storage type of parameters, activations and gradients */
    void *impl;
    const dsrt_backend_ops *ops;
};

/* The CPU backend (OpenBLAS + OpenMP). Always available. */
dsrt_status dsrt_backend_cpu_create(dsrt_dtype dt, dsrt_backend **out);
/* Bytes the CPU backends hold mapped now (every block they allocated and have
 * not freed, headers included): what tests measure allocations with. */
size_t dsrt_cpu_allocated_bytes(void);
/* Tests: the CPU backend's 16-bit GEMM tile sizes (0 or out of range: the
 * default, which is also the largest allowed) */
void dsrt_cpu_set_gemm_tiles(dsrt_backend *be, int tm, int tn, int tk);
/* The CUDA backend on the given device; DSRT_STATUS_UNSUPPORTED with a message
 * when the build has no CUDA or the machine has no usable GPU. */
dsrt_status dsrt_backend_cuda_create(dsrt_dtype dt, int device, dsrt_backend **out);
/* The cudaStream_t (as void *) a CUDA backend queues its work on, for the
 * NCCL comm to order itself against; NULL for any other backend. */
void *dsrt_backend_cuda_stream(dsrt_backend *be);

/* From a device string: "cpu" (or NULL/""), "cuda" (= "cuda:0"), "cuda:N".
 * `name` receives the canonical name ("cpu", "cuda:0"). */
dsrt_status dsrt_backend_create(const char *device, dsrt_dtype dt, dsrt_backend **be, char *name, size_t name_len);

/* ---- checked front functions (kernels/backend.c) */
/* adamw_step: args required; n == 0 does nothing; master, m, v and grads
 * non-NULL; params may alias master only in fp32 (master is then the weight) */
dsrt_status dsrt_backend_adamw_step(dsrt_backend *be, void *params, float *master, float *m, float *v,
                                    const void *grads, size_t n, const dsrt_adamw_args *a);

/* The bytes of op scratch a backend's reserve() allocates for these shapes
 * (memory estimates, without making the backend): device as for
 * dsrt_backend_create. CUDA: from the same formulas as its reserve(), the
 * encoder sort's temporary and cuBLAS's workspace approximated. */
size_t dsrt_backend_scratch_bytes(const char *device, dsrt_dtype dt, const dsrt_backend_shapes *s);
size_t dsrt_cpu_scratch_bytes(dsrt_dtype dt, const dsrt_backend_shapes *s);
size_t dsrt_cuda_scratch_bytes(dsrt_dtype dt, const dsrt_backend_shapes *s);

/* CUDA devices usable now: 0 when CUDA is not compiled in, no driver or no device. */
int dsrt_cuda_device_count(void);

#endif /* DSRT_KERNELS_BACKEND_H */
