/*
 * Tasks: a fiber that runs fn(arg) inside a root scope, and whose status is
 * kept until it is joined (or dropped at once when detached or owned by a
 * group).  Task structs are recycled through a per-runtime cache.
 */
#include <string.h>

#include "internal.h"

#define TASK_CACHE_MAX 1024u

static void task_entry(rill__fiber *f);

/* "task-N" without snprintf: spawning stays cheap. */
static void default_name(char *buf, size_t len, uint64_t n) {
    char digits[24];
    size_t k = 0;
    do digits[k++] = (char)('0' + n % 10); while ((n /= 10) && k < sizeof digits);
    size_t i = 0;
    for (const char *p = "task-"; *p && i + 1 < len; p++) buf[i++] = *p;
    while (k && i + 1 < len) buf[i++] = digits[--k];
    buf[i] = 0;
}

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
    rill_task *t = rt->free_tasks;
    if (t) {
        rt->free_tasks = t->next_free;
        rt->nfree_tasks--;
    } else if (!(t = rill__malloc(sizeof *t))) {
        errno = ENOMEM;
        return NULL;
    }
    /* Everything but the context, which getcontext fills in. */
    memset(&t->fiber.stack, 0, sizeof *t - offsetof(rill_task, fiber.stack));
    int rc = rill__fiber_init(&t->fiber, o ? o->stack_size : 0);
    if (rc != 0) {
        t->next_free = rt->free_tasks;
        rt->free_tasks = t;
        rt->nfree_tasks++;
        errno = -rc;
        return NULL;
    }
    t->magic = RILL__TASK_LIVE;
    t->fn = fn;
    t->arg = arg;
    t->fiber.is_task = true;
    t->fiber.entry = task_entry;
    if (o && o->name) {
        strncpy(t->name_buf, o->name, sizeof t->name_buf - 1);
        t->name_buf[sizeof t->name_buf - 1] = 0;
    } else {
        default_name(t->name_buf, sizeof t->name_buf, ++rt->spawned);
    }
    t->fiber.name = t->name_buf;
    rill__list_init(&t->joiners);
    rill__list_init(&t->link);
    rill__scope_open(&t->root, &t->fiber, INFINITY);
    /* Once rill_run's main has ended, every task is cancelled: so are the
     * ones spawned while the others unwind. */
    if (rt->shutting_down) t->root.cancel_called = 1;
    rill__fiber_track(&t->fiber);
    rill__make_ready(&t->fiber);
    return t;
}

void rill__task_free(rill_task *t) {
    rill__rt *rt = rill__self;
    if (t->observer) rill__observer_forget(t); /* rill_run's end, or abandoned */
    /* Cached structs keep this mark, so that a handle used again after its
     * join or detach is refused until the struct serves a new task. */
    t->magic = RILL__TASK_FREED;
    if (rt && rt->nfree_tasks < TASK_CACHE_MAX) {
        t->next_free = rt->free_tasks;
        rt->free_tasks = t;
        rt->nfree_tasks++;
        return;
    }
    free(t);
}

/* A task group on this stack with children still running would be written
 * to, by each child's end, after the frame holding it is gone. */
void rill__check_groups_waited(const rill__fiber *f) {
    if (f->busy_groups == 0) return;
    fprintf(stderr, "rill: %s '%s' returned while a task group on its stack still had "
                    "children running (rill_group_wait was not called)\n",
            f->is_task ? "task" : "generator", f->name);
    abort();
}

static void task_entry(rill__fiber *f) {
    rill_task *t = (rill_task *)f;
    t->status = t->fn(t->arg);
    rill__check_groups_waited(f);
    if (f->scope != &t->root) rill__scopes_close_leftover(f, &t->root);
    t->ended = true;
    rill__self->ended_count++;
    rill__fiber_untrack(f);
    if (t->group) {
        rill__group_child_ended(t);
    } else {
        if (!t->detached && t != rill__self->main) rill__list_push(&rill__self->unjoined, &t->link);
        rill__waitq_wake_all(&t->joiners, 0);
        if (t->observer) rill__observer_ended(t);
    }
    f->state = RILL__DONE;
    rill__reschedule();
    RILL_ASSERT(0, "a finished fiber was resumed");
}

void rill__fiber_reaped(rill__fiber *f) {
    if (!f->is_task) return;
    rill_task *t = (rill_task *)f;
    if (t->detached || t->group) rill__task_free(t);
}

void rill__tasks_free_unjoined(void) {
    rill__list *n;
    while ((n = rill__list_pop(&rill__self->unjoined)))
        rill__task_free(rill__container_of(n, rill_task, link));
}

rill_task *rill_spawn_opts(rill_fn *fn, void *arg, const rill_opts *o) {
    return rill__task_new(fn, arg, o);
}

rill_task *rill_spawn(rill_fn *fn, void *arg) { return rill__task_new(fn, arg, NULL); }

static bool owned(const rill_task *t) {
    return t->group || (rill__self && t == rill__self->main);
}

static bool live(const rill_task *t) { return t && t->magic == RILL__TASK_LIVE; }

int rill_join(rill_task *t) {
    if (!live(t)) return -EINVAL;
    rill__rt *rt = rill__self;
    if (!rt || rt->current == &rt->host) return -EPERM;
    if (&t->fiber == rill__root(rt->current)) return -EDEADLK;
    if (owned(t) || t->detached || t->joining || t->observer) return -EINVAL;
    if (!t->ended) {
        rill__waiter w;
        /* `joining` covers the whole call: once t ends, the joiners list is
         * empty again before this fiber resumes, and a second join or a
         * detach in that window must still be refused. */
        t->joining = true;
        int rc = rill__waitq_wait(&t->joiners, &w, "join", t->name_buf);
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
    rill__fiber *f = rill__root(rt->current);
    return f->is_task ? (rill_task *)f : NULL;
}
