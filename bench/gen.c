/*
 * gen: what a generator step costs, next to the context switch it is built
 * on, and what 100 000 suspended generators weigh.
 *
 * Measured side by side, in one run (median of 5 rounds):
 *   - a bare swapcontext switch (ping-pong between two contexts);
 *   - rill_gen_next() of a body that only yields (one switch in, one out);
 *   - the same through rill_foreach;
 *   - a 3-stage pipeline (map, filter) per value that reaches the consumer.
 * Then 100 000 generators are created and advanced once (so each holds a
 * suspended frame), and the resident memory they add is read from
 * /proc/self/status, for the default stack and for 16 KiB stacks.
 *
 *   gen            the full run
 *   gen --quick    iteration counts divided by 10, 10 000 generators
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#include "rill.h"

#define REPS 5

static long iters = 2000000;
static long ngens = 100000;

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v) {
    qsort(v, REPS, sizeof *v, cmp_double);
    return v[REPS / 2];
}

/* ---- the floor: a bare swapcontext ping-pong ------------------------------------ */

static ucontext_t main_ctx, peer_ctx;
static long peer_left;

static void peer(void) {
    while (peer_left-- > 0) swapcontext(&peer_ctx, &main_ctx);
}

static double bare_switch_ns(void) {
    static char stack[64 * 1024];
    getcontext(&peer_ctx);
    peer_ctx.uc_stack.ss_sp = stack;
    peer_ctx.uc_stack.ss_size = sizeof stack;
    peer_ctx.uc_link = &main_ctx;
    makecontext(&peer_ctx, peer, 0);
    peer_left = iters;
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) swapcontext(&main_ctx, &peer_ctx);
    double t = now_ns() - t0;
    swapcontext(&main_ctx, &peer_ctx); /* let the peer return */
    return t / (2.0 * (double)iters);  /* two switches per round trip */
}

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

typedef struct results {
    double next, foreach_, pipeline;
} results;

static int measure(void *arg) {
    results *r = arg;
    void *v;
    rill_gen *g = rill_gen_new(counter, NULL);
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) rill_gen_next(g, &v);
    r->next = (now_ns() - t0) / (double)iters;
    rill_gen_free(g);

    g = rill_gen_new(counter, NULL);
    long n = 0, *lv;
    t0 = now_ns();
    long sum = 0;
    rill_foreach(lv, g) {
        sum += *lv;
        if (++n == iters) break;
    }
    if (sum < 0) return -EIO;
    r->foreach_ = (now_ns() - t0) / (double)iters;
    rill_gen_free(g);

    static long buf;
    g = rill_gen_filter(rill_gen_map(rill_gen_new(counter, NULL), times_two, &buf), keep_all, NULL);
    t0 = now_ns();
    for (long i = 0; i < iters / 4; i++) rill_gen_next(g, &v);
    r->pipeline = (now_ns() - t0) / (double)(iters / 4);
    rill_gen_free(g);
    return 0;
}

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
    if (argc > 1 && strcmp(argv[1], "--quick") == 0) {
        iters /= 10;
        ngens /= 10;
    }
    double bare[REPS], next[REPS], each[REPS], pipe[REPS];
    for (int k = 0; k < REPS; k++) {
        bare[k] = bare_switch_ns();
        results r;
        if (rill_run(measure, &r) != 0) return 1;
        next[k] = r.next;
        each[k] = r.foreach_;
        pipe[k] = r.pipeline;
    }
    double sw = median(bare);
    printf("# rill generator bench | median of %d rounds | %ld steps each\n", REPS, iters);
    printf("%-40s %8.1f ns   %5.2f switches\n", "bare swapcontext switch", sw, 1.0);
    double m = median(next);
    printf("%-40s %8.1f ns   %5.2f switches\n", "rill_gen_next, body only yields", m, m / sw);
    m = median(each);
    printf("%-40s %8.1f ns   %5.2f switches\n", "rill_foreach step", m, m / sw);
    m = median(pipe);
    printf("%-40s %8.1f ns   %5.2f switches\n", "value through source->map->filter", m, m / sw);

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
