/** @file The admin and write routes against the real daemon: season listing with a status
 *  filter, POST/PATCH /seasons (validation, conflicts, upcoming-only changes, immediate
 *  visibility) and POST /progress/{playerId}/xp (Idempotency-Key, bad bodies, scopes, the
 *  per-player rate limit with Retry-After) applied through Kafka by the worker. */
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
#include <ctype.h>
#include <unistd.h>

#include "core/timefmt.h"
#include "tests/integration/support.h"

#define HTTP_PORT 23185
/* Low enough for a quick test of the limit; the default is 100. */
#define GRANTS_PER_MINUTE 5
#define STR_(x) #x
#define STR(x) STR_(x)
#define DAY_MS (INT64_C(86400) * 1000)

static it_env_t env;
static pid_t daemon_pid = -1;
static char prefix[32];
static char active_id[BP_ID_MAX + 1];
static int64_t active_starts_ms, active_ends_ms;
static char upcoming_id[BP_ID_MAX + 1];
static char *admin_token, *service_token, *player_token;
static char body[1 << 20], headers[8192];

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "http_admin", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/schemas/seasons/sample-season.json", env.source_dir);
    if (!it_db_prepare(&env, path))
        return -1;
    snprintf(prefix, sizeof(prefix), "ha%d-", (int)getpid());
    snprintf(upcoming_id, sizeof(upcoming_id), "%supcoming", prefix);
    char group[64];
    snprintf(group, sizeof(group), "it-http-admin-%d", (int)getpid());
    static const char *const extra[] = {"BP_XP_GRANTS_PER_MINUTE=" STR(GRANTS_PER_MINUTE), NULL};
    daemon_pid = it_daemon_up(&env, group, extra, "http-admin-daemon.log");
    if (daemon_pid < 0)
        return -1;
    admin_token = it_jwt(env.secret, "ops", "admin", 600);
    service_token = it_jwt(env.secret, "gameplay", "service", 600);
    player_token = it_jwt(env.secret, "someone", "player", 600);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (!it_daemon_down(&daemon_pid))
        rc = -1;
    free(admin_token);
    free(service_token);
    free(player_token);
    return rc;
}

static void skip_without_services(void)
{
    if (!env.bootstrap)
        skip();
}

/* One request; prints the answer when the status is not the expected one. */
static int call(const char *method, const char *path, const char *token, const char *extra,
                const char *req_body, int want)
{
    int status = it_http(HTTP_PORT, method, path, token, extra, req_body, body, sizeof(body),
                         headers, sizeof(headers));
    if (status != want)
        fprintf(stderr, "%s %s: got %d want %d: %s\n", method, path, status, want, body);
    return status;
}

/* The parsed answer (caller decrefs); fails the test when it is not JSON. */
static json_t *answer(void)
{
    json_t *o = json_loads(body, 0, NULL);
    assert_non_null(o);
    return o;
}

/* Problem detail of the last answer contains @p needle, and its status is @p status. */
static void assert_problem(int status, const char *needle)
{
    json_t *o = answer();
    assert_int_equal(json_integer_value(json_object_get(o, "status")), status);
    const char *detail = json_string_value(json_object_get(o, "detail"));
    if (needle) {
        assert_non_null(detail);
        if (!strstr(detail, needle))
            fprintf(stderr, "detail \"%s\" lacks \"%s\"\n", detail, needle);
        assert_non_null(strstr(detail, needle));
    }
    json_decref(o);
}

/* A small valid season definition; caller decrefs. */
static json_t *season_def(const char *id, int64_t starts_ms, int64_t ends_ms, int64_t xp2)
{
    char a[40], b[40];
    bp_time_format(starts_ms, a, sizeof(a));
    bp_time_format(ends_ms, b, sizeof(b));
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:i, s:[{s:i, s:i, s:[{s:s, s:s, s:s, s:i}]}, {s:i, s:I, s:[]}]}",
        "id", id, "name", "Season Two", "startsAt", a, "endsAt", b, "maxLevel", 2, "levels",
        "level", 1, "xpTotal", 0, "rewards", "tier", "free", "rewardId", "r-1", "itemId",
        "currency.coins", "quantity", 10, "level", 2, "xpTotal", (json_int_t)xp2, "rewards");
}

