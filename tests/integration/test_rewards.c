/** @file store/rewards.c against a real PostgreSQL: claims (200/409/422/403/404), claim-all,
 *  premium passes (idempotent, conflicting, retroactive with autoClaim), the shared grant
 *  statement (claim + audit + RewardGrant outbox rows) and concurrent claims of one reward. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/level.h"
#include "core/reward.h"
#include "core/timefmt.h"
#include "store/pg.h"
#include "store/pg_conn.h"
#include "store/rewards.h"
#include "tests/integration/support.h"

#define HTTP_PORT 23190 /* unused: this test starts no daemon */
#define TOPIC "battlepass.reward-grants"
#define ACTOR "it-tester"
#define AUTO_ID "rw-auto"
#define AUTO_FILE "rewards-auto-season.json"
#define RACE_THREADS 16
#define RACE_CLAIMS 1000

static it_env_t env;
static bp_pg_t *pg; /* the connection under test */
static PGconn *db;  /* the test's own view of the database */
static bp_season_list_t seasons;
static const bp_season_t *sample; /* sample-season.json, active now, no autoClaim */
static const bp_season_t *autos;  /* AUTO_ID: autoClaim, 5 levels, two years ahead */
static char prefix[48];

/* ---- helpers ---- */

static void skip_without_services(void)
{
    if (!pg)
        skip();
}

static void player(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s%s", prefix, name);
}

static void assert_counts(const char *p, long long claims, long long audit, long long outbox)
{
    it_claim_rows_t c = it_claim_rows(db, p, false, TOPIC);
    assert_int_equal(c.claims, claims);
    assert_int_equal(c.audit, audit);
    assert_int_equal(c.outbox, outbox);
}

/* @return the index of the first reward at (level, tier); fails the test when none. */
static size_t reward_at(const bp_season_t *s, int32_t level, bp_tier_t tier)
{
    size_t idx;
    assert_true(bp_rewards_at(s, level, tier, &idx, 1) >= 1);
    return idx;
}

/* @return how many rewards of @p tier the season has on levels 1..@p level. */
static size_t count_tier_upto(const bp_season_t *s, int32_t level, bp_tier_t tier)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_rewards; i++)
        n += s->rewards[i].level <= level && s->rewards[i].tier == tier;
    return n;
}

static void assert_grant(const bp_grant_t *g, const bp_season_t *s, const char *p, size_t idx)
{
    const bp_reward_t *r = &s->rewards[idx];
    char gid[sizeof(g->grant_id)];
    assert_int_equal(bp_grant_id(gid, sizeof(gid), s->id, p, r->level, r->tier, r->reward_id),
                     BP_OK);
    assert_string_equal(g->grant_id, gid);
    assert_string_equal(g->player_id, p);
    assert_int_equal(g->level, r->level);
    assert_int_equal(g->tier, r->tier);
    assert_string_equal(g->reward_id, r->reward_id);
    assert_string_equal(g->item_id, r->item_id);
    assert_int_equal(g->quantity, r->quantity);
}

/* The outbox row of grant @p g must hold exactly the RewardGrant fields (Avro names). */
static void assert_outbox_payload(const bp_grant_t *g, const char *season_id, const char *source)
{
    PGresult *r =
        it_pg_query(db, PGRES_TUPLES_OK,
                    "SELECT payload::text FROM outbox WHERE topic = '" TOPIC "' AND key = '%s'"
                    " AND payload->>'grantId' = '%s'",
                    g->player_id, g->grant_id);
    assert_int_equal(PQntuples(r), 1);
    json_error_t jerr;
    json_t *o = json_loads(PQgetvalue(r, 0, 0), 0, &jerr);
    PQclear(r);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 10);
    assert_string_equal(json_string_value(json_object_get(o, "grantId")), g->grant_id);
    assert_string_equal(json_string_value(json_object_get(o, "playerId")), g->player_id);
    assert_string_equal(json_string_value(json_object_get(o, "seasonId")), season_id);
    assert_true(json_is_integer(json_object_get(o, "level")));
    assert_int_equal(json_integer_value(json_object_get(o, "level")), g->level);
    assert_string_equal(json_string_value(json_object_get(o, "tier")), bp_tier_str(g->tier));
    assert_string_equal(json_string_value(json_object_get(o, "rewardId")), g->reward_id);
    assert_string_equal(json_string_value(json_object_get(o, "itemId")), g->item_id);
    assert_true(json_is_integer(json_object_get(o, "quantity")));
    assert_int_equal(json_integer_value(json_object_get(o, "quantity")), g->quantity);
    assert_true(json_is_integer(json_object_get(o, "grantedAt")));
    assert_int_equal(json_integer_value(json_object_get(o, "grantedAt")), g->granted_at_ms);
    assert_string_equal(json_string_value(json_object_get(o, "source")), source);
    json_decref(o);
}

