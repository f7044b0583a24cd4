/*
 * thread_offload: blocking and CPU-bound work through rill_to_thread, while
 * the loop keeps serving its other fibers (here a ticker).
 *
 * The Python original:
 *
 *     async def process_file(path: str) -> str:
 *         # Blocking file operation in thread pool
 *         content = await asyncio.to_thread(read_large_file, path)
 *         # CPU-bound processing in thread pool
 *         result = await asyncio.to_thread(cpu_intensive_process, content)
 *         return result
 *
 *     async def sync_db_query(query: str) -> list:
 *         return await asyncio.to_thread(sync_db.execute, query)
 *
 * A fiber must never block its thread: everything else on the loop would
 * stop with it.  rill_to_thread runs a plain C function on a pool thread
 * (RILL_THREADS of them, min(32, CPUs + 4) by default) and suspends only the
 * calling fiber until it returns.  Arguments and results travel through a
 * struct on the caller's stack, which is why a cancelled caller still waits
 * for a job that has started.  rill_to_thread_detached is the variant that
 * gives up at once (asyncio.wait_for around to_thread): the job finishes on
 * its own and a release function frees what it was given; rill_run returns
 * only once such a job has ended.
 *
 * Usage: thread_offload [--scale X]   (X multiplies every delay)
 */
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "demo.h"

#define FILE_MB 8
#define TICK 0.05     /* the ticker's period, before scaling */
#define DB_DELAY 0.6  /* a blocking "database" call, before scaling */

/* ---- plain blocking C functions, as a library would provide them ---------- */

typedef struct file_job {
    const char *path;
    char *content;
    size_t len;
} file_job;

/* read_large_file: read(2) on a regular file blocks; epoll cannot help. */
static int read_large_file(void *arg) {
    file_job *j = arg;
    int fd = open(j->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    size_t cap = (size_t)FILE_MB << 20;
    j->content = malloc(cap);
    if (!j->content) {
        close(fd);
        return -ENOMEM;
    }
    ssize_t got;
    while (j->len < cap && (got = read(fd, j->content + j->len, cap - j->len)) > 0)
        j->len += (size_t)got;
    close(fd);
    return 0;
}

typedef struct cpu_job {
    const char *data;
    size_t len;
    uint64_t hash;
    unsigned rounds;
} cpu_job;

/* cpu_intensive_process: a few rounds of FNV-1a over the content. */
static int cpu_intensive_process(void *arg) {
    cpu_job *j = arg;
    uint64_t h = 1469598103934665603ULL;
    for (unsigned r = 0; r < j->rounds; r++)
        for (size_t i = 0; i < j->len; i++) h = (h ^ (unsigned char)j->data[i]) * 1099511628211ULL;
    j->hash = h;
    return 0;
}

static void block_for(double seconds) {
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

typedef struct db_query {
    const char *sql;
    int rows;
    _Atomic bool started;
} db_query;

/* sync_db.execute: a driver without an asynchronous API. */
static int sync_db_execute(void *arg) {
    db_query *q = arg;
    q->started = true;
    block_for(DB_DELAY * scale);
    q->rows = 42;
    return 0;
}

/* ---- the loop's side ------------------------------------------------------- */

static int ticker(void *arg) {
    int *ticks = arg;
    while (rill_sleep(TICK * scale) == 0) ++*ticks;
    return 0;
}

static void make_input(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    for (int i = 0; ftell(f) < ((long)FILE_MB << 20) - 64; i++)
        fprintf(f, "record %d: the quick brown fox\n", i);
    fclose(f);
}

/* A detached job owns its copy of the query: freed by whoever ends last. */
static void free_query(void *arg) { free(arg); }

static int amain(void *arg) {
    (void)arg;
    char path[] = "/tmp/rill-offload-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -errno;
    close(fd);
    make_input(path);

    int ticks = 0;
    rill_task *tick = rill_spawn(ticker, &ticks);

    /* process_file(path) */
    int before = ticks;
    double t0 = rill_now();
    file_job fj = {.path = path};
    int rc = rill_to_thread(read_large_file, &fj);
    printf("read_large_file: %s, %zu bytes in %.3f s (real time: not a delay)\n", rill_strerror(rc), fj.len,
           rill_now() - t0);
    expect(rc == 0 && fj.len > 0, "the file was read on the pool");

    /* CPU-bound: long enough that the ticker must run meanwhile. */
    before = ticks;
    t0 = rill_now();
    cpu_job cj = {.data = fj.content, .len = fj.len, .rounds = 1};
    double spent;
    do { /* grow the work until it takes a few ticks */
        cj.rounds *= 2;
        t0 = rill_now();
        before = ticks;
        rc = rill_to_thread(cpu_intensive_process, &cj);
        spent = rill_now() - t0;
    } while (rc == 0 && spent < 4 * TICK * scale && cj.rounds < 4096);
    printf("cpu_intensive_process: %u rounds, hash %016llx in %.3f s (real time); the ticker ticked %d "
           "times meanwhile\n",
           cj.rounds, (unsigned long long)cj.hash, spent, ticks - before);
    expect(rc == 0, "the CPU-bound job succeeded");
    expect(ticks - before >= 1, "the loop kept running while a pool thread computed");
    free(fj.content);
    unlink(path);

    /* sync_db_query: the blocking driver, behind a timeout of half its time. */
    db_query q = {.sql = "SELECT 1"};
    rill_scope s;
    rill_scope_enter(&s, DB_DELAY * scale / 2);
    t0 = rill_now();
    rc = rill_to_thread(sync_db_execute, &q);
    double waited = demo_elapsed(t0);
    int timed_out = rill_scope_exit(&s);
    printf("to_thread under a timeout: %s after %.2f s (%d rows), scope: %s\n",
           rill_strerror(rc), waited, q.rows, rill_strerror(timed_out));
    /* A job still queued when the timeout hits never runs (-ECANCELED);
     * one that has started is waited for and its result kept. */
    expect(q.started ? rc == 0 && q.rows == 42 : rc == -ECANCELED,
           "a started job is waited for: its result is not lost");
    expect(timed_out == -ETIMEDOUT, "the scope still reports its timeout");

    db_query *owned = malloc(sizeof *owned);
    if (!owned) return -ENOMEM;
    *owned = (db_query){.sql = "SELECT 2", .started = false};
    rill_scope_enter(&s, DB_DELAY * scale / 2);
    t0 = rill_now();
    rc = rill_to_thread_detached(sync_db_execute, owned, free_query);
    waited = demo_elapsed(t0);
    timed_out = rill_scope_exit(&s);
    printf("to_thread_detached under a timeout: %s after %.2f s, scope: %s\n", rill_strerror(rc),
           waited, rill_strerror(timed_out));
    expect(rc == -ECANCELED && waited < DB_DELAY,
           "a detached job is abandoned at the timeout (it frees its query when it ends)");
    if (rc != -ECANCELED) free(owned);
    /* The abandoned job still runs: rill_run waits for it (and its
     * free_query) before returning, as asyncio.run waits for its executor. */

    rill_cancel(tick);
    rill_join(tick);
    printf("the ticker ticked %d times in all\n", ticks);
    demo_verdict("blocking reads, computing and a driver ran on the pool while the loop ticked "
                 "%d times", ticks);
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
