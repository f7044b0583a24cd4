/*
 * timeouts: asyncio.timeout, timeout_at and reschedule, as rill cancel scopes.
 *
 * A timeout is a scope with a deadline.  Once the deadline has passed,
 * every blocking call inside the scope returns -ECANCELED, so the code in it
 * unwinds the way it would on any cancellation; then rill_scope_exit()
 * returns -ETIMEDOUT, which tells that it was this scope's deadline.
 *
 *     asyncio                                  rill
 *     async with asyncio.timeout(t):           rill_scope_enter(&s, t); ...
 *     async with asyncio.timeout_at(when):     rill_scope_enter_at(&s, when); ...
 *     async with asyncio.timeout(None) as cm:  rill_scope_enter(&s, RILL_FOREVER);
 *     cm.reschedule(when)                      rill_scope_reschedule(&s, when);
 *     cm.reschedule(None)                      rill_scope_reschedule(&s, RILL_FOREVER);
 *     (leaving the block) -> TimeoutError      rill_scope_exit(&s) -> -ETIMEDOUT
 *     loop.time()                              rill_now()
 *
 * Usage: timeouts [--scale X]   (X multiplies every delay)
 */
#include "demo.h"

#define FAST_URL "https://api.example.com/fast"
#define SLOW_URL "https://api.example.com/slow"


/* A simulated request that takes `secs`; the response goes into body. */
static int fetch_data(const char *url, double secs, char *body, size_t size) {
    printf("  fetch_data('%s'): takes %g s\n", url, secs);
    int rc = rill_sleep(secs * scale);
    if (rc < 0) return rc; /* cancelled (by a deadline or otherwise) */
    snprintf(body, size, "{'url': '%s', 'status': 200}", url);
    return 0;
}

/* async with asyncio.timeout(timeout): return await fetch_data(url)
 *
 * The body sees only -ECANCELED; the scope's exit tells whether its own
 * deadline caused it.  If the cancellation came from further out (somebody
 * cancelled our task), exit returns 0 and we pass -ECANCELED on unchanged. */
static int fetch_with_timeout(const char *url, double secs, double timeout, char *body,
                              size_t size) {
    rill_scope s;
    rill_scope_enter(&s, timeout * scale);
    int rc = fetch_data(url, secs, body, size);
    int ex = rill_scope_exit(&s);
    if (rc == -ECANCELED && ex == -ETIMEDOUT) return -ETIMEDOUT; /* TimeoutError */
    return rc;
}

/* safe_fetch(url): the same request with a 1 s timeout, and a fallback. */
static const char *safe_fetch(const char *url, double secs, char *body, size_t size) {
    int rc = fetch_with_timeout(url, secs, 1.0, body, size);
    if (rc == -ETIMEDOUT) {
        printf("  warning: Timeout fetching %s\n", url);
        return NULL; /* Python's None */
    }
    return rc < 0 ? NULL : body;
}

/* process_batch(items): work through items until an absolute deadline. */
static int process_batch(int nitems, double deadline, int *processed) {
    rill_scope s;
    rill_scope_enter_at(&s, deadline); /* async with asyncio.timeout_at(deadline): */
    int rc = 0;
    for (int i = 1; i <= nitems && rc == 0; i++) {
        printf("  processing item-%d\n", i);
        rc = rill_sleep(1.0 * scale); /* await process(item) */
        if (rc == 0) (*processed)++;
        else printf("  item-%d interrupted: %s\n", i, errname(rc));
    }
    int ex = rill_scope_exit(&s);
    return rc == -ECANCELED && ex == -ETIMEDOUT ? -ETIMEDOUT : rc;
}

