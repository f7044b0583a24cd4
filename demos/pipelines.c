/*
 * pipelines: generator expressions and pipelines built from adapters.
 * Each stage is a generator that pulls from the one before it, so values
 * flow through one at a time and nothing is read ahead of need.
 *
 * The Python originals:
 *
 *     async def async_range(n):
 *         for i in range(n):
 *             await asyncio.sleep(0.1)
 *             yield i
 *     async for num in (i * 2 async for i in async_range(5)):
 *         print(num)                                    # 0, 2, 4, 6, 8
 *
 *     async def buffered_generate(buffer_size=10):      # buffered output
 *         buffer = []
 *         for i in range(100):
 *             await asyncio.sleep(0.01)
 *             buffer.append(f"Message {i}")
 *             if len(buffer) >= buffer_size:            # full: send a batch
 *                 yield "\n".join(buffer); buffer.clear()
 *         if buffer: yield "\n".join(buffer)            # flush the rest
 *
 *     async def async_log_generator():                  # log processing
 *         for log in logs:
 *             await asyncio.sleep(1)
 *             yield log
 *     async for log in async_log_generator():
 *         print(f"Processing: {log}")
 *
 *     extract = extract_users(source_pool)              # ETL
 *     transform = transform_pipeline(extract)           # transform_user each
 *     await load_users(target_pool, transform)          # batches of 100
 *
 *     Python                                  rill
 *     (f(x) async for x in src)               rill_gen_map(src, f, ctx)
 *     (x async for x in src if keep(x))       rill_gen_filter(src, keep, ctx)
 *     a buffer flushed every n values         rill_gen_batch(src, n, item_size)
 *
 * An adapter owns its source: freeing the last stage frees the whole chain.
 * Values are borrowed, valid until the next resume, which is all that map
 * and filter need.  A batch keeps n values at once, so rill_gen_batch copies
 * each one (item_size bytes): the sources below format every value into one
 * buffer that they reuse, and keeping pointers to it would give n copies of
 * the last value.
 *
 * Usage: pipelines [--scale X]   (X multiplies every delay)
 */
#include "demo.h"

#include <ctype.h>

/* An adapter owns its source only once it exists: if it could not be made,
 * free the source here, so that a pipeline can be built stage by stage and
 * checked once at the end (a NULL source gives a NULL adapter). */
static rill_gen *owned(rill_gen *adapter, rill_gen *src) {
    if (!adapter) rill_gen_free(src);
    return adapter;
}

/* ---- 1. Generator expressions: map and filter ---------------------------- */

/* async_range(n): 0 .. n-1, one every 0.1 s. */
static int async_range(rill_gen *g, void *arg) {
    int n = *(const int *)arg;
    for (int i = 0; i < n; i++) {
        int rc = rill_sleep(0.1 * scale);
        if (rc < 0 || (rc = rill_yield(g, &i)) < 0) return rc;
    }
    return 0;
}

/* i * 2: the result goes into the int that ctx points at, which stays valid
 * until the consumer asks for the next value. */
static int times_two(void *in, void **out, void *ctx) {
    int *result = ctx;
    *result = *(int *)in * 2;
    *out = result;
    return 0;
}

/* if i % 3 == 0 */
static int multiple_of_3(void *in, void *ctx) {
    (void)ctx;
    return *(int *)in % 3 == 0;
}

/* async for num in gen: print(num); keeps up to max values in got.
 * Returns how many came, or the generator's error. */
static int print_ints(rill_gen *gen, int *got, int max) {
    int n = 0, *num;
    rill_foreach(num, gen) {
        printf("%d\n", *num);
        if (n < max) got[n] = *num;
        n++;
    }
    int status = rill_gen_status(gen);
    return status < 0 ? status : n;
}

static bool same_ints(const int *got, int n, const int *want, int nwant) {
    return n == nwant && memcmp(got, want, (size_t)n * sizeof *got) == 0;
}

static int generator_expressions(void) {
    int got[10], doubled; /* doubled: where times_two puts its result */

    printf("== (i * 2 async for i in async_range(5)) ==\n");
    int five = 5;
    rill_gen *range = rill_gen_new(async_range, &five);
    RILL_GEN_AUTO rill_gen *gen = owned(rill_gen_map(range, times_two, &doubled), range);
    if (!gen) return -ENOMEM;
    int n = print_ints(gen, got, 10);
    if (n < 0) return n;
    expect(same_ints(got, n, (int[]){0, 2, 4, 6, 8}, 5), "map yields 0, 2, 4, 6, 8");

    printf("\n== (i * 2 async for i in async_range(10) if i %% 3 == 0) ==\n");
    int ten = 10;
    rill_gen *range10 = rill_gen_new(async_range, &ten);
    rill_gen *kept = owned(rill_gen_filter(range10, multiple_of_3, NULL), range10);
    RILL_GEN_AUTO rill_gen *gen2 = owned(rill_gen_map(kept, times_two, &doubled), kept);
    if (!gen2) return -ENOMEM;
    n = print_ints(gen2, got, 10);
    if (n < 0) return n;
    expect(same_ints(got, n, (int[]){0, 6, 12, 18}, 4),
           "filter, then map, yields 0, 6, 12, 18");
    printf("\n");
    return 0;
}

