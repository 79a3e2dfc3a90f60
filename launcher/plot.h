/* A run's curves as one self-contained SVG (dsrt-train --plot FILE.svg): the
 * training loss with the held-out loss and a reference curve over it,
 * skipped steps marked, the learning rate, and the loss scale when it
 * moved. No scripts, fonts or files outside it: any browser opens it. */
#ifndef DSRT_LAUNCHER_PLOT_H
#define DSRT_LAUNCHER_PLOT_H

#include <stddef.h>

typedef struct plot_step {
    long step;
    double loss, lr, scale;
    int skipped;
} plot_step;

typedef struct plot_xy {
    double x, y;
} plot_xy;

typedef struct plot_data {
    const char *title;
    plot_step *steps;
    size_t n, cap;
    plot_xy *eval; /* (step, held-out loss) */
    size_t n_eval, cap_eval;
    plot_xy *ref;  /* (step, reference loss) */
    size_t n_ref;
} plot_data;

/* 0, or -1 when out of memory (the plot then misses the point) */
int plot_add_step(plot_data *d, long step, double loss, double lr, double scale, int skipped);
int plot_add_eval(plot_data *d, long step, double loss);
/* Writes the SVG (atomically: a temporary file renamed). 0, or -1 with errno. */
int plot_write_svg(const char *path, const plot_data *d);
void plot_free(plot_data *d);

#endif
