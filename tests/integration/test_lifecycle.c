/** @file A season turning from upcoming to active to ended while one worker runs, without a
 *  restart: its status over HTTP follows the clock, and XP events count by occurredAt —
 *  before the start and after the end (grace 0) they are recorded but change nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/integration/support.h"

#define HTTP_PORT 23191
#define OPEN_IN_MS 12000 /* the season starts this long after setup ... */
#define LASTS_MS 8000    /* ... and lasts this long */

static it_env_t env;
static pid_t daemon_pid = -1;
static char prefix[32], season_id[48];
static int64_t starts_at, ends_at;
static char *token;

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "lifecycle", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    snprintf(prefix, sizeof(prefix), "lc%d-", (int)getpid());
    snprintf(season_id, sizeof(season_id), "s-short-%d", (int)getpid());
    if (!it_db_prepare(&env, NULL))
        return -1;
    /* Whole seconds: RFC 3339 times in the file keep milliseconds, but keep it simple. */
    starts_at = (it_now_ms() + OPEN_IN_MS) / 1000 * 1000;
    ends_at = starts_at + LASTS_MS;
    if (!it_season_write(&env, "short-season.json", season_id, starts_at - it_now_ms(), LASTS_MS,
                         "{\"lateEventGraceHours\":0}") ||
        !it_season_import(&env, "short-season.json", false))
        return -1;
    /* The file was written relative to the clock at that moment: read the real window. */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT (extract(epoch FROM starts_at) * 1000)::bigint FROM seasons WHERE id = '%s'",
             season_id);
    starts_at = it_sql_int(&env, sql);
    snprintf(sql, sizeof(sql),
             "SELECT (extract(epoch FROM ends_at) * 1000)::bigint FROM seasons WHERE id = '%s'",
             season_id);
    ends_at = it_sql_int(&env, sql);
    char group[64];
    snprintf(group, sizeof(group), "it-lifecycle-%d", (int)getpid());
    daemon_pid = it_daemon_up(&env, group, NULL, "lifecycle-daemon.log");
    if (daemon_pid < 0)
        return -1;
    token = it_jwt(env.secret, "ops", "admin", 600);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (!it_daemon_down(&daemon_pid))
        rc = -1;
    free(token);
    return rc;
}

static void produce(const char *id, int32_t amount, int64_t occurred_at)
{
    bp_xp_event_t ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "%s%s", prefix, id);
    snprintf(ev.player_id, sizeof(ev.player_id), "%sP", prefix);
    snprintf(ev.reason, sizeof(ev.reason), "match_complete");
    ev.amount = amount;
    ev.occurred_at_ms = occurred_at;
    it_producer_t *p = it_producer_new(&env);
    it_produce_xp(p, &ev);
    it_producer_destroy(p);
}

/* The season's status over HTTP, and whether /seasons/current names it. */
static void expect_status(const char *status, bool current)
{
    static char body[1 << 16];
    char path[128];
    snprintf(path, sizeof(path), "/seasons/%s", season_id);
    assert_int_equal(it_http_get(HTTP_PORT, path, token, body, sizeof(body)), 200);
    json_t *o = json_loads(body, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "status")), status);
    json_decref(o);
    int st = it_http_get(HTTP_PORT, "/seasons/current", token, body, sizeof(body));
    assert_int_equal(st, current ? 200 : 404);
}

static void sleep_until(int64_t t_ms)
{
    int64_t left = t_ms - it_now_ms();
    if (left > 0)
        usleep((useconds_t)left * 1000);
}

/* Wait until the event is recorded. @return false on timeout; *in_season tells whether it
 * counted for a season. */
static bool recorded_in_season(const char *id, bool *in_season)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT COALESCE((SELECT CASE WHEN season_id IS NULL THEN 0 ELSE 1 END FROM "
             "processed_events WHERE event_id = '%s%s'), 2)",
             prefix, id);
    for (int waited = 0; waited < 30000; waited += 100) {
        long long v = it_sql_int(&env, sql);
        if (v == 0 || v == 1) {
            *in_season = v == 1;
            return true;
        }
        usleep(100000);
    }
    return false;
}

static void test_upcoming_active_ended(void **state)
{
    (void)state;
    if (!env.bootstrap)
        skip();
    bool in_season;
    char sql[256];

    /* Upcoming: an event now belongs to no season. */
    assert_true(it_now_ms() < starts_at);
    expect_status("upcoming", false);
    produce("before", 100, it_now_ms());
    assert_true(recorded_in_season("before", &in_season));
    assert_false(in_season);

    /* Active: the same worker, no restart, applies events of the season. */
    sleep_until(starts_at + 500);
    expect_status("active", true);
    produce("during", 250, it_now_ms());
    assert_true(recorded_in_season("during", &in_season));
    assert_true(in_season);

    /* Ended: events after the end, and late events of the season without grace, are
     * recorded only. */
    sleep_until(ends_at + 500);
    expect_status("ended", false);
    produce("after", 400, it_now_ms());
    produce("late", 800, ends_at - 1000);
    assert_true(recorded_in_season("after", &in_season));
    assert_false(in_season);
    assert_true(recorded_in_season("late", &in_season));
    assert_false(in_season);

    snprintf(sql, sizeof(sql),
             "SELECT total_xp FROM player_progress WHERE player_id = '%sP' AND season_id = '%s'",
             prefix, season_id);
    assert_int_equal(it_sql_int(&env, sql), 250);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upcoming_active_ended),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
