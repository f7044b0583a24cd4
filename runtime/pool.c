/*
 * The thread pool behind rill_to_thread: one per process, shared by every
 * runtime.  Workers take jobs from one FIFO queue under one mutex; a
 * finished job is posted back to its caller's run (remote.c), whose loop
 * wakes the caller.
 *
 * A job is queued until a worker takes it (`started`, under pool.mu); a
 * caller cancelled before that takes it off the queue (`dropped`): it never
 * runs.  A detached job whose caller gave up is `abandoned`: it is still
 * posted back when it ends, and the run's thread releases its argument and
 * frees it.  From its submission until it is posted back or dropped, a job
 * counts in the run's keepalive: a run waiting for one is not deadlocked,
 * and a run whose fibers have all ended waits for its abandoned jobs (as
 * asyncio.run waits for its executor).
 *
 * Workers live until the process exits; an atexit handler then stops and
 * joins the idle ones, so that no thread is left behind for leak checkers.
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define MAX_THREADS 1024u

typedef struct job {
    rill__msg msg;            /* posted to home when fn has returned */
    rill__list node;          /* on pool.queue while QUEUED */
    rill_fn *fn;
    void *arg;
    void (*release)(void *arg);
    rill_runtime *home;       /* the caller's run (a reference, if detached) */
    int result;
    bool started;             /* under pool.mu: a worker took it */
    bool detached;
    bool abandoned;           /* under pool.mu: the caller no longer waits */
    /* The caller's side, touched on its run's thread only. */
    rill__waiter w;
    bool delivered;
    bool dropped;             /* taken off the queue before it ran */
} job;

typedef struct worker {
    pthread_t tid;
    bool busy;                /* under pool.mu: running a job */
    struct worker *next;
} worker;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work;
    rill__list queue;         /* QUEUED jobs, oldest first */
    unsigned nqueued;
    unsigned threads, idle, max;
    worker *workers;          /* every worker started */
    bool quitting;            /* the process is exiting */
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void) { pthread_mutex_lock(&pool.mu); }
static void fork_parent(void) { pthread_mutex_unlock(&pool.mu); }

static int start_worker(void);

/* The child has only the forking thread: none of the workers, and none of
 * the parent's waiters on pool.work, so both sync objects start afresh and
 * new workers start on demand.  Jobs queued by the forking thread's own run
 * stay (its fibers in the child wait for them), and workers start for them
 * at once: no other call may come to start one.  Other threads' jobs do not
 * exist in the child, and jobs already running at the fork never end there. */
static void fork_child(void) {
    pthread_mutex_init(&pool.mu, NULL);
    pthread_cond_init(&pool.work, NULL);
    pool.threads = pool.idle = 0;
    while (pool.workers) {
        worker *w = pool.workers;
        pool.workers = w->next;
        free(w);
    }
    rill_runtime *mine = rill__self ? rill__self->remote.handle : NULL;
    rill__list keep;
    rill__list_init(&keep);
    rill__list *n;
    while ((n = rill__list_pop(&pool.queue))) {
        job *j = rill__container_of(n, job, node);
        if (mine && j->home == mine) rill__list_push(&keep, n);
    }
    rill__list_init(&pool.queue);
    pool.nqueued = 0;
    while ((n = rill__list_pop(&keep))) {
        rill__list_push(&pool.queue, n);
        pool.nqueued++;
    }
    pthread_mutex_lock(&pool.mu);
    while (pool.threads < pool.nqueued && pool.threads < pool.max && start_worker() == 0) {
    }
    pthread_mutex_unlock(&pool.mu);
}

/* At exit: idle workers stop and are joined; busy ones (a job still running
 * while the process exits) are let go. */
static void pool_shutdown(void) {
    pthread_mutex_lock(&pool.mu);
    pool.quitting = true;
    pthread_cond_broadcast(&pool.work);
    worker *idle = NULL;
    while (pool.workers) {
        worker *w = pool.workers;
        pool.workers = w->next;
        if (w->busy || pthread_equal(w->tid, pthread_self())) {
            pthread_detach(w->tid); /* it still uses w: leave it */
            continue;
        }
        w->next = idle;
        idle = w;
    }
    pthread_mutex_unlock(&pool.mu);
    while (idle) {
        worker *w = idle;
        idle = w->next;
        pthread_join(w->tid, NULL);
        free(w);
    }
}

