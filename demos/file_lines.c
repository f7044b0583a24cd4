/*
 * file_lines: a large log file read line by line as a generator, filtered as
 * it streams, while the loop keeps serving other fibers.
 *
 * The Python original:
 *
 *     async def read_lines(path):
 *         async with aiofiles.open(path) as f:
 *             async for line in f:
 *                 yield line.rstrip("\n")
 *
 *     async def count_errors(path):
 *         errors = (line async for line in read_lines(path) if "ERROR" in line)
 *         return sum([1 async for _ in errors])
 *
 * rill_file_lines() is read_lines(): it reads 64 KiB at a time on the thread
 * pool (a read from disk cannot be waited for with epoll) and yields each
 * line from its buffer, so memory stays flat however large the file is.
 * Other fibers (here a ticker) run while each chunk is read; between reads
 * the consumer has the CPU, as a coroutine that never awaits would.
 * rill_gen_filter() is the generator expression's `if`.  After breaking out
 * of the loop early, closing the generator closes the file (leaving the
 * block of a RILL_GEN_AUTO generator does too), as leaving `async with`
 * would.
 *
 * Usage: file_lines [--scale X]   (X multiplies every delay)
 */
#include <unistd.h>

#include "demo.h"

#define LINES 300000
#define TICK 0.002 /* the ticker's period, before scaling */

static const char *const levels[] = {"INFO", "INFO", "DEBUG", "WARN", "INFO", "ERROR", "INFO"};

static int is_error(void *line, void *ctx) {
    (void)ctx;
    return strstr(line, " ERROR ") != NULL;
}

static int ticker(void *arg) {
    int *ticks = arg;
    while (rill_sleep(TICK * scale) == 0) ++*ticks;
    return 0;
}

static int amain(void *arg) {
    (void)arg;
    char path[] = "/tmp/rill-log-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -errno;
    FILE *out = fdopen(fd, "w");
    if (!out) return -errno;
    int want = 0;
    for (int i = 0; i < LINES; i++) {
        const char *lvl = levels[i % 7];
        want += strcmp(lvl, "ERROR") == 0;
        fprintf(out, "2026-12-01T12:%02d:%02d %s request %d served\n", i / 60 % 60, i % 60, lvl, i);
    }
    fclose(out);

    int ticks = 0;
    rill_task *tick = rill_spawn(ticker, &ticks);
    double t0 = rill_now();

    /* errors = (line async for line in read_lines(path) if "ERROR" in line) */
    RILL_GEN_AUTO rill_gen *errors = rill_gen_filter(rill_file_lines(path), is_error, NULL);
    if (!errors) return -errno;
    int count = 0;
    const char *line, *first = NULL;
    char first_copy[128] = "";
    rill_foreach(line, errors) {
        if (!first) {
            first = line;
            snprintf(first_copy, sizeof first_copy, "%s", line);
        }
        count++;
    }
    int rc = rill_gen_status(errors);
    double took = rill_now() - t0;
    printf("%d lines read, %d ERROR lines in %.3f s (real time); first: \"%s\"\n", LINES, count,
           took, first_copy);
    printf("the ticker ticked %d times meanwhile\n", ticks);
    expect(rc == 0, "the file was read to its end");
    expect(count == want, "every ERROR line was found, once");

    /* Breaking early: only the first three lines are read (one chunk). */
    RILL_GEN_AUTO rill_gen *head = rill_file_lines(path);
    int n = 0;
    rill_foreach(line, head) {
        printf("  head: %s\n", line);
        if (++n == 3) break;
    }
    expect(n == 3, "the loop stopped after three lines");
    expect(rill_gen_close(head) == 0, "closing the rest of the file is clean");

    rill_cancel(tick);
    rill_join(tick);
    unlink(path);
    demo_verdict("%d ERROR lines of %d found in %.3f s (real time) while the loop kept ticking",
                 count, LINES, took);
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
