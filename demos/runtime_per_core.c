/*
 * runtime_per_core: one runtime per CPU, each on its own thread with its own
 * libev loop, sharing nothing; results come back to a coordinating runtime
 * through rill_call_threadsafe (asyncio's loop.call_soon_threadsafe).
 *
 * The Python shape of it (one event loop per thread):
 *
 *     def shard(n, main_loop, results):
 *         async def work(): ...           # many tasks on this loop
 *         total = asyncio.run(work())
 *         main_loop.call_soon_threadsafe(results.put_nowait, (n, total))
 *
 *     async def main():
 *         results = asyncio.Queue()
 *         loop = asyncio.get_running_loop()
 *         threads = [threading.Thread(target=shard, args=(n, loop, results))
 *                    for n in range(os.cpu_count())]
 *         for t in threads: t.start()
 *         totals = [await results.get() for _ in threads]
 *
 * Each shard runs many fibers (simulated requests: a wait for the
 * "network", then a computation that keeps a core busy for a while).  The
 * waits overlap within a runtime; the computations can only run in
 * parallel across runtimes on different threads.  The demo does the same
 * work twice, on one runtime and then on one per CPU, and prints both
 * times: on N idle cores the computing part runs up to N times faster (a
 * shared virtual machine may show less).  A fiber belongs to its runtime:
 * the only thing that crosses threads is the call, which runs on the
 * coordinator's loop in a fiber of its own and puts the result on the
 * coordinator's queue.
 *
 * Usage: runtime_per_core [--scale X]   (X multiplies every delay)
 */
#include <pthread.h>
#include <unistd.h>

#include "demo.h"

#define REQUESTS 1000    /* in all, shared among the runtimes */
#define LATENCY 0.2      /* each request's simulated wait, before scaling */
#define WORK_ROUNDS 300  /* each request's computation: about 0.1-0.3 ms */

typedef struct shard {
    int id;
    long first, count;          /* its requests: first .. first + count - 1 */
    rill_runtime *coordinator;
    rill_queue *results;        /* the coordinator's; touched only there */
    long total;                 /* this shard's sum */
    double seconds;
    int rc;
    pthread_t thread;
} shard;

/* One simulated request: wait for the "network", then compute. */
typedef struct request {
    long n, out;
} request;

static long compute(long n) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)n;
    for (int r = 0; r < WORK_ROUNDS * 1000; r++) h = (h ^ (uint64_t)(r & 0xff)) * 1099511628211ULL;
    return (long)(h % 1000003);
}

static int serve(void *arg) {
    request *r = arg;
    int rc = rill_sleep(LATENCY * scale);
    if (rc < 0) return rc;
    r->out = compute(r->n);
    return 0;
}

/* Runs on the coordinator's loop: a call from a shard's thread. */
static int report(void *arg) {
    shard *s = arg;
    return rill_queue_put(s->results, &s);
}

static int shard_main(void *arg) {
    shard *s = arg;
    request *reqs = calloc((size_t)s->count, sizeof *reqs);
    if (!reqs) return -ENOMEM;
    double t0 = rill_now();
    rill_group g;
    rill_group_init(&g);
    for (long i = 0; i < s->count; i++) {
        reqs[i] = (request){.n = s->first + i};
        int rc = rill_group_spawn(&g, serve, &reqs[i]);
        if (rc < 0) {
            rill_group_cancel(&g);
            break;
        }
    }
    int rc = rill_group_wait(&g);
    s->seconds = rill_now() - t0;
    for (long i = 0; i < s->count; i++) s->total += reqs[i].out;
    free(reqs);
    /* Hand the result to the coordinator's runtime. */
    int sent = rill_call_threadsafe(s->coordinator, report, s);
    return rc < 0 ? rc : sent;
}

static void *shard_thread(void *arg) {
    shard *s = arg;
    s->rc = rill_run(shard_main, s); /* this thread's own runtime */
    return NULL;
}

static int join_thread(void *arg) { /* blocking: on the pool */
    return -pthread_join(((shard *)arg)->thread, NULL);
}

/* Run REQUESTS on n runtimes (threads); returns the wall time, or < 0. */
static double run_sharded(int n, rill_runtime *self, rill_queue *results, long *total) {
    shard *shards = calloc((size_t)n, sizeof *shards);
    if (!shards) return -ENOMEM;
    double t0 = rill_now();
    long per = REQUESTS / n;
    for (int i = 0; i < n; i++) {
        shards[i] = (shard){.id = i, .first = i * per, .count = i == n - 1 ? REQUESTS - i * per : per,
                            .coordinator = self, .results = results};
        if (pthread_create(&shards[i].thread, NULL, shard_thread, &shards[i]) != 0) {
            n = i; /* join the ones started */
            break;
        }
    }
    *total = 0;
    for (int i = 0; i < n; i++) { /* totals = [await results.get() ...] */
        shard *s;
        if (rill_queue_get(results, &s) < 0) break;
        printf("  shard %d: %ld requests in %.2f s, total %ld\n", s->id, s->count, s->seconds,
               s->total);
        *total += s->total;
    }
    double took = rill_now() - t0;
    for (int i = 0; i < n; i++) {
        rill_to_thread(join_thread, &shards[i]);
        expect(shards[i].rc == 0, "every shard's run ended cleanly");
    }
    free(shards);
    return took;
}

static int amain(void *arg) {
    (void)arg;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus < 1 ? 1 : cpus > 64 ? 64 : (int)cpus;
    rill_queue *results = rill_queue_new((size_t)n, sizeof(shard *));
    rill_runtime *self = rill_runtime_current();
    if (!results || !self) return -ENOMEM;
    long want = 0; /* the same sums, computed plainly */
    for (long k = 0; k < REQUESTS; k++) want += compute(k);

    printf("%d requests (%.1f s of latency and some computing each; real times below) "
           "on one runtime:\n",
           REQUESTS, LATENCY);
    long total1;
    double one = run_sharded(1, self, results, &total1);
    printf("%d runtimes, one per CPU:\n", n);
    long total_n;
    double many = run_sharded(n, self, results, &total_n);
    printf("one runtime: %.2f s; %d runtimes: %.2f s (%.2fx; real times)\n", one, n, many,
           many > 0 ? one / many : 0);
    expect(total1 == want && total_n == want, "every request was counted once, both ways");
    /* One after the other, the requests would take REQUESTS x LATENCY. */
    expect(one > 0 && many > 0 && one < REQUESTS * LATENCY * scale / 2 + 10,
           "the requests of each runtime overlapped");
    rill_runtime_release(self);
    rill_queue_free(results);
    demo_verdict("%d requests on %d runtimes in %.2f s, on one in %.2f s (real times)", REQUESTS,
                 n, many, one);
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
