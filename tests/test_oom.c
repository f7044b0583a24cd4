/* Out of memory: every allocation of the runtime, and every fresh stack
 * mapping, can be made to fail (runtime/alloc.h).  Each operation is run with
 * the 1st, 2nd, ... allocation failing until a run meets no failure: every
 * run must succeed or fail cleanly (-ENOMEM, NULL with errno ENOMEM, or
 * what rill.h documents for that case), with nothing leaked (the ASan and
 * valgrind modes check) and the runtime still sound. */
#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "../runtime/alloc.h"
#include "helpers.h"

/* A stack size that is the default in no build: a fiber of this size never
 * reuses a pooled stack, so its stack is always mapped afresh. */
#define ODD_STACK (96u * 1024u)

/* ---- the driver ------------------------------------------------------------------ */

typedef enum how {
    ALLOC_AT,   /* the nth allocation fails, only it */
    ALLOC_FROM, /* the nth allocation and every later one fail */
    MAP_AT,     /* the nth fresh stack mapping fails, only it */
    MAP_FROM,   /* the nth stack mapping and every later one fail */
} how;

typedef struct oom_case {
    int (*op)(void *ctx); /* 0, or the clean error it met */
    void *ctx;
    how how;
    bool no_maps;         /* every stack mapping fails meanwhile, too */
    bool outside;         /* op runs outside rill_run (it may run one) */
    int also;             /* another clean error op may return (or 0) */
    int last;             /* what op returns once nothing is injected */
    long n;
    int rc;
    long fired;
} oom_case;

static bool counts_maps(const oom_case *c) { return c->how == MAP_AT || c->how == MAP_FROM; }

static void arm(const oom_case *c) {
    if (c->no_maps) rill__alloc_stack_fail_from(1);
    switch (c->how) {
    case ALLOC_AT: rill__alloc_fail_at(c->n); break;
    case ALLOC_FROM: rill__alloc_fail_from(c->n); break;
    case MAP_AT: rill__alloc_stack_fail_at(c->n); break;
    case MAP_FROM: rill__alloc_stack_fail_from(c->n); break;
    }
}

/* Disarm both; returns the failures the case's own injection made. */
static long disarm(const oom_case *c) {
    rill__alloc_fail_at(0);
    rill__alloc_stack_fail_at(0);
    return counts_maps(c) ? rill__alloc_stack_failures() : rill__alloc_failures();
}

static void run_once(oom_case *c) {
    arm(c);
    c->rc = c->op(c->ctx);
    c->fired = disarm(c);
}

static int in_a_run(void *arg) {
    run_once(arg);
    return 0;
}

/* Run c->op with the 1st, 2nd, ... allocation (or mapping) failing, each
 * time in a fresh rill_run unless c->outside, so that each run meets the
 * same allocations (the runtime's caches start empty).  Stops at the first
 * run in which nothing was injected.  Returns how many runs met a failure. */
static long each_failure(oom_case c) {
    /* ASan opens its log at the first switch: count fds after it (an op
     * outside rill_run may need the first run of the process: after it). */
    if (!c.outside) expect_eq(rill_run(rill_test_noop, NULL), 0);
    int fds = c.outside ? -1 : count_open_fds();
    for (c.n = 1; c.n < 500; c.n++) {
        if (c.outside) run_once(&c);
        else expect_eq(rill_run(in_a_run, &c), 0);
        if (fds < 0) fds = count_open_fds();
        if (!c.fired) {
            cr_assert_eq(c.rc, c.last, "with nothing injected (n = %ld): %d (%s)", c.n, c.rc,
                         rill_strerror(c.rc));
            expect_eq(count_open_fds(), fds);
            return c.n - 1;
        }
        cr_assert(c.rc == 0 || c.rc == -ENOMEM || (c.also && c.rc == c.also),
                  "failing allocation %ld: %d (%s)", c.n, c.rc, rill_strerror(c.rc));
    }
    cr_assert_fail("still failing after %ld runs", c.n);
    return 0;
}

/* each_failure made at least `want` runs fail: the paths meant were driven
 * (more, as the runtime allocates in more places, is fine). */
#define expect_drives(got, want)                                                  \
    do {                                                                          \
        long g_ = (got);                                                          \
        cr_assert(g_ >= (want), "%s: %ld runs met a failure, expected %d", #got, g_, \
                  (int)(want));                                                   \
    } while (0)

/* What a call that returns NULL must have said. */
static int nomem(void) {
    expect_eq(errno, ENOMEM);
    return -ENOMEM;
}

/* ---- spawning, generators --------------------------------------------------------- */

static int counts(void *arg) {
    (*(int *)arg)++;
    return rill_yield_now();
}

static int spawn_odd(void *ctx) {
    (void)ctx;
    int ran = 0;
    rill_task *t = rill_spawn_opts(counts, &ran, &(rill_opts){.stack_size = ODD_STACK});
    if (!t) return nomem();
    expect_eq(rill_join(t), 0);
    expect_eq(ran, 1);
    /* The runtime is whole: spawning works again at once. */
    if (!(t = rill_spawn(counts, &ran))) return nomem(); /* memory never came back */
    expect_eq(rill_join(t), 0);
    return 0;
}

