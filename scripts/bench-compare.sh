#!/bin/sh
# The benchmarks of every switch backend, side by side (what `make bench` runs).
#
# Usage: scripts/bench-compare.sh [--quick] [--rounds N] NAME=DIR ...
#   NAME=DIR   a backend and the directory of its bench programs, e.g.
#              ucontext=build/bench fast=build/fast/bench (the first is the
#              one the others' speedups are measured against)
#   --quick    every run with --quick (iteration counts divided by 10)
#   --rounds N how many times the key figures are taken (default 3)
#
# Round 1 runs every program of every backend in full and prints its table,
# program by program, the backends one after the other.  Rounds 2..N run
# switch, gen and threads again with --quick, silently, alternating the
# backends the same way.  Only these three feed the summary: each run of
# them prints its rows (--rows, "=row<TAB>name<TAB>ns<TAB>ratio to the
# program's bare rill__ctx_switch row").  The summary gives, for each key
# figure and backend, the median over the rounds of its ns, the speedup of
# each backend over the first (how many times faster than it), and the
# median over the rounds of its ratio to the backend's own bare
# rill__ctx_switch (each taken side by side in one run, so a busy machine
# disturbs it less than the ns), with the goals set for the fast backend.
# Last, the echo server's figures of each backend (bench/echo, round 1
# only: it takes its own medians, alternating rill and plain epoll servers),
# from its "=echo<TAB>rill/s<TAB>epoll/s<TAB>ratio<TAB>rill CPU us<TAB>epoll
# CPU us" line.
set -eu
quick=""
rounds=3
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=--quick ;;
        --rounds) rounds=$2; shift ;;
        -*) echo "usage: $0 [--quick] [--rounds N] NAME=DIR ..." >&2; exit 2 ;;
        *) break ;;
    esac
    shift
done
[ $# -gt 0 ] || { echo "usage: $0 [--quick] [--rounds N] NAME=DIR ..." >&2; exit 2; }

rows=$(mktemp)
out=$(mktemp)
echo_rows=$(mktemp)
trap 'rm -f "$rows" "$out" "$echo_rows"' EXIT

# The programs of the first backend's directory: switch, gen and threads
# first (the summary's), then any other in name order.
first_dir=${1#*=}
programs="switch gen threads"
for p in "$first_dir"/*; do
    name=${p##*/}
    case " $programs " in *" $name "*) continue ;; esac
    [ -x "$p" ] && programs="$programs $name"
done

# run ROUND PROGRAM BACKEND DIR OPTIONS...: one of the summary's programs.
# Its rows go to $rows as "round<TAB>backend<TAB>program<TAB>name<TAB>ns<TAB>
# ratio"; its table to $out.
run() {
    r=$1 prog=$2 backend=$3 dir=$4
    shift 4
    "$dir/$prog" "$@" --rows >"$out" || { cat "$out"; echo "bench: $dir/$prog failed" >&2; exit 1; }
    grep '^=row' "$out" | cut -f2- | sed "s|^|$r\t$backend\t$prog\t|" >>"$rows"
}

for prog in $programs; do
    for spec in "$@"; do
        case " switch gen threads " in
            *" $prog "*) run 1 "$prog" "${spec%%=*}" "${spec#*=}" $quick
                         grep -v '^=row' "$out" ;;
            *) if [ "$prog" = echo ]; then # its figures also go to the echo summary
                   "${spec#*=}/$prog" $quick --rows >"$out" ||
                       { cat "$out"; echo "bench: ${spec#*=}/$prog failed" >&2; exit 1; }
                   grep -v '^=echo' "$out"
                   grep '^=echo' "$out" | cut -f2- | sed "s|^|${spec%%=*}\t|" >>"$echo_rows"
               else
                   "${spec#*=}/$prog" $quick || { echo "bench: ${spec#*=}/$prog failed" >&2; exit 1; }
               fi ;;
        esac
        echo
    done
done
r=2
while [ "$r" -le "$rounds" ]; do
    echo "# summary round $r of $rounds (--quick)"
    for prog in switch gen threads; do
        for spec in "$@"; do run "$r" "$prog" "${spec%%=*}" "${spec#*=}" --quick; done
    done
    r=$((r + 1))
done

