/*
 * Generator adapters: map, filter, take, batch (one source, pulled in the
 * adapter's own body) and merge, prefetch (sources run ahead in tasks of a
 * group on the adapter's stack, handing values over through a bounded ring).
 *
 * Ownership: an adapter owns its sources.  Its body closes them when it ends
 * or is closed (so their cleanup runs then); its destructor frees them when
 * the adapter is freed (rill_gen_free refuses to free an owned source).  A
 * value thrown into an adapter ends it with that error, after closing its
 * sources.  An adapter that copies values (item_size > 0, or a size
 * function) ends with -EINVAL if a source yields NULL.
 *
 * Values an adapter keeps live in slots it owns, all handled by one copier:
 * a slot holds the pointer itself, item_size bytes, or (sized adapters) a
 * buffer grown to the largest value it has held.
 */
#include <string.h>

#include "internal.h"
#include "ring.h"

static rill_gen *fail(int err) {
    errno = err;
    return NULL;
}

/* ---- values an adapter keeps --------------------------------------------------- */

/* A buffer grown to the largest value it has held. */
typedef struct buf {
    char *p;
    size_t cap;
} buf;

/* Make b hold at least n bytes; what it held is not kept.  0 or -ENOMEM. */
static int buf_fit(buf *b, size_t n) {
    if (n <= b->cap) return 0;
    char *p = rill__malloc(n); /* not realloc: the old bytes need no copy */
    if (!p) return -ENOMEM;
    free(b->p);
    b->p = p;
    b->cap = n;
    return 0;
}

/* How an adapter keeps a value: the pointer itself (neither set), item_size
 * bytes of it, or size_fn(value, ctx) bytes in a buf. */
typedef struct copier {
    size_t item_size;
    rill_size_fn *size_fn;
    void *ctx;
} copier;

/* Bytes of one slot. */
static size_t slot_size(const copier *c) {
    return c->size_fn ? sizeof(buf) : c->item_size ? c->item_size : sizeof(void *);
}

/* How many bytes of v to copy (0: the pointer is kept), or -EINVAL: a NULL
 * value or a size of 0 leaves nothing to copy.  Called before the slot is
 * chosen, as size_fn may block. */
static int copy_size(const copier *c, const void *v, size_t *n) {
    *n = 0;
    if (!c->size_fn && !c->item_size) return 0;
    if (!v) return -EINVAL;
    *n = c->size_fn ? c->size_fn(v, c->ctx) : c->item_size;
    return *n ? 0 : -EINVAL;
}

/* Keep n bytes of v (copy_size's count) in slot.  0 or -ENOMEM. */
static int copy_in(const copier *c, void *slot, void *v, size_t n) {
    if (c->size_fn) {
        buf *b = slot;
        int rc = buf_fit(b, n);
        if (rc < 0) return rc;
        memcpy(b->p, v, n);
    } else if (n) {
        memcpy(slot, v, n);
    } else {
        memcpy(slot, &v, sizeof v);
    }
    return 0;
}

/* The value a slot holds, as it is yielded. */
static void *slot_value(const copier *c, void *slot) {
    if (c->size_fn) return ((buf *)slot)->p;
    return c->item_size ? slot : *(void **)slot;
}

/* Free the buffers of n slots (sized copies own one each). */
static void slots_free(const copier *c, char *slots, size_t n) {
    for (size_t i = 0; slots && c->size_fn && i < n; i++) free(((buf *)(void *)slots)[i].p);
    free(slots);
}

/* ---- what every single-source adapter shares ------------------------------- */

typedef struct one_src {
    rill_gen *src;
    void *fn;        /* rill_map_fn / rill_map_into_fn / rill_keep_fn */
    void *ctx;
    size_t n;        /* take: how many; batch: batch size */
    copier copy;     /* batch: how it keeps values; map_sized: sizes out */
    rill_batch batch;
    char *items;     /* batch storage: n slots */
    buf out;         /* map_into, map_sized: what fn writes */
} one_src;

