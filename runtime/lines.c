/*
 * Lines as a generator: a growing buffer split at newlines, refilled by a
 * blocking read.  rill_file_lines reads a regular file on the thread pool
 * (a disk read cannot be waited for with epoll).
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define CHUNK (64u * 1024u)

typedef struct file_lines {
    int fd;
    char *buf;
    size_t cap;
    size_t start, end;       /* unread bytes: buf[start, end) */
} file_lines;

typedef struct chunk_read {
    int fd;
    char *dst;
    size_t n;
} chunk_read;

static int read_chunk(void *arg) {
    chunk_read *r = arg;
    ssize_t got;
    do got = read(r->fd, r->dst, r->n); while (got < 0 && errno == EINTR);
    if (got < 0) return -errno;
    return (int)got;
}

/* Make room for a chunk after the unread bytes: move them to the front, and
 * grow the buffer when a line is longer than what it holds. */
static int make_room(file_lines *f) {
    if (f->start) {
        memmove(f->buf, f->buf + f->start, f->end - f->start);
        f->end -= f->start;
        f->start = 0;
    }
    if (f->cap - f->end >= CHUNK) return 0;
    size_t cap = f->cap ? f->cap * 2 : 2 * CHUNK;
    char *b = rill__realloc(f->buf, cap);
    if (!b) return -ENOMEM;
    f->buf = b;
    f->cap = cap;
    return 0;
}

/* Yield buf[start, stop) as a string (stop < cap: there is room for NUL). */
static int yield_line(rill_gen *g, file_lines *f, size_t stop, size_t next) {
    if (stop > f->start && f->buf[stop - 1] == '\r') stop--; /* CRLF endings */
    f->buf[stop] = 0;
    const char *line = f->buf + f->start;
    f->start = next;
    return rill_yield(g, (void *)line);
}

static void close_fd(file_lines *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
}

static int file_lines_body(rill_gen *g, void *arg) {
    file_lines *f = arg;
    int rc = 0;
    for (;;) {
        char *nl = f->end > f->start ? memchr(f->buf + f->start, '\n', f->end - f->start) : NULL;
        if (nl) {
            size_t stop = (size_t)(nl - f->buf);
            if ((rc = yield_line(g, f, stop, stop + 1)) < 0) break;
            continue;
        }
        if ((rc = make_room(f)) < 0) break;
        size_t room = f->cap - f->end - 1; /* one byte kept for a last NUL */
        chunk_read r = {f->fd, f->buf + f->end, room < CHUNK * 1024 ? room : CHUNK * 1024};
        int got = rill_to_thread(read_chunk, &r);
        if (got < 0) {
            rc = got;
            break;
        }
        if (got == 0) { /* end of file: the last line may lack its newline */
            if (f->end > f->start) rc = yield_line(g, f, f->end, f->end);
            break;
        }
        f->end += (size_t)got;
    }
    close_fd(f);
    return rc == -EPIPE ? 0 : rc; /* -EPIPE: closed by the consumer */
}

static void file_lines_close(void *arg) { close_fd(arg); }

static void file_lines_free(void *arg) {
    file_lines *f = arg;
    close_fd(f);
    free(f->buf);
    free(f);
}

static const rill__gen_hooks file_lines_hooks = {file_lines_close, file_lines_free};

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
    file_lines *f = err ? NULL : rill__calloc(1, sizeof *f);
    if (!err && !f) err = ENOMEM;
    if (err) {
        close(fd);
        errno = err;
        return NULL;
    }
    f->fd = fd;
    const char *base = strrchr(path, '/');
    char name[32];
    snprintf(name, sizeof name, "lines(%.24s)", base ? base + 1 : path);
    rill_gen *g = rill__gen_new(file_lines_body, f, &(rill_opts){.name = name}, &file_lines_hooks);
    if (!g) {
        err = errno;
        file_lines_free(f);
        errno = err;
    }
    return g;
}
