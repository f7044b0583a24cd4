/*
 * Fiber stacks, and the report of an overflow.
 *
 * A stack is an mmap'ed region with a PROT_NONE guard page below it and a
 * canary word at its lowest usable address.  The guard page turns an
 * overflow into SIGSEGV, which a handler on an alternate signal stack
 * reports by name; the canary, checked at every switch-out, catches what the
 * guard cannot (frames that jump over it, or stacks without one).
 *
 * Each guarded stack costs two kernel mappings, and Linux allows about 65530
 * per process.  When mmap or mprotect fails, we fall back to unguarded stacks
 * carved from slabs (one mapping for many stacks) and say so once.
 *
 * Released stacks of the default size are kept in a per-thread pool, so that
 * spawning is a pop from a list.  When a thread's runtime ends, its pool
 * goes to a process-wide stash that later runtimes, on any thread, refill
 * from: mapping and unmapping a stack costs tens of microseconds, and a
 * program that runs many runtimes (one after another, or one per thread)
 * would otherwise pay it for every fiber of every run.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "sanitize.h"

#define CANARY 0x72696c6c5eedf00dULL
#define MIN_STACK (16u * 1024u)
/* Free default-size stacks kept per thread.  A burst of live fibers beyond
 * it pays an mmap, an mprotect and page faults (~13 us) per extra stack, so
 * keep it well above common bursts; each costs two of the mappings budgeted
 * in cfg.guard_budget and only the pages it touched. */
#define POOL_MAX 2048u
#define SLAB_STACKS 64u     /* stacks per fallback slab */

typedef struct slab {
    struct slab *next;
    size_t len;
} slab;

/* Default-size guarded stacks kept for the whole process (see the top).
 * Taken REFILL at a time, so the mutex is rare. */
#define STASH_MAX 4096u
#define REFILL 64u
static struct {
    pthread_mutex_t mu;
    rill__stack *free;
    size_t n;
} stash = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void stash_fork_prepare(void) { pthread_mutex_lock(&stash.mu); }
static void stash_fork_parent(void) { pthread_mutex_unlock(&stash.mu); }
static void stash_fork_child(void) { pthread_mutex_init(&stash.mu, NULL); }

/* One pool per thread: a runtime belongs to one thread. */
static _Thread_local struct {
    rill__stack *free;      /* default-size stacks ready for reuse */
    size_t nfree;
    struct slab_class *classes; /* unguarded slab stacks ready for reuse */
    slab *slabs;
} pool;

/* Sizes beyond this are refused: they would overflow the page and slab
 * arithmetic long before any system could map them. */
#define MAX_STACK ((size_t)1 << 30)

/* Read once per process (pthread_once: runtimes on several threads). */
static struct {
    size_t page;          /* the page size */
    size_t stack;         /* default stack size: RILL_STACK_SIZE or built-in */
    size_t max_maps;      /* vm.max_map_count */
    size_t guard_budget;  /* guarded stacks alive at once, at most */
    bool guards;          /* RILL_GUARD_PAGES=0 turns guard pages off */
} cfg;
static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;

static size_t round_pages(size_t n) { return (n + cfg.page - 1) / cfg.page * cfg.page; }

/* A size in bytes with an optional k/m suffix; dflt when absent or invalid. */
static size_t env_size(const char *name, size_t dflt) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long unit = 1;
    if (*end == 'k' || *end == 'K') unit = 1024, end++;
    else if (*end == 'm' || *end == 'M') unit = 1024 * 1024, end++;
    if (*end || errno || v == 0 || v > MAX_STACK / unit) return dflt;
    return (size_t)(v * unit);
}

/* Leave room, below vm.max_map_count, for the program's other mappings and
 * for the slabs we fall back to: each guarded stack costs two mappings. */
static size_t read_guard_budget(void) {
    size_t max = cfg.max_maps = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        unsigned long v;
        if (fscanf(f, "%lu", &v) == 1 && v > 0) max = cfg.max_maps = v;
        fclose(f);
    }
    return max > 16384 ? (max - 8192) / 2 : max / 4;
}

