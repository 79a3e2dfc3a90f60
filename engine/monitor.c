/* DeepSpeed's monitors (deepspeed/monitor/): the "tensorboard" and
 * "csv_monitor" blocks write, on rank 0, what DeepSpeed's engine writes at
 * each optimizer boundary, against global samples:
 *   Train/Samples/train_loss   the step's mean loss
 *   Train/Samples/lr           the lr after the scheduler stepped (get_lr())
 *   Train/Samples/loss_scale   fp16 only: the scale after the scaler's update
 *   Train/Samples/elapsed_time_ms_{forward,backward,backward_allreduce,step}
 *                              with wall_clock_breakdown: this step's timers
 * into <output_path>/<job_name>/ (job_name default "DeepSpeedJobName",
 * output_path default "": relative to the working directory).
 *
 * csv_monitor: one file per event, its name with '/' and ' ' as '_'
 * (Train_Samples_lr.csv), a "step,<last name component>" header, then
 * "step,value" rows, values as Python's str() writes a float.
 *
 * tensorboard: an events.out.tfevents.<seconds>.<host> file of TFRecords
 * (uint64 length, its masked CRC32C, the bytes, their masked CRC32C), each an
 * Event protobuf: first {wall_time, file_version "brain.Event:2"}, then per
 * scalar {wall_time, step, summary {value {tag, simple_value}}}. Flushed every
 * step: a crash keeps what was written. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/internal.h"
#include "base/json.h"
#include "engine/engine_impl.h"

/* ---------------------------------------------------------------- CRC32C */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1; /* Castagnoli, reflected */
        crc_table[i] = c;
    }
}

