#!/usr/bin/env bash
# plugin/abi_frozen.c catches a changed ABI layout: it compiles against
# include/dsrt.h as it is, and fails against copies with two members swapped,
# a member retyped, and a member inserted before the end.
#   check_abi_frozen.sh CC SOURCE_DIR
set -uo pipefail
cc=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
compile() { "$cc" -std=c11 -c -I "$1" "$src/plugin/abi_frozen.c" -o "$tmp/o.o" 2> "$tmp/err"; }
if ! compile "$src/include"; then
    echo "FAIL: abi_frozen.c does not compile against include/dsrt.h:"; cat "$tmp/err"; exit 1
fi
echo "ok: compiles against include/dsrt.h"
fail=0
mutate() { # mutate NAME SED-EXPRESSION
    mkdir -p "$tmp/$1"
    sed -E "$2" "$src/include/dsrt.h" > "$tmp/$1/dsrt.h"
    if cmp -s "$src/include/dsrt.h" "$tmp/$1/dsrt.h"; then
        echo "FAIL: the mutation '$1' changed nothing (the header moved on: update this test)"; fail=1; return
    fi
    if compile "$tmp/$1"; then
        echo "FAIL: abi_frozen.c accepts the header with $1"; fail=1
    else
        echo "ok: refused with $1: $(grep -m1 -o 'dsrt_[a-z_]*\.[a-z_]* moved\|sizeof([a-z_]*) changed' "$tmp/err")"
    fi
}
# save_dir and tag of dsrt_engine_save_args swapped (same size: only offsets tell)
mutate swapped '/^typedef struct dsrt_engine_save_args/,/^}/{s/const char \*save_dir;/const char *TAGX;/;s/const char \*tag; /const char *save_dir;/;s/TAGX/tag/}'
# dsrt_api.abi_minor widened to 64 bits
mutate retyped 's/^    uint32_t abi_minor;/    uint64_t abi_minor;/'
# a member inserted in the middle of dsrt_engine_load_args
mutate inserted 's/^(    const char \*load_dir;)/\1\n    int inserted;/'
exit $fail
