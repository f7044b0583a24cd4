/* Fiber stacks at scale: every stack has its guard page however many fibers
 * live, a sleeping fiber costs about one page, and the kernel's mapping
 * limit is no limit (rill.h, README "Stacks").  Tests whose names contain
 * "overflow" overflow or fault on purpose; the valgrind run leaves them out.
 * This file is built with -fstack-clash-protection, as rill is: a frame
 * larger than the guard page touches it page by page. */
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "../runtime/alloc.h"
#include "helpers.h"


static bool under_asan(void) {
#if defined(__SANITIZE_ADDRESS__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return true;
#endif
#endif
    return false;
}

/* Fibers alive at once in a heavy test: full scale in plain builds only. */
static long scaled(long plain, long asan, long valgrind) {
    return under_valgrind() ? valgrind : under_asan() ? asan : plain;
}


static long rss_kib(void) { return status_kib("VmRSS:"); }

/* ---- many fibers asleep ------------------------------------------------------------ */

typedef struct crowd {
    long n;           /* fibers to spawn */
    double sleep;     /* each sleeps this long */
    size_t stack;     /* their stack size (0: the default) */
    long started;
    int mappings;     /* /proc/self/maps lines once all are spawned */
    long rss_before, rss_asleep;
} crowd;

static int sleeps(void *arg) {
    crowd *c = arg;
    c->started++;
    return rill_sleep(c->sleep);
}