# The key figures: program, the start of the row's name, the summary's label,
# and the goal for the fast backend, as a ratio to its bare rill__ctx_switch.
figures='switch	bare swapcontext switch	bare swapcontext switch	
switch	bare _setjmp/_longjmp switch	bare _setjmp/_longjmp switch	
switch	bare rill__ctx_switch	bare rill__ctx_switch (the backend'"'"'s own)	
switch	rill switch (yield, 2 tasks)	rill switch (rill_yield_now, 2 tasks)	2
gen	rill_gen_next, body only yields	generator item (rill_gen_next, yield-only)	5
switch	rill spawn+join (one by one)	spawn+join, one at a time	8
switch	rill spawn+join (batch 1000)/task	spawn+join, batch of 1000, per task	8
threads	rill_queue put+get, capacity 1	queue ping-pong, capacity 1, per item	
gen	value through source->map->filter	one item through source->map->filter	'

backends=""
for spec in "$@"; do backends="$backends ${spec%%=*}"; done
echo "# rill: the switch backends side by side | ns per operation: median of $rounds runs each, taken alternately"
echo "$figures" | awk -F'\t' -v backends="$backends" -v rowfile="$rows" '
function median(list,   v, n, i, j, t) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
BEGIN {
    nb = split(backends, b, " ")
    while ((getline line < rowfile) > 0) {
        split(line, f, "\t")   # round, backend, program, name, ns, ratio
        key = f[2] SUBSEP f[3] SUBSEP f[4]
        got[key] = got[key] " " f[5]
        if (f[6] != "-") rat[key] = rat[key] " " f[6]
        names[f[3] SUBSEP f[4]] = 1
    }
}
{   # one figure: its median per backend
    label[NR] = $3; goal[NR] = $4
    if ($2 == "bare rill__ctx_switch") ctx = NR
    for (i = 1; i <= nb; i++) {
        med[NR, i] = ratio[NR, i] = ""
        for (k in names) {
            split(k, pn, SUBSEP)
            if (pn[1] != $1 || index(pn[2], $2) != 1) continue
            if ((b[i] SUBSEP k) in got) med[NR, i] = median(got[b[i] SUBSEP k])
            if ((b[i] SUBSEP k) in rat) ratio[NR, i] = median(rat[b[i] SUBSEP k])
        }
    }
}
function cell(x, fmt) { if (x == "") printf " %10s", "-"; else printf fmt, x }
END {
    printf "%-46s", "ns per operation"
    for (i = 1; i <= nb; i++) printf " %10s", b[i]
    for (i = 2; i <= nb; i++) printf " %16s", b[i] " speedup"
    printf "\n"
    for (r = 1; r <= NR; r++) {
        printf "%-46s", label[r]
        for (i = 1; i <= nb; i++) cell(med[r, i], " %10.1f")
        for (i = 2; i <= nb; i++)
            cell(med[r, 1] == "" || med[r, i] == "" ? "" : med[r, 1] / med[r, i], " %15.1fx")
        printf "\n"
    }
    if (!ctx) exit
    printf "\n%-46s", "ratio to the backend'"'"'s bare rill__ctx_switch"
    for (i = 1; i <= nb; i++) printf " %10s", b[i]
    printf "   goal (fast)\n"
    for (r = ctx + 1; r <= NR; r++) {
        printf "%-46s", label[r]
        for (i = 1; i <= nb; i++)
            cell(ratio[r, i], " %9.2fx")
        if (goal[r] != "") printf "   <= %sx", goal[r]
        printf "\n"
    }
}'

if [ -s "$echo_rows" ]; then
    echo
    echo "# echo server (bench/echo): round trips/s through rill (rill_read + rill_write, a task per connection) and plain epoll, same client, same run; medians"
    awk -F'\t' '
    BEGIN { printf "%-10s %12s %12s %11s %15s %16s %10s\n", "backend", "rill rt/s", "epoll rt/s", "rill/epoll", "rill CPU us/rt", "epoll CPU us/rt", "CPU ratio" }
    { printf "%-10s %12.0f %12.0f %10.3fx %15.2f %16.2f %9.2fx\n", $1, $2, $3, $4, $5, $6, $5 / $6 }
    END { printf "goal: rill/epoll >= 0.9 (round trips/s: the median of the ratios of neighbouring slices)\n" }' "$echo_rows"
fi
