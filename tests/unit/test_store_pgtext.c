/** @file Unit tests of store/pgtext.c: the array literals every batch sends to unnest(). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <string.h>

#include "store/pgtext.h"

static void test_text_elements(void **state)
{
    (void)state;
    static const struct {
        const char *in[4];
        size_t n;
        const char *want;
    } cases[] = {
        {{NULL}, 0, "{}"},
        {{"a"}, 1, "{\"a\"}"},
        {{"p-1", "p.2:@x"}, 2, "{\"p-1\",\"p.2:@x\"}"},
        {{""}, 1, "{\"\"}"},
        {{NULL}, 1, "{NULL}"},
        {{"say \"hi\""}, 1, "{\"say \\\"hi\\\"\"}"},
        {{"back\\slash"}, 1, "{\"back\\\\slash\"}"},
        {{"\"", "\\"}, 2, "{\"\\\"\",\"\\\\\"}"},
        {{"{20416}", "{1,2}"}, 2, "{\"{20416}\",\"{1,2}\"}"},
        {{"a,b", "c d"}, 2, "{\"a,b\",\"c d\"}"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        bp_sbuf_t b = {0};
        bp_arr_open(&b);
        for (size_t i = 0; i < cases[c].n; i++)
            bp_arr_text(&b, cases[c].in[i]);
        bp_arr_close(&b);
        assert_false(b.oom);
        assert_string_equal(b.s, cases[c].want);
        assert_int_equal(b.n, strlen(cases[c].want));
        bp_sb_free(&b);
    }
}

static void test_int_elements(void **state)
{
    (void)state;
    static const struct {
        long long in[4];
        size_t n;
        const char *want;
    } cases[] = {
        {{0}, 1, "{0}"},
        {{7, -7, 10, 100}, 4, "{7,-7,10,100}"},
        {{1795509453728LL}, 1, "{1795509453728}"},
        {{LLONG_MAX}, 1, "{9223372036854775807}"},
        {{LLONG_MIN}, 1, "{-9223372036854775808}"},
        {{-1, 20416}, 2, "{-1,20416}"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        bp_sbuf_t b = {0};
        bp_arr_open(&b);
        for (size_t i = 0; i < cases[c].n; i++)
            bp_arr_int(&b, cases[c].in[i]);
        bp_arr_close(&b);
        assert_false(b.oom);
        assert_string_equal(b.s, cases[c].want);
        bp_sb_free(&b);
    }
}

/* A buffer reused for the next array starts over; long arrays grow it. */
static void test_reuse_and_growth(void **state)
{
    (void)state;
    bp_sbuf_t b = {0};
    bp_arr_open(&b);
    for (int i = 0; i < 10000; i++)
        bp_arr_text(&b, "player-0123456789");
    bp_arr_close(&b);
    assert_false(b.oom);
    assert_int_equal(b.n, 2 + 10000 * 19 + 9999);
    bp_arr_open(&b);
    bp_arr_int(&b, 5);
    bp_arr_close(&b);
    assert_string_equal(b.s, "{5}");
    bp_sb_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_elements),
        cmocka_unit_test(test_int_elements),
        cmocka_unit_test(test_reuse_and_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
