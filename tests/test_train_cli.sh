#!/usr/bin/env bash
# dsrt-train end to end: token files (text, llm.c .bin shard, raw uint16),
# exit codes (usage 2, error 1, off the reference curve 3), the loss CSV and
# its use as a reference curve.
#   test_train_cli.sh DSRT_TRAIN
set -uo pipefail
train=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
. "$(dirname "${BASH_SOURCE[0]}")/cli_util.sh"
cat > "$dir/ds.json" <<'JSON'
{"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2, "steps_per_print": 2,
 "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "gradient_clipping": 1.0}
JSON
for i in $(seq 1 40); do echo "The quick brown fox jumps over the lazy dog, line $i."; done > "$dir/text.txt"
# an llm.c shard: 256 int32 header (magic 20240520, version 1, token count), uint16 tokens
perl -e 'my @t = map { ($_ * 7) % 256 } 0..1999; print pack("l<256", 20240520, 1, scalar(@t), (0) x 253), pack("S<*", @t)' > "$dir/shard.bin"
perl -e 'print pack("S<*", map { $_ % 256 } 0..999), pack("S<", 300)' > "$dir/bad.bin"
run() { "$train" --deepspeed_config "$dir/ds.json" --model gpt2-tiny --seq_len 32 "$@" > "$dir/out" 2>&1; }

run --data "$dir/text.txt" --steps 4 --loss_csv "$dir/a.csv"; rc=$?
check "text corpus trains" 0 $rc "step=4, skipped=0"
[ "$(wc -l < "$dir/a.csv")" -eq 5 ] && head -1 "$dir/a.csv" | grep -q "^step,loss,lr,loss_scale,grad_norm,skipped,tokens_per_s$" \
    && echo "ok   loss csv: header + 4 rows" || { echo "FAIL loss csv"; cat "$dir/a.csv"; fail=1; }
run --data "$dir/text.txt" --steps 4 --reference_curve "$dir/a.csv"; rc=$?
check "a run matches its own curve exactly" 0 $rc "within rtol"
sed -E '3s/^([0-9]+),([0-9.]+)/\1,9.5/' "$dir/a.csv" > "$dir/off.csv"
run --data "$dir/text.txt" --steps 4 --reference_curve "$dir/off.csv"; rc=$?
check "leaving the reference curve exits 3 and names the step" 3 $rc "step 2: loss"
awk -F, -v OFS=, 'NR == 4 { $3 = 0.5 } { print }' "$dir/a.csv" > "$dir/lr.csv"
run --data "$dir/text.txt" --steps 4 --reference_curve "$dir/lr.csv"; rc=$?
check "a different lr schedule exits 3" 3 $rc "step 3: skipped 0, loss scale 1, lr"
run --data "$dir/shard.bin" --steps 2; rc=$?
check "llm.c shard" 0 $rc "2000 tokens"
run --data "$dir/bad.bin" --steps 2; rc=$?
check "token outside the vocabulary" 1 $rc "token 300 at position 1000"
run --data "$dir/missing.txt" --steps 2; rc=$?
check "missing data file" 1 $rc "missing.txt"
run --data "$dir/text.txt" --no_such_option 1; rc=$?
check "unknown option" 2 $rc "unknown option --no_such_option"
run --data "$dir/text.txt" --steps 2 --learning_rate 5e-4; rc=$?
check "a Trainer value contradicting the file is refused" 1 $rc "learning_rate"
# strict numbers: every bad value is refused (exit 2) naming the option and the value
bad_opt() { # bad_opt OPTION VALUE EXPECTED-TEXT
    "$train" --deepspeed_config "$dir/ds.json" --model gpt2-tiny --data "$dir/text.txt" --steps 1 "$1" "$2" > "$dir/out" 2>&1
    check "$1 $2 refused" 2 $? "$1 $2: $3"
}
bad_opt --seq_len abc "not an integer"
bad_opt --seq_len 0 "must be between 1 and"
bad_opt --seq_len -5 "must be between 1 and"
bad_opt --seq_len 99999999999 "must be between 1 and"
bad_opt --steps 1x "not an integer"
bad_opt --steps -1 "must be between 0 and"
bad_opt --steps "" "not an integer"
bad_opt --seed abc "not a non-negative integer"
bad_opt --seed -1 "not a non-negative integer"
bad_opt --seed 99999999999999999999 "must be below 2^64"
bad_opt --eval_every -1 "must be between 0 and"
bad_opt --save_interval -1 "must be between 0 and"
bad_opt --comm_timeout -1 "must be a finite number between"
bad_opt --comm_timeout inf "must be a finite number between"
bad_opt --curve_rtol nan "must be a finite number between"
bad_opt --curve_window 0 "must be between 1 and"
bad_opt --eval_batches 0x10 "not an integer"
"$train" --deepspeed_config "$dir/ds.json" --data "$dir/text.txt" --steps 1 --resume=yes > "$dir/out" 2>&1
check "--resume=VALUE refused" 2 $? "--resume takes no value"
"$train" --deepspeed_config "$dir/ds.json" --data "$dir/text.txt" --steps > "$dir/out" 2>&1
check "an option without its value" 2 $? "--steps needs a value"
# what the deepspeed launcher and HF scripts pass
run --data "$dir/text.txt" --steps 1 --local_rank=0 --deepspeed "$dir/ds.json"; rc=$?
check "--local_rank=0 and --deepspeed FILE accepted" 0 $rc "step 1/1 loss"
run --data "$dir/text.txt" --steps 1 --local_rank=3; rc=$?
check "--local_rank that disagrees with the group: a warning" 0 $rc "local rank 0; the group's is used"
bad_opt --local_rank -2 "must be between -1 and"
# the --name=VALUE form, for the table's options and the Trainer's
run --data="$dir/text.txt" --steps=2 --seed=7 --learning_rate=1e-3 --loss_csv="$dir/eq.csv"; rc=$?
check "--name=VALUE form" 0 $rc "step=2, skipped=0"
[ "$(wc -l < "$dir/eq.csv")" -eq 3 ] && echo "ok   --name=VALUE: 2 rows" || { echo "FAIL --name=VALUE rows"; fail=1; }
# a diverged run stops with an error instead of training NaN to the end
cat > "$dir/div32.json" <<'JSON'
{"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1,
 "optimizer": {"type": "AdamW", "params": {"lr": 1e30}}}
JSON
"$train" --deepspeed_config "$dir/div32.json" --seq_len 32 --data "$dir/text.txt" --steps 20 --loss_csv "$dir/div.csv" > "$dir/out" 2>&1
check "fp32: a non-finite step ends the run" 1 $? "is not finite at optimizer step .* in fp32 training"
sed 's/"lr": 1e30}}}/"lr": 1e30}}, "dsrt": {"skip_nonfinite_steps": true}}/' "$dir/div32.json" > "$dir/skip32.json"
"$train" --deepspeed_config "$dir/skip32.json" --seq_len 32 --data "$dir/text.txt" --steps 8 > "$dir/out" 2>&1
check "fp32 with skip_nonfinite_steps: skipped, with a warning" 0 $? "skipped: non-finite"
"$train" --deepspeed_config "$dir/skip32.json" --seq_len 32 --data "$dir/text.txt" --steps 150 > "$dir/out" 2>&1
check "fp32 skipping: 100 skips in a row end the run" 1 $? "100 steps in a row skipped for non-finite"
sed 's/"lr": 1e30}}}/"lr": 1e30}}, "bf16": {"enabled": true, "check_grad_overflow": true}}/' "$dir/div32.json" > "$dir/bf16.json"
"$train" --deepspeed_config "$dir/bf16.json" --seq_len 32 --data "$dir/text.txt" --steps 150 > "$dir/out" 2>&1
check "bf16 with check_grad_overflow: 100 skips in a row end the run" 1 $? "100 steps in a row skipped"
sed 's/"lr": 1e30}}}/"lr": 1e30}}, "fp16": {"enabled": true, "initial_scale_power": 4}}/' "$dir/div32.json" > "$dir/fp16s0.json"
"$train" --deepspeed_config "$dir/fp16s0.json" --seq_len 32 --data "$dir/text.txt" --steps 150 > "$dir/out" 2>&1
check "fp16 stage 0 stuck at the minimum scale ends the run" 1 $? "100 steps in a row skipped at the minimum loss scale"

# the arguments the deepspeed launcher and HF scripts pass
"$train" --deepspeed "$dir/ds.json" --model gpt2-tiny --seq_len 32 --data "$dir/text.txt" --steps 1 > "$dir/out" 2>&1; rc=$?
check "--deepspeed FILE (HF scripts) is the config" 0 $rc "step 1/1"
"$train" --deepspeed=$dir/ds.json --model gpt2-tiny --seq_len 32 --data "$dir/text.txt" --steps 1 > "$dir/out" 2>&1; rc=$?
check "--deepspeed=FILE" 0 $rc "step 1/1"
run --deepspeed --local_rank=0 --data "$dir/text.txt" --steps 1; rc=$?
check "--deepspeed as a flag beside --deepspeed_config, --local_rank=0" 0 $rc "step 1/1"
LOCAL_RANK=3 run --data "$dir/text.txt" --steps 1; rc=$?
check "LOCAL_RANK from the environment is checked like --local_rank" 0 $rc "local_rank 3 but the process group"
echo '{"train_batch_size": 2}' > "$dir/other.json"
run --deepspeed "$dir/other.json" --data "$dir/text.txt" --steps 1; rc=$?
check "--deepspeed and --deepspeed_config naming two files: a usage error" 2 $rc "name two configs"
LOCAL_RANK=x run --data "$dir/text.txt" --steps 1; rc=$?
check "a LOCAL_RANK that is not a number" 2 $rc "LOCAL_RANK=x"
# a config with no optimizer or scheduler block: the Trainer's AdamW and linear schedule
echo '{"train_micro_batch_size_per_gpu": 2}' > "$dir/trainer.json"
"$train" --deepspeed "$dir/trainer.json" --model gpt2-tiny --seq_len 32 --data "$dir/text.txt" --steps 4 \
    --learning_rate 1e-3 --warmup_steps 2 --loss_csv "$dir/trainer.csv" > "$dir/out" 2>&1; rc=$?
check "no optimizer/scheduler block: the Trainer's AdamW and linear schedule" 0 $rc "Trainer's torch.optim.AdamW"
[ "$(cut -d, -f3 "$dir/trainer.csv" | tail -n +2 | tr '\n' ' ')" = "0 0.0005 0.001 0.0005 " ] &&
    echo "ok   the Trainer's linear warmup and decay: lr 0, 5e-4, 1e-3, 5e-4" ||
    { echo "FAIL the Trainer's schedule"; cat "$dir/trainer.csv"; fail=1; }

# --plot: one self-contained SVG with the loss (and the reference), lr and no scale panel in fp32
run --data "$dir/text.txt" --steps 4 --reference_curve "$dir/a.csv" --plot "$dir/run.svg"; rc=$?
check "--plot writes the curves" 0 $rc "curves written to"
head -1 "$dir/run.svg" | grep -q '^<?xml' && tail -1 "$dir/run.svg" | grep -q '</svg>' &&
    [ "$(grep -c '<polyline' "$dir/run.svg")" -eq 3 ] && grep -q 'skipped steps: 0' "$dir/run.svg" &&
    grep -q 'reference' "$dir/run.svg" && ! grep -q 'loss scale' "$dir/run.svg" &&
    echo "ok   the SVG: loss, reference, lr; no loss-scale panel in fp32" ||
    { echo "FAIL the SVG"; head -c 2000 "$dir/run.svg"; fail=1; }
run --data "$dir/text.txt" --steps 1 --plot "$dir/no/such/dir/x.svg"; rc=$?
check "--plot into a missing folder: an error naming it" 1 $rc "no/such/dir/x.svg"

# warnings for data that is probably not what the user meant
run --data "$dir" --steps 1; rc=$?
check "--data DIR" 1 $rc "is a directory"
head -c 3000 /dev/urandom > "$dir/random.dat"
run --data "$dir/random.dat" --steps 1; rc=$?
check "random bytes as text: trained, with a warning" 0 $rc "does not look like text"
perl -e 'print pack("S<*", map { $_ % 256 } 0..999), "x"' > "$dir/odd.bin"
run --data "$dir/odd.bin" --steps 1; rc=$?
check "an odd-sized raw uint16 file: a warning" 0 $rc "odd number of bytes (2001)"
head -c 300 "$dir/text.txt" > "$dir/short.txt"
run --data "$dir/short.txt" --steps 2 --eval_every 1; rc=$?
check "a held-out part shorter than a sequence: a warning" 0 $rc "nothing is evaluated"

# the loss CSV survives a kill: rows are flushed as they are written
"$train" --deepspeed_config "$dir/ds.json" --seq_len 32 --data "$dir/text.txt" --steps 1000000 \
    --loss_csv "$dir/killed.csv" > /dev/null 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -f "$dir/killed.csv" ] && [ "$(wc -l < "$dir/killed.csv")" -ge 4 ] && break; sleep 0.1; done
