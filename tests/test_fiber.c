/* Fiber stacks: overflow is reported by name, never silent (rill.h, README "Stacks").
 * Tests whose names contain "overflow" overflow a stack on purpose; the
 * valgrind run leaves them out (valgrind reports the overflow itself). */
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <fenv.h>

#include "helpers.h"
#include "../runtime/switch.h" /* rill__ctx_backend: what it promises of FP state */

/* Each call eats about 1 KiB of stack and cannot be turned into a loop. */
static int recurse(int depth) {
    volatile char frame[1000];
    frame[0] = (char)depth;
    if (depth == 0) return frame[0];
    return recurse(depth - 1) + frame[0];
}

static int overflows(void *arg) {
    (void)arg;
    return recurse(1 << 20);
}

static int spawn_overflowing(void *arg) {
    rill_task *t = rill_spawn_opts(overflows, NULL,
                                   &(rill_opts){.name = arg, .stack_size = 32 * 1024});
    return rill_join(t);
}

/* Smashes everything from just below the stack's low end upwards, without
 * touching a guard page: only the canary can tell. */
static int smashes_the_canary(void *arg) {
    (void)arg;
    volatile char big[17 * 1024];
    memset((char *)big, 0x5a, sizeof big);
    return rill_yield_now() + big[0] - 0x5a;
}

static int spawn_smasher(void *arg) {
    rill_task *t = rill_spawn_opts(smashes_the_canary, NULL,
                                   &(rill_opts){.name = arg, .stack_size = 16 * 1024});
    return rill_join(t);
}

Test(fiber, overflow_names_the_fiber_and_aborts, .timeout = TEST_TIMEOUT) {
    char err[4096];
    char name[] = "deep-recursion";
    int status = run_child(spawn_overflowing, name, NULL, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "child status %#x, stderr: %s", status, err);
    cr_expect(strstr(err, "rill: fiber 'deep-recursion' overflowed its 32 KiB stack\n"),
              "stderr was: %s", err);
}

Test(fiber, overflow_ends_the_process_with_sigabrt, .signal = SIGABRT,
     .timeout = TEST_TIMEOUT) {
    char name[] = "overflow";
    rill_run(spawn_overflowing, name);
}

Test(fiber, canary_catches_an_overflow_without_guard_pages, .timeout = TEST_TIMEOUT) {
    char err[4096];
    char name[] = "smasher";
    int status = run_child(spawn_smasher, name, "0", err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "child status %#x, stderr: %s", status, err);
    cr_expect(strstr(err, "rill: fiber 'smasher' overflowed its 16 KiB stack\n"),
              "stderr was: %s", err);
}

static int deep_but_within(void *arg) {
    (void)arg;
    return recurse(40) > -1000000 ? 0 : -1; /* ~40 KiB of a 64 KiB stack */
}

FIBER_TEST(fiber, deep_use_within_the_stack_is_fine) {
    expect_eq(rill_join(rill_spawn(deep_but_within, NULL)), 0);
    return 0;
}

static int rounds(void) { return under_valgrind() ? 50 : 1000; }

static int ping(void *arg) {
    int *n = arg;
    for (int i = 0; i < rounds(); i++) {
        (*n)++;
        int rc = rill_yield_now();
        if (rc) return rc;
    }
    return 0;
}

Test(fiber, stacks_without_guard_pages_work, .timeout = TEST_TIMEOUT) {
    setenv("RILL_GUARD_PAGES", "0", 1);
    int n = 0;
    expect_eq(rill_run(ping, &n), 0);
    expect_eq(n, rounds());
}

static int spawns_many(void *arg) {
    int *n = arg;
    rill_task *t[200];
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 200; i++) t[i] = rill_spawn(ping, n);
        for (int i = 0; i < 200; i++)
            if (rill_join(t[i]) != 0) return -EIO;
    }
    return 0;
}

Test(fiber, stacks_are_recycled_across_runs_and_sizes, .timeout = TEST_TIMEOUT) {
    setenv("RILL_STACK_SIZE", "48k", 1);
    for (int run = 0; run < 3; run++) {
        int n = 0;
        expect_eq(rill_run(spawns_many, &n), 0);
        expect_eq(n, 5 * 200 * rounds());
    }
}

