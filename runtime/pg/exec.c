/* Statements: send, flush, collect the result, and bring the connection
 * back when the caller is cancelled mid-statement. */
#include <stdlib.h>
#include <string.h>

#include "pg_internal.h"

int rill__pg_flush(rill_pg *c) {
    for (;;) {
        int r = PQflush(c->conn);
        if (r == 0) return 0;
        if (r < 0) return rill__pg_lost(c);
        r = rill__pg_wait(c, RILL_READ | RILL_WRITE);
        if (r < 0) return r;
        /* The server may be waiting for us to read before it reads more. */
        if ((r & RILL_READ) && !PQconsumeInput(c->conn)) return rill__pg_lost(c);
    }
}

/* Refuse a COPY, which this module does not speak, and end it. */
static int refuse_copy(rill_pg *c, ExecStatusType st) {
    if (st == PGRES_COPY_IN || st == PGRES_COPY_BOTH) {
        if (PQputCopyEnd(c->conn, "COPY is not supported by rill_pg") < 0) return rill__pg_lost(c);
        return rill__pg_flush(c);
    }
    char *buf;
    int n;
    while ((n = PQgetCopyData(c->conn, &buf, 1)) != -1) {
        if (n == -2) return rill__pg_lost(c);
        if (n > 0) {
            PQfreemem(buf);
            continue;
        }
        int r = rill__pg_wait(c, RILL_READ);
        if (r < 0) return r;
        if (!PQconsumeInput(c->conn)) return rill__pg_lost(c);
    }
    return 0;
}

int rill__pg_result(rill_pg *c, PGresult **out) {
    *out = NULL;
    PGresult *keep = NULL;
    int err = 0;
    for (;;) {
        while (PQisBusy(c->conn)) {
            int r = rill__pg_wait(c, RILL_READ);
            if (r >= 0 && !PQconsumeInput(c->conn)) r = rill__pg_lost(c);
            if (r < 0) {
                PQclear(keep);
                return r;
            }
        }
        PGresult *res = PQgetResult(c->conn);
        if (!res) break;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC && !keep && !err) {
            keep = res; /* a sync has no NULL after it */
            break;
        }
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(res);
            int r = refuse_copy(c, st);
            if (r < 0) {
                PQclear(keep);
                return r;
            }
            if (!err) err = rill__pg_fail(c, -EIO, "COPY is not supported by rill_pg", NULL);
            continue;
        }
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_PIPELINE_ABORTED) {
            if (!err)
                err = rill__pg_fail(c, -EIO, PQresultErrorMessage(res),
                                    PQresultErrorField(res, PG_DIAG_SQLSTATE));
            PQclear(res);
            continue;
        }
        PQclear(keep);
        keep = res;
    }
    /* A FATAL error (the backend terminated, say) ends the session too. */
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        c->broken = true;
        if (!err) err = rill__pg_lost(c);
        else err = -ECONNRESET;
    }
    if (err) {
        PQclear(keep);
        return err;
    }
    *out = keep;
    return 0;
}

/* PQcancel blocks (it connects to the server): a pool job of its own. */
typedef struct cancel_job {
    PGcancel *cancel;
    char error[256];
} cancel_job;

static int cancel_run(void *arg) {
    cancel_job *j = arg;
    return PQcancel(j->cancel, j->error, sizeof j->error) ? 0 : -EIO;
}

static void cancel_free(void *arg) {
    cancel_job *j = arg;
    PQfreeCancel(j->cancel);
    free(j);
}

int rill__pg_cancel_request(rill_pg *c) {
    cancel_job *j = calloc(1, sizeof *j);
    if (!j || !(j->cancel = PQgetCancel(c->conn))) {
        free(j);
        return -ENOMEM;
    }
    /* The deadline may pass while PQcancel hangs: then the job is left to
     * finish on its own, and frees itself. */
    int r = rill_to_thread_detached(cancel_run, j, cancel_free);
    if (r != -ECANCELED) cancel_free(j);
    return r;
}

