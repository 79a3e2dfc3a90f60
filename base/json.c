/* The config reader's parser: JSON plus what hjson-py (DeepSpeed's loader)
 * accepts; see json.h for the rules and the tree. One pass, no recursion
 * deeper than JSON_MAX_DEPTH, all memory from one arena per document. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

/* ---------------------------------------------------------------- arena */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, size;
    max_align_t data[];
} arena_block;

struct json_doc {
    arena_block *blocks;
    json_value *root;
};

static void *arena_alloc(json_doc *d, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    arena_block *b = d->blocks;
    if (!b || b->size - b->used < n) {
        size_t size = n > (1u << 16) ? n : (1u << 16);
        b = malloc(sizeof *b + size);
        if (!b)
            return NULL;
        b->used = 0;
        b->size = size;
        b->next = d->blocks;
        d->blocks = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

void json_doc_free(json_doc *doc)
{
    if (!doc)
        return;
    arena_block *b = doc->blocks;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(doc);
}

const json_value *json_doc_root(const json_doc *doc) { return doc ? doc->root : NULL; }

/* ---------------------------------------------------------------- parser state */

/* One per nesting depth; only one container is open at a depth at a time,
 * and containers of different element sizes take turns, so the capacity is
 * kept in bytes. */
typedef struct scratch {
    void *data;
    size_t len;       /* elements of the open container */
    size_t cap_bytes;
} scratch;

typedef struct parser {
    const char *s;
    size_t n, pos;
    /* line counting, advanced monotonically from `counted` */
    size_t counted, line_start;
    int line;
    json_doc *doc;
    json_error *err;
    bool failed;
    int depth;
    char path[256];
    scratch stack[JSON_MAX_DEPTH + 1]; /* per-depth temporary item lists */
    char *sbuf;                        /* string decoding buffer */
    size_t sbuf_cap;
} parser;

static void locate(parser *p, size_t pos, int *line, int *col)
{
    if (pos < p->counted) { /* backtracking (root-brace retry): recount */
        p->counted = 0;
        p->line = 1;
        p->line_start = 0;
    }
    for (; p->counted < pos && p->counted < p->n; p->counted++)
        if (p->s[p->counted] == '\n') {
            p->line++;
            p->line_start = p->counted + 1;
        }
    *line = p->line;
    *col = (int)(pos - p->line_start) + 1;
}

static void fail_at(parser *p, size_t pos, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    if (!p->err)
        return;
    locate(p, pos, &p->err->line, &p->err->col);
    snprintf(p->err->path, sizeof p->err->path, "%s", p->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->msg, sizeof p->err->msg, fmt, ap);
    va_end(ap);
}

static void *palloc(parser *p, size_t n)
{
    void *r = arena_alloc(p->doc, n);
    if (!r)
        fail_at(p, p->pos, "out of memory");
    return r;
}

static bool scratch_push(parser *p, scratch *s, const void *item, size_t size)
{
    if ((s->len + 1) * size > s->cap_bytes) {
        size_t cap = s->cap_bytes ? 2 * s->cap_bytes : 16 * size;
        while (cap < (s->len + 1) * size)
            cap *= 2;
        void *d = realloc(s->data, cap);
        if (!d) {
            fail_at(p, p->pos, "out of memory");
            return false;
        }
        s->data = d;
        s->cap_bytes = cap;
    }
    memcpy((char *)s->data + s->len * size, item, size);
    s->len++;
    return true;
}

/* ---------------------------------------------------------------- whitespace and comments */

static void skip_ws(parser *p)
{
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            p->pos++;
        } else if (c == '#' || (c == '/' && p->pos + 1 < p->n && p->s[p->pos + 1] == '/')) {
            while (p->pos < p->n && p->s[p->pos] != '\n')
                p->pos++;
        } else if (c == '/' && p->pos + 1 < p->n && p->s[p->pos + 1] == '*') {
            size_t start = p->pos;
            p->pos += 2;
            while (p->pos + 1 < p->n && !(p->s[p->pos] == '*' && p->s[p->pos + 1] == '/'))
                p->pos++;
            if (p->pos + 1 >= p->n) {
                fail_at(p, start, "unterminated /* comment");
                p->pos = p->n;
                return;
            }
            p->pos += 2;
        } else {
            break;
        }
    }
}

