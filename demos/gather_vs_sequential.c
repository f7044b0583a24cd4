/*
 * gather_vs_sequential: five slow "API requests", first one after another,
 * then all at once with rill_gather().
 *
 * The Python original:
 *
 *     async def fetch_data(id):
 *         print(f"Requesting data for ID {id}")
 *         await asyncio.sleep(2)          # simulated API latency
 *         print(f"Got data for ID {id}")
 *         return {"id": id, "data": f"data_for_{id}"}
 *
 *     for id in ids: results.append(await fetch_data(id))     # ~10 s
 *     results = await asyncio.gather(*(fetch_data(id) for id in ids))  # ~2 s
 *
 *     # with latencies that differ, each result as soon as it arrives:
 *     for task in asyncio.as_completed(tasks): print(await task)
 *
 * In C a task returns only a status (0 or a negative errno), so each request
 * gets a small struct that carries its input (the id) and its output (the
 * data); rill_gather() takes one such struct per task.  rill_as_completed()
 * yields the tasks themselves, in the order they end, for the caller to join.
 *
 * Usage: gather_vs_sequential [--scale X]   (X multiplies every delay)
 */
#include "demo.h"

#define NIDS 5
#define LATENCY 2.0 /* seconds per request, before scaling */



/* One request: the id and its latency go in, the data comes out. */
struct fetch {
    int id;
    double latency; /* seconds, before scaling */
    char data[32];
};

/* asyncio's fetch_data(id).  rill_sleep() suspends only this fiber, so while
 * one request "waits for the network" the others run. */
static int fetch_data(void *arg) {
    struct fetch *f = arg;
    printf("Requesting data for ID %d\n", f->id);
    int rc = rill_sleep(f->latency * scale);
    if (rc < 0) return rc; /* cancelled: give up, report why */
    printf("Got data for ID %d\n", f->id);
    snprintf(f->data, sizeof f->data, "data_for_%d", f->id);
    return 0;
}

static void print_results(const char *title, const struct fetch *req) {
    printf("%s: [", title);
    for (int i = 0; i < NIDS; i++)
        printf("%s{'id': %d, 'data': '%s'}", i ? ", " : "", req[i].id, req[i].data);
    printf("]\n");
}

/* Did every request come back with the data for its own id? */
static bool results_ok(const struct fetch *req) {
    for (int i = 0; i < NIDS; i++) {
        char want[32];
        snprintf(want, sizeof want, "data_for_%d", i + 1);
        if (req[i].id != i + 1 || strcmp(req[i].data, want) != 0) return false;
    }
    return true;
}

/* process_data(ids): one request after the other, ~NIDS x LATENCY. */
static int process_data(struct fetch *req) {
    for (int i = 0; i < NIDS; i++) {
        int rc = fetch_data(&req[i]);
        if (rc < 0) return rc;
    }
    return 0;
}

/* process_data_parallel(ids): every request at once, ~1 x LATENCY.
 * rill_gather() runs fns[i](args[i]) as tasks and waits for all of them;
 * if one failed it would cancel the others and return that failure. */
static int process_data_parallel(struct fetch *req) {
    rill_fn *fns[NIDS];
    void *args[NIDS];
    for (int i = 0; i < NIDS; i++) {
        fns[i] = fetch_data;
        args[i] = &req[i];
    }
    return rill_gather(NIDS, fns, args, NULL, 0); /* NULL: no per-task statuses */
}

/* asyncio.as_completed: one task per request, each result printed as soon
 * as it arrives.  order[k] receives the id of the k-th result. */
static const double varied[NIDS] = {0.9, 0.3, 0.7, 0.1, 0.5}; /* x LATENCY */

