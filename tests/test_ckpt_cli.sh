#!/usr/bin/env bash
# Checkpoints end to end with dsrt-train (docs/checkpoint-format.md):
#  1. bit-exact resume on one rank, fp32 / bf16 / fp16 with dynamic loss
#     scaling (overflows included): 2K steps straight == K, save, a new
#     process resumes, K more: the same losses (every digit) and the same
#     final checkpoint (h5diff: masters, moments, state);
#  2. the same on 2 MPI ranks;
#  3. another world size: saved on 4 ranks, resumed on 2 and on 1 (and 1 -> 4):
#     the continuation follows the uninterrupted 4-rank run within 1e-5;
#  4. kill -9 at random moments of a run that saves every step (20 trials):
#     the latest checkpoint always loads;
#  5. corruption: a flipped byte in a rank file, a truncated main file, a
#     checkpoint of another model: refused, naming the file / the differing key;
#     an unwritable save_dir: a clear error;
#  6. h5py reads every weight with no dsrt code (skipped without h5py).
# usage: test_ckpt_cli.sh DSRT_TRAIN
set -u
train=$1
tmp=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*.err; do [ -f "$f" ] && { echo "--- $f"; tail -4 "$f"; }; done; exit 1; }
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
for i in $(seq 1 2000); do echo "line $i: the quick brown fox jumps over the lazy dog $((i * 7919 % 1000))"; done > "$tmp/data.txt"
cfg() { # name precision stage gas
    local prec=""
    [ "$2" = fp16 ] && prec='"fp16": {"enabled": true, "initial_scale_power": 20, "loss_scale_window": 6, "hysteresis": 2},'
    [ "$2" = bf16 ] && prec='"bf16": {"enabled": true},'
    cat > "$tmp/$1.json" <<JSON
{"train_batch_size": 8, "train_micro_batch_size_per_gpu": 2, $prec "gradient_clipping": 1.0,
 "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "weight_decay": 0.01}},
 "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_num_steps": 4, "total_num_steps": 40}},
 "zero_optimization": {"stage": $3}}
JSON
    echo "$tmp/$1.json"
}
common=(--model gpt2-tiny --data "$tmp/data.txt" --seq_len 32)
mpi() { local n=$1; shift; mpiexec -n "$n" --oversubscribe "$@"; }
K=6

# 1 + 2: bit-exact resume
for run in "1 fp32 0" "1 bf16 1" "1 fp16 2" "2 fp32 2" "2 bf16 0" "2 fp16 1"; do
    set -- $run
    n=$1 prec=$2 stage=$3 name="r$1_$2_s$3"
    c=$(cfg "$name" "$prec" "$stage")
    launch=("$train")
    [ "$n" -gt 1 ] && launch=(mpiexec -n "$n" --oversubscribe "$train")
    "${launch[@]}" --deepspeed_config "$c" "${common[@]}" --steps $((2 * K)) \
        --save_dir "$tmp/$name.straight" --loss_csv "$tmp/$name.straight.csv" 2> "$tmp/$name.a.err" ||
        fail "$name: straight run"
    "${launch[@]}" --deepspeed_config "$c" "${common[@]}" --steps $K \
        --save_dir "$tmp/$name.split" --loss_csv "$tmp/$name.split.csv" 2> "$tmp/$name.b.err" ||
        fail "$name: first half"
    "${launch[@]}" --deepspeed_config "$c" "${common[@]}" --steps $((2 * K)) --resume \
        --save_dir "$tmp/$name.split" --loss_csv "$tmp/$name.split.csv" 2> "$tmp/$name.c.err" ||
        fail "$name: resumed half"
    grep -q "resumed from .* at step $((K + 1))" "$tmp/$name.c.err" || fail "$name: did not resume at step $((K + 1))"
    diff <(cut -d, -f1-6 "$tmp/$name.straight.csv") <(cut -d, -f1-6 "$tmp/$name.split.csv") > "$tmp/$name.diff" ||
        fail "$name: losses differ after resume: $(head -4 "$tmp/$name.diff")"
    h5diff "$tmp/$name.straight/global_step$((2 * K))/checkpoint.h5" \
        "$tmp/$name.split/global_step$((2 * K))/checkpoint.h5" > "$tmp/$name.h5diff" 2>&1 ||
        fail "$name: final checkpoints differ: $(head -5 "$tmp/$name.h5diff")"
    skipped=$(awk -F, 'NR > 1 && $6 == 1' "$tmp/$name.straight.csv" | wc -l)
    echo "bit-exact resume: $n rank(s) $prec stage $stage ($skipped skipped steps): losses and final checkpoint identical"
done

# 1b: DeepSpeed's precedence on resume (spec 8.2): a config edited between the
# runs (weight decay, clipping, the fp16 scaler's window and hysteresis) is
# overridden by the checkpoint: the continuation is still the straight run's
name=r1_fp16_s2
sed -e 's/"weight_decay": 0.01/"weight_decay": 0.5/' -e 's/"gradient_clipping": 1.0/"gradient_clipping": 0.05/' \
    -e 's/"loss_scale_window": 6, "hysteresis": 2/"loss_scale_window": 1000, "hysteresis": 7/' \
    "$tmp/$name.json" > "$tmp/edited.json"
