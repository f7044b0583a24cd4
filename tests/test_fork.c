/* fork() inside a run: the child keeps the forking thread's run and both
 * processes go on, each with its own loop, fds and thread pool.  Every test
 * reaps its child (killing it past a generous deadline) and a child only
 * leaves through _exit.  Named *forked*: ThreadSanitizer does not support
 * threads started in the child of a threaded process. */
#include <ev.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <unistd.h>

#include "helpers.h"

/* How long a child may take before the parent calls it stuck: generous,
 * for valgrind. */
#define CHILD_DEADLINE 30.0

/* fork(), and a child that cannot outlive the test: it dies with its
 * parent, or after the deadline if stuck. */
static pid_t forks(void) {
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm((unsigned)CHILD_DEADLINE + 10);
    }
    return pid;
}

/* Reap pid from a fiber (other fibers run meanwhile): its exit code, or -1
 * if it had to be killed, -2 if it did not exit normally, -3 if waitpid
 * failed. */
static int reap(pid_t pid) {
    double deadline = rill_now() + CHILD_DEADLINE;
    int status;
    pid_t r;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0) {
        if (rill_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        rill_sleep(0.005);
    }
    if (r != pid) return -3;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

/* ---- a pipe ping-pong driven by fd waits and timers -------------------------- */

typedef struct pingpong {
    int fds[2];
    int rounds;
    int read_ok;          /* bytes read back in the order written */
} pingpong;

static int ticks(void *arg) { /* a byte per millisecond or two */
    pingpong *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        int rc = rill_sleep(0.001 + 0.001 * (i % 2));
        if (rc) return rc;
        unsigned char c = (unsigned char)i;
        if (write(p->fds[1], &c, 1) != 1) return -EIO;
    }
    return 0;
}

static int reads_ticks(void *arg) {
    pingpong *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        int rc = rill_wait_fd(p->fds[0], RILL_READ);
        if (rc != RILL_READ) return rc < 0 ? rc : -EIO;
        unsigned char c;
        if (read(p->fds[0], &c, 1) != 1) return -EIO;
        if (c == (unsigned char)i) p->read_ok++;
    }
    return 0;
}

typedef struct pingpong_run {
    pingpong p;
    rill_task *ticker, *reader;
} pingpong_run;

/* Move fd up to `at` or above, if the limit allows. */
static int move_up(int fd, int at) {
    int high = fcntl(fd, F_DUPFD, at);
    if (high < 0) return fd;
    close(fd);
    return high;
}

/* A pipe, its fds moved up to `at` or above (0: where pipe() put them). */
static int pingpong_start(pingpong_run *r, int rounds, int at) {
    r->p = (pingpong){.rounds = rounds};
    if (pipe(r->p.fds) != 0) return -errno;
    if (at) {
        r->p.fds[0] = move_up(r->p.fds[0], at);
        r->p.fds[1] = move_up(r->p.fds[1], at);
    }
    r->ticker = rill_spawn(ticks, &r->p);
    r->reader = rill_spawn(reads_ticks, &r->p);
    return r->ticker && r->reader ? 0 : -ENOMEM;
}

/* 0 when every byte came back in order. */
static int pingpong_finish(pingpong_run *r) {
    int a = rill_join(r->ticker), b = rill_join(r->reader);
    close(r->p.fds[0]);
    close(r->p.fds[1]);
    if (a) return a;
    if (b) return b;
    return r->p.read_ok == r->p.rounds ? 0 : -EIO;
}

/* In the child: the parent's fibers were copied too, and wait on fds the
 * parent uses.  The child closes its copies of those (which wakes the
 * copied reader with -EBADF) and stops the ticker, then works on a pipe of
 * its own (likely with the same fd numbers). */
static int child_pingpong(pingpong_run *parents) {
    close(parents->p.fds[0]);
    close(parents->p.fds[1]);
    rill_cancel(parents->ticker);
    if (rill_join(parents->ticker) == 0) return 10;
    if (rill_join(parents->reader) == 0) return 11;
    /* High fds: a child sharing the parent's epoll set would hand it
     * numbers far beyond any the parent's loop knows. */
    struct rlimit lim;
    int at = getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur > 64 && lim.rlim_cur < 1000000
                 ? (int)lim.rlim_cur - 16 : 1000;
    pingpong_run mine;
    if (pingpong_start(&mine, 100, at) != 0) return 12;
    if (pingpong_finish(&mine) != 0) return 13;
    if (rill_sleep(0.01) != 0) return 14;
    return 0;
}

FIBER_TEST(fork, a_forked_child_and_its_parent_each_keep_their_fd_waits_and_timers) {
    pingpong_run r;
    expect_eq(pingpong_start(&r, 300, 0), 0);
    expect_eq(rill_sleep(0.01), 0); /* the parent's waits are under way */
    pid_t pid = forks();
    cr_assert(pid >= 0);
    if (pid == 0) _exit(child_pingpong(&r));
    expect_eq(reap(pid), 0);
    expect_eq(pingpong_finish(&r), 0);
    return 0;
}

/* ---- the thread pool on both sides of a fork --------------------------------- */

static int doubles(void *arg) {
    int *x = arg;
    return *x * 2;
}

typedef struct offloader {
    int calls;
    int right;            /* calls that returned what they should */
} offloader;

