/* rill_to_thread and the pool; rill_call_threadsafe between runtimes on
 * several threads (rill.h "Threads").  Each Criterion test runs in its own process,
 * so a test may set RILL_THREADS before its first offloaded call. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <time.h>

#include "helpers.h"

/* A gate pool threads block on until a fiber (or the test) opens it. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
} gate;
#define GATE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false}

static void gate_open(gate *g) {
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait(gate *g) {
    pthread_mutex_lock(&g->mu);
    while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void pause_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Cancel a scope once a job has started (so that it is not still queued). */
typedef struct canceller {
    atomic_int *started;
    rill_scope *scope;
} canceller;

static int cancels_once_started(void *arg) {
    canceller *c = arg;
    while (!atomic_load(c->started)) rill_sleep(0.001);
    rill_sleep(0.005);
    rill_scope_cancel(c->scope);
    return 0;
}

/* ---- rill_to_thread ---------------------------------------------------------- */

typedef struct square {
    int in, out;
    pthread_t ran_on;
} square;

static int squares(void *arg) {
    square *s = arg;
    pause_ms(30);
    s->out = s->in * s->in;
    s->ran_on = pthread_self();
    return s->in;
}

static int ticks(void *arg) {
    int *n = arg;
    for (;;) {
        if (rill_sleep(0.002) < 0) return 0;
        (*n)++;
    }
}

FIBER_TEST(thread, to_thread_returns_the_result_while_other_fibers_run) {
    int n = 0;
    rill_task *ticker = rill_spawn(ticks, &n);
    square s = {.in = 7};
    expect_eq(rill_to_thread(squares, &s), 7);
    expect_eq(s.out, 49);
    cr_assert(!pthread_equal(s.ran_on, pthread_self()), "ran on the loop's thread");
    /* 30 ms of blocking work; the ticker kept going (generous under load). */
    cr_assert(n >= 2, "the ticker ran %d times while the job blocked", n);
    rill_cancel(ticker);
    expect_eq(rill_join(ticker), 0);
    return 0;
}

Test(thread, to_thread_refuses_bad_calls, .timeout = TEST_TIMEOUT) {
    square s = {.in = 2};
    expect_eq(rill_to_thread(squares, &s), -EPERM); /* no fiber */
    expect_eq(rill_to_thread_detached(squares, &s, NULL), -EPERM);
    expect_eq(s.out, 0);
}

static int offloads_null(void *arg) {
    expect_eq(rill_to_thread(NULL, arg), -EINVAL);
    expect_eq(rill_to_thread_detached(NULL, arg, NULL), -EINVAL);
    return 0;
}

Test(thread, to_thread_of_null_is_einval, .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(offloads_null, NULL), 0);
}

static int returns_error(void *arg) {
    (void)arg;
    return -EIO;
}

FIBER_TEST(thread, a_job_error_comes_back_as_is) {
    expect_eq(rill_to_thread(returns_error, NULL), -EIO);
    return 0;
}

/* A job that holds the only worker until its gate opens. */
typedef struct blocker {
    gate g;
    atomic_int started, finished;
} blocker;

static int blocks(void *arg) {
    blocker *b = arg;
    atomic_fetch_add(&b->started, 1);
    gate_wait(&b->g);
    atomic_fetch_add(&b->finished, 1);
    return 5;
}

