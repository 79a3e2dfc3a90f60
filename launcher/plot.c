/* dsrt-train --plot: the run's curves as SVG (plot.h). */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int plot_add_step(plot_data *d, long step, double loss, double lr, double scale, int skipped)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 256;
        plot_step *p = realloc(d->steps, cap * sizeof *p);
        if (!p)
            return -1;
        d->steps = p, d->cap = cap;
    }
    d->steps[d->n++] = (plot_step){step, loss, lr, scale, skipped};
    return 0;
}

int plot_add_eval(plot_data *d, long step, double loss)
{
    if (d->n_eval == d->cap_eval) {
        size_t cap = d->cap_eval ? 2 * d->cap_eval : 32;
        plot_xy *p = realloc(d->eval, cap * sizeof *p);
        if (!p)
            return -1;
        d->eval = p, d->cap_eval = cap;
    }
    d->eval[d->n_eval++] = (plot_xy){(double)step, loss};
    return 0;
}

void plot_free(plot_data *d)
{
    free(d->steps);
    free(d->eval);
    free(d->ref);
    memset(d, 0, sizeof *d);
}

/* ---------------------------------------------------------------- drawing */

enum { W = 960, PANEL_H = 200, LEFT = 80, RIGHT = 30, TOP = 50, GAP = 50 };

typedef struct panel {
    double x0, x1, y0, y1; /* data ranges */
    int top;               /* pixel row of the panel's top */
    int logy;              /* y in log2 */
} panel;

static double px(const panel *p, double x)
{
    return LEFT + (x - p->x0) / (p->x1 > p->x0 ? p->x1 - p->x0 : 1) * (W - LEFT - RIGHT);
}

static double py(const panel *p, double y)
{
    double v = p->logy ? log2(y > 0 ? y : 1e-300) : y;
    double a = p->logy ? log2(p->y0) : p->y0, b = p->logy ? log2(p->y1) : p->y1;
    return p->top + PANEL_H - (v - a) / (b > a ? b - a : 1) * PANEL_H;
}

static void axes(FILE *f, const panel *p, const char *label)
{
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", LEFT,
            p->top, W - LEFT - RIGHT, PANEL_H);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"13\" font-weight=\"bold\">%s</text>\n", LEFT, p->top - 8, label);
    for (int k = 0; k <= 4; k++) { /* five y ticks */
        double t = k / 4.0, v;
        if (p->logy)
            v = exp2(log2(p->y0) + t * (log2(p->y1) - log2(p->y0)));
        else
            v = p->y0 + t * (p->y1 - p->y0);
        double y = py(p, v);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>\n", LEFT, y, W - RIGHT, y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n", LEFT - 6, y + 4,
                v);
    }
    for (int k = 0; k <= 5; k++) { /* six x ticks */
        double v = p->x0 + k / 5.0 * (p->x1 - p->x0), x = px(p, v);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%.0f</text>\n", x,
                p->top + PANEL_H + 14, v);
    }
}

static void polyline(FILE *f, const panel *p, const double *xs, const double *ys, size_t n, size_t stride_x,
                     size_t stride_y, const char *color, const char *extra)
{
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.3\" %s points=\"", color, extra);
    for (size_t i = 0; i < n; i++) {
        double x = *(const double *)((const char *)xs + i * stride_x);
        double y = *(const double *)((const char *)ys + i * stride_y);
        if (isfinite(y))
            fprintf(f, "%.1f,%.1f ", px(p, x), py(p, y));
    }
    fprintf(f, "\"/>\n");
}

static void range(panel *p, double v)
{
    if (!isfinite(v))
        return;
    if (v < p->y0)
        p->y0 = v;
    if (v > p->y1)
        p->y1 = v;
}

static void xml_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