/* ---- 2. Buffered output: batches of 10 ----------------------------------- */

#define NMSG 100
#define BUFFER_SIZE 10
#define MSG_SIZE 16 /* "Message 99" and its NUL, with room */

/* The messages, one every 0.01 s, each formatted into the same buffer. */
static int generate_messages(rill_gen *g, void *arg) {
    (void)arg;
    char msg[MSG_SIZE];
    for (int i = 0; i < NMSG; i++) {
        int rc = rill_sleep(0.01 * scale);
        if (rc < 0) return rc;
        snprintf(msg, sizeof msg, "Message %d", i);
        if ((rc = rill_yield(g, msg)) < 0) return rc;
    }
    return 0;
}

static int buffered_output(void) {
    printf("== buffered_generate(buffer_size=10): 100 messages in batches ==\n");
    rill_gen *msgs = rill_gen_new(generate_messages, NULL);
    /* item_size MSG_SIZE: the batch copies each message out of the
     * source's buffer before the source overwrites it with the next. */
    RILL_GEN_AUTO rill_gen *batches =
        owned(rill_gen_batch(msgs, BUFFER_SIZE, MSG_SIZE), msgs);
    if (!batches) return -ENOMEM;

    int nbatches = 0, next = 0; /* the message number expected next */
    bool full = true, in_order = true;
    rill_batch *b;
    rill_foreach(b, batches) {
        char (*batch)[MSG_SIZE] = b->items; /* n messages, MSG_SIZE bytes each */
        printf("Batch %d: %zu messages, \"%s\" .. \"%s\"\n", ++nbatches, b->n, batch[0],
               batch[b->n - 1]);
        full = full && b->n == BUFFER_SIZE;
        for (size_t i = 0; i < b->n; i++) {
            char want[24];
            snprintf(want, sizeof want, "Message %d", next++);
            in_order = in_order && strcmp(batch[i], want) == 0;
        }
    }
    int status = rill_gen_status(batches);
    if (status < 0) return status;
    printf("\n");
    expect(nbatches == NMSG / BUFFER_SIZE && full && next == NMSG,
           "100 messages come in 10 batches of 10");
    expect(in_order, "every batch holds its own 10 messages, in order");
    return 0;
}

/* ---- 3. Log processing --------------------------------------------------- */

#define NLOGS 5

static char logs[NLOGS][32] = {
    "Log 1: user1 login",
    "Log 2: user2 upload file",
    "Log 3: user3 download file",
    "Log 4: user4 logout",
    "Log 5: user5 login",
};

/* async_log_generator(): one line every second, as if read from a large
 * file.  The lines are static, so the pointers stay valid anyway. */
static int async_log_generator(rill_gen *g, void *arg) {
    (void)arg;
    for (int i = 0; i < NLOGS; i++) {
        int rc = rill_sleep(1.0 * scale);
        if (rc < 0 || (rc = rill_yield(g, logs[i])) < 0) return rc;
    }
    return 0;
}

static int process_logs_async(void) {
    printf("== process_logs_async(): async for log in async_log_generator() ==\n");
    RILL_GEN_AUTO rill_gen *gen = rill_gen_new(async_log_generator, NULL);
    if (!gen) return -errno;
    int n = 0;
    bool in_order = true;
    char *log;
    rill_foreach(log, gen) {
        printf("Processing: %s\n", log);
        in_order = in_order && n < NLOGS && strcmp(log, logs[n]) == 0;
        n++;
    }
    int status = rill_gen_status(gen);
    if (status < 0) return status;
    printf("\n");
    expect(n == NLOGS && in_order, "the 5 log lines are processed in order");
    return 0;
}

/* ---- 4. Extract, transform, load ----------------------------------------- */

#define NUSERS 250
#define FETCH 50       /* rows per round trip of the source's cursor */
#define LOAD_BATCH 100 /* rows per INSERT ... ON CONFLICT batch */

struct user { /* a row of the source table `users` */
    int id;
    char username[16];
    char email[32];
    int created_year;
};

struct user_out { /* a row for the target table `users_processed` */
    int user_id;
    char full_name[16];
    char email_domain[16];
    int registration_year;
};

/* EXTRACT: the rows of `SELECT * FROM users ORDER BY id`, fetched FETCH at a
 * time (0.1 s per round trip) and yielded one by one from one reused row. */
