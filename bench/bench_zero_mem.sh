#!/usr/bin/env bash
# Per-rank peak memory and bytes on the wire of ZeRO stages 0/1/2, measured
# (bench_zero_mem.c), against DeepSpeed's formula for mixed-precision Adam
# (ZeRO paper, Rajbhandari et al. 2020, section 5; DeepSpeed's docs): stage 0
# 16Ψ, stage 1 4Ψ + 12Ψ/N, stage 2 2Ψ + 14Ψ/N bytes, plus the activations and
# the reduction buckets; and the traffic against (N-1)/N of the gradient bytes
# (reduce-scatter) plus (N-1)/N of the weight bytes (all-gather).
#   bench/bench_zero_mem.sh [BUILD_DIR]        (from the repository root)
# Environment: MODELS (default "gpt2-tiny gpt2"), RANKS ("1 2 4"), STAGES ("0 1 2"),
# DTYPE (fp16), SEQ (64), BUCKET (5000000 elements), STEPS (3), WARM (1: a throw-away gpt2-tiny
# step first, its resident growth shown as `runtime`); RAW=file keeps the records (appended).
set -euo pipefail
build=${1:-build}
bin=$build/bench/bench_zero_mem
[ -x "$bin" ] || { echo "bench_zero_mem: $bin not built (cmake --build $build --target bench_zero_mem)"; exit 1; }
command -v mpiexec > /dev/null || { echo "bench_zero_mem: mpiexec not found"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1
# rings for every collective, so each byte on the wire is counted where it is
# sent (MPI's own collectives move bytes by algorithms of MPI's choosing,
# which dsrt does not see); memory does not depend on it
export DSRT_MPI_COLLECTIVES=${DSRT_MPI_COLLECTIVES:-ring}
# 4 KiB pages for the backend's big blocks: with transparent huge pages a
# partly touched block is resident in 2 MiB steps, which moves a small
# model's peak by several MB from run to run (DSRT_HUGEPAGES=1 measures with them)
export DSRT_HUGEPAGES=${DSRT_HUGEPAGES:-0}
models=${MODELS:-"gpt2-tiny gpt2"} ranks=${RANKS:-"1 2 4"} stages=${STAGES:-"0 1 2"}
dtype=${DTYPE:-fp16} seq=${SEQ:-64} bucket=${BUCKET:-5000000} steps=${STEPS:-3}
raw=${RAW:-$(mktemp)}
[ -n "${RAW:-}" ] || trap 'rm -f "$raw"' EXIT
t0=$(date +%s)
[ -n "${REPORT_ONLY:-}" ] && models=""   # RAW=file REPORT_ONLY=1: tabulate an earlier run's records
for m in $models; do
    for n in $ranks; do
        for s in $stages; do
            mpiexec -n "$n" --oversubscribe "$bin" --model "$m" --stage "$s" --dtype "$dtype" --seq "$seq" \
                --bucket "$bucket" --steps "$steps" >> "$raw"
        done
    done
done
t1=$(date +%s)
echo "== ZeRO per-rank memory and traffic, measured: $dtype (DTYPE), micro batch 1 x $seq, reduce_bucket_size $bucket, overlap_comm true"
echo "mpiexec -n N ($(mpiexec --version 2>/dev/null | head -1)), $(getconf _NPROCESSORS_ONLN) vCPUs, host comm over MPI" \
     "(DSRT_MPI_COLLECTIVES=$DSRT_MPI_COLLECTIVES), DSRT_HUGEPAGES=$DSRT_HUGEPAGES; peak = VmHWM - VmRSS before engine_create (per rank; the worst rank shown)"
awk '
function kv(line, a,   n, i, f, p) {
    delete a
    n = split(line, f, " ")
    for (i = 2; i <= n; i++) { p = index(f[i], "="); if (p) a[substr(f[i], 1, p - 1)] = substr(f[i], p + 1) }
}
$1 == "mem" {
    kv($0, a)
    k = a["model"] SUBSEP a["ranks"] SUBSEP a["stage"]
    if (!(k in peak) || a["peak"] + 0 > peak[k] + 0) {
        peak[k] = a["peak"]; tot[k] = a["info_total"]; act[k] = a["activations"]; bk[k] = a["info_buckets"]
        tr[k] = a["info_transient"]; psi[k] = a["params"]; rt[k] = a["runtime"]
        ds[k] = a["dtype"]
    }
    # traffic: the mean over ranks (a rank sends the buckets less its own blocks, which vary)
    sent[k] += a["sent_per_step"] / a["ranks"]
    if (!(k in seen)) { seen[k] = 1; order[++no] = k }
}
END {
    printf "%-9s %-5s %-5s | %9s %9s %9s %9s | %7s %7s | %9s %9s | %10s %10s %6s | %7s\n", "model", "ranks", "stage", "peak MB", "formula", "+act+bkt", "transient", "ratio", "vs info", "info MB", "act MB", "sent MB", "formula", "ratio", "runtime"
    for (i = 1; i <= no; i++) {
        k = order[i]; split(k, f, SUBSEP); N = f[2]; s = f[3]; P = psi[k]
        # 16-bit: 2-byte weights and gradients, fp32 masters + Adam moments (K = 12);
        # fp32: 4-byte weights and gradients, moments 8, and at stages 1/2 the
        # own fp32 copy of the optimizer partition (single_partition_of_fp32_groups in DeepSpeed)
        pb = ds[k] == "fp32" ? 4 : 2
        form = s == 0 ? 16 * P : s == 1 ? (2 * pb + 12 / N) * P : (pb + (pb + 12) / N) * P
        want = form + act[k] + bk[k]
        # traffic per step: stage 0 all-reduce 2(N-1)/N x grads; stages 1/2 reduce-scatter (N-1)/N x grads + all-gather (N-1)/N x weights (2 bytes each in fp16)
        tf = N == 1 ? 0 : 2 * (N - 1) / N * pb * P
        printf "%-9s %-5s %-5s | %9.1f %9.1f %9.1f %9.1f | %7.3f %7.3f | %9.1f %9.1f | %10.2f %10.2f %6.3f | %7.1f\n", f[1], N, s, peak[k] / 1e6, form / 1e6, want / 1e6, tr[k] / 1e6, peak[k] / want, peak[k] / (tot[k] + act[k]), tot[k] / 1e6, act[k] / 1e6, sent[k] / 1e6, tf / 1e6, (tf > 0 ? sent[k] / tf : 0), rt[k] / 1e6
    }
    print ""
    print "formula: DeepSpeed mixed-precision Adam bytes (16Ψ / 4Ψ+12Ψ/N / 2Ψ+14Ψ/N); +act+bkt adds the activations of 1 x seq and the buckets engine_info reports"
    print "transient: what dsrt holds beyond the formula (stage 1: none, the reduced partition lives in the gradient buffer; stage 2: own buffers and the staging of parameters larger than a bucket; GPT-2s tied wte needs neither when a bucket holds one row)"
    print "ratio = peak / (formula + act + buckets); vs info = peak / (engine_info total + activations)"
    print "runtime: what a throw-away gpt2-tiny step left resident before the measured engine was made (OpenBLAS, OpenMP, MPI and comm-thread buffers: the process, not the model; WARM=0 measures without it and counts it in the peak)"
    print "sent: bytes a rank put on the wire per optimizer step (counted by the host comm, mean over ranks); formula: stage 0 all-reduce 2(N-1)/N of the gradient bytes, stages 1/2 reduce-scatter (N-1)/N of the gradients + all-gather (N-1)/N of the weights"
    # the gradient bytes stage 2 no longer holds: (1 - 1/N) of them, 2 bytes a parameter in 16 bits, 4 in fp32
    for (i = 1; i <= no; i++) { k = order[i]; split(k, f, SUBSEP); if (f[2] == 2 && f[3] == 1) s1[f[1]] = peak[k]; if (f[2] == 2 && f[3] == 2) { s2[f[1]] = peak[k]; p2[f[1]] = psi[k] * (ds[k] == "fp32" ? 4 : 2) / 2 } }
    for (m in s2) if (m in s1) printf "%s at 2 ranks: stage 1 - stage 2 = %.1f MB measured, gradient bytes x (1-1/N) = %.1f MB wanted (ratio %.2f)\n", m, (s1[m] - s2[m]) / 1e6, p2[m] / 1e6, (s1[m] - s2[m]) / p2[m]
}' "$raw"
echo "($(( t1 - t0 )) s)"