static char *dump(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    assert_non_null(s);
    return s;
}

/* GET /seasons[?status=]: @return how many seasons were listed, and checks their status. */
static size_t list_count(const char *status)
{
    char path[64];
    snprintf(path, sizeof(path), "/seasons%s%s", status ? "?status=" : "", status ? status : "");
    assert_int_equal(call("GET", path, player_token, NULL, NULL, 200), 200);
    json_t *o = answer();
    json_t *arr = json_object_get(o, "seasons");
    assert_true(json_is_array(arr));
    size_t n = json_array_size(arr);
    for (size_t i = 0; status && i < n; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(arr, i), "status")),
                            status);
    json_decref(o);
    return n;
}

static void test_list_seasons(void **state)
{
    (void)state;
    skip_without_services();
    assert_int_equal(list_count(NULL), 1);
    assert_int_equal(list_count("active"), 1);
    assert_int_equal(list_count("upcoming"), 0);
    assert_int_equal(list_count("ended"), 0);
    assert_int_equal(call("GET", "/seasons?status=bogus", player_token, NULL, NULL, 400), 400);
    assert_problem(400, "status");
    assert_int_equal(call("GET", "/seasons", NULL, NULL, NULL, 401), 401);

    /* Remember the active season's window for the writes below. */
    assert_int_equal(call("GET", "/seasons?status=active", player_token, NULL, NULL, 200), 200);
    json_t *o = answer();
    json_t *s = json_array_get(json_object_get(o, "seasons"), 0);
    snprintf(active_id, sizeof(active_id), "%s", json_string_value(json_object_get(s, "id")));
    assert_int_equal(
        bp_time_parse(json_string_value(json_object_get(s, "startsAt")), &active_starts_ms), BP_OK);
    assert_int_equal(
        bp_time_parse(json_string_value(json_object_get(s, "endsAt")), &active_ends_ms), BP_OK);
    json_decref(o);
}

static void test_create_season(void **state)
{
    (void)state;
    skip_without_services();
    int64_t starts = active_ends_ms + DAY_MS, ends = starts + 30 * DAY_MS;
    char *def = dump(season_def(upcoming_id, starts, ends, 500));

    assert_int_equal(call("POST", "/seasons", player_token, NULL, def, 403), 403);
    assert_int_equal(call("POST", "/seasons", service_token, NULL, def, 403), 403);
    assert_int_equal(call("POST", "/seasons", NULL, NULL, def, 401), 401);

    assert_int_equal(call("POST", "/seasons", admin_token, NULL, def, 201), 201);
    char location[128];
    snprintf(location, sizeof(location), "Location: /seasons/%s", upcoming_id);
    const char *at = strstr(headers, location);
    assert_non_null(at);
    assert_true(at[strlen(location)] == '\r' || at[strlen(location)] == '\0');
    json_t *o = answer();
    assert_string_equal(json_string_value(json_object_get(o, "id")), upcoming_id);
    assert_string_equal(json_string_value(json_object_get(o, "status")), "upcoming");
    assert_int_equal(json_integer_value(json_object_get(o, "maxLevel")), 2);
    json_decref(o);
    /* Visible at once, in the list and by id. */
    assert_int_equal(list_count("upcoming"), 1);
    char path[128];
    snprintf(path, sizeof(path), "/seasons/%s", upcoming_id);
    assert_int_equal(call("GET", path, player_token, NULL, NULL, 200), 200);

    /* The same id again. */
    assert_int_equal(call("POST", "/seasons", admin_token, NULL, def, 409), 409);
    assert_problem(409, "already exists");
    free(def);

    /* Another id whose window overlaps the active season. */
    char other[BP_ID_MAX + 1];
    snprintf(other, sizeof(other), "%soverlap", prefix);
    def = dump(season_def(other, active_starts_ms + DAY_MS, active_starts_ms + 2 * DAY_MS, 500));
    assert_int_equal(call("POST", "/seasons", admin_token, NULL, def, 409), 409);
    assert_problem(409, active_id);
    free(def);

    /* Valid JSON, invalid season: the detail names the field. */
    def = dump(season_def(other, ends + DAY_MS, ends + 2 * DAY_MS, 0));
    assert_int_equal(call("POST", "/seasons", admin_token, NULL, def, 422), 422);
    assert_problem(422, "levels[1].xpTotal");
    free(def);
    assert_int_equal(call("POST", "/seasons", admin_token, NULL,
                          "{\"id\":\"x1\",\"name\":\"n\",\"startsAt\":\"soon\"}", 422),
                     422);
    assert_problem(422, "startsAt");

    /* Not JSON at all, or not an object. */
    assert_int_equal(call("POST", "/seasons", admin_token, NULL, "{\"id\":", 400), 400);
    assert_int_equal(call("POST", "/seasons", admin_token, NULL, "[1]", 400), 400);
    assert_int_equal(call("POST", "/seasons", admin_token, NULL, NULL, 400), 400);
    assert_int_equal(list_count(NULL), 2);
}

