/** @file End to end through the real PostgreSQL, Redis and devbroker: XP events with
 *  duplicates, malformed and out-of-season messages → totals in PostgreSQL, Redis and over
 *  HTTP; DLQ entries; LevelUp events; and the JWT rules of the progress API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/level.h"
#include "producers/codec.h"
#include "tests/integration/support.h"

#define PLAYERS 200
#define EVENTS 3000
#define OUTSIDE 20 /* events outside every season: recorded, no progress */
#define HTTP_PORT 23181

static it_env_t env;
static bp_season_t season;
static char season_id[BP_ID_MAX + 1];
static pid_t daemon_pid = -1;
static char prefix[32];
static int64_t totals[PLAYERS];
static double ingest_seconds;

static void player_name(char *buf, size_t len, int p)
{
    snprintf(buf, len, "%spl-%03d", prefix, p);
}

static void make_event(bp_xp_event_t *ev, int i)
{
    memset(ev, 0, sizeof(*ev));
    snprintf(ev->event_id, sizeof(ev->event_id), "%sev-%05d", prefix, i);
    player_name(ev->player_id, sizeof(ev->player_id), i % PLAYERS);
    snprintf(ev->reason, sizeof(ev->reason), "%s", i % 3 ? "match_complete" : "mission_complete");
    ev->amount = 1 + (int32_t)((i * 7919) % 1500);
    ev->occurred_at_ms = it_now_ms();
}

/* Messages the worker must route to the DLQ: key "<prefix>bad-<n>". */
static int produce_malformed(it_producer_t *p, bp_codec_t *codec)
{
    char key[64];
    int n = 0;
    int32_t id = bp_codec_subject_id(codec, "battlepass.xp-events-value");
    static const unsigned char garbage[] = "this is not avro";
    static const unsigned char bad_magic[] = {0x01, 0, 0, 0, 1, 2, 'a'};
    static const unsigned char unknown_id[] = {0x00, 0, 0, 0x7f, 0x7f, 2, 'a'};
    static const unsigned char truncated[] = {0x00, 0, 0, 0, 1, 0x10, 'a', 'b'};
    const struct {
        const void *buf;
        size_t len;
    } raw[] = {{garbage, sizeof(garbage) - 1},
               {bad_magic, sizeof(bad_magic)},
               {unknown_id, sizeof(unknown_id)},
               {truncated, sizeof(truncated)},
               {"", 0}};
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
        snprintf(key, sizeof(key), "%sbad-%d", prefix, n++);
        it_produce_raw(p, "battlepass.xp-events", key, raw[i].buf, raw[i].len);
    }
    /* Well-formed Avro, invalid content. */
    for (int k = 0; k < 6; k++) {
        bp_xp_event_t ev;
        make_event(&ev, 90000 + k);
        switch (k) {
        case 0:
            ev.amount = 0;
            break;
        case 1:
            ev.amount = -5;
            break;
        case 2:
            ev.player_id[0] = '\0';
            break;
        case 3:
            snprintf(ev.player_id, sizeof(ev.player_id), "has space");
            break;
        case 4:
            ev.reason[0] = '\0';
            break;
        default:
            snprintf(ev.season_id, sizeof(ev.season_id), "no-such-season");
            break;
        }
        void *buf;
        size_t len;
        assert_int_equal(bp_codec_encode_xp(codec, id, &ev, NULL, NULL, 0, &buf, &len), BP_OK);
        snprintf(key, sizeof(key), "%sbad-%d", prefix, n++);
        it_produce_raw(p, "battlepass.xp-events", key, buf, len);
        free(buf);
    }
    return n;
}

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "pipeline", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/schemas/seasons/sample-season.json", env.source_dir);
    if (!it_season_load(path, &season) || !it_db_prepare(&env, path))
        return -1;
    snprintf(season_id, sizeof(season_id), "%s", season.id);
    snprintf(prefix, sizeof(prefix), "it%d-", (int)getpid());
    char group[64];
    snprintf(group, sizeof(group), "it-pipeline-%d", (int)getpid());
    daemon_pid = it_daemon_up(&env, group, NULL, "pipeline-daemon.log");
    if (daemon_pid < 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (!it_daemon_down(&daemon_pid))
        rc = -1;
    bp_season_fini(&season);
    return rc;
}

static void skip_without_services(void)
{
    if (!env.bootstrap)
        skip();
}

