/*
 * The driver every micro-benchmark table shares: calibration, rounds
 * interleaved across rows, medians, and ratios to the table's first row
 * (its plain-C baseline), all taken side by side in one run.
 *
 * Each row's iteration count is calibrated so that one run takes about
 * 0.3 s; it is run REPS times and the median is reported (with min..max).
 * Round k of every row runs before round k+1 of any, so that a slow spell of
 * a shared machine hits every row alike.  A row's ratio is the median over
 * the rounds of its time divided by the baseline's time in the same round.
 *
 * A table may name a second reference row (bench_main_ref): each row then
 * also gets its ratio to that one, taken the same way.
 *
 * Every table program takes:
 *   --quick      iteration counts divided by 10
 *   --only S     only the rows whose name contains S (the baselines always run)
 *   --rows       after the table, one line per row for scripts:
 *                "=row<TAB>name<TAB>ns/op<TAB>ratio to the reference row, or -"
 *                (scripts/bench-compare.sh reads them)
 * and its title line says which switch backend the library was built with
 * (rill_build_info()).
 */
#ifndef RILL_BENCH_H
#define RILL_BENCH_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#include "rill.h"
#include "median.h"

#define STACK_BYTES (64u * 1024u)

#define REPS 5
#define TARGET_NS 300000000.0 /* one measurement: about 0.3 s */
#define CALIB_NS 20000000u    /* calibrate until a trial takes 20 ms */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

_Noreturn static void die(const char *what, int err) {
    fprintf(stderr, "bench: %s: %s\n", what, rill_strerror(err));
    exit(1);
}

/* Keeps results alive so the compiler cannot drop the work. */
static volatile uint64_t sink;

/* The usual baseline: a bare swapcontext ping-pong between two contexts. */
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

/* Run main_fn in a fresh rill_run; it stores its elapsed ns in run_arg. */
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

typedef struct bench {
    const char *name;
    uint64_t (*run)(uint64_t n); /* elapsed ns for n operations */
    uint64_t unit;               /* n must be a multiple of this */
    double med, lo, hi;          /* ns per operation */
    double ratio;                /* median of per-round ratios to row 0 */
    double ratio_ref;            /* the same, to the reference row */
    uint64_t n;
} bench;

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

/* The median of the per-round ratios r[k] / base[k]. */
static double ratio_to(const double r[REPS], const double base[REPS]) {
    double q[REPS];
    for (int k = 0; k < REPS; k++) q[k] = r[k] / base[k];
    return median(q, REPS);
}

/* r: this row's ns/op per round; base, ref: the baselines', same rounds
 * (ref NULL: none). */
static void summarise(bench *b, const double r[REPS], const double base[REPS],
                      const double *ref) {
    double v[REPS];
    memcpy(v, r, sizeof v);
    b->med = median(v, REPS);
    b->lo = v[0];
    b->hi = v[REPS - 1];
    b->ratio = ratio_to(r, base);
    if (ref) b->ratio_ref = ratio_to(r, ref);
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

static void print_ratio(double ratio, const char *base) {
    printf("  %7.*fx %-11s", ratio < 0.1 ? 3 : 2, ratio, base);
}

static void print_row(const bench *b, const char *base, const char *ref) {
    printf("%-40s %9.1f ns", b->name, b->med);
    print_ratio(b->ratio, base);
    if (ref) print_ratio(b->ratio_ref, ref);
    printf("  (%.1f..%.1f, n=%llu)\n", b->lo, b->hi, (unsigned long long)b->n);
}

/* Parse the options, run every row, print the table: "title" heads it, each
 * ratio is "x <base>" (to row 0) and, if ref > 0, "x <ref_name>" (to row
 * ref). */
static int bench_main_ref(int argc, char **argv, const char *title, const char *base,
                          size_t ref, const char *ref_name, bench *benches, size_t nb) {
    bool quick = false, rows = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--rows") == 0) {
            rows = true;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--quick] [--only SUBSTRING] [--rows]\n", argv[0]);
            return 2;
        }
    }
    if (ref == 0 || ref >= nb) ref_name = NULL;
    const rill_build *build = rill_build_info();
    setvbuf(stdout, NULL, _IOLBF, 0);
    char cpu[256], date[64];
    cpu_model(cpu, sizeof cpu);
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", localtime(&t));
    printf("# %s | switch: %s (%s) | CPU: %s | %s | median of %d rounds%s\n", title,
           build->switch_backend, build->switch_method, cpu, date, REPS, quick ? " | --quick" : "");
    printf("# ns/op: median (min..max); ratio: median of per-round ratios\n");
    bool *on = calloc(nb, sizeof *on);
    double (*r)[REPS] = calloc(nb, sizeof *r);
    if (!on || !r) die("calloc", -ENOMEM);
    for (size_t i = 0; i < nb; i++) {
        on[i] = i == 0 || (ref_name && i == ref) || !only || strstr(benches[i].name, only);
        if (on[i]) calibrate(&benches[i], quick);
    }
    for (int k = 0; k < REPS; k++)
        for (size_t i = 0; i < nb; i++)
            if (on[i]) r[i][k] = (double)benches[i].run(benches[i].n) / (double)benches[i].n;
    for (size_t i = 0; i < nb; i++) {
        if (!on[i]) continue;
        summarise(&benches[i], r[i], r[0], ref_name ? r[ref] : NULL);
        print_row(&benches[i], base, ref_name);
    }
    for (size_t i = 0; rows && i < nb; i++) {
        if (!on[i]) continue;
        printf("=row\t%s\t%.2f\t", benches[i].name, benches[i].med);
        if (ref_name) printf("%.4f\n", benches[i].ratio_ref);
        else printf("-\n");
    }
    free(on);
    free(r);
    return 0;
}

static inline int bench_main(int argc, char **argv, const char *title, const char *base,
                             bench *benches, size_t nb) {
    return bench_main_ref(argc, argv, title, base, 0, NULL, benches, nb);
}

#endif