static int process_data_as_completed(struct fetch *req, int order[NIDS], double t0) {
    rill_task *tasks[NIDS];
    int n = 0, rc = 0;
    while (n < NIDS && (tasks[n] = rill_spawn(fetch_data, &req[n]))) n++;
    if (n < NIDS) rc = -errno;
    RILL_GEN_AUTO rill_gen *g = rc ? NULL : rill_as_completed(tasks, NIDS);
    if (!g) { /* could not start everything: stop what did start */
        if (!rc) rc = -errno;
        for (int i = 0; i < n; i++) {
            rill_cancel(tasks[i]);
            rill_join(tasks[i]);
        }
        return rc;
    }
    rill_task *t;
    int k = 0;
    bool joined[NIDS] = {false};
    rill_foreach(t, g) {
        int i = 0;
        while (tasks[i] != t) i++;
        joined[i] = true;
        int st = rill_join(t); /* it has ended: no wait */
        if (st < 0 && rc == 0) rc = st;
        printf("Result %d: {'id': %d, 'data': '%s'} after %.2f s\n", k + 1, req[i].id,
               req[i].data, demo_elapsed(t0));
        order[k++] = req[i].id;
    }
    if (k < NIDS) { /* the wait was cancelled */
        if (rc == 0) rc = rill_gen_status(g) < 0 ? rill_gen_status(g) : -ECANCELED;
        rill_gen_close(g); /* the tasks not yielded are ours again: stop them */
        for (int i = 0; i < NIDS; i++) {
            if (joined[i]) continue;
            rill_cancel(tasks[i]);
            rill_join(tasks[i]);
        }
    }
    return rc;
}

/* The program's main fiber (asyncio.run(main())). */
static int amain(void *arg) {
    (void)arg;
    struct fetch seq[NIDS] = {{0}}, par[NIDS] = {{0}}, asc[NIDS] = {{0}};
    for (int i = 0; i < NIDS; i++) {
        seq[i].id = par[i].id = asc[i].id = i + 1;
        seq[i].latency = par[i].latency = LATENCY;
        asc[i].latency = varied[i] * LATENCY;
    }

    printf("== Sequential: await fetch_data(id) for each id ==\n");
    double t0 = rill_now();
    int rc = process_data(seq);
    double t_seq = demo_elapsed(t0); /* at full scale */
    if (rc < 0) return rc;
    print_results("All data processed", seq);
    printf("Sequential: %.2f s\n\n", t_seq);

    printf("== Concurrent: rill_gather(fetch_data for each id) ==\n");
    t0 = rill_now();
    rc = process_data_parallel(par);
    double t_par = demo_elapsed(t0);
    if (rc < 0) return rc;
    print_results("All data processed concurrently", par);
    printf("Concurrent: %.2f s\n\n", t_par);

    double speedup = t_seq / t_par;
    printf("Speed-up: %.1fx (sequential %.2f s, gather %.2f s)\n\n", speedup, t_seq,
           t_par);

    printf("== As completed: rill_as_completed(tasks), latencies that differ ==\n");
    int order[NIDS] = {0};
    t0 = rill_now();
    rc = process_data_as_completed(asc, order, t0);
    double t_asc = demo_elapsed(t0);
    if (rc < 0) return rc;
    printf("As completed: %.2f s, results in the order", t_asc);
    for (int i = 0; i < NIDS; i++) printf(" %d", order[i]);
    printf("\n\n");

    /* Ids by latency: the fastest request's result comes first. */
    static const int by_latency[NIDS] = {4, 2, 5, 3, 1};
    bool fastest_first = memcmp(order, by_latency, sizeof order) == 0;

    expect(results_ok(seq) && results_ok(par), "every request returns its own data");
    expect(t_seq >= NIDS * LATENCY, "sequential takes at least 5 x 2 s");
    expect(t_par >= LATENCY, "gather takes at least one request's 2 s");
    expect(speedup >= 2.5, "gather is at least 2.5x faster than sequential");
    expect(results_ok(asc), "as_completed: every request returns its own data");
    expect(fastest_first, "as_completed yields results as they end: 4 2 5 3 1, not 1 2 3 4 5");
    expect(t_asc >= varied[0] * LATENCY, "as_completed lasts as long as the slowest request");
    demo_verdict("gather took %.2f s vs sequential %.2f s: %d ids %.1fx faster; as_completed "
                 "gave each result as it arrived", t_par, t_seq, NIDS, speedup);
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
