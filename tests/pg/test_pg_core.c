/* The pg module's connections, statements, cancellation and pool, against
 * the server RILL_PG_CONNINFO names (make test-pg starts a private one).
 * Tests that read server-wide state look only at their own backends. */
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "../helpers.h"
#include "rill/pg.h"

static const char *conninfo(void) {
    const char *ci = getenv("RILL_PG_CONNINFO");
    cr_assert(ci && *ci, "set RILL_PG_CONNINFO (make test-pg starts a server)");
    return ci;
}

static rill_pg *connect_ok(void) {
    rill_pg *c;
    int r = rill_pg_connect(conninfo(), &c);
    cr_assert_eq(r, 0, "connect: %s: %s", rill_strerror(r), rill_pg_error(NULL));
    return c;
}

/* The first column of sql's first row, as a number. */
static long scalar(rill_pg *c, const char *sql, int nparams, const char *const *params) {
    PGresult *res;
    long n = rill_pg_exec(c, sql, nparams, params, &res);
    cr_assert_eq(n, 1, "%s: %ld (%s)", sql, n, rill_pg_error(c));
    long v = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

FIBER_TEST(pg, exec_with_params_returns_rows_and_counts) {
    rill_pg *c = connect_ok();
    PGresult *res;
    const char *params[] = {"41", "hi"};
    expect_eq(rill_pg_exec(c, "SELECT $1::int + 1, $2::text, NULL::text", 2, params, &res), 1);
    rill_pg_row row = {res, 0};
    cr_assert_str_eq(rill_pg_get(&row, 0), "42");
    cr_assert_str_eq(rill_pg_get(&row, 1), "hi");
    cr_assert_null(rill_pg_get(&row, 2));
    PQclear(res);
    expect_eq(rill_pg_exec(c, "CREATE TEMP TABLE t (x int)", 0, NULL, NULL), 0);
    expect_eq(rill_pg_exec(c, "INSERT INTO t SELECT generate_series(1, 3)", 0, NULL, NULL), 3);
    expect_eq(rill_pg_exec(c, "SELECT x FROM t ORDER BY x", 0, NULL, &res), 3);
    cr_assert_str_eq(PQgetvalue(res, 2, 0), "3");
    PQclear(res);
    cr_assert_str_eq(rill_pg_error(c), "");
    rill_pg_close(c);
    return 0;
}

FIBER_TEST(pg, bad_sql_is_eio_with_the_servers_sqlstate_and_message) {
    rill_pg *c = connect_ok();
    PGresult *res = (PGresult *)1;
    expect_eq(rill_pg_exec(c, "SELEC 1", 0, NULL, &res), -EIO);
    cr_assert_null(res);
    cr_assert_str_eq(rill_pg_sqlstate(c), "42601");
    cr_assert(strstr(rill_pg_error(c), "syntax error"), "error: %s", rill_pg_error(c));
    expect_eq(rill_pg_exec(c, "SELECT * FROM no_such_table", 0, NULL, NULL), -EIO);
    cr_assert_str_eq(rill_pg_sqlstate(c), "42P01");
    cr_assert(strstr(rill_pg_error(c), "no_such_table"), "error: %s", rill_pg_error(c));
    expect_eq(scalar(c, "SELECT 7", 0, NULL), 7);
    cr_assert_str_eq(rill_pg_sqlstate(c), "");
    rill_pg_close(c);
    return 0;
}

FIBER_TEST(pg, bad_conninfo_fails_at_once_with_a_message) {
    rill_pg *c = (rill_pg *)1;
    double t0 = rill_now();
    expect_eq(rill_pg_connect("host=/tmp no_such_option=1", &c), -EINVAL);
    cr_assert_null(c);
    cr_assert(strstr(rill_pg_error(NULL), "no_such_option"), "error: %s", rill_pg_error(NULL));
    cr_assert_lt(rill_now() - t0, 1.0);
    return 0;
}

FIBER_TEST(pg, missing_server_fails_fast) {
    char dir[] = "/tmp/rill-pg-none.XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char ci[128];
    snprintf(ci, sizeof ci, "host=%s user=postgres dbname=postgres", dir);
    rill_pg *c;
    double t0 = rill_now();
    expect_eq(rill_pg_connect(ci, &c), -ECONNREFUSED);
    cr_assert(strlen(rill_pg_error(NULL)) > 0);
    /* A host name goes through the lookup on the pool first. */
    expect_eq(rill_pg_connect("host=localhost port=1 user=postgres", &c), -ECONNREFUSED);
    cr_assert(strstr(rill_pg_error(NULL), "refused"), "error: %s", rill_pg_error(NULL));
    cr_assert_lt(rill_now() - t0, 2.0);
    rmdir(dir);
    return 0;
}

FIBER_TEST(pg, connect_timeout_bounds_a_server_that_never_answers) {
    /* A socket that listens and never accepts: the connect is queued, and
     * the startup packet never answered. */
    char dir[] = "/tmp/rill-pg-mute.XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/.s.PGSQL.5432", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 4) == 0);
    char ci[160];
    snprintf(ci, sizeof ci, "host=%s user=postgres connect_timeout=0.3", dir);
    rill_pg *c;
    double t0 = rill_now();
    expect_eq(rill_pg_connect(ci, &c), -ETIMEDOUT);
    cr_assert(rill_now() - t0 > 0.25 && rill_now() - t0 < 2.0, "%.2f s", rill_now() - t0);
    cr_assert_null(c);
    close(fd);
    unlink(sa.sun_path);
    rmdir(dir);
    return 0;
}

