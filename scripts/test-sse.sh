#!/bin/bash
# End-to-end checks of the SSE demo (demos/sse), counted with the tests:
#   1. curl -sN on /stream receives init, the progress and data events and
#      done, in order;
#   2. a curl killed mid-stream: the server logs the departure and releases
#      that stream exactly once;
#   3. headless Chromium loads the page, whose EventSource puts every event
#      into the DOM, and closes on done;
#   4. bad input (tests/sse/bad_client.py): malformed requests get 400, 64
#      KiB of headers 431, a slowloris 408 after the request timeout while a
#      good curl is served in full, a client over --max-clients 503;
#   5. SIGTERM stops the server cleanly (exit 0, every stream released);
#   6. the demo's --self-test built with ASan+UBSan (build/san/demos/sse,
#      if given) is clean, and the plain one passes under valgrind.
#   scripts/test-sse.sh RESULTS_DIR BINARY [ASAN_BINARY]
# The servers run on free ports (--port 0, the port read from the line they
# print) and are killed on the way out, whatever happens.
# shellcheck disable=SC2154 # port_NAME and pid_NAME are set by start()
set -u
res=$1 bin=$2 san=${3:-}
dir=$res/sse
rm -rf "$dir" && mkdir -p "$dir"
here=$(cd "$(dirname "$0")/.." && pwd)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        { kill -KILL "$p" && wait "$p"; } 2>/dev/null
    done
    rm -rf "$dir/chromium-profile"
}
trap cleanup EXIT
pass=0 fail=0
check() { # name, then the command
    local name=$1
    shift
    printf '%-10s %-28s ' "[sse]" "$name"
    if out=$("$@" 2>&1); then
        echo ok
        pass=$((pass + 1))
    else
        echo FAILED
        echo "$out" | tail -n 30
        fail=$((fail + 1))
    fi
    echo "$out" >"$dir/$name.out"
}

# start NAME FLAGS...: a server logging to $dir/NAME.{out,err}; sets
# port_NAME and pid_NAME.
start() {
    local name=$1 i p
    shift
    "$bin" --port 0 "$@" >"$dir/$name.out" 2>"$dir/$name.err" &
    pids+=($!)
    printf -v "pid_$name" %s $!
    for i in $(seq 100); do
        p=$(sed -n 's|^sse: listening on http://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$dir/$name.out")
        if [ -n "$p" ]; then
            printf -v "port_$name" %s "$p"
            return 0
        fi
        kill -0 $! 2>/dev/null || break
        sleep 0.05
    done
    echo "server $name did not start" >&2
    return 1
}

# The kinds of event in an SSE text, one word per event ("message" when it
# has data but no event line).
kinds() {
    awk 'BEGIN { RS = ""; FS = "\n" } {
        k = "message"
        for (i = 1; i <= NF; i++) if ($i ~ /^event: /) k = substr($i, 8)
        printf "%s ", k
    }'
}

expected_kinds() { # n
    local i s="init "
    for ((i = 0; i < $1; i++)); do s+="progress message "; done
    echo "${s}done "
}

stream_in_order() {
    local got want
    got=$(curl -sN --max-time 10 "http://127.0.0.1:$port_main/stream" | kinds)
    want=$(expected_kinds 5)
    echo "got:  $got"
    [ "$got" = "$want" ] || { echo "want: $want"; return 1; }
    curl -sN --max-time 10 "http://127.0.0.1:$port_main/stream" | grep -q '^data: {"current": 5, "total": 5, "percentage": 100.0}$'
}

killed_curl_released_once() {
    local i n
    curl -sN --max-time 1 "http://127.0.0.1:$port_slow/stream" >"$dir/killed-curl.txt"
    echo "curl exit $? (28: killed by --max-time) after $(kinds <"$dir/killed-curl.txt")"
    for i in $(seq 40); do
        grep -q 'released stream 1 ' "$dir/slow.err" && break
        sleep 0.05
    done
    sleep 0.3 # room for a second release, if there were one
    cat "$dir/slow.err"
    grep -q '^sse: client 1 left stream 1 mid-stream$' "$dir/slow.err" || return 1
    n=$(grep -c '^sse: released stream 1 ' "$dir/slow.err")
    [ "$n" -eq 1 ] && grep -q 'generator closed early' "$dir/slow.err"
}

