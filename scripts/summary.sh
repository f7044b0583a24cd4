#!/bin/sh
# Add up the counts left by run-tests.sh / run-demos.sh and print the closing line.
pass=0 fail=0
for f in "$1"/*.counts; do
    [ -f "$f" ] || continue
    read -r p q <"$f"
    pass=$((pass + p)) fail=$((fail + q))
done
echo "rill: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
