/*
 * Fiber stacks, and the report of an overflow.
 *
 * Stacks are carved from slabs: one mapping (MAP_NORESERVE: only touched
 * pages cost memory) holds many stacks, each with a guard page just below
 * it, installed with madvise(MADV_GUARD_INSTALL) (Linux 6.13).  Such guard
 * pages do not split the mapping: a million stacks cost about a thousand
 * kernel mappings, where a mapping and an mprotect'ed page per stack would
 * cost two million (Linux allows about 65530 per process).  A fault in a
 * guard page is an overflow, reported by name by a handler on an alternate
 * signal stack.  A guarded stack has no canary: rill never touches its
 * lowest page, so a sleeping fiber costs the top page its frames use.
 *
 * Where the kernel refuses MADV_GUARD_INSTALL (probed once per process),
 * each stack is a mapping of its own with an mprotect'ed guard page while
 * the mapping budget lasts; beyond it (and with RILL_GUARD_PAGES=0), stacks
 * are carved from slabs without guard pages, with a canary word at their
 * lowest address checked at every switch-out, and the first such stack says
 * so on stderr.
 *
 * Released stacks of the default size are kept in a per-thread pool, so that
 * spawning is a pop from a list.  The pool keeps its stacks' pages, so a
 * burst of fibers would hold its peak of memory for good: a timer of the
 * runtime's (the decay) gives back, each second, the stacks the pool kept
 * unused through the whole second, beyond POOL_KEEP, to their slabs and
 * their pages to the kernel; a stack that overflows the pool goes so at
 * once.  When a thread's runtime ends, its pool
 * goes to a process-wide stash that later runtimes, on any thread, refill
 * from.  What overflows both goes back to its slab, and a slab whose stacks
 * are all back is unmapped (but one per size, against thrashing; the end of
 * a run unmaps that one too).  Slabs are process-wide, under the stash's
 * mutex: a stack released on one thread may have been carved on another.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "alloc.h"
#include "internal.h"
#include "sanitize.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13; older headers lack it */
#endif

#define CANARY 0x72696c6c5eedf00dULL
#define MIN_STACK (16u * 1024u)
/* Free default-size stacks kept per thread: a burst of live fibers beyond it
 * takes the stash's mutex once per stack. */
#define POOL_MAX 2048u
/* Free stacks a pool keeps however long they go unused, and how often
 * the decay looks at the others. */
#define POOL_KEEP 64u
#define DECAY_SECONDS 1.0
/* A size's first slab holds one stack, each next one twice as many, up to
 * SLAB_MAX stacks or SLAB_BYTES: few mappings for a million fibers, and a
 * small program reserves no more address space than it uses (a program
 * near RLIMIT_AS finds no room for a fiber it did not make room for). */
#define FIRST_SLAB 1u
#define SLAB_MAX 1024u
#define SLAB_BYTES ((size_t)64 << 20)
/* Guard pages installed per system call (process_madvise). */
#define GUARD_BATCH 128u

typedef struct rill__slab slab;
typedef struct slab_class slab_class;

/* One mapping: this header's pages, then n stack slots: [guard page][stack]
 * each, or [stack] each for a slab without guard pages.  The header lives
 * in the mapping so that a new slab is one mapping and no allocation.  It
 * lists the slots given back by number, not through their stacks' own
 * descriptors, so that a free stack's pages can all go (its descriptor is
 * made again when it is taken).  They go lazily: a slot given back keeps
 * its pages (warm for the next taker) until the decay drops the pages of
 * every slot given back since (slabs_clean), and a slab whose stacks are
 * all back is unmapped without dropping any. */
struct rill__slab {
    rill__list node;    /* on its class's avail or full list */
    slab_class *cls;
    char *base;         /* the first slot */
    size_t len;         /* of the whole mapping */
    unsigned n, carved; /* slots, slots carved so far (in order) */
    unsigned out;       /* carved stacks not given back */
    unsigned nfree;     /* slots given back: free_slot[0, nfree), */
    unsigned nclean;    /* the first nclean of them without pages */
    unsigned free_slot[];
};

