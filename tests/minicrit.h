/* The part of Criterion's API the thread tests use, for the ThreadSanitizer
 * build: Criterion cannot start under ThreadSanitizer (its inheritable arena
 * cannot be mapped: "Could not initialize inheritable arena"), so
 * `make test-tsan` compiles the same test file against this instead.
 *
 * Each test runs in a forked child, as Criterion runs them, with its
 * timeout; the summary line has Criterion's format, so the scripts that read
 * Criterion's output read this too.  Tests register themselves from
 * constructors (a GNU C attribute, used by this test-only header alone). */
#ifndef RILL_MINICRIT_H
#define RILL_MINICRIT_H

#include <fnmatch.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct minicrit_test {
    const char *group, *title; /* Criterion's suite and test names */
    void (*fn)(void);
    int timeout;           /* seconds; 0: none */
    void (*init)(void);
    struct minicrit_test *next;
} minicrit_test;

static minicrit_test *minicrit_tests;

#define Test(suite, name, ...)                                                 \
    static void suite##_##name(void);                                          \
    static minicrit_test suite##_##name##_reg = {                              \
        .group = #suite, .title = #name, .fn = suite##_##name, __VA_ARGS__}; \
    __attribute__((constructor)) static void suite##_##name##_add(void) {      \
        suite##_##name##_reg.next = minicrit_tests;                            \
        minicrit_tests = &suite##_##name##_reg;                                \
    }                                                                          \
    static void suite##_##name(void)

__attribute__((format(printf, 4, 5))) static inline void
minicrit_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stdout, "[----] %s:%d: Assertion Failed: %s\n[----]   ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fprintf(stdout, "\n");
    fflush(stdout);
    _exit(1);
}

/* `" " __VA_ARGS__`: the message is optional, and a literal when given. */
#define cr_assert(cond, ...)                                                   \
    do {                                                                       \
        if (!(cond)) minicrit_fail(__FILE__, __LINE__, #cond, " " __VA_ARGS__); \
    } while (0)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)

/* stderr goes to a file the test can read back. */
static FILE *minicrit_stderr;

static inline void cr_redirect_stderr(void) {
    minicrit_stderr = tmpfile();
    if (!minicrit_stderr || dup2(fileno(minicrit_stderr), 2) < 0) _exit(2);
}

static inline int minicrit_stderr_cmp(const char *want) {
    char buf[4096];
    fflush(stderr);
    rewind(minicrit_stderr);
    size_t n = fread(buf, 1, sizeof buf - 1, minicrit_stderr);
    buf[n] = 0;
    return strcmp(buf, want);
}
#define cr_assert_stderr_neq_str(s) cr_assert(minicrit_stderr_cmp(s) != 0)
#define cr_assert_stderr_eq_str(s) cr_assert(minicrit_stderr_cmp(s) == 0)

/* Run every test (or those whose suite/name matches --filter=GLOB, or does
 * not match --filter=!GLOB) one after the other, each in its own child. */
int main(int argc, char **argv) {
    const char *filter = "*";
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--filter=", 9) == 0) filter = argv[i] + 9;
    bool negate = filter[0] == '!';
    if (negate) filter++;
    int tested = 0, passing = 0;
    for (minicrit_test *t = minicrit_tests; t; t = t->next) {
        char full[256];
        snprintf(full, sizeof full, "%s/%s", t->group, t->title);
        if ((fnmatch(filter, full, 0) == 0) == negate) continue;
        tested++;
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) return 2;
        if (pid == 0) {
            if (t->timeout) alarm((unsigned)t->timeout);
            if (t->init) t->init();
            t->fn();
            fflush(stdout);
            _exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (ok) passing++;
        else if (WIFSIGNALED(status))
            printf("[----] %s: Crash or timeout: signal %d\n", full, WTERMSIG(status));
        printf("[%s] %s::%s\n", ok ? "PASS" : "FAIL", t->group, t->title);
    }
    printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: 0\n", tested,
           passing, tested - passing);
    return passing == tested ? 0 : 1;
}

#endif
