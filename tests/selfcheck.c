/* Deliberately faulty: `make test` runs it under ASan and valgrind and
 * requires both faults to be reported, proving the harness would catch them
 * in the real suite.  Never part of the counted tests. */
#include <criterion/criterion.h>
#include <stdlib.h>

void *volatile sink;

Test(selfcheck, leaks_a_block) {
    sink = malloc(100);
    sink = NULL;
}

Test(selfcheck, reads_past_a_block) {
    volatile char *p = calloc(8, 1);
    size_t past = 8;
    volatile char c = p[past];
    (void)c;
    free((void *)p);
}
