/*
 * countdown: an async generator that produces the numbers 0 to 4, one per
 * second, and an `async for` loop that prints them as they come.
 *
 * The Python original:
 *
 *     async def async_number_generator():
 *         for i in range(5):
 *             await asyncio.sleep(1)  # simulate a delay
 *             yield i                 # hand out a value
 *
 *     async def main():
 *         async for number in async_number_generator():
 *             print(number)           # handle each value as it arrives
 *
 *     asyncio.run(main())
 *
 * In rill the generator is a body function with a stack of its own.
 * rill_yield() hands a pointer to the consumer and suspends the body;
 * rill_foreach() (async for) resumes it for each value.  The pointer is
 * borrowed: here it points at the body's loop variable, which stays valid
 * until the consumer asks for the next value.  While the body sleeps, only
 * it and its consumer wait: every other fiber keeps running.
 *
 * Usage: countdown [--scale X]   (X multiplies every delay)
 */
#include "demo.h"

#define COUNT 5
#define DELAY 1.0 /* seconds between values, before scaling */

/* async_number_generator(): a blocking call inside a generator is fine. */
static int async_number_generator(rill_gen *g, void *arg) {
    (void)arg;
    for (int i = 0; i < COUNT; i++) {
        int rc = rill_sleep(DELAY * scale); /* await asyncio.sleep(1) */
        if (rc < 0) return rc;              /* cancelled: the consumer gets rc */
        rc = rill_yield(g, &i);             /* yield i */
        if (rc < 0) return rc;              /* closed early (-EPIPE): just stop */
    }
    return 0; /* exhausted: the consumer's loop ends */
}

static int amain(void *arg) {
    (void)arg;
    /* RILL_GEN_AUTO frees the generator when `numbers` goes out of scope. */
    RILL_GEN_AUTO rill_gen *numbers = rill_gen_new(async_number_generator, NULL);
    if (!numbers) return -errno;

    int seen[COUNT], n = 0;
    double gap_min = INFINITY;
    double t0 = rill_now(), last = t0;

    int *number;
    rill_foreach(number, numbers) { /* async for number in ...: */
        printf("%d\n", *number);
        double now = rill_now();
        if ((now - last) / scale < gap_min) gap_min = (now - last) / scale;
        last = now;
        if (n < COUNT) seen[n] = *number;
        n++;
    }
    double took = demo_elapsed(t0);

    /* The loop ends both when the generator is exhausted and when it fails:
     * rill_gen_status() tells which (0: exhausted). */
    int status = rill_gen_status(numbers);
    printf("\n%d values in %.2f s, at least %.2f s apart; the generator %s\n", n, took,
           gap_min, status == 0 ? "is exhausted" : errname(status));

    bool in_order = n == COUNT;
    for (int i = 0; in_order && i < COUNT; i++) in_order = seen[i] == i;
    expect(in_order, "the generator yields 0, 1, 2, 3, 4 in order");
    expect(status == 0, "the generator ends by being exhausted, not by an error");
    expect(gap_min >= DELAY, "each value comes at least 1 s after the previous one");
    demo_verdict("async for printed 0..4, one value per second");
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