static int counts(void *arg) {
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

typedef struct queued_call {
    atomic_int *ran;
    int rc;
    bool detached;
} queued_call;

static int offloads_in_scope(void *arg) {
    queued_call *q = arg;
    rill_scope s;
    rill_scope_enter(&s, 0.02);
    q->rc = q->detached ? rill_to_thread_detached(counts, q->ran, NULL)
                        : rill_to_thread(counts, q->ran);
    rill_scope_exit(&s);
    return 0;
}

static int runs_blocker(void *arg) { return rill_to_thread(blocks, arg); }

FIBER_TEST(thread, a_cancelled_job_that_never_started_never_runs) {
    setenv("RILL_THREADS", "1", 1);
    static blocker b = {.g = GATE_INIT};
    rill_task *hog = rill_spawn(runs_blocker, &b);
    while (!atomic_load(&b.started)) rill_sleep(0.001);
    atomic_int ran = 0;
    queued_call plain = {.ran = &ran}, detached = {.ran = &ran, .detached = true};
    rill_task *a = rill_spawn(offloads_in_scope, &plain);
    rill_task *d = rill_spawn(offloads_in_scope, &detached);
    expect_eq(rill_join(a), 0);
    expect_eq(rill_join(d), 0);
    expect_eq(plain.rc, -ECANCELED);    /* timed out in the queue... */
    expect_eq(detached.rc, -ECANCELED);
    gate_open(&b.g);
    expect_eq(rill_join(hog), 5);
    /* ...and never runs: a job queued after them runs, they still have not. */
    atomic_int after = 0;
    expect_eq(rill_to_thread(counts, &after), 0);
    expect_eq(atomic_load(&after), 1);
    expect_eq(atomic_load(&ran), 0);
    return 0;
}

typedef struct slow_job {
    int ms;
    int done;
    atomic_int started;
} slow_job;

static int slow(void *arg) {
    slow_job *j = arg;
    atomic_store(&j->started, 1);
    pause_ms(j->ms);
    j->done = 1;
    return 11;
}

FIBER_TEST(thread, a_cancelled_caller_waits_for_its_running_job_and_gets_its_result) {
    slow_job j = {.ms = 80};
    rill_scope s;
    rill_scope_enter(&s, INFINITY);
    canceller c = {&j.started, &s};
    rill_task *t = rill_spawn(cancels_once_started, &c);
    int rc = rill_to_thread(slow, &j); /* j lives on this stack */
    expect_eq(rill_join(t), 0);
    expect_eq(rc, 11);
    expect_eq(j.done, 1);
    /* The cancellation is seen at the next blocking call. */
    expect_eq(rill_sleep(0), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ECANCELED);
    return 0;
}

typedef struct owned {
    gate g;
    atomic_int started, ran, released;
    atomic_int released_on_worker;
    pthread_t loop_thread;
} owned;

static int owned_job(void *arg) {
    owned *o = arg;
    atomic_store(&o->started, 1);
    gate_wait(&o->g);
    atomic_fetch_add(&o->ran, 1);
    return 3;
}

static void owned_release(void *arg) {
    owned *o = arg;
    if (!pthread_equal(pthread_self(), o->loop_thread)) atomic_fetch_add(&o->released_on_worker, 1);
    atomic_fetch_add(&o->released, 1);
}

FIBER_TEST(thread, a_detached_job_is_abandoned_by_a_cancelled_caller_and_released_after) {
    static owned o = {.g = GATE_INIT};
    o.loop_thread = pthread_self();
    rill_scope s;
    rill_scope_enter(&s, INFINITY);
    canceller c = {&o.started, &s};
    rill_task *t = rill_spawn(cancels_once_started, &c);
    /* Returns although the job runs until the gate opens, below. */
    expect_eq(rill_to_thread_detached(owned_job, &o, owned_release), -ECANCELED);
    expect_eq(rill_join(t), 0);
    rill_scope_exit(&s);
    expect_eq(atomic_load(&o.released), 0); /* the job still runs */
    gate_open(&o.g);
    while (!atomic_load(&o.released)) rill_sleep(0.001);
    expect_eq(atomic_load(&o.ran), 1);
    expect_eq(atomic_load(&o.released), 1);
    /* On the run's thread, when the job's end reached it. */
    expect_eq(atomic_load(&o.released_on_worker), 0);
    /* Not cancelled: the result comes back and the caller keeps arg. */
    static owned p = {.g = GATE_INIT};
    p.loop_thread = pthread_self();
    gate_open(&p.g);
    expect_eq(rill_to_thread_detached(owned_job, &p, owned_release), 3);
    expect_eq(atomic_load(&p.released), 0);
    return 0;
}

FIBER_TEST(thread, a_detached_job_cancelled_in_the_queue_is_released_at_once) {
    setenv("RILL_THREADS", "1", 1);
    static blocker b = {.g = GATE_INIT};
    rill_task *hog = rill_spawn(runs_blocker, &b);
    while (!atomic_load(&b.started)) rill_sleep(0.001);
    static owned o = {.g = GATE_INIT};
    o.loop_thread = pthread_self();
    gate_open(&o.g);
    rill_scope s;
    rill_scope_enter(&s, 0.01);
    expect_eq(rill_to_thread_detached(owned_job, &o, owned_release), -ECANCELED);
    rill_scope_exit(&s);
    expect_eq(atomic_load(&o.released), 1);        /* at once... */
    expect_eq(atomic_load(&o.released_on_worker), 0); /* ...on our thread */
    gate_open(&b.g);
    expect_eq(rill_join(hog), 5);
    expect_eq(atomic_load(&o.ran), 0);
    return 0;
}

typedef struct handed {
    atomic_int ran, released;
    int rc;
} handed;

static int returns_ecanceled(void *arg) {
    atomic_fetch_add(&((handed *)arg)->ran, 1);
    return -ECANCELED;
}

static void handed_release(void *arg) { atomic_fetch_add(&((handed *)arg)->released, 1); }

FIBER_TEST(thread, every_ecanceled_from_a_detached_call_releases_its_argument) {
    /* Already cancelled: the job never runs, and arg is released. */
    handed a = {0};
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_cancel(&s);
    expect_eq(rill_to_thread_detached(returns_ecanceled, &a, handed_release), -ECANCELED);
    rill_scope_exit(&s);
    expect_eq(atomic_load(&a.ran), 0);
    expect_eq(atomic_load(&a.released), 1);
    /* The job's own -ECANCELED reads the same to the caller: released too. */
    handed b = {0};
    expect_eq(rill_to_thread_detached(returns_ecanceled, &b, handed_release), -ECANCELED);
    expect_eq(atomic_load(&b.ran), 1);
    expect_eq(atomic_load(&b.released), 1);
    return 0;
}

/* A detached job that outlives its caller's main task: the run ends only
 * after it has (as asyncio.run shuts its executor down), released. */
static owned late = {.g = GATE_INIT};
static atomic_int late_main_returned;

static int abandons_and_ends(void *arg) {
    (void)arg;
    late.loop_thread = pthread_self();
    rill_scope s;
    rill_scope_enter(&s, INFINITY);
    canceller c = {&late.started, &s};
    rill_task *t = rill_spawn(cancels_once_started, &c);
    int rc = rill_to_thread_detached(owned_job, &late, owned_release);
    rill_join(t);
    rill_scope_exit(&s);
    atomic_store(&late_main_returned, 1);
    return rc == -ECANCELED ? 0 : -EIO;
}

/* Opens the job's gate only once main has returned (however slow the
 * machine): the job is then certainly still running when the run's end
 * has to wait for it. */
static void *opens_late(void *arg) {
    while (!atomic_load(&late_main_returned)) pause_ms(1);
    pause_ms(50);
    gate_open(arg);
    return NULL;
}

Test(thread, a_run_ends_only_after_its_abandoned_detached_jobs, .timeout = TEST_TIMEOUT) {
    pthread_t opener;
    cr_assert_eq(pthread_create(&opener, NULL, opens_late, &late.g), 0);
    expect_eq(rill_run(abandons_and_ends, NULL), 0);
    /* The job was still blocked when main ended; rill_run waited for it. */
    expect_eq(atomic_load(&late.ran), 1);
    expect_eq(atomic_load(&late.released), 1);
    pthread_join(opener, NULL);
}

/* 1000 fibers offload at once; at most RILL_THREADS jobs run together. */
typedef struct many {
    atomic_int running, peak;
} many;

typedef struct many_job {
    many *m;
    long n, sum;
} many_job;

static int sums(void *arg) {
    many_job *j = arg;
    int now = atomic_fetch_add(&j->m->running, 1) + 1;
    int peak = atomic_load(&j->m->peak);
    while (now > peak && !atomic_compare_exchange_weak(&j->m->peak, &peak, now)) {
    }
    for (long i = 1; i <= j->n; i++) j->sum += i;
    if (j->n % 3 == 0) pause_ms(1);
    atomic_fetch_sub(&j->m->running, 1);
    return 0;
}

static int offloads_one(void *arg) {
    many_job *j = arg;
    int rc = rill_to_thread(sums, j);
    if (rc) return rc;
    return j->sum == j->n * (j->n + 1) / 2 ? 0 : -EIO;
}

FIBER_TEST(thread, a_thousand_concurrent_jobs_all_complete_within_the_pool_size) {
    setenv("RILL_THREADS", "4", 1);
    enum { N = 1000 };
    static many m;
    static many_job jobs[N];
    rill_group g;
    rill_group_init(&g);
    for (int i = 0; i < N; i++) {
        jobs[i] = (many_job){.m = &m, .n = 1000 + i};
        expect_eq(rill_group_spawn(&g, offloads_one, &jobs[i]), 0);
    }
    expect_eq(rill_group_wait(&g), 0);
    cr_assert(atomic_load(&m.peak) >= 1 && atomic_load(&m.peak) <= 4, "peak %d jobs at once",
              atomic_load(&m.peak));
    return 0;
}

FIBER_TEST(thread, waiting_on_a_job_is_not_a_deadlock) {
    /* Nothing but the job can wake main: no timer, no fd, no other fiber. */
    slow_job j = {.ms = 50};
    expect_eq(rill_to_thread(slow, &j), 11);
    return 0;
}

static int offloads_twice(void *arg) {
    (void)arg;
    slow_job j = {.ms = 1};
    return rill_to_thread(slow, &j) == 11 ? 0 : -EIO;
}

/* Jobs that can only all return 0 if `want` of them run at once: each
 * waits (at most 10 s) for the others to arrive. */
typedef struct meeting {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived, want;
} meeting;

static int meets_the_others(void *arg) {
    meeting *m = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    if (++m->arrived == m->want) pthread_cond_broadcast(&m->cv);
    while (m->arrived < m->want && rc == 0) rc = pthread_cond_timedwait(&m->cv, &m->mu, &until);
    bool met = m->arrived >= m->want;
    pthread_mutex_unlock(&m->mu);
    return met ? 0 : -ETIMEDOUT;
}

static int offloads_one_meeting(void *arg) { return rill_to_thread(meets_the_others, arg); }

FIBER_TEST(thread, the_default_pool_runs_cpus_plus_four_blocking_jobs_at_once) {
    unsetenv("RILL_THREADS"); /* read at the first offloaded call, below */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus < 1 ? 5 : cpus + 4 > 32 ? 32 : (int)cpus + 4; /* Python's default */
    meeting m = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, n};
    rill_task *t[32];
    for (int i = 0; i < n; i++) t[i] = rill_spawn(offloads_one_meeting, &m);
    for (int i = 0; i < n; i++) expect_eq(rill_join(t[i]), 0);
    return 0;
}

