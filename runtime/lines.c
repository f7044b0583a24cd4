/*
 * Lines as a generator: a growing buffer split at newlines, refilled by a
 * blocking read.  rill_file_lines reads a regular file on the thread pool
 * (a disk read cannot be waited for with epoll); rill_lines reads a stream
 * with rill_read, and bounds a line at 1 MiB (a peer must not make it
 * allocate without end).
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define FILE_CHUNK (64u * 1024u)   /* a pool job per read: large reads */
#define STREAM_CHUNK (16u * 1024u) /* a socket gives what has arrived */
#define STREAM_MAX_LINE (1024u * 1024u)

/* Where the bytes come from: a regular file read on the pool, or a stream
 * read with rill_read. */
typedef struct line_reader line_reader;
typedef ssize_t refill_fn(line_reader *r, char *dst, size_t n);

struct line_reader {
    refill_fn *refill;
    int fd;
    bool owns_fd;              /* rill_file_lines opened it */
    size_t chunk;              /* room wanted for one read */
    size_t max_line;           /* longer lines end the body with -E2BIG */
    char *buf;
    size_t cap;
    size_t start, end;         /* unread bytes: buf[start, end) */
    size_t scanned;            /* buf[start, scanned) holds no newline */
};

/* Make room for a read after the unread bytes: move them to the front, and
 * grow the buffer when a line is longer than what it holds. */
static int make_room(line_reader *r) {
    if (r->start) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->scanned -= r->start;
        r->start = 0;
    }
    if (r->cap - r->end >= r->chunk) return 0;
    size_t cap = r->cap ? r->cap * 2 : 2 * r->chunk;
    char *b = rill__realloc(r->buf, cap);
    if (!b) return -ENOMEM;
    r->buf = b;
    r->cap = cap;
    return 0;
}

/* Yield buf[start, stop) as a string (stop < cap: there is room for NUL). */
static int yield_line(rill_gen *g, line_reader *r, size_t stop, size_t next) {
    if (stop > r->start && r->buf[stop - 1] == '\r') stop--; /* CRLF endings */
    if (stop - r->start > r->max_line) return -E2BIG;
    r->buf[stop] = 0;
    const char *line = r->buf + r->start;
    r->start = r->scanned = next;
    return rill_yield(g, (void *)line);
}

static void close_fd(line_reader *r) {
    if (r->owns_fd && r->fd >= 0) close(r->fd);
    r->fd = -1;
}

static int lines_body(rill_gen *g, void *arg) {
    line_reader *r = arg;
    int rc = 0;
    for (;;) {
        char *nl = r->end > r->scanned ? memchr(r->buf + r->scanned, '\n', r->end - r->scanned)
                                       : NULL;
        if (nl) {
            size_t stop = (size_t)(nl - r->buf);
            if ((rc = yield_line(g, r, stop, stop + 1)) < 0) break;
            continue;
        }
        r->scanned = r->end; /* a line trickling in is not searched again */
        /* Longer than any line allowed, even before its "\r\n" arrives. */
        if (r->end - r->start > r->max_line + 1) {
            rc = -E2BIG;
            break;
        }
        if ((rc = make_room(r)) < 0) break;
        size_t room = r->cap - r->end - 1; /* one byte kept for a last NUL */
        ssize_t got = r->refill(r, r->buf + r->end, room);
        if (got == -ECANCELED) {
            /* Nothing was read: the consumer's rill_gen_next returns
             * -ECANCELED and a later one goes on from here. */
            if ((rc = rill__gen_yield_error(g, -ECANCELED)) < 0) break;
            continue;
        }
        if (got < 0) {
            rc = (int)got;
            break;
        }
        if (got == 0) { /* end of input: the last line may lack its newline */
            if (r->end > r->start) rc = yield_line(g, r, r->end, r->end);
            break;
        }
        r->end += (size_t)got;
    }
    close_fd(r);
    return rc == -EPIPE ? 0 : rc; /* -EPIPE: closed by the consumer */
}

static void reader_close(void *arg) { close_fd(arg); }

static void reader_free(void *arg) {
    line_reader *r = arg;
    close_fd(r);
    free(r->buf);
    free(r);
}

static const rill__gen_hooks reader_hooks = {reader_close, reader_free};

/* A generator over r (freed with it), or NULL with errno. */
static rill_gen *lines_gen(line_reader *r, const char *name) {
    rill_gen *g = rill__gen_new(lines_body, r, &(rill_opts){.name = name}, &reader_hooks);
    if (!g) {
        int err = errno;
        reader_free(r);
        errno = err;
    }
    return g;
}

/* ---- regular files, on the pool --------------------------------------------- */

typedef struct chunk_read {
    int fd;
    char *dst;
    size_t n;
} chunk_read;

static int read_chunk(void *arg) {
    chunk_read *c = arg;
    ssize_t got;
    do got = read(c->fd, c->dst, c->n); while (got < 0 && errno == EINTR);
    if (got < 0) return -errno;
    return (int)got;
}

static ssize_t refill_file(line_reader *r, char *dst, size_t n) {
    /* Reads of at most 64 MiB: rill_to_thread returns an int. */
    chunk_read c = {r->fd, dst, n < FILE_CHUNK * 1024 ? n : FILE_CHUNK * 1024};
    return rill_to_thread(read_chunk, &c);
}

rill_gen *rill_file_lines(const char *path) {
    if (!path) {
        errno = EINVAL;
        return NULL;
    }
    /* O_NONBLOCK: opening a FIFO must not hang us before we can refuse it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        /* A Unix socket (or a device with nothing behind it): a stream. */
        if (errno == ENXIO) errno = EINVAL;
        return NULL;
    }
    struct stat st;
    int err = 0;
    if (fstat(fd, &st) != 0) err = errno;
    else if (S_ISDIR(st.st_mode)) err = EISDIR;
    else if (!S_ISREG(st.st_mode)) err = EINVAL; /* a stream: use rill_wait_fd */
    else if (fcntl(fd, F_SETFL, 0) != 0) err = errno;
    line_reader *r = err ? NULL : rill__calloc(1, sizeof *r);
    if (!err && !r) err = ENOMEM;
    if (err) {
        close(fd);
        errno = err;
        return NULL;
    }
    *r = (line_reader){.refill = refill_file, .fd = fd, .owns_fd = true, .chunk = FILE_CHUNK,
                       .max_line = SIZE_MAX - 1};
    const char *base = strrchr(path, '/');
    char name[32];
    snprintf(name, sizeof name, "lines(%.24s)", base ? base + 1 : path);
    return lines_gen(r, name);
}

/* ---- streams, with rill_read ------------------------------------------------ */

static ssize_t refill_stream(line_reader *r, char *dst, size_t n) {
    return rill_read(r->fd, dst, n);
}

rill_gen *rill_lines(int fd) {
    if (fd < 0) {
        errno = EBADF;
        return NULL;
    }
    line_reader *r = rill__calloc(1, sizeof *r);
    if (!r) return NULL;
    *r = (line_reader){.refill = refill_stream, .fd = fd, .chunk = STREAM_CHUNK,
                       .max_line = STREAM_MAX_LINE};
    char name[32];
    snprintf(name, sizeof name, "lines(fd %d)", fd);
    return lines_gen(r, name);
}