static void one_src_close(void *arg) {
    one_src *a = arg;
    rill_gen_close(a->src);
}

static void one_src_free(void *arg) {
    one_src *a = arg;
    rill__gen_free(a->src);
    free(a->items);
    free(a->out.p);
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
        free(a->out.p);
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

/* map_into and map_sized: fn writes each output into the adapter's buffer
 * (map_sized first grows it to the size of that output). */
static int map_into_body(rill_gen *g, void *arg) {
    one_src *a = arg;
    rill_map_into_fn *fn = (rill_map_into_fn *)a->fn;
    void *in;
    size_t n;
    int rc;
    while ((rc = rill_gen_next(a->src, &in)) == 1) {
        if (a->copy.size_fn &&
            ((rc = copy_size(&a->copy, in, &n)) < 0 || (rc = buf_fit(&a->out, n)) < 0))
            break;
        if ((rc = fn(in, a->out.p, a->ctx)) < 0 || (rc = pass_on(g, a->out.p)) < 0) break;
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
    void *in;
    size_t n;
    int rc;
    do {
        a->batch.n = 0;
        while (a->batch.n < a->n && (rc = rill_gen_next(a->src, &in)) == 1) {
            int c = copy_size(&a->copy, in, &n);
            if (c < 0) {
                rc = c;
                break;
            }
            copy_in(&a->copy, a->items + a->batch.n++ * slot_size(&a->copy), in, n);
        }
        /* A short last batch still goes out (buffered output's flush), but
         * not after an error, which ends the stream at once. */
        if (a->batch.n && rc >= 0 && (rc = pass_on(g, &a->batch)) < 0) break;
    } while (rc == 0 && a->batch.n == a->n);
    return finish(a->src, rc);
}

rill_gen *rill_gen_map(rill_gen *src, rill_map_fn *fn, void *ctx) {
    if (!src || src->owned || !fn) return fail(EINVAL);
    one_src *a = rill__calloc(1, sizeof *a);
    if (a) a->fn = (void *)fn, a->ctx = ctx;
    return adapter(src, map_body, a, "map");
}

rill_gen *rill_gen_map_into(rill_gen *src, rill_map_into_fn *fn, size_t out_size, void *ctx) {
    if (!src || src->owned || !fn || out_size == 0) return fail(EINVAL);
    one_src *a = rill__calloc(1, sizeof *a);
    if (a && buf_fit(&a->out, out_size) < 0) {
        free(a);
        a = NULL;
    }
    if (a) a->fn = (void *)fn, a->ctx = ctx;
    return adapter(src, map_into_body, a, "map");
}

rill_gen *rill_gen_map_sized(rill_gen *src, rill_map_into_fn *fn, rill_size_fn *size_fn,
                             void *ctx) {
    if (!src || src->owned || !fn || !size_fn) return fail(EINVAL);
    one_src *a = rill__calloc(1, sizeof *a);
    if (a) {
        a->fn = (void *)fn;
        a->ctx = ctx;
        a->copy = (copier){.size_fn = size_fn, .ctx = ctx};
    }
    return adapter(src, map_into_body, a, "map");
}

rill_gen *rill_gen_filter(rill_gen *src, rill_keep_fn *keep, void *ctx) {
    if (!src || src->owned || !keep) return fail(EINVAL);
    one_src *a = rill__calloc(1, sizeof *a);
    if (a) a->fn = (void *)keep, a->ctx = ctx;
    return adapter(src, filter_body, a, "filter");
}

rill_gen *rill_gen_take(rill_gen *src, size_t n) {
    if (!src || src->owned) return fail(EINVAL);
    one_src *a = rill__calloc(1, sizeof *a);
    if (a) a->n = n;
    return adapter(src, take_body, a, "take");
}

rill_gen *rill_gen_batch(rill_gen *src, size_t n, size_t item_size) {
    if (!src || src->owned || n == 0) return fail(EINVAL);
    copier c = {.item_size = item_size};
    size_t size = slot_size(&c);
    if (n > SIZE_MAX / size) return fail(EINVAL);
    one_src *a = rill__calloc(1, sizeof *a);
    if (a && !(a->items = rill__malloc(n * size))) {
        free(a);
        a = NULL;
    }
    if (a) {
        a->n = n;
        a->copy = c;
        a->batch.items = a->items;
    }
    return adapter(src, batch_body, a, "batch");
}

/* ---- a bounded ring, for sources that run ahead ---------------------------------- */

/* Producers reserve a slot before pulling a value from their source, so a
 * source never runs more than `cap` values ahead of the consumer.  A slot is
 * `size` bytes: a pointer, a fixed-size copy, or a buf (see copier). */
typedef struct ring {
    rill__ring slots;
    size_t reserved;            /* free slots promised to producers */
    size_t producers;           /* still running; 0: no more values */
    int err;                    /* a producer cancelled from outside */
    rill__list not_full, not_empty;
} ring;

static int ring_init(ring *r, size_t cap, size_t slot, size_t producers) {
    int rc = rill__ring_init(&r->slots, cap, slot); /* zeroed: empty bufs */
    if (rc < 0) return rc;
    r->reserved = 0;
    r->producers = producers;
    r->err = 0;
    rill__list_init(&r->not_full);
    rill__list_init(&r->not_empty);
    return 0;
}

/* Is a slot left that is neither full nor promised? */
static bool slot_free(const ring *r) { return r->slots.len + r->reserved < r->slots.cap; }

/* A slot came free: hand it to the longest waiting producer, reserved in
 * its name, so that a producer that never blocks cannot take every slot
 * (merge's sources take turns). */
static void slot_freed(ring *r) {
    if (slot_free(r) && rill__wait_wake_one(&r->not_full, 0)) r->reserved++;
}

/* Wait for a free slot and keep it.  0, or -ECANCELED (nothing kept). */
static int ring_reserve(ring *r) {
    if (slot_free(r) && rill__list_empty(&r->not_full)) {
        r->reserved++;
        return 0;
    }
    rill__waiter w; /* woken with 0: slot_freed reserved one for us */
    return rill__wait_on(&r->not_full, &w, "prefetch slot", NULL);
}

/* Publish the tail slot, filled, using a reservation.  The producer fills
 * it and commits with no wait in between (another would fill the same one). */
static void ring_commit(ring *r) {
    r->reserved--;
    rill__ring_push(&r->slots);
    rill__wait_wake_one(&r->not_empty, 0);
}

/* Give a reservation back unused. */
static void ring_unreserve(ring *r) {
    r->reserved--;
    slot_freed(r);
}

static void ring_producer_done(ring *r) {
    if (--r->producers == 0) rill__wait_wake_all(&r->not_empty, 0);
}

/* Exchange n bytes: a taken slot and the consumer's swap places, so that a
 * buf moves without copying its bytes and every buf has one holder. */
static void swap_bytes(void *x, void *y, size_t n) {
    char *a = x, *b = y, t[64];
    for (size_t k; n; a += k, b += k, n -= k) {
        k = n < sizeof t ? n : sizeof t;
        memcpy(t, a, k);
        memcpy(a, b, k);
        memcpy(b, t, k);
    }
}

/* Take the oldest value into out (a slot of the consumer's), giving the ring
 * out's old slot in exchange.  1; once every producer is done and the ring
 * drained, 0 or the error a producer left; or -ECANCELED. */
static int ring_take(ring *r, void *out) {
    while (r->slots.len == 0) {
        if (r->producers == 0) return r->err;
        rill__waiter w;
        int rc = rill__wait_on(&r->not_empty, &w, "prefetched value", NULL);
        if (rc < 0) return rc;
    }
    swap_bytes(out, rill__ring_pop(&r->slots), r->slots.size);
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
    copier copy;
    ring r;
    puller *pullers;
    char *cur;                  /* the slot of the value being yielded */
};

static void ahead_close(void *arg) {
    ahead *a = arg;
    for (size_t i = 0; i < a->n; i++) rill_gen_close(a->pullers[i].src);
}

static void ahead_free(void *arg) {
    ahead *a = arg;
    for (size_t i = 0; i < a->n; i++) rill__gen_free(a->pullers[i].src);
    free(a->pullers);
    slots_free(&a->copy, a->r.slots.buf, a->r.slots.cap);
    slots_free(&a->copy, a->cur, 1);
    free(a);
}

static const rill__gen_hooks ahead_hooks = {ahead_close, ahead_free};

/* A task: pull one source into the ring until it ends.  Its error is the
 * task's failure, which makes the group cancel the other pullers. */
static int pull(void *arg) {
    puller *p = arg;
    const copier *c = &p->a->copy;
    ring *r = &p->a->r;
    int rc;
    void *v;
    size_t n;
    while ((rc = ring_reserve(r)) == 0) {
        if ((rc = rill_gen_next(p->src, &v)) != 1 || (rc = copy_size(c, v, &n)) < 0 ||
            (rc = copy_in(c, rill__ring_tail(&r->slots), v, n)) < 0) {
            ring_unreserve(r);
            break;
        }
        ring_commit(r);
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
    while (rc == 0 && (rc = ring_take(&a->r, a->cur)) == 1)
        rc = pass_on(g, slot_value(&a->copy, a->cur));
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

static rill_gen *ahead_new(rill_gen **srcs, size_t n, size_t depth, copier c,
                           const char *name) {
    ahead *a = rill__calloc(1, sizeof *a);
    if (!a) return fail(ENOMEM);
    a->n = n;
    a->copy = c;
    a->pullers = rill__calloc(n, sizeof *a->pullers);
    a->cur = rill__calloc(1, slot_size(&c));
    int rc = a->pullers && a->cur ? ring_init(&a->r, depth, slot_size(&c), n) : -ENOMEM;
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

static rill_gen *merge_new(rill_gen **srcs, size_t n, copier c) {
    if (!srcs || n == 0) return fail(EINVAL);
    for (size_t i = 0; i < n; i++) {
        if (!srcs[i] || srcs[i]->owned) return fail(EINVAL);
        for (size_t j = 0; j < i; j++)
            if (srcs[j] == srcs[i]) return fail(EINVAL); /* one consumer each */
    }
    return ahead_new(srcs, n, n, c, "merge");
}

static rill_gen *prefetch_new(rill_gen *src, size_t depth, copier c) {
    if (!src || src->owned || depth == 0) return fail(EINVAL);
    char name[32];
    snprintf(name, sizeof name, "prefetch(%.18s)", rill_gen_name(src));
    return ahead_new(&src, 1, depth, c, name);
}

rill_gen *rill_gen_merge(rill_gen **srcs, size_t n, size_t item_size) {
    return merge_new(srcs, n, (copier){.item_size = item_size});
}

rill_gen *rill_gen_merge_sized(rill_gen **srcs, size_t n, rill_size_fn *size_fn, void *ctx) {
    if (!size_fn) return fail(EINVAL);
    return merge_new(srcs, n, (copier){.size_fn = size_fn, .ctx = ctx});
}

rill_gen *rill_gen_prefetch(rill_gen *src, size_t depth, size_t item_size) {
    return prefetch_new(src, depth, (copier){.item_size = item_size});
}

rill_gen *rill_gen_prefetch_sized(rill_gen *src, size_t depth, rill_size_fn *size_fn,
                                  void *ctx) {
    if (!size_fn) return fail(EINVAL);
    return prefetch_new(src, depth, (copier){.size_fn = size_fn, .ctx = ctx});
}

size_t rill_size_str(const void *item, void *ctx) {
    (void)ctx;
    return item ? strlen(item) + 1 : 0;
}
