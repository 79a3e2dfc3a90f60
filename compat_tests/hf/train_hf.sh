#!/bin/bash
# A Hugging Face model folder fine-tuned by dsrt-train for 5 AdamW steps on
# JSONL token sequences with -100 prompt masks, against transformers +
# torch.optim.AdamW on the same batches (ref/<model>_train.csv, float64):
# every step's loss within 1e-5 relative and the lr within 1e-6; then the
# --export_hf folder loads back (hf_compare: config, names, shapes) with the
# weights transformers reached (ref/<model>_after.safetensors); with
# --from-pretrained PYTHON also transformers' from_pretrained loads it
# (from_pretrained.py), or the test is skipped (77) naming what is missing.
#   train_hf.sh DSRT_TRAIN HF_COMPARE HF_DIR MODEL [--from-pretrained PYTHON]
set -euo pipefail
train=$1 compare=$2 dir=$3 model=$4
py=
[ "${5:-}" = --from-pretrained ] && py=${6:-}
if [ "${5:-}" = --from-pretrained ] && ! "$py" -c "import transformers, torch, safetensors" 2>/dev/null; then
    echo "skipped: $py cannot import transformers, torch and safetensors (scripts/dsrt.sh test installs them:"
    echo "Debian's python3-torch and transformers 4.45.2 from PyPI in build/hfvenv)"
    exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$train" --deepspeed_config "$dir/ds_config_sft.json" --model "$dir/models/$model" --data "$dir/sft.jsonl" \
    --seq_len 32 --steps 5 --reference_curve "$dir/ref/${model}_train.csv" --curve_rtol 1e-5 \
    --export_hf "$out/export" --loss_csv "$out/loss.csv"
cat "$out/loss.csv"
"$compare" "$out/export" "$dir/ref/${model}_after.safetensors"
if [ -n "$py" ]; then
    "$py" "$dir/from_pretrained.py" "$out/export" "$dir/models/$model"
fi
