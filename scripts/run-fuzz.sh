#!/bin/bash
# Run a libFuzzer target for a while from its seed corpus, and record the
# result with the tests.
#   scripts/run-fuzz.sh RESULTS_DIR BINARY SEED_DIR SECONDS
# New inputs go to a scratch directory (the committed seeds are left as
# they are).  A crash, a leak, a sanitizer report or a failed invariant
# (the target traps) stops the fuzzer with a non-zero status: the input
# that did it is kept as RESULTS_DIR/fuzz/NAME-crash-* (or leak-, timeout-,
# oom-), and the run fails.  RESULTS_DIR/fuzz.counts receives "passed
# failed".
set -u
res=$1 bin=$2 seeds=$3 secs=$4
name=$(basename "$bin")
dir=$res/fuzz
mkdir -p "$dir"
rm -f "$dir/$name"-* "$dir/$name.out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-10s %-28s ' "[fuzz]" "$name"
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$dir/$name-" "$work" "$seeds" >"$dir/$name.out" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/$name.out")
artifacts=$(ls "$dir/$name"-* 2>/dev/null)
if [ $rc -eq 0 ] && [ -z "$artifacts" ] && [ -n "$runs" ]; then
    echo "ok ($runs inputs in $secs s, $(find "$work" -type f | wc -l) new in the corpus)"
    echo "1 0" >"$res/fuzz.counts"
    exit 0
fi
echo "FAILED (exit $rc)"
grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==|deadly signal' "$dir/$name.out" | head -n 20
for a in $artifacts; do echo "--- $a"; head -c 300 "$a" | od -c | head -n 10; done
echo "0 1" >"$res/fuzz.counts"
exit 1
