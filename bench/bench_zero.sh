#!/usr/bin/env bash
# ZeRO stages 1 and 2 on 1, 2 and 4 MPI ranks of this machine (bench_zero.c):
# gpt2-tiny step time with overlap_comm true and false, the same step's
# collectives alone, the fraction of them the overlap hides, and the per-rank
# model-state memory of stages 0/1/2 against spec 7.5's formula. One table.
#   bench/bench_zero.sh [BUILD_DIR] [STEPS]     (run from the repository root; STEPS: timed
#   steps per engine, default 30: the step-to-step spread is of the order of the communication)
# Environment: DTYPES (default fp32,bf16), WARMUP (3), BUCKET (50000 elements),
# RANKS (default "1 2 4"), LATENCY_US (an emulated wire delay per collective, in
# microseconds, via DSRT_COMM_LATENCY_US: on one machine the collectives are
# memory copies on the same cores as the compute, so only waiting can be hidden;
# this measures how much of a network's waiting the overlap hides).
# Every rank runs one OpenMP thread.
set -euo pipefail
build=${1:-build} steps=${2:-30}
dtypes=${DTYPES:-fp32,bf16} warmup=${WARMUP:-3} bucket=${BUCKET:-50000} ranks=${RANKS:-"1 2 4"}
bin=$build/bench/bench_zero
[ -x "$bin" ] || { echo "bench_zero: $bin not built (cmake --build $build --target bench_zero)"; exit 1; }
command -v mpiexec > /dev/null || { echo "bench_zero: mpiexec not found"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1
latency=${LATENCY_US:-0}
[ "$latency" != 0 ] && export DSRT_COMM_LATENCY_US=$latency
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
t0=$(date +%s)
for n in $ranks; do
    mpiexec -n "$n" --oversubscribe "$bin" --steps "$steps" --warmup "$warmup" \
        --bucket "$bucket" --dtypes "$dtypes" >> "$raw"
done
t1=$(date +%s)

echo "== ZeRO data parallelism on the CPU: gpt2-tiny, micro batch 4 x 128, gradient_accumulation_steps 1"
echo "mpiexec -n N --oversubscribe ($(mpiexec --version 2>/dev/null | head -1)), $(getconf _NPROCESSORS_ONLN) vCPUs," \
     "OMP_NUM_THREADS=1 per rank, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}," \
     "emulated latency per collective: ${latency} us"
grep -m1 '^info' "$raw" | sed -E 's/.*openblas="([^"]*)".*/OpenBLAS: \1/'
awk '
function kv(line, a,   n, i, f, p) {
    delete a
    n = split(line, f, " ")
    for (i = 2; i <= n; i++) { p = index(f[i], "="); if (p) a[substr(f[i], 1, p - 1)] = substr(f[i], p + 1) }
}
$1 == "step" {
    kv($0, a)
    k = a["ranks"] SUBSEP a["dtype"] SUBSEP a["stage"]
    ov[k] = a["overlap_ms"]; no[k] = a["no_overlap_ms"]; mov[k] = a["overlap_mad_ms"]; mno[k] = a["no_overlap_mad_ms"]
    pd[k] = a["paired_diff_ms"]; cm[k] = a["comm_ms"]; ar[k] = a["allreduce_ms"]; nm[k] = a["norm_ms"]; ag[k] = a["allgather_ms"]
    agw[k] = a["ag_waited_ms"]; magw[k] = a["ag_waited_mad_ms"]
    if (!(a["dtype"] SUBSEP a["stage"] in seen)) { seen[a["dtype"] SUBSEP a["stage"]] = 1; order[++nord] = a["dtype"] SUBSEP a["stage"] }
    if (!(a["ranks"] in rs)) { rs[a["ranks"]] = 1; rlist[++nr] = a["ranks"] }
    info = sprintf("%s parameters, %s tensors; reduce_bucket_size %s elements = %s buckets per step; %s warm-up + median of %s timed steps", a["params"], a["tensors"], a["bucket_elems"], a["buckets"], a["warmup"], a["steps"])
}
$1 == "mem" {
    kv($0, a)
    nmem++
    for (x in a) M[nmem, x] = a[x]
}
END {
    print info
    print ""
    print "-- step time (ms, median +- median absolute deviation; timed on rank 0)"
    print "   comm alone = the step'"'"'s collectives with no compute: bucket all-reduces + norm all-reduce + all-gather"
    print "   hidden = (no_overlap - overlap) / comm, clamped to [0,1] (unclamped in brackets); noise = (MAD on + MAD off) / comm"
    print "   paired = median over the timed steps of (no_overlap - overlap) of the two steps run back to back, / comm (unclamped)"
    print "   1-rank = the same step on one rank (no communication: compute only), mean of its overlap on/off medians"
    printf "%-5s %-5s %-5s | %-15s %-15s | %-28s | %-19s %-6s %-6s | %-9s\n", "ranks", "dtype", "stage", "overlap on", "overlap off", "comm alone (ar+norm+ag)", "hidden", "noise", "paired", "1-rank"
    for (o = 1; o <= nord; o++) {
        split(order[o], ds, SUBSEP)
        one = (1 SUBSEP order[o]) in ov ? (ov[1 SUBSEP order[o]] + no[1 SUBSEP order[o]]) / 2 : 0
        for (r = 1; r <= nr; r++) {
            k = rlist[r] SUBSEP order[o]
            if (!(k in ov)) continue
            if (rlist[r] == 1) {
                hid = "-"; noise = "-"; pair = "-"
            } else {
                f = cm[k] > 0 ? (no[k] - ov[k]) / cm[k] : 0
                c = f < 0 ? 0 : f > 1 ? 1 : f
                hid = sprintf("%.2f (%.2f)", c, f)
                noise = cm[k] > 0 ? sprintf("%.2f", (mov[k] + mno[k]) / cm[k]) : "-"
                pair = cm[k] > 0 ? sprintf("%.2f", pd[k] / cm[k]) : "-"
            }
            printf "%-5s %-5s %-5s | %7.1f +- %-4.1f %7.1f +- %-4.1f | %6.2f (%5.2f+%4.2f+%5.2f) | %-19s %-6s %-6s | %9s\n",
                rlist[r], ds[1], ds[2], ov[k], mov[k], no[k], mno[k], cm[k], ar[k], nm[k], ag[k], hid, noise, pair,
                (one > 0 ? sprintf("%.1f", one) : "-")
        }
    }
    print ""
    print "-- each overlap apart: a third engine with overlap_comm whose all-gather is waited for at the step"
    print "   (DSRT_ALLGATHER_WAIT=1, as DeepSpeed waits), so only the reduction overlaps the backward"
    print "   reduction hidden = (overlap off - ag waited) / (ar + norm); all-gather hidden = (ag waited - overlap on) / ag"
    printf "%-5s %-5s %-5s | %-15s | %-16s %-16s\n", "ranks", "dtype", "stage", "ag waited", "reduction hidden", "all-gather hidden"
    for (o = 1; o <= nord; o++) {
        split(order[o], ds, SUBSEP)
        for (r = 1; r <= nr; r++) {
            k = rlist[r] SUBSEP order[o]
            if (!(k in agw) || agw[k] == "" || rlist[r] == 1) continue
            hr = (ar[k] + nm[k]) > 0 ? (no[k] - agw[k]) / (ar[k] + nm[k]) : 0
            ha = ag[k] > 0 ? (agw[k] - ov[k]) / ag[k] : 0
            printf "%-5s %-5s %-5s | %7.1f +- %-4.1f | %-16.2f %-16.2f\n", rlist[r], ds[1], ds[2], agw[k], magw[k], hr, ha
        }
    }
    print ""
    print "-- per-rank model-state memory, fp16 + AdamW, gpt2-tiny (seq_len " M[1, "seq"] "), from engine_info on rank 0 (bytes)"
    print "   model state = params + grads + masters + moments; formula (spec 7.5): stage 0 16 psi, stage 1 (4 + 12/N) psi, stage 2 (2 + 14/N) psi"
    printf "%-5s %-5s | %8s %8s %8s %8s %8s %8s %9s | %9s %9s %7s %7s %8s\n", "stage", "ranks", "params", "grads", "grad_tr", "masters", "moments", "buckets", "total", "state", "formula", "B/psi", "formula", "ratio"
    for (s = 0; s <= 2; s++)
        for (i = 1; i <= nmem; i++) {
            if (M[i, "stage"] != s) continue
            printf "%-5s %-5s | %8s %8s %8s %8s %8s %8s %9s | %9s %9s %7.4f %7.4f %8.6f\n", s, M[i, "ranks"],
                M[i, "bytes_params"], M[i, "bytes_grads"], M[i, "bytes_grad_transient"], M[i, "bytes_masters"],
                M[i, "bytes_moments"], M[i, "bytes_buckets"], M[i, "bytes_total"], M[i, "model_state"],
                M[i, "formula"], M[i, "measured_coef"], M[i, "formula_coef"], M[i, "ratio"]
        }
}' "$raw"
echo ""
echo "-- raw records ($((t1 - t0)) s for all runs)"
cat "$raw"