Test(thread, a_bad_rill_threads_is_reported_and_the_default_used, .timeout = TEST_TIMEOUT,
     .init = cr_redirect_stderr) {
    setenv("RILL_THREADS", "many", 1);
    expect_eq(rill_run(offloads_twice, NULL), 0);
    fflush(stderr);
    cr_assert_stderr_neq_str("");
}

static int offloads_in_child(void *arg) {
    (void)arg;
    /* Several calls one after the other: each needs an idle worker woken. */
    for (int i = 0; i < 5; i++) {
        slow_job j = {.ms = 1};
        if (rill_to_thread(slow, &j) != 11) return -EIO;
    }
    return 0;
}

Test(thread, the_pool_works_in_a_forked_child, .timeout = TEST_TIMEOUT) {
    /* The parent's workers start, and go idle waiting for work. */
    expect_eq(rill_run(offloads_in_child, NULL), 0);
    char err[512];
    int status = run_child(offloads_in_child, NULL, NULL, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: %s", err);
}

/* ---- rill_call_threadsafe ---------------------------------------------------- */

Test(thread, runtime_handles_refuse_bad_calls, .timeout = TEST_TIMEOUT) {
    errno = 0;
    cr_assert_null(rill_runtime_current());
    expect_eq(errno, EPERM);
    expect_eq(rill_call_threadsafe(NULL, counts, NULL), -EINVAL);
    rill_runtime_release(NULL);
}

/* A plain thread (no runtime) sends calls into a run. */
typedef struct inbound {
    rill_runtime *rt;
    int n;
    int next;            /* touched by calls only: on the run's thread */
    int out_of_order;
    rill_event done;
} inbound;

typedef struct msg {
    inbound *in;
    int seq;
} msg;

static int receives(void *arg) {
    msg *m = arg;
    if (m->seq != m->in->next) m->in->out_of_order++;
    m->in->next = m->seq + 1;
    if (m->seq == m->in->n - 1) rill_event_set(&m->in->done);
    free(m);
    return 0;
}

static void *sends(void *arg) {
    inbound *in = arg;
    for (int i = 0; i < in->n; i++) {
        msg *m = malloc(sizeof *m);
        *m = (msg){in, i};
        if (rill_call_threadsafe(in->rt, receives, m) != 0) {
            free(m);
            return (void *)1;
        }
    }
    rill_runtime_release(in->rt);
    return NULL;
}

FIBER_TEST(thread, calls_from_a_plain_thread_all_run_in_order) {
    inbound in = {.n = under_valgrind() ? 300 : 3000};
    rill_event_init(&in.done);
    in.rt = rill_runtime_current();
    cr_assert_not_null(in.rt);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, sends, &in), 0);
    /* Nothing else can wake main: the held handle keeps this from being a
     * deadlock. */
    expect_eq(rill_event_wait(&in.done), 0);
    void *res;
    pthread_join(th, &res);
    cr_assert_null(res);
    expect_eq(in.next, in.n);
    expect_eq(in.out_of_order, 0);
    return 0;
}

