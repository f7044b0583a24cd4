#!/bin/bash
# The SSE demo under load (what `make bench-io` runs).
#
# Usage: bench/sse-load.sh [SSE_BINARY [SSE_CLIENTS_BINARY]]
#   (defaults: build/demos/sse and build/bench-io/sse_clients)
# Environment: WRK_SECONDS (10), WRK_CONNS (1000), SSE_KS ("1000 5000 10000"),
#   HOLD (seconds each K is held, 3).
#
# (a) wrk -t2 -cWRK_CONNS -dWRK_SECONDSs --latency against /stream with
#     --delay 0 (each response: the demo's events at once, then the end of
#     the chunked body; keep-alive): requests/s, p99 latency, non-2xx
#     responses and socket errors (both must be none), and the server's open
#     fds (/proc/PID/fd) and resident memory (VmRSS) before the run and
#     after it, once the connections are gone.
# (b) K streams held open at once (bench/sse_clients: K connections to
#     /stream, the demo started with a --delay long enough that no stream
#     ends, each counted once its first event arrived), for each K of
#     SSE_KS, a fresh server each time: its fds and RSS with none and with
#     the K streams open, RSS per stream = (RSS(K) - RSS(0)) / K, and its
#     fds and RSS once the clients are gone (fds back to the start when
#     the server notices closed streams within 10 s).
# Exits non-zero if wrk saw an error or a K was not held entirely.
set -u
sse=${1:-build/demos/sse}
clients=${2:-build/bench-io/sse_clients}
wrk_seconds=${WRK_SECONDS:-10}
wrk_conns=${WRK_CONNS:-1000}
ks=${SSE_KS:-"1000 5000 10000"}
hold=${HOLD:-3}
for f in "$sse" "$clients"; do
    [ -x "$f" ] || { echo "sse-load: $f is missing (make bench-io builds it)" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "sse-load: wrk is missing (apt-get install wrk)" >&2; exit 2; }
# 65536 if allowed (raising the hard limit needs CAP_SYS_RESOURCE), else
# the hard limit: K streams take K fds in the client and in the server.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "# sse-load: ulimit -n $(ulimit -n), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
status=0

# start_server FLAGS...: the demo in the background; sets pid and port.
nserver=0
start_server() {
    nserver=$((nserver + 1))
    out=$tmp/server.$nserver.out # a new file: the last one's line must not be read
    "$sse" --host 127.0.0.1 --port 0 "$@" >"$out" 2>&1 &
    pid=$!
    port=
    for _ in $(seq 100); do
        port=$(sed -n 's|^sse: listening on http://[^/]*:\([0-9]*\)/$|\1|p' "$out" 2>/dev/null)
        [ -n "$port" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "sse-load: the server did not start:" >&2
    cat "$out" >&2
    exit 1
}

stop_server() {
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=
}

fds() { ls "/proc/$pid/fd" | wc -l; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"; } # KiB

# wait_fds N: until the server has N fds open again (at most 10 s).
wait_fds() {
    for _ in $(seq 200); do
        [ "$(fds)" -le "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

# ---- (a) wrk -------------------------------------------------------------------------
start_server --max-clients $((wrk_conns * 2)) --delay 0
fds0=$(fds) rss0=$(rss)
echo "== wrk -t2 -c$wrk_conns -d${wrk_seconds}s --latency http://127.0.0.1:$port/stream (server --delay 0)"
wrk -t2 -c"$wrk_conns" -d"${wrk_seconds}s" --latency "http://127.0.0.1:$port/stream" | tee "$tmp/wrk.out"
wait_fds "$fds0"
fds1=$(fds) rss1=$(rss)
rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.out")
p99=$(awk '$1 == "99%" { print $2 }' "$tmp/wrk.out")
non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$tmp/wrk.out")
sockerr=$(sed -n 's/.*Socket errors: *//p' "$tmp/wrk.out")
echo
echo "wrk: ${rps:-?} requests/s, p99 ${p99:-?}, non-2xx responses: ${non2xx:-0}, socket errors: ${sockerr:-none}"
echo "server: fds $fds0 before, $fds1 after; RSS $rss0 KiB before, $rss1 KiB after"
if [ -n "$non2xx" ] || [ -n "$sockerr" ] || [ -z "$rps" ]; then
    echo "sse-load: FAILED: wrk saw errors" >&2
    status=1
fi
if [ "$fds1" -gt "$fds0" ]; then
    echo "sse-load: FAILED: the server kept $((fds1 - fds0)) fds after wrk" >&2
    status=1
fi
stop_server

# ---- (b) streams held at once --------------------------------------------------------------
# A fresh server for each K, so that RSS(0) is its own start.
echo
echo "== streams held at once (server --delay 3600 --max-clients 20000, a fresh one for each K)"
printf '%8s %8s %10s %8s %8s %10s %10s %16s %10s %10s\n' K held "connect s" "fds(0)" "fds(K)" \
    "RSS(0) KiB" "RSS(K) KiB" "RSS/stream KiB" "fds after" "RSS after"
for k in $ks; do
    start_server --max-clients 20000 --delay 3600
    fds0=$(fds) rss0=$(rss)
    "$clients" --port "$port" --clients "$k" --hold "$hold" >"$tmp/clients.out" 2>"$tmp/clients.err" &
    cpid=$!
    ready=
    for _ in $(seq 1200); do
        ready=$(grep '^ready' "$tmp/clients.out")
        [ -n "$ready" ] && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.05
    done
    fdk=$(fds) rssk=$(rss)
    wait "$cpid"
    crc=$?
    wait_fds "$fds0"
    fdsa=$(fds) rssa=$(rss)
    read -r _ held _ secs <<<"${ready:-ready 0 $k ?}"
    per=$(awk -v a="$rssk" -v b="$rss0" -v k="$k" 'BEGIN { printf "%.2f", (a - b) / k }')
    printf '%8d %8s %10s %8d %8d %10d %10d %16s %10d %10d\n' "$k" "$held" "$secs" "$fds0" "$fdk" \
        "$rss0" "$rssk" "$per" "$fdsa" "$rssa"
    if [ "$crc" -ne 0 ] || [ "$held" != "$k" ]; then
        echo "sse-load: FAILED: $k streams not all held:" >&2
        cat "$tmp/clients.out" "$tmp/clients.err" >&2
        status=1
    fi
    stop_server
done
exit $status
