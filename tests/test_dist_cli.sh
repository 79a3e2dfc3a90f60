#!/usr/bin/env bash
# dsrt-train on several ranks: started the way torchrun / the deepspeed
# launcher start ranks (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT: TCP) and
# under mpirun (MPI).
#  1. 2 TCP ranks, ZeRO stage 2, gas 2 follow the one-rank run with gas 4 (its
#     loss CSV used as the reference curve, rtol 1e-5);
#  2. the same under mpirun;
#  3. a rank killed with SIGKILL mid-training (TCP): the others exit non-zero
#     within seconds with an error naming rank 1 and the collective;
#  4. a rank stopped (SIGSTOP) under mpirun with --comm_timeout 5: its
#     neighbour reports the timeout naming rank 1.
# usage: test_dist_cli.sh DSRT_TRAIN
set -u
train=$1
tmp=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*.err; do [ -f "$f" ] && { echo "--- $f"; tail -5 "$f"; }; done; exit 1; }
export OMP_NUM_THREADS=1
head -c 300000 /usr/share/dict/words 2>/dev/null > "$tmp/data.txt"
[ -s "$tmp/data.txt" ] || for i in $(seq 1 3000); do echo "line $i of some text, the quick brown fox jumps over the lazy dog $((i * 7919 % 1000))"; done > "$tmp/data.txt"
cfg() { # stage gas
    cat > "$tmp/c$1_$2.json" <<JSON
{"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": $2, "gradient_clipping": 1.0,
 "optimizer": {"type": "AdamW", "params": {"lr": 5e-4, "weight_decay": 0.01}},
 "zero_optimization": {"stage": $1, "reduce_bucket_size": 30000, "overlap_comm": true}}
JSON
    echo "$tmp/c$1_$2.json"
}
common=(--model gpt2-tiny --data "$tmp/data.txt" --seq_len 32)
port=$((20000 + $$ % 20000))

# 1. one rank with gas 4 -> reference; two TCP ranks with gas 2 against it
"$train" --deepspeed_config "$(cfg 2 4)" "${common[@]}" --steps 20 --loss_csv "$tmp/ref.csv" \
    2> "$tmp/ref.err" || fail "one-rank reference run"
c2=$(cfg 2 2)
for r in 0 1; do
    RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
        "$train" --deepspeed_config "$c2" "${common[@]}" --steps 20 \
        --reference_curve "$tmp/ref.csv" --curve_rtol 1e-5 2> "$tmp/tcp$r.err" &
done
wait %1 || fail "TCP rank 0 left the one-rank curve (or failed)"
wait %2 || fail "TCP rank 1 failed"
grep -q "2 ranks (tcp, ZeRO stage 2)" "$tmp/tcp0.err" || fail "rank 0 did not report 2 TCP ranks"
grep "within rtol" "$tmp/tcp0.err"

# 2. the same under mpirun
if command -v mpiexec >/dev/null; then
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
        mpiexec -n 2 --oversubscribe "$train" --deepspeed_config "$c2" "${common[@]}" --steps 20 \
        --reference_curve "$tmp/ref.csv" --curve_rtol 1e-5 2> "$tmp/mpi.err" ||
        fail "2 MPI ranks left the one-rank curve (or failed)"
    grep -q "2 ranks (mpi, ZeRO stage 2)" "$tmp/mpi.err" || fail "not 2 MPI ranks"
    grep "within rtol" "$tmp/mpi.err"
fi

# 2b. no optimizer block: the Hugging Face Trainer's AdamW with its parameter
# groups (no decay on biases and LayerNorm weights) stepped partition by
# partition at ZeRO-2 on 2 MPI ranks, against one rank with gas 2
if command -v mpiexec >/dev/null; then
    cat > "$tmp/trainer.json" <<JSON
{"train_batch_size": 4, "train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 2, "reduce_bucket_size": 20000},
 "comms_logger": {"enabled": true}}
