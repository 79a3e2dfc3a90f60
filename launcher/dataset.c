/* dsrt-train's training data (see dataset.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset.h"

#define IGNORE_INDEX (-100)

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* The whole file, or NULL with the reason printed. */
static unsigned char *slurp(const char *path, size_t *size)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "dsrt-train: --data %s: %s\n", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "dsrt-train: --data %s: is a directory; give a text, .bin, .jsonl or Megatron .idx file\n",
                path);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "dsrt-train: --data %s: %s\n", path, strerror(errno));
        return NULL;
    }
    unsigned char *raw = malloc(sb.st_size > 0 ? (size_t)sb.st_size + 1 : 1);
    size_t got = raw ? fread(raw, 1, (size_t)sb.st_size, f) : 0;
    fclose(f);
    if (!raw || got != (size_t)sb.st_size) {
        fprintf(stderr, "dsrt-train: --data %s: read failed: %s\n", path, raw ? strerror(errno) : "out of memory");
        free(raw);
        return NULL;
    }
    raw[got] = 0;
    *size = got;
    return raw;
}

/* ---------------------------------------------------------------- streams */

static int load_stream(const char *path, dataset *d)
{
    size_t size = 0;
    unsigned char *raw = slurp(path, &size);
    if (!raw)
        return -1;
    if (!ends_with(path, ".bin")) {
        /* bytes as tokens: say so when they do not look like text */
        size_t nul = 0, odd = 0, look = size < 1000000 ? size : 1000000;
        for (size_t i = 0; i < look; i++) {
            nul += raw[i] == 0;
            odd += raw[i] < 9 || (raw[i] > 13 && raw[i] < 32) || raw[i] == 127;
        }
        if (look && (nul || odd * 20 > look))
            fprintf(stderr,
                    "dsrt-train: warning: --data %s does not look like text (%zu NUL and %zu control bytes "
                    "in the first %zu): it is read as bytes, one token each; token files need the .bin, "
                    ".jsonl or .idx suffix\n",
                    path, nul, odd, look);
        d->format = "text";
        d->n_tokens = size;
        d->tokens = malloc((size ? size : 1) * sizeof(int32_t));
        for (size_t i = 0; d->tokens && i < size; i++)
            d->tokens[i] = raw[i];
    } else {
        int32_t hdr[3] = {0};
        if (size >= 12)
            memcpy(hdr, raw, sizeof hdr);
        size_t off = 0, n = size / 2;
        if (size >= 1024 && hdr[0] == 20240520) {
            if (hdr[1] != 1) {
                fprintf(stderr, "dsrt-train: %s: llm.c shard version %d, expected 1\n", path, hdr[1]);
                free(raw);
                return -1;
            }
            off = 1024;
            n = (size_t)(uint32_t)hdr[2];
            if (off + 2 * n > size) {
                fprintf(stderr, "dsrt-train: %s: header says %zu tokens, file holds %zu\n", path, n,
                        (size - off) / 2);
                free(raw);
                return -1;
            }
        }
        if (!off && size % 2)
            fprintf(stderr,
                    "dsrt-train: warning: --data %s: raw uint16 tokens, but the file has an odd number of bytes "
                    "(%zu): the last byte is ignored\n",
                    path, size);
        d->format = "llm.c tokens";
        d->n_tokens = n;
        d->tokens = malloc((n ? n : 1) * sizeof(int32_t));
        for (size_t i = 0; d->tokens && i < n; i++) {
            uint16_t t;
            memcpy(&t, raw + off + 2 * i, 2);
            d->tokens[i] = t;
        }
    }
    free(raw);
    if (!d->tokens) {
        fprintf(stderr, "dsrt-train: --data %s: out of memory\n", path);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- sequences */

typedef struct seq_builder {
    int32_t *ids, *labels;
    size_t n, cap;
    size_t *off;
    size_t n_seq, cap_seq;
} seq_builder;

static int sb_push(seq_builder *b, int32_t id, int32_t label)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 4096;
        int32_t *i = realloc(b->ids, cap * sizeof *i);
        if (i)
            b->ids = i;
        int32_t *l = i ? realloc(b->labels, cap * sizeof *l) : NULL;
        if (l)
            b->labels = l;
        if (!i || !l)
            return -1;
        b->cap = cap;
    }
    b->ids[b->n] = id;
    b->labels[b->n] = label;
    b->n++;
    return 0;
}