kill -9 $pid 2> /dev/null; wait $pid 2> /dev/null
rows=$(wc -l < "$dir/killed.csv")
[ "$rows" -ge 4 ] && echo "ok   a killed run keeps its loss CSV ($rows lines)" || { echo "FAIL a killed run lost its loss CSV ($rows lines)"; fail=1; }
# a resumed run keeps one header and one row per step: the killed run's rows
# after the checkpoint are dropped; an empty file gets its header
# (one schedule length for all three: without a scheduler block the Trainer's
# linear decay ends at max_steps, which defaults to --steps)
run --data "$dir/text.txt" --steps 4 --max_steps 6 --save_dir "$dir/res" --loss_csv "$dir/res.csv" > /dev/null 2>&1
run --data "$dir/text.txt" --steps 6 --max_steps 6 --loss_csv "$dir/straight.csv" > /dev/null 2>&1
cp "$dir/straight.csv" "$dir/res.csv"   # as if killed after step 6 with its last checkpoint at 4
run --data "$dir/text.txt" --steps 6 --max_steps 6 --save_dir "$dir/res" --resume --loss_csv "$dir/res.csv"; rc=$?
check "resume rewrites the rows after the checkpoint" 0 $rc "dropped 2 rows"
[ "$(grep -c '^step,' "$dir/res.csv")" -eq 1 ] && [ "$(cut -d, -f1 "$dir/res.csv" | tail -n +2 | tr '\n' ' ')" = "1 2 3 4 5 6 " ] &&
    diff <(cut -d, -f1-6 "$dir/straight.csv") <(cut -d, -f1-6 "$dir/res.csv") > /dev/null &&
    echo "ok   resumed CSV: one header, steps 1-6 once, equal to the straight run" ||
    { echo "FAIL resumed CSV"; cat "$dir/res.csv"; fail=1; }
