/** @file The worker's metrics on real services: consumer lag per input topic (up while a
 *  backlog is applied, 0 once it is), batch and commit histograms, the outbox backlog gauge
 *  (rows held while every broker is down, 0 once they are relayed), the claims counter
 *  (claims through HTTP with each verdict, counted by result), and the whole of GET /metrics
 *  accepted by promtool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/integration/support.h"

#define HTTP_PORT 23197
#define PLAYERS 200
#define EVENTS_PER_PLAYER 10
#define AMOUNT 150 /* 10 x 150 = 1500 XP: level 2 (1000) for every player */

static it_env_t env;
static pid_t daemon_pid = -1;
static char group[64], prefix[32];
static char body[1 << 20];

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "ingest_metrics", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    if (!it_season_write(&env, "ingest-metrics-season.json", "im", -2000, 30LL * 24 * 3600 * 1000,
                         "{\"autoClaim\":false,\"xpBoosts\":[],\"dailyXpCap\":null,"
                         "\"grantUnclaimedAtEnd\":false}") ||
        !it_db_prepare(&env, NULL) || !it_season_import(&env, "ingest-metrics-season.json", false))
        return -1;
    snprintf(group, sizeof(group), "it-ingest-metrics-%d", (int)getpid());
    snprintf(prefix, sizeof(prefix), "im%d-", (int)getpid());
    return 0;
}

static void brokers(const char *state)
{
    char cmd[64];
    for (int id = 1; id <= 3; id++) {
        snprintf(cmd, sizeof(cmd), "broker broker %s %d", state, id);
        (void)it_fault(cmd);
    }
}

static int group_teardown(void **state)
{
    (void)state;
    if (!env.bootstrap)
        return 0;
    brokers("up");
    int rc = it_daemon_down(&daemon_pid) ? 0 : -1;
    return rc;
}

#define NEED_SERVICES()                                                                            \
    do {                                                                                           \
        if (!env.bootstrap)                                                                        \
            skip();                                                                                \
    } while (0)

/* Fetch GET /metrics into body. */
static bool scrape(void)
{
    return it_http_get(HTTP_PORT, "/metrics", NULL, body, sizeof(body)) == 200;
}

/* The value of the sample line starting with @p series (name and labels, no trailing
 * space) in the last scrape; -1 when absent. */
static long long sample(const char *series)
{
    char want[256];
    snprintf(want, sizeof(want), "\n%s ", series);
    const char *at = strstr(body, want);
    return at ? atoll(at + strlen(want)) : -1;
}

static long long scrape_sample(const char *series)
{
    return scrape() ? sample(series) : -1;
}

static void produce_backlog(void)
{
    it_producer_t *p = it_producer_new(&env);
    assert_non_null(p);
    for (int k = 0; k < EVENTS_PER_PLAYER; k++)
        for (int pl = 0; pl < PLAYERS; pl++) {
            bp_xp_event_t ev;
            memset(&ev, 0, sizeof(ev));
            snprintf(ev.event_id, sizeof(ev.event_id), "%se%d-%d", prefix, pl, k);
            snprintf(ev.player_id, sizeof(ev.player_id), "%sp%d", prefix, pl);
            snprintf(ev.reason, sizeof(ev.reason), "match_complete");
            ev.amount = AMOUNT;
            ev.occurred_at_ms = it_now_ms();
            it_produce_xp(p, &ev);
        }
    it_producer_destroy(p);
}

#define LAG_XP "bp_consumer_lag{topic=\"battlepass.xp-events\"}"
#define LAG_PREMIUM "bp_consumer_lag{topic=\"battlepass.premium-events\"}"

/* Wait until the lag of the XP topic is 0 (every message applied). @return ms, or -1. */
static long long wait_lag_zero(int timeout_ms)
{
    int64_t t0 = it_now_ms();
    while (it_now_ms() - t0 < timeout_ms) {
        if (scrape_sample(LAG_XP) == 0)
            return it_now_ms() - t0;
        it_sleep_ms(100);
    }
    return -1;
}

