/*
 * rill/pg.h: PostgreSQL for rill fibers, asyncpg's model on libpq's
 * asynchronous API.  Link with -lrill_pg -lrill -lpq.
 *
 * Every call that talks to the server suspends only the calling fiber: it
 * waits on the connection's socket with rill_wait_fd, never in a blocking
 * libpq call, and a host name is resolved on rill's thread pool.  A
 * connection (rill_pg) belongs to one runtime and serves one fiber at a
 * time; use a pool (rill_pg_pool) to share connections between fibers.
 *
 * Errors, for every call below (negative errno, as in rill.h):
 *   -EIO         the server reported an error: rill_pg_error() gives its
 *                message, rill_pg_sqlstate() its SQLSTATE ("42P01", ...);
 *   -ECONNRESET  the connection was lost (or had been: it stays broken;
 *                close it, or let the pool reconnect);
 *   -ECANCELED   the caller was cancelled (a scope's deadline, rill_cancel):
 *                the query is cancelled on the server and its results
 *                drained, so the connection is usable afterwards; if it
 *                cannot be brought back within a short deadline it is
 *                closed (later calls: -ECONNRESET).  Never left mid-protocol.
 *                That clean-up runs shielded, with its own deadline (5 s);
 *   -EINVAL      bad input (a NULL argument, a negative count);
 *   -ENOMEM      no memory; -EPERM outside a fiber.
 */
#ifndef RILL_PG_H
#define RILL_PG_H

#include <libpq-fe.h>

#include "../rill.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One connection to a server (opaque). */
typedef struct rill_pg rill_pg;

/* A bounded set of connections shared by fibers (opaque). */
typedef struct rill_pg_pool rill_pg_pool;

/* A view of one row of a result, as rill_pg_cursor yields it: valid as long
 * as res is (for a cursor, until the generator is resumed again). */
typedef struct rill_pg_row {
    const PGresult *res;
    int row;
} rill_pg_row;

/* A notification (NOTIFY channel, 'payload') as rill_pg_listen yields it:
 * the strings are valid until the generator is resumed again.  pid is the
 * server process of the session that sent it. */
typedef struct rill_pg_notify {
    const char *channel, *payload;
    int pid;
} rill_pg_notify;

/* ===========================================================================
 * Connections
 * ======================================================================== */

/* Connect to the server that conninfo names (libpq's "host=... dbname=..."
 * or a postgresql:// URI) with PQconnectStart and PQconnectPoll, waiting on
 * the socket; a host name is resolved on rill's thread pool first (a
 * Unix-socket directory needs no lookup; PGHOST counts when conninfo has
 * no host).  connect_timeout (seconds) bounds the whole connect, as libpq's
 * blocking connect does.  On success *out is the new
 * connection, owned by the caller (rill_pg_close it), and 0 is returned.
 * -EINVAL if conninfo or out is NULL or conninfo cannot be parsed,
 * -ECONNREFUSED if the server could not be reached or refused the
 * connection (no server, authentication failed, unknown database,
 * unresolvable host), -ETIMEDOUT (connect_timeout passed), -ECANCELED,
 * -ENOMEM, -EPERM outside a fiber; on
 * failure *out is NULL and rill_pg_error(NULL) gives libpq's message.
 * Blocks the calling fiber on the name lookup and the socket. */
RILL_API int rill_pg_connect(const char *conninfo, rill_pg **out);

/* Close c and free it (PQfinish; the server sees the session end).  Does
 * not block.  A connection in use (a call under way in another fiber, a
 * cursor or pages generator not yet freed) is not closed: errno EBUSY,
 * no effect (free the generator, or cancel the fiber, first).  One given
 * back to its pool is the pool's: errno EINVAL, no effect.  NULL: no
 * effect. */
RILL_API void rill_pg_close(rill_pg *c);

/* c's libpq connection, for what this module does not wrap (PQescape*,
 * PQserverVersion, ...).  Still owned by c: do not PQfinish it, and do not
 * make blocking libpq calls on it inside a fiber.  NULL for NULL. */
RILL_API PGconn *rill_pg_conn(rill_pg *c);

/* The last error on c, for people: the server's message after -EIO, or
 * what went wrong locally ("connection lost", "cancelled").  "" when there
 * was none.  Valid until c's next call or close.  rill_pg_error(NULL) is
 * the message of the calling thread's last failed rill_pg_connect ("" if
 * none), valid until its next one. */
RILL_API const char *rill_pg_error(const rill_pg *c);

/* The SQLSTATE of the last server error on c (five characters, e.g.
 * "42601" for a syntax error), or "" when the last call did not fail with
 * -EIO; "" for NULL.  Valid until c's next call or close. */
RILL_API const char *rill_pg_sqlstate(const rill_pg *c);

/* ===========================================================================
 * Queries
 * ======================================================================== */

/* Run one SQL statement with nparams text parameters ($1, $2, ...; a NULL
 * entry is SQL NULL; params may be NULL when nparams is 0) using
 * PQsendQueryParams.  Returns the number of rows returned (SELECT, ...
 * RETURNING) or affected (INSERT, UPDATE, DELETE; 0 for other commands).
 * If out is not NULL and the call succeeds, *out is the result, owned by
 * the caller (PQclear it); on failure *out is NULL.  Errors: -EIO (server
 * error), -ECONNRESET, -ECANCELED (the statement is cancelled on the
 * server, see above), -EINVAL (c or sql NULL, nparams < 0 or > 65535,
 * params NULL with nparams > 0), -EBUSY if another fiber is using c, -ENOMEM, -EPERM.
 * Blocks the calling fiber until the server answers. */
