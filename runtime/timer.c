/*
 * Timers: one binary min-heap per runtime, ordered by (deadline, arming
 * sequence) so that timers with equal deadlines fire in the order they were
 * armed.  libev sees a single ev_timer, set for the earliest deadline; its
 * own pending queue would invoke simultaneous timers in reverse order.
 *
 * Costs: arm and disarm O(log n); the earliest deadline O(1).
 */
#include <time.h>

#include "internal.h"

double rill_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool before(const rill__timer *a, const rill__timer *b) {
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void place(rill__rt *rt, rill__timer *t, size_t slot) {
    rt->timers.heap[slot] = t;
    t->slot = slot;
}

static void sift_up(rill__rt *rt, size_t slot) {
    rill__timer *t = rt->timers.heap[slot];
    while (slot > 1 && before(t, rt->timers.heap[slot / 2])) {
        place(rt, rt->timers.heap[slot / 2], slot);
        slot /= 2;
    }
    place(rt, t, slot);
}

static void sift_down(rill__rt *rt, size_t slot) {
    rill__timer *t = rt->timers.heap[slot];
    for (;;) {
        size_t c = slot * 2;
        if (c > rt->timers.len) break;
        if (c < rt->timers.len && before(rt->timers.heap[c + 1], rt->timers.heap[c])) c++;
        if (!before(rt->timers.heap[c], t)) break;
        place(rt, rt->timers.heap[c], slot);
        slot = c;
    }
    place(rt, t, slot);
}

int rill__timer_arm(rill__timer *t, double at, void (*fire)(rill__timer *)) {
    rill__rt *rt = rill__self;
    if (t->slot) rill__timer_disarm(t);
    if (rt->timers.len + 1 >= rt->timers.cap) {
        size_t cap = rt->timers.cap ? rt->timers.cap * 2 : 64;
        rill__timer **h = rill__realloc(rt->timers.heap, cap * sizeof *h);
        if (!h) return -ENOMEM; /* the caller reports it */
        rt->timers.heap = h;
        rt->timers.cap = cap;
    }
    t->at = at;
    t->seq = ++rt->timers.seq;
    t->fire = fire;
    rt->timers.heap[++rt->timers.len] = t;
    sift_up(rt, rt->timers.len);
    return 0;
}

/* Take the timer in `slot` out of the heap, without touching the timer
 * itself (it may lie in a dead stack frame: see rill__scope_drop_all). */
static void remove_slot(rill__rt *rt, size_t slot) {
    rill__timer *last = rt->timers.heap[rt->timers.len--];
    if (slot > rt->timers.len) return; /* it was the last one */
    place(rt, last, slot);
    if (slot > 1 && before(last, rt->timers.heap[slot / 2])) sift_up(rt, slot);
    else sift_down(rt, slot);
}

void rill__timer_disarm(rill__timer *t) {
    rill__rt *rt = rill__self;
    size_t slot = t->slot;
    if (!slot) return;
    RILL_ASSERT(slot <= rt->timers.len && rt->timers.heap[slot] == t, "timer heap slot out of sync");
    t->slot = 0;
    remove_slot(rt, slot);
}

double rill__timer_next(void) {
    rill__rt *rt = rill__self;
    return rt->timers.len ? rt->timers.heap[1]->at : INFINITY;
}

int rill__timer_run_due(void) {
    rill__rt *rt = rill__self;
    if (!rt->timers.len) return 0;
    double now = rill_now();
    int n = 0;
    /* A fire callback may arm or disarm other timers: re-read the root. */
    while (rt->timers.len && rt->timers.heap[1]->at <= now) {
        rill__timer *t = rt->timers.heap[1];
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
            if (pred(rt->timers.heap[slot], ctx)) {
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
