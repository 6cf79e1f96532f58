/** @file The worker's reward duties on real services: autoClaim grants as XP events raise
 *  levels, premium passes from the premium topic (idempotent, conflicts to the DLQ, premium
 *  rewards of levels already reached), RewardGrant events on the topic, the late-event
 *  grace window of ended seasons, and overflow bonus levels past the last level. */
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

#include "core/reward.h"
#include "core/timefmt.h"
#include "producers/codec.h"
#include "tests/integration/support.h"

#define HTTP_PORT 23186
#define HOUR_MS (3600LL * 1000)
#define DAY_MS (24 * HOUR_MS)

static it_env_t env;
static bp_season_t season; /* s-auto: active, autoClaim */
static bp_codec_t *codec;
static pid_t daemon_pid = -1;
static char prefix[32];

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "worker_rewards", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char dir[1024], why[256];
    snprintf(dir, sizeof(dir), "%s/schemas/avro", env.source_dir);
    if (bp_codec_new(dir, &codec, why, sizeof(why)) != BP_OK)
        return -1;
    /* An active autoClaim season, and two ended ones: one still in its grace window, with
     * a daily XP cap and a double-XP window for matches in its last hours. */
    char late_opts[512], b0[40], b1[40];
    bp_time_format(it_now_ms() - 3 * HOUR_MS, b0, sizeof(b0));
    bp_time_format(it_now_ms() - HOUR_MS, b1, sizeof(b1));
    snprintf(late_opts, sizeof(late_opts),
             "{\"lateEventGraceHours\":24,\"dailyXpCap\":1000,\"xpBoosts\":[{\"startsAt\":\"%s\","
             "\"endsAt\":\"%s\",\"multiplier\":2,\"reasons\":[\"match_complete\"]}]}",
             b0, b1);
    if (!it_season_write(&env, "auto-season.json", "s-auto", 0, 0, "{\"autoClaim\":true}") ||
        !it_season_write(&env, "late-ok.json", "s-late-ok", -30 * DAY_MS, 30 * DAY_MS - HOUR_MS,
                         late_opts) ||
        !it_season_write(&env, "late-no.json", "s-late-no", -60 * DAY_MS, 29 * DAY_MS,
                         "{\"lateEventGraceHours\":0}") ||
        !it_season_write(&env, "closed.json", "s-closed", -80 * DAY_MS, 18 * DAY_MS,
                         "{\"claimWindowHours\":1,\"grantUnclaimedAtEnd\":true}"))
        return -1;
    if (!it_season_load("auto-season.json", &season) || !season.auto_claim ||
        !it_db_prepare(&env, "auto-season.json") ||
        !it_season_import(&env, "late-ok.json", false) ||
        !it_season_import(&env, "late-no.json", false) ||
        !it_season_import(&env, "closed.json", false))
        return -1;
    snprintf(prefix, sizeof(prefix), "wr%d-", (int)getpid());
    /* A player of s-closed at level 4 who claimed one reward before the end. */
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "WITH p AS (INSERT INTO player_progress (player_id, season_id, total_xp, earned_xp, "
             "level) VALUES ('%sE', 's-closed', %lld, %lld, 4) RETURNING 1),"
             " c AS (INSERT INTO reward_claims (player_id, season_id, level, tier, reward_id, "
             "item_id, quantity, grant_id, source) SELECT '%sE', 's-closed', 1, 'free', "
             "'reward-001-free', 'currency.coins', 100, 'manual-%s', 'claim' RETURNING 1)"
             " SELECT (SELECT count(*) FROM p) + (SELECT count(*) FROM c)",
             prefix, (long long)season.xp_total[4] + 5, (long long)season.xp_total[4] + 5, prefix,
             prefix);
    if (it_sql_int(&env, sql) != 2)
        return -1;
    char group[64];
    snprintf(group, sizeof(group), "it-worker-rewards-%d", (int)getpid());
    daemon_pid = it_daemon_up(&env, group, NULL, "worker-rewards-daemon.log");
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
    bp_codec_destroy(codec);
    bp_season_fini(&season);
    return rc;
}

static void produce_xp_reason(const char *player, const char *event_id, int32_t amount,
                              int64_t occurred_at, const char *reason)
{
    bp_xp_event_t ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "%s%s", prefix, event_id);
    snprintf(ev.player_id, sizeof(ev.player_id), "%s", player);
    snprintf(ev.reason, sizeof(ev.reason), "%s", reason);
    ev.amount = amount;
    ev.occurred_at_ms = occurred_at;
    it_producer_t *p = it_producer_new(&env);
    it_produce_xp(p, &ev);
    it_producer_destroy(p);
}

