/*
 * concurrent_generators: three async generators, A, B and C, each yielding
 * three values a second apart, consumed at the same time.  Their sleeps
 * overlap, so the whole run takes about 3 s, not 3 x 3 = 9 s.
 *
 * The Python original:
 *
 *     async def async_generate(name):
 *         for i in range(3):
 *             await asyncio.sleep(1)
 *             yield f"{name}: {i}"
 *
 *     async def test_concurrent():
 *         start = time.time()
 *         async def consume(name):
 *             async for item in async_generate(name):
 *                 print(item)
 *         await asyncio.gather(*(consume(name) for name in ['A', 'B', 'C']))
 *         print(f"Concurrent total time: {time.time() - start:.2f}s")
 *         # Concurrent total time: 3.00s (not 9.00s)
 *
 * A generator's body runs for whoever consumes it; when it sleeps, only
 * that consumer waits, and the scheduler runs the other two.  Part 1 is the
 * Python program: one consumer task per generator, started with
 * rill_gather().  Part 2 does the same with a single loop: rill_gen_merge()
 * pulls every source in a task of its own and yields the values as they
 * come.  Because merge runs its sources ahead of the loop, it must copy
 * their values (item_size): each body formats its strings into one buffer
 * that it reuses for every value.
 *
 * Usage: concurrent_generators [--scale X]   (X multiplies every delay)
 */
#include "demo.h"

#define NGEN 3
#define PER_GEN 3
#define DELAY 1.0  /* seconds before each value, before scaling */
#define ITEM 16    /* bytes of one value: "A: 0" and its NUL, with room */

static char names[NGEN][2] = {"A", "B", "C"};

/* async_generate(name): the value is a string in a buffer that the body
 * overwrites for each value (borrowed by the consumer until it resumes). */
static int async_generate(rill_gen *g, void *arg) {
    const char *name = arg;
    char item[ITEM];
    for (int i = 0; i < PER_GEN; i++) {
        int rc = rill_sleep(DELAY * scale);
        if (rc < 0) return rc;
        snprintf(item, sizeof item, "%s: %d", name, i);
        if ((rc = rill_yield(g, item)) < 0) return rc;
    }
    return 0;
}

/* What arrived, for the checks: per generator how many values, whether they
 * came in order, and when the first and the last one came. */
struct tally {
    int n[NGEN];
    bool in_order;
    double first_at[NGEN], last_at[NGEN];
};

static void record(struct tally *t, const char *item) {
    int gen = item[0] - 'A';
    if (gen < 0 || gen >= NGEN || atoi(item + 3) != t->n[gen]) {
        t->in_order = false;
        return;
    }
    double now = rill_now();
    if (t->n[gen]++ == 0) t->first_at[gen] = now;
    t->last_at[gen] = now;
}

/* Check one part's claims; took is in unscaled seconds. */
static void check(const struct tally *t, int status, double took) {
    bool all = t->in_order && status == 0;
    double first = 0, last = INFINITY;
    for (int i = 0; i < NGEN; i++) {
        all = all && t->n[i] == PER_GEN;
        if (t->first_at[i] > first) first = t->first_at[i];
        if (t->last_at[i] < last) last = t->last_at[i];
    }
    expect(all, "each generator yields its 3 values, in order");
    expect(first < last, "the generators interleave: every first value comes "
                         "before any generator's last value");
    expect(took >= PER_GEN * DELAY, "it takes at least 3 x 1 s");
    expect(took < 2 * PER_GEN * DELAY, "it takes well under 9 s (less than 6 s)");
}

/* ---- Part 1: one consumer task per generator, with gather ---------------- */

struct consumer {
    char *name;
    struct tally *tally;
};

/* consume(name): async for item in async_generate(name): print(item) */
static int consume(void *arg) {
    struct consumer *c = arg;
    RILL_GEN_AUTO rill_gen *gen = rill_gen_new(async_generate, c->name);
    if (!gen) return -errno;
    char *item;
    rill_foreach(item, gen) {
        printf("%s\n", item);
        record(c->tally, item);
    }
    return rill_gen_status(gen); /* 0, or why the generator failed */
}

static int test_concurrent(void) {
    printf("== asyncio.gather(consume('A'), consume('B'), consume('C')) ==\n");
    struct tally tally = {.in_order = true};
    struct consumer cons[NGEN];
    rill_fn *fns[NGEN];
    void *args[NGEN];
    for (int i = 0; i < NGEN; i++) {
        cons[i] = (struct consumer){names[i], &tally};
        fns[i] = consume;
        args[i] = &cons[i];
    }
    double start = rill_now();
    int rc = rill_gather(NGEN, fns, args, NULL, 0);
    double took = demo_elapsed(start);
    printf("Concurrent total time: %.2fs (one after another: %.2fs)\n\n", took,
           NGEN * PER_GEN * DELAY);
    check(&tally, rc, took);
    return rc;
}

/* ---- Part 2: one loop over the three, with rill_gen_merge ---------------- */

static int test_merge(void) {
    printf("== async for item in merge(A, B, C) ==\n");
    rill_gen *srcs[NGEN] = {NULL};
    for (int i = 0; i < NGEN; i++) {
        if (!(srcs[i] = rill_gen_new(async_generate, names[i]))) {
            for (int j = 0; j < i; j++) rill_gen_free(srcs[j]);
            return -ENOMEM;
        }
    }
    /* The merge owns its sources from here on: freeing it frees them. */
    RILL_GEN_AUTO rill_gen *merged = rill_gen_merge(srcs, NGEN, ITEM);
    if (!merged) {
        for (int i = 0; i < NGEN; i++) rill_gen_free(srcs[i]);
        return -ENOMEM;
    }

    struct tally tally = {.in_order = true};
    double start = rill_now();
    char *item; /* the merge's copy of the value */
    rill_foreach(item, merged) {
        printf("%s\n", item);
        record(&tally, item);
    }
    double took = demo_elapsed(start);
    int rc = rill_gen_status(merged);
    printf("Merged total time: %.2fs\n\n", took);
    check(&tally, rc, took);
    return rc;
}

static int amain(void *arg) {
    (void)arg;
    int rc = test_concurrent();
    if (rc < 0) return rc;
    rc = test_merge();
    if (rc < 0) return rc;
    demo_verdict("3 generators of 3 values each ran side by side in ~3 s, not 9 s");
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
