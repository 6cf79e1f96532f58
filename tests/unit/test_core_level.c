/** @file Unit tests of core/level: level, XP into the level and span across the curve. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/level.h"

static void make_curve(bp_season_t *s, const int64_t *totals, int32_t max_level)
{
    assert_int_equal(bp_season_init(s, max_level, 0), BP_OK);
    for (int32_t l = 1; l <= max_level; l++)
        s->xp_total[l] = totals[l - 1];
}

static void check(const bp_season_t *s, int64_t total, int32_t level, int64_t cur, int64_t next)
{
    bp_level_info_t li = bp_level_for_xp(s, total);
    if (li.level != level || li.current_xp != cur || li.xp_to_next != next)
        fail_msg("total %lld: expected %d/%lld/%lld, got %d/%lld/%lld", (long long)total, level,
                 (long long)cur, (long long)next, li.level, (long long)li.current_xp,
                 (long long)li.xp_to_next);
}

static void test_curve_table(void **state)
{
    static const int64_t totals[] = {0, 100, 250, 450, 700}; /* levels 1..5 */
    static const struct {
        int64_t total;
        int32_t level;
        int64_t current_xp, xp_to_next;
    } cases[] = {
        {INT64_MIN, 1, 0, 100},  {-5, 1, 0, 100}, /* negative counts as 0 */
        {0, 1, 0, 100},          {1, 1, 1, 100},
        {99, 1, 99, 100}, /* one below the threshold */
        {100, 2, 0, 150}, /* exactly at it */
        {101, 2, 1, 150},        {249, 2, 149, 150},
        {250, 3, 0, 200},        {449, 3, 199, 200},
        {450, 4, 0, 250},        {699, 4, 249, 250},
        {700, 5, 0, 0}, /* max level: no next span */
        {701, 5, 1, 0}, /* overflow XP past the cap */
        {1000000, 5, 999300, 0}, {INT64_MAX, 5, INT64_MAX - 700, 0},
    };
    bp_season_t s;
    (void)state;
    make_curve(&s, totals, 5);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check(&s, cases[i].total, cases[i].level, cases[i].current_xp, cases[i].xp_to_next);
    bp_season_fini(&s);
}

static void test_single_level(void **state)
{
    static const int64_t totals[] = {0};
    bp_season_t s;
    (void)state;
    make_curve(&s, totals, 1);
    check(&s, 0, 1, 0, 0);
    check(&s, 500, 1, 500, 0);
    check(&s, -1, 1, 0, 0);
    bp_season_fini(&s);
}

static void test_two_levels(void **state)
{
    static const int64_t totals[] = {0, 1};
    bp_season_t s;
    (void)state;
    make_curve(&s, totals, 2);
    check(&s, 0, 1, 0, 1);
    check(&s, 1, 2, 0, 0);
    check(&s, 2, 2, 1, 0);
    bp_season_fini(&s);
}

/* Every total of an irregular BP_LEVEL_MAX curve against a walking linear reference. */
static void test_large_curve_reference(void **state)
{
    bp_season_t s;
    int32_t want = 1;
    (void)state;
    assert_int_equal(bp_season_init(&s, BP_LEVEL_MAX, 0), BP_OK);
    for (int32_t l = 2; l <= BP_LEVEL_MAX; l++)
        s.xp_total[l] = s.xp_total[l - 1] + 1 + (l * 7919) % 97;
    for (int64_t total = 0; total <= s.xp_total[BP_LEVEL_MAX] + 3; total++) {
        while (want < BP_LEVEL_MAX && s.xp_total[want + 1] <= total)
            want++;
        int64_t next = want == BP_LEVEL_MAX ? 0 : s.xp_total[want + 1] - s.xp_total[want];
        check(&s, total, want, total - s.xp_total[want], next);
    }
    assert_int_equal(want, BP_LEVEL_MAX);
    bp_season_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curve_table),
        cmocka_unit_test(test_single_level),
        cmocka_unit_test(test_two_levels),
        cmocka_unit_test(test_large_curve_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
