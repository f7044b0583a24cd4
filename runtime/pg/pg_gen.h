/* What the pg module's generators (cursor.c, pages.c, listen.c) share: a
 * primed start, and copies of the caller's statement and parameters. */
#ifndef RILL_PG_GEN_H
#define RILL_PG_GEN_H

#include "pg_internal.h"

/* Create a generator running body(g, state) and run the body up to its
 * first rill_yield, which each such body makes at once, before anything
 * else: a generator that is closed or freed before its first next then
 * still runs its body's clean-up (rill_yield returns -EPIPE there), which
 * frees state; one never started would be freed without it.  name is
 * copied.  On failure state is freed with free_state, and NULL returned
 * with errno ENOMEM. */
rill_gen *rill__pg_gen_start(rill_gen_fn *body, void *state, const char *name,
                             void (*free_state)(void *));

/* A body's first statement: the primed yield.  0 when the first next
 * resumes it; -EPIPE or a thrown error when the generator is closed first
 * (then free the state and return it). */
int rill__pg_gen_primed(rill_gen *g);

/* A copy of params[0..n) followed by extra slots (NULL), in one malloc'd
 * block (the strings after the pointers; a NULL entry stays NULL), or NULL
 * with errno ENOMEM.  Free it with free(). */
char **rill__pg_params_copy(int n, const char *const *params, int extra);

/* sql without the white space and semicolons that end it: its length, for
 * statements that wrap sql (DECLARE ... FOR sql, SELECT ... FROM (sql)). */
size_t rill__pg_sql_len(const char *sql);

#endif
