/* Fused classifier: softmax + cross entropy (+ its gradient) over the logits
 * (N,V), one row at a time, never storing the probabilities.
 *   losses[i] = logsumexp(logits[i]) - logits[i][target[i]]   (0 when target == -100)
 *   grad:     logits[i] <- (softmax(logits[i]) - onehot(target[i])) * dloss
 *             (a zero row when the target is ignored)
 * dloss carries the loss scale and the 1/(number of counted targets) of the
 * mean, so the gradient is that of the scaled mean loss. 16-bit logits are
 * widened a row at a time into the thread's fp32 row (reserve()d) and the
 * gradient row rounded once on the way back. */
#include <math.h>

#include "kernels/common/softmax.h"
#include <omp.h>

#include "kernels/cpu/cpu_common.h"

dsrt_status cpu_classifier_forward(dsrt_backend *be, float *losses, void *logits,
                                   const int32_t *targets, int N, int V, float dloss, int grad)
{
    cpu_backend *cb = cpu_of(be);
    dsrt_dtype dt = be->dt;
    if (dt != DSRT_F32 && (!cb->cls_work || V > cb->shapes.V))
        return dsrt_error_set(DSRT_STATUS_INTERNAL,
                              "cpu backend: classifier_forward over %d classes exceeds the "
                              "reserved shapes; call reserve() with the largest shapes",
                              V);
#pragma omp parallel for schedule(static) num_threads(dt == DSRT_F32 ? omp_get_max_threads() : cb->threads)
    for (int i = 0; i < N; i++) {
        float *row;
        if (dt == DSRT_F32)
            row = (float *)logits + (size_t)i * V;
        else {
            row = cb->cls_work + (size_t)omp_get_thread_num() * cb->shapes.V;
            cpu_convert_in(dt, row, (const uint16_t *)logits + (size_t)i * V, (size_t)V);
        }
        int tgt = targets[i];
        if (tgt == DSRT_IGNORE_INDEX) {
            losses[i] = 0.0f;
            if (grad)
                for (int j = 0; j < V; j++)
                    row[j] = 0.0f;
            if (grad && dt != DSRT_F32)
                cpu_convert_out(dt, (uint16_t *)logits + (size_t)i * V, row, (size_t)V);
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
            if (dt != DSRT_F32)
                cpu_convert_out(dt, (uint16_t *)logits + (size_t)i * V, row, (size_t)V);
        }
    }
    return DSRT_STATUS_OK;
}
