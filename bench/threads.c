/*
 * threads: what a queue hand-off between fibers, an offloaded call and a
 * call between runtimes cost, next to their plain-C counterparts.
 *
 * Two tables, each with its own baseline, measured side by side:
 *
 *   queue (baselines: a bare swapcontext switch, and the bare
 *   rill__ctx_switch of the backend linked, bench/bare.h; a fiber-to-fiber
 *   hand-off cannot cost less than the switches it needs)
 *     - a plain C ring buffer, put then get on one thread (for scale);
 *     - rill_queue put+get between a producer and a consumer fiber, with
 *       capacity 1 (every item a hand-off) and capacity 64;
 *     - rill_mutex lock+unlock with nobody else waiting.
 *
 *   threads (baseline: plain pthreads, a job handed to a waiting worker
 *   thread with a mutex and condition variable, and its answer waited for)
 *     - rill_to_thread of an empty job, one fiber at a time (round trip);
 *     - rill_to_thread from 64 fibers at once (per job: the pool's throughput);
 *     - rill_call_threadsafe from a plain thread into a run (per call, until
 *       the call has run in its fiber).
 *
 *   threads [--quick] [--only S]   (see bench/bench.h)
 */
#include "bare.h" /* first: it turns _FORTIFY_SOURCE off */

#include <pthread.h>

/* ==== queue ===================================================================== */

static uint64_t bench_ring(uint64_t n) {
    enum { CAP = 64 };
    uint64_t ring[CAP], head = 0, tail = 0, acc = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        ring[tail++ % CAP] = i;
        __atomic_signal_fence(__ATOMIC_SEQ_CST); /* keep the store */
        acc += ring[head++ % CAP];
    }
    uint64_t t = now_ns() - t0;
    sink = acc;
    return t;
}

typedef struct qpair {
    rill_queue *q;
    uint64_t n;
} qpair;

static int producer(void *arg) {
    qpair *p = arg;
    for (uint64_t i = 0; i < p->n; i++) {
        int rc = rill_queue_put(p->q, &i);
        if (rc < 0) return rc;
    }
    return 0;
}

static int queue_main(run_arg *a, size_t cap) {
    qpair p = {rill_queue_new(cap, sizeof(uint64_t)), a->n};
    if (!p.q) die("rill_queue_new", -errno);
    rill_task *t = rill_spawn(producer, &p);
    if (!t) die("rill_spawn", -errno);
    uint64_t t0 = now_ns(), v, acc = 0;
    for (uint64_t i = 0; i < a->n; i++) {
        int rc = rill_queue_get(p.q, &v);
        if (rc < 0) die("rill_queue_get", rc);
        acc += v;
    }
    a->ns = now_ns() - t0;
    sink = acc;
    int rc = rill_join(t);
    if (rc < 0) die("producer", rc);
    rill_queue_free(p.q);
    return 0;
}

static int queue1_main(void *arg) { return queue_main(arg, 1); }
static int queue64_main(void *arg) { return queue_main(arg, 64); }
static uint64_t bench_queue1(uint64_t n) { return in_rill(queue1_main, n); }
static uint64_t bench_queue64(uint64_t n) { return in_rill(queue64_main, n); }

static int mutex_main(void *arg) {
    run_arg *a = arg;
    rill_mutex m;
    rill_mutex_init(&m);
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < a->n; i++) {
        int rc = rill_mutex_lock(&m);
        if (rc < 0) die("rill_mutex_lock", rc);
        rill_mutex_unlock(&m);
    }
    a->ns = now_ns() - t0;
    return 0;
}

static uint64_t bench_mutex(uint64_t n) { return in_rill(mutex_main, n); }

/* ==== threads =================================================================== */

/* Plain pthreads: one worker waiting for jobs, and the caller for answers. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t job, done;
    uint64_t posted, finished;
    bool quit;
} plain = {.mu = PTHREAD_MUTEX_INITIALIZER, .job = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static void *plain_worker(void *unused) {
    (void)unused;
    pthread_mutex_lock(&plain.mu);
    for (;;) {
        while (plain.finished == plain.posted && !plain.quit) pthread_cond_wait(&plain.job, &plain.mu);
        if (plain.quit) break;
        plain.finished++; /* the (empty) job */
        pthread_cond_signal(&plain.done);
    }
    pthread_mutex_unlock(&plain.mu);
    return NULL;
}