/* Like skip_ws, but stops at a newline: used after a value to know whether
 * a member separator (newline or comma) follows. */
static bool skip_ws_line(parser *p)
{
    bool newline = false;
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\r') {
            p->pos++;
        } else if (c == '\n') {
            newline = true;
            p->pos++;
        } else if (c == '#' || (c == '/' && p->pos + 1 < p->n && p->s[p->pos + 1] == '/')) {
            while (p->pos < p->n && p->s[p->pos] != '\n')
                p->pos++;
        } else if (c == '/' && p->pos + 1 < p->n && p->s[p->pos + 1] == '*') {
            skip_ws(p); /* handles the block comment and its errors */
            if (p->failed)
                return newline;
        } else {
            break;
        }
    }
    return newline;
}

/* ---------------------------------------------------------------- values */

static json_value *new_value(parser *p, json_type t, size_t pos)
{
    json_value *v = palloc(p, sizeof *v);
    if (!v)
        return NULL;
    memset(v, 0, sizeof *v);
    v->type = t;
    locate(p, pos, &v->line, &v->col);
    return v;
}

static bool sbuf_put(parser *p, size_t *len, const char *bytes, size_t k)
{
    if (*len + k + 1 > p->sbuf_cap) {
        size_t cap = p->sbuf_cap ? p->sbuf_cap : 256;
        while (cap < *len + k + 1)
            cap *= 2;
        char *b = realloc(p->sbuf, cap);
        if (!b) {
            fail_at(p, p->pos, "out of memory");
            return false;
        }
        p->sbuf = b;
        p->sbuf_cap = cap;
    }
    memcpy(p->sbuf + *len, bytes, k);
    *len += k;
    return true;
}

static char *arena_strndup(parser *p, const char *s, size_t n)
{
    char *d = palloc(p, n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *p, size_t at, unsigned *out)
{
    if (at + 4 > p->n)
        return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[at + (size_t)i]);
        if (h < 0)
            return false;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return true;
}

