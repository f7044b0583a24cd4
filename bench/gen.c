/*
 * gen: what a generator step costs, next to the context switch it is built
 * on, and what 100 000 suspended generators weigh.
 *
 * Measured side by side, in one run (bench/bench.h: medians of 5 rounds,
 * interleaved, ratios to the bare swapcontext and to the bare
 * rill__ctx_switch of the backend linked, bench/bare.h):
 *   - a bare swapcontext switch and a bare rill__ctx_switch (ping-pong);
 *   - rill_gen_next() of a body that only yields (one switch in, one out);
 *   - the same through rill_foreach;
 *   - a 3-stage pipeline (map, filter) per value that reaches the consumer.
 * Then 100 000 generators are created and advanced once (so each holds a
 * suspended frame), and the resident memory they add is read from
 * /proc/self/status, for the default stack and for 16 KiB stacks.
 *
 *   gen [--quick] [--only S] [--rows]   (see bench/bench.h); --quick
 *                                       weighs 10 000 generators, --only none
 */
#include "bare.h" /* first: it turns _FORTIFY_SOURCE off */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long ngens = 100000;

/* ---- generators -------------------------------------------------------------------- */

static int counter(rill_gen *g, void *arg) {
    (void)arg;
    for (long i = 0;; i++)
        if (rill_yield(g, &i) < 0) return 0;
}

static int times_two(void *in, void **out, void *ctx) {
    long *buf = ctx;
    *buf = *(long *)in * 2;
    *out = buf;
    return 0;
}

static int keep_all(void *in, void *ctx) {
    (void)in;
    (void)ctx;
    return 1;
}

/* n values out of g, timed; g is freed. */
static void drain(run_arg *a, rill_gen *g) {
    if (!g) die("rill_gen_new", -errno);
    void *v;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < a->n; i++)
        if (rill_gen_next(g, &v) != 1) die("rill_gen_next", -EIO);
    a->ns = now_ns() - t0;
    rill_gen_free(g);
}

static int next_main(void *arg) {
    drain(arg, rill_gen_new(counter, NULL));
    return 0;
}

static int foreach_main(void *arg) {
    run_arg *a = arg;
    rill_gen *g = rill_gen_new(counter, NULL);
    if (!g) die("rill_gen_new", -errno);
    uint64_t n = 0;
    long *lv, sum = 0;
    uint64_t t0 = now_ns();
    rill_foreach(lv, g) {
        sum += *lv;
        if (++n == a->n) break;
    }
    a->ns = now_ns() - t0;
    sink = (uint64_t)sum;
    rill_gen_free(g);
    return 0;
}

static int pipeline_main(void *arg) {
    static long buf;
    drain(arg, rill_gen_filter(rill_gen_map(rill_gen_new(counter, NULL), times_two, &buf),
                               keep_all, NULL));
    return 0;
}

static uint64_t bench_next(uint64_t n) { return in_rill(next_main, n); }
static uint64_t bench_foreach(uint64_t n) { return in_rill(foreach_main, n); }
static uint64_t bench_pipeline(uint64_t n) { return in_rill(pipeline_main, n); }

/* ---- memory ---------------------------------------------------------------------------- */

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

typedef struct mem {
    size_t stack;
    long kib_per_1000;
    long total_kib;
} mem;

static int weigh(void *arg) {
    mem *m = arg;
    rill_gen **g = malloc(sizeof *g * (size_t)ngens);
    if (!g) return -ENOMEM;
    long before = rss_kib();
    void *v;
    for (long i = 0; i < ngens; i++) {
        g[i] = rill_gen_new_opts(counter, NULL, &(rill_opts){.stack_size = m->stack});
        if (!g[i] || rill_gen_next(g[i], &v) != 1) return -ENOMEM;
    }
    m->total_kib = rss_kib() - before;
    m->kib_per_1000 = m->total_kib * 1000 / ngens;
    for (long i = 0; i < ngens; i++) rill_gen_free(g[i]);
    free(g);
    return 0;
}

int main(int argc, char **argv) {
    bool weigh_too = true; /* not when profiling a row (--only) */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) ngens /= 10;
        if (strcmp(argv[i], "--only") == 0) weigh_too = false;
    }
    bench benches[] = {
        {.name = "bare swapcontext switch", .run = bench_swapcontext, .unit = 2},
        {.name = ctx_row_name(), .run = bench_ctx, .unit = 2},
        {.name = "rill_gen_next, body only yields", .run = bench_next, .unit = 1},
        {.name = "rill_foreach step", .run = bench_foreach, .unit = 1},
        {.name = "value through source->map->filter", .run = bench_pipeline, .unit = 1},
    };
    int rc = bench_main_ref(argc, argv, "rill generator bench", "swapcontext", 1, "ctx_switch",
                            benches, sizeof benches / sizeof benches[0]);
    if (rc || !weigh_too) return rc;

    size_t stacks[2] = {0, 16 * 1024};
    for (int i = 0; i < 2; i++) {
        mem mm = {.stack = stacks[i]};
        if (rill_run(weigh, &mm) != 0) return 1;
        printf("%ld suspended generators, %s stacks: %ld MiB resident (%ld KiB per 1000)\n",
               ngens, stacks[i] ? "16 KiB" : "default 64 KiB", mm.total_kib / 1024,
               mm.kib_per_1000);
    }
    return 0;
}