/* Stacks of nine sizes alive at once: more size classes than the stack
 * module keeps in static storage, so the last ones are allocated. */
enum { SIZES = 9 };

static int waits_for(void *arg) { return rill_event_wait(arg); }

static int many_sizes(void *ctx) {
    (void)ctx;
    rill_event go;
    rill_event_init(&go);
    rill_task *t[SIZES];
    int made = 0, rc = 0;
    for (; made < SIZES; made++) {
        size_t size = (size_t)(20 + 4 * made) * 1024;
        t[made] = rill_spawn_opts(waits_for, &go, &(rill_opts){.stack_size = size});
        if (!t[made]) {
            rc = nomem();
            break;
        }
    }
    rill_event_set(&go);
    for (int i = 0; i < made; i++) expect_eq(rill_join(t[i]), 0);
    return rc;
}

Test(oom, stacks_of_many_sizes_fail_cleanly_when_a_size_class_finds_no_memory,
     .timeout = TEST_TIMEOUT) {
    /* Nine task structs, and the classes of the sizes beyond the store's
     * places (eight, one of them the default size's).  A kernel without
     * MADV_GUARD_INSTALL gives each stack a mapping of its own: no class. */
    expect_drives(each_failure((oom_case){.op = many_sizes, .how = ALLOC_AT}),
                  SIZES + (kernel_installs_guards() ? 2 : 0));
}

Test(oom, spawn_fails_cleanly_for_its_task_or_its_stack, .timeout = TEST_TIMEOUT) {
    /* The task's struct. */
    expect_drives(each_failure((oom_case){.op = spawn_odd, .how = ALLOC_AT}), 1);
    /* A guarded stack that cannot be mapped falls back to a slab... */
    expect_drives(each_failure((oom_case){.op = spawn_odd, .how = MAP_AT}), 1);
    /* ...and when nothing can be mapped, spawn says ENOMEM. */
    expect_drives(each_failure((oom_case){.op = spawn_odd, .how = MAP_FROM}), 1);
    /* No mapping at all: the task fails first (a size's class is not
     * allocated while the static ones last: see the test below). */
    expect_drives(each_failure((oom_case){.op = spawn_odd, .how = ALLOC_AT, .no_maps = true,
                                          .last = -ENOMEM}),
                  1);
}

static int yields_three(rill_gen *g, void *arg) {
    int *cleaned = arg;
    for (intptr_t i = 0; i < 3; i++) {
        int rc = rill_yield(g, (void *)i);
        if (rc < 0) break;
    }
    (*cleaned)++;
    return 0;
}

static int gen_odd(void *ctx) {
    (void)ctx;
    int cleaned = 0;
    rill_gen *g = rill_gen_new_opts(yields_three, &cleaned, &(rill_opts){.stack_size = ODD_STACK});
    if (!g) return nomem();
    void *v;
    for (intptr_t i = 0; i < 3; i++) {
        expect_eq(rill_gen_next(g, &v), 1);
        expect_eq((intptr_t)v, i);
    }
    expect_eq(rill_gen_next(g, &v), 0);
    expect_eq(cleaned, 1);
    rill_gen_free(g);
    return 0;
}

Test(oom, gen_new_fails_cleanly_for_its_struct_or_its_stack, .timeout = TEST_TIMEOUT) {
    expect_drives(each_failure((oom_case){.op = gen_odd, .how = ALLOC_AT}), 1);
    expect_drives(each_failure((oom_case){.op = gen_odd, .how = MAP_FROM}), 1);
    expect_drives(each_failure((oom_case){.op = gen_odd, .how = ALLOC_AT, .no_maps = true,
                                          .last = -ENOMEM}),
                  1);
    /* Outside rill_run: the thread's bare runtime first, then the struct;
     * the signal stack a body is run with is only a nicety (no failure). */
    expect_drives(each_failure((oom_case){.op = gen_odd, .how = ALLOC_AT, .outside = true}), 3);
    expect_drives(each_failure((oom_case){.op = gen_odd, .how = MAP_FROM, .outside = true}), 1);
}

/* ---- adapters ------------------------------------------------------------------------ */

/* A source yielding "v0" .. "v<n-1>" from a buffer it reuses. */
typedef struct src {
    int n;
    bool started, ended;
    char text[16];
} src;

static int src_body(rill_gen *g, void *arg) {
    src *s = arg;
    s->started = true;
    int rc = 0;
    for (int i = 0; i < s->n && rc == 0; i++) {
        snprintf(s->text, sizeof s->text, "v%d", i);
        rc = rill_yield(g, s->text);
    }
    s->ended = true;
    return rc == -EPIPE ? 0 : rc;
}

typedef enum kind {
    MAP, MAP_INTO, MAP_SIZED, FILTER, TAKE, BATCH, MERGE, MERGE_SIZED, PREFETCH,
    PREFETCH_SIZED, NKINDS
} kind;

