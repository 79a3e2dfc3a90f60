#!/bin/bash
# A Hugging Face model folder fine-tuned by dsrt-train for 5 AdamW steps on
# JSONL token sequences with -100 prompt masks, against transformers +
# torch.optim.AdamW on the same batches (ref/<model>_train.csv, float64):
# every step's loss within 1e-5 relative and the lr within 1e-6; then the
# --export_hf folder loads back (hf_compare: config, names, shapes) with the
# weights transformers reached (ref/<model>_after.safetensors).
#   train_hf.sh DSRT_TRAIN HF_COMPARE HF_DIR MODEL [extra dsrt-train args...]
set -euo pipefail
train=$1 compare=$2 dir=$3 model=$4
shift 4
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$train" --deepspeed_config "$dir/ds_config_sft.json" --model "$dir/models/$model" --data "$dir/sft.jsonl" \
    --seq_len 32 --steps 5 --reference_curve "$dir/ref/${model}_train.csv" --curve_rtol 1e-5 \
    --export_hf "$out/export" --loss_csv "$out/loss.csv" "$@"
cat "$out/loss.csv"
"$compare" "$out/export" "$dir/ref/${model}_after.safetensors"
