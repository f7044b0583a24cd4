/*
 * Generators: a body on a stack of its own, resumed by a consumer and
 * switching straight back to it at each rill_yield.
 *
 * While the body runs, the consumer is BLOCKED on g->consumer_wait (which no
 * cancellation touches: it reaches the body instead, through the delegate
 * chain), and the body's root scope hangs below the consumer's innermost
 * scope, so the consumer's cancellation is the body's.  If the body blocks,
 * its fiber suspends like any other and the scheduler runs someone else; the
 * consumer stays blocked until the body yields or returns.
 *
 * A suspended generator's fiber is BLOCKED on no list (its waiter is
 * uncancellable): only its consumer can resume it, so the deadlines of the
 * scopes its body holds are disarmed until then (rill__scope_suspend).
 * Generators are not on rt->all and do not count as live fibers, so a
 * forgotten generator does not keep rill_run alive; rt->gens.list lists
 * them for shutdown, an idle hook of the scheduler's.
 */
#include <string.h>

#include "internal.h"

#define GEN_MAGIC 0x67656e21u
#define GEN_FREED 0x67656e2du

static bool valid(const rill_gen *g) { return rill__valid(g, GEN_MAGIC); }

static const rill__fiber_ops gen_ops;

static void no_unhook(rill__waiter *w) { (void)w; }

rill_gen *rill__gen_new(rill_gen_fn *body, void *arg, const rill_opts *o,
                        const rill__gen_hooks *hooks) {
    if (!body) {
        errno = EINVAL;
        return NULL;
    }
    rill__rt *rt = rill__runtime_bare();
    if (!rt) {
        errno = ENOMEM;
        return NULL;
    }
    rill_gen *g = rill__calloc(1, sizeof *g);
    int rc = g ? rill__fiber_init(&g->fiber, o ? o->stack_size : 0) : -ENOMEM;
    if (rc) {
        free(g);
        rill__runtime_bare_release();
        errno = -rc;
        return NULL;
    }
    g->magic = GEN_MAGIC;
    g->state = RILL__GEN_CREATED;
    g->body = body;
    g->arg = arg;
    g->hooks = hooks;
    if (o && o->name) {
        strncpy(g->name_buf, o->name, sizeof g->name_buf - 1);
    } else {
        rill__default_name(g->name_buf, sizeof g->name_buf, "gen-", &rt->spawned);
    }
    g->fiber.name = g->name_buf;
    g->fiber.ops = &gen_ops;
    g->parked = (rill__waiter){.fiber = &g->fiber, .unhook = no_unhook, .what = "resume",
                               .uncancellable = true};
    g->fiber.wait = &g->parked;
    rill__sched_set_state(&g->fiber, RILL__BLOCKED); /* until its first resume */
    rill__list_push(&rt->gens.list, &g->node);
    rt->gens.n++;
    return g;
}

rill_gen *rill_gen_new_opts(rill_gen_fn *body, void *arg, const rill_opts *o) {
    return rill__gen_new(body, arg, o, NULL);
}

rill_gen *rill_gen_new(rill_gen_fn *body, void *arg) {
    return rill__gen_new(body, arg, NULL, NULL);
}

/* Back to the consumer, from the body (at a yield, or at its end). */
static void to_consumer(rill_gen *g) {
    rill__fiber *c = g->fiber.delegator;
    c->delegate = NULL;
    g->fiber.delegator = NULL;
    g->root.parent = NULL;
    c->wait = NULL;
    rill__sched_set_state(c, RILL__RUNNING);
    rill__fiber_switch(&g->fiber, c);
}

