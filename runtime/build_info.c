/* rill_build_info: what the Makefile chose (rill.h, "The build"). */
#include <pthread.h>

#include "internal.h"
#include "sanitize.h"

#ifndef RILL__VERSION
#define RILL__VERSION "unknown"
#endif

static rill_build info;
static pthread_once_t info_once = PTHREAD_ONCE_INIT;

/* Filled once: the backend's facts live in its own file (switch.h). */
static void info_fill(void) {
    info.version = RILL__VERSION;
    info.switch_backend = rill__ctx_backend;
    info.switch_method = rill__ctx_method;
    info.fiber_sigmask = rill__ctx_own_sigmask;
    info.fiber_fp_control = rill__ctx_own_fp_control;
#if defined(RILL_ASAN)
    info.checker = "address";
#elif defined(RILL_TSAN)
    info.checker = "thread";
#else
    info.checker = "none";
#endif
}

const rill_build *rill_build_info(void) {
    pthread_once(&info_once, info_fill);
    return &info;
}
