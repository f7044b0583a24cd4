/*
 * taskgroup_failure: a task group (asyncio.TaskGroup, a Trio nursery) in
 * which a child fails.  The group cancels its other children, waits until
 * every one of them has ended, and then reports every failure.
 *
 * The Python original:
 *
 *     try:
 *         async with asyncio.TaskGroup() as tg:
 *             tg.create_task(task1())
 *             tg.create_task(task2())
 *             tg.create_task(task3())
 *     except* ConnectionError as eg:
 *         for exc in eg.exceptions:
 *             logger.error(f"Connection error: {exc}")
 *
 * In rill a child fails by returning a negative errno.  rill_group_wait()
 * returns the first failure's status and rill_group_errors() lists them all
 * (the ExceptionGroup).  A child that ends with -ECANCELED because the group
 * cancelled it is not a failure: it did what it was asked to do.
 *
 * Usage: taskgroup_failure [--scale X]   (X multiplies every delay)
 */
#include "demo.h"

#define MAXFAIL 8 /* failures a group keeps (and reports) */



/* One child: what it should do goes in, what happened to it comes out. */
struct request {
    const char *name;  /* "fetch_user(2)" */
    double delay;      /* seconds of simulated work, before scaling */
    double at;         /* or, if > 0: an absolute deadline to work until */
    int fail;          /* 0, or the negative errno it fails with */
    /* results */
    bool finished, cancelled, cleaned_up;
};

/* A child: "fetch" something, then succeed or fail as told.  Whatever
 * happens, it releases what it holds before returning. */
static int fetch_user(void *arg) {
    struct request *r = arg;
    char *buffer = malloc(4096); /* stands for a connection, a file, ... */
    if (!buffer) return -ENOMEM;
    printf("%s: started\n", r->name);

    int rc = r->at > 0 ? rill_sleep_until(r->at) : rill_sleep(r->delay * scale);
    if (rc == -ECANCELED) {
        /* The group cancelled us because a sibling failed (asyncio raises
         * CancelledError here): clean up, then pass the cancellation on. */
        printf("%s: saw %s, cleaning up\n", r->name, errname(rc));
        r->cancelled = true;
    }
    free(buffer); /* on every path: success, failure or cancellation */
    r->cleaned_up = true;
    if (rc < 0) return rc;

    if (r->fail) {
        printf("%s: failing with %s (%s)\n", r->name, errname(r->fail),
               rill_strerror(r->fail));
        return r->fail;
    }
    r->finished = true;
    printf("%s: done\n", r->name);
    return 0;
}

/* Run reqs[0..n) as one group and print what the group reports.  Returns the
 * group's status; *nfail and fails[] receive the failures. */
static int run_group(struct request *reqs, int n, rill_failure *fails, int *nfail) {
    rill_group g;
    rill_group_init(&g);
    *nfail = 0;
    for (int i = 0; i < n; i++) {
        rill_opts o = {.name = reqs[i].name};
        int rc = rill_group_spawn_opts(&g, fetch_user, &reqs[i], &o);
        if (rc < 0) {
            rill_group_cancel(&g); /* cannot start them all: stop the others */
            rill_group_wait(&g);
            return rc;
        }
    }

    /* The body of `async with`: wait for every child.  Children never
     * outlive this call, whether they succeeded, failed or were cancelled. */
    int status = rill_group_wait(&g);
    printf("rill_group_wait returned %s (%s)\n", errname(status), rill_strerror(status));

    /* except*: every failure, in the order they happened. */
    *nfail = rill_group_errors(&g, fails, MAXFAIL);
    printf("%d failure(s):\n", *nfail);
    for (int i = 0; i < *nfail && i < MAXFAIL; i++)
        printf("  child #%d %s: %s (%s)\n", fails[i].index, reqs[fails[i].index].name,
               errname(fails[i].status), rill_strerror(fails[i].status));
    return status;
}

static int amain(void *arg) {
    (void)arg;
    rill_failure fails[MAXFAIL];
    int nfail;

    /* 1. One child fails after 0.5 s; the two slow ones (they would take a
     *    minute) are cancelled. */
    printf("== A group of three, one fails ==\n");
    struct request one[3] = {
        {.name = "fetch_user(1)", .delay = 60.0},
        {.name = "fetch_user(2)", .delay = 0.5, .fail = -EIO},
        {.name = "fetch_user(3)", .delay = 60.0},
    };
    double t0 = rill_now();
    int status = run_group(one, 3, fails, &nfail);
    double took = demo_elapsed(t0);
    printf("the group ended after %.2f s, not 60 s: the slow children stopped early\n\n",
           took);

    expect(status == -EIO && nfail == 1 && fails[0].index == 1 && fails[0].status == -EIO,
           "exactly one failure: child #1 with -EIO");
    for (int i = 0; i < 3; i += 2)
        expect(one[i].cancelled && one[i].cleaned_up && !one[i].finished,
               "the slow children are cancelled and clean up");

    /* 2. Two children fail at the same instant (both work until the same
     * absolute deadline).  Both are woken before either runs on, so when the
     * first failure cancels the group the second has already finished its
     * wait: its failure happens too, and the group reports both, as an
     * ExceptionGroup with two exceptions. */
    printf("== A group of three, two fail at the same moment ==\n");
    double at = rill_now() + 0.5 * scale;
    struct request two[3] = {
        {.name = "parse(response)", .at = at, .fail = -EBADMSG},
        {.name = "connect(db)", .at = at, .fail = -ECONNRESET},
        {.name = "fetch_orders()", .delay = 60.0},
    };
    status = run_group(two, 3, fails, &nfail);
    printf("\n");

    expect(status == -EBADMSG && nfail == 2 && fails[0].index == 0 &&
               fails[0].status == -EBADMSG && fails[1].index == 1 &&
               fails[1].status == -ECONNRESET,
           "two failures: #0 -EBADMSG, then #1 -ECONNRESET");
    expect(two[2].cancelled && two[2].cleaned_up && !two[2].finished,
           "the slow child is cancelled and cleans up");

    demo_verdict("each group cancelled the others and reported every failure");
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