/* Run the body until it yields or returns; returns g->result. */
static int resume(rill_gen *g, int resume_with) {
    rill__rt *rt = rill__self;
    rill__fiber *me = rt->current;
    /* Left over from a run that ended (rt_trim), or made bare: a body needs
     * the overflow handler's stack.  Without one, only reporting suffers. */
    (void)rill__stack_signals(rt);
    g->resume_with = resume_with;
    g->state = RILL__GEN_RUNNING;
    g->fiber.delegator = me;
    me->delegate = &g->fiber;
    if (!g->started) {
        g->started = true;
        g->run_id = rt->run.id;
        rill__scope_open(&g->root, &g->fiber, INFINITY);
    } else if (g->fiber.scope != &g->root) { /* scopes of the body's own to re-arm */
        rill__scope_resume(&g->fiber, &g->root);
    }
    g->root.parent = me->scope;
    g->consumer_wait = (rill__waiter){
        .fiber = me, .unhook = no_unhook, .what = "gen", .on = g->name_buf,
        .uncancellable = true};
    me->wait = &g->consumer_wait;
    rill__sched_set_state(me, RILL__BLOCKED);
    g->fiber.wait = NULL;
    rill__sched_set_state(&g->fiber, RILL__RUNNING);
    rill__fiber_switch(me, &g->fiber);
    if (g->state == RILL__GEN_FINISHED && g->fiber.state != RILL__DONE) {
        /* The body yielded after -EPIPE: abandon it, from this stack. */
        rill__sched_set_state(&g->fiber, RILL__DONE);
        rill__scope_drop_all(&g->fiber);
        rill__fiber_release(&g->fiber);
    }
    return g->result;
}

/* The body's fiber stops running, until its consumer resumes it. */
static void park(rill_gen *g) {
    g->fiber.wait = &g->parked;
    rill__sched_set_state(&g->fiber, RILL__BLOCKED);
}

/* Suspend the body; the consumer's call returns result (1: value). */
RILL__INLINE int suspend(rill_gen *g, void *value, int result) {
    rill__rt *rt = rill__self;
    if (!valid(g) || !rt || rt->current != &g->fiber) return -EINVAL;
    /* The deadlines disarmed below live in the body's scopes: they must all
     * be in live frames. */
    rill__scope_chain_check(&g->fiber, RILL__CALLER_SP());
    if (g->closing) {
        /* Yielding after GeneratorExit: the consumer abandons this stack,
         * which must not hold a group with children still running. */
        rill__fiber_check_groups_waited(&g->fiber);
        g->result = -EPROTO;
        g->status = -EPROTO;
        g->state = RILL__GEN_FINISHED;
        park(g);
        to_consumer(g);
        RILL_ASSERT(0, "an abandoned generator was resumed");
    }
    g->value = value;
    g->result = result;
    g->state = RILL__GEN_SUSPENDED;
    if (g->fiber.scope != &g->root) rill__scope_suspend(&g->fiber, &g->root);
    park(g);
    to_consumer(g);
    return g->resume_with;
}

int rill_yield(rill_gen *g, void *value) { return suspend(g, value, 1); }

/* The first element is yielded as rill_yield would; the consumer's next
 * calls take the others from g->batch without resuming the body (gen_send),
 * which runs again for the call after the last, or for a send, throw or
 * close, which end the batch. */
int rill_yield_from(rill_gen *g, void *items, size_t n, size_t size) {
    rill__rt *rt = rill__self;
    if (!valid(g) || !rt || rt->current != &g->fiber || (n && !items)) return -EINVAL;
    if (n == 0) return 0;
    g->batch = (char *)items + size;
    g->batch_left = n - 1;
    g->batch_size = size;
    int rc = suspend(g, items, 1);
    g->batch_left = 0;
    return rc;
}

int rill__gen_yield_error(rill_gen *g, int err) { return suspend(g, NULL, err); }

static void gen_entry(rill__fiber *f) {
    rill_gen *g = rill__container_of(f, rill_gen, fiber);
    int rc = g->body(g, g->arg);
    rill__fiber_check_groups_waited(f);
    if (f->scope != &g->root) rill__scope_close_leftover(f, &g->root);
    if (g->closing) {
        g->result = rc == -EPIPE || rc > 0 ? 0 : rc; /* GeneratorExit is a clean end */
    } else {
        g->result = rc > 0 ? 0 : rc;
        g->status = g->result;
    }
    g->state = RILL__GEN_FINISHED;
    rill__sched_set_state(f, RILL__DONE); /* the consumer releases the stack */
    to_consumer(g);
    RILL_ASSERT(0, "a finished generator was resumed");
}

/* Is the caller one of g's own children (a task of a group on g's stack,
 * such as a prefetch's puller)?  Resuming g from there is a cycle. */