static int sb_end_seq(seq_builder *b)
{
    if (b->n_seq + 2 > b->cap_seq) {
        size_t cap = b->cap_seq ? 2 * b->cap_seq : 1024;
        size_t *o = realloc(b->off, cap * sizeof *o);
        if (!o)
            return -1;
        b->off = o;
        b->cap_seq = cap;
    }
    if (!b->n_seq)
        b->off[0] = 0;
    b->off[++b->n_seq] = b->n;
    return 0;
}

/* A tiny JSON reader for one JSONL line: only what input_ids / labels need
 * (arrays of integers); every other value is skipped. */
typedef struct jl {
    const char *p, *end;
    const char *path;
    long line;
} jl;

static void jl_ws(jl *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r'))
        j->p++;
}

static int jl_err(jl *j, const char *what)
{
    fprintf(stderr, "dsrt-train: %s:%ld: %s\n", j->path, j->line, what);
    return -1;
}

static int jl_skip_string(jl *j)
{
    if (j->p >= j->end || *j->p != '"')
        return jl_err(j, "expected a string");
    for (j->p++; j->p < j->end; j->p++) {
        if (*j->p == '\\')
            j->p++;
        else if (*j->p == '"') {
            j->p++;
            return 0;
        }
    }
    return jl_err(j, "unterminated string");
}

static int jl_skip_value(jl *j, int depth)
{
    jl_ws(j);
    if (j->p >= j->end)
        return jl_err(j, "value expected");
    if (depth > 64)
        return jl_err(j, "nested too deeply");
    char c = *j->p;
    if (c == '"')
        return jl_skip_string(j);
    if (c == '[' || c == '{') {
        char close = c == '[' ? ']' : '}';
        j->p++;
        jl_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                jl_ws(j);
                if (jl_skip_string(j))
                    return -1;
                jl_ws(j);
                if (j->p >= j->end || *j->p != ':')
                    return jl_err(j, "':' expected");
                j->p++;
            }
            if (jl_skip_value(j, depth + 1))
                return -1;
            jl_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == close) {
                j->p++;
                return 0;
            }
            return jl_err(j, "',' or a closing bracket expected");
        }
    }
    const char *s = j->p;
    while (j->p < j->end && !strchr(",]} \t\r", *j->p))
        j->p++;
    if (j->p == s)
        return jl_err(j, "value expected");
    return 0;
}

/* An array of integers into out (malloc'd). */
static int jl_int_array(jl *j, const char *key, int32_t **out, size_t *n)
{
    jl_ws(j);
    if (j->p >= j->end || *j->p != '[') {
        char msg[128];
        snprintf(msg, sizeof msg, "\"%s\" must be an array of integers", key);
        return jl_err(j, msg);
    }
    j->p++;
    size_t cap = 256;
    *n = 0;
    *out = malloc(cap * sizeof **out);
    for (;;) {
        jl_ws(j);
        if (j->p < j->end && *j->p == ']' && *n == 0) {
            j->p++;
            return 0;
        }
        char *e = NULL;
        errno = 0;
        long long v = strtoll(j->p, &e, 10);
        if (e == j->p || errno || v < INT32_MIN || v > INT32_MAX || (e < j->end && (*e == '.' || *e == 'e' || *e == 'E'))) {
            char msg[160];
            snprintf(msg, sizeof msg, "\"%s\"[%zu] is not an integer token id", key, *n);
            return jl_err(j, msg);
        }
        j->p = e;
        if (*n == cap) {
            int32_t *g = realloc(*out, 2 * cap * sizeof **out);
            if (!g)
                return jl_err(j, "out of memory");
            *out = g;
            cap *= 2;
        }
        (*out)[(*n)++] = (int32_t)v;
        jl_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return 0;
        }
        return jl_err(j, "',' or ']' expected in an array of token ids");
    }
}