/* GET /seasons/{id} and return member @p key's string (copied to @p out). */
static void season_member(const char *id, const char *key, char *out, size_t len)
{
    char path[128];
    snprintf(path, sizeof(path), "/seasons/%s", id);
    assert_int_equal(call("GET", path, player_token, NULL, NULL, 200), 200);
    json_t *o = answer();
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        snprintf(out, len, "%s", json_string_value(v));
    else
        snprintf(out, len, "%lld", (long long)json_integer_value(v));
    json_decref(o);
}

static void test_patch_season(void **state)
{
    (void)state;
    skip_without_services();
    char up[128], act[128], got[256];
    snprintf(up, sizeof(up), "/seasons/%s", upcoming_id);
    snprintf(act, sizeof(act), "/seasons/%s", active_id);

    /* Rename: answered with the new season and visible at once. */
    assert_int_equal(
        call("PATCH", up, admin_token, NULL, "{\"name\":\"Season Two: Renamed\"}", 200), 200);
    json_t *o = answer();
    assert_string_equal(json_string_value(json_object_get(o, "name")), "Season Two: Renamed");
    json_decref(o);
    season_member(upcoming_id, "name", got, sizeof(got));
    assert_string_equal(got, "Season Two: Renamed");

    /* Levels of an upcoming season may change. */
    const char *levels = "{\"maxLevel\":3,\"levels\":[{\"level\":1,\"xpTotal\":0},"
                         "{\"level\":2,\"xpTotal\":300},{\"level\":3,\"xpTotal\":900}]}";
    assert_int_equal(call("PATCH", up, admin_token, NULL, levels, 200), 200);
    season_member(upcoming_id, "maxLevel", got, sizeof(got));
    assert_string_equal(got, "3");
    season_member(upcoming_id, "name", got, sizeof(got)); /* untouched by the merge */
    assert_string_equal(got, "Season Two: Renamed");

    /* ... but not those of the active one, whatever else the patch says. */
    assert_int_equal(call("PATCH", act, admin_token, NULL, levels, 409), 409);
    assert_problem(409, "only name and endsAt");
    season_member(active_id, "maxLevel", got, sizeof(got));
    assert_int_not_equal(atoi(got), 3);

    /* The active season: rename, extend (short of the next season), not into it. */
    assert_int_equal(call("PATCH", act, admin_token, NULL, "{\"name\":\"Ember, renamed\"}", 200),
                     200);
    char ends[40], patch[128];
    bp_time_format(active_ends_ms + DAY_MS / 2, ends, sizeof(ends));
    snprintf(patch, sizeof(patch), "{\"endsAt\":\"%s\"}", ends);
    assert_int_equal(call("PATCH", act, admin_token, NULL, patch, 200), 200);
    season_member(active_id, "endsAt", got, sizeof(got));
    int64_t got_ms = 0;
    assert_int_equal(bp_time_parse(got, &got_ms), BP_OK);
    assert_true(got_ms == active_ends_ms + DAY_MS / 2);
    season_member(active_id, "name", got, sizeof(got));
    assert_string_equal(got, "Ember, renamed");
    season_member(active_id, "status", got, sizeof(got));
    assert_string_equal(got, "active");

    bp_time_format(active_ends_ms + 3 * DAY_MS, ends, sizeof(ends));
    snprintf(patch, sizeof(patch), "{\"endsAt\":\"%s\"}", ends);
    assert_int_equal(call("PATCH", act, admin_token, NULL, patch, 409), 409);
    assert_problem(409, upcoming_id);

    /* endsAt before startsAt, a changed id, a status of its own: 422. */
    bp_time_format(active_starts_ms - DAY_MS, ends, sizeof(ends));
    snprintf(patch, sizeof(patch), "{\"endsAt\":\"%s\"}", ends);
    assert_int_equal(call("PATCH", act, admin_token, NULL, patch, 422), 422);
    assert_problem(422, "endsAt");
    assert_int_equal(call("PATCH", up, admin_token, NULL, "{\"id\":\"other-id\"}", 422), 422);
    assert_int_equal(call("PATCH", act, admin_token, NULL, "{\"status\":\"ended\"}", 422), 422);

    /* Unknown season, bad JSON, wrong scopes. */
    assert_int_equal(call("PATCH", "/seasons/no-such", admin_token, NULL, "{\"name\":\"x\"}", 404),
                     404);
    assert_int_equal(call("PATCH", up, admin_token, NULL, "{\"name\":", 400), 400);
    assert_int_equal(call("PATCH", up, player_token, NULL, "{\"name\":\"x\"}", 403), 403);
    assert_int_equal(call("PATCH", up, service_token, NULL, "{\"name\":\"x\"}", 403), 403);
    season_member(upcoming_id, "name", got, sizeof(got));
    assert_string_equal(got, "Season Two: Renamed");
}