/* Write the autoClaim season (levels 1..5 every 100 XP; free rewards on every level,
 * premium on 1, 2, 4, 5) starting two years from now, and import it as it is. */
static bool import_auto_season(void)
{
    char starts[40], ends[40];
    int64_t t0 = (it_now_ms() / 1000 + 730LL * 86400) * 1000;
    bp_time_format(t0, starts, sizeof(starts));
    bp_time_format(t0 + 30LL * 86400 * 1000, ends, sizeof(ends));
    FILE *f = fopen(AUTO_FILE, "w");
    if (!f)
        return false;
    fprintf(f,
            "{\"id\":\"" AUTO_ID "\",\"name\":\"Rewards test\",\"startsAt\":\"%s\","
            "\"endsAt\":\"%s\",\"maxLevel\":5,\"autoClaim\":true,\"levels\":[",
            starts, ends);
    for (int l = 1; l <= 5; l++) {
        fprintf(f,
                "%s{\"level\":%d,\"xpTotal\":%d,\"rewards\":[{\"tier\":\"free\","
                "\"rewardId\":\"a-%d-free\",\"itemId\":\"currency.coins\",\"quantity\":%d}",
                l > 1 ? "," : "", l, (l - 1) * 100, l, l * 10);
        if (l != 3)
            fprintf(f,
                    ",{\"tier\":\"premium\",\"rewardId\":\"a-%d-premium\","
                    "\"itemId\":\"skin.auto-%d\",\"quantity\":1}",
                    l, l);
        fprintf(f, "]}");
    }
    fprintf(f, "]}\n");
    if (fclose(f) != 0)
        return false;

    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        setenv("BP_PG_DSN", env.db_dsn, 1);
        execl(env.daemon, env.daemon, "season", "import", AUTO_FILE, (char *)NULL);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "battlepassd season import %s failed\n", AUTO_FILE);
        return false;
    }
    return true;
}

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "rewards", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char path[1024];
    it_sample_season_path(&env, path, sizeof(path));
    if (!it_db_prepare(&env, path) || !import_auto_season())
        return -1;
    if (!it_store_open(&env, &pg, &seasons, &db))
        return -1;
    for (size_t i = 0; i < seasons.n; i++)
        if (strcmp(seasons.items[i].id, AUTO_ID) == 0)
            autos = &seasons.items[i];
        else
            sample = &seasons.items[i];
    if (!autos || !sample || seasons.n != 2 || sample->auto_claim || !autos->auto_claim) {
        fprintf(stderr, "unexpected seasons in %s\n", env.db_name);
        return -1;
    }
    it_run_prefix(prefix, sizeof(prefix), "rw");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    it_store_close(pg, &seasons, db);
    return 0;
}

/* ---- claims ---- */

static void test_claim_ok_then_repeat(void **state)
{
    (void)state;
    skip_without_services();
    char p[BP_ID_MAX + 1];
    player(p, sizeof(p), "claim");
    it_progress_set(db, sample, p, sample->xp_total[5], 0);
    size_t idx = reward_at(sample, 5, BP_TIER_FREE);

    bp_claim_verdict_t v;
    bp_grants_t g = {0};
    int64_t t0 = it_now_ms();
    assert_int_equal(bp_pg_claim(pg, sample, p, 5, BP_TIER_FREE, ACTOR, TOPIC, t0, &v, &g), BP_OK);
    int64_t t1 = it_now_ms();
    assert_int_equal(v, BP_CLAIM_OK);
    assert_int_equal(g.n, 1);
    assert_grant(&g.items[0], sample, p, idx);
    assert_true(g.items[0].granted_at_ms >= t0 - 2000 && g.items[0].granted_at_ms <= t1 + 2000);

    /* The claim row, its audit row and its outbox row. */
    assert_counts(p, 1, 1, 1);
    const bp_reward_t *r = &sample->rewards[idx];
    assert_int_equal(it_pg_int(db,
                               "SELECT count(*) FROM reward_claims WHERE player_id = '%s'"
                               " AND season_id = '%s' AND level = 5 AND tier = 'free'"
                               " AND reward_id = '%s' AND item_id = '%s' AND quantity = %d"
                               " AND grant_id = '%s' AND source = 'claim'"
                               " AND floor(extract(epoch FROM claimed_at) * 1000) = %lld",
                               p, sample->id, r->reward_id, r->item_id, r->quantity,
                               g.items[0].grant_id, (long long)g.items[0].granted_at_ms),
                     1);
    assert_int_equal(
        it_pg_int(db,
                  "SELECT count(*) FROM audit_log WHERE player_id = '%s'"
                  " AND season_id = '%s' AND actor = '" ACTOR "' AND action = 'claim'"
                  " AND level = 5 AND tier = 'free' AND reward_id = '%s'"
                  " AND grant_id = '%s' AND detail = jsonb_build_object('itemId', '%s',"
                  " 'quantity', %d, 'source', 'claim')",
                  p, sample->id, r->reward_id, g.items[0].grant_id, r->item_id, r->quantity),
        1);
    assert_outbox_payload(&g.items[0], sample->id, "claim");

    /* Again: 409, nothing written, nothing appended. */
    assert_int_equal(bp_pg_claim(pg, sample, p, 5, BP_TIER_FREE, ACTOR, TOPIC, it_now_ms(), &v, &g),
                     BP_OK);
    assert_int_equal(v, BP_CLAIM_ALREADY_CLAIMED);
    assert_int_equal(bp_claim_verdict_status(v), 409);
    assert_int_equal(g.n, 1);
    assert_counts(p, 1, 1, 1);

    /* Reward states: level 5, this one claimed, nothing else. */
    bp_player_rewards_t pr;
    assert_int_equal(bp_pg_player_rewards(pg, sample, p, &pr), BP_OK);
    assert_int_equal(pr.level, 5);
    assert_int_equal(pr.total_xp, sample->xp_total[5]);
    assert_false(pr.premium);
    assert_int_equal(pr.n_rewards, sample->n_rewards);
    size_t n_claimed = 0;
    for (size_t i = 0; i < pr.n_rewards; i++)
        n_claimed += pr.claimed[i];
    assert_int_equal(n_claimed, 1);
    assert_true(pr.claimed[idx]);
    bp_player_rewards_fini(&pr);
    bp_grants_fini(&g);
}

