/* The median the benchmarks report (bench.h, echo.c, pg.c). */
#ifndef RILL_BENCH_MEDIAN_H
#define RILL_BENCH_MEDIAN_H

#include <stdlib.h>

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n), which it sorts. */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