static int amain(void *arg) {
    (void)arg;
    char body[128];

    /* 1. asyncio.timeout(t): a request that answers in time, and one that
     *    does not.  The slow one's -ECANCELED becomes -ETIMEDOUT on exit. */
    printf("== asyncio.timeout(t): fetch_with_timeout(url, t) ==\n");
    printf("  timeout 10 s:\n");
    int rc = fetch_with_timeout(FAST_URL, 0.5, 10.0, body, sizeof body);
    printf("  -> %s\n", rc == 0 ? body : errname(rc));
    expect(rc == 0, "the fast fetch answers within its timeout");

    printf("  timeout 1 s:\n");
    double t0 = rill_now();
    rc = fetch_with_timeout(SLOW_URL, 30.0, 1.0, body, sizeof body);
    double took = demo_elapsed(t0);
    printf("  -> %s after %.2f s (asyncio raises TimeoutError)\n\n", errname(rc), took);
    expect(rc == -ETIMEDOUT && took >= 1.0, "the slow fetch times out after 1 s");

    /* 2. Timeout with a fallback (safe_fetch returns None). */
    printf("== safe_fetch(url): timeout with a fallback ==\n");
    const char *got = safe_fetch(SLOW_URL, 30.0, body, sizeof body);
    printf("  -> %s\n\n", got ? got : "None");
    expect(got == NULL, "safe_fetch of the slow url gives None");

    /* 3. asyncio.timeout_at(deadline): an absolute deadline in rill_now()
     *    time, computed once; every item eats into the same budget.  Items
     *    take 1 s and the budget is 2.5 s, so item-3 is interrupted. */
    printf("== asyncio.timeout_at(now + 2.5): process_batch(5 items) ==\n");
    int processed = 0;
    t0 = rill_now();
    rc = process_batch(5, t0 + 2.5 * scale, &processed);
    took = demo_elapsed(t0);
    printf("  -> %s after %.2f s: processed %d of 5 items before the deadline\n\n",
           errname(rc), took, processed);
    /* (A busy machine may wake us late: then fewer items fit, never more.) */
    expect(rc == -ETIMEDOUT && processed <= 2 && took >= 2.5,
           "the deadline stops the batch at 2.5 s, in the middle of item-3");

    /* 4. asyncio.timeout(None) as cm: no deadline at first; once we know how
     *    long we may take, cm.reschedule() sets one. */
    printf("== asyncio.timeout(None), then cm.reschedule(now + 1) ==\n");
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    printf("  no deadline yet\n");
    t0 = rill_now();
    rill_scope_reschedule(&s, t0 + 1.0 * scale);
    printf("  deadline set to 1 s from now\n");
    rc = rill_sleep(60.0 * scale); /* await long_operation() */
    printf("  long_operation (60 s): %s\n", errname(rc));
    rc = rill_scope_exit(&s);
    took = demo_elapsed(t0);
    printf("  -> %s after %.2f s\n\n", errname(rc), took);
    expect(rc == -ETIMEDOUT && took >= 1.0, "the rescheduled deadline fires after 1 s");

    /* 5. cm.reschedule(None): remove the deadline again.  The handshake
     *    runs under a 2 s deadline; then the deadline is lifted, and the
     *    long operation completes although it ends well past those 2 s. */
    printf("== cm.reschedule(now + 2), then cm.reschedule(None) ==\n");
    rill_scope_enter(&s, RILL_FOREVER);
    t0 = rill_now();
    rill_scope_reschedule(&s, t0 + 2.0 * scale);
    printf("  deadline set to 2 s from now\n");
    int step = rill_sleep(0.1 * scale); /* await handshake(), well within 2 s */
    printf("  handshake (0.1 s): %s\n", errname(step));
    rill_scope_reschedule(&s, RILL_FOREVER);
    printf("  deadline removed\n");
    int op = rill_sleep(3.0 * scale); /* await long_operation() */
    printf("  long_operation (3 s): %s\n", errname(op));
    rc = rill_scope_exit(&s);
    took = demo_elapsed(t0);
    printf("  -> %s after %.2f s, past the 2 s deadline that was removed\n\n",
           errname(rc), took);
    expect(step == 0 && op == 0 && rc == 0 && took >= 3.1,
           "with the deadline removed the long operation completes");

    demo_verdict("timeout, timeout_at, reschedule and reschedule(None) work");
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
