/*
 * rill_pg against plain libpq, on a server of your choosing (make bench-pg
 * starts a private one):
 *
 *  (a) a stream of rows, SELECT i, md5(i::text) FROM generate_series(1, N)
 *      i (N = 10^6), read through rill_pg_cursor with prefetch 1000, and
 *      the same DECLARE / FETCH 1000 loop written with blocking PQexec
 *      calls: rounds alternate between the two in one run; rows/s of each
 *      (median of the rounds) and their ratio (the median of each round's
 *      ratio: a slow spell of a shared machine hits both sides of a round).  Then how much the
 *      process's resident memory grows while 10^5 rows stream through the
 *      cursor (sampled every 1000 rows), next to fetching them in one
 *      result with rill_pg_exec.
 *  (b) 100 queries of SELECT pg_sleep(0.01): 100 tasks sharing a pool of
 *      10 connections, against one after another on one connection.
 *
 * Usage: pg [--conninfo CONNINFO] [--rows N] [--rounds K] [--quick]
 *        (CONNINFO defaults to $RILL_PG_CONNINFO; --quick: N = 10^5)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rill.h"
#include "rill/pg.h"
#include "../tests/procfs.h"
#include "median.h"

static const char *conninfo;
static long nrows = 1000000;
#define MAX_ROUNDS 99
static int rounds = 5;
static volatile size_t sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *what, const char *why) {
    fprintf(stderr, "bench-pg: %s: %s\n", what, why);
    exit(1);
}


static char stream_sql[128];

/* (a), rill: every row's two columns touched; the rows read. */
static long rill_stream(rill_pg *c, long rss_every, long *rss_peak) {
    long rows = 0;
    RILL_GEN_AUTO rill_gen *cur = rill_pg_cursor(c, stream_sql, 0, NULL, 1000);
    if (!cur) fail("rill_pg_cursor", strerror(errno));
    rill_pg_row *r;
    rill_foreach(r, cur) {
        sink += strlen(rill_pg_get(r, 0)) + strlen(rill_pg_get(r, 1));
        if (rss_every && ++rows % rss_every == 0) {
            long kib = status_kib("VmRSS:");
            if (kib > *rss_peak) *rss_peak = kib;
        } else if (!rss_every) {
            rows++;
        }
    }
    if (rill_gen_status(cur) < 0) fail("the cursor", rill_pg_error(c));
    return rows;
}

static PGresult *must(PGconn *pc, const char *sql, ExecStatusType want) {
    PGresult *res = PQexec(pc, sql);
    if (PQresultStatus(res) != want) fail(sql, PQerrorMessage(pc));
    return res;
}

/* (a), plain blocking libpq: the same DECLARE and FETCH 1000. */
static long sync_stream(PGconn *pc) {
    char sql[200];
    long rows = 0;
    PQclear(must(pc, "BEGIN", PGRES_COMMAND_OK));
    snprintf(sql, sizeof sql, "DECLARE bench_cur NO SCROLL CURSOR FOR %s", stream_sql);
    PQclear(must(pc, sql, PGRES_COMMAND_OK));
    for (;;) {
        PGresult *res = must(pc, "FETCH 1000 FROM bench_cur", PGRES_TUPLES_OK);
        int n = PQntuples(res);
        for (int i = 0; i < n; i++)
            sink += strlen(PQgetvalue(res, i, 0)) + strlen(PQgetvalue(res, i, 1));
        rows += n;
        PQclear(res);
        if (n == 0) break;
    }
    PQclear(must(pc, "CLOSE bench_cur", PGRES_COMMAND_OK));
    PQclear(must(pc, "COMMIT", PGRES_COMMAND_OK));
    return rows;
}

