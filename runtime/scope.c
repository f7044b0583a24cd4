/*
 * Cancellation: cancel scopes and the one cancellation check.  A scope is a
 * link in its fiber's chain (innermost first); rill__scope_cancelled() walks
 * that chain up to the first shield.  Changing
 * a scope (cancel, deadline, unshield) re-checks the one fiber that can be
 * affected, the scope's owner, and interrupts it if it is blocked.
 *
 * The scopes entered with rill_scope_enter are also recorded, by address,
 * in the runtime's table of open scopes.  "Is s open, and in which fiber"
 * is then answered without reading *s, which may be uninitialised (a scope
 * about to be entered), another fiber's, or in a frame that has returned
 * (a function that entered it and returned without exiting it).
 *
 * A scope left open by a returning frame is found by address: it lies on
 * its fiber's stack below the stack pointer of the code that calls rill
 * (RILL__CALLER_SP), so its memory may already hold other frames.  Every
 * call that reads the chain checks that first, and aborts with a message
 * naming the fiber and where the scope was entered.  Only recorded scopes
 * are judged so: the task groups that rill keeps in its own frames
 * (rill_gather's) lie below the user's stack pointer, alive.
 */
#include <dlfcn.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

/* ---- the table of open scopes: open addressing, linear probing ------------- */

static size_t home_slot(const rill__scope_table *tab, const rill_scope *s) {
    uint64_t h = (uint64_t)(uintptr_t)s * 0x9e3779b97f4a7c15u;
    return (size_t)(h >> 32) & (tab->cap - 1);
}

static rill__scope_slot *table_find(const rill__scope_table *tab, const rill_scope *s) {
    if (!tab->len || !s) return NULL;
    size_t mask = tab->cap - 1;
    for (size_t i = home_slot(tab, s);; i = (i + 1) & mask) {
        rill__scope_slot *e = &tab->slots[i];
        if (e->scope == s) return e;
        if (!e->scope) return NULL; /* the table is never more than half full */
    }
}

static void place(rill__scope_table *tab, rill__scope_slot e) {
    size_t mask = tab->cap - 1, i = home_slot(tab, e.scope);
    while (tab->slots[i].scope) i = (i + 1) & mask;
    tab->slots[i] = e;
}

/* Record s as open in f.  false (nothing recorded) if out of memory. */
static bool table_add(rill__scope_table *tab, const rill_scope *s, rill__fiber *f,
                      const void *where, bool group) {
    if ((tab->len + 1) * 2 > tab->cap) {
        size_t cap = tab->cap ? tab->cap * 2 : 64;
        rill__scope_slot *slots = rill__calloc(cap, sizeof *slots);
        if (!slots) return false;
        rill__scope_slot *old = tab->slots;
        size_t old_cap = tab->cap;
        tab->slots = slots;
        tab->cap = cap;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].scope) place(tab, old[i]);
        free(old);
    }
    place(tab, (rill__scope_slot){.scope = s, .fiber = f, .where = where, .group = group});
    tab->len++;
    f->nentered++;
    return true;
}

/* Remove e, shifting back the entries of its probe run so that no lookup
 * stops early at the hole (no tombstones). */
static void table_remove(rill__scope_table *tab, rill__scope_slot *e) {
    size_t mask = tab->cap - 1, hole = (size_t)(e - tab->slots);
    e->fiber->nentered--;
    for (size_t j = (hole + 1) & mask; tab->slots[j].scope; j = (j + 1) & mask) {
        size_t home = home_slot(tab, tab->slots[j].scope);
        /* The entry at j may fill the hole if the hole is on its probe path. */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            tab->slots[hole] = tab->slots[j];
            hole = j;
        }
    }
    tab->slots[hole] = (rill__scope_slot){0};
    tab->len--;
}

bool rill__scope_record(const rill_scope *s, rill__fiber *f, const void *where, bool group) {
    return table_add(&rill__self->scopes, s, f, where, group);
}

void rill__scope_forget(const rill_scope *s) {
    rill__scope_slot *e = table_find(&rill__self->scopes, s);
    if (e) table_remove(&rill__self->scopes, e);
}

static void scopes_free(rill__rt *rt) {
    free(rt->scopes.slots);
    rt->scopes = (rill__scope_table){0};
}

/* A bare runtime's generators may still hold scopes open. */
static void scopes_run_end(rill__rt *rt) {
    if (!rt->scopes.len) scopes_free(rt);
}