static void cfg_read(void) {
    cfg.page = (size_t)sysconf(_SC_PAGESIZE);
#ifdef RILL_ASAN
    size_t dflt = 256u * 1024u; /* instrumented frames are much larger */
#else
    size_t dflt = 64u * 1024u;
#endif
    size_t n = env_size("RILL_STACK_SIZE", dflt);
    cfg.stack = round_pages(n < MIN_STACK ? MIN_STACK : n);
    cfg.guard_budget = read_guard_budget();
    const char *g = getenv("RILL_GUARD_PAGES");
    cfg.guards = !(g && strcmp(g, "0") == 0);
    pthread_atfork(stash_fork_prepare, stash_fork_parent, stash_fork_child);
}

static void cfg_load(void) { pthread_once(&cfg_once, cfg_read); }

static size_t default_stack(void) {
    cfg_load();
    return cfg.stack;
}

/* Guarded stacks alive in the process: mappings are counted per process, so
 * the counter is shared by threads. */
static atomic_size_t guarded_live;
static atomic_bool guards_warned;

static void guards_ran_out(void) {
    if (!atomic_exchange(&guards_warned, true))
        fprintf(stderr, "rill: near the memory-mapping limit (vm.max_map_count = %zu); "
                        "new fiber stacks are unguarded, checked by canary\n",
                cfg.max_maps);
}

/* A guarded stack could not be mapped below our budget: is the process
 * near the mapping limit after all (its other mappings), or out of memory
 * or address space (RLIMIT_AS), which no fallback cures?  Read only on that
 * failure. */
static bool near_map_limit(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return false;
    size_t lines = 0;
    for (int c; (c = getc(f)) != EOF;) lines += c == '\n';
    fclose(f);
    return lines + 64 >= cfg.max_maps;
}

/* The descriptor lives at the top of the stack's own memory. */
static rill__stack *carve(char *base, size_t len, char *map, size_t map_len) {
    rill__stack *st = (rill__stack *)(void *)(base + len - sizeof(rill__stack));
    st->lo = base;
    st->hi = (char *)((uintptr_t)st & ~(uintptr_t)15);
    st->map = map;
    st->map_len = map_len;
    st->size = len;
    st->guarded = map != NULL;
    st->next_free = NULL;
    st->vg_id = VALGRIND_STACK_REGISTER(st->lo, st->hi);
    return st;
}

static rill__stack *map_guarded(size_t size) {
    size_t len = size + cfg.page;
    char *map = rill__alloc_stack_fails() ? MAP_FAILED : mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) return NULL;
    if (mprotect(map, cfg.page, PROT_NONE) != 0) {
        munmap(map, len);
        return NULL;
    }
    return carve(map + cfg.page, size, map, len);
}

/* Free slab stacks of one size.  Stacks differ in size only through
 * rill_opts, so the list of classes stays short. */
typedef struct slab_class {
    struct slab_class *next;
    size_t size;
    rill__stack *free;
} slab_class;

static slab_class *class_for(size_t size) {
    for (slab_class *c = pool.classes; c; c = c->next)
        if (c->size == size) return c;
    slab_class *c = rill__calloc(1, sizeof *c);
    if (!c) return NULL;
    c->size = size;
    c->next = pool.classes;
    pool.classes = c;
    return c;
}

static rill__stack *from_slab(size_t size) {
    slab_class *c = class_for(size);
    if (!c) return NULL;
    if (c->free) {
        rill__stack *st = c->free;
        c->free = st->next_free;
        return st;
    }
    size_t len = cfg.page + SLAB_STACKS * size;
    char *map = rill__alloc_stack_fails() ? MAP_FAILED : mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) return NULL;
    slab *sl = (slab *)(void *)map;
    sl->len = len;
    sl->next = pool.slabs;
    pool.slabs = sl;
    /* Keep all but the first slot on the free list. */
    for (unsigned i = SLAB_STACKS - 1; i > 0; i--) {
        rill__stack *st = carve(map + cfg.page + i * size, size, NULL, 0);
        st->next_free = c->free;
        c->free = st;
    }
    return carve(map + cfg.page, size, NULL, 0);
}