static void test_claim_refusals(void **state)
{
    (void)state;
    skip_without_services();
    char p[BP_ID_MAX + 1];
    player(p, sizeof(p), "refuse");
    it_progress_set(db, sample, p, sample->xp_total[5], 0);
    int64_t now = it_now_ms();
    bp_claim_verdict_t v;
    bp_grants_t g = {0};

    /* Level 3 has no premium reward in the sample season. */
    assert_int_equal(bp_rewards_at(sample, 3, BP_TIER_PREMIUM, NULL, 0), 0);
    static const struct {
        int32_t level;
        bp_tier_t tier;
        int when; /* 0 now, -1 before the season, 1 after the claim window */
        bp_claim_verdict_t want;
        int status;
    } cases[] = {
        {6, BP_TIER_FREE, 0, BP_CLAIM_LEVEL_NOT_REACHED, 422},
        {100, BP_TIER_FREE, 0, BP_CLAIM_LEVEL_NOT_REACHED, 422},
        {5, BP_TIER_PREMIUM, 0, BP_CLAIM_PREMIUM_REQUIRED, 403},
        {1, BP_TIER_PREMIUM, 0, BP_CLAIM_PREMIUM_REQUIRED, 403},
        {3, BP_TIER_PREMIUM, 0, BP_CLAIM_NO_SUCH_REWARD, 404},
        {0, BP_TIER_FREE, 0, BP_CLAIM_NO_SUCH_REWARD, 404},
        {101, BP_TIER_FREE, 0, BP_CLAIM_NO_SUCH_REWARD, 404},
        {5, BP_TIER_FREE, -1, BP_CLAIM_NOT_OPEN, 409},
        {5, BP_TIER_FREE, 1, BP_CLAIM_NOT_OPEN, 409},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t t = cases[i].when == 0  ? now
                    : cases[i].when < 0 ? sample->starts_at_ms - 1
                                        : sample->ends_at_ms + sample->claim_window_ms;
        assert_int_equal(
            bp_pg_claim(pg, sample, p, cases[i].level, cases[i].tier, ACTOR, TOPIC, t, &v, &g),
            BP_OK);
        if (v != cases[i].want)
            fail_msg("case %zu: verdict %s, want %s", i, bp_claim_verdict_str(v),
                     bp_claim_verdict_str(cases[i].want));
        assert_int_equal(bp_claim_verdict_status(v), cases[i].status);
        assert_int_equal(g.n, 0);
    }
    assert_counts(p, 0, 0, 0);

    /* The level comes from the XP, not from the stored level. */
    char stale[BP_ID_MAX + 1], lagging[BP_ID_MAX + 1], ghost[BP_ID_MAX + 1];
    player(stale, sizeof(stale), "stale");
    player(lagging, sizeof(lagging), "lagging");
    it_progress_set(db, sample, stale, 0, 50);
    it_progress_set(db, sample, lagging, sample->xp_total[7], 1);
    assert_int_equal(bp_pg_claim(pg, sample, stale, 5, BP_TIER_FREE, ACTOR, TOPIC, now, &v, &g),
                     BP_OK);
    assert_int_equal(v, BP_CLAIM_LEVEL_NOT_REACHED);
    assert_int_equal(bp_pg_claim(pg, sample, lagging, 7, BP_TIER_FREE, ACTOR, TOPIC, now, &v, &g),
                     BP_OK);
    assert_int_equal(v, BP_CLAIM_OK);
    assert_int_equal(g.n, 1);
    assert_counts(stale, 0, 0, 0);
    assert_counts(lagging, 1, 1, 1);

    /* A refused claim of a player without progress leaves no row behind. */
    player(ghost, sizeof(ghost), "ghost");
    assert_int_equal(bp_pg_claim(pg, sample, ghost, 2, BP_TIER_FREE, ACTOR, TOPIC, now, &v, &g),
                     BP_OK);
    assert_int_equal(v, BP_CLAIM_LEVEL_NOT_REACHED);
    assert_int_equal(
        it_pg_int(db, "SELECT count(*) FROM player_progress WHERE player_id = '%s'", ghost), 0);
    bp_grants_fini(&g);
}

