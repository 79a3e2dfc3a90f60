#!/usr/bin/env bash
# Corrupt checkpoints through dsrt-train: single-byte changes across the main
# file and a rank file must each be refused with the file named, never crash
# and never leave HDF5 unable to close ("infinite loop closing library"); a
# missing checksum record is an error; a checkpoint from before checksum
# records loads with a warning.
#   test_ckpt_corrupt.sh DSRT_TRAIN
set -uo pipefail
train=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
for i in $(seq 1 30); do echo "The quick brown fox jumps over the lazy dog, line $i."; done > "$dir/text.txt"
cat > "$dir/ds.json" <<'JSON'
{"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1,
 "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}}
JSON
run() { "$train" --deepspeed_config "$dir/ds.json" --seq_len 32 --data "$dir/text.txt" "$@"; }
run --steps 4 --save_dir "$dir/ck" > /dev/null 2>&1 || { echo "FAIL the base run"; exit 1; }
ck="$dir/ck/global_step4"
tried=0 refused=0
flip() { # flip FILE OFFSET BYTE: one changed byte, then a load that must be refused cleanly
    local f=$1 off=$2 byte=$3
    cp "$f" "$dir/orig"
    printf "\\x$byte" | dd of="$f" bs=1 seek="$off" conv=notrunc 2> /dev/null
    if cmp -s "$f" "$dir/orig"; then cp "$dir/orig" "$f"; return; fi
    run --steps 5 --load_dir "$dir/ck" > "$dir/out" 2>&1
    local rc=$?
    tried=$((tried + 1))
    if [ $rc -ne 1 ]; then
        echo "FAIL $(basename "$f") byte $off = 0x$byte: exit $rc (want 1)"; tail -3 "$dir/out"; fail=1
    elif grep -q "infinite loop closing library" "$dir/out"; then
        echo "FAIL $(basename "$f") byte $off = 0x$byte: HDF5 could not close its library"; fail=1
    elif ! grep -q "$(basename "$f"): corrupt" "$dir/out"; then
        echo "FAIL $(basename "$f") byte $off = 0x$byte: the error does not name the file:"; tail -1 "$dir/out"; fail=1
    else
        refused=$((refused + 1))
    fi
    cp "$dir/orig" "$f"
}
main_size=$(stat -c %s "$ck/checkpoint.h5")
# the two offsets that crashed HDF5 1.10 (issue 15), then a sweep
flip "$ck/checkpoint.h5" 62960 a2
flip "$ck/checkpoint.h5" 21580 65
for off in $(seq 0 1499 "$main_size"); do flip "$ck/checkpoint.h5" "$off" $(printf '%02x' $(( (off * 7 + 1) % 256 ))); done
rank_size=$(stat -c %s "$ck/zero_rank_00000.h5")
for off in 0 100 1000 4000 $((rank_size / 2)) $((rank_size - 1)); do flip "$ck/zero_rank_00000.h5" "$off" 5a; done
echo "single-byte corruptions: $refused of $tried refused cleanly, naming the file"
# a truncated file, a missing record, an unsealed (older) checkpoint
cp "$ck/zero_rank_00000.h5" "$dir/orig"
truncate -s 1000 "$ck/zero_rank_00000.h5"
run --steps 5 --load_dir "$dir/ck" > "$dir/out" 2>&1
[ $? -eq 1 ] && grep -q "zero_rank_00000.h5: corrupt: 1000 bytes" "$dir/out" && echo "ok   a truncated rank file" ||
    { echo "FAIL truncated rank file"; tail -2 "$dir/out"; fail=1; }
cp "$dir/orig" "$ck/zero_rank_00000.h5"
mv "$ck/zero_rank_00000.h5.crc32c" "$dir/side"
run --steps 5 --load_dir "$dir/ck" > "$dir/out" 2>&1
[ $? -eq 1 ] && grep -q "checksum record zero_rank_00000.h5.crc32c is missing" "$dir/out" && echo "ok   a missing checksum record" ||
    { echo "FAIL missing record"; tail -2 "$dir/out"; fail=1; }
rm -f "$ck/checkpoint.h5.crc32c"
run --steps 5 --load_dir "$dir/ck" > "$dir/out" 2>&1
[ $? -eq 0 ] && grep -q "no checksum records" "$dir/out" && echo "ok   a checkpoint without records loads, with a warning" ||
    { echo "FAIL unsealed checkpoint"; tail -2 "$dir/out"; fail=1; }
exit $fail
