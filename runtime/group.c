/*
 * Task groups (nurseries) and gather, on top of tasks and the wait lists.
 * A group's children are tasks that it owns: nobody joins them; each is
 * freed as it ends, after the group has recorded its status.
 */
#include "internal.h"

#define GROUP_MAGIC 0x67726f75u

static const rill__task_watch child_watch;

/* `where`: the user code that called rill_group_init, whose group's body
 * is recorded (and judged, should that code return without waiting); NULL
 * for rill's own groups. */
static void group_init(rill_group *g, const void *where) {
    if (!g) {
        errno = EINVAL;
        return;
    }
    rill__list_init(&g->children);
    rill__list_init(&g->waiters);
    g->magic = GROUP_MAGIC;
    g->flags = 0;
    g->spawned = g->live = 0;
    g->nfailures = g->first_status = 0;
    g->cancelled = g->waited = false;
    g->statuses = NULL;
    /* A group on a fiber's stack must be waited for before that frame dies:
     * remember whose stack it is, so a task returning early is caught. */
    rill__rt *rt = rill__self;
    rill__fiber *f = rt && rt->current != &rt->host ? rt->current : NULL;
    g->owner = f && f->stack && (char *)g >= f->stack->lo && (char *)g < f->stack->hi ? f : NULL;
    /* The code from here to rill_group_wait is the body of `async with
     * TaskGroup()`: it runs in a scope that a child's failure cancels. */
    g->scoped = f != NULL;
    if (!f) return;
    rill__scope_open(&g->body, f, INFINITY);
    /* Out of memory: the group works, only that one check is lost. */
    if (where) (void)rill__scope_record(&g->body, f, where, true);
}

void rill_group_init(rill_group *g) {
    rill__rt *rt = rill__self;
    if (rt && rt->current != &rt->host) rill__scope_chain_check(rt->current, RILL__CALLER_SP());
    group_init(g, __builtin_return_address(0));
}

void rill__group_init(rill_group *g) { group_init(g, NULL); }

static void cancel_children(rill_group *g) {
    g->cancelled = true;
    rill__list_each(n, &g->children)
        rill_cancel(rill__container_of(n, rill_task, link));
}

/* Cancel the children and the body (Trio's nursery.cancel_scope.cancel()). */
static void cancel_group(rill_group *g) {
    cancel_children(g);
    if (g->scoped) rill__scope_cancel(&g->body);
}

void rill_group_cancel(rill_group *g) {
    if (!rill__valid(g, GROUP_MAGIC) || g->waited) {
        errno = EINVAL;
        return;
    }
    cancel_group(g);
}

int rill_group_spawn_opts(rill_group *g, rill_fn *fn, void *arg, const rill_opts *o) {
    if (!rill__valid(g, GROUP_MAGIC) || !fn || g->waited) return -EINVAL;
    /* A generator body driven from outside any fiber could never wait for
     * the child: refuse, as its blocking calls are refused. */
    rill__rt *rt = rill__self;
    if (rt && rt->current != &rt->host && rill__fiber_root(rt->current) == &rt->host) return -EPERM;
    rill_task *t = rill__task_new(fn, arg, o);
    if (!t) return -errno;
    t->group = g;
    t->watch = &child_watch;
    t->index = g->spawned++;
    rill__list_push(&g->children, &t->link);
    if (g->live++ == 0 && g->owner) g->owner->busy_groups++;
    /* Trio's rule: a child spawned into a cancelled group starts cancelled. */
    if (g->cancelled) rill_cancel(t);
    return 0;
}

int rill_group_spawn(rill_group *g, rill_fn *fn, void *arg) {
    return rill_group_spawn_opts(g, fn, arg, NULL);
}

static void child_ended(rill_task *t) {
    rill_group *g = t->group;
    rill__list_remove(&t->link);
    if (--g->live == 0 && g->owner) g->owner->busy_groups--;
    int st = t->status;
    if (g->statuses) g->statuses[t->index] = st;
    /* Ending by a cancellation that was asked for is not a failure. */
    bool was_cancelled = st == -ECANCELED && rill__scope_is_cancelled(&t->root);
    if (st < 0 && !was_cancelled) {
        if (g->nfailures < RILL__GROUP_KEEP)
            g->failures[g->nfailures] = (rill_failure){.index = t->index, .status = st};
        if (g->nfailures == 0) g->first_status = st;
        g->nfailures++;
        if (!(g->flags & RILL_RETURN_ERRORS)) cancel_group(g);
    }
    if (g->live == 0) rill__wait_wake_all(&g->waiters, 0);
    t->watch = NULL; /* the group is done with it */
}