static void test_claim_all(void **state)
{
    (void)state;
    skip_without_services();
    char p[BP_ID_MAX + 1];
    player(p, sizeof(p), "all");
    it_progress_set(db, sample, p, sample->xp_total[7] + 1, 0);
    int64_t now = it_now_ms();
    bp_claim_verdict_t v;
    bp_grants_t g = {0};

    assert_int_equal(bp_pg_claim(pg, sample, p, 2, BP_TIER_FREE, ACTOR, TOPIC, now, &v, &g), BP_OK);
    assert_int_equal(v, BP_CLAIM_OK);
    bp_grants_fini(&g);

    /* Every free reward of levels 1..7 but the one claimed already. */
    size_t n_free = count_tier_upto(sample, 7, BP_TIER_FREE);
    assert_int_equal(bp_pg_claim_all(pg, sample, p, ACTOR, TOPIC, now, &v, &g), BP_OK);
    assert_int_equal(v, BP_CLAIM_OK);
    assert_int_equal(g.n, n_free - 1);
    for (size_t i = 0; i < g.n; i++) {
        assert_int_equal(g.items[i].tier, BP_TIER_FREE);
        assert_true(g.items[i].level >= 1 && g.items[i].level <= 7 && g.items[i].level != 2);
        assert_grant(&g.items[i], sample, p, reward_at(sample, g.items[i].level, BP_TIER_FREE));
        assert_outbox_payload(&g.items[i], sample->id, "claim");
    }
    assert_counts(p, (long long)n_free, (long long)n_free, (long long)n_free);
    bp_grants_fini(&g);

    /* Nothing left: OK with nothing granted. */
    assert_int_equal(bp_pg_claim_all(pg, sample, p, ACTOR, TOPIC, now, &v, &g), BP_OK);
    assert_int_equal(v, BP_CLAIM_OK);
    assert_int_equal(g.n, 0);
    assert_counts(p, (long long)n_free, (long long)n_free, (long long)n_free);

    /* With premium (no autoClaim in this season: nothing granted by the pass itself), the
     * premium rewards of levels 1..7 become available, and claim-all takes exactly them. */
    char tx[BP_ID_MAX + 1];
    bp_premium_result_t pres;
    player(tx, sizeof(tx), "all-tx");
    assert_int_equal(bp_pg_premium_grant(pg, sample, p, tx, "shop", now, ACTOR, TOPIC, &pres, &g),
                     BP_OK);
    assert_int_equal(pres, BP_PREMIUM_GRANTED);
    assert_int_equal(g.n, 0);
    size_t n_prem = count_tier_upto(sample, 7, BP_TIER_PREMIUM);
    assert_true(n_prem > 0);
    assert_int_equal(bp_pg_claim_all(pg, sample, p, ACTOR, TOPIC, now, &v, &g), BP_OK);
    assert_int_equal(v, BP_CLAIM_OK);
    assert_int_equal(g.n, n_prem);
    for (size_t i = 0; i < g.n; i++)
        assert_int_equal(g.items[i].tier, BP_TIER_PREMIUM);
    size_t total = n_free + n_prem;
    assert_counts(p, (long long)total, (long long)total + 1, (long long)total);
    bp_grants_fini(&g);

    bp_player_rewards_t pr;
    assert_int_equal(bp_pg_player_rewards(pg, sample, p, &pr), BP_OK);
    assert_int_equal(pr.level, 7);
    assert_true(pr.premium);
    for (size_t i = 0; i < pr.n_rewards; i++)
        assert_int_equal(pr.claimed[i], sample->rewards[i].level <= 7);
    bp_player_rewards_fini(&pr);

    /* Outside the claim window: refused, nothing written. */
    it_progress_set(db, sample, p, sample->xp_total[9], 0);
    assert_int_equal(bp_pg_claim_all(pg, sample, p, ACTOR, TOPIC, sample->starts_at_ms - 1, &v, &g),
                     BP_OK);
    assert_int_equal(v, BP_CLAIM_NOT_OPEN);
    assert_int_equal(bp_pg_claim_all(pg, sample, p, ACTOR, TOPIC,
                                     sample->ends_at_ms + sample->claim_window_ms, &v, &g),
                     BP_OK);
    assert_int_equal(v, BP_CLAIM_NOT_OPEN);
    assert_int_equal(g.n, 0);
    assert_counts(p, (long long)total, (long long)total + 1, (long long)total);

    /* A new player (no row) is at level 1: its free reward(s) only. */
    char fresh[BP_ID_MAX + 1];
    player(fresh, sizeof(fresh), "all-new");
    assert_int_equal(bp_pg_claim_all(pg, sample, fresh, ACTOR, TOPIC, now, &v, &g), BP_OK);
    assert_int_equal(v, BP_CLAIM_OK);
    assert_int_equal(g.n, count_tier_upto(sample, 1, BP_TIER_FREE));
    assert_int_equal(g.items[0].level, 1);
    bp_grants_fini(&g);
}

