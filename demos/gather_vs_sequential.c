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
 * In C a task returns only a status (0 or a negative errno), so each request
 * gets a small struct that carries its input (the id) and its output (the
 * data); rill_gather() takes one such struct per task.
 *
 * Usage: gather_vs_sequential [--scale X]   (X multiplies every delay)
 */
#include "demo.h"

#define NIDS 5
#define LATENCY 2.0 /* seconds per request, before scaling */



/* One request: the id goes in, the data comes out. */
struct fetch {
    int id;
    char data[32];
};

/* asyncio's fetch_data(id).  rill_sleep() suspends only this fiber, so while
 * one request "waits for the network" the others run. */
static int fetch_data(void *arg) {
    struct fetch *f = arg;
    printf("Requesting data for ID %d\n", f->id);
    int rc = rill_sleep(LATENCY * scale);
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

/* The program's main fiber (asyncio.run(main())). */
static int amain(void *arg) {
    (void)arg;
    struct fetch seq[NIDS] = {{0}}, par[NIDS] = {{0}};
    for (int i = 0; i < NIDS; i++) seq[i].id = par[i].id = i + 1;

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
    printf("Speed-up: %.1fx (sequential %.2f s, gather %.2f s)\n", speedup, t_seq,
           t_par);

    expect(results_ok(seq) && results_ok(par), "every request returns its own data");
    expect(t_seq >= NIDS * LATENCY, "sequential takes at least 5 x 2 s");
    expect(t_par >= LATENCY, "gather takes at least one request's 2 s");
    expect(speedup >= 2.5, "gather is at least 2.5x faster than sequential");
    demo_verdict("gather took %.2f s vs sequential %.2f s: %d ids %.1fx faster", t_par, t_seq,
                 NIDS, speedup);
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
