/* The launchers' command-line options, from one table: parsing, validation
 * and --help come from the same rows, so an option cannot be documented with
 * one range and checked with another.
 *
 * Every option takes `--name VALUE` or `--name=VALUE` (flags: `--name` alone).
 * Numbers are read in full: "1x", "", " 1", "0x10" and values outside the
 * row's range are refused with a message naming the option and the value;
 * floats must be finite. */
#ifndef DSRT_LAUNCHER_OPTIONS_H
#define DSRT_LAUNCHER_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum opt_kind {
    OPT_FLAG,   /* int, set to 1 */
    OPT_STR,    /* const char *, pointing into argv */
    OPT_INT,    /* int64_t in [ilo, ihi] */
    OPT_UINT64, /* uint64_t, any value (seeds) */
    OPT_FLOAT,  /* double, finite, in [flo, fhi] */
    OPT_LIST,   /* opt_list: each use appends its value (items: room for argc) */
} opt_kind;

typedef struct opt_list {
    const char **items;
    size_t n;
} opt_list;

typedef struct opt_spec {
    const char *name;    /* "steps" for --steps */
    char short_name;     /* 'q' for -q; 0: none */
    opt_kind kind;
    size_t offset;       /* of the field in the caller's struct */
    int64_t ilo, ihi;    /* OPT_INT */
    double flo, fhi;     /* OPT_FLOAT */
    const char *metavar; /* "N", "FILE" (NULL for flags) */
    const char *help;    /* NULL: an alias, left out of --help */
} opt_spec;

typedef struct opt_parser {
    const char *prog;    /* "dsrt-train", for messages */
    const char *synopsis; /* the usage line after "usage: " */
    const opt_spec *specs;
    size_t n_specs;
    void *target;        /* the struct the offsets point into */
    /* An option the table does not have (--name VALUE): 1 taken, 0 unknown,
     * -1 refused (the callback printed why). NULL: every such option is unknown. */
    int (*extra)(void *target, const char *name, const char *value);
    /* A word that is not an option: 0 taken, else refused (the callback printed why).
     * NULL: positional arguments are refused. */
    int (*positional)(void *target, const char *arg);
    const char *epilog; /* printed after the options in --help */
} opt_parser;

/* 0: parsed; 1: --help printed on stdout (exit 0); -1: an error, printed
 * with the usage on stderr (exit with the launcher's usage status). */
int opt_parse(const opt_parser *p, int argc, char **argv);
void opt_usage(const opt_parser *p, FILE *f);

#endif /* DSRT_LAUNCHER_OPTIONS_H */
