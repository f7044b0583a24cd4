#!/bin/bash
# Packaging checks, counted with the tests:
#   1. librill.so exports only rill_* symbols;
#   2. `make install PREFIX=tmp`, then the README's first example, built with
#      `pkg-config --cflags --libs rill`, compiles warning-free and runs.
#   scripts/test-package.sh RESULTS_DIR
set -u
res=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # name, then the command
    local name=$1
    shift
    printf '%-10s %-28s ' "[package]" "$name"
    if out=$("$@" 2>&1); then
        echo ok
        pass=$((pass + 1))
    else
        echo FAILED
        echo "$out"
        fail=$((fail + 1))
    fi
}

exports_only_rill() {
    local bad
    bad=$(nm -D --defined-only build/librill.so | awk '{print $3}' | grep -v '^rill_')
    [ -z "$bad" ] || { echo "exported: $bad"; return 1; }
}

readme_example_runs_installed() {
    make --no-print-directory install PREFIX="$tmp/prefix" >/dev/null || return 1
    # The README's first C block.
    awk '/^```c$/ { on = 1; next } on && /^```$/ { exit } on' README.md >"$tmp/app.c"
    export PKG_CONFIG_PATH=$tmp/prefix/lib/pkgconfig
    cc -Wall -Wextra -Werror "$tmp/app.c" $(pkg-config --cflags --libs rill) -o "$tmp/app" || return 1
    out=$(LD_LIBRARY_PATH=$tmp/prefix/lib "$tmp/app") || return 1
    [ "$out" = $'data_for_1\ndata_for_2\ndata_for_3' ] || { echo "printed: $out"; return 1; }
}

check exports_only_rill exports_only_rill
check readme_example_runs_installed readme_example_runs_installed
echo "$pass $fail" >"$res/package.counts"
[ $fail -eq 0 ]
