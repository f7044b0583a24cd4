#!/bin/bash
# Run the demo programs; each checks its own claims and exits non-zero if one
# does not hold.
#   scripts/run-demos.sh RESULTS_DIR|- BINARY...
# With "-" (make demo): every demo runs with --scale 0.25 and its output is
# shown under a header line.  With a directory (make test): every demo runs
# with --scale 0.02, its output goes to RESULTS_DIR/demos/NAME.out, one line
# per demo says ok or FAILED (then the output follows), and
# RESULTS_DIR/demos.counts receives "passed failed".
# Exits non-zero if any demo failed.
set -u
if [ $# -lt 1 ]; then
    echo "usage: $0 RESULTS_DIR|- BINARY..." >&2
    exit 2
fi
res=$1
shift
pass=0 fail=0

if [ "$res" = - ]; then
    for bin in "$@"; do
        name=$(basename "$bin")
        echo "==== $name --scale 0.25"
        if "$bin" --scale 0.25; then
            pass=$((pass + 1))
        else
            echo "==== $name FAILED (exit $?)"
            fail=$((fail + 1))
        fi
        echo
    done
    echo "demos: $pass passed, $fail failed"
    [ $fail -eq 0 ]
    exit
fi

dir=$res/demos
rm -rf "$dir" && mkdir -p "$dir"
for bin in "$@"; do
    name=$(basename "$bin")
    printf '%-10s %-28s ' "[demos]" "$name"
    "$bin" --scale 0.02 >"$dir/$name.out" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1))
        echo "ok"
    else
        fail=$((fail + 1))
        echo "FAILED (exit $rc)"
        cat "$dir/$name.out"
    fi
done
echo "$pass $fail" >"$res/demos.counts"
[ $fail -eq 0 ]
