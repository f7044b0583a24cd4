/*
 * lines_client: a TCP stream read line by line, with a running count.
 *
 * The Python original:
 *
 *     async def main(host, port):
 *         reader, writer = await asyncio.open_connection(host, port)
 *         count = 0
 *         async for line in reader:
 *             count += 1
 *             print(count, line.decode().rstrip("\r\n"))
 *         print(f"{count} lines")
 *         writer.close()
 *
 * rill_tcp_connect() is open_connection, and rill_lines(fd) is `async for
 * line in reader`: a generator that reads with rill_read (waiting for the
 * socket while other tasks run) and yields each line without its "\n" or
 * "\r\n", however the bytes were cut into segments on the way; a last line
 * without newline comes at the end of the stream.  Unlike readline(), a
 * line has a bound (1 MiB): past it the generator ends with -E2BIG rather
 * than buffering without limit (asyncio's StreamReader limit, which raises
 * LimitOverrunError).
 *
 * --self-test starts its own line-producing server task: 10 000 lines of
 * many lengths (empty ones, one of 200 000 bytes), "\n" and "\r\n" mixed,
 * the last without newline, written in irregular chunks (a chunk may end
 * between "\r" and "\n") with pauses between some of them; the client
 * checks the count and a checksum of every line's content.  Then a second
 * connection sends a line longer than the bound, which must end the
 * generator with -E2BIG, the lines before it intact.
 *
 * Usage: lines_client --connect HOST:PORT       print every line with its count
 *        lines_client [--self-test] [--scale X] the self-test, pauses x X
 *                                               (what runs without --connect)
 *
 * run-demos: --self-test
 */
#include <dirent.h>
#include <unistd.h>

#include "demo.h"

#define NLINES 10000
#define LONG_LINE 200000       /* one line this long (under the 1 MiB bound) */
#define TOO_LONG (3 << 19)     /* 1.5 MiB without newline: over the bound */
#define PAUSE 0.01             /* seconds, before scaling, every PAUSE_EVERY chunks */
#define PAUSE_EVERY 10

/* FNV-1a, 64 bits, over each line's bytes and a separator after each. */
typedef struct digest {
    uint64_t h;
} digest;

static void digest_line(digest *d, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) d->h = (d->h ^ (unsigned char)s[i]) * 0x100000001b3u;
    d->h = (d->h ^ 0xffu) * 0x100000001b3u; /* a byte no line holds */
}

