/*
 * Errors in a generator, and its cleanup:
 *
 *     async def safe_generator(pool):
 *         async with pool.acquire() as conn:
 *             try:
 *                 async with conn.transaction():
 *                     async for record in conn.cursor('SELECT * FROM users'):
 *                         try:
 *                             yield record
 *                         except GeneratorExit:
 *                             print("Generator closed")
 *                             return
 *             except asyncpg.PostgresError as e:
 *                 print(f"Database error: {e}")
 *                 raise
 *
 * The exception is a status: the cursor's rill_gen_next returns -EIO, and
 * rill_pg_error / rill_pg_sqlstate hold the server's message and SQLSTATE;
 * GeneratorExit is rill_yield's -EPIPE.  Three consumers: a query on a
 * table that does not exist (fails at once, 42P01), one that fails after
 * some rows (division by zero at the 5th, 22012), and one that breaks
 * after 3 rows.  Each time the connection goes back to the pool (of one
 * connection) out of any transaction, ready for the next.
 */
#include "pgdemo.h"

struct safe_args {
    rill_pg_pool *pool;
    const char *query;
    char sqlstate[6];
    bool closed;
};

static int safe_generator(rill_gen *g, void *arg) {
    struct safe_args *a = arg;
    rill_pg *conn;
    int rc = rill_pg_pool_acquire(a->pool, &conn);
    if (rc < 0) return rc;
    {
        RILL_GEN_AUTO rill_gen *cur = rill_pg_cursor(conn, a->query, 0, NULL, 2);
        rill_pg_row *r;
        rill_foreach(r, cur) {
            if ((rc = rill_yield(g, r)) == -EPIPE) {
                printf("Generator closed\n");
                a->closed = true;
                break;
            }
        }
        if (rc == 0) rc = rill_gen_status(cur);
        if (rc == -EIO) {
            /* str(e): the message's first line, without libpq's "ERROR:  " */
            const char *msg = rill_pg_error(conn);
            if (strncmp(msg, "ERROR:  ", 8) == 0) msg += 8;
            printf("Database error: %.*s (SQLSTATE %s)\n", (int)strcspn(msg, "\n"), msg,
                   rill_pg_sqlstate(conn));
            snprintf(a->sqlstate, sizeof a->sqlstate, "%s", rill_pg_sqlstate(conn));
        }
    }
    rill_pg_pool_release(a->pool, conn);
    return rc == -EPIPE ? 0 : rc;
}

/* Consume safe_generator(pool) over query, breaking after `stop_after`
 * rows (0: never); the rows seen, and the generator's status in *status. */
static int consume(struct safe_args *a, int stop_after, int *status) {
    int rows = 0;
    RILL_GEN_AUTO rill_gen *g = rill_gen_new(safe_generator, a);
    rill_pg_row *r;
    rill_foreach(r, g) {
        printf("  row: %s\n", rill_pg_get(r, 0));
        if (++rows == stop_after) break;
    }
    *status = rill_gen_status(g);
    return rows;
}

/* The pool's connection is free and idle (out of any transaction). */
static bool pool_clean(rill_pg_pool *pool) {
    rill_pg *c;
    rill_scope s;
    rill_scope_enter(&s, 1.0);
    int rc = rill_pg_pool_acquire(pool, &c);
    rill_scope_exit(&s);
    if (rc < 0) return false;
    bool idle = PQtransactionStatus(rill_pg_conn(c)) == PQTRANS_IDLE &&
                rill_pg_exec(c, "SELECT 1", 0, NULL, NULL) == 1;
    rill_pg_pool_release(pool, c);
    return idle;
}

void example_errors(void) {
    printf("== safe_generator(pool): a server error's message and SQLSTATE; GeneratorExit ==\n");
    rill_pg_pool *pool = rill_pg_pool_new(pgd_source, 1);
    pgd_expect(pool != NULL, "a pool is made");
    if (!pool) return;
    int st, rows;

    printf("-- SELECT * FROM no_such_users --\n");
    struct safe_args a = {pool, "SELECT * FROM no_such_users", "", false};
    rows = consume(&a, 0, &st);
    printf("the consumer's loop ended with %s after %d rows\n", pgd_errname(st), rows);
    pgd_expect(st == -EIO && rows == 0 && strcmp(a.sqlstate, "42P01") == 0,
               "a missing table: -EIO, SQLSTATE 42P01 (undefined_table)");
    pgd_expect(pool_clean(pool), "after the error the connection is back in the pool, idle");

    printf("-- SELECT 100 / (5 - i) FROM generate_series(1, 10) i --\n");
    a = (struct safe_args){pool, "SELECT 100 / (5 - i) FROM generate_series(1, 10) i", "", false};
    rows = consume(&a, 0, &st);
    printf("the consumer's loop ended with %s after %d rows\n", pgd_errname(st), rows);
    pgd_expect(st == -EIO && rows == 4 && strcmp(a.sqlstate, "22012") == 0,
               "an error mid-stream: 4 rows, then -EIO, SQLSTATE 22012 (division_by_zero)");
    pgd_expect(pool_clean(pool), "after the error mid-stream the connection is back, idle");

    printf("-- SELECT i FROM generate_series(1, 10) i: break after 3 --\n");
    a = (struct safe_args){pool, "SELECT i FROM generate_series(1, 10) i", "", false};
    rows = consume(&a, 3, &st);
    pgd_expect(rows == 3 && a.closed && st == 0,
               "a break closes the generator: it sees GeneratorExit (-EPIPE) and returns");
    pgd_expect(pool_clean(pool), "after the break the connection is back, idle");
    rill_pg_pool_free(pool);
}
