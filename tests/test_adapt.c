/* Generator adapters (rill_gen_map, _map_into, _map_sized, _filter, _take,
 * _batch, _merge, _merge_sized, _prefetch, _prefetch_sized): the values they
 * yield and store, how errors, throws and closing travel through them, their
 * ownership of their sources, and the backpressure and concurrency of those
 * that run sources ahead, down to a file's lines.  The protocol underneath
 * (next, send, throw, close) is tests/test_gen.c's. */
#include <ev.h>

#include "helpers.h"

/* ---- a source that records what happens to it -------------------------------- */

typedef struct source {
    int first, count;   /* yields first, first + 1, ...: count values (< 0: forever) */
    double delay;       /* sleeps this long before each value */
    int fail;           /* returned once the values are out, if non-zero */
    int *fixed;         /* yield &fixed[i] (stable pointers), not the reused buf */
    const int *consumed; /* the consumer's count, to measure how far ahead it runs */
    /* what happened */
    int buf;            /* one buffer, overwritten by every value */
    int started, produced, cleanups, max_lead;
    int end_rc;         /* what ended its loop: 0, -EPIPE, -ECANCELED, a thrown error */
} source;

static int source_body(rill_gen *g, void *arg) {
    source *s = arg;
    s->started++;
    int rc = 0;
    for (int i = 0; s->count < 0 || i < s->count; i++) {
        if (s->delay > 0 && (rc = rill_sleep(s->delay)) < 0) break;
        s->buf = s->first + i;
        s->produced++;
        if (s->consumed && s->produced - *s->consumed > s->max_lead)
            s->max_lead = s->produced - *s->consumed;
        if ((rc = rill_yield(g, s->fixed ? (void *)&s->fixed[i] : &s->buf)) < 0) break;
    }
    s->end_rc = rc;
    s->cleanups++; /* the `finally:` of the body, on every way out */
    if (rc == 0) return s->fail;
    return rc == -EPIPE ? 0 : rc;
}

static rill_gen *source_new(source *s) {
    rill_gen *g = rill_gen_new(source_body, s);
    cr_assert(g, "rill_gen_new: %s", strerror(errno));
    return g;
}

static int ival(const void *v) { return *(const int *)v; }

/* The next value of g as an int; fails the test unless there is one. */
static int next_int(rill_gen *g) {
    void *v = NULL;
    int rc = rill_gen_next(g, &v);
    expect_eq(rc, 1);
    cr_assert(v, "%s yielded NULL", rill_gen_name(g));
    return ival(v);
}

/* The next value of a batching adapter; fails the test unless there is one. */
static rill_batch *next_batch(rill_gen *g) {
    void *v = NULL;
    expect_eq(rill_gen_next(g, &v), 1);
    cr_assert(v, "%s yielded NULL", rill_gen_name(g));
    return v;
}

static void expect_ints(rill_gen *g, const int *want, int n) {
    for (int i = 0; i < n; i++) {
        int got = next_int(g);
        cr_assert_eq(got, want[i], "value %d is %d, expected %d", i, got, want[i]);
    }
}

static void expect_batch(const rill_batch *b, const int *want, size_t n) {
    cr_assert_eq(b->n, n, "batch of %zu values, expected %zu", b->n, n);
    for (size_t i = 0; i < n; i++) {
        int got = ((const int *)b->items)[i];
        cr_assert_eq(got, want[i], "item %zu is %d, expected %d", i, got, want[i]);
    }
}

/* How many fibers are alive (from rill_dump's first line): tasks that an
 * adapter failed to stop would show here.  Generators do not count. */
static int live_fibers(void) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert(f);
    rill_dump(f);
    fclose(f);
    int n = -1;
    cr_assert_eq(sscanf(text, "rill: %d fiber", &n), 1, "rill_dump printed: %s", text);
    free(text);
    return n;
}

/* ---- functions given to adapters --------------------------------------------- */

/* out = in * mul + add; err for the input fail_at. */
typedef struct mapper {
    int mul, add;
    int err, fail_at;   /* err != 0: returned for the input fail_at */
    double sleep;       /* blocks this long first */
    int calls, out;
} mapper;

/* What every map function of m does: 0 with *out set, or an error. */
static int mapped(mapper *m, const void *in, int *out) {
    m->calls++;
    if (m->sleep > 0) {
        int rc = rill_sleep(m->sleep);
        if (rc < 0) return rc;
    }
    if (m->err && ival(in) == m->fail_at) return m->err;
    *out = ival(in) * m->mul + m->add;
    return 0;
}

/* rill_gen_map's: the value lives in m->out (valid until the next resume,
 * as a yielded value must be). */
static int map_fn(void *in, void **out, void *ctx) {
    mapper *m = ctx;
    int rc = mapped(m, in, &m->out);
    if (rc == 0) *out = &m->out;
    return rc;
}

/* rill_gen_map_into's and rill_gen_map_sized's: into the adapter's buffer. */
static int map_into_fn(void *in, void *out, void *ctx) { return mapped(ctx, in, out); }

/* The size of an int value, for the sized adapters. */
static size_t int_size(const void *item, void *ctx) {
    (void)item, (void)ctx;
    return sizeof(int);
}

/* Keeps multiples of mod (mod 1: everything); err for the input fail_at. */
typedef struct keeper {
    int mod;
    int err, fail_at;
    double sleep;
    int calls;
} keeper;

static int keep_fn(void *in, void *ctx) {
    keeper *k = ctx;
    k->calls++;
    if (k->sleep > 0) {
        int rc = rill_sleep(k->sleep);
        if (rc < 0) return rc;
    }
    if (k->err && ival(in) == k->fail_at) return k->err;
    return ival(in) % k->mod == 0;
}

/* ---- every adapter, for the behaviours they share ---------------------------- */

enum kind {
    MAP, MAP_INTO, MAP_SIZED, FILTER, TAKE, BATCH, PREFETCH, PREFETCH_SIZED, MERGE,
    MERGE_SIZED, NKINDS
};
static const char *const kind_names[NKINDS] = {
    "map", "map_into", "map_sized", "filter", "take", "batch", "prefetch",
    "prefetch_sized", "merge", "merge_sized"};

/* How many sources each kind gets in the shared tests: merge several. */
static int nsources(int k) { return k == MERGE || k == MERGE_SIZED ? 3 : 1; }

/* The shared tests' sources block this long before each value, so that
 * every one of a merge's sources gets started (merge_reads_every_source_
 * even_when_none_blocks is about sources that never block). */
#define SHARED_DELAY 0.001

static mapper identity = {.mul = 1};
static keeper keep_all = {.mod = 1};

/* An adapter of kind k that passes every value of srcs on (take: up to 1000;
 * batch: in pairs; prefetch: 4 ahead), ints copied where it copies (the
 * _sized kinds: sizeof(int) bytes of each). */
static rill_gen *wrap(int k, rill_gen **srcs) {
    rill_gen *g = NULL;
    switch (k) {
    case MAP: g = rill_gen_map(srcs[0], map_fn, &identity); break;
    case MAP_INTO: g = rill_gen_map_into(srcs[0], map_into_fn, sizeof(int), &identity); break;
    case MAP_SIZED: g = rill_gen_map_sized(srcs[0], map_into_fn, int_size, &identity); break;
    case FILTER: g = rill_gen_filter(srcs[0], keep_fn, &keep_all); break;
    case TAKE: g = rill_gen_take(srcs[0], 1000); break;
    case BATCH: g = rill_gen_batch(srcs[0], 2, sizeof(int)); break;
    case PREFETCH: g = rill_gen_prefetch(srcs[0], 4, sizeof(int)); break;
    case PREFETCH_SIZED: g = rill_gen_prefetch_sized(srcs[0], 4, int_size, NULL); break;
    case MERGE: g = rill_gen_merge(srcs, (size_t)nsources(k), sizeof(int)); break;
    case MERGE_SIZED: g = rill_gen_merge_sized(srcs, (size_t)nsources(k), int_size, NULL); break;
    }
    cr_assert(g, "rill_gen_%s: %s", kind_names[k], strerror(errno));
    return g;
}

/* wrap() over endless sources s[0..nsources(k)) that each run forever. */
static rill_gen *wrap_endless(int k, source *s, rill_gen **srcs) {
    for (int i = 0; i < nsources(k); i++) {
        s[i] = (source){.first = 100 * i, .count = -1, .delay = SHARED_DELAY};
        srcs[i] = source_new(&s[i]);
    }
    return wrap(k, srcs);
}

