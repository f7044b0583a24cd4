/* The pg module's generators: their primed start, and the copies they keep
 * of the caller's statement and parameters (a body runs after its
 * constructor has returned). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "pg_gen.h"

/* libpq and its TLS handshake run on a generator's stack: more room than a
 * task's default (only touched pages cost memory). */
#define GEN_STACK (256u * 1024u)

rill_gen *rill__pg_gen_start(rill_gen_fn *body, void *state, const char *name,
                             void (*free_state)(void *)) {
    rill_gen *g = rill_gen_new_opts(body, state, &(rill_opts){.name = name, .stack_size = GEN_STACK});
    if (!g) {
        free_state(state);
        errno = ENOMEM;
        return NULL;
    }
    /* The body yields before it does anything: this cannot fail or block. */
    int r = rill_gen_next(g, NULL);
    if (r != 1) { /* the body never ran: its state is still ours */
        rill_gen_free(g);
        free_state(state);
        errno = r < 0 ? -r : EPROTO;
        return NULL;
    }
    return g;
}

int rill__pg_gen_primed(rill_gen *g) { return rill_yield(g, NULL); }

char **rill__pg_params_copy(int n, const char *const *params, int extra) {
    size_t bytes = ((size_t)n + (size_t)extra + 1) * sizeof(char *);
    for (int i = 0; i < n; i++)
        if (params[i]) bytes += strlen(params[i]) + 1;
    char **copy = malloc(bytes);
    if (!copy) {
        errno = ENOMEM;
        return NULL;
    }
    char *text = (char *)(copy + n + extra + 1);
    for (int i = 0; i < n; i++) {
        if (!params[i]) {
            copy[i] = NULL;
            continue;
        }
        size_t len = strlen(params[i]) + 1;
        copy[i] = memcpy(text, params[i], len);
        text += len;
    }
    for (int i = n; i <= n + extra; i++) copy[i] = NULL;
    return copy;
}

size_t rill__pg_sql_len(const char *sql) {
    size_t n = strlen(sql);
    while (n && (isspace((unsigned char)sql[n - 1]) || sql[n - 1] == ';')) n--;
    return n;
}
