/*
 * early_break: leave an `async for` after two values, and the generator's
 * cleanup (its `finally`) still runs, exactly once.
 *
 * The Python original:
 *
 *     async def async_gen_with_cleanup():
 *         try:
 *             for i in range(5):
 *                 await asyncio.sleep(0.5)
 *                 yield i
 *         finally:
 *             print("Cleaning up resources")   # release resources
 *
 *     async def main():
 *         gen = async_gen_with_cleanup()
 *         async for i, num in enumerate(gen):  # only iterate twice
 *             print(num)
 *             if i == 1:
 *                 break                        # triggers the finally block
 *
 *     # prints: 0, 1, Cleaning up resources
 *
 * Breaking out of rill_foreach leaves the generator suspended at its yield.
 * Closing it (rill_gen_close, Python's aclose) makes that rill_yield return
 * -EPIPE (GeneratorExit): the body leaves its loop, runs its cleanup and
 * returns.  RILL_GEN_AUTO closes and frees the generator when its variable
 * goes out of scope, as `async with aclosing(gen)` does; rill_gen_free does
 * the same by hand.  Whatever the path, the cleanup runs once: closing a
 * generator that has finished does nothing.
 *
 * Usage: early_break [--scale X]   (X multiplies every delay)
 */
#include "demo.h"

#define DELAY 0.5 /* seconds before each value, before scaling */

struct resource {
    int cleanups;    /* times the finally block ran */
    int ended_by;    /* what ended the loop: 0 exhausted, -EPIPE closed */
    int cleanup_rc;  /* what the cleanup's own blocking call returned */
};

static int async_gen_with_cleanup(rill_gen *g, void *arg) {
    struct resource *res = arg;
    int rc = 0;
    for (int i = 0; i < 5; i++) { /* try: */
        if ((rc = rill_sleep(DELAY * scale)) < 0) break;
        if ((rc = rill_yield(g, &i)) < 0) break; /* -EPIPE: closed early */
    }
    /* finally: reached however the loop ended.  The cleanup may block (say,
     * to close a connection politely): it runs for whoever closes the
     * generator, under that caller's cancellation, not ours. */
    printf("Cleaning up resources\n");
    res->cleanups++;
    res->ended_by = rc;
    res->cleanup_rc = rill_sleep(0.1 * scale);
    return rc; /* 0, or -EPIPE: both are a clean end */
}

/* async for i, num in enumerate(gen): print(num); break at i == 1.
 * Returns how many values the loop saw. */
static int iterate_twice(rill_gen *gen) {
    int i = 0, *num;
    rill_foreach(num, gen) {
        printf("%d\n", *num);
        if (i++ == 1) break; /* only iterate twice */
    }
    return i;
}

static int amain(void *arg) {
    (void)arg;

    /* 1. RILL_GEN_AUTO: the cleanup runs when `gen` goes out of scope. */
    printf("== break, then RILL_GEN_AUTO closes the generator as the block ends ==\n");
    struct resource auto_res = {0};
    int seen, before;
    {
        RILL_GEN_AUTO rill_gen *gen = rill_gen_new(async_gen_with_cleanup, &auto_res);
        if (!gen) return -errno;
        seen = iterate_twice(gen);
        before = auto_res.cleanups;
        printf("(after the break: suspended at its yield; cleanups: %d)\n", before);
    } /* here RILL_GEN_AUTO calls rill_gen_free(gen): close, then free */
    printf("(after the block: cleanups: %d)\n\n", auto_res.cleanups);
    expect(seen == 2 && before == 0, "the loop sees two values; break runs no cleanup");
    expect(auto_res.cleanups == 1 && auto_res.ended_by == -EPIPE,
           "leaving the block runs the cleanup once, through GeneratorExit (-EPIPE)");
    expect(auto_res.cleanup_rc == 0, "the cleanup may block");

    /* 2. By hand: rill_gen_close runs the cleanup; rill_gen_free afterwards
     *    finds the generator finished and only frees it. */
    printf("== break, then rill_gen_close (aclose) and rill_gen_free ==\n");
    struct resource hand_res = {0};
    rill_gen *gen = rill_gen_new(async_gen_with_cleanup, &hand_res);
    if (!gen) return -errno;
    seen = iterate_twice(gen);
    int rc = rill_gen_close(gen);
    printf("rill_gen_close -> %s; cleanups: %d\n", errname(rc), hand_res.cleanups);
    int again = rill_gen_close(gen); /* closing a finished generator: no-op */
    rill_gen_free(gen);
    printf("rill_gen_close again -> %s, rill_gen_free; cleanups: %d\n\n", errname(again),
           hand_res.cleanups);
    expect(seen == 2 && rc == 0 && again == 0 && hand_res.cleanups == 1,
           "close runs the cleanup once; a second close and the free do not repeat it");

    /* 3. No break: the loop runs to the end, the finally block runs as the
     *    body returns, and freeing the finished generator runs nothing. */
    printf("== no break: all five values ==\n");
    struct resource full_res = {0};
    gen = rill_gen_new(async_gen_with_cleanup, &full_res);
    if (!gen) return -errno;
    int *num;
    int n = 0;
    rill_foreach(num, gen) {
        printf("%d\n", *num);
        n++;
    }
    int status = rill_gen_status(gen);
    rill_gen_free(gen);
    printf("(exhausted after %d values; after rill_gen_free, cleanups: %d)\n\n", n,
           full_res.cleanups);
    expect(n == 5 && status == 0 && full_res.cleanups == 1 && full_res.ended_by == 0,
           "an exhausted generator runs its cleanup once, at its end");

    demo_verdict("after a break after two values, the cleanup ran exactly once");
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
