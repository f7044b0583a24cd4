/*
 * A FIFO queue of copied items, bounded or not.  Getters wait only while it
 * is empty and putters only while it is full (never, when unbounded), so at
 * most one of the two wait lists is ever non-empty.  A put with a getter
 * waiting copies the item straight into that getter's buffer; a get that
 * frees a slot takes the longest-waiting putter's item in: both are
 * hand-offs decided by the running fiber, so a woken waiter's item is never
 * lost to a cancellation.
 *
 * Storage: a bounded queue is one ring of `cap` items, allocated up front,
 * so a put never fails for memory.  An unbounded one is a list of chunks of
 * `per_chunk` items (about 4 KiB each): a put that fills the last chunk
 * links a new one, a get that empties the first unlinks it, so no item is
 * ever moved and memory follows the length (one spare chunk is kept, so a
 * queue oscillating around a chunk boundary does not call malloc each time).
 */
#include <string.h>

#include "internal.h"
#include "ring.h"

#define QUEUE_MAGIC 0x71755545u
#define CHUNK_BYTES 4096u

typedef struct chunk {
    struct chunk *next;
    max_align_t items[]; /* per_chunk items of `size` bytes */
} chunk;

struct rill_queue {
    uint32_t magic;
    bool closed;
    size_t size;                 /* bytes per item */
    rill__ring ring;             /* bounded: the items */
    chunk *first, *last, *spare; /* unbounded: the chunks, oldest first */
    size_t per_chunk;            /* unbounded: items per chunk; bounded: 0 */
    size_t head, tail, len;      /* unbounded: first item in first, items
                                    used in last, items in all */
    rill__list getters, putters; /* waiter.data: the getter's buffer, the
                                    putter's item */
};

static bool unbounded(const rill_queue *q) { return q->per_chunk != 0; }
static size_t length(const rill_queue *q) { return unbounded(q) ? q->len : q->ring.len; }

rill_queue *rill_queue_new(size_t capacity, size_t item_size) {
    bool grow = capacity == RILL_UNBOUNDED;
    size_t per_chunk = grow && item_size ? CHUNK_BYTES / item_size : 0;
    if (per_chunk < 8) per_chunk = 8;
    if (!capacity || !item_size ||
        (grow && per_chunk > (SIZE_MAX - sizeof(chunk)) / item_size)) {
        errno = EINVAL;
        return NULL;
    }
    rill_queue *q = rill__calloc(1, sizeof *q);
    int rc = !q ? -ENOMEM : grow ? 0 : rill__ring_init(&q->ring, capacity, item_size);
    if (rc < 0) {
        free(q);
        errno = -rc;
        return NULL;
    }
    q->magic = QUEUE_MAGIC;
    q->size = item_size;
    q->per_chunk = grow ? per_chunk : 0;
    rill__list_init(&q->getters);
    rill__list_init(&q->putters);
    return q;
}

static char *chunk_slot(rill_queue *q, chunk *c, size_t i) { return (char *)c->items + i * q->size; }

/* Append item to the storage: 0, -EAGAIN when full, -ENOMEM. */
static int store(rill_queue *q, const void *item) {
    if (!unbounded(q)) {
        if (rill__ring_full(&q->ring)) return -EAGAIN;
        memcpy(rill__ring_tail(&q->ring), item, q->size);
        rill__ring_push(&q->ring);
        return 0;
    }
    if (!q->last || q->tail == q->per_chunk) {
        chunk *c = q->spare;
        if (c) q->spare = NULL;
        else if (!(c = rill__malloc(sizeof *c + q->per_chunk * q->size))) return -ENOMEM;
        c->next = NULL;
        if (q->last) q->last->next = c;
        else q->first = c;
        q->last = c;
        q->tail = 0;
    }
    memcpy(chunk_slot(q, q->last, q->tail++), item, q->size);
    q->len++;
    return 0;
}

/* Take the oldest item out of the storage (there is one). */
static void take(rill_queue *q, void *item) {
    if (!unbounded(q)) {
        memcpy(item, rill__ring_pop(&q->ring), q->size);
        return;
    }
    q->len--;
    chunk *c = q->first;
    memcpy(item, chunk_slot(q, c, q->head++), q->size);
    if (c == q->last) {
        if (q->head == q->tail) q->head = q->tail = 0; /* empty: reuse it */
        return;
    }
    if (q->head < q->per_chunk) return;
    q->head = 0; /* c is used up */
    q->first = c->next;
    if (q->spare) free(c);
    else q->spare = c;
}

/* Store item without blocking: 0, -EAGAIN when full, -ENOMEM. */
static int put_now(rill_queue *q, const void *item) {
    rill__list *n = rill__list_pop(&q->getters);
    if (n) {
        rill__waiter *w = rill__container_of(n, rill__waiter, node);
        memcpy(w->data, item, q->size);
        rill__sched_wake(w, 0);
        return 0;
    }
    return store(q, item);
}

/* Take the oldest item without blocking: 0, or -EAGAIN when empty. */
static int get_now(rill_queue *q, void *item) {
    if (!length(q)) return -EAGAIN;
    take(q, item);
    rill__list *n = rill__list_pop(&q->putters);
    if (n) {
        rill__waiter *w = rill__container_of(n, rill__waiter, node);
        store(q, w->data); /* bounded: a slot was just freed */
        rill__sched_wake(w, 0);
    }
    return 0;
}

int rill_queue_try_put(rill_queue *q, const void *item) {
    if (!rill__valid(q, QUEUE_MAGIC) || !item) return -EINVAL;
    if (q->closed) return -EPIPE;
    return put_now(q, item);
}

int rill_queue_try_get(rill_queue *q, void *item) {
    if (!rill__valid(q, QUEUE_MAGIC) || !item) return -EINVAL;
    int rc = get_now(q, item);
    return rc == -EAGAIN && q->closed ? -EPIPE : rc;
}

int rill_queue_put(rill_queue *q, const void *item) {
    int rc = rill_queue_try_put(q, item);
    if (rc != -EAGAIN) return rc;
    rill__waiter w = {.data = (void *)item}; /* woken with 0: a getter took it */
    return rill__wait_on(&q->putters, &w, "queue put", NULL);
}

int rill_queue_get(rill_queue *q, void *item) {
    int rc = rill_queue_try_get(q, item);
    if (rc != -EAGAIN) return rc;
    rill__waiter w = {.data = item}; /* woken with 0: a putter filled it */
    return rill__wait_on(&q->getters, &w, "queue get", NULL);
}

void rill_queue_close(rill_queue *q) {
    if (!rill__valid_or_einval(q, QUEUE_MAGIC)) return;
    q->closed = true;
    rill__wait_wake_all(&q->putters, -EPIPE);
    rill__wait_wake_all(&q->getters, -EPIPE); /* only waiting when empty */
}

size_t rill_queue_len(const rill_queue *q) { return rill__valid(q, QUEUE_MAGIC) ? length(q) : 0; }

void rill_queue_free(rill_queue *q) {
    if (!rill__valid_or_einval(q, QUEUE_MAGIC)) return;
    rill_queue_close(q);
    q->magic = 0;
    free(q->ring.buf);
    for (chunk *c = q->first, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(q->spare);
    free(q);
}
