/* Reads every real-world config in $DSRT_SHARED_DIR/ds_configs/real at world
 * sizes 1 and 4 and compares the verdict with DeepSpeed 0.19's own
 * (ds_configs/upstream_check.tsv). Prints one row per file and writes the
 * table to $DSRT_COMPAT_REPORT when set.
 *
 * Fails when: a file crashes the reader (the process dies), a rejection does
 * not name a key in the standard one-line form, or a verdict differs from
 * DeepSpeed's for a reason other than the deliberate ones:
 *   - "auto": DeepSpeed alone cannot read "auto" (TypeError) where dsrt fills
 *     it as the Hugging Face Trainer does; and dsrt refuses an "auto" only the
 *     host can fill (the run's length) where DeepSpeed silently drops it;
 *   - stage 3 / offload run as stage 2 (a warning; an error only when strict);
 *   - an optimizer or torch schedule dsrt does not implement is refused by
 *     the reader (never accepted and then refused when training starts);
 *   - scheduler parameters DeepSpeed's schedule constructors refuse at
 *     deepspeed.initialize(), a step upstream_check.tsv does not reach.
 * The host values are the ones dsrt-train passes for a GPT-2 124M run of 1000
 * steps with 100 warmup steps. Skips (exit 77) when the shared folder is absent. */
#include <dirent.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsrt.h"

const dsrt_api *dsrt_api_table(void);

typedef struct upstream {
    char file[256];
    char v1[16], v4[16];
    char reason[256];
} upstream;

static upstream *rows;
static size_t n_rows;

static int load_upstream(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[8192];
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "file\t", 5))
            continue;
        if (n_rows == cap) {
            cap = cap ? 2 * cap : 256;
            rows = realloc(rows, cap * sizeof *rows);
            if (!rows)
                return -1;
        }
        upstream *u = &rows[n_rows];
        memset(u, 0, sizeof *u);
        char *save = NULL, *tok;
        int col = 0;
        for (tok = strtok_r(line, "\t\n", &save); tok && col < 4; tok = strtok_r(NULL, "\t\n", &save), col++) {
            if (col == 0)
                snprintf(u->file, sizeof u->file, "%s", tok);
            else if (col == 1)
                snprintf(u->v1, sizeof u->v1, "%s", tok);
            else if (col == 2)
                snprintf(u->v4, sizeof u->v4, "%s", tok);
            else
                snprintf(u->reason, sizeof u->reason, "%s", tok);
        }
        n_rows++;
    }
    fclose(f);
    return 0;
}