FIBER_TEST(pg, cancelled_query_stops_on_the_server_and_the_connection_stays_usable) {
    rill_pg *c = connect_ok(), *watch = connect_ok();
    char pid[16];
    snprintf(pid, sizeof pid, "%d", PQbackendPID(rill_pg_conn(c)));
    const char *params[] = {pid};
    double t0 = rill_now();
    rill_scope s;
    rill_scope_enter(&s, 0.2);
    expect_eq(rill_pg_exec(c, "SELECT pg_sleep(10)", 0, NULL, NULL), -ECANCELED);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    cr_assert_lt(rill_now() - t0, 2.0);
    cr_assert_str_eq(rill_pg_error(c), "canceled");
    expect_eq(scalar(watch,
                     "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int"
                     " AND state = 'active' AND query LIKE '%pg_sleep%'",
                     1, params),
              0);
    expect_eq(scalar(c, "SELECT 1", 0, NULL), 1);
    rill_pg_close(c);
    rill_pg_close(watch);
    return 0;
}

FIBER_TEST(pg, begin_commit_and_rollback) {
    rill_pg *c = connect_ok();
    expect_eq(rill_pg_exec(c, "CREATE TEMP TABLE t (x int)", 0, NULL, NULL), 0);
    expect_eq(rill_pg_begin(c), 0);
    expect_eq(rill_pg_exec(c, "INSERT INTO t VALUES (1)", 0, NULL, NULL), 1);
    expect_eq(rill_pg_rollback(c), 0);
    expect_eq(scalar(c, "SELECT count(*) FROM t", 0, NULL), 0);
    expect_eq(rill_pg_begin(c), 0);
    expect_eq(rill_pg_exec(c, "INSERT INTO t VALUES (1)", 0, NULL, NULL), 1);
    expect_eq(rill_pg_commit(c), 0);
    expect_eq(scalar(c, "SELECT count(*) FROM t", 0, NULL), 1);
    /* A transaction that failed is rolled back by its COMMIT. */
    expect_eq(rill_pg_begin(c), 0);
    expect_eq(rill_pg_exec(c, "INSERT INTO t VALUES (2)", 0, NULL, NULL), 1);
    expect_eq(rill_pg_exec(c, "SELEC", 0, NULL, NULL), -EIO);
    expect_eq(rill_pg_commit(c), -EIO);
    cr_assert_str_eq(rill_pg_sqlstate(c), "25P02");
    expect_eq(scalar(c, "SELECT count(*) FROM t", 0, NULL), 1);
    rill_pg_close(c);
    return 0;
}

FIBER_TEST(pg, copy_is_refused_and_the_connection_stays_usable) {
    rill_pg *c = connect_ok();
    expect_eq(rill_pg_exec(c, "CREATE TEMP TABLE t (x int)", 0, NULL, NULL), 0);
    expect_eq(rill_pg_exec(c, "COPY t FROM STDIN", 0, NULL, NULL), -EIO);
    cr_assert(strstr(rill_pg_error(c), "COPY"), "error: %s", rill_pg_error(c));
    expect_eq(rill_pg_exec(c, "COPY (SELECT generate_series(1, 5000)) TO STDOUT", 0, NULL, NULL),
              -EIO);
    expect_eq(scalar(c, "SELECT 1", 0, NULL), 1);
    rill_pg_close(c);
    return 0;
}

