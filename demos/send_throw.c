/*
 * send_throw: talking back to a generator.  send() passes a value in as the
 * generator resumes, throw() raises an error at its yield, and the same
 * mechanism gives plain synchronous coroutines, outside any event loop.
 *
 * The Python originals:
 *
 *     async def async_gen_with_send():
 *         value = None
 *         for i in range(5):
 *             value = yield i                   # receive what is sent in
 *             if value is not None:
 *                 print(f"Received: {value}")
 *
 *     gen = async_gen_with_send()
 *     print(await gen.asend(None))      # 0  (starts the generator)
 *     print(await gen.asend("Hello"))   # Received: Hello, then 1
 *     print(await gen.asend("World"))   # Received: World, then 2
 *
 *     def simple_coroutine():           # a synchronous coroutine
 *         print("Coroutine started")
 *         value = yield
 *         print(f"Received value: {value}")
 *         yield
 *
 *     gen = simple_coroutine()
 *     next(gen)        # run up to the first yield
 *     gen.send(42)     # resume it with the value 42
 *
 *     Python                         rill
 *     value = yield i                rc = rill_yield(g, &i);  value = rill_gen_sent(g);
 *     await gen.asend(v)             rill_gen_send(g, v, &out)
 *     await gen.athrow(exc)          rill_gen_throw(g, -EBADMSG, &out)
 *     except ValueError: (at yield)  rill_yield() returned -EBADMSG
 *     next(gen)                      rill_gen_next(g, &out)
 *
 * A thrown error is the return value of the body's rill_yield: the body may
 * handle it and yield again (throw then returns 1 with the next value), or
 * return it, which ends the generator with that error.
 *
 * Usage: send_throw [--scale X]   (X multiplies every delay)
 */
#include "demo.h"

/* ---- 1. An async generator that receives values, and handles an error ---- */

struct echo {
    int received;  /* values received through send */
    int handled;   /* errors thrown in and handled */
};

/* async_gen_with_send(), plus a handler for a "bad message" thrown in.  The
 * value is the loop counter, borrowed until the next resume. */
static int async_gen_with_send(rill_gen *g, void *arg) {
    struct echo *e = arg;
    for (int i = 0; i < 5; i++) {
        int rc = rill_yield(g, &i); /* value = yield i */
        if (rc == -EBADMSG) {       /* except ValueError: handle it, go on */
            printf("  (generator) caught %s (%s), skipping to the next value\n",
                   errname(rc), rill_strerror(rc));
            e->handled++;
            continue;
        }
        if (rc < 0) return rc; /* closed (-EPIPE), or an error we do not handle */
        const char *value = rill_gen_sent(g); /* NULL after a plain next */
        if (value) {
            printf("Received: %s\n", value);
            e->received++;
        }
        if ((rc = rill_sleep(0.1 * scale)) < 0) return rc; /* it may await, too */
    }
    return 0;
}

/* The int a successful next/send/throw (rc == 1) handed out, or -1. */
static int int_value(int rc, void *out) { return rc == 1 ? *(int *)out : -1; }

static int amain(void *arg) {
    (void)arg;
    struct echo e = {0};
    RILL_GEN_AUTO rill_gen *gen = rill_gen_new(async_gen_with_send, &e);
    if (!gen) return -errno;
    char hello[] = "Hello", world[] = "World";
    void *out = NULL;

    printf("== asend(): values into an async generator ==\n");
    /* As in Python, a generator that has not started yet has no yield to
     * receive a value at: only asend(None) (next) may start it. */
    int rc = rill_gen_send(gen, hello, NULL);
    printf("asend('Hello') before the start: %s (TypeError: can't send non-None value "
           "to a just-started generator)\n", errname(rc));
    expect(rc == -EINVAL, "sending a value into a generator not started is refused");

    int r0 = rill_gen_send(gen, NULL, &out); /* print(await gen.asend(None)) */
    int v0 = int_value(r0, out);
    printf("%d\n", v0);
    int r1 = rill_gen_send(gen, hello, &out); /* print(await gen.asend("Hello")) */
    int v1 = int_value(r1, out);
    printf("%d\n", v1);
    int r2 = rill_gen_send(gen, world, &out); /* print(await gen.asend("World")) */
    int v2 = int_value(r2, out);
    printf("%d\n\n", v2);
    expect(r0 == 1 && r1 == 1 && r2 == 1 && v0 == 0 && v1 == 1 && v2 == 2,
           "asend yields 0, 1, 2");
    expect(e.received == 2, "the generator receives 'Hello' and 'World'");

    printf("== athrow(): errors raised at the generator's yield ==\n");
    /* The body handles -EBADMSG and yields its next value: throw returns 1. */
    rc = rill_gen_throw(gen, -EBADMSG, &out);
    int v3 = int_value(rc, out);
    printf("athrow(%s) -> %d, next value %d\n", errname(-EBADMSG), rc, v3);
    expect(rc == 1 && v3 == 3 && e.handled == 1,
           "a handled error lets the generator go on to its next value");

    /* The body does not handle -EIO: it returns it, the throw reports it,
     * and the generator is finished. */
    rc = rill_gen_throw(gen, -EIO, NULL);
    printf("athrow(%s) -> %s: not handled, the generator ends with it\n", errname(-EIO),
           errname(rc));
    int after = rill_gen_next(gen, NULL);
    printf("anext() after that -> %d (StopAsyncIteration); status %s\n\n", after,
           errname(rill_gen_status(gen)));
    expect(rc == -EIO && after == 0 && rill_gen_status(gen) == -EIO,
           "an unhandled error ends the generator with that error");
    return 0;
}

/* ---- 2. A synchronous coroutine, outside any event loop ----------------- */

/* simple_coroutine(): generators need no runtime as long as their body
 * does not block.  Here the value sent in points at an int. */
static int simple_coroutine(rill_gen *g, void *arg) {
    int *received = arg;
    printf("Coroutine started\n");
    int rc = rill_yield(g, NULL); /* value = yield */
    if (rc < 0) return rc;
    const int *value = rill_gen_sent(g);
    if (!value) return -EINVAL; /* resumed by next(), not send() */
    printf("Received value: %d\n", *value);
    *received = *value;
    rc = rill_yield(g, NULL); /* yield */
    return rc == -EPIPE ? 0 : rc;
}

static void run_simple_coroutine(void) {
    printf("== A synchronous coroutine: next(gen), then gen.send(42) ==\n");
    int received = 0, answer = 42;
    rill_gen *gen = rill_gen_new(simple_coroutine, &received);
    if (!gen) {
        expect(false, "a generator can be created outside rill_run");
        return;
    }
    int r1 = rill_gen_next(gen, NULL);         /* next(gen) */
    int r2 = rill_gen_send(gen, &answer, NULL); /* gen.send(42) */
    rill_gen_free(gen); /* closes it at its last yield, then frees it */
    printf("\n");
    expect(r1 == 1 && r2 == 1 && received == 42,
           "outside rill_run, next() then send(42) delivers 42 to the coroutine");
}

int main(int argc, char **argv) {
    int rc = demo_run(argc, argv, amain);
    /* rill_run has returned: no event loop, no fibers, only plain C. */
    run_simple_coroutine();
    demo_verdict("asend and athrow reached the generator; send(42) reached a "
                 "coroutine outside rill_run");
    return demo_end(rc);
}