static void unmap_stack(rill__stack *st) {
    VALGRIND_STACK_DEREGISTER(st->vg_id);
    munmap(st->map, st->map_len);
    atomic_fetch_sub(&guarded_live, 1);
}

/* Move up to REFILL stacks from the stash to this thread's pool. */
static void refill(void) {
    pthread_mutex_lock(&stash.mu);
    for (unsigned k = 0; k < REFILL && stash.free; k++) {
        rill__stack *st = stash.free;
        stash.free = st->next_free;
        stash.n--;
        st->next_free = pool.free;
        pool.free = st;
        pool.nfree++;
    }
    pthread_mutex_unlock(&stash.mu);
}

/* Keep st for the process, or unmap it when the stash is full. */
static void stash_put(rill__stack *st) {
    pthread_mutex_lock(&stash.mu);
    bool kept = stash.n < STASH_MAX;
    if (kept) {
        st->next_free = stash.free;
        stash.free = st;
        stash.n++;
    }
    pthread_mutex_unlock(&stash.mu);
    if (!kept) unmap_stack(st);
}

static rill__stack *stack_get(size_t size) {
    rill__stack *st = NULL;
    bool dflt = size == default_stack();
    if (dflt && !pool.free) refill();
    if (dflt && pool.free) {
        st = pool.free;
        pool.free = st->next_free;
        pool.nfree--;
    } else if (cfg.guards) {
        if (atomic_load(&guarded_live) >= cfg.guard_budget) guards_ran_out();
        else if ((st = map_guarded(size))) atomic_fetch_add(&guarded_live, 1);
        else if (near_map_limit()) guards_ran_out();
    }
    if (!st) st = from_slab(size);
    if (!st) {
        errno = ENOMEM;
        return NULL;
    }
#ifdef RILL_ASAN
    /* A dead fiber's frames may have left poisoned redzones behind. */
    ASAN_UNPOISON_MEMORY_REGION(st->lo, (size_t)(st->hi - st->lo));
#endif
    *(uint64_t *)(void *)st->lo = CANARY;
    return st;
}

void rill__stack_put(rill__stack *st) {
    if (!st->guarded) {
        slab_class *c = class_for(st->size);
        RILL_ASSERT(c != NULL, "a slab stack's size class vanished");
        st->next_free = c->free;
        c->free = st;
        return;
    }
    if (st->size != default_stack()) {
        unmap_stack(st);
    } else if (pool.nfree < POOL_MAX) {
        st->next_free = pool.free;
        pool.free = st;
        pool.nfree++;
    } else {
        stash_put(st);
    }
}

static void stacks_trim(void) {
    while (pool.free) {
        rill__stack *st = pool.free;
        pool.free = st->next_free;
        stash_put(st);
    }
    pool.nfree = 0;
}

static void stacks_free(void) {
    stacks_trim();
    /* Slab stacks are all free by now; drop their registrations, then the
     * slabs themselves. */
    while (pool.classes) {
        slab_class *c = pool.classes;
        pool.classes = c->next;
        for (rill__stack *st = c->free; st; st = st->next_free)
            VALGRIND_STACK_DEREGISTER(st->vg_id);
        free(c);
    }
    while (pool.slabs) {
        slab *sl = pool.slabs;
        pool.slabs = sl->next;
        munmap(sl, sl->len);
    }
}

/* ---- overflow reporting -------------------------------------------------- */

static void write_str(const char *s) {
    ssize_t r = write(STDERR_FILENO, s, strlen(s));
    (void)r;
}

static void write_num(size_t n) {
    char buf[24];
    char *p = buf + sizeof buf;
    *--p = 0;
    do *--p = (char)('0' + n % 10); while ((n /= 10) && p > buf);
    write_str(p);
}

_Noreturn static void overflowed(const rill__fiber *f) {
    write_str("rill: fiber '");
    write_str(f->name ? f->name : "?");
    write_str("' overflowed its ");
    write_num(f->stack->size / 1024);
    write_str(" KiB stack\n");
    abort();
}