int plot_write_svg(const char *path, const plot_data *d)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    double *xs = malloc((d->n ? d->n : 1) * sizeof *xs);
    if (!xs) {
        fclose(f);
        return -1;
    }
    for (size_t i = 0; i < d->n; i++)
        xs[i] = (double)d->steps[i].step;
    double x0 = d->n ? xs[0] : 0, x1 = d->n ? xs[d->n - 1] : 1;
    if (x1 <= x0)
        x1 = x0 + 1;
    int scale_moves = 0;
    for (size_t i = 0; i < d->n; i++)
        scale_moves |= d->steps[i].scale != d->steps[0].scale;
    int panels = 2 + scale_moves;
    int H = TOP + panels * (PANEL_H + GAP) + 20;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"15\">", LEFT);
    xml_text(f, d->title);
    fprintf(f, "</text>\n");

    /* loss: training, held-out, reference; skipped steps as red ticks */
    panel p = {x0, x1, INFINITY, -INFINITY, TOP, 0};
    for (size_t i = 0; i < d->n; i++)
        range(&p, d->steps[i].loss);
    for (size_t i = 0; i < d->n_eval; i++)
        range(&p, d->eval[i].y);
    for (size_t i = 0; i < d->n_ref; i++)
        if (d->ref[i].x >= x0 && d->ref[i].x <= x1)
            range(&p, d->ref[i].y);
    if (!(p.y1 >= p.y0))
        p.y0 = 0, p.y1 = 1;
    if (p.y1 == p.y0)
        p.y1 = p.y0 + 1;
    axes(f, &p, "loss");
    size_t r0 = 0, r1 = 0; /* the reference over the steps that ran */
    while (r0 < d->n_ref && d->ref[r0].x < x0)
        r0++;
    for (r1 = r0; r1 < d->n_ref && d->ref[r1].x <= x1;)
        r1++;
    if (r1 > r0)
        polyline(f, &p, &d->ref[r0].x, &d->ref[r0].y, r1 - r0, sizeof(plot_xy), sizeof(plot_xy), "#999",
                 "stroke-dasharray=\"5,3\"");
    polyline(f, &p, xs, &d->steps[0].loss, d->n, sizeof(double), sizeof(plot_step), "#1f77b4", "");
    for (size_t i = 0; i < d->n_eval; i++)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"#ff7f0e\"/>\n", px(&p, d->eval[i].x),
                py(&p, d->eval[i].y));
    size_t skipped = 0;
    for (size_t i = 0; i < d->n; i++)
        if (d->steps[i].skipped) {
            double x = px(&p, xs[i]);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#d62728\"/>\n", x,
                    p.top + PANEL_H - 8, x, p.top + PANEL_H);
            skipped++;
        }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" xml:space=\"preserve\"><tspan fill=\"#1f77b4\">"
               "&#8212; training</tspan>%s%s<tspan fill=\"#d62728\">    | skipped steps: %zu</tspan></text>\n",
            LEFT + 50, p.top - 8, d->n_eval ? "<tspan fill=\"#ff7f0e\">    &#9679; held-out</tspan>" : "",
            r1 > r0 ? "<tspan fill=\"#777\">    - - reference</tspan>" : "", skipped);

    /* lr */
    panel q = {x0, x1, 0, -INFINITY, TOP + PANEL_H + GAP, 0};
    for (size_t i = 0; i < d->n; i++)
        range(&q, d->steps[i].lr);
    if (!(q.y1 > q.y0))
        q.y1 = q.y0 + (q.y0 ? fabs(q.y0) : 1);
    axes(f, &q, "learning rate");
    polyline(f, &q, xs, &d->steps[0].lr, d->n, sizeof(double), sizeof(plot_step), "#2ca02c", "");

    /* loss scale, log2 axis */
    if (scale_moves) {
        panel s = {x0, x1, INFINITY, -INFINITY, TOP + 2 * (PANEL_H + GAP), 1};
        for (size_t i = 0; i < d->n; i++)
            if (d->steps[i].scale > 0)
                range(&s, d->steps[i].scale);
        if (!(s.y1 > s.y0))
            s.y1 = s.y0 * 2;
        axes(f, &s, "loss scale (log2)");
        polyline(f, &s, xs, &d->steps[0].scale, d->n, sizeof(double), sizeof(plot_step), "#9467bd", "");
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#666\">optimizer step</text>\n</svg>\n", W / 2,
            H - 6);
    free(xs);
    if (fclose(f))
        return -1;
    return rename(tmp, path);
}
