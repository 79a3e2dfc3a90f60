#!/usr/bin/env bash
# The project's two commands (see README.md):
#   scripts/dsrt.sh run    install what is missing, build, run the main job
#   scripts/dsrt.sh test   install what is missing, build, run every test (ctest)
# Both are idempotent: with everything installed and built they only check
# and rebuild what changed.
#   BUILD_DIR (default build), DSRT_SHARED_DIR (default ../shared).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
build=${BUILD_DIR:-build}
cmd=${1:-}

packages=(build-essential cmake ninja-build pkg-config git
          libcmocka-dev libcjson-dev libhdf5-dev hdf5-tools libopenblas-openmp-dev libopenmpi-dev openmpi-bin mpich
          valgrind clang libclang-rt-14-dev bible-kjv python3-h5py)
# only the tests: transformers' from_pretrained reads dsrt's exports (Debian's
# torch; transformers itself from PyPI into $build/hfvenv, see hf_venv)
test_packages=(python3-torch python3-venv python3-pip)

install_missing() {
    local missing=()
    for p in "${packages[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "== installing: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# A venv over Debian's python3-torch with transformers 4.45.2 (the last
# release for torch 1.13) from PyPI, for the hf_from_pretrained tests; those
# tests skip, saying why, when PyPI cannot be reached.
hf_venv() {
    local venv="$build/hfvenv"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import transformers, torch, safetensors" 2>/dev/null; then
        return 0
    fi
    echo "== making $venv (transformers 4.45.2 from PyPI over Debian's torch)"
    mkdir -p "$build"
    /usr/bin/python3 -m venv --system-site-packages "$venv" &&
        "$venv/bin/pip" install -q --disable-pip-version-check "transformers==4.45.2" ||
        echo "== warning: could not install transformers into $venv: the hf_from_pretrained tests will skip"
}

configure_and_build() {
    # nvcc from the CUDA toolkit, when the machine has one
    if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
        export PATH=/usr/local/cuda/bin:$PATH
    fi
    if [ ! -f "$build/CMakeCache.txt" ]; then
        cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
              -DDSRT_SHARED_DIR="${DSRT_SHARED_DIR:-$here/../shared}"
    fi
    cmake --build "$build" -j "$(nproc)"
}

case "$cmd" in
run)
    install_missing
    configure_and_build
    # The default corpus: the King James Bible from Debian's bible-kjv package,
    # verse references stripped, as one byte-level text file.
    corpus="$build/data/kjv.txt"
    if [ ! -s "$corpus" ]; then
        mkdir -p "$build/data"
        bible -f "Gen1:1-Rev22:21" | sed -E 's/^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ //' > "$corpus.tmp"
        mv "$corpus.tmp" "$corpus"
    fi
    steps=${DSRT_STEPS:-1000}
    echo "== main job: dsrt-train, gpt2-tiny on $corpus ($(wc -c < "$corpus") bytes), configs/ds_config.json, $steps steps"
    "$build/dsrt-train" --deepspeed_config configs/ds_config.json --model gpt2-tiny \
        --data "$corpus" --steps "$steps" --eval_every 250 --loss_csv "$build/main_job_loss.csv" --plot "$build/main_job.svg"
    echo "== loss per step: $build/main_job_loss.csv; the curves: $build/main_job.svg"
    ;;
test)
    install_missing "${test_packages[@]}"
    hf_venv
    configure_and_build
    echo "== tests"
    ctest --test-dir "$build" --output-on-failure -j "$(nproc)" --timeout 900
    ;;
*)
    echo "usage: scripts/dsrt.sh run|test" >&2
    exit 2
    ;;
esac