const rill__module rill__scope_module = {.run_end = scopes_run_end, .term = scopes_free};

/* ---- scopes left open by a returning frame ----------------------------------- */

/* "prog+0x1234 (name)": enough for addr2line -f -e prog 0x1234. */
static void describe_code(const void *pc, char *buf, size_t len) {
    Dl_info info;
    if (!pc || !dladdr(pc, &info) || !info.dli_fname) {
        snprintf(buf, len, "%p", pc);
        return;
    }
    const char *file = strrchr(info.dli_fname, '/');
    file = file ? file + 1 : info.dli_fname;
    int n = snprintf(buf, len, "%s+%#lx", *file ? file : "?",
                     (unsigned long)((const char *)pc - (const char *)info.dli_fbase));
    if (info.dli_sname && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, " (in %s)", info.dli_sname);
}

void rill__scope_check_below(const rill__fiber *f, const rill_scope *s) {
    const rill__scope_slot *e = table_find(&rill__self->scopes, s);
    if (!e) return; /* rill's own (a group in rill_gather's frame): live */
    char where[256];
    /* The return address follows the call: one byte back is the call
     * itself, the line addr2line should name. */
    describe_code((const char *)e->where - 1, where, sizeof where);
    if (e->group)
        fprintf(stderr, "rill: fiber '%s' left a task group without rill_group_wait: the "
                        "function that initialised it (at %s) returned\n", f->name, where);
    else
        fprintf(stderr, "rill: fiber '%s' left a scope without rill_scope_exit: the "
                        "function that entered it (at %s) returned while it was open "
                        "(exit it first, or declare it RILL_SCOPE_AUTO)\n", f->name, where);
    abort();
}

/* Mark s's deadline as fired (and its timer disarmed). */
static void expire(rill_scope *s) {
    rill__timer_disarm(&s->timer);
    s->deadline_fired = 1;
}

/* ---- the one cancellation check ---------------------------------------------- */

bool rill__scope_cancelled(const rill__fiber *f) {
    for (const rill_scope *s = f->scope; s; s = s->parent) {
        if (rill__scope_is_cancelled(s)) return true;
        if (s->shield) return false;
    }
    return false;
}

int rill__scope_checkpoint_below(const char *caller_sp) {
    rill__rt *rt = rill__self;
    /* Blocking needs a fiber to suspend, and a loop: a generator driven from
     * outside any fiber (its consumer chain starts at the host) has neither. */
    if (!rt || rill__fiber_root(rt->current) == &rt->host) return -EPERM;
    /* As rill__scope_cancelled, but a deadline that has passed counts even
     * if the reactor has not fired its timer yet (the fiber may have been
     * computing since): "a deadline in the past cancels at the next call".
     * The clock is read only inside a scope with a deadline.  The walk goes
     * on past a shield or a cancellation to judge every scope of the chain
     * (rill__scope_chain_check) before anything reads it. */
    rill__fiber *f = rt->current;
    double now = NAN;
    int rc = 0;
    bool shielded = false;
    for (rill_scope *s = f->scope; s; s = s->parent) {
        if (rill__scope_is_below(f, s, caller_sp)) rill__scope_check_below(f, s);
        if (rc || shielded) continue;
        if (rill__scope_is_cancelled(s)) {
            rc = -ECANCELED;
            continue;
        }
        if (s->deadline < INFINITY) {
            if (isnan(now)) now = rill_now();
            if (s->deadline <= now) {
                expire(s);
                rc = -ECANCELED;
                continue;
            }
        }
        shielded = s->shield;
    }
    return rc;
}

bool rill_cancelled(void) { return rill__scope_checkpoint() == -ECANCELED; }

/* Interrupt f if it is blocked and now cancelled. */
static void recheck(rill__fiber *f) {
    f = rill__fiber_leaf(f); /* the fiber actually blocked, for a consumer */
    if (f->state == RILL__BLOCKED && rill__scope_cancelled(f))
        rill__sched_interrupt(f, -ECANCELED);
}

/* ---- deadlines ------------------------------------------------------------------ */

static void deadline_fired(rill__timer *t);

typedef struct dropping {
    const rill__fiber *f;
} dropping;

