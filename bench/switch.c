/*
 * switch: what a rill context switch costs, next to the bare switches it
 * could be built on.
 *
 * Measured side by side, in one run:
 *   - bare swapcontext ping-pong between two ucontext_t;
 *   - bare _setjmp/_longjmp ping-pong between two stacks;
 *   - rill__ctx_switch alone, ping-pong: the switch of the backend this
 *     program was linked with (bench/bare.h), the bare register switch in
 *     the SWITCH=fast build;
 *   - an empty function called through a pointer (for scale);
 *   - rill fiber switch: two tasks alternating with rill_yield_now();
 *   - rill spawn+join of an empty task, one at a time and 1000 at a time;
 *   - a cancel scope with a deadline entered and exited, and rill_cancelled().
 *
 * bench/bench.h calibrates each row, interleaves the rounds of all rows and
 * reports medians and ratios to the bare swapcontext and to the bare
 * rill__ctx_switch, all in one run.  The Makefile builds this program once
 * per backend (build/bench, build/fast/bench, build/portable/bench).
 *
 *   switch            the full run (about 20 s)
 *   switch --quick    iteration counts divided by 10
 *   switch --only S   run only the rows whose name contains S (profiling);
 *                     the two baselines always run, for the ratios
 *   switch --rows     also one "=row" line per row, for scripts
 */
#include "bare.h" /* first: it turns _FORTIFY_SOURCE off */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#define BATCH 1000            /* tasks spawned before joining, in the batch */
#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- 2. an empty function through a pointer ----------------------------------- */

static void empty_fn(void) {}
static void (*volatile empty_ptr)(void) = empty_fn;

static uint64_t bench_call(uint64_t n) {
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) empty_ptr();
    return now_ns() - t0;
}

/* Extra, for scale: what rill_now() and every deadline computation pay. */
static uint64_t bench_clock(uint64_t n) {
    struct timespec ts;
    uint64_t acc = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        acc += (uint64_t)ts.tv_nsec;
    }
    uint64_t t1 = now_ns();
    sink = acc;
    return t1 - t0;
}

/* ---- rill benchmarks: each run is one rill_run, timed inside main ------------ */

/* ---- 3. rill fiber switch: two tasks alternating ------------------------------ */

static int yielder(void *arg) {
    uint64_t k = *(const uint64_t *)arg;
    for (uint64_t i = 0; i < k; i++) {
        int rc = rill_yield_now();
        if (rc < 0) return rc;
    }
    return 0;
}

/* n switches = n yields, n/2 by each task.  The tasks first run when main
 * blocks in the first join, so the clock starts just before it. */
static int yield_main(void *arg) {
    run_arg *a = arg;
    uint64_t k = a->n / 2;
    rill_task *x = rill_spawn(yielder, &k), *y = rill_spawn(yielder, &k);
    if (!x || !y) die("rill_spawn", -errno);
    uint64_t t0 = now_ns();
    int rx = rill_join(x), ry = rill_join(y);
    a->ns = now_ns() - t0;
    if (rx < 0 || ry < 0) die("yielder", rx < 0 ? rx : ry);
    return 0;
}

static uint64_t bench_yield(uint64_t n) { return in_rill(yield_main, n); }

/* Extra: one fiber yielding with nobody else ready (no switch, except to the
 * host once every 64 hand-offs). */
static int yield_alone_main(void *arg) {
    run_arg *a = arg;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < a->n; i++) {
        int rc = rill_yield_now();
        if (rc < 0) die("rill_yield_now", rc);
    }
    a->ns = now_ns() - t0;
    return 0;
}

static uint64_t bench_yield_alone(uint64_t n) { return in_rill(yield_alone_main, n); }

/* ---- 4. spawn + join ----------------------------------------------------------- */

static int empty_task(void *arg) {
    (void)arg;
    return 0;
}

static int spawn_join_main(void *arg) {
    run_arg *a = arg;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < a->n; i++) {
        rill_task *t = rill_spawn(empty_task, NULL);
        if (!t) die("rill_spawn", -errno);
        int rc = rill_join(t);
        if (rc < 0) die("rill_join", rc);
    }
    a->ns = now_ns() - t0;
    return 0;
}

static uint64_t bench_spawn_join(uint64_t n) { return in_rill(spawn_join_main, n); }

/* n tasks, in batches of BATCH: spawn them all, then join them all. */
static int batch_main(void *arg) {
    run_arg *a = arg;
    static rill_task *tasks[BATCH];
    uint64_t batches = a->n / BATCH;
    uint64_t t0 = 0;
    /* Batch 0 is an untimed warm-up: a new runtime starts with no cached
     * stacks or task structs, and the steady state is what we want. */
    for (uint64_t b = 0; b <= batches; b++) {
        if (b == 1) t0 = now_ns();
        for (int i = 0; i < BATCH; i++) {
            tasks[i] = rill_spawn(empty_task, NULL);
            if (!tasks[i]) die("rill_spawn", -errno);
        }
        for (int i = 0; i < BATCH; i++) {
            int rc = rill_join(tasks[i]);
            if (rc < 0) die("rill_join", rc);
        }
    }
    a->ns = now_ns() - t0;
    return 0;
}

static uint64_t bench_batch(uint64_t n) { return in_rill(batch_main, n); }

/* ---- 5. scope with a deadline, and rill_cancelled() ------------------------------ */

static int scope_main(void *arg) {
    run_arg *a = arg;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < a->n; i++) {
        rill_scope s;
        rill_scope_enter(&s, 10.0);
        int rc = rill_scope_exit(&s);
        if (rc != 0) die("rill_scope_exit", rc);
    }
    a->ns = now_ns() - t0;
    return 0;
}

static uint64_t bench_scope(uint64_t n) { return in_rill(scope_main, n); }

static int cancelled_main(void *arg) {
    run_arg *a = arg;
    uint64_t hits = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < a->n; i++) hits += rill_cancelled();
    a->ns = now_ns() - t0;
    sink = hits;
    return 0;
}

static uint64_t bench_cancelled(uint64_t n) { return in_rill(cancelled_main, n); }

int main(int argc, char **argv) {
    bench benches[] = {
        {.name = "bare swapcontext switch", .run = bench_swapcontext, .unit = 2},
        {.name = "bare _setjmp/_longjmp switch", .run = bench_setjmp, .unit = 2},
        {.name = ctx_row_name(), .run = bench_ctx, .unit = 2},
        {.name = "empty call via pointer", .run = bench_call, .unit = 1},
        {.name = "rill switch (yield, 2 tasks)", .run = bench_yield, .unit = 2},
        {.name = "rill spawn+join (one by one)", .run = bench_spawn_join, .unit = 1},
        {.name = "rill spawn+join (batch " STR(BATCH) ")/task", .run = bench_batch, .unit = BATCH},
        {.name = "rill scope enter+exit (deadline)", .run = bench_scope, .unit = 1},
        {.name = "rill_cancelled()", .run = bench_cancelled, .unit = 1},
        {.name = "(extra) rill yield, alone", .run = bench_yield_alone, .unit = 1},
        {.name = "(extra) clock_gettime(MONOTONIC)", .run = bench_clock, .unit = 1},
    };
    return bench_main_ref(argc, argv, "rill switch bench", "swapcontext", 2, "ctx_switch",
                          benches, sizeof benches / sizeof benches[0]);
}
