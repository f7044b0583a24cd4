/*
 * backpressure: a fast producer and a slow consumer joined by a bounded
 * queue of 10.  When the queue is full the producer's put waits, so it is
 * never more than 10 messages ahead and its pace becomes the consumer's.
 *
 * The Python original:
 *
 *     async def generate_with_backpressure():
 *         queue = Queue(maxsize=10)                 # bounded
 *
 *         async def producer():
 *             for i in range(100):
 *                 await queue.put(f"Message {i}")   # waits while full
 *                 await asyncio.sleep(0.01)
 *             await queue.put(None)                 # end signal
 *
 *         async def consumer():
 *             while True:
 *                 item = await queue.get()
 *                 if item is None:
 *                     break
 *                 yield item
 *
 *         asyncio.create_task(producer())
 *         async for item in consumer():
 *             yield item
 *
 *     async for item in generate_with_backpressure():
 *         await asyncio.sleep(0.05)                 # a slower consumer
 *
 * rill_queue_new(10, size) is Queue(maxsize=10), copying each item in.
 * Instead of a None sentinel the producer closes the queue: the consumer
 * gets what is left, then -EPIPE (and a put after close fails with -EPIPE
 * too).  The generator's body is both `generate_with_backpressure` and its
 * inner `consumer()`: a loop of rill_queue_get and rill_yield.  Unlike the
 * Python code, which forgets its producer task, the body closes the queue
 * and joins the producer however iteration ends; part 2 breaks out early to
 * show that the producer, blocked in a put, is stopped rather than leaked.
 *
 * Usage: backpressure [--scale X]   (X multiplies every delay)
 */
#include "demo.h"

#define NMSG 100
#define CAPACITY 10
#define MSG_SIZE 20          /* "Message " and any int, and its NUL */
#define PRODUCER_DELAY 0.01  /* seconds after each put, before scaling */
#define CONSUMER_DELAY 0.05  /* seconds to process each message */
#define BREAK_AFTER 15       /* part 2: messages taken before the break */

/* What the producer, the generator and the consumer share, for the prints
 * and the checks. */
struct flow {
    rill_queue *q;         /* while the generator runs */
    int produced;          /* puts that returned 0 */
    int consumed;          /* gets that returned 0 */
    int max_ahead;         /* the most produced - consumed ever was */
    int first_wait;        /* the first message put into a full queue, or -1 */
    int consumed_at_done;  /* consumed when the last put returned */
    double started, done_at; /* the generator's start, the producer's last put */
    int put_status;        /* how the producer ended: 0, or -EPIPE */
    int last_get;          /* what ended the generator's loop */
};

/* producer(): 100 messages, 0.01 s apart; a put into a full queue waits.
 * The sleep follows a schedule (message i is due i x 0.01 s after the start)
 * so that the producer keeps its rate at a small --scale, where a sleep of
 * a fraction of a millisecond lasts as long as libev's shortest wait. */
static int producer(void *arg) {
    struct flow *f = arg;
    char msg[MSG_SIZE];
    double due = rill_now();
    for (int i = 0; i < NMSG; i++) {
        snprintf(msg, sizeof msg, "Message %d", i);
        if (rill_queue_len(f->q) == CAPACITY && f->first_wait < 0) {
            f->first_wait = i;
            printf("producer: the queue is full at %s: put waits for the consumer\n", msg);
        }
        int rc = rill_queue_put(f->q, msg);
        if (rc < 0) {
            /* -EPIPE: the queue was closed under us, nobody will read. */
            printf("producer: put(%s) returned %s: stopping\n", msg, errname(rc));
            f->put_status = rc;
            return rc == -EPIPE ? 0 : rc;
        }
        f->produced++;
        if (f->produced - f->consumed > f->max_ahead) f->max_ahead = f->produced - f->consumed;
        due += PRODUCER_DELAY * scale;
        if ((rc = rill_sleep_until(due)) < 0) return rc; /* asyncio.sleep(0.01) */
    }
    f->consumed_at_done = f->consumed;
    f->done_at = rill_now();
    printf("producer: all %d queued after %.2fs (alone it would take %.2fs); closing\n", NMSG,
           (f->done_at - f->started) / scale, NMSG * PRODUCER_DELAY);
    rill_queue_close(f->q); /* instead of put(None) */
    return 0;
}

/* generate_with_backpressure(): start the producer, then yield what it
 * queues until the queue is closed and drained. */