/* expect_eq, naming the adapter kind. */
#define expect_eq_in(k, got, want)                                             \
    do {                                                                       \
        long long g_ = (long long)(got), w_ = (long long)(want);               \
        cr_assert_eq(g_, w_, "%s: %s is %lld (%s), expected %s = %lld (%s)",   \
                     kind_names[k], #got, g_, g_ < 0 ? rill_strerror((int)g_) : "", \
                     #want, w_, w_ < 0 ? rill_strerror((int)w_) : "");         \
    } while (0)

/* Each source of a shared test ran, and cleaned up exactly once. */
static void expect_cleaned_once(int k, const source *s) {
    for (int i = 0; i < nsources(k); i++) {
        expect_eq_in(k, s[i].started, 1);
        expect_eq_in(k, s[i].cleanups, 1);
    }
}

/* ---- map --------------------------------------------------------------------- */

FIBER_TEST(adapt, map_yields_the_function_of_each_value) {
    source s = {.count = 5};
    mapper m = {.mul = 2};
    rill_gen *g = rill_gen_map(source_new(&s), map_fn, &m);
    cr_assert(g);
    expect_ints(g, (const int[]){0, 2, 4, 6, 8}, 5);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(rill_gen_status(g), 0);
    expect_eq(s.cleanups, 1);
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
    return 0;
}

FIBER_TEST(adapt, a_map_function_error_ends_the_stream_with_that_error) {
    source s = {.count = -1};
    mapper m = {.mul = 2, .err = -ERANGE, .fail_at = 2};
    rill_gen *g = rill_gen_map(source_new(&s), map_fn, &m);
    cr_assert(g);
    expect_ints(g, (const int[]){0, 2}, 2);
    expect_eq(rill_gen_next(g, NULL), -ERANGE);
    expect_eq(s.cleanups, 1); /* the source was closed */
    expect_eq(s.end_rc, -EPIPE);
    expect_eq(s.produced, 3);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(rill_gen_status(g), -ERANGE);
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
    return 0;
}

/* ---- filter ------------------------------------------------------------------ */

FIBER_TEST(adapt, filter_yields_only_the_values_kept) {
    source s = {.count = 10};
    keeper k = {.mod = 2};
    rill_gen *g = rill_gen_filter(source_new(&s), keep_fn, &k);
    cr_assert(g);
    expect_ints(g, (const int[]){0, 2, 4, 6, 8}, 5);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(k.calls, 10);
    expect_eq(s.cleanups, 1);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, a_keep_function_error_ends_the_stream_with_that_error) {
    source s = {.count = -1};
    keeper k = {.mod = 1, .err = -EDOM, .fail_at = 3};
    rill_gen *g = rill_gen_filter(source_new(&s), keep_fn, &k);
    cr_assert(g);
    expect_ints(g, (const int[]){0, 1, 2}, 3);
    expect_eq(rill_gen_next(g, NULL), -EDOM);
    expect_eq(s.cleanups, 1);
    expect_eq(s.end_rc, -EPIPE);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(rill_gen_status(g), -EDOM);
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
    return 0;
}

/* ---- take -------------------------------------------------------------------- */

FIBER_TEST(adapt, take_yields_the_first_n_values_then_closes_the_source) {
    source s = {.count = -1};
    rill_gen *g = rill_gen_take(source_new(&s), 3);
    cr_assert(g);
    expect_ints(g, (const int[]){0, 1, 2}, 3);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(s.produced, 3); /* no value pulled beyond the n-th */
    expect_eq(s.cleanups, 1);
    expect_eq(s.end_rc, -EPIPE);
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
    return 0;
}

FIBER_TEST(adapt, take_of_a_shorter_source_yields_all_of_it) {
    source s = {.count = 2};
    rill_gen *g = rill_gen_take(source_new(&s), 5);
    cr_assert(g);
    expect_ints(g, (const int[]){0, 1}, 2);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(rill_gen_status(g), 0);
    expect_eq(s.cleanups, 1);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, take_of_zero_yields_nothing_and_never_runs_the_source) {
    source s = {.count = -1};
    rill_gen *g = rill_gen_take(source_new(&s), 0);
    cr_assert(g);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(s.started, 0);
    rill_gen_free(g);
    expect_eq(s.started, 0);
    return 0;
}

/* ---- batch ------------------------------------------------------------------- */

FIBER_TEST(adapt, batch_yields_n_values_per_batch_copied_by_item_size) {
    source s = {.count = 6}; /* overwrites one buffer with every value */
    rill_gen *g = rill_gen_batch(source_new(&s), 3, sizeof(int));
    cr_assert(g);
    expect_batch(next_batch(g), (const int[]){0, 1, 2}, 3);
    expect_batch(next_batch(g), (const int[]){3, 4, 5}, 3);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(s.cleanups, 1);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, batch_with_item_size_zero_keeps_the_pointers) {
    int values[4] = {10, 11, 12, 13};
    source s = {.count = 4, .fixed = values};
    rill_gen *g = rill_gen_batch(source_new(&s), 4, 0);
    cr_assert(g);
    rill_batch *b = next_batch(g);
    expect_eq(b->n, 4);
    void **items = b->items;
    for (int i = 0; i < 4; i++)
        cr_assert_eq(items[i], (void *)&values[i], "item %d is %p, expected %p", i,
                     items[i], (void *)&values[i]);
    expect_eq(rill_gen_next(g, NULL), 0);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, batch_yields_a_short_last_batch) {
    source s = {.count = 7};
    rill_gen *g = rill_gen_batch(source_new(&s), 3, sizeof(int));
    cr_assert(g);
    expect_batch(next_batch(g), (const int[]){0, 1, 2}, 3);
    expect_batch(next_batch(g), (const int[]){3, 4, 5}, 3);
    expect_batch(next_batch(g), (const int[]){6}, 1);
    expect_eq(rill_gen_next(g, NULL), 0);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, batch_of_an_exact_multiple_ends_without_an_empty_batch) {
    source s = {.count = 6};
    rill_gen *g = rill_gen_batch(source_new(&s), 2, sizeof(int));
    cr_assert(g);
    int batches = 0;
    rill_batch *b;
    rill_foreach(b, g) {
        cr_assert_eq(b->n, 2, "batch %d holds %zu values", batches, b->n);
        batches++;
    }
    expect_eq(rill_gen_status(g), 0);
    expect_eq(batches, 3);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, batch_of_10_buffers_25_values_as_10_10_and_5) {
    source s = {.count = 25, .first = 100};
    rill_gen *g = rill_gen_batch(source_new(&s), 10, sizeof(int));
    cr_assert(g);
    size_t sizes[3] = {10, 10, 5};
    int expected = 100;
    for (int i = 0; i < 3; i++) {
        rill_batch *b = next_batch(g);
        cr_assert_eq(b->n, sizes[i], "batch %d holds %zu values, expected %zu", i, b->n,
                     sizes[i]);
        for (size_t j = 0; j < b->n; j++, expected++)
            cr_assert_eq(((int *)b->items)[j], expected, "batch %d item %zu is %d, expected %d",
                         i, j, ((int *)b->items)[j], expected);
    }
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(s.cleanups, 1);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, batch_drops_the_partial_batch_when_the_source_fails) {
    source s = {.count = 3, .fail = -EIO};
    rill_gen *g = rill_gen_batch(source_new(&s), 2, sizeof(int));
    cr_assert(g);
    expect_batch(next_batch(g), (const int[]){0, 1}, 2);
    expect_eq(rill_gen_next(g, NULL), -EIO); /* not the partial {2} */
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(rill_gen_status(g), -EIO);
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
    return 0;
}

/* ---- pipelines --------------------------------------------------------------- */

/* source -> map(x*2) -> filter(multiple of 3) -> map(x+1) -> take(7) -> batch(3) */
static rill_gen *five_stages(source *s, mapper *m1, keeper *k, mapper *m2) {
    *m1 = (mapper){.mul = 2};
    *k = (keeper){.mod = 3};
    *m2 = (mapper){.mul = 1, .add = 1};
    rill_gen *g = source_new(s);
    g = rill_gen_map(g, map_fn, m1);
    cr_assert(g);
    g = rill_gen_filter(g, keep_fn, k);
    cr_assert(g);
    g = rill_gen_map(g, map_fn, m2);
    cr_assert(g);
    g = rill_gen_take(g, 7);
    cr_assert(g);
    g = rill_gen_batch(g, 3, sizeof(int));
    cr_assert(g);
    return g;
}

FIBER_TEST(adapt, a_five_stage_pipeline_yields_the_right_values) {
    source s = {.count = 100};
    mapper m1, m2;
    keeper k;
    rill_gen *g = five_stages(&s, &m1, &k, &m2);
    /* 0,2,4,...; the multiples of 3: 0,6,12,...; plus one; the first 7 */
    expect_batch(next_batch(g), (const int[]){1, 7, 13}, 3);
    expect_batch(next_batch(g), (const int[]){19, 25, 31}, 3);
    expect_batch(next_batch(g), (const int[]){37}, 1);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(s.produced, 19); /* 18 * 2 = 36 was the 7th kept: nothing read beyond */
    expect_eq(s.cleanups, 1);  /* take's end closed the whole chain below it */
    expect_eq(s.end_rc, -EPIPE);
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
    return 0;
}

FIBER_TEST(adapt, a_source_error_passes_through_a_pipeline) {
    source s = {.count = 4, .fail = -EIO};
    mapper m1, m2;
    keeper k;
    rill_gen *g = five_stages(&s, &m1, &k, &m2);
    expect_eq(rill_gen_next(g, NULL), -EIO); /* {1, 7} never makes a batch */
    expect_eq(rill_gen_status(g), -EIO);
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(s.cleanups, 1);
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
    return 0;
}

/* ---- errors and throws through every adapter --------------------------------- */

FIBER_TEST(adapt, a_source_error_passes_through_every_adapter) {
    for (int k = 0; k < NKINDS; k++) {
        source s[3];
        rill_gen *srcs[3];
        for (int i = 0; i < nsources(k); i++) {
            /* merge: the other sources end cleanly */
            s[i] = (source){.first = 100 * i, .count = 3, .delay = SHARED_DELAY,
                            .fail = i == 0 ? -EIO : 0};
            srcs[i] = source_new(&s[i]);
        }
        rill_gen *g = wrap(k, srcs);
        int values = 0, rc;
        void *v;
        while ((rc = rill_gen_next(g, &v)) == 1) values += k == BATCH || ival(v) < 100;
        expect_eq_in(k, rc, -EIO);
        /* every value the failing source yielded before its error came
         * through (batch: its one full batch; the partial one is dropped) */
        expect_eq_in(k, values, k == BATCH ? 1 : 3);
        expect_eq_in(k, rill_gen_status(g), -EIO);
        expect_eq_in(k, rill_gen_next(g, NULL), 0);
        expect_cleaned_once(k, s);
        rill_gen_free(g);
    }
    return 0;
}

FIBER_TEST(adapt, throwing_into_an_adapter_ends_it_with_that_error_and_closes_its_sources) {
    for (int k = 0; k < NKINDS; k++) {
        source s[3];
        rill_gen *srcs[3];
        rill_gen *g = wrap_endless(k, s, srcs);
        expect_eq_in(k, rill_gen_next(g, NULL), 1);
        expect_eq_in(k, rill_gen_throw(g, -EIO, NULL), -EIO);
        expect_cleaned_once(k, s);
        expect_eq_in(k, rill_gen_status(g), -EIO);
        expect_eq_in(k, rill_gen_next(g, NULL), 0);
        expect_eq_in(k, live_fibers(), 1);
        rill_gen_free(g);
        expect_cleaned_once(k, s);
    }
    return 0;
}

/* ---- ownership: adapters close and free their sources ------------------------ */

FIBER_TEST(adapt, closing_an_adapter_runs_each_sources_cleanup_once) {
    for (int k = 0; k < NKINDS; k++) {
        source s[3];
        rill_gen *srcs[3];
        rill_gen *g = wrap_endless(k, s, srcs);
        expect_eq_in(k, rill_gen_next(g, NULL), 1);
        expect_eq_in(k, rill_gen_close(g), 0);
        expect_cleaned_once(k, s);
        expect_eq_in(k, rill_gen_next(g, NULL), 0);
        expect_eq_in(k, live_fibers(), 1);
        rill_gen_free(g);
        expect_cleaned_once(k, s);
    }
    return 0;
}

FIBER_TEST(adapt, freeing_a_suspended_adapter_runs_each_sources_cleanup_once) {
    for (int k = 0; k < NKINDS; k++) {
        source s[3];
        rill_gen *srcs[3];
        rill_gen *g = wrap_endless(k, s, srcs);
        expect_eq_in(k, rill_gen_next(g, NULL), 1);
        rill_gen_free(g);
        expect_cleaned_once(k, s);
        for (int i = 0; i < nsources(k); i++)
            expect_eq_in(k, s[i].end_rc < 0, 1); /* ended by the close, not exhausted */
        expect_eq_in(k, live_fibers(), 1);
    }
    return 0;
}

FIBER_TEST(adapt, freeing_an_unstarted_adapter_never_runs_its_sources) {
    for (int k = 0; k < NKINDS; k++) {
        source s[3];
        rill_gen *srcs[3];
        for (int i = 0; i < nsources(k); i++) {
            s[i] = (source){.count = -1};
            srcs[i] = source_new(&s[i]);
        }
        rill_gen_free(wrap(k, srcs));
        for (int i = 0; i < nsources(k); i++) {
            expect_eq_in(k, s[i].started, 0);
            expect_eq_in(k, s[i].cleanups, 0);
        }
    }
    return 0;
}

FIBER_TEST(adapt, freeing_an_unstarted_adapter_closes_a_source_already_started) {
    for (int k = 0; k < NKINDS; k++) {
        source s[3];
        rill_gen *srcs[3];
        for (int i = 0; i < nsources(k); i++) {
            s[i] = (source){.first = 100 * i, .count = -1};
            srcs[i] = source_new(&s[i]);
            expect_eq_in(k, rill_gen_next(srcs[i], NULL), 1); /* peeked by the caller */
        }
        rill_gen_free(wrap(k, srcs));
        expect_cleaned_once(k, s);
        for (int i = 0; i < nsources(k); i++) expect_eq_in(k, s[i].end_rc, -EPIPE);
    }
    return 0;
}

/* The adapter's own body never ran, but its source had: closing (or throwing
 * into) the adapter ends it, and "it closes them when it ends or is closed". */
FIBER_TEST(adapt, closing_an_unstarted_adapter_closes_a_source_already_started) {
    char missed[160] = "";
    for (int k = 0; k < NKINDS; k++) {
        source s[3];
        rill_gen *srcs[3];
        for (int i = 0; i < nsources(k); i++) {
            s[i] = (source){.first = 100 * i, .count = -1, .delay = SHARED_DELAY};
            srcs[i] = source_new(&s[i]);
            expect_eq_in(k, rill_gen_next(srcs[i], NULL), 1); /* peeked by the caller */
        }
        rill_gen *g = wrap(k, srcs);
        expect_eq_in(k, rill_gen_close(g), 0);
        if (s[0].cleanups != 1) {
            strcat(missed, " ");
            strcat(missed, kind_names[k]);
        }
        rill_gen_free(g);
        expect_cleaned_once(k, s);
    }
    cr_assert_str_empty(missed, "the source's cleanup ran only at free, not at close, for:%s",
                        missed);
    return 0;
}

FIBER_TEST(adapt, throwing_into_an_unstarted_adapter_closes_a_source_already_started) {
    char missed[160] = "";
    for (int k = 0; k < NKINDS; k++) {
        source s[3];
        rill_gen *srcs[3];
        for (int i = 0; i < nsources(k); i++) {
            s[i] = (source){.first = 100 * i, .count = -1, .delay = SHARED_DELAY};
            srcs[i] = source_new(&s[i]);
            expect_eq_in(k, rill_gen_next(srcs[i], NULL), 1);
        }
        rill_gen *g = wrap(k, srcs);
        expect_eq_in(k, rill_gen_throw(g, -EIO, NULL), -EIO);
        if (s[0].cleanups != 1) {
            strcat(missed, " ");
            strcat(missed, kind_names[k]);
        }
        rill_gen_free(g);
        expect_cleaned_once(k, s);
    }
    cr_assert_str_empty(missed, "the source's cleanup ran only at free, not at throw, for:%s",
                        missed);
    return 0;
}

FIBER_TEST(adapt, breaking_out_of_foreach_then_freeing_runs_the_cleanup_once) {
    source s = {.count = -1};
    mapper m = {.mul = 2};
    rill_gen *g = rill_gen_map(source_new(&s), map_fn, &m);
    cr_assert(g);
    int *v = NULL, seen = 0;
    rill_foreach(v, g) {
        if (++seen == 2) break;
    }
    cr_assert(v);
    expect_eq(*v, 2);
    expect_eq(s.produced, 2); /* map pulls nothing ahead */
    expect_eq(s.cleanups, 0); /* suspended, not closed, by the break */
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
    expect_eq(s.end_rc, -EPIPE);
    return 0;
}

FIBER_TEST(adapt, freeing_a_nested_pipeline_runs_every_sources_cleanup_once) {
    source s[3] = {{.count = -1, .delay = SHARED_DELAY},
                   {.first = 100, .count = -1, .delay = SHARED_DELAY},
                   {.first = 200, .count = -1, .delay = SHARED_DELAY}};
    mapper m = {.mul = 1};
    keeper k = {.mod = 1};
    rill_gen *srcs[3] = {rill_gen_map(source_new(&s[0]), map_fn, &m),
                         rill_gen_filter(source_new(&s[1]), keep_fn, &k),
                         rill_gen_prefetch(source_new(&s[2]), 2, sizeof(int))};
    cr_assert(srcs[0] && srcs[1] && srcs[2]);
    rill_gen *merged = rill_gen_merge(srcs, 3, sizeof(int));
    cr_assert(merged);
    rill_gen *g = rill_gen_take(rill_gen_batch(merged, 4, sizeof(int)), 100);
    cr_assert(g);
    for (int i = 0; i < 3; i++) expect_eq(rill_gen_next(g, NULL), 1);
    rill_gen_free(g);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(s[i].cleanups, 1, "source %d: %d cleanups", i, s[i].cleanups);
        cr_assert(s[i].started, "source %d never ran", i);
    }
    expect_eq(live_fibers(), 1);
    return 0;
}