static size_t utf8_encode(unsigned cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A "..." or '...' string at p->pos; returns the decoded text in the arena. */
static const char *parse_quoted(parser *p, size_t *out_len)
{
    char q = p->s[p->pos];
    size_t start = p->pos++;
    size_t len = 0;
    for (;;) {
        if (p->pos >= p->n) {
            fail_at(p, start, "unterminated string");
            return NULL;
        }
        char c = p->s[p->pos];
        if (c == q) {
            p->pos++;
            break;
        }
        if (c == '\n' || c == '\r') {
            fail_at(p, p->pos, "line break inside a string (use \\n)");
            return NULL;
        }
        if (c != '\\') {
            size_t run = p->pos;
            while (run < p->n && p->s[run] != q && p->s[run] != '\\' && p->s[run] != '\n' && p->s[run] != '\r')
                run++;
            if (!sbuf_put(p, &len, p->s + p->pos, run - p->pos))
                return NULL;
            p->pos = run;
            continue;
        }
        if (p->pos + 1 >= p->n) {
            fail_at(p, start, "unterminated string");
            return NULL;
        }
        char e = p->s[p->pos + 1], ch;
        switch (e) {
        case '"': ch = '"'; break;
        case '\'': ch = '\''; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            unsigned cp;
            if (!read_hex4(p, p->pos + 2, &cp)) {
                fail_at(p, p->pos, "\\u needs four hex digits");
                return NULL;
            }
            size_t adv = 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (p->pos + 11 < p->n + 0 && p->s[p->pos + 6] == '\\' && p->s[p->pos + 7] == 'u' &&
                    read_hex4(p, p->pos + 8, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    adv = 12;
                } else {
                    fail_at(p, p->pos, "unpaired UTF-16 surrogate \\u%04X", cp);
                    return NULL;
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                fail_at(p, p->pos, "unpaired UTF-16 surrogate \\u%04X", cp);
                return NULL;
            }
            if (cp == 0) {
                fail_at(p, p->pos, "\\u0000 (a NUL character) is not allowed in a config string");
                return NULL;
            }
            char u[4];
            if (!sbuf_put(p, &len, u, utf8_encode(cp, u)))
                return NULL;
            p->pos += adv;
            continue;
        }
        default: fail_at(p, p->pos, "invalid escape \\%c", isprint((unsigned char)e) ? e : '?'); return NULL;
        }
        if (!sbuf_put(p, &len, &ch, 1))
            return NULL;
        p->pos += 2;
    }
    *out_len = len;
    return arena_strndup(p, p->sbuf ? p->sbuf : "", len);
}

/* hjson '''multiline''' string: the indentation of the opening quotes is
 * removed from each line, the first line break after ''' and the last one
 * before ''' are dropped. */
static const char *parse_multiline(parser *p, size_t *out_len)
{
    size_t start = p->pos;
    int line, col;
    locate(p, start, &line, &col);
    size_t indent = (size_t)(col - 1);
    p->pos += 3;
    /* skip white space up to and including the first newline */
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\r'))
        p->pos++;
    if (p->pos < p->n && p->s[p->pos] == '\n')
        p->pos++;
    size_t len = 0, skip = indent;
    for (;;) {
        if (p->pos >= p->n) {
            fail_at(p, start, "unterminated ''' string");
            return NULL;
        }
        char c = p->s[p->pos];
        if (c == '\'' && p->pos + 2 < p->n && p->s[p->pos + 1] == '\'' && p->s[p->pos + 2] == '\'') {
            p->pos += 3;
            if (len && p->sbuf[len - 1] == '\n')
                len--;
            if (len && p->sbuf[len - 1] == '\r')
                len--;
            break;
        }
        if (c == '\n') {
            skip = indent;
            if (!sbuf_put(p, &len, "\n", 1))
                return NULL;
        } else if (skip && (c == ' ' || c == '\t')) {
            skip--;
        } else {
            skip = 0;
            if (c != '\r' && !sbuf_put(p, &len, &c, 1))
                return NULL;
        }
        p->pos++;
    }
    *out_len = len;
    return arena_strndup(p, p->sbuf ? p->sbuf : "", len);
}

/* Decides the number kind from the decimal literal exactly. */
static void classify_number(json_value *v, const char *t, size_t n)
{
    const char *q = t, *end = t + n;
    bool neg = false;
    if (*q == '-')
        neg = true, q++;
    const char *int_start = q;
    while (q < end && isdigit((unsigned char)*q))
        q++;
    const char *int_end = q, *frac_start = q, *frac_end = q;
    if (q < end && *q == '.') {
        frac_start = ++q;
        while (q < end && isdigit((unsigned char)*q))
            q++;
        frac_end = q;
    }
    long long exp = 0;
    bool has_exp = false;
    if (q < end && (*q == 'e' || *q == 'E')) {
        has_exp = true;
        q++;
        bool eneg = false;
        if (q < end && (*q == '+' || *q == '-'))
            eneg = *q == '-', q++;
        while (q < end && isdigit((unsigned char)*q)) {
            if (exp < 100000000)
                exp = exp * 10 + (*q - '0');
            q++;
        }
        if (eneg)
            exp = -exp;
    }
    v->u.num.d = strtod(t, NULL);
    if (!isfinite(v->u.num.d)) {
        v->u.num.kind = JSON_NUM_NONFINITE;
        return;
    }
    /* significant digits: int part + fraction, with the decimal exponent */
    char digits[512];
    size_t nd = 0;
    bool overflow_digits = false;
    for (const char *d = int_start; d < int_end; d++)
        if (nd < sizeof digits)
            digits[nd++] = *d;
        else
            overflow_digits = true;
    long long scale = exp - (long long)(frac_end - frac_start);
    for (const char *d = frac_start; d < frac_end; d++)
        if (nd < sizeof digits)
            digits[nd++] = *d;
        else
            overflow_digits = true;
    /* strip leading zeros and trailing zeros (moving them into the scale) */
    size_t lead = 0;
    while (lead < nd && digits[lead] == '0')
        lead++;
    while (nd > lead && digits[nd - 1] == '0')
        nd--, scale++;
    bool is_int_syntax = !has_exp && frac_start == frac_end && int_end == frac_start;
    if (lead == nd) { /* zero */
        v->u.num.kind = is_int_syntax ? JSON_NUM_INT : JSON_NUM_INTEGRAL;
        v->u.num.i = 0;
        return;
    }
    if (overflow_digits || scale < 0) {
        /* a non-zero digit after the decimal point (trailing zeros were removed) */
        v->u.num.kind = overflow_digits && scale >= 0 ? JSON_NUM_OUT_OF_RANGE : JSON_NUM_FRACTIONAL;
        return;
    }
    /* value = digits[lead..nd) * 10^scale: fits int64? */
    if ((long long)(nd - lead) + scale > 19) {
        v->u.num.kind = JSON_NUM_OUT_OF_RANGE;
        return;
    }
    unsigned long long mag = 0;
    const unsigned long long lim = neg ? 9223372036854775808ull : 9223372036854775807ull;
    bool range = true;
    for (size_t i = lead; i < nd && range; i++) {
        unsigned dgt = (unsigned)(digits[i] - '0');
        if (mag > (lim - dgt) / 10)
            range = false;
        else
            mag = mag * 10 + dgt;
    }
    for (long long k = 0; k < scale && range; k++) {
        if (mag > lim / 10)
            range = false;
        else
            mag *= 10;
    }
    if (!range) {
        v->u.num.kind = JSON_NUM_OUT_OF_RANGE;
        return;
    }
    v->u.num.kind = is_int_syntax ? JSON_NUM_INT : JSON_NUM_INTEGRAL;
    v->u.num.i = neg ? (mag == 9223372036854775808ull ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
}

/* Length of a JSON number at s[0..n) that spans it exactly, or 0. */
static size_t number_length(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n || !isdigit((unsigned char)s[i]))
        return 0;
    if (s[i] == '0')
        i++;
    else
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !isdigit((unsigned char)s[i]))
            return 0;
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !isdigit((unsigned char)s[i]))
            return 0;
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
    }
    return i;
}