/* Slabs of one stack size, with guard pages or without.  Stacks differ in
 * size only through rill_opts, so the list of classes stays short. */
struct slab_class {
    slab_class *next;
    size_t size;
    bool guarded;
    unsigned next_n;    /* stacks in its next slab */
    rill__list avail;   /* slabs with a stack to give */
    rill__list full;
    slab *spare;        /* an empty slab kept, or NULL */
};

/* Default-size stacks kept for the whole process (see the top), taken
 * REFILL at a time, so the mutex is rare; and the slabs. */
#define STASH_MAX 4096u
#define REFILL 64u
static struct {
    pthread_mutex_t mu;
    rill__stack *free;
    size_t n;
    slab_class *classes;
    size_t dirty;       /* free slots of all slabs that keep their pages */
} stash = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void stash_fork_prepare(void) { pthread_mutex_lock(&stash.mu); }
static void stash_fork_parent(void) { pthread_mutex_unlock(&stash.mu); }
static void stash_fork_child(void) { pthread_mutex_init(&stash.mu, NULL); }

/* One pool per thread: a runtime belongs to one thread. */
static _Thread_local struct {
    rill__stack *free;  /* default-size stacks ready for reuse */
    size_t nfree;
    size_t low;         /* the fewest free since the decay last looked */
} pool;

/* Sizes beyond this are refused: they would overflow the page and slab
 * arithmetic long before any system could map them. */
#define MAX_STACK ((size_t)1 << 30)

/* Read once per process (pthread_once: runtimes on several threads). */
static struct {
    size_t page;          /* the page size */
    size_t stack;         /* default stack size: RILL_STACK_SIZE or built-in */
    size_t max_maps;      /* vm.max_map_count */
    size_t guard_budget;  /* stacks with mappings of their own alive at once */
    bool guards;          /* RILL_GUARD_PAGES=0 turns guard pages off */
    bool guard_install;   /* the kernel takes MADV_GUARD_INSTALL */
} cfg;
static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;
/* Cleared once pidfd_open or process_madvise is refused (an older kernel,
 * a seccomp filter, valgrind): one madvise per guard page from then on. */
static atomic_bool batch_works = true;
static bool no_guard_install; /* the test hook's */

void rill__stack_without_guard_install(void) { no_guard_install = true; }

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
 * for the slabs we fall back to: a stack with a mapping of its own costs two
 * mappings. */
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

