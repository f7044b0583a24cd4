#!/bin/bash
# Prove that run-tests.sh, in a given mode, fails a run whose tests all
# "pass" but which leaks a block and reads past one (asan, valgrind), or
# races (tsan: two threads, and a fiber against a pool job):
#   scripts/selfcheck.sh asan|valgrind|tsan BINARY
set -u
mode=$1 bin=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
out=$("$(dirname "$0")/run-tests.sh" "$mode" "$dir" "$bin" 2>&1)
rc=$?
if [ "$mode" = tsan ]; then
    races=$(grep -c 'WARNING: ThreadSanitizer: data race' <<<"$out")
    if [ $rc -ne 0 ] && [ "$races" -ge 2 ]; then
        printf '%-10s %s\n' "[$mode]" "harness self-check: deliberate data races fail the run"
        exit 0
    fi
    echo "[$mode] harness self-check FAILED (exit $rc, race reports $races):" >&2
    echo "$out" >&2
    exit 1
fi
leak=$(grep -cE 'detected memory leaks|definitely lost' <<<"$out")
read=$(grep -cE 'heap-buffer-overflow|Invalid read' <<<"$out")
if [ $rc -ne 0 ] && [ "$leak" -gt 0 ] && [ "$read" -gt 0 ]; then
    printf '%-10s %s\n' "[$mode]" "harness self-check: a deliberate leak and an invalid read fail the run"
    exit 0
fi
echo "[$mode] harness self-check FAILED (exit $rc, leak reports $leak, invalid-read reports $read):" >&2
echo "$out" >&2
exit 1
