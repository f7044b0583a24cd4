/* rill_strerror: libc's text for errno values, with rill's meaning for the
 * codes the API gives a fixed sense (DESIGN §2). */
#include <limits.h>
#include <string.h>

#include "internal.h"

const char *rill_strerror(int err) {
    if (err == INT_MIN) return "unknown error";
    if (err < 0) err = -err;
    switch (err) {
    case 0: return "success";
    case ECANCELED: return "cancelled (the caller's scope or task was cancelled)";
    case ETIMEDOUT: return "timed out (the scope's deadline fired)";
    case EPIPE: return "closed (generator closed by its consumer, or queue closed)";
    case EPERM: return "not in a fiber (a blocking call made outside rill_run)";
    case EDEADLK: return "deadlock (nothing could ever end this wait)";
    default: break;
    }
#ifdef __GLIBC__
    const char *s = strerrordesc_np(err); /* thread-safe, unlike strerror */
#else
    const char *s = strerror(err);
#endif
    return s ? s : "unknown error";
}
