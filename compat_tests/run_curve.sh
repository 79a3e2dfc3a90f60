#!/usr/bin/env bash
# One reference-curve regression case: dsrt-train on the shared corpus under
# compat_tests/curves/<config>.json, against the curve <case>.csv ("deepspeed/NAME":
# the one real DeepSpeed made, see curves/README.md). Skips (77) when the
# shared corpus is absent, or, for a case on several ranks, when mpiexec is.
#   run_curve.sh DSRT_TRAIN SOURCE_DIR CASE RTOL [extra dsrt-train options]
# DSRT_CURVE_RANKS=N runs it on N MPI ranks (default 1).
set -euo pipefail
train=$1 src=$2 case=$3 rtol=$4
shift 4
config=${case#deepspeed/}
shared=${DSRT_SHARED_DIR:-$src/../shared}
corpus=$shared/data/tinyshakespeare.txt
if [ ! -f "$corpus" ]; then
    echo "SKIP: $corpus not found (set DSRT_SHARED_DIR to the project's shared folder)"
    exit 77
fi
ranks=${DSRT_CURVE_RANKS:-1}
launch=()
if [ "$ranks" -gt 1 ]; then
    command -v mpiexec > /dev/null || { echo "SKIP: $case needs mpiexec ($ranks ranks)"; exit 77; }
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    export OMP_NUM_THREADS=1
    launch=(mpiexec -n "$ranks" --oversubscribe)
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"${launch[@]}" "$train" --deepspeed_config "$src/compat_tests/curves/$config.json" --model gpt2-tiny \
    --data "$corpus" --steps 200 --seq_len 64 --loss_csv "$out/$config.csv" \
    --reference_curve "$src/compat_tests/curves/$case.csv" --curve_rtol "$rtol" "$@"
