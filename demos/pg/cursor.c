/*
 * The cursor as an async generator:
 *
 *     async with conn.transaction():
 *         async for record in conn.cursor('SELECT * FROM users'):
 *             print(f"User: {record['username']}")
 *
 * rill_pg_cursor opens the transaction itself (DECLARE needs one) and ends
 * it when the stream ends, so there is no `async with conn.transaction()`
 * around it: the connection is idle again afterwards.
 */
#include "pgdemo.h"

#define NUSERS 5

void example_cursor(void) {
    printf("== async for record in conn.cursor('SELECT * FROM users') ==\n");
    rill_pg *c;
    if (pgd_connect(pgd_source, &c) < 0) return;
    if (pgd_sql(c, "CREATE TABLE users_cursor (id serial PRIMARY KEY, username text NOT NULL)") <
            0 ||
        pgd_sql(c, "INSERT INTO users_cursor (username) "
                   "SELECT 'user_' || i FROM generate_series(1, 5) i") < 0)
        goto out;

    {
        int n = 0;
        bool in_order = true;
        RILL_GEN_AUTO rill_gen *cur =
            rill_pg_cursor(c, "SELECT * FROM users_cursor ORDER BY id", 0, NULL, 0);
        rill_pg_row *r;
        rill_foreach(r, cur) {
            const char *name = rill_pg_get(r, PQfnumber(r->res, "username"));
            printf("User: %s\n", name ? name : "NULL");
            char want[32];
            snprintf(want, sizeof want, "user_%d", ++n);
            in_order &= name && strcmp(name, want) == 0;
        }
        int st = rill_gen_status(cur);
        if (st < 0) printf("cursor ended with %s: %s\n", pgd_errname(st), rill_pg_error(c));
        pgd_expect(st == 0 && n == NUSERS && in_order, "the cursor yields every user, in order");
        pgd_expect(PQtransactionStatus(rill_pg_conn(c)) == PQTRANS_IDLE,
                   "the cursor's transaction has ended with the stream");
    }
    pgd_sql(c, "DROP TABLE users_cursor");
out:
    rill_pg_close(c);
}
