#!/bin/sh
# Make sure the Debian packages a target needs are installed.
# Usage: scripts/deps.sh PACKAGE:CHECK ...   (CHECK: a file path or a command name)
# As root, installs what is missing with apt-get; otherwise prints the exact
# command to run and fails.
set -u
missing=""
for spec in "$@"; do
    pkg=${spec%%:*}
    check=${spec#*:}
    case "$check" in
        /*) [ -e "$check" ] && continue ;;
        *) command -v "$check" >/dev/null 2>&1 && continue ;;
    esac
    missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "rill: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null || {
        echo "rill: apt-get install$missing failed" >&2
        exit 1
    }
    exit 0
fi
echo "rill: missing packages; run: sudo apt-get install$missing" >&2
exit 1
