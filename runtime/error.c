/* Errors: rill_strerror (libc's text for errno values, with the meaning
 * rill gives some of them added: a socket's EPIPE is still a broken pipe),
 * and the report of a broken internal invariant. */
#include <limits.h>
#include <string.h>

#include "internal.h"

const char *rill_strerror(int err) {
    if (err == INT_MIN) return "unknown error";
    if (err < 0) err = -err;
    switch (err) {
    case 0: return "success";
    case ECANCELED: return "cancelled (the caller's scope or task was cancelled)";
    case EDEADLK: return "deadlock (nothing could ever end this wait)";
    case EPIPE: return "Broken pipe (or: generator or queue closed)";
    case ETIMEDOUT: return "Connection timed out (or: the scope's deadline fired)";
    case EPERM: return "Operation not permitted (or: a blocking call outside a fiber)";
    case ENXIO: return "No such device or address (or: host name not found)";
    default: break;
    }
#ifdef __GLIBC__
    const char *s = strerrordesc_np(err); /* thread-safe, unlike strerror */
#else
    const char *s = strerror(err);
#endif
    return s ? s : "unknown error";
}

_Noreturn void rill__error_panic(const char *file, int line, const char *cond,
                           const char *why) {
    rill__rt *rt = rill__self;
    const char *who = rt && rt->current ? rt->current->name : "?";
    fprintf(stderr, "rill: internal error in fiber '%s' at %s:%d: %s (%s)\n",
            who ? who : "?", file, line, why, cond);
    abort();
}
