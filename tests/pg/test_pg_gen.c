/* The pg module's generators and pipelines: rill_pg_cursor, rill_pg_pages,
 * rill_pg_exec_many and rill_pg_listen, against a real server whose
 * conninfo RILL_PG_CONNINFO gives (make test-pg starts a private one);
 * skipped without it.  Each test makes the tables it needs, named after
 * its process, and drops them. */
#include <rill/pg.h>

#include "../helpers.h"

/* FIBER_TEST, skipped when no server is given.  Generous timeout: a
 * hundred thousand rows under valgrind. */
#define PG_TEST(suite, name, ...)                                              \
    static int suite##_##name##_body(void *arg);                               \
    Test(suite, name, .timeout = 4 * TEST_TIMEOUT, ##__VA_ARGS__) {            \
        if (!getenv("RILL_PG_CONNINFO") || !*getenv("RILL_PG_CONNINFO"))       \
            cr_skip_test("RILL_PG_CONNINFO is not set (make test-pg sets it)"); \
        run_fiber_test(suite##_##name##_body);                                 \
    }                                                                          \
    static int suite##_##name##_body(void *arg)

/* ---- helpers ---------------------------------------------------------------- */

static bool under_asan(void) {
#if defined(__SANITIZE_ADDRESS__)
    return true;
#else
    return false;
#endif
}

static const char *conninfo(void) { return getenv("RILL_PG_CONNINFO"); }

/* A connection to the test server, with dbname replaced when db is not
 * NULL (a later keyword wins in a conninfo string). */
static rill_pg *connect_db(const char *db) {
    char ci[1024];
    if (db) snprintf(ci, sizeof ci, "%s dbname=%s", conninfo(), db);
    else snprintf(ci, sizeof ci, "%s", conninfo());
    rill_pg *c = NULL;
    int rc = rill_pg_connect(ci, &c);
    cr_assert_eq(rc, 0, "rill_pg_connect(%s): %s: %s", ci, rill_strerror(rc),
                 rill_pg_error(NULL));
    return c;
}

static rill_pg *connect_pg(void) { return connect_db(NULL); }

/* Run sql, which must succeed; its row or affected count. */
static long must_exec(rill_pg *c, const char *sql) {
    long n = rill_pg_exec(c, sql, 0, NULL, NULL);
    cr_assert(n >= 0, "%s: %s: %s (%s)", sql, rill_strerror((int)n), rill_pg_error(c),
              rill_pg_sqlstate(c));
    return n;
}

/* The single value sql returns, as a long. */
static long query_long(rill_pg *c, const char *sql) {
    PGresult *res = NULL;
    long n = rill_pg_exec(c, sql, 0, NULL, &res);
    cr_assert_eq(n, 1, "%s: %ld rows (%s): %s", sql, n, n < 0 ? rill_strerror((int)n) : "",
                 rill_pg_error(c));
    long v = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

/* A name unique to this process: tables of tests running at once differ. */
static const char *unique(char *buf, size_t n, const char *prefix) {
    snprintf(buf, n, "%s_%d", prefix, (int)getpid());
    return buf;
}

/* No cursor is open on c and c is in no transaction. */
static void expect_clean(rill_pg *c) {
    expect_eq(PQtransactionStatus(rill_pg_conn(c)), PQTRANS_IDLE);
    expect_eq(query_long(c, "SELECT count(*) FROM pg_cursors WHERE name <> ''"), 0);
}

/* ---- rill_pg_cursor ------------------------------------------------------------ */

FIBER_TEST(pg_args, every_generator_refuses_bad_arguments_with_einval) {
    const char *p[1] = {"1"};
    errno = 0;
    cr_assert_null(rill_pg_cursor(NULL, "SELECT 1", 0, NULL, 10));
    expect_eq(errno, EINVAL);
    cr_assert_null(rill_pg_pages(NULL, "SELECT 1", 0, NULL, 10));
    expect_eq(errno, EINVAL);
    cr_assert_null(rill_pg_listen(NULL, "chan"));
    expect_eq(errno, EINVAL);
    cr_assert_null(rill_pg_listen("host=/nonexistent", NULL));
    expect_eq(errno, EINVAL);
    expect_eq(rill_pg_exec_many(NULL, "SELECT $1", 1, 1, p), -EINVAL);
    return 0;
}

PG_TEST(pg_cursor, hundred_thousand_rows_come_in_order_in_bounded_memory) {
    rill_pg *c = connect_pg();
    const char *p[1] = {"100000"};
    rill_gen *g = rill_pg_cursor(c, "SELECT i, repeat('x', 200) FROM generate_series(1, $1::int) i",
                                 1, p, 1000);
    cr_assert_not_null(g, "rill_pg_cursor: %s", strerror(errno));
    long want = 1, base = status_kib("VmRSS:"), peak = base;
    rill_pg_row *r;
    rill_foreach(r, g) {
        long i = strtol(rill_pg_get(r, 0), NULL, 10);
        if (i != want) cr_assert_fail("row %ld where %ld was expected", i, want);
        cr_assert_eq(strlen(rill_pg_get(r, 1)), 200);
        if (want % 1000 == 0) {
            long rss = status_kib("VmRSS:");
            if (rss > peak) peak = rss;
        }
        want++;
    }
    expect_eq(rill_gen_status(g), 0);
    expect_eq(want, 100001);
    /* The whole result would take over 20 MiB; 1000 rows, 0.2.  (ASan's
     * quarantine and valgrind's queue of freed blocks keep what is freed:
     * no bound holds there.) */
    if (!under_asan() && !under_valgrind())
        cr_assert(peak - base < 4096, "RSS grew by %ld KiB over the rows", peak - base);
    rill_gen_free(g);
    expect_clean(c);
    rill_pg_close(c);
    return 0;
}

PG_TEST(pg_cursor, closed_early_it_leaves_no_cursor_and_no_transaction) {
    rill_pg *c = connect_pg();
    rill_gen *g = rill_pg_cursor(c, "SELECT i FROM generate_series(1, 10000) i", 0, NULL, 100);
    cr_assert_not_null(g);
    int n = 0;
    rill_pg_row *r;
    rill_foreach(r, g) {
        if (++n == 150) break; /* in the middle of the second fetch */
    }
    expect_eq(PQtransactionStatus(rill_pg_conn(c)), PQTRANS_INTRANS);
    expect_eq(rill_pg_exec(c, "SELECT 1", 0, NULL, NULL), -EBUSY); /* the cursor's */
    expect_eq(rill_gen_close(g), 0);
    expect_clean(c);
    rill_gen_free(g);
    /* An error thrown in rolls back and comes out again. */
    g = rill_pg_cursor(c, "SELECT i FROM generate_series(1, 10000) i", 0, NULL, 100);
    expect_eq(rill_gen_next(g, (void **)&r), 1);
    expect_eq(rill_gen_throw(g, -ETIMEDOUT, NULL), -ETIMEDOUT);
    expect_clean(c);
    rill_gen_free(g);
    /* rill_gen_free alone does it too. */
    g = rill_pg_cursor(c, "SELECT i FROM generate_series(1, 10000) i", 0, NULL, 100);
    cr_assert_not_null(g);
    expect_eq(rill_gen_next(g, (void **)&r), 1);
    rill_gen_free(g);
    expect_clean(c);
    rill_pg_close(c);
    return 0;
}

PG_TEST(pg_cursor, closed_by_a_cancelled_consumer_it_still_cleans_up) {
    rill_pg *c = connect_pg();
    rill_gen *g = rill_pg_cursor(c, "SELECT i FROM generate_series(1, 10000) i", 0, NULL, 100);
    cr_assert_not_null(g);
    rill_scope s;
    rill_scope_enter(&s, RILL_FOREVER);
    rill_pg_row *r;
    expect_eq(rill_gen_next(g, (void **)&r), 1);
    rill_scope_cancel(&s);
    expect_eq(rill_sleep(0), -ECANCELED); /* the consumer is cancelled */
    expect_eq(rill_gen_close(g), 0);      /* the cleanup runs shielded */
    expect_eq(rill_scope_exit(&s), -ECANCELED);
    expect_clean(c);
    rill_gen_free(g);
    rill_pg_close(c);
    return 0;
}

/* A cursor left suspended when rill_run's main returns: the run's end
 * closes it, its clean-up running cancelled (so shielded), and leaves the
 * connection clean for the next run. */
typedef struct left_open {
    rill_pg *c;
    rill_gen *g;
} left_open;

static int leave_cursor_open(void *arg) {
    left_open *lo = arg;
    lo->c = connect_pg();
    lo->g = rill_pg_cursor(lo->c, "SELECT i FROM generate_series(1, 10000) i", 0, NULL, 100);
    cr_assert_not_null(lo->g);
    expect_eq(rill_gen_next(lo->g, NULL), 1);
    return 0;
}

static int check_left_clean(void *arg) {
    left_open *lo = arg;
    expect_clean(lo->c);
    return 0;
}

Test(pg_cursor, left_open_at_the_end_of_the_run_it_is_closed_cleanly, .timeout = 4 * TEST_TIMEOUT) {
    if (!getenv("RILL_PG_CONNINFO") || !*getenv("RILL_PG_CONNINFO"))
        cr_skip_test("RILL_PG_CONNINFO is not set (make test-pg sets it)");
    left_open lo = {0};
    expect_eq(rill_run(leave_cursor_open, &lo), 0);
    expect_eq(rill_run(check_left_clean, &lo), 0);
    expect_eq(rill_gen_status(lo.g), 0);
    rill_gen_free(lo.g);
    rill_pg_close(lo.c);
}

PG_TEST(pg_cursor, a_fetch_past_its_deadline_is_cancelled_and_rolled_back) {
    rill_pg *c = connect_pg();
    /* Every fetch of 10 rows sleeps 0.2 s on the server. */
    rill_gen *g = rill_pg_cursor(c, "SELECT i, pg_sleep(0.02) FROM generate_series(1, 1000) i", 0,
                                 NULL, 10);
    cr_assert_not_null(g);
    rill_scope s;
    rill_scope_enter(&s, 0.5);
    int n = 0, rc;
    rill_pg_row *r;
    double t0 = rill_now();
    while ((rc = rill_gen_next(g, (void **)&r)) == 1) n++;
    double took = rill_now() - t0;
    expect_eq(rc, -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    cr_assert(n >= 10 && n < 1000, "%d rows", n);
    cr_assert(took < 3, "cancelled after %.2f s", took);
    expect_eq(rill_gen_next(g, (void **)&r), 0); /* finished */
    expect_clean(c);
    rill_gen_free(g);
    rill_pg_close(c);
    return 0;
}

/* The backend serving a cursor is killed between two fetches (what a
 * server going down looks like to this connection): the stream ends with
 * -ECONNRESET and the server's message, and nothing leaks (the ASan and
 * valgrind runs check). */
PG_TEST(pg_cursor, its_backend_killed_mid_stream_it_ends_with_econnreset) {
    rill_pg *c = connect_pg();
    rill_pg *killer = connect_pg();
    char pid[16];
    snprintf(pid, sizeof pid, "%d", PQbackendPID(rill_pg_conn(c)));
    rill_gen *g = rill_pg_cursor(c, "SELECT i FROM generate_series(1, 100000) i", 0, NULL, 100);
    cr_assert_not_null(g);
    rill_pg_row *r = NULL;
    for (int i = 0; i < 150; i++) expect_eq(rill_gen_next(g, (void **)&r), 1);
    const char *p[1] = {pid};
    expect_eq(rill_pg_exec(killer, "SELECT pg_terminate_backend($1::int)", 1, p, NULL), 1);
    rill_scope s;
    rill_scope_enter(&s, 20); /* a hang fails the test rather than block it */
    int rc;
    long more = 0;
    while ((rc = rill_gen_next(g, (void **)&r)) == 1) more++;
    expect_eq(rill_scope_exit(&s), 0);
    expect_eq(rc, -ECONNRESET);
    cr_assert(more < 100000, "%ld rows after the kill", more);
    cr_assert(*rill_pg_error(c), "no message for the lost connection");
    rill_gen_free(g);
    rill_pg_close(c);
    rill_pg_close(killer);
    return 0;
}

/* c, of pool p, is in use: closing it and giving it back are refused. */
static void expect_in_use(rill_pg_pool *p, rill_pg *c) {
    errno = 0;
    rill_pg_close(c);
    expect_eq(errno, EBUSY);
    errno = 0;
    rill_pg_pool_release(p, c);
    expect_eq(errno, EBUSY);
}

/* Closing, or giving back to its pool, a connection an open cursor uses
 * would free it under the cursor: both are refused with EBUSY until the
 * cursor is freed. */
PG_TEST(pg_cursor, its_connection_cannot_be_closed_or_released_while_it_is_open) {
    rill_pg_pool *p = rill_pg_pool_new(conninfo(), 1);
    cr_assert_not_null(p);
    rill_pg *c = NULL;
    expect_eq(rill_pg_pool_acquire(p, &c), 0);
    rill_gen *g = rill_pg_cursor(c, "SELECT i FROM generate_series(1, 1000) i", 0, NULL, 10);
    cr_assert_not_null(g);
    expect_eq(rill_gen_next(g, NULL), 1);
    expect_in_use(p, c);
    expect_eq(rill_gen_next(g, NULL), 1); /* the cursor goes on */
    rill_gen_free(g);
    rill_pg_pool_release(p, c);
    rill_pg *again = NULL;
    expect_eq(rill_pg_pool_acquire(p, &again), 0);
    expect_eq(rill_pg_exec(again, "SELECT 1", 0, NULL, NULL), 1);
    rill_pg_pool_release(p, again);
    rill_pg_pool_free(p);
    return 0;
}

/* A cursor not yet started, and a pages generator between its pages, use
 * their connection too: closing it, or giving it back to its pool, is
 * refused with EBUSY until they are freed (else their next call would
 * use freed memory). */
PG_TEST(pg_pages, its_connection_cannot_be_closed_or_released_while_it_is_open) {
    rill_pg_pool *p = rill_pg_pool_new(conninfo(), 1);
    cr_assert_not_null(p);
    rill_pg *c = NULL;
    expect_eq(rill_pg_pool_acquire(p, &c), 0);
    rill_gen *g = rill_pg_pages(c, "SELECT i FROM generate_series(1, 100) i ORDER BY i", 0, NULL, 10);
    cr_assert_not_null(g);
    expect_eq(rill_gen_next(g, NULL), 1);
    expect_in_use(p, c);
    expect_eq(rill_pg_exec(c, "SELECT 1", 0, NULL, NULL), 1); /* between pages: usable */
    expect_eq(rill_gen_next(g, NULL), 1);                     /* the pages go on */
    rill_gen_free(g);
    /* A cursor that has not fetched yet. */
    g = rill_pg_cursor(c, "SELECT i FROM generate_series(1, 100) i", 0, NULL, 10);
    cr_assert_not_null(g);
    expect_in_use(p, c);
    expect_eq(rill_gen_next(g, NULL), 1);
    rill_gen_free(g);
    rill_pg_pool_release(p, c);
    rill_pg_pool_free(p);
    return 0;
}

PG_TEST(pg_cursor, a_server_error_ends_it_with_eio_and_rolls_back) {
    rill_pg *c = connect_pg();
    rill_gen *g = rill_pg_cursor(c, "SELECT 1 / (5000 - i) FROM generate_series(1, 10000) i", 0,
                                 NULL, 1000);
    cr_assert_not_null(g);
    int n = 0, rc;
    rill_pg_row *r;
    while ((rc = rill_gen_next(g, (void **)&r)) == 1) n++;
    expect_eq(rc, -EIO);
    cr_assert_str_eq(rill_pg_sqlstate(c), "22012"); /* division_by_zero */
    cr_assert(strstr(rill_pg_error(c), "division by zero"), "%s", rill_pg_error(c));
    expect_eq(n, 4000);
    expect_clean(c);
    rill_gen_free(g);

    g = rill_pg_cursor(c, "SELEC 1", 0, NULL, 10);
    expect_eq(rill_gen_next(g, (void **)&r), -EIO);
    cr_assert_str_eq(rill_pg_sqlstate(c), "42601"); /* syntax_error */
    expect_clean(c);
    rill_gen_free(g);
    rill_pg_close(c);
    return 0;
}

PG_TEST(pg_cursor, inside_a_transaction_of_the_caller_it_is_refused) {
    rill_pg *c = connect_pg();
    expect_eq(rill_pg_begin(c), 0);
    rill_gen *g = rill_pg_cursor(c, "SELECT 1", 0, NULL, 10);
    cr_assert_not_null(g);
    expect_eq(rill_gen_next(g, NULL), -EINVAL);
    rill_gen_free(g);
    expect_eq(PQtransactionStatus(rill_pg_conn(c)), PQTRANS_INTRANS);
    expect_eq(rill_pg_rollback(c), 0);
    rill_pg_close(c);
    return 0;
}

/* ---- rill_pg_pages ------------------------------------------------------------- */

PG_TEST(pg_pages, pages_of_100_over_1050_rows_are_11_the_last_of_50) {
    rill_pg *c = connect_pg();
    const char *p[2] = {"1", "1050"};
    rill_gen *g = rill_pg_pages(c, "SELECT i FROM generate_series($1::int, $2::int) i ORDER BY i",
                                2, p, 100);
    cr_assert_not_null(g, "rill_pg_pages: %s", strerror(errno));
    int pages = 0, last = -1;
    long want = 1;
    const PGresult *res;
    rill_foreach(res, g) {
        pages++;
        last = PQntuples(res);
        for (int i = 0; i < PQntuples(res); i++, want++)
            if (strtol(PQgetvalue(res, i, 0), NULL, 10) != want)
                cr_assert_fail("page %d row %d is %s, not %ld", pages, i, PQgetvalue(res, i, 0), want);
    }
    expect_eq(rill_gen_status(g), 0);
    expect_eq(pages, 11);
    expect_eq(last, 50);
    expect_eq(want, 1051);
    rill_gen_free(g);

    /* A whole number of pages: no empty page at the end. */
    const char *q[2] = {"1", "300"};
    g = rill_pg_pages(c, "SELECT i FROM generate_series($1::int, $2::int) i ORDER BY i", 2, q, 100);
    pages = 0;
    rill_foreach(res, g) {
        pages++;
        expect_eq(PQntuples(res), 100);
    }
    expect_eq(rill_gen_status(g), 0);
    expect_eq(pages, 3);
    rill_gen_free(g);

    /* A query that ends with a comment and a semicolon is wrapped whole. */
    g = rill_pg_pages(c, "SELECT 7 AS x -- seven\n; \n", 0, NULL, 10);
    expect_eq(rill_gen_next(g, (void **)&res), 1);
    expect_eq(PQntuples(res), 1);
    cr_assert_str_eq(PQgetvalue(res, 0, 0), "7");
    expect_eq(rill_gen_next(g, (void **)&res), 0);
    rill_gen_free(g);
    rill_pg_close(c);
    return 0;
}

PG_TEST(pg_pages, a_bad_query_ends_the_pages_with_eio) {
    rill_pg *c = connect_pg();
    rill_gen *g = rill_pg_pages(c, "SELECT * FROM no_such_table_here", 0, NULL, 10);
    cr_assert_not_null(g);
    expect_eq(rill_gen_next(g, NULL), -EIO);
    cr_assert_str_eq(rill_pg_sqlstate(c), "42P01"); /* undefined_table */
    expect_eq(rill_gen_next(g, NULL), 0);
    rill_gen_free(g);
    rill_pg_close(c);
    return 0;
}

/* ---- rill_pg_exec_many ------------------------------------------------------------ */

/* nrows parameter sets (k, v): k from k0, v = k * mul, in strings. */
typedef struct param_rows {
    char (*text)[2][24];
    const char **params;
} param_rows;

static param_rows make_rows(int nrows, long k0, long mul) {
    param_rows p = {calloc((size_t)nrows, sizeof *p.text), calloc((size_t)nrows * 2, sizeof *p.params)};
    cr_assert(p.text && p.params);
    for (int r = 0; r < nrows; r++) {
        snprintf(p.text[r][0], sizeof p.text[r][0], "%ld", k0 + r);
        snprintf(p.text[r][1], sizeof p.text[r][1], "%ld", (k0 + r) * mul);
        p.params[2 * r] = p.text[r][0];
        p.params[2 * r + 1] = p.text[r][1];
    }
    return p;
}

static void free_rows(param_rows p) {
    free(p.text);
    free(p.params);
}

/* A task that counts the loop's turns while the pipeline runs. */
typedef struct ticker {
    bool stop;
    int ticks;
} ticker;

static int tick(void *arg) {
    ticker *t = arg;
    while (!t->stop && rill_sleep(0.001) == 0) t->ticks++;
    return 0;
}

PG_TEST(pg_exec_many, ten_thousand_upserts_in_one_call_are_all_applied) {
    rill_pg *c = connect_pg();
    char t[64], sql[256];
    unique(t, sizeof t, "many_upsert");
    snprintf(sql, sizeof sql, "CREATE TABLE %s (k int PRIMARY KEY, v bigint NOT NULL)", t);
    must_exec(c, sql);
    /* 1000 rows there already, that the upserts overwrite. */
    snprintf(sql, sizeof sql, "INSERT INTO %s SELECT i, -1 FROM generate_series(1, 1000) i", t);
    must_exec(c, sql);
    param_rows p = make_rows(10000, 1, 3);
    snprintf(sql, sizeof sql,
             "INSERT INTO %s VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", t);
    ticker tk = {0};
    rill_task *tt = rill_spawn(tick, &tk);
    long n = rill_pg_exec_many(c, sql, 2, 10000, p.params);
    tk.stop = true;
    expect_eq(rill_join(tt), 0);
    expect_eq(n, 10000);
    cr_assert(tk.ticks > 0, "the loop did not turn while the pipeline ran");
    expect_eq(PQtransactionStatus(rill_pg_conn(c)), PQTRANS_IDLE);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", t);
    expect_eq(query_long(c, sql), 10000);
    snprintf(sql, sizeof sql, "SELECT sum(v) FROM %s", t);
    expect_eq(query_long(c, sql), 3L * 10000 * 10001 / 2);
    /* The connection is back in its ordinary mode. */
    expect_eq(PQpipelineStatus(rill_pg_conn(c)), PQ_PIPELINE_OFF);
    expect_eq(rill_pg_exec_many(c, sql, 0, 0, NULL), 0);
    snprintf(sql, sizeof sql, "DROP TABLE %s", t);
    must_exec(c, sql);
    free_rows(p);
    rill_pg_close(c);
    return 0;
}

PG_TEST(pg_exec_many, one_bad_row_fails_with_eio_and_applies_nothing) {
    rill_pg *c = connect_pg();
    char t[64], sql[256];
    unique(t, sizeof t, "many_bad");
    snprintf(sql, sizeof sql, "CREATE TABLE %s (k int PRIMARY KEY, v bigint NOT NULL)", t);
    must_exec(c, sql);
    param_rows p = make_rows(5000, 1, 1);
    p.params[2 * 4321 + 1] = "not a number";
    snprintf(sql, sizeof sql, "INSERT INTO %s VALUES ($1, $2)", t);
    expect_eq(rill_pg_exec_many(c, sql, 2, 5000, p.params), -EIO);
    cr_assert_str_eq(rill_pg_sqlstate(c), "22P02"); /* invalid_text_representation */
    cr_assert(strstr(rill_pg_error(c), "not a number"), "%s", rill_pg_error(c));
    expect_eq(PQtransactionStatus(rill_pg_conn(c)), PQTRANS_IDLE);
    expect_eq(PQpipelineStatus(rill_pg_conn(c)), PQ_PIPELINE_OFF);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", t);
    expect_eq(query_long(c, sql), 0);
    /* A NULL where NOT NULL holds, and a duplicate key, likewise. */
    p.params[2 * 4321 + 1] = NULL;
    snprintf(sql, sizeof sql, "INSERT INTO %s VALUES ($1, $2)", t);
    expect_eq(rill_pg_exec_many(c, sql, 2, 5000, p.params), -EIO);
    cr_assert_str_eq(rill_pg_sqlstate(c), "23502"); /* not_null_violation */
    p.params[2 * 4321 + 1] = "7";
    p.params[2 * 4321] = "1";
    expect_eq(rill_pg_exec_many(c, sql, 2, 5000, p.params), -EIO);
    cr_assert_str_eq(rill_pg_sqlstate(c), "23505"); /* unique_violation */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", t);
    expect_eq(query_long(c, sql), 0);
    /* Refused inside a transaction of the caller's. */
    expect_eq(rill_pg_begin(c), 0);
    snprintf(sql, sizeof sql, "INSERT INTO %s VALUES ($1, $2)", t);
    expect_eq(rill_pg_exec_many(c, sql, 2, 1, p.params), -EINVAL);
    expect_eq(rill_pg_rollback(c), 0);
    snprintf(sql, sizeof sql, "DROP TABLE %s", t);
    must_exec(c, sql);
    free_rows(p);
    rill_pg_close(c);
    return 0;
}

PG_TEST(pg_exec_many, cancelled_mid_pipeline_it_applies_nothing_and_the_connection_works) {
    rill_pg *c = connect_pg();
    char t[64], sql[256];
    unique(t, sizeof t, "many_cancel");
    snprintf(sql, sizeof sql, "CREATE TABLE %s (k int PRIMARY KEY, v bigint NOT NULL)", t);
    must_exec(c, sql);
    param_rows p = make_rows(2000, 1, 1);
    /* 16 KiB a row, 32 MiB in all: the sending waits for the server,
     * which sleeps 1 ms a row; cancelled at 0.2 s, half way. */
    static char big[16384];
    memset(big, 'x', sizeof big - 1);
    for (int i = 0; i < 2000; i++) p.params[2 * i + 1] = big;
    snprintf(sql, sizeof sql, "INSERT INTO %s SELECT $1, length($2) FROM pg_sleep(0.001)", t);
    rill_scope s;
    rill_scope_enter(&s, 0.2);
    double t0 = rill_now();
    expect_eq(rill_pg_exec_many(c, sql, 2, 2000, p.params), -ECANCELED);
    cr_assert(rill_now() - t0 < 1.5, "cancelled after %.2f s", rill_now() - t0);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    expect_eq(PQtransactionStatus(rill_pg_conn(c)), PQTRANS_IDLE);
    expect_eq(PQpipelineStatus(rill_pg_conn(c)), PQ_PIPELINE_OFF);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", t);
    expect_eq(query_long(c, sql), 0);
    snprintf(sql, sizeof sql, "DROP TABLE %s", t);
    must_exec(c, sql);
    free_rows(p);
    rill_pg_close(c);
    return 0;
}

PG_TEST(pg_exec_many, cancelled_while_its_results_come_it_applies_nothing) {
    rill_pg *c = connect_pg();
    char t[64], sql[256];
    unique(t, sizeof t, "many_cancel_late");
    snprintf(sql, sizeof sql, "CREATE TABLE %s (k int PRIMARY KEY, v bigint NOT NULL)", t);
    must_exec(c, sql);
    param_rows p = make_rows(20, 1, 1);
    /* Sent at once, then 50 ms a row on the server: cancelled at the 4th. */
    snprintf(sql, sizeof sql, "INSERT INTO %s SELECT $1, $2 FROM pg_sleep(0.05)", t);
    rill_scope s;
    rill_scope_enter(&s, 0.2);
    double t0 = rill_now();
    expect_eq(rill_pg_exec_many(c, sql, 2, 20, p.params), -ECANCELED);
    cr_assert(rill_now() - t0 < 0.7, "cancelled after %.2f s", rill_now() - t0);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    expect_eq(PQtransactionStatus(rill_pg_conn(c)), PQTRANS_IDLE);
    expect_eq(PQpipelineStatus(rill_pg_conn(c)), PQ_PIPELINE_OFF);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", t);
    expect_eq(query_long(c, sql), 0);
    snprintf(sql, sizeof sql, "DROP TABLE %s", t);
    must_exec(c, sql);
    free_rows(p);
    rill_pg_close(c);
    return 0;
}

/* ---- ETL between two databases ------------------------------------------------------ */

/* The seed's ETL: rows read with a cursor from one database, transformed,
 * upserted in batches into another. */
PG_TEST(pg_etl, a_cursor_feeds_batched_upserts_into_another_database) {
    enum { ROWS = 20000, BATCH = 1000 };
    char src[64], dst[64], sql[256];
    unique(src, sizeof src, "etl_src");
    unique(dst, sizeof dst, "etl_dst");
    rill_pg *admin = connect_pg();
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", src);
    must_exec(admin, sql);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", dst);
    must_exec(admin, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", src);
    must_exec(admin, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", dst);
    must_exec(admin, sql);

    rill_pg *in = connect_db(src), *out = connect_db(dst);
    must_exec(in, "CREATE TABLE orders (id int PRIMARY KEY, cents bigint, city text)");
    snprintf(sql, sizeof sql,
             "INSERT INTO orders SELECT i, i * 7 %% 1000, 'city' || (i %% 10) "
             "FROM generate_series(1, %d) i", ROWS);
    expect_eq(must_exec(in, sql), ROWS);
    must_exec(out, "CREATE TABLE orders_eur (id int PRIMARY KEY, euros numeric, city text)");
    /* One row there already, that the upsert replaces. */
    must_exec(out, "INSERT INTO orders_eur VALUES (1, -1, 'nowhere')");

    rill_gen *g = rill_pg_cursor(in, "SELECT id, cents, upper(city) FROM orders ORDER BY id",
                                 0, NULL, 500);
    cr_assert_not_null(g);
    static char text[BATCH][3][32];
    const char *params[BATCH * 3];
    int n = 0, batches = 0;
    long applied = 0;
    rill_pg_row *r;
    rill_foreach(r, g) {
        snprintf(text[n][0], 32, "%s", PQgetvalue(r->res, r->row, 0));
        long cents = strtol(rill_pg_get(r, 1), NULL, 10);
        snprintf(text[n][1], 32, "%ld.%02ld", cents / 100, cents % 100);
        snprintf(text[n][2], 32, "%s", PQgetvalue(r->res, r->row, 2));
        for (int i = 0; i < 3; i++) params[3 * n + i] = text[n][i];
        if (++n == BATCH) {
            long k = rill_pg_exec_many(out,
                "INSERT INTO orders_eur VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE "
                "SET euros = EXCLUDED.euros, city = EXCLUDED.city", 3, n, params);
            expect_eq(k, n);
            applied += k;
            batches++;
            n = 0;
        }
    }
    expect_eq(rill_gen_status(g), 0);
    rill_gen_free(g);
    expect_eq(n, 0);
    expect_eq(batches, ROWS / BATCH);
    expect_eq(applied, ROWS);

    expect_eq(query_long(out, "SELECT count(*) FROM orders_eur"), ROWS);
    expect_eq(query_long(in, "SELECT sum(cents) FROM orders"),
              query_long(out, "SELECT (sum(euros) * 100)::bigint FROM orders_eur"));
    expect_eq(query_long(out, "SELECT count(*) FROM orders_eur WHERE city <> upper(city)"), 0);
    expect_eq(query_long(out, "SELECT count(DISTINCT city) FROM orders_eur"), 10);
    expect_clean(in);

    rill_pg_close(in);
    rill_pg_close(out);
    snprintf(sql, sizeof sql, "DROP DATABASE %s", src);
    must_exec(admin, sql);
    snprintf(sql, sizeof sql, "DROP DATABASE %s", dst);
    must_exec(admin, sql);
    rill_pg_close(admin);
    return 0;
}

/* ---- rill_pg_listen --------------------------------------------------------------- */

/* The pid of the session that listens on chan, once it does (polled). */
static int listener_pid(rill_pg *c, const char *chan) {
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE query = 'LISTEN \"%s\"'",
             chan);
    for (int i = 0; i < 2000; i++) {
        long pid = query_long(c, sql);
        if (pid) return (int)pid;
        if (rill_sleep(0.005) < 0) break;
    }
    cr_assert_fail("nobody listens on %s", chan);
    return 0;
}

typedef struct notifier {
    const char *chan;
    int n;
    int pid; /* of the sending session */
} notifier;

/* Wait for the listener, then NOTIFY n times, payload "0", "1", ... */
static int send_notifications(void *arg) {
    notifier *nt = arg;
    rill_pg *c = connect_pg();
    nt->pid = PQbackendPID(rill_pg_conn(c));
    listener_pid(c, nt->chan);
    for (int i = 0; i < nt->n; i++) {
        char payload[16];
        snprintf(payload, sizeof payload, "%d", i);
        const char *p[2] = {nt->chan, payload};
        long rc = rill_pg_exec(c, "SELECT pg_notify($1, $2)", 2, p, NULL);
        if (rc != 1) {
            rill_pg_close(c);
            return rc < 0 ? (int)rc : -EPROTO;
        }
    }
    rill_pg_close(c);
    return 0;
}

PG_TEST(pg_listen, a_thousand_notifications_all_arrive_in_order) {
    char chan[64];
    unique(chan, sizeof chan, "Chan nel"); /* needs quoting */
    rill_gen *g = rill_pg_listen(conninfo(), chan);
    cr_assert_not_null(g, "rill_pg_listen: %s", strerror(errno));
    notifier nt = {chan, 1000, 0};
    rill_task *sender = rill_spawn(send_notifications, &nt);
    int want = 0;
    rill_pg_notify *m;
    rill_foreach(m, g) {
        cr_assert_str_eq(m->channel, chan);
        if (strtol(m->payload, NULL, 10) != want)
            cr_assert_fail("payload %s where %d was expected", m->payload, want);
        expect_eq(m->pid, nt.pid);
        if (++want == 1000) break;
    }
    expect_eq(want, 1000);
    expect_eq(rill_join(sender), 0);
    rill_gen_free(g);
    return 0;
}

PG_TEST(pg_listen, a_wait_cancelled_by_a_deadline_ends_the_listener_and_its_connection) {
    char chan[64];
    unique(chan, sizeof chan, "patient");
    int fds = count_open_fds();
    rill_gen *g = rill_pg_listen(conninfo(), chan);
    cr_assert_not_null(g);
    rill_scope s;
    rill_scope_enter(&s, 0.3);
    expect_eq(rill_gen_next(g, NULL), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    expect_eq(count_open_fds(), fds); /* its connection is closed */
    expect_eq(rill_gen_next(g, NULL), 0);
    rill_gen_free(g);
    return 0;
}

typedef struct killer {
    const char *chan;
    int rc;
} killer;

static int kill_listener(void *arg) {
    killer *k = arg;
    rill_pg *c = connect_pg();
    char pid[16];
    snprintf(pid, sizeof pid, "%d", listener_pid(c, k->chan));
    const char *p[1] = {pid};
    PGresult *res = NULL;
    long n = rill_pg_exec(c, "SELECT pg_terminate_backend($1::int)", 1, p, &res);
    k->rc = n == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? 0 : -EPROTO;
    PQclear(res);
    rill_pg_close(c);
    return 0;
}

PG_TEST(pg_listen, a_killed_backend_ends_the_listener_with_econnreset) {
    char chan[64];
    unique(chan, sizeof chan, "doomed");
    rill_gen *g = rill_pg_listen(conninfo(), chan);
    cr_assert_not_null(g);
    killer k = {chan, -1};
    rill_task *t = rill_spawn(kill_listener, &k);
    rill_scope s;
    rill_scope_enter(&s, 20); /* a hang fails the test rather than block it */
    double t0 = rill_now();
    expect_eq(rill_gen_next(g, NULL), -ECONNRESET);
    double took = rill_now() - t0;
    expect_eq(rill_scope_exit(&s), 0);
    expect_eq(rill_join(t), 0);
    expect_eq(k.rc, 0);
    cr_assert(took < 10, "noticed after %.2f s", took);
    expect_eq(rill_gen_next(g, NULL), 0); /* finished */
    rill_gen_free(g);
    return 0;
}

PG_TEST(pg_listen, an_unreachable_server_ends_the_listener_with_connect_error) {
    rill_gen *g = rill_pg_listen("host=/nonexistent-dir port=1 connect_timeout=2", "chan");
    cr_assert_not_null(g);
    expect_eq(rill_gen_next(g, NULL), -ECONNREFUSED);
    rill_gen_free(g);
    /* Freed before it ever ran: nothing was opened, nothing leaks. */
    g = rill_pg_listen(conninfo(), "never");
    rill_gen_free(g);
    return 0;
}
