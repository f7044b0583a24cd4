#!/bin/bash
# Packaging checks, counted with the tests:
#   1. librill.so exports only rill_* symbols;
#   2. `make install PREFIX=tmp`, then the README's first example, built with
#      `pkg-config --cflags --libs rill`, compiles warning-free and runs;
#   3. a program using the thread pool and calls between threads passes
#      valgrind's strictest leak check (no thread or block left at exit);
#   4. rill.h compiles as C++ (extern "C", rill_foreach) warning-free.
#   scripts/test-package.sh RESULTS_DIR
set -u
res=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # name, then the command
    local name=$1
    shift
    printf '%-10s %-28s ' "[package]" "$name"
    if out=$("$@" 2>&1); then
        echo ok
        pass=$((pass + 1))
    else
        echo FAILED
        echo "$out"
        fail=$((fail + 1))
    fi
}

exports_only_rill() {
    local bad
    bad=$(nm -D --defined-only build/librill.so | awk '{print $3}' | grep -v '^rill_')
    [ -z "$bad" ] || { echo "exported: $bad"; return 1; }
}

readme_example_runs_installed() {
    make --no-print-directory install PREFIX="$tmp/prefix" >/dev/null || return 1
    # The README's first C block.
    awk '/^```c$/ { on = 1; next } on && /^```$/ { exit } on' README.md >"$tmp/app.c"
    export PKG_CONFIG_PATH=$tmp/prefix/lib/pkgconfig
    cc -Wall -Wextra -Werror "$tmp/app.c" $(pkg-config --cflags --libs rill) -o "$tmp/app" || return 1
    out=$(LD_LIBRARY_PATH=$tmp/prefix/lib "$tmp/app") || return 1
    [ "$out" = $'data_for_1\ndata_for_2\ndata_for_3' ] || { echo "printed: $out"; return 1; }
}

pool_exits_clean_under_valgrind() {
    cat >"$tmp/pool.c" <<'END'
#include <pthread.h>
#include <rill.h>
static int job(void *arg) { return *(int *)arg * 2; }
static int count(void *arg) { return ++*(int *)arg, 0; }
static void *sends(void *rt) {
    static int n;
    rill_call_threadsafe(rt, count, &n);
    rill_runtime_release(rt);
    return NULL;
}
static int amain(void *arg) {
    (void)arg;
    int x = 21;
    pthread_t t;
    pthread_create(&t, NULL, sends, rill_runtime_current());
    int rc = rill_to_thread(job, &x);
    pthread_join(t, NULL);
    return rc == 42 ? 0 : -1;
}
int main(void) { return rill_run(amain, NULL) == 0 ? 0 : 1; }
END
    cc -Wall -Wextra -Werror -Iinclude "$tmp/pool.c" build/librill.a -lev -pthread -o "$tmp/pool" ||
        return 1
    valgrind -q --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all \
        --error-exitcode=1 "$tmp/pool"
}

header_works_from_cpp() {
    cat >"$tmp/app.cc" <<'END'
#include <rill.h>
#include <cstdio>
static int three(rill_gen *g, void *) {
    for (int i = 0; i < 3; i++)
        if (rill_yield(g, &i) < 0) break;
    return 0;
}
int main() {
    RILL_GEN_AUTO rill_gen *g = rill_gen_new(three, nullptr);
    const int *x;
    int sum = 0;
    rill_foreach(x, g) sum += *x;
    return sum == 3 ? 0 : 1;
}
END
    c++ -std=c++17 -Wall -Wextra -Werror -Iinclude "$tmp/app.cc" build/librill.a -lev -pthread \
        -o "$tmp/appcc" && "$tmp/appcc"
}

check exports_only_rill exports_only_rill
check readme_example_runs_installed readme_example_runs_installed
check pool_exits_clean_under_valgrind pool_exits_clean_under_valgrind
check header_works_from_cpp header_works_from_cpp
echo "$pass $fail" >"$res/package.counts"
[ $fail -eq 0 ]
