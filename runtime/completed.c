/*
 * rill_as_completed: a generator of tasks in the order they end.
 *
 * Each task observed gets a slot, and t->observer points to it.  A slot is
 * on `pending` while its task runs; task_entry moves it to `done` as the
 * task ends and wakes the body if it waits: O(1) per end, no scan.  The body
 * yields the slots of `done` in order, unhooking each task first, so the
 * consumer then owns it as if as_completed had never seen it.  Whatever
 * ends the generator (exhausted, closed, thrown into, freed unstarted)
 * unhooks the tasks still observed; a task freed while observed (rill_run's
 * end) takes its slot off the lists first, so nothing points to it.
 */
#include <string.h>

#include "internal.h"

typedef struct completed completed;

typedef struct rill__observer {
    rill__list node;  /* on pending, then on done */
    rill_task *task;
    completed *owner;
} slot;

struct completed {
    rill__list pending, done;
    rill__list waiter; /* the body, while it waits for an end */
    slot slots[];
};

static void let_go(rill_task *t) {
    t->observer = NULL;
    t->watch = NULL;
}

static void observed_ended(rill_task *t) {
    slot *s = t->observer;
    rill__list_remove(&s->node);
    rill__list_push(&s->owner->done, &s->node);
    rill__wait_wake_one(&s->owner->waiter, 0);
}

/* t is freed while observed (rill_run's end, or a deadlock's abandonment):
 * let go of it. */
static void observed_freed(rill_task *t) {
    slot *s = t->observer;
    rill__list_remove(&s->node);
    let_go(t);
    s->task = NULL;
}

static const rill__task_watch observed = {.ended = observed_ended, .freed = observed_freed};

/* Let go of every task not yet yielded: they are the caller's again. */
static void unhook_all(completed *c) {
    rill__list *lists[] = {&c->done, &c->pending};
    for (size_t i = 0; i < 2; i++) {
        rill__list *n;
        while ((n = rill__list_pop(lists[i]))) {
            slot *s = rill__container_of(n, slot, node);
            let_go(s->task);
            s->task = NULL;
        }
    }
}

static void closed_unstarted(void *arg) { unhook_all(arg); }

static void freed(void *arg) {
    unhook_all(arg);
    free(arg);
}

static const rill__gen_hooks hooks = {.close = closed_unstarted, .free = freed};

/* rill_as_completed fails: the tasks observed so far are let go. */
static rill_gen *fail(completed *c, int err) {
    freed(c);
    errno = err;
    return NULL;
}

static int body(rill_gen *g, void *arg) {
    completed *c = arg;
    for (;;) {
        int rc;
        rill__list *n = rill__list_pop(&c->done);
        if (n) {
            slot *s = rill__container_of(n, slot, node);
            rill_task *t = s->task;
            let_go(t); /* the consumer's now: it joins it */
            s->task = NULL;
            rc = rill_yield(g, t);
        } else if (rill__list_empty(&c->pending)) {
            return 0;
        } else {
            /* Woken with 0 by an end, whose slot is then on done.  A
             * cancelled (or deadlocked) wait took nothing: the consumer's
             * call returns the error and the generator stays usable. */
            rill__waiter w;
            rc = rill__wait_on(&c->waiter, &w, "as_completed", NULL);
            if (rc == 0) continue;
            rc = rill__gen_yield_error(g, rc);
        }
        if (rc < 0) { /* closed (-EPIPE) or thrown into */
            unhook_all(c);
            return rc;
        }
    }
}

static bool observable(const rill_task *t) {
    rill__rt *rt = rill__self;
    return rill__valid(t, RILL__TASK_LIVE) && !t->observer && !t->group && !t->detached &&
           !t->joining && !(rt && &t->fiber == rt->run.main);
}

rill_gen *rill_as_completed(rill_task *const *tasks, size_t n) {
    if ((!tasks && n) || n > (SIZE_MAX - sizeof(completed)) / sizeof(slot)) {
        errno = EINVAL;
        return NULL;
    }
    completed *c = rill__malloc(sizeof *c + n * sizeof(slot));
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    rill__list_init(&c->pending);
    rill__list_init(&c->done);
    rill__list_init(&c->waiter);
    /* Tasks already ended go first, in array order; the others join `done`
     * behind them as they end. */
    for (size_t i = 0; i < n; i++) {
        rill_task *t = tasks[i];
        /* Refused (a task seen twice is observed). */
        if (!observable(t)) return fail(c, EINVAL);
        slot *s = &c->slots[i];
        s->task = t;
        s->owner = c;
        t->observer = s;
        t->watch = &observed;
        rill__list_push(t->ended ? &c->done : &c->pending, &s->node);
    }
    rill_gen *g = rill__gen_new(body, c, &(rill_opts){.name = "as_completed"}, &hooks);
    return g ? g : fail(c, errno);
}
