/* rill_queue (rill.h "Synchronisation"): FIFO, bounded or not, hand-offs, close, and a
 * seeded property test with random cancellations. */
#include <malloc.h>

#include "helpers.h"

FIBER_TEST(queue, items_come_out_in_order_and_try_calls_never_block) {
    rill_queue *q = rill_queue_new(3, sizeof(int));
    for (int i = 0; i < 3; i++) expect_eq(rill_queue_try_put(q, &i), 0);
    int x = 9;
    expect_eq(rill_queue_try_put(q, &x), -EAGAIN);
    expect_eq(rill_queue_len(q), 3);
    for (int i = 0; i < 3; i++) {
        expect_eq(rill_queue_get(q, &x), 0);
        expect_eq(x, i);
    }
    expect_eq(rill_queue_try_get(q, &x), -EAGAIN);
    rill_queue_free(q);
    return 0;
}

typedef struct pc {
    rill_queue *q;
    int n, got, last, rc;
} pc;

static int produces(void *arg) {
    pc *p = arg;
    for (int i = 0; i < p->n; i++)
        if ((p->rc = rill_queue_put(p->q, &i)) < 0) return p->rc;
    rill_queue_close(p->q);
    return 0;
}

static int consumes(void *arg) {
    pc *p = arg;
    int x, rc;
    p->last = -1;
    while ((rc = rill_queue_get(p->q, &x)) == 0) {
        if (x != p->last + 1) return -EIO;
        p->last = x;
        p->got++;
        if (p->got % 7 == 0) rill_sleep(0.0005); /* a slow consumer now and then */
    }
    p->rc = rc;
    return 0;
}

FIBER_TEST(queue, backpressure_between_a_producer_and_a_consumer) {
    pc p = {rill_queue_new(10, sizeof(int)), 200, 0, 0, 0};
    rill_task *a = rill_spawn(produces, &p), *b = rill_spawn(consumes, &p);
    expect_eq(rill_join(a), 0);
    expect_eq(rill_join(b), 0);
    expect_eq(p.got, 200);
    expect_eq(p.rc, -EPIPE); /* drained, then closed */
    rill_queue_free(p.q);
    return 0;
}

FIBER_TEST(queue, close_drains_then_reports_epipe_and_refuses_puts) {
    rill_queue *q = rill_queue_new(4, sizeof(int));
    int x = 1;
    rill_queue_put(q, &x);
    rill_queue_close(q);
    expect_eq(rill_queue_put(q, &x), -EPIPE);
    expect_eq(rill_queue_get(q, &x), 0);
    expect_eq(rill_queue_get(q, &x), -EPIPE);
    expect_eq(rill_queue_try_get(q, &x), -EPIPE);
    rill_queue_free(q);
    return 0;
}

static int gets_one(void *arg) {
    int x;
    return rill_queue_get(arg, &x) == 0 ? x : -EIO;
}

FIBER_TEST(queue, an_item_handed_to_a_waiting_getter_survives_its_cancellation) {
    rill_queue *q = rill_queue_new(1, sizeof(int));
    rill_task *t = rill_spawn(gets_one, q);
    expect_eq(rill_yield_now(), 0); /* t waits */
    int x = 42;
    expect_eq(rill_queue_put(q, &x), 0); /* copied into t's buffer */
    rill_cancel(t);
    expect_eq(rill_join(t), 42);
    expect_eq(rill_queue_len(q), 0);
    rill_queue_free(q);
    return 0;
}

FIBER_TEST(queue, a_cancelled_get_takes_nothing_and_a_cancelled_put_stores_nothing) {
    rill_queue *q = rill_queue_new(1, sizeof(int));
    int x = 5;
    rill_scope s;
    rill_scope_enter(&s, 0.005);
    expect_eq(rill_queue_get(q, &x), -ECANCELED);
    rill_scope_exit(&s);
    expect_eq(rill_queue_put(q, &x), 0);
    rill_scope_enter(&s, 0.005);
    int y = 6;
    expect_eq(rill_queue_put(q, &y), -ECANCELED);
    rill_scope_exit(&s);
    expect_eq(rill_queue_len(q), 1);
    expect_eq(rill_queue_get(q, &x), 0);
    expect_eq(x, 5);
    rill_queue_free(q);
    return 0;
}

/* ---- unbounded -------------------------------------------------------------- */

FIBER_TEST(queue, unbounded_put_never_waits_even_when_cancelled) {
    rill_queue *q = rill_queue_new(RILL_UNBOUNDED, sizeof(int));
    cr_assert_not_null(q);
    rill_scope s;
    rill_scope_enter(&s, 0); /* expired: a put that had to wait would fail */
    for (int i = 0; i < 100000; i++) expect_eq(rill_queue_put(q, &i), 0);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    expect_eq(rill_queue_len(q), 100000);
    for (int i = 0; i < 100000; i++) {
        int x;
        expect_eq(rill_queue_get(q, &x), 0);
        expect_eq(x, i);
    }
    int x = 0;
    expect_eq(rill_queue_try_get(q, &x), -EAGAIN);
    rill_queue_free(q);
    return 0;
}

