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
    if (!rt) {
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
    } else if (!(t = malloc(sizeof *t))) {
        errno = ENOMEM;
        return NULL;
    }
    memset(t, 0, offsetof(rill_task, fiber.ctx)); /* ctx is set up below */
    memset(&t->fiber.stack, 0, sizeof *t - offsetof(rill_task, fiber.stack));
    if (rill__fiber_init(&t->fiber, o ? o->stack_size : 0) != 0) {
        t->next_free = rt->free_tasks;
        rt->free_tasks = t;
        rt->nfree_tasks++;
        errno = ENOMEM;
        return NULL;
    }
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
    rill__fiber_track(&t->fiber);
    rill__make_ready(&t->fiber);
    return t;
}

void rill__task_free(rill_task *t) {
    rill__rt *rt = rill__self;
    if (rt && rt->nfree_tasks < TASK_CACHE_MAX) {
        t->next_free = rt->free_tasks;
        rt->free_tasks = t;
        rt->nfree_tasks++;
        return;
    }
    free(t);
}

/* Scopes left open by a body that returned early: their timers would point
 * into a dead stack, so close them here, and say so once. */
static void close_leftover_scopes(rill_task *t) {
    static bool warned;
    rill__fiber *f = &t->fiber;
    if (f->scope != &t->root && !warned) {
        warned = true;
        fprintf(stderr, "rill: task '%s' ended inside a scope it did not exit\n", f->name);
    }
    for (rill_scope *s = f->scope; s; s = s->parent) rill__timer_disarm(&s->timer);
    f->scope = &t->root;
}

static void task_entry(rill__fiber *f) {
    rill_task *t = (rill_task *)f;
    t->status = t->fn(t->arg);
    close_leftover_scopes(t);
    t->ended = true;
    rill__fiber_untrack(f);
    if (t->group) {
        rill__group_child_ended(t);
    } else {
        if (!t->detached && t != rill__self->main) rill__list_push(&rill__self->unjoined, &t->link);
        rill__waitq_wake_all(&t->joiners, 0);
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

int rill_join(rill_task *t) {
    if (!t) return -EINVAL;
    rill__rt *rt = rill__self;
    if (!rt || rt->current == &rt->host) return -EPERM;
    if (&t->fiber == rt->current && !owned(t)) return -EDEADLK;
    if (owned(t) || t->detached || !rill__list_empty(&t->joiners)) return -EINVAL;
    if (!t->ended) {
        rill__waiter w;
        int rc = rill__waitq_wait(&t->joiners, &w, "join", t->name_buf);
        if (rc < 0) return rc; /* cancelled: t keeps running */
    }
    int status = t->status;
    rill__list_remove(&t->link);
    rill__task_free(t);
    return status;
}

int rill_cancel(rill_task *t) {
    if (!t) return -EINVAL;
    if (t->ended) return 0;
    rill_scope_cancel(&t->root);
    return 1;
}

void rill_detach(rill_task *t) {
    if (!t || owned(t) || !rill__list_empty(&t->joiners)) {
        errno = EINVAL;
        return;
    }
    t->detached = true;
    if (t->ended) {
        rill__list_remove(&t->link);
        rill__task_free(t);
    }
}

const char *rill_task_name(const rill_task *t) { return t ? t->name_buf : "?"; }

rill_task *rill_current(void) {
    rill__rt *rt = rill__self;
    if (!rt || !rt->current->is_task) return NULL;
    return (rill_task *)rt->current;
}
