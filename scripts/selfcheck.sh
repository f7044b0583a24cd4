#!/bin/bash
# Prove that run-tests.sh, in a given mode, fails a run whose tests all
# "pass" but which leaks a block and reads past one:
#   scripts/selfcheck.sh asan|valgrind BINARY
set -u
mode=$1 bin=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
out=$("$(dirname "$0")/run-tests.sh" "$mode" "$dir" "$bin" 2>&1)
rc=$?
leak=$(grep -cE 'detected memory leaks|definitely lost' <<<"$out")
read=$(grep -cE 'heap-buffer-overflow|Invalid read' <<<"$out")
if [ $rc -ne 0 ] && [ "$leak" -gt 0 ] && [ "$read" -gt 0 ]; then
    printf '%-10s %s\n' "[$mode]" "harness self-check: a deliberate leak and an invalid read fail the run"
    exit 0
fi
echo "[$mode] harness self-check FAILED (exit $rc, leak reports $leak, invalid-read reports $read):" >&2
echo "$out" >&2
exit 1