/* Is s[0..n) (already trimmed) a literal or a number? Fills v if so. */
static bool as_literal(parser *p, json_value *v, const char *s, size_t n)
{
    if (n == 4 && !memcmp(s, "true", 4)) {
        v->type = JSON_BOOL;
        v->u.b = true;
        return true;
    }
    if (n == 5 && !memcmp(s, "false", 5)) {
        v->type = JSON_BOOL;
        v->u.b = false;
        return true;
    }
    if (n == 4 && !memcmp(s, "null", 4)) {
        v->type = JSON_NULL;
        return true;
    }
    /* Python's json (DeepSpeed's reader) takes NaN, Infinity and -Infinity as
     * numbers: read them as such, so the reader can refuse them by name
     * instead of taking "NaN}" for a string to the end of the line */
    if ((n == 3 && !memcmp(s, "NaN", 3)) || (n == 8 && !memcmp(s, "Infinity", 8)) ||
        (n == 9 && !memcmp(s, "-Infinity", 9))) {
        v->type = JSON_NUMBER;
        v->u.num.text = arena_strndup(p, s, n);
        v->u.num.kind = JSON_NUM_NONFINITE;
        v->u.num.d = s[0] == 'N' ? NAN : s[0] == '-' ? -INFINITY : INFINITY;
        return true;
    }
    if (n && number_length(s, n) == n) {
        v->type = JSON_NUMBER;
        char *t = arena_strndup(p, s, n);
        if (!t)
            return true;
        v->u.num.text = t;
        classify_number(v, t, n);
        return true;
    }
    return false;
}

static size_t trim_end(const char *s, size_t a, size_t b)
{
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r'))
        b--;
    return b;
}

/* hjson quoteless value: a literal or number when one ends at a separator
 * (, ] } or a comment), otherwise a string to the end of the line. */
static json_value *parse_quoteless(parser *p)
{
    size_t start = p->pos;
    json_value *v = new_value(p, JSON_STRING, start);
    if (!v)
        return NULL;
    char c0 = p->s[start];
    if (c0 == ',' || c0 == ':' || c0 == ']' || c0 == '}') {
        fail_at(p, start, "expected a value, found '%c'", c0);
        return NULL;
    }
    size_t i = start;
    while (i < p->n && p->s[i] != '\n') {
        char c = p->s[i];
        bool sep = c == ',' || c == ']' || c == '}' || c == '#' ||
                   (c == '/' && i + 1 < p->n && (p->s[i + 1] == '/' || p->s[i + 1] == '*'));
        if (sep) {
            size_t e = trim_end(p->s, start, i);
            if (as_literal(p, v, p->s + start, e - start)) {
                p->pos = e;
                return p->failed ? NULL : v;
            }
        }
        i++;
    }
    size_t e = trim_end(p->s, start, i);
    p->pos = i;
    if (as_literal(p, v, p->s + start, e - start))
        return p->failed ? NULL : v;
    v->u.str.s = arena_strndup(p, p->s + start, e - start);
    v->u.str.len = e - start;
    v->u.str.quoteless = true;
    return v->u.str.s ? v : NULL;
}