: > "$dir/empty.csv"
run --data "$dir/text.txt" --steps 6 --save_dir "$dir/res" --load_dir "$dir/res" --loss_csv "$dir/empty.csv" > /dev/null 2>&1
head -1 "$dir/empty.csv" | grep -q "^step,loss" && echo "ok   an empty CSV gets its header on resume" ||
    { echo "FAIL no header in the resumed empty CSV"; cat "$dir/empty.csv"; fail=1; }
# what a killed save left behind is removed by the next save (a live process's is not)
host=$(hostname | tr './-' '___')
(exit 0) & dead=$!; wait $dead
mkdir -p "$dir/res/.global_step9.tmp-$host-$dead" "$dir/res/.global_step8.tmp-$host-$$"
echo x > "$dir/res/.global_step9.tmp-$host-$dead/zero_rank_00000.h5"
run --data "$dir/text.txt" --steps 7 --save_dir "$dir/res" --resume; rc=$?
check "a dead save's leftover is removed and reported" 0 $rc "removed .*global_step9.tmp-$host-$dead"
[ ! -e "$dir/res/.global_step9.tmp-$host-$dead" ] && [ -d "$dir/res/.global_step8.tmp-$host-$$" ] &&
    echo "ok   dead leftover gone, a live process's kept" || { echo "FAIL leftovers"; ls -a "$dir/res"; fail=1; }

