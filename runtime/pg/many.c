/* rill_pg_exec_many: one statement for many parameter sets in libpq's
 * pipeline mode: BEGIN, the statement prepared once (unnamed), each set,
 * COMMIT, then a sync, all sent before the first result is awaited: one
 * round trip, all or nothing.  After an error the server skips the rest up
 * to the sync, the COMMIT too, and a ROLLBACK ends the failed transaction.
 *
 * Sending never blocks the loop: the connection is non-blocking, and every
 * FLUSH_EVERY sets what libpq has buffered is flushed, waiting on the
 * socket, while the results already there are read: the server, whose
 * answers would otherwise fill the socket while we fill the other one,
 * never stalls, and neither buffer grows with nrows. */
#include <stdlib.h>
#include <string.h>

#include "pg_internal.h"

#define FLUSH_EVERY 64

/* Statements are numbered as sent: 0 BEGIN, 1 the PREPARE, 2 .. nrows + 1
 * the sets, nrows + 2 COMMIT (or the ROLLBACK sent in its place when the
 * pipeline is abandoned), nrows + 3 the sync. */
typedef struct pipeline {
    rill_pg *c;
    int nrows;
    int sent, read;   /* statements sent, and those whose results are read */
    bool synced;      /* the COMMIT (or ROLLBACK) and the sync are sent */
    bool committed;   /* the COMMIT's result is COMMIT: everything is kept */
    long affected;    /* the sets' row counts, summed */
    int err;          /* the first error: its message and SQLSTATE below */
    char *msg;
    char state[6];
} pipeline;

/* Keep the first error, which the results after it would overwrite. */
static void keep_error(pipeline *p, int err) {
    if (p->err) return;
    p->err = err;
    p->msg = p->c->error ? strdup(p->c->error) : NULL;
    memcpy(p->state, p->c->sqlstate, sizeof p->state);
}

/* A PQsend* call's outcome: 0, or the error (recorded). */
static int sent(pipeline *p, int ok) {
    if (ok) {
        p->sent++;
        return 0;
    }
    PGconn *pc = p->c->conn;
    int err = PQstatus(pc) == CONNECTION_BAD ? rill__pg_lost(p->c)
                                             : rill__pg_fail(p->c, -EIO, PQerrorMessage(pc), NULL);
    keep_error(p, err);
    return err;
}

/* Read the results of the statements sent: those already there (block
 * false: without waiting), or all of them.  Returns 0, -ECONNRESET,
 * -ECANCELED (a result may be half read: rill__pg_cancel brings the
 * connection back). */
static int collect(pipeline *p, bool block) {
    PGconn *pc = p->c->conn;
    while (p->read < p->sent) {
        if (!block && PQisBusy(pc)) {
            if (!PQconsumeInput(pc)) return rill__pg_lost(p->c);
            if (PQisBusy(pc)) return 0;
        }
        PGresult *res;
        int r = rill__pg_result(p->c, &res);
        if (r == -EIO) keep_error(p, r);
        else if (r < 0) return r;
        else if (!res) return -EPROTO; /* fewer results than statements: give up */
        int i = p->read++;
        if (r == 0 && i >= 2 && i < p->nrows + 2) p->affected += atol(PQcmdTuples(res));
        if (r == 0 && i == p->nrows + 2) p->committed = !strcmp(PQcmdStatus(res), "COMMIT");
        PQclear(res);
    }
    return 0;
}

/* End the pipeline: sent is the statement that ends the transaction
 * (COMMIT, or ROLLBACK to abandon it), then the sync. */
static int sync_with(pipeline *p, const char *end) {
    int r = sent(p, PQsendQueryParams(p->c->conn, end, 0, NULL, NULL, NULL, NULL, 0));
    if (r == 0) {
        p->synced = true;
        r = sent(p, PQpipelineSync(p->c->conn));
    }
    return r;
}

/* Everything sent, then every result read.  Returns 0 (p tells what the
 * server said), or the error that stopped it half way. */