static json_value *parse_value(parser *p);

static void path_push(parser *p, size_t *saved, const char *key, size_t index, bool is_index)
{
    *saved = strlen(p->path);
    size_t room = sizeof p->path - *saved;
    if (is_index)
        snprintf(p->path + *saved, room, "[%zu]", index);
    else
        snprintf(p->path + *saved, room, "%s%s", *saved ? "." : "", key);
}

static void path_pop(parser *p, size_t saved) { p->path[saved] = '\0'; }

/* Key: quoted, or hjson's quoteless name (no white space, no ,:[]{}). */
static const char *parse_key(parser *p)
{
    char c = p->s[p->pos];
    if (c == '"' || c == '\'') {
        size_t len;
        return parse_quoted(p, &len);
    }
    size_t start = p->pos;
    while (p->pos < p->n) {
        c = p->s[p->pos];
        if (c == ':' || c == ',' || c == '[' || c == ']' || c == '{' || c == '}' || isspace((unsigned char)c))
            break;
        p->pos++;
    }
    if (p->pos == start) {
        fail_at(p, start, "expected a key, found '%c'", c);
        return NULL;
    }
    return arena_strndup(p, p->s + start, p->pos - start);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Members of an object, up to `close` ('}'), or to the end of input for a
 * root without braces (close == 0). */
static json_value *parse_members(parser *p, size_t open_pos, char close)
{
    json_value *obj = new_value(p, JSON_OBJECT, open_pos);
    if (!obj)
        return NULL;
    scratch *sc = &p->stack[p->depth];
    size_t base = sc->len;
    /* duplicate detection: a hash table once the object is large */
    size_t *table = NULL, tcap = 0;
    for (;;) {
        skip_ws(p);
        if (p->failed)
            goto fail;
        if (p->pos >= p->n) {
            if (close) {
                fail_at(p, open_pos, "unterminated object: missing '}'");
                goto fail;
            }
            break;
        }
        if (close && p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        if (!close && p->s[p->pos] == '}') {
            fail_at(p, p->pos, "unexpected '}'");
            goto fail;
        }
        json_member m;
        size_t key_pos = p->pos;
        locate(p, key_pos, &m.line, &m.col);
        m.key = parse_key(p);
        if (!m.key)
            goto fail;
        size_t saved;
        path_push(p, &saved, m.key, 0, false);
        skip_ws(p);
        if (p->pos >= p->n || p->s[p->pos] != ':') {
            fail_at(p, p->pos < p->n ? p->pos : key_pos, "expected ':' after key \"%s\"", m.key);
            goto fail;
        }
        p->pos++;
        skip_ws(p);
        if (p->pos >= p->n) {
            fail_at(p, key_pos, "missing value for key \"%s\"", m.key);
            goto fail;
        }
        m.value = parse_value(p);
        if (!m.value)
            goto fail;
        /* duplicates: linear for small objects, hashed beyond */
        size_t count = sc->len - base;
        json_member *ms = count ? (json_member *)sc->data + base : NULL;
        if (count < 16) {
            for (size_t i = 0; i < count; i++)
                if (!strcmp(ms[i].key, m.key)) {
                    fail_at(p, key_pos, "duplicate key \"%s\" (first defined on line %d)", m.key, ms[i].line);
                    goto fail;
                }
        } else {
            if (count * 2 >= tcap) {
                free(table);
                tcap = tcap ? 2 * tcap : 64;
                while (tcap <= count * 2)
                    tcap *= 2;
                table = malloc(tcap * sizeof *table);
                if (!table) {
                    fail_at(p, key_pos, "out of memory");
                    goto fail;
                }
                for (size_t i = 0; i < tcap; i++)
                    table[i] = (size_t)-1;
                for (size_t i = 0; i < count; i++) {
                    size_t h = (size_t)hash_str(ms[i].key) & (tcap - 1);
                    while (table[h] != (size_t)-1)
                        h = (h + 1) & (tcap - 1);
                    table[h] = i;
                }
            }
            size_t h = (size_t)hash_str(m.key) & (tcap - 1);
            while (table[h] != (size_t)-1) {
                if (!strcmp(ms[table[h]].key, m.key)) {
                    fail_at(p, key_pos, "duplicate key \"%s\" (first defined on line %d)", m.key, ms[table[h]].line);
                    goto fail;
                }
                h = (h + 1) & (tcap - 1);
            }
            table[h] = count;
        }
        if (!scratch_push(p, sc, &m, sizeof m))
            goto fail;
        path_pop(p, saved);
        /* separator: a comma, a newline, or the closing brace */
        bool nl = skip_ws_line(p);
        if (p->failed)
            goto fail;
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
        } else if (!nl && p->pos < p->n && !(close && p->s[p->pos] == close)) {
            fail_at(p, p->pos, "expected ',' or a new line after the value of \"%s\"", m.key);
            goto fail;
        }
    }
    free(table);
    size_t count = sc->len - base;
    obj->u.obj.count = count;
    if (count) {
        obj->u.obj.members = palloc(p, count * sizeof(json_member));
        if (!obj->u.obj.members)
            return NULL;
        memcpy(obj->u.obj.members, (json_member *)sc->data + base, count * sizeof(json_member));
    }
    sc->len = base;
    return obj;
fail:
    free(table);
    sc->len = base;
    return NULL;
}

static json_value *parse_array(parser *p)
{
    size_t open_pos = p->pos++;
    json_value *arr = new_value(p, JSON_ARRAY, open_pos);
    if (!arr)
        return NULL;
    scratch *sc = &p->stack[p->depth];
    size_t base = sc->len;
    for (;;) {
        skip_ws(p);
        if (p->failed)
            goto fail;
        if (p->pos >= p->n) {
            fail_at(p, open_pos, "unterminated list: missing ']'");
            goto fail;
        }
        if (p->s[p->pos] == ']') {
            p->pos++;
            break;
        }
        size_t saved;
        path_push(p, &saved, NULL, sc->len - base, true);
        json_value *item = parse_value(p);
        if (!item || !scratch_push(p, sc, &item, sizeof item))
            goto fail;
        path_pop(p, saved);
        bool nl = skip_ws_line(p);
        if (p->failed)
            goto fail;
        if (p->pos < p->n && p->s[p->pos] == ',')
            p->pos++;
        else if (!nl && p->pos < p->n && p->s[p->pos] != ']') {
            fail_at(p, p->pos, "expected ',' or ']' in a list");
            goto fail;
        }
    }
    size_t count = sc->len - base;
    arr->u.arr.count = count;
    if (count) {
        arr->u.arr.items = palloc(p, count * sizeof(json_value *));
        if (!arr->u.arr.items)
            return NULL;
        memcpy(arr->u.arr.items, (json_value **)sc->data + base, count * sizeof(json_value *));
    }
    sc->len = base;
    return arr;
fail:
    sc->len = base;
    return NULL;
}

static json_value *parse_value(parser *p)
{
    if (p->depth >= JSON_MAX_DEPTH) {
        fail_at(p, p->pos, "nesting deeper than %d levels", JSON_MAX_DEPTH);
        return NULL;
    }
    char c = p->s[p->pos];
    json_value *v = NULL;
    p->depth++;
    if (c == '{') {
        size_t open = p->pos++;
        v = parse_members(p, open, '}');
    } else if (c == '[') {
        v = parse_array(p);
    } else if (c == '\'' && p->pos + 2 < p->n && p->s[p->pos + 1] == '\'' && p->s[p->pos + 2] == '\'') {
        size_t start = p->pos, len;
        v = new_value(p, JSON_STRING, start);
        const char *s = v ? parse_multiline(p, &len) : NULL;
        if (s) {
            v->u.str.s = s;
            v->u.str.len = len;
        } else
            v = NULL;
    } else if (c == '"' || c == '\'') {
        size_t start = p->pos, len;
        v = new_value(p, JSON_STRING, start);
        const char *s = v ? parse_quoted(p, &len) : NULL;
        if (s) {
            v->u.str.s = s;
            v->u.str.len = len;
        } else
            v = NULL;
    } else {
        v = parse_quoteless(p);
    }
    p->depth--;
    return v;
}

/* ---------------------------------------------------------------- entry */

static bool check_encoding(parser *p)
{
    const unsigned char *s = (const unsigned char *)p->s;
    size_t i = 0;
    while (i < p->n) {
        unsigned char c = s[i];
        if (c == 0) {
            fail_at(p, i, "NUL byte in the file (is it a binary file?)");
            return false;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k = c >= 0xF0 && c <= 0xF4 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 && c < 0xE0 ? 1 : 0;
        if (c >= 0xF5)
            k = 0;
        bool ok = k > 0 && i + k < p->n + 0 + 1 && i + k <= p->n - 0;
        for (size_t j = 1; ok && j <= k; j++)
            ok = i + j < p->n && (s[i + j] & 0xC0) == 0x80;
        if (ok && k == 2) { /* overlong and surrogates */
            unsigned cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
            ok = cp >= 0x800 && !(cp >= 0xD800 && cp <= 0xDFFF);
        } else if (ok && k == 3) {
            unsigned cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) |
                          (s[i + 3] & 0x3Fu);
            ok = cp >= 0x10000 && cp <= 0x10FFFF;
        }
        if (!ok) {
            fail_at(p, i, "invalid UTF-8 (byte 0x%02X); the file must be UTF-8 text", c);
            return false;
        }
        i += k + 1;
    }
    return true;
}

json_doc *json_parse(const char *text, size_t len, json_error *err)
{
    parser p;
    memset(&p, 0, sizeof p);
    p.s = text ? text : "";
    p.n = text ? len : 0;
    p.line = 1;
    p.err = err;
    if (err)
        memset(err, 0, sizeof *err);
    p.doc = calloc(1, sizeof *p.doc);
    if (!p.doc) {
        if (err)
            snprintf(err->msg, sizeof err->msg, "out of memory");
        return NULL;
    }
    if (p.n >= 3 && !memcmp(p.s, "\xEF\xBB\xBF", 3))
        p.pos = 3;
    json_value *root = NULL;
    if (check_encoding(&p)) {
        skip_ws(&p);
        if (!p.failed && p.pos >= p.n)
            fail_at(&p, p.pos, "the file is empty (no JSON value)");
        else if (!p.failed && (p.s[p.pos] == '{' || p.s[p.pos] == '[')) {
            root = parse_value(&p);
        } else if (!p.failed) {
            /* hjson: an object without its braces, else a single value */
            size_t start = p.pos;
            json_error first;
            json_error *saved_err = p.err;
            p.err = &first;
            root = parse_members(&p, start, 0);
            p.err = saved_err;
            if (!root) {
                json_error rootless = first;
                p.failed = false;
                p.pos = start;
                p.path[0] = '\0';
                root = parse_value(&p);
                if (root) {
                    skip_ws(&p);
                    if (!p.failed && p.pos < p.n) {
                        /* not a single value either: report the object attempt */
                        root = NULL;
                        p.failed = true;
                        if (err)
                            *err = rootless;
                    }
                } else if (err) {
                    *err = rootless;
                }
            }
        }
        if (root && !p.failed) {
            skip_ws(&p);
            if (!p.failed && p.pos < p.n)
                fail_at(&p, p.pos, "unexpected text after the end of the document");
        }
    }
    for (int i = 0; i <= JSON_MAX_DEPTH; i++)
        free(p.stack[i].data);
    free(p.sbuf);
    if (p.failed || !root) {
        if (!p.failed && err)
            snprintf(err->msg, sizeof err->msg, "invalid document");
        json_doc_free(p.doc);
        return NULL;
    }
    p.doc->root = root;
    return p.doc;
}

const json_member *json_object_member(const json_value *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->u.obj.count; i++)
        if (!strcmp(obj->u.obj.members[i].key, key))
            return &obj->u.obj.members[i];
    return NULL;
}

const json_value *json_object_get(const json_value *obj, const char *key)
{
    const json_member *m = json_object_member(obj, key);
    return m ? m->value : NULL;
}

const char *json_type_name(json_type t)
{
    static const char *const names[] = {"null", "bool", "number", "string", "list", "object"};
    return (unsigned)t < 6 ? names[t] : "?";
}