static int extract_users(rill_gen *g, void *arg) {
    (void)arg;
    static const char *const names[] = {"alice", "bob", "carol", "dave", "erin"};
    static const char *const domains[] = {"example.com", "mail.ru", "qq.com"};
    struct user row;
    for (int id = 1; id <= NUSERS; id++) {
        int rc = 0;
        if (id % FETCH == 1) rc = rill_sleep(0.1 * scale); /* the next FETCH rows */
        if (rc < 0) return rc;
        row.id = id;
        snprintf(row.username, sizeof row.username, "%s_%d", names[id % 5], id);
        if (id % 50 == 0) /* a few rows have no valid address */
            snprintf(row.email, sizeof row.email, "unknown");
        else
            snprintf(row.email, sizeof row.email, "%s%d@%s", names[id % 5], id,
                     domains[id % 3]);
        row.created_year = 2020 + id % 5;
        if ((rc = rill_yield(g, &row)) < 0) return rc;
    }
    return 0;
}

/* Python's str.title(): upper-case the first letter of each word. */
static void title_case(char *dst, size_t size, const char *src) {
    bool word_start = true;
    size_t i = 0;
    for (; src[i] && i + 1 < size; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (char)(word_start ? toupper(c) : tolower(c));
        word_start = !isalpha(c);
    }
    dst[i] = '\0';
}

/* TRANSFORM: transform_user(record), into the slot that ctx points at (the
 * map yields it, then calls us again only once the batch has copied it).
 * Python's processed_at timestamp is left out so the output stays the same
 * from run to run. */
static int transform_user(void *in, void **out, void *ctx) {
    const struct user *u = in;
    struct user_out *o = ctx;
    o->user_id = u->id;
    title_case(o->full_name, sizeof o->full_name, u->username);
    const char *at = strchr(u->email, '@');
    snprintf(o->email_domain, sizeof o->email_domain, "%s", at ? at + 1 : "");
    o->registration_year = u->created_year;
    *out = o;
    return 0;
}

/* LOAD: _insert_batch(pool, batch), simulated: 0.2 s for one executemany. */
static int insert_batch(const struct user_out *rows, size_t n) {
    int rc = rill_sleep(0.2 * scale);
    if (rc < 0) return rc;
    printf("Loaded batch of %zu records (user_id %d..%d)\n", n, rows[0].user_id,
           rows[n - 1].user_id);
    return 0;
}

static int run_etl(void) {
    printf("== run_etl(): extract -> transform -> load, %d a batch ==\n", LOAD_BATCH);
    struct user_out slot; /* where transform_user writes */
    rill_gen *extract = rill_gen_new(extract_users, NULL);
    rill_gen *transform = owned(rill_gen_map(extract, transform_user, &slot), extract);
    /* Copies of the transformed rows (item_size): the slot is reused. */
    RILL_GEN_AUTO rill_gen *batches =
        owned(rill_gen_batch(transform, LOAD_BATCH, sizeof(struct user_out)), transform);
    if (!batches) return -ENOMEM;

    size_t loaded = 0, sizes[4] = {0};
    int nbatches = 0, next_id = 1;
    bool consecutive = true, sample_ok = false;
    rill_batch *b;
    rill_foreach(b, batches) { /* load_users(target_pool, transform) */
        const struct user_out *rows = b->items;
        if (nbatches == 0) {
            const struct user_out *r = &rows[0];
            printf("first record: {'user_id': %d, 'full_name': '%s', 'email_domain': "
                   "'%s', 'registration_year': %d}\n",
                   r->user_id, r->full_name, r->email_domain, r->registration_year);
            /* user 1 is "bob_1", bob1@mail.ru, created in 2021 */
            sample_ok = r->user_id == 1 && strcmp(r->full_name, "Bob_1") == 0 &&
                        strcmp(r->email_domain, "mail.ru") == 0 &&
                        r->registration_year == 2021;
        }
        for (size_t i = 0; i < b->n; i++)
            consecutive = consecutive && rows[i].user_id == next_id++;
        int rc = insert_batch(rows, b->n);
        if (rc < 0) return rc;
        if (nbatches < 4) sizes[nbatches] = b->n;
        nbatches++;
        loaded += b->n;
    }
    int status = rill_gen_status(batches);
    if (status < 0) return status;
    printf("ETL process completed successfully: %zu records\n\n", loaded);

    expect(sample_ok, "transform_user title-cases the name and extracts the domain");
    expect(nbatches == 3 && sizes[0] == 100 && sizes[1] == 100 && sizes[2] == 50,
           "250 rows load as batches of 100, 100 and the remaining 50");
    expect(loaded == NUSERS && consecutive,
           "every row is loaded once, in order (each batch holds copies)");
    return 0;
}

static int amain(void *arg) {
    (void)arg;
    int rc;
    if ((rc = generator_expressions()) < 0 || (rc = buffered_output()) < 0 ||
        (rc = process_logs_async()) < 0 || (rc = run_etl()) < 0)
        return rc;
    demo_verdict("map, filter, batch, log processing and the ETL pipeline gave the "
                 "expected values");
    return 0;
}

int main(int argc, char **argv) { return demo_main(argc, argv, amain); }
