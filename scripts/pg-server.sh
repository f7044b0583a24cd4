#!/bin/bash
# A private, throwaway PostgreSQL server for the tests, demos and benchmarks
# of rill's pg module: a fresh cluster in DIR, listening only on a Unix
# socket in DIR (no TCP port), trusting local connections.
#
#   scripts/pg-server.sh start DIR   prints the conninfo ("host=DIR user=postgres dbname=postgres")
#   scripts/pg-server.sh stop DIR    stops it (fast) and removes DIR
#
# initdb refuses to run as root: as root the server runs as the `postgres`
# user (Debian's package makes it), DIR being handed to that user; as
# anyone else, as that user.  The binaries are found with pg_config
# --bindir or in /usr/lib/postgresql/*/bin (Debian keeps them off PATH).
set -u
cmd=${1:-} dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi

bindir() {
    local b
    b=$(pg_config --bindir 2>/dev/null)
    if [ -n "$b" ] && [ -x "$b/initdb" ]; then echo "$b"; return 0; fi
    for b in /usr/lib/postgresql/*/bin; do
        [ -x "$b/initdb" ] && { echo "$b"; return 0; }
    done
    return 1
}

# Run a command as the server's owner.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case $cmd in
start)
    bin=$(bindir) || { echo "pg-server: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }
    mkdir -p "$dir" || exit 1
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    if ! as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync \
        >"$dir/initdb.log" 2>&1; then
        echo "pg-server: initdb failed:" >&2
        cat "$dir/initdb.log" >&2
        exit 1
    fi
    # Only a Unix socket in DIR; fsync off: a throwaway cluster.
    if ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-k $dir -c listen_addresses= -c fsync=off -c max_connections=300" start >/dev/null; then
        echo "pg-server: the server did not start:" >&2
        cat "$dir/server.log" >&2
        exit 1
    fi
    echo "host=$dir user=postgres dbname=postgres"
    ;;
stop)
    bin=$(bindir) || exit 0
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
