/* rill_strerror: see its comment in rill.h. */
#include "helpers.h"

Test(error, strerror_accepts_either_sign_and_names_rills_codes, .timeout = TEST_TIMEOUT) {
    cr_expect_str_eq(rill_strerror(-ECANCELED), rill_strerror(ECANCELED));
    cr_expect(strstr(rill_strerror(-ECANCELED), "cancelled"));
    cr_expect(strstr(rill_strerror(-ETIMEDOUT), "timed out"));
    cr_expect(strstr(rill_strerror(-EPIPE), "closed"));
    cr_expect(strstr(rill_strerror(-EPERM), "fiber"));
    cr_expect(strstr(rill_strerror(-EDEADLK), "deadlock"));
    cr_expect(strstr(rill_strerror(-EINVAL), "Invalid argument"));
    cr_expect_str_eq(rill_strerror(0), "success");
    cr_expect_str_eq(rill_strerror(-ENOENT), "No such file or directory");
    cr_expect_not_null(rill_strerror(-99999));
    cr_expect_not_null(rill_strerror(-2147483647));
}

/* A socket's broken pipe must still read as one once sockets exist: the
 * codes libc also uses keep libc's text first. */
Test(error, strerror_keeps_libcs_meaning_of_codes_rill_also_uses, .timeout = TEST_TIMEOUT) {
    const int shared[] = {EPIPE, ETIMEDOUT, EPERM};
    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++) {
        const char *libc = strerrordesc_np(shared[i]);
        const char *ours = rill_strerror(-shared[i]);
        cr_expect(strncmp(ours, libc, strlen(libc)) == 0, "'%s' does not start with libc's '%s'",
                  ours, libc);
        cr_expect(strstr(ours, "(or: "), "'%s' does not add rill's meaning", ours);
    }
    cr_expect_str_eq(rill_strerror(-EPIPE), "Broken pipe (or: generator or queue closed)");
}
