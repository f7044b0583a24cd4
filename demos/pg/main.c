/*
 * pg: the asynchronous generators of a PostgreSQL tutorial (asyncpg), on
 * rill's pg module (rill/pg.h): ten examples, one file each.
 *
 *   cursor.c       async for record in conn.cursor('SELECT * FROM users')
 *   prefetch.c     conn.cursor(query, prefetch=1000)
 *   pagination.c   paginated_fetch(pool, query, page_size): pages of rows
 *   records.c      fetch_records(pool, query, batch_size): rows one by one
 *                  over batches, and a break after 10
 *   export_json.c  stream_to_json_file: a cursor into a JSON file, memory
 *                  bounded by the prefetch
 *   concurrency.c  process_with_concurrency: a semaphore over a cursor
 *   etl.c          extract (cursor) -> transform -> load (batched upserts
 *                  with rill_pg_exec_many into a second database), via pools
 *   listen.c       LISTEN/NOTIFY as a generator: a listener task, a sender
 *   aggregate.c    aggregate_by_chunks: snapshots every chunk, then totals
 *   errors.c       safe_generator: a bad query's message and SQLSTATE, and
 *                  the cleanup when the consumer breaks
 *
 * Each example creates its own tables in a database of the demo's own
 * (rill_pgdemo_PID, and rill_pgdemo_PID_target for the ETL), and drops
 * them; the databases are dropped at the end.
 *
 * The server: --conninfo "host=... dbname=..." or the environment variable
 * RILL_PG_CONNINFO.  scripts/run-demos.sh (make demo, make test) starts a
 * private one with scripts/pg-server.sh for a demo marked as below, and
 * skips it if PostgreSQL is not installed.
 *
 * Usage: pg [--conninfo CONNINFO] [--scale X]   (X multiplies every delay)
 * run-demos: needs-postgres
 */
#include "../demo.h"
#include "pgdemo.h"

#include <unistd.h>

const char *pgd_source, *pgd_target;
static const char *base_conninfo;

void pgd_expect(bool ok, const char *claim) { expect(ok, claim); }
double pgd_elapsed(double t0) { return demo_elapsed(t0); }
double pgd_scale(void) { return scale; }
const char *pgd_errname(int err) { return errname(err); }

long pgd_sql(rill_pg *c, const char *sql) {
    long rc = rill_pg_exec(c, sql, 0, NULL, NULL);
    if (rc < 0) {
        printf("SQL failed (%s): %s [%s]\n  in: %.200s\n", errname((int)rc), rill_pg_error(c),
               rill_pg_sqlstate(c), sql);
        expect(false, "a setup statement succeeds");
    }
    return rc;
}

int pgd_connect(const char *conninfo, rill_pg **out) {
    int rc = rill_pg_connect(conninfo, out);
    if (rc < 0) {
        printf("cannot connect (%s): %s\n", errname(rc), rill_strerror(rc));
        expect(false, "the demo connects to its server");
    }
    return rc;
}

/* base with its dbname replaced by db, as "key='value' ..." (base may be a
 * URI: libpq parses both). */
static char *with_dbname(const char *base, const char *db) {
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &err);
    if (!opts) {
        printf("bad conninfo: %s\n", err ? err : "out of memory");
        PQfreemem(err);
        return NULL;
    }
    size_t cap = strlen(base) * 2 + strlen(db) + 64, len = 0;
    char *s = malloc(cap);
    if (!s) return PQconninfoFree(opts), NULL;
    s[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        const char *v = strcmp(o->keyword, "dbname") == 0 ? db : o->val;
        if (!v) continue;
        len += (size_t)snprintf(s + len, cap - len, "%s%s='", len ? " " : "", o->keyword);
        for (const char *p = v; *p && len + 4 < cap; p++) {
            if (*p == '\'' || *p == '\\') s[len++] = '\\';
            s[len++] = *p;
        }
        len += (size_t)snprintf(s + len, cap - len, "'");
    }
    PQconninfoFree(opts);
    return s;
}

static int amain(void *arg) {
    (void)arg;
    rill_pg *admin;
    if (pgd_connect(base_conninfo, &admin) < 0) return 0;
    char src_db[64], dst_db[64], sql[160];
    snprintf(src_db, sizeof src_db, "rill_pgdemo_%d", (int)getpid());
    snprintf(dst_db, sizeof dst_db, "rill_pgdemo_%d_target", (int)getpid());
    char *src = with_dbname(base_conninfo, src_db), *dst = with_dbname(base_conninfo, dst_db);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", src_db);
    bool made_src = src && pgd_sql(admin, sql) >= 0;
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", dst_db);
    bool made_dst = dst && made_src && pgd_sql(admin, sql) >= 0;
    if (made_src && made_dst) {
        pgd_source = src;
        pgd_target = dst;
        void (*const examples[])(void) = {
            example_cursor,      example_prefetch,    example_pagination, example_records,
            example_export_json, example_concurrency, example_etl,        example_listen,
            example_aggregate,   example_errors,
        };
        for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++) {
            examples[i]();
            printf("\n");
        }
    }
    /* FORCE: a connection an example failed to close must not keep the
     * database alive. */
    if (made_dst) {
        snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", dst_db);
        pgd_sql(admin, sql);
    }
    if (made_src) {
        snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", src_db);
        pgd_sql(admin, sql);
    }
    rill_pg_close(admin);
    free(src);
    free(dst);
    if (made_src && made_dst)
        demo_verdict("ten asyncpg generator examples on rill_pg: cursors, pages, a JSON "
                     "export, bounded concurrency, ETL, LISTEN/NOTIFY, aggregation, errors");
    return 0;
}

int main(int argc, char **argv) {
    /* --conninfo is ours; demo_run parses the rest (--scale). */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int n = 0;
    if (!rest) return 1;
    rest[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--conninfo") == 0 && i + 1 < argc)
            base_conninfo = argv[++i];
        else
            rest[n++] = argv[i];
    }
    if (!base_conninfo) base_conninfo = getenv("RILL_PG_CONNINFO");
    if (!base_conninfo || !*base_conninfo) {
        fprintf(stderr, "usage: %s [--conninfo CONNINFO] [--scale X]\n", argv[0]);
        printf("FAILED: no server: give --conninfo or set RILL_PG_CONNINFO "
               "(scripts/pg-server.sh start DIR starts one and prints it)\n");
        free(rest);
        return 1;
    }
    int rc = demo_main(n, rest, amain);
    free(rest);
    return rc;
}
