/* Generators: the protocol of rill.h's "Generators" section
 * (next, send, throw, close, free, foreach, RILL_GEN_AUTO), statement by
 * statement.  The adapters are tested in test_adapt.c. */
#include <pthread.h>
#include <signal.h>

#include "helpers.h"
#include "../runtime/alloc.h" /* rill__runtime_count */

/* ---- bodies shared by the tests ------------------------------------------ */

/* What a `counting` body did, for the consumer to check afterwards. */
typedef struct probe {
    int n;                  /* yields 0, 1, ..., n-1 */
    double delay;           /* sleeps this long before each value */
    bool block_in_cleanup;  /* the cleanup sleeps, unshielded then shielded */
    int cur;                /* the value lent to the consumer */
    int runs;               /* times the body started */
    int cleanups;           /* times its cleanup ("finally") ran */
    int end;                /* what ended the loop: 0, or a yield's/sleep's error */
    int cleanup_sleep;      /* the cleanup's unshielded rill_sleep */
    int cleanup_shielded;   /* the cleanup's shielded rill_sleep */
} probe;

/* async def counting(): try: for i in range(n): await sleep(delay); yield i
 *                       finally: ... */
static int counting(rill_gen *g, void *arg) {
    probe *p = arg;
    p->runs++;
    int rc = 0;
    for (int i = 0; i < p->n && rc == 0; i++) {
        if (p->delay > 0) rc = rill_sleep(p->delay);
        if (rc == 0) {
            p->cur = i;
            rc = rill_yield(g, &p->cur);
        }
    }
    p->end = rc;
    if (p->block_in_cleanup) {
        p->cleanup_sleep = rill_sleep(0.001);
        rill_scope s;
        rill_scope_enter(&s, RILL_FOREVER);
        rill_scope_shield(&s, true);
        p->cleanup_shielded = rill_sleep(0.001);
        rill_scope_exit(&s);
    }
    p->cleanups++;
    return rc; /* -EPIPE after a close is a clean end */
}

static int int_at(void *v) { return *(int *)v; }

/* ---- iteration ----------------------------------------------------------- */

FIBER_TEST(gen, countdown_yields_each_value_after_a_sleep_and_ends_with_status_zero) {
    probe p = {.n = 5, .delay = 0.01};
    rill_gen *g = rill_gen_new(counting, &p);
    cr_assert(g, "rill_gen_new: %s", strerror(errno));
    int got[8], k = 0;
    int *v;
    double t0 = rill_now();
    rill_foreach(v, g) {
        cr_assert(k < 5, "more than 5 values");
        got[k++] = *v;
    }
    double took = rill_now() - t0;
    expect_eq(k, 5);
    for (int i = 0; i < 5; i++) expect_eq(got[i], i);
    expect_eq(rill_gen_status(g), 0);
    expect_eq(p.end, 0);
    expect_eq(p.cleanups, 1);
    cr_expect(took >= 0.045 && took < 2.0, "5 values with 10 ms sleeps took %.3f s", took);
    rill_gen_free(g);
    expect_eq(p.cleanups, 1);
    return 0;
}

typedef struct consumer {
    probe p;
    int count, sum;
} consumer;

static int consume_all(void *arg) {
    consumer *c = arg;
    RILL_GEN_AUTO rill_gen *g = rill_gen_new(counting, &c->p);
    if (!g) return -errno;
    int *v;
    rill_foreach(v, g) {
        c->count++;
        c->sum += *v;
    }
    return rill_gen_status(g);
}

FIBER_TEST(gen, three_generators_consumed_by_three_tasks_sleep_at_the_same_time) {
    const double delay = 0.04;
    consumer c[3];
    rill_task *t[3];
    double t0 = rill_now();
    for (int i = 0; i < 3; i++) {
        c[i] = (consumer){.p = {.n = 3, .delay = delay}};
        t[i] = rill_spawn(consume_all, &c[i]);
        cr_assert(t[i]);
    }
    for (int i = 0; i < 3; i++) expect_eq(rill_join(t[i]), 0);
    double took = rill_now() - t0;
    for (int i = 0; i < 3; i++) {
        expect_eq(c[i].count, 3);
        expect_eq(c[i].sum, 0 + 1 + 2);
        expect_eq(c[i].p.cleanups, 1);
    }
    /* 3 values x delay each, concurrently: about 3 x delay, not 9 x. */
    cr_expect(took >= 3 * delay * 0.95 && took < 6 * delay,
              "took %.3f s: expected about %.3f s (one generator's time), not %.3f s",
              took, 3 * delay, 9 * delay);
    return 0;
}

FIBER_TEST(gen, next_returns_one_per_value_then_zero_on_every_later_call) {
    probe p = {.n = 1};
    rill_gen *g = rill_gen_new(counting, &p);
    void *v = NULL;
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert(v == &p.cur, "the value is not the pointer the body yielded");
    expect_eq(int_at(v), 0);
    expect_eq(rill_gen_next(g, NULL), 0); /* value may be NULL */
    expect_eq(rill_gen_next(g, &v), 0);
    expect_eq(rill_gen_send(g, NULL, &v), 0);
    expect_eq(rill_gen_status(g), 0);
    expect_eq(p.runs, 1);
    expect_eq(p.cleanups, 1);
    rill_gen_free(g);
    return 0;
}

static int yields_7_then_fails(rill_gen *g, void *arg) {
    int *seven = arg;
    int rc = rill_yield(g, seven);
    return rc ? rc : -EIO;
}