static void produce_xp(const char *player, const char *event_id, int32_t amount,
                       int64_t occurred_at)
{
    produce_xp_reason(player, event_id, amount, occurred_at, "match_complete");
}

static void produce_premium(const char *player, const char *txid)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"transactionId\":\"%s%s\",\"playerId\":\"%s\",\"seasonId\":\"s-auto\","
             "\"source\":\"purchase\",\"grantedAt\":%lld}",
             prefix, txid, player, (long long)it_now_ms());
    void *buf;
    size_t len;
    const char *why;
    int32_t id = bp_codec_subject_id(codec, "battlepass.premium-events-value");
    assert_int_equal(bp_codec_encode_json(codec, id, json, &buf, &len, &why), BP_OK);
    it_producer_t *p = it_producer_new(&env);
    it_produce_raw(p, "battlepass.premium-events", player, buf, len);
    it_producer_destroy(p);
    free(buf);
}

/* Poll @p sql until it returns @p want (or 60 s). @return the last value. */
static long long wait_sql(const char *sql, long long want)
{
    long long v = -1;
    for (int waited = 0; waited < 60000; waited += 100) {
        if ((v = it_sql_int(&env, sql)) == want)
            break;
        usleep(100000);
    }
    return v;
}

static long long claims_of(const char *player, const char *source)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM reward_claims WHERE player_id = '%s' AND source = '%s'", player,
             source);
    return it_sql_int(&env, sql);
}

/* Distinct grantIds of RewardGrant events on the topic for @p player (only those of
 * @p reward_id unless NULL; when @p ids is set, the first @p cap ids are copied there). */
static size_t grants_on_topic_of(const char *player, const char *reward_id, long long want,
                                 char (*ids_out)[160], size_t cap)
{
    size_t distinct = 0;
    for (int attempt = 0; attempt < 30; attempt++) {
        it_msg_t *msgs;
        size_t n = it_consume_all(&env, "battlepass.reward-grants", &msgs);
        char **ids = calloc(n + 1, sizeof(*ids));
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(msgs[i].key, player) != 0)
                continue;
            char *json = NULL;
            int32_t sid;
            const char *why;
            assert_int_equal(
                bp_codec_decode_json(codec, msgs[i].value, msgs[i].len, &json, &sid, &why), BP_OK);
            json_t *o = json_loads(json, 0, NULL);
            free(json);
            const char *gid = json_string_value(json_object_get(o, "grantId"));
            const char *rid = json_string_value(json_object_get(o, "rewardId"));
            if (reward_id && (!rid || strcmp(rid, reward_id) != 0)) {
                json_decref(o);
                continue;
            }
            bool seen = false;
            for (size_t j = 0; j < k && !seen; j++)
                seen = strcmp(ids[j], gid) == 0;
            if (!seen)
                ids[k++] = strdup(gid);
            json_decref(o);
        }
        it_msgs_free(msgs, n);
        for (size_t j = 0; ids_out && j < k && j < cap; j++)
            snprintf(ids_out[j], sizeof(ids_out[j]), "%s", ids[j]);
        it_strv_free(ids, k);
        distinct = k;
        if ((long long)distinct >= want)
            break;
        sleep(1);
    }
    return distinct;
}

static size_t grants_on_topic(const char *player, long long want)
{
    return grants_on_topic_of(player, NULL, want, NULL, 0);
}

