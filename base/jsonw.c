/* JSON writer; see jsonw.h. */
#include <stdio.h>
#include <string.h>

#include "base/jsonw.h"

void jw_init(jw *w, dsrt_buf *b, int indent)
{
    memset(w, 0, sizeof *w);
    w->b = b;
    w->indent = indent < 0 ? 0 : indent > 16 ? 16 : indent;
    w->first[0] = true;
}

static void newline(jw *w)
{
    if (!w->indent)
        return;
    dsrt_buf_puts(w->b, "\n");
    for (int i = 0; i < w->depth * w->indent; i++)
        dsrt_buf_append(w->b, " ", 1);
}

/* Separator before a value or key at the current level. */
static void before_item(jw *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth == 0)
        return;
    if (!w->first[w->depth])
        dsrt_buf_puts(w->b, w->indent ? "," : ", ");
    w->first[w->depth] = false;
    newline(w);
}

static void open(jw *w, const char *c)
{
    before_item(w);
    dsrt_buf_puts(w->b, c);
    if (w->depth + 1 < JW_MAX_DEPTH)
        w->depth++;
    w->first[w->depth] = true;
}

static void close_(jw *w, const char *c)
{
    bool empty = w->first[w->depth];
    if (w->depth > 0)
        w->depth--;
    if (!empty)
        newline(w);
    dsrt_buf_puts(w->b, c);
}

void jw_object_begin(jw *w) { open(w, "{"); }
void jw_object_end(jw *w) { close_(w, "}"); }
void jw_array_begin(jw *w) { open(w, "["); }
void jw_array_end(jw *w) { close_(w, "]"); }

static void put_string(jw *w, const char *s)
{
    dsrt_buf_puts(w->b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': dsrt_buf_puts(w->b, "\\\""); break;
        case '\\': dsrt_buf_puts(w->b, "\\\\"); break;
        case '\n': dsrt_buf_puts(w->b, "\\n"); break;
        case '\r': dsrt_buf_puts(w->b, "\\r"); break;
        case '\t': dsrt_buf_puts(w->b, "\\t"); break;
        default:
            if (*p < 0x20)
                dsrt_buf_printf(w->b, "\\u%04x", *p);
            else
                dsrt_buf_append(w->b, (const char *)p, 1);
        }
    }
    dsrt_buf_puts(w->b, "\"");
}

void jw_key(jw *w, const char *key)
{
    before_item(w);
    put_string(w, key);
    dsrt_buf_puts(w->b, ": ");
    w->after_key = true;
}

void jw_string(jw *w, const char *s)
{
    before_item(w);
    put_string(w, s);
}

void jw_int(jw *w, int64_t i)
{
    before_item(w);
    dsrt_buf_printf(w->b, "%lld", (long long)i);
}

void jw_double(jw *w, double d)
{
    char t[32];
    dsrt_format_double(t, d);
    before_item(w);
    dsrt_buf_puts(w->b, t);
}

void jw_bool(jw *w, bool b)
{
    before_item(w);
    dsrt_buf_puts(w->b, b ? "true" : "false");
}

void jw_null(jw *w)
{
    before_item(w);
    dsrt_buf_puts(w->b, "null");
}

void jw_raw(jw *w, const char *json_text)
{
    before_item(w);
    dsrt_buf_puts(w->b, json_text);
}

void jw_value(jw *w, const json_value *v)
{
    switch (v->type) {
    case JSON_NULL: jw_null(w); break;
    case JSON_BOOL: jw_bool(w, v->u.b); break;
    case JSON_NUMBER:
        if (v->u.num.kind == JSON_NUM_INT)
            jw_int(w, v->u.num.i);
        else if (v->u.num.kind == JSON_NUM_OUT_OF_RANGE)
            jw_raw(w, v->u.num.text); /* keep every digit */
        else
            jw_double(w, v->u.num.d);
        break;
    case JSON_STRING: jw_string(w, v->u.str.s); break;
    case JSON_ARRAY:
        jw_array_begin(w);
        for (size_t i = 0; i < v->u.arr.count; i++)
            jw_value(w, v->u.arr.items[i]);
        jw_array_end(w);
        break;
    case JSON_OBJECT:
        jw_object_begin(w);
        for (size_t i = 0; i < v->u.obj.count; i++) {
            jw_key(w, v->u.obj.members[i].key);
            jw_value(w, v->u.obj.members[i].value);
        }
        jw_object_end(w);
        break;
    }
}
