/*
 * Tasks: a fiber that runs fn(arg) inside a root scope, and whose status is
 * kept until it is joined (or dropped at once when detached or owned by a
 * group).  Task structs are recycled through a per-runtime cache.
 */
#include <string.h>

#include "internal.h"

#define TASK_CACHE_MAX 1024u

static const rill__fiber_ops task_ops;

rill_task *rill__task_new(rill_fn *fn, void *arg, const rill_opts *o) {
    rill__rt *rt = rill__self;
    if (!rt || rt->bare) {
        errno = EPERM;
        return NULL;
    }
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    rill_task *t = rt->tasks.free;
    if (t) {
        rt->tasks.free = t->next_free;
        rt->tasks.nfree--;
    } else if (!(t = rill__malloc(sizeof *t))) {
        errno = ENOMEM;
        return NULL;
    }
    rill__zero(t, sizeof *t);
    int rc = rill__fiber_init(&t->fiber, o ? o->stack_size : 0);
    if (rc != 0) {
        t->next_free = rt->tasks.free;
        rt->tasks.free = t;
        rt->tasks.nfree++;
        errno = -rc;
        return NULL;
    }
    t->magic = RILL__TASK_LIVE;
    t->fn = fn;
    t->arg = arg;
    t->fiber.ops = &task_ops;
    if (o && o->name) {
        strncpy(t->name_buf, o->name, sizeof t->name_buf - 1);
        t->name_buf[sizeof t->name_buf - 1] = 0;
    } else {
        rill__default_name(t->name_buf, sizeof t->name_buf, "task-", &rt->spawned);
    }
    t->fiber.name = t->name_buf;
    rill__list_init(&t->joiners);
    rill__list_init(&t->link);
    rill__scope_open(&t->root, &t->fiber, INFINITY);
    /* Once rill_run's main has ended, every task is cancelled: so are the
     * ones spawned while the others unwind. */
    if (rt->run.shutting_down) t->root.cancel_called = 1;
    rill__sched_track(&t->fiber);
    rill__sched_ready(&t->fiber);
    return t;
}

void rill__task_free(rill_task *t) {
    rill__rt *rt = rill__self;
    if (t->watch) t->watch->freed(t); /* rill_run's end, or abandoned */
    /* Cached structs keep this mark, so that a handle used again after its
     * join or detach is refused until the struct serves a new task. */
    t->magic = RILL__TASK_FREED;
    if (rt && rt->tasks.nfree < TASK_CACHE_MAX) {
        t->next_free = rt->tasks.free;
        rt->tasks.free = t;
        rt->tasks.nfree++;
        return;
    }
    free(t);
}

static bool is_main(const rill_task *t) {
    return rill__self && &t->fiber == rill__self->run.main;
}

static void task_entry(rill__fiber *f) {
    rill_task *t = (rill_task *)f;
    t->status = t->fn(t->arg);
    rill__fiber_check_groups_waited(f);
    if (f->scope != &t->root) rill__scope_close_leftover(f, &t->root);
    t->ended = true;
    rill__sched_untrack(f);
    if (!t->group) {
        if (!t->detached && !is_main(t)) rill__list_push(&rill__self->tasks.unjoined, &t->link);
        rill__wait_wake_all(&t->joiners, 0);
    }
    if (t->watch) t->watch->ended(t);
    rill__sched_set_state(f, RILL__DONE);
    rill__sched_reschedule();
    RILL_ASSERT(0, "a finished fiber was resumed");
}

static void task_reaped(rill__fiber *f) {
    rill_task *t = (rill_task *)f;
    if (t->detached || t->group) rill__task_free(t);
}

/* A deadlock that persists ends t unrun: it is freed (its watch hears of
 * it) unless rill_run still reads its status. */
static void task_abandon(rill__fiber *f) {
    rill_task *t = (rill_task *)f;
    rill__scope_drop_all(f); /* before the stack goes: some live on it */
    rill__fiber_release(f);
    t->ended = true;
    t->status = -EDEADLK;
    if (!is_main(t)) rill__task_free(t); /* its watch hears of it */
}

static void task_cancel(rill__fiber *f) { rill_cancel((rill_task *)f); }

static const rill__fiber_ops task_ops = {
    .kind = "task",
    .entry = task_entry,
    .reaped = task_reaped,
    .abandon = task_abandon,
    .cancel = task_cancel,
};

static void free_unjoined(rill__rt *rt) {
    rill__list *n;
    while ((n = rill__list_pop(&rt->tasks.unjoined)))
        rill__task_free(rill__container_of(n, rill_task, link));
}

static void tasks_init(rill__rt *rt) { rill__list_init(&rt->tasks.unjoined); }

/* A run is over: what nobody joined goes, and so does the cache. */
static void tasks_run_end(rill__rt *rt) {
    free_unjoined(rt);
    while (rt->tasks.free) {
        rill_task *t = rt->tasks.free;
        rt->tasks.free = t->next_free;
        free(t);
    }
    rt->tasks.nfree = 0;
}

const rill__module rill__task_module = {
    .init = tasks_init, .run_end = tasks_run_end, .term = tasks_run_end};

rill_task *rill_spawn_opts(rill_fn *fn, void *arg, const rill_opts *o) {
    return rill__task_new(fn, arg, o);
}

rill_task *rill_spawn(rill_fn *fn, void *arg) { return rill__task_new(fn, arg, NULL); }

static bool owned(const rill_task *t) {
    return t->group || is_main(t);
}

static bool live(const rill_task *t) { return rill__valid(t, RILL__TASK_LIVE); }

int rill_join(rill_task *t) {
    if (!live(t)) return -EINVAL;
    rill__rt *rt = rill__self;
    if (!rt || rt->current == &rt->host) return -EPERM;
    if (&t->fiber == rill__fiber_root(rt->current)) return -EDEADLK;
    if (owned(t) || t->detached || t->joining || t->observer) return -EINVAL;
    if (!t->ended) {
        rill__waiter w;
        /* `joining` covers the whole call: once t ends, the joiners list is
         * empty again before this fiber resumes, and a second join or a
         * detach in that window must still be refused. */
        t->joining = true;
        int rc = rill__wait_on(&t->joiners, &w, "join", t->name_buf);
        t->joining = false;
        if (rc < 0) return rc; /* cancelled: t keeps running */
    }
    int status = t->status;
    rill__list_remove(&t->link);
    rill__task_free(t);
    return status;
}

int rill_cancel(rill_task *t) {
    if (!live(t)) return -EINVAL;
    if (t->ended) return 0;
    rill__scope_cancel(&t->root);
    return 1;
}

void rill_detach(rill_task *t) {
    if (!live(t) || owned(t) || t->joining || t->observer) {
        errno = EINVAL;
        return;
    }
    t->detached = true;
    if (t->ended) {
        rill__list_remove(&t->link);
        rill__task_free(t);
    }
}

const char *rill_task_name(const rill_task *t) { return live(t) ? t->name_buf : "?"; }

rill_task *rill_current(void) {
    rill__rt *rt = rill__self;
    if (!rt) return NULL;
    /* In a generator's body: the task it runs for (asyncio.current_task()). */
    rill__fiber *f = rill__fiber_root(rt->current);
    return f->ops == &task_ops ? (rill_task *)f : NULL;
}
