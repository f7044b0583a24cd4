#!/bin/bash
# Run the standalone switch tests (tests/switch/test_switch.c) and record the counts.
#   scripts/run-switch-tests.sh LABEL RESULTS_DIR BINARY...
# Each binary prints "PASS name" or "FAIL name: why" per check and exits 0
# only if all passed.  RUNNER (e.g. qemu-aarch64) runs binaries of another
# architecture.  RESULTS_DIR/LABEL.counts receives "passed failed", as
# run-tests.sh writes.
set -u
label=$1 res=$2
shift 2
dir=$res/$label
rm -rf "$dir" && mkdir -p "$dir"
pass=0 fail=0 bad=0
for bin in "$@"; do
    name=$(basename "$bin")
    printf '%-16s %-28s ' "[$label]" "$name"
    ${RUNNER:-} "$bin" >"$dir/$name.out" 2>&1
    rc=$?
    p=$(grep -c '^PASS ' "$dir/$name.out")
    f=$(grep '^FAIL ' "$dir/$name.out" | cut -d: -f1 | sort -u | wc -l)
    # A crash ends the binary before its summary: the check it was in failed.
    grep -q '^switch .*passed' "$dir/$name.out" || f=$((f + 1))
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
    pass=$((pass + p)) fail=$((fail + f))
    if [ "$f" -ne 0 ]; then
        bad=$((bad + 1))
        echo "FAILED ($p passed, exit $rc)"
        grep -v '^PASS ' "$dir/$name.out" | head -n 20
    else
        echo "ok ($p checks)"
    fi
done
echo "$pass $fail" >"$res/$label.counts"
[ $bad -eq 0 ]