static int slow(void *arg) {
    long r = rill_pg_exec(arg, "SELECT pg_sleep(0.3)", 0, NULL, NULL);
    return r < 0 ? (int)r : 0;
}

FIBER_TEST(pg, slow_queries_on_two_connections_overlap) {
    rill_pg *a = connect_ok(), *b = connect_ok();
    double t0 = rill_now();
    rill_task *ta = rill_spawn(slow, a), *tb = rill_spawn(slow, b);
    expect_eq(rill_join(ta), 0);
    expect_eq(rill_join(tb), 0);
    cr_assert_lt(rill_now() - t0, 0.5);
    rill_pg_close(a);
    rill_pg_close(b);
    return 0;
}

FIBER_TEST(pg, a_connection_in_use_by_another_fiber_is_ebusy) {
    rill_pg *c = connect_ok();
    rill_task *t = rill_spawn(slow, c);
    expect_eq(rill_sleep(0.05), 0);
    expect_eq(rill_pg_exec(c, "SELECT 1", 0, NULL, NULL), -EBUSY);
    expect_eq(rill_join(t), 0);
    expect_eq(scalar(c, "SELECT 1", 0, NULL), 1);
    rill_pg_close(c);
    return 0;
}

/* A pool under 200 fibers: how many connections are out at once. */
typedef struct crowd {
    rill_pg_pool *pool;
    int out, max_out, done;
    int pids[64], npids;
} crowd;

static int crowd_member(void *arg) {
    crowd *w = arg;
    rill_pg *c;
    int r = rill_pg_pool_acquire(w->pool, &c);
    if (r < 0) return r;
    if (++w->out > w->max_out) w->max_out = w->out;
    int pid = PQbackendPID(rill_pg_conn(c)), i = 0;
    while (i < w->npids && w->pids[i] != pid) i++;
    if (i == w->npids && w->npids < 64) w->pids[w->npids++] = pid;
    long n = rill_pg_exec(c, "SELECT pg_sleep(0.01)", 0, NULL, NULL);
    w->out--;
    rill_pg_pool_release(w->pool, c);
    w->done++;
    return n < 0 ? (int)n : 0;
}

FIBER_TEST(pg, pool_of_ten_never_opens_more_than_ten_under_200_fibers) {
    char ci[512], app[32];
    snprintf(app, sizeof app, "rill_pool_%d", (int)getpid());
    snprintf(ci, sizeof ci, "%s application_name=%s", conninfo(), app);
    crowd w = {.pool = rill_pg_pool_new(ci, 10)};
    cr_assert_not_null(w.pool);
    rill_group g;
    rill_group_init(&g);
    for (int i = 0; i < 200; i++) expect_eq(rill_group_spawn(&g, crowd_member, &w), 0);
    expect_eq(rill_group_wait(&g), 0);
    expect_eq(w.done, 200);
    cr_assert_leq(w.max_out, 10);
    cr_assert_leq(w.npids, 10);
    rill_pg *watch = connect_ok();
    const char *params[] = {app};
    long open = scalar(watch, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                       1, params);
    cr_assert(open >= 1 && open <= 10, "%ld connections open", open);
    rill_pg_close(watch);
    rill_pg_pool_free(w.pool);
    return 0;
}

static int acquire_one(void *arg) {
    rill_pg *c;
    int r = rill_pg_pool_acquire(arg, &c);
    if (r == 0) rill_pg_pool_release(arg, c);
    return r;
}

FIBER_TEST(pg, cancelled_acquire_takes_nothing) {
    rill_pg_pool *p = rill_pg_pool_new(conninfo(), 1);
    rill_pg *c, *again;
    expect_eq(rill_pg_pool_acquire(p, &c), 0);
    rill_scope s;
    rill_scope_enter(&s, 0.1);
    expect_eq(rill_pg_pool_acquire(p, &again), -ECANCELED);
    cr_assert_null(again);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    rill_task *waiter = rill_spawn(acquire_one, p);
    expect_eq(rill_yield_now(), 0);
    rill_pg_pool_release(p, c);
    expect_eq(rill_join(waiter), 0);
    expect_eq(rill_pg_pool_acquire(p, &again), 0);
    cr_assert_eq(again, c, "the one connection is reused");
    rill_pg_pool_release(p, again);
    rill_pg_pool_free(p);
    return 0;
}

