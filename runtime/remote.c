/*
 * The door between threads: a run's handle (rill_runtime), through which
 * other threads post finished pool jobs and calls, and the ev_async watcher
 * that wakes the run's loop when they do.
 *
 * Everything another thread touches is under the handle's mutex, or atomic.
 * ev_async_send is only called under that mutex while the door is open, and
 * the run's thread closes the door before it stops the watcher: so no thread
 * signals a loop that is gone.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "internal.h"

struct rill_runtime {
    pthread_mutex_t mu;
    unsigned refs;          /* under mu: the run, every holder, detached jobs */
    atomic_uint holders;    /* references from rill_runtime_current */
    bool open;              /* under mu: posts are taken (until the run ends) */
    bool calls_open;        /* under mu: calls are taken (until no fiber is left) */
    rill__list inbox;       /* under mu: posted messages, oldest first */
    struct ev_loop *loop;   /* the run's, fixed before any other thread sees h */
    ev_async async;
    ev_timer retry;         /* a call found no memory for its task: try later */
};

typedef struct call {
    rill__msg msg;
    rill_fn *fn;
    void *arg;
} call;

void rill__remote_ref(rill_runtime *h) {
    pthread_mutex_lock(&h->mu);
    h->refs++;
    pthread_mutex_unlock(&h->mu);
}

void rill__remote_unref(rill_runtime *h) {
    pthread_mutex_lock(&h->mu);
    bool last = --h->refs == 0;
    pthread_mutex_unlock(&h->mu);
    if (!last) return;
    pthread_mutex_destroy(&h->mu);
    free(h);
}

static bool post_locked(rill_runtime *h, rill__msg *m) {
    if (!h->open) return false;
    /* One wake-up per batch: the run drains the whole inbox at once. */
    if (rill__list_empty(&h->inbox)) ev_async_send(h->loop, &h->async);
    rill__list_push(&h->inbox, &m->node);
    return true;
}

bool rill__remote_post(rill_runtime *h, rill__msg *m) {
    pthread_mutex_lock(&h->mu);
    bool ok = post_locked(h, m);
    pthread_mutex_unlock(&h->mu);
    return ok;
}

/* Messages run per wake-up: a burst of calls from other threads becomes
 * tasks a batch at a time, and each batch runs (and gives its stacks back)
 * before the next is started, instead of every call holding a new stack. */
#define DRAIN_BATCH 64

/* Put `batch` back at the head of the inbox, in order, and try again soon:
 * its first message found no memory, and retrying at once would spin. */
static void requeue(rill_runtime *h, rill__list *batch) {
    pthread_mutex_lock(&h->mu);
    rill__list *n;
    while ((n = batch->prev) != batch) {
        rill__list_remove(n);
        rill__list_push_front(&h->inbox, n);
    }
    pthread_mutex_unlock(&h->mu);
    if (!ev_is_active(&h->retry)) {
        ev_timer_set(&h->retry, 0.01, 0);
        ev_timer_start(h->loop, &h->retry);
    }
}

/* Run the oldest posted messages, in order, on the run's thread; with
 * `all`, every one, else at most a batch (the loop is woken for the rest).
 * Returns whether any ran. */
static bool drain(rill_runtime *h, bool all) {
    rill__list batch;
    rill__list_init(&batch);
    pthread_mutex_lock(&h->mu);
    for (unsigned k = 0; all || k < DRAIN_BATCH; k++) {
        rill__list *n = rill__list_pop(&h->inbox);
        if (!n) break;
        rill__list_push(&batch, n);
    }
    if (!rill__list_empty(&h->inbox) && h->open) ev_async_send(h->loop, &h->async);
    pthread_mutex_unlock(&h->mu);
    bool any = false;
    rill__list *n;
    while ((n = rill__list_pop(&batch))) {
        rill__msg *m = rill__container_of(n, rill__msg, node);
        if (!m->run(m)) {
            rill__list_push_front(&batch, n);
            requeue(h, &batch);
            break;
        }
        any = true;
    }
    return any;
}

/* Handles held by other threads count in rt->keepalive (one of them may
 * send a call) while calls are taken.  Their count changes on any thread;
 * the run's thread catches up here, woken when the last one goes. */
static void holders_sync(rill__rt *rt) {
    rill_runtime *h = rt->remote.handle;
    /* calls_open changes on this thread only: read without the lock. */
    bool want = h && h->calls_open && atomic_load(&h->holders) > 0;
    if (want == rt->remote.holders_counted) return;
    rt->remote.holders_counted = want;
    rill__sched_keepalive(rt, want ? 1 : -1);
}

/* The loop was woken for h's inbox: a post, or a retry after no memory. */
static void woken(rill_runtime *h) {
    drain(h, false);
    holders_sync(rill__self);
}

static void on_post(struct ev_loop *loop, ev_async *w, int revents) {
    (void)loop;
    (void)revents;
    woken(rill__container_of(w, rill_runtime, async));
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    woken(rill__container_of(w, rill_runtime, retry));
}

rill_runtime *rill__remote_of(rill__rt *rt) {
    if (rt->remote.handle) return rt->remote.handle;
    rill_runtime *h = rill__calloc(1, sizeof *h);
    if (!h) return NULL;
    pthread_mutex_init(&h->mu, NULL);
    h->refs = 1; /* the run's */
    h->open = h->calls_open = true;
    rill__list_init(&h->inbox);
    h->loop = rt->loop;
    ev_async_init(&h->async, on_post);
    ev_timer_init(&h->retry, on_retry, 0, 0);
    ev_async_start(rt->loop, &h->async);
    /* The watcher alone does not keep the loop alive: rt->keepalive does. */
    ev_unref(rt->loop);
    rt->remote.handle = h;
    return h;
}