/* Calls whose task finds no memory wait, in order, until there is some. */
static int order_seen[8], nseen;

static int records(void *arg) {
    order_seen[nseen++] = (int)(intptr_t)arg;
    return 0;
}

static long vm_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmSize:", 7) == 0) kib = atol(line + 7);
    if (f) fclose(f);
    return kib;
}

static int calls_under_a_memory_limit(void *arg) {
    int *during = arg;
    rill_runtime *h = rill_runtime_current();
    struct rlimit old, lim;
    getrlimit(RLIMIT_AS, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)(vm_kib() + 32) * 1024; /* no room for a new stack */
    setrlimit(RLIMIT_AS, &lim);
    for (intptr_t i = 0; i < 5; i++) rill_call_threadsafe(h, records, (void *)i);
    rill_sleep(0.05);
    *during = nseen;
    setrlimit(RLIMIT_AS, &old);
    rill_sleep(0.1);
    rill_runtime_release(h);
    return 0;
}

Test(thread, calls_that_find_no_memory_wait_in_order_until_there_is_some,
     .timeout = TEST_TIMEOUT, .init = cr_redirect_stderr) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return; /* the sanitizers' own reservations do not fit under the limit */
#endif
    if (under_valgrind()) return;
    int during = -1;
    expect_eq(rill_run(calls_under_a_memory_limit, &during), 0);
    expect_eq(during, 0); /* the limit did hold them back */
    expect_eq(nseen, 5);
    for (int i = 0; i < 5; i++) expect_eq(order_seen[i], i);
}