static int offloads(void *arg) {
    offloader *o = arg;
    for (int i = 0; i < o->calls; i++) {
        int x = i;
        if (rill_to_thread(doubles, &x) == 2 * i) o->right++;
    }
    return 0;
}

/* Two fibers at once, as many calls each. */
static int offload_twice(int calls) {
    offloader a = {.calls = calls}, b = {.calls = calls};
    rill_task *t = rill_spawn(offloads, &b);
    if (!t) return -ENOMEM;
    offloads(&a);
    int rc = rill_join(t);
    if (rc) return rc;
    return a.right == calls && b.right == calls ? 0 : -EIO;
}

static int child_offloads(void) { return offload_twice(50) == 0 ? 0 : 20; }

static int offloads_and_reaps(pid_t pid) {
    int rc = offload_twice(50);
    int code = reap(pid);
    return rc ? rc : code ? -ECHILD : 0;
}

FIBER_TEST(fork, a_forked_child_completes_its_thread_calls_while_the_parent_makes_its_own) {
#ifdef __SANITIZE_ADDRESS__
    /* Under ASan, about one run in five the parent's reap reads back a
     * deadline 30 s earlier than it stored (a slot of this fiber's stack
     * read wrong after the fork): under investigation; the plain and
     * valgrind modes run it. */
    cr_skip_test("flaky under ASan after a fork (see the comment)");
#endif
    expect_eq(offload_twice(4), 0); /* the parent's workers start, and idle */
    pid_t pid = forks();
    cr_assert(pid >= 0);
    if (pid == 0) _exit(child_offloads());
    expect_eq(offloads_and_reaps(pid), 0);
    return 0;
}

/* A job queued, not started, at the fork: the child's copy still runs. */
typedef struct gate {
    int fds[2];           /* the blocker job waits to read a byte */
} gate;

static atomic_bool gate_held;

static int blocks_until_opened(void *arg) {
    gate *g = arg;
    atomic_store(&gate_held, true);
    char c;
    return read(g->fds[0], &c, 1) == 1 ? 0 : -EIO;
}

static int holds_the_only_worker(void *arg) { /* another thread's run */
    return rill_to_thread(blocks_until_opened, arg);
}

static void *runs_in_a_thread(void *arg) {
    return (void *)(intptr_t)rill_run(holds_the_only_worker, arg);
}

static int queued_doubles(void *arg) {
    int *x = arg;
    int rc = rill_to_thread(doubles, x);
    *x = rc;
    return 0;
}

FIBER_TEST(fork, jobs_queued_at_the_fork_still_run_in_the_forked_child) {
    setenv("RILL_THREADS", "1", 1); /* this test's process only */
    gate g;
    cr_assert_eq(pipe(g.fds), 0);
    pthread_t other;
    cr_assert_eq(pthread_create(&other, NULL, runs_in_a_thread, &g), 0);
    /* The other run's job holds the one worker. */
    for (double until = rill_now() + CHILD_DEADLINE; !atomic_load(&gate_held);)
        cr_assert(rill_sleep(0.001) == 0 && rill_now() < until);
    int x = 21;
    rill_task *t = rill_spawn(queued_doubles, &x);
    expect_eq(rill_yield_now(), 0); /* t's job is queued behind it */
    pid_t pid = forks();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* The blocked job, and the other thread, do not exist here. */
        if (rill_join(t) != 0 || x != 42) _exit(30);
        _exit(child_offloads());
    }
    cr_assert_eq(write(g.fds[1], "x", 1), 1);
    expect_eq(rill_join(t), 0);
    expect_eq(x, 42);
    expect_eq(reap(pid), 0);
    void *ret;
    pthread_join(other, &ret);
    expect_eq((intptr_t)ret, 0);
    close(g.fds[0]);
    close(g.fds[1]);
    return 0;
}

/* ---- a fork from a fiber of an attached loop --------------------------------- */

typedef struct attached_fork {
    int status;           /* the forking fiber's result */
} attached_fork;

static int forks_inside_an_attached_loop(void *arg) {
    attached_fork *a = arg;
    pingpong_run r;
    if ((a->status = pingpong_start(&r, 300, 0)) != 0) return 0;
    rill_sleep(0.01);
    pid_t pid = forks();
    if (pid < 0) {
        a->status = -errno;
        return 0;
    }
    if (pid == 0) {
        int code = child_pingpong(&r);
        _exit(code ? code : child_offloads());
    }
    int rc = offload_twice(20);
    int code = reap(pid);
    int pp = pingpong_finish(&r);
    a->status = rc ? rc : code ? 100 + code : pp;
    return 0;
}

Test(fork, a_forked_child_of_an_attached_loop_and_its_parent_both_go_on, .timeout = TEST_TIMEOUT) {
    rill_run(rill_test_noop, NULL); /* ASan opens its log at the first switch */
    int fds = count_open_fds();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    expect_eq(rill_attach(loop), 0);
    attached_fork a = {.status = 1};
    rill_detach(rill_spawn(forks_inside_an_attached_loop, &a));
    ev_run(loop, 0);
    expect_eq(a.status, 0);
    expect_eq(rill_detach_loop(), 0);
    ev_loop_destroy(loop);
    expect_eq(count_open_fds(), fds);
}
