/*
 * An extract -> transform -> load pipeline of generators between two
 * databases:
 *
 *     async def extract_users(pool):
 *         async with pool.acquire() as conn:
 *             async with conn.transaction():
 *                 async for record in conn.cursor('SELECT * FROM users ORDER BY id',
 *                                                 prefetch=500):
 *                     yield record
 *
 *     async def transform_user(record):
 *         return {'user_id': record['id'],
 *                 'full_name': record['username'].title(),
 *                 'email_domain': record['email'].split('@')[1] if '@' in record['email'] else '',
 *                 'registration_year': record['created_at'].year if record['created_at'] else None,
 *                 'processed_at': datetime.now().isoformat()}
 *
 *     async def transform_pipeline(source):
 *         async for record in source:
 *             yield await transform_user(record)
 *
 *     async def load_users(pool, data_stream, batch_size=100):
 *         batch = []
 *         async for item in data_stream:
 *             batch.append(item)
 *             if len(batch) >= batch_size:
 *                 await _insert_batch(pool, batch); batch = []
 *         if batch:
 *             await _insert_batch(pool, batch)
 *
 *     async def _insert_batch(pool, batch):
 *         async with pool.acquire() as conn:
 *             await conn.executemany('''INSERT INTO users_processed (...) VALUES ($1, ..., $5)
 *                 ON CONFLICT (user_id) DO UPDATE SET full_name = EXCLUDED.full_name,
 *                                                     processed_at = EXCLUDED.processed_at''',
 *                 [(...) for item in batch])
 *         print(f"Loaded batch of {len(batch)} records")
 *
 *     extract = extract_users(source_pool)
 *     transform = transform_pipeline(extract)
 *     await load_users(target_pool, transform)
 *     print("ETL process completed successfully")
 *
 * extract is a generator body around rill_pg_cursor, holding a connection
 * of the source pool; transform is rill_gen_map_into over it (the record
 * is read while it is still valid and turned into a struct the adapter
 * stores); load is a loop that batches and calls rill_pg_exec_many, one
 * pipelined round trip and one transaction per batch, on a connection of
 * the target pool.  The ETL is run twice: the second run updates the same
 * 1000 rows (the upsert), it adds none.
 */
#include "pgdemo.h"

#include <time.h>

#define NUSERS 1000
#define BATCH_SIZE 100

/* extract_users(pool) */
static int extract_users(rill_gen *g, void *arg) {
    rill_pg_pool *pool = arg;
    rill_pg *conn;
    int rc = rill_pg_pool_acquire(pool, &conn);
    if (rc < 0) return rc;
    {
        RILL_GEN_AUTO rill_gen *cur =
            rill_pg_cursor(conn, "SELECT * FROM users_etl ORDER BY id", 0, NULL, 500);
        rill_pg_row *r;
        rill_foreach(r, cur) {
            if ((rc = rill_yield(g, r)) < 0) break;
        }
        if (rc == 0) rc = rill_gen_status(cur);
    }
    rill_pg_pool_release(pool, conn);
    return rc == -EPIPE ? 0 : rc;
}

struct user_out {
    char user_id[16], full_name[64], email_domain[64], registration_year[8], processed_at[40];
    bool year_null;
};