cmp -s "$tmp/$name.json" "$tmp/edited.json" && fail "the edited config is not edited"
rm -rf "$tmp/$name.split/global_step$((2 * K))"
printf 'global_step%d' $K > "$tmp/$name.split/latest"
head -$((K + 1)) "$tmp/$name.split.csv" > "$tmp/edited.csv"
"$train" --deepspeed_config "$tmp/edited.json" "${common[@]}" --steps $((2 * K)) --resume \
    --save_dir "$tmp/$name.split" --loss_csv "$tmp/edited.csv" 2> "$tmp/edited.err" || fail "resume with an edited config"
grep -q "take precedence over the config" "$tmp/edited.err" || fail "the log does not say the checkpoint takes precedence"
diff <(cut -d, -f1-6 "$tmp/$name.straight.csv") <(cut -d, -f1-6 "$tmp/edited.csv") > "$tmp/edited.diff" ||
    fail "an edited config changed the resumed run: $(head -4 "$tmp/edited.diff")"
echo "resume with an edited config (weight_decay, clipping, scaler window/hysteresis): the checkpoint's values ruled, losses identical"

# 3: another world size (fp32, stage 2): saved on 4 ranks at step K
c=$(cfg ws fp32 2)
mpi 4 "$train" --deepspeed_config "$c" "${common[@]}" --steps $((2 * K)) \
    --loss_csv "$tmp/ws.ref.csv" 2> "$tmp/ws.ref.err" || fail "4-rank straight run"
mpi 4 "$train" --deepspeed_config "$c" "${common[@]}" --steps $K --save_dir "$tmp/ws4" 2> "$tmp/ws4.err" ||
    fail "4-rank first half"
for n in 2 1; do
    cp -r "$tmp/ws4" "$tmp/ws4to$n"
    launch=("$train"); [ "$n" -gt 1 ] && launch=(mpiexec -n "$n" --oversubscribe "$train")
    "${launch[@]}" --deepspeed_config "$c" "${common[@]}" --steps $((2 * K)) --load_dir "$tmp/ws4to$n" \
        --reference_curve "$tmp/ws.ref.csv" --curve_rtol 1e-5 2> "$tmp/ws4to$n.err" ||
        fail "saved on 4 ranks, resumed on $n: $(grep -m3 -E 'step|left' "$tmp/ws4to$n.err")"
    echo "saved on 4 ranks, resumed on $n: $(grep 'within rtol' "$tmp/ws4to$n.err")"
done
"$train" --deepspeed_config "$c" "${common[@]}" --steps $K --save_dir "$tmp/ws1" 2> "$tmp/ws1.err" || fail "1-rank first half"
mpi 4 "$train" --deepspeed_config "$c" "${common[@]}" --steps $((2 * K)) --load_dir "$tmp/ws1" \
    --reference_curve "$tmp/ws.ref.csv" --curve_rtol 1e-5 2> "$tmp/ws1to4.err" ||
    fail "saved on 1 rank, resumed on 4: $(grep -m3 -E 'step|left' "$tmp/ws1to4.err")"
echo "saved on 1 rank, resumed on 4: $(grep 'within rtol' "$tmp/ws1to4.err")"