static int load_jsonl(const char *path, int vocab, dataset *d)
{
    size_t size = 0;
    char *raw = (char *)slurp(path, &size);
    if (!raw)
        return -1;
    seq_builder b = {0};
    int rc = 0;
    jl j = {.path = path, .line = 0};
    const char *p = raw, *end = raw + size;
    while (p < end && !rc) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        j.line++;
        j.p = p;
        j.end = le;
        p = nl ? nl + 1 : end;
        jl_ws(&j);
        if (j.p == j.end)
            continue; /* blank line */
        int32_t *ids = NULL, *labels = NULL;
        size_t n_ids = 0, n_labels = 0;
        int have_ids = 0, have_labels = 0;
        if (*j.p != '{') {
            rc = jl_err(&j, "each line must be a JSON object {\"input_ids\": [...], \"labels\": [...]}");
            break;
        }
        j.p++;
        jl_ws(&j);
        int empty = j.p < j.end && *j.p == '}';
        if (empty)
            j.p++;
        while (!empty && !rc) {
            jl_ws(&j);
            const char *ks = j.p + 1;
            if ((rc = jl_skip_string(&j)))
                break;
            size_t klen = (size_t)(j.p - 1 - ks);
            jl_ws(&j);
            if (j.p >= j.end || *j.p != ':') {
                rc = jl_err(&j, "':' expected");
                break;
            }
            j.p++;
            if (klen == 9 && !memcmp(ks, "input_ids", 9)) {
                rc = jl_int_array(&j, "input_ids", &ids, &n_ids);
                have_ids = 1;
            } else if (klen == 6 && !memcmp(ks, "labels", 6)) {
                rc = jl_int_array(&j, "labels", &labels, &n_labels);
                have_labels = 1;
            } else {
                rc = jl_skip_value(&j, 0);
            }
            if (rc)
                break;
            jl_ws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if (j.p < j.end && *j.p == '}') {
                j.p++;
                break;
            }
            rc = jl_err(&j, "',' or '}' expected");
        }
        jl_ws(&j);
        if (!rc && j.p != j.end)
            rc = jl_err(&j, "text after the object");
        if (!rc && !have_ids)
            rc = jl_err(&j, "no \"input_ids\"");
        if (!rc && have_labels && n_labels != n_ids) {
            char msg[160];
            snprintf(msg, sizeof msg, "\"labels\" has %zu entries, \"input_ids\" %zu: they must be as long", n_labels,
                     n_ids);
            rc = jl_err(&j, msg);
        }
        if (!rc && n_ids == 0)
            rc = jl_err(&j, "\"input_ids\" is empty");
        for (size_t i = 0; !rc && i < n_ids; i++) {
            char msg[200];
            if (ids[i] < 0 || ids[i] >= vocab) {
                snprintf(msg, sizeof msg, "input_ids[%zu] = %d is outside the model's vocabulary [0, %d)", i,
                         (int)ids[i], vocab);
                rc = jl_err(&j, msg);
            } else if (have_labels && labels[i] != IGNORE_INDEX && (labels[i] < 0 || labels[i] >= vocab)) {
                snprintf(msg, sizeof msg,
                         "labels[%zu] = %d is outside the vocabulary [0, %d) and is not the ignore index -100", i,
                         (int)labels[i], vocab);
                rc = jl_err(&j, msg);
            } else if (sb_push(&b, ids[i], have_labels ? labels[i] : ids[i])) {
                rc = jl_err(&j, "out of memory");
            }
        }
        if (!rc && sb_end_seq(&b))
            rc = jl_err(&j, "out of memory");
        free(ids);
        free(labels);
    }
    free(raw);
    if (!rc && !b.n_seq) {
        fprintf(stderr, "dsrt-train: --data %s: no sequences (an empty JSONL file)\n", path);
        rc = -1;
    }
    if (rc) {
        free(b.ids), free(b.labels), free(b.off);
        return -1;
    }
    d->format = "jsonl";
    d->ids = b.ids;
    d->labels = b.labels;
    d->off = b.off;
    d->n_seq = b.n_seq;
    return 0;
}

