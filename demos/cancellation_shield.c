/*
 * cancellation_shield: a worker that cleans up when it is cancelled and
 * passes the cancellation on, and a "save to database" step that a shield
 * protects from being cut in half.
 *
 * The Python original:
 *
 *     async def cancellable_operation():
 *         try:
 *             while True:
 *                 await process_batch()
 *                 await asyncio.sleep(1)
 *         except asyncio.CancelledError:
 *             await cleanup()
 *             raise                       # re-raise to properly cancel
 *
 *     async def critical_operation():
 *         await asyncio.shield(save_to_database())
 *
 * In rill, rill_cancel(task) makes the task's blocking calls return
 * -ECANCELED; the task returns it (that is the "raise"), and rill_join()
 * hands it to whoever waits.  Cancellation is level-triggered, as in Trio:
 * it stays in force until the task ends, so every later blocking call
 * returns -ECANCELED too.  Work that must still block (a polite cleanup, a
 * save) runs in a shielded scope.  Unlike asyncio.shield, which lets the
 * caller move on while the shielded work continues unseen, a rill shield
 * makes the caller wait for the work to finish; the cancellation is seen at
 * the first blocking call after the shield.
 *
 * Usage: cancellation_shield [--scale X]   (X multiplies every delay)
 */
#include "demo.h"

/* ---- 1. A worker loop that cleans up and re-propagates ------------------ */

struct worker {
    int batches;     /* batches processed */
    bool cleaned_up; /* cleanup() ran to its end */
};

static int process_batch(struct worker *w) {
    printf("worker: processing batch %d\n", w->batches + 1);
    int rc = rill_sleep(0.2 * scale);
    if (rc == 0) w->batches++;
    return rc;
}

/* Cleanup that itself blocks (flush, say goodbye to the server).  The task
 * is cancelled, so a plain rill_sleep() here would return -ECANCELED at
 * once: the cleanup runs in a shielded scope, with a deadline of its own so
 * that a stuck server cannot hold the cancellation up for ever. */
static int cleanup(struct worker *w) {
    rill_scope s;
    rill_scope_enter(&s, 10.0 * scale);
    rill_scope_shield(&s, true);
    printf("worker: cleanup: flushing and closing the connection\n");
    int rc = rill_sleep(0.2 * scale);
    int ex = rill_scope_exit(&s);
    if (ex == -ETIMEDOUT) rc = ex;
    w->cleaned_up = rc == 0;
    return rc;
}

static int cancellable_operation(void *arg) {
    struct worker *w = arg;
    for (;;) {
        int rc = process_batch(w);
        if (rc == 0) rc = rill_sleep(1.0 * scale);
        if (rc == -ECANCELED) { /* except asyncio.CancelledError: */
            printf("worker: saw %s after %d batches, cleaning up\n", errname(rc),
                   w->batches);
            cleanup(w);
            printf("worker: cleanup done, returning %s\n", errname(rc));
            return rc; /* raise */
        }
        if (rc < 0) return rc;
    }
}

/* ---- 2. A save that must not be cut in half ------------------------------ */

#define ROWS 3

struct save {
    bool shield;   /* protect the save with a shielded scope? */
    int rows;      /* rows written */
    int saved;     /* what save_to_database() returned */
    int after;     /* what the first blocking call after the save returned */
};

static int save_to_database(struct save *sv) {
    printf("  save_to_database: writing %d rows\n", ROWS);
    for (int row = 1; row <= ROWS; row++) {
        int rc = rill_sleep(1.0 * scale); /* one INSERT */
        if (rc < 0) {
            printf("  save_to_database: interrupted by %s after %d of %d rows\n",
                   errname(rc), sv->rows, ROWS);
            return rc;
        }
        sv->rows++;
        printf("  save_to_database: row %d of %d written\n", row, ROWS);
    }
    return 0;
}

static int critical_operation(void *arg) {
    struct save *sv = arg;
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    /* await asyncio.shield(save_to_database()): the task's cancellation
     * does not reach the calls inside this scope. */
    if (sv->shield) rill_scope_shield(&s, true);
    sv->saved = save_to_database(sv);
    rill_scope_exit(&s);
    printf("  critical_operation: save returned %s; cancelled now: %s\n",
           errname(sv->saved), rill_cancelled() ? "yes" : "no");

    /* Past the shield, the cancellation is seen at the next blocking call. */
    sv->after = rill_sleep(1.0 * scale); /* notify listeners, say */
    printf("  critical_operation: next blocking call returned %s\n", errname(sv->after));
    return sv->after;
}

/* Start critical_operation, cancel it 1.5 s later (in the middle of row 2),
 * and join it. */
static int run_save(struct save *sv) {
    rill_task *t = rill_spawn(critical_operation, sv);
    if (!t) return -errno;
    int rc = rill_sleep(1.5 * scale);
    if (rc < 0) return rc;
    printf("  main: cancelling the task in the middle of the save\n");
    rill_cancel(t);
    return rill_join(t);
}

static int amain(void *arg) {
    (void)arg;

    printf("== A worker loop: cleanup on -ECANCELED, then re-raise ==\n");
    struct worker w = {0};
    rill_task *t = rill_spawn(cancellable_operation, &w);
    if (!t) return -errno;
    int rc = rill_sleep(1.9 * scale); /* let it process two batches */
    if (rc < 0) return rc;
    printf("main: cancelling the worker\n");
    rill_cancel(t);
    rc = rill_join(t);
    printf("main: the worker ended with %s\n\n", errname(rc));
    expect(rc == -ECANCELED && w.cleaned_up,
           "the worker cleans up, then ends with -ECANCELED");

    printf("== save_to_database without a shield, cancelled mid-save ==\n");
    struct save plain = {.shield = false};
    rc = run_save(&plain);
    printf("  main: the task ended with %s; %d of %d rows saved: half-written!\n\n",
           errname(rc), plain.rows, ROWS);
    expect(rc == -ECANCELED && plain.rows < ROWS && plain.saved == -ECANCELED,
           "the unshielded save is cut short");

    printf("== save_to_database in a shielded scope, cancelled mid-save ==\n");
    struct save shielded = {.shield = true};
    rc = run_save(&shielded);
    printf("  main: the task ended with %s; %d of %d rows saved\n\n", errname(rc),
           shielded.rows, ROWS);
    expect(rc == -ECANCELED && shielded.rows == ROWS && shielded.saved == 0,
           "the shielded save completes");
    expect(shielded.after == -ECANCELED,
           "the first blocking call after the shield sees the cancellation");

    demo_verdict("the worker cleaned up and re-raised; the shielded save completed");
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