/* ---- functions given to adapters may block ----------------------------------- */

static int set_after_5ms(void *arg) {
    int rc = rill_sleep(0.005);
    *(bool *)arg = true;
    return rc;
}

FIBER_TEST(adapt, functions_given_to_adapters_may_block) {
    source s = {.count = 4};
    mapper m = {.mul = 10, .sleep = 0.01};
    keeper k = {.mod = 20, .sleep = 0.005};
    rill_gen *g = rill_gen_filter(rill_gen_map(source_new(&s), map_fn, &m), keep_fn, &k);
    cr_assert(g);
    bool other_ran = false;
    rill_task *t = rill_spawn(set_after_5ms, &other_ran);
    cr_assert(t);
    double t0 = rill_now();
    expect_eq(next_int(g), 0);
    expect_eq(other_ran, true); /* other fibers ran while the functions slept */
    expect_eq(next_int(g), 20);
    expect_eq(rill_gen_next(g, NULL), 0);
    double took = rill_now() - t0;
    cr_assert(took >= 4 * 0.015 - 0.001, "4 values through 15 ms of functions took %.3f s",
              took);
    expect_eq(m.calls, 4);
    expect_eq(k.calls, 4);
    expect_eq(rill_join(t), 0);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, a_timeout_around_next_cancels_a_blocking_map_function) {
    source s = {.count = -1};
    mapper m = {.mul = 1, .sleep = RILL_FOREVER};
    rill_gen *g = rill_gen_map(source_new(&s), map_fn, &m);
    cr_assert(g);
    double t0 = rill_now();
    rill_scope sc;
    rill_scope_enter(&sc, 0.02);
    expect_eq(rill_gen_next(g, NULL), -ECANCELED);
    expect_eq(rill_scope_exit(&sc), -ETIMEDOUT);
    double took = rill_now() - t0;
    cr_assert(took < 0.3, "a 0.02 s timeout took %.3f s", took);
    expect_eq(s.cleanups, 1);
    expect_eq(rill_gen_next(g, NULL), 0);
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
    return 0;
}

/* ---- prefetch ---------------------------------------------------------------- */

