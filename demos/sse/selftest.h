/*
 * The SSE demo's self-test: servers started on free ports in this process,
 * driven by client fibers of its own.
 */
#ifndef SSE_SELFTEST_H
#define SSE_SELFTEST_H

#include "server.h"

#include <stdbool.h>
#include <stddef.h>

/* Record one claim (demo.h's expect). */
typedef void sse_check_fn(bool ok, const char *claim);

/* Run the self-test in the calling fiber: base gives the host (its other
 * settings are the self-test's own, times multiplied by scale); announce
 * prints the first server's "listening" line.  summary receives what was
 * shown.  Returns 0, or a negative errno if a server could not start. */
int sse_self_test(const sse_config *base, double scale, void (*announce)(const sse_server *),
                  sse_check_fn *check, char *summary, size_t cap);

#endif