static bool owned_by(rill__timer *t, void *ctx) {
    const rill__fiber *f = ((dropping *)ctx)->f;
    const char *p = (const char *)t;
    if (p >= f->stack->lo && p < f->stack->hi) return true; /* not read: may be garbage */
    if (t->fire != deadline_fired) return false;
    rill_scope *s = rill__container_of(t, rill_scope, timer);
    if (s->fiber != f) return false;
    t->slot = 0;
    return true;
}

void rill__scope_drop_all(rill__fiber *f) {
    rill__rt *rt = rill__self;
    rill__scope_table *tab = &rt->scopes;
    /* A removal shifts later entries back into slot i: look at it again. */
    for (size_t i = 0; f->nentered && i < tab->cap;) {
        rill__scope_slot *e = &tab->slots[i];
        if (!e->scope || e->fiber != f) {
            i++;
            continue;
        }
        const char *p = (const char *)e->scope;
        bool on_stack = f->stack && p >= f->stack->lo && p < f->stack->hi;
        /* Elsewhere (the heap, say) the scope is intact: close it. */
        if (!on_stack) rill__timer_disarm(&((rill_scope *)(uintptr_t)e->scope)->timer);
        table_remove(tab, e);
    }
    if (!f->stack) return;
    dropping d = {f};
    rill__timer_disarm_if(owned_by, &d);
}

void rill__scope_close_leftover(rill__fiber *f, rill_scope *base) {
    static atomic_bool warned;
    rill__scope_drop_all(f);
    f->scope = base;
    if (!atomic_exchange(&warned, true))
        fprintf(stderr, "rill: %s '%s' ended inside a scope it did not exit\n", f->ops->kind,
                f->name);
}


static void deadline_fired(rill__timer *t) {
    rill_scope *s = rill__container_of(t, rill_scope, timer);
    expire(s);
    recheck(s->fiber);
}

/* `now` may be passed in by a caller that just read the clock.  0, or
 * -ENOMEM with s's deadline as it was (it had no timer: disarming one
 * leaves room for the new). */
static int set_deadline(rill_scope *s, double deadline, double now) {
    double old = s->deadline;
    s->deadline = deadline;
    rill__timer_disarm(&s->timer);
    if (s->deadline_fired || deadline >= INFINITY) return 0;
    if (deadline <= (isnan(now) ? rill_now() : now)) {
        s->deadline_fired = 1;
        recheck(s->fiber);
        return 0;
    }
    if (rill__timer_arm(&s->timer, deadline, deadline_fired) == 0) return 0;
    /* Only a scope whose timer was not armed can get here (disarming one
     * freed a slot of the heap), so the old deadline needs no timer back. */
    s->deadline = old;
    return -ENOMEM;
}

void rill__scope_suspend(rill__fiber *f, const rill_scope *stop) {
    for (rill_scope *s = f->scope; s && s != stop; s = s->parent) rill__timer_disarm(&s->timer);
}

void rill__scope_resume(rill__fiber *f, const rill_scope *stop) {
    double now = NAN;
    for (rill_scope *s = f->scope; s && s != stop; s = s->parent) {
        if (s->deadline >= INFINITY || s->deadline_fired) continue;
        if (isnan(now)) now = rill_now();
        /* Passed meanwhile: fired, and seen by the body's next blocking call. */
        if (s->deadline <= now) s->deadline_fired = 1;
        /* No memory to re-arm it: the body's blocking calls still see it
         * pass (rill__scope_checkpoint reads it), only a wait is not cut short. */
        else (void)rill__timer_arm(&s->timer, s->deadline, deadline_fired);
    }
}

/* ---- opening and closing ----------------------------------------------------- */

/* 0, or -ENOMEM (no timer for its deadline: s is open all the same). */
static int scope_open(rill_scope *s, rill__fiber *f, double deadline, double now) {
    s->parent = f->scope;
    s->fiber = f;
    s->cancel_called = s->deadline_fired = s->shield = 0;
    s->timer.slot = 0;
    f->scope = s;
    return set_deadline(s, deadline, now);
}

void rill__scope_open(rill_scope *s, rill__fiber *f, double deadline) {
    (void)scope_open(s, f, deadline, NAN); /* rill's own: no deadline, no timer */
}

void rill__scope_unlink(rill_scope *s) {
    rill_scope **link = &s->fiber->scope;
    while (*link && *link != s) link = &(*link)->parent;
    if (*link) *link = s->parent;
    rill__timer_disarm(&s->timer);
}

/* The running fiber, after checking its chain, if it may enter or exit
 * scopes; NULL with errno set otherwise. */