/* Megatron-LM's MMIDIDX index: magic, version 1, dtype code, sequence and
 * document counts, int32 lengths, int64 byte pointers into the .bin. */
static int load_megatron(const char *path, int vocab, dataset *d)
{
    char idx[4096], bin[4096];
    size_t n = strlen(path);
    if (n + 1 > sizeof idx) {
        fprintf(stderr, "dsrt-train: --data: path too long\n");
        return -1;
    }
    snprintf(idx, sizeof idx, "%.*s.idx", (int)(n - 4), path);
    snprintf(bin, sizeof bin, "%.*s.bin", (int)(n - 4), path);
    size_t isz = 0, bsz = 0;
    unsigned char *ix = slurp(idx, &isz);
    if (!ix)
        return -1;
    unsigned char *bx = slurp(bin, &bsz);
    if (!bx) {
        free(ix);
        return -1;
    }
    int rc = -1;
    seq_builder b = {0};
    static const unsigned char magic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};
    static const int esz[9] = {0, 1, 1, 2, 4, 8, 8, 4, 2};
    uint64_t version = 0, n_seq = 0, n_doc = 0;
    if (isz < 34 || memcmp(ix, magic, 9)) {
        fprintf(stderr, "dsrt-train: %s: not a Megatron-LM index (no MMIDIDX header)\n", idx);
        goto out;
    }
    memcpy(&version, ix + 9, 8);
    int code = ix[17];
    memcpy(&n_seq, ix + 18, 8);
    memcpy(&n_doc, ix + 26, 8);
    if (version != 1 || code < 1 || code > 8 || code == 6 || code == 7) {
        fprintf(stderr, "dsrt-train: %s: index version %llu, dtype code %d: dsrt reads version 1 with integer "
                        "tokens (codes 1-5, 8)\n",
                idx, (unsigned long long)version, code);
        goto out;
    }
    if (n_seq > (isz - 34) / 12) {
        fprintf(stderr, "dsrt-train: %s: %llu sequences do not fit the file\n", idx, (unsigned long long)n_seq);
        goto out;
    }
    const unsigned char *lens = ix + 34, *ptrs = lens + 4 * n_seq;
    for (uint64_t s = 0; s < n_seq; s++) {
        int32_t len;
        int64_t ptr;
        memcpy(&len, lens + 4 * s, 4);
        memcpy(&ptr, ptrs + 8 * s, 8);
        if (len <= 0 || ptr < 0 || (uint64_t)ptr > bsz || (uint64_t)len > (bsz - (uint64_t)ptr) / (uint64_t)esz[code]) {
            fprintf(stderr, "dsrt-train: %s: sequence %llu (length %d at byte %lld) is outside %s (%zu bytes)\n", idx,
                    (unsigned long long)s, len, (long long)ptr, bin, bsz);
            goto out;
        }
        for (int32_t i = 0; i < len; i++) {
            const unsigned char *q = bx + ptr + (size_t)i * esz[code];
            int64_t v = 0;
            switch (code) {
            case 1: v = *q; break;
            case 2: v = (int8_t)*q; break;
            case 3: { int16_t t; memcpy(&t, q, 2); v = t; } break;
            case 4: { int32_t t; memcpy(&t, q, 4); v = t; } break;
            case 5: memcpy(&v, q, 8); break;
            default: { uint16_t t; memcpy(&t, q, 2); v = t; } break;
            }
            if (v < 0 || v >= vocab) {
                fprintf(stderr, "dsrt-train: %s: sequence %llu, token %d = %lld is outside the model's vocabulary "
                                "[0, %d)\n",
                        bin, (unsigned long long)s, i, (long long)v, vocab);
                goto out;
            }
            if (sb_push(&b, (int32_t)v, (int32_t)v))
                goto oom;
        }
        if (sb_end_seq(&b))
            goto oom;
    }
    if (!b.n_seq) {
        fprintf(stderr, "dsrt-train: %s: no sequences\n", idx);
        goto out;
    }
    (void)n_doc;
    d->format = "megatron";
    d->ids = b.ids;
    d->labels = b.labels;
    d->off = b.off;
    d->n_seq = b.n_seq;
    b = (seq_builder){0};
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "dsrt-train: --data %s: out of memory\n", path);
out:
    free(b.ids), free(b.labels), free(b.off);
    free(ix);
    free(bx);
    return rc;
}

