/** @file Unit tests of core/timefmt: RFC 3339 parsing, formatting and their round trip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/timefmt.h"

#define SENTINEL INT64_C(0x5eed5eed5eed)

static void test_parse_valid(void **state)
{
    static const struct {
        const char *s;
        int64_t ms;
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T00:00:00.001Z", 1},
        {"1969-12-31T23:59:59.999Z", -1},
        {"2026-01-01T00:00:00Z", INT64_C(1767225600000)},
        {"2026-01-01t00:00:00z", INT64_C(1767225600000)},
        {"2026-01-01T00:00:00+00:00", INT64_C(1767225600000)},
        {"2026-01-01T00:00:00-00:00", INT64_C(1767225600000)},
        {"2026-01-01T00:00:00.123+02:00", INT64_C(1767218400123)},
        {"2026-01-01T00:00:00-05:30", INT64_C(1767245400000)},
        {"2026-01-01T00:00:00.1Z", INT64_C(1767225600100)},
        {"2026-01-01T00:00:00.12Z", INT64_C(1767225600120)},
        {"2026-01-01T00:00:00.123456789Z", INT64_C(1767225600123)}, /* truncated to ms */
        {"2026-01-01T00:00:00.999999Z", INT64_C(1767225600999)},
        {"2025-12-31T23:59:59.999Z", INT64_C(1767225599999)},
        {"2024-02-29T12:34:56.789Z", INT64_C(1709210096789)},
        {"2000-02-29T00:00:00Z", INT64_C(951782400000)},
        {"1900-03-01T00:00:00Z", INT64_C(-2203891200000)},
        {"0000-01-01T00:00:00Z", INT64_C(-62167219200000)},
        {"9999-12-31T23:59:59.999Z", INT64_C(253402300799999)},
        {"2026-01-01T23:59:59+23:59", INT64_C(1767225600000) + 86399000 - 86340000},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = SENTINEL;
        bp_err_t err = bp_time_parse(cases[i].s, &ms);
        if (err != BP_OK || ms != cases[i].ms)
            fail_msg("\"%s\": expected %lld, got %d/%lld", cases[i].s, (long long)cases[i].ms, err,
                     (long long)ms);
    }
}

static void test_parse_invalid(void **state)
{
    static const char *cases[] = {
        "",
        "garbage",
        "2026",
        "2026-01-01",
        "2026-01-01T00:00:00",  /* no zone */
        "2026-01-01T00:00Z",    /* no seconds */
        "2026-01-01 00:00:00Z", /* space separator */
        "2026-01-01X00:00:00Z",
        " 2026-01-01T00:00:00Z", /* leading junk */
        "2026-01-01T00:00:00Z ", /* trailing junk */
        "2026-01-01T00:00:00Zx",
        "2026-01-01T00:00:00+02:00x",
        "2026-01-01T00:00:00ZZ",
        "2026-1-01T00:00:00Z",
        "2026-01-1T00:00:00Z",
        "26-01-01T00:00:00Z",
        "+2026-01-01T00:00:00Z",
        "2026/01/01T00:00:00Z",
        "2026-01-01T00.00.00Z",
        "2026-00-01T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-01-32T00:00:00Z",
        "2026-02-29T00:00:00Z", /* not a leap year */
        "1900-02-29T00:00:00Z", /* century, not a leap year */
        "2026-04-31T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T23:60:00Z",
        "2026-01-01T23:59:60Z",  /* leap second */
        "2026-01-01T00:00:00.Z", /* empty fraction */
        "2026-01-01T00:00:00,5Z",
        "2026-01-01T00:00:00.12aZ",
        "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00:00+02:60",
        "2026-01-01T00:00:00+0200",
        "2026-01-01T00:00:00+02",
        "2026-01-01T00:00:00+2:00",
        "2026-01-01T00:00:00 +02:00",
        "2026-01-01T0a:00:00Z",
        "\xef\xbc\x92\xef\xbc\x90\xef\xbc\x92\xef\xbc\x96-01-01T00:00:00Z", /* fullwidth */
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = SENTINEL;
        bp_err_t err = bp_time_parse(cases[i], &ms);
        if (err != BP_EINVAL || ms != SENTINEL)
            fail_msg("\"%s\": expected BP_EINVAL and ms untouched, got %d/%lld", cases[i], err,
                     (long long)ms);
    }
    int64_t ms = SENTINEL;
    assert_int_equal(bp_time_parse(NULL, &ms), BP_EINVAL);
    assert_int_equal(ms, SENTINEL);
    assert_int_equal(bp_time_parse("1970-01-01T00:00:00Z", NULL), BP_EINVAL);
}

