# Shared by the CLI test scripts (sourced): $dir is the scratch folder whose
# "out" file holds the last command's output; fail=1 records a failure.
#   check NAME EXPECTED_RC ACTUAL_RC [pattern that must be in the output]
check() {
    if [ "$3" -ne "$2" ]; then echo "FAIL $1: exit $3, expected $2"; cat "$dir/out"; fail=1; return; fi
    if [ $# -ge 4 ] && ! grep -q -- "$4" "$dir/out"; then echo "FAIL $1: no '$4' in:"; cat "$dir/out"; fail=1; return; fi
    echo "ok   $1"
}