int dataset_load(const char *path, int vocab, int holdout, uint64_t seed, dataset *d)
{
    memset(d, 0, sizeof *d);
    d->seed = seed;
    d->perm_epoch = -1;
    int rc;
    char idx[4200];
    snprintf(idx, sizeof idx, "%.*s.idx", (int)(strlen(path) >= 4 ? strlen(path) - 4 : 0), path);
    struct stat sb;
    if (ends_with(path, ".jsonl")) {
        d->sequences = 1;
        rc = load_jsonl(path, vocab, d);
    } else if (ends_with(path, ".idx") || (ends_with(path, ".bin") && stat(idx, &sb) == 0)) {
        d->sequences = 1;
        rc = load_megatron(path, vocab, d);
    } else {
        rc = load_stream(path, d);
        for (size_t i = 0; !rc && i < d->n_tokens; i++)
            if (d->tokens[i] >= vocab) {
                fprintf(stderr, "dsrt-train: %s: token %d at position %zu is outside the model's vocabulary (%d)\n",
                        path, d->tokens[i], i, vocab);
                rc = -1;
            }
    }
    if (rc) {
        dataset_free(d);
        return -1;
    }
    size_t n = d->sequences ? d->n_seq : d->n_tokens;
    d->n_train = holdout ? n - n / 10 : n;
    if (d->sequences && d->n_train > UINT32_MAX) {
        fprintf(stderr, "dsrt-train: --data %s: more than 2^32 sequences\n", path);
        dataset_free(d);
        return -1;
    }
    return 0;
}

void dataset_free(dataset *d)
{
    free(d->tokens);
    free(d->ids);
    free(d->labels);
    free(d->off);
    free(d->perm);
    memset(d, 0, sizeof *d);
}

int dataset_check(const dataset *d, const char *path, int B, int T)
{
    if (d->sequences) {
        if (d->n_train == 0) {
            fprintf(stderr, "dsrt-train: %s: no training sequences left after the held-out 10%%\n", path);
            return -1;
        }
        /* sequences with nothing to train on once cut to T: their rows add a
         * zero gradient (a micro-batch of only such rows is left out of the loss) */
        size_t empty = 0, first = 0;
        for (size_t s = 0; s < d->n_train; s++) {
            size_t a = d->off[s], len = d->off[s + 1] - a, n = len < (size_t)T ? len : (size_t)T;
            bool any = false;
            for (size_t t = 1; t < n && !any; t++)
                any = d->labels[a + t] != IGNORE_INDEX;
            if (!any && !empty++)
                first = s;
        }
        if (empty)
            fprintf(stderr,
                    "dsrt-train: warning: %s: %zu of %zu training sequences (the first: sequence %zu, counting from 1) "
                    "have no label to train on within their first %d tokens (every label -100, or the response "
                    "past --seq_len): they contribute nothing\n",
                    path, empty, d->n_train, first + 1, T);
        return 0;
    }
    size_t window = (size_t)B * T;
    if (d->n_train < window + 1) {
        fprintf(stderr, "dsrt-train: %s: %zu training tokens, one micro-batch needs %zu\n", path, d->n_train,
                window + 1);
        return -1;
    }
    return 0;
}