/* Spawn c->n sleepers in g: every stack is taken at spawn. */
static int spawn_crowd(rill_group *g, crowd *c) {
    for (long i = 0; i < c->n; i++) {
        int rc = rill_group_spawn_opts(g, sleeps, c, &(rill_opts){.stack_size = c->stack});
        if (rc != 0) {
            fprintf(stderr, "spawn %ld: %s\n", i, rill_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static int crowd_main(void *arg) {
    crowd *c = arg;
    rill_group g;
    rill_group_init(&g);
    int rc = spawn_crowd(&g, c);
    c->mappings = count_mappings();
    if (rc) rill_group_cancel(&g);
    int wrc = rill_group_wait(&g);
    if (rc == 0 && c->started != c->n) rc = -EIO;
    return rc ? rc : wrc;
}

/* ---- (a) an overflow past the stack, with more fibers than mappings allow ------ */

/* A frame larger than its stack that writes only its first bytes: without
 * probing it would jump the guard page into memory below. */
static int clash_frame(void) {
    char buf[80 * 1024];
    snprintf(buf, 64, "%s", "a frame larger than its 64 KiB stack");
    return ((volatile char *)buf)[3];
}

static int has_a_clashing_frame(void *arg) {
    (void)arg;
    return clash_frame();
}

static int crowd_then_clash(void *arg) {
    crowd *c = arg;
    rill_group g;
    rill_group_init(&g);
    int rc = spawn_crowd(&g, c);
    if (rc == 0) {
        rill_task *t = rill_spawn_opts(has_a_clashing_frame, NULL,
                                       &(rill_opts){.name = "clash", .stack_size = 64 * 1024});
        rc = t ? rill_join(t) : -errno;
        fprintf(stderr, "the clashing frame returned %d\n", rc);
    }
    rill_group_cancel(&g);
    rill_group_wait(&g);
    return rc;
}

static void expect_clash_reported(int status, const char *err) {
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "child status %#x, stderr: %s",
              status, err);
    cr_expect(strstr(err, "rill: fiber 'clash' overflowed its 64 KiB stack\n"), "stderr: %s", err);
}

Test(stack, overflow_past_the_guard_page_is_caught_with_40000_fibers_alive,
     .timeout = TEST_TIMEOUT) {
    /* More than the two-mappings-per-stack budget (about 28 000) allowed. */
    crowd c = {.n = scaled(40000, 5000, 2000), .sleep = 30};
    char err[4096];
    int status = run_child(crowd_then_clash, &c, NULL, err, sizeof err);
    expect_clash_reported(status, err);
}

Test(stack, overflow_past_the_guard_page_is_caught_without_guard_install,
     .timeout = TEST_TIMEOUT) {
    rill__stack_without_guard_install(); /* each stack a mapping of its own */
    crowd c = {.n = 100, .sleep = 30};
    char err[4096];
    int status = run_child(crowd_then_clash, &c, NULL, err, sizeof err);
    expect_clash_reported(status, err);
}

/* ---- (b) deep recursion close to the limit ---------------------------------------- */

static char *stack_start; /* the body's first local: near the stack's top */

/* About 1 KiB a call; descends until `used` bytes below stack_start. */
__attribute__((noinline)) static long descend(size_t used) {
    volatile char frame[1000];
    frame[0] = 1;
    if ((size_t)(stack_start - (char *)frame) >= used) return frame[0];
    return descend(used) + frame[0];
}

static int uses_most_of_its_stack(void *arg) {
    size_t used = *(size_t *)arg;
    char top;
    stack_start = &top;
    return descend(used) > 0 ? 0 : -EIO;
}

FIBER_TEST(stack, recursion_using_most_of_a_small_stack_is_fine) {
    /* 13 of 16 KiB: the rest is the stack's descriptor, the start frame,
     * the task's entry and one more frame of descend. */
    size_t used = 13 * 1024;
    rill_task *t = rill_spawn_opts(uses_most_of_its_stack, &used,
                                   &(rill_opts){.name = "deep", .stack_size = 16 * 1024});
    cr_assert_not_null(t);
    expect_eq(rill_join(t), 0);
    return 0;
}

/* ---- (d) a sleeping fiber's memory ------------------------------------------------- */

static int measures_a_crowd(void *arg) {
    crowd *c = arg;
    c->rss_before = rss_kib();
    rill_group g;
    rill_group_init(&g);
    int rc = spawn_crowd(&g, c);
    /* The sleepers run before main wakes (the run queue is FIFO). */
    rill_sleep(0.01);
    c->rss_asleep = rss_kib();
    if (rc) rill_group_cancel(&g);
    int wrc = rill_group_wait(&g);
    return rc ? rc : wrc;
}

Test(stack, a_sleeping_fiber_costs_about_a_page, .timeout = TEST_TIMEOUT) {
    if (under_asan() || under_valgrind()) cr_skip_test("checkers keep memory of their own");
    expect_eq(rill_run(rill_test_noop, NULL), 0);
    crowd c = {.n = 10000, .sleep = 0.2};
    expect_eq(rill_run(measures_a_crowd, &c), 0);
    expect_eq(c.started, c.n);
    double per = (double)(c.rss_asleep - c.rss_before) / (double)c.n;
    /* Its stack's top page and its struct; the guard page and the stack's
     * low end cost nothing. */
    cr_expect(per < 6.0, "%.2f KiB resident per sleeping fiber", per);
}

/* ---- (e) a million fibers -------------------------------------------------------------- */

Test(stack, a_million_fibers_sleep_at_once_each_with_its_guard_page,
     .timeout = TEST_TIMEOUT) {
    if (!kernel_installs_guards()) cr_skip_test("this kernel lacks MADV_GUARD_INSTALL");
    crowd c = {.n = scaled(1000000, 20000, 2000), .sleep = 0.05};
    char err[4096];
    int status = run_child(crowd_main, &c, NULL, err, sizeof err);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status, err);
    /* No fallback to unguarded stacks, however many. */
    cr_expect(!strstr(err, "unguarded"), "stderr: %s", err);
}

/* ---- (f) guard pages do not count as mappings ------------------------------------- */

FIBER_TEST(stack, a_hundred_thousand_stacks_add_few_mappings) {
    if (!kernel_installs_guards()) cr_skip_test("this kernel lacks MADV_GUARD_INSTALL");
    int before = count_mappings();
    crowd c = {.n = scaled(100000, 10000, 2000), .sleep = 0.05};
    expect_eq(crowd_main(&c), 0);
    /* Two per stack would be 200 000 mappings, past vm.max_map_count. */
    cr_expect(c.mappings - before < 200, "%ld stacks: %d mappings, %d before", c.n, c.mappings,
              before);
    return 0;
}

/* ---- a burst's slabs go when its fibers end ------------------------------------------ */

/* Address space (MiB) still mapped after a run of c, next to before it. */
static long mib_kept_after(crowd *c) {
    long before = status_kib("VmSize:");
    expect_eq(rill_run(crowd_main, c), 0);
    return (status_kib("VmSize:") - before) / 1024;
}

Test(stack, a_burst_s_slabs_are_unmapped_once_its_fibers_end, .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(rill_test_noop, NULL), 0);
    /* Stacks of a size other than the default go back to their slabs at
     * once: nothing stays. */
    crowd odd = {.n = scaled(100000, 20000, 2000), .sleep = 0.05, .stack = 16 * 1024};
    long kept = mib_kept_after(&odd);
    cr_expect(kept < 64, "%ld MiB of stacks still mapped after %ld fibers", kept, odd.n);
    if (under_asan() || under_valgrind()) return; /* the pools would keep most of fewer */
    /* Default-size ones: the pools keep a few thousand (and the slabs they
     * are in) of 100 000, which were 6.5 GiB of address space. */
    crowd dflt = {.n = 100000, .sleep = 0.05};
    kept = mib_kept_after(&dflt);
    cr_expect(kept < 1024, "%ld MiB of stacks still mapped after %ld fibers", kept, dflt.n);
}

/* ---- the fallbacks without MADV_GUARD_INSTALL --------------------------------------- */

Test(stack, without_guard_install_stacks_fall_back_to_canaries_past_the_map_budget,
     .timeout = TEST_TIMEOUT) {
    if (under_valgrind()) cr_skip_test("30 000 mappings take minutes under valgrind");
    rill__stack_without_guard_install();
    /* Past the budget of about 28 000 stacks with mappings of their own;
     * small stacks keep the sanitizer's shadow small. */
    crowd c = {.n = 30000, .sleep = 0.05, .stack = 16 * 1024};
    char err[4096];
    int status = run_child(crowd_main, &c, NULL, err, sizeof err);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status, err);
    cr_expect(strstr(err, "new fiber stacks are unguarded, checked by canary"), "stderr: %s", err);
}

