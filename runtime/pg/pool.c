/* Pools: at most size connections, opened on demand.  A semaphore counts
 * the connections that may still be handed out (idle or not yet opened),
 * so a cancelled acquire simply never took a permit; the idle ones wait on
 * a list. */
#include <stdlib.h>
#include <string.h>

#include "pg_internal.h"

struct rill_pg_pool {
    char *conninfo;
    rill_sem free;  /* permits: size minus the connections handed out */
    rill_pg *idle;  /* open connections not handed out, linked by next */
    int out;        /* permits taken: connections handed out or connecting */
};

rill_pg_pool *rill_pg_pool_new(const char *conninfo, int size) {
    if (!conninfo || size < 1) {
        errno = EINVAL;
        return NULL;
    }
    rill_pg_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->conninfo = strdup(conninfo))) {
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    rill_sem_init(&p->free, (unsigned)size);
    return p;
}

int rill_pg_pool_acquire(rill_pg_pool *p, rill_pg **out) {
    if (out) *out = NULL;
    if (!p || !out) return -EINVAL;
    int r = rill_sem_acquire(&p->free);
    if (r < 0) return r;
    p->out++;
    if (p->idle) {
        *out = p->idle;
        p->idle = p->idle->next;
        (*out)->next = NULL;
        (*out)->idle = false;
        return 0;
    }
    r = rill_pg_connect(p->conninfo, out);
    if (r == 0) (*out)->pool = p;
    if (r < 0) { /* nothing taken */
        p->out--;
        rill_sem_release(&p->free);
    }
    return r;
}

/* Roll back a transaction c was left in; false if c cannot be reused. */
static bool reset(rill_pg *c) {
    if (c->broken || !c->conn || c->busy) return false;
    if (PQtransactionStatus(c->conn) == PQTRANS_IDLE) return true;
    rill_scope s;
    rill_scope_enter(&s, RILL__PG_CLEANUP_S);
    rill_scope_shield(&s, true);
    int r = rill__pg_check(c);
    long n = r < 0 ? r : rill__pg_query(c, "ROLLBACK", 0, NULL, NULL);
    rill_scope_exit(&s);
    return n >= 0 && PQtransactionStatus(c->conn) == PQTRANS_IDLE;
}

void rill_pg_pool_release(rill_pg_pool *p, rill_pg *c) {
    if (!p || !c) {
        errno = EINVAL;
        return;
    }
    if (c->busy || c->gens) { /* an open cursor or a call under way: still in use */
        errno = EBUSY;
        return;
    }
    /* Released already, or not p's: listing it would raise the bound (and
     * free it twice). */
    if (c->pool != p || c->idle || p->out == 0) {
        errno = EINVAL;
        return;
    }
    if (reset(c)) {
        rill__pg_fail(c, 0, NULL, NULL);
        c->next = p->idle;
        c->idle = true;
        p->idle = c;
    } else {
        rill_pg_close(c); /* its successor connects at a later acquire */
    }
    p->out--;
    rill_sem_release(&p->free);
}

void rill_pg_pool_free(rill_pg_pool *p) {
    if (!p) return;
    if (p->out) { /* their release (or a waiting acquire) would use p */
        errno = EBUSY;
        return;
    }
    while (p->idle) {
        rill_pg *c = p->idle;
        p->idle = c->next;
        c->idle = false;
        rill_pg_close(c);
    }
    free(p->conninfo);
    free(p);
}