/* A backlog applied one event per transaction: the lag is seen above 0, then back at 0 once
 * every event is applied; the batch and commit histograms count every batch. */
static void test_lag(void **state)
{
    (void)state;
    NEED_SERVICES();
    /* First drain what earlier tests left in the topic (a new group starts at the beginning),
     * so that the backlog below is ours alone. */
    daemon_pid = it_daemon_up(&env, group, NULL, "ingest-metrics-daemon.log");
    assert_true(daemon_pid > 0);
    assert_true(wait_lag_zero(120000) >= 0);
    assert_int_equal(sample(LAG_PREMIUM), 0);
    assert_true(it_daemon_down(&daemon_pid));

    produce_backlog();
    const char *slow[] = {"BP_BATCH_MAX_EVENTS=1", NULL};
    daemon_pid = it_daemon_up(&env, group, slow, "ingest-metrics-daemon.log");
    assert_true(daemon_pid > 0);
    long long max_lag = 0, applied = 0;
    int64_t t0 = it_now_ms();
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM processed_events WHERE event_id LIKE '%s%%'",
             prefix);
    while (it_now_ms() - t0 < 120000) {
        long long lag = scrape_sample(LAG_XP);
        if (lag > max_lag)
            max_lag = lag;
        applied = it_sql_int(&env, sql);
        if (applied == PLAYERS * EVENTS_PER_PLAYER && lag == 0)
            break;
        it_sleep_ms(50);
    }
    printf("lag: highest seen %lld, %lld events applied\n", max_lag, applied);
    assert_int_equal(applied, PLAYERS * EVENTS_PER_PLAYER);
    assert_true(max_lag > 0);
    assert_true(max_lag <= PLAYERS * EVENTS_PER_PLAYER);
    assert_true(wait_lag_zero(10000) >= 0);

    long long batches = sample("bp_batches_total");
    assert_true(batches >= PLAYERS * EVENTS_PER_PLAYER);
    assert_int_equal(sample("bp_batch_commit_seconds_count"), batches);
    assert_int_equal(sample("bp_batch_apply_seconds_count"), batches);
    assert_int_equal(sample("bp_batch_commit_seconds_bucket{le=\"+Inf\"}"), batches);
    assert_int_equal(sample("bp_batch_messages_bucket{le=\"1\"}"), batches);
    /* Every player reached level 2: the LevelUps went through the outbox. */
    assert_true(sample("bp_level_ups_total") >= PLAYERS);
}

/* Rows wait in the outbox while every broker is down: the gauge counts them; once the
 * brokers are back they are produced and the gauge falls to 0. */
static void test_outbox_backlog(void **state)
{
    (void)state;
    NEED_SERVICES();
    assert_true(daemon_pid > 0);
    int64_t t0 = it_now_ms();
    while (scrape_sample("bp_outbox_backlog") != 0 && it_now_ms() - t0 < 30000)
        it_sleep_ms(100);
    assert_int_equal(sample("bp_outbox_backlog"), 0);

    brokers("down");
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "WITH r AS (INSERT INTO outbox (topic, key, payload)"
             " SELECT 'battlepass.level-ups', '%sq' || g, json_build_object("
             "   'eventId', 'levelup:im:%sq' || g || ':2', 'playerId', '%sq' || g,"
             "   'seasonId', 'im', 'previousLevel', 1, 'newLevel', 2, 'totalXp', 1000,"
             "   'causeEventId', '%sq' || g, 'occurredAt', 1)::jsonb"
             " FROM generate_series(1, 7) g RETURNING 1) SELECT count(*) FROM r",
             prefix, prefix, prefix, prefix);
    assert_int_equal(it_sql_int(&env, sql), 7);
    long long seen = -1;
    t0 = it_now_ms();
    while (it_now_ms() - t0 < 15000 && (seen = scrape_sample("bp_outbox_backlog")) != 7)
        it_sleep_ms(100);
    printf("outbox backlog with the brokers down: %lld\n", seen);
    assert_int_equal(seen, 7);

    brokers("up");
    t0 = it_now_ms();
    while (it_now_ms() - t0 < 90000 && (seen = scrape_sample("bp_outbox_backlog")) != 0)
        it_sleep_ms(200);
    printf("outbox backlog %lld after %lld ms with the brokers back\n", seen,
           (long long)(it_now_ms() - t0));
    assert_int_equal(seen, 0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM outbox WHERE key LIKE '%sq%%'", prefix);
    assert_int_equal(it_sql_int(&env, sql), 0);
}