static bool from_own_child(const rill_gen *g) {
    if (!g->fiber.busy_groups) return false; /* no children: skip the lookup */
    rill_task *t = rill_current();
    return t && t->group && t->group->owner == &g->fiber;
}

/* A body with tasks of its own running (merge, prefetch) must be resumed
 * from a fiber: from outside one, it could not wait for them. */
static bool needs_a_fiber(const rill_gen *g) {
    rill__rt *rt = rill__self;
    return g->fiber.busy_groups && rill__fiber_root(rt->current) == &rt->host;
}

/* The consumer's scopes become the body's outer scopes: they must all be
 * in live frames of the code calling rill. */
RILL__INLINE void check_consumer(const char *caller_sp) {
    rill__rt *rt = rill__self;
    if (rt && rt->current != &rt->host) rill__scope_chain_check(rt->current, caller_sp);
}

/* Checks common to next, send, throw and close.  Returns 1 to go on. */
static int can_resume(rill_gen *g) {
    if (!valid(g)) return -EINVAL;
    if (g->state == RILL__GEN_RUNNING || from_own_child(g)) return -EBUSY;
    if (needs_a_fiber(g)) return -EPERM;
    if (g->state == RILL__GEN_FINISHED) return 0;
    return 1;
}

static int deliver(rill_gen *g, int rc, void **value) {
    if (rc == 1 && value) *value = g->value;
    return rc;
}

RILL__INLINE int gen_send(rill_gen *g, void *in, void **value, const char *caller_sp) {
    int rc = can_resume(g);
    if (rc <= 0) return rc;
    if (!in && g->batch_left) { /* the next element of a rill_yield_from */
        g->value = g->batch;
        g->batch += g->batch_size;
        g->batch_left--;
        return deliver(g, 1, value);
    }
    if (in && g->state == RILL__GEN_CREATED) return -EINVAL;
    check_consumer(caller_sp);
    g->sent = in;
    return deliver(g, resume(g, 0), value);
}

int rill_gen_send(rill_gen *g, void *in, void **value) {
    return gen_send(g, in, value, RILL__CALLER_SP());
}

int rill_gen_next(rill_gen *g, void **value) { return gen_send(g, NULL, value, RILL__CALLER_SP()); }

/* Finish a generator whose body never ran (an adapter's sources, which its
 * body would have closed, are closed by its hook). */
static void finish_unstarted(rill_gen *g, int status) {
    g->state = RILL__GEN_FINISHED;
    g->status = status;
    g->fiber.wait = NULL;
    rill__sched_set_state(&g->fiber, RILL__DONE);
    rill__fiber_release(&g->fiber);
    if (g->hooks) g->hooks->close(g->arg);
}

int rill_gen_throw(rill_gen *g, int err, void **value) {
    if (err >= 0) return -EINVAL;
    int rc = can_resume(g);
    if (rc < 0) return rc;
    if (rc == 0) return err; /* finished: the error comes straight back */
    if (g->state == RILL__GEN_CREATED) {
        finish_unstarted(g, err);
        return err;
    }
    check_consumer(RILL__CALLER_SP());
    g->sent = NULL;
    return deliver(g, resume(g, err), value);
}

/* aclose, for a caller whose chain was checked. */
static int gen_close(rill_gen *g) {
    if (!valid(g)) return -EINVAL;
    if (from_own_child(g)) return -EBUSY;
    if (needs_a_fiber(g)) return -EPERM;
    switch (g->state) {
    case RILL__GEN_RUNNING: return -EBUSY;
    case RILL__GEN_FINISHED: return 0;
    case RILL__GEN_CREATED: finish_unstarted(g, 0); return 0;
    case RILL__GEN_SUSPENDED: break;
    }
    g->closing = true;
    g->sent = NULL;
    return resume(g, -EPIPE);
}

int rill_gen_close(rill_gen *g) {
    check_consumer(RILL__CALLER_SP());
    return gen_close(g);
}

/* Closed by nobody who sees the result (freed, or shut down): a body that
 * yielded after -EPIPE would go unnoticed.  Python says "async generator
 * ignored GeneratorExit". */
static void close_unseen(rill_gen *g) {
    if (gen_close(g) == -EPROTO)
        fprintf(stderr, "rill: generator '%s' ignored GeneratorExit: it yielded again after "
                        "rill_yield returned -EPIPE, so the rest of its cleanup did not run\n",
                g->name_buf);
}