/* Wait until GET /progress/{player} shows @p want total XP. @return the last total seen. */
static long long wait_total(const char *player, long long want, int timeout_ms)
{
    char path[128];
    long long total = -1;
    snprintf(path, sizeof(path), "/progress/%s", player);
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        if (it_http(HTTP_PORT, "GET", path, service_token, NULL, NULL, body, sizeof(body), NULL,
                    0) == 200) {
            json_t *o = json_loads(body, 0, NULL);
            total = o ? (long long)json_integer_value(json_object_get(o, "totalXp")) : -1;
            json_decref(o);
            if (total == want)
                break;
        }
        usleep(100000);
    }
    return total;
}

static void grant_path(char *path, size_t len, const char *player)
{
    snprintf(path, len, "/progress/%s/xp", player);
}

static void test_xp_grant(void **state)
{
    (void)state;
    skip_without_services();
    char p1[64], p2[64], path[128], key[128], event_id[64];
    snprintf(p1, sizeof(p1), "%sp1", prefix);
    snprintf(p2, sizeof(p2), "%sp2", prefix);

    /* A grant without Idempotency-Key gets a generated eventId. */
    grant_path(path, sizeof(path), p1);
    assert_int_equal(call("POST", path, service_token, NULL,
                          "{\"amount\":150,\"reason\":\"match_complete\","
                          "\"metadata\":{\"matchId\":\"m-1\"}}",
                          202),
                     202);
    json_t *o = answer();
    const char *id = json_string_value(json_object_get(o, "eventId"));
    assert_non_null(id);
    assert_int_equal(strlen(id), 32);
    assert_string_equal(json_string_value(json_object_get(o, "playerId")), p1);
    assert_int_equal(json_integer_value(json_object_get(o, "amount")), 150);
    assert_string_equal(json_string_value(json_object_get(o, "reason")), "match_complete");
    json_decref(o);
    assert_int_equal(wait_total(p1, 150, 30000), 150);

    /* The same Idempotency-Key twice: one eventId, counted once. A third grant behind them
     * on the same partition (key = playerId) shows when both have been processed. */
    grant_path(path, sizeof(path), p2);
    snprintf(event_id, sizeof(event_id), "%sgrant-1", prefix);
    snprintf(key, sizeof(key), "Idempotency-Key: %s", event_id);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(call("POST", path, service_token, key,
                              "{\"amount\":100,\"reason\":\"mission_complete\"}", 202),
                         202);
        o = answer();
        assert_string_equal(json_string_value(json_object_get(o, "eventId")), event_id);
        json_decref(o);
    }
    assert_int_equal(call("POST", path, admin_token, NULL,
                          "{\"amount\":7,\"reason\":\"achievement\","
                          "\"occurredAt\":null,\"seasonId\":null}",
                          202),
                     202);
    assert_int_equal(wait_total(p2, 107, 30000), 107);
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM processed_events WHERE player_id = '%s'", p2);
    assert_int_equal(it_sql_int(&env, sql), 2);

    /* Bad bodies and headers: 400, nothing produced, nothing counted against the limit. */
    static const struct {
        const char *body;
        const char *header;
        const char *needle;
    } bad[] = {
        {"{\"amount\":0,\"reason\":\"r\"}", NULL, "amount"},
        {"{\"amount\":\"x\",\"reason\":\"r\"}", NULL, "amount"},
        {"{\"amount\":1000001,\"reason\":\"r\"}", NULL, "amount"},
        {"{\"amount\":1.5,\"reason\":\"r\"}", NULL, "amount"},
        {"{\"amount\":5}", NULL, "reason"},
        {"{\"amount\":5,\"reason\":\"\"}", NULL, "reason"},
        {"{\"amount\":5,\"reason\":\"tab\\there\"}", NULL, "reason"},
        {"{\"amount\":5,\"reason\":\"r\",\"metadata\":{\"a\":1}}", NULL, "metadata"},
        {"{\"amount\":5,\"reason\":\"r\",\"metadata\":[\"a\"]}", NULL, "metadata"},
        {"{\"amount\":5,\"reason\":\"r\",\"occurredAt\":\"yesterday\"}", NULL, "occurredAt"},
        {"{\"amount\":5,\"reason\":\"r\",\"seasonId\":\"bad id\"}", NULL, "seasonId"},
        {"{\"amount\":5,\"reason\":\"r\",\"bonus\":true}", NULL, "bonus"},
        {"{\"amount\":5,\"reason\":\"r\"}", "Idempotency-Key: has space", "Idempotency-Key"},
        {"not json", NULL, NULL},
    };
    grant_path(path, sizeof(path), p1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(call("POST", path, service_token, bad[i].header, bad[i].body, 400), 400);
        assert_problem(400, bad[i].needle);
    }
    /* An explicit season the event cannot count for. */
    assert_int_equal(call("POST", path, service_token, NULL,
                          "{\"amount\":5,\"reason\":\"r\",\"seasonId\":\"no-such-season\"}", 422),
                     422);

    /* Scopes: players cannot grant themselves XP; a token is required. */
    char self_path[128];
    grant_path(self_path, sizeof(self_path), "someone");
    assert_int_equal(
        call("POST", self_path, player_token, NULL, "{\"amount\":5,\"reason\":\"r\"}", 403), 403);
    assert_int_equal(call("POST", path, NULL, NULL, "{\"amount\":5,\"reason\":\"r\"}", 401), 401);
    assert_int_equal(wait_total(p1, 150, 0), 150);
}