FIBER_TEST(adapt, prefetch_never_runs_more_than_depth_values_ahead) {
    enum { DEPTH = 3 };
    int consumed = 0;
    source s = {.count = 20, .consumed = &consumed};
    rill_gen *g = rill_gen_prefetch(source_new(&s), DEPTH, sizeof(int));
    cr_assert(g);
    int *v;
    rill_foreach(v, g) {
        cr_assert_eq(*v, consumed, "value %d is %d", consumed, *v);
        consumed++;
        cr_assert(s.produced - consumed <= DEPTH, "%d produced, %d consumed, depth %d",
                  s.produced, consumed, DEPTH);
        expect_eq(rill_sleep(0.001), 0); /* a slow consumer */
        cr_assert(s.produced - consumed <= DEPTH, "%d produced, %d consumed, depth %d",
                  s.produced, consumed, DEPTH);
    }
    expect_eq(rill_gen_status(g), 0);
    expect_eq(consumed, 20);
    cr_assert(s.max_lead <= DEPTH, "the source ran %d values ahead, depth %d", s.max_lead,
              DEPTH);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, prefetch_runs_ahead_while_the_consumer_is_busy) {
    enum { DEPTH = 4 };
    const double delay = 0.02;
    source s = {.count = 10, .delay = delay};
    rill_gen *g = rill_gen_prefetch(source_new(&s), DEPTH, sizeof(int));
    cr_assert(g);
    expect_eq(next_int(g), 0);
    expect_eq(rill_sleep(DEPTH * delay + 0.04), 0);
    expect_eq(s.produced, 1 + DEPTH); /* depth values ready, and no more */
    double t0 = rill_now();
    for (int i = 1; i <= DEPTH; i++) expect_eq(next_int(g), i);
    double took = rill_now() - t0;
    cr_assert(took < DEPTH * delay / 2, "%d ready values took %.3f s", DEPTH, took);
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
    return 0;
}

FIBER_TEST(adapt, prefetch_copies_item_size_bytes_of_each_value) {
    source s = {.count = 10}; /* overwrites one buffer with every value */
    rill_gen *g = rill_gen_prefetch(source_new(&s), 5, sizeof(int));
    cr_assert(g);
    expect_eq(next_int(g), 0);
    expect_eq(rill_sleep(0.01), 0); /* let the ring fill */
    expect_eq(s.produced, 6);
    for (int i = 1; i < 10; i++) expect_eq(next_int(g), i);
    expect_eq(rill_gen_next(g, NULL), 0);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, closing_prefetch_stops_its_task_and_closes_the_source) {
    source s = {.count = -1, .delay = 0.001};
    rill_gen *g = rill_gen_prefetch(source_new(&s), 2, sizeof(int));
    cr_assert(g);
    expect_eq(next_int(g), 0);
    expect_eq(next_int(g), 1);
    expect_eq(live_fibers(), 2); /* main and the prefetching task */
    expect_eq(rill_gen_close(g), 0);
    expect_eq(live_fibers(), 1);
    expect_eq(s.cleanups, 1);
    int produced = s.produced;
    expect_eq(rill_sleep(0.01), 0);
    expect_eq(s.produced, produced);
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
    return 0;
}

FIBER_TEST(adapt, a_timeout_around_next_on_prefetch_cancels_cleanly) {
    source s = {.count = -1, .delay = 1.0};
    rill_gen *g = rill_gen_prefetch(source_new(&s), 2, sizeof(int));
    cr_assert(g);
    double t0 = rill_now();
    rill_scope sc;
    rill_scope_enter(&sc, 0.02);
    expect_eq(rill_gen_next(g, NULL), -ECANCELED);
    expect_eq(rill_scope_exit(&sc), -ETIMEDOUT);
    double took = rill_now() - t0;
    cr_assert(took < 0.3, "a 0.02 s timeout took %.3f s", took);
    expect_eq(live_fibers(), 1);
    expect_eq(rill_gen_next(g, NULL), 0);
    rill_gen_free(g);
    expect_eq(s.cleanups, 1);
    expect_eq(s.produced, 0);
    return 0;
}

/* ---- merge ------------------------------------------------------------------- */

enum { NMERGE = 10, PER_SOURCE = 5 };

/* Ten sources, the i-th yielding i*100 .. i*100+4, one every (i+1)*2 ms. */
static rill_gen *ten_sources_merged(source *s) {
    rill_gen *srcs[NMERGE];
    for (int i = 0; i < NMERGE; i++) {
        s[i] = (source){.first = 100 * i, .count = PER_SOURCE, .delay = 0.002 * (i + 1)};
        srcs[i] = source_new(&s[i]);
    }
    rill_gen *g = rill_gen_merge(srcs, NMERGE, sizeof(int));
    cr_assert(g);
    return g;
}

FIBER_TEST(adapt, merge_yields_every_value_once_and_each_sources_in_order) {
    source s[NMERGE];
    rill_gen *g = ten_sources_merged(s);
    int next[NMERGE] = {0}, total = 0;
    int *v;
    rill_foreach(v, g) {
        int src = *v / 100, k = *v % 100;
        cr_assert(src >= 0 && src < NMERGE, "unexpected value %d", *v);
        cr_assert_eq(k, next[src], "source %d: got its value %d, expected %d", src, k,
                     next[src]);
        next[src]++;
        total++;
    }
    expect_eq(rill_gen_status(g), 0);
    expect_eq(total, NMERGE * PER_SOURCE);
    for (int i = 0; i < NMERGE; i++) {
        cr_assert_eq(next[i], PER_SOURCE, "source %d: %d values", i, next[i]);
        expect_eq(s[i].cleanups, 1);
    }
    expect_eq(live_fibers(), 1);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, merge_consumes_its_sources_concurrently) {
    source s[NMERGE];
    double slowest = PER_SOURCE * 0.002 * NMERGE, sum = 0;
    for (int i = 0; i < NMERGE; i++) sum += PER_SOURCE * 0.002 * (i + 1);
    double t0 = rill_now();
    rill_gen *g = ten_sources_merged(s);
    int total = 0, rc;
    while ((rc = rill_gen_next(g, NULL)) == 1) total++;
    double took = rill_now() - t0;
    expect_eq(rc, 0);
    expect_eq(total, NMERGE * PER_SOURCE);
    cr_assert(took >= slowest - 0.001, "took %.3f s, less than the slowest source's %.3f s",
              took, slowest);
    cr_assert(took < sum / 2, "took %.3f s: the slowest source takes %.3f s, all in turn %.3f s",
              took, slowest, sum);
    rill_gen_free(g);
    return 0;
}

/* "Consumed concurrently (one task each)": a source that is always ready
 * must not keep the others from ever being read. */
FIBER_TEST(adapt, merge_reads_every_source_even_when_none_blocks) {
    source s[3];
    rill_gen *srcs[3];
    for (int i = 0; i < 3; i++) {
        s[i] = (source){.first = 100 * i, .count = -1};
        srcs[i] = source_new(&s[i]);
    }
    rill_gen *g = rill_gen_merge(srcs, 3, sizeof(int));
    cr_assert(g);
    int from[3] = {0};
    for (int i = 0; i < 30; i++) from[next_int(g) / 100]++;
    rill_gen_free(g);
    cr_assert(from[0] && from[1] && from[2],
              "of the first 30 values, %d came from source 0, %d from 1, %d from 2 "
              "(started: %d, %d, %d)", from[0], from[1], from[2], s[0].started,
              s[1].started, s[2].started);
    for (int i = 0; i < 3; i++) expect_eq(s[i].cleanups, s[i].started);
    return 0;
}

FIBER_TEST(adapt, a_failing_merge_source_ends_the_merge_after_closing_the_others) {
    source s[3] = {{.count = 2, .delay = 0.005, .fail = -EIO},
                   {.first = 100, .count = -1, .delay = 0.003},
                   {.first = 200, .count = -1, .delay = 0.003}};
    rill_gen *srcs[3];
    for (int i = 0; i < 3; i++) srcs[i] = source_new(&s[i]);
    rill_gen *g = rill_gen_merge(srcs, 3, sizeof(int));
    cr_assert(g);
    double t0 = rill_now();
    int rc, from_failing = 0;
    void *v;
    while ((rc = rill_gen_next(g, &v)) == 1) from_failing += ival(v) < 100;
    double took = rill_now() - t0;
    expect_eq(rc, -EIO);
    cr_assert(took < 0.3, "the merge took %.3f s to end", took);
    expect_eq(from_failing, 2);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(s[i].cleanups, 1, "source %d: %d cleanups", i, s[i].cleanups);
    expect_eq(live_fibers(), 1);
    expect_eq(rill_gen_status(g), -EIO);
    expect_eq(rill_gen_next(g, NULL), 0);
    rill_gen_free(g);
    for (int i = 0; i < 3; i++) expect_eq(s[i].cleanups, 1);
    return 0;
}

FIBER_TEST(adapt, closing_a_merge_early_stops_every_source) {
    source s[3];
    rill_gen *srcs[3];
    for (int i = 0; i < 3; i++) {
        s[i] = (source){.first = 100 * i, .count = -1, .delay = 0.002};
        srcs[i] = source_new(&s[i]);
    }
    rill_gen *g = rill_gen_merge(srcs, 3, sizeof(int));
    cr_assert(g);
    for (int i = 0; i < 5; i++) expect_eq(rill_gen_next(g, NULL), 1);
    expect_eq(rill_gen_close(g), 0);
    expect_eq(live_fibers(), 1);
    int produced[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(s[i].cleanups, 1, "source %d: %d cleanups", i, s[i].cleanups);
        produced[i] = s[i].produced;
    }
    expect_eq(rill_sleep(0.01), 0);
    for (int i = 0; i < 3; i++) expect_eq(s[i].produced, produced[i]);
    rill_gen_free(g);
    for (int i = 0; i < 3; i++) expect_eq(s[i].cleanups, 1);
    return 0;
}