static const char *const kind_names[] = {
    "map", "map_into", "map_sized", "filter", "take", "batch", "merge", "merge_sized",
    "prefetch", "prefetch_sized"};

#define ITEM 16 /* bytes copied by the fixed-size adapters: a src's text */

static int same(void *in, void **out, void *ctx) {
    (void)ctx;
    *out = in;
    return 0;
}

/* "v3" -> "w3", into the adapter's buffer. */
static int retag(void *in, void *out, void *ctx) {
    (void)ctx;
    strcpy(out, in);
    ((char *)out)[0] = 'w';
    return 0;
}

static int keep_even(void *in, void *ctx) {
    (void)ctx;
    return atoi((char *)in + 1) % 2 == 0;
}

static rill_gen *adapt(kind k, rill_gen *a, rill_gen *b) {
    rill_gen *two[] = {a, b};
    switch (k) {
    case MAP: return rill_gen_map(a, same, NULL);
    case MAP_INTO: return rill_gen_map_into(a, retag, ITEM, NULL);
    case MAP_SIZED: return rill_gen_map_sized(a, retag, rill_size_str, NULL);
    case FILTER: return rill_gen_filter(a, keep_even, NULL);
    case TAKE: return rill_gen_take(a, 3);
    case BATCH: return rill_gen_batch(a, 2, ITEM);
    case MERGE: return rill_gen_merge(two, 2, ITEM);
    case MERGE_SIZED: return rill_gen_merge_sized(two, 2, rill_size_str, NULL);
    case PREFETCH: return rill_gen_prefetch(a, 2, ITEM);
    case PREFETCH_SIZED: return rill_gen_prefetch_sized(a, 2, rill_size_str, NULL);
    default: return NULL;
    }
}

#define SRC_LEN 5

/* Check one value of kind k, given how many came before (next[s]: the
 * next value expected from source s).  Returns how many values it held. */
static int check_value(kind k, void *v, int got, int next[2]) {
    const char *s = v;
    switch (k) {
    case MAP_INTO:
    case MAP_SIZED:
        cr_assert(s[0] == 'w' && atoi(s + 1) == got, "%s: value %d is %s", kind_names[k], got, s);
        return 1;
    case FILTER:
        expect_eq(atoi(s + 1), 2 * got);
        return 1;
    case BATCH: {
        const rill_batch *b = v;
        cr_assert(b->n == 2 || (b->n == 1 && got == 4), "batch of %zu after %d", b->n, got);
        for (size_t i = 0; i < b->n; i++)
            expect_eq(atoi((const char *)b->items + i * ITEM + 1), got + (int)i);
        return (int)b->n;
    }
    case MERGE:
    case MERGE_SIZED: {
        /* Each source's values in order, interleaved in any way; the two
         * sources are told apart by the order of their values only, so
         * accept the value as the next of either. */
        int x = atoi(s + 1);
        if (x == next[0]) next[0]++;
        else if (x == next[1]) next[1]++;
        else cr_assert_fail("merge: %s out of order (next %d, %d)", s, next[0], next[1]);
        return 1;
    }
    default:
        expect_eq(atoi(s + 1), got);
        return 1;
    }
}

static int expected_values(kind k) {
    switch (k) {
    case FILTER: return 3;
    case TAKE: return 3;
    case MERGE:
    case MERGE_SIZED: return 2 * SRC_LEN;
    default: return SRC_LEN;
    }
}

static bool two_sources(kind k) { return k == MERGE || k == MERGE_SIZED; }

/* Make the sources and the adapter, stream it to its end, free it. */
static int adapter_op(void *ctx) {
    kind k = *(kind *)ctx;
    src s[2] = {{.n = SRC_LEN}, {.n = SRC_LEN}};
    rill_gen *a = rill_gen_new(src_body, &s[0]), *b = NULL;
    if (!a) return nomem();
    if (two_sources(k) && !(b = rill_gen_new(src_body, &s[1]))) {
        rill_gen_free(a);
        return nomem();
    }
    rill_gen *g = adapt(k, a, b);
    if (!g) {
        int rc = nomem();
        /* The sources are still the caller's: freeing them works. */
        errno = 0;
        rill_gen_free(a);
        expect_eq(errno, 0);
        if (b) rill_gen_free(b);
        expect_eq(errno, 0);
        return rc;
    }
    int got = 0, next[2] = {0, 0}, rc;
    void *v;
    while ((rc = rill_gen_next(g, &v)) == 1) got += check_value(k, v, got, next);
    cr_assert(rc == 0 || rc == -ENOMEM, "%s ended with %d (%s) after %d values", kind_names[k],
              rc, rill_strerror(rc), got);
    if (rc == 0) expect_eq(got, expected_values(k));
    expect_eq(rill_gen_status(g), rc);
    /* Whatever ended the stream, the sources that ran were closed. */
    for (int i = 0; i < 2; i++)
        cr_assert(s[i].ended == s[i].started, "%s: source %d started but not closed",
                  kind_names[k], i);
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    return rc;
}

