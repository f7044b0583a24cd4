/*
 * prefetch: how many rows each round trip brings.
 *
 *     async with conn.transaction():
 *         async for record in conn.cursor('SELECT * FROM large_table',
 *                                         prefetch=1000):
 *             await process_record(record)
 *
 * The rows of one FETCH share one PGresult: a row at index 0 starts a new
 * batch, so the batches can be counted from the consumer's side.
 */
#include "pgdemo.h"

#define NROWS 10000
#define PREFETCH 1000

struct totals {
    long rows, sum;
};

/* process_record(record): here, add it up. */
static int process_record(const rill_pg_row *r, struct totals *t) {
    t->rows++;
    t->sum += atol(rill_pg_get(r, 0));
    return 0;
}

void example_prefetch(void) {
    printf("== conn.cursor('SELECT * FROM large_table', prefetch=%d) ==\n", PREFETCH);
    rill_pg *c;
    if (pgd_connect(pgd_source, &c) < 0) return;
    if (pgd_sql(c, "CREATE TABLE large_table AS "
                   "SELECT i AS id, md5(i::text) AS payload FROM generate_series(1, 10000) i") < 0)
        goto out;

    {
        struct totals t = {0};
        int batches = 0, biggest = 0;
        RILL_GEN_AUTO rill_gen *cur =
            rill_pg_cursor(c, "SELECT * FROM large_table", 0, NULL, PREFETCH);
        rill_pg_row *r;
        rill_foreach(r, cur) {
            if (r->row == 0) {
                batches++;
                if (PQntuples(r->res) > biggest) biggest = PQntuples(r->res);
            }
            process_record(r, &t);
        }
        int st = rill_gen_status(cur);
        if (st < 0) printf("cursor ended with %s: %s\n", pgd_errname(st), rill_pg_error(c));
        printf("processed %ld rows in %d fetches of at most %d rows (sum of ids %ld)\n", t.rows,
               batches, biggest, t.sum);
        pgd_expect(st == 0 && t.rows == NROWS && t.sum == (long)NROWS * (NROWS + 1) / 2,
                   "the cursor yields every row of large_table once");
        pgd_expect(biggest == PREFETCH && batches == NROWS / PREFETCH,
                   "prefetch=1000: the rows come 1000 per round trip");
    }
    pgd_sql(c, "DROP TABLE large_table");
out:
    rill_pg_close(c);
}