chromium_shows_every_event() {
    local dom i
    command -v chromium >/dev/null || { echo "chromium is not installed"; return 1; }
    dom=$(timeout 90 chromium --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$dir/chromium-profile" --virtual-time-budget=20000 \
        --dump-dom "http://127.0.0.1:$port_main/" 2>"$dir/chromium.err")
    echo "$dom" >"$dir/chromium-dom.html"
    grep -o '<li class="ev-[a-z]*">[^<]*</li>' <<<"$dom"
    [ "$(grep -c '<li class="ev-init">init {"status": "started"}</li>' <<<"$dom")" -eq 1 ] || return 1
    for ((i = 0; i < 5; i++)); do
        grep -q "<li class=\"ev-progress\">progress {\"current\": $((i + 1)), \"total\": 5, " <<<"$dom" || return 1
        grep -q "<li class=\"ev-message\">message {\"id\": $i, \"message\": \"Message $i\"}</li>" <<<"$dom" || return 1
    done
    [ "$(grep -o 'class="ev-progress"' <<<"$dom" | wc -l)" -eq 5 ] &&
        [ "$(grep -o 'class="ev-message"' <<<"$dom" | wc -l)" -eq 5 ] &&
        grep -q '<li class="ev-done">done {"status": "completed"}</li>' <<<"$dom" &&
        grep -q 'id="status">completed<' <<<"$dom" && ! grep -q 'class="ev-error"' <<<"$dom"
}

bad() { python3 "$here/tests/sse/bad_client.py" 127.0.0.1 "$port_main" "$@"; }
bad_bound() { python3 "$here/tests/sse/bad_client.py" 127.0.0.1 "$port_bound" over-bound; }

# The main server was sent SIGTERM: $term_rc is its exit status.
sigterm_stops_cleanly() {
    tail -n 3 "$dir/main.err"
    echo "exit status $term_rc"
    [ "$term_rc" -eq 0 ] && grep -q '^sse: SIGTERM: stopping$' "$dir/main.err" &&
        grep -Eq '^sse: stopped: .* ([0-9]+) streams \([0-9]+ completed, \1 released\)' "$dir/main.err"
}

self_test_asan() {
    rm -f "$dir"/asan.* "$dir"/ubsan.*
    ASAN_OPTIONS="log_path=$dir/asan:detect_leaks=1" \
    UBSAN_OPTIONS="log_path=$dir/ubsan:print_stacktrace=1:halt_on_error=1" \
        "$san" --self-test --scale 0.1 || return 1
    # The one warning ASan gives about swapcontext is not a report.
    ! grep -lsvxE "==[0-9]+==WARNING: ASan doesn't fully support makecontext/swapcontext functions and may produce false positives in some cases!" \
        "$dir"/asan.* "$dir"/ubsan.*
}

self_test_valgrind() {
    RILL_UNDER_VALGRIND=1 valgrind -q --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite --error-exitcode=99 "$bin" --self-test --scale 0.25
}

if start main --delay 0.05 --events 5 --request-timeout 2 &&
    start slow --delay 0.3 --events 10 && start bound --max-clients 1 --delay 1 --events 3; then
    check stream_in_order stream_in_order
    check killed_curl_released_once killed_curl_released_once
    check chromium_shows_every_event chromium_shows_every_event
    check malformed_gets_400 bad malformed
    check huge_headers_get_431 bad huge-headers
    check slowloris_408_good_served bad slowloris 2
    check over_bound_gets_503 bad_bound
    kill -TERM "$pid_main"
    for _ in $(seq 100); do
        kill -0 "$pid_main" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$pid_main" 2>/dev/null && kill -KILL "$pid_main"
    wait "$pid_main" 2>/dev/null
    term_rc=$?
    check sigterm_stops_cleanly sigterm_stops_cleanly
else
    echo "[sse]      the servers did not start"
    cat "$dir"/*.err
    fail=$((fail + 1))
fi
[ -n "$san" ] && check self_test_asan self_test_asan
check self_test_valgrind self_test_valgrind
echo "$pass $fail" >"$res/sse.counts"
[ $fail -eq 0 ]