Test(oom, every_adapter_fails_cleanly_when_made_and_while_streaming, .timeout = TEST_TIMEOUT) {
    /* Allocations each adapter meets: its sources, its own, its body's
     * (merge and prefetch: their pullers' tasks and, sized, each slot's
     * buffer as it first holds a value). */
    static const long at_least[NKINDS] = {
        [MAP] = 3, [MAP_INTO] = 4, [MAP_SIZED] = 4, [FILTER] = 3, [TAKE] = 3, [BATCH] = 4,
        [MERGE] = 9, [MERGE_SIZED] = 12, [PREFETCH] = 7, [PREFETCH_SIZED] = 10};
    for (kind k = 0; k < NKINDS; k++) {
        long failed = each_failure((oom_case){.op = adapter_op, .ctx = &k, .how = ALLOC_AT});
        cr_assert(failed >= at_least[k], "%s: %ld allocations failed", kind_names[k], failed);
        /* Memory that never comes back: each fails once, and cleanly. */
        failed = each_failure((oom_case){.op = adapter_op, .ctx = &k, .how = ALLOC_FROM});
        cr_assert(failed >= at_least[k], "%s: %ld runs out of memory", kind_names[k], failed);
    }
}

/* ---- queues ------------------------------------------------------------------------- */

static int queue_new_op(void *ctx) {
    size_t cap = *(size_t *)ctx;
    rill_queue *q = rill_queue_new(cap, sizeof(int));
    if (!q) return nomem();
    int x = 7, y = 0, rc = rill_queue_try_put(q, &x);
    if (rc < 0) { /* unbounded: its first chunk */
        expect_eq(rc, -ENOMEM);
        expect_eq(rill_queue_len(q), 0);
        rill_queue_free(q);
        return rc;
    }
    expect_eq(rill_queue_try_get(q, &y), 0);
    expect_eq(y, 7);
    rill_queue_free(q);
    return 0;
}

/* An unbounded queue grows a chunk (1024 ints) at a time: a put that needs
 * a new chunk and finds no memory stores nothing. */
static int queue_grow_op(void *ctx) {
    bool blocking = *(bool *)ctx;
    rill_queue *q = rill_queue_new(RILL_UNBOUNDED, sizeof(int));
    if (!q) return nomem();
    int rc = 0, n = 0;
    for (; n < 3000; n++) {
        rc = blocking ? rill_queue_put(q, &n) : rill_queue_try_put(q, &n);
        if (rc < 0) break;
    }
    expect_eq(rill_queue_len(q), n);
    /* The queue is whole: the items stored come out in order. */
    for (int i = 0, y; i < n; i++) {
        expect_eq(rill_queue_try_get(q, &y), 0);
        expect_eq(y, i);
    }
    expect_eq(rill_queue_try_get(q, &n), -EAGAIN);
    rill_queue_free(q);
    return rc;
}

Test(oom, queue_new_and_an_unbounded_put_fail_cleanly, .timeout = TEST_TIMEOUT) {
    size_t bounded = 16, unbounded = RILL_UNBOUNDED;
    expect_drives(each_failure((oom_case){.op = queue_new_op, .ctx = &bounded, .outside = true}),
                  2);
    expect_drives(each_failure((oom_case){.op = queue_new_op, .ctx = &unbounded, .outside = true}),
                  2);
    bool blocking = false;
    expect_drives(each_failure((oom_case){.op = queue_grow_op, .ctx = &blocking, .outside = true}),
                  4);
    blocking = true;
    expect_drives(each_failure((oom_case){.op = queue_grow_op, .ctx = &blocking}), 4);
}

/* ---- as_completed, groups, gather ---------------------------------------------------- */

static int as_completed_op(void *ctx) {
    (void)ctx;
    int ran = 0;
    rill_task *t[3];
    for (int i = 0; i < 3; i++) {
        if (!(t[i] = rill_spawn(counts, &ran))) {
            int rc = nomem();
            while (i--) expect_eq(rill_join(t[i]), 0);
            return rc;
        }
    }
    rill_gen *g = rill_as_completed(t, 3);
    if (!g) {
        int rc = nomem();
        /* Nothing is observed: the tasks are the caller's to join. */
        for (int i = 0; i < 3; i++) expect_eq(rill_join(t[i]), 0);
        return rc;
    }
    void *v;
    int n = 0;
    while (rill_gen_next(g, &v) == 1) {
        expect_eq(rill_join(v), 0);
        n++;
    }
    expect_eq(n, 3);
    expect_eq(ran, 3);
    rill_gen_free(g);
    return 0;
}

Test(oom, as_completed_fails_cleanly_and_observes_nothing, .timeout = TEST_TIMEOUT) {
    expect_drives(each_failure((oom_case){.op = as_completed_op, .how = ALLOC_AT}), 5);
}

static int group_op(void *ctx) {
    (void)ctx;
    int ran = 0;
    rill_group g;
    rill_group_init(&g); /* recording its scope may fail: the group works */
    int rc = rill_group_spawn(&g, counts, &ran);
    int rc2 = rill_group_spawn(&g, counts, &ran);
    expect_eq(rill_group_wait(&g), 0);
    expect_eq(ran, (rc == 0) + (rc2 == 0));
    return rc < 0 ? rc : rc2;
}