void rill_gen_free(rill_gen *g) {
    if (!valid(g) || g->owned) { /* an adapter's source is the adapter's */
        errno = EINVAL;
        return;
    }
    check_consumer(RILL__CALLER_SP());
    rill__gen_free(g);
}

void rill__gen_free(rill_gen *g) {
    if (g->state == RILL__GEN_RUNNING || from_own_child(g)) {
        errno = EBUSY;
        return;
    }
    if (needs_a_fiber(g)) {
        errno = EPERM;
        return;
    }
    close_unseen(g);
    rill__rt *rt = rill__self;
    rill__list_remove(&g->node);
    rt->gens.n--;
    g->magic = GEN_FREED;
    if (g->hooks) g->hooks->free(g->arg);
    free(g);
    rill__runtime_bare_release();
}

void rill__gen_autofree(rill_gen **g) {
    if (!g || !*g) return;
    if (!valid(*g) || (*g)->owned) {
        errno = EINVAL;
        return;
    }
    check_consumer(RILL__CALLER_SP());
    rill__gen_free(*g);
}

void *rill_gen_sent(const rill_gen *g) { return valid(g) ? g->sent : NULL; }

int rill_gen_status(const rill_gen *g) { return valid(g) ? g->status : -EINVAL; }

const char *rill_gen_name(const rill_gen *g) { return valid(g) ? g->name_buf : "?"; }

/* asyncio's shutdown_asyncgens closes the generators first iterated in the
 * loop that ends; one started outside (or in another run) is not its own. */
static bool shutdown_closes(const rill_gen *g) {
    return g->state == RILL__GEN_SUSPENDED && g->run_id == rill__self->run.id;
}

/* A body that never runs again (a deadlock that persists). */
static void gen_abandon(rill__fiber *f) {
    rill_gen *g = rill__container_of(f, rill_gen, fiber);
    rill__scope_drop_all(f); /* before the stack goes: some live on it */
    rill__fiber_release(f);
    g->state = RILL__GEN_FINISHED;
    g->status = g->result = -EDEADLK;
}

/* Its consumer released its stack at the switch back; the struct is the
 * owner's until rill_gen_free. */
static void gen_reaped(rill__fiber *f) { (void)f; }

static const rill__fiber_ops gen_ops = {
    .kind = "generator",
    .entry = gen_entry,
    .reaped = gen_reaped,
    .abandon = gen_abandon,
};

/* asyncio's shutdown_asyncgens: the generators this run left suspended are
 * closed by a task (cleanups may block). */
static int shutdown_body(void *unused) {
    (void)unused;
    rill__rt *rt = rill__self;
    /* Closing may free nothing but may let other generators be created or
     * closed meanwhile: restart the scan after each close. */
    bool again = true;
    while (again) {
        again = false;
        rill__list_each(n, &rt->gens.list) {
            rill_gen *g = rill__container_of(n, rill_gen, node);
            if (shutdown_closes(g)) {
                close_unseen(g);
                again = true;
                break;
            }
        }
    }
    return 0;
}

/* The scheduler's idle hook: no fiber is left. */
static bool close_left_suspended(rill__rt *rt) {
    /* After abandoning fibers, generators may point into what was freed:
     * leave them alone. */
    if (rt->run.abandoned) return false;
    bool any = false;
    rill__list_each(n, &rt->gens.list) {
        if ((any = shutdown_closes(rill__container_of(n, rill_gen, node)))) break;
    }
    if (!any) return false;
    /* The task is born cancelled, as every task spawned from now on. */
    rt->run.shutting_down = true;
    rill_task *t = rill__task_new(shutdown_body, NULL, &(rill_opts){.name = "gen-shutdown"});
    if (!t) return false; /* out of memory: they stay suspended */
    rill_detach(t);
    return true;
}

static void gens_init(rill__rt *rt) {
    rill__list_init(&rt->gens.list);
    rt->gens.shutdown.run = close_left_suspended;
    rill__sched_on_idle(rt, &rt->gens.shutdown);
}

const rill__module rill__gen_module = {.init = gens_init};