static void test_auto_claim_and_premium(void **state)
{
    (void)state;
    if (!env.bootstrap)
        skip();
    char player[64], other[64], sql[256];
    snprintf(player, sizeof(player), "%sA", prefix);
    snprintf(other, sizeof(other), "%sB", prefix);

    /* Reach level 5: the free rewards of levels 1..5 are granted on the way. */
    int64_t target = season.xp_total[5] + 10;
    produce_xp(player, "a1", (int32_t)(target / 2), it_now_ms());
    produce_xp(player, "a2", (int32_t)(target - target / 2), it_now_ms());
    snprintf(sql, sizeof(sql), "SELECT total_xp FROM player_progress WHERE player_id = '%s'",
             player);
    assert_int_equal(wait_sql(sql, target), target);
    long long want_free = (long long)bp_rewards_unlocked(&season, 0, 5, false, NULL, 0);
    assert_true(want_free > 0);
    assert_int_equal(claims_of(player, "auto"), want_free);

    /* Premium from the economy service: premium rewards of levels 1..5 at once. */
    produce_premium(player, "tx1");
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM player_progress WHERE player_id = '%s' AND premium", player);
    assert_int_equal(wait_sql(sql, 1), 1);
    long long want_premium = (long long)bp_rewards_premium_upto(&season, 5, NULL, 0);
    assert_true(want_premium > 0);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM reward_claims WHERE player_id = '%s' AND source = 'premium'",
             player);
    assert_int_equal(wait_sql(sql, want_premium), want_premium);

    /* Replayed: nothing changes. Same transaction for someone else: DLQ. */
    produce_premium(player, "tx1");
    produce_premium(other, "tx1");
    it_msg_t *msgs = NULL;
    size_t n = 0;
    bool found = false;
    for (int attempt = 0; attempt < 30 && !found; attempt++) {
        n = it_consume_all(&env, "battlepass.dlq", &msgs);
        for (size_t i = 0; i < n && !found; i++)
            found = strcmp(msgs[i].key, other) == 0 && msgs[i].error_header &&
                    strstr(msgs[i].error_header, "transactionId");
        it_msgs_free(msgs, n);
        if (!found)
            sleep(1);
    }
    assert_true(found);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM premium_grants WHERE transaction_id = '%stx1'",
             prefix);
    assert_int_equal(it_sql_int(&env, sql), 1);
    assert_int_equal(claims_of(player, "premium"), want_premium);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM player_progress WHERE player_id = '%s' AND premium", other);
    assert_int_equal(it_sql_int(&env, sql), 0);

    /* Premium now: levels 6 and 7 bring both tiers. */
    int64_t to7 = season.xp_total[7] + 1 - target;
    produce_xp(player, "a3", (int32_t)to7, it_now_ms());
    snprintf(sql, sizeof(sql), "SELECT total_xp FROM player_progress WHERE player_id = '%s'",
             player);
    assert_int_equal(wait_sql(sql, target + to7), target + to7);
    long long want_more = (long long)bp_rewards_unlocked(&season, 5, 7, true, NULL, 0);
    assert_int_equal(claims_of(player, "auto"), want_free + want_more);

    /* Every grant reached the topic once (by id) for the inventory service. */
    long long total = want_free + want_premium + want_more;
    assert_int_equal(grants_on_topic(player, total), (size_t)total);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit_log WHERE player_id = '%s'", player);
    assert_true(it_sql_int(&env, sql) >= total);
}

static void test_late_events(void **state)
{
    (void)state;
    if (!env.bootstrap)
        skip();
    char late_ok[64], late_no[64], sql[320];
    snprintf(late_ok, sizeof(late_ok), "%sC", prefix);
    snprintf(late_no, sizeof(late_no), "%sD", prefix);
    /* s-late-ok ended an hour ago with 24 h of grace: counts, boosted for matches (x2),
     * capped at 1000 XP for the day: 600 + 300 + (600 cut to 100) = 1000. */
    int64_t t = it_now_ms() - 2 * HOUR_MS;
    produce_xp_reason(late_ok, "c1", 300, t, "match_complete");
    produce_xp_reason(late_ok, "c2", 300, t, "mission_complete");
    produce_xp_reason(late_ok, "c3", 300, t, "match_complete");
    /* s-late-no ended 31 days ago without grace: recorded only. */
    produce_xp(late_no, "d1", 500, it_now_ms() - 40 * DAY_MS);
    snprintf(sql, sizeof(sql),
             "SELECT total_xp FROM player_progress WHERE player_id = '%s' AND season_id = "
             "'s-late-ok'",
             late_ok);
    assert_int_equal(wait_sql(sql, 1000), 1000);
    static const struct {
        const char *id;
        int applied, boost;
    } want[] = {{"c1", 600, 200}, {"c2", 300, 100}, {"c3", 100, 200}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(sql, sizeof(sql),
                 "SELECT applied_amount * 1000 + boost_pct FROM processed_events WHERE event_id "
                 "= '%s%s'",
                 prefix, want[i].id);
        assert_int_equal(it_sql_int(&env, sql), want[i].applied * 1000 + want[i].boost);
    }
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM processed_events WHERE event_id = '%sd1' AND season_id IS NULL",
             prefix);
    assert_int_equal(wait_sql(sql, 1), 1);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM player_progress WHERE player_id = '%s'",
             late_no);
    assert_int_equal(it_sql_int(&env, sql), 0);
}

