/*
 * Event, semaphore, mutex and condition: wait lists of the one wait
 * mechanism.  Every wake-up is a hand-off decided by the waker (the permit
 * or the lock is given to the woken fiber before it runs), so a waiter
 * cancelled after being woken keeps what it was given, and one cancelled
 * before has taken nothing.
 */
#include <limits.h>

#include "internal.h"

#define EVENT_MAGIC 0x65764e54u
#define SEM_MAGIC 0x73654d41u
#define MUTEX_MAGIC 0x6d75547eu
#define COND_MAGIC 0x636f4e44u

static rill__fiber *me(void) {
    rill__rt *rt = rill__self;
    return rt ? rt->current : NULL;
}

/* ---- event ---------------------------------------------------------------- */

void rill_event_init(rill_event *e) {
    if (!e) {
        errno = EINVAL;
        return;
    }
    rill__list_init(&e->waiters);
    e->magic = EVENT_MAGIC;
    e->set = false;
}

void rill_event_set(rill_event *e) {
    if (!rill__valid_or_einval(e, EVENT_MAGIC)) return;
    e->set = true;
    rill__wait_wake_all(&e->waiters, 0);
}

void rill_event_clear(rill_event *e) {
    if (!rill__valid_or_einval(e, EVENT_MAGIC)) return;
    e->set = false;
}

bool rill_event_is_set(const rill_event *e) { return rill__valid(e, EVENT_MAGIC) && e->set; }

int rill_event_wait(rill_event *e) {
    if (!rill__valid_or_einval(e, EVENT_MAGIC)) return -EINVAL;
    if (e->set) return 0;
    rill__waiter w;
    return rill__wait_on(&e->waiters, &w, "event", NULL);
}

/* ---- semaphore -------------------------------------------------------------- */

void rill_sem_init(rill_sem *s, unsigned n) {
    if (!s) {
        errno = EINVAL;
        return;
    }
    rill__list_init(&s->waiters);
    s->magic = SEM_MAGIC;
    s->value = n;
}

bool rill_sem_try_acquire(rill_sem *s) {
    if (!rill__valid_or_einval(s, SEM_MAGIC)) return false;
    /* Waiters come first: a free permit is theirs already (FIFO). */
    if (!s->value || !rill__list_empty(&s->waiters)) return false;
    s->value--;
    return true;
}

int rill_sem_acquire(rill_sem *s) {
    if (!rill__valid_or_einval(s, SEM_MAGIC)) return -EINVAL;
    if (rill_sem_try_acquire(s)) return 0;
    rill__waiter w; /* woken with 0: release handed us its permit */
    return rill__wait_on(&s->waiters, &w, "semaphore", NULL);
}

void rill_sem_release(rill_sem *s) {
    if (!rill__valid_or_einval(s, SEM_MAGIC)) return;
    if (rill__wait_wake_one(&s->waiters, 0)) return;
    if (s->value == UINT_MAX) {
        errno = EOVERFLOW; /* one permit more than the count can hold */
        return;
    }
    s->value++;
}

/* ---- mutex ------------------------------------------------------------------ */

void rill_mutex_init(rill_mutex *m) {
    if (!m) {
        errno = EINVAL;
        return;
    }
    rill__list_init(&m->waiters);
    m->magic = MUTEX_MAGIC;
    m->owner = NULL;
}

/* Wait for m; with `deaf`, deaf to cancellation (a condition's relock). */
RILL__INLINE int lock(rill_mutex *m, bool deaf) {
    rill__fiber *f = me();
    if (!f || rill__fiber_root(f) == &rill__self->host) return -EPERM;
    if (m->owner == f) return -EDEADLK;
    if (!m->owner) {
        m->owner = f;
        return 0;
    }
    rill__waiter w; /* woken with 0: unlock made us the owner */
    if (deaf) return rill__wait_deaf(&m->waiters, &w, "mutex (relock)", NULL);
    return rill__wait_on(&m->waiters, &w, "mutex", NULL);
}

int rill_mutex_lock(rill_mutex *m) {
    if (!rill__valid_or_einval(m, MUTEX_MAGIC)) return -EINVAL;
    return lock(m, false);
}

void rill_mutex_unlock(rill_mutex *m) {
    if (!rill__valid_or_einval(m, MUTEX_MAGIC)) return;
    if (!m->owner || m->owner != me()) {
        errno = EPERM;
        return;
    }
    rill__list *n = rill__list_pop(&m->waiters);
    if (!n) {
        m->owner = NULL;
        return;
    }
    rill__waiter *w = rill__container_of(n, rill__waiter, node);
    m->owner = w->fiber;
    rill__sched_wake(w, 0);
}

/* ---- condition ---------------------------------------------------------------- */

void rill_cond_init(rill_cond *c) {
    if (!c) {
        errno = EINVAL;
        return;
    }
    rill__list_init(&c->waiters);
    c->magic = COND_MAGIC;
}

int rill_cond_wait(rill_cond *c, rill_mutex *m) {
    if (!rill__valid_or_einval(c, COND_MAGIC) || !rill__valid_or_einval(m, MUTEX_MAGIC))
        return -EINVAL;
    rill__fiber *f = me();
    if (!f || m->owner != f) return -EPERM;
    int rc = rill__scope_checkpoint();
    if (rc) return rc; /* still holding m */
    rill_mutex_unlock(m);
    rill__waiter w;
    rc = rill__wait_on(&c->waiters, &w, "condition", NULL);
    int lrc = lock(m, true);
    /* A deadlock may interrupt even the relock: report it. */
    return lrc < 0 ? lrc : rc;
}

void rill_cond_signal(rill_cond *c) {
    if (!rill__valid_or_einval(c, COND_MAGIC)) return;
    rill__wait_wake_one(&c->waiters, 0);
}

void rill_cond_broadcast(rill_cond *c) {
    if (!rill__valid_or_einval(c, COND_MAGIC)) return;
    rill__wait_wake_all(&c->waiters, 0);
}