/* Another thread floods a run with calls while its main task ends: every
 * accepted call runs, a batch at a time (not one stack per call). */
typedef struct flood {
    rill_runtime *rt;
    int max;
    atomic_int accepted, ran, refused_at;
} flood;

static int flood_call(void *arg) {
    atomic_fetch_add(&((flood *)arg)->ran, 1);
    return 0;
}

static void *floods(void *arg) {
    flood *f = arg;
    f->refused_at = -1;
    for (int i = 0; i < f->max; i++) {
        if (rill_call_threadsafe(f->rt, flood_call, f) != 0) {
            f->refused_at = i;
            break;
        }
        atomic_fetch_add(&f->accepted, 1);
    }
    rill_runtime_release(f->rt);
    return NULL;
}

static int ends_while_flooded(void *arg) {
    flood *f = arg;
    f->rt = rill_runtime_current();
    pthread_t t;
    if (pthread_create(&t, NULL, floods, f) != 0) return -EAGAIN;
    pthread_detach(t);
    /* However late the thread starts, main ends in mid-flood. */
    while (!atomic_load(&f->accepted)) rill_sleep(0.001);
    return rill_sleep(0.01);
}

static long max_rss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

Test(thread, a_flood_of_calls_while_the_run_ends_all_run_in_bounded_memory,
     .timeout = TEST_TIMEOUT) {
    static flood f;
    f.max = under_valgrind() || under_tsan() ? 20000 : 200000;
    long before = max_rss_kib();
    expect_eq(rill_run(ends_while_flooded, &f), 0);
    long grew = max_rss_kib() - before;
    /* The sender is told -ESRCH once the run is over; wait for it. */
    for (int i = 0; i < 10000 && f.refused_at < 0 && atomic_load(&f.accepted) < f.max; i++)
        pause_ms(1);
    expect_eq(atomic_load(&f.ran), atomic_load(&f.accepted));
    cr_assert(atomic_load(&f.accepted) > 0);
    /* One stack per pending call would be hundreds of MiB (ThreadSanitizer
     * adds its own shadow and traces). */
    long limit = under_tsan() ? 256 * 1024 : 64 * 1024;
    cr_assert(grew < limit, "resident memory grew by %ld KiB", grew);
}