/* Giving a connection back twice would list it twice as idle and raise the
 * pool's bound: the second release is refused (EINVAL).  Freeing a pool
 * whose connections are still out (or awaited) would leave their release
 * with freed memory: refused (EBUSY) until they are back. */
FIBER_TEST(pg, a_second_release_and_freeing_a_pool_in_use_are_refused) {
    rill_pg_pool *p = rill_pg_pool_new(conninfo(), 1);
    rill_pg *c, *again;
    expect_eq(rill_pg_pool_acquire(p, &c), 0);
    errno = 0;
    rill_pg_pool_free(p);
    expect_eq(errno, EBUSY);
    rill_pg_pool_release(p, c);
    errno = 0;
    rill_pg_pool_release(p, c);
    expect_eq(errno, EINVAL);
    expect_eq(rill_pg_pool_acquire(p, &c), 0);
    rill_scope s;
    rill_scope_enter(&s, 0.05);
    expect_eq(rill_pg_pool_acquire(p, &again), -ECANCELED); /* still a pool of one */
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    rill_pg_pool_release(p, c);
    rill_pg_pool_free(p);
    return 0;
}

/* A connection the pool did not hand out (one of rill_pg_connect's, or
 * another pool's) would raise its bound and be handed out as its own:
 * refused (EINVAL), the caller keeps it. */
FIBER_TEST(pg, releasing_a_connection_of_another_pool_is_refused) {
    rill_pg_pool *p = rill_pg_pool_new(conninfo(), 1), *q = rill_pg_pool_new(conninfo(), 1);
    rill_pg *mine, *theirs, *plain = connect_ok(), *again;
    expect_eq(rill_pg_pool_acquire(p, &mine), 0);
    expect_eq(rill_pg_pool_acquire(q, &theirs), 0);
    errno = 0;
    rill_pg_pool_release(p, theirs);
    expect_eq(errno, EINVAL);
    errno = 0;
    rill_pg_pool_release(p, plain);
    expect_eq(errno, EINVAL);
    rill_pg_pool_release(p, mine);
    rill_scope s;
    rill_scope_enter(&s, 0.05);
    expect_eq(rill_pg_pool_acquire(p, &again), 0);
    cr_assert_eq(again, mine, "p holds its own connection only");
    rill_pg *more = NULL;
    expect_eq(rill_pg_pool_acquire(p, &more), -ECANCELED); /* still a pool of one */
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    rill_pg_pool_release(p, again);
    rill_pg_pool_release(q, theirs);
    rill_pg_close(plain);
    rill_pg_pool_free(p);
    rill_pg_pool_free(q);
    return 0;
}

/* A connection given back to its pool is the pool's: closing it then would
 * leave the pool handing out freed memory.  Refused (EINVAL). */
