/*
 * Records one by one, fetched in batches:
 *
 *     async def fetch_records(pool, query, *args, batch_size=500):
 *         offset = 0
 *         while True:
 *             async with pool.acquire() as conn:
 *                 rows = await conn.fetch(
 *                     f"{query} LIMIT {batch_size} OFFSET {offset}", *args)
 *                 if not rows:
 *                     break
 *                 for row in rows:
 *                     yield row
 *                 offset += batch_size
 *
 *     async for user in fetch_records(pool, 'SELECT * FROM users ORDER BY id'):
 *         count += 1
 *         print(f"User #{count}: {user['username']}")
 *         if count >= 10:
 *             break
 *
 * With batch_size 4 the break comes in the third batch.  Breaking leaves
 * the generator suspended inside `async with pool.acquire()`; freeing it
 * (RILL_GEN_AUTO: aclosing) makes its rill_yield return -EPIPE, and the
 * body gives the connection back.  The pool has one connection: acquiring
 * it right after the loop shows it was.
 */
#include "pgdemo.h"

#define BATCH_SIZE 4

struct fetch_args {
    rill_pg_pool *pool;
    const char *query;
    int batch_size;
    int batches;   /* fetched so far */
    bool released; /* the connection went back after the consumer broke */
};

static int fetch_records(rill_gen *g, void *arg) {
    struct fetch_args *a = arg;
    for (long offset = 0;; offset += a->batch_size) {
        rill_pg *conn;
        int rc = rill_pg_pool_acquire(a->pool, &conn);
        if (rc < 0) return rc;
        char sql[256];
        snprintf(sql, sizeof sql, "%s LIMIT %d OFFSET %ld", a->query, a->batch_size, offset);
        PGresult *rows;
        long n = rill_pg_exec(conn, sql, 0, NULL, &rows);
        if (n > 0) a->batches++;
        for (int i = 0; i < n && rc == 0; i++) {
            rill_pg_row row = {rows, i};
            rc = rill_yield(g, &row);
        }
        PQclear(n >= 0 ? rows : NULL);
        rill_pg_pool_release(a->pool, conn);
        if (rc == -EPIPE) a->released = true;
        if (n <= 0) return n < 0 ? (int)n : 0;
        if (rc < 0) return rc == -EPIPE ? 0 : rc;
    }
}

void example_records(void) {
    printf("== fetch_records(pool, 'SELECT * FROM users ORDER BY id', batch_size=%d): "
           "break after 10 ==\n",
           BATCH_SIZE);
    rill_pg_pool *pool = rill_pg_pool_new(pgd_source, 1);
    rill_pg *c = NULL;
    pgd_expect(pool != NULL, "a pool is made");
    if (!pool || rill_pg_pool_acquire(pool, &c) < 0) {
        pgd_expect(false, "the pool gives a connection");
        goto out;
    }
    int setup =
        pgd_sql(c, "CREATE TABLE users_records (id serial PRIMARY KEY, username text)") < 0 ||
                pgd_sql(c, "INSERT INTO users_records (username) "
                           "SELECT 'user_' || i FROM generate_series(1, 25) i") < 0;
    rill_pg_pool_release(pool, c);
    if (setup) goto out;

    struct fetch_args a = {pool, "SELECT * FROM users_records ORDER BY id", BATCH_SIZE, 0, false};
    int count = 0;
    {
        RILL_GEN_AUTO rill_gen *users = rill_gen_new(fetch_records, &a);
        rill_pg_row *user;
        rill_foreach(user, users) {
            count++;
            printf("User #%d: %s\n", count, rill_pg_get(user, PQfnumber(user->res, "username")));
            if (count >= 10) break;
        }
    }
    printf("%d batches of %d fetched for %d records; the generator gave its connection "
           "back: %s\n",
           a.batches, BATCH_SIZE, count, a.released ? "yes" : "no");
    pgd_expect(count == 10 && a.batches == 3, "10 records, read from 3 batches of 4");
    pgd_expect(a.released, "closing the generator after the break releases its connection");

    rill_scope s;
    rill_scope_enter(&s, 1.0);
    int rc = rill_pg_pool_acquire(pool, &c);
    rill_scope_exit(&s);
    pgd_expect(rc == 0, "the pool's only connection is free again after the break");
    if (rc == 0) {
        pgd_sql(c, "DROP TABLE users_records");
        rill_pg_pool_release(pool, c);
    }
out:
    rill_pg_pool_free(pool);
}
