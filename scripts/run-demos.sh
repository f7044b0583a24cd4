#!/bin/bash
# Run the demo programs; each checks its own claims, ends with one verdict
# line ("ok: ..." or "FAILED: ...") and exits non-zero if a claim does not
# hold.
#   scripts/run-demos.sh RESULTS_DIR|- BINARY...
# With "-" (make demo): every demo runs with --scale 0.25, its output is
# shown under a header line, and a summary of the verdicts follows.  With a
# directory (make test): every demo runs with --scale 0.02, its output goes
# to RESULTS_DIR/demos/NAME.out, one line per demo says ok or FAILED (then
# the output follows), and RESULTS_DIR/demos.counts receives "passed failed".
# A demo passes if it exits 0 with an "ok:" verdict.  Exits non-zero if any
# demo failed.
# A demo that needs flags of its own to check itself (a server's
# --self-test) says so in its source, demos/NAME.c or demos/NAME/main.c, on
# a comment line " * run-demos: FLAGS"; they come before --scale.  The word
# needs-postgres there is not a flag: that demo needs a PostgreSQL server.
# The first such demo starts a private one (scripts/pg-server.sh, stopped
# when this script exits) unless RILL_PG_CONNINFO names one already, and
# the demo gets its conninfo in RILL_PG_CONNINFO; without PostgreSQL
# installed, the demo is skipped (neither passed nor failed).
set -u
if [ $# -lt 1 ]; then
    echo "usage: $0 RESULTS_DIR|- BINARY..." >&2
    exit 2
fi
res=$1
shift
pass=0 fail=0 skip=0
root=$(cd "$(dirname "$0")/.." && pwd)
tmp='' pg_dir='' pg_state=''

cleanup() {
    [ -n "$pg_dir" ] && "$root/scripts/pg-server.sh" stop "$pg_dir"
    [ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Make sure a PostgreSQL server is there for a demo that needs one: returns
# 0 with RILL_PG_CONNINFO exported, or 1 with the reason in $pg_state.
need_postgres() {
    [ -n "${RILL_PG_CONNINFO:-}" ] && return 0
    [ -n "$pg_state" ] && return 1
    local ci
    pg_dir=$(mktemp -d /tmp/rill-pg.XXXXXX)
    if ci=$("$root/scripts/pg-server.sh" start "$pg_dir" 2>"$pg_dir.err"); then
        export RILL_PG_CONNINFO=$ci
        rm -f "$pg_dir.err"
        return 0
    fi
    pg_state=$(head -n 1 "$pg_dir.err")
    rm -f "$pg_dir.err"
    "$root/scripts/pg-server.sh" stop "$pg_dir"
    pg_dir=
    pg_state=${pg_state:-"pg-server: could not start a PostgreSQL server"}
    return 1
}

# The flags demo $1 asks for (see above), or nothing.
demo_flags() {
    local src=$root/demos/$1.c
    [ -f "$src" ] || src=$root/demos/$1/main.c
    [ -f "$src" ] && sed -n 's/^ \* run-demos: *//p' "$src" | head -n 1
}

# Demo flags $1 without the word needs-postgres; returns 0 if it was there.
needs_postgres=''
strip_needs() {
    local w out=()
    needs_postgres=
    for w in $1; do
        if [ "$w" = needs-postgres ]; then needs_postgres=1; else out+=("$w"); fi
    done
    flags=${out[*]}
}

# The verdict of the output in $1 and exit status $2: the demo's last "ok:"
# or "FAILED:" line, or why there is none.  Returns 0 if the demo passed.
verdict() {
    local line
    line=$(grep -E '^(ok|FAILED):' "$1" | tail -n 1)
    if [ "$2" -ne 0 ]; then
        echo "FAILED (exit $2)${line:+: ${line#*: }}"
        return 1
    fi
    case $line in
    ok:*) echo "$line" ;;
    *) echo "FAILED (exit 0 but no \"ok:\" verdict)${line:+: ${line#*: }}"; return 1 ;;
    esac
}

if [ "$res" = - ]; then
    tmp=$(mktemp -d)
    summary=()
    for bin in "$@"; do
        name=$(basename "$bin")
        strip_needs "$(demo_flags "$name")"
        if [ -n "$needs_postgres" ] && ! need_postgres; then
            v="skipped: needs PostgreSQL ($pg_state)"
            echo "==== $name: $v"
            echo
            skip=$((skip + 1))
            summary+=("$(printf '  %-24s %s' "$name" "$v")")
            continue
        fi
        echo "==== $name ${flags:+$flags }--scale 0.25"
        # shellcheck disable=SC2086 # the flags are words
        "$bin" $flags --scale 0.25 2>&1 | tee "$tmp/out"
        rc=${PIPESTATUS[0]}
        if v=$(verdict "$tmp/out" "$rc"); then
            pass=$((pass + 1))
        else
            fail=$((fail + 1))
            echo "$v"
        fi
        summary+=("$(printf '  %-24s %s' "$name" "$v")")
        echo
    done
    echo "==== every demo's verdict (--scale 0.25: delays at a quarter of their length)"
    printf '%s\n' "${summary[@]}"
    skipped=
    [ $skip -gt 0 ] && skipped=", $skip skipped"
    echo "demos: $pass passed, $fail failed$skipped"
    [ $fail -eq 0 ]
    exit
fi

dir=$res/demos
rm -rf "$dir" && mkdir -p "$dir"
for bin in "$@"; do
    name=$(basename "$bin")
    printf '%-10s %-28s ' "[demos]" "$name"
    strip_needs "$(demo_flags "$name")"
    if [ -n "$needs_postgres" ] && ! need_postgres; then
        echo "skipped: needs PostgreSQL ($pg_state)"
        skip=$((skip + 1))
        continue
    fi
    # shellcheck disable=SC2086
    "$bin" $flags --scale 0.02 >"$dir/$name.out" 2>&1
    rc=$?
    if v=$(verdict "$dir/$name.out" $rc); then
        pass=$((pass + 1))
        echo "ok"
    else
        fail=$((fail + 1))
        echo "$v"
        cat "$dir/$name.out"
    fi
done
echo "$pass $fail" >"$res/demos.counts"
[ $fail -eq 0 ]
