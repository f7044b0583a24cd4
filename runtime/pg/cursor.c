/* rill_pg_cursor: a generator that owns a server-side cursor and the
 * transaction it lives in, from BEGIN to COMMIT, fetching prefetch rows at
 * a time: memory holds one fetch whatever the size of the result.  Its
 * clean-up (CLOSE and COMMIT, or ROLLBACK after an error) runs shielded,
 * with a deadline of its own, so a consumer that is cancelled, or that
 * closes the generator early, still gets its connection back out of any
 * transaction. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_gen.h"

#define DEFAULT_PREFETCH 100

typedef struct cursor {
    rill_pg *c;
    char *declare;    /* DECLARE rill_cur_N NO SCROLL CURSOR FOR sql */
    char fetch[64];   /* FETCH prefetch FROM rill_cur_N */
    char close[40];   /* CLOSE rill_cur_N */
    char **params;    /* copied: the body runs after rill_pg_cursor returns */
    int nparams, prefetch;
    PGresult *res;    /* the fetch whose rows are being yielded */
    rill_pg_row *rows; /* views of res's rows, yielded as one batch */
} cursor;

/* Names the cursors: unique in the process, hence on every connection. */
static atomic_uint cursors;

static void cursor_free(void *arg) {
    cursor *cu = arg;
    cu->c->gens--;
    PQclear(cu->res);
    free(cu->rows);
    free(cu->declare);
    free(cu->params);
    free(cu);
}

/* Run sql on c unless it is lost: 0 or rill__pg_query's error. */
static int run(rill_pg *c, const char *sql) {
    if (c->broken || !c->conn) return -ECONNRESET;
    long r = rill__pg_query(c, sql, 0, NULL, NULL);
    return r < 0 ? (int)r : 0;
}

/* End the transaction: after the rows (rc 0, all read; -EPIPE, closed
 * early) CLOSE the cursor and COMMIT; after an error (rc < 0 otherwise),
 * or if that fails, ROLLBACK.  Shielded from the consumer's cancellation,
 * within RILL__PG_CLEANUP_S.  The error that ended the body stays the one
 * recorded on c.  Returns rc, or the clean-up's error when rc is 0 or
 * -EPIPE (rill_gen_close reports it). */
static int finish(cursor *cu, int rc) {
    rill_pg *c = cu->c;
    if (c->broken || !c->conn) return rc == 0 || rc == -EPIPE ? -ECONNRESET : rc;
    bool clean = rc == 0 || rc == -EPIPE;
    char *msg = NULL, state[sizeof c->sqlstate];
    if (!clean) {
        msg = c->error ? strdup(c->error) : NULL;
        memcpy(state, c->sqlstate, sizeof state);
    }
    rill_scope s;
    rill_scope_enter(&s, RILL__PG_CLEANUP_S);
    rill_scope_shield(&s, true);
    int r = 0;
    if (clean && PQtransactionStatus(c->conn) == PQTRANS_INTRANS) {
        r = run(c, cu->close);
        if (r == 0) r = run(c, "COMMIT");
    }
    if (c->conn && !c->broken && PQtransactionStatus(c->conn) != PQTRANS_IDLE) {
        int rb = run(c, "ROLLBACK");
        if (r == 0) r = rb;
    }
    rill_scope_exit(&s);
    if (!clean) {
        rill__pg_fail(c, rc, msg, state);
        free(msg);
        return rc;
    }
    return r < 0 ? r : rc;
}

/* BEGIN, DECLARE, then FETCH and yield until a fetch comes back short. */
static int cursor_run(rill_gen *g, cursor *cu) {
    rill_pg *c = cu->c;
    int rc = rill__pg_check(c);
    if (rc < 0) return rc;
    if (PQtransactionStatus(c->conn) != PQTRANS_IDLE)
        return rill__pg_fail(c, -EINVAL, "rill_pg_cursor: the connection is in a transaction", NULL);
    c->busy = true;
    rc = run(c, "BEGIN");
    if (rc == 0) {
        long r = rill__pg_query(c, cu->declare, cu->nparams, (const char *const *)cu->params, NULL);
        rc = r < 0 ? (int)r : 0;
    }
    while (rc == 0) {
        long got = rill__pg_query(c, cu->fetch, 0, NULL, &cu->res);
        if (got < 0) {
            rc = (int)got;
            break;
        }
        /* One batch: the consumer takes the rows without a switch each. */
        for (int i = 0; i < got; i++) cu->rows[i] = (rill_pg_row){cu->res, i};
        rc = rill_yield_from(g, cu->rows, (size_t)got, sizeof *cu->rows);
        PQclear(cu->res);
        cu->res = NULL;
        if (got < cu->prefetch) break; /* the last fetch */
    }
    rc = finish(cu, rc);
    c->busy = false;
    return rc;
}

static int cursor_body(rill_gen *g, void *arg) {
    cursor *cu = arg;
    int rc = rill__pg_gen_primed(g);
    if (rc == 0) rc = cursor_run(g, cu);
    cursor_free(cu);
    return rc;
}

rill_gen *rill_pg_cursor(rill_pg *c, const char *sql, int nparams, const char *const *params,
                         int prefetch) {
    if (!c || !sql || nparams < 0 || nparams > 65535 || (nparams > 0 && !params)) {
        errno = EINVAL;
        return NULL;
    }
    if (prefetch <= 0) prefetch = DEFAULT_PREFETCH;
    cursor *cu = calloc(1, sizeof *cu);
    if (!cu) return NULL;
    unsigned id = atomic_fetch_add(&cursors, 1) + 1;
    size_t len = rill__pg_sql_len(sql);
    char head[64];
    int hn = snprintf(head, sizeof head, "DECLARE rill_cur_%u NO SCROLL CURSOR FOR ", id);
    cu->c = c;
    c->gens++; /* until cursor_free: c cannot be closed under it */
    cu->nparams = nparams;
    cu->prefetch = prefetch;
    snprintf(cu->fetch, sizeof cu->fetch, "FETCH %d FROM rill_cur_%u", prefetch, id);
    snprintf(cu->close, sizeof cu->close, "CLOSE rill_cur_%u", id);
    cu->declare = malloc((size_t)hn + len + 1);
    cu->params = rill__pg_params_copy(nparams, params, 0);
    cu->rows = calloc((size_t)prefetch, sizeof *cu->rows);
    if (!cu->declare || !cu->params || !cu->rows) {
        cursor_free(cu);
        errno = ENOMEM;
        return NULL;
    }
    memcpy(cu->declare, head, (size_t)hn);
    memcpy(cu->declare + hn, sql, len);
    cu->declare[(size_t)hn + len] = 0;
    return rill__pg_gen_start(cursor_body, cu, "pg_cursor", cursor_free);
}