uint32_t dsrt_crc32c(const void *data, size_t n)
{
    static int ready;
    if (!ready) {
        crc_init();
        ready = 1;
    }
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t dsrt_crc32c_masked(const void *data, size_t n)
{
    uint32_t c = dsrt_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

/* ---------------------------------------------------------------- protobuf */

typedef struct pb {
    unsigned char b[512];
    size_t n;
} pb;

static void pb_varint(pb *p, uint64_t v)
{
    while (v >= 0x80 && p->n < sizeof p->b) {
        p->b[p->n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    if (p->n < sizeof p->b)
        p->b[p->n++] = (unsigned char)v;
}

static void pb_bytes(pb *p, const void *d, size_t n)
{
    if (p->n + n <= sizeof p->b) {
        memcpy(p->b + p->n, d, n);
        p->n += n;
    }
}

static void pb_key(pb *p, int field, int wire) { pb_varint(p, (uint64_t)(field << 3 | wire)); }

static void pb_len(pb *p, int field, const void *d, size_t n)
{
    pb_key(p, field, 2);
    pb_varint(p, n);
    pb_bytes(p, d, n);
}

static void le(unsigned char *o, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        o[i] = (unsigned char)(v >> (8 * i));
}

static int tb_record(FILE *f, const pb *ev)
{
    unsigned char len[8], c1[4], c2[4];
    le(len, ev->n, 8);
    le(c1, dsrt_crc32c_masked(len, 8), 4);
    le(c2, dsrt_crc32c_masked(ev->b, ev->n), 4);
    return fwrite(len, 1, 8, f) == 8 && fwrite(c1, 1, 4, f) == 4 && fwrite(ev->b, 1, ev->n, f) == ev->n &&
                   fwrite(c2, 1, 4, f) == 4
               ? 0
               : -1;
}

/* Event {1: wall_time (double), 2: step (int64), 3: file_version | 5: summary} */
static void tb_event_head(pb *ev, double wall, int64_t step)
{
    uint64_t bits;
    memcpy(&bits, &wall, 8);
    unsigned char w[8];
    le(w, bits, 8);
    pb_key(ev, 1, 1);
    pb_bytes(ev, w, 8);
    if (step >= 0) {
        pb_key(ev, 2, 0);
        pb_varint(ev, (uint64_t)step);
    }
}

static int tb_scalar(FILE *f, const char *tag, float v, int64_t step)
{
    /* Summary.Value {1: tag, 2: simple_value (float)} inside Summary {1: value} */
    pb val = {0}, sum = {0}, ev = {0};
    pb_len(&val, 1, tag, strlen(tag));
    unsigned char fv[4];
    uint32_t bits;
    memcpy(&bits, &v, 4);
    le(fv, bits, 4);
    pb_key(&val, 2, 5);
    pb_bytes(&val, fv, 4);
    pb_len(&sum, 1, val.b, val.n);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tb_event_head(&ev, (double)ts.tv_sec + ts.tv_nsec * 1e-9, step);
    pb_len(&ev, 5, sum.b, sum.n);
    return tb_record(f, &ev);
}

/* ---------------------------------------------------------------- setup */

static int mkdirs(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0777) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(tmp, 0777) && errno != EEXIST ? -1 : 0;
}

/* block {"enabled": true, "output_path": ..., "job_name": ...} -> its log dir, or NULL */
static char *monitor_dir(const json_value *root, const char *block)
{
    const json_value *b = json_object_get(root, block);
    const json_value *en = b && b->type == JSON_OBJECT ? json_object_get(b, "enabled") : NULL;
    if (!en || en->type != JSON_BOOL || !en->u.b)
        return NULL;
    const json_value *op = json_object_get(b, "output_path"), *jn = json_object_get(b, "job_name");
    const char *out = op && op->type == JSON_STRING ? op->u.str.s : "";
    const char *job = jn && jn->type == JSON_STRING ? jn->u.str.s : "DeepSpeedJobName";
    size_t n = strlen(out) + strlen(job) + 2;
    char *d = malloc(n);
    if (d) /* os.path.join(output_path, job_name) */
        snprintf(d, n, "%s%s%s", out, *out && out[strlen(out) - 1] != '/' ? "/" : "", job);
    return d;
}

dsrt_status engine_monitor_init(dsrt_engine *e)
{
    if (e->rank != 0 || !e->config_json)
        return DSRT_STATUS_OK;
    json_error jerr;
    json_doc *doc = json_parse(e->config_json, strlen(e->config_json), &jerr);
    if (!doc)
        return DSRT_STATUS_OK;
    const json_value *root = json_doc_root(doc);
    e->mon.csv_dir = monitor_dir(root, "csv_monitor");
    char *tb = monitor_dir(root, "tensorboard");
    /* comms_logger {"enabled"}: the comm times its collectives; summary at destroy */
    const json_value *cl = json_object_get(root, "comms_logger");
    const json_value *ce = cl && cl->type == JSON_OBJECT ? json_object_get(cl, "enabled") : NULL;
    if (ce && ce->type == JSON_BOOL && ce->u.b && e->comm) {
        e->comm->n_log = 0; /* a comm shared by engines: this engine's collectives */
        e->comm->log_on = true;
        e->mon.comms_log = true;
    }
    /* flops_profiler {"enabled", "profile_step" (1), "output_file" (null: the log)} */
    const json_value *fp = json_object_get(root, "flops_profiler");
    const json_value *fe = fp && fp->type == JSON_OBJECT ? json_object_get(fp, "enabled") : NULL;
    if (fe && fe->type == JSON_BOOL && fe->u.b) {
        const json_value *ps = json_object_get(fp, "profile_step"), *of = json_object_get(fp, "output_file");
        e->prof.step = ps && ps->type == JSON_NUMBER && ps->u.num.d >= 1 ? (int64_t)ps->u.num.d : 1;
        if (of && of->type == JSON_STRING && *of->u.str.s)
            e->prof.output_file = dsrt_strdup(of->u.str.s);
    }
    json_doc_free(doc);
    dsrt_status st = DSRT_STATUS_OK;
    if (e->mon.csv_dir && mkdirs(e->mon.csv_dir))
        st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "csv_monitor: cannot create %s: %s", e->mon.csv_dir,
                            strerror(errno));
    if (!st && tb) {
        char host[128] = "localhost", path[1400];
        gethostname(host, sizeof host - 1);
        if (mkdirs(tb))
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "tensorboard: cannot create %s: %s", tb, strerror(errno));
        snprintf(path, sizeof path, "%s/events.out.tfevents.%lld.%s", tb, (long long)time(NULL), host);
        if (!st && !(e->mon.tb = fopen(path, "wb")))
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "tensorboard: cannot create %s: %s", path, strerror(errno));
        if (!st) {
            pb ev = {0};
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            tb_event_head(&ev, (double)ts.tv_sec + ts.tv_nsec * 1e-9, -1);
            pb_len(&ev, 3, "brain.Event:2", 13);
            if (tb_record(e->mon.tb, &ev) || fflush(e->mon.tb))
                st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "tensorboard: cannot write %s", path);
            else
                dsrt_log(DSRT_LOG_INFO, "tensorboard: writing %s", path);
        }
    }
    free(tb);
    if (!st && e->mon.csv_dir)
        dsrt_log(DSRT_LOG_INFO, "csv_monitor: writing %s/*.csv", e->mon.csv_dir);
    return st;
}