static void test_season_end_grants(void **state)
{
    (void)state;
    if (!env.bootstrap)
        skip();
    char sql[256];
    /* Everything available at level 4 (free tier, not premium) but the one claimed. */
    long long want = (long long)bp_rewards_unlocked(&season, 0, 4, false, NULL, 0) - 1;
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM reward_claims WHERE player_id = '%sE' AND source = 'season-end'",
             prefix);
    assert_int_equal(wait_sql(sql, want), want);
    assert_int_equal(
        wait_sql("SELECT count(*) FROM seasons WHERE id = 's-closed' AND closed_at IS NOT NULL", 1),
        1);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM reward_claims WHERE player_id = '%sE'",
             prefix);
    assert_int_equal(it_sql_int(&env, sql), want + 1);
    char player[64];
    snprintf(player, sizeof(player), "%sE", prefix);
    assert_int_equal(grants_on_topic(player, want), (size_t)want);
}

/* The overflow reward's claim rows of @p player: count, or levels as a number (sum of
 * 10^(level - max - 1) for each row: 111 is max+1..max+3 once each). */
static long long overflow_claims(const char *player, bool as_levels)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT CASE WHEN %d = 1 THEN COALESCE(sum(power(10, level - %d - 1)), 0)::bigint"
             " ELSE count(*) END FROM reward_claims WHERE player_id = '%s'"
             " AND season_id = 's-auto' AND reward_id = '%s' AND level > %d AND source = 'auto'",
             as_levels ? 1 : 0, (int)season.max_level, player, season.overflow_reward.reward_id,
             (int)season.max_level);
    return it_sql_int(&env, sql);
}

static void test_overflow_bonus_levels(void **state)
{
    (void)state;
    if (!env.bootstrap)
        skip();
    /* s-auto keeps the sample's overflow: a free bonus chest every xpPerLevel XP past the
     * last level (xpTotal[100] = 341550, every 25,000). */
    assert_int_equal(season.overflow, BP_OVERFLOW_BONUS_LEVELS);
    assert_int_equal(season.overflow_reward.tier, BP_TIER_FREE);
    int64_t top = season.xp_total[season.max_level], per = season.overflow_xp_per_level;
    assert_true(top + per + per / 2 <= 1000000 && 2 * per <= 1000000);
    char player[64], sql[320];
    snprintf(player, sizeof(player), "%sF", prefix);
    snprintf(sql, sizeof(sql),
             "SELECT total_xp FROM player_progress WHERE player_id = '%s' AND season_id = "
             "'s-auto'",
             player);

    /* Batch 1: past max level and one bonus level and a half. */
    int64_t t1 = top + per + per / 2;
    produce_xp(player, "f1", (int32_t)t1, it_now_ms());
    assert_int_equal(wait_sql(sql, t1), t1);
    assert_int_equal(overflow_claims(player, true), 1);

    /* Batch 2: two more thresholds (bonus levels 2 and 3) in one event. */
    int64_t t2 = t1 + 2 * per;
    produce_xp(player, "f2", (int32_t)(2 * per), it_now_ms());
    assert_int_equal(wait_sql(sql, t2), t2);
    assert_int_equal(overflow_claims(player, false), 3);
    assert_int_equal(overflow_claims(player, true), 111); /* max+1, max+2, max+3 once each */
    /* Levels stay capped: no LevelUp past max level. */
    char q[320];
    snprintf(q, sizeof(q),
             "SELECT level FROM player_progress WHERE player_id = '%s' AND season_id = 's-auto'",
             player);
    assert_int_equal(it_sql_int(&env, q), season.max_level);

    /* Every bonus grant reached the topic, with its own grant id (level max + k). */
    char got[8][160];
    assert_int_equal(grants_on_topic_of(player, season.overflow_reward.reward_id, 3, got, 8),
                     (size_t)3);
    for (int32_t k = 1; k <= 3; k++) {
        char want[160];
        assert_int_equal(bp_grant_id(want, sizeof(want), "s-auto", player, season.max_level + k,
                                     BP_TIER_FREE, season.overflow_reward.reward_id),
                         BP_OK);
        bool found = false;
        for (int j = 0; j < 3 && !found; j++)
            found = strcmp(got[j], want) == 0;
        assert_true(found);
    }

    /* Replayed events change nothing; a 1 XP event behind them tells they were seen. */
    produce_xp(player, "f1", (int32_t)t1, it_now_ms());
    produce_xp(player, "f2", (int32_t)(2 * per), it_now_ms());
    produce_xp(player, "f3", 1, it_now_ms());
    assert_int_equal(wait_sql(sql, t2 + 1), t2 + 1);
    assert_int_equal(overflow_claims(player, false), 3);
    assert_int_equal(overflow_claims(player, true), 111);
    assert_int_equal(grants_on_topic_of(player, season.overflow_reward.reward_id, 3, NULL, 0),
                     (size_t)3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auto_claim_and_premium),
        cmocka_unit_test(test_late_events),
        cmocka_unit_test(test_season_end_grants),
        cmocka_unit_test(test_overflow_bonus_levels),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
