/*
 * bounded_concurrency: process the items of a generator with at most 5
 * handlers running at once, limited by a semaphore, as the tutorial's
 * process_with_concurrency does for the rows of a database cursor.  50
 * users at 0.1 s each take 50 / 5 x 0.1 = 1 s, not 5 s.
 *
 * The Python original:
 *
 *     async def process_with_concurrency(generator, processor,
 *                                        max_concurrent=10):
 *         semaphore = asyncio.Semaphore(max_concurrent)
 *         tasks = []
 *
 *         async def bounded_process(item):
 *             async with semaphore:
 *                 return await processor(item)
 *
 *         async for item in generator:
 *             task = asyncio.create_task(bounded_process(item))
 *             tasks.append(task)
 *             if len(tasks) >= max_concurrent * 2:   # prune finished tasks
 *                 done, tasks = await asyncio.wait(
 *                     tasks, return_when=asyncio.FIRST_COMPLETED)
 *                 tasks = list(tasks)
 *         if tasks:
 *             await asyncio.gather(*tasks)
 *
 *     async def process_user(user):
 *         print(f"Processing: {user['username']}")
 *         await asyncio.sleep(0.1)                   # simulated work
 *
 *     generator = conn.cursor('SELECT * FROM users', prefetch=100)
 *     await process_with_concurrency(generator, process_user, max_concurrent=5)
 *
 * Here the permit is taken before the task is spawned, not inside it: the
 * loop then reads the generator only as fast as permits come back, and at
 * most 5 tasks (5 stacks) exist at a time, however long the stream.  The
 * tasks are children of a rill_group, the `async with TaskGroup()` that
 * replaces the list, the pruning and the final gather: a child is freed as
 * it ends, and rill_group_wait returns once the last one has.  Each child
 * gives its permit back when it ends, however it ends: that is what
 * `async with semaphore` does on the way out.
 *
 * Part 2 runs the same thing under a 0.25 s timeout (asyncio.timeout): the
 * acquire in the loop and the children's sleeps are cancelled, and once the
 * group has ended every permit is free again.
 *
 * Usage: bounded_concurrency [--scale X]   (X multiplies every delay)
 */
#include "demo.h"

#define NUSERS 50
#define MAX_CONCURRENT 5
#define WORK 0.1      /* seconds per user, before scaling */
#define TIMEOUT 0.25  /* part 2's deadline, before scaling */

struct user {
    int id;
    char username[24];
};

/* The cursor: SELECT * FROM users, one row at a time. */
static int fetch_users(rill_gen *g, void *arg) {
    (void)arg;
    struct user u;
    for (int i = 0; i < NUSERS; i++) {
        u.id = i + 1;
        snprintf(u.username, sizeof u.username, "user_%d", u.id);
        int rc = rill_yield(g, &u);
        if (rc < 0) return rc;
    }
    return 0;
}

/* ---- process_with_concurrency ----------------------------------------------- */

typedef int processor_fn(const void *item);

/* What process_with_concurrency reports, for the prints and the checks. */
struct stats {
    int max_concurrent;
    int started;         /* children spawned */
    int in_flight, peak; /* children running now, and at most */
    int done, cancelled; /* processed, or cancelled while processing */
    int permits_back;    /* permits free once the group has ended */
};

/* One child: its item is copied, since the generator's value is only
 * borrowed until the loop resumes it. */
struct job {
    rill_sem *sem;
    struct stats *st;
    processor_fn *processor;
    max_align_t item[]; /* item_size bytes */
};

/* bounded_process(item): the permit was taken by the loop; give it back
 * when this ends, whatever processor returned. */
static int bounded_process(void *arg) {
    struct job *job = arg;
    struct stats *st = job->st;
    if (++st->in_flight > st->peak) st->peak = st->in_flight;
    int rc = job->processor(job->item);
    st->in_flight--;
    if (rc == 0) st->done++;
    if (rc == -ECANCELED) st->cancelled++;
    rill_sem_release(job->sem);
    free(job);
    return rc;
}

/* Run processor on each item of gen (each item_size bytes), at most
 * max_concurrent at a time.  Returns 0, or the first error: a processor's,
 * the generator's, -ECANCELED if the caller was cancelled. */
