/* Fused classifier: softmax + cross entropy (+ its gradient) over the logits
 * (N,V), one row at a time, never storing the probabilities.
 *   losses[i] = logsumexp(logits[i]) - logits[i][target[i]]   (0 when target == -100)
 *   grad:     logits[i] <- (softmax(logits[i]) - onehot(target[i])) * dloss
 *             (a zero row when the target is ignored)
 * dloss carries the loss scale and the 1/(number of counted targets) of the
 * mean, so the gradient is that of the scaled mean loss. */
#include <math.h>

#include "kernels/common/softmax.h"
#include "kernels/cpu/cpu_common.h"

dsrt_status cpu_classifier_forward(dsrt_backend *be, float *losses, void *logits,
                                   const int32_t *targets, int N, int V, float dloss, int grad)
{
    size_t n = (size_t)N * V;
    dsrt_status st = cpu_check_reserved(be, n, "classifier_forward");
    if (st)
        return st;
    float *lg = cpu_out(be, 0, logits, n, true);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        float *row = lg + (size_t)i * V;
        int tgt = targets[i];
        if (tgt == DSRT_IGNORE_INDEX) {
            losses[i] = 0.0f;
            if (grad)
                for (int j = 0; j < V; j++)
                    row[j] = 0.0f;
            continue;
        }
        float mx = -INFINITY;
        for (int j = 0; j < V; j++)
            mx = row[j] > mx ? row[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < V; j++)
            sum += expf(row[j] - mx);
        float lse = logf(sum) + mx;
        losses[i] = lse - row[tgt];
        if (grad) {
            float inv = 1.0f / sum;
            for (int j = 0; j < V; j++)
                row[j] = dsrt_xent_grad(expf(row[j] - mx) * inv, j == tgt, dloss);
        }
    }
    if (grad)
        cpu_out_put(be, logits, lg, n);
    return DSRT_STATUS_OK;
}
