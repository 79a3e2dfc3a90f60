/* The launchers' option table (options.h). */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *field(const opt_parser *p, const opt_spec *s) { return (char *)p->target + s->offset; }

static const opt_spec *find_long(const opt_parser *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->n_specs; i++)
        if (strlen(p->specs[i].name) == len && !strncmp(p->specs[i].name, name, len))
            return &p->specs[i];
    return NULL;
}

static const opt_spec *find_short(const opt_parser *p, char c)
{
    for (size_t i = 0; i < p->n_specs; i++)
        if (p->specs[i].short_name == c)
            return &p->specs[i];
    return NULL;
}

/* a decimal integer with nothing before or after it */
static int plain_integer(const char *v, int allow_sign)
{
    const char *d = v;
    if (allow_sign && *d == '-')
        d++;
    if (!*d)
        return 0;
    for (; *d; d++)
        if (!isdigit((unsigned char)*d))
            return 0;
    return 1;
}

static int set_value(const opt_parser *p, const opt_spec *s, const char *v)
{
    errno = 0;
    switch (s->kind) {
    case OPT_FLAG:
        *(int *)field(p, s) = 1;
        return 0;
    case OPT_STR:
        if (!*v) {
            fprintf(stderr, "%s: --%s: the value is empty\n", p->prog, s->name);
            return -1;
        }
        *(const char **)field(p, s) = v;
        return 0;
    case OPT_LIST: {
        opt_list *l = field(p, s);
        l->items[l->n++] = v;
        return 0;
    }
    case OPT_INT: {
        if (!plain_integer(v, 1)) {
            fprintf(stderr, "%s: --%s %s: not an integer\n", p->prog, s->name, v);
            return -1;
        }
        long long x = strtoll(v, NULL, 10);
        if (errno == ERANGE || x < s->ilo || x > s->ihi) {
            fprintf(stderr, "%s: --%s %s: must be between %" PRId64 " and %" PRId64 "\n", p->prog, s->name, v,
                    s->ilo, s->ihi);
            return -1;
        }
        *(int64_t *)field(p, s) = (int64_t)x;
        return 0;
    }
    case OPT_UINT64: {
        if (!plain_integer(v, 0)) {
            fprintf(stderr, "%s: --%s %s: not a non-negative integer\n", p->prog, s->name, v);
            return -1;
        }
        unsigned long long x = strtoull(v, NULL, 10);
        if (errno == ERANGE) {
            fprintf(stderr, "%s: --%s %s: must be below 2^64\n", p->prog, s->name, v);
            return -1;
        }
        *(uint64_t *)field(p, s) = (uint64_t)x;
        return 0;
    }
    case OPT_FLOAT: {
        char *end = NULL;
        double x = *v && !isspace((unsigned char)*v) ? strtod(v, &end) : 0;
        if (!end || end == v || *end) {
            fprintf(stderr, "%s: --%s %s: not a number\n", p->prog, s->name, v);
            return -1;
        }
        if (!isfinite(x) || x < s->flo || x > s->fhi) {
            fprintf(stderr, "%s: --%s %s: must be a finite number between %g and %g\n", p->prog, s->name, v,
                    s->flo, s->fhi);
            return -1;
        }
        *(double *)field(p, s) = x;
        return 0;
    }
    }
    return -1;
}

static int fail(const opt_parser *p)
{
    opt_usage(p, stderr);
    return -1;
}

int opt_parse(const opt_parser *p, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            opt_usage(p, stdout);
            return 1;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (!p->positional) {
                fprintf(stderr, "%s: %s: expected --option VALUE\n", p->prog, a);
                return fail(p);
            }
            if (p->positional(p->target, a))
                return -1;
            continue;
        }
        const opt_spec *s = NULL;
        const char *name = a + 1, *value = NULL;
        size_t len;
        if (a[1] != '-') { /* -q */
            if (a[2] || !(s = find_short(p, a[1]))) {
                fprintf(stderr, "%s: unknown option %s\n", p->prog, a);
                return fail(p);
            }
            len = strlen(s->name);
            name = s->name;
        } else {
            name = a + 2;
            const char *eq = strchr(name, '=');
            len = eq ? (size_t)(eq - name) : strlen(name);
            value = eq ? eq + 1 : NULL;
            s = find_long(p, name, len);
        }
        if (s && s->kind == OPT_FLAG) {
            if (value) {
                fprintf(stderr, "%s: --%s takes no value (got \"%s\")\n", p->prog, s->name, value);
                return fail(p);
            }
            set_value(p, s, "");
            continue;
        }
        if (!value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: --%.*s needs a value\n", p->prog, (int)len, name);
                return fail(p);
            }
            value = argv[++i];
        }
        if (s) {
            if (set_value(p, s, value))
                return -1;
            continue;
        }
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)len, name);
        int taken = p->extra ? p->extra(p->target, key, value) : 0;
        if (taken < 0)
            return -1;
        if (!taken) {
            fprintf(stderr, "%s: unknown option --%s\n", p->prog, key);
            return fail(p);
        }
    }
    return 0;
}

void opt_usage(const opt_parser *p, FILE *f)
{
    fprintf(f, "usage: %s\n", p->synopsis);
    for (size_t i = 0; i < p->n_specs; i++) {
        const opt_spec *s = &p->specs[i];
        if (!s->help)
            continue;
        char left[64];
        if (s->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", s->short_name, s->name, s->metavar ? " " : "",
                     s->metavar ? s->metavar : "");
        else
            snprintf(left, sizeof left, "--%s%s%s", s->name, s->metavar ? " " : "", s->metavar ? s->metavar : "");
        fprintf(f, "  %-24s%s", left, s->help);
        if (s->kind == OPT_INT && (s->ilo != INT64_MIN || s->ihi != INT64_MAX)) {
            if (s->ihi == INT64_MAX)
                fprintf(f, " (>= %" PRId64 ")", s->ilo);
            else
                fprintf(f, " (%" PRId64 "..%" PRId64 ")", s->ilo, s->ihi);
        }
        fputc('\n', f);
    }
    if (p->epilog)
        fputs(p->epilog, f);
}
