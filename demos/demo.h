/*
 * What every demo shares: the --scale flag that shortens its delays (so
 * `make test` can run it in a fraction of a second), and the checks that make
 * it exit non-zero when one of its claims does not hold.
 */
#ifndef RILL_DEMO_H
#define RILL_DEMO_H

#include <rill.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double scale = 1.0; /* multiplies every delay of the demo */
static int failures;       /* claims of the demo that did not hold */

/* Check one claim of the demo; say so if it does not hold. */
static inline void expect(bool ok, const char *claim) {
    if (!ok) {
        printf("FAILED: %s\n", claim);
        failures++;
    }
}

/* The errno names this demo prints (rill_strerror() gives the description). */
static inline const char *errname(int err) {
    switch (err) {
    case 0: return "0";
    case -ECANCELED: return "-ECANCELED";
    case -ETIMEDOUT: return "-ETIMEDOUT";
    case -EIO: return "-EIO";
    case -EBADMSG: return "-EBADMSG";
    case -ECONNRESET: return "-ECONNRESET";
    case -EINVAL: return "-EINVAL";
    case -EPIPE: return "-EPIPE";
    case -EPROTO: return "-EPROTO";
    case -EBUSY: return "-EBUSY";
    case -EPERM: return "-EPERM";
    default: return "-E?";
    }
}

static inline void demo_usage(const char *prog) {
    fprintf(stderr, "usage: %s [--scale X]   (X > 0 multiplies every delay)\n", prog);
    exit(2);
}

/* Parse --scale, run amain as rill_run's main, and turn the outcome into the
 * process's exit status: 0 only if rill_run succeeded and every claim held. */
static inline int demo_main(int argc, char **argv, rill_fn *amain) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) {
            char *end;
            scale = strtod(argv[++i], &end);
            if (*end != '\0' || !(scale > 0) || scale > 1e6) demo_usage(argv[0]);
        } else {
            demo_usage(argv[0]);
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep prints in order when piped */
    if (scale != 1.0)
        printf("(--scale %g: every delay runs %gx as long; times are shown unscaled)\n\n",
               scale, scale);
    int rc = rill_run(amain, NULL);
    if (rc < 0) printf("FAILED: %s\n", rill_strerror(rc));
    return rc == 0 && failures == 0 ? 0 : 1;
}

#endif