FIBER_TEST(gen, the_body_s_error_is_returned_once_then_the_generator_is_finished) {
    int seven = 7;
    rill_gen *g = rill_gen_new(yields_7_then_fails, &seven);
    void *v = NULL;
    expect_eq(rill_gen_status(g), 0); /* can still yield */
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(int_at(v), 7);
    expect_eq(rill_gen_status(g), 0);
    expect_eq(rill_gen_next(g, &v), -EIO);
    expect_eq(rill_gen_status(g), -EIO);
    expect_eq(rill_gen_next(g, &v), 0);
    expect_eq(rill_gen_next(g, &v), 0);
    expect_eq(rill_gen_status(g), -EIO);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(gen, foreach_stops_at_an_error_and_status_tells_it_from_an_end) {
    int seven = 7, n = 0;
    int *v;
    rill_gen *bad = rill_gen_new(yields_7_then_fails, &seven);
    rill_foreach(v, bad) n += *v;
    expect_eq(n, 7);
    expect_eq(rill_gen_status(bad), -EIO);
    rill_gen_free(bad);

    probe p = {.n = 2};
    rill_gen *good = rill_gen_new(counting, &p);
    n = 0;
    rill_foreach(v, good) n++;
    expect_eq(n, 2);
    expect_eq(rill_gen_status(good), 0);
    rill_gen_free(good);
    return 0;
}

/* ---- send ---------------------------------------------------------------- */

typedef struct acc {
    int total;
    int runs;
    bool saw_sent_after_next; /* rill_gen_sent was not NULL after a next */
} acc;

/* def running_total(): total = 0; while True: x = yield total; total += x */
static int running_total(rill_gen *g, void *arg) {
    acc *a = arg;
    a->runs++;
    for (;;) {
        int rc = rill_yield(g, &a->total);
        if (rc == -EPIPE) return 0;
        if (rc) return rc;
        int *in = rill_gen_sent(g);
        if (in) a->total += *in;
    }
}

FIBER_TEST(gen, send_hands_values_to_the_body_through_gen_sent) {
    acc a = {0};
    rill_gen *g = rill_gen_new(running_total, &a);
    void *v = NULL;
    int five = 5, seven = 7;
    expect_eq(rill_gen_send(g, NULL, &v), 1); /* start it */
    expect_eq(int_at(v), 0);
    expect_eq(rill_gen_send(g, &five, &v), 1);
    expect_eq(int_at(v), 5);
    cr_expect(rill_gen_sent(g) == &five, "rill_gen_sent is not what was sent");
    expect_eq(rill_gen_send(g, &seven, &v), 1);
    expect_eq(int_at(v), 12);
    expect_eq(rill_gen_next(g, &v), 1); /* a next sends nothing */
    expect_eq(int_at(v), 12);
    cr_expect(rill_gen_sent(g) == NULL, "rill_gen_sent is not NULL after a next");
    expect_eq(rill_gen_close(g), 0);
    expect_eq(a.runs, 1);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(gen, sending_a_value_before_the_first_resume_is_einval_and_starts_nothing) {
    acc a = {0};
    rill_gen *g = rill_gen_new(running_total, &a);
    int five = 5;
    void *v = NULL;
    expect_eq(rill_gen_send(g, &five, &v), -EINVAL);
    expect_eq(a.runs, 0);
    expect_eq(rill_gen_status(g), 0);
    expect_eq(rill_gen_send(g, NULL, &v), 1); /* still startable */
    expect_eq(int_at(v), 0);
    expect_eq(rill_gen_send(g, &five, &v), 1);
    expect_eq(int_at(v), 5);
    rill_gen_free(g);
    return 0;
}

typedef struct doubler {
    int out;
    int runs;
    bool current_was_null;
} doubler;

/* def coro(): x = yield 'ready'; while True: x = yield 2 * x */
static int doubles_what_is_sent(rill_gen *g, void *arg) {
    doubler *d = arg;
    d->runs++;
    d->current_was_null = rill_current() == NULL;
    d->out = -1; /* "ready" */
    for (;;) {
        int rc = rill_yield(g, &d->out);
        if (rc) return rc == -EPIPE ? 0 : rc;
        int *in = rill_gen_sent(g);
        d->out = in ? 2 * *in : -1;
    }
}

Test(gen, a_send_driven_coroutine_works_outside_rill_run, .timeout = TEST_TIMEOUT) {
    doubler d = {0};
    rill_gen *g = rill_gen_new(doubles_what_is_sent, &d);
    cr_assert(g, "rill_gen_new outside a runtime: %s", strerror(errno));
    void *v = NULL;
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(int_at(v), -1);
    int x = 42;
    expect_eq(rill_gen_send(g, &x, &v), 1);
    expect_eq(int_at(v), 84);
    x = 5;
    expect_eq(rill_gen_send(g, &x, &v), 1);
    expect_eq(int_at(v), 10);
    cr_expect(d.current_was_null, "rill_current() in a body driven from outside a fiber");
    expect_eq(rill_gen_close(g), 0);
    expect_eq(rill_gen_next(g, &v), 0);
    expect_eq(d.runs, 1);
    rill_gen_free(g);
}

/* ---- throw --------------------------------------------------------------- */

typedef struct catcher {
    int cur;
    int caught;   /* the error a yield returned and the body handled */
    int cleanups;
} catcher;

/* Yields 0, 1, ...; -EIO thrown in is handled (it yields 100 and goes on);
 * any other error ends the body with that error. */
static int handles_eio(rill_gen *g, void *arg) {
    catcher *c = arg;
    int rc = 0;
    for (int i = 0;; i++) {
        c->cur = i;
        rc = rill_yield(g, &c->cur);
        if (rc == -EIO) {
            c->caught = rc;
            c->cur = 100;
            rc = rill_yield(g, &c->cur);
        }
        if (rc) break;
    }
    c->cleanups++;
    return rc;
}

FIBER_TEST(gen, a_thrown_error_the_body_handles_lets_it_yield_again) {
    catcher c = {0};
    rill_gen *g = rill_gen_new(handles_eio, &c);
    void *v = NULL;
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(int_at(v), 0);
    int x = 9;
    expect_eq(rill_gen_send(g, &x, &v), 1);
    expect_eq(int_at(v), 1);
    expect_eq(rill_gen_throw(g, -EIO, &v), 1);
    expect_eq(c.caught, -EIO);
    expect_eq(int_at(v), 100);
    cr_expect(rill_gen_sent(g) == NULL, "rill_gen_sent is not NULL after a throw");
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(int_at(v), 2);
    expect_eq(rill_gen_status(g), 0);
    expect_eq(c.cleanups, 0);
    rill_gen_free(g);
    expect_eq(c.cleanups, 1);
    return 0;
}

FIBER_TEST(gen, a_thrown_error_the_body_does_not_handle_is_returned_and_ends_it) {
    catcher c = {0};
    rill_gen *g = rill_gen_new(handles_eio, &c);
    void *v = NULL;
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(rill_gen_throw(g, -ENOSPC, &v), -ENOSPC);
    expect_eq(c.cleanups, 1);
    expect_eq(rill_gen_status(g), -ENOSPC);
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    expect_eq(c.cleanups, 1);
    return 0;
}

FIBER_TEST(gen, throwing_before_the_first_resume_finishes_it_without_running_the_body) {
    probe p = {.n = 3};
    rill_gen *g = rill_gen_new(counting, &p);
    void *v = NULL;
    expect_eq(rill_gen_throw(g, -EIO, &v), -EIO);
    expect_eq(p.runs, 0);
    expect_eq(rill_gen_status(g), -EIO);
    expect_eq(rill_gen_next(g, &v), 0);
    expect_eq(p.runs, 0);
    rill_gen_free(g);
    expect_eq(p.cleanups, 0);
    return 0;
}

FIBER_TEST(gen, throwing_into_a_finished_generator_returns_the_error_and_runs_nothing) {
    probe p = {.n = 1};
    rill_gen *g = rill_gen_new(counting, &p);
    expect_eq(rill_gen_next(g, NULL), 1);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(p.cleanups, 1);
    expect_eq(rill_gen_throw(g, -EIO, NULL), -EIO);
    expect_eq(rill_gen_throw(g, -ENOSPC, NULL), -ENOSPC);
    expect_eq(rill_gen_status(g), 0); /* it ended by exhaustion */
    expect_eq(p.runs, 1);
    expect_eq(p.cleanups, 1);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(gen, throwing_a_non_negative_value_is_einval_and_leaves_the_generator_alone) {
    probe p = {.n = 3};
    rill_gen *g = rill_gen_new(counting, &p);
    void *v = NULL;
    expect_eq(rill_gen_throw(g, 0, &v), -EINVAL);
    expect_eq(p.runs, 0);
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(rill_gen_throw(g, 0, &v), -EINVAL);
    expect_eq(rill_gen_throw(g, EIO, &v), -EINVAL);
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(int_at(v), 1);
    expect_eq(p.end, 0);
    rill_gen_free(g);
    return 0;
}

/* ---- close and cleanup --------------------------------------------------- */

FIBER_TEST(gen, close_delivers_epipe_at_the_suspended_yield_and_runs_the_cleanup) {
    probe p = {.n = 5};
    rill_gen *g = rill_gen_new(counting, &p);
    void *v = NULL;
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(p.cleanups, 0);
    expect_eq(rill_gen_close(g), 0); /* the body returned -EPIPE: a clean end */
    expect_eq(p.end, -EPIPE);
    expect_eq(p.cleanups, 1);
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    expect_eq(p.cleanups, 1);
    return 0;
}

FIBER_TEST(gen, closing_twice_runs_the_cleanup_once_and_returns_zero_both_times) {
    probe p = {.n = 5};
    rill_gen *g = rill_gen_new(counting, &p);
    expect_eq(rill_gen_next(g, NULL), 1);
    expect_eq(rill_gen_close(g), 0);
    expect_eq(rill_gen_close(g), 0);
    expect_eq(p.cleanups, 1);
    expect_eq(p.runs, 1);
    rill_gen_free(g);
    expect_eq(p.cleanups, 1);
    return 0;
}

static int cleanup_fails(rill_gen *g, void *arg) {
    (void)arg;
    int rc = rill_yield(g, NULL);
    return rc == -EPIPE ? -EIO : rc;
}

FIBER_TEST(gen, close_returns_the_error_of_a_failing_cleanup) {
    rill_gen *g = rill_gen_new(cleanup_fails, NULL);
    expect_eq(rill_gen_next(g, NULL), 1);
    expect_eq(rill_gen_close(g), -EIO);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(rill_gen_close(g), 0);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(gen, closing_a_generator_never_started_runs_neither_body_nor_cleanup) {
    probe p = {.n = 3};
    rill_gen *g = rill_gen_new(counting, &p);
    expect_eq(rill_gen_close(g), 0);
    expect_eq(p.runs, 0);
    expect_eq(p.cleanups, 0);
    expect_eq(rill_gen_next(g, NULL), 0); /* finished */
    expect_eq(p.runs, 0);
    rill_gen_free(g);
    expect_eq(p.cleanups, 0);
    return 0;
}

FIBER_TEST(gen, freeing_a_generator_never_started_runs_neither_body_nor_cleanup) {
    probe p = {.n = 3};
    rill_gen *g = rill_gen_new(counting, &p);
    rill_gen_free(g);
    expect_eq(p.runs, 0);
    expect_eq(p.cleanups, 0);
    return 0;
}

FIBER_TEST(gen, freeing_a_suspended_generator_runs_its_cleanup_once) {
    probe p = {.n = 5};
    rill_gen *g = rill_gen_new(counting, &p);
    expect_eq(rill_gen_next(g, NULL), 1);
    expect_eq(rill_gen_next(g, NULL), 1);
    rill_gen_free(g);
    expect_eq(p.end, -EPIPE);
    expect_eq(p.cleanups, 1);
    return 0;
}

FIBER_TEST(gen, gen_auto_closes_and_frees_at_the_end_of_its_block) {
    probe p = {.n = 5};
    {
        RILL_GEN_AUTO rill_gen *g = rill_gen_new(counting, &p);
        expect_eq(rill_gen_next(g, NULL), 1);
        expect_eq(p.cleanups, 0);
    }
    expect_eq(p.end, -EPIPE);
    expect_eq(p.cleanups, 1);
    {
        RILL_GEN_AUTO rill_gen *none = NULL; /* nothing to free */
        (void)none;
    }
    return 0;
}

/* Leaves through a `return` from inside rill_foreach. */
static int first_value_over(probe *p, int limit) {
    RILL_GEN_AUTO rill_gen *g = rill_gen_new(counting, p);
    int *v;
    rill_foreach(v, g) {
        if (*v > limit) return *v;
    }
    return -1;
}

FIBER_TEST(gen, gen_auto_runs_the_cleanup_on_a_return_from_inside_foreach) {
    probe p = {.n = 10};
    expect_eq(first_value_over(&p, 2), 3);
    expect_eq(p.end, -EPIPE);
    expect_eq(p.cleanups, 1);
    return 0;
}

/* The seed's "only iterate twice, then the finally block runs". */
FIBER_TEST(gen, breaking_out_of_foreach_leaves_it_suspended_and_free_runs_the_cleanup_once) {
    probe p = {.n = 5, .delay = 0.001};
    rill_gen *g = rill_gen_new(counting, &p);
    int seen[5], k = 0;
    int *v;
    rill_foreach(v, g) {
        seen[k++] = *v;
        if (k == 2) break;
    }
    expect_eq(k, 2);
    expect_eq(seen[0], 0);
    expect_eq(seen[1], 1);
    expect_eq(p.cleanups, 0); /* suspended, not closed, by the break */
    expect_eq(rill_gen_status(g), 0);
    rill_gen_free(g);
    expect_eq(p.end, -EPIPE);
    expect_eq(p.cleanups, 1);
    return 0;
}

typedef struct holder {
    probe p;
    rill_gen *g;
    int next_rc;
    int sleep_rc;
    int cleanups_before_free;
    bool free_it;
} holder;

/* Takes a value, then waits (outside next) until cancelled; frees the
 * generator on the way out unless told to leave it. */
static int holds_a_generator(void *arg) {
    holder *h = arg;
    h->g = rill_gen_new(counting, &h->p);
    if (!h->g) return -errno;
    h->next_rc = rill_gen_next(h->g, NULL);
    h->sleep_rc = rill_sleep(RILL_FOREVER);
    h->cleanups_before_free = h->p.cleanups;
    if (h->free_it) {
        rill_gen_free(h->g);
        h->g = NULL;
    }
    return h->sleep_rc;
}

FIBER_TEST(gen, a_cancelled_consumer_that_frees_its_generator_runs_the_cleanup_cancelled) {
    holder h = {.p = {.n = 5, .block_in_cleanup = true}, .free_it = true};
    rill_task *t = rill_spawn(holds_a_generator, &h);
    expect_eq(rill_sleep(0.01), 0);
    expect_eq(h.next_rc, 1);
    expect_eq(rill_cancel(t), 1);
    expect_eq(rill_join(t), -ECANCELED);
    expect_eq(h.cleanups_before_free, 0);
    expect_eq(h.p.end, -EPIPE);
    expect_eq(h.p.cleanups, 1);
    expect_eq(h.p.cleanup_sleep, -ECANCELED); /* under the closer's cancellation */
    expect_eq(h.p.cleanup_shielded, 0);
    return 0;
}

static int consumes_once(void *arg) {
    holder *h = arg;
    RILL_GEN_AUTO rill_gen *g = rill_gen_new(counting, &h->p);
    h->next_rc = rill_gen_next(g, NULL); /* the body sleeps: cancelled there */
    h->cleanups_before_free = h->p.cleanups;
    return h->next_rc;
}

FIBER_TEST(gen, a_consumer_cancelled_inside_next_gets_the_body_s_error_and_one_cleanup) {
    holder h = {.p = {.n = 5, .delay = 10, .block_in_cleanup = true}};
    rill_task *t = rill_spawn(consumes_once, &h);
    expect_eq(rill_sleep(0.01), 0);
    double t0 = rill_now();
    expect_eq(rill_cancel(t), 1);
    expect_eq(rill_join(t), -ECANCELED);
    cr_expect(rill_now() - t0 < 2.0, "the body's sleep was not cut");
    expect_eq(h.next_rc, -ECANCELED);
    expect_eq(h.p.end, -ECANCELED);
    expect_eq(h.cleanups_before_free, 1); /* the body ended itself */
    expect_eq(h.p.cleanups, 1);           /* and RILL_GEN_AUTO ran nothing more */
    expect_eq(h.p.cleanup_sleep, -ECANCELED);
    expect_eq(h.p.cleanup_shielded, 0);
    return 0;
}

static int leaves_a_holder_behind(void *arg) {
    rill_task *t = rill_spawn(holds_a_generator, arg);
    if (!t) return -errno;
    rill_detach(t);
    return rill_sleep(0.01); /* the holder takes its value and waits */
}

Test(gen, a_cancelled_consumer_that_keeps_its_generator_leaves_it_to_rill_run_s_shutdown,
     .timeout = TEST_TIMEOUT) {
    holder h = {.p = {.n = 5, .block_in_cleanup = true}, .free_it = false};
    expect_eq(rill_run(leaves_a_holder_behind, &h), 0);
    expect_eq(h.next_rc, 1);
    expect_eq(h.sleep_rc, -ECANCELED);
    expect_eq(h.cleanups_before_free, 0);
    expect_eq(h.p.end, -EPIPE);
    expect_eq(h.p.cleanups, 1);
    expect_eq(h.p.cleanup_sleep, -ECANCELED);
    expect_eq(h.p.cleanup_shielded, 0);
    cr_assert(h.g, "the struct must stay until rill_gen_free");
    expect_eq(rill_gen_next(h.g, NULL), 0);
    rill_gen_free(h.g);
    expect_eq(h.p.cleanups, 1);
}

static int main_leaves_a_generator_suspended(void *arg) {
    holder *h = arg;
    h->g = rill_gen_new(counting, &h->p);
    if (!h->g) return -errno;
    h->next_rc = rill_gen_next(h->g, NULL);
    return 0;
}

Test(gen, a_generator_left_suspended_when_main_returns_is_closed_with_blocking_cancelled,
     .timeout = TEST_TIMEOUT) {
    holder h = {.p = {.n = 5, .block_in_cleanup = true}};
    expect_eq(rill_run(main_leaves_a_generator_suspended, &h), 0);
    expect_eq(h.next_rc, 1);
    expect_eq(h.p.end, -EPIPE);
    expect_eq(h.p.cleanups, 1);
    expect_eq(h.p.cleanup_sleep, -ECANCELED);
    expect_eq(h.p.cleanup_shielded, 0);
    expect_eq(rill_gen_status(h.g), 0);
    rill_gen_free(h.g);
    expect_eq(h.p.cleanups, 1);
}

typedef struct stubborn {
    int yields_after_close;
    bool returned;
} stubborn;

/* Ignores GeneratorExit and keeps yielding: a bug the runtime must survive. */
static int ignores_close(rill_gen *g, void *arg) {
    stubborn *s = arg;
    bool closed = false;
    for (;;) {
        if (closed) s->yields_after_close++;
        if (rill_yield(g, NULL) == -EPIPE) closed = true;
        if (s->yields_after_close > 3) break; /* never reached if abandoned */
    }
    s->returned = true;
    return 0;
}

FIBER_TEST(gen, yielding_after_epipe_makes_close_return_eproto_and_finishes_it) {
    stubborn s = {0};
    rill_gen *g = rill_gen_new(ignores_close, &s);
    expect_eq(rill_gen_next(g, NULL), 1);
    double t0 = rill_now();
    expect_eq(rill_gen_close(g), -EPROTO);
    cr_expect(rill_now() - t0 < 1.0);
    expect_eq(s.yields_after_close, 1);
    cr_expect(!s.returned, "the body went on after its yield after -EPIPE");
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(rill_gen_close(g), 0);
    expect_eq(s.yields_after_close, 1);
    rill_gen_free(g);
    expect_eq(s.yields_after_close, 1);
    return 0;
}

FIBER_TEST(gen, a_cleanup_run_by_a_cancelled_closer_gets_ecanceled_unless_shielded) {
    /* Not cancelled: both of the cleanup's sleeps complete. */
    probe calm = {.n = 3, .block_in_cleanup = true};
    rill_gen *g = rill_gen_new(counting, &calm);
    expect_eq(rill_gen_next(g, NULL), 1);
    expect_eq(rill_gen_close(g), 0);
    expect_eq(calm.cleanup_sleep, 0);
    expect_eq(calm.cleanup_shielded, 0);
    rill_gen_free(g);

    /* Cancelled: only the shielded one does. */
    probe p = {.n = 3, .block_in_cleanup = true};
    g = rill_gen_new(counting, &p);
    expect_eq(rill_gen_next(g, NULL), 1);
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_cancel(&s);
    expect_eq(rill_gen_close(g), 0);
    expect_eq(rill_scope_exit(&s), -ECANCELED);
    expect_eq(p.end, -EPIPE);
    expect_eq(p.cleanups, 1);
    expect_eq(p.cleanup_sleep, -ECANCELED);
    expect_eq(p.cleanup_shielded, 0);
    rill_gen_free(g);
    expect_eq(p.cleanups, 1);
    return 0;
}

/* ---- cancellation reaches the body --------------------------------------- */

FIBER_TEST(gen, a_timeout_around_next_cancels_a_sleep_in_the_body) {
    probe p = {.n = 3, .delay = 10};
    rill_gen *g = rill_gen_new(counting, &p);
    rill_scope s;
    double t0 = rill_now();
    rill_scope_enter(&s, 0.03);
    expect_eq(rill_gen_next(g, NULL), -ECANCELED);
    double took = rill_now() - t0;
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    cr_expect(took >= 0.025 && took < 2.0, "the body's 10 s sleep was cut after %.3f s", took);
    expect_eq(p.end, -ECANCELED);
    expect_eq(p.cleanups, 1);
    expect_eq(rill_gen_status(g), -ECANCELED);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(rill_sleep(0.001), 0); /* nothing left cancelled */
    rill_gen_free(g);
    return 0;
}

/* ---- nesting, groups, tasks ----------------------------------------------- */

typedef struct chain_link {
    const char *name;
    rill_gen *src;  /* NULL: the innermost, which counts 0, 1, ... */
    char *log;      /* cleanups append "X>" on entry and "X<" on exit */
    int cur;
} chain_link;

static void log_append(char *log, const char *name, char what) {
    size_t n = strlen(log);
    log[n] = name[0];
    log[n + 1] = what;
    log[n + 2] = 0;
}

/* The innermost yields 0, 1, ... after a short sleep; each outer one yields
 * its source's values plus one.  Each closes (frees) its source in its
 * cleanup, as `async with aclosing(src)` would. */
static int chained(rill_gen *g, void *arg) {
    chain_link *l = arg;
    int rc = 0;
    for (int i = 0; rc == 0; i++) {
        if (l->src) {
            void *v;
            rc = rill_gen_next(l->src, &v);
            if (rc != 1) break;
            l->cur = int_at(v) + 1;
        } else {
            rc = rill_sleep(0.001);
            if (rc) break;
            l->cur = i;
        }
        rc = rill_yield(g, &l->cur);
    }
    log_append(l->log, l->name, '>');
    rill_gen_free(l->src);
    l->src = NULL;
    log_append(l->log, l->name, '<');
    return rc;
}

FIBER_TEST(gen, closing_three_nested_generators_runs_their_three_cleanups_in_order) {
    char log[32] = "";
    chain_link a = {.name = "a", .log = log};
    chain_link b = {.name = "b", .log = log};
    chain_link c = {.name = "c", .log = log};
    b.src = rill_gen_new(chained, &a);
    c.src = rill_gen_new(chained, &b);
    rill_gen *top = rill_gen_new(chained, &c);
    void *v = NULL;
    expect_eq(rill_gen_next(top, &v), 1);
    expect_eq(int_at(v), 0 + 2); /* a yields 0, b adds one, c adds one */
    expect_eq(rill_gen_next(top, &v), 1);
    expect_eq(int_at(v), 1 + 2);
    expect_eq(strlen(log), 0);
    expect_eq(rill_gen_close(top), 0);
    cr_expect_str_eq(log, "c>b>a>a<b<c<");
    rill_gen_free(top);
    cr_expect_str_eq(log, "c>b>a>a<b<c<");
    return 0;
}

typedef struct grouped {
    int done;
    int wait_rc;
    int cur;
} grouped;

static int child_counts(void *arg) {
    grouped *s = arg;
    int rc = rill_sleep(0.005);
    if (rc == 0) s->done++;
    return rc;
}

static int runs_a_group(rill_gen *g, void *arg) {
    grouped *s = arg;
    rill_group grp;
    rill_group_init(&grp);
    for (int i = 0; i < 3; i++) {
        int rc = rill_group_spawn(&grp, child_counts, s);
        if (rc) {
            rill_group_cancel(&grp);
            rill_group_wait(&grp);
            return rc;
        }
    }
    s->wait_rc = rill_group_wait(&grp);
    s->cur = s->done;
    int rc = rill_yield(g, &s->cur);
    return rc == -EPIPE ? 0 : rc;
}

FIBER_TEST(gen, a_body_can_spawn_a_task_group_and_wait_for_it) {
    grouped s = {.wait_rc = 1};
    rill_gen *g = rill_gen_new(runs_a_group, &s);
    void *v = NULL;
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(s.wait_rc, 0);
    expect_eq(int_at(v), 3);
    expect_eq(rill_gen_next(g, &v), 0);
    expect_eq(rill_gen_status(g), 0);
    rill_gen_free(g);
    return 0;
}

typedef struct intruder {
    rill_gen *g;
    probe *p;
    int next_rc, send_rc, throw_rc, close_rc, free_errno;
    int cleanups_after_free;
    bool ran;
} intruder;

static int intrudes(void *arg) {
    intruder *in = arg;
    in->ran = true;
    in->next_rc = rill_gen_next(in->g, NULL);
    in->send_rc = rill_gen_send(in->g, NULL, NULL);
    in->throw_rc = rill_gen_throw(in->g, -EIO, NULL);
    in->close_rc = rill_gen_close(in->g);
    errno = 0;
    rill_gen_free(in->g);
    in->free_errno = errno;
    in->cleanups_after_free = in->p->cleanups;
    return 0;
}

FIBER_TEST(gen, resuming_a_generator_whose_body_blocks_for_another_task_is_ebusy) {
    probe p = {.n = 3, .delay = 0.03};
    rill_gen *g = rill_gen_new(counting, &p);
    intruder in = {.g = g, .p = &p};
    rill_task *t = rill_spawn(intrudes, &in); /* runs while the body sleeps */
    void *v = NULL;
    double t0 = rill_now();
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert(in.ran, "the other task did not run while the body slept");
    expect_eq(in.next_rc, -EBUSY);
    expect_eq(in.send_rc, -EBUSY);
    expect_eq(in.throw_rc, -EBUSY);
    expect_eq(in.close_rc, -EBUSY);
    expect_eq(in.free_errno, EBUSY);
    expect_eq(in.cleanups_after_free, 0);
    cr_expect(rill_now() - t0 < 1.0, "the -EBUSY calls waited");
    /* Nothing was disturbed. */
    expect_eq(int_at(v), 0);
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(int_at(v), 1);
    expect_eq(p.end, 0);
    expect_eq(rill_join(t), 0);
    rill_gen_free(g);
    expect_eq(p.cleanups, 1);
    return 0;
}

typedef struct selfish {
    int rc[5];
    int free_errno;
} selfish;

static int resumes_itself(rill_gen *g, void *arg) {
    selfish *s = arg;
    s->rc[0] = rill_gen_next(g, NULL);
    s->rc[1] = rill_gen_send(g, NULL, NULL);
    s->rc[2] = rill_gen_throw(g, -EIO, NULL);
    s->rc[3] = rill_gen_close(g);
    errno = 0;
    rill_gen_free(g);
    s->free_errno = errno;
    s->rc[4] = rill_yield(g, s);
    return s->rc[4] == -EPIPE ? 0 : s->rc[4];
}

FIBER_TEST(gen, a_body_resuming_its_own_generator_gets_ebusy) {
    selfish s = {.free_errno = 0};
    rill_gen *g = rill_gen_new(resumes_itself, &s);
    void *v = NULL;
    expect_eq(rill_gen_next(g, &v), 1);
    cr_expect(v == &s);
    for (int i = 0; i < 4; i++) expect_eq(s.rc[i], -EBUSY);
    expect_eq(s.free_errno, EBUSY);
    expect_eq(rill_gen_next(g, &v), 0);
    expect_eq(s.rc[4], 0);
    rill_gen_free(g);
    return 0;
}

typedef struct wrong {
    rill_gen *other;
    int rc;
} wrong;

/* Yields through another generator's handle, then through its own. */
static int yields_as_another(rill_gen *g, void *arg) {
    wrong *w = arg;
    w->rc = rill_yield(w->other, w);
    int rc = rill_yield(g, &w->rc);
    return rc == -EPIPE ? 0 : rc;
}

FIBER_TEST(gen, rill_yield_outside_its_body_or_for_another_generator_is_einval) {
    probe p = {.n = 3};
    rill_gen *g = rill_gen_new(counting, &p);
    expect_eq(rill_yield(g, NULL), -EINVAL); /* not started, from main */
    expect_eq(rill_gen_next(g, NULL), 1);
    expect_eq(rill_yield(g, NULL), -EINVAL); /* suspended, from main */
    expect_eq(rill_yield(NULL, NULL), -EINVAL);

    wrong w = {.other = g, .rc = 1};
    rill_gen *h = rill_gen_new(yields_as_another, &w);
    void *v = NULL;
    expect_eq(rill_gen_next(h, &v), 1);
    expect_eq(int_at(v), -EINVAL);

    /* g was not disturbed. */
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(int_at(v), 1);
    rill_gen_free(h);
    rill_gen_free(g);
    expect_eq(p.cleanups, 1);
    return 0;
}

typedef struct who {
    rill_task *seen[4];
    char name[4][32];
    int k;
} who;

static int records_current(rill_gen *g, void *arg) {
    who *w = arg;
    for (;;) {
        w->seen[w->k] = rill_current();
        snprintf(w->name[w->k], sizeof w->name[0], "%s", rill_task_name(rill_current()));
        w->k++;
        int rc = rill_yield(g, NULL);
        if (rc || w->k == 4) return rc == -EPIPE ? 0 : rc;
    }
}

typedef struct borrower {
    rill_gen *g;
    rill_task *self;
} borrower;

static int resumes_once(void *arg) {
    borrower *b = arg;
    b->self = rill_current();
    return rill_gen_next(b->g, NULL) == 1 ? 0 : -EIO;
}

FIBER_TEST(gen, rill_current_in_a_body_is_the_task_that_resumed_it) {
    who w = {.k = 0};
    rill_gen *g = rill_gen_new(records_current, &w);
    expect_eq(rill_gen_next(g, NULL), 1);
    borrower b = {.g = g};
    rill_task *t = rill_spawn_opts(resumes_once, &b, &(rill_opts){.name = "borrower"});
    expect_eq(rill_join(t), 0);
    expect_eq(rill_gen_next(g, NULL), 1);
    expect_eq(w.k, 3);
    cr_expect(w.seen[0] == rill_current(), "first resume: not main");
    cr_expect_str_eq(w.name[0], "main");
    cr_expect(w.seen[1] == b.self, "second resume: not the borrower");
    cr_expect_str_eq(w.name[1], "borrower");
    cr_expect(w.seen[2] == rill_current(), "third resume: not main");
    rill_gen_free(g);
    return 0;
}

/* ---- rill_dump and deadlocks ---------------------------------------------- */

static int resumes_a_ticker(void *arg) {
    probe *p = arg;
    RILL_GEN_AUTO rill_gen *g =
        rill_gen_new_opts(counting, p, &(rill_opts){.name = "ticker"});
    if (!g) return -errno;
    return rill_gen_next(g, NULL);
}

FIBER_TEST(gen, dump_shows_the_consumer_then_its_generator_and_what_that_blocks_on) {
    probe p = {.n = 3, .delay = 10};
    rill_task *t = rill_spawn_opts(resumes_a_ticker, &p, &(rill_opts){.name = "consumer"});
    expect_eq(rill_sleep(0.01), 0);
    char buf[2048] = {0};
    FILE *out = fmemopen(buf, sizeof buf - 1, "w");
    cr_assert(out);
    rill_dump(out);
    fclose(out);
    cr_expect(strstr(buf, "'consumer' blocked -> 'ticker' blocked on sleep"), "dump:\n%s", buf);
    expect_eq(rill_cancel(t), 1);
    expect_eq(rill_join(t), -ECANCELED);
    expect_eq(p.cleanups, 1);
    return 0;
}

typedef struct stuck {
    int next_rc;
    int body_rc;
} stuck;

static int sleeps_forever_in_body(rill_gen *g, void *arg) {
    stuck *s = arg;
    s->body_rc = rill_sleep(RILL_FOREVER);
    if (s->body_rc) return s->body_rc;
    return rill_yield(g, NULL);
}

static int consumes_a_stuck_generator(void *arg) {
    stuck *s = arg;
    rill_gen *g = rill_gen_new_opts(sleeps_forever_in_body, s, &(rill_opts){.name = "stuck"});
    if (!g) return -errno;
    s->next_rc = rill_gen_next(g, NULL);
    rill_gen_free(g);
    return 0;
}

Test(gen, a_deadlock_inside_a_body_is_reported_with_edeadlk_and_does_not_hang,
     .timeout = TEST_TIMEOUT) {
    cr_redirect_stderr();
    stuck s = {.next_rc = 1, .body_rc = 1};
    expect_eq(rill_run(consumes_a_stuck_generator, &s), -EDEADLK);
    expect_eq(s.body_rc, -EDEADLK);
    expect_eq(s.next_rc, -EDEADLK);
    fflush(stderr);
    char buf[4096] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, cr_get_redirected_stderr());
    buf[n] = 0;
    cr_expect(strstr(buf, "rill: deadlock"), "stderr:\n%s", buf);
    cr_expect(strstr(buf, "'main' blocked -> 'stuck' blocked on sleep"), "stderr:\n%s", buf);
}

/* ---- outside rill_run ------------------------------------------------------ */

typedef struct sleepy {
    int sleep_rc[8];
    int yield_now_rc[8];
    int k;
    int cleanups;
} sleepy;

/* Yields 0, 1, ...; before each, tries to block and records the results. */
static int tries_to_block(rill_gen *g, void *arg) {
    sleepy *s = arg;
    int rc = 0;
    while (rc == 0 && s->k < 8) {
        s->sleep_rc[s->k] = rill_sleep(0.001);
        s->yield_now_rc[s->k] = rill_yield_now();
        s->k++;
        rc = rill_yield(g, &s->k);
    }
    s->cleanups++;
    return rc;
}

Test(gen, a_blocking_call_in_a_body_driven_outside_rill_run_returns_eperm,
     .timeout = TEST_TIMEOUT) {
    sleepy s = {.k = 0};
    rill_gen *g = rill_gen_new(tries_to_block, &s);
    void *v = NULL;
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(int_at(v), 1);
    expect_eq(s.sleep_rc[0], -EPERM);
    expect_eq(s.yield_now_rc[0], -EPERM);
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(s.sleep_rc[1], -EPERM);
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
}

typedef struct handover {
    rill_gen *g;      /* started before rill_run, advanced inside and after */
    rill_gen *first;  /* made before rill_run, first resumed inside it */
    rill_gen *late;   /* made before rill_run, first used after it */
    rill_gen *inner;  /* made inside rill_run, first used after it */
    sleepy s, first_s, late_s, inner_s;
    int inside_next, inside_value, first_next;
} handover;

static int advances_outside_generators(void *arg) {
    handover *h = arg;
    void *v = NULL;
    h->inside_next = rill_gen_next(h->g, &v);
    if (h->inside_next == 1) h->inside_value = int_at(v);
    h->first_next = rill_gen_next(h->first, NULL);
    h->inner = rill_gen_new(tries_to_block, &h->inner_s);
    return h->inner ? 0 : -errno;
}

Test(gen, generators_made_outside_rill_run_work_inside_a_later_one_and_after_it,
     .timeout = TEST_TIMEOUT) {
    handover h = {0};
    h.g = rill_gen_new(tries_to_block, &h.s);
    h.first = rill_gen_new(tries_to_block, &h.first_s);
    h.late = rill_gen_new(tries_to_block, &h.late_s);
    cr_assert(h.g && h.first && h.late);
    void *v = NULL;
    expect_eq(rill_gen_next(h.g, &v), 1);
    expect_eq(int_at(v), 1);
    expect_eq(h.s.sleep_rc[0], -EPERM);

    expect_eq(rill_run(advances_outside_generators, &h), 0);
    expect_eq(h.inside_next, 1);
    expect_eq(h.inside_value, 2);
    expect_eq(h.s.sleep_rc[1], 0); /* inside a runtime the body can block */
    expect_eq(h.s.yield_now_rc[1], 0);
    /* Started outside: not the run's to close; it goes on after it. */
    expect_eq(h.s.cleanups, 0);
    expect_eq(rill_gen_next(h.g, &v), 1);
    expect_eq(int_at(v), 3);
    expect_eq(h.s.sleep_rc[2], -EPERM);

    /* First resumed during the run, left suspended: closed at its end. */
    expect_eq(h.first_next, 1);
    expect_eq(h.first_s.cleanups, 1);
    expect_eq(rill_gen_next(h.first, &v), 0);

    /* Never started during rill_run: usable after it, outside. */
    expect_eq(rill_gen_next(h.late, &v), 1);
    expect_eq(int_at(v), 1);
    expect_eq(h.late_s.sleep_rc[0], -EPERM);
    expect_eq(rill_gen_next(h.late, &v), 1);
    expect_eq(int_at(v), 2);
    cr_assert(h.inner);
    expect_eq(rill_gen_next(h.inner, &v), 1);
    expect_eq(h.inner_s.sleep_rc[0], -EPERM);

    rill_gen_free(h.g);
    rill_gen_free(h.first);
    rill_gen_free(h.late);
    rill_gen_free(h.inner);
    expect_eq(h.s.cleanups, 1);
    expect_eq(h.first_s.cleanups, 1);
    expect_eq(h.late_s.cleanups, 1);
    expect_eq(h.inner_s.cleanups, 1);
    /* The runtime they kept is gone with the last one: a new run works. */
    expect_eq(rill_run(rill_test_noop, NULL), 0);
}

/* ---- scale, names, misuse ------------------------------------------------ */

static int marks_its_slot(rill_gen *g, void *arg) {
    int *slot = arg;
    int rc = rill_yield(g, slot);
    *slot = -1; /* the cleanup ran */
    return rc;
}

FIBER_TEST(gen, a_hundred_thousand_suspended_generators_each_advanced_once_then_freed,
           .init = cr_redirect_stderr) {
    int n = under_valgrind() ? 2000 : 100000;
    rill_gen **g = malloc(sizeof *g * (size_t)n);
    int *slot = malloc(sizeof *slot * (size_t)n);
    cr_assert(g && slot);
    for (int i = 0; i < n; i++) {
        slot[i] = i;
        g[i] = rill_gen_new_opts(marks_its_slot, &slot[i], &(rill_opts){.stack_size = 16 * 1024});
        cr_assert(g[i], "rill_gen_new %d failed: %s", i, strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        void *v = NULL;
        int rc = rill_gen_next(g[i], &v);
        if (rc != 1 || v != &slot[i]) { /* assert only on failure: n is large */
            expect_eq(rc, 1);
            cr_assert(v == &slot[i], "generator %d lent the wrong value", i);
        }
    }
    for (int i = 0; i < n; i++) {
        if (slot[i] != i) expect_eq(slot[i], i); /* still suspended */
        rill_gen_free(g[i]);
        if (slot[i] != -1) expect_eq(slot[i], -1);
    }
    free(g);
    free(slot);
    return 0;
}

FIBER_TEST(gen, the_name_is_gen_n_by_default_and_the_one_given_otherwise) {
    probe p = {.n = 1};
    rill_gen *a = rill_gen_new(counting, &p);
    cr_expect(strncmp(rill_gen_name(a), "gen-", 4) == 0, "default name '%s'", rill_gen_name(a));
    char name[] = "reader";
    rill_gen *b = rill_gen_new_opts(counting, &p, &(rill_opts){.name = name});
    name[0] = 'X'; /* copied */
    cr_expect_str_eq(rill_gen_name(b), "reader");
    rill_gen *c = rill_gen_new_opts(
        counting, &p, &(rill_opts){.name = "a-name-that-is-longer-than-thirty-one-bytes"});
    expect_eq(strlen(rill_gen_name(c)), 31);
    cr_expect(strncmp(rill_gen_name(c), "a-name-that-is-longer-than-thirty", 31) == 0);
    rill_gen_free(a);
    rill_gen_free(b);
    rill_gen_free(c);
    return 0;
}

/* Every call with NULL or a bad value: rejected, inside a runtime or not. */
static void misuse_is_rejected(void) {
    errno = 0;
    cr_expect(rill_gen_new(NULL, NULL) == NULL);
    expect_eq(errno, EINVAL);
    errno = 0;
    cr_expect(rill_gen_new_opts(NULL, NULL, NULL) == NULL);
    expect_eq(errno, EINVAL);
    errno = 0;
    cr_expect(rill_gen_new_opts(counting, NULL, &(rill_opts){.stack_size = (size_t)2 << 30}) ==
              NULL);
    expect_eq(errno, EINVAL);
    void *v = &v;
    expect_eq(rill_gen_next(NULL, &v), -EINVAL);
    expect_eq(rill_gen_send(NULL, NULL, &v), -EINVAL);
    expect_eq(rill_gen_throw(NULL, -EIO, &v), -EINVAL);
    expect_eq(rill_gen_close(NULL), -EINVAL);
    expect_eq(rill_yield(NULL, NULL), -EINVAL);
    cr_expect(v == &v, "a rejected call wrote *value");
    cr_expect(rill_gen_sent(NULL) == NULL);
    expect_eq(rill_gen_status(NULL), -EINVAL);
    cr_expect(rill_gen_name(NULL) != NULL);
    rill_gen_free(NULL);     /* no effect */
    rill__gen_autofree(NULL);
    int *p;
    int n = 0;
    rill_foreach(p, (rill_gen *)NULL) n += *p;
    expect_eq(n, 0);
    /* The options may be NULL. */
    probe pr = {.n = 1};
    rill_gen *g = rill_gen_new_opts(counting, &pr, NULL);
    cr_assert(g);
    expect_eq(rill_yield(g, NULL), -EINVAL); /* not from its body */
    expect_eq(rill_gen_next(g, NULL), 1);
    rill_gen_free(g);
}

FIBER_TEST(gen, null_and_bad_arguments_are_rejected_inside_a_runtime) {
    misuse_is_rejected();
    expect_eq(rill_yield_now(), 0);
    return 0;
}

Test(gen, null_and_bad_arguments_are_rejected_outside_a_runtime, .timeout = TEST_TIMEOUT) {
    misuse_is_rejected();
    expect_eq(rill_run(rill_test_noop, NULL), 0);
}

/* ---- regressions ------------------------------------------------------------------ */

static int sleeps_in_a_child(void *arg) {
    (void)arg;
    return rill_sleep(0.05);
}

static int yields_again_with_a_group(rill_gen *g, void *arg) {
    (void)arg;
    rill_group grp;
    rill_group_init(&grp);
    rill_group_spawn(&grp, sleeps_in_a_child, NULL);
    while (rill_yield(g, NULL) == -EPIPE) {
        /* ignores GeneratorExit, with a child running on this stack */
    }
    return 0;
}

static int closes_a_stubborn_generator(void *arg) {
    rill_gen *g = rill_gen_new_opts(yields_again_with_a_group, NULL, &(rill_opts){.name = arg});
    rill_gen_next(g, NULL);
    return rill_gen_close(g);
}

Test(gen, yielding_after_close_with_a_group_still_running_aborts_with_a_message,
     .timeout = TEST_TIMEOUT) {
    char err[4096];
    char name[] = "stubborn";
    int status = run_child(closes_a_stubborn_generator, name, NULL, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "child status %#x, stderr: %s", status, err);
    cr_expect(strstr(err, "rill: generator 'stubborn' returned while a task group"),
              "stderr: %s", err);
}

typedef struct heap_scope {
    rill_scope s; /* not on the body's stack */
} heap_scope;

static int forgets_a_scope_kept_in_arg(rill_gen *g, void *arg) {
    heap_scope *h = arg;
    rill_scope_enter(&h->s, 0.01);
    rill_yield(g, NULL);
    return 0; /* returns without exiting it */
}

FIBER_TEST(gen, a_forgotten_scope_that_lives_off_the_stack_leaves_no_timer) {
    heap_scope *h = malloc(sizeof *h);
    rill_gen *g = rill_gen_new(forgets_a_scope_kept_in_arg, h);
    expect_eq(rill_gen_next(g, NULL), 1);
    expect_eq(rill_gen_next(g, NULL), 0);
    rill_gen_free(g);
    free(h);
    /* A deadline still armed would fire into freed memory here. */
    expect_eq(rill_sleep(0.03), 0);
    return 0;
}

static int keeps_a_deadline_across_a_yield(rill_gen *g, void *arg) {
    (void)arg;
    rill_scope s;
    rill_scope_enter(&s, 30.0);
    rill_yield(g, NULL);
    rill_scope_exit(&s);
    return 0;
}

static int deadlocks_beside_a_suspended_generator(void *arg) {
    double *took = arg;
    rill_gen *g = rill_gen_new(keeps_a_deadline_across_a_yield, NULL);
    rill_gen_next(g, NULL);
    double t0 = rill_now();
    int rc = rill_sleep(RILL_FOREVER);
    *took = rill_now() - t0;
    rill_gen_free(g);
    return rc;
}

Test(gen, a_suspended_generators_deadline_does_not_delay_deadlock_detection,
     .init = cr_redirect_stderr, .timeout = TEST_TIMEOUT) {
    double took = -1;
    expect_eq(rill_run(deadlocks_beside_a_suspended_generator, &took), -EDEADLK);
    cr_expect(took >= 0 && took < 10.0, "detected after %.2f s", took);
}

static int stuck_forever(rill_gen *g, void *arg) {
    (void)g;
    (void)arg;
    while (rill_sleep(RILL_FOREVER) == -EDEADLK) {
    }
    return 0;
}

static int consumes_an_abandoned_generator(void *arg) {
    return rill_gen_next(arg, NULL);
}

Test(gen, a_generator_abandoned_with_its_consumer_can_still_be_freed,
     .init = cr_redirect_stderr, .timeout = TEST_TIMEOUT) {
    rill_gen *g = rill_gen_new(stuck_forever, NULL);
    expect_eq(rill_run(consumes_an_abandoned_generator, g), -EDEADLK);
    expect_eq(rill_gen_status(g), -EDEADLK);
    errno = 0;
    rill_gen_free(g); /* not EBUSY: it was finished when abandoned */
    expect_eq(errno, 0);
}

static rill_gen *cycle_prefetch;

static int resumes_its_own_prefetch(rill_gen *g, void *arg) {
    int *seen = arg;
    for (int i = 0;; i++) {
        if (i == 1) *seen = rill_gen_next(cycle_prefetch, NULL);
        if (rill_yield(g, &i) < 0) return 0;
    }
}

FIBER_TEST(gen, a_source_resuming_its_own_prefetch_gets_ebusy) {
    int seen = 1;
    cycle_prefetch = rill_gen_prefetch(rill_gen_new(resumes_its_own_prefetch, &seen), 2,
                                       sizeof(int));
    expect_eq(rill_gen_next(cycle_prefetch, NULL), 1);
    expect_eq(rill_sleep(0.01), 0); /* the puller runs ahead into the cycle */
    expect_eq(seen, -EBUSY);
    expect_eq(rill_gen_next(cycle_prefetch, NULL), 1);
    rill_gen_free(cycle_prefetch);
    return 0;
}

/* ---- a body that ignores GeneratorExit is reported when nobody sees -EPROTO --- */

static int frees_a_stubborn_generator(void *arg) {
    stubborn s = {0};
    rill_gen *g = rill_gen_new_opts(ignores_close, &s, &(rill_opts){.name = arg});
    if (rill_gen_next(g, NULL) != 1) return -EIO;
    rill_gen_free(g);
    return s.yields_after_close == 1 ? 0 : -EIO;
}

static int auto_frees_a_stubborn_generator(void *arg) {
    stubborn s = {0};
    RILL_GEN_AUTO rill_gen *g = rill_gen_new_opts(ignores_close, &s, &(rill_opts){.name = arg});
    return rill_gen_next(g, NULL) == 1 ? 0 : -EIO;
}

static int leaves_a_stubborn_generator_to_shutdown(void *arg) {
    static stubborn s;
    static rill_gen *g;
    g = rill_gen_new_opts(ignores_close, &s, &(rill_opts){.name = arg});
    return rill_gen_next(g, NULL) == 1 ? 0 : -EIO; /* rill_run closes it */
}

static int closes_a_stubborn_generator_itself(void *arg) {
    stubborn s = {0};
    rill_gen *g = rill_gen_new_opts(ignores_close, &s, &(rill_opts){.name = arg});
    rill_gen_next(g, NULL);
    int rc = rill_gen_close(g);
    rill_gen_free(g);
    return rc == -EPROTO ? 0 : -EIO;
}

static void expect_ignored_exit_report(rill_fn *fn, bool reported) {
    char err[4096];
    char name[] = "stubborn-gen";
    int status = run_child(fn, name, NULL, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status, err);
    const char *line = "rill: generator 'stubborn-gen' ignored GeneratorExit";
    if (reported) cr_expect(strstr(err, line), "stderr lacks the report: '%s'", err);
    else cr_expect(!strstr(err, line), "an explicit close was reported too: '%s'", err);
}

Test(gen, freeing_a_body_that_yields_after_epipe_says_it_ignored_generator_exit,
     .timeout = TEST_TIMEOUT) {
    expect_ignored_exit_report(frees_a_stubborn_generator, true);
}

Test(gen, auto_freeing_a_body_that_yields_after_epipe_says_so, .timeout = TEST_TIMEOUT) {
    expect_ignored_exit_report(auto_frees_a_stubborn_generator, true);
}

Test(gen, the_runs_shutdown_says_so_for_a_body_that_yields_after_epipe,
     .timeout = TEST_TIMEOUT) {
    expect_ignored_exit_report(leaves_a_stubborn_generator_to_shutdown, true);
}

Test(gen, an_explicit_close_returns_eproto_without_a_report, .timeout = TEST_TIMEOUT) {
    expect_ignored_exit_report(closes_a_stubborn_generator_itself, false);
}

/* ---- rill_foreach ------------------------------------------------------------------ */

FIBER_TEST(gen, two_foreach_loops_on_one_line_do_not_shadow_each_other) {
    /* This file is built with -Wshadow -Werror: the loops must compile. */
    probe a = {.n = 3}, b = {.n = 4};
    RILL_GEN_AUTO rill_gen *ga = rill_gen_new(counting, &a);
    int *x, *y, pairs = 0;
    rill_foreach(x, ga) { RILL_GEN_AUTO rill_gen *gb = rill_gen_new(counting, &b); b.runs = 0; rill_foreach(y, gb) pairs += *x >= 0 && *y >= 0; }
    expect_eq(pairs, 3 * 4);
    return 0;
}

/* ---- a run that ends with a generator still allocated ------------------------------ */

static int yields_forever(rill_gen *g, void *arg) {
    (void)arg;
    for (int i = 0;; i++)
        if (rill_yield(g, &i) < 0) return 0;
}

static rill_gen *kept;

static int keeps_a_generator(void *arg) {
    (void)arg;
    kept = rill_gen_new(yields_forever, NULL);
    return rill_gen_next(kept, NULL) == 1 ? 0 : -EIO;
}

Test(gen, a_run_that_ends_with_a_generator_allocated_keeps_no_signal_stack,
     .timeout = TEST_TIMEOUT) {
    stack_t before, after;
    sigaltstack(NULL, &before);
    expect_eq(rill_run(keeps_a_generator, NULL), 0);
    sigaltstack(NULL, &after);
    /* The thread's own (none, or AddressSanitizer's) is back. */
    cr_expect(after.ss_flags == before.ss_flags &&
                  ((after.ss_flags & SS_DISABLE) || after.ss_sp == before.ss_sp),
              "rill's alternate signal stack (%p, flags %d) outlived the run", after.ss_sp,
              after.ss_flags);
    /* The generator still works (closed by the run's shutdown), and freeing
     * it releases the rest. */
    expect_eq(rill_gen_next(kept, NULL), 0);
    rill_gen_free(kept);
    kept = NULL;
}

/* Suspended at a yield after its run ended, then resumed outside any run:
 * the overflow must still be reported by name. */
static int recurses(int n) {
    volatile char pad[512];
    pad[0] = (char)n;
    return n == 0 ? pad[0] : recurses(n - 1) + pad[0];
}

static int overflows_when_resumed(rill_gen *g, void *arg) {
    (void)arg;
    rill_yield(g, NULL); /* the run ends here */
    return recurses(1 << 20);
}

Test(gen, a_generator_resumed_after_a_run_ended_still_reports_an_overflow, .signal = SIGABRT,
     .timeout = TEST_TIMEOUT) {
    /* Started outside any run, so no run's shutdown closes it. */
    kept = rill_gen_new_opts(overflows_when_resumed, NULL,
                             &(rill_opts){.name = "after-the-run", .stack_size = 32 * 1024});
    cr_assert_eq(rill_gen_next(kept, NULL), 1);
    cr_assert_eq(rill_run(rill_test_noop, NULL), 0); /* a run comes and goes */
    rill_gen_next(kept, NULL); /* "rill: fiber 'after-the-run' overflowed ..." */
}

/* A thread whose run leaves a generator allocated frees the runtime when it
 * exits; the generator, reachable here, is the program's own leak. */
static rill_gen *left_by_thread;

static int leaves_one(void *arg) {
    (void)arg;
    left_by_thread = rill_gen_new(yields_forever, NULL);
    return rill_gen_next(left_by_thread, NULL) == 1 ? 0 : -EIO;
}

static void *runs_and_exits(void *arg) {
    (void)arg;
    return (void *)(intptr_t)rill_run(leaves_one, NULL);
}

/* Run body on a thread of its own and check that, once it has exited, its
 * runtime is gone whatever generator it left (*left, reachable here). */
static void expect_no_runtime_after(void *(*body)(void *), rill_gen *const *left) {
    pthread_t t;
    void *rc;
    long before = rill__runtime_count();
    cr_assert_eq(pthread_create(&t, NULL, body, NULL), 0);
    pthread_join(t, &rc);
    expect_eq((intptr_t)rc, 0);
    cr_expect_not_null(*left);
    expect_eq(rill__runtime_count(), before);
}

Test(gen, a_thread_that_exits_with_a_generator_allocated_frees_its_runtime,
     .timeout = TEST_TIMEOUT) {
    expect_no_runtime_after(runs_and_exits, &left_by_thread);
}

static rill_gen *left_outside_a_run;

static void *makes_one_outside_a_run(void *arg) {
    (void)arg;
    left_outside_a_run = rill_gen_new(yields_forever, NULL);
    return (void *)(intptr_t)(rill_gen_next(left_outside_a_run, NULL) == 1 ? 0 : -EIO);
}

Test(gen, a_thread_that_made_a_generator_outside_any_run_frees_its_runtime_at_exit,
     .timeout = TEST_TIMEOUT) {
    expect_no_runtime_after(makes_one_outside_a_run, &left_outside_a_run);
}

/* ---- a suspended generator's deadline costs the loop nothing ------------------------ */

static int holds_a_deadline(rill_gen *g, void *arg) {
    rill_scope s;
    rill_scope_enter(&s, *(double *)arg);
    int rc = rill_yield(g, NULL);
    int x = rill_scope_exit(&s);
    return rc < 0 ? rc : x == -ETIMEDOUT ? 0 : -EIO;
}

typedef struct many_scopes {
    size_t n;
    rill_scope *scopes;
} many_scopes;

/* Holds n scope deadlines (each a timer) and sleeps until cancelled. */
static int holds_many_deadlines(void *arg) {
    many_scopes *m = arg;
    double now = rill_now();
    for (size_t i = 0; i < m->n; i++) rill_scope_enter_at(&m->scopes[i], now + 100 + (double)i);
    int rc = rill_sleep(RILL_FOREVER);
    for (size_t i = m->n; i-- > 0;) rill_scope_exit(&m->scopes[i]);
    return rc == -ECANCELED ? 0 : rc;
}

static int empty_job(void *arg) { return (int)(intptr_t)arg; }

static double round_trips(int n) {
    double t0 = rill_now();
    for (int i = 0; i < n; i++) cr_assert_eq(rill_to_thread(empty_job, NULL), 0);
    return rill_now() - t0;
}

FIBER_TEST(gen, a_suspended_generators_deadline_does_not_slow_the_loop) {
    /* 100 000 armed deadlines, and a suspended generator whose deadline is
     * the earliest: the loop must not look at every one each time it polls
     * (a pool round trip polls once or twice). */
    bool slow = under_valgrind();
    many_scopes m = {.n = slow ? 2000 : 100000};
    m.scopes = calloc(m.n, sizeof *m.scopes);
    rill_task *deadlines = rill_spawn(holds_many_deadlines, &m);
    expect_eq(rill_sleep(0.01), 0);
    int trips = slow ? 20 : 1000;
    double without = round_trips(trips);
    double deadline = 50;
    rill_gen *g = rill_gen_new(holds_a_deadline, &deadline);
    expect_eq(rill_gen_next(g, NULL), 1);
    double with = round_trips(trips);
    without = fmin(without, round_trips(trips));
    cr_expect(with < 4 * without + 0.05, "%d round trips took %.3f s with a suspended "
              "generator's deadline first, %.3f s without", trips, with, without);
    rill_gen_free(g);
    rill_cancel(deadlines);
    expect_eq(rill_join(deadlines), 0);
    free(m.scopes);
    return 0;
}

/* ---- rill_yield_from ------------------------------------------------------ */

typedef struct batches {
    int data[10];
    int rounds;    /* times the body ran again after a batch */
    int ended_by;  /* what the last rill_yield_from returned */
    bool cleaned;
} batches;

/* Yields data[0..5) as one batch, then data[5..10) as another. */
static int two_batches(rill_gen *g, void *arg) {
    batches *b = arg;
    for (int k = 0; k < 2; k++) {
        b->ended_by = rill_yield_from(g, b->data + 5 * k, 5, sizeof b->data[0]);
        if (b->ended_by < 0) break;
        b->rounds++;
    }
    b->cleaned = true;
    return b->ended_by == -EPIPE ? 0 : b->ended_by;
}

static void fill(batches *b) {
    *b = (batches){.rounds = 0};
    for (int i = 0; i < 10; i++) b->data[i] = 100 + i;
}

FIBER_TEST(gen, yield_from_hands_out_a_batch_resuming_the_body_once_per_batch) {
    batches b;
    fill(&b);
    rill_gen *g = rill_gen_new(two_batches, &b);
    int *v, i = 0;
    rill_foreach(v, g) {
        expect_eq(*v, 100 + i);
        cr_assert_eq(v, &b.data[i]);
        /* The body ran again only when a batch was used up. */
        expect_eq(b.rounds, i / 5);
        i++;
    }
    expect_eq(i, 10);
    expect_eq(b.rounds, 2);
    expect_eq(b.ended_by, 0);
    expect_eq(rill_gen_status(g), 0);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(gen, yield_from_ends_its_batch_on_close_throw_and_send) {
    batches b;
    void *v;
    /* close in the middle of a batch: the body sees -EPIPE and cleans up */
    fill(&b);
    rill_gen *g = rill_gen_new(two_batches, &b);
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(rill_gen_close(g), 0);
    expect_eq(b.ended_by, -EPIPE);
    cr_assert(b.cleaned);
    rill_gen_free(g);
    /* throw: the error ends the batch and, returned, the body */
    fill(&b);
    g = rill_gen_new(two_batches, &b);
    expect_eq(rill_gen_next(g, &v), 1);
    expect_eq(rill_gen_throw(g, -EIO, &v), -EIO);
    expect_eq(b.ended_by, -EIO);
    rill_gen_free(g);
    /* send: the body goes on with the value, at the next batch */
    fill(&b);
    g = rill_gen_new(two_batches, &b);
    expect_eq(rill_gen_next(g, &v), 1);
    int in = 7;
    expect_eq(rill_gen_send(g, &in, &v), 1);
    expect_eq(*(int *)v, 105);
    cr_assert_eq(rill_gen_sent(g), &in);
    expect_eq(b.rounds, 1);
    rill_gen_free(g);
    return 0;
}

static int yields_nothing_then_one(rill_gen *g, void *arg) {
    int *one = arg;
    int rc = rill_yield_from(g, NULL, 0, sizeof *one);
    if (rc != 0) return -EPROTO;
    if (rill_yield_from(g, NULL, 1, sizeof *one) != -EINVAL) return -EPROTO;
    return rill_yield(g, one) < 0 ? -EPROTO : 0;
}

FIBER_TEST(gen, yield_from_an_empty_batch_yields_nothing_and_bad_arguments_are_einval) {
    int one = 1;
    rill_gen *g = rill_gen_new(yields_nothing_then_one, &one);
    void *v;
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert_eq(v, &one);
    expect_eq(rill_gen_next(g, &v), 0);
    rill_gen_free(g);
    expect_eq(rill_yield_from(NULL, &one, 1, sizeof one), -EINVAL);
    rill_gen *other = rill_gen_new(yields_nothing_then_one, &one);
    expect_eq(rill_yield_from(other, &one, 1, sizeof one), -EINVAL); /* not its body */
    rill_gen_free(other);
    return 0;
}
