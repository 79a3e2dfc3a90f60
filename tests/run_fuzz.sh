#!/usr/bin/env bash
# Builds the config reader's libFuzzer target with clang (ASan + UBSan) in its
# own CMake tree, from the library's own source lists (CMakeLists.txt,
# -DDSRT_FUZZ=ON), and runs it briefly, seeded with the shipped and real configs.
#   run_fuzz.sh CLANG SOURCE_DIR BUILD_DIR   (DSRT_FUZZ_SECONDS, default 30)
set -euo pipefail
clang=$1 src=$2 out=$3
secs=${DSRT_FUZZ_SECONDS:-30}
mkdir -p "$out/corpus"
if ! echo 'int LLVMFuzzerTestOneInput(const char*d,unsigned long n){(void)d;(void)n;return 0;}' |
    "$clang" -x c -fsanitize=fuzzer - -o "$out/probe" 2>/dev/null; then
    echo "SKIP: $clang cannot build libFuzzer targets (install libclang-rt-14-dev)"
    exit 77
fi
# the whole library but CUDA (the fuzzer drives the public API table); clang's
# warnings differ from gcc's, and gcc's build is the warnings gate
if [ ! -f "$out/tree/CMakeCache.txt" ]; then
    cmake -S "$src" -B "$out/tree" -G Ninja -DCMAKE_C_COMPILER="$clang" -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DDSRT_FUZZ=ON -DDSRT_ENABLE_CUDA=OFF -DDSRT_SANITIZERS=OFF \
        -DBUILD_TESTING=OFF -DDSRT_WERROR=OFF -DDSRT_BUILD_BENCH=OFF > "$out/configure.log" 2>&1 ||
        { cat "$out/configure.log"; exit 1; }
fi
cmake --build "$out/tree" --target fuzz_config > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
cp "$src"/configs/*.json "$out/corpus/"
shared=${DSRT_SHARED_DIR:-$src/../shared}
if [ -d "$shared/ds_configs/real" ]; then cp "$shared"/ds_configs/real/*.json "$out/corpus/" 2>/dev/null || true; fi
"$out/tree/fuzz_config" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" 2>&1 | tail -n 15