static uint64_t bench_plain_handoff(uint64_t n) {
    pthread_t th;
    plain.posted = plain.finished = 0;
    plain.quit = false;
    if (pthread_create(&th, NULL, plain_worker, NULL) != 0) die("pthread_create", -EAGAIN);
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        pthread_mutex_lock(&plain.mu);
        plain.posted++;
        pthread_cond_signal(&plain.job);
        while (plain.finished != plain.posted) pthread_cond_wait(&plain.done, &plain.mu);
        pthread_mutex_unlock(&plain.mu);
    }
    uint64_t t = now_ns() - t0;
    pthread_mutex_lock(&plain.mu);
    plain.quit = true;
    pthread_cond_signal(&plain.job);
    pthread_mutex_unlock(&plain.mu);
    pthread_join(th, NULL);
    return t;
}

static int empty_job(void *arg) {
    (void)arg;
    return 0;
}

static int offloads(void *arg) {
    uint64_t k = *(uint64_t *)arg;
    for (uint64_t i = 0; i < k; i++) {
        int rc = rill_to_thread(empty_job, NULL);
        if (rc < 0) return rc;
    }
    return 0;
}

static int to_thread_main(void *arg) {
    run_arg *a = arg;
    uint64_t t0 = now_ns();
    int rc = offloads(&a->n);
    a->ns = now_ns() - t0;
    if (rc < 0) die("rill_to_thread", rc);
    return 0;
}

#define FANOUT 64

static int to_thread_fan_main(void *arg) {
    run_arg *a = arg;
    uint64_t k = a->n / FANOUT;
    rill_group g;
    rill_group_init(&g);
    uint64_t t0 = now_ns();
    for (int i = 0; i < FANOUT; i++) rill_group_spawn(&g, offloads, &k);
    int rc = rill_group_wait(&g);
    a->ns = now_ns() - t0;
    if (rc < 0) die("rill_to_thread (fan-out)", rc);
    return 0;
}

static uint64_t bench_to_thread(uint64_t n) { return in_rill(to_thread_main, n); }
static uint64_t bench_to_thread_fan(uint64_t n) { return in_rill(to_thread_fan_main, n); }

typedef struct calls {
    rill_runtime *rt;
    uint64_t n, ran;
    rill_event all_ran;
} calls;

static int one_call(void *arg) {
    calls *c = arg;
    if (++c->ran == c->n) rill_event_set(&c->all_ran);
    return 0;
}

static void *caller_thread(void *arg) {
    calls *c = arg;
    for (uint64_t i = 0; i < c->n; i++)
        if (rill_call_threadsafe(c->rt, one_call, c) != 0) die("rill_call_threadsafe", -ESRCH);
    return NULL;
}

static int join_caller(void *arg) { return -pthread_join(*(pthread_t *)arg, NULL); }

static int calls_main(void *arg) {
    run_arg *a = arg;
    calls c = {.rt = rill_runtime_current(), .n = a->n};
    rill_event_init(&c.all_ran);
    pthread_t th;
    uint64_t t0 = now_ns();
    if (pthread_create(&th, NULL, caller_thread, &c) != 0) die("pthread_create", -EAGAIN);
    int rc = rill_event_wait(&c.all_ran);
    a->ns = now_ns() - t0;
    if (rc < 0) die("rill_event_wait", rc);
    rill_to_thread(join_caller, &th);
    rill_runtime_release(c.rt);
    return 0;
}

static uint64_t bench_calls(uint64_t n) { return in_rill(calls_main, n); }

int main(int argc, char **argv) {
    bench queue[] = {
        {.name = "bare swapcontext switch", .run = bench_swapcontext, .unit = 2},
        {.name = ctx_row_name(), .run = bench_ctx, .unit = 2},
        {.name = "plain C ring put+get (1 thread)", .run = bench_ring, .unit = 1},
        {.name = "rill_queue put+get, capacity 1", .run = bench_queue1, .unit = 1},
        {.name = "rill_queue put+get, capacity 64", .run = bench_queue64, .unit = 1},
        {.name = "rill_mutex lock+unlock, no waiter", .run = bench_mutex, .unit = 1},
    };
    bench threads[] = {
        {.name = "pthread job hand-off round trip", .run = bench_plain_handoff, .unit = 1},
        {.name = "rill_to_thread round trip", .run = bench_to_thread, .unit = 1},
        {.name = "rill_to_thread, 64 fibers, per job", .run = bench_to_thread_fan, .unit = FANOUT},
        {.name = "rill_call_threadsafe, per call run", .run = bench_calls, .unit = 1},
    };
    int rc = bench_main_ref(argc, argv, "rill queue bench", "swapcontext", 1, "ctx_switch",
                            queue, sizeof queue / sizeof queue[0]);
    if (rc) return rc;
    printf("\n");
    return bench_main(argc, argv, "rill threads bench", "pthreads", threads,
                      sizeof threads / sizeof threads[0]);
}
