/* rill_strerror (DESIGN §2). */
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