/* Does the kernel install guard pages by madvise?  Older ones say EINVAL. */
static bool probe_guard_install(void) {
    if (no_guard_install) return false;
    char *m = mmap(NULL, 2 * cfg.page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return false;
    bool ok = madvise(m, cfg.page, MADV_GUARD_INSTALL) == 0;
    munmap(m, 2 * cfg.page);
    return ok;
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
    cfg.guard_install = cfg.guards && probe_guard_install();
#ifdef RILL_VALGRIND
    if (RUNNING_ON_VALGRIND) atomic_store(&batch_works, false); /* it lacks pidfd_open */
#endif
    pthread_atfork(stash_fork_prepare, stash_fork_parent, stash_fork_child);
}

/* Every spawn asks: after the first, one load instead of pthread_once's
 * call (acquire: cfg's fields were written before the flag). */
static atomic_bool cfg_ready;

static void cfg_load(void) {
    if (atomic_load_explicit(&cfg_ready, memory_order_acquire)) return;
    pthread_once(&cfg_once, cfg_read);
    atomic_store_explicit(&cfg_ready, true, memory_order_release);
}

/* Stacks with mappings of their own alive in the process: mappings are
 * counted per process, so the counter is shared by threads. */
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

/* The descriptor lives at the top of the stack's own memory, on the page
 * the new context's start state touches anyway. */
static rill__stack *carve(char *lo, size_t size, char *guard, slab *sl, size_t map_len) {
    rill__stack *st = (rill__stack *)(void *)(lo + size - sizeof(rill__stack));
    st->lo = lo;
    st->hi = (char *)((uintptr_t)st & ~(uintptr_t)15);
    st->guard = guard;
    st->slab = sl;
    st->map_len = map_len;
    st->size = size;
    st->next_free = NULL;
    st->vg_id = VALGRIND_STACK_REGISTER(st->lo, st->hi);
    return st;
}

static void *map_stacks(size_t len) {
    if (rill__alloc_stack_fails()) return MAP_FAILED;
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
#ifdef RILL_ASAN
    /* The address may have held a stack unmapped with dead fibers' frames
     * still poisoned; the slab header and descriptors are written first. */
    if (map != MAP_FAILED) ASAN_UNPOISON_MEMORY_REGION(map, len);
#endif
    return map;
}

/* A stack with a mapping of its own, its guard page mprotect'ed: the
 * fallback where the kernel cannot install guard pages by madvise. */
static rill__stack *map_guarded(size_t size) {
    size_t len = size + cfg.page;
    char *map = map_stacks(len);
    if (map == MAP_FAILED) return NULL;
    if (mprotect(map, cfg.page, PROT_NONE) != 0) {
        munmap(map, len);
        return NULL;
    }
    return carve(map + cfg.page, size, map, NULL, len);
}

static void unmap_stack(rill__stack *st) {
    VALGRIND_STACK_DEREGISTER(st->vg_id);
    munmap(st->guard, st->map_len);
    atomic_fetch_sub(&guarded_live, 1);
}

/* ---- slabs (under stash.mu) ------------------------------------------------ */

static size_t slot_of(const slab_class *c) { return c->size + (c->guarded ? cfg.page : 0); }

/* The guard page of each of the n slots at map, `slot` bytes apart.  All at
 * once, when the slab is made, GUARD_BATCH per process_madvise call (kernels
 * with guard pages take any advice from a process for itself; where it is
 * refused, one madvise each): measured on 100 000 spawns, 3.1 us of CPU
 * each so, 3.8 us with one madvise per stack when it is first carved. */
static bool install_guards(char *map, size_t slot, unsigned n) {
    unsigned done = 0;
#if defined(SYS_pidfd_open) && defined(SYS_process_madvise)
    int pidfd = atomic_load(&batch_works) ? (int)syscall(SYS_pidfd_open, getpid(), 0) : -1;
    if (pidfd >= 0) {
        struct iovec iov[GUARD_BATCH];
        while (done < n) {
            unsigned k = 0;
            for (; k < GUARD_BATCH && done + k < n; k++)
                iov[k] = (struct iovec){.iov_base = map + (done + k) * slot, .iov_len = cfg.page};
            long r = syscall(SYS_process_madvise, pidfd, iov, (size_t)k, MADV_GUARD_INSTALL, 0u);
            if (r <= 0) break;
            done += (unsigned)((size_t)r / cfg.page);
        }
        close(pidfd);
    }
    if (done < n) atomic_store(&batch_works, false);
#endif
    for (; done < n; done++)
        if (madvise(map + done * slot, cfg.page, MADV_GUARD_INSTALL) != 0) return false;
    return true;
}

/* Classes live here while they can, not on the heap: the default size's
 * stay as long as the stash holds one of its stacks, up to the process's
 * exit, where a heap block would be reported as still reachable. */
#define CLASS_STORE 8u
static slab_class class_store[CLASS_STORE];
static bool class_stored[CLASS_STORE];

static slab_class *class_new(void) {
    for (unsigned i = 0; i < CLASS_STORE; i++)
        if (!class_stored[i]) {
            class_stored[i] = true;
            class_store[i] = (slab_class){0};
            return &class_store[i];
        }
    return rill__calloc(1, sizeof(slab_class));
}

static void class_free(slab_class *c) {
    if (c >= class_store && c < class_store + CLASS_STORE) class_stored[c - class_store] = false;
    else free(c);
}

static slab_class *class_for(size_t size, bool guarded) {
    for (slab_class *c = stash.classes; c; c = c->next)
        if (c->size == size && c->guarded == guarded) return c;
    slab_class *c = class_new();
    if (!c) return NULL;
    c->size = size;
    c->guarded = guarded;
    c->next_n = FIRST_SLAB;
    rill__list_init(&c->avail);
    rill__list_init(&c->full);
    c->next = stash.classes;
    stash.classes = c;
    return c;
}

/* A new slab for c, as large as c's turn says, or smaller if the address
 * space is short (RLIMIT_AS). */
static slab *slab_new(slab_class *c) {
    size_t slot = slot_of(c);
    for (unsigned n = c->next_n; n > 0; n /= 2) {
        size_t head = round_pages(sizeof(slab) + n * sizeof(unsigned));
        size_t len = head + n * slot;
        char *map = map_stacks(len);
        if (map == MAP_FAILED) continue;
        if (c->guarded && !install_guards(map + head, slot, n)) {
            munmap(map, len);
            return NULL;
        }
        slab *sl = (slab *)(void *)map;
        *sl = (slab){.cls = c, .base = map + head, .len = len, .n = n};
        rill__list_push_front(&c->avail, &sl->node);
        if (n == c->next_n && n < SLAB_MAX && (size_t)n * 2 * slot <= SLAB_BYTES) c->next_n *= 2;
        return sl;
    }
    return NULL;
}

/* Only a slab with no stack out: each was deregistered from valgrind as
 * it was given back. */
static void slab_unmap(slab *sl) {
    stash.dirty -= sl->nfree - sl->nclean;
    if (sl->cls->spare == sl) sl->cls->spare = NULL;
    rill__list_remove(&sl->node);
    munmap(sl, sl->len);
}

static rill__stack *slab_take(slab *sl) {
    slab_class *c = sl->cls;
    unsigned i;
    if (sl->nfree) { /* the last given back: the likeliest to have its pages */
        i = sl->free_slot[--sl->nfree];
        if (sl->nfree < sl->nclean) sl->nclean = sl->nfree;
        else stash.dirty--;
    } else {
        i = sl->carved++;
    }
    char *lo = sl->base + i * slot_of(c) + (c->guarded ? cfg.page : 0);
    rill__stack *st = carve(lo, c->size, c->guarded ? lo - cfg.page : NULL, sl, 0);
    sl->out++;
    if (c->spare == sl) c->spare = NULL;
    if (!sl->nfree && sl->carved == sl->n) {
        rill__list_remove(&sl->node);
        rill__list_push(&c->full, &sl->node);
    }
    return st;
}

/* Slot i of sl is free again (its pages stay until slabs_clean). */
static void slab_give(slab *sl, unsigned i) {
    slab_class *c = sl->cls;
    if (!sl->nfree && sl->carved == sl->n) {
        rill__list_remove(&sl->node);
        rill__list_push_front(&c->avail, &sl->node);
    }
    sl->free_slot[sl->nfree++] = i;
    stash.dirty++;
    if (--sl->out > 0) return;
    if (!c->spare) c->spare = sl;
    else slab_unmap(sl);
}

/* The pages of every free slot that still has them go to the kernel.
 * Under the stash's mutex. */
static void slabs_clean(void) {
    for (slab_class *c = stash.classes; c && stash.dirty; c = c->next) {
        size_t slot = slot_of(c), guard = c->guarded ? cfg.page : 0;
        for (rill__list *n = c->avail.next; n != &c->avail; n = n->next) {
            slab *sl = rill__container_of(n, slab, node);
            for (unsigned k = sl->nclean; k < sl->nfree; k++)
                madvise(sl->base + sl->free_slot[k] * slot + guard, c->size, MADV_DONTNEED);
            stash.dirty -= sl->nfree - sl->nclean;
            sl->nclean = sl->nfree;
        }
    }
}

/* A stack of `size` bytes from its slabs; NULL if none can be mapped. */
static rill__stack *from_slabs(size_t size, bool guarded) {
    pthread_mutex_lock(&stash.mu);
    slab_class *c = class_for(size, guarded);
    slab *sl = NULL;
    if (c && !rill__list_empty(&c->avail)) sl = rill__container_of(c->avail.next, slab, node);
    if (c && !sl) sl = slab_new(c);
    rill__stack *st = sl ? slab_take(sl) : NULL;
    pthread_mutex_unlock(&stash.mu);
    return st;
}

/* Unmap every empty slab, forget sizes left without any, and drop the
 * pages of the free slots of the others. */
static void slabs_trim(void) {
    pthread_mutex_lock(&stash.mu);
    for (slab_class **pc = &stash.classes; *pc;) {
        slab_class *c = *pc;
        for (rill__list *n = c->avail.next, *next; n != &c->avail; n = next) {
            next = n->next;
            slab *sl = rill__container_of(n, slab, node);
            if (sl->out == 0) slab_unmap(sl);
        }
        if (rill__list_empty(&c->avail) && rill__list_empty(&c->full)) {
            *pc = c->next;
            class_free(c);
        } else {
            pc = &c->next;
        }
    }
    slabs_clean();
    pthread_mutex_unlock(&stash.mu);
}

/* ---- pool and stash ----------------------------------------------------------- */

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

static void decay_start(rill__rt *rt);

/* st to its slab (its pages, descriptor and all, go at the next decay),
 * or unmapped if it is a mapping of its own. */
static void give_back(rill__stack *st) {
    slab *sl = st->slab;
    if (!sl) {
        unmap_stack(st);
        return;
    }
    unsigned i = (unsigned)((size_t)(st->lo - sl->base) / slot_of(sl->cls));
    VALGRIND_STACK_DEREGISTER(st->vg_id);
#ifdef RILL_ASAN
    /* Dead frames' redzones: the descriptor is written here again. */
    ASAN_UNPOISON_MEMORY_REGION(st->lo, st->size);
#endif
    pthread_mutex_lock(&stash.mu);
    slab_give(sl, i);
    pthread_mutex_unlock(&stash.mu);
    decay_start(rill__self);
}

/* Keep st for the process; when the stash is full, give it back to its
 * slab, or unmap it. */
static void stash_put(rill__stack *st) {
    pthread_mutex_lock(&stash.mu);
    bool kept = stash.n < STASH_MAX;
    if (kept) {
        st->next_free = stash.free;
        stash.free = st;
        stash.n++;
    }
    pthread_mutex_unlock(&stash.mu);
    if (!kept) give_back(st);
}

static rill__stack *stack_get(size_t size) {
    rill__stack *st = NULL;
    bool dflt = size == cfg.stack;
    if (dflt && !pool.free) refill();
    if (dflt && pool.free) {
        st = pool.free;
        pool.free = st->next_free;
        if (--pool.nfree < pool.low) pool.low = pool.nfree;
    } else if (cfg.guard_install) {
        st = from_slabs(size, true);
    }
    if (!st && cfg.guards) {
        if (atomic_load(&guarded_live) >= cfg.guard_budget) guards_ran_out();
        else if ((st = map_guarded(size))) atomic_fetch_add(&guarded_live, 1);
        else if (near_map_limit()) guards_ran_out();
    }
    if (!st) st = from_slabs(size, false);
    if (!st) {
        errno = ENOMEM;
        return NULL;
    }
#ifdef RILL_ASAN
    /* A dead fiber's frames may have left poisoned redzones behind. */
    ASAN_UNPOISON_MEMORY_REGION(st->lo, (size_t)(st->hi - st->lo));
#endif
    if (!st->guard) *(uint64_t *)(void *)st->lo = CANARY;
    return st;
}

/* libev's idiom for a timer that must not keep the loop running: it is
 * not counted while active. */
static void decay_start(rill__rt *rt) {
    if (!rt || !rt->loop || ev_is_active(&rt->stacks.decay)) return;
    pool.low = pool.nfree;
    ev_timer_set(&rt->stacks.decay, DECAY_SECONDS, DECAY_SECONDS);
    ev_timer_start(rt->loop, &rt->stacks.decay);
    ev_unref(rt->loop);
}

static void decay_stop(rill__rt *rt) {
    if (!rt->loop || !ev_is_active(&rt->stacks.decay)) return;
    ev_ref(rt->loop);
    ev_timer_stop(rt->loop, &rt->stacks.decay);
}

/* Each second: give back the stacks the pool held unused all along (at
 * least pool.low of them were), down to POOL_KEEP, and drop the pages of
 * the slots given back to slabs since the last time. */
static void decay(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop, (void)w, (void)revents;
    size_t excess = pool.nfree > POOL_KEEP ? pool.nfree - POOL_KEEP : 0;
    for (size_t n = pool.low < excess ? pool.low : excess; n > 0; n--) {
        rill__stack *st = pool.free;
        pool.free = st->next_free;
        pool.nfree--;
        give_back(st);
    }
    pthread_mutex_lock(&stash.mu);
    slabs_clean();
    pthread_mutex_unlock(&stash.mu);
    pool.low = pool.nfree;
    if (pool.nfree <= POOL_KEEP) decay_stop(rill__self);
}

void rill__stack_put(rill__stack *st) {
    if (st->size == cfg.stack && pool.nfree < POOL_MAX) {
        st->next_free = pool.free;
        pool.free = st;
        if (++pool.nfree > POOL_KEEP) decay_start(rill__self);
    } else {
        /* Another size, or beyond what a pool keeps: back to its slab,
         * which goes once all its stacks are back (the stash is for the
         * ends of runs). */
        give_back(st);
    }
}

/* The end of a run, or of the thread's runtime: the pool goes to the stash,
 * empty slabs go. */
static void stacks_trim(void) {
    while (pool.free) {
        rill__stack *st = pool.free;
        pool.free = st->next_free;
        stash_put(st);
    }
    pool.nfree = 0;
    slabs_trim();
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
    return st->guard && a >= st->guard && a < st->lo;
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
    if (rt->stacks.altstack) return 0; /* made already (a bare runtime's generators) */
    size_t sz = 64u * 1024u;
    rt->stacks.altstack = rill__malloc(sz);
    if (!rt->stacks.altstack) return -ENOMEM;
    stack_t ss = {.ss_sp = rt->stacks.altstack, .ss_size = sz, .ss_flags = 0};
    if (sigaltstack(&ss, &rt->stacks.old_altstack) != 0) {
        free(rt->stacks.altstack);
        rt->stacks.altstack = NULL;
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
    if (!rt->stacks.altstack) return;
    stack_t cur;
    sigaltstack(&rt->stacks.old_altstack, &cur);
    free(rt->stacks.altstack);
    rt->stacks.altstack = NULL;
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

/* Guarded stacks have no canary: their lowest page stays untouched. */
void rill__stack_check(const rill__fiber *f) {
    const rill__stack *st = f->stack;
    if (st && !st->guard && *(const uint64_t *)(const void *)st->lo != CANARY) overflowed(f);
}

/* ---- the module -------------------------------------------------------------------- */

/* The end of a run and of the thread's runtime alike: the pool to the
 * stash, empty slabs unmapped, the signal stack freed. */
static void stacks_end(rill__rt *rt) {
    stacks_trim(); /* which may have started the decay: stopped after it */
    decay_stop(rt);
    signals_end(rt);
}

static void stacks_init(rill__rt *rt) { ev_init(&rt->stacks.decay, decay); }

const rill__module rill__stack_module = {
    .init = stacks_init, .run_end = stacks_end, .term = stacks_end};
