/*
 * Every allocation of the runtime goes through these wrappers, and every
 * fresh stack mapping through rill__alloc_stack_fails(), so that tests can
 * make the Nth one fail (as neco's and Lua's test suites do) and drive each
 * out-of-memory path.  Unused, an injection point costs one relaxed load
 * and a branch predicted not taken.  Threads allocate too (pool workers,
 * calls from other threads): the counters are atomic.
 */
#include <stdatomic.h>

#include "alloc.h"
#include "internal.h"

typedef struct injector {
    atomic_bool armed;
    atomic_bool from;     /* fail every call from the nth on, not only it */
    atomic_long at;       /* the nth counted call fails */
    atomic_long calls;    /* counted since the last arming */
    atomic_long failures; /* injected since the last arming */
} injector;

static injector allocs, maps;

static void arm(injector *in, long n, bool from) {
    atomic_store(&in->armed, false);
    if (n <= 0) return; /* disarmed: the counts stay readable */
    atomic_store(&in->calls, 0);
    atomic_store(&in->failures, 0);
    atomic_store(&in->at, n);
    atomic_store(&in->from, from);
    atomic_store(&in->armed, true);
}

static __attribute__((noinline)) bool inject(injector *in) {
    long k = atomic_fetch_add(&in->calls, 1) + 1, n = atomic_load(&in->at);
    if (atomic_load(&in->from) ? k < n : k != n) return false;
    atomic_fetch_add(&in->failures, 1);
    return true;
}

static inline bool fails(injector *in) {
    if (__builtin_expect(!atomic_load_explicit(&in->armed, memory_order_relaxed), 1))
        return false;
    return inject(in);
}

void *rill__malloc(size_t n) {
    if (!fails(&allocs)) return malloc(n);
    errno = ENOMEM;
    return NULL;
}

void *rill__calloc(size_t k, size_t n) {
    if (!fails(&allocs)) return calloc(k, n);
    errno = ENOMEM;
    return NULL;
}

void *rill__realloc(void *p, size_t n) {
    if (!fails(&allocs)) return realloc(p, n);
    errno = ENOMEM;
    return NULL;
}

bool rill__alloc_stack_fails(void) {
    if (!fails(&maps)) return false;
    errno = ENOMEM;
    return true;
}

void rill__alloc_fail_at(long n) { arm(&allocs, n, false); }
void rill__alloc_fail_from(long n) { arm(&allocs, n, true); }
long rill__alloc_calls(void) { return atomic_load(&allocs.calls); }
long rill__alloc_failures(void) { return atomic_load(&allocs.failures); }

void rill__alloc_stack_fail_at(long n) { arm(&maps, n, false); }
void rill__alloc_stack_fail_from(long n) { arm(&maps, n, true); }
long rill__alloc_stack_calls(void) { return atomic_load(&maps.calls); }
long rill__alloc_stack_failures(void) { return atomic_load(&maps.failures); }
