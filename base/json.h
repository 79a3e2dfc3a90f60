/* The config reader's document tree: strict JSON plus everything DeepSpeed's
 * loader (hjson-py) accepts: comments (# // and block), trailing and missing
 * commas, quoteless keys and strings, '...' and '''...''' strings, omitted
 * root braces, a UTF-8 byte-order mark. Duplicate keys are rejected at every
 * level, as DeepSpeed's object_pairs_hook does.
 *
 * Every value remembers the line and column where it starts, so that a
 * rejection further up can name the place in the user's file. Numbers keep
 * their exact int64 value when they have one (see json_number_kind), because
 * integer fields accept `2e8` but must reject `0.5` and must not lose bits of
 * values such as 9223372036854775807 through a double.
 *
 * A document owns all its memory in one arena: json_doc_free() releases
 * everything, and a failed parse releases everything before it returns.
 * Not thread-safe per document; distinct documents are independent. */
#ifndef DSRT_JSON_H
#define DSRT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum json_type {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_type;

/* What a number literal is worth to an integer field. */
typedef enum json_number_kind {
    JSON_NUM_INT,          /* integer literal within int64: `i` is exact               */
    JSON_NUM_INTEGRAL,     /* non-integer syntax with an integral value that fits int64
                              exactly (2e8, 16.0, 1E3): `i` is exact                      */
    JSON_NUM_FRACTIONAL,   /* finite, not integral (0.5, 1e-3): `i` undefined            */
    JSON_NUM_OUT_OF_RANGE, /* integral value outside int64 (9223372036854775808, 1e19)   */
    JSON_NUM_NONFINITE,    /* NaN, Infinity, -Infinity, or a literal that overflows double
                              (1e999)                                                     */
} json_number_kind;

typedef struct json_value json_value;
typedef struct json_member json_member;

struct json_member {
    const char *key;      /* NUL-terminated, UTF-8; may contain no NUL (rejected) */
    int line, col;        /* where the key starts */
    json_value *value;
};

struct json_value {
    json_type type;
    int line, col;        /* 1-based; col counts bytes */
    union {
        bool b;                                  /* JSON_BOOL */
        struct {
            double d;                            /* nearest double (NaN/inf as written) */
            int64_t i;                           /* exact value when kind is INT or INTEGRAL */
            json_number_kind kind;
            const char *text;                    /* the literal as written, NUL-terminated */
        } num;                                   /* JSON_NUMBER */
        struct {
            const char *s;                       /* NUL-terminated UTF-8, escapes decoded */
            size_t len;
            bool quoteless;                      /* hjson quoteless string (to end of line) */
        } str;                                   /* JSON_STRING */
        struct {
            json_value **items;
            size_t count;
        } arr;                                   /* JSON_ARRAY */
        struct {
            json_member *members;                /* in file order */
            size_t count;
        } obj;                                   /* JSON_OBJECT */
    } u;
};

typedef struct json_doc json_doc; /* opaque: arena + root */

/* Why a parse failed. `path` is the dotted key path of the value being read
 * when the error was found ("zero_optimization.stage", "optimizer.params.betas[1]"),
 * or "" at the top level; `msg` says what is wrong without location. */
typedef struct json_error {
    int line, col;
    char path[256];
    char msg[256];
} json_error;

/* Limits that keep hostile input from exhausting the stack or memory. */
#define JSON_MAX_DEPTH 200

/* Parse `len` bytes of `text` (need not be NUL-terminated; embedded NUL bytes
 * are an error). Returns NULL and fills *err (if non-NULL) on failure,
 * including allocation failure ("out of memory"). */
json_doc *json_parse(const char *text, size_t len, json_error *err);
void json_doc_free(json_doc *doc); /* NULL is fine */
const json_value *json_doc_root(const json_doc *doc);

/* Member lookup by exact key; NULL when absent or `obj` is not an object. */
const json_value *json_object_get(const json_value *obj, const char *key);
const json_member *json_object_member(const json_value *obj, const char *key);

const char *json_type_name(json_type t); /* "null", "bool", "number", ... */

#endif /* DSRT_JSON_H */