/* POST @p path with @p json as the claims service. @return the HTTP status. */
static int claim_call(const char *path, const char *json)
{
    static char out[1 << 14];
    char *token = it_jwt(env.secret, "economy-service", "service", 600);
    int status = it_http(HTTP_PORT, "POST", path, token, NULL, json, out, sizeof(out), NULL, 0);
    free(token);
    return status;
}

static int claim_one(const char *player, int level, const char *tier)
{
    char path[128], json[96];
    snprintf(path, sizeof(path), "/rewards/%s/claim", player);
    snprintf(json, sizeof(json), "{\"level\":%d,\"tier\":\"%s\"}", level, tier);
    return claim_call(path, json);
}

static int claim_all(const char *player)
{
    char path[128];
    snprintf(path, sizeof(path), "/rewards/%s/claim-all", player);
    return claim_call(path, NULL);
}

/* The claims counter by result, in the order of the test below. */
static const char *const CLAIM_SERIES[] = {
    "bp_claims_total{result=\"granted\"}",          "bp_claims_total{result=\"already_claimed\"}",
    "bp_claims_total{result=\"premium_required\"}", "bp_claims_total{result=\"level_not_reached\"}",
    "bp_claims_total{result=\"no_such_reward\"}",   "bp_claims_total{result=\"claims_closed\"}",
};
#define N_CLAIM_SERIES (sizeof(CLAIM_SERIES) / sizeof(CLAIM_SERIES[0]))

static void claim_counts(long long *out)
{
    assert_true(scrape());
    for (size_t i = 0; i < N_CLAIM_SERIES; i++)
        assert_true((out[i] = sample(CLAIM_SERIES[i])) >= 0);
}

/* Claims through HTTP with every verdict, each counted once by its result: claim-all once
 * per reward it grants (and not at all when nothing is available), a refusal once. Last
 * but one, since it ends the season (with no claim window, so that claims are closed). */