/* ---- calls from other threads -------------------------------------------- */

static int call_body(void *arg) {
    call c = *(call *)arg;
    free(arg);
    return c.fn(c.arg);
}

/* false when there is no memory for the task: an accepted call must not be
 * dropped, so it waits (in order) and is tried again. */
static bool call_start(rill__msg *m) {
    call *c = rill__container_of(m, call, msg);
    rill_task *t = rill__task_new(call_body, c, &(rill_opts){.name = "threadsafe-call"});
    if (!t) return false;
    rill_detach(t);
    return true;
}

int rill_call_threadsafe(rill_runtime *h, rill_fn *fn, void *arg) {
    if (!h || !fn) return -EINVAL;
    call *c = rill__malloc(sizeof *c);
    if (!c) return -ENOMEM;
    c->msg.run = call_start;
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&h->mu);
    bool ok = h->calls_open && post_locked(h, &c->msg);
    pthread_mutex_unlock(&h->mu);
    if (ok) return 0;
    free(c);
    return -ESRCH;
}

rill_runtime *rill_runtime_current(void) {
    rill__rt *rt = rill__self;
    if (!rt || rt->bare) {
        errno = EPERM;
        return NULL;
    }
    rill_runtime *h = rill__remote_of(rt);
    if (!h) {
        errno = ENOMEM;
        return NULL;
    }
    rill__remote_ref(h);
    atomic_fetch_add(&h->holders, 1);
    holders_sync(rt);
    return h;
}

rill_runtime *rill_runtime_retain(rill_runtime *h) {
    if (!h) {
        errno = EINVAL;
        return NULL;
    }
    /* The caller's own reference keeps the count above 0 (and the run's
     * loop counting it) while we add ours. */
    unsigned n = atomic_load(&h->holders);
    do {
        if (n == 0) {
            errno = EINVAL;
            return NULL;
        }
    } while (!atomic_compare_exchange_weak(&h->holders, &n, n + 1));
    rill__remote_ref(h);
    return h;
}

void rill_runtime_release(rill_runtime *h) {
    if (!h) return;
    unsigned n = atomic_load(&h->holders);
    do {
        if (n == 0) { /* released more often than taken */
            errno = EINVAL;
            return;
        }
    } while (!atomic_compare_exchange_weak(&h->holders, &n, n - 1));
    if (n == 1) {
        /* The last holder is gone: the run may now be deadlocked, and must
         * wake to see it. */
        pthread_mutex_lock(&h->mu);
        if (h->open) ev_async_send(h->loop, &h->async);
        pthread_mutex_unlock(&h->mu);
    }
    rill__remote_unref(h);
}

/* ---- the run's end ---------------------------------------------------------- */

/* The scheduler's idle hook: no fiber is left, so calls are refused from
 * now on, and those accepted meanwhile are started (a batch at a time: the
 * run goes on while some are left). */
static bool close_calls(rill__rt *rt) {
    rill_runtime *h = rt->remote.handle;
    if (!h) return false;
    pthread_mutex_lock(&h->mu);
    h->calls_open = false;
    pthread_mutex_unlock(&h->mu);
    holders_sync(rt); /* a holder can send nothing now */
    return drain(h, false);
}

static void remote_run_end(rill__rt *rt) {
    rill_runtime *h = rt->remote.handle;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->open = h->calls_open = false;
    pthread_mutex_unlock(&h->mu);
    holders_sync(rt);
    /* Jobs whose callers gave up are dropped properly; calls still there
     * found no memory for a task, and none may start now: nothing would
     * run it (draining them leaked a task that never ran). */
    size_t dropped = 0;
    rill__list *n;
    while ((n = rill__list_pop(&h->inbox))) {
        rill__msg *m = rill__container_of(n, rill__msg, node);
        if (m->run != call_start) {
            m->run(m);
            continue;
        }
        free(rill__container_of(m, call, msg));
        dropped++;
    }
    if (dropped)
        fprintf(stderr, "rill: out of memory: %zu call%s from other threads could not run\n",
                dropped, dropped == 1 ? "" : "s");
    ev_ref(rt->loop); /* it was unref'ed when started */
    ev_async_stop(rt->loop, &h->async);
    ev_timer_stop(rt->loop, &h->retry);
    rt->remote.handle = NULL;
    rill__remote_unref(h);
}

/* ---- fork ------------------------------------------------------------------- */

/* The forking thread's handle is locked across the fork, so that the
 * child's copy of it (the inbox, above all) is whole. */
static void remote_fork_prepare(rill__rt *rt) {
    if (rt->remote.handle) pthread_mutex_lock(&rt->remote.handle->mu);
}

static void remote_fork_parent(rill__rt *rt) {
    if (rt->remote.handle) pthread_mutex_unlock(&rt->remote.handle->mu);
}

/* Its ev_async works in the child once libev's loop has been told of the
 * fork (a new wake-up fd, runtime.c); posts accepted before the fork are in
 * the inbox and still run.  Holders of its references on other threads do
 * not exist in the child: the child's run never sees them let go. */
static void remote_fork_child(rill__rt *rt) {
    if (rt->remote.handle) pthread_mutex_init(&rt->remote.handle->mu, NULL);
}

static void remote_init(rill__rt *rt) {
    rt->remote.close.run = close_calls;
    rill__sched_on_idle(rt, &rt->remote.close);
}

const rill__module rill__remote_module = {
    .init = remote_init,
    .run_end = remote_run_end,
    .fork_prepare = remote_fork_prepare,
    .fork_parent = remote_fork_parent,
    .fork_child = remote_fork_child,
};
