/*
 * A pagination generator:
 *
 *     async def paginated_fetch(pool, query, page_size=100):
 *         offset = 0
 *         while True:
 *             async with pool.acquire() as conn:
 *                 rows = await conn.fetch(f"{query} LIMIT {page_size} OFFSET {offset}")
 *                 if not rows:
 *                     break
 *                 yield rows
 *                 offset += page_size
 *
 *     async for page in paginated_fetch(pool, 'SELECT * FROM users ORDER BY id'):
 *         page_num += 1
 *         print(f"Page {page_num}: {len(page)} records")
 *         for user in page:
 *             print(f"  - {user['username']}")
 *
 * The body below is that function: it holds a pooled connection while a
 * page is out, as the original does (the yield is inside `async with
 * pool.acquire()`), and gives it back on every way out, a break included.
 * rill_pg_pages is the same generator on one connection: both are run and
 * must agree.
 */
#include "pgdemo.h"

#define NUSERS 25
#define PAGE_SIZE 10

struct paginated {
    rill_pg_pool *pool;
    const char *query;
    int page_size;
};

static int paginated_fetch(rill_gen *g, void *arg) {
    struct paginated *a = arg;
    for (long offset = 0;; offset += a->page_size) {
        rill_pg *conn;
        int rc = rill_pg_pool_acquire(a->pool, &conn);
        if (rc < 0) return rc;
        char sql[256];
        snprintf(sql, sizeof sql, "%s LIMIT %d OFFSET %ld", a->query, a->page_size, offset);
        PGresult *rows;
        long n = rill_pg_exec(conn, sql, 0, NULL, &rows);
        if (n > 0) rc = rill_yield(g, rows);
        PQclear(n >= 0 ? rows : NULL);
        rill_pg_pool_release(a->pool, conn);
        if (n <= 0) return n < 0 ? (int)n : 0;
        if (rc < 0) return rc == -EPIPE ? 0 : rc;
    }
}

void example_pagination(void) {
    printf("== paginated_fetch(pool, 'SELECT * FROM users ORDER BY id', page_size=%d) ==\n",
           PAGE_SIZE);
    rill_pg *c;
    if (pgd_connect(pgd_source, &c) < 0) return;
    rill_pg_pool *pool = rill_pg_pool_new(pgd_source, 2);
    pgd_expect(pool != NULL, "a pool is made");
    if (!pool ||
        pgd_sql(c, "CREATE TABLE users_pages (id serial PRIMARY KEY, username text)") < 0 ||
        pgd_sql(c, "INSERT INTO users_pages (username) "
                   "SELECT 'user_' || i FROM generate_series(1, 25) i") < 0)
        goto out;

    int page_num = 0, total = 0;
    char seen[NUSERS * 12] = "";
    {
        struct paginated a = {pool, "SELECT * FROM users_pages ORDER BY id", PAGE_SIZE};
        RILL_GEN_AUTO rill_gen *pages = rill_gen_new(paginated_fetch, &a);
        const PGresult *page;
        rill_foreach(page, pages) {
            page_num++;
            printf("Page %d: %d records\n", page_num, PQntuples(page));
            int col = PQfnumber(page, "username");
            for (int i = 0; i < PQntuples(page); i++) {
                printf("  - %s\n", PQgetvalue(page, i, col));
                strcat(seen, PQgetvalue(page, i, 0));
                strcat(seen, ",");
                total++;
            }
        }
        pgd_expect(rill_gen_status(pages) == 0 && page_num == 3 && total == NUSERS,
                   "25 users come as pages of 10, 10 and 5");
    }

    /* The same pages from rill_pg_pages, on one connection. */
    char again[NUSERS * 12] = "";
    int pages_again = 0;
    {
        RILL_GEN_AUTO rill_gen *pages =
            rill_pg_pages(c, "SELECT * FROM users_pages ORDER BY id", 0, NULL, PAGE_SIZE);
        const PGresult *page;
        rill_foreach(page, pages) {
            pages_again++;
            for (int i = 0; i < PQntuples(page); i++) {
                strcat(again, PQgetvalue(page, i, 0));
                strcat(again, ",");
            }
        }
        int st = rill_gen_status(pages);
        if (st < 0) printf("rill_pg_pages ended with %s: %s\n", pgd_errname(st), rill_pg_error(c));
        printf("rill_pg_pages(page_size=%d): %d pages, the same rows: %s\n", PAGE_SIZE,
               pages_again, strcmp(seen, again) == 0 ? "yes" : "no");
        pgd_expect(st == 0 && pages_again == 3 && strcmp(seen, again) == 0,
                   "rill_pg_pages yields the same pages");
    }
    pgd_sql(c, "DROP TABLE users_pages");
out:
    rill_pg_pool_free(pool);
    rill_pg_close(c);
}