static int process_with_concurrency(rill_gen *gen, size_t item_size, processor_fn *processor,
                                    int max_concurrent, struct stats *st) {
    rill_sem sem;
    rill_sem_init(&sem, (unsigned)max_concurrent);
    *st = (struct stats){.max_concurrent = max_concurrent};
    rill_group g;
    rill_group_init(&g);
    int rc = 0;
    void *item;
    rill_foreach(item, gen) {
        /* A permit before the task, and before the next row: the cursor
         * is read at the pace permits come back (backpressure). */
        if ((rc = rill_sem_acquire(&sem)) < 0) break;
        struct job *job = malloc(sizeof *job + item_size);
        if (!job) {
            rill_sem_release(&sem);
            rc = -ENOMEM;
            break;
        }
        *job = (struct job){&sem, st, processor};
        memcpy(job->item, item, item_size);
        if ((rc = rill_group_spawn(&g, bounded_process, job)) < 0) {
            rill_sem_release(&sem);
            free(job);
            break;
        }
        st->started++;
    }
    if (rc == 0) rc = rill_gen_status(gen);
    /* Cancelled, the wait cancels the children, and still waits for them. */
    int wrc = rill_group_wait(&g);
    if (wrc < 0) rc = wrc;
    /* Every child has ended: all the permits must be free again. */
    while (st->permits_back <= max_concurrent && rill_sem_try_acquire(&sem)) st->permits_back++;
    return rc;
}

/* process_user(user) */
static int process_user(const void *item) {
    const struct user *u = item;
    printf("Processing: %s\n", u->username);
    return rill_sleep(WORK * scale); /* simulated work */
}

static void report(const struct stats *st) {
    printf("%d started, at most %d in flight; %d processed, %d cancelled while processing; "
           "permits free afterwards: %d of %d\n",
           st->started, st->peak, st->done, st->cancelled, st->permits_back,
           st->max_concurrent);
}

/* ---- Part 1: the whole stream ---------------------------------------------------- */

static int process_all(void) {
    printf("== process_with_concurrency(cursor, process_user, max_concurrent=%d) ==\n",
           MAX_CONCURRENT);
    RILL_GEN_AUTO rill_gen *cursor = rill_gen_new(fetch_users, NULL);
    if (!cursor) return -errno;
    struct stats st;
    double start = rill_now();
    int rc = process_with_concurrency(cursor, sizeof(struct user), process_user,
                                      MAX_CONCURRENT, &st);
    double took = demo_elapsed(start);
    report(&st);
    double ideal = (double)NUSERS / MAX_CONCURRENT * WORK;
    printf("Total time: %.2fs (%d / %d x %.1fs = %.2fs; one at a time: %.2fs)\n\n", took,
           NUSERS, MAX_CONCURRENT, WORK, ideal, NUSERS * WORK);
    expect(rc == 0 && st.done == NUSERS, "every user is processed");
    expect(st.peak <= MAX_CONCURRENT, "never more than 5 in flight");
    expect(st.peak == MAX_CONCURRENT, "5 in flight at the busiest");
    expect(st.in_flight == 0 && st.permits_back == MAX_CONCURRENT,
           "all 5 permits are free again at the end, none leaked");
    expect(took >= ideal, "it takes at least 50 / 5 x 0.1 s = 1 s");
    expect(took < 2 * ideal, "and well under 5 s one at a time (less than 2 s)");
    return rc;
}

/* ---- Part 2: under a timeout ------------------------------------------------------ */

static int process_with_timeout(void) {
    printf("== async with asyncio.timeout(%.2f): process_with_concurrency(...) ==\n", TIMEOUT);
    RILL_GEN_AUTO rill_gen *cursor = rill_gen_new(fetch_users, NULL);
    if (!cursor) return -errno;
    struct stats st;
    rill_scope deadline;
    rill_scope_enter(&deadline, TIMEOUT * scale);
    int rc = process_with_concurrency(cursor, sizeof(struct user), process_user,
                                      MAX_CONCURRENT, &st);
    int how = rill_scope_exit(&deadline);
    printf("process_with_concurrency returned %s; the timeout scope %s\n", errname(rc),
           errname(how));
    report(&st);
    printf("\n");
    expect(rc == -ECANCELED && how == -ETIMEDOUT, "the timeout cancels the processing");
    expect(st.started < NUSERS, "the timeout stops the loop: the last users never start");
    expect(st.done + st.cancelled == st.started,
           "every user started is either processed or cancelled while processing");
    expect(st.peak <= MAX_CONCURRENT, "never more than 5 in flight");
    expect(st.in_flight == 0 && st.permits_back == MAX_CONCURRENT,
           "after the cancellation all 5 permits are free again, none leaked");
    return 0;
}

static int amain(void *arg) {
    (void)arg;
    int rc = process_all();
    if (rc < 0) return rc;
    rc = process_with_timeout();
    if (rc < 0) return rc;
    demo_verdict("%d users, at most %d at a time, in about %.0f s instead of %.0f s; no "
                 "permit lost to the timeout",
                 NUSERS, MAX_CONCURRENT, NUSERS / MAX_CONCURRENT * WORK, NUSERS * WORK);
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
