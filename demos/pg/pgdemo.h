/*
 * What the examples of the pg demo share.  demo.h's counters are static,
 * so only main.c includes it; the examples check their claims and read
 * --scale through the functions below, which main.c defines.
 */
#ifndef RILL_DEMO_PG_H
#define RILL_DEMO_PG_H

#include <rill.h>
#include <rill/pg.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* demo.h's expect(), demo_elapsed(), errname() and --scale, for the
 * examples (main.c). */
void pgd_expect(bool ok, const char *claim);
double pgd_elapsed(double t0);
double pgd_scale(void);
const char *pgd_errname(int err);

/* The conninfo of the demo's own database (created by main.c, dropped at
 * its end), and of a second one, the ETL example's target. */
extern const char *pgd_source;
extern const char *pgd_target;

/* Run sql (no parameters) on c; on an error print it with the server's
 * message and SQLSTATE and count a failed claim.  Returns rill_pg_exec's
 * result. */
long pgd_sql(rill_pg *c, const char *sql);

/* Connect to conninfo; on an error say so and count a failed claim. */
int pgd_connect(const char *conninfo, rill_pg **out);

/* The examples, in the order of the original text; each prints a header
 * and what the Python prints, and checks its claims. */
void example_cursor(void);
void example_prefetch(void);
void example_pagination(void);
void example_records(void);
void example_export_json(void);
void example_concurrency(void);
void example_etl(void);
void example_listen(void);
void example_aggregate(void);
void example_errors(void);

#endif
