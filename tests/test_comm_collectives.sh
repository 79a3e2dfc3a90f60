#!/usr/bin/env bash
# test_comm_collectives on real process groups:
#   Open MPI, 2 and 3 ranks, MPI's own collectives and comm.c's rings;
#   MPICH (the MPICH ABI: MPICH, Intel MPI, Cray MPICH), 2 ranks, when its
#     mpiexec is installed (Debian: mpich; scripts/dsrt.sh installs it);
#   TCP (torchrun's variables), 2 ranks.
# A family that is not installed is reported as skipped, by name.
set -uo pipefail
bin=$1
rc=0
fail() { echo "FAIL: $*"; rc=1; }
run() { # label, command...
    local label=$1; shift
    echo "== $label"
    if ! timeout 300 "$@" > "$tmp/out" 2>&1; then
        cat "$tmp/out"; fail "$label"
    else
        grep -E "^test_comm_collectives|PASSED" "$tmp/out" | sort -u
    fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1

ompi=$(command -v mpiexec.openmpi || true)
if [ -n "$ompi" ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    for n in 2 3; do
        run "Open MPI, $n ranks, MPI's collectives" "$ompi" -n $n --oversubscribe "$bin"
        run "Open MPI, $n ranks, rings" "$ompi" -n $n --oversubscribe -x DSRT_MPI_COLLECTIVES=ring "$bin"
    done
else
    echo "SKIP: Open MPI (mpiexec.openmpi) is not installed"
fi

mpich=$(command -v mpiexec.mpich || true)
if [ -n "$mpich" ]; then
    # hydra passes the environment on; the MPICH ABI library is found by its soname
    run "MPICH, 2 ranks, MPI's collectives" env -u OMPI_COMM_WORLD_SIZE "$mpich" -n 2 "$bin"
    run "MPICH, 2 ranks, rings" env DSRT_MPI_COLLECTIVES=ring "$mpich" -n 2 "$bin"
else
    echo "SKIP: MPICH (mpiexec.mpich) is not installed (Debian: apt-get install mpich)"
fi

port=$((21000 + $$ % 20000))
echo "== TCP, 2 ranks"
for r in 0 1; do
    RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port timeout 300 "$bin" > "$tmp/tcp$r" 2>&1 &
done
wait %1 || { cat "$tmp/tcp0"; fail "TCP rank 0"; }
wait %2 || { cat "$tmp/tcp1"; fail "TCP rank 1"; }
grep -E "^test_comm_collectives|PASSED" "$tmp/tcp0" | sort -u
exit $rc
