#!/bin/bash
# Run Criterion test binaries one way and record the counts.
#   scripts/run-tests.sh MODE RESULTS_DIR BINARY...
# MODE: plain | asan | tsan | valgrind.  In the checking modes a test that
# "passes" but leaves a sanitizer report or a valgrind error/definite leak
# fails the mode: Criterion itself cannot see reports printed at exit.
# The file RESULTS_DIR/MODE.counts receives "passed failed".
# Tests named *overflow* or *aborts* end their process on purpose (a stack
# overflow, an abort): valgrind reports that as an error of its own, so the
# valgrind mode leaves them out.  Tests named *forked* start threads in a
# child forked from a threaded process, which ThreadSanitizer does not
# support: the tsan mode leaves them out.
# A MODE may name a build variant after a dash (plain-fast, asan-portable):
# its results are kept apart, and it runs the way its first word says.
set -u
label=$1 res=$2
mode=${label%%-*}
shift 2
dir=$res/$label
rm -rf "$dir" && mkdir -p "$dir/logs"
pass=0 fail=0 bad=0

run() { # binary -> runs it in this mode, output to $dir/NAME.out
    local bin=$1 name
    name=$(basename "$bin")
    case $mode in
    plain) "$bin" --jobs=2 ;;
    asan)
        ASAN_OPTIONS="log_path=$dir/logs/asan.$name:detect_leaks=1:abort_on_error=0" \
        UBSAN_OPTIONS="log_path=$dir/logs/ubsan.$name:print_stacktrace=1:halt_on_error=1" \
            "$bin" --jobs=2 ;;
    tsan)
        TSAN_OPTIONS="log_path=$dir/logs/tsan.$name:halt_on_error=0" \
            "$bin" '--filter=!*forked*' ;;
    valgrind)
        RILL_UNDER_VALGRIND=1 valgrind --trace-children=yes --child-silent-after-fork=no \
            --log-file="$dir/logs/vg.$name.%p" --leak-check=full \
            --errors-for-leak-kinds=definite --show-leak-kinds=definite \
            --error-exitcode=99 "$bin" --jobs=2 --filter='!(*overflow*|*aborts*)' ;;
    esac
}

for bin in "$@"; do
    name=$(basename "$bin")
    printf '%-16s %-28s ' "[$label]" "$name"
    run "$bin" >"$dir/$name.out" 2>&1
    rc=$?
    line=$(grep -a 'Synthesis:' "$dir/$name.out" | tail -n 1)
    tested=$(sed -n 's/.*Tested: \([0-9]*\).*/\1/p' <<<"$line")
    passing=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$line")
    : "${tested:=0}" "${passing:=0}"
    pass=$((pass + passing))
    fail=$((fail + tested - passing))
    reports=""
    case $mode in
    asan) # ASan warns once per process that it does not fully support
          # swapcontext; rill annotates every switch, so that line alone is
          # not a report.
          reports=$(grep -lsvxE "==[0-9]+==WARNING: ASan doesn't fully support makecontext/swapcontext functions and may produce false positives in some cases!" \
                      "$dir/logs/asan.$name."* "$dir/logs/ubsan.$name."*) ;;
    tsan) reports=$(grep -ls 'ThreadSanitizer' "$dir/logs/tsan.$name."*) ;;
    valgrind) reports=$(grep -lE 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]' \
                          "$dir/logs/vg.$name."* 2>/dev/null) ;;
    esac
    if [ -z "$line" ] || [ $rc -ne 0 ] || [ "$tested" != "$passing" ] || [ -n "$reports" ]; then
        bad=$((bad + 1))
        [ "$tested" = "$passing" ] && fail=$((fail + 1)) # a clean count but a report
        echo "FAILED ($passing/$tested passed, exit $rc)"
        grep -a -E '\[(FAIL|----)\]|Crash|signal|Timed out' "$dir/$name.out" | head -n 20
        for r in $reports; do
            case $r in /*|build/*) f=$r ;; *) f=$dir/logs/$r ;; esac
            echo "--- $f"; head -n 40 "$f"
        done
    else
        echo "ok ($passing tests)"
    fi
done
echo "$pass $fail" >"$res/$label.counts"
[ $bad -eq 0 ]
