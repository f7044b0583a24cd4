/*
 * What every demo shares: the --scale flag that shortens its delays (so
 * `make demo` and `make test` run it in a fraction of the original's time),
 * its times converted back to full scale, the checks that make it exit
 * non-zero when one of its claims does not hold, and its verdict: one last
 * line, "ok: ..." or "FAILED: ...", that scripts/run-demos.sh summarises.
 */
#ifndef RILL_DEMO_H
#define RILL_DEMO_H

#include <rill.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double scale = 1.0;  /* multiplies every delay of the demo */
static int claims;          /* claims of the demo checked */
static int failures;        /* and those that did not hold */
static char first_failure[160];
static char verdict[240];   /* what the demo showed, if every claim holds */
static bool full_scale;     /* it printed times converted to full scale */

/* Check one claim of the demo; say so if it does not hold. */
static inline void expect(bool ok, const char *claim) {
    claims++;
    if (!ok) {
        printf("FAILED claim: %s\n", claim);
        if (failures++ == 0) snprintf(first_failure, sizeof first_failure, "%s", claim);
    }
}

/* Seconds since t0 (a rill_now() reading) at full scale, as the Python
 * original would print them: the measured time divided by --scale.  Times
 * that are not made of the demo's delays (computing, reading a file) are
 * printed as measured, and say "real time". */
static inline double demo_elapsed(double t0) {
    full_scale = true;
    return (rill_now() - t0) / scale;
}

/* What the demo showed, in one line: demo_main prints it last as the
 * verdict, "ok: ...", if every claim held. */
__attribute__((format(printf, 1, 2))) static inline void demo_verdict(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(verdict, sizeof verdict, fmt, ap);
    va_end(ap);
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

/* Parse --scale, say what it does, and run amain as rill_run's main;
 * returns rill_run's status. */
static inline int demo_run(int argc, char **argv, rill_fn *amain) {
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
        printf("(--scale %g: every delay is %gx its full length; times below are at full "
               "scale, measured / %g, unless marked real)\n\n",
               scale, scale, scale);
    return rill_run(amain, NULL);
}

/* Print the verdict, one line: "ok: " and what the demo showed, or
 * "FAILED: " and why; returns the process's exit status, 0 only if rill_run
 * succeeded and every claim held. */
static inline int demo_end(int rc) {
    char at[64] = "";
    if (scale != 1.0 && full_scale)
        snprintf(at, sizeof at, " (delays x%g, times at full scale)", scale);
    if (rc < 0)
        printf("FAILED: rill_run returned %s (%s)\n", errname(rc), rill_strerror(rc));
    else if (failures > 0)
        printf("FAILED: %d of %d claims did not hold, first: %s\n", failures, claims,
               first_failure);
    else
        printf("ok: %s%s\n", verdict[0] ? verdict : "every claim held", at);
    return rc == 0 && failures == 0 ? 0 : 1;
}

static inline int demo_main(int argc, char **argv, rill_fn *amain) {
    return demo_end(demo_run(argc, argv, amain));
}

#endif