/* Random puts and gets, the length swinging between 0 and several chunks,
 * against a counter model: FIFO across every chunk boundary, for a small
 * item and for one bigger than a chunk's usual share. */
Test(queue, unbounded_keeps_fifo_across_growth_and_shrinking, .timeout = TEST_TIMEOUT) {
    srand(777);
    size_t sizes[] = {sizeof(int), 1000};
    for (size_t k = 0; k < 2; k++) {
        size_t size = sizes[k];
        rill_queue *q = rill_queue_new(RILL_UNBOUNDED, size); /* outside a runtime */
        cr_assert_not_null(q);
        unsigned char in[1000] = {0}, out[1000];
        unsigned next_in = 0, next_out = 0;
        int ops = under_valgrind() ? 20000 : 400000;
        for (int i = 0; i < ops; i++) {
            int put_pct = (i / 3000) % 2 ? 30 : 70; /* grow, then drain, ... */
            if (rand() % 100 < put_pct) {
                memcpy(in, &next_in, sizeof next_in);
                if (size > sizeof next_in) in[size - 1] = (unsigned char)next_in;
                expect_eq(rill_queue_try_put(q, in), 0);
                next_in++;
            } else if (next_out == next_in) {
                expect_eq(rill_queue_try_get(q, out), -EAGAIN);
            } else {
                expect_eq(rill_queue_try_get(q, out), 0);
                unsigned got;
                memcpy(&got, out, sizeof got);
                cr_assert_eq(got, next_out);
                if (size > sizeof got) cr_assert_eq(out[size - 1], (unsigned char)next_out);
                next_out++;
            }
            expect_eq(rill_queue_len(q), next_in - next_out);
        }
        rill_queue_close(q);
        while (next_out != next_in) {
            expect_eq(rill_queue_try_get(q, out), 0);
            next_out++;
        }
        expect_eq(rill_queue_try_get(q, out), -EPIPE);
        expect_eq(rill_queue_try_put(q, in), -EPIPE);
        rill_queue_free(q);
    }
}

FIBER_TEST(queue, unbounded_hands_an_item_to_a_waiting_getter_and_drains_after_close) {
    rill_queue *q = rill_queue_new(RILL_UNBOUNDED, sizeof(int));
    rill_task *t = rill_spawn(gets_one, q);
    expect_eq(rill_yield_now(), 0); /* t waits */
    int x = 42;
    expect_eq(rill_queue_put(q, &x), 0); /* straight into t's buffer */
    expect_eq(rill_queue_len(q), 0);
    rill_cancel(t);
    expect_eq(rill_join(t), 42);
    rill_scope s;
    rill_scope_enter(&s, 0.002);
    expect_eq(rill_queue_get(q, &x), -ECANCELED); /* took nothing */
    rill_scope_exit(&s);
    for (int i = 0; i < 3; i++) expect_eq(rill_queue_put(q, &i), 0);
    rill_queue_close(q);
    expect_eq(rill_queue_put(q, &x), -EPIPE);
    for (int i = 0; i < 3; i++) {
        expect_eq(rill_queue_get(q, &x), 0);
        expect_eq(x, i);
    }
    expect_eq(rill_queue_get(q, &x), -EPIPE);
    rill_queue_free(q);
    return 0;
}

/* What malloc reports in use: glibc's own count, which the sanitizers and
 * valgrind replace (there, the test checks the behaviour only). */
static bool heap_measurable(void) {
#ifdef __SANITIZE_ADDRESS__
    return false;
#else
    return !under_valgrind();
#endif
}

Test(queue, a_drained_unbounded_queue_gives_its_memory_back, .timeout = TEST_TIMEOUT) {
    enum { N = 100000, SIZE = 64 };
    char item[SIZE] = {0};
    for (int round = 0; round < 2; round++) { /* and again: nothing kept */
        rill_queue *q = rill_queue_new(RILL_UNBOUNDED, SIZE);
        cr_assert_not_null(q);
        size_t before = mallinfo2().uordblks;
        for (int i = 0; i < N; i++) expect_eq(rill_queue_try_put(q, item), 0);
        size_t peak = mallinfo2().uordblks;
        for (int i = 0; i < N; i++) expect_eq(rill_queue_try_get(q, item), 0);
        size_t after = mallinfo2().uordblks;
        if (heap_measurable()) {
            cr_assert_geq(peak - before, (size_t)N * SIZE, "peak %zu, before %zu", peak, before);
            /* At most two chunks of about 4 KiB stay. */
            cr_assert_leq(after - before, 3 * 4096, "drained: %zu bytes still held", after - before);
        }
        rill_queue_free(q);
    }
}

