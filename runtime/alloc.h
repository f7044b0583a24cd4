/* Failure injection, for the out-of-memory tests: alloc.c's hooks, internal
 * to rill (hidden in librill.so), reachable from the static library the
 * tests link (tests/test_oom.c includes this header).
 * Allocations (every malloc, calloc and realloc of the runtime) and fresh
 * fiber stack mappings (not stacks reused from a pool) are counted apart.
 * Arming resets the counts; arming with 0 disarms and keeps them. */
#ifndef RILL_ALLOC_H
#define RILL_ALLOC_H

/* The nth allocation from now fails (returns NULL, errno ENOMEM); only it. */
void rill__alloc_fail_at(long n);
/* The nth allocation from now and every later one fail. */
void rill__alloc_fail_from(long n);
/* Allocations made / failures injected since the last arming. */
long rill__alloc_calls(void);
long rill__alloc_failures(void);

/* The same for mappings of new fiber stacks (a guarded stack, or a slab of
 * unguarded ones, which the runtime falls back to). */
void rill__alloc_stack_fail_at(long n);
void rill__alloc_stack_fail_from(long n);
long rill__alloc_stack_calls(void);
long rill__alloc_stack_failures(void);

/* Stacks as on a kernel without MADV_GUARD_INSTALL (mappings of their own,
 * then unguarded slabs): for the tests of those fallbacks.  Call before the
 * process's first fiber. */
void rill__stack_without_guard_install(void);

/* Runtimes alive in the process (runtime.c): a thread's runtime must be
 * gone once the thread has exited, whatever it left behind. */
long rill__runtime_count(void);

#endif