static void test_format(void **state)
{
    static const struct {
        int64_t ms;
        const char *s;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1, "1970-01-01T00:00:00.001Z"},
        {-1, "1969-12-31T23:59:59.999Z"},
        {-86400000, "1969-12-31T00:00:00.000Z"},
        {-86400001, "1969-12-30T23:59:59.999Z"},
        {INT64_C(1767218400123), "2025-12-31T22:00:00.123Z"},
        {INT64_C(1767225600000), "2026-01-01T00:00:00.000Z"},
        {INT64_C(951782400000), "2000-02-29T00:00:00.000Z"},
        {INT64_C(951868800000), "2000-03-01T00:00:00.000Z"},
        {INT64_C(-62167219200000), "0000-01-01T00:00:00.000Z"},
        {INT64_C(253402300799999), "9999-12-31T23:59:59.999Z"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        memset(buf, 'x', sizeof buf);
        bp_time_format(cases[i].ms, buf, sizeof buf);
        if (strcmp(buf, cases[i].s) != 0)
            fail_msg("%lld: expected \"%s\", got \"%.32s\"", (long long)cases[i].ms, cases[i].s,
                     buf);
    }
}

static void test_format_extremes(void **state)
{
    static const int64_t cases[] = {INT64_MIN, INT64_MIN + 1, INT64_MAX, INT64_MAX - 1};
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        memset(buf, 'x', sizeof buf);
        bp_time_format(cases[i], buf, sizeof buf);
        assert_true(memchr(buf, '\0', sizeof buf) != NULL);
        assert_int_equal(buf[strlen(buf) - 1], 'Z');
    }
    char small[8];
    bp_time_format(0, small, sizeof small);
    assert_string_equal(small, "1970-01");
    bp_time_format(0, small, 0); /* nothing written, no crash */
    assert_string_equal(small, "1970-01");
}

/* Format against the C library's gmtime_r, then parse back, across years 1..9999. */
static void test_round_trip_vs_libc(void **state)
{
    uint64_t seed = 88172645463325252u;
    (void)state;
    for (int i = 0; i < 20000; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        /* 0001-01-01 .. 9999-12-31 */
        int64_t lo = INT64_C(-62135596800000), hi = INT64_C(253402300799999);
        int64_t ms = lo + (int64_t)(seed % (uint64_t)(hi - lo + 1));
        char buf[32], want[64];
        int64_t back = SENTINEL;
        int64_t sec = ms / 1000 - (ms % 1000 < 0), milli = ms - sec * 1000;
        time_t t = (time_t)sec;
        struct tm tm;

        assert_non_null(gmtime_r(&t, &tm));
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)milli);
        bp_time_format(ms, buf, sizeof buf);
        if (strcmp(buf, want) != 0)
            fail_msg("%lld: expected \"%s\", got \"%s\"", (long long)ms, want, buf);
        assert_int_equal(bp_time_parse(buf, &back), BP_OK);
        if (back != ms)
            fail_msg("\"%s\": parsed back %lld, expected %lld", buf, (long long)back,
                     (long long)ms);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_extremes),
        cmocka_unit_test(test_round_trip_vs_libc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
