/** @file Unit tests of the Progress resource's direct rendering (bp_http_progress_text): the
 *  very text jansson makes of bp_http_progress_json, for a table of rows and ids. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/season.h"
#include "http/routes.h"

static void check_same(const bp_season_t *s, const char *player, const bp_progress_row_t *row)
{
    json_t *obj = bp_http_progress_json(s, player, row);
    assert_non_null(obj);
    char *want = json_dumps(obj, JSON_COMPACT);
    assert_non_null(want);
    json_decref(obj);
    size_t len = 0;
    char *got = bp_http_progress_text(s, player, row, &len);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("player %s, totalXp %lld: got %s want %s", player, (long long)row->total_xp, got,
                 want);
    assert_int_equal(len, strlen(want));
    free(got);
    free(want);
}

static void test_same_as_jansson(void **state)
{
    (void)state;
    bp_season_t s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(bp_season_init(&s, 5, 0), BP_OK);
    snprintf(s.id, sizeof(s.id), "%s", "s-2026.spring:1@x");
    const int64_t totals[] = {0, 100, 300, 600, 1000};
    for (int l = 1; l <= 5; l++)
        s.xp_total[l] = totals[l - 1];

    const bp_progress_row_t rows[] = {
        {.level = 1}, /* a player without a row */
        {.total_xp = 99, .level = 1, .earned_xp = 99, .updated_at_ms = 1767225600123LL},
        {.total_xp = 100, .level = 2, .earned_xp = 100, .premium = true, .updated_at_ms = 1},
        {.total_xp = 750, .level = 4, .earned_xp = 500, .paid_xp = 250, .updated_at_ms = 42},
        {.total_xp = 1000, .level = 5, .earned_xp = 1000, .updated_at_ms = 1767225600000LL},
        {.total_xp = INT64_MAX / 2,
         .level = 5,
         .earned_xp = 1,
         .paid_xp = INT64_MAX / 2 - 1,
         .premium = true,
         .updated_at_ms = 4102444800000LL},
    };
    const char *players[] = {"p", "player-1", "A.b_c:d@e-f", "x"};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        for (size_t k = 0; k < sizeof(players) / sizeof(players[0]); k++)
            check_same(&s, players[k], &rows[i]);

    /* Ids that would need escaping (never valid ids) still render as jansson does. */
    check_same(&s, "quote\"back\\slash", &rows[1]);
    snprintf(s.id, sizeof(s.id), "%s", "tab\there");
    check_same(&s, "p", &rows[2]);
    bp_season_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
