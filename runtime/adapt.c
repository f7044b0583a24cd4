/*
 * Generator adapters: map, filter, take, batch (one source, pulled in the
 * adapter's own body) and merge, prefetch (sources run ahead in tasks of a
 * group on the adapter's stack, handing values over through a bounded ring).
 *
 * Ownership: an adapter owns its sources.  Its body closes them when it ends
 * or is closed (so their cleanup runs then); its destructor frees them when
 * the adapter is freed (rill_gen_free refuses to free an owned source).  A
 * value thrown into an adapter ends it with that error, after closing its
 * sources.  An adapter that copies values (item_size > 0) ends with -EINVAL
 * if a source yields NULL.
 */
#include <string.h>

#include "internal.h"

static rill_gen *fail(int err) {
    errno = err;
    return NULL;
}

/* ---- what every single-source adapter shares ------------------------------- */

typedef struct one_src {
    rill_gen *src;
    void *fn;        /* rill_map_fn / rill_keep_fn */
    void *ctx;
    size_t n;        /* take: how many; batch: batch size */
    size_t item_size;
    rill_batch batch;
    char *items;     /* batch storage: n values of item_size bytes */
} one_src;

static void one_src_close(void *arg) {
    one_src *a = arg;
    rill_gen_close(a->src);
}

static void one_src_free(void *arg) {
    one_src *a = arg;
    rill__gen_free(a->src);
    free(a->items);
    free(a);
}

static const rill__gen_hooks one_src_hooks = {one_src_close, one_src_free};

static rill_gen *adapter(rill_gen *src, rill_gen_fn *body, one_src *a, const char *kind) {
    if (!a) {
        errno = ENOMEM;
        return NULL;
    }
    a->src = src;
    char name[32];
    snprintf(name, sizeof name, "%s(%.20s)", kind, rill_gen_name(src));
    rill_gen *g = rill__gen_new(body, a, &(rill_opts){.name = name}, &one_src_hooks);
    if (!g) {
        free(a->items);
        free(a);
        return NULL;
    }
    src->owned = true;
    return g;
}

/* End of an adapter's body: close the source(s), return what ends the stream
 * (a body error, or 0; GeneratorExit is a clean end). */
static int finish(rill_gen *src, int rc) {
    int crc = rill_gen_close(src);
    if (rc == -EPIPE) rc = 0;
    return rc < 0 ? rc : crc;
}

/* Pass v on; returns 0 to continue, or what ends the stream. */
static int pass_on(rill_gen *g, void *v) {
    int y = rill_yield(g, v);
    return y == -EPIPE ? -EPIPE : y;
}

static int map_body(rill_gen *g, void *arg) {
    one_src *a = arg;
    rill_map_fn *fn = (rill_map_fn *)a->fn;
    void *in, *out;
    int rc;
    while ((rc = rill_gen_next(a->src, &in)) == 1) {
        if ((rc = fn(in, &out, a->ctx)) < 0 || (rc = pass_on(g, out)) < 0) break;
    }
    return finish(a->src, rc);
}

static int filter_body(rill_gen *g, void *arg) {
    one_src *a = arg;
    rill_keep_fn *keep = (rill_keep_fn *)a->fn;
    void *in;
    int rc;
    while ((rc = rill_gen_next(a->src, &in)) == 1) {
        int k = keep(in, a->ctx);
        if (k < 0) {
            rc = k;
            break;
        }
        if (k && (rc = pass_on(g, in)) < 0) break;
    }
    return finish(a->src, rc);
}

static int take_body(rill_gen *g, void *arg) {
    one_src *a = arg;
    void *in;
    int rc = 0;
    for (size_t i = 0; i < a->n && (rc = rill_gen_next(a->src, &in)) == 1; i++) {
        if ((rc = pass_on(g, in)) < 0) break;
    }
    return finish(a->src, rc == 1 ? 0 : rc);
}

static int batch_body(rill_gen *g, void *arg) {
    one_src *a = arg;
    size_t size = a->item_size ? a->item_size : sizeof(void *);
    void *in;
    int rc;
    do {
        a->batch.n = 0;
        while (a->batch.n < a->n && (rc = rill_gen_next(a->src, &in)) == 1) {
            if (a->item_size && !in) {
                rc = -EINVAL; /* nothing to copy */
                break;
            }
            char *slot = a->items + a->batch.n++ * size;
            if (a->item_size) memcpy(slot, in, a->item_size);
            else memcpy(slot, &in, sizeof in);
        }
        /* A short last batch still goes out (buffered output's flush), but
         * not after an error, which ends the stream at once. */
        if (a->batch.n && rc >= 0 && (rc = pass_on(g, &a->batch)) < 0) break;
    } while (rc == 0 && a->batch.n == a->n);
    return finish(a->src, rc);
}

