/*
 * Timers: one binary min-heap per runtime, ordered by (deadline, arming
 * sequence) so that timers with equal deadlines fire in the order they were
 * armed.  libev sees a single ev_timer, set for the earliest deadline; its
 * own pending queue would invoke simultaneous timers in reverse order.
 *
 * Costs: arm and disarm O(log n); the earliest deadline O(1).
 */
#include "internal.h"

static bool before(const rill__timer *a, const rill__timer *b) {
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void place(rill__rt *rt, rill__timer *t, size_t slot) {
    rt->heap[slot] = t;
    t->slot = slot;
}

static void sift_up(rill__rt *rt, size_t slot) {
    rill__timer *t = rt->heap[slot];
    while (slot > 1 && before(t, rt->heap[slot / 2])) {
        place(rt, rt->heap[slot / 2], slot);
        slot /= 2;
    }
    place(rt, t, slot);
}

static void sift_down(rill__rt *rt, size_t slot) {
    rill__timer *t = rt->heap[slot];
    for (;;) {
        size_t c = slot * 2;
        if (c > rt->heap_len) break;
        if (c < rt->heap_len && before(rt->heap[c + 1], rt->heap[c])) c++;
        if (!before(rt->heap[c], t)) break;
        place(rt, rt->heap[c], slot);
        slot = c;
    }
    place(rt, t, slot);
}

int rill__timer_arm(rill__timer *t, double at, void (*fire)(rill__timer *)) {
    rill__rt *rt = rill__self;
    if (t->slot) rill__timer_disarm(t);
    if (rt->heap_len + 1 >= rt->heap_cap) {
        size_t cap = rt->heap_cap ? rt->heap_cap * 2 : 64;
        rill__timer **h = rill__realloc(rt->heap, cap * sizeof *h);
        if (!h) return -ENOMEM; /* was an abort: the caller reports it */
        rt->heap = h;
        rt->heap_cap = cap;
    }
    t->at = at;
    t->seq = ++rt->timer_seq;
    t->fire = fire;
    rt->heap[++rt->heap_len] = t;
    sift_up(rt, rt->heap_len);
    return 0;
}

/* Take the timer in `slot` out of the heap, without touching the timer
 * itself (it may lie in a dead stack frame: see rill__scopes_drop). */
static void remove_slot(rill__rt *rt, size_t slot) {
    rill__timer *last = rt->heap[rt->heap_len--];
    if (slot > rt->heap_len) return; /* it was the last one */
    place(rt, last, slot);
    if (slot > 1 && before(last, rt->heap[slot / 2])) sift_up(rt, slot);
    else sift_down(rt, slot);
}

void rill__timer_disarm(rill__timer *t) {
    rill__rt *rt = rill__self;
    size_t slot = t->slot;
    if (!slot) return;
    RILL_ASSERT(slot <= rt->heap_len && rt->heap[slot] == t, "timer heap slot out of sync");
    t->slot = 0;
    remove_slot(rt, slot);
}

double rill__timers_next(void) {
    rill__rt *rt = rill__self;
    return rt->heap_len ? rt->heap[1]->at : INFINITY;
}

int rill__timers_run(double now) {
    rill__rt *rt = rill__self;
    int n = 0;
    /* A fire callback may arm or disarm other timers: re-read the root. */
    while (rt->heap_len && rt->heap[1]->at <= now) {
        rill__timer *t = rt->heap[1];
        rill__timer_disarm(t);
        t->fire(t);
        n++;
    }
    return n;
}

void rill__timers_free(void) {
    rill__rt *rt = rill__self;
    free(rt->heap);
    rt->heap = NULL;
    rt->heap_len = rt->heap_cap = 0;
}

void rill__timers_disarm_if(bool (*pred)(rill__timer *t, void *ctx), void *ctx) {
    rill__rt *rt = rill__self;
    /* On error paths only.  Removing re-sorts the heap, which may move an
     * entry not yet looked at behind the scan: repeat until a pass is clean. */
    bool again = true;
    while (again) {
        again = false;
        for (size_t slot = 1; slot <= rt->heap_len; slot++) {
            if (pred(rt->heap[slot], ctx)) {
                remove_slot(rt, slot);
                again = true;
            }
        }
    }
}
