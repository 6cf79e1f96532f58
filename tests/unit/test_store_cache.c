/** @file Unit tests of store/cache.c that need no Redis: URL parsing and lazy connection. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "store/cache.h"

static void test_urls(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        bp_err_t want;
    } cases[] = {
        {"redis://127.0.0.1:6379", BP_OK},
        {"redis://localhost", BP_OK},
        {"redis://cache.internal:6380/3", BP_OK},
        {"redis://:secret@h:1/0", BP_OK},
        {"redis://user:p%40ss%2Fw@h:6379", BP_OK},
        {"redis://:pa@ss@h:6379", BP_OK}, /* unescaped '@' in the password */
        {"redis://[::1]:6379/1", BP_OK},
        {"redis://h:6379/", BP_OK},
        {NULL, BP_EINVAL},
        {"", BP_EINVAL},
        {"http://h:6379", BP_EINVAL},
        {"redis://", BP_EINVAL},
        {"redis://:6379", BP_EINVAL},
        {"redis://h:0", BP_EINVAL},
        {"redis://h:65536", BP_EINVAL},
        {"redis://h:12x", BP_EINVAL},
        {"redis://h:", BP_EINVAL},
        {"redis://h:6379/x", BP_EINVAL},
        {"redis://h:6379/-1", BP_EINVAL},
        {"redis://:@h:6379", BP_EINVAL},
        {"redis://:pw%4@h", BP_EINVAL},
        {"redis://:pw%00@h", BP_EINVAL},
        {"redis://[::1:6379", BP_EINVAL},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bp_cache_t *c = (bp_cache_t *)&failures; /* must be reset on error */
        bp_err_t rc = bp_cache_new(cases[i].url, 60, &c);
        if (rc != cases[i].want || (rc == BP_OK) != (c != NULL)) {
            print_error("url \"%s\": rc %d, want %d\n", cases[i].url ? cases[i].url : "(null)",
                        (int)rc, (int)cases[i].want);
            failures++;
        }
        bp_cache_destroy(rc == BP_OK ? c : NULL);
    }
    assert_int_equal(failures, 0);
}

static void test_bad_ttl(void **state)
{
    (void)state;
    bp_cache_t *c = NULL;
    assert_int_equal(bp_cache_new("redis://h:1", 0, &c), BP_EINVAL);
    assert_null(c);
}

static void test_destroy_null(void **state)
{
    (void)state;
    bp_cache_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_bad_ttl),
        cmocka_unit_test(test_destroy_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
