#!/usr/bin/env bash
# Builds one libFuzzer target with clang (ASan + UBSan) in its own CMake tree,
# from the library's own source lists (CMakeLists.txt, -DDSRT_FUZZ=ON), and
# runs it for DSRT_FUZZ_SECONDS (default 30) on its seed corpus:
#   fuzz_config        the ds_config reader: configs/*.json and the real configs
#   fuzz_model_config  the GPT2Config reader: configs/model/*.json
#   fuzz_ckpt          the checkpoint loader: a checkpoint it makes itself
#   fuzz_safetensors   the safetensors reader: small valid files
#   selftest           fuzz_config with a planted crash: the run must FAIL,
#                      so a finding can never pass for a skip (exit 0 here)
#   run_fuzz.sh CLANG SOURCE_DIR BUILD_DIR TARGET
# Exit: 0 nothing found, 1 a finding (its input saved in BUILD_DIR/TARGET/),
# 77 clang cannot build libFuzzer targets.
set -uo pipefail
clang=$1 src=$2 out=$3 target=${4:-fuzz_config}
secs=${DSRT_FUZZ_SECONDS:-30}
mkdir -p "$out"
if ! echo 'int LLVMFuzzerTestOneInput(const char*d,unsigned long n){(void)d;(void)n;return 0;}' |
    "$clang" -x c -fsanitize=fuzzer - -o "$out/probe" 2>/dev/null; then
    echo "SKIP: $clang cannot build libFuzzer targets (install libclang-rt-14-dev)"
    exit 77
fi
# the whole library but CUDA; clang's warnings differ from gcc's, and gcc's
# build is the warnings gate. One tree for every target, built under a lock.
exec 9> "$out/.lock"
flock 9
if [ ! -f "$out/tree/CMakeCache.txt" ]; then
    cmake -S "$src" -B "$out/tree" -G Ninja -DCMAKE_C_COMPILER="$clang" -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DDSRT_FUZZ=ON -DDSRT_ENABLE_CUDA=OFF -DDSRT_SANITIZERS=OFF \
        -DBUILD_TESTING=OFF -DDSRT_WERROR=OFF -DDSRT_BUILD_BENCH=OFF > "$out/configure.log" 2>&1 ||
        { cat "$out/configure.log"; exit 1; }
fi
bin=$target
[ "$target" = selftest ] && bin=fuzz_config
cmake --build "$out/tree" --target "$bin" > "$out/build-$bin.log" 2>&1 || { tail -40 "$out/build-$bin.log"; exit 1; }
flock -u 9
work="$out/$target"
rm -rf "$work"
mkdir -p "$work/corpus"
case $target in
fuzz_config | selftest)
    cp "$src"/configs/*.json "$work/corpus/"
    shared=${DSRT_SHARED_DIR:-$src/../shared}
    if [ -d "$shared/ds_configs/real" ]; then cp "$shared"/ds_configs/real/*.json "$work/corpus/" 2>/dev/null || true; fi
    ;;
fuzz_model_config) cp "$src"/configs/model/*.json "$work/corpus/"
    for m in "$src"/compat_tests/hf/models/* "$src"/compat_tests/hf/llama32-1b-layer; do
        cp "$m/config.json" "$work/corpus/$(basename "$m").json"
    done ;;
fuzz_ckpt) export DSRT_FUZZ_CORPUS="$work/corpus" ;;
fuzz_safetensors)
    perl -e '$h = q({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}); print pack("Q<", length $h), $h, "\0" x 8' \
        > "$work/corpus/one"
    perl -e '$h = q({"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,1],"data_offsets":[0,4]},) .
        q("b":{"dtype":"F16","shape":[],"data_offsets":[4,6]}}); print pack("Q<", length $h), $h, "\1" x 6' \
        > "$work/corpus/two"
    ;;
esac
max_len=65536
[ "$target" = fuzz_ckpt ] && max_len=1048576
opts=(-max_total_time="$secs" -max_len=$max_len -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
      -error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$work/")
if [ "$target" = selftest ]; then
    printf 'dsrt-fuzz-selftest' > "$work/corpus/planted"
    DSRT_FUZZ_SELFTEST=1 "$out/tree/$bin" "${opts[@]}" "$work/corpus" > "$work/log" 2>&1
    rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 77 ] && grep -q "deadly signal\|ERROR: libFuzzer" "$work/log"; then
        echo "ok: the planted crash failed the run (exit $rc), as a real finding would"
        exit 0
    fi
    echo "FAIL: the planted crash gave exit $rc: a finding would not fail CI"
    tail -5 "$work/log"
    exit 1
fi
"$out/tree/$bin" "${opts[@]}" "$work/corpus" > "$work/log" 2>&1
rc=$?
tail -n 12 "$work/log"
grep -E "^stat::number_of_executed_units" "$work/log" | sed "s/^/$target: /"
[ $rc -eq 0 ] || { echo "FAIL: $target found something (exit $rc); the input is under $work/"; exit 1; }