/* The stacks a runtime leaves behind serve the next one, on any thread:
 * its burst of fibers maps no new stack. */

typedef struct burst {
    int n, mappings;
} burst;

static int sleeps_briefly(void *arg) {
    (void)arg;
    return rill_sleep(0.001);
}

static int spawns_a_burst(void *arg) {
    burst *b = arg;
    rill_group g;
    rill_group_init(&g);
    for (int i = 0; i < b->n; i++) rill_group_spawn(&g, sleeps_briefly, NULL);
    b->mappings = count_mappings(); /* every stack is taken at spawn */
    return rill_group_wait(&g);
}

static void *runs_a_burst(void *arg) {
    return (void *)(intptr_t)rill_run(spawns_a_burst, arg);
}

Test(fiber, stacks_outlive_their_runtime_and_serve_the_next_on_any_thread,
     .timeout = TEST_TIMEOUT) {
    burst first = {.n = 1000}, second = {.n = 1000};
    expect_eq(rill_run(spawns_a_burst, &first), 0);
    int before = count_mappings();
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, runs_a_burst, &second), 0);
    void *rc;
    pthread_join(t, &rc);
    expect_eq((intptr_t)rc, 0);
    /* A new stack per fiber would be 2000 mappings (stack and guard page);
     * the thread itself and its loop add a few. */
    cr_assert(second.mappings - before < 64, "the second burst added %d mappings",
              second.mappings - before);
}

static int raises_segv(void *arg) {
    (void)arg;
    raise(SIGSEGV); /* not a fault: rill must not take it for an overflow */
    return 0;
}

static int spawn_raiser(void *arg) {
    (void)arg;
    return rill_join(rill_spawn(raises_segv, NULL));
}

Test(fiber, a_raised_sigsegv_is_not_swallowed_nor_taken_for_an_overflow,
     .timeout = TEST_TIMEOUT) {
    char err[4096];
    int status = run_child(spawn_raiser, NULL, NULL, err, sizeof err);
    /* Killed by the signal; under ASan, its handler (which rill hands the
     * signal on to) reports it and exits with 1 instead. */
    bool died = (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) ||
                (WIFEXITED(status) && WEXITSTATUS(status) == 1 && strstr(err, "AddressSanitizer"));
    cr_expect(died, "child status %#x, stderr: %s", status, err);
    cr_expect(!strstr(err, "overflowed"), "stderr: %s", err);
}

static int big_frame(void) {
    volatile char buf[512 * 1024]; /* jumps far past the 1-page guard */
    buf[0] = 1;
    buf[sizeof buf - 1] = 2;
    return buf[0];
}

static int has_a_huge_frame(void *arg) {
    (void)arg;
    return big_frame();
}

static int spawn_huge_frame(void *arg) {
    return rill_join(rill_spawn_opts(has_a_huge_frame, NULL, &(rill_opts){.name = arg}));
}

Test(fiber, overflow_by_one_huge_frame_is_reported_too, .timeout = TEST_TIMEOUT) {
    char err[4096];
    char name[] = "huge-frame";
    int status = run_child(spawn_huge_frame, name, NULL, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "child status %#x, stderr: %s", status, err);
    cr_expect(strstr(err, "rill: fiber 'huge-frame' overflowed its"), "stderr: %s", err);
}

/* ---- a fault that is not an overflow is not called one --------------------- */

/* The start of the mapping line of /proc/self/maps holding p, or NULL. */
static char *mapping_start(const void *p, char *prot_out) {
    FILE *f = fopen("/proc/self/maps", "r");
    unsigned long lo, hi;
    char prot[8];
    char *found = NULL;
    while (f && fscanf(f, "%lx-%lx %7s%*[^\n]", &lo, &hi, prot) == 3) {
        if ((unsigned long)p >= lo && (unsigned long)p < hi) {
            found = (char *)lo;
            if (prot_out) strcpy(prot_out, prot);
            break;
        }
    }
    if (f) fclose(f);
    return found;
}

/* Touch an inaccessible page close below this fiber's guard page, as a
 * dangling pointer into a neighbouring stack that was unmapped would. */