Test(oom, group_spawn_fails_cleanly_and_the_group_still_waits, .timeout = TEST_TIMEOUT) {
    expect_drives(each_failure((oom_case){.op = group_op, .how = ALLOC_AT}), 3);
}

static int gather_op(void *ctx) {
    (void)ctx;
    int ran = 0, st[3] = {1, 1, 1};
    rill_fn *fns[] = {counts, counts, counts};
    void *args[] = {&ran, &ran, &ran};
    int rc = rill_gather(3, fns, args, st, 0);
    if (rc == 0) {
        for (int i = 0; i < 3; i++) expect_eq(st[i], 0);
        expect_eq(ran, 3);
        return 0;
    }
    expect_eq(rc, -ENOMEM);
    /* The tasks spawned before were cancelled and waited for; the rest
     * say why they never ran. */
    bool failed = false;
    for (int i = 0; i < 3; i++) {
        if (st[i] == -ENOMEM) failed = true;
        else cr_assert(!failed && (st[i] == 0 || st[i] == -ECANCELED), "status %d is %d", i,
                       st[i]);
    }
    cr_assert(failed);
    return rc;
}

Test(oom, gather_fails_cleanly_and_cancels_what_it_spawned, .timeout = TEST_TIMEOUT) {
    expect_drives(each_failure((oom_case){.op = gather_op, .how = ALLOC_AT}), 3);
}

/* ---- scopes ----------------------------------------------------------------------- */

/* The table of open scopes starts with 64 slots and doubles when half full. */
#define NSCOPES 40

static int scopes_op(void *ctx) {
    (void)ctx;
    rill_scope s[NSCOPES];
    int entered = 0, rc = 0;
    for (; entered < NSCOPES; entered++) {
        errno = 0;
        rill_scope_enter(&s[entered], RILL_FOREVER);
        if (errno == 0) continue;
        rc = nomem();
        /* No effect: s is not open, the one before is still innermost. */
        expect_eq(rill_scope_exit(&s[entered]), -EINVAL);
        break;
    }
    expect_eq(rill_yield_now(), 0);
    while (entered--) expect_eq(rill_scope_exit(&s[entered]), 0);
    return rc;
}

Test(oom, scope_enter_fails_cleanly_when_the_table_of_scopes_grows, .timeout = TEST_TIMEOUT) {
    expect_drives(each_failure((oom_case){.op = scopes_op, .how = ALLOC_AT}), 2);
}

/* ---- timers: the heap of deadlines grows as they are armed --------------------------- */

static int sleep_op(void *ctx) {
    return rill_sleep(*(double *)ctx);
}

Test(oom, sleep_fails_cleanly_when_its_timer_finds_no_memory, .timeout = TEST_TIMEOUT) {
    double delay = 0.001;
    expect_drives(each_failure((oom_case){.op = sleep_op, .ctx = &delay, .how = ALLOC_AT}), 1);
}

/* A delay shorter than the time taken to read the clock still arms a timer
 * (as asyncio's sleep does): counted here by the heap it allocates. */
Test(oom, the_shortest_sleep_still_arms_its_timer, .timeout = TEST_TIMEOUT) {
    double delay = 1e-9;
    expect_drives(each_failure((oom_case){.op = sleep_op, .ctx = &delay, .how = ALLOC_AT}), 1);
}

static int deadline_op(void *ctx) {
    (void)ctx;
    rill_scope s;
    errno = 0;
    rill_scope_enter(&s, 10);
    if (errno) {
        int rc = nomem();
        /* No effect: s is not open, nothing will cancel the caller. */
        expect_eq(rill_scope_exit(&s), -EINVAL);
        expect_eq(rill_yield_now(), 0);
        return rc;
    }
    expect_eq(rill_scope_exit(&s), 0);
    return 0;
}

static int reschedule_op(void *ctx) {
    (void)ctx;
    rill_scope s;
    errno = 0;
    rill_scope_enter(&s, RILL_FOREVER);
    if (errno) return nomem();
    rill_scope_reschedule(&s, rill_now() + 0.01);
    int rc = errno ? nomem() : 0;
    int slept = rill_sleep(0.03);
    if (rc == 0) {
        expect_eq(slept, -ECANCELED);
        expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    } else { /* no effect: s still has no deadline */
        cr_assert(slept == 0 || slept == -ENOMEM, "slept: %d", slept);
        expect_eq(rill_scope_exit(&s), 0);
    }
    return rc;
}

Test(oom, a_deadline_that_finds_no_memory_for_its_timer_has_no_effect,
     .timeout = TEST_TIMEOUT) {
    /* The table of open scopes, then the timer heap. */
    expect_drives(each_failure((oom_case){.op = deadline_op, .how = ALLOC_AT}), 2);
    expect_drives(each_failure((oom_case){.op = reschedule_op, .how = ALLOC_AT}), 2);
}

/* ---- threads ---------------------------------------------------------------------------- */

static int seven(void *arg) {
    (void)arg;
    return 7;
}

