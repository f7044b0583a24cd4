/* rill_pg_pages: a query read one page at a time, each page a statement
 * of its own (SELECT * FROM (sql) LIMIT $n+1 OFFSET $n+2, the limit and
 * offset passed as two more parameters), so that nothing stays open on the
 * server between pages: unlike a cursor, the connection serves other
 * statements between them, and the pages see the data as it is when each
 * is read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_gen.h"

typedef struct pages {
    rill_pg *c;
    char *sql;        /* SELECT * FROM (sql) rill_page LIMIT $n+1 OFFSET $n+2 */
    char **params;    /* the caller's, then limit and offset */
    int nparams;      /* the caller's */
    int page_size;
    char limit[16], offset[24];
    PGresult *res;    /* the page lent to the consumer */
} pages;

static void pages_free(void *arg) {
    pages *p = arg;
    p->c->gens--;
    PQclear(p->res);
    free(p->sql);
    free(p->params);
    free(p);
}

static int pages_run(rill_gen *g, pages *p) {
    for (long long offset = 0;; offset += p->page_size) {
        snprintf(p->offset, sizeof p->offset, "%lld", offset);
        long got = rill_pg_exec(p->c, p->sql, p->nparams + 2, (const char *const *)p->params,
                                &p->res);
        if (got <= 0) return (int)got; /* an error, or an empty page: the end */
        int rc = rill_yield(g, p->res);
        PQclear(p->res);
        p->res = NULL;
        if (rc < 0) return rc;
        if (got < p->page_size) return 0; /* a short page is the last */
    }
}

static int pages_body(rill_gen *g, void *arg) {
    pages *p = arg;
    int rc = rill__pg_gen_primed(g);
    if (rc == 0) rc = pages_run(g, p);
    pages_free(p);
    return rc;
}

rill_gen *rill_pg_pages(rill_pg *c, const char *sql, int nparams, const char *const *params,
                        int page_size) {
    if (!c || !sql || nparams < 0 || nparams > 65533 || (nparams > 0 && !params) ||
        page_size <= 0) {
        errno = EINVAL;
        return NULL;
    }
    pages *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->c = c;
    c->gens++; /* until pages_free: c cannot be closed under it */
    p->nparams = nparams;
    p->page_size = page_size;
    size_t len = rill__pg_sql_len(sql), room = len + 96;
    p->sql = malloc(room);
    p->params = rill__pg_params_copy(nparams, params, 2);
    if (!p->sql || !p->params) {
        pages_free(p);
        errno = ENOMEM;
        return NULL;
    }
    /* The line break ends a comment (--) that would end sql. */
    memcpy(p->sql, "SELECT * FROM (", 15);
    memcpy(p->sql + 15, sql, len);
    snprintf(p->sql + 15 + len, room - 15 - len, "\n) rill_page LIMIT $%d OFFSET $%d", nparams + 1,
             nparams + 2);
    snprintf(p->limit, sizeof p->limit, "%d", page_size);
    p->params[nparams] = p->limit;
    p->params[nparams + 1] = p->offset;
    return rill__pg_gen_start(pages_body, p, "pg_pages", pages_free);
}