rill_gen *rill_gen_map(rill_gen *src, rill_map_fn *fn, void *ctx) {
    if (!src || src->owned || !fn) return fail(EINVAL);
    one_src *a = calloc(1, sizeof *a);
    if (a) a->fn = (void *)fn, a->ctx = ctx;
    return adapter(src, map_body, a, "map");
}

rill_gen *rill_gen_filter(rill_gen *src, rill_keep_fn *keep, void *ctx) {
    if (!src || src->owned || !keep) return fail(EINVAL);
    one_src *a = calloc(1, sizeof *a);
    if (a) a->fn = (void *)keep, a->ctx = ctx;
    return adapter(src, filter_body, a, "filter");
}

rill_gen *rill_gen_take(rill_gen *src, size_t n) {
    if (!src || src->owned) return fail(EINVAL);
    one_src *a = calloc(1, sizeof *a);
    if (a) a->n = n;
    return adapter(src, take_body, a, "take");
}

rill_gen *rill_gen_batch(rill_gen *src, size_t n, size_t item_size) {
    if (!src || src->owned || n == 0) return fail(EINVAL);
    size_t size = item_size ? item_size : sizeof(void *);
    if (n > SIZE_MAX / size) return fail(EINVAL);
    one_src *a = calloc(1, sizeof *a);
    if (a && !(a->items = malloc(n * size))) {
        free(a);
        a = NULL;
    }
    if (a) {
        a->n = n;
        a->item_size = item_size;
        a->batch.items = a->items;
    }
    return adapter(src, batch_body, a, "batch");
}

/* ---- a bounded ring, for sources that run ahead ---------------------------------- */

/* Producers reserve a slot before pulling a value from their source, so a
 * source never runs more than `cap` values ahead of the consumer. */
typedef struct ring {
    char *buf;
    size_t cap, size;           /* slots, bytes per slot */
    size_t head, len, reserved;
    size_t producers;           /* still running; 0: no more values */
    int err;                    /* a producer cancelled from outside */
    rill__list not_full, not_empty;
} ring;

static int ring_init(ring *r, size_t cap, size_t item_size, size_t producers) {
    r->size = item_size ? item_size : sizeof(void *);
    if (cap > SIZE_MAX / r->size) return -EINVAL;
    if (!(r->buf = malloc(cap * r->size))) return -ENOMEM;
    r->cap = cap;
    r->head = r->len = r->reserved = 0;
    r->producers = producers;
    r->err = 0;
    rill__list_init(&r->not_full);
    rill__list_init(&r->not_empty);
    return 0;
}

/* A slot came free: hand it to the longest waiting producer, reserved in
 * its name, so that a producer that never blocks cannot take every slot
 * (merge's sources take turns). */
static void slot_freed(ring *r) {
    if (r->len + r->reserved < r->cap && rill__waitq_wake_one(&r->not_full, 0)) r->reserved++;
}

/* Wait for a free slot and keep it.  0, or -ECANCELED (nothing kept). */
static int ring_reserve(ring *r) {
    if (r->len + r->reserved < r->cap && rill__list_empty(&r->not_full)) {
        r->reserved++;
        return 0;
    }
    rill__waiter w; /* woken with 0: slot_freed reserved one for us */
    return rill__waitq_wait(&r->not_full, &w, "prefetch slot", NULL);
}

/* Fill a reserved slot. */
static void ring_commit(ring *r, const void *item) {
    r->reserved--;
    memcpy(r->buf + (r->head + r->len) % r->cap * r->size, item, r->size);
    r->len++;
    rill__waitq_wake_one(&r->not_empty, 0);
}

/* Give a reservation back unused. */
static void ring_unreserve(ring *r) {
    r->reserved--;
    slot_freed(r);
}

static void ring_producer_done(ring *r) {
    if (--r->producers == 0) rill__waitq_wake_all(&r->not_empty, 0);
}

/* Take the oldest value into out.  1; once every producer is done and the
 * ring drained, 0 or the error a producer left; or -ECANCELED. */
static int ring_take(ring *r, void *out) {
    while (r->len == 0) {
        if (r->producers == 0) return r->err;
        rill__waiter w;
        int rc = rill__waitq_wait(&r->not_empty, &w, "prefetched value", NULL);
        if (rc < 0) return rc;
    }
    memcpy(out, r->buf + r->head * r->size, r->size);
    r->head = (r->head + 1) % r->cap;
    r->len--;
    slot_freed(r);
    return 1;
}

/* ---- merge and prefetch: sources pulled by tasks ---------------------------------- */

typedef struct ahead ahead;

typedef struct puller {
    ahead *a;
    rill_gen *src;
} puller;

struct ahead {
    size_t n;                   /* sources */
    size_t item_size;
    ring r;
    puller *pullers;
    char *cur;                  /* the value being yielded */
};