static inline __attribute__((always_inline)) rill__fiber *scope_caller(const char *sp) {
    rill__rt *rt = rill__self;
    if (!rt || rt->current == &rt->host) {
        errno = EPERM;
        return NULL;
    }
    rill__scope_chain_check(rt->current, sp);
    return rt->current;
}

static void enter(rill_scope *s, double deadline, bool relative, const char *sp,
                  const void *where) {
    rill__fiber *f = scope_caller(sp);
    if (!f) return;
    rill__scope_table *tab = &rill__self->scopes;
    /* Open already, here or in another fiber: entering it again would
     * splice chains. */
    if (!s || isnan(deadline) || table_find(tab, s)) {
        errno = EINVAL;
        return;
    }
    if (!table_add(tab, s, f, where, false)) {
        errno = ENOMEM;
        return;
    }
    double now = NAN;
    if (relative && deadline < INFINITY) {
        now = rill_now(); /* read once: the deadline and the past-check */
        deadline += now;
    }
    if (scope_open(s, f, deadline, now) < 0) { /* no timer: no effect */
        rill__scope_unlink(s);
        rill__scope_forget(s);
        errno = ENOMEM;
    }
}

void rill_scope_enter_at(rill_scope *s, double deadline) {
    enter(s, deadline, false, RILL__CALLER_SP(), __builtin_return_address(0));
}

void rill_scope_enter(rill_scope *s, double timeout) {
    enter(s, timeout, true, RILL__CALLER_SP(), __builtin_return_address(0));
}

/* An open scope entered with rill_scope_enter (any fiber of this runtime),
 * after checking the caller's chain; NULL with errno EINVAL otherwise. */
static inline __attribute__((always_inline)) rill_scope *open_scope(rill_scope *s,
                                                                     const char *sp) {
    rill__rt *rt = rill__self;
    if (rt && rt->current != &rt->host) rill__scope_chain_check(rt->current, sp);
    rill__scope_slot *e = rt ? table_find(&rt->scopes, s) : NULL;
    if (e && !e->group) return s;
    errno = EINVAL;
    return NULL;
}

void rill_scope_reschedule(rill_scope *s, double deadline) {
    if (!open_scope(s, RILL__CALLER_SP())) return;
    if (isnan(deadline)) {
        errno = EINVAL;
        return;
    }
    if (set_deadline(s, deadline, NAN) < 0) errno = ENOMEM;
}

void rill_scope_shield(rill_scope *s, bool on) {
    if (!open_scope(s, RILL__CALLER_SP())) return;
    s->shield = on;
    if (!on) recheck(s->fiber);
}

void rill__scope_cancel(rill_scope *s) {
    s->cancel_called = 1;
    recheck(s->fiber);
}

void rill_scope_cancel(rill_scope *s) {
    if (open_scope(s, RILL__CALLER_SP())) rill__scope_cancel(s);
}

/* Close s, the caller's innermost scope, recorded in e.  Returns what
 * happened to it. */
static int close_scope(rill_scope *s, rill__scope_slot *e) {
    /* A deadline that passed counts as fired even if nothing noticed yet. */
    if (!s->deadline_fired && s->deadline < INFINITY && s->deadline <= rill_now())
        s->deadline_fired = 1;
    table_remove(&rill__self->scopes, e);
    rill__scope_unlink(s);
    if (s->cancel_called) return -ECANCELED;
    if (s->deadline_fired) return -ETIMEDOUT;
    return 0;
}

int rill_scope_exit(rill_scope *s) {
    rill__fiber *f = scope_caller(RILL__CALLER_SP());
    if (!f) return -EPERM;
    rill__scope_slot *e = table_find(&rill__self->scopes, s);
    if (!e || e->group || e->fiber != f || f->scope != s) return -EINVAL;
    return close_scope(s, e);
}

void rill__scope_autoexit(rill_scope *s) {
    rill__rt *rt = rill__self;
    if (!rt || rt->current == &rt->host) return;
    rill__fiber *f = rt->current;
    rill__scope_chain_check(f, RILL__CALLER_SP());
    rill__scope_slot *e = table_find(&rt->scopes, s);
    /* Never entered, exited already, or (misuse) entered by another fiber. */
    if (!e || e->group || e->fiber != f) return;
    /* Scopes entered after s in the same block and not exited stay open,
     * under s's parent: they are reported once their frame is gone. */
    (void)close_scope(s, e);
}