/* ---- property: random capacities, producers, cancellations ---------------------- */

typedef struct item {
    int producer, seq;
} item;

enum { P = 4 };

typedef struct prop {
    rill_queue *q;
    int producer, n;
    bool ordered;                /* one consumer: it must see each producer's order */
    bool yields;                 /* unbounded: puts never wait, so yield now and then */
    int *next_seq;               /* per producer, with one consumer */
    unsigned char *seen[P];      /* per producer and seq: received how often */
    long *received;
} prop;

/* A scope that is cancelled (expired) one time in five: the call inside
 * returns -ECANCELED if it has to wait. */
static void maybe_cancelled(rill_scope *s) { rill_scope_enter(s, rand() % 5 == 0 ? 0 : RILL_FOREVER); }

static int prop_producer(void *arg) {
    prop *p = arg;
    for (int i = 0; i < p->n;) {
        item it = {p->producer, i};
        rill_scope s;
        maybe_cancelled(&s);
        int rc = rill_queue_put(p->q, &it);
        rill_scope_exit(&s);
        if (rc == 0) i++; /* a cancelled put stored nothing: put it again */
        if (p->yields && rand() % 16 == 0) rill_yield_now();
    }
    return 0;
}

static int prop_consumer(void *arg) {
    prop *p = arg;
    item it;
    for (;;) {
        rill_scope s;
        maybe_cancelled(&s);
        int rc = rill_queue_get(p->q, &it);
        rill_scope_exit(&s);
        if (rc == -EPIPE) return 0;
        if (rc < 0) continue; /* cancelled: took nothing */
        if (p->ordered && it.seq != p->next_seq[it.producer]++) return -EIO;
        p->seen[it.producer][it.seq]++;
        (*p->received)++;
    }
}

FIBER_TEST(queue, every_item_arrives_once_in_order_per_producer_despite_cancellations) {
    srand(12345);
    int ops = under_valgrind() ? 4000 : 100000;
    for (int round = 0; round < 6; round++) {
        int consumers = round % 2 ? 3 : 1; /* order is observable with one */
        int n = ops / 4 / P;
        bool unbounded = round >= 4;
        rill_queue *q = rill_queue_new(unbounded ? RILL_UNBOUNDED : (size_t)(1 + rand() % 8),
                                       sizeof(item));
        int next_seq[P] = {0};
        long received = 0;
        prop base = {.q = q, .n = n, .ordered = consumers == 1, .yields = unbounded,
                     .next_seq = next_seq, .received = &received};
        for (int i = 0; i < P; i++) base.seen[i] = calloc((size_t)n, 1);
        prop pp[P], cc[3];
        rill_task *tp[P], *tc[3];
        for (int i = 0; i < P; i++) {
            pp[i] = base;
            pp[i].producer = i;
            tp[i] = rill_spawn(prop_producer, &pp[i]);
        }
        for (int i = 0; i < consumers; i++) {
            cc[i] = base;
            tc[i] = rill_spawn(prop_consumer, &cc[i]);
        }
        for (int i = 0; i < P; i++) expect_eq(rill_join(tp[i]), 0);
        rill_queue_close(q);
        for (int i = 0; i < consumers; i++) expect_eq(rill_join(tc[i]), 0);
        expect_eq(received, (long)n * P);
        for (int i = 0; i < P; i++) {
            for (int k = 0; k < n; k++) cr_assert_eq(base.seen[i][k], 1, "producer %d item %d", i, k);
            free(base.seen[i]);
        }
        rill_queue_free(q);
    }
    return 0;
}

Test(queue, bad_arguments_are_refused, .timeout = TEST_TIMEOUT) {
    errno = 0;
    cr_expect_null(rill_queue_new(0, 4));
    expect_eq(errno, EINVAL);
    cr_expect_null(rill_queue_new(4, 0));
    cr_expect_null(rill_queue_new(RILL_UNBOUNDED, 0));
    cr_expect_null(rill_queue_new(SIZE_MAX / 2, 4));
    int x = 0;
    expect_eq(rill_queue_put(NULL, &x), -EINVAL);
    expect_eq(rill_queue_get(NULL, &x), -EINVAL);
    expect_eq(rill_queue_len(NULL), 0);
    rill_queue *q = rill_queue_new(1, sizeof x);
    expect_eq(rill_queue_try_put(q, &x), 0);
    expect_eq(rill_queue_put(q, &x), -EPERM); /* full, and not a fiber */
    rill_queue_free(q);
}
