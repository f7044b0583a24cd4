/* rill_build_info, and the one behaviour that differs between the switch
 * backends: whose signal mask a fiber changes (rill.h, "The build"). */
#include <pthread.h>
#include <signal.h>

#include "helpers.h"

/* GCC says __SANITIZE_ADDRESS__, Clang __has_feature. */
#if defined(__SANITIZE_ADDRESS__)
#define BUILT_WITH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUILT_WITH_ASAN 1
#endif
#endif

Test(build, info_names_the_backend_this_copy_was_built_with, .timeout = TEST_TIMEOUT) {
    const rill_build *b = rill_build_info();
    cr_assert_not_null(b);
    cr_expect_str_eq(b->switch_backend, RILL__SWITCH); /* the Makefile's SWITCH */
    cr_expect_str_eq(b->version, RILL__VERSION);
    const char *method = strcmp(b->switch_backend, "ucontext") == 0   ? "swapcontext"
                         : strcmp(b->switch_backend, "portable") == 0 ? "_setjmp/_longjmp"
#if defined(__x86_64__)
                                                                      : "x86-64 assembly";
#else
                                                                      : "aarch64 assembly";
#endif
    cr_expect_str_eq(b->switch_method, method);
    cr_expect_eq(b->fiber_sigmask, strcmp(b->switch_backend, "ucontext") == 0);
    cr_expect_eq(b->fiber_fp_control, strcmp(b->switch_backend, "portable") != 0);
#if defined(BUILT_WITH_ASAN)
    cr_expect_str_eq(b->checker, "address");
#else
    cr_expect_str_eq(b->checker, "none");
#endif
    cr_expect_eq(rill_build_info(), b, "one copy, static");
}

static bool blocked_here(int sig) {
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, sig);
}

typedef struct masks {
    rill_event blocked;
    bool other_saw_it;
    bool still_blocked_after;
} masks;

static int blocks_sigusr2(void *arg) {
    masks *m = arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    rill_event_set(&m->blocked);
    expect_eq(rill_yield_now(), 0); /* the other fiber looks now */
    m->still_blocked_after = blocked_here(SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    return 0;
}

static int looks(void *arg) {
    masks *m = arg;
    expect_eq(rill_event_wait(&m->blocked), 0);
    m->other_saw_it = blocked_here(SIGUSR2);
    return 0;
}

/* ucontext: each fiber has its own mask; fast and portable: the thread's. */
FIBER_TEST(build, a_signal_mask_is_per_fiber_exactly_when_the_build_says_so) {
    cr_assert(!blocked_here(SIGUSR2));
    masks m = {0};
    rill_event_init(&m.blocked);
    rill_task *a = rill_spawn(blocks_sigusr2, &m), *b = rill_spawn(looks, &m);
    expect_eq(rill_join(a), 0);
    expect_eq(rill_join(b), 0);
    cr_expect(m.still_blocked_after, "the fiber that blocked it keeps it blocked");
    cr_expect_eq(m.other_saw_it, !rill_build_info()->fiber_sigmask);
    return 0;
}
