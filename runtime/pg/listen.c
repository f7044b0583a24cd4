/* rill_pg_listen: LISTEN on a connection of the generator's own, then
 * wait on its socket and yield each notification libpq has parsed.  The
 * connection's loss (the server gone, the backend terminated) ends the body
 * with -ECONNRESET: PQconsumeInput fails when the socket reports the end,
 * which the wait for READ sees at once; it never hangs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_gen.h"

typedef struct listener {
    char *conninfo, *channel;
    rill_pg *c;
    PGnotify *note;     /* the notification lent to the consumer */
    rill_pg_notify msg;
} listener;

static void listener_free(void *arg) {
    listener *l = arg;
    if (l->note) PQfreemem(l->note);
    rill_pg_close(l->c);
    free(l->conninfo);
    free(l->channel);
    free(l);
}

/* LISTEN "channel", the name quoted as an identifier. */
static int subscribe(listener *l) {
    PGconn *pc = rill_pg_conn(l->c);
    char *id = PQescapeIdentifier(pc, l->channel, strlen(l->channel));
    if (!id) return rill__pg_fail(l->c, -EINVAL, PQerrorMessage(pc), NULL);
    size_t n = strlen(id) + sizeof "LISTEN ";
    char *sql = malloc(n);
    if (sql) {
        memcpy(sql, "LISTEN ", 7);
        memcpy(sql + 7, id, n - 7);
    }
    PQfreemem(id);
    if (!sql) return -ENOMEM;
    long r = rill_pg_exec(l->c, sql, 0, NULL, NULL);
    free(sql);
    return r < 0 ? (int)r : 0;
}

static int listen_run(rill_gen *g, listener *l) {
    int rc = rill_pg_connect(l->conninfo, &l->c);
    if (rc == 0) rc = subscribe(l);
    while (rc == 0) {
        /* PQnotifies parses what PQconsumeInput (or the LISTEN) read. */
        PGnotify *n = PQnotifies(l->c->conn);
        if (n) {
            l->note = n;
            l->msg = (rill_pg_notify){n->relname, n->extra, n->be_pid};
            rc = rill_yield(g, &l->msg);
            l->note = NULL;
            PQfreemem(n);
            continue;
        }
        rc = rill__pg_wait(l->c, RILL_READ);
        if (rc < 0) break;
        rc = 0;
        if (!PQconsumeInput(l->c->conn) || PQstatus(l->c->conn) == CONNECTION_BAD)
            rc = rill__pg_lost(l->c);
    }
    return rc;
}

static int listen_body(rill_gen *g, void *arg) {
    listener *l = arg;
    int rc = rill__pg_gen_primed(g);
    if (rc == 0) rc = listen_run(g, l);
    listener_free(l);
    return rc;
}

rill_gen *rill_pg_listen(const char *conninfo, const char *channel) {
    if (!conninfo || !channel) {
        errno = EINVAL;
        return NULL;
    }
    listener *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->conninfo = strdup(conninfo);
    l->channel = strdup(channel);
    if (!l->conninfo || !l->channel) {
        listener_free(l);
        errno = ENOMEM;
        return NULL;
    }
    char name[32];
    snprintf(name, sizeof name, "pg_listen(%.20s)", channel);
    return rill__pg_gen_start(listen_body, l, name, listener_free);
}
