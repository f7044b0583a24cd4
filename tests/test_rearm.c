/* Back-to-back waits on a socket rill made keep its registration with the
 * kernel when the next wait starts in the round the last one ended
 * (runtime/fd.c): these tests hold that shortcut to what it must not
 * break.  Each would hang (and time out) if a registration were kept for
 * a file that is gone. */
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

/* A connected pair of TCP sockets made by rill. */
static void tcp_pair(int *a, int *b) {
    int lfd = rill_tcp_listen("127.0.0.1", 0, 0);
    cr_assert(lfd >= 0, "listen: %s", rill_strerror(lfd));
    *a = rill_tcp_connect("127.0.0.1", rill_local_port(lfd));
    cr_assert(*a >= 0, "connect: %s", rill_strerror(*a));
    *b = rill_accept(lfd, NULL, NULL);
    cr_assert(*b >= 0, "accept: %s", rill_strerror(*b));
    expect_eq(rill_close(lfd), 0);
}

typedef struct pinger {
    int fd;
    int rounds;
    int done;
} pinger;

/* Reply to each byte with the next value, rounds times. */
static int ponger(void *arg) {
    pinger *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        unsigned char c;
        if (rill_read(p->fd, &c, 1) != 1) return -EIO;
        c++;
        if (rill_write(p->fd, &c, 1) != 1) return -EIO;
        p->done++;
    }
    return 0;
}

FIBER_TEST(rearm, a_thousand_exchanges_in_consecutive_rounds_each_get_their_reply) {
    int a, b;
    tcp_pair(&a, &b);
    pinger p = {b, 1000, 0};
    rill_task *t = rill_spawn(ponger, &p);
    unsigned char c = 0;
    for (int i = 0; i < 1000; i++) {
        unsigned char sent = c;
        expect_eq(rill_write(a, &c, 1), 1);
        expect_eq(rill_read(a, &c, 1), 1);
        expect_eq(c, (unsigned char)(sent + 1));
    }
    expect_eq(rill_join(t), 0);
    expect_eq(p.done, 1000);
    expect_eq(rill_close(a), 0);
    expect_eq(rill_close(b), 0);
    return 0;
}

typedef struct late_writer {
    int fd;
    double after;
} late_writer;

static int write_later(void *arg) {
    late_writer *w = arg;
    expect_eq(rill_sleep(w->after), 0);
    return rill_write(w->fd, "z", 1) == 1 ? 0 : -EIO;
}

/* Woken ready, closed with rill_close and replaced by a file of another
 * kind on the same number, all in one round: the new file is watched. */
FIBER_TEST(rearm, a_number_reused_in_the_round_its_socket_was_closed_is_watched_anew) {
    int a, b;
    tcp_pair(&a, &b);
    late_writer first = {a, 0.01};
    rill_task *t = rill_spawn(write_later, &first);
    char c;
    expect_eq(rill_read(b, &c, 1), 1); /* b's wait ended ready this round */
    expect_eq(rill_join(t), 0);        /* t has ended: no new round */
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int number = b;
    expect_eq(rill_close(b), 0);
    /* The pair's first socket takes b's number. */
    cr_assert_eq(dup3(sv[0], number, O_CLOEXEC), number);
    close(sv[0]);
    sv[0] = number;
    late_writer second = {sv[1], 0.01};
    t = rill_spawn(write_later, &second);
    expect_eq(rill_read(sv[0], &c, 1), 1);
    expect_eq(c, 'z');
    expect_eq(rill_join(t), 0);
    close(sv[0]);
    close(sv[1]);
    expect_eq(rill_close(a), 0);
    return 0;
}