FIBER_TEST(adapt, merge_with_item_size_zero_passes_the_pointers_on) {
    int a[3] = {1, 2, 3}, b[3] = {101, 102, 103};
    source s[2] = {{.count = 3, .fixed = a, .delay = 0.001},
                   {.count = 3, .fixed = b, .delay = 0.0015}};
    rill_gen *srcs[2] = {source_new(&s[0]), source_new(&s[1])};
    rill_gen *g = rill_gen_merge(srcs, 2, 0);
    cr_assert(g);
    int seen_a[3] = {0}, seen_b[3] = {0};
    int *v;
    rill_foreach(v, g) {
        if (v >= a && v < a + 3) seen_a[v - a]++;
        else if (v >= b && v < b + 3) seen_b[v - b]++;
        else cr_assert_fail("yielded %p, not a pointer the sources yielded", (void *)v);
    }
    expect_eq(rill_gen_status(g), 0);
    for (int i = 0; i < 3; i++) {
        expect_eq(seen_a[i], 1);
        expect_eq(seen_b[i], 1);
    }
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, a_timeout_around_next_on_merge_cancels_cleanly) {
    source s[3];
    rill_gen *srcs[3];
    for (int i = 0; i < 3; i++) {
        s[i] = (source){.first = 100 * i, .count = -1, .delay = 1.0};
        srcs[i] = source_new(&s[i]);
    }
    rill_gen *g = rill_gen_merge(srcs, 3, sizeof(int));
    cr_assert(g);
    double t0 = rill_now();
    rill_scope sc;
    rill_scope_enter(&sc, 0.02);
    expect_eq(rill_gen_next(g, NULL), -ECANCELED);
    expect_eq(rill_scope_exit(&sc), -ETIMEDOUT);
    double took = rill_now() - t0;
    cr_assert(took < 0.3, "a 0.02 s timeout took %.3f s", took);
    expect_eq(live_fibers(), 1);
    expect_eq(rill_gen_next(g, NULL), 0);
    rill_gen_free(g);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(s[i].cleanups, 1, "source %d: %d cleanups", i, s[i].cleanups);
        expect_eq(s[i].produced, 0);
    }
    return 0;
}

/* A timeout while the merge is mid-stream: some values were delivered, the
 * sources are suspended or blocked in different places. */
FIBER_TEST(adapt, a_timeout_around_next_on_a_running_merge_cancels_cleanly) {
    source s[3] = {{.count = -1, .delay = 0.001},
                   {.first = 100, .count = -1, .delay = 0.5},
                   {.first = 200, .count = 1}};
    rill_gen *srcs[3];
    for (int i = 0; i < 3; i++) srcs[i] = source_new(&s[i]);
    rill_gen *g = rill_gen_merge(srcs, 3, sizeof(int));
    cr_assert(g);
    for (int i = 0; i < 4; i++) expect_eq(rill_gen_next(g, NULL), 1);
    s[0].delay = 1.0; /* from now on, nothing comes within the timeout */
    expect_eq(rill_sleep(0.005), 0);
    void *v;
    int rc;
    rill_scope sc;
    rill_scope_enter(&sc, 0.02);
    while ((rc = rill_gen_next(g, &v)) == 1) {}
    expect_eq(rc, -ECANCELED);
    expect_eq(rill_scope_exit(&sc), -ETIMEDOUT);
    expect_eq(live_fibers(), 1);
    rill_gen_free(g);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(s[i].cleanups, 1, "source %d: %d cleanups", i, s[i].cleanups);
    return 0;
}

/* ---- invalid arguments ------------------------------------------------------- */