/* ---- premium ---- */

static void test_premium_grant(void **state)
{
    (void)state;
    skip_without_services();
    char p[BP_ID_MAX + 1], other[BP_ID_MAX + 1], tx[BP_ID_MAX + 1];
    player(p, sizeof(p), "prem");
    player(other, sizeof(other), "prem-other");
    player(tx, sizeof(tx), "prem-tx");
    it_progress_set(db, sample, p, sample->xp_total[4], 0);
    int64_t now = it_now_ms();
    bp_premium_result_t res;
    bp_grants_t g = {0};

    assert_int_equal(bp_pg_premium_grant(pg, sample, p, tx, "shop", now, ACTOR, TOPIC, &res, &g),
                     BP_OK);
    assert_int_equal(res, BP_PREMIUM_GRANTED);
    assert_int_equal(g.n, 0); /* no autoClaim: available, not granted */
    assert_int_equal(it_pg_int(db,
                               "SELECT count(*) FROM player_progress WHERE player_id = '%s'"
                               " AND season_id = '%s' AND premium AND total_xp = %lld",
                               p, sample->id, (long long)sample->xp_total[4]),
                     1);
    assert_int_equal(
        it_pg_int(db,
                  "SELECT count(*) FROM premium_grants WHERE transaction_id = '%s'"
                  " AND player_id = '%s' AND season_id = '%s' AND source = 'shop'"
                  " AND granted_at = timestamptz 'epoch' + %lld * interval '1 millisecond'",
                  tx, p, sample->id, (long long)now),
        1);
    assert_int_equal(it_pg_int(db,
                               "SELECT count(*) FROM audit_log WHERE player_id = '%s'"
                               " AND season_id = '%s' AND actor = '" ACTOR "'"
                               " AND action = 'premium-grant' AND level IS NULL AND tier IS NULL"
                               " AND reward_id IS NULL AND grant_id IS NULL AND detail ="
                               " jsonb_build_object('transactionId', '%s', 'source', 'shop')",
                               p, sample->id, tx),
                     1);
    assert_counts(p, 0, 1, 0);

    /* Replay: duplicate, nothing changes. */
    assert_int_equal(bp_pg_premium_grant(pg, sample, p, tx, "shop", now, ACTOR, TOPIC, &res, &g),
                     BP_OK);
    assert_int_equal(res, BP_PREMIUM_DUPLICATE);
    assert_counts(p, 0, 1, 0);
    assert_int_equal(
        it_pg_int(db, "SELECT count(*) FROM premium_grants WHERE transaction_id = '%s'", tx), 1);

    /* The same transaction id for another player, or another season: conflict. */
    assert_int_equal(
        bp_pg_premium_grant(pg, sample, other, tx, "shop", now, ACTOR, TOPIC, &res, &g), BP_OK);
    assert_int_equal(res, BP_PREMIUM_CONFLICT);
    assert_int_equal(
        it_pg_int(db, "SELECT count(*) FROM player_progress WHERE player_id = '%s'", other), 0);
    assert_counts(other, 0, 0, 0);
    assert_int_equal(bp_pg_premium_grant(pg, autos, p, tx, "shop", now, ACTOR, TOPIC, &res, &g),
                     BP_OK);
    assert_int_equal(res, BP_PREMIUM_CONFLICT);
    assert_int_equal(it_pg_int(db,
                               "SELECT count(*) FROM player_progress WHERE player_id = '%s'"
                               " AND season_id = '" AUTO_ID "'",
                               p),
                     0);
    assert_counts(p, 0, 1, 0);

    /* The premium tier of a level reached can now be claimed. */
    bp_claim_verdict_t v;
    assert_int_equal(bp_pg_claim(pg, sample, p, 4, BP_TIER_PREMIUM, ACTOR, TOPIC, now, &v, &g),
                     BP_OK);
    assert_int_equal(v, BP_CLAIM_OK);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.items[0].tier, BP_TIER_PREMIUM);
    bp_grants_fini(&g);

    /* A player without progress gets a row, premium, at level 1. */
    char tx2[BP_ID_MAX + 1];
    player(tx2, sizeof(tx2), "prem-tx2");
    assert_int_equal(
        bp_pg_premium_grant(pg, sample, other, tx2, "economy", now, "worker", TOPIC, &res, &g),
        BP_OK);
    assert_int_equal(res, BP_PREMIUM_GRANTED);
    bp_player_rewards_t pr;
    assert_int_equal(bp_pg_player_rewards(pg, sample, other, &pr), BP_OK);
    assert_true(pr.premium);
    assert_int_equal(pr.level, 1);
    assert_int_equal(pr.total_xp, 0);
    bp_player_rewards_fini(&pr);
}

