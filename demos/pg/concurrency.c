/*
 * Processing the rows of a cursor with bounded concurrency:
 *
 *     async def process_with_concurrency(generator, processor, max_concurrent=10):
 *         semaphore = asyncio.Semaphore(max_concurrent)
 *         tasks = []
 *         async def bounded_process(item):
 *             async with semaphore:
 *                 return await processor(item)
 *         async for item in generator:
 *             tasks.append(asyncio.create_task(bounded_process(item)))
 *             if len(tasks) >= max_concurrent * 2:
 *                 done, tasks = await asyncio.wait(tasks, return_when=FIRST_COMPLETED)
 *                 tasks = list(tasks)
 *         if tasks:
 *             await asyncio.gather(*tasks)
 *
 *     async def process_user(user):
 *         print(f"Processing: {user['username']}")
 *         await asyncio.sleep(0.1)
 *
 *     generator = conn.cursor('SELECT * FROM users', prefetch=100)
 *     await process_with_concurrency(generator, process_user, max_concurrent=5)
 *
 * The permit is taken before a child is spawned (so at most 5 children and
 * their stacks exist), and the children are a task group's: the group is
 * the list, the pruning and the final gather.  A row is borrowed until the
 * cursor is resumed, so each child gets a copy of its username.
 */
#include "pgdemo.h"

#define NUSERS 20
#define MAX_CONCURRENT 5
#define WORK 0.1

struct job {
    rill_sem *sem;
    int *in_flight, *peak, *done;
    char username[32];
};

/* process_user, under the permit the loop took. */
static int bounded_process(void *arg) {
    struct job *j = arg;
    if (++*j->in_flight > *j->peak) *j->peak = *j->in_flight;
    printf("Processing: %s\n", j->username);
    int rc = rill_sleep(WORK * pgd_scale());
    --*j->in_flight;
    if (rc == 0) ++*j->done;
    rill_sem_release(j->sem);
    free(j);
    return rc;
}

void example_concurrency(void) {
    printf("== process_with_concurrency(conn.cursor('SELECT * FROM users', prefetch=100), "
           "process_user, max_concurrent=%d) ==\n",
           MAX_CONCURRENT);
    rill_pg *c;
    if (pgd_connect(pgd_source, &c) < 0) return;
    if (pgd_sql(c, "CREATE TABLE users_work (id serial PRIMARY KEY, username text)") < 0 ||
        pgd_sql(c, "INSERT INTO users_work (username) "
                   "SELECT 'user_' || i FROM generate_series(1, 20) i") < 0)
        goto out;

    int in_flight = 0, peak = 0, done = 0, rc;
    double t0 = rill_now();
    {
        rill_sem sem;
        rill_sem_init(&sem, MAX_CONCURRENT);
        rill_group g;
        rill_group_init(&g);
        RILL_GEN_AUTO rill_gen *cur =
            rill_pg_cursor(c, "SELECT * FROM users_work ORDER BY id", 0, NULL, 100);
        rill_pg_row *r;
        rc = 0;
        rill_foreach(r, cur) {
            if ((rc = rill_sem_acquire(&sem)) < 0) break;
            struct job *j = malloc(sizeof *j);
            if (!j) {
                rill_sem_release(&sem);
                rc = -ENOMEM;
                break;
            }
            *j = (struct job){&sem, &in_flight, &peak, &done, ""};
            snprintf(j->username, sizeof j->username, "%s", rill_pg_get(r, 1));
            if ((rc = rill_group_spawn(&g, bounded_process, j)) < 0) {
                free(j);
                rill_sem_release(&sem);
                break;
            }
        }
        if (rc == 0) rc = rill_gen_status(cur);
        int wrc = rill_group_wait(&g);
        if (rc == 0) rc = wrc;
    }
    double took = pgd_elapsed(t0);
    printf("%d processed, at most %d at once, in %.2fs (%d / %d x %.1fs = %.2fs; one at a "
           "time: %.2fs)\n",
           done, peak, took, NUSERS, MAX_CONCURRENT, WORK, NUSERS / MAX_CONCURRENT * WORK,
           NUSERS * WORK);
    pgd_expect(rc == 0 && done == NUSERS, "every user is processed");
    pgd_expect(peak == MAX_CONCURRENT, "at most 5 users are processed at once, and 5 are");
    pgd_expect(took < NUSERS * WORK * 0.75, "bounded concurrency beats one at a time");
    pgd_sql(c, "DROP TABLE users_work");
out:
    rill_pg_close(c);
}