/* Freed before it ended: a deadlock that persists abandoned it (the only
 * way a child is freed before child_ended).  Its group's owner is abandoned
 * too, and may be already: the group and its list head lived in that
 * owner's memory, often its stack, which is gone (unmapped, for a stack of
 * a size of its own).  So the link is left as it is: unlinking it wrote
 * there.  Nothing walks that list again: the group's wait never returns. */
static void child_freed(rill_task *t) { t->watch = NULL; }

static const rill__task_watch child_watch = {.ended = child_ended, .freed = child_freed};

/* Wait for every child.  Returns 0, or what interrupted the wait
 * (-ECANCELED, -EDEADLK): then the children were cancelled and waited for
 * all the same. */
RILL__INLINE int wait_children(rill_group *g) {
    rill__waiter w;
    int rc = rill__scope_checkpoint();
    /* Loop: between the last child's end and our resumption, another fiber
     * may have spawned a new child. */
    while (rc == 0 && g->live) rc = rill__wait_on(&g->waiters, &w, "group", NULL);
    if (rc == 0 || rc == -EPERM) return rc;
    cancel_children(g);
    /* Children never outlive their group: wait on, deaf to cancellation. */
    while (g->live) {
        if (rill__wait_deaf(&g->waiters, &w, "group (cancelling)", NULL) == -EDEADLK)
            rc = -EDEADLK;
    }
    return rc;
}

/* Close the body's scope and say how the wait ended: -ECANCELED only for
 * the caller's own cancellation (the group's, by a failure or by
 * rill_group_cancel, ends with the body), else the first failure. */
static int finish(rill_group *g, int rc, bool return_errors) {
    if (g->scoped) {
        rill__scope_forget(&g->body);
        rill__scope_unlink(&g->body);
    }
    g->scoped = false;
    g->waited = true;
    if (rc == -EDEADLK) return rc;
    if (rc == -ECANCELED && rill__scope_cancelled(rill__self->current)) return rc;
    return return_errors || !g->nfailures ? 0 : g->first_status;
}

int rill_group_wait(rill_group *g) {
    if (!rill__valid(g, GROUP_MAGIC)) return -EINVAL;
    rill_task *me = rill_current();
    if (me && me->group == g) return -EDEADLK; /* it would wait for itself */
    if (g->waited || !rill__list_empty(&g->waiters)) return -EINVAL;
    int rc = wait_children(g);
    if (rc == -EPERM) return rc;
    return finish(g, rc, false);
}

int rill_group_errors(const rill_group *g, rill_failure *out, int max) {
    if (!rill__valid(g, GROUP_MAGIC) || max < 0 || (max > 0 && !out)) return -EINVAL;
    int n = g->nfailures < RILL__GROUP_KEEP ? g->nfailures : RILL__GROUP_KEEP;
    for (int i = 0; i < n && i < max; i++) out[i] = g->failures[i];
    return g->nfailures;
}

int rill_gather(int n, rill_fn *const fns[], void *const args[], int statuses[],
                int flags) {
    if (n < 0 || (n > 0 && !fns) || (flags & ~RILL_RETURN_ERRORS)) return -EINVAL;
    for (int i = 0; i < n; i++)
        if (!fns[i]) return -EINVAL;
    int rc = rill__scope_checkpoint();
    if (rc < 0) {
        for (int i = 0; statuses && i < n; i++) statuses[i] = rc;
        return rc;
    }
    rill_group g;
    rill__group_init(&g);
    g.flags = flags;
    g.statuses = statuses;
    for (int i = 0; i < n; i++) {
        if (statuses) statuses[i] = 0;
        if ((rc = rill_group_spawn(&g, fns[i], args ? args[i] : NULL)) < 0) {
            for (int j = i; statuses && j < n; j++) statuses[j] = rc;
            cancel_group(&g);
            finish(&g, wait_children(&g), false);
            return rc;
        }
    }
    return finish(&g, wait_children(&g), flags & RILL_RETURN_ERRORS);
}
