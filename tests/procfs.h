/* What /proc and the kernel say of this process, for the tests and
 * benchmarks that bound memory and kernel mappings (tests/helpers.h and
 * bench/fibers.c include it). */
#ifndef RILL_TEST_PROCFS_H
#define RILL_TEST_PROCFS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13; older headers lack it */
#endif

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

/* Does this kernel install guard pages by madvise (Linux 6.13)?  rill
 * carves stacks from slabs when it does, and maps each alone when not. */
static inline bool kernel_installs_guards(void) {
    long page = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return false;
    bool ok = madvise(m, (size_t)page, MADV_GUARD_INSTALL) == 0;
    munmap(m, 2 * (size_t)page);
    return ok;
}

#endif