static int touches_beside_its_stack(void *arg) {
    (void)arg;
    char local;
    char *lo = mapping_start(&local, NULL); /* the stack, above its guard page */
    long page = sysconf(_SC_PAGESIZE);
    for (char *p = lo - 2 * page; p > lo - 200 * 1024; p -= page) {
        char prot[8] = "";
        if (!mapping_start(p, prot)) {
            /* A hole: make it ours, inaccessible. */
            if (mmap(p, (size_t)page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                     -1, 0) != p)
                continue;
        } else if (prot[0] != '-' || prot[1] != '-') {
            continue; /* readable: no fault there */
        }
        fprintf(stderr, "touching %p, %ld bytes below the stack\n", (void *)p, (long)(lo - p));
        return *(volatile char *)p;
    }
    fprintf(stderr, "no inaccessible page near the stack\n");
    _exit(7);
}

static int spawn_toucher(void *arg) {
    return rill_join(rill_spawn_opts(touches_beside_its_stack, NULL, &(rill_opts){.name = arg}));
}

Test(fiber, a_fault_near_but_not_in_the_guard_page_is_no_overflow, .timeout = TEST_TIMEOUT) {
    char err[4096];
    char name[] = "toucher";
    int status = run_child(spawn_toucher, name, NULL, err, sizeof err);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 7) cr_skip_test("no page to fault on: %s", err);
    cr_assert(strstr(err, "touching "), "stderr: %s", err);
    cr_expect(!strstr(err, "overflowed"), "a fault beside the stack was called an overflow: %s",
              err);
    cr_expect(!(WIFEXITED(status) && WEXITSTATUS(status) == 0), "the fault went unnoticed");
}

/* ---- out of address space is not blamed on vm.max_map_count -------------------- */

static int spawns_until_out_of_memory(void *arg) {
    (void)arg;
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld", &pages) != 1) return -EIO;
    fclose(f);
    /* Room for a few more 1 MiB stacks, then none. */
    struct rlimit rl = {.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (8u << 20)};
    rl.rlim_max = rl.rlim_cur;
    if (setrlimit(RLIMIT_AS, &rl) != 0) return -errno;
    int n = 0;
    for (; n < 1000; n++) {
        rill_task *t = rill_spawn_opts(rill_test_noop, NULL, &(rill_opts){.stack_size = 1u << 20});
        if (!t) break;
        rill_detach(t);
    }
    int err = errno;
    fprintf(stderr, "spawned %d, then errno %d\n", n, err);
    return n < 1000 && err == ENOMEM ? 0 : -EIO;
}

Test(fiber, out_of_address_space_is_enomem_without_blaming_the_map_count,
     .timeout = TEST_TIMEOUT) {
    /* Sanitizers and valgrind reserve address space of their own. */
#if defined(__SANITIZE_ADDRESS__)
    cr_skip_test("AddressSanitizer needs its shadow address space");
#endif
    if (under_valgrind()) cr_skip_test("valgrind manages the address space itself");
    char err[4096];
    int status = run_child(spawns_until_out_of_memory, NULL, NULL, err, sizeof err);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status, err);
    cr_expect(!strstr(err, "max_map_count"), "blamed the map count: %s", err);
}

/* ---- floating-point control state ----------------------------------------
 * switch.h: with the fast and ucontext switches each fiber has its own
 * (rounding mode, flush-to-zero, ...), restored when it resumes, and a new
 * fiber starts with its spawner's; with the portable switch there is one
 * for the thread, which every fiber shares. */

/* Flush-to-zero: MXCSR.FTZ; FPCR.FZ.  valgrind keeps only the rounding mode
 * of MXCSR, so it is not looked at there. */
static bool ftz_checked(void) {
#if defined(__x86_64__) || defined(__aarch64__)
    return !under_valgrind();
#else
    return false;
#endif
}

static bool ftz_get(void) {
    unsigned long v = 0;
#if defined(__x86_64__)
    unsigned mxcsr;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    v = mxcsr & 0x8000u;
#elif defined(__aarch64__)
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    v &= 1ul << 24;
#endif
    return v != 0;
}