static void test_ingest(void **state)
{
    (void)state;
    skip_without_services();
    char dir[1024], why[256];
    snprintf(dir, sizeof(dir), "%s/schemas/avro", env.source_dir);
    bp_codec_t *codec;
    assert_int_equal(bp_codec_new(dir, &codec, why, sizeof(why)), BP_OK);
    it_producer_t *p = it_producer_new(&env);
    int64_t t0 = it_now_ms();

    size_t sent = 0, dups = 0;
    for (int i = 0; i < EVENTS; i++) {
        bp_xp_event_t ev;
        make_event(&ev, i);
        it_produce_xp(p, &ev);
        sent++;
        totals[i % PLAYERS] += ev.amount;
        if (i % 37 == 0) { /* same eventId right away: likely in the same batch */
            it_produce_xp(p, &ev);
            dups++;
        }
    }
    for (int i = 0; i < EVENTS; i += 10) { /* and again later: another batch */
        bp_xp_event_t ev;
        make_event(&ev, i);
        ev.amount = 9999; /* a redelivered eventId must not count, whatever it carries */
        it_produce_xp(p, &ev);
        dups++;
    }
    for (int i = 0; i < OUTSIDE; i++) {
        bp_xp_event_t ev;
        make_event(&ev, 50000 + i);
        snprintf(ev.player_id, sizeof(ev.player_id), "%sold-%d", prefix, i);
        ev.occurred_at_ms = it_now_ms() - 400LL * 86400 * 1000;
        it_produce_xp(p, &ev);
    }
    int malformed = produce_malformed(p, codec);
    it_producer_destroy(p);

    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM processed_events WHERE event_id LIKE '%s%%'",
             prefix);
    long long done = 0;
    for (int waited = 0; waited < 120000; waited += 100) {
        done = it_sql_int(&env, sql);
        if (done == EVENTS + OUTSIDE)
            break;
        usleep(100000);
    }
    ingest_seconds = (double)(it_now_ms() - t0) / 1000.0;
    assert_int_equal(done, EVENTS + OUTSIDE);
    printf("ingest: %zu events + %zu duplicates + %d outside seasons + %d malformed applied in "
           "%.2f s (%.0f events/s end to end, including producing)\n",
           sent, dups, OUTSIDE, malformed, ingest_seconds,
           (double)(sent + dups + OUTSIDE + (size_t)malformed) / ingest_seconds);

    /* Apply rate once consuming began (the group join of ~3 s excluded); the database is
     * this test's own, so it counts every message the worker took from the topic. */
    long long rate =
        it_sql_int(&env, "SELECT (count(*) / GREATEST(extract(epoch FROM max(processed_at) - "
                         "min(processed_at)), 0.001))::bigint FROM processed_events");
    printf("apply rate from first to last batch: %lld events/s (%lld events in the database)\n",
           rate, it_sql_int(&env, "SELECT count(*) FROM processed_events"));

    /* PostgreSQL: every player's total is the sum of its unique events. */
    for (int pl = 0; pl < PLAYERS; pl++) {
        char name[64];
        player_name(name, sizeof(name), pl);
        snprintf(sql, sizeof(sql),
                 "SELECT total_xp FROM player_progress WHERE player_id = '%s' AND season_id = '%s'",
                 name, season_id);
        assert_int_equal(it_sql_int(&env, sql), totals[pl]);
        snprintf(sql, sizeof(sql),
                 "SELECT level FROM player_progress WHERE player_id = '%s' AND season_id = '%s'",
                 name, season_id);
        assert_int_equal(it_sql_int(&env, sql), bp_level_for_xp(&season, totals[pl]).level);
    }
    snprintf(
        sql, sizeof(sql),
        "SELECT count(*) FROM processed_events WHERE event_id LIKE '%s%%' AND season_id IS NULL",
        prefix);
    assert_int_equal(it_sql_int(&env, sql), OUTSIDE);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM player_progress WHERE player_id LIKE '%sold-%%'", prefix);
    assert_int_equal(it_sql_int(&env, sql), 0);

    /* The DLQ holds every malformed message, with its reason. */
    it_msg_t *msgs;
    size_t n = it_consume_all(&env, "battlepass.dlq", &msgs);
    bool seen[64] = {false};
    size_t bad_seen = 0;
    for (size_t i = 0; i < n; i++) {
        int k;
        char pfx[40];
        snprintf(pfx, sizeof(pfx), "%sbad-", prefix);
        if (strncmp(msgs[i].key, pfx, strlen(pfx)) == 0) {
            k = atoi(msgs[i].key + strlen(pfx));
            assert_non_null(msgs[i].error_header);
            assert_true(strlen(msgs[i].error_header) > 0);
            assert_non_null(msgs[i].source_offset);
            if (k >= 0 && k < 64 && !seen[k]) {
                seen[k] = true;
                bad_seen++;
            }
        } else {
            /* no valid event of this run may be dead-lettered */
            assert_true(strncmp(msgs[i].key, prefix, strlen(prefix)) != 0);
        }
    }
    it_msgs_free(msgs, n);
    assert_int_equal(bad_seen, (size_t)malformed);
    bp_codec_destroy(codec);
}