static void test_claims(void **state)
{
    (void)state;
    NEED_SERVICES();
    assert_true(daemon_pid > 0);
    char player[64], sql[512];
    snprintf(player, sizeof(player), "%sclaimer", prefix);
    /* Level 3 (2050 XP), no premium: the sample season's rewards are free and premium at
     * levels 1, 2 and 4, free only at 3. */
    snprintf(sql, sizeof(sql),
             "INSERT INTO player_progress (player_id, season_id, total_xp, earned_xp, level)"
             " VALUES ('%s', 'im', 2100, 2100, 3) RETURNING 1",
             player);
    assert_int_equal(it_sql_int(&env, sql), 1);

    long long before[N_CLAIM_SERIES], after[N_CLAIM_SERIES];
    claim_counts(before);
    assert_int_equal(claim_one(player, 1, "free"), 200);
    assert_int_equal(claim_one(player, 1, "free"), 409);    /* already claimed */
    assert_int_equal(claim_one(player, 2, "premium"), 403); /* premium required */
    assert_int_equal(claim_one(player, 4, "free"), 422);    /* level not reached */
    assert_int_equal(claim_one(player, 3, "premium"), 404); /* no such reward */
    assert_int_equal(claim_all(player), 200);               /* levels 2 and 3, free */
    assert_int_equal(claim_all(player), 200);               /* nothing left: not counted */
    claim_counts(after);

    /* End the season now with no claim window, and wait until the daemon sees it. */
    snprintf(sql, sizeof(sql),
             "WITH u AS (UPDATE seasons SET ends_at = now(), definition = jsonb_set(jsonb_set("
             "definition, '{endsAt}', to_jsonb(to_char(now() AT TIME ZONE 'UTC',"
             " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))), '{claimWindowHours}', to_jsonb(0))"
             " WHERE id = 'im' RETURNING 1) SELECT count(*) FROM u");
    assert_int_equal(it_sql_int(&env, sql), 1);
    char *token = it_jwt(env.secret, "economy-service", "service", 600);
    bool ended = false;
    for (int waited = 0; waited < 15000 && !ended; waited += 200) {
        ended = it_http_get(HTTP_PORT, "/seasons/im", token, body, sizeof(body)) == 200 &&
                strstr(body, "\"status\":\"ended\"") && strstr(body, "\"claimWindowHours\":0");
        if (!ended)
            it_sleep_ms(200);
    }
    free(token);
    assert_true(ended);
    assert_int_equal(claim_one(player, 4, "premium"), 409); /* claims closed */
    assert_int_equal(claim_all(player), 409);
    long long closed[N_CLAIM_SERIES];
    claim_counts(closed);

    /* Granted: 1, then 2 by claim-all; one of each refusal; none closed yet. */
    static const long long want[N_CLAIM_SERIES] = {3, 1, 1, 1, 1, 0};
    for (size_t i = 0; i < N_CLAIM_SERIES; i++) {
        printf("%s: +%lld\n", CLAIM_SERIES[i], after[i] - before[i]);
        assert_int_equal(after[i] - before[i], want[i]);
    }
    /* Once the season is over: two refusals, claims closed (the claim and the claim-all). */
    for (size_t i = 0; i < N_CLAIM_SERIES; i++)
        assert_int_equal(closed[i] - after[i], i == 5 ? 2 : 0);
}

/* Every series the worker adds is there, and promtool accepts the whole page. */
static void test_exposition(void **state)
{
    (void)state;
    NEED_SERVICES();
    assert_true(daemon_pid > 0);
    assert_true(scrape());
    static const char *const series[] = {
        "bp_claims_total{result=\"granted\"}",
        "bp_claims_total{result=\"already_claimed\"}",
        "bp_claims_total{result=\"premium_required\"}",
        "bp_claims_total{result=\"level_not_reached\"}",
        "bp_claims_total{result=\"claims_closed\"}",
        "bp_claims_total{result=\"no_such_reward\"}",
        "bp_outbox_backlog",
        LAG_XP,
        LAG_PREMIUM,
        "bp_batch_commit_seconds_sum",
        "bp_outbox_relayed_total",
        "bp_messages_skipped_total{topic=\"battlepass.xp-events\"}",
        "bp_messages_skipped_total{topic=\"battlepass.premium-events\"}",
    };
    for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++)
        if (sample(series[i]) < 0)
            fail_msg("no %s in /metrics", series[i]);
    assert_non_null(strstr(body, "# TYPE bp_consumer_lag gauge\n"));
    assert_non_null(strstr(body, "# TYPE bp_outbox_backlog gauge\n"));
    assert_non_null(strstr(body, "# TYPE bp_batch_commit_seconds histogram\n"));
    assert_non_null(strstr(body, "# TYPE bp_claims_total counter\n"));
    assert_non_null(strstr(body, "# TYPE bp_messages_skipped_total counter\n"));
    FILE *f = fopen("ingest-metrics.txt", "w");
    assert_non_null(f);
    fputs(body, f);
    fclose(f);
    assert_int_equal(system("promtool check metrics < ingest-metrics.txt"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lag),
        cmocka_unit_test(test_outbox_backlog),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_exposition),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
