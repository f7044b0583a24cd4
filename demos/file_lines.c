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
 *     async def read_ahead(lines, n):       # a task keeps n lines ready
 *         q = asyncio.Queue(n)
 *         async def reader():
 *             async for line in lines: await q.put(line)
 *             await q.put(None)
 *         task = asyncio.create_task(reader())
 *         while (line := await q.get()) is not None:
 *             yield line
 *
 *     entries = (parse(line) async for line in read_ahead(read_lines(path), 64))
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
 * read_ahead is rill_gen_prefetch_sized(lines, 64, rill_size_str, NULL): a
 * task reads up to 64 lines ahead while the consumer works, each copied (a
 * line of rill_file_lines is valid only until its next resume), in 64 + 1
 * buffers grown to the longest line.  rill_gen_map_into is the `parse(line)`
 * that makes a new value: the adapter owns the struct parse fills.
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

/* What parse(line) makes of a line. */
typedef struct entry {
    int request;
    char level[8];
} entry;

static int parse_entry(void *line, void *out, void *ctx) {
    (void)ctx;
    entry *e = out;
    if (sscanf(line, "%*s %7s request %d served", e->level, &e->request) != 2) return -EBADMSG;
    return 0;
}

/* Print and tell whether rill_dump shows a fiber waiting for a free slot of
 * a prefetch: a reader that ran as far ahead as it may. */
static bool reader_waits_for_a_slot(void) {
    char *dump = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&dump, &len);
    if (!f) return false;
    rill_dump(f);
    fclose(f);
    const char *what = " on prefetch slot";
    char *on = strstr(dump, what);
    if (on) {
        char *start = on;
        while (start > dump && start[-1] != '\n') start--;
        while (*start == ' ') start++;
        printf("  the reader meanwhile: %.*s\n", (int)(on + strlen(what) - start), start);
    }
    free(dump);
    return on != NULL;
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

    /* entries = (parse(line) async for line in read_ahead(read_lines(path), 64)) */
    t0 = rill_now();
    RILL_GEN_AUTO rill_gen *entries = rill_gen_map_into(
        rill_gen_prefetch_sized(rill_file_lines(path), 64, rill_size_str, NULL), parse_entry,
        sizeof(entry), NULL);
    if (!entries) return -errno;
    int parsed = 0, parsed_errors = 0;
    bool in_order = true, waited = false;
    entry *e;
    rill_foreach(e, entries) {
        in_order = in_order && e->request == parsed && strcmp(e->level, levels[parsed % 7]) == 0;
        parsed_errors += strcmp(e->level, "ERROR") == 0;
        if (++parsed == 1) { /* slow work on the first entry: the reader runs ahead */
            rill_sleep(10 * TICK * scale);
            waited = reader_waits_for_a_slot();
        }
    }
    rc = rill_gen_status(entries);
    printf("%d lines parsed while read ahead in %.3f s, %d ERROR entries\n", parsed,
           rill_now() - t0, parsed_errors);
    expect(rc == 0 && parsed == LINES, "every line was read ahead and parsed");
    expect(in_order, "the entries came whole and in order");
    expect(parsed_errors == want, "the parsed entries hold every ERROR line");
    expect(waited, "while the consumer worked, the reader filled its 64 slots and waited");

    rill_cancel(tick);
    rill_join(tick);
    unlink(path);
    demo_verdict("%d ERROR lines of %d found in %.3f s (real time) while the loop kept ticking",
                 count, LINES, took);
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