static int to_thread_op(void *ctx) {
    (void)ctx;
    int rc = rill_to_thread(seven, NULL);
    return rc == 7 ? 0 : rc;
}

typedef struct owned_arg {
    int released;
} owned_arg;

static void release_arg(void *arg) { ((owned_arg *)arg)->released++; }

static int to_thread_detached_op(void *ctx) {
    (void)ctx;
    owned_arg a = {0};
    int rc = rill_to_thread_detached(seven, &a, release_arg);
    /* Any return but -ECANCELED leaves arg with the caller. */
    expect_eq(a.released, 0);
    return rc == 7 ? 0 : rc;
}

Test(oom, to_thread_fails_cleanly_for_its_handle_job_or_worker, .timeout = TEST_TIMEOUT) {
    /* The run's handle, then (first in this process) the pool's worker:
     * with no worker at all the call is -EAGAIN, as documented. */
    expect_drives(each_failure((oom_case){.op = to_thread_op, .how = ALLOC_AT, .also = -EAGAIN}),
                  2);
    /* The worker exists now: the handle, then the detached job. */
    expect_drives(each_failure((oom_case){.op = to_thread_detached_op, .how = ALLOC_AT}), 2);
}

Test(oom, to_thread_detached_fails_cleanly_before_any_worker_exists,
     .timeout = TEST_TIMEOUT) {
    expect_drives(each_failure((oom_case){.op = to_thread_detached_op, .how = ALLOC_AT,
                                          .also = -EAGAIN}),
                  3);
}

static int runtime_current_op(void *ctx) {
    (void)ctx;
    rill_runtime *h = rill_runtime_current();
    if (!h) return nomem();
    rill_runtime_release(h);
    return 0;
}

Test(oom, runtime_current_fails_cleanly, .timeout = TEST_TIMEOUT) {
    expect_drives(each_failure((oom_case){.op = runtime_current_op, .how = ALLOC_AT}), 1);
}

/* A call: records its index and, at the last, sets the event. */
typedef struct calls {
    int n, seen, order[8];
    rill_event all_ran;
    rill_runtime *h;
} calls;

typedef struct one_call {
    calls *c;
    int index;
} one_call;

static int records(void *arg) {
    one_call *o = arg;
    calls *c = o->c;
    c->order[c->seen++] = o->index;
    if (c->seen == c->n) rill_event_set(&c->all_ran);
    return 0;
}

/* A call made on the run's own thread: the call itself may find no
 * memory (-ENOMEM); once accepted it must run, even when its task finds
 * none at first (it is retried). */
static int call_op(void *ctx) {
    (void)ctx;
    calls c = {.n = 1};
    rill_event_init(&c.all_ran);
    one_call o = {&c, 0};
    rill_runtime *h = rill_runtime_current();
    if (!h) return nomem();
    int rc = rill_call_threadsafe(h, records, &o);
    if (rc == 0) {
        expect_eq(rill_event_wait(&c.all_ran), 0);
        expect_eq(c.seen, 1);
    } else {
        expect_eq(rc, -ENOMEM);
        expect_eq(rill_yield_now(), 0);
        expect_eq(c.seen, 0);
    }
    rill_runtime_release(h);
    return rc;
}

Test(oom, call_threadsafe_fails_cleanly_or_runs_once_accepted, .timeout = TEST_TIMEOUT) {
    /* The handle, the call, its task (retried: the call still runs). */
    expect_drives(each_failure((oom_case){.op = call_op, .how = ALLOC_AT}), 3);
}

static one_call sent[5];

static void *sends_five(void *arg) {
    calls *c = arg;
    for (int i = 0; i < 5; i++) {
        sent[i] = (one_call){c, i};
        if (rill_call_threadsafe(c->h, records, &sent[i]) != 0) return (void *)1;
    }
    return NULL;
}

static int calls_wait_for_memory(void *arg) {
    calls *c = arg;
    rill_event_init(&c->all_ran);
    c->h = rill_runtime_current();
    cr_assert_not_null(c->h);
    expect_eq(rill_sleep(1e-9), 0); /* the timer heap is allocated by now */
    pthread_t t;
    void *res;
    expect_eq(pthread_create(&t, NULL, sends_five, c), 0);
    expect_eq(pthread_join(t, &res), 0);
    cr_assert_null(res);
    /* Accepted; now no task can be had for them for a while. */
    rill__alloc_fail_from(1);
    expect_eq(rill_sleep(0.05), 0);
    long failures = rill__alloc_failures();
    rill__alloc_fail_at(0);
    expect_eq(c->seen, 0);
    cr_assert(failures >= 2, "tried %ld times", failures); /* retried meanwhile */
    expect_eq(rill_event_wait(&c->all_ran), 0);
    rill_runtime_release(c->h);
    return 0;
}

Test(oom, calls_from_another_thread_wait_for_memory_and_run_in_order,
     .timeout = TEST_TIMEOUT) {
    calls c = {.n = 5};
    expect_eq(rill_run(calls_wait_for_memory, &c), 0);
    expect_eq(c.seen, 5);
    for (int i = 0; i < 5; i++) expect_eq(c.order[i], i);
}