static void test_premium_autoclaim(void **state)
{
    (void)state;
    skip_without_services();
    char p[BP_ID_MAX + 1], tx1[BP_ID_MAX + 1], tx2[BP_ID_MAX + 1];
    player(p, sizeof(p), "auto");
    player(tx1, sizeof(tx1), "auto-tx1");
    player(tx2, sizeof(tx2), "auto-tx2");
    it_progress_set(db, autos, p, autos->xp_total[4] + 50, 0);
    int64_t at = autos->starts_at_ms + 1000;
    bp_premium_result_t res;
    bp_grants_t g = {0};

    /* Retroactive: the premium rewards of levels 1..4 (levels 1, 2 and 4). */
    size_t want = count_tier_upto(autos, 4, BP_TIER_PREMIUM);
    assert_int_equal(want, 3);
    assert_int_equal(bp_pg_premium_grant(pg, autos, p, tx1, "shop", at, ACTOR, TOPIC, &res, &g),
                     BP_OK);
    assert_int_equal(res, BP_PREMIUM_GRANTED);
    assert_int_equal(g.n, want);
    for (size_t i = 0; i < g.n; i++) {
        assert_int_equal(g.items[i].tier, BP_TIER_PREMIUM);
        assert_true(g.items[i].level <= 4);
        assert_grant(&g.items[i], autos, p, reward_at(autos, g.items[i].level, BP_TIER_PREMIUM));
        assert_outbox_payload(&g.items[i], autos->id, "premium");
    }
    assert_int_equal(it_pg_int(db,
                               "SELECT count(*) FROM reward_claims WHERE player_id = '%s'"
                               " AND season_id = '" AUTO_ID "' AND source = 'premium'",
                               p),
                     (long long)want);
    assert_int_equal(it_pg_int(db,
                               "SELECT count(*) FROM audit_log WHERE player_id = '%s'"
                               " AND action = 'premium-grant' AND reward_id IS NOT NULL"
                               " AND detail->>'source' = 'premium'",
                               p),
                     (long long)want);
    assert_counts(p, (long long)want, (long long)want + 1, (long long)want);
    bp_grants_fini(&g);

    /* Granted again (another transaction): the pass is recorded, no reward twice. */
    assert_int_equal(bp_pg_premium_grant(pg, autos, p, tx2, "shop", at, ACTOR, TOPIC, &res, &g),
                     BP_OK);
    assert_int_equal(res, BP_PREMIUM_GRANTED);
    assert_int_equal(g.n, 0);
    assert_counts(p, (long long)want, (long long)want + 2, (long long)want);

    /* Replayed: nothing at all. */
    assert_int_equal(bp_pg_premium_grant(pg, autos, p, tx1, "shop", at, ACTOR, TOPIC, &res, &g),
                     BP_OK);
    assert_int_equal(res, BP_PREMIUM_DUPLICATE);
    assert_int_equal(g.n, 0);
    assert_counts(p, (long long)want, (long long)want + 2, (long long)want);
}

/* ---- the grant statement on its own and inside a caller's transaction ---- */

static void exec_on_pg(const char *sql)
{
    PGresult *r = PQexec(bp_pg_conn(pg), sql);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
}