#define expect_einval(call)                                                     \
    do {                                                                        \
        errno = 0;                                                              \
        rill_gen *r_ = (call);                                                  \
        cr_assert_null(r_, "%s returned %p", #call, (void *)r_);               \
        cr_assert_eq(errno, EINVAL, "%s: errno %d (%s), expected EINVAL", #call, \
                     errno, strerror(errno));                                   \
    } while (0)

FIBER_TEST(adapt, adapters_refuse_a_null_source_with_einval) {
    mapper m = {.mul = 1};
    keeper k = {.mod = 1};
    expect_einval(rill_gen_map(NULL, map_fn, &m));
    expect_einval(rill_gen_filter(NULL, keep_fn, &k));
    expect_einval(rill_gen_take(NULL, 1));
    expect_einval(rill_gen_batch(NULL, 1, sizeof(int)));
    expect_einval(rill_gen_prefetch(NULL, 1, sizeof(int)));
    expect_einval(rill_gen_merge(NULL, 1, sizeof(int)));
    return 0;
}

FIBER_TEST(adapt, map_and_filter_refuse_a_null_function_with_einval) {
    source s = {.count = 1};
    rill_gen *src = source_new(&s);
    expect_einval(rill_gen_map(src, NULL, NULL));
    expect_einval(rill_gen_filter(src, NULL, NULL));
    rill_gen_free(src);
    return 0;
}

FIBER_TEST(adapt, batch_refuses_a_size_of_zero_with_einval) {
    source s = {.count = 1};
    rill_gen *src = source_new(&s);
    expect_einval(rill_gen_batch(src, 0, sizeof(int)));
    expect_einval(rill_gen_batch(src, 0, 0));
    rill_gen_free(src);
    return 0;
}

FIBER_TEST(adapt, prefetch_refuses_a_depth_of_zero_with_einval) {
    source s = {.count = 1};
    rill_gen *src = source_new(&s);
    expect_einval(rill_gen_prefetch(src, 0, sizeof(int)));
    expect_einval(rill_gen_prefetch(src, 0, 0));
    rill_gen_free(src);
    return 0;
}

FIBER_TEST(adapt, merge_refuses_no_sources_or_a_null_one_with_einval) {
    source s = {.count = 1};
    rill_gen *srcs[3] = {source_new(&s), NULL, NULL};
    expect_einval(rill_gen_merge(srcs, 0, sizeof(int)));
    expect_einval(rill_gen_merge(srcs, 2, sizeof(int)));
    srcs[1] = srcs[0];
    srcs[0] = NULL;
    expect_einval(rill_gen_merge(srcs, 2, sizeof(int)));
    rill_gen_free(srcs[1]);
    return 0;
}

FIBER_TEST(adapt, a_refused_adapter_leaves_its_source_to_the_caller) {
    source s = {.count = 3};
    rill_gen *src = source_new(&s);
    expect_einval(rill_gen_batch(src, 0, sizeof(int)));
    expect_einval(rill_gen_prefetch(src, 0, sizeof(int)));
    expect_einval(rill_gen_map(src, NULL, NULL));
    rill_gen *srcs[2] = {src, NULL};
    expect_einval(rill_gen_merge(srcs, 2, sizeof(int)));
    /* still the caller's, untouched, and usable */
    expect_eq(s.started, 0);
    expect_ints(src, (const int[]){0, 1, 2}, 3);
    expect_eq(rill_gen_next(src, NULL), 0);
    expect_eq(s.cleanups, 1);
    rill_gen_free(src);
    return 0;
}

FIBER_TEST(adapt, an_impossible_batch_size_fails_and_leaves_the_source_to_the_caller) {
    source s = {.count = 1};
    rill_gen *src = source_new(&s);
    errno = 0;
    cr_assert_null(rill_gen_batch(src, SIZE_MAX / 2, sizeof(int)));
    cr_assert(errno == EINVAL || errno == ENOMEM, "errno %d (%s)", errno, strerror(errno));
    expect_eq(next_int(src), 0);
    rill_gen_free(src);
    expect_eq(s.cleanups, 1);
    return 0;
}

/* ---- regressions ---------------------------------------------------------------- */

static int endless(rill_gen *g, void *arg) {
    int i = (int)(intptr_t)arg;
    while (rill_yield(g, &i) == 0) i += 10;
    return 0;
}

FIBER_TEST(adapt, the_same_source_twice_in_a_merge_is_refused) {
    rill_gen *s = rill_gen_new(endless, NULL);
    rill_gen *srcs[2] = {s, s};
    errno = 0;
    cr_expect_null(rill_gen_merge(srcs, 2, sizeof(int)));
    expect_eq(errno, EINVAL);
    rill_gen_free(s);
    return 0;
}

FIBER_TEST(adapt, a_source_owned_by_an_adapter_cannot_be_freed_or_reused) {
    rill_gen *s = rill_gen_new(endless, NULL);
    rill_gen *t = rill_gen_take(s, 2);
    errno = 0;
    rill_gen_free(s); /* the adapter owns it: refused, not freed twice */
    expect_eq(errno, EINVAL);
    errno = 0;
    cr_expect_null(rill_gen_prefetch(s, 2, sizeof(int)));
    expect_eq(errno, EINVAL);
    rill_gen_free(t);
    return 0;
}

static int yields_null(rill_gen *g, void *arg) {
    (void)arg;
    int one = 1;
    if (rill_yield(g, &one) < 0) return 0;
    rill_yield(g, NULL);
    return 0;
}

FIBER_TEST(adapt, a_null_value_ends_a_copying_adapter_with_einval) {
    rill_gen *b = rill_gen_batch(rill_gen_new(yields_null, NULL), 4, sizeof(int));
    void *v;
    expect_eq(rill_gen_next(b, &v), -EINVAL);
    rill_gen_free(b);
    rill_gen *p = rill_gen_prefetch(rill_gen_new(yields_null, NULL), 2, sizeof(int));
    expect_eq(rill_gen_next(p, &v), 1);
    expect_eq(rill_gen_next(p, &v), -EINVAL);
    rill_gen_free(p);
    return 0;
}

FIBER_TEST(adapt, merge_sources_that_never_block_take_turns) {
    rill_gen *srcs[3];
    for (int i = 0; i < 3; i++) srcs[i] = rill_gen_new(endless, (void *)(intptr_t)i);
    rill_gen *m = rill_gen_merge(srcs, 3, sizeof(int));
    bool seen[3] = {false, false, false};
    void *v;
    for (int i = 0; i < 30; i++) {
        expect_eq(rill_gen_next(m, &v), 1);
        seen[*(int *)v % 10] = true;
    }
    cr_expect(seen[0] && seen[1] && seen[2]);
    rill_gen_free(m);
    return 0;
}

static int slow_numbers(rill_gen *g, void *arg) {
    (void)arg;
    for (int i = 0; i < 10; i++) {
        int rc = rill_sleep(0.005);
        if (rc < 0) return rc;
        if (rill_yield(g, &i) < 0) break;
    }
    return 0;
}

static int shielded_exporter(void *arg) {
    int *out = arg; /* [values, last rc] */
    rill_gen *p = rill_gen_prefetch(rill_gen_new(slow_numbers, NULL), 2, sizeof(int));
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_scope_shield(&s, true);
    void *v;
    int rc;
    while ((rc = rill_gen_next(p, &v)) == 1) out[0]++;
    rill_scope_exit(&s);
    out[1] = rc;
    rill_gen_free(p);
    return 0;
}

static int main_ends_during_an_export(void *arg) {
    rill_detach(rill_spawn(shielded_exporter, arg));
    return rill_sleep(0.012);
}

Test(adapt, a_prefetch_whose_task_is_cancelled_from_outside_does_not_look_finished,
     .timeout = TEST_TIMEOUT) {
    int out[2] = {0, 1};
    expect_eq(rill_run(main_ends_during_an_export, out), 0);
    /* rill_run's end cancelled the puller: the stream was cut, not ended. */
    if (out[0] < 10) expect_eq(out[1], -ECANCELED);
}

static int iterates_once(void *arg) {
    void *v;
    return rill_gen_next(arg, &v) == 1 ? 0 : -EIO;
}

Test(adapt, a_prefetch_with_running_tasks_is_refused_from_outside_a_fiber,
     .timeout = TEST_TIMEOUT) {
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    expect_eq(rill_attach(loop), 0);
    rill_gen *p = rill_gen_prefetch(rill_gen_new(slow_numbers, NULL), 2, sizeof(int));
    rill_detach(rill_spawn(iterates_once, p));
    ev_run(loop, EVRUN_ONCE); /* the task takes one value; the puller runs on */
    void *v;
    /* From the loop's own code (not a fiber) it could not wait for its
     * puller: refused, instead of returning with the puller running. */
    expect_eq(rill_gen_next(p, &v), -EPERM);
    errno = 0;
    rill_gen_free(p);
    expect_eq(errno, EPERM);
    expect_eq(rill_detach_loop(), 0); /* the run's end closes it */
    rill_gen_free(p);                 /* now nothing runs for it */
    ev_loop_destroy(loop);
}

/* ---- adapters that store what they yield ------------------------------------ */

/* The letter of a text source's or a test file's i-th value. */
static char letter(int i) { return (char)('a' + i % 26); }

/* A source of strings from one buffer it rewrites (and may move) for every
 * value: its i-th value is lens[i] copies of letter(i).  An adapter that
 * kept the pointer instead of a copy would see later values, or freed
 * memory. */
typedef struct texts {
    const size_t *lens;
    int count;
    int fail;            /* returned once the values are out */
    const int *consumed; /* the consumer's count, to measure how far ahead it runs */
    int produced, max_lead, cleanups;
    char *buf;
} texts;

static int texts_body(rill_gen *g, void *arg) {
    texts *t = arg;
    int rc = 0;
    for (int i = 0; i < t->count; i++) {
        char *b = realloc(t->buf, t->lens[i] + 1);
        if (!b) {
            rc = -ENOMEM;
            break;
        }
        t->buf = b;
        memset(b, letter(i), t->lens[i]);
        b[t->lens[i]] = 0;
        t->produced++;
        if (t->consumed && t->produced - *t->consumed > t->max_lead)
            t->max_lead = t->produced - *t->consumed;
        if ((rc = rill_yield(g, b)) < 0) break;
    }
    t->cleanups++;
    free(t->buf);
    t->buf = NULL;
    if (rc == 0) return t->fail;
    return rc == -EPIPE ? 0 : rc;
}

static rill_gen *texts_new(texts *t) {
    rill_gen *g = rill_gen_new(texts_body, t);
    cr_assert(g, "rill_gen_new: %s", strerror(errno));
    return g;
}

/* got is value i of a text source or test file: len copies of letter(i),
 * in upper case if upper. */
static void expect_text(const char *got, int i, size_t len, bool upper) {
    cr_assert(got, "value %d is NULL", i);
    size_t n = strlen(got);
    cr_assert_eq(n, len, "value %d is %zu bytes long, expected %zu", i, n, len);
    char want = upper ? (char)(letter(i) - 'a' + 'A') : letter(i);
    for (size_t j = 0; j < n; j++)
        cr_assert_eq(got[j], want, "value %d: byte %zu is '%c', expected '%c'", i, j, got[j],
                     want);
}

/* Lines and values of varied lengths: empty, short, over 64 KiB (the file
 * reader's chunk), exactly 64 KiB, one over 200 KiB. */
static const size_t text_lens[] = {5, 0, 70000, 1, 65536, 12, 200000, 3, 64, 7};
enum { NTEXTS = sizeof text_lens / sizeof text_lens[0] };

/* An uppercase copy of a string, into a buffer of rill_size_str(in) bytes. */
static int upper_fn(void *in, void *out, void *ctx) {
    int *calls = ctx;
    if (calls) ++*calls;
    const char *s = in;
    char *o = out;
    size_t i = 0;
    for (; s[i]; i++) o[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 'a' + 'A' : s[i]);
    o[i] = 0;
    return 0;
}

FIBER_TEST(adapt, map_into_yields_new_values_from_a_buffer_the_adapter_owns) {
    source s = {.count = 5};
    mapper m = {.mul = 2, .add = 1};
    rill_gen *g = rill_gen_map_into(source_new(&s), map_into_fn, sizeof(int), &m);
    cr_assert(g, "rill_gen_map_into: %s", strerror(errno));
    void *first = NULL, *v;
    for (int i = 0; i < 5; i++) {
        expect_eq(rill_gen_next(g, &v), 1);
        expect_eq(ival(v), 2 * i + 1);
        if (!first) first = v;
        cr_assert_eq(v, first, "value %d lives at %p, the first at %p: one buffer", i, v, first);
        cr_assert_neq(v, (void *)&s.buf, "the source's own buffer was yielded");
    }
    expect_eq(m.out, 0); /* the function stored nothing of its own */
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(s.cleanups, 1);
    rill_gen_free(g);
    return 0;
}

/* A struct made from each value: what a parser yields. */
typedef struct parsed {
    int value, square;
    char name[16];
} parsed;

static int parse_fn(void *in, void *out, void *ctx) {
    (void)ctx;
    parsed *p = out;
    p->value = ival(in);
    p->square = p->value * p->value;
    snprintf(p->name, sizeof p->name, "item-%d", p->value);
    return 0;
}

FIBER_TEST(adapt, map_into_fills_a_struct_for_each_value) {
    source s = {.count = 4, .first = 7};
    rill_gen *g = rill_gen_map_into(source_new(&s), parse_fn, sizeof(parsed), NULL);
    cr_assert(g);
    parsed *p;
    int i = 0;
    rill_foreach(p, g) {
        char name[16];
        snprintf(name, sizeof name, "item-%d", 7 + i);
        expect_eq(p->value, 7 + i);
        expect_eq(p->square, (7 + i) * (7 + i));
        cr_assert_str_eq(p->name, name);
        i++;
    }
    expect_eq(rill_gen_status(g), 0);
    expect_eq(i, 4);
    rill_gen_free(g);
    return 0;
}

/* A value larger than the ring moves in one step. */
typedef struct wide {
    int value;
    char pad[250];
    int tail;
} wide;

static int widen_fn(void *in, void *out, void *ctx) {
    (void)ctx;
    wide *w = out;
    w->value = w->tail = ival(in);
    memset(w->pad, 'a' + ival(in) % 26, sizeof w->pad);
    return 0;
}

FIBER_TEST(adapt, structs_mapped_into_then_prefetched_arrive_whole) {
    enum { N = 20 };
    source s = {.count = N};
    rill_gen *g = rill_gen_prefetch(
        rill_gen_map_into(source_new(&s), widen_fn, sizeof(wide), NULL), 3, sizeof(wide));
    cr_assert(g);
    expect_eq(rill_gen_next(g, NULL), 1);
    expect_eq(rill_sleep(0.01), 0); /* the ring fills while the map reuses its buffer */
    expect_eq(s.produced, 1 + 3);
    wide *w;
    int i = 1;
    rill_foreach(w, g) {
        expect_eq(w->value, i);
        expect_eq(w->tail, i);
        for (size_t j = 0; j < sizeof w->pad; j++)
            cr_assert_eq(w->pad[j], 'a' + i % 26, "value %d: pad byte %zu is %d", i, j, w->pad[j]);
        i++;
    }
    expect_eq(rill_gen_status(g), 0);
    expect_eq(i, N);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, a_map_into_function_error_ends_the_stream_and_closes_the_source) {
    for (int sized = 0; sized < 2; sized++) {
        source s = {.count = -1};
        mapper m = {.mul = 3, .err = -ERANGE, .fail_at = 2};
        rill_gen *src = source_new(&s);
        rill_gen *g = sized ? rill_gen_map_sized(src, map_into_fn, int_size, &m)
                            : rill_gen_map_into(src, map_into_fn, sizeof(int), &m);
        cr_assert(g);
        expect_ints(g, (const int[]){0, 3}, 2);
        expect_eq(rill_gen_next(g, NULL), -ERANGE);
        expect_eq(s.cleanups, 1);
        expect_eq(s.end_rc, -EPIPE);
        expect_eq(s.produced, 3);
        expect_eq(rill_gen_status(g), -ERANGE);
        expect_eq(rill_gen_next(g, NULL), 0);
        rill_gen_free(g);
        expect_eq(s.cleanups, 1);
    }
    return 0;
}

FIBER_TEST(adapt, map_sized_grows_its_buffer_to_each_outputs_size) {
    texts t = {.lens = text_lens, .count = NTEXTS};
    int calls = 0;
    rill_gen *g = rill_gen_map_sized(texts_new(&t), upper_fn, rill_size_str, &calls);
    cr_assert(g, "rill_gen_map_sized: %s", strerror(errno));
    const char *v;
    int i = 0;
    rill_foreach(v, g) {
        expect_text(v, i, text_lens[i], true);
        i++;
    }
    expect_eq(rill_gen_status(g), 0);
    expect_eq(i, NTEXTS);
    expect_eq(calls, NTEXTS);
    expect_eq(t.cleanups, 1);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, prefetch_sized_copies_values_of_any_size_before_the_source_rewrites_them) {
    enum { DEPTH = 3 };
    texts t = {.lens = text_lens, .count = NTEXTS};
    rill_gen *g = rill_gen_prefetch_sized(texts_new(&t), DEPTH, rill_size_str, NULL);
    cr_assert(g, "rill_gen_prefetch_sized: %s", strerror(errno));
    void *v;
    expect_eq(rill_gen_next(g, &v), 1);
    expect_text(v, 0, text_lens[0], false);
    expect_eq(rill_sleep(0.01), 0); /* the ring fills: the source rewrites its buffer */
    expect_eq(t.produced, 1 + DEPTH);
    for (int i = 1; i < NTEXTS; i++) {
        expect_eq(rill_gen_next(g, &v), 1);
        expect_text(v, i, text_lens[i], false);
    }
    expect_eq(rill_gen_next(g, NULL), 0);
    expect_eq(t.cleanups, 1);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, prefetch_sized_runs_ahead_by_depth_values_and_never_more) {
    enum { DEPTH = 4, N = 30 };
    size_t lens[N];
    for (int i = 0; i < N; i++) lens[i] = (size_t)(i * 997 % 3000);
    int consumed = 0;
    texts t = {.lens = lens, .count = N, .consumed = &consumed};
    rill_gen *g = rill_gen_prefetch_sized(texts_new(&t), DEPTH, rill_size_str, NULL);
    cr_assert(g);
    const char *v;
    rill_foreach(v, g) {
        expect_text(v, consumed, lens[consumed], false);
        consumed++;
        expect_eq(rill_sleep(0.001), 0); /* a slow consumer: the source gets ahead */
        cr_assert(t.produced - consumed <= DEPTH, "%d produced, %d consumed, depth %d",
                  t.produced, consumed, DEPTH);
    }
    expect_eq(rill_gen_status(g), 0);
    expect_eq(consumed, N);
    expect_eq(t.max_lead, DEPTH); /* as far ahead as allowed, and no further */
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, merge_sized_copies_the_values_of_every_source) {
    enum { NSRC = 3 };
    texts t[NSRC];
    rill_gen *srcs[NSRC];
    for (int i = 0; i < NSRC; i++) {
        t[i] = (texts){.lens = text_lens, .count = NTEXTS};
        srcs[i] = texts_new(&t[i]);
    }
    rill_gen *g = rill_gen_merge_sized(srcs, NSRC, rill_size_str, NULL);
    cr_assert(g, "rill_gen_merge_sized: %s", strerror(errno));
    /* Sources yield the same texts, each in order: the k-th value of a
     * length is from the source that got there k-th. */
    int seen[NTEXTS] = {0}, total = 0;
    const char *v;
    rill_foreach(v, g) {
        size_t n = strlen(v);
        int i = n ? v[0] - 'a' : 1; /* the one empty value is the second */
        cr_assert(i >= 0 && i < NTEXTS, "unexpected value of %zu bytes", n);
        expect_text(v, i, text_lens[i], false);
        seen[i]++;
        total++;
    }
    expect_eq(rill_gen_status(g), 0);
    expect_eq(total, NSRC * NTEXTS);
    for (int i = 0; i < NTEXTS; i++) expect_eq(seen[i], NSRC);
    for (int i = 0; i < NSRC; i++) expect_eq(t[i].cleanups, 1);
    rill_gen_free(g);
    return 0;
}

FIBER_TEST(adapt, rill_size_str_counts_the_terminating_nul_and_gives_0_for_null) {
    expect_eq(rill_size_str("", NULL), 1);
    expect_eq(rill_size_str("abc", NULL), 4);
    expect_eq(rill_size_str(NULL, NULL), 0);
    return 0;
}

/* A size of 0 for every value. */
static size_t no_size(const void *item, void *ctx) {
    (void)item, (void)ctx;
    return 0;
}

enum { SIZED_MAP, SIZED_PREFETCH, SIZED_MERGE, NSIZED };
static const char *const sized_names[NSIZED] = {"map_sized", "prefetch_sized", "merge_sized"};

/* The sized adapter of kind k over src, sizing with size_fn. */
static rill_gen *sized(int k, rill_gen *src, rill_size_fn *size_fn) {
    rill_gen *g = NULL;
    switch (k) {
    case SIZED_MAP: g = rill_gen_map_sized(src, map_into_fn, size_fn, &identity); break;
    case SIZED_PREFETCH: g = rill_gen_prefetch_sized(src, 2, size_fn, NULL); break;
    case SIZED_MERGE: g = rill_gen_merge_sized(&src, 1, size_fn, NULL); break;
    }
    cr_assert(g, "rill_gen_%s: %s", sized_names[k], strerror(errno));
    return g;
}

/* Every sized adapter ends with err once size_fn measures the first value,
 * after closing its source. */
static void expect_sized_end(rill_size_fn *size_fn, int err) {
    for (int k = 0; k < NSIZED; k++) {
        source s = {.count = -1};
        rill_gen *g = sized(k, source_new(&s), size_fn);
        int rc = rill_gen_next(g, NULL);
        cr_assert_eq(rc, err, "%s: %d (%s), expected %d (%s)", sized_names[k], rc,
                     rill_strerror(rc), err, rill_strerror(err));
        expect_eq(rill_gen_status(g), err);
        cr_assert_eq(s.cleanups, 1, "%s: the source cleaned up %d times", sized_names[k],
                     s.cleanups);
        expect_eq(rill_gen_next(g, NULL), 0);
        rill_gen_free(g);
        expect_eq(s.cleanups, 1);
    }
}

FIBER_TEST(adapt, a_size_of_zero_ends_a_sized_adapter_with_einval) {
    expect_sized_end(no_size, -EINVAL);
    return 0;
}

/* The ENOMEM tests ask for sizes no allocator can give.  The sanitizers
 * report such a request (as a bug, or with a warning when told to return
 * NULL) instead of failing it quietly: the plain and valgrind runs test them. */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
/* A size no allocator can give. */
static size_t huge_size(const void *item, void *ctx) {
    (void)item, (void)ctx;
    return SIZE_MAX / 2;
}

FIBER_TEST(adapt, a_value_too_large_to_copy_ends_a_sized_adapter_with_enomem) {
    expect_sized_end(huge_size, -ENOMEM);
    return 0;
}

/* ENOMEM where creating the adapter needs memory it cannot have. */
FIBER_TEST(adapt, an_adapter_too_large_to_allocate_fails_with_enomem_and_leaves_the_source) {
    source s = {.count = 2};
    rill_gen *src = source_new(&s);
    errno = 0;
    cr_assert_null(rill_gen_map_into(src, map_into_fn, SIZE_MAX / 2, &identity));
    expect_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(rill_gen_prefetch_sized(src, SIZE_MAX / 64, int_size, NULL));
    expect_eq(errno, ENOMEM);
    expect_ints(src, (const int[]){0, 1}, 2);
    rill_gen_free(src);
    expect_eq(s.cleanups, 1);
    return 0;
}
#endif

/* int_size, for values that must not be NULL. */
static size_t int_size_not_null(const void *item, void *ctx) {
    cr_assert(item, "a size function was called with NULL");
    return int_size(item, ctx);
}

FIBER_TEST(adapt, a_null_value_ends_a_sized_adapter_with_einval_without_measuring_it) {
    for (int k = 0; k < NSIZED; k++) {
        rill_gen *g = sized(k, rill_gen_new(yields_null, NULL), int_size_not_null);
        void *v;
        expect_eq(rill_gen_next(g, &v), 1);
        expect_eq(rill_gen_next(g, &v), -EINVAL);
        rill_gen_free(g);
    }
    return 0;
}

FIBER_TEST(adapt, adapters_that_store_values_refuse_bad_arguments_and_leave_the_source) {
    source s = {.count = 3};
    rill_gen *src = source_new(&s);
    mapper m = {.mul = 1};
    expect_einval(rill_gen_map_into(NULL, map_into_fn, sizeof(int), &m));
    expect_einval(rill_gen_map_into(src, NULL, sizeof(int), &m));
    expect_einval(rill_gen_map_into(src, map_into_fn, 0, &m));
    expect_einval(rill_gen_map_sized(NULL, map_into_fn, int_size, &m));
    expect_einval(rill_gen_map_sized(src, NULL, int_size, &m));
    expect_einval(rill_gen_map_sized(src, map_into_fn, NULL, &m));
    expect_einval(rill_gen_prefetch_sized(NULL, 2, int_size, NULL));
    expect_einval(rill_gen_prefetch_sized(src, 0, int_size, NULL));
    expect_einval(rill_gen_prefetch_sized(src, 2, NULL, NULL));
    expect_einval(rill_gen_prefetch_sized(src, SIZE_MAX, int_size, NULL)); /* overflows */
    rill_gen *srcs[2] = {src, src};
    expect_einval(rill_gen_merge_sized(NULL, 1, int_size, NULL));
    expect_einval(rill_gen_merge_sized(srcs, 0, int_size, NULL));
    expect_einval(rill_gen_merge_sized(srcs, 1, NULL, NULL));
    expect_einval(rill_gen_merge_sized(srcs, 2, int_size, NULL)); /* twice */
    rill_gen *owner = rill_gen_take(src, 10);
    cr_assert(owner);
    expect_einval(rill_gen_map_into(src, map_into_fn, sizeof(int), &m)); /* owned */
    expect_einval(rill_gen_prefetch_sized(src, 2, int_size, NULL));
    expect_eq(s.started, 0);
    expect_ints(owner, (const int[]){0, 1, 2}, 3); /* still whole */
    expect_eq(rill_gen_next(owner, NULL), 0);
    rill_gen_free(owner);
    expect_eq(s.cleanups, 1);
    return 0;
}


/* ---- a file's lines through adapters ---------------------------------------- */

/* Write a temp file (path: a mkstemp template) whose line i is lens[i]
 * copies of letter(i). */
static void write_lines(char *path, const size_t *lens, int n) {
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    FILE *f = fdopen(fd, "w");
    cr_assert(f);
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < lens[i]; j++) putc(letter(i), f);
        putc('\n', f);
    }
    cr_assert_eq(fclose(f), 0);
}

