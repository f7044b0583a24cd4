/*
 * fibers: what a live fiber costs, in time and memory, at scale, next to a
 * plain-C baseline measured in the same run.
 *
 *   - N tasks (100 000) spawned in a group, each sleeping 100 ms, joined:
 *     wall time, overhead per fiber ((wall - 100 ms) / N) and resident
 *     memory per sleeping fiber (peak VmHWM minus VmRSS before, / N);
 *     (CPU time per fiber too: a busy machine stretches the wall time);
 *   - the baseline: one mapping with a stack-sized slot per item, one fresh
 *     page touched at the top of each slot and a small struct malloc'ed per
 *     item (what a fiber cannot avoid: its stack's top page and its struct),
 *     then freed and unmapped (rill_run's time includes giving its stacks
 *     back too); time and resident memory per item;
 *   - 1 000 000 such fibers at once (time, KiB each), with default settings.
 *
 * Each measurement runs in a forked child, so that each starts from a fresh
 * process (no stack pooled by an earlier run, no memory already resident);
 * rounds of the rill and baseline rows alternate.  Ratios are rill / baseline.
 *
 *   fibers           100 000 sleepers (3 rounds) and 1 000 000 fibers
 *   fibers --quick   10 000 sleepers and 100 000 fibers
 */
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* Only the helpers of bench.h: this bench is no table of rows. */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "bench.h"
#include "../tests/procfs.h"

#define SLEEP_S 0.1
#define ROUNDS 3
#define SLOT (68u * 1024u)   /* a default stack and its guard page */
#define STRUCT_BYTES 256u    /* about a task's struct */

/* The switch backend built (runtime/switch.h; the static library's). */
extern const char rill__ctx_backend[];

typedef struct result {
    double ns_per;  /* overhead per item */
    double kib_per; /* resident KiB per item */
    double wall_s;
    int maps;       /* /proc/self/maps lines with every item alive */
    double cpu_ns_per; /* CPU time (user + system) per item: less hurt by a
                          busy machine than the wall time */
} result;

static double cpu_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
            (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)) * 1e3;
}


/* ---- rill: N sleepers --------------------------------------------------------- */

static long started;
static int maps_alive;

static int sleeper(void *arg) {
    (void)arg;
    started++;
    return rill_sleep(SLEEP_S);
}

static int sleepers_main(void *arg) {
    long n = *(long *)arg;
    rill_group g;
    rill_group_init(&g);
    for (long i = 0; i < n; i++) {
        int rc = rill_group_spawn(&g, sleeper, NULL);
        if (rc != 0) die("rill_group_spawn", rc);
    }
    maps_alive = count_mappings(); /* every stack is taken at spawn */
    return rill_group_wait(&g);
}

static result run_fibers(long n) {
    long before = status_kib("VmRSS:");
    double c0 = cpu_ns();
    uint64_t t0 = now_ns();
    int rc = rill_run(sleepers_main, &n);
    uint64_t ns = now_ns() - t0;
    double cpu = cpu_ns() - c0;
    if (rc != 0) die("rill_run", rc);
    if (started != n) die("sleepers", -EIO);
    return (result){.ns_per = ((double)ns - SLEEP_S * 1e9) / (double)n,
                    .kib_per = (double)(status_kib("VmHWM:") - before) / (double)n,
                    .wall_s = (double)ns / 1e9,
                    .maps = maps_alive,
                    .cpu_ns_per = cpu / (double)n};
}

/* ---- the baseline: a mapping, a fresh page and a small struct per item ---- */

static result run_baseline(long n) {
    long before = status_kib("VmRSS:");
    double c0 = cpu_ns();
    uint64_t t0 = now_ns();
    size_t len = (size_t)n * SLOT;
    char *map = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    void **items = malloc((size_t)n * sizeof *items);
    if (map == MAP_FAILED || !items) die("baseline", -ENOMEM);
    for (long i = 0; i < n; i++) {
        char *top = map + (size_t)(i + 1) * SLOT - 256;
        top[0] = (char)i; /* the page a new fiber's start frame lands on */
        if (!(items[i] = malloc(STRUCT_BYTES))) die("malloc", -ENOMEM);
        memset(items[i], 0, STRUCT_BYTES);
    }
    long peak = status_kib("VmHWM:");
    /* Given back, as rill_run gives its stacks and structs back before it
     * returns: both rows time a whole lifetime. */
    for (long i = 0; i < n; i++) free(items[i]);
    free(items);
    munmap(map, len);
    uint64_t ns = now_ns() - t0;
    double cpu = cpu_ns() - c0;
    return (result){.ns_per = (double)ns / (double)n,
                    .cpu_ns_per = cpu / (double)n,
                    .kib_per = (double)(peak - before) / (double)n,
                    .wall_s = (double)ns / 1e9};
}

/* Run one measurement in a fresh child and bring its result back. */
static result in_child(result (*fn)(long), long n) {
    int p[2];
    if (pipe(p) != 0) die("pipe", -errno);
    pid_t pid = fork();
    if (pid < 0) die("fork", -errno);
    if (pid == 0) {
        close(p[0]);
        result r = fn(n);
        ssize_t w = write(p[1], &r, sizeof r);
        _exit(w == (ssize_t)sizeof r ? 0 : 1);
    }
    close(p[1]);
    result r;
    ssize_t got = read(p[0], &r, sizeof r);
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    if (got != (ssize_t)sizeof r || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("child", -EIO);
    return r;
}

static int cmp_result(const void *a, const void *b) {
    double x = ((const result *)a)->ns_per, y = ((const result *)b)->ns_per;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    if (argc > 2 || (argc == 2 && !quick)) {
        fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    long n = quick ? 10000 : 100000, big = quick ? 100000 : 1000000;
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    printf("# fibers bench | CPU: %s | switch: %s | stack %s | median of %d rounds%s\n", cpu,
           rill__ctx_backend, getenv("RILL_STACK_SIZE") ? getenv("RILL_STACK_SIZE") : "default",
           ROUNDS, quick ? " | --quick" : "");
    result f[ROUNDS], b[ROUNDS];
    for (int k = 0; k < ROUNDS; k++) {
        b[k] = in_child(run_baseline, n);
        f[k] = in_child(run_fibers, n);
    }
    qsort(f, ROUNDS, sizeof f[0], cmp_result);
    qsort(b, ROUNDS, sizeof b[0], cmp_result);
    result fm = f[ROUNDS / 2], bm = b[ROUNDS / 2];
    printf("%ld sleepers (%.0f ms): wall %.3f s, overhead %.2f us/fiber (CPU %.2f us), "
           "%.2f KiB/fiber, %d mappings\n", n, SLEEP_S * 1e3, fm.wall_s, fm.ns_per / 1e3,
           fm.cpu_ns_per / 1e3, fm.kib_per, fm.maps);
    printf("baseline (page + %u B):  %.2f us/item (CPU %.2f us), %.2f KiB/item\n", STRUCT_BYTES,
           bm.ns_per / 1e3, bm.cpu_ns_per / 1e3, bm.kib_per);
    printf("ratio rill/baseline:      time %.2fx (CPU %.2fx), memory %.2fx\n",
           fm.ns_per / bm.ns_per, fm.cpu_ns_per / bm.cpu_ns_per, fm.kib_per / bm.kib_per);
    result r = in_child(run_fibers, big);
    printf("%ld fibers at once:     wall %.3f s, overhead %.2f us/fiber (CPU %.2f us), "
           "%.2f KiB/fiber, %d mappings\n", big, r.wall_s, r.ns_per / 1e3, r.cpu_ns_per / 1e3,
           r.kib_per, r.maps);
    return 0;
}
