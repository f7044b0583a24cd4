/* What /proc says of this process, for the tests and benchmarks that bound
 * memory and kernel mappings (tests/helpers.h and bench/fibers.c include it). */
#ifndef RILL_TEST_PROCFS_H
#define RILL_TEST_PROCFS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lines of /proc/self/maps: the process's kernel memory mappings. */
static inline int count_mappings(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF) n += c == '\n';
    if (f) fclose(f);
    return n;
}

/* A field of /proc/self/status ("VmRSS:", "VmHWM:", "VmSize:"), in KiB;
 * -1 if absent. */
static inline long status_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0) v = strtol(line + n, NULL, 10);
    if (f) fclose(f);
    return v;
}

#endif
