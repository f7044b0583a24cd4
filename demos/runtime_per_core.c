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
 * Each shard runs many fibers (simulated requests: a sleep, then some
 * arithmetic), so every core serves its own share of the load.  A fiber
 * belongs to its runtime: the only thing that crosses threads is the call,
 * which runs on the coordinator's loop in a fiber of its own and puts the
 * result on the coordinator's queue.
 *
 * Usage: runtime_per_core [--scale X]   (X multiplies every delay)
 */
#include <pthread.h>
#include <unistd.h>

#include "demo.h"

#define REQUESTS 2000   /* per shard */
#define LATENCY 0.2     /* each request's simulated wait, before scaling */

typedef struct shard {
    int id;
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

static int serve(void *arg) {
    request *r = arg;
    int rc = rill_sleep(LATENCY * scale);
    if (rc < 0) return rc;
    r->out = r->n * r->n % 1000003;
    return 0;
}

/* Runs on the coordinator's loop: a call from a shard's thread. */
static int report(void *arg) {
    shard *s = arg;
    return rill_queue_put(s->results, &s);
}

static int shard_main(void *arg) {
    shard *s = arg;
    static _Thread_local request reqs[REQUESTS];
    double t0 = rill_now();
    rill_group g;
    rill_group_init(&g);
    for (int i = 0; i < REQUESTS; i++) {
        reqs[i] = (request){.n = (long)s->id * REQUESTS + i};
        int rc = rill_group_spawn(&g, serve, &reqs[i]);
        if (rc < 0) {
            rill_group_cancel(&g);
            break;
        }
    }
    int rc = rill_group_wait(&g);
    s->seconds = rill_now() - t0;
    for (int i = 0; i < REQUESTS; i++) s->total += reqs[i].out;
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

static int amain(void *arg) {
    (void)arg;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus < 1 ? 1 : cpus > 64 ? 64 : (int)cpus;
    shard *shards = calloc((size_t)n, sizeof *shards);
    rill_queue *results = rill_queue_new((size_t)n, sizeof(shard *));
    rill_runtime *self = rill_runtime_current();
    if (!shards || !results || !self) return -ENOMEM;
    printf("%d runtimes, one per CPU, %d requests each (%.1f s of latency each)\n", n,
           REQUESTS, LATENCY);
    double t0 = rill_now();
    for (int i = 0; i < n; i++) {
        shards[i] = (shard){.id = i, .coordinator = self, .results = results};
        if (pthread_create(&shards[i].thread, NULL, shard_thread, &shards[i]) != 0)
            return -EAGAIN;
    }
    long total = 0;
    for (int i = 0; i < n; i++) { /* totals = [await results.get() ...] */
        shard *s;
        int rc = rill_queue_get(results, &s);
        if (rc < 0) return rc;
        printf("  shard %d: %d requests in %.2f s, total %ld\n", s->id, REQUESTS,
               s->seconds / scale, s->total);
        total += s->total;
    }
    for (int i = 0; i < n; i++) {
        rill_to_thread(join_thread, &shards[i]);
        expect(shards[i].rc == 0, "every shard's run ended cleanly");
    }
    double took = rill_now() - t0;
    long want = 0; /* the same sums, computed plainly */
    for (long k = 0; k < (long)n * REQUESTS; k++) want += k * k % 1000003;
    printf("all shards: total %ld (expected %ld) in %.2f s\n", total, want, took / scale);
    expect(total == want, "every request of every shard was counted once");
    /* One after the other, a shard's requests would take REQUESTS x LATENCY. */
    expect(took < REQUESTS * LATENCY * scale / 2, "the requests of each shard overlapped");
    rill_runtime_release(self);
    rill_queue_free(results);
    free(shards);
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
