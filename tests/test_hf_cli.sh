#!/usr/bin/env bash
# dsrt-train with Hugging Face folders and token sequences, end to end:
# a JSONL run resumed from its checkpoint equals the uninterrupted run (the
# shuffle and the data position follow the step); --steps 0 with --load_dir
# exports a checkpoint (--export_hf) with the trained weights; --estimate
# prints a rank's memory without training; --eval_every holds out sequences;
# a folder without config.json, a sequence longer than Mistral's window and a
# JSONL line with a token outside the vocabulary are refused by name.
#   test_hf_cli.sh DSRT_TRAIN HF_COMPARE HF_DIR
set -uo pipefail
train=$1 compare=$2 hf=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
. "$(dirname "${BASH_SOURCE[0]}")/cli_util.sh"
run() { "$train" --deepspeed_config "$hf/ds_config_sft.json" --model "$hf/models/tiny-llama" --data "$hf/sft.jsonl" \
    --seq_len 32 "$@" > "$dir/out" 2>&1; }

# the Trainer's schedule (no scheduler block) spans max_steps: 6 for all three
run --steps 6 --max_steps 6 --loss_csv "$dir/full.csv"; rc=$?
check "tiny-llama on JSONL: 6 steps" 0 $rc "sft.jsonl (jsonl): 10 sequences"
run --steps 3 --max_steps 6 --save_dir "$dir/ck" --loss_csv "$dir/part.csv"; rc=$?
check "3 steps, checkpoint" 0 $rc
run --steps 6 --max_steps 6 --save_dir "$dir/ck" --resume --loss_csv "$dir/part.csv"; rc=$?
check "resumed to step 6" 0 $rc "resumed from"
if cmp -s <(cut -d, -f1-3 "$dir/full.csv") <(cut -d, -f1-3 "$dir/part.csv"); then
    echo "ok   resumed losses and lr equal the uninterrupted run's (epochs 1-2 of the shuffle)"
else
    echo "FAIL resumed curve differs"; paste -d' ' "$dir/full.csv" "$dir/part.csv"; fail=1
fi
# export the step-6 checkpoint without training, and the live run's end state
run --steps 6 --save_dir "$dir/ck" --export_hf "$dir/live"; rc=$?
check "--export_hf at the end of a run" 0 $rc "exported the model to"
run --steps 0 --load_dir "$dir/ck" --export_hf "$dir/from_ckpt"; rc=$?
check "--steps 0 --load_dir: the checkpoint exported" 0 $rc "exported the model to"
"$compare" "$dir/from_ckpt" "$dir/live/model.safetensors" 0 > "$dir/out" 2>&1; rc=$?
check "the checkpoint's export equals the live run's, bit for bit" 0 $rc "0 differ"
# the memory estimate
"$train" --estimate --deepspeed_config "$hf/ds_config_sft.json" --model "$hf/models/tiny-qwen2" --seq_len 32 \
    --estimate_ranks 4 > "$dir/out" 2>&1; rc=$?
check "--estimate for 4 ranks, no --data needed" 0 $rc "4 ranks, sequences of 32 tokens"
grep -q "= total" "$dir/out" && echo "ok   --estimate prints the total" || { echo "FAIL no total"; cat "$dir/out"; fail=1; }
# held-out sequences
run --steps 2 --eval_every 2 --eval_batches 4; rc=$?
check "--eval_every on JSONL: the last sequence held out" 0 $rc "eval loss"
# sequences with nothing to train on within T: said at load; a micro-batch of
# only such rows has a zero gradient and no loss, and the run goes on
printf '{"input_ids": [1,2,3,4,5,6,7,8,9,10], "labels": [-100,-100,-100,-100,-100,-100,-100,-100,9,10]}\n{"input_ids": [1,2,3,4], "labels": [-100,-100,3,4]}\n' > "$dir/masked.jsonl"
printf '{"train_micro_batch_size_per_gpu": 1, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}}\n' > "$dir/b1.json"
"$train" --deepspeed_config "$dir/b1.json" --model "$hf/models/tiny-llama" --data "$dir/masked.jsonl" --seq_len 8 \
    --steps 4 --loss_csv "$dir/masked.csv" > "$dir/out" 2>&1
check "a sequence whose labels all lie past --seq_len: said at load" 0 $? "1 of 2 training sequences"
grep -q "every target is -100" "$dir/out" && [ "$(grep -c ',nan,' "$dir/masked.csv")" -eq 2 ] &&
    [ "$(grep -c -v ',nan,' "$dir/masked.csv")" -eq 3 ] &&
    echo "ok   its micro-batches: a warning, loss nan, zero gradient; the other steps train" ||
    { echo "FAIL masked micro-batches"; cat "$dir/out" "$dir/masked.csv"; fail=1; }
# refusals
mkdir -p "$dir/empty"
"$train" --deepspeed_config "$hf/ds_config_sft.json" --model "$dir/empty" --data "$hf/sft.jsonl" --steps 1 > "$dir/out" 2>&1
check "a folder without config.json" 1 $? "has no config.json"
mkdir -p "$dir/mistral"
sed -e 's/"llama"/"mistral"/; s/LlamaForCausalLM/MistralForCausalLM/' "$hf/models/tiny-llama/config.json" |
    sed -e 's/"max_position_embeddings": 64,/"max_position_embeddings": 64, "sliding_window": 16,/' > "$dir/mistral/config.json"
"$train" --deepspeed_config "$hf/ds_config_sft.json" --model "$dir/mistral/config.json" --data "$hf/sft.jsonl" \
    --seq_len 32 --steps 1 > "$dir/out" 2>&1
check "sequences longer than Mistral's sliding_window" 1 $? "sliding_window 16"
printf '{"input_ids": [1, 2, 3]}\n{"input_ids": [1, 500]}\n' > "$dir/bad.jsonl"
run --steps 1 --data "$dir/bad.jsonl"; rc=$?
check "a token outside the vocabulary, by line" 1 $rc "bad.jsonl:2: input_ids\[1\] = 500"
exit $fail
