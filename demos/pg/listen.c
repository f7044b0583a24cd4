/*
 * LISTEN/NOTIFY as a generator:
 *
 *     async def listen_notifications(dsn, channel):
 *         conn = await asyncpg.connect(dsn)
 *         try:
 *             queue = asyncio.Queue()
 *             def notification_handler(connection, pid, channel, payload):
 *                 queue.put_nowait(payload)
 *             await conn.add_listener(channel, notification_handler)
 *             print(f"Listening on channel: {channel}")
 *             while True:
 *                 yield await queue.get()
 *         finally:
 *             await conn.remove_listener(channel, notification_handler)
 *             await conn.close()
 *
 *     async def send_notification(dsn, channel, message):
 *         conn = await asyncpg.connect(dsn)
 *         try:
 *             await conn.execute(f"NOTIFY {channel}, $1", message)
 *         finally:
 *             await conn.close()
 *
 *     async def listener():
 *         async for notification in listen_notifications(dsn, channel):
 *             print(f"Received: {notification}")
 *             if notification == 'stop':
 *                 break
 *
 *     listener_task = asyncio.create_task(listener())
 *     await asyncio.sleep(1)
 *     await send_notification(dsn, channel, 'Hello!')
 *     await asyncio.sleep(0.5)
 *     await send_notification(dsn, channel, 'World!')
 *     await asyncio.sleep(0.5)
 *     await send_notification(dsn, channel, 'stop')
 *     await listener_task
 *
 * rill_pg_listen is listen_notifications: its own connection, LISTEN at
 * the first rill_gen_next, each notification yielded as it comes (no queue
 * and no callback: the generator waits on the socket itself), UNLISTEN and
 * close when closed.  Two differences from the original:
 *  - NOTIFY takes no parameters ("NOTIFY ch, $1" fails on the server with
 *    a syntax error): the sender calls pg_notify($1, $2).
 *  - the sleep(1) before the first send only usually outlasts the
 *    listener's connect and LISTEN; the sender also waits until the
 *    server's pg_stat_activity shows the listener's LISTEN (a
 *    notification sent before it would be lost).
 */
#include "pgdemo.h"

#include <unistd.h>

#define NMSG 3
static const char *const messages[NMSG] = {"Hello!", "World!", "stop"};

struct listener {
    char channel[48];
    char received[NMSG][16];
    int n, status;
    double first_at;
};

static int listener(void *arg) {
    struct listener *l = arg;
    RILL_GEN_AUTO rill_gen *notes = rill_pg_listen(pgd_source, l->channel);
    if (!notes) return l->status = -errno;
    printf("Listening on channel: %s\n", l->channel);
    rill_pg_notify *note;
    rill_foreach(note, notes) {
        printf("Received: %s\n", note->payload);
        if (l->n < NMSG) snprintf(l->received[l->n++], sizeof l->received[0], "%s", note->payload);
        if (strcmp(note->payload, "stop") == 0) break;
    }
    l->status = rill_gen_status(notes);
    return l->status;
}

/* send_notification(dsn, channel, message) */
static int send_notification(const char *dsn, const char *channel, const char *message) {
    rill_pg *conn;
    int rc = pgd_connect(dsn, &conn);
    if (rc < 0) return rc;
    const char *params[] = {channel, message};
    long n = rill_pg_exec(conn, "SELECT pg_notify($1, $2)", 2, params, NULL);
    if (n < 0) printf("NOTIFY failed: %s\n", rill_pg_error(conn));
    rill_pg_close(conn);
    return n < 0 ? (int)n : 0;
}

/* How many sessions listen on channel (0 or 1 here), from the server's view;
 * < 0 on an error. */
static long listening(rill_pg *c, const char *channel) {
    const char *params[] = {channel};
    return rill_pg_exec(c,
                        "SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                        "query ILIKE '%LISTEN%' AND query LIKE '%' || $1 || '%'",
                        1, params, NULL);
}

void example_listen(void) {
    printf("== a listener task: async for notification in listen_notifications(dsn, channel); "
           "and a sender ==\n");
    struct listener l = {.status = 1};
    snprintf(l.channel, sizeof l.channel, "my_channel_%d", (int)getpid());
    rill_pg *watch;
    if (pgd_connect(pgd_source, &watch) < 0) return;
    rill_task *task = rill_spawn(listener, &l);
    pgd_expect(task != NULL, "the listener task starts");
    if (!task) goto out;

    double s = pgd_scale();
    int rc = rill_sleep(1 * s);
    for (double until = rill_now() + 5; rc == 0 && listening(watch, l.channel) == 0;) {
        if (rill_now() > until) {
            rc = -ETIMEDOUT;
            break;
        }
        rc = rill_sleep(0.005);
    }
    pgd_expect(rc == 0, "the listener's LISTEN is in effect within 5 s");
    for (int i = 0; i < NMSG && rc == 0; i++) {
        if (i > 0) rc = rill_sleep(0.5 * s);
        if (rc == 0) rc = send_notification(pgd_source, l.channel, messages[i]);
    }
    pgd_expect(rc == 0, "the three notifications are sent");
    if (rc < 0) rill_cancel(task);
    int jrc = rill_join(task);

    bool in_order = l.n == NMSG;
    for (int i = 0; i < l.n && i < NMSG; i++) in_order &= strcmp(l.received[i], messages[i]) == 0;
    printf("the listener received %d notifications and returned %s\n", l.n, pgd_errname(jrc));
    pgd_expect(jrc == 0 && in_order, "the listener receives Hello!, World!, stop, in order");

    /* Breaking out closed the generator: its session ends. */
    long left = 1;
    double until = rill_now() + 5;
    while ((left = listening(watch, l.channel)) > 0 && rill_now() < until) rill_sleep(0.005);
    printf("the listener's session has ended: %s\n", left == 0 ? "yes" : "no");
    pgd_expect(left == 0, "closing the generator closes its connection");
out:
    rill_pg_close(watch);
}