/* Read every pending result; in pipeline mode, sync and leave it. */
static int drain(rill_pg *c) {
    if (PQpipelineStatus(c->conn) != PQ_PIPELINE_OFF) {
        if (!PQpipelineSync(c->conn)) return rill__pg_lost(c);
        int r = rill__pg_flush(c);
        if (r < 0) return r;
    }
    for (int empty = 0; empty < 3;) {
        PGresult *res;
        int r = rill__pg_result(c, &res);
        if (r < 0 && r != -EIO) return r;
        if (res || r == -EIO) {
            PQclear(res);
            empty = 0;
            continue;
        }
        if (PQpipelineStatus(c->conn) == PQ_PIPELINE_OFF || PQexitPipelineMode(c->conn)) return 0;
        empty++;
    }
    return -EPROTO; /* results that never end: give the connection up */
}

int rill__pg_cancel(rill_pg *c) {
    if (!c->conn || c->broken) return -ECONNRESET;
    rill_scope s;
    rill_scope_enter(&s, RILL__PG_CLEANUP_S);
    rill_scope_shield(&s, true);
    int r = rill__pg_flush(c);
    if (r == 0 && PQtransactionStatus(c->conn) == PQTRANS_ACTIVE) r = rill__pg_cancel_request(c);
    if (r == 0) r = drain(c);
    rill_scope_exit(&s);
    if (r < 0) {
        /* Not brought back in time: never hand out a connection mid-protocol. */
        PQfinish(c->conn);
        c->conn = NULL;
        c->broken = true;
    }
    rill__pg_fail(c, 0, "canceled", NULL);
    return r < 0 ? -ECONNRESET : 0;
}

long rill__pg_query(rill_pg *c, const char *sql, int nparams, const char *const *params,
                    PGresult **out) {
    PGresult *res = NULL;
    int r = 0;
    if (!PQsendQueryParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0))
        r = PQstatus(c->conn) == CONNECTION_BAD ? rill__pg_lost(c)
                                                : rill__pg_fail(c, -EIO, PQerrorMessage(c->conn), NULL);
    if (r == 0) r = rill__pg_flush(c);
    if (r == 0) r = rill__pg_result(c, &res);
    if (r == -ECANCELED) {
        rill__pg_cancel(c);
        return -ECANCELED;
    }
    if (r < 0) return r;
    long n = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : atol(PQcmdTuples(res));
    if (out) *out = res;
    else PQclear(res);
    return n;
}

long rill_pg_exec(rill_pg *c, const char *sql, int nparams, const char *const *params,
                           PGresult **out) {
    if (out) *out = NULL;
    if (c && (!sql || nparams < 0 || nparams > 65535 || (nparams > 0 && !params)))
        return rill__pg_fail(c, -EINVAL, "invalid argument", NULL);
    int r = rill__pg_check(c);
    if (r < 0) return r;
    c->busy = true;
    long n = rill__pg_query(c, sql, nparams, params, out);
    c->busy = false;
    return n;
}

static int simple(rill_pg *c, const char *sql) {
    long r = rill_pg_exec(c, sql, 0, NULL, NULL);
    return r < 0 ? (int)r : 0;
}

int rill_pg_begin(rill_pg *c) { return simple(c, "BEGIN"); }
int rill_pg_rollback(rill_pg *c) { return simple(c, "ROLLBACK"); }

int rill_pg_commit(rill_pg *c) {
    PGresult *res;
    long r = rill_pg_exec(c, "COMMIT", 0, NULL, &res);
    if (r < 0) return (int)r;
    /* The server answers a COMMIT of a failed transaction with ROLLBACK. */
    bool rolled_back = !strcmp(PQcmdStatus(res), "ROLLBACK");
    PQclear(res);
    if (rolled_back)
        return rill__pg_fail(c, -EIO, "COMMIT rolled back: the transaction had failed", "25P02");
    return 0;
}