/* transform_user(record) */
static int transform_user(void *in, void *out, void *ctx) {
    (void)ctx;
    const rill_pg_row *r = in;
    struct user_out *u = out;
    const PGresult *res = r->res;
    const char *id = rill_pg_get(r, PQfnumber(res, "id"));
    const char *name = rill_pg_get(r, PQfnumber(res, "username"));
    const char *email = rill_pg_get(r, PQfnumber(res, "email"));
    const char *created = rill_pg_get(r, PQfnumber(res, "created_at"));
    snprintf(u->user_id, sizeof u->user_id, "%s", id);
    /* str.title(): a letter after a non-letter is upper case, others lower */
    size_t i = 0;
    for (bool after_letter = false; name[i] && i + 1 < sizeof u->full_name; i++) {
        char ch = name[i];
        bool letter = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (letter) ch = after_letter ? (char)(ch | 0x20) : (char)(ch & ~0x20);
        u->full_name[i] = ch;
        after_letter = letter;
    }
    u->full_name[i] = '\0';
    const char *at = strchr(email, '@');
    snprintf(u->email_domain, sizeof u->email_domain, "%s", at ? at + 1 : "");
    u->year_null = created == NULL;
    snprintf(u->registration_year, sizeof u->registration_year, "%.4s", created ? created : "");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(u->processed_at, sizeof u->processed_at, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(u->processed_at + n, sizeof u->processed_at - n, ".%06ld", ts.tv_nsec / 1000);
    return 0;
}

static const char upsert[] =
    "INSERT INTO users_processed (user_id, full_name, email_domain, registration_year, "
    "processed_at) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (user_id) DO UPDATE SET full_name = EXCLUDED.full_name, "
    "processed_at = EXCLUDED.processed_at";

/* _insert_batch(pool, batch) */
static long insert_batch(rill_pg_pool *pool, const struct user_out *batch, int n) {
    const char *params[BATCH_SIZE * 5];
    for (int i = 0; i < n; i++) {
        const struct user_out *u = &batch[i];
        const char **p = &params[i * 5];
        p[0] = u->user_id, p[1] = u->full_name, p[2] = u->email_domain;
        p[3] = u->year_null ? NULL : u->registration_year, p[4] = u->processed_at;
    }
    rill_pg *conn;
    long rc = rill_pg_pool_acquire(pool, &conn);
    if (rc < 0) return rc;
    rc = rill_pg_exec_many(conn, upsert, 5, n, params);
    if (rc < 0)
        printf("executemany failed: %s [%s]\n", rill_pg_error(conn), rill_pg_sqlstate(conn));
    rill_pg_pool_release(pool, conn);
    if (rc >= 0) printf("Loaded batch of %d records\n", n);
    return rc;
}

/* load_users(pool, data_stream, batch_size): the rows upserted, or an error */
static long load_users(rill_pg_pool *pool, rill_gen *stream, int *batches) {
    static struct user_out batch[BATCH_SIZE];
    int n = 0;
    long total = 0, rc = 0;
    struct user_out *item;
    rill_foreach(item, stream) {
        batch[n++] = *item;
        if (n >= BATCH_SIZE) {
            if ((rc = insert_batch(pool, batch, n)) < 0) return rc;
            total += rc, n = 0, ++*batches;
        }
    }
    if ((rc = rill_gen_status(stream)) < 0) return rc;
    if (n > 0) {
        if ((rc = insert_batch(pool, batch, n)) < 0) return rc;
        total += rc, ++*batches;
    }
    return total;
}

/* run_etl(): the rows loaded, or an error */
static long run_etl(rill_pg_pool *source, rill_pg_pool *target, int *batches) {
    rill_gen *extract = rill_gen_new(extract_users, source);
    RILL_GEN_AUTO rill_gen *transform =
        extract ? rill_gen_map_into(extract, transform_user, sizeof(struct user_out), NULL)
                : NULL;
    if (!transform) {
        rill_gen_free(extract);
        return -ENOMEM;
    }
    long rc = load_users(target, transform, batches);
    if (rc >= 0) printf("ETL process completed successfully\n");
    return rc;
}

void example_etl(void) {
    printf("== run_etl(): extract_users -> transform_pipeline -> load_users(batch_size=%d), "
           "source_db -> target_db ==\n",
           BATCH_SIZE);
    rill_pg *src = NULL, *dst = NULL;
    rill_pg_pool *source = rill_pg_pool_new(pgd_source, 2);
    rill_pg_pool *target = rill_pg_pool_new(pgd_target, 2);
    pgd_expect(source && target, "two pools are made");
    if (!source || !target || pgd_connect(pgd_source, &src) < 0 ||
        pgd_connect(pgd_target, &dst) < 0)
        goto out;
    if (pgd_sql(src, "CREATE TABLE users_etl (id serial PRIMARY KEY, username text NOT NULL, "
                     "email text NOT NULL, created_at timestamptz)") < 0 ||
        pgd_sql(src, "INSERT INTO users_etl (username, email, created_at) "
                     "SELECT 'john smith_' || i, "
                     "CASE WHEN i % 10 = 0 THEN 'no-address' ELSE 'user' || i || '@example' || "
                     "i % 3 || '.org' END, "
                     "CASE WHEN i % 7 = 0 THEN NULL "
                     "ELSE timestamptz '2019-06-01 12:00:00+00' + i * interval '1 day' END "
                     "FROM generate_series(1, 1000) i") < 0 ||
        pgd_sql(dst, "CREATE TABLE users_processed (user_id int PRIMARY KEY, full_name text, "
                     "email_domain text, registration_year int, processed_at timestamp)") < 0)
        goto out;

    int batches = 0;
    long loaded = run_etl(source, target, &batches);
    if (loaded < 0) printf("ETL failed: %s\n", pgd_errname((int)loaded));
    pgd_expect(loaded == NUSERS && batches == NUSERS / BATCH_SIZE,
               "1000 users are loaded in 10 batches of 100");

    /* What the target holds, computed by the target. */
    PGresult *res = NULL;
    long n = rill_pg_exec(dst,
                          "SELECT count(*), "
                          "count(*) FILTER (WHERE registration_year IS NULL), "
                          "count(*) FILTER (WHERE email_domain = ''), "
                          "(SELECT full_name || '|' || email_domain || '|' || registration_year "
                          " FROM users_processed WHERE user_id = 1), "
                          "max(processed_at) FROM users_processed",
                          0, NULL, &res);
    bool ok = n == 1 && strcmp(PQgetvalue(res, 0, 0), "1000") == 0 &&
              strcmp(PQgetvalue(res, 0, 1), "142") == 0 &&
              strcmp(PQgetvalue(res, 0, 2), "100") == 0 &&
              strcmp(PQgetvalue(res, 0, 3), "John Smith_1|example1.org|2019") == 0;
    if (n == 1)
        printf("target: %s rows, %s without a year, %s without a domain; user 1: %s\n",
               PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
               PQgetvalue(res, 0, 3));
    pgd_expect(ok, "the target holds the transformed users (title case, domain, year or NULL)");
    char first_at[40] = "";
    if (n == 1) snprintf(first_at, sizeof first_at, "%s", PQgetvalue(res, 0, 4));
    PQclear(res);

    /* Again: ON CONFLICT DO UPDATE, no new rows. */
    batches = 0;
    printf("-- again: the upsert updates the rows it loaded --\n");
    loaded = run_etl(source, target, &batches);
    res = NULL;
    n = rill_pg_exec(dst, "SELECT count(*), max(processed_at) FROM users_processed", 0, NULL,
                     &res);
    pgd_expect(loaded == NUSERS && n == 1 && strcmp(PQgetvalue(res, 0, 0), "1000") == 0 &&
                   strcmp(PQgetvalue(res, 0, 1), first_at) > 0,
               "a second run updates the 1000 rows (processed_at moves) and adds none");
    PQclear(res);
    pgd_sql(dst, "DROP TABLE users_processed");
    pgd_sql(src, "DROP TABLE users_etl");
out:
    rill_pg_close(src);
    rill_pg_close(dst);
    rill_pg_pool_free(source);
    rill_pg_pool_free(target);
}