static struct sigaction old_segv;
static atomic_bool segv_installed;

/* The stack pointer at the fault, where we know how to read it. */
static const char *fault_sp(const void *uctx) {
#if defined(__x86_64__)
    return (const char *)((const ucontext_t *)uctx)->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (const char *)((const ucontext_t *)uctx)->uc_mcontext.sp;
#else
    (void)uctx;
    return NULL;
#endif
}

/* Has the running fiber overflowed?  Its stack pointer is below its stack
 * (a frame of any size, on any stack), or the fault is in its own guard
 * page.  A fault anywhere else, even just past the guard page (a dangling
 * pointer into a neighbouring stack that was unmapped), is an ordinary
 * crash. */
static bool is_overflow(const rill__fiber *f, const siginfo_t *si, const void *uctx) {
    const rill__stack *st = f->stack;
    const char *sp = fault_sp(uctx), *a = si->si_addr;
    if (sp && sp < st->lo && sp + MAX_STACK > st->lo) return true;
    return st->guarded && a >= st->map && a < st->lo;
}

static void on_segv(int sig, siginfo_t *si, void *uctx) {
    rill__rt *rt = rill__self;
    rill__fiber *f = rt ? rt->current : NULL;
    /* si_code > 0: a real fault, not kill() or raise(). */
    if (si->si_code > 0 && f && f->stack && is_overflow(f, si, uctx)) overflowed(f);
    /* Not ours: hand it to the handler that was there before us, and stay
     * installed.  With none, die the default way. */
    if (old_segv.sa_flags & SA_SIGINFO) {
        old_segv.sa_sigaction(sig, si, uctx);
        return;
    }
    if (old_segv.sa_handler != SIG_DFL && old_segv.sa_handler != SIG_IGN) {
        old_segv.sa_handler(sig);
        return;
    }
    signal(SIGSEGV, SIG_DFL);
    if (si->si_code <= 0) raise(sig); /* a real fault recurs by itself */
}

int rill__stack_signals(rill__rt *rt) {
    if (rt->signals.altstack) return 0; /* made already (a bare runtime's generators) */
    size_t sz = 64u * 1024u;
    rt->signals.altstack = rill__malloc(sz);
    if (!rt->signals.altstack) return -ENOMEM;
    stack_t ss = {.ss_sp = rt->signals.altstack, .ss_size = sz, .ss_flags = 0};
    if (sigaltstack(&ss, &rt->signals.old_altstack) != 0) {
        free(rt->signals.altstack);
        rt->signals.altstack = NULL;
        return -errno;
    }
    /* The handler is process-wide; installed once, it stays. */
    if (!atomic_exchange(&segv_installed, true)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &old_segv);
    }
    return 0;
}

static void signals_end(rill__rt *rt) {
    if (!rt->signals.altstack) return;
    stack_t cur;
    sigaltstack(&rt->signals.old_altstack, &cur);
    free(rt->signals.altstack);
    rt->signals.altstack = NULL;
}

/* A stack for a new fiber: `size` bytes (0: the default), page-rounded.
 * 0, -EINVAL (too large), -ENOMEM. */
int rill__stack_get(size_t size, rill__stack **out) {
    cfg_load();
    if (size == 0) size = cfg.stack;
    if (size > MAX_STACK) return -EINVAL;
    size = round_pages(size < MIN_STACK ? MIN_STACK : size);
    *out = stack_get(size);
    return *out ? 0 : -ENOMEM;
}

void rill__stack_check(const rill__fiber *f) {
    if (f->stack && *(const uint64_t *)(const void *)f->stack->lo != CANARY) overflowed(f);
}

/* ---- the module -------------------------------------------------------------------- */

static void stacks_run_end(rill__rt *rt) {
    stacks_trim();
    signals_end(rt);
}

static void stacks_term(rill__rt *rt) {
    stacks_free();
    signals_end(rt);
}

const rill__module rill__stack_module = {.run_end = stacks_run_end, .term = stacks_term};
