/*
 * Aggregation in chunks, yielding snapshots:
 *
 *     async def aggregate_by_chunks(pool, query, group_key, agg_field, chunk_size=1000):
 *         aggregates = defaultdict(lambda: {'count': 0, 'sum': 0, 'min': None, 'max': None})
 *         processed = 0
 *         async with pool.acquire() as conn:
 *             async with conn.transaction():
 *                 async for record in conn.cursor(query, prefetch=chunk_size):
 *                     key, value = record[group_key], record[agg_field]
 *                     if value is not None:
 *                         ... count, sum, min, max ...
 *                     processed += 1
 *                     if processed % chunk_size == 0:
 *                         yield {'processed': processed, 'groups': len(aggregates),
 *                                'snapshot': dict(aggregates)}
 *         yield {'processed': processed, 'groups': len(aggregates), 'final': True,
 *                'results': {key: {**agg, 'avg': agg['sum'] / agg['count'] ...}}}
 *
 *     async for result in aggregate_by_chunks(pool, 'SELECT category_id, price FROM products',
 *                                             group_key='category_id', agg_field='price'):
 *         if result.get('final'):
 *             print("\nFinal results:")
 *             for category, stats in result['results'].items():
 *                 print(f"  Category {category}: count={stats['count']}, "
 *                       f"avg={stats['avg']:.2f}, min={stats['min']}, max={stats['max']}")
 *         else:
 *             print(f"Processed: {result['processed']}, groups: {result['groups']}")
 *
 * Prices are numeric(10,2): summed here in cents, exactly.  The groups are
 * kept in a small table indexed by category (the demo's categories are
 * 1..NCAT).  The final figures are checked against the server's own
 * GROUP BY.
 */
#include "pgdemo.h"

#define NPRODUCTS 10000
#define NCAT 5
#define CHUNK 1000

struct agg {
    long count, sum, min, max; /* cents */
};

struct result {
    long processed;
    int groups;
    bool final;
    const struct agg *by_cat; /* [NCAT + 1], the snapshot or the results */
};

struct agg_args {
    rill_pg_pool *pool;
    const char *query;
    int chunk_size;
};

static long cents(const char *s) {
    long whole = atol(s);
    const char *dot = strchr(s, '.');
    long frac = dot ? (dot[1] - '0') * 10 + (dot[2] ? dot[2] - '0' : 0) : 0;
    return whole * 100 + (s[0] == '-' ? -frac : frac);
}

static int aggregate_by_chunks(rill_gen *g, void *arg) {
    struct agg_args *a = arg;
    struct agg by_cat[NCAT + 1] = {{0}};
    struct result out = {0, 0, false, by_cat};
    rill_pg *conn;
    int rc = rill_pg_pool_acquire(a->pool, &conn);
    if (rc < 0) return rc;
    {
        RILL_GEN_AUTO rill_gen *cur = rill_pg_cursor(conn, a->query, 0, NULL, a->chunk_size);
        rill_pg_row *r;
        rill_foreach(r, cur) {
            const char *key = rill_pg_get(r, 0), *value = rill_pg_get(r, 1);
            int k = key ? atoi(key) : 0;
            if (k < 1 || k > NCAT) {
                rc = -EINVAL; /* not a category of this demo */
                break;
            }
            if (value) {
                struct agg *s = &by_cat[k];
                long v = cents(value);
                if (s->count == 0) out.groups++;
                if (s->count == 0 || v < s->min) s->min = v;
                if (s->count == 0 || v > s->max) s->max = v;
                s->count++;
                s->sum += v;
            }
            if (++out.processed % a->chunk_size == 0 && (rc = rill_yield(g, &out)) < 0) break;
        }
        if (rc == 0) rc = rill_gen_status(cur);
    }
    rill_pg_pool_release(a->pool, conn);
    if (rc < 0) return rc == -EPIPE ? 0 : rc;
    out.final = true;
    rc = rill_yield(g, &out);
    return rc == -EPIPE ? 0 : rc;
}

void example_aggregate(void) {
    printf("== aggregate_by_chunks(pool, 'SELECT category_id, price FROM products', "
           "group_key='category_id', agg_field='price') ==\n");
    rill_pg_pool *pool = rill_pg_pool_new(pgd_source, 1);
    rill_pg *c = NULL;
    pgd_expect(pool != NULL, "a pool is made");
    if (!pool || rill_pg_pool_acquire(pool, &c) < 0) goto out;
    int setup = pgd_sql(c, "CREATE TABLE products (id serial PRIMARY KEY, category_id int, "
                           "price numeric(10,2))") < 0 ||
                pgd_sql(c, "INSERT INTO products (category_id, price) "
                           "SELECT 1 + i % 5, CASE WHEN i % 97 = 0 THEN NULL "
                           "ELSE (i * 7919 % 100000) / 100.0 END "
                           "FROM generate_series(1, 10000) i") < 0;
    rill_pg_pool_release(pool, c);
    if (setup) goto out;

    struct agg_args a = {pool, "SELECT category_id, price FROM products", CHUNK};
    int snapshots = 0;
    bool monotonic = true, final = false;
    struct agg results[NCAT + 1];
    long last = 0;
    {
        RILL_GEN_AUTO rill_gen *gen = rill_gen_new(aggregate_by_chunks, &a);
        struct result *r;
        rill_foreach(r, gen) {
            if (r->final) {
                final = true;
                memcpy(results, r->by_cat, sizeof results);
                printf("\nFinal results:\n");
                for (int k = 1; k <= NCAT; k++) {
                    const struct agg *s = &r->by_cat[k];
                    if (s->count == 0) continue;
                    printf("  Category %d: count=%ld, avg=%.2f, min=%ld.%02ld, max=%ld.%02ld\n",
                           k, s->count, (double)s->sum / s->count / 100, s->min / 100,
                           s->min % 100, s->max / 100, s->max % 100);
                }
            } else {
                snapshots++;
                monotonic &= r->processed == last + CHUNK;
                last = r->processed;
                printf("Processed: %ld, groups: %d\n", r->processed, r->groups);
            }
        }
        pgd_expect(rill_gen_status(gen) == 0 && final, "the generator ends with the totals");
    }
    pgd_expect(snapshots == NPRODUCTS / CHUNK && monotonic,
               "a snapshot every 1000 rows: 10 of them");

    /* The server's own figures. */
    if (rill_pg_pool_acquire(pool, &c) < 0) goto out;
    PGresult *res = NULL;
    long n = rill_pg_exec(c,
                          "SELECT category_id, count(price), (sum(price) * 100)::bigint, "
                          "(min(price) * 100)::bigint, (max(price) * 100)::bigint "
                          "FROM products GROUP BY 1 ORDER BY 1",
                          0, NULL, &res);
    bool same = final && n == NCAT;
    for (int i = 0; same && i < n; i++) {
        const struct agg *s = &results[atoi(PQgetvalue(res, i, 0))];
        same = s->count == atol(PQgetvalue(res, i, 1)) && s->sum == atol(PQgetvalue(res, i, 2)) &&
               s->min == atol(PQgetvalue(res, i, 3)) && s->max == atol(PQgetvalue(res, i, 4));
    }
    PQclear(res);
    pgd_expect(same, "count, sum, min and max of each category match the server's GROUP BY");
    pgd_sql(c, "DROP TABLE products");
    rill_pg_pool_release(pool, c);
out:
    rill_pg_pool_free(pool);
}