static void ahead_close(void *arg) {
    ahead *a = arg;
    for (size_t i = 0; i < a->n; i++) rill_gen_close(a->pullers[i].src);
}

static void ahead_free(void *arg) {
    ahead *a = arg;
    for (size_t i = 0; i < a->n; i++) rill__gen_free(a->pullers[i].src);
    free(a->pullers);
    free(a->r.buf);
    free(a->cur);
    free(a);
}

static const rill__gen_hooks ahead_hooks = {ahead_close, ahead_free};

/* A task: pull one source into the ring until it ends.  Its error is the
 * task's failure, which makes the group cancel the other pullers. */
static int pull(void *arg) {
    puller *p = arg;
    ring *r = &p->a->r;
    int rc;
    void *v;
    while ((rc = ring_reserve(r)) == 0) {
        if ((rc = rill_gen_next(p->src, &v)) != 1 || (p->a->item_size && !v)) {
            ring_unreserve(r);
            if (rc == 1) rc = -EINVAL; /* a NULL value: nothing to copy */
            break;
        }
        ring_commit(r, p->a->item_size ? v : (void *)&v);
    }
    /* Cancelled from outside its group (rill_run's end cancels every task):
     * the stream did not end, so do not let it look as if it had. */
    if (rc == -ECANCELED && !r->err) r->err = rc;
    ring_producer_done(r);
    return rc;
}

static int ahead_body(rill_gen *g, void *arg) {
    ahead *a = arg;
    rill_group grp;
    rill__group_init(&grp);
    int rc = 0;
    for (size_t i = 0; i < a->n && rc == 0; i++)
        rc = rill_group_spawn_opts(&grp, pull, &a->pullers[i],
                                   &(rill_opts){.name = rill_gen_name(a->pullers[i].src)});
    while (rc == 0 && (rc = ring_take(&a->r, a->cur)) == 1) {
        void *v = a->item_size ? (void *)a->cur : *(void **)(void *)a->cur;
        rc = pass_on(g, v);
    }
    /* Ended, closed, thrown into, or cancelled: stop the pullers first (a
     * source cannot be closed while a puller runs it), then close them. */
    rill_group_cancel(&grp);
    int grc = rill_group_wait(&grp);
    int crc = 0;
    for (size_t i = 0; i < a->n; i++) {
        int c = rill_gen_close(a->pullers[i].src);
        if (c < 0 && !crc) crc = c;
    }
    if (rc == -EPIPE) rc = 0;
    /* A source's error ends the merge with it: the group cancelled this body
     * for it, so a -ECANCELED here is the group's unless the consumer's own
     * scopes are cancelled. */
    if (grc < 0 && (rc == 0 || (rc == -ECANCELED && !rill_cancelled()))) rc = grc;
    return rc < 0 ? rc : crc;
}

static rill_gen *ahead_new(rill_gen **srcs, size_t n, size_t depth, size_t item_size,
                           const char *name) {
    ahead *a = calloc(1, sizeof *a);
    if (!a) return fail(ENOMEM);
    a->n = n;
    a->item_size = item_size;
    a->pullers = calloc(n, sizeof *a->pullers);
    a->cur = malloc(item_size ? item_size : sizeof(void *));
    int rc = a->pullers && a->cur ? ring_init(&a->r, depth, item_size, n) : -ENOMEM;
    if (rc < 0) {
        free(a->pullers);
        free(a->cur);
        free(a);
        return fail(-rc);
    }
    for (size_t i = 0; i < n; i++) a->pullers[i] = (puller){.a = a, .src = srcs[i]};
    rill_gen *g = rill__gen_new(ahead_body, a, &(rill_opts){.name = name}, &ahead_hooks);
    if (!g) {
        a->n = 0; /* the caller keeps its sources */
        ahead_free(a);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) srcs[i]->owned = true;
    return g;
}

rill_gen *rill_gen_merge(rill_gen **srcs, size_t n, size_t item_size) {
    if (!srcs || n == 0) return fail(EINVAL);
    for (size_t i = 0; i < n; i++) {
        if (!srcs[i] || srcs[i]->owned) return fail(EINVAL);
        for (size_t j = 0; j < i; j++)
            if (srcs[j] == srcs[i]) return fail(EINVAL); /* one consumer each */
    }
    return ahead_new(srcs, n, n, item_size, "merge");
}

rill_gen *rill_gen_prefetch(rill_gen *src, size_t depth, size_t item_size) {
    if (!src || src->owned || depth == 0) return fail(EINVAL);
    char name[32];
    snprintf(name, sizeof name, "prefetch(%.18s)", rill_gen_name(src));
    return ahead_new(&src, 1, depth, item_size, name);
}