/* splitmix64 (the shuffle's generator; compat_tests/gen_hf_models.py
 * repeats it to feed transformers the same batches) */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The epoch's order: Fisher-Yates from the last position down, each swap
 * partner drawn as next() mod (i + 1), the generator seeded with
 * seed ^ (epoch + 1) * golden. */
static void epoch_order(dataset *d, long epoch)
{
    if (d->perm_epoch == epoch)
        return;
    size_t n = d->n_train;
    if (!d->perm)
        d->perm = malloc(n * sizeof *d->perm);
    for (size_t i = 0; i < n; i++)
        d->perm[i] = (uint32_t)i;
    uint64_t s = d->seed ^ ((uint64_t)(epoch + 1) * 0x9e3779b97f4a7c15ull);
    for (size_t i = n; i-- > 1;) {
        size_t k = (size_t)(splitmix64(&s) % (uint64_t)(i + 1));
        uint32_t t = d->perm[i];
        d->perm[i] = d->perm[k];
        d->perm[k] = t;
    }
    d->perm_epoch = epoch;
}

/* sequence s into row (T): cut to T tokens or padded, targets shifted */
static void fill_row(const dataset *d, size_t s, int T, int32_t *inp, int32_t *tgt)
{
    size_t a = d->off[s], len = d->off[s + 1] - a, n = len < (size_t)T ? len : (size_t)T;
    for (size_t t = 0; t < (size_t)T; t++) {
        inp[t] = t < n ? d->ids[a + t] : 0;
        tgt[t] = t + 1 < n ? d->labels[a + t + 1] : IGNORE_INDEX;
    }
}

void dataset_batch(dataset *d, long c, int B, int T, int32_t *inp, int32_t *tgt)
{
    if (!d->sequences) {
        size_t window = (size_t)B * T, n_windows = (d->n_train - 1) / window;
        size_t cursor = (size_t)(c % (long)n_windows) * window;
        for (size_t i = 0; i < window; i++) {
            inp[i] = d->tokens[cursor + i];
            tgt[i] = d->tokens[cursor + i + 1];
        }
        return;
    }
    for (int b = 0; b < B; b++) {
        uint64_t sample = (uint64_t)c * (uint64_t)B + (uint64_t)b;
        long epoch = (long)(sample / d->n_train);
        epoch_order(d, epoch);
        fill_row(d, d->perm[sample % d->n_train], T, inp + (size_t)b * T, tgt + (size_t)b * T);
    }
}

size_t dataset_heldout(const dataset *d, const char **unit)
{
    *unit = d->sequences ? "sequences" : "tokens";
    return (d->sequences ? d->n_seq : d->n_tokens) - d->n_train;
}

size_t dataset_eval(const dataset *d, size_t want, int T, int32_t *inp, int32_t *tgt)
{
    if (d->sequences) {
        size_t have = d->n_seq - d->n_train, n = want < have ? want : have;
        for (size_t i = 0; i < n; i++)
            fill_row(d, d->n_train + i, T, inp + i * (size_t)T, tgt + i * (size_t)T);
        return n;
    }
    size_t avail = d->n_tokens - d->n_train;
    size_t nb = avail > 0 ? (avail - 1) / (size_t)T : 0;
    nb = nb < want ? nb : want;
    for (size_t i = 0; i < nb * (size_t)T; i++) {
        inp[i] = d->tokens[d->n_train + i];
        tgt[i] = d->tokens[d->n_train + i + 1];
    }
    return nb;
}
