#!/usr/bin/env bash
# Every real config the reader accepts trains: for each file in
# $DSRT_SHARED_DIR/ds_configs/real, dsrt-config reads it at world size 1 with
# the values dsrt-train itself passes (max_steps from --steps, hidden_size
# from the model); if it is accepted, `dsrt-train --deepspeed_config FILE
# --model gpt2-tiny --steps 2` must train it to the end with no other
# option. A config the reader refuses is counted and shown with its reason
# (test_real_configs checks those verdicts against DeepSpeed's). Fails on any
# accepted config that does not train. Skips (77) without the shared folder.
#   train_real_configs.sh DSRT_TRAIN DSRT_CONFIG [SEQ_LEN]
set -uo pipefail
train=$1 config=$2 seq=${3:-8}
shared=${DSRT_SHARED_DIR:-}
dir=$shared/ds_configs/real corpus=$shared/data/tinyshakespeare.txt
if [ -z "$shared" ] || [ ! -d "$dir" ] || [ ! -f "$corpus" ]; then
    echo "SKIP: $dir or $corpus not found (set DSRT_SHARED_DIR to the project's shared folder)"
    exit 77
fi
export OMP_NUM_THREADS=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=0 accepted=0 trained=0 refused=0 bad=0
for f in "$dir"/*.json; do
    n=$((n + 1))
    name=$(basename "$f")
    if ! "$config" --quiet --set max_steps=2 --set hidden_size=128 "$f" > /dev/null 2> "$out/reader.err"; then
        refused=$((refused + 1))
        printf 'refused  %-80s %s\n' "$name" "$(grep -m1 'error' "$out/reader.err" | cut -c1-160)"
        continue
    fi
    accepted=$((accepted + 1))
    if timeout 600 "$train" --deepspeed_config "$f" --model gpt2-tiny --data "$corpus" --steps 2 \
        --seq_len "$seq" > "$out/train.log" 2>&1; then
        trained=$((trained + 1))
        printf 'trained  %s\n' "$name"
    else
        bad=$((bad + 1))
        printf 'FAILED   %-80s %s\n' "$name" "$(grep -m1 -E 'error|dsrt-train:' "$out/train.log" | cut -c1-200)"
    fi
done
echo "real configs: $n; accepted by the reader at world size 1: $accepted, of which trained: $trained," \
     "failed: $bad; refused by the reader with a reason: $refused"
[ "$bad" -eq 0 ]
