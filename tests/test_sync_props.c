/* Semaphore, mutex and condition (rill.h "Synchronisation") under load: seeded property
 * tests with many fibers and random cancellations, checking what must hold
 * at every step (never over-admitted, mutual exclusion, FIFO hand-offs, the
 * mutex held again after a condition wait) and at the end (no permit
 * leaked, no item lost or duplicated, every fiber finished).
 *
 * Every random choice comes from a small xorshift generator with a fixed
 * seed, one stream per fiber, so that a fiber's choices do not depend on
 * how the others interleave; RILL_TEST_SEED=N replays another seed.  Timers
 * still make the interleaving vary a little from run to run: the properties
 * must hold for every interleaving. */
#include <stdint.h>

#include "helpers.h"

/* ---- seeded randomness ----------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t test_seed(void) {
    const char *env = getenv("RILL_TEST_SEED");
    return env ? strtoull(env, NULL, 0) : 0x5eed2024u;
}

/* Stream `stream` of the test's seed (splitmix64, so that nearby streams
 * start far apart, and never 0, which xorshift would keep forever). */
static rng rng_for(unsigned stream) {
    uint64_t z = test_seed() + 0x9e3779b97f4a7c15u * (stream + 1u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    z ^= z >> 31;
    return (rng){z ? z : 1};
}

static uint64_t next(rng *r) { /* xorshift64 */
    uint64_t x = r->s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->s = x;
}

/* Uniform enough in [0, n). */
static unsigned below(rng *r, unsigned n) { return (unsigned)(next(r) % n); }

/* true one time in n. */
static bool one_in(rng *r, unsigned n) { return below(r, n) == 0; }

/* A short random pause: none, a yield, or one time in sleep_one_in a
 * sleep of up to 300 us (libev makes that about a millisecond). */
static int pause_a_little(rng *r, unsigned sleep_one_in) {
    if (one_in(r, sleep_one_in)) return rill_sleep(below(r, 300) * 1e-6);
    return one_in(r, 3) ? 0 : rill_yield_now();
}

/* How a wait is wrapped: no scope, a scope with a short deadline (maybe
 * already past), or a scope that the chaos fiber may cancel. */
enum wrap { PLAIN, DEADLINE, CANCELLABLE, NWRAPS };

static enum wrap enter_random_scope(rng *r, rill_scope *s) {
    enum wrap how = (enum wrap)below(r, NWRAPS);
    if (how == DEADLINE) rill_scope_enter(s, one_in(r, 4) ? 0 : below(r, 500) * 1e-6);
    if (how == CANCELLABLE) rill_scope_enter(s, RILL_FOREVER);
    return how;
}

/* What leaving that scope reported, counted: [0] deadline passed, [1]
 * rill_scope_cancel'ed. */
static void exit_random_scope(enum wrap how, rill_scope *s, long outcomes[2]) {
    if (how == PLAIN) return;
    int rc = rill_scope_exit(s);
    if (rc == -ETIMEDOUT) outcomes[0]++;
    if (rc == -ECANCELED) outcomes[1]++;
}

/* ---- the chaos fiber: cancels random waits and random tasks -------------------------- */

/* One worker as the chaos fiber sees it. */
typedef struct target {
    rill_task *task;
    rill_scope *scope; /* its cancellable scope while it waits in one, else NULL */
} target;

typedef struct chaos {
    target *targets;
    int n;                 /* targets */
    int killable;          /* targets[0 .. killable) may be rill_cancel'ed */
    int kill_budget;       /* tasks it may still rill_cancel */
    unsigned act_one_in;   /* acts once every so many turns */
    const int *ended;      /* workers that have returned ... */
    int stop_at;           /* ... and how many it waits for ... */
    double give_up_at;     /* ... until this rill_now() time */
    rng r;
    long kills;
    int quiet_acts;        /* acts so far without a kill */
} chaos;

/* How long the workers get to finish: a few seconds would be slow, a
 * minute is Criterion's time-out.  A worker stuck in a wait shows as a
 * failed check on `ended`, not as a hang. */
#define GIVE_UP_AFTER 10.0

/* Until the workers have ended: yield (or sleep a little), and now and then
 * cancel the scope that some worker waits in (the first one found from a
 * random place) or, rarely and within the budget, a whole task (one that
 * has ended already does not count).  The workers are joined only after
 * this returns, so every handle it touches is valid. */
static int run_chaos(void *arg) {
    chaos *c = arg;
    while (*c->ended < c->stop_at && rill_now() < c->give_up_at) {
        int rc = one_in(&c->r, 8) ? rill_sleep(below(&c->r, 200) * 1e-6) : rill_yield_now();
        if (rc < 0) return rc;
        if (!one_in(&c->r, c->act_one_in)) continue;
        int from = (int)below(&c->r, (unsigned)c->n);
        /* Killing is rare; but if none has happened yet the tenth act
         * kills, so that short runs (valgrind's) kill too. */
        bool kill = one_in(&c->r, 16) || (c->kills == 0 && ++c->quiet_acts >= 10);
        if (kill && c->kill_budget > 0 && from < c->killable) {
            if (rill_cancel(c->targets[from].task) == 1) {
                c->kills++;
                c->kill_budget--;
            }
            continue;
        }
        for (int i = 0; i < c->n; i++) {
            target *t = &c->targets[(from + i) % c->n];
            if (t->scope) {
                rill_scope_cancel(t->scope);
                break;
            }
        }
    }
    return 0;
}

/* ===========================================================================
 * a. Semaphore: never more than n inside, no permit leaked
 * ======================================================================== */

typedef struct sem_world {
    rill_sem sem;
    int n;
    int inside, peak; /* holders of a permit, as the workers count them */
    int over;         /* times a worker found more than n inside */
    long acquired, released, refused; /* acquires: 0, released, -ECANCELED */
    long scope_outcomes[2];
    int bad_status; /* an acquire returned something else */
    int ended;
} sem_world;

typedef struct sem_worker {
    sem_world *w;
    target *me;
    rng r;
    int rounds;
} sem_worker;

static int sem_work(void *arg) {
    sem_worker *k = arg;
    sem_world *w = k->w;
    for (int round = 0; round < k->rounds; round++) {
        rill_scope s;
        enum wrap how = enter_random_scope(&k->r, &s);
        if (how == CANCELLABLE) k->me->scope = &s;
        int rc = rill_sem_acquire(&w->sem);
        k->me->scope = NULL;
        exit_random_scope(how, &s, w->scope_outcomes);
        if (rc == -ECANCELED) { /* holds nothing: nothing to give back */
            w->refused++;
            if (rill_cancelled()) break; /* the task itself was cancelled */
            continue;
        }
        if (rc != 0) {
            w->bad_status = rc;
            break;
        }
        w->acquired++;
        if (++w->inside > w->n) w->over++;
        if (w->inside > w->peak) w->peak = w->inside;
        /* Hold it a little; a cancelled task's sleep returns at once, and
         * the permit is given back all the same (`async with`). */
        rc = pause_a_little(&k->r, 4);
        w->inside--;
        w->released++;
        rill_sem_release(&w->sem);
        if (rc == -ECANCELED) break;
    }
    w->ended++;
    return 0;
}

FIBER_TEST(sync_props, semaphore_never_admits_more_than_n_and_leaks_no_permit_under_cancellation) {
    enum { N = 4, MAX_TASKS = 200 };
    int tasks = under_valgrind() ? 40 : MAX_TASKS, rounds = under_valgrind() ? 8 : 30;
    sem_world w = {.n = N};
    rill_sem_init(&w.sem, N);
    static sem_worker workers[MAX_TASKS];
    static target targets[MAX_TASKS];
    for (int i = 0; i < tasks; i++) {
        workers[i] = (sem_worker){&w, &targets[i], rng_for((unsigned)i), rounds};
        targets[i] = (target){rill_spawn(sem_work, &workers[i]), NULL};
        cr_assert_not_null(targets[i].task);
    }
    chaos c = {.targets = targets, .n = tasks, .killable = tasks, .kill_budget = tasks / 5,
               .act_one_in = 3, .ended = &w.ended, .stop_at = tasks, .r = rng_for(1000),
               .give_up_at = rill_now() + GIVE_UP_AFTER};
    rill_task *ct = rill_spawn(run_chaos, &c);
    expect_eq(rill_join(ct), 0);
    cr_assert_eq(w.ended, tasks, "%d of %d tasks still waiting after %g s: a permit was lost",
                 tasks - w.ended, tasks, GIVE_UP_AFTER);
    for (int i = 0; i < tasks; i++) expect_eq(rill_join(targets[i].task), 0);

    expect_eq(w.bad_status, 0);
    cr_assert_eq(w.over, 0, "more than %d fibers held a permit (peak %d)", N, w.peak);
    expect_eq(w.peak, N); /* there was contention: every permit was in use */
    expect_eq(w.inside, 0);
    expect_eq(w.acquired, w.released);
    /* Each way a wait can end was taken, or the test proved little. */
    cr_assert(w.refused > 0 && w.scope_outcomes[0] > 0 && w.scope_outcomes[1] > 0 && c.kills > 0,
              "refused %ld, deadlines %ld, scope cancels %ld, kills %ld", w.refused,
              w.scope_outcomes[0], w.scope_outcomes[1], c.kills);
    /* No permit leaked, none made up: exactly N are free. */
    int free_permits = 0;
    while (free_permits <= N && rill_sem_try_acquire(&w.sem)) free_permits++;
    cr_assert_eq(free_permits, N, "%d permits free at the end, expected %d (acquired %ld)",
                 free_permits, N, w.acquired);
    return 0;
}

/* ===========================================================================
 * b. Mutex: mutual exclusion, and the lock granted in FIFO order of the
 *    lock calls; a cancelled waiter drops out and never holds it
 * ======================================================================== */

enum ticket { WAITING, GRANTED, DROPPED };

typedef struct mx_world {
    rill_mutex m;
    int holder;             /* the worker that holds m, as they see it; -1 */
    int overlaps;           /* a worker got m while another held it */
    int tickets;            /* lock calls so far: a call's ticket is its rank */
    unsigned char *state;   /* per ticket: enum ticket */
    int *grants, ngrants;   /* tickets in the order their calls returned 0 */
    int held_after_cancel;  /* a lock that returned -ECANCELED held m */
    long scope_outcomes[2];
    int bad_status;
    int ended;
} mx_world;

typedef struct mx_worker {
    mx_world *w;
    target *me;
    rng r;
    int id, rounds;
} mx_worker;

static int mx_work(void *arg) {
    mx_worker *k = arg;
    mx_world *w = k->w;
    for (int round = 0; round < k->rounds; round++) {
        rill_scope s;
        enum wrap how = enter_random_scope(&k->r, &s);
        if (how == CANCELLABLE) k->me->scope = &s;
        /* Nothing between taking the ticket and the call can switch, so
         * tickets are the order of the lock calls. */
        int ticket = w->tickets++;
        int rc = rill_mutex_lock(&w->m);
        k->me->scope = NULL;
        exit_random_scope(how, &s, w->scope_outcomes);
        if (rc == -ECANCELED) {
            w->state[ticket] = DROPPED;
            /* It must not hold m: unlocking a mutex one does not hold has
             * no effect and says EPERM. */
            errno = 0;
            rill_mutex_unlock(&w->m);
            if (errno != EPERM) w->held_after_cancel++;
            if (rill_cancelled()) break;
            continue;
        }
        if (rc != 0) {
            w->bad_status = rc;
            break;
        }
        w->state[ticket] = GRANTED;
        w->grants[w->ngrants++] = ticket;
        if (w->holder != -1) w->overlaps++;
        w->holder = k->id;
        rc = pause_a_little(&k->r, 16); /* others queue up meanwhile */
        if (w->holder != k->id) w->overlaps++;
        w->holder = -1;
        rill_mutex_unlock(&w->m);
        if (rc == -ECANCELED) break;
    }
    w->ended++;
    return 0;
}

FIBER_TEST(sync_props, mutex_is_granted_in_fifo_order_of_lock_calls_despite_cancelled_waiters) {
    enum { K = 16 };
    int rounds = under_valgrind() ? 60 : 400;
    mx_world w = {.holder = -1};
    rill_mutex_init(&w.m);
    w.state = calloc((size_t)(K * rounds), 1);
    w.grants = calloc((size_t)(K * rounds), sizeof *w.grants);
    cr_assert(w.state && w.grants);
    mx_worker workers[K];
    target targets[K];
    for (int i = 0; i < K; i++) {
        workers[i] = (mx_worker){&w, &targets[i], rng_for(2000u + (unsigned)i), i, rounds};
        targets[i] = (target){rill_spawn(mx_work, &workers[i]), NULL};
        cr_assert_not_null(targets[i].task);
    }
    chaos c = {.targets = targets, .n = K, .killable = K, .kill_budget = K / 4,
               .act_one_in = 4, .ended = &w.ended, .stop_at = K, .r = rng_for(3000),
               .give_up_at = rill_now() + GIVE_UP_AFTER};
    rill_task *ct = rill_spawn(run_chaos, &c);
    expect_eq(rill_join(ct), 0);
    cr_assert_eq(w.ended, K, "%d of %d tasks still waiting after %g s", K - w.ended, K,
                 GIVE_UP_AFTER);
    for (int i = 0; i < K; i++) expect_eq(rill_join(targets[i].task), 0);

    expect_eq(w.bad_status, 0);
    cr_assert_eq(w.overlaps, 0, "mutual exclusion violated %d times", w.overlaps);
    cr_assert_eq(w.held_after_cancel, 0, "%d cancelled locks held the mutex", w.held_after_cancel);
    /* FIFO: the calls that got the lock got it in the order they were made,
     * skipping only the ones that dropped out. */
    int dropped = 0;
    for (int t = 0; t < w.tickets; t++) {
        cr_assert_neq(w.state[t], WAITING, "lock call %d never returned", t);
        dropped += w.state[t] == DROPPED;
    }
    expect_eq(w.ngrants + dropped, w.tickets);
    for (int i = 1; i < w.ngrants; i++)
        cr_assert_lt(w.grants[i - 1], w.grants[i],
                     "grant %d went to lock call %d, after lock call %d: not FIFO", i,
                     w.grants[i], w.grants[i - 1]);
    cr_assert(dropped > 0 && w.scope_outcomes[0] > 0 && w.scope_outcomes[1] > 0 && c.kills > 0,
              "dropped %d, deadlines %ld, scope cancels %ld, kills %ld", dropped,
              w.scope_outcomes[0], w.scope_outcomes[1], c.kills);
    cr_assert_gt(w.ngrants, w.tickets / 2, "only %d of %d lock calls got the lock", w.ngrants,
                 w.tickets);
    /* Free at the end: a lock that need not wait succeeds even in an
     * expired scope. */
    rill_scope s;
    rill_scope_enter(&s, 0);
    expect_eq(rill_mutex_lock(&w.m), 0);
    rill_mutex_unlock(&w.m);
    rill_scope_exit(&s);
    free(w.state);
    free(w.grants);
    return 0;
}

/* ===========================================================================
 * c. Condition: producer and consumers over a bounded buffer, with
 *    broadcast, a predicate loop and random cancellations
 * ======================================================================== */

enum { CAP = 8, NCONS = 6, SLACK = 3 };

typedef struct cv_world {
    rill_mutex m;
    rill_cond not_empty, not_full;
    int buf[CAP], head, len; /* the buffer, under m */
    int nitems, next_item;
    bool done;               /* the producer has put every item */
    unsigned char *seen;     /* per item: times consumed */
    long consumed;
    int holder, overlaps;    /* as in the mutex test; the producer is NCONS */
    int not_held;            /* a condition wait returned without m */
    int spurious;            /* a wait returned 0 with no wake-up sent since it began */
    int stale;               /* a waiter missed SLACK broadcasts */
    long not_empty_gen;      /* broadcasts of not_empty so far */
    long not_full_gen;       /* signals and broadcasts of not_full so far */
    long waits_ok, waits_cancelled;
    long scope_outcomes[2];
    int bad_status;
    int ended;               /* consumers that have returned */
    struct cv_waiting {      /* consumer i, seen by the broadcaster */
        bool waiting;
        long gen;            /* not_empty_gen when its wait began */
    } cons[NCONS];
} cv_world;

typedef struct cv_worker {
    cv_world *w;
    target *me;
    rng r;
    int id; /* 0 .. NCONS-1 consumers, NCONS the producer */
} cv_worker;

/* Does the caller hold m?  rill_mutex_lock answers -EDEADLK if it does.
 * In a shielded scope, so that a cancelled caller gets that answer too;
 * with a deadline, so that if another fiber held m the probe would not
 * wait for long. */
static bool holds(rill_mutex *m) {
    rill_scope s;
    rill_scope_enter(&s, 1.0);
    rill_scope_shield(&s, true);
    int rc = rill_mutex_lock(m);
    if (rc == 0) rill_mutex_unlock(m); /* it was free: not ours */
    rill_scope_exit(&s);
    return rc == -EDEADLK;
}

/* Note that worker id now holds m (it has just locked it, or a condition
 * wait has just returned). */
static void took(cv_world *w, int id) {
    if (w->holder != -1) w->overlaps++;
    w->holder = id;
}

static void letting_go(cv_world *w, int id) {
    if (w->holder != id) w->overlaps++;
    w->holder = -1;
}

/* One rill_cond_wait(c, m) in a random scope, with every check on its
 * return.  *gen counts the wake-ups sent on c.  Returns what the wait did. */
static int checked_wait(cv_worker *k, rill_cond *c, const long *gen) {
    cv_world *w = k->w;
    rill_scope s;
    enum wrap how = enter_random_scope(&k->r, &s);
    if (how == CANCELLABLE) k->me->scope = &s;
    long since = *gen;
    letting_go(w, k->id);
    int rc = rill_cond_wait(c, &w->m);
    /* On every return, 0 or -ECANCELED, m is held again. */
    if (!holds(&w->m)) w->not_held++;
    took(w, k->id);
    if (rc == 0 && *gen == since) w->spurious++;
    k->me->scope = NULL;
    exit_random_scope(how, &s, w->scope_outcomes);
    if (rc == 0) w->waits_ok++;
    else if (rc == -ECANCELED) w->waits_cancelled++;
    else w->bad_status = rc;
    return rc;
}

static int cv_produce(void *arg) {
    cv_worker *k = arg;
    cv_world *w = k->w;
    while (w->next_item < w->nitems) {
        int rc = rill_mutex_lock(&w->m); /* nobody cancels the producer's task */
        if (rc) return rc;
        took(w, k->id);
        while (w->len == CAP) /* cancelled waits just wait again */
            if ((rc = checked_wait(k, &w->not_full, &w->not_full_gen)) != 0 && rc != -ECANCELED)
                return rc;
        for (int burst = 1 + (int)below(&k->r, CAP); burst > 0 && w->len < CAP; burst--)
            if (w->next_item < w->nitems) w->buf[(w->head + w->len++) % CAP] = w->next_item++;
        /* A broadcast makes every waiter ready before this fiber yields,
         * so each one runs, and returns from its wait or queues for m
         * ahead of this fiber, before this fiber holds m again.  One still
         * waiting SLACK broadcasts later was not woken. */
        for (int i = 0; i < NCONS; i++)
            if (w->cons[i].waiting && w->cons[i].gen + SLACK <= w->not_empty_gen) w->stale++;
        w->not_empty_gen++;
        rill_cond_broadcast(&w->not_empty);
        letting_go(w, k->id);
        rill_mutex_unlock(&w->m);
        if ((rc = rill_yield_now()) < 0) return rc;
        if (one_in(&k->r, 16) && (rc = rill_sleep(below(&k->r, 100) * 1e-6)) < 0) return rc;
    }
    int rc = rill_mutex_lock(&w->m);
    if (rc) return rc;
    took(w, k->id);
    w->done = true;
    w->not_empty_gen++;
    rill_cond_broadcast(&w->not_empty);
    letting_go(w, k->id);
    rill_mutex_unlock(&w->m);
    return 0;
}

static int cv_consume(void *arg) {
    cv_worker *k = arg;
    cv_world *w = k->w;
    struct cv_waiting *me = &w->cons[k->id];
    for (;;) {
        if (rill_mutex_lock(&w->m) != 0) break; /* the task was cancelled */
        took(w, k->id);
        int rc = 0;
        while (w->len == 0 && !w->done) { /* the predicate loop */
            me->waiting = true;
            me->gen = w->not_empty_gen;
            rc = checked_wait(k, &w->not_empty, &w->not_empty_gen);
            me->waiting = false;
            if (rc == -ECANCELED && rill_cancelled()) break; /* task cancelled */
            if (rc != 0 && rc != -ECANCELED) break;
        }
        if (rc != 0 && rc != -ECANCELED) { /* reported by checked_wait */
            letting_go(w, k->id);
            rill_mutex_unlock(&w->m);
            break;
        }
        if (w->len == 0 || (rc == -ECANCELED && rill_cancelled())) {
            /* Done and drained, or cancelled: leave, releasing m. */
            letting_go(w, k->id);
            rill_mutex_unlock(&w->m);
            break;
        }
        int item = w->buf[w->head];
        w->head = (w->head + 1) % CAP;
        w->len--;
        if (item < 0 || item >= w->nitems) w->bad_status = -ERANGE;
        else w->seen[item]++;
        w->consumed++;
        w->not_full_gen++;
        if (one_in(&k->r, 2)) rill_cond_signal(&w->not_full);
        else rill_cond_broadcast(&w->not_full);
        letting_go(w, k->id);
        rill_mutex_unlock(&w->m);
        if (pause_a_little(&k->r, 8) == -ECANCELED) break;
    }
    w->ended++;
    return 0;
}

FIBER_TEST(sync_props, condition_broadcast_wakes_every_waiter_and_no_item_is_lost_or_duplicated) {
    cv_world w = {.holder = -1, .nitems = under_valgrind() ? 1500 : 10000};
    rill_mutex_init(&w.m);
    rill_cond_init(&w.not_empty);
    rill_cond_init(&w.not_full);
    w.seen = calloc((size_t)w.nitems, 1);
    cr_assert_not_null(w.seen);
    cv_worker workers[NCONS + 1];
    target targets[NCONS + 1];
    for (int i = 0; i <= NCONS; i++) {
        workers[i] = (cv_worker){&w, &targets[i], rng_for(4000u + (unsigned)i), i};
        targets[i] = (target){rill_spawn(i < NCONS ? cv_consume : cv_produce, &workers[i]), NULL};
        cr_assert_not_null(targets[i].task);
    }
    /* The chaos fiber cancels the producer's waits too, but kills only
     * consumers, half of them at most: the others must drain the buffer. */
    chaos c = {.targets = targets, .n = NCONS + 1, .killable = NCONS, .kill_budget = NCONS / 2,
               .act_one_in = 4, .ended = &w.ended, .stop_at = NCONS, .r = rng_for(5000),
               .give_up_at = rill_now() + GIVE_UP_AFTER};
    rill_task *ct = rill_spawn(run_chaos, &c);
    expect_eq(rill_join(ct), 0);
    cr_assert_eq(w.ended, NCONS, "%d of %d consumers still waiting after %g s: not woken",
                 NCONS - w.ended, NCONS, GIVE_UP_AFTER);
    for (int i = 0; i <= NCONS; i++) expect_eq(rill_join(targets[i].task), 0);

    expect_eq(w.bad_status, 0);
    cr_assert_eq(w.overlaps, 0, "mutual exclusion violated %d times", w.overlaps);
    cr_assert_eq(w.not_held, 0, "%d condition waits returned without the mutex", w.not_held);
    cr_assert_eq(w.spurious, 0, "%d waits returned 0 with no signal or broadcast", w.spurious);
    cr_assert_eq(w.stale, 0, "%d times a waiter was still waiting %d broadcasts later", w.stale,
                 SLACK);
    expect_eq(w.next_item, w.nitems);
    expect_eq(w.consumed, w.nitems);
    expect_eq(w.len, 0);
    for (int i = 0; i < w.nitems; i++)
        cr_assert_eq(w.seen[i], 1, "item %d consumed %d times", i, w.seen[i]);
    cr_assert(w.waits_ok > 0 && w.waits_cancelled > 0 && w.scope_outcomes[0] > 0 &&
                  w.scope_outcomes[1] > 0 && c.kills > 0,
              "waits ok %ld, cancelled %ld, deadlines %ld, scope cancels %ld, kills %ld",
              w.waits_ok, w.waits_cancelled, w.scope_outcomes[0], w.scope_outcomes[1], c.kills);
    free(w.seen);
    return 0;
}