static void test_grants_insert(void **state)
{
    (void)state;
    skip_without_services();
    char p[BP_ID_MAX + 1];
    player(p, sizeof(p), "direct");
    bp_grants_t g = {0};

    /* Free rewards of levels 1..3, one of them twice in the same call: three grants. */
    bp_grant_req_t reqs[4] = {{p, autos, reward_at(autos, 1, BP_TIER_FREE)},
                              {p, autos, reward_at(autos, 2, BP_TIER_FREE)},
                              {p, autos, reward_at(autos, 3, BP_TIER_FREE)},
                              {p, autos, reward_at(autos, 2, BP_TIER_FREE)}};
    assert_int_equal(bp_pg_grants_insert(pg, reqs, 4, "auto", "worker", TOPIC, &g), BP_OK);
    assert_int_equal(g.n, 3);
    for (size_t i = 0; i < g.n; i++)
        assert_outbox_payload(&g.items[i], autos->id, "auto");
    assert_int_equal(it_pg_int(db,
                               "SELECT count(*) FROM audit_log WHERE player_id = '%s'"
                               " AND action = 'auto-grant' AND actor = 'worker'",
                               p),
                     3);
    assert_counts(p, 3, 3, 3);
    /* Again: nothing new, nothing appended; NULL out is allowed. */
    assert_int_equal(bp_pg_grants_insert(pg, reqs, 4, "auto", "worker", TOPIC, &g), BP_OK);
    assert_int_equal(g.n, 3);
    assert_int_equal(bp_pg_grants_insert(pg, reqs, 4, "auto", "worker", TOPIC, NULL), BP_OK);
    assert_counts(p, 3, 3, 3);
    assert_int_equal(bp_pg_grants_insert(pg, reqs, 0, "auto", "worker", TOPIC, &g), BP_OK);
    bp_grants_fini(&g);

    /* Inside a caller's transaction: rolled back with it, committed with it. */
    bp_grant_req_t end = {p, autos, reward_at(autos, 4, BP_TIER_FREE)};
    exec_on_pg("BEGIN");
    assert_int_equal(bp_pg_grants_insert(pg, &end, 1, "season-end", "worker", TOPIC, &g), BP_OK);
    assert_int_equal(g.n, 1);
    exec_on_pg("ROLLBACK");
    assert_counts(p, 3, 3, 3);
    bp_grants_fini(&g);
    exec_on_pg("BEGIN");
    assert_int_equal(bp_pg_grants_insert(pg, &end, 1, "season-end", "worker", TOPIC, &g), BP_OK);
    assert_int_equal(g.n, 1);
    exec_on_pg("COMMIT");
    assert_counts(p, 4, 4, 4);
    assert_int_equal(it_pg_int(db,
                               "SELECT count(*) FROM audit_log WHERE player_id = '%s'"
                               " AND action = 'season-end-grant' AND grant_id = '%s'",
                               p, g.items[0].grant_id),
                     1);
    assert_outbox_payload(&g.items[0], autos->id, "season-end");
    bp_grants_fini(&g);

    /* An unknown source is a caller's bug: refused before anything is sent. */
    assert_int_equal(bp_pg_grants_insert(pg, &end, 1, "gift", "worker", TOPIC, &g), BP_EFATAL);
    assert_int_equal(g.n, 0);
}

/* ---- errors ---- */

static void test_errors(void **state)
{
    (void)state;
    skip_without_services();
    char p[BP_ID_MAX + 1];
    player(p, sizeof(p), "errors");
    int64_t now = it_now_ms();
    bp_claim_verdict_t v;
    bp_grants_t g = {0};

    /* A season the database does not know: the foreign key refuses, BP_EFATAL, rolled
     * back (the connection is usable right after). */
    bp_season_t unknown = *sample; /* shallow: shares the sample's arrays, never finalised */
    snprintf(unknown.id, sizeof(unknown.id), "no-such-season");
    assert_int_equal(bp_pg_claim(pg, &unknown, p, 1, BP_TIER_FREE, ACTOR, TOPIC, now, &v, &g),
                     BP_EFATAL);
    assert_int_not_equal(v, BP_CLAIM_OK);
    assert_int_equal(g.n, 0);
    assert_int_equal(bp_pg_claim(pg, sample, p, 1, BP_TIER_FREE, ACTOR, TOPIC, now, &v, &g), BP_OK);
    assert_int_equal(v, BP_CLAIM_OK);
    assert_counts(p, 1, 1, 1);
    bp_grants_fini(&g);

    /* The connection is killed under us: BP_ERETRY, then the next call reconnects. */
    PQclear(it_pg_query(db, PGRES_TUPLES_OK, "SELECT pg_terminate_backend(%d)",
                        PQbackendPID(bp_pg_conn(pg))));
    assert_int_equal(bp_pg_claim(pg, sample, p, 2, BP_TIER_FREE, ACTOR, TOPIC, now, &v, &g),
                     BP_ERETRY);
    assert_int_equal(g.n, 0);
    it_progress_set(db, sample, p, sample->xp_total[2], 0);
    assert_int_equal(bp_pg_claim(pg, sample, p, 2, BP_TIER_FREE, ACTOR, TOPIC, now, &v, &g), BP_OK);
    assert_int_equal(v, BP_CLAIM_OK);
    assert_int_equal(g.n, 1);
    assert_counts(p, 2, 2, 2);
    bp_grants_fini(&g);
}

/* ---- concurrency ---- */

typedef struct {
    const char *player_id;
    int32_t level;
    int n_claims;
    pthread_barrier_t *start;
    int ok, already, other, errors;
} race_t;

