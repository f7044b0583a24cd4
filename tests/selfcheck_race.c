/* Deliberately racy: `make test` runs it under ThreadSanitizer and requires
 * the races to be reported, proving the harness would catch one in the real
 * suite, and that annotating fiber switches hides no race between a fiber
 * and a pool thread.  Never part of the counted tests. */
#include <pthread.h>

#include "helpers.h"

static int shared; /* written from two threads with nothing ordering them */

static void *writes(void *arg) {
    (void)arg;
    shared++;
    return NULL;
}

Test(selfcheck, two_threads_race) {
    pthread_t t;
    pthread_create(&t, NULL, writes, NULL);
    shared++;
    pthread_join(t, NULL);
}

static int job_writes(void *arg) {
    (void)arg;
    usleep(20000);
    shared++;
    return 0;
}

static int offloads(void *arg) {
    (void)arg;
    return rill_to_thread(job_writes, NULL);
}

/* Another fiber writes while the job runs: nothing orders the two. */
static int races_with_the_job(void *arg) {
    (void)arg;
    rill_task *t = rill_spawn(offloads, NULL);
    rill_sleep(0.002);
    shared++;
    return rill_join(t);
}

Test(selfcheck, a_fiber_races_a_pool_job) {
    rill_run(races_with_the_job, NULL);
}