/* A handle passed along: the first holder retains a reference for a
 * second thread and drops its own; the run waits for the second's calls. */
typedef struct relay {
    rill_runtime *rt;
    int n, ran;
    rill_event done;
    pthread_t second;
} relay;

static int relay_call(void *arg) {
    relay *r = arg;
    if (++r->ran == r->n) rill_event_set(&r->done);
    return 0;
}

static void *second_sender(void *arg) {
    relay *r = arg;
    pause_ms(20); /* the first holder is long gone by now */
    for (int i = 0; i < r->n; i++) rill_call_threadsafe(r->rt, relay_call, r);
    rill_runtime_release(r->rt);
    return NULL;
}

static void *first_holder(void *arg) {
    relay *r = arg;
    rill_runtime *mine = r->rt;
    r->rt = rill_runtime_retain(mine); /* the second thread's reference */
    bool started = pthread_create(&r->second, NULL, second_sender, r) == 0;
    rill_runtime_release(mine);
    return started ? NULL : (void *)1;
}

static int joins_second(void *arg) { return -pthread_join(((relay *)arg)->second, NULL); }

FIBER_TEST(thread, a_retained_handle_passes_from_thread_to_thread) {
    errno = 0;
    cr_assert_null(rill_runtime_retain(NULL));
    expect_eq(errno, EINVAL);
    relay r = {.rt = rill_runtime_current(), .n = 50};
    rill_event_init(&r.done);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, first_holder, &r), 0);
    void *failed;
    pthread_join(t, &failed);
    cr_assert_null(failed);
    /* Only the second thread's reference is left: still no deadlock. */
    expect_eq(rill_event_wait(&r.done), 0);
    expect_eq(r.ran, 50);
    expect_eq(rill_to_thread(joins_second, &r), 0);
    return 0;
}

static rill_runtime *leaked_handle;

static int keeps_a_handle_and_ends(void *arg) {
    (void)arg;
    leaked_handle = rill_runtime_current();
    return leaked_handle ? 0 : -ENOMEM;
}

Test(thread, a_run_ends_while_a_handle_is_held_and_then_refuses_calls, .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(keeps_a_handle_and_ends, NULL), 0);
    atomic_int ran = 0;
    expect_eq(rill_call_threadsafe(leaked_handle, counts, &ran), -ESRCH);
    rill_runtime_release(leaked_handle);
    expect_eq(atomic_load(&ran), 0);
}

static int waits_forever(void *arg) {
    rill_event e;
    rill_event_init(&e);
    rill_runtime_release(rill_runtime_current());
    int rc = rill_event_wait(&e);
    *(int *)arg = rc;
    return 0;
}

Test(thread, with_every_handle_released_a_stuck_run_is_a_deadlock, .timeout = TEST_TIMEOUT,
     .init = cr_redirect_stderr) {
    int rc = 0;
    expect_eq(rill_run(waits_forever, &rc), -EDEADLK);
    expect_eq(rc, -EDEADLK);
}