static void *race_thread(void *arg)
{
    race_t *r = arg;
    bp_pg_t *conn = NULL;
    bool up = bp_pg_connect(env.db_dsn, &conn) == BP_OK;
    pthread_barrier_wait(r->start);
    for (int i = 0; i < r->n_claims; i++) {
        bp_claim_verdict_t v;
        bp_grants_t g = {0};
        bp_err_t err = up ? bp_pg_claim(conn, sample, r->player_id, r->level, BP_TIER_FREE, ACTOR,
                                        TOPIC, it_now_ms(), &v, &g)
                          : BP_ERETRY;
        if (err != BP_OK)
            r->errors++;
        else if (v == BP_CLAIM_OK && g.n == 1)
            r->ok++;
        else if (v == BP_CLAIM_ALREADY_CLAIMED && g.n == 0)
            r->already++;
        else
            r->other++;
        bp_grants_fini(&g);
    }
    bp_pg_destroy(conn);
    return NULL;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* RACE_CLAIMS claims of the free reward of @p level by @p p from RACE_THREADS threads, each
 * with its own connection: exactly one wins, the others are told it is claimed. */
static void race(const char *what, const char *p, int32_t level)
{
    pthread_t th[RACE_THREADS];
    race_t r[RACE_THREADS];
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, RACE_THREADS + 1), 0);
    for (int i = 0; i < RACE_THREADS; i++) {
        r[i] = (race_t){.player_id = p, .level = level, .start = &start};
        r[i].n_claims = RACE_CLAIMS / RACE_THREADS + (i < RACE_CLAIMS % RACE_THREADS);
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &r[i]), 0);
    }
    pthread_barrier_wait(&start);
    double t0 = mono_s();
    int ok = 0, already = 0, other = 0, errors = 0, total = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += r[i].ok;
        already += r[i].already;
        other += r[i].other;
        errors += r[i].errors;
        total += r[i].n_claims;
    }
    double dt = mono_s() - t0;
    pthread_barrier_destroy(&start);
    printf("concurrent claims (%s): %d claims of one reward from %d threads in %.3f s (%.0f/s):"
           " %d ok, %d already claimed, %d other, %d errors\n",
           what, total, RACE_THREADS, dt, total / dt, ok, already, other, errors);
    assert_int_equal(total, RACE_CLAIMS);
    assert_int_equal(errors, 0);
    assert_int_equal(other, 0);
    assert_int_equal(ok, 1);
    assert_int_equal(already, RACE_CLAIMS - 1);
    assert_counts(p, 1, 1, 1);
}

static void test_concurrent_claims(void **state)
{
    (void)state;
    skip_without_services();
    /* A player without a progress row: the threads also race to create it (and the first
     * wave waits on the creator's insert). */
    char fresh[BP_ID_MAX + 1], known[BP_ID_MAX + 1];
    player(fresh, sizeof(fresh), "race-new");
    race("new player", fresh, 1);
    /* A player with progress: only the row lock and the primary key serialise them. */
    player(known, sizeof(known), "race-known");
    it_progress_set(db, sample, known, sample->xp_total[5], 0);
    race("existing row", known, 5);
}

/* Concurrent premium grants of one player (distinct transactions) with autoClaim: every
 * pass recorded, each premium reward granted once. */
typedef struct {
    const char *player_id;
    char tx[BP_ID_MAX + 1];
    bp_premium_result_t res;
    size_t granted;
    bp_err_t err;
} prem_race_t;

static void *prem_thread(void *arg)
{
    prem_race_t *r = arg;
    bp_pg_t *conn = NULL;
    bp_grants_t g = {0};
    r->err = bp_pg_connect(env.db_dsn, &conn);
    if (r->err == BP_OK)
        r->err = bp_pg_premium_grant(conn, autos, r->player_id, r->tx, "shop", autos->starts_at_ms,
                                     ACTOR, TOPIC, &r->res, &g);
    r->granted = g.n;
    bp_grants_fini(&g);
    bp_pg_destroy(conn);
    return NULL;
}

static void test_concurrent_premium(void **state)
{
    (void)state;
    skip_without_services();
    enum { N = 8 };
    char p[BP_ID_MAX + 1];
    player(p, sizeof(p), "prem-race");
    it_progress_set(db, autos, p, autos->xp_total[5], 0);
    pthread_t th[N];
    prem_race_t r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (prem_race_t){.player_id = p};
        snprintf(r[i].tx, sizeof(r[i].tx), "%sprem-race-%d", prefix, i);
        assert_int_equal(pthread_create(&th[i], NULL, prem_thread, &r[i]), 0);
    }
    size_t granted = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].err, BP_OK);
        assert_int_equal(r[i].res, BP_PREMIUM_GRANTED);
        granted += r[i].granted;
    }
    size_t want = count_tier_upto(autos, 5, BP_TIER_PREMIUM);
    assert_int_equal(granted, want);
    assert_counts(p, (long long)want, (long long)want + N, (long long)want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_ok_then_repeat),
        cmocka_unit_test(test_claim_refusals),
        cmocka_unit_test(test_claim_all),
        cmocka_unit_test(test_premium_grant),
        cmocka_unit_test(test_premium_autoclaim),
        cmocka_unit_test(test_grants_insert),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_concurrent_claims),
        cmocka_unit_test(test_concurrent_premium),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