static int nothing(void *arg) {
    (void)arg;
    return 0;
}

/* The fds open once the thread pool has been used in this run: its first
 * job opens the fd that wakes the loop, which stays until the run's end. */
static int fds_once_the_pool_runs(void) {
    expect_eq(rill_to_thread(nothing, NULL), 0);
    return count_open_fds();
}

/* rill_gen_map's function that counts the lines read, passing them on. */
static int count_fn(void *in, void **out, void *ctx) {
    ++*(int *)ctx;
    *out = in;
    return 0;
}

/* Wait until *nread reaches want (the reads go through the thread pool:
 * generously), then a little longer, to see whether it goes beyond. */
static void wait_until_read(const int *nread, int want) {
    double deadline = rill_now() + 10;
    while (*nread < want && rill_now() < deadline) expect_eq(rill_sleep(0.002), 0);
    expect_eq(rill_sleep(0.02), 0);
}

FIBER_TEST(adapt, a_files_lines_prefetched_in_one_line_arrive_whole_and_in_order) {
    char path[] = "/tmp/rill-adapt-XXXXXX";
    write_lines(path, text_lens, NTEXTS);
    rill_gen *lines = rill_gen_prefetch_sized(rill_file_lines(path), 64, rill_size_str, NULL);
    cr_assert(lines, "%s", strerror(errno));
    const char *line;
    int i = 0;
    rill_foreach(line, lines) {
        cr_assert(i < NTEXTS, "more lines than written");
        expect_text(line, i, text_lens[i], false);
        expect_eq(rill_sleep(0.001), 0); /* the file is read meanwhile */
        i++;
    }
    expect_eq(rill_gen_status(lines), 0);
    expect_eq(i, NTEXTS);
    rill_gen_free(lines);
    unlink(path);
    return 0;
}