static int generate_with_backpressure(rill_gen *g, void *arg) {
    struct flow *f = arg;
    if (!(f->q = rill_queue_new(CAPACITY, MSG_SIZE))) return -errno;
    f->started = rill_now();
    rill_task *task = rill_spawn(producer, f);
    if (!task) {
        int err = -errno;
        rill_queue_free(f->q);
        return err;
    }
    char item[MSG_SIZE];
    int rc;
    while ((rc = rill_queue_get(f->q, item)) == 0) { /* consumer() */
        f->consumed++;
        if ((rc = rill_yield(g, item)) < 0) break; /* -EPIPE: we are closed */
    }
    f->last_get = rc;

    /* However the loop ended, stop the producer: after close its next put
     * fails with -EPIPE.  Shielded, so that a cancelled consumer still
     * waits for it rather than leave it running. */
    rill_queue_close(f->q);
    rill_scope shield;
    rill_scope_enter(&shield, RILL_FOREVER);
    rill_scope_shield(&shield, true);
    int status = rill_join(task);
    rill_scope_exit(&shield);
    rill_queue_free(f->q);
    f->q = NULL;
    /* Drained (-EPIPE from get) or closed early (-EPIPE from yield): a clean end. */
    return rc == -EPIPE ? status : rc;
}

static void flow_init(struct flow *f) {
    *f = (struct flow){.first_wait = -1, .consumed_at_done = -1};
}

/* ---- Part 1: consume everything, slowly ------------------------------------ */

static int consume_all(void) {
    printf("== async for item in generate_with_backpressure(): sleep(0.05) each ==\n");
    struct flow f;
    flow_init(&f);
    RILL_GEN_AUTO rill_gen *gen = rill_gen_new(generate_with_backpressure, &f);
    if (!gen) return -errno;
    double start = rill_now();
    int n = 0;
    bool in_order = true;
    char *item, want[MSG_SIZE];
    rill_foreach(item, gen) {
        snprintf(want, sizeof want, "Message %d", n);
        in_order = in_order && strcmp(item, want) == 0;
        if (n % 10 == 9 || n == 0)
            printf("consumer: %-10s  queue %2zu/%d\n", item, rill_queue_len(f.q), CAPACITY);
        n++;
        int rc = rill_sleep(CONSUMER_DELAY * scale); /* processing */
        if (rc < 0) return rc;
    }
    int status = rill_gen_status(gen);
    double took = demo_elapsed(start);
    printf("consumer: get returned %s after the last message\n", errname(f.last_get));
    printf("The producer was at most %d messages ahead of the consumer\n", f.max_ahead);
    printf("Total time: %.2fs (the consumer's pace: %d x %.2fs = %.2fs)\n\n", took, NMSG,
           CONSUMER_DELAY, NMSG * CONSUMER_DELAY);

    expect(status == 0 && n == NMSG && in_order, "the consumer gets all 100 messages, in order");
    expect(f.first_wait >= 0, "the queue fills up: the producer has to wait");
    expect(f.max_ahead <= CAPACITY, "the producer is never more than 10 messages ahead");
    expect(f.consumed_at_done >= NMSG - CAPACITY,
           "the producer's last put returns only once the consumer has taken 90");
    expect(f.last_get == -EPIPE, "after close, get drains the queue, then returns -EPIPE");
    expect(took >= NMSG * CONSUMER_DELAY, "the run takes the slow consumer's time: >= 5 s");
    expect(took < 2 * NMSG * CONSUMER_DELAY, "and not much more (less than 10 s)");
    return status;
}

/* ---- Part 2: break out early ------------------------------------------------ */

static int break_early(void) {
    printf("== break after %d messages: the generator's cleanup stops the producer ==\n",
           BREAK_AFTER);
    struct flow f;
    flow_init(&f);
    int n = 0, status;
    {
        RILL_GEN_AUTO rill_gen *gen = rill_gen_new(generate_with_backpressure, &f);
        if (!gen) return -errno;
        char *item;
        rill_foreach(item, gen) {
            if (++n == BREAK_AFTER) {
                printf("consumer: %s, queue %zu/%d: break\n", item, rill_queue_len(f.q),
                       CAPACITY);
                break;
            }
            int rc = rill_sleep(CONSUMER_DELAY * scale);
            if (rc < 0) return rc;
        }
        /* Closing the generator makes its rill_yield return -EPIPE: the
         * body closes the queue and joins the producer, whose waiting (or
         * next) put then fails with -EPIPE. */
        status = rill_gen_close(gen);
    }
    printf("consumer: generator closed (%s)\n\n", errname(status));
    expect(status == 0 && n == BREAK_AFTER, "the generator closes cleanly after the break");
    expect(f.put_status == -EPIPE, "the producer's waiting put fails with -EPIPE on close");
    expect(f.max_ahead <= CAPACITY, "here too the producer stays at most 10 ahead");
    return 0;
}

static int amain(void *arg) {
    (void)arg;
    int rc = consume_all();
    if (rc < 0) return rc;
    rc = break_early();
    if (rc < 0) return rc;
    demo_verdict("the bounded queue held the producer to the consumer's pace, at most %d "
                 "ahead",
                 CAPACITY);
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