static void ftz_set(bool on) {
#if defined(__x86_64__)
    unsigned mxcsr;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    mxcsr = on ? mxcsr | 0x8000u : mxcsr & ~0x8000u;
    __asm__ volatile("ldmxcsr %0" : : "m"(mxcsr));
#elif defined(__aarch64__)
    unsigned long v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    v = on ? v | 1ul << 24 : v & ~(1ul << 24);
    __asm__ volatile("msr fpcr, %0" : : "r"(v));
#else
    (void)on;
#endif
}

static bool fp_shared(void) { return strcmp(rill__ctx_backend, "portable") == 0; }

static struct {
    int step;          /* how far the setter is */
    int setter_round, setter_ftz;   /* what the setter saw on resuming */
    int other_round, other_ftz;     /* what a fiber spawned before saw */
    int child_round, child_ftz;     /* what a fiber the setter spawned saw */
    int main_round, main_ftz;       /* what rill_run's main saw */
} fpst;

static int wait_step(int n) {
    while (fpst.step < n) {
        int rc = rill_yield_now();
        if (rc) return rc;
    }
    return 0;
}

static int fp_child(void *arg) {
    (void)arg;
    fpst.child_round = fegetround();
    fpst.child_ftz = ftz_get();
    return 0;
}

static int fp_setter(void *arg) {
    (void)arg;
    fesetround(FE_UPWARD);
    ftz_set(true);
    rill_task *child = rill_spawn(fp_child, NULL);
    fpst.step = 1;
    int rc = wait_step(2); /* the others have looked, and set their own */
    fpst.setter_round = fegetround();
    fpst.setter_ftz = ftz_get();
    fesetround(FE_TONEAREST); /* shared by all with the portable switch */
    ftz_set(false);
    return rc ? rc : rill_join(child);
}

static int fp_other(void *arg) {
    (void)arg;
    int rc = wait_step(1);
    fpst.other_round = fegetround();
    fpst.other_ftz = ftz_get();
    if (!fp_shared()) fesetround(FE_DOWNWARD); /* not the setter's business */
    fpst.step = 2;
    return rc;
}

static int fp_main(void *arg) {
    (void)arg;
    rill_task *setter = rill_spawn(fp_setter, NULL), *other = rill_spawn(fp_other, NULL);
    int rc = wait_step(1);
    fpst.main_round = fegetround();
    fpst.main_ftz = ftz_get();
    int a = rill_join(setter), b = rill_join(other);
    return rc ? rc : a ? a : b;
}

Test(fiber, a_rounding_mode_set_in_a_fiber_stays_in_it_and_its_spawns_as_the_switch_says,
     .timeout = TEST_TIMEOUT) {
    cr_assert_eq(fegetround(), FE_TONEAREST);
    expect_eq(rill_run(fp_main, NULL), 0);
    bool shared = fp_shared(), ftz = ftz_checked();
    cr_log_info("switch %s: fiber's own FP state: %s", rill__ctx_backend, shared ? "no" : "yes");
    /* Still set when the setter resumed, after the others ran. */
    expect_eq(fpst.setter_round, FE_UPWARD);
    if (ftz) expect_eq(fpst.setter_ftz, 1);
    if (shared) {
        /* One state for the thread: everybody saw the setter's. */
        expect_eq(fpst.other_round, FE_UPWARD);
        expect_eq(fpst.main_round, FE_UPWARD);
        expect_eq(fpst.child_round, FE_UPWARD);
        if (ftz) expect_eq(fpst.other_ftz + fpst.main_ftz + fpst.child_ftz, 3);
    } else {
        expect_eq(fpst.other_round, FE_TONEAREST);
        expect_eq(fpst.main_round, FE_TONEAREST);
        expect_eq(fpst.child_round, FE_UPWARD); /* spawned after it was set */
        if (ftz) {
            expect_eq(fpst.other_ftz + fpst.main_ftz, 0);
            expect_eq(fpst.child_ftz, 1);
        }
    }
    /* The thread outside rill_run: untouched. */
    expect_eq(fegetround(), FE_TONEAREST);
    if (ftz) expect_eq(ftz_get(), 0);
}