FIBER_TEST(adapt, a_files_lines_are_read_ahead_by_depth_lines_and_no_more) {
    enum { DEPTH = 4 };
    char path[] = "/tmp/rill-adapt-XXXXXX";
    write_lines(path, text_lens, NTEXTS);
    int nread = 0;
    rill_gen *lines = rill_gen_prefetch_sized(rill_gen_map(rill_file_lines(path), count_fn, &nread),
                                              DEPTH, rill_size_str, NULL);
    cr_assert(lines);
    void *v;
    expect_eq(rill_gen_next(lines, &v), 1);
    expect_text(v, 0, text_lens[0], false);
    wait_until_read(&nread, 1 + DEPTH);
    expect_eq(nread, 1 + DEPTH); /* the consumer took one; DEPTH wait for it */
    for (int i = 1; i < NTEXTS; i++) {
        expect_eq(rill_gen_next(lines, &v), 1);
        expect_text(v, i, text_lens[i], false);
        cr_assert(nread - (i + 1) <= DEPTH, "%d lines read, %d consumed", nread, i + 1);
    }
    expect_eq(rill_gen_next(lines, NULL), 0);
    rill_gen_free(lines);
    unlink(path);
    return 0;
}

/* The pipeline a user writes: lines read ahead, each made a new string. */
FIBER_TEST(adapt, a_files_lines_read_ahead_and_mapped_to_new_strings) {
    char path[] = "/tmp/rill-adapt-XXXXXX";
    write_lines(path, text_lens, NTEXTS);
    rill_gen *upper = rill_gen_map_sized(
        rill_gen_prefetch_sized(rill_file_lines(path), 64, rill_size_str, NULL), upper_fn,
        rill_size_str, NULL);
    cr_assert(upper);
    const char *line;
    int i = 0;
    rill_foreach(line, upper) {
        expect_text(line, i, text_lens[i], true);
        i++;
    }
    expect_eq(rill_gen_status(upper), 0);
    expect_eq(i, NTEXTS);
    rill_gen_free(upper);
    unlink(path);
    return 0;
}

/* What a parser of lines makes of one. */
typedef struct line_info {
    size_t len;
    char first;
} line_info;

static int line_info_fn(void *in, void *out, void *ctx) {
    (void)ctx;
    const char *s = in;
    *(line_info *)out = (line_info){strlen(s), s[0]};
    return 0;
}

/* Fails with -EMSGSIZE on a line over 64 KiB. */
static int fails_on_long(void *in, void *out, void *ctx) {
    if (strlen(in) > 65536) return -EMSGSIZE;
    return line_info_fn(in, out, ctx);
}

FIBER_TEST(adapt, a_files_lines_read_ahead_and_parsed_into_structs) {
    char path[] = "/tmp/rill-adapt-XXXXXX";
    write_lines(path, text_lens, NTEXTS);
    rill_gen *infos = rill_gen_map_into(
        rill_gen_prefetch_sized(rill_file_lines(path), 64, rill_size_str, NULL), line_info_fn,
        sizeof(line_info), NULL);
    cr_assert(infos);
    line_info *li;
    int i = 0;
    rill_foreach(li, infos) {
        expect_eq(li->len, text_lens[i]);
        expect_eq(li->first, text_lens[i] ? letter(i) : 0);
        i++;
    }
    expect_eq(rill_gen_status(infos), 0);
    expect_eq(i, NTEXTS);
    rill_gen_free(infos);
    unlink(path);
    return 0;
}

/* Whether the reader is mid-read or waiting for a slot (its source
 * suspended) when the consumer breaks off, and whether the consumer closes
 * or frees: the file is closed and the reader gone at once. */
FIBER_TEST(adapt, breaking_out_of_prefetched_lines_closes_the_file_and_stops_the_reader) {
    enum { DEPTH = 2 };
    char path[] = "/tmp/rill-adapt-XXXXXX";
    write_lines(path, text_lens, NTEXTS);
    for (int c = 0; c < 4; c++) {
        bool ring_full = c & 1, close_first = c & 2;
        int fds = fds_once_the_pool_runs(), nread = 0;
        rill_gen *lines = rill_gen_prefetch_sized(
            rill_gen_map(rill_file_lines(path), count_fn, &nread), DEPTH, rill_size_str, NULL);
        cr_assert(lines);
        expect_eq(count_open_fds(), fds + 1); /* the file is open */
        const char *line;
        int n = 0;
        rill_foreach(line, lines) {
            expect_text(line, n, text_lens[n], false);
            if (++n == 3) break;
        }
        expect_eq(n, 3);
        if (ring_full) wait_until_read(&nread, n + DEPTH);
        expect_eq(live_fibers(), 2); /* main, and the reader */
        if (close_first) {
            expect_eq(rill_gen_close(lines), 0);
            expect_eq(count_open_fds(), fds);
            expect_eq(live_fibers(), 1);
        }
        rill_gen_free(lines);
        expect_eq(count_open_fds(), fds);
        expect_eq(live_fibers(), 1);
    }
    unlink(path);
    return 0;
}

FIBER_TEST(adapt, closing_prefetched_lines_before_the_first_value_closes_the_file) {
    char path[] = "/tmp/rill-adapt-XXXXXX";
    write_lines(path, text_lens, NTEXTS);
    int fds = fds_once_the_pool_runs();
    rill_gen *lines = rill_gen_prefetch_sized(rill_file_lines(path), 8, rill_size_str, NULL);
    cr_assert(lines);
    expect_eq(count_open_fds(), fds + 1);
    expect_eq(rill_gen_close(lines), 0);
    expect_eq(count_open_fds(), fds);
    expect_eq(rill_gen_next(lines, NULL), 0);
    rill_gen_free(lines);
    unlink(path);
    return 0;
}

FIBER_TEST(adapt, a_map_function_error_on_prefetched_lines_closes_the_file) {
    char path[] = "/tmp/rill-adapt-XXXXXX";
    write_lines(path, text_lens, NTEXTS);
    int fds = fds_once_the_pool_runs();
    rill_gen *g = rill_gen_map_into(
        rill_gen_prefetch_sized(rill_file_lines(path), 4, rill_size_str, NULL), fails_on_long,
        sizeof(line_info), NULL);
    cr_assert(g);
    int n = 0, rc;
    while ((rc = rill_gen_next(g, NULL)) == 1) n++;
    expect_eq(rc, -EMSGSIZE);
    expect_eq(n, 2); /* the third line is the first over 64 KiB */
    expect_eq(count_open_fds(), fds);
    expect_eq(live_fibers(), 1);
    rill_gen_free(g);
    unlink(path);
    return 0;
}