static int ran_anyway(void *arg) {
    (*(int *)arg)++;
    return 0;
}

static int ends_with_calls_and_no_memory(void *arg) {
    rill_runtime *h = rill_runtime_current();
    cr_assert_not_null(h);
    expect_eq(rill_call_threadsafe(h, ran_anyway, arg), 0);
    expect_eq(rill_call_threadsafe(h, ran_anyway, arg), 0);
    rill_runtime_release(h);
    rill__alloc_fail_from(1); /* until the run is over */
    return 0;
}

Test(oom, calls_that_never_find_memory_are_reported_when_the_run_ends,
     .timeout = TEST_TIMEOUT, .init = cr_redirect_stderr) {
    int ran = 0;
    expect_eq(rill_run(ends_with_calls_and_no_memory, &ran), 0);
    long failures = rill__alloc_failures();
    rill__alloc_fail_at(0);
    expect_eq(ran, 0);
    expect_eq(failures, 1); /* tried as the run ended, not after */
    fflush(stderr);
    cr_assert_stderr_eq_str("rill: out of memory: 2 calls from other threads could not run\n");
    /* The next run is unaffected. */
    expect_eq(rill_run(rill_test_noop, NULL), 0);
}

/* ---- files ------------------------------------------------------------------------------ */

#define LONG_LINE (200 * 1024) /* longer than the first buffer: it grows */

static char lines_path[64];

