/*
 * A bounded FIFO queue of copied items.  Getters wait only while it is
 * empty and putters only while it is full, so at most one of the two wait
 * lists is ever non-empty.  A put with a getter waiting copies the item
 * straight into that getter's buffer; a get that frees a slot takes the
 * longest-waiting putter's item in: both are hand-offs decided by the
 * running fiber, so a woken waiter's item is never lost to a cancellation.
 */
#include <string.h>

#include "internal.h"

#define QUEUE_MAGIC 0x71755545u

struct rill_queue {
    uint32_t magic;
    bool closed;
    char *buf;
    size_t cap, size, head, len;
    rill__list getters, putters; /* waiter.data: the getter's buffer, the
                                    putter's item */
};

static bool valid(const rill_queue *q) { return q && q->magic == QUEUE_MAGIC; }

rill_queue *rill_queue_new(size_t capacity, size_t item_size) {
    if (!capacity || !item_size || capacity > SIZE_MAX / item_size) {
        errno = EINVAL;
        return NULL;
    }
    rill_queue *q = calloc(1, sizeof *q);
    if (q && !(q->buf = malloc(capacity * item_size))) {
        free(q);
        q = NULL;
    }
    if (!q) {
        errno = ENOMEM;
        return NULL;
    }
    q->magic = QUEUE_MAGIC;
    q->cap = capacity;
    q->size = item_size;
    rill__list_init(&q->getters);
    rill__list_init(&q->putters);
    return q;
}

static void *slot(rill_queue *q, size_t i) { return q->buf + (q->head + i) % q->cap * q->size; }

/* Store item without blocking: 0, or -EAGAIN when full. */
static int put_now(rill_queue *q, const void *item) {
    rill__list *n = rill__list_pop(&q->getters);
    if (n) {
        rill__waiter *w = rill__container_of(n, rill__waiter, node);
        memcpy(w->data, item, q->size);
        rill__wake(w, 0);
        return 0;
    }
    if (q->len == q->cap) return -EAGAIN;
    memcpy(slot(q, q->len++), item, q->size);
    return 0;
}

/* Take the oldest item without blocking: 0, or -EAGAIN when empty. */
static int get_now(rill_queue *q, void *item) {
    if (!q->len) return -EAGAIN;
    memcpy(item, slot(q, 0), q->size);
    q->head = (q->head + 1) % q->cap;
    q->len--;
    rill__list *n = rill__list_pop(&q->putters);
    if (n) {
        rill__waiter *w = rill__container_of(n, rill__waiter, node);
        memcpy(slot(q, q->len++), w->data, q->size);
        rill__wake(w, 0);
    }
    return 0;
}

int rill_queue_try_put(rill_queue *q, const void *item) {
    if (!valid(q) || !item) return -EINVAL;
    if (q->closed) return -EPIPE;
    return put_now(q, item);
}

int rill_queue_try_get(rill_queue *q, void *item) {
    if (!valid(q) || !item) return -EINVAL;
    int rc = get_now(q, item);
    return rc == -EAGAIN && q->closed ? -EPIPE : rc;
}

int rill_queue_put(rill_queue *q, const void *item) {
    int rc = rill_queue_try_put(q, item);
    if (rc != -EAGAIN) return rc;
    rill__waiter w = {.data = (void *)item}; /* woken with 0: a getter took it */
    return rill__waitq_wait(&q->putters, &w, "queue put", NULL);
}

int rill_queue_get(rill_queue *q, void *item) {
    int rc = rill_queue_try_get(q, item);
    if (rc != -EAGAIN) return rc;
    rill__waiter w = {.data = item}; /* woken with 0: a putter filled it */
    return rill__waitq_wait(&q->getters, &w, "queue get", NULL);
}

void rill_queue_close(rill_queue *q) {
    if (!valid(q)) {
        errno = EINVAL;
        return;
    }
    q->closed = true;
    rill__waitq_wake_all(&q->putters, -EPIPE);
    rill__waitq_wake_all(&q->getters, -EPIPE); /* only waiting when empty */
}

size_t rill_queue_len(const rill_queue *q) { return valid(q) ? q->len : 0; }

void rill_queue_free(rill_queue *q) {
    if (!valid(q)) {
        errno = EINVAL;
        return;
    }
    rill_queue_close(q);
    q->magic = 0;
    free(q->buf);
    free(q);
}