static void bench_stream(void) {
    rill_pg *c;
    int rc = rill_pg_connect(conninfo, &c);
    if (rc < 0) fail("rill_pg_connect", rill_strerror(rc));
    PGconn *pc = PQconnectdb(conninfo);
    if (PQstatus(pc) != CONNECTION_OK) fail("PQconnectdb", PQerrorMessage(pc));

    /* Memory first, while the heap is still small. */
    long small = nrows < 100000 ? nrows : 100000;
    snprintf(stream_sql, sizeof stream_sql,
             "SELECT i, md5(i::text) FROM generate_series(1, %ld) i", small);
    long before = status_kib("VmRSS:"), peak = before;
    long got = rill_stream(c, 1000, &peak);
    printf("(a) memory: %ld rows through rill_pg_cursor (prefetch 1000): RSS grew by %ld KiB at "
           "most\n",
           got, peak - before);
    before = status_kib("VmRSS:");
    PGresult *all;
    long n = rill_pg_exec(c, stream_sql, 0, NULL, &all);
    if (n < 0) fail("rill_pg_exec", rill_pg_error(c));
    printf("    the same rows in one result (rill_pg_exec): RSS grew by %ld KiB\n",
           status_kib("VmRSS:") - before);
    PQclear(all);

    snprintf(stream_sql, sizeof stream_sql,
             "SELECT i, md5(i::text) FROM generate_series(1, %ld) i", nrows);
    double tr[MAX_ROUNDS], ts[MAX_ROUNDS], ratio[MAX_ROUNDS];
    printf("(a) %ld rows, DECLARE + FETCH 1000, %d rounds alternating:\n", nrows, rounds);
    for (int k = 0; k < rounds; k++) {
        double t0 = now();
        long a = rill_stream(c, 0, NULL);
        double t1 = now();
        long b = sync_stream(pc);
        double t2 = now();
        if (a != nrows || b != nrows) fail("a stream", "short");
        tr[k] = (double)nrows / (t1 - t0);
        ts[k] = (double)nrows / (t2 - t1);
        printf("    round %d: rill_pg_cursor %.0f rows/s, blocking libpq %.0f rows/s\n", k + 1,
               tr[k], ts[k]);
    }
    for (int k = 0; k < rounds; k++) ratio[k] = tr[k] / ts[k];
    double mq = median(ratio, rounds), mr = median(tr, rounds), ms = median(ts, rounds);
    printf("    median: rill_pg_cursor %.0f rows/s, blocking libpq %.0f rows/s; ratio %.2f "
           "(median of the rounds' ratios)\n",
           mr, ms, mq);
    PQfinish(pc);
    rill_pg_close(c);
}

/* (b) */
#define NQUERIES 100
#define POOL 10

static int one_sleep(void *arg) {
    rill_pg_pool *p = arg;
    rill_pg *c;
    int rc = rill_pg_pool_acquire(p, &c);
    if (rc < 0) return rc;
    long n = rill_pg_exec(c, "SELECT pg_sleep(0.01)", 0, NULL, NULL);
    rill_pg_pool_release(p, c);
    return n < 0 ? (int)n : 0;
}

static void bench_pool(void) {
    rill_pg *c;
    int rc = rill_pg_connect(conninfo, &c);
    if (rc < 0) fail("rill_pg_connect", rill_strerror(rc));
    double t0 = now();
    for (int i = 0; i < NQUERIES; i++)
        if (rill_pg_exec(c, "SELECT pg_sleep(0.01)", 0, NULL, NULL) < 0)
            fail("pg_sleep", rill_pg_error(c));
    double seq = now() - t0;
    rill_pg_close(c);

    rill_pg_pool *p = rill_pg_pool_new(conninfo, POOL);
    if (!p) fail("rill_pg_pool_new", strerror(errno));
    /* Open the pool's connections first: the bench is of the queries. */
    rill_group g;
    rill_group_init(&g);
    for (int i = 0; i < POOL; i++) rill_group_spawn(&g, one_sleep, p);
    if ((rc = rill_group_wait(&g)) < 0) fail("warming the pool", rill_strerror(rc));
    t0 = now();
    rill_group_init(&g);
    for (int i = 0; i < NQUERIES; i++)
        if ((rc = rill_group_spawn(&g, one_sleep, p)) < 0) fail("spawn", rill_strerror(rc));
    if ((rc = rill_group_wait(&g)) < 0) fail("the pooled queries", rill_strerror(rc));
    double par = now() - t0;
    rill_pg_pool_free(p);
    printf("(b) %d x SELECT pg_sleep(0.01): one after another %.3f s; %d tasks, pool of %d: "
           "%.3f s; speedup %.1fx\n",
           NQUERIES, seq, NQUERIES, POOL, par, seq / par);
}

static int amain(void *arg) {
    (void)arg;
    bench_stream();
    bench_pool();
    return 0;
}

int main(int argc, char **argv) {
    conninfo = getenv("RILL_PG_CONNINFO");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--conninfo") == 0 && i + 1 < argc) conninfo = argv[++i];
        else if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc) nrows = atol(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0) nrows = 100000;
        else {
            fprintf(stderr, "usage: %s [--conninfo CONNINFO] [--rows N] [--rounds K] [--quick]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!conninfo || nrows < 1000 || rounds < 1 || rounds > MAX_ROUNDS)
        fail("usage", "give --conninfo or RILL_PG_CONNINFO, --rows >= 1000, --rounds 1..99");
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("bench-pg: rill %s (%s switch)\n", rill_build_info()->version,
           rill_build_info()->switch_backend);
    int rc = rill_run(amain, NULL);
    return rc < 0 ? 1 : 0;
}