/* ---- a fault beside the stack is no overflow ------------------------------------------- */

/* Is the page at p readable?  Asked without faulting. */
static bool readable(const char *p) {
    char c;
    struct iovec local = {&c, 1}, remote = {(void *)p, 1};
    if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == 1) return true;
    if (errno != EFAULT) { /* the call itself refused (seccomp, ...): cannot ask */
        fprintf(stderr, "process_vm_readv: %s\n", strerror(errno));
        _exit(8);
    }
    return false;
}

/* Touch the first unreadable page above this fiber's stack: the guard page
 * of the next stack of its slab. */
static int touches_above_its_stack(void *arg) {
    (void)arg;
    char local;
    long page = sysconf(_SC_PAGESIZE);
    char *p = (char *)((uintptr_t)&local & ~(uintptr_t)(page - 1));
    for (int i = 0; i < 64 && readable(p); i++) p += page;
    if (readable(p)) {
        fprintf(stderr, "no inaccessible page above the stack\n");
        _exit(7);
    }
    fprintf(stderr, "touching %p, above the stack\n", (void *)p);
    return *(volatile char *)p;
}

static int spawn_upward_toucher(void *arg) {
    (void)arg;
    return rill_join(rill_spawn_opts(touches_above_its_stack, NULL,
                                     &(rill_opts){.name = "toucher"}));
}

Test(stack, a_fault_in_the_next_stack_s_guard_page_is_no_overflow, .timeout = TEST_TIMEOUT) {
    char err[4096];
    int status = run_child(spawn_upward_toucher, NULL, NULL, err, sizeof err);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 7) cr_skip_test("no page to fault on: %s", err);
    cr_assert(strstr(err, "touching "), "stderr: %s", err);
    cr_expect(!strstr(err, "overflowed"), "a fault beside the stack was called an overflow: %s",
              err);
    cr_expect(!(WIFEXITED(status) && WEXITSTATUS(status) == 0), "the fault went unnoticed");
}

/* A burst of fibers whose frames touch many pages, all ended: the pool
 * keeps their stacks for reuse, then gives the pages back once they have
 * gone unused for a second or so (a server's memory falls back after a
 * peak of clients). */
typedef struct burst {
    rill_event go;
    int touched;
} burst;

static int touch_and_wait(void *arg) {
    burst *b = arg;
    volatile char frame[40 * 1024];
    memset((char *)frame, 1, sizeof frame);
    b->touched += frame[100];
    return rill_event_wait(&b->go);
}

static int burst_then_quiet(void *arg) {
    long *rss = arg; /* before, at the peak's end, after a quiet while */
    int n = under_valgrind() ? 300 : 3000;
    burst b = {.touched = 0};
    rill_event_init(&b.go);
    rill_task **t = calloc((size_t)n, sizeof *t);
    cr_assert_not_null(t);
    rss[0] = rss_kib();
    for (int i = 0; i < n; i++) t[i] = rill_spawn(touch_and_wait, &b);
    expect_eq(rill_sleep(0.01), 0);
    rill_event_set(&b.go);
    for (int i = 0; i < n; i++) expect_eq(rill_join(t[i]), 0);
    expect_eq(b.touched, n);
    rss[1] = rss_kib();
    expect_eq(rill_sleep(2.5), 0);
    rss[2] = rss_kib();
    free(t);
    return 0;
}

Test(stack, a_burst_s_stack_pages_go_back_after_a_quiet_second, .timeout = TEST_TIMEOUT) {
    long rss[3];
    cr_assert_eq(rill_run(burst_then_quiet, rss), 0);
    /* The numbers mean something only without a checker's own memory
     * (valgrind's, ASan's shadow of the stacks). */
#ifndef __SANITIZE_ADDRESS__
    if (!under_valgrind()) {
        cr_assert_gt(rss[1] - rss[0], 40 * 1024, "the burst touched little: %ld -> %ld KiB",
                     rss[0], rss[1]);
        cr_assert_lt(rss[2] - rss[0], 16 * 1024, "RSS %ld KiB before, %ld at the end, %ld after",
                     rss[0], rss[1], rss[2]);
    }
#endif
    (void)rss;
}