RILL_API long rill_pg_exec(rill_pg *c, const char *sql, int nparams, const char *const *params,
                           PGresult **out);

/* BEGIN, COMMIT and ROLLBACK on c: 0 or rill_pg_exec's errors.  A COMMIT
 * of a transaction in which a statement failed is a ROLLBACK on the server:
 * rill_pg_commit then returns -EIO with SQLSTATE "25P02"
 * (in_failed_sql_transaction); c is out of the transaction either way. */
RILL_API int rill_pg_begin(rill_pg *c);
RILL_API int rill_pg_commit(rill_pg *c);
RILL_API int rill_pg_rollback(rill_pg *c);

/* Run one statement for nrows sets of nparams parameters each (row-major:
 * params[r * nparams + i] is parameter i + 1 of set r), pipelined in one
 * round trip (libpq's pipeline mode) inside one transaction: all or
 * nothing.  Returns the total number of rows affected, or rill_pg_exec's
 * errors (on any error nothing is kept: the transaction is rolled back).
 * nrows 0 returns 0 without talking to the server.  -EINVAL also if
 * nrows < 0 or params is NULL with nparams * nrows > 0.  c must not be in
 * a transaction already (-EINVAL).  Blocks the calling fiber. */
RILL_API long rill_pg_exec_many(rill_pg *c, const char *sql, int nparams, int nrows,
                                const char *const *params);

/* ===========================================================================
 * Generators (see "Generators" in rill.h; free each with rill_gen_free)
 * ======================================================================== */

/* A generator of the rows of a SELECT, fetched through a server-side cursor
 * (DECLARE ... CURSOR in a transaction of its own, so c must not be in a
 * transaction) prefetch rows at a time (prefetch <= 0: 100).  Each
 * rill_gen_next yields a rill_pg_row * valid until the next call; at the
 * end it returns 0, on error rill_pg_exec's errors (rill_pg_error tells the
 * server's message).  c is busy while the generator is open: close it (or
 * let it finish) before using c again.  Closing it early (rill_gen_close)
 * closes the cursor and ends the transaction before rill_gen_close
 * returns.  NULL with errno EINVAL (c or sql NULL, nparams < 0 or > 65535,
 * params NULL with nparams > 0) or ENOMEM.
 * Blocks, in rill_gen_next, on the server. */
RILL_API rill_gen *rill_pg_cursor(rill_pg *c, const char *sql, int nparams,
                                  const char *const *params, int prefetch);

/* A generator of the result of a SELECT one page at a time: sql with
 * LIMIT page_size OFFSET n appended, each rill_gen_next yielding a
 * const PGresult * (owned by the generator, valid until the next call) of
 * page_size rows; the last page may be short, and an empty page ends it.
 * Order the query (ORDER BY) for the pages to be stable.  Errors as
 * rill_pg_cursor; NULL with errno EINVAL also for page_size <= 0. */
RILL_API rill_gen *rill_pg_pages(rill_pg *c, const char *sql, int nparams,
                                 const char *const *params, int page_size);

/* A generator of the notifications sent on channel (LISTEN channel), on a
 * connection of its own to conninfo that it opens at its first
 * rill_gen_next and closes when closed or freed.  Each rill_gen_next
 * waits for the next notification and yields a rill_pg_notify * valid
 * until the next call; it never ends by itself: the connection's loss ends
 * it with -ECONNRESET, a failed connect with rill_pg_connect's error.
 * NULL with errno EINVAL (NULL argument) or ENOMEM. */
RILL_API rill_gen *rill_pg_listen(const char *conninfo, const char *channel);

/* ===========================================================================
 * Pools
 * ======================================================================== */

/* A pool of at most size connections to conninfo (copied), opened lazily
 * by rill_pg_pool_acquire.  NULL with errno EINVAL (conninfo NULL, size
 * < 1) or ENOMEM.  Does not block. */
RILL_API rill_pg_pool *rill_pg_pool_new(const char *conninfo, int size);

/* Take a connection from p into *out: an idle one, or a new one while
 * fewer than size are open; otherwise wait (FIFO) for a release.  Returns
 * 0, rill_pg_connect's errors (nothing taken), -ECANCELED (nothing taken:
 * cancellation-safe), -EINVAL (NULL argument), -EPERM.  The connection is
 * the caller's until rill_pg_pool_release. */
RILL_API int rill_pg_pool_acquire(rill_pg_pool *p, rill_pg **out);

/* Give c back to p.  A broken connection is closed (its successor connects
 * at a later acquire); one left inside a transaction is rolled back first
 * (and closed if that fails), so the next user starts clean.  May block
 * the calling fiber for that ROLLBACK (shielded, 5 s at most).  NULL, a
 * connection released already, or one p did not hand out: no effect
 * (errno EINVAL); a connection
 * still in use (a cursor or pages generator not yet freed, a call under
 * way): no effect, errno EBUSY, c stays the caller's. */
RILL_API void rill_pg_pool_release(rill_pg_pool *p, rill_pg *c);

/* Close every idle connection of p and free it.  Every connection must have
 * been released: while one is out (or an acquire is connecting or waiting),
 * no effect, errno EBUSY.  NULL: no effect.  Does not block. */
RILL_API void rill_pg_pool_free(rill_pg_pool *p);

/* Column col of the row r views, as text: NULL for SQL NULL (or r NULL);
 * valid as long as r->res. */
static inline const char *rill_pg_get(const rill_pg_row *r, int col) {
    if (!r || !r->res || PQgetisnull(r->res, r->row, col)) return NULL;
    return PQgetvalue(r->res, r->row, col);
}

#ifdef __cplusplus
}
#endif
#endif
