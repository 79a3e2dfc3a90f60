/* Helpers shared by the benchmarks: a monotonic clock, and running a
 * baseline measured by another program (PyTorch scripts print one JSON line). */
#ifndef DSRT_BENCH_UTIL_H
#define DSRT_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs the shell command `cmd` and returns the number that follows "key": in
 * its output (0 when absent or the command cannot start). `last` receives the
 * last line it printed (without the newline), `*rc` its exit status. */
static inline double bench_run_for_number(const char *cmd, const char *key, char *last,
                                          size_t last_len, int *rc)
{
    char pattern[128], line[4096];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    last[0] = 0;
    *rc = -1;
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(last, last_len, "cannot run: %s", cmd);
        return 0;
    }
    double v = 0;
    while (fgets(line, sizeof line, p)) {
        snprintf(last, last_len, "%s", line);
        const char *k = strstr(line, pattern);
        if (k)
            v = atof(k + strlen(pattern));
    }
    *rc = pclose(p);
    last[strcspn(last, "\n")] = 0;
    return v;
}

#endif