static void test_level_up_events(void **state)
{
    (void)state;
    skip_without_services();
    /* Expected: one LevelUp per level gained, 2..final, with a deterministic id. */
    char *names[PLAYERS];
    for (int pl = 0; pl < PLAYERS; pl++) {
        names[pl] = malloc(64);
        player_name(names[pl], 64, pl);
    }
    size_t n_want, unexpected;
    char **want = it_levelups_expected(&season, season_id, names, totals, PLAYERS, &n_want);
    size_t seen = it_levelups_wait(&env, prefix, want, n_want, 60000, &unexpected);
    printf("level-ups: %zu expected, %zu distinct seen, %zu unexpected\n", n_want, seen,
           unexpected);
    assert_true(n_want > PLAYERS); /* the scenario does climb levels */
    assert_int_equal(unexpected, 0);
    assert_int_equal(seen, n_want);
    it_strv_free(want, n_want);
    for (int pl = 0; pl < PLAYERS; pl++)
        free(names[pl]);
}

static void test_redis_and_http(void **state)
{
    (void)state;
    skip_without_services();
    char host[64] = "127.0.0.1";
    int port = 0;
    assert_int_equal(sscanf(env.redis_url, "redis://%63[^:]:%d", host, &port), 2);
    redisContext *rc = redisConnect(host, port);
    assert_true(rc && !rc->err);
    char *token = it_jwt(env.secret, "inventory-service", "service", 300);
    for (int pl = 0; pl < PLAYERS; pl++) {
        char name[64], path[128], body[4096];
        player_name(name, sizeof(name), pl);
        redisReply *r = redisCommand(rc, "HGET bp:progress:{%s}:%s totalXp", season_id, name);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_int_equal(atoll(r->str), totals[pl]);
        freeReplyObject(r);

        snprintf(path, sizeof(path), "/progress/%s", name);
        assert_int_equal(it_http_get(HTTP_PORT, path, token, body, sizeof(body)), 200);
        json_t *o = json_loads(body, 0, NULL);
        assert_non_null(o);
        bp_level_info_t li = bp_level_for_xp(&season, totals[pl]);
        assert_string_equal(json_string_value(json_object_get(o, "playerId")), name);
        assert_string_equal(json_string_value(json_object_get(o, "seasonId")), season_id);
        assert_int_equal(json_integer_value(json_object_get(o, "totalXp")), totals[pl]);
        assert_int_equal(json_integer_value(json_object_get(o, "currentLevel")), li.level);
        assert_int_equal(json_integer_value(json_object_get(o, "currentXp")), li.current_xp);
        assert_int_equal(json_integer_value(json_object_get(o, "xpToNextLevel")), li.xp_to_next);
        assert_true(json_is_false(json_object_get(o, "premium")));
        json_decref(o);
    }
    /* Redis flushed: HTTP falls back to PostgreSQL and gives the same answer. */
    freeReplyObject(redisCommand(rc, "FLUSHALL"));
    char name[64], path[128], body[4096];
    player_name(name, sizeof(name), 7);
    snprintf(path, sizeof(path), "/progress/%s", name);
    assert_int_equal(it_http_get(HTTP_PORT, path, token, body, sizeof(body)), 200);
    json_t *o = json_loads(body, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(o, "totalXp")), totals[7]);
    json_decref(o);
    redisFree(rc);
    free(token);
}

typedef struct {
    const char *name;
    const char *path;
    const char *sub; /* NULL: no token at all */
    const char *scope;
    long exp_offset;
    int bad_secret;
    int want;
} auth_case_t;

