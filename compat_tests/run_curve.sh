#!/usr/bin/env bash
# One reference-curve regression case: dsrt-train on the shared corpus under
# compat_tests/curves/<case>.json, against <case>.csv (PyTorch, see
# curves/README.md). Skips (77) when the shared corpus is absent.
#   run_curve.sh DSRT_TRAIN SOURCE_DIR CASE RTOL [extra dsrt-train options]
set -euo pipefail
train=$1 src=$2 case=$3 rtol=$4
shift 4
# "deepspeed/NAME": the case's config against the curve real DeepSpeed made (curves/deepspeed/)
config=${case#deepspeed/}
shared=${DSRT_SHARED_DIR:-$src/../shared}
corpus=$shared/data/tinyshakespeare.txt
if [ ! -f "$corpus" ]; then
    echo "SKIP: $corpus not found (set DSRT_SHARED_DIR to the project's shared folder)"
    exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$train" --deepspeed_config "$src/compat_tests/curves/$config.json" --model gpt2-tiny \
    --data "$corpus" --steps 200 --seq_len 64 --loss_csv "$out/$config.csv" \
    --reference_curve "$src/compat_tests/curves/$case.csv" --curve_rtol "$rtol" "$@"