void engine_monitor_free(dsrt_engine *e)
{
    if (e->mon.comms_log && e->comm && e->rank == 0) {
        /* DeepSpeed's comms logger summary (deepspeed.comm.log_summary) */
        char *t = dsrt_comm_log_summary(e->comm);
        if (t)
            dsrt_log(DSRT_LOG_INFO, "comms_logger: %d collectives' kinds and sizes on rank 0%s\n%s", e->comm->n_log,
                     e->world == 1 ? " (one rank: no collective runs)" : "", t);
        free(t);
    }
    if (e->mon.comms_log && e->comm)
        e->comm->log_on = false;
    if (e->mon.tb)
        fclose(e->mon.tb);
    free(e->mon.csv_dir);
    free(e->prof.output_file);
    memset(&e->prof, 0, sizeof e->prof);
    memset(&e->mon, 0, sizeof e->mon);
}

/* Python's str(float): repr, with ".0" on integral values */
static void py_float(char out[40], double v)
{
    char t[32];
    dsrt_format_double(t, v);
    if (!strcmp(t, "NaN"))
        snprintf(out, 40, "nan");
    else if (!strcmp(t, "Infinity") || !strcmp(t, "-Infinity"))
        snprintf(out, 40, "%sinf", t[0] == '-' ? "-" : "");
    else
        snprintf(out, 40, "%s%s", t, strpbrk(t, ".e") ? "" : ".0");
}

static int csv_event(dsrt_engine *e, int k, const char *name, double v, int64_t step)
{
    char fname[128], path[1400], val[40];
    snprintf(fname, sizeof fname, "%s", name);
    for (char *c = fname; *c; c++)
        if (*c == '/' || *c == ' ')
            *c = '_';
    snprintf(path, sizeof path, "%s/%s.csv", e->mon.csv_dir, fname);
    FILE *f = fopen(path, "a");
    if (!f)
        return -1;
    if (!(e->mon.csv_seen & (1u << k))) { /* the header, the first time this run writes the file */
        const char *slash = strrchr(name, '/');
        fprintf(f, "step,%s\r\n", slash ? slash + 1 : name);
        e->mon.csv_seen |= 1u << k;
    }
    py_float(val, v);
    fprintf(f, "%lld,%s\r\n", (long long)step, val); /* Python's csv writer ends rows with \r\n */
    return fclose(f);
}

dsrt_status engine_monitor_step(dsrt_engine *e, const dsrt_step_report *r)
{
    if (e->rank != 0 || (!e->mon.tb && !e->mon.csv_dir))
        return DSRT_STATUS_OK;
    struct {
        const char *name;
        double v;
    } ev[7] = {{"Train/Samples/train_loss", r->loss},
               {"Train/Samples/lr", dsrt_lr_sched_lr(&e->sched)},
               {"Train/Samples/loss_scale", dsrt_loss_scaler_scale(&e->scaler)}};
    int n = e->fp16 ? 3 : 2;
    if (e->wcb.on) { /* and with wall_clock_breakdown, this step's timers */
        static const char *const names[4] = {
            "Train/Samples/elapsed_time_ms_forward", "Train/Samples/elapsed_time_ms_backward",
            "Train/Samples/elapsed_time_ms_backward_allreduce", "Train/Samples/elapsed_time_ms_step"};
        for (int k = 0; k < 4; k++)
            ev[n++] = (typeof(ev[0])){names[k], e->wcb.step[k]};
    }
    int64_t step = e->count.global_samples;
    for (int k = 0; k < n; k++) {
        if (e->mon.tb && tb_scalar(e->mon.tb, ev[k].name, (float)ev[k].v, step))
            return dsrt_error_set(DSRT_STATUS_IO_ERROR, "tensorboard: cannot write its event file: %s",
                                  strerror(errno));
        if (e->mon.csv_dir && csv_event(e, k, ev[k].name, ev[k].v, step))
            return dsrt_error_set(DSRT_STATUS_IO_ERROR, "csv_monitor: cannot write in %s: %s", e->mon.csv_dir,
                                  strerror(errno));
    }
    if (e->mon.tb && fflush(e->mon.tb))
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "tensorboard: cannot write its event file: %s",
                              strerror(errno));
    return DSRT_STATUS_OK;
}