static void test_jwt_rules(void **state)
{
    (void)state;
    skip_without_services();
    char own[128], other[128], p0[64], p1[64];
    player_name(p0, sizeof(p0), 0);
    player_name(p1, sizeof(p1), 1);
    snprintf(own, sizeof(own), "/progress/%s", p0);
    snprintf(other, sizeof(other), "/progress/%s", p1);
    const auth_case_t cases[] = {
        {"no token", own, NULL, NULL, 0, 0, 401},
        {"bad signature", own, p0, "player", 300, 1, 401},
        {"expired", own, p0, "player", -60, 0, 401},
        {"own data", own, p0, "player", 300, 0, 200},
        {"other player's data", other, p0, "player", 300, 0, 403},
        {"no scope", own, p0, NULL, 300, 0, 403},
        {"service reads any", other, "gameplay", "service", 300, 0, 200},
        {"admin reads any", other, "ops", "admin", 300, 0, 200},
        {"health needs nothing", "/health", NULL, NULL, 0, 0, 200},
        {"season needs a token", "/seasons/current", NULL, NULL, 0, 0, 401},
        {"current season", "/seasons/current", p0, "player", 300, 0, 200},
        {"unknown season", "/seasons/nope", p0, "player", 300, 0, 404},
        {"bad player id", "/progress/bad%20id", "ops", "admin", 300, 0, 400},
        {"unknown route", "/nowhere", p0, "player", 300, 0, 404},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const auth_case_t *c = &cases[i];
        char *token = NULL;
        if (c->sub)
            token = it_jwt(c->bad_secret ? "another-secret-another-secret-xx" : env.secret, c->sub,
                           c->scope, c->exp_offset);
        static char body[1 << 16];
        int status = it_http_get(HTTP_PORT, c->path, token, body, sizeof(body));
        if (status != c->want)
            fprintf(stderr, "case '%s': got %d want %d: %s\n", c->name, status, c->want, body);
        assert_int_equal(status, c->want);
        if (status >= 400) { /* problem+json */
            json_t *o = json_loads(body, 0, NULL);
            assert_non_null(o);
            assert_int_equal(json_integer_value(json_object_get(o, "status")), status);
            json_decref(o);
        }
        if (c->want == 200 && strcmp(c->path, "/seasons/current") == 0) {
            json_t *o = json_loads(body, 0, NULL);
            assert_non_null(o);
            assert_non_null(json_string_value(json_object_get(o, "id")));
            assert_string_equal(json_string_value(json_object_get(o, "id")), season_id);
            assert_string_equal(json_string_value(json_object_get(o, "status")), "active");
            assert_int_equal(json_array_size(json_object_get(o, "levels")), season.max_level);
            json_decref(o);
        }
        free(token);
    }
}

/* GET /metrics: Prometheus text that promtool accepts, counting what this test did. */
static void test_metrics(void **state)
{
    (void)state;
    skip_without_services();
    static char body[1 << 20];
    char headers[2048];
    assert_int_equal(it_http(HTTP_PORT, "GET", "/metrics", NULL, NULL, NULL, body, sizeof(body),
                             headers, sizeof(headers)),
                     200);
    assert_non_null(strstr(headers, "text/plain"));
    const struct {
        const char *name;
        long long at_least;
    } want[] = {
        {"\nbp_xp_events_applied_total ", EVENTS},
        {"\nbp_xp_events_duplicate_total ", 1},
        {"\nbp_dlq_messages_total ", 11},
        {"\nbp_level_ups_total ", PLAYERS},
        {"\nbp_batches_total ", 1},
        {"\nbp_http_requests_total{method=\"GET\",route=\"/progress/{playerId}\",status=\"200\"} ",
         PLAYERS},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *at = strstr(body, want[i].name);
        if (!at)
            fail_msg("no %s in /metrics", want[i].name + 1);
        long long v = atoll(at + strlen(want[i].name));
        if (v < want[i].at_least)
            fail_msg("%s%lld, want at least %lld", want[i].name + 1, v, want[i].at_least);
    }
    FILE *f = fopen("metrics.txt", "w");
    assert_non_null(f);
    fputs(body, f);
    fclose(f);
    assert_int_equal(system("promtool check metrics < metrics.txt"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ingest),         cmocka_unit_test(test_level_up_events),
        cmocka_unit_test(test_redis_and_http), cmocka_unit_test(test_jwt_rules),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
