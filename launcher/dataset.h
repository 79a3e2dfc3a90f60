/* dsrt-train's training data: a token stream cut into windows, or a list of
 * sequences, each a sample.
 *
 * Formats, by file name:
 *   *.jsonl      one sequence a line: {"input_ids": [...], "labels": [...]}
 *                (labels optional, same length, -100 = not trained on: the
 *                prompt masks LLaMA-Factory's preprocessing writes; other
 *                keys such as attention_mask are ignored).
 *   *.idx / *.bin with a sibling .idx: a Megatron-LM indexed dataset
 *                (MMIDIDX), one sequence per entry, labels = input_ids.
 *   *.bin        an llm.c token shard or raw uint16 tokens: a stream.
 *   anything else: text read as bytes (vocabulary 256): a stream.
 *
 * Streams are read as llm.c does: consecutive windows of B*T+1 tokens.
 * Sequences are samples: a micro-batch holds B of them, each cut to its first
 * T tokens or padded to T (pad id 0, never a target); targets are the labels
 * shifted by one inside the sequence, as transformers' causal-LM loss shifts
 * them (the last position has no target). The order is a fresh shuffle of
 * the training sequences each epoch, from the seed and the epoch alone, so a
 * run resumed at step s sees what the uninterrupted run saw. The last 10%
 * of either kind is held out with --eval_every. */
#ifndef DSRT_LAUNCHER_DATASET_H
#define DSRT_LAUNCHER_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef struct dataset {
    int sequences;      /* 0: a token stream */
    const char *format; /* "text", "llm.c tokens", "jsonl", "megatron" */
    /* stream */
    int32_t *tokens;
    size_t n_tokens;
    /* sequences: ids and labels of sequence i at [off[i], off[i+1]) */
    int32_t *ids, *labels;
    size_t *off;
    size_t n_seq;
    /* the split: training [0, n_train), held out [n_train, n) (sequences or tokens) */
    size_t n_train;
    /* this epoch's order (sequences) */
    uint32_t *perm;
    long perm_epoch;
    uint64_t seed;
} dataset;

/* Loads `path`, every token checked against the vocabulary; 0, or -1 with
 * the reason printed. holdout: keep the last 10% for evaluation. */
int dataset_load(const char *path, int vocab, int holdout, uint64_t seed, dataset *d);
void dataset_free(dataset *d);

/* Does the training part hold one micro-batch of B x T? 0, or -1 said. */
int dataset_check(const dataset *d, const char *path, int B, int T);

/* Global micro-batch c (B x T inputs and targets) of the training part. */
void dataset_batch(dataset *d, long c, int B, int T, int32_t *inp, int32_t *tgt);

/* Up to `want` held-out samples of T (streams: windows); returns how many. */
size_t dataset_eval(const dataset *d, size_t want, int T, int32_t *inp, int32_t *tgt);
/* Held-out size in the dataset's own unit, and that unit ("tokens", "sequences"). */
size_t dataset_heldout(const dataset *d, const char **unit);

#endif
