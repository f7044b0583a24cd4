/* Connections: connect without blocking the loop (name lookup on the
 * thread pool, then PQconnectStartParams and PQconnectPoll), close, and
 * the accessors. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "pg_internal.h"

/* The message of the calling thread's last failed rill_pg_connect. */
static _Thread_local char connect_error[256];

static int connect_fail(int err, const char *msg) {
    snprintf(connect_error, sizeof connect_error, "%s", msg ? msg : "");
    /* libpq's messages end with a newline: people print their own. */
    size_t n = strlen(connect_error);
    while (n && connect_error[n - 1] == '\n') connect_error[--n] = 0;
    return err;
}

/* One host name to look up on a pool thread (getaddrinfo blocks). */
typedef struct lookup {
    char *hosts; /* host=, a comma-separated list */
    char addrs[512]; /* hostaddr= to pass, the same length of list */
    char error[160];
} lookup;

static void lookup_free(void *arg) {
    lookup *l = arg;
    free(l->hosts);
    free(l);
}

/* Is h a Unix-socket directory (or abstract socket) or an address already? */
static bool needs_no_lookup(const char *h) {
    unsigned char buf[sizeof(struct in6_addr)];
    return !*h || h[0] == '/' || h[0] == '@' || inet_pton(AF_INET, h, buf) == 1 ||
           inet_pton(AF_INET6, h, buf) == 1;
}

static int lookup_run(void *arg) {
    lookup *l = arg;
    size_t used = 0;
    char *save = NULL;
    for (char *h = strtok_r(l->hosts, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
        char addr[INET6_ADDRSTRLEN] = "";
        if (!needs_no_lookup(h)) {
            struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
            int r = getaddrinfo(h, NULL, &hints, &ai);
            if (r) {
                snprintf(l->error, sizeof l->error, "could not translate host name \"%s\": %s", h,
                         gai_strerror(r));
                return -ECONNREFUSED;
            }
            const void *a = ai->ai_family == AF_INET
                                ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                                : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
            inet_ntop(ai->ai_family, a, addr, sizeof addr);
            freeaddrinfo(ai);
        }
        int n = snprintf(l->addrs + used, sizeof l->addrs - used, "%s%s", used ? "," : "", addr);
        if (n < 0 || (size_t)n >= sizeof l->addrs - used) return -ENAMETOOLONG;
        /* An empty element (a socket) stays empty: hostaddr's list matches host's. */
        used += (size_t)n;
    }
    return 0;
}

/* Resolve host (a list) into hostaddr on the pool; *addrs malloc'd, or NULL
 * when no element needs a lookup. */
static int resolve(const char *host, char **addrs) {
    *addrs = NULL;
    bool any = false;
    char *copy = strdup(host), *save = NULL;
    if (!copy) return -ENOMEM;
    for (char *h = strtok_r(copy, ",", &save); h; h = strtok_r(NULL, ",", &save))
        any |= !needs_no_lookup(h);
    free(copy);
    if (!any) return 0;
    lookup *l = calloc(1, sizeof *l);
    if (!l || !(l->hosts = strdup(host))) {
        free(l);
        return -ENOMEM;
    }
    /* A cancelled caller does not wait for a slow DNS answer. */
    int r = rill_to_thread_detached(lookup_run, l, lookup_free);
    if (r == -ECANCELED) return connect_fail(r, "canceled");
    if (r == 0 && !(*addrs = strdup(l->addrs))) r = -ENOMEM;
    if (r < 0) connect_fail(r, l->error[0] ? l->error : strerror(-r));
    lookup_free(l);
    return r;
}

/* Drive PQconnectPoll, waiting on the socket it names each time, for
 * connect_timeout seconds at most (libpq applies it only when it blocks). */
static int poll_connect(rill_pg *c, double timeout) {
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    RILL_SCOPE_AUTO rill_scope s;
    rill_scope_enter(&s, timeout > 0 ? timeout : RILL_FOREVER);
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) return connect_fail(-ECONNREFUSED, PQerrorMessage(c->conn));
        int r = rill__pg_wait(c, st == PGRES_POLLING_READING ? RILL_READ : RILL_WRITE);
        if (r == -ECONNRESET) return connect_fail(-ECONNREFUSED, PQerrorMessage(c->conn));
        if (r == -ECANCELED && rill_scope_exit(&s) == -ETIMEDOUT)
            return connect_fail(-ETIMEDOUT, "connect_timeout expired");
        if (r < 0) return connect_fail(r, strerror(-r));
        st = PQconnectPoll(c->conn);
    }
    /* PQsendQuery* must never block on a full socket buffer. */
    if (PQsetnonblocking(c->conn, 1)) return connect_fail(-ECONNREFUSED, PQerrorMessage(c->conn));
    return 0;
}

