/*
 * switch: what a rill context switch costs, next to the bare swapcontext it
 * is built on.
 *
 * Measured side by side, in one run:
 *   - bare swapcontext ping-pong between two ucontext_t (the floor);
 *   - an empty function called through a pointer (for scale);
 *   - rill fiber switch: two tasks alternating with rill_yield_now();
 *   - rill spawn+join of an empty task, one at a time and 1000 at a time;
 *   - a cancel scope with a deadline entered and exited, and rill_cancelled().
 *
 * Each measurement's iteration count is calibrated so that one run takes about
 * 0.3 s; it is run 5 times and the median is reported (with min..max).  The
 * repetitions are interleaved across rows (round k of every row runs before
 * round k+1 of any), so that a slow spell of a shared machine hits every row
 * alike.  The ratio column is the median over the rounds of the row's time
 * divided by the bare swapcontext switch's time in the same round.
 *
 *   switch            the full run (about 10 s)
 *   switch --quick    iteration counts divided by 10
 *   switch --only S   run only the rows whose name contains S (profiling);
 *                     the swapcontext baseline always runs, for the ratios
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#include "rill.h"

#define REPS 5
#define TARGET_NS 300000000.0 /* one measurement: about 0.3 s */
#define CALIB_NS 20000000u    /* calibrate until a trial takes 20 ms */
#define BATCH 1000            /* tasks spawned before joining, in the batch */
#define STR_(x) #x
#define STR(x) STR_(x)
#define STACK_BYTES (64u * 1024u)

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

_Noreturn static void die(const char *what, int err) {
    fprintf(stderr, "switch: %s: %s\n", what, rill_strerror(err));
    exit(1);
}

/* Keeps results alive so the compiler cannot drop the work. */
static volatile uint64_t sink;

/* ---- 1. bare swapcontext ping-pong ------------------------------------------ */

static ucontext_t bare_main, bare_co;

static void bare_co_fn(void) {
    for (;;) swapcontext(&bare_co, &bare_main);
}

/* n switches: n/2 round trips main -> co -> main. */
static uint64_t bench_swapcontext(uint64_t n) {
    void *stack = malloc(STACK_BYTES);
    if (!stack) die("malloc", -ENOMEM);
    if (getcontext(&bare_co) != 0) die("getcontext", -errno);
    bare_co.uc_stack.ss_sp = stack;
    bare_co.uc_stack.ss_size = STACK_BYTES;
    bare_co.uc_link = &bare_main;
    makecontext(&bare_co, bare_co_fn, 0);
    swapcontext(&bare_main, &bare_co); /* first entry, not timed */
    uint64_t rounds = n / 2;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < rounds; i++) swapcontext(&bare_main, &bare_co);
    uint64_t t1 = now_ns();
    free(stack); /* bare_co stays suspended on it forever: never resumed */
    return t1 - t0;
}

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

typedef struct run_arg {
    uint64_t n;  /* operations */
    uint64_t ns; /* elapsed, set by the fiber */
} run_arg;

static uint64_t in_rill(rill_fn *main_fn, uint64_t n) {
    run_arg a = {.n = n, .ns = 0};
    int rc = rill_run(main_fn, &a);
    if (rc < 0) die("rill_run", rc);
    return a.ns;
}

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

/* ---- driver ---------------------------------------------------------------------- */

typedef struct bench {
    const char *name;
    uint64_t (*run)(uint64_t n); /* elapsed ns for n operations */
    uint64_t unit;               /* n must be a multiple of this */
    double med, lo, hi;          /* ns per operation */
    double ratio;                /* median of per-round ratios to row 0 */
    uint64_t n;
} bench;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t round_to(uint64_t n, uint64_t unit) {
    n = n / unit * unit;
    return n ? n : unit;
}

/* Choose n so that one run takes about TARGET_NS (a tenth with --quick).
 * Calibrating also warms up caches, the stack pool and the CPU clock. */