static void pool_init(void) {
    rill__list_init(&pool.queue);
    /* Python's default executor: min(32, CPUs + 4).  Jobs are mostly
     * blocking calls (files, drivers, getaddrinfo), not computations, so a
     * few threads more than CPUs keep a short job from queueing behind
     * slow ones. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned dflt = cpus < 1 ? 5u : cpus + 4 > 32 ? 32u : (unsigned)cpus + 4;
    pool.max = dflt;
    const char *s = getenv("RILL_THREADS");
    if (s && *s) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (*end || errno || v < 1 || v > MAX_THREADS || *s == '-')
            fprintf(stderr, "rill: RILL_THREADS=%s is not a number from 1 to %u; using %u\n",
                    s, MAX_THREADS, dflt);
        else
            pool.max = (unsigned)v;
    }
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    atexit(pool_shutdown);
}

/* A job's end, when nobody waits for it any more. */
static void job_drop(job *j) {
    if (j->release) j->release(j->arg);
    rill__remote_unref(j->home);
    free(j);
}

static void *work(void *arg) {
    worker *self = arg;
    pthread_mutex_lock(&pool.mu);
    while (!pool.quitting) {
        rill__list *n = rill__list_pop(&pool.queue);
        if (!n) {
            pool.idle++;
            pthread_cond_wait(&pool.work, &pool.mu);
            pool.idle--;
            continue;
        }
        pool.nqueued--;
        job *j = rill__container_of(n, job, node);
        j->started = true;
        self->busy = true;
        pthread_mutex_unlock(&pool.mu);
        int result = j->fn(j->arg);
        j->result = result; /* read by the caller after the post below */
        pthread_mutex_lock(&pool.mu);
        self->busy = false;
        pthread_mutex_unlock(&pool.mu);
        /* Not posted only if the run has ended, which only a detached job's
         * caller can have let happen (in a forked child, say). */
        if (!rill__remote_post(j->home, &j->msg)) {
            RILL_ASSERT(j->detached, "a run ended while a caller waited for its job");
            job_drop(j);
        }
        pthread_mutex_lock(&pool.mu);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

/* One more worker, under pool.mu: 0 or an errno. */
static int start_worker(void) {
    /* Workers take no asynchronous signal: the program's handlers stay on
     * its own threads (the loops' ev_signal watchers among them).  A fault
     * in a job is still reported where it happens. */
    sigset_t all, old;
    sigfillset(&all);
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
    for (size_t k = 0; k < sizeof faults / sizeof faults[0]; k++) sigdelset(&all, faults[k]);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    worker *w = rill__calloc(1, sizeof *w);
    int err = w ? pthread_create(&w->tid, NULL, work, w) : ENOMEM;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        free(w);
        return err;
    }
    w->next = pool.workers;
    pool.workers = w;
    pool.threads++;
    return 0;
}

/* Queue j; start a worker if every one is busy and the pool may grow. */
static int submit(job *j) {
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool.mu);
    if (pool.quitting) { /* the process is exiting: nobody would run it */
        pthread_mutex_unlock(&pool.mu);
        return -EAGAIN;
    }
    rill__list_push(&pool.queue, &j->node);
    pool.nqueued++;
    int rc = 0;
    if (pool.nqueued > pool.idle && pool.threads < pool.max && start_worker() != 0 &&
        pool.threads == 0) { /* nobody would ever run it */
        rill__list_remove(&j->node);
        pool.nqueued--;
        rc = -EAGAIN;
    }
    if (rc == 0 && pool.idle) pthread_cond_signal(&pool.work);
    pthread_mutex_unlock(&pool.mu);
    return rc;
}

/* ---- the caller's side --------------------------------------------------- */

/* The job's post, received on the caller's run's thread. */
static bool job_done(rill__msg *m) {
    job *j = rill__container_of(m, job, msg);
    rill__sched_keepalive(rill__self, -1); /* counted from its submission */
    if (j->abandoned) { /* set on this thread: no lock needed to read it */
        job_drop(j);
        return true;
    }
    j->delivered = true;
    rill__fiber *f = j->w.fiber;
    /* The caller may be READY meanwhile, woken by a cancellation it must sit
     * out: it finds `delivered` when it runs. */
    if (f && f->state == RILL__BLOCKED && f->wait == &j->w) rill__sched_wake(&j->w, 0);
    return true;
}

/* A cancellation (or a deadlock) interrupts the caller's wait. */
static void job_unhook(rill__waiter *w) {
    job *j = rill__container_of(w, job, w);
    if (j->delivered) return;
    pthread_mutex_lock(&pool.mu);
    bool gone = false;
    if (!j->started) {
        rill__list_remove(&j->node);
        pool.nqueued--;
        j->dropped = gone = true;
    } else if (j->detached && !j->abandoned) {
        j->abandoned = true; /* still counted, until it ends */
    }
    pthread_mutex_unlock(&pool.mu);
    if (gone) rill__sched_keepalive(rill__self, -1);
}

RILL__INLINE int offload(rill_fn *fn, void *arg, bool detached, void (*release)(void *)) {
    if (!fn) return -EINVAL;
    int rc = rill__scope_checkpoint();
    if (rc) {
        /* -ECANCELED hands arg over: it is released, as a dropped job's. */
        if (rc == -ECANCELED && release) release(arg);
        return rc;
    }
    rill__rt *rt = rill__self;
    rill_runtime *home = rill__remote_of(rt);
    if (!home) return -ENOMEM;
    job local, *j = &local;
    if (detached && !(j = rill__malloc(sizeof *j))) return -ENOMEM;
    memset(j, 0, sizeof *j);
    j->msg.run = job_done;
    j->fn = fn;
    j->arg = arg;
    j->release = release;
    j->home = home;
    j->detached = detached;
    j->w.unhook = job_unhook;
    j->w.what = "to_thread";
    if (detached) rill__remote_ref(home);
    rc = submit(j);
    if (rc) {
        if (detached) {
            rill__remote_unref(home);
            free(j);
        }
        return rc;
    }
    /* Until it is posted back (or dropped), it may wake this run. */
    rill__sched_keepalive(rt, 1);
    rc = rill__sched_block(&j->w);
    if (!j->delivered) {
        if (j->dropped) { /* cancelled before it started */
            if (detached) job_drop(j);
            return rc;
        }
        if (detached) return rc; /* abandoned: it ends on its own */
        /* Running with arg on our stack: sit the cancellation out. */
        while (!j->delivered) rill__wait_deaf(NULL, &j->w, "to_thread", NULL);
    }
    int result = j->result;
    if (detached) {
        /* The caller reads -ECANCELED as "arg is rill's now", whoever said
         * it: so a job's own -ECANCELED releases arg too. */
        if (result == -ECANCELED && release) release(arg);
        rill__remote_unref(home);
        free(j);
    }
    return result;
}

int rill_to_thread(rill_fn *fn, void *arg) { return offload(fn, arg, false, NULL); }

int rill_to_thread_detached(rill_fn *fn, void *arg, void (*release)(void *arg)) {
    return offload(fn, arg, true, release);
}
