/* Per-rank bytes of model states under ZeRO stage 0/1/2 (spec 7.5 and 9(h)):
 * what each rank holds for parameters, gradients, fp32 masters, Adam moments
 * and reduce buckets, from the exact partition size (padded / N), so the
 * engine can report it and a benchmark can compare it with the formula. */
#ifndef DSRT_ZERO_MEMORY_H
#define DSRT_ZERO_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

typedef struct zero_memory {
    uint64_t params;   /* model-dtype weights: every rank holds all of them */
    uint64_t grads;    /* model-dtype gradients: all (stage 0/1) or the owned partition (stage 2) */
    uint64_t masters;  /* fp32 masters: all (stage 0) or the partition; 0 when the weights are fp32 */
    uint64_t moments;  /* Adam m and v, fp32 */
    uint64_t buckets;  /* stage 2 contiguous reduce buckets (x2 with overlap_comm) */
    uint64_t total;
} zero_memory;

/* numel: parameters of the group; dtype_bytes: 2 (fp16/bf16) or 4 (fp32). */
zero_memory zero_memory_per_rank(uint64_t numel, int world, int stage, int dtype_bytes,
                                 uint64_t reduce_bucket_size, bool overlap_comm,
                                 bool contiguous_gradients);

#endif