static void calibrate(bench *b, bool quick) {
    uint64_t n = round_to(1000, b->unit), ns;
    while ((ns = b->run(n)) < CALIB_NS) n *= ns < CALIB_NS / 16 ? 8 : 2;
    double per = (double)ns / (double)n;
    uint64_t target = (uint64_t)(TARGET_NS / per);
    if (quick) target /= 10;
    b->n = round_to(target, b->unit);
}

static double median(double v[REPS]) {
    qsort(v, REPS, sizeof v[0], cmp_double);
    return v[REPS / 2];
}

/* r: this row's ns/op per round; base: the baseline's, same rounds. */
static void summarise(bench *b, const double r[REPS], const double base[REPS]) {
    double v[REPS], q[REPS];
    for (int k = 0; k < REPS; k++) {
        v[k] = r[k];
        q[k] = r[k] / base[k];
    }
    b->med = median(v);
    b->lo = v[0];
    b->hi = v[REPS - 1];
    b->ratio = median(q);
}

static void cpu_model(char *buf, size_t len) {
    snprintf(buf, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *p = strchr(line, ':');
        if (!p) continue;
        p++;
        while (*p == ' ' || *p == '\t') p++;
        p[strcspn(p, "\n")] = 0;
        snprintf(buf, len, "%s", p);
        break;
    }
    fclose(f);
}

static void print_row(const bench *b) {
    double ratio = b->ratio;
    printf("%-34s %9.1f ns  %7.*fx swapcontext  (%.1f..%.1f, n=%llu)\n", b->name,
           b->med, ratio < 0.1 ? 3 : 2, ratio, b->lo, b->hi, (unsigned long long)b->n);
}

int main(int argc, char **argv) {
    bool quick = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--quick] [--only SUBSTRING]\n", argv[0]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    char cpu[256], date[64];
    cpu_model(cpu, sizeof cpu);
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", localtime(&t));
    printf("# rill switch bench | CPU: %s | %s | median of %d rounds%s\n", cpu, date,
           REPS, quick ? " | --quick" : "");
    printf("# ns/op: median (min..max); ratio: median of per-round ratios\n");

    bench benches[] = {
        {.name = "bare swapcontext switch", .run = bench_swapcontext, .unit = 2},
        {.name = "empty call via pointer", .run = bench_call, .unit = 1},
        {.name = "rill switch (yield, 2 tasks)", .run = bench_yield, .unit = 2},
        {.name = "rill spawn+join (one by one)", .run = bench_spawn_join, .unit = 1},
        {.name = "rill spawn+join (batch " STR(BATCH) ")/task", .run = bench_batch, .unit = BATCH},
        {.name = "rill scope enter+exit (deadline)", .run = bench_scope, .unit = 1},
        {.name = "rill_cancelled()", .run = bench_cancelled, .unit = 1},
        {.name = "(extra) rill yield, alone", .run = bench_yield_alone, .unit = 1},
        {.name = "(extra) clock_gettime(MONOTONIC)", .run = bench_clock, .unit = 1},
    };
    enum { NB = sizeof benches / sizeof benches[0] };
    bool on[NB];
    for (size_t i = 0; i < NB; i++) {
        on[i] = i == 0 || !only || strstr(benches[i].name, only);
        if (on[i]) calibrate(&benches[i], quick);
    }
    /* Round-robin: repetition k of every row runs before repetition k+1 of
     * any, so that a slow spell of the machine (other load, frequency
     * changes) hits every row alike instead of skewing the ratios. */
    double r[NB][REPS];
    for (int k = 0; k < REPS; k++)
        for (size_t i = 0; i < NB; i++)
            if (on[i]) r[i][k] = (double)benches[i].run(benches[i].n) / (double)benches[i].n;
    for (size_t i = 0; i < NB; i++) {
        if (!on[i]) continue;
        summarise(&benches[i], r[i], r[0]);
        print_row(&benches[i]);
    }
    return 0;
}
