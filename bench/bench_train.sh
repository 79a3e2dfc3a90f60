#!/usr/bin/env bash
# Whole training steps (forward, backward, clipping, AdamW) of dsrt-train on
# gpt2-tiny, fp32, against the same training step in PyTorch (HF
# GPT2LMHeadModel + clip_grad_norm_ + torch.optim.AdamW), same batch (8 x 256)
# and thread count, measured in the same run.
#   bench/bench_train.sh [BUILD_DIR] [STEPS]     (run from the repository root)
set -euo pipefail
build=${1:-build} steps=${2:-40}
threads=${OMP_NUM_THREADS:-$(nproc)}
shared=${DSRT_SHARED_DIR:-../shared}
corpus=$shared/data/tinyshakespeare.txt
[ -f "$corpus" ] || { echo "bench_train: $corpus not found (DSRT_SHARED_DIR)"; exit 1; }
echo "== training steps/s, gpt2-tiny fp32, batch 8 x 256, $threads threads, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}"
csv=$(mktemp)
trap 'rm -f "$csv"' EXIT
OMP_NUM_THREADS=$threads "$build/dsrt-train" --deepspeed_config bench/train_fp32.json --model gpt2-tiny \
    --data "$corpus" --steps "$steps" --seq_len 256 --loss_csv "$csv" > /dev/null 2>&1
# median tokens/s over the steps after the first 5 (first touch, warm-up)
dsrt_tps=$(tail -n +7 "$csv" | cut -d, -f7 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "dsrt-train: $dsrt_tps tokens/s ($(awk -v t="$dsrt_tps" 'BEGIN {printf "%.2f", t / 2048}') steps/s)"
py=${PYTHON:-/usr/bin/python3}
if out=$("$py" bench/torch_gpt2.py --config configs/model/gpt2-tiny.json --batch 8 --seq 256 \
            --threads "$threads" --steps 10 --warmup 2 --optimizer 2>/dev/null); then
    torch_tps=$(echo "$out" | sed -E 's/.*"tokens_per_s": ([0-9.e+-]+).*/\1/')
    echo "pytorch:    $torch_tps tokens/s ($(awk -v t="$torch_tps" 'BEGIN {printf "%.2f", t / 2048}') steps/s)"
    awk -v a="$dsrt_tps" -v b="$torch_tps" 'BEGIN {printf "ratio dsrt/pytorch: %.2fx\n", a / b}'
else
    echo "pytorch: skipped (torch not importable by $py)"
fi
