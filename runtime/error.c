/* rill_strerror: libc's text for errno values, with the meaning rill gives
 * some of them added (a socket's EPIPE is still a broken pipe). */
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
    default: break;
    }
#ifdef __GLIBC__
    const char *s = strerrordesc_np(err); /* thread-safe, unlike strerror */
#else
    const char *s = strerror(err);
#endif
    return s ? s : "unknown error";
}