# a checkpoint of another precision: refused, or the weights alone on request
sed 's/"gradient_clipping": 1.0}/"gradient_clipping": 1.0, "fp16": {"enabled": true}}/' "$dir/ds.json" > "$dir/fp16.json"
run --data "$dir/text.txt" --steps 2 --save_dir "$dir/ck"; rc=$?
check "fp32 checkpoint saved" 0 $rc
"$train" --deepspeed_config "$dir/fp16.json" --model gpt2-tiny --seq_len 32 --data "$dir/text.txt" --steps 3 \
    --load_dir "$dir/ck" > "$dir/out" 2>&1
check "an fp32 checkpoint is refused by an fp16 run" 1 $? "saved by a fp32 run; this run trains in fp16"
"$train" --deepspeed_config "$dir/fp16.json" --model gpt2-tiny --seq_len 32 --data "$dir/text.txt" --steps 3 \
    --load_dir "$dir/ck" --skip_optimizer_states > "$dir/out" 2>&1
check "--skip_optimizer_states takes the weights, step and schedule" 0 $? "resumed from .* at step 3"
"$train" --deepspeed_config "$dir/fp16.json" --model gpt2-tiny --seq_len 32 --data "$dir/text.txt" --steps 2 \
    --load_dir "$dir/ck" --load_module_only > "$dir/out" 2>&1
check "--load_module_only takes the weights and starts at step 1" 0 $? "resumed from .* at step 1"
exit $fail
