#!/usr/bin/env bash
# dsrt-config end to end, as a user runs it: exit codes, what goes to stdout
# and stderr, the one-line error, "auto" filling, and that the printed config
# reads back unchanged.
#   test_cli.sh /path/to/dsrt-config /path/to/source
set -u
cli=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
pass=0
check() { # check NAME CONDITION...
    local name=$1
    shift
    if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name"; fails=$((fails + 1)); fi
}
run() { # run ARGS... -> $rc, $tmp/out, $tmp/err
    "$cli" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}

# the design card's config: accepted, quiet, resolved
run "$src/configs/ds_config.json"
check "design card accepted" test "$rc" = 0
check "design card: no warnings" test ! -s "$tmp/err"
check "design card: tb" grep -q '"train_batch_size": 8,' "$tmp/out"
check "design card: stage" grep -q '"stage": 2,' "$tmp/out"
check "design card: initial_scale_power default" grep -q '"initial_scale_power": 16,' "$tmp/out"
check "design card: clipping default 1.0" grep -q '"gradient_clipping": 1.0,' "$tmp/out"
check "design card: adamw" grep -q '"adam_mode": "adamw' "$tmp/out"

# round trip: the output, read back from stdin, prints identically
cp "$tmp/out" "$tmp/first.json"
"$cli" - <"$tmp/first.json" >"$tmp/second.json" 2>"$tmp/err"
check "round trip exit" test $? = 0
check "round trip identical" cmp -s "$tmp/first.json" "$tmp/second.json"

# world size changes the micro batch
run --world-size 4 "$src/configs/ds_config.json"
check "ws4 accepted" test "$rc" = 0
check "ws4 micro batch 2" grep -q '"train_micro_batch_size_per_gpu": 2,' "$tmp/out"
run --world-size 16 "$src/configs/ds_config.json"
check "ws16 rejected" test "$rc" = 2
check "ws16 names key" grep -q '^error: train_micro_batch_size_per_gpu: ' "$tmp/err"

# a rejection: exit 2, one line on stderr, nothing on stdout
printf '{\n  "train_batch_size": 8,\n  "zero_optimization": {"stage": 7}\n}\n' >"$tmp/bad.json"
run "$tmp/bad.json"
check "bad stage exit 2" test "$rc" = 2
check "bad stage stdout empty" test ! -s "$tmp/out"
check "bad stage one line" test "$(wc -l <"$tmp/err")" = 1
check "bad stage message" grep -qx "error: zero_optimization.stage: must be <= 3 (got 7) \[$tmp/bad.json:3\]" "$tmp/err"

# "auto": needs the run's length; then fills from --set and says so
run "$src/configs/ds_hf_auto.json"
check "auto without max_steps rejected" test "$rc" = 2
check "auto names total_num_steps and max_steps" grep -q '^error: scheduler.params.total_num_steps: .*max_steps' "$tmp/err"
run --set max_steps=1000 --set warmup_ratio=0.05 --set hidden_size=768 --set learning_rate=1e-4 \
    --set per_device_train_batch_size=4 --set bf16=true "$src/configs/ds_hf_auto.json"
check "auto filled accepted" test "$rc" = 0
check "auto lr" grep -q '"lr": 0.0001,' "$tmp/out"
check "auto warmup = ceil(0.05*1000)" grep -q '"warmup_num_steps": 50,' "$tmp/out"
check "auto bucket = 768^2" grep -q '"reduce_bucket_size": 589824,' "$tmp/out"
check "auto micro" grep -q '"train_micro_batch_size_per_gpu": 4,' "$tmp/out"
check "auto bf16" grep -q '"precision": "bf16"' "$tmp/out"
check "auto reported" grep -q '^auto: train_batch_size: "auto" -> 4 ' "$tmp/err"
run --set learning_rat=1 "$src/configs/ds_config.json"
check "unknown --set name" test "$rc" = 1
check "unknown --set names it" grep -q 'learning_rat' "$tmp/err"
run --set learning_rate=1e-3 "$src/configs/ds_config.json"
check "mismatch with the file rejected" test "$rc" = 2
check "mismatch names key" grep -q '^error: optimizer.params.lr: .*learning_rate=0.001' "$tmp/err"

# stage 3: runs as stage 2 with one warning; strict turns it into an error
run "$src/configs/ds_zero3.json"
check "stage3 accepted" test "$rc" = 0
check "stage3 one warning" test "$(grep -c '^warning:' "$tmp/err")" = 1
check "stage3 effective 2" grep -q '"zero_stage": 2,' "$tmp/out"
sed 's/^{/{ "dsrt": {"strict": true},/' "$src/configs/ds_zero3.json" >"$tmp/strict.json"
run "$tmp/strict.json"
check "strict stage3 rejected" test "$rc" = 2
check "strict names key" grep -q '^error: zero_optimization.stage: .*strict' "$tmp/err"

# every shipped config is accepted (with the values a launcher passes)
for f in "$src"/configs/ds_*.json; do
    sets=()
    grep -q '"auto"' "$f" && sets=(--set max_steps=1000 --set warmup_steps=10 --set hidden_size=256)
    run "${sets[@]}" "$f"
    check "shipped $(basename "$f")" test "$rc" = 0
done

# usage errors
run
check "no file: usage, exit 1" test "$rc" = 1
run --world-size 0 "$src/configs/ds_config.json"
check "bad world size exit 1" test "$rc" = 1
run /nonexistent.json
check "missing file exit 2" test "$rc" = 2
check "missing file named" grep -q '/nonexistent.json' "$tmp/err"
run --version
check "version" test "$rc" = 0

echo "$pass passed, $fails failed"
test "$fails" = 0
