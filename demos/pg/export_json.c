/*
 * Streaming export to a JSON file:
 *
 *     async with aiofiles.open(filename, 'w') as f:
 *         await f.write('[\n')
 *         first = True
 *         async with pool.acquire() as conn:
 *             async with conn.transaction():
 *                 async for record in conn.cursor(query, prefetch=1000):
 *                     if not first:
 *                         await f.write(',\n')
 *                     first = False
 *                     await f.write(json.dumps(dict(record), default=str,
 *                                              ensure_ascii=False))
 *         await f.write('\n]')
 *     print(f"Data exported to {filename}")
 *
 * Memory stays bounded whatever the table's size: one FETCH of 1000 rows
 * and a 64 KiB output buffer, written with rill_write when full.  As
 * json.dumps(default=str) does, integers are numbers and everything else
 * (numeric, timestamps) a string.
 */
#include "pgdemo.h"

#include <fcntl.h>
#include <unistd.h>

#define NORDERS 5000
#define PREFETCH 1000

struct out {
    int fd;
    int most_rows; /* the largest FETCH held at once */
    size_t len;
    long written;
    int err;
    char buf[64 * 1024];
};

static void flush(struct out *o) {
    for (size_t off = 0; off < o->len && o->err == 0;) {
        ssize_t n = rill_write(o->fd, o->buf + off, o->len - off);
        if (n < 0) o->err = (int)n;
        else off += (size_t)n;
    }
    o->written += (long)o->len;
    o->len = 0;
}

static void put(struct out *o, const char *s, size_t n) {
    while (n > 0) {
        if (o->len == sizeof o->buf) flush(o);
        size_t k = sizeof o->buf - o->len < n ? sizeof o->buf - o->len : n;
        memcpy(o->buf + o->len, s, k);
        o->len += k;
        s += k;
        n -= k;
    }
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

/* s as a JSON string; UTF-8 passes through (ensure_ascii=False). */
static void put_json_string(struct out *o, const char *s) {
    puts_(o, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\', esc[1] = (char)ch;
            put(o, esc, 2);
        } else if (ch < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            puts_(o, esc);
        } else {
            put(o, s, 1);
        }
    }
    puts_(o, "\"");
}

/* json.dumps(dict(record), default=str) */
static void put_record(struct out *o, const rill_pg_row *r) {
    puts_(o, "{");
    for (int col = 0; col < PQnfields(r->res); col++) {
        if (col) puts_(o, ", ");
        put_json_string(o, PQfname(r->res, col));
        puts_(o, ": ");
        const char *v = rill_pg_get(r, col);
        Oid type = PQftype(r->res, col);
        if (!v) puts_(o, "null");
        else if (type == 20 || type == 21 || type == 23) puts_(o, v); /* int8, int2, int4 */
        else put_json_string(o, v);
    }
    puts_(o, "}");
}

/* stream_to_json_file(c, query, filename): the rows written, or an error. */
static long stream_to_json_file(rill_pg *c, const char *query, const char *filename,
                                struct out *o) {
    o->fd = open(filename, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o->fd < 0) return -errno;
    long rows = 0;
    puts_(o, "[\n");
    RILL_GEN_AUTO rill_gen *cur = rill_pg_cursor(c, query, 0, NULL, PREFETCH);
    rill_pg_row *r;
    rill_foreach(r, cur) {
        if (r->row == 0 && PQntuples(r->res) > o->most_rows) o->most_rows = PQntuples(r->res);
        if (rows++ > 0) puts_(o, ",\n");
        put_record(o, r);
        if (o->err) break;
    }
    puts_(o, "\n]");
    flush(o);
    close(o->fd);
    int st = rill_gen_status(cur);
    if (st < 0) return st;
    if (o->err) return o->err;
    printf("Data exported to %s\n", filename);
    return rows;
}

void example_export_json(void) {
    printf("== stream_to_json_file(pool, 'SELECT * FROM orders ORDER BY created_at', "
           "'orders_export.json') ==\n");
    rill_pg_pool *pool = rill_pg_pool_new(pgd_source, 1);
    rill_pg *c = NULL;
    struct out *o = calloc(1, sizeof *o);
    char path[] = "/tmp/rill-pg-orders_export-XXXXXX.json";
    int tmp = mkstemps(path, 5);
    pgd_expect(pool && o && tmp >= 0, "a pool, a buffer and a temporary file are made");
    if (tmp >= 0) close(tmp);
    if (!pool || !o || tmp < 0 || rill_pg_pool_acquire(pool, &c) < 0) goto out;
    if (pgd_sql(c, "CREATE TABLE orders (id serial PRIMARY KEY, user_id int, amount numeric(10,2), "
                   "note text, created_at timestamptz)") < 0 ||
        pgd_sql(c, "INSERT INTO orders (user_id, amount, note, created_at) "
                   "SELECT i % 100, (i * 7 % 10000) / 100.0, "
                   "CASE WHEN i % 1000 = 0 THEN 'a \"quoted\" note' END, "
                   "timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute' "
                   "FROM generate_series(1, 5000) i") < 0)
        goto release;

    long rows = stream_to_json_file(c, "SELECT * FROM orders ORDER BY created_at", path, o);
    if (rows < 0) printf("export failed: %s: %s\n", pgd_errname((int)rows), rill_pg_error(c));
    printf("%ld records, %ld bytes written through a %zu-byte buffer; at most %d rows held "
           "at once\n",
           rows, o->written, sizeof o->buf, o->most_rows);
    pgd_expect(rows == NORDERS, "every order is exported");
    pgd_expect(o->most_rows == PREFETCH, "memory is bounded: at most 1000 rows are held at once");

    /* Read the file back: "[", one object a line with ",", "]". */
    FILE *f = fopen(path, "r");
    char line[512];
    long objects = 0;
    bool shape = f && fgets(line, sizeof line, f) && strcmp(line, "[\n") == 0;
    bool quoted = false;
    while (shape && fgets(line, sizeof line, f)) {
        if (line[0] == '{') {
            objects++;
            quoted |= strstr(line, "\"note\": \"a \\\"quoted\\\" note\"") != NULL;
            if (objects == 1) printf("first: %s", line);
        } else {
            shape = strcmp(line, "]") == 0;
            break;
        }
    }
    if (f) fclose(f);
    pgd_expect(shape && objects == NORDERS, "the file is a JSON array of 5000 objects, one a line");
    pgd_expect(quoted, "strings are escaped as JSON");
    pgd_sql(c, "DROP TABLE orders");
release:
    rill_pg_pool_release(pool, c);
out:
    if (tmp >= 0) unlink(path);
    free(o);
    rill_pg_pool_free(pool);
}