FIBER_TEST(pg, closing_a_released_connection_is_refused) {
    rill_pg_pool *p = rill_pg_pool_new(conninfo(), 1);
    rill_pg *c, *again;
    expect_eq(rill_pg_pool_acquire(p, &c), 0);
    rill_pg_pool_release(p, c);
    errno = 0;
    rill_pg_close(c);
    expect_eq(errno, EINVAL);
    expect_eq(rill_pg_pool_acquire(p, &again), 0);
    cr_assert_eq(again, c, "the idle connection is handed out again");
    expect_eq(scalar(again, "SELECT 1", 0, NULL), 1);
    rill_pg_pool_release(p, again);
    rill_pg_pool_free(p);
    return 0;
}
FIBER_TEST(pg, release_rolls_back_an_open_transaction_and_replaces_a_lost_connection) {
    rill_pg_pool *p = rill_pg_pool_new(conninfo(), 1);
    rill_pg *c;
    expect_eq(rill_pg_pool_acquire(p, &c), 0);
    expect_eq(rill_pg_exec(c, "CREATE TEMP TABLE t (x int)", 0, NULL, NULL), 0);
    expect_eq(rill_pg_begin(c), 0);
    expect_eq(rill_pg_exec(c, "INSERT INTO t VALUES (1)", 0, NULL, NULL), 1);
    rill_pg_pool_release(p, c);
    expect_eq(rill_pg_pool_acquire(p, &c), 0);
    expect_eq(PQtransactionStatus(rill_pg_conn(c)), PQTRANS_IDLE);
    expect_eq(scalar(c, "SELECT count(*) FROM t", 0, NULL), 0);
    /* Also when the releasing fiber is cancelled: the ROLLBACK is shielded. */
    rill_pg *same = c;
    expect_eq(rill_pg_begin(c), 0);
    expect_eq(rill_pg_exec(c, "INSERT INTO t VALUES (1)", 0, NULL, NULL), 1);
    rill_scope s;
    rill_scope_enter(&s, 0);
    rill_pg_pool_release(p, c);
    expect_eq(rill_scope_exit(&s), -ETIMEDOUT);
    expect_eq(rill_pg_pool_acquire(p, &c), 0);
    cr_assert_eq(c, same, "the connection was kept");
    expect_eq(scalar(c, "SELECT count(*) FROM t", 0, NULL), 0);
    /* The server ends the session: -ECONNRESET, and the pool reconnects. */
    char pid[16];
    snprintf(pid, sizeof pid, "%d", PQbackendPID(rill_pg_conn(c)));
    const char *params[] = {pid};
    rill_pg *admin = connect_ok();
    expect_eq(scalar(admin, "SELECT pg_terminate_backend($1::int)::int", 1, params), 1);
    rill_pg_close(admin);
    expect_eq(rill_pg_exec(c, "SELECT 1", 0, NULL, NULL), -ECONNRESET);
    expect_eq(rill_pg_exec(c, "SELECT 1", 0, NULL, NULL), -ECONNRESET);
    rill_pg_pool_release(p, c);
    expect_eq(rill_pg_pool_acquire(p, &c), 0);
    cr_assert_neq(PQbackendPID(rill_pg_conn(c)), atoi(pid));
    expect_eq(scalar(c, "SELECT 1", 0, NULL), 1);
    rill_pg_pool_release(p, c);
    rill_pg_pool_free(p);
    return 0;
}

FIBER_TEST(pg, null_arguments_are_einval) {
    rill_pg *c = connect_ok(), *none = (rill_pg *)1;
    expect_eq(rill_pg_connect(NULL, &none), -EINVAL);
    cr_assert_null(none);
    expect_eq(rill_pg_connect("host=/tmp", NULL), -EINVAL);
    expect_eq(rill_pg_exec(NULL, "SELECT 1", 0, NULL, NULL), -EINVAL);
    expect_eq(rill_pg_exec(c, NULL, 0, NULL, NULL), -EINVAL);
    expect_eq(rill_pg_exec(c, "SELECT $1", 1, NULL, NULL), -EINVAL);
    expect_eq(rill_pg_exec(c, "SELECT 1", -1, NULL, NULL), -EINVAL);
    expect_eq(rill_pg_begin(NULL), -EINVAL);
    expect_eq(rill_pg_commit(NULL), -EINVAL);
    expect_eq(rill_pg_rollback(NULL), -EINVAL);
    cr_assert_null(rill_pg_conn(NULL));
    cr_assert_str_eq(rill_pg_sqlstate(NULL), "");
    cr_assert_null(rill_pg_pool_new(NULL, 1));
    cr_assert_null(rill_pg_pool_new("host=/tmp", 0));
    expect_eq(rill_pg_pool_acquire(NULL, &none), -EINVAL);
    rill_pg_pool_release(NULL, NULL);
    rill_pg_pool_free(NULL);
    rill_pg_close(NULL);
    expect_eq(rill_pg_get(NULL, 0) == NULL, 1);
    expect_eq(scalar(c, "SELECT 1", 0, NULL), 1);
    rill_pg_close(c);
    return 0;
}

/* The protocol carries at most 65535 parameters: more is bad input
 * (-EINVAL, EINVAL) as for pages and exec_many, not a server error. */
FIBER_TEST(pg, more_than_65535_params_are_einval) {
    rill_pg *c = connect_ok();
    const char **params = calloc(65536, sizeof *params);
    cr_assert_not_null(params);
    expect_eq(rill_pg_exec(c, "SELECT 1", 65536, params, NULL), -EINVAL);
    errno = 0;
    cr_assert_null(rill_pg_cursor(c, "SELECT 1", 65536, params, 10));
    expect_eq(errno, EINVAL);
    free(params);
    expect_eq(scalar(c, "SELECT 1", 0, NULL), 1);
    rill_pg_close(c);
    return 0;
}