static void test_rate_limit(void **state)
{
    (void)state;
    skip_without_services();
    char p3[64], p4[64], path[128];
    snprintf(p3, sizeof(p3), "%sp3", prefix);
    snprintf(p4, sizeof(p4), "%sp4", prefix);
    grant_path(path, sizeof(path), p3);
    for (int i = 0; i < GRANTS_PER_MINUTE; i++)
        assert_int_equal(call("POST", path, service_token, NULL,
                              "{\"amount\":10,\"reason\":\"match_complete\"}", 202),
                         202);
    assert_int_equal(call("POST", path, service_token, NULL,
                          "{\"amount\":10,\"reason\":\"match_complete\"}", 429),
                     429);
    assert_problem(429, "per minute");
    for (char *c = headers; *c; c++) /* header names are case-insensitive */
        *c = (char)tolower((unsigned char)*c);
    const char *ra = strstr(headers, "\r\nretry-after: ");
    assert_non_null(ra);
    int secs = atoi(ra + strlen("\r\nretry-after: "));
    assert_true(secs >= 1 && secs <= 60);

    /* Per player: another one is not limited. */
    grant_path(path, sizeof(path), p4);
    assert_int_equal(call("POST", path, service_token, NULL,
                          "{\"amount\":10,\"reason\":\"match_complete\"}", 202),
                     202);
    /* Only the accepted grants count. */
    assert_int_equal(wait_total(p3, 10 * GRANTS_PER_MINUTE, 30000), 10 * GRANTS_PER_MINUTE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_seasons), cmocka_unit_test(test_create_season),
        cmocka_unit_test(test_patch_season), cmocka_unit_test(test_xp_grant),
        cmocka_unit_test(test_rate_limit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