static int run(pipeline *p, const char *sql, int nparams, const char *const *params) {
    PGconn *pc = p->c->conn;
    int r = sent(p, PQsendQueryParams(pc, "BEGIN", 0, NULL, NULL, NULL, NULL, 0));
    if (r == 0) r = sent(p, PQsendPrepare(pc, "", sql, nparams, NULL));
    for (int i = 0; r == 0 && i < p->nrows; i++) {
        const char *const *set = nparams ? params + (size_t)i * (size_t)nparams : NULL;
        r = sent(p, PQsendQueryPrepared(pc, "", nparams, set, NULL, NULL, 0));
        if (r == 0 && i % FLUSH_EVERY == FLUSH_EVERY - 1) {
            r = rill__pg_flush(p->c);
            if (r == 0) r = collect(p, false);
        }
    }
    if (r == 0) r = sync_with(p, "COMMIT");
    if (r == 0) r = rill__pg_flush(p->c);
    if (r == 0) r = collect(p, true);
    return r;
}

/* After a cancellation (or a local failure) half way: stop the statement
 * running on the server (the rest up to the sync is then skipped), end the
 * pipeline with a ROLLBACK if its COMMIT was not sent yet, read every
 * result, leave pipeline mode and the transaction.  Shielded, within
 * RILL__PG_CLEANUP_S; if that fails, rill__pg_cancel's last resort (the
 * connection brought back or closed).  Returns 0 when the pipeline was
 * read to its end: p->committed then tells whether the COMMIT ran first. */
static int recover(pipeline *p, bool cancel_server) {
    rill_pg *c = p->c;
    rill_scope s;
    rill_scope_enter(&s, RILL__PG_CLEANUP_S);
    rill_scope_shield(&s, true);
    int r = 0;
    /* Before the rest is flushed: while it has input queued, the server
     * is busy with a statement, which the request then cancels. */
    if (cancel_server) (void)rill__pg_cancel_request(c);
    if (!p->synced) r = sync_with(p, "ROLLBACK");
    if (r == 0) r = rill__pg_flush(c);
    if (r == 0) r = collect(p, true);
    rill_scope_exit(&s);
    if (r < 0 && r != -ECONNRESET) r = rill__pg_cancel(c);
    return r;
}

static long exec_many(pipeline *p, const char *sql, int nparams, const char *const *params) {
    rill_pg *c = p->c;
    if (!PQenterPipelineMode(c->conn)) return rill__pg_fail(c, -EIO, PQerrorMessage(c->conn), NULL);
    int r = run(p, sql, nparams, params);
    bool cancelled = r == -ECANCELED;
    if (r < 0 && r != -ECONNRESET && recover(p, cancelled) < 0) r = -ECONNRESET;
    if (r == -ECONNRESET && !cancelled) return r;
    /* Read to the end: leave pipeline mode, and the failed transaction. */
    if (c->conn && PQpipelineStatus(c->conn) != PQ_PIPELINE_OFF && !PQexitPipelineMode(c->conn))
        return rill__pg_lost(c);
    if (c->conn && !c->broken && PQtransactionStatus(c->conn) != PQTRANS_IDLE) {
        rill_scope s;
        rill_scope_enter(&s, RILL__PG_CLEANUP_S);
        rill_scope_shield(&s, true);
        long rb = rill__pg_query(c, "ROLLBACK", 0, NULL, NULL);
        rill_scope_exit(&s);
        if (rb < 0 && !cancelled && !p->err) return rb;
    }
    if (cancelled) {
        /* The COMMIT ran before the cancellation took: it all happened. */
        if (p->committed && !p->err) return p->affected;
        return rill__pg_fail(c, -ECANCELED, "canceled", NULL);
    }
    if (p->err) return rill__pg_fail(c, p->err, p->msg, p->state);
    if (!p->committed) return rill__pg_fail(c, -EIO, "COMMIT did not commit", NULL);
    return p->affected;
}

long rill_pg_exec_many(rill_pg *c, const char *sql, int nparams, int nrows,
                       const char *const *params) {
    if (c && (!sql || nparams < 0 || nparams > 65535 || nrows < 0 ||
              (!params && nparams > 0 && nrows > 0)))
        return rill__pg_fail(c, -EINVAL, "invalid argument", NULL);
    if (c && nrows == 0) return 0;
    int r = rill__pg_check(c);
    if (r < 0) return r;
    if (PQtransactionStatus(c->conn) != PQTRANS_IDLE)
        return rill__pg_fail(c, -EINVAL, "rill_pg_exec_many: the connection is in a transaction",
                             NULL);
    c->busy = true;
    pipeline p = {.c = c, .nrows = nrows};
    long n = exec_many(&p, sql, nparams, params);
    free(p.msg);
    c->busy = false;
    return n;
}