/* Two runtimes on two threads exchange messages both ways. */
typedef struct peer {
    struct peer *other;
    rill_runtime *self;
    pthread_barrier_t *ready;
    rill_queue *inbox;   /* the receiving run's own queue */
    int n, received, bad;
    int next_from_other;
    int rc;
} peer;

typedef struct envelope {
    peer *to;
    int seq;
} envelope;

static int delivers(void *arg) {
    envelope e = *(envelope *)arg;
    free(arg);
    /* Blocks while the receiver's queue is full: backpressure per call. */
    return rill_queue_put(e.to->inbox, &e.seq);
}

static int barrier_wait(void *arg) {
    pthread_barrier_wait(arg);
    return 0;
}

static int sender(void *arg) {
    peer *p = arg;
    for (int i = 0; i < p->n; i++) {
        envelope *e = malloc(sizeof *e);
        *e = (envelope){p->other, i};
        int rc = rill_call_threadsafe(p->other->self, delivers, e);
        if (rc) {
            free(e);
            return rc;
        }
        if (i % 64 == 0) rill_yield_now();
    }
    return 0;
}

static int peer_main(void *arg) {
    peer *p = arg;
    p->inbox = rill_queue_new(16, sizeof(int));
    p->self = rill_runtime_current();
    /* Both handles exist before either side sends (waiting on the pool). */
    int rc = rill_to_thread(barrier_wait, p->ready);
    if (rc) return rc;
    rill_task *s = rill_spawn(sender, p);
    int seq;
    while (p->received < p->n && rill_queue_get(p->inbox, &seq) == 0) {
        if (seq != p->next_from_other) p->bad++;
        p->next_from_other = seq + 1;
        p->received++;
    }
    rc = rill_join(s);
    /* Wait until the other side has received everything too. */
    if (!rc) rc = rill_to_thread(barrier_wait, p->ready);
    rill_runtime_release(p->self);
    rill_queue_free(p->inbox);
    return rc;
}

static void *peer_thread(void *arg) {
    peer *p = arg;
    p->rc = rill_run(peer_main, p);
    return NULL;
}

Test(thread, two_runtimes_exchange_ten_thousand_messages_each_way, .timeout = TEST_TIMEOUT) {
    setenv("RILL_THREADS", "2", 1); /* both barrier waits at once */
    int n = under_valgrind() || under_tsan() ? 1000 : 10000;
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, 2);
    peer a = {.n = n, .ready = &ready}, b = {.n = n, .ready = &ready};
    a.other = &b;
    b.other = &a;
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, peer_thread, &a), 0);
    cr_assert_eq(pthread_create(&tb, NULL, peer_thread, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&ready);
    expect_eq(a.rc, 0);
    expect_eq(b.rc, 0);
    expect_eq(a.received, n);
    expect_eq(b.received, n);
    expect_eq(a.bad, 0);
    expect_eq(b.bad, 0);
}

/* Several runtimes at once, one per thread, each with its own tasks, timers
 * and offloaded jobs: nothing is shared by accident. */
static int busy_run(void *arg) {
    int *sum = arg;
    rill_group g;
    rill_group_init(&g);
    static _Thread_local int ticks_here;
    ticks_here = 0;
    for (int i = 0; i < 20; i++) rill_group_spawn(&g, ticks, &ticks_here);
    slow_job j = {.ms = 20};
    int rc = rill_to_thread(slow, &j);
    rill_group_cancel(&g);
    rill_group_wait(&g);
    *sum = rc == 11 && ticks_here > 0 ? 1 : 0;
    return 0;
}

static void *busy_thread(void *arg) {
    return (void *)(intptr_t)(rill_run(busy_run, arg));
}

Test(thread, runtimes_on_several_threads_at_once, .timeout = TEST_TIMEOUT) {
    enum { T = 4 };
    pthread_t th[T];
    int ok[T] = {0};
    for (int i = 0; i < T; i++) cr_assert_eq(pthread_create(&th[i], NULL, busy_thread, &ok[i]), 0);
    for (int i = 0; i < T; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        expect_eq((intptr_t)rc, 0);
        expect_eq(ok[i], 1);
    }
}
