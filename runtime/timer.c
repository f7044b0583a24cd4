/*
 * Timers: one 4-ary min-heap per runtime, ordered by (deadline, arming
 * sequence) so that timers with equal deadlines fire in the order they were
 * armed.  libev sees a single ev_timer, set for the earliest deadline; its
 * own pending queue would invoke simultaneous timers in reverse order.
 *
 * Each entry keeps its timer's key next to the pointer: sifting compares
 * entries of the array only, and writes a timer (its slot) only when it
 * moves.  Timers live in fiber stacks, one page apart, so reading them to
 * compare would cost a cache miss per comparison.  Four children per node
 * halve the depth, and so the timers moved per removal.
 *
 * Costs: arm and disarm O(log n); the earliest deadline O(1).
 */
#include <time.h>

#include "internal.h"

#define ARITY 4

double rill_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool before(const rill__timer_entry *a, const rill__timer_entry *b) {
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

/* Slots count from 1 (0 means "not armed"): slot i's children are
 * ARITY * (i - 1) + 2 ... ARITY * (i - 1) + ARITY + 1. */
static size_t parent(size_t slot) { return (slot - 2) / ARITY + 1; }
static size_t first_child(size_t slot) { return ARITY * (slot - 1) + 2; }

static void place(rill__rt *rt, rill__timer_entry e, size_t slot) {
    rt->timers.heap[slot] = e;
    e.timer->slot = slot;
}

static void sift_up(rill__rt *rt, size_t slot) {
    rill__timer_entry e = rt->timers.heap[slot];
    while (slot > 1 && before(&e, &rt->timers.heap[parent(slot)])) {
        place(rt, rt->timers.heap[parent(slot)], slot);
        slot = parent(slot);
    }
    place(rt, e, slot);
}

static void sift_down(rill__rt *rt, size_t slot) {
    rill__timer_entry e = rt->timers.heap[slot];
    size_t len = rt->timers.len;
    for (;;) {
        size_t c = first_child(slot);
        if (c > len) break;
        size_t end = c + ARITY <= len + 1 ? c + ARITY : len + 1, min = c;
        for (size_t k = c + 1; k < end; k++)
            if (before(&rt->timers.heap[k], &rt->timers.heap[min])) min = k;
        if (!before(&rt->timers.heap[min], &e)) break;
        place(rt, rt->timers.heap[min], slot);
        slot = min;
    }
    place(rt, e, slot);
}

int rill__timer_arm(rill__timer *t, double at, void (*fire)(rill__timer *)) {
    rill__rt *rt = rill__self;
    if (t->slot) rill__timer_disarm(t);
    if (rt->timers.len + 1 >= rt->timers.cap) {
        size_t cap = rt->timers.cap ? rt->timers.cap * 2 : 64;
        rill__timer_entry *h = rill__realloc(rt->timers.heap, cap * sizeof *h);
        if (!h) return -ENOMEM; /* the caller reports it */
        rt->timers.heap = h;
        rt->timers.cap = cap;
    }
    t->at = at;
    t->seq = ++rt->timers.seq;
    t->fire = fire;
    rt->timers.heap[++rt->timers.len] = (rill__timer_entry){at, t->seq, t};
    sift_up(rt, rt->timers.len);
    return 0;
}

/* Take the timer in `slot` out of the heap, without touching the timer
 * itself (it may lie in a dead stack frame: see rill__scope_drop_all). */
static void remove_slot(rill__rt *rt, size_t slot) {
    rill__timer_entry last = rt->timers.heap[rt->timers.len--];
    if (slot > rt->timers.len) return; /* it was the last one */
    place(rt, last, slot);
    if (slot > 1 && before(&last, &rt->timers.heap[parent(slot)])) sift_up(rt, slot);
    else sift_down(rt, slot);
}

void rill__timer_disarm(rill__timer *t) {
    rill__rt *rt = rill__self;
    size_t slot = t->slot;
    if (!slot) return;
    RILL_ASSERT(slot <= rt->timers.len && rt->timers.heap[slot].timer == t,
                "timer heap slot out of sync");
    t->slot = 0;
    remove_slot(rt, slot);
}

double rill__timer_next(void) {
    rill__rt *rt = rill__self;
    return rt->timers.len ? rt->timers.heap[1].at : INFINITY;
}

int rill__timer_run_due(void) {
    rill__rt *rt = rill__self;
    if (!rt->timers.len) return 0;
    double now = rill_now();
    int n = 0;
    /* A fire callback may arm or disarm other timers: re-read the root. */
    while (rt->timers.len && rt->timers.heap[1].at <= now) {
        rill__timer *t = rt->timers.heap[1].timer;
        rill__timer_disarm(t);
        t->fire(t);
        n++;
    }
    return n;
}

void rill__timer_disarm_if(bool (*pred)(rill__timer *t, void *ctx), void *ctx) {
    rill__rt *rt = rill__self;
    /* On error paths only.  Removing re-sorts the heap, which may move an
     * entry not yet looked at behind the scan: repeat until a pass is clean. */
    bool again = true;
    while (again) {
        again = false;
        for (size_t slot = 1; slot <= rt->timers.len; slot++) {
            if (pred(rt->timers.heap[slot].timer, ctx)) {
                remove_slot(rt, slot);
                again = true;
            }
        }
    }
}

static void timers_free(rill__rt *rt) {
    free(rt->timers.heap);
    rt->timers = (rill__timers){0};
}

/* Suspended generators keep no timer armed (rill__scope_suspend): once a
 * run is over, the heap is empty unless one was rescheduled meanwhile. */
static void timers_run_end(rill__rt *rt) {
    if (!rt->timers.len) timers_free(rt);
}

const rill__module rill__timer_module = {.run_end = timers_run_end, .term = timers_free};
