/*
 * Fibers: their contexts and the switch between them (internal.h states who
 * may switch to whom).  Stacks come from stack.c.
 */
#include <string.h>

#include "internal.h"
#include "sanitize.h"

/* ---- contexts ---------------------------------------------------------- */

static void after_switch(rill__rt *rt);

/* The first code run on a fiber's stack. */
static void fiber_begin(void *arg) {
    (void)arg;
    rill__rt *rt = rill__self;
#ifdef RILL_ASAN
    __sanitizer_finish_switch_fiber(NULL, &rt->switch_from->asan_bottom,
                                    &rt->switch_from->asan_size);
#endif
    after_switch(rt);
    rill__fiber *f = rt->current;
    f->ops->entry(f);
    RILL_ASSERT(0, "a fiber's entry returned instead of ending the fiber");
}

int rill__fiber_init(rill__fiber *f, size_t size) {
    rill__stack *st;
    int rc = rill__stack_get(size, &st);
    if (rc) return rc;
    f->stack = st;
    rill__ctx_make(&f->ctx, st->lo, st->hi, fiber_begin, NULL);
#ifdef RILL_TSAN
    f->tsan = __tsan_create_fiber(0);
#endif
    f->asan_fake = NULL;
    f->asan_bottom = st->lo;
    f->asan_size = (size_t)(st->hi - st->lo);
    return 0;
}

void rill__fiber_release(rill__fiber *f) {
    if (!f->stack) return;
    rill__stack_put(f->stack);
    f->stack = NULL;
#ifdef RILL_TSAN
    __tsan_destroy_fiber(f->tsan);
    f->tsan = NULL;
#endif
}

static void after_switch(rill__rt *rt) {
    rill__fiber *dead = rt->dead;
    if (dead) {
        rt->dead = NULL;
        rill__fiber_release(dead);
        dead->ops->reaped(dead);
    }
}

void rill__fiber_switch(rill__fiber *from, rill__fiber *to) {
    rill__rt *rt = rill__self;
    /* internal.h's rules: the running fiber leaves, for the host or a
     * fiber made RUNNING; only a fiber leaves for the host. */
    RILL_ASSERT(from == rt->current && from != to, "a switch from a fiber that is not running");
    RILL_ASSERT(to == &rt->host ? from != &rt->host : to->state == RILL__RUNNING,
                "a switch to a fiber that was not made RUNNING");
    rill__stack_check(from);
    if (from->state == RILL__DONE) rt->dead = from;
    rt->current = to;
    rt->switch_from = from;
#ifdef RILL_ASAN
    __sanitizer_start_switch_fiber(from->state == RILL__DONE ? NULL : &from->asan_fake,
                                   to->asan_bottom, to->asan_size);
#endif
#ifdef RILL_TSAN
    if (!from->tsan) from->tsan = __tsan_get_current_fiber(); /* the host */
    __tsan_switch_to_fiber(to->tsan, 0);
#endif
    rill__ctx_switch(&from->ctx, &to->ctx);
#ifdef RILL_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake, &rt->switch_from->asan_bottom,
                                    &rt->switch_from->asan_size);
#endif
    after_switch(rt);
}

void rill__fiber_check_groups_waited(const rill__fiber *f) {
    if (f->busy_groups == 0) return;
    /* A task group on this stack with children still running would be
     * written to, by each child's end, after the frame holding it is gone. */
    fprintf(stderr, "rill: %s '%s' returned while a task group on its stack still had "
                    "children running (rill_group_wait was not called)\n",
            f->ops->kind, f->name);
    abort();
}
