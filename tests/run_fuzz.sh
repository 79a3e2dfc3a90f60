#!/usr/bin/env bash
# Builds the config reader's libFuzzer target with clang (ASan + UBSan) in its
# own tree and runs it briefly, seeded with the shipped and real configs.
#   run_fuzz.sh CLANG SOURCE_DIR BUILD_DIR   (DSRT_FUZZ_SECONDS, default 30)
set -euo pipefail
clang=$1 src=$2 out=$3
secs=${DSRT_FUZZ_SECONDS:-30}
mkdir -p "$out/corpus"
cflags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$src/include -I$src/plugin -I$src/kernels -I$src/zero"
cflags="$cflags -DDSRT_VERSION_STRING=\"fuzz\" -DDSRT_BUILD_STRING=\"fuzz\""
if ! echo 'int LLVMFuzzerTestOneInput(const char*d,unsigned long n){(void)d;(void)n;return 0;}' |
    "$clang" -x c -fsanitize=fuzzer - -o "$out/probe" 2>/dev/null; then
    echo "SKIP: $clang cannot build libFuzzer targets (install libclang-rt-14-dev)"
    exit 77
fi
# the whole library but CUDA (the fuzzer drives the public API table)
blas_pc=openblas
for d in /usr/lib/*/openblas-openmp/pkgconfig; do [ -f "$d/openblas.pc" ] && export PKG_CONFIG_PATH="$d"; done
srcs=$(ls "$src"/plugin/*.c "$src"/model/*.c "$src"/kernels/cpu/*.c "$src"/zero/*.c | grep -v '/export.c$')
"$clang" $cflags -I"$src/model" -fopenmp -fno-math-errno -ffp-contract=off $(pkg-config --cflags $blas_pc hdf5) \
    -o "$out/fuzz_config" "$src/tests/fuzz_config.c" $srcs $(pkg-config --libs $blas_pc hdf5) -lm -lpthread -ldl
cp "$src"/configs/*.json "$out/corpus/"
shared=${DSRT_SHARED_DIR:-$src/../shared}
if [ -d "$shared/ds_configs/real" ]; then cp "$shared"/ds_configs/real/*.json "$out/corpus/" 2>/dev/null || true; fi
"$out/fuzz_config" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" 2>&1 | tail -n 15