static const upstream *find_upstream(const char *file)
{
    for (size_t i = 0; i < n_rows; i++)
        if (!strcmp(rows[i].file, file))
            return &rows[i];
    return NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct verdict {
    int accepted;
    char error[1024];
    char warnings[1024];
} verdict;

static void read_one(const char *path, int world, verdict *v)
{
    static const char *const hf[] = {"max_steps=1000", "warmup_steps=100", "hidden_size=768"};
    const dsrt_api *api = dsrt_api_table();
    dsrt_config_create_args a = {.struct_size = sizeof a, .path = path, .world_size = world, .hf_values = hf,
                                 .hf_value_count = 3};
    memset(v, 0, sizeof *v);
    if (api->config_create(&a) != DSRT_STATUS_OK) {
        dsrt_last_error_args e = {.struct_size = sizeof e, .buffer = v->error, .buffer_size = sizeof v->error};
        api->last_error(&e);
        return;
    }
    v->accepted = 1;
    dsrt_config_diagnostic_args d = {.struct_size = sizeof d, .config = a.config};
    size_t used = 0;
    for (d.index = 0; api->config_diagnostic(&d) == DSRT_STATUS_OK; d.index++) {
        if (d.kind != DSRT_DIAG_WARNING)
            continue;
        /* the short form: key and the first words */
        int n = snprintf(v->warnings + used, sizeof v->warnings - used, "%s%.90s", used ? " | " : "", d.message);
        if (n > 0 && (size_t)n < sizeof v->warnings - used)
            used += (size_t)n;
    }
    dsrt_config_destroy_args x = {.struct_size = sizeof x, .config = a.config};
    api->config_destroy(&x);
}

/* Why dsrt and DeepSpeed may disagree on purpose (see the header comment). */
static const char *allowed_difference(const verdict *ours, const upstream *u, const char *ds_verdict)
{
    int ds_accepts = !strcmp(ds_verdict, "accept");
    if (ours->accepted && !ds_accepts && strstr(u->reason, "\"auto\""))
        return "auto resolved as the HF Trainer does";
    if (!ours->accepted && ds_accepts && strstr(ours->error, "\"auto\""))
        return "auto needs a host value";
    /* refused by the reader rather than accepted and then refused by training */
    if (!ours->accepted && ds_accepts && strstr(ours->error, "dsrt implements"))
        return "an optimizer or schedule dsrt does not implement";
    /* upstream_check.tsv stops at DeepSpeedConfig; the scheduler's constructor
     * (deepspeed.initialize) raises these, so DeepSpeed refuses them too, later */
    if (!ours->accepted && ds_accepts && !strncmp(ours->error, "error: scheduler.params.", 24) &&
        !strstr(ours->error, "disagrees"))
        return "DeepSpeed's scheduler constructor raises this at initialize()";
    return NULL;
}

int main(void)
{
    const char *shared = getenv("DSRT_SHARED_DIR");
    char dir[1024], tsv[1024];
    snprintf(dir, sizeof dir, "%s/ds_configs/real", shared ? shared : "../shared");
    snprintf(tsv, sizeof tsv, "%s/ds_configs/upstream_check.tsv", shared ? shared : "../shared");
    DIR *d = opendir(dir);
    if (!d || load_upstream(tsv) != 0) {
        printf("SKIP: the shared folder with real configs is not at %s (set DSRT_SHARED_DIR)\n", dir);
        if (d)
            closedir(d);
        return 77;
    }
    char **files = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json"))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            files = realloc(files, cap * sizeof *files);
        }
        files[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(files, n, sizeof *files, cmp_str);

    regex_t form;
    /* error: <key path>: <what> ... : a key path of identifiers, dots and [i] */
    regcomp(&form, "^error: [A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z0-9_]+|\\[[0-9]+\\])*: [^\n]+$", REG_EXTENDED | REG_NOSUB);

    const char *report_path = getenv("DSRT_COMPAT_REPORT");
    FILE *report = report_path ? fopen(report_path, "w") : NULL;
    if (report)
        fprintf(report, "file\tdsrt_ws1\tdeepspeed_ws1\tdsrt_ws4\tdeepspeed_ws4\tnote\n");

    size_t accepted1 = 0, accepted4 = 0, failures = 0, same = 0, allowed = 0, warned = 0;
    printf("%-76s %-6s %-6s %-6s %-6s %s\n", "file", "ws1", "DS", "ws4", "DS", "reason or warnings");
    for (size_t i = 0; i < n; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        verdict v[2];
        read_one(path, 1, &v[0]);
        read_one(path, 4, &v[1]);
        const upstream *u = find_upstream(files[i]);
        const char *problem = NULL, *why = NULL;
        for (int w = 0; w < 2; w++) {
            if (!v[w].accepted && regexec(&form, v[w].error, 0, NULL, 0) != 0)
                problem = "rejection does not name a key";
            if (!u) {
                problem = "no upstream verdict for this file";
                continue;
            }
            const char *ds = w ? u->v4 : u->v1;
            if (v[w].accepted == !strcmp(ds, "accept"))
                continue;
            const char *a = allowed_difference(&v[w], u, ds);
            if (a)
                why = a;
            else if (!problem)
                problem = "verdict differs from DeepSpeed";
        }
        accepted1 += v[0].accepted;
        accepted4 += v[1].accepted;
        warned += v[0].accepted && v[0].warnings[0];
        if (problem)
            failures++;
        else if (why)
            allowed++;
        else
            same++;
        const char *note = !v[0].accepted ? v[0].error : !v[1].accepted ? v[1].error : v[0].warnings;
        printf("%-76.76s %-6s %-6s %-6s %-6s %s%s%s%s\n", files[i], v[0].accepted ? "accept" : "reject",
               u ? u->v1 : "?", v[1].accepted ? "accept" : "reject", u ? u->v4 : "?", problem ? "FAIL: " : "",
               problem ? problem : "", problem || why ? " -- " : "", why ? why : "");
        if (note[0])
            printf("    %.400s\n", note);
        if (problem && u)
            printf("    DeepSpeed: %s\n", u->reason[0] ? u->reason : "accepted");
        if (report)
            fprintf(report, "%s\t%s\t%s\t%s\t%s\t%s\n", files[i], v[0].accepted ? "accept" : "reject",
                    u ? u->v1 : "?", v[1].accepted ? "accept" : "reject", u ? u->v4 : "?", note);
    }
    printf("\n%zu files: accepted %zu at world size 1 and %zu at world size 4 (%zu with warnings); "
           "verdicts: %zu as DeepSpeed, %zu different for a deliberate reason, %zu wrong\n",
           n, accepted1, accepted4, warned, same, allowed, failures);
    if (report)
        fclose(report);
    regfree(&form);
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
    free(rows);
    if (n < 100) {
        printf("FAIL: only %zu config files found in %s\n", n, dir);
        return 1;
    }
    return failures ? 1 : 0;
}