int rill_pg_connect(const char *conninfo, rill_pg **out) {
    if (out) *out = NULL;
    if (!conninfo || !out) return connect_fail(-EINVAL, "NULL argument");
    if (!rill_current()) return connect_fail(-EPERM, "not in a fiber");
    if (rill_cancelled()) return connect_fail(-ECANCELED, "canceled");
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (!opts) {
        int r = connect_fail(perr ? -EINVAL : -ENOMEM, perr ? perr : "out of memory");
        PQfreemem(perr);
        return r;
    }
    /* keywords and values of the options given, hostaddr resolved. */
    int n = 0;
    const char *host = NULL, *hostaddr = NULL, *timeout = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        n++;
        if (o->val && !strcmp(o->keyword, "host")) host = o->val;
        if (o->val && !strcmp(o->keyword, "hostaddr")) hostaddr = o->val;
        if (o->val && !strcmp(o->keyword, "connect_timeout")) timeout = o->val;
    }
    /* libpq would read these itself, and look the name up blocking. */
    if (!host) host = getenv("PGHOST");
    if (!hostaddr) hostaddr = getenv("PGHOSTADDR");
    char *addrs = NULL;
    int r = host && !hostaddr ? resolve(host, &addrs) : 0;
    const char **kw = calloc((size_t)n + 2, sizeof *kw), **val = calloc((size_t)n + 2, sizeof *val);
    rill_pg *c = calloc(1, sizeof *c);
    if (r == 0 && (!kw || !val || !c)) r = connect_fail(-ENOMEM, "out of memory");
    if (r == 0) {
        int k = 0;
        for (PQconninfoOption *o = opts; o->keyword; o++)
            if (o->val && *o->val) kw[k] = o->keyword, val[k++] = o->val;
        if (addrs) kw[k] = "hostaddr", val[k++] = addrs;
        c->conn = PQconnectStartParams(kw, val, 0);
        if (!c->conn) r = connect_fail(-ENOMEM, "out of memory");
        else if (PQstatus(c->conn) == CONNECTION_BAD)
            r = connect_fail(-ECONNREFUSED, PQerrorMessage(c->conn));
        else r = poll_connect(c, timeout ? atof(timeout) : 0);
    }
    free(kw);
    free(val);
    free(addrs);
    PQconninfoFree(opts);
    if (r < 0) {
        rill_pg_close(c);
        return r;
    }
    connect_error[0] = 0;
    *out = c;
    return 0;
}

void rill_pg_close(rill_pg *c) {
    if (!c) return;
    /* A call under way or an open cursor still uses c: freeing it would
     * leave them with freed memory.  Refused; closing them first works. */
    if (c->busy || c->gens) {
        errno = EBUSY;
        return;
    }
    if (c->idle) { /* released to its pool, which will hand it out again */
        errno = EINVAL;
        return;
    }
    if (c->conn) PQfinish(c->conn);
    free(c->error);
    free(c);
}

PGconn *rill_pg_conn(rill_pg *c) { return c ? c->conn : NULL; }

const char *rill_pg_error(const rill_pg *c) {
    if (!c) return connect_error;
    return c->error ? c->error : "";
}

const char *rill_pg_sqlstate(const rill_pg *c) { return c ? c->sqlstate : ""; }

int rill__pg_fail(rill_pg *c, int err, const char *msg, const char *sqlstate) {
    char *copy = msg && *msg ? strdup(msg) : NULL;
    if (copy) {
        size_t n = strlen(copy);
        while (n && copy[n - 1] == '\n') copy[--n] = 0;
    }
    free(c->error);
    c->error = copy;
    snprintf(c->sqlstate, sizeof c->sqlstate, "%s", sqlstate ? sqlstate : "");
    return err;
}

int rill__pg_lost(rill_pg *c) {
    c->broken = true;
    return rill__pg_fail(c, -ECONNRESET, c->conn ? PQerrorMessage(c->conn) : "connection lost",
                         NULL);
}

int rill__pg_check(rill_pg *c) {
    if (!c) return -EINVAL;
    if (!rill_current()) return -EPERM;
    if (c->busy) return -EBUSY;
    rill__pg_fail(c, 0, NULL, NULL);
    if (c->broken || !c->conn) return rill__pg_fail(c, -ECONNRESET, "connection lost", NULL);
    if (rill_cancelled()) return rill__pg_fail(c, -ECANCELED, "canceled", NULL);
    return 0;
}

int rill__pg_wait(rill_pg *c, int events) {
    int fd = c->conn ? PQsocket(c->conn) : -1;
    if (fd < 0) return rill__pg_lost(c);
    int r = rill_wait_fd(fd, events);
    return r == -EBADF ? rill__pg_lost(c) : r;
}