# 4: kill -9 during saves
c=$(cfg kill fp32 1)
loaded=0 interrupted=0
for trial in $(seq 1 20); do
    d="$tmp/kill$trial"
    "$train" --deepspeed_config "$c" "${common[@]}" --steps 100000 --save_dir "$d" --save_interval 1 \
        2> "$tmp/kill.err" &
    pid=$!
    sleep "0.$((RANDOM % 9 + 3))$((RANDOM % 10))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    # a temporary directory left behind: the kill landed inside a save
    ls -d "$d"/.*.tmp-* > /dev/null 2>&1 && interrupted=$((interrupted + 1))
    if [ -f "$d/latest" ]; then
        tag=$(cat "$d/latest")
        step=${tag#global_step}
        "$train" --deepspeed_config "$c" "${common[@]}" --steps $((step + 1)) --load_dir "$d" \
            2> "$tmp/kill.load.err" || fail "trial $trial: the latest checkpoint ($tag) does not load: $(tail -2 "$tmp/kill.load.err")"
        loaded=$((loaded + 1))
    fi
    rm -rf "$d"
done
[ $loaded -ge 10 ] || fail "only $loaded of 20 kill trials had a checkpoint to load"
echo "kill -9 during saves: 20 trials ($interrupted interrupted a save in progress), the latest checkpoint loaded in all $loaded that had one"

# 5: corruption and errors
c=$(cfg corrupt fp32 2)
mpi 2 "$train" --deepspeed_config "$c" "${common[@]}" --steps 2 --save_dir "$tmp/cor" 2> "$tmp/cor.err" || fail "corruption base run"
cp -r "$tmp/cor" "$tmp/cor_flip"
f="$tmp/cor_flip/global_step2/zero_rank_00001.h5"
size=$(stat -c %s "$f")
printf '\xff\xfe\xfd\xfc' | dd of="$f" bs=1 seek=$((size / 2)) conv=notrunc 2> /dev/null
if "$train" --deepspeed_config "$c" "${common[@]}" --steps 3 --load_dir "$tmp/cor_flip" 2> "$tmp/flip.err"; then
    fail "a flipped byte in a rank file was not noticed"
fi
grep -q "zero_rank_00001.h5" "$tmp/flip.err" || fail "flipped byte: the error does not name the file: $(tail -1 "$tmp/flip.err")"
echo "flipped bytes: $(tail -1 "$tmp/flip.err")"
cp -r "$tmp/cor" "$tmp/cor_trunc"
f="$tmp/cor_trunc/global_step2/checkpoint.h5"
truncate -s $(( $(stat -c %s "$f") / 2 )) "$f"
if "$train" --deepspeed_config "$c" "${common[@]}" --steps 3 --load_dir "$tmp/cor_trunc" 2> "$tmp/trunc.err"; then
    fail "a truncated main file was not noticed"
fi
grep -q "checkpoint.h5" "$tmp/trunc.err" || fail "truncated: the error does not name the file"
echo "truncated: $(tail -1 "$tmp/trunc.err")"
echo '{"n_layer": 2, "n_embd": 64, "n_head": 2, "vocab_size": 256, "n_positions": 64}' > "$tmp/other.json"
if "$train" --deepspeed_config "$c" --model "$tmp/other.json" --data "$tmp/data.txt" --seq_len 32 \
    --steps 3 --load_dir "$tmp/cor" 2> "$tmp/other.err"; then
    fail "another model's checkpoint was accepted"
fi
# the saved model config is compared before any tensor: the first key that differs, both values
grep -q "was saved from a model with n_positions 256; this model has n_positions 64" "$tmp/other.err" ||
    fail "other model: the differing key is not named: $(tail -1 "$tmp/other.err")"
echo "another model: $(tail -1 "$tmp/other.err")"
if "$train" --deepspeed_config "$c" "${common[@]}" --steps 2 --save_dir "$tmp/data.txt/ckpt" 2> "$tmp/unw.err"; then
    fail "an unusable save_dir was accepted"
fi
grep -q "data.txt/ckpt" "$tmp/unw.err" || fail "unwritable save_dir: the error does not name it"
echo "unwritable save_dir: $(tail -1 "$tmp/unw.err")"

# 5b: disk full (a 16 MB tmpfs holds one checkpoint of gpt2-tiny, about 10 MB, not two)
mkdir -p "$tmp/full"
if mount -t tmpfs -o size=16m tmpfs "$tmp/full" 2> /dev/null; then
    if "$train" --deepspeed_config "$c" "${common[@]}" --steps 2 --save_dir "$tmp/full" --save_interval 1 \
        2> "$tmp/full.err"; then
        umount "$tmp/full"
        fail "a full disk was not noticed"
    fi
    grep -q "no space left on device while writing" "$tmp/full.err" || { umount "$tmp/full"; fail "disk full: unclear error"; }
    echo "disk full: $(tail -1 "$tmp/full.err")"
    [ "$(cat "$tmp/full/latest")" = global_step1 ] || { umount "$tmp/full"; fail "disk full: latest is not the previous checkpoint"; }
    ls -a "$tmp/full" | grep -q tmp- && { umount "$tmp/full"; fail "disk full: the temporary directory was left behind"; }
    "$train" --deepspeed_config "$c" "${common[@]}" --steps 2 --load_dir "$tmp/full" 2> "$tmp/full.load.err" ||
        { umount "$tmp/full"; fail "disk full: the previous checkpoint does not load"; }
    umount "$tmp/full"
    echo "disk full: the previous checkpoint (global_step1) is still latest and loads"
else
    echo "SKIP (disk-full part): cannot mount a small tmpfs here (needs root and mount rights)"
fi

# 6: h5py
if /usr/bin/python3 -c "import h5py" 2> /dev/null; then
    /usr/bin/python3 - "$tmp/cor/global_step2/checkpoint.h5" <<'PY' || fail "h5py could not read the checkpoint"
import json, sys
import h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
model = json.loads(bytes(f["state/model_config"][()]).decode() if f["state/model_config"].dtype.kind != "S" else f["state/model_config"][()][0].decode())
n = 0
for t in model["tensors"]:
    for kind in ("master", "exp_avg", "exp_avg_sq"):
        a = f[kind][t["name"]][()]
        assert a.dtype == np.float32 and list(a.shape) == t["shape"], (kind, t["name"], a.shape)
        assert np.isfinite(a).all()
    n += a.size
w = f["master"]["transformer.wte.weight"][()]
print("h5py: %d tensors, %d parameters, wte %s, |wte| mean %.5f" % (len(model["tensors"]), n, w.shape, abs(w).mean()))
PY
else
    echo "SKIP (h5py part): h5py is not importable by /usr/bin/python3"
fi
echo PASS