static void write_lines_file(void) {
    strcpy(lines_path, "/tmp/rill-oom-XXXXXX");
    int fd = mkstemp(lines_path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("one\ntwo\n", f);
    for (int i = 0; i < LONG_LINE; i++) fputc('x', f);
    fputs("\nlast", f);
    fclose(f);
}

static int lines_op(void *ctx) {
    (void)ctx;
    rill_gen *g = rill_file_lines(lines_path);
    if (!g) return nomem();
    int n = 0, rc;
    void *v;
    while ((rc = rill_gen_next(g, &v)) == 1) {
        const char *line = v;
        switch (n++) {
        case 0: cr_assert_str_eq(line, "one"); break;
        case 1: cr_assert_str_eq(line, "two"); break;
        case 2: expect_eq(strlen(line), LONG_LINE); break;
        default: cr_assert_str_eq(line, "last"); break;
        }
    }
    if (rc == 0) expect_eq(n, 4);
    rill_gen_free(g);
    return rc;
}

Test(oom, file_lines_fails_cleanly_when_opened_and_while_reading, .timeout = TEST_TIMEOUT) {
    write_lines_file();
    /* Its state, its generator, its buffer, the run's handle, the pool's
     * first worker (-EAGAIN), the buffer growing for the long line. */
    long failed = each_failure((oom_case){.op = lines_op, .how = ALLOC_AT, .also = -EAGAIN});
    unlink(lines_path);
    expect_drives(failed, 6);
}

/* ---- rill_run, rill_attach ---------------------------------------------------------------- */

static int sets_flag(void *arg) {
    *(int *)arg = 1;
    return 0;
}

static int run_op(void *ctx) {
    (void)ctx;
    int ran = 0;
    int rc = rill_run(sets_flag, &ran);
    expect_eq(ran, rc == 0);
    if (rc == 0) return 0;
    expect_eq(rc, -ENOMEM);
    /* Nothing is left behind on the thread: a run works at once. */
    rill__alloc_fail_at(0);
    rill__alloc_stack_fail_at(0);
    expect_eq(rill_run(rill_test_noop, NULL), 0);
    return rc;
}

Test(oom, run_fails_cleanly_without_memory_or_a_stack, .timeout = TEST_TIMEOUT) {
    /* First in this process: nothing pooled, main's stack is mapped. */
    expect_drives(each_failure((oom_case){.op = run_op, .how = MAP_FROM, .outside = true}), 1);
    /* The runtime, its signal stack, main's task. */
    expect_drives(each_failure((oom_case){.op = run_op, .how = ALLOC_AT, .outside = true}), 3);
}

static rill_gen *left_suspended;

static int leaves_a_generator_suspended(void *arg) {
    left_suspended = rill_gen_new(yields_three, arg);
    cr_assert_not_null(left_suspended);
    expect_eq(rill_gen_next(left_suspended, NULL), 1);
    rill__alloc_fail_from(1); /* until the run is over */
    return 0;
}

Test(oom, a_run_ending_without_memory_leaves_its_generators_to_their_owner,
     .timeout = TEST_TIMEOUT) {
    int cleaned = 0;
    expect_eq(rill_run(leaves_a_generator_suspended, &cleaned), 0);
    long failures = rill__alloc_failures();
    rill__alloc_fail_at(0);
    expect_eq(failures, 1); /* the task that would have closed it */
    expect_eq(cleaned, 0);
    /* Still suspended and sound: its owner closes and frees it. */
    rill_gen_free(left_suspended);
    expect_eq(cleaned, 1);
}

/* A detached job its caller gave up on, still running when main ends with
 * a generator suspended: the run must wait for the job (and release its
 * argument on its own thread) even when no task can close the generator. */
typedef struct late_job {
    atomic_int ran, released, released_elsewhere;
    pthread_t loop_thread;
    int cleaned;
} late_job;

static int runs_late(void *arg) {
    late_job *j = arg;
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(&j->ran, 1);
    return 0;
}

static void release_late(void *arg) {
    late_job *j = arg;
    if (!pthread_equal(pthread_self(), j->loop_thread)) atomic_store(&j->released_elsewhere, 1);
    atomic_fetch_add(&j->released, 1);
}

static int abandons_a_job_and_ends_without_memory(void *arg) {
    late_job *j = arg;
    j->loop_thread = pthread_self();
    /* No other task: a task struct cached would serve the closing one. */
    rill_scope s;
    rill_scope_enter(&s, 0.01); /* gives up on the job while it runs */
    expect_eq(rill_to_thread_detached(runs_late, j, release_late), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    return leaves_a_generator_suspended(&j->cleaned);
}

Test(oom, a_run_ending_without_memory_still_waits_for_its_abandoned_jobs,
     .timeout = TEST_TIMEOUT) {
    static late_job j;
    expect_eq(rill_run(abandons_a_job_and_ends_without_memory, &j), 0);
    long failures = rill__alloc_failures();
    rill__alloc_fail_at(0);
    /* The task that would have closed the generator, tried again each
     * time the run found itself idle. */
    cr_expect(failures >= 1, "%ld allocations failed", failures);
    expect_eq(atomic_load(&j.ran), 1);
    expect_eq(atomic_load(&j.released), 1);
    expect_eq(atomic_load(&j.released_elsewhere), 0);
    rill_gen_free(left_suspended);
    expect_eq(j.cleaned, 1);
}

static int attach_op(void *ctx) {
    (void)ctx;
    struct ev_loop *loop = ev_loop_new(0);
    cr_assert_not_null(loop);
    int rc = rill_attach(loop);
    if (rc == 0) {
        int ran = 0;
        rill_task *t = rill_spawn(sets_flag, &ran);
        if (t) {
            rill_detach(t);
            ev_run(loop, 0);
            expect_eq(ran, 1);
        } else {
            rc = nomem();
        }
        expect_eq(rill_detach_loop(), 0);
    } else {
        expect_eq(rc, -ENOMEM);
        cr_assert_null(rill_loop()); /* no runtime was left on the thread */
    }
    ev_loop_destroy(loop);
    return rc;
}

Test(oom, attach_fails_cleanly, .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(rill_test_noop, NULL), 0); /* ASan's log is open */
    /* The runtime, its signal stack, then a task spawned from the loop. */
    expect_drives(each_failure((oom_case){.op = attach_op, .how = ALLOC_AT, .outside = true}), 3);
}

/* ---- file descriptors -------------------------------------------------------------------- */

static int wait_fd_op(void *ctx) {
    (void)ctx;
    int p[2];
    cr_assert_eq(pipe(p), 0);
    int rc = rill_wait_fd(p[1], RILL_WRITE);
    close(p[0]);
    close(p[1]);
    return rc == RILL_WRITE ? 0 : rc;
}

Test(oom, wait_fd_fails_cleanly_when_its_tables_grow, .timeout = TEST_TIMEOUT) {
    expect_drives(each_failure((oom_case){.op = wait_fd_op, .how = ALLOC_AT}), 2);
}

/* ---- memory that never comes back ------------------------------------------------------- */

Test(oom, every_operation_fails_cleanly_when_memory_never_comes_back,
     .timeout = TEST_TIMEOUT) {
    expect_eq(rill_run(rill_test_noop, NULL), 0); /* ASan's log is open */
    write_lines_file();
    size_t bounded = 16, unbounded = RILL_UNBOUNDED;
    bool blocking = true;
    double delay = 0.001;
    /* Not rill_call_threadsafe: an accepted call waits for memory. */
    const oom_case cases[] = {
        {.op = spawn_odd},
        {.op = gen_odd},
        {.op = gen_odd, .outside = true},
        {.op = queue_new_op, .ctx = &bounded, .outside = true},
        {.op = queue_new_op, .ctx = &unbounded, .outside = true},
        {.op = queue_grow_op, .ctx = &blocking},
        {.op = as_completed_op},
        {.op = group_op},
        {.op = gather_op},
        {.op = scopes_op},
        {.op = sleep_op, .ctx = &delay},
        {.op = deadline_op},
        {.op = reschedule_op},
        {.op = to_thread_op, .also = -EAGAIN},
        {.op = to_thread_detached_op, .also = -EAGAIN},
        {.op = runtime_current_op},
        {.op = lines_op, .also = -EAGAIN},
        {.op = run_op, .outside = true},
        {.op = attach_op, .outside = true},
        {.op = wait_fd_op},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        oom_case c = cases[i];
        c.how = ALLOC_FROM;
        cr_assert(each_failure(c) >= 1, "case %zu met no failure", i);
    }
    unlink(lines_path);
}