JSON
    hf=(--weight_decay 0.1 --learning_rate 1e-3 --warmup_steps 2)
    "$train" --deepspeed "$tmp/trainer.json" "${common[@]}" --steps 8 "${hf[@]}" --loss_csv "$tmp/tr1.csv" \
        2> "$tmp/tr1.err" || fail "one-rank Trainer-groups run"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
        mpiexec -n 2 --oversubscribe "$train" --deepspeed "$tmp/trainer.json" "${common[@]}" --steps 8 "${hf[@]}" \
        --reference_curve "$tmp/tr1.csv" --curve_rtol 1e-5 2> "$tmp/tr2.err" ||
        fail "2 MPI ranks with the Trainer's parameter groups left the one-rank curve (or failed)"
    grep "within rtol" "$tmp/tr2.err"
    # comms_logger: DeepSpeed's summary table, the bucket reduce-scatters and the weight all-gathers
    grep -q "Comm. Op            Message Size" "$tmp/tr2.err" && grep -q "^reduce_scatter" "$tmp/tr2.err" &&
        grep -q "^all_gather" "$tmp/tr2.err" || fail "no comms_logger summary with reduce_scatter and all_gather"
fi

# 3. SIGKILL one of 3 TCP ranks mid-training
port=$((port + 1))
c3=$(cfg 2 1)
pids=()
for r in 0 1 2; do
    RANK=$r WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
        "$train" --deepspeed_config "$c3" "${common[@]}" --steps 100000 --comm_timeout 60 \
        2> "$tmp/kill$r.err" &
    pids+=($!)
done
for i in $(seq 1 300); do grep -q "step 10/" "$tmp/kill0.err" && break; sleep 0.2; done
grep -q "step 10/" "$tmp/kill0.err" || fail "3 TCP ranks did not reach step 10"
kill -9 "${pids[1]}"
t0=$(date +%s)
for r in 0 2; do
    if wait "${pids[$r]}"; then fail "rank $r exited 0 after rank 1 was killed"; fi
done
dt=$(( $(date +%s) - t0 ))
[ "$dt" -le 20 ] || fail "the surviving ranks took ${dt}s to stop"
for r in 0 2; do
    # rank 1 alone, or in the list of ranks found closed at once ("ranks 0, 1 closed ...")
    grep -E "rank $r: .*(rank 1 |ranks ([0-9]+, )*1[ ,]).*(all-reduce|reduce-scatter|all-gather)" "$tmp/kill$r.err" ||
        fail "rank $r's error does not name rank 1 and the collective"
done
echo "killed rank 1: ranks 0 and 2 stopped in ${dt}s"

# 4. SIGSTOP one of 3 MPI ranks: the timeout
if command -v mpiexec >/dev/null; then
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
        mpiexec -n 3 --oversubscribe "$train" --deepspeed_config "$c3" "${common[@]}" \
        --steps 100000 --comm_timeout 5 2> "$tmp/stop.err" &
    mp=$!
    for i in $(seq 1 300); do grep -q "step 10/" "$tmp/stop.err" && break; sleep 0.2; done
    victim=""
    for p in $(pgrep -f "dsrt-train --deepspeed_config $c3"); do
        if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then victim=$p; fi
    done
    [ -n "$victim" ] || fail "could not find MPI rank 1"
    kill -STOP "$victim"
    t0=$(date +%s)
    if wait $mp; then fail "mpiexec exited 0 with a stopped rank"; fi
    dt=$(( $(date +%s) - t0 ))
    kill -9 "$victim" 2>/dev/null
    [ "$dt" -le 60 ] || fail "the job took ${dt}s to end after rank 1 stopped"
    # a rank may name rank 1 among others still stuck behind it ("waiting for ranks 0, 1")
    grep -E "timed out after [0-9]+ s waiting for ranks? ([0-9]+, )*1([^0-9]|$)" "$tmp/stop.err" ||
        fail "no timeout error naming rank 1"
    echo "stopped rank 1: the job ended in ${dt}s"
fi
echo "PASS"