/* ---------------------------------------------------------------- flops_profiler
 *
 * DeepSpeed's profiler hooks every module and prints a per-module table at
 * profile_step. dsrt prints the summary part for that step: the model's
 * parameters, the FLOPs of one forward and of forward + backward (the
 * backward counted as twice the forward, DeepSpeed's convention), the step's
 * time and the rate. GPT-2's FLOPs are counted from its shapes: every matmul
 * (2 per multiply-add, the tied LM head included) and attention's two
 * products over the causal (T x T) scores; a host model's are unknown to the
 * engine, so only its parameters and time are printed. */
void engine_profiler_begin(dsrt_engine *e)
{
    if (e->rank != 0 || e->prof.step <= 0 || e->count.global_steps + 1 != e->prof.step)
        return;
    (void)e->be->ops->sync(e->be);
    e->prof.t0 = dsrt_now();
}

dsrt_status engine_profiler_end(dsrt_engine *e)
{
    if (e->rank != 0 || e->prof.step <= 0 || e->count.global_steps != e->prof.step || e->prof.t0 <= 0)
        return DSRT_STATUS_OK;
    (void)e->be->ops->sync(e->be);
    double dt = dsrt_now() - e->prof.t0;
    e->prof.t0 = 0;
    double fwd = 0;
    if (e->model)
        fwd = dsrt_model_forward_flops(&e->mcfg, e->B * e->gas, e->T);
    char text[1024];
    int n = snprintf(text, sizeof text,
                     "-------------------------- DeepSpeed Flops Profiler (dsrt summary) --------------------------\n"
                     "Profile Summary at step %lld:\n"
                     "world size:                                   %d\n"
                     "batch size per GPU:                           %d\n"
                     "params per GPU:                               %zu\n",
                     (long long)e->prof.step, e->world, e->B, e->n);
    if (fwd > 0)
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "fwd flops per GPU:                            %.4g G (%d micro-batches)\n"
                      "fwd+bwd flops per GPU:                        %.4g G (bwd = 2 x fwd)\n"
                      "iter latency:                                 %.2f ms\n"
                      "FLOPS per GPU = 3 x fwd flops / iter latency: %.4g TFLOPS\n",
                      fwd / 1e9, e->gas, 3 * fwd / 1e9, dt * 1e3, 3 * fwd / dt / 1e12);
    else
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "iter latency:                                 %.2f ms (a host model: FLOPs not counted)\n",
                      dt * 1e3);
    snprintf(text + n, sizeof text - (size_t)n,
             "------------------------------------------------------------------------------------------------\n");
    if (e->prof.output_file) {
        /* a profile that cannot be written does not stop the training: said,
         * and printed to the log instead (DeepSpeed would create the folder;
         * dsrt does not create folders outside the run's own) */
        FILE *f = fopen(e->prof.output_file, "w");
        int ok = f && fputs(text, f) != EOF;
        if (f && fclose(f))
            ok = 0;
        if (ok) {
            dsrt_log(DSRT_LOG_INFO, "flops profiler: step %lld written to %s", (long long)e->prof.step,
                     e->prof.output_file);
            return DSRT_STATUS_OK;
        }
        dsrt_log(DSRT_LOG_WARNING, "flops_profiler.output_file %s: %s; the summary goes to the log", e->prof.output_file,
                 strerror(errno));
    }
    dsrt_log(DSRT_LOG_INFO, "%s", text);
    return DSRT_STATUS_OK;
}
