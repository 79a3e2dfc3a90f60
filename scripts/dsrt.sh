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
          libcmocka-dev libcjson-dev libhdf5-dev hdf5-tools libopenblas-openmp-dev libopenmpi-dev openmpi-bin
          valgrind clang libclang-rt-14-dev)

install_missing() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "== installing: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
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
    echo "== main job: dsrt-config configs/ds_config.json"
    "$build/dsrt-config" configs/ds_config.json
    ;;
test)
    install_missing
    configure_and_build
    echo "== tests"
    ctest --test-dir "$build" --output-on-failure -j "$(nproc)" --timeout 900
    ;;
*)
    echo "usage: scripts/dsrt.sh run|test" >&2
    exit 2
    ;;
esac
