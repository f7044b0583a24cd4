/*
 * A ring of `cap` slots of `size` bytes each, allocated once: the storage of
 * a bounded queue (queue.c) and of the values adapters prefetch (adapt.c).
 * It only places slots; what a slot holds, how it is copied in and out, and
 * who may wait for one are its user's.
 */
#ifndef RILL_RING_H
#define RILL_RING_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct rill__ring {
    char *buf;
    size_t cap, size;          /* slots, bytes per slot */
    size_t head, len;          /* the oldest slot in use, how many are */
} rill__ring;

/* Allocate cap zeroed slots: 0, -EINVAL if cap * size overflows, -ENOMEM. */
static inline int rill__ring_init(rill__ring *r, size_t cap, size_t size) {
    if (size && cap > SIZE_MAX / size) return -EINVAL;
    if (!(r->buf = rill__calloc(cap, size))) return -ENOMEM;
    r->cap = cap;
    r->size = size;
    r->head = r->len = 0;
    return 0;
}

static inline bool rill__ring_full(const rill__ring *r) { return r->len == r->cap; }

/* The free slot the next rill__ring_push publishes (the ring is not full). */
static inline void *rill__ring_tail(const rill__ring *r) {
    return r->buf + (r->head + r->len) % r->cap * r->size;
}

/* Publish the tail slot, filled. */
static inline void rill__ring_push(rill__ring *r) { r->len++; }

/* Take the oldest slot out of the ring (there is one).  Its bytes stay
 * valid until the next push. */
static inline void *rill__ring_pop(rill__ring *r) {
    void *slot = r->buf + r->head * r->size;
    r->head = (r->head + 1) % r->cap;
    r->len--;
    return slot;
}

#endif
