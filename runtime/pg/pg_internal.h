/* The pg module's internals, shared by its files (conn.c, exec.c, pool.c,
 * cursor.c, listen.c, many.c).  The module is written against rill.h
 * alone: it waits only with rill_wait_fd, offloads blocking work with
 * rill_to_thread(_detached), and shields its clean-up with a scope.
 *
 * Every helper that talks to the server returns 0 (or a count) or a
 * negative errno and records the error on the connection (rill__pg_fail):
 * -EIO a server error (message and SQLSTATE kept), -ECONNRESET the
 * connection is lost (c->broken set), -ECANCELED the caller is cancelled. */
#ifndef RILL_PG_INTERNAL_H
#define RILL_PG_INTERNAL_H

#include <stdbool.h>

#include "rill/pg.h"

/* How long the clean-up after a cancellation (flush, cancel request,
 * drain, ROLLBACK) may take before the connection is given up. */
#define RILL__PG_CLEANUP_S 5.0

struct rill_pg {
    PGconn *conn;      /* NULL once given up (then broken is set) */
    char *error;       /* malloc'd copy of the last message, or NULL ("") */
    char sqlstate[6];  /* the last server error's SQLSTATE, or "" */
    bool busy;         /* a call or an open cursor is using the connection */
    bool broken;       /* lost or given up: every call returns -ECONNRESET */
    int gens;          /* cursor and pages generators on c not yet freed */
    bool idle;         /* on a pool's idle list: the pool's, not the caller's */
    rill_pg *next;     /* the pool's idle list (pool.c) */
    rill_pg_pool *pool; /* the pool that opened c, or NULL */
};

/* Record err's message (copied; NULL: "") and SQLSTATE (NULL: "") on c and
 * return err, so that `return rill__pg_fail(c, -EIO, msg, state);` reads. */
int rill__pg_fail(rill_pg *c, int err, const char *msg, const char *sqlstate);

/* c's connection is lost: mark it broken, record libpq's message, and
 * return -ECONNRESET. */
int rill__pg_lost(rill_pg *c);

/* Start a call on c: 0, or -EINVAL (c NULL), -EPERM outside a fiber,
 * -EBUSY (another call or an open cursor uses c), -ECONNRESET (broken),
 * -ECANCELED (the caller is cancelled already: nothing is sent).  Clears
 * the last error.  Does not mark c busy: callers that yield do. */
int rill__pg_check(rill_pg *c);

/* Wait until c's socket is ready for events (RILL_READ, RILL_WRITE).
 * Returns the ready bits, -ECONNRESET if the socket is gone, -ECANCELED,
 * or rill_wait_fd's other errors. */
int rill__pg_wait(rill_pg *c, int events);

/* Send what libpq has buffered (PQflush), waiting for the socket; reads
 * input meanwhile so that the server never stalls on a full pipe.  0 or
 * -ECONNRESET, -ECANCELED (the rest is still buffered). */
int rill__pg_flush(rill_pg *c);

/* Collect the next statement's result without blocking the loop: waits
 * while PQisBusy, then reads PQgetResult up to the statement's end (its
 * NULL; a pipeline's PGRES_PIPELINE_SYNC stands alone) and keeps the last
 * result.  Returns 0 with *out the result (the caller PQclears it), or
 * with *out NULL when no statement was pending; -EIO after a server error
 * (recorded: message, SQLSTATE; *out NULL, the statement's results read
 * to its end); -ECONNRESET; -ECANCELED (nothing read further: call
 * rill__pg_cancel).  A COPY is refused (-EIO) and ended. */
int rill__pg_result(rill_pg *c, PGresult **out);

/* Bring c back after its caller was cancelled mid-statement: finish
 * sending, ask the server to cancel the running statement (PQcancel, on
 * the thread pool), and read every pending result, leaving pipeline mode.
 * Runs in a shielded scope with a RILL__PG_CLEANUP_S deadline; if that
 * fails, the connection is closed and c marked broken.  Records
 * "canceled" on c.  Returns 0 (c usable) or -ECONNRESET (c broken). */
int rill__pg_cancel(rill_pg *c);

/* Ask the server to cancel what c's session runs now (PQcancel, on the
 * thread pool), and nothing more: the results are the caller's to read
 * (a pipeline that must learn whether its COMMIT ran).  Returns 0 once
 * the request is delivered, -EIO if PQcancel failed, -ENOMEM, -ECANCELED
 * (the job is left to finish on its own). */
int rill__pg_cancel_request(rill_pg *c);

/* Send sql with its parameters, and collect its result (rill__pg_result);
 * on -ECANCELED, rill__pg_cancel.  No rill__pg_check: for callers that
 * hold c already (cursors).  Returns as rill_pg_exec. */
long rill__pg_query(rill_pg *c, const char *sql, int nparams, const char *const *params,
                    PGresult **out);

#endif
