#!/bin/sh
# Regenerates the committed GPT-2 references <case>.h5 in this folder.
# usage: compat_tests/reference/make_references.sh BUILD_DIR
# Needs BUILD_DIR/tests/gpt2_dump_init (dsrt) and a python3 with torch, h5py, numpy
# (and ideally transformers); set PYTHON to choose the interpreter.
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi
BUILD=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"  # paths below are relative to the repository root, as recorded in "command"
HERE=compat_tests/reference
PYTHON=${PYTHON:-python3}
DUMP="$BUILD/tests/gpt2_dump_init"
[ -x "$DUMP" ] || { echo "$0: $DUMP not found or not executable" >&2; exit 1; }
WDIR="$BUILD/compat_reference_weights"  # dsrt's initial weights, kept for inspection
mkdir -p "$WDIR"
INIT_SEED=1234

# run_case NAME MODEL_CONFIG B T INPUT_SEED [--mask]
run_case() {
    case_name=$1 config=$2 b=$3 t=$4 iseed=$5
    shift 5
    "$DUMP" "$config" "$INIT_SEED" "$WDIR/$case_name.weights.h5"
    "$PYTHON" "$HERE/gen_gpt2_reference.py" --weights "$WDIR/$case_name.weights.h5" \
        --case "$case_name" --batch "$b" --seq "$t" --input-seed "$iseed" "$@" \
        --out "$HERE/$case_name.h5"
}

run_case tiny      configs/model/gpt2-tiny.json      2 64 101
run_case odd       $HERE/cases/gpt2-odd.json         3 37 202
run_case mask      configs/model/gpt2-tiny.json      2 50 303 --mask
run_case layer124m $HERE/cases/gpt2-124m-layer.json  2 64 404
ls -l $HERE/tiny.h5 $HERE/odd.h5 $HERE/mask.h5 $HERE/layer124m.h5
