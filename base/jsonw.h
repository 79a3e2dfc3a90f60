/* A small JSON writer over dsrt_buf: pretty (indent > 0) or one line.
 * Used to print the resolved config; numbers print as Python would, so the
 * output reads the same to DeepSpeed, to dsrt and to a person. */
#ifndef DSRT_JSONW_H
#define DSRT_JSONW_H

#include <stdbool.h>
#include <stdint.h>

#include "base/internal.h"
#include "base/json.h"

#define JW_MAX_DEPTH 64

typedef struct jw {
    dsrt_buf *b;
    int indent;
    int depth;
    bool first[JW_MAX_DEPTH];
    bool after_key;
} jw;

void jw_init(jw *w, dsrt_buf *b, int indent);
void jw_object_begin(jw *w);
void jw_object_end(jw *w);
void jw_array_begin(jw *w);
void jw_array_end(jw *w);
void jw_key(jw *w, const char *key);
void jw_string(jw *w, const char *s);
void jw_int(jw *w, int64_t i);
void jw_double(jw *w, double d);
void jw_bool(jw *w, bool b);
void jw_null(jw *w);
void jw_raw(jw *w, const char *json_text); /* a complete JSON value as text */
void jw_value(jw *w, const json_value *v); /* a parsed value, re-emitted as JSON */

#endif /* DSRT_JSONW_H */