/* A small deterministic generator of irregular numbers. */
static uint32_t next_rand(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* ---- the self-test's server: the stream and what it holds ---------------- */

typedef struct stream {
    char *bytes;
    size_t len;
    digest want;          /* of every line's content */
    long empty_lines;
} stream;

/* Build the 10 000 lines: content of many lengths, empty ones, one long
 * one; "\n" or "\r\n" after each but the last. */
static int make_stream(stream *st) {
    size_t cap = (size_t)NLINES * 320 + LONG_LINE;
    st->bytes = malloc(cap);
    if (!st->bytes) return -ENOMEM;
    st->want.h = 0xcbf29ce484222325u;
    uint32_t r = 12345;
    size_t at = 0;
    for (int i = 0; i < NLINES; i++) {
        char *line = st->bytes + at;
        size_t n;
        if (i == NLINES / 2) {
            n = LONG_LINE;
            for (size_t k = 0; k < n; k++) line[k] = (char)('a' + k % 26);
        } else if (next_rand(&r) % 50 == 0) {
            n = 0; /* an empty line counts as a line */
            st->empty_lines++;
        } else {
            n = (size_t)sprintf(line, "line %d: ", i + 1);
            size_t pad = next_rand(&r) % 300;
            for (size_t k = 0; k < pad; k++) line[n++] = (char)(' ' + next_rand(&r) % 95);
        }
        digest_line(&st->want, line, n);
        at += n;
        if (i == NLINES - 1) break; /* the last line: no newline */
        if (next_rand(&r) % 3 == 0) st->bytes[at++] = '\r';
        st->bytes[at++] = '\n';
    }
    st->len = at;
    return 0;
}

typedef struct producer {
    int lfd;
    const char *bytes;
    size_t len;
    long chunks, split_crlf;  /* writes made, chunks ending between \r and \n */
} producer;

/* Accept one connection and write the bytes in irregular chunks (1 byte
 * to 16 KiB), pausing every PAUSE_EVERY chunks; then close. */
static int produce(void *arg) {
    producer *p = arg;
    int fd = rill_accept(p->lfd, NULL, NULL);
    if (fd < 0) return fd;
    uint32_t r = 777;
    int rc = 0;
    for (size_t at = 0; at < p->len && rc == 0;) {
        uint32_t small = next_rand(&r) % 4 == 0;
        size_t n = 1 + next_rand(&r) % (small ? 16 : 16384);
        if (n > p->len - at) n = p->len - at;
        if (next_rand(&r) % 8 == 0) { /* end this chunk between "\r" and "\n" */
            const char *cr = memchr(p->bytes + at, '\r', p->len - at);
            if (cr && cr[1] == '\n') n = (size_t)(cr - (p->bytes + at)) + 1;
        }
        bool split = p->bytes[at + n - 1] == '\r';
        ssize_t w = rill_write(fd, p->bytes + at, n);
        if (w < 0) rc = (int)w;
        at += n;
        p->chunks++;
        p->split_crlf += split;
        /* A pause lets the reader take in what came so far: after a chunk
         * ending in "\r" it reads that "\r" without its "\n". */
        if (rc == 0 && (split || p->chunks % PAUSE_EVERY == 0))
            rc = rill_sleep(PAUSE * scale / (split ? 10 : 1));
    }
    rill_close(fd);
    return rc;
}

/* ---- the client ------------------------------------------------------------- */

typedef struct tally {
    long count, empty;
    size_t longest;
    digest d;
    int status;           /* how the generator ended: 0 at the end of the stream */
} tally;

/* async for line in reader: count += 1 (and print, if asked). */
static int read_lines(int fd, tally *t, bool print_each, bool progress) {
    t->d.h = 0xcbf29ce484222325u;
    rill_gen *lines = rill_lines(fd);
    if (!lines) return -errno;
    const char *line;
    rill_foreach(line, lines) {
        size_t n = strlen(line);
        t->count++;
        t->empty += n == 0;
        if (n > t->longest) t->longest = n;
        digest_line(&t->d, line, n);
        if (print_each) printf("%ld %s\n", t->count, line);
        else if (progress && (t->count <= 3 || t->count % 2000 == 0))
            printf("  line %ld: %.50s%s\n", t->count, line, n > 50 ? "..." : "");
    }
    t->status = rill_gen_status(lines);
    rill_gen_free(lines);
    return 0;
}

static int count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

/* One connection to a producer of bytes, read line by line into t. */
static int read_from_producer(producer *p, tally *t, bool progress) {
    p->lfd = rill_tcp_listen("127.0.0.1", 0, 0);
    if (p->lfd < 0) return p->lfd;
    rill_task *task = rill_spawn(produce, p);
    int rc = task ? 0 : -errno;
    int fd = rc ? rc : rill_tcp_connect("127.0.0.1", rill_local_port(p->lfd));
    if (fd < 0 && rc == 0) rc = fd;
    if (rc == 0) rc = read_lines(fd, t, false, progress);
    if (fd >= 0) rill_close(fd); /* the producer may still write: it gets -EPIPE */
    if (task) {
        if (rc < 0) rill_cancel(task);
        int prc = rill_join(task);
        if (rc == 0 && prc < 0 && prc != -EPIPE && prc != -ECONNRESET) rc = prc;
    }
    rill_close(p->lfd);
    return rc;
}

static int self_test(void) {
    int fds0 = count_open_fds();
    stream st = {0};
    int rc = make_stream(&st);
    if (rc < 0) return rc;
    printf("a server task writes %d lines (%zu bytes; \"\\n\" and \"\\r\\n\", %ld empty, one of "
           "%d bytes, the last without newline) in irregular chunks\n",
           NLINES, st.len, st.empty_lines, LONG_LINE);

    producer p = {.bytes = st.bytes, .len = st.len};
    tally t = {0};
    double t0 = rill_now();
    rc = read_from_producer(&p, &t, true);
    double took = rill_now() - t0;
    if (rc < 0) {
        free(st.bytes);
        return rc;
    }
    printf("%ld lines (%ld empty, the longest %zu bytes) in %.3f s (real time); the stream came in %ld "
           "chunks, %ld of them ending between \"\\r\" and \"\\n\"; checksum %016llx, sent "
           "%016llx\n",
           t.count, t.empty, t.longest, took, p.chunks, p.split_crlf,
           (unsigned long long)t.d.h, (unsigned long long)st.want.h);
    expect(t.status == 0, "the generator ended at the end of the stream, without an error");
    expect(t.count == NLINES, "every line was counted once, the last without newline too");
    expect(t.empty == st.empty_lines, "empty lines are lines");
    expect(t.d.h == st.want.h, "every line's content arrived intact, \"\\r\\n\" stripped");
    expect(t.longest == LONG_LINE, "a line far longer than one read came whole");
    expect(p.split_crlf > 0, "some chunk ended between \"\\r\" and \"\\n\"");

    /* A line over the bound: two short lines, then 1.5 MiB without newline. */
    size_t big = TOO_LONG + 16;
    char *over = malloc(big);
    if (!over) {
        free(st.bytes);
        return -ENOMEM;
    }
    memcpy(over, "first\r\nsecond\n", 14);
    memset(over + 14, 'x', big - 14);
    producer q = {.bytes = over, .len = big};
    tally u = {0};
    rc = read_from_producer(&q, &u, false);
    printf("a line over 1 MiB: %ld lines before it, then the generator ended with %s (%s)\n",
           u.count, u.status == -E2BIG ? "-E2BIG" : errname(u.status), rill_strerror(u.status));
    expect(rc == 0 && u.status == -E2BIG, "a line over 1 MiB ends the generator with -E2BIG");
    expect(u.count == 2, "the lines before it came intact");
    free(over);
    free(st.bytes);
    int fds1 = count_open_fds();
    printf("open fds: %d before, %d after\n", fds0, fds1);
    expect(fds0 >= 0 && fds1 == fds0, "no fd is left open");
    demo_verdict("%ld lines counted from a stream cut in %ld irregular chunks, content intact; "
                 "a line over the bound ends the stream with -E2BIG",
                 t.count, p.chunks);
    return 0;
}

/* ---- main ------------------------------------------------------------------ */

static char *connect_host;
static int connect_port;

static int amain(void *arg) {
    (void)arg;
    if (!connect_host) return self_test();
    int fd = rill_tcp_connect(connect_host, connect_port);
    if (fd < 0) {
        fprintf(stderr, "lines_client: cannot connect to %s:%d: %s\n", connect_host,
                connect_port, rill_strerror(fd));
        return fd;
    }
    tally t = {0};
    int rc = read_lines(fd, &t, true, false);
    rill_close(fd);
    if (rc < 0) return rc;
    printf("%ld lines\n", t.count);
    if (t.status < 0) fprintf(stderr, "lines_client: %s\n", rill_strerror(t.status));
    return t.status;
}

static void usage(const char *prog) {
    fprintf(stderr,
            "usage: %s --connect HOST:PORT      print every line of the stream with its count\n"
            "       %s --self-test [--scale X]  read %d lines from a server task of its own\n"
            "       (--scale without --connect runs the self-test too)\n",
            prog, prog, NLINES);
    exit(2);
}

int main(int argc, char **argv) {
    bool test = false;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--self-test") == 0) {
            test = true;
        } else if (strcmp(argv[i], "--connect") == 0 && i + 1 < argc) {
            connect_host = argv[++i];
            char *colon = strrchr(connect_host, ':');
            if (!colon) usage(argv[0]);
            *colon = '\0';
            long p = strtol(colon + 1, &end, 10);
            if (*end || p < 1 || p > 65535 || !*connect_host) usage(argv[0]);
            connect_port = (int)p;
            if (connect_host[0] == '[' && colon[-1] == ']') { /* [::1]:8888 */
                colon[-1] = '\0';
                connect_host++;
            }
        } else if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) {
            scale = strtod(argv[++i], &end);
            if (*end || !(scale > 0) || scale > 1e6) usage(argv[0]);
        } else {
            usage(argv[0]);
        }
    }
    if (test && connect_host) usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!connect_host) {
        if (scale != 1.0)
            printf("(--scale %g: every pause is %gx its full length; times below are at full "
                   "scale, measured / %g)\n\n",
                   scale, scale, scale);
        return demo_end(rill_run(amain, NULL));
    }
    return rill_run(amain, NULL) == 0 ? 0 : 1;
}
