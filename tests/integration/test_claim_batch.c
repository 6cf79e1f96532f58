/** @file store/rewards.c bp_pg_claim_batch (claims group-committed) against a real PostgreSQL:
 *  a batch answers each claim exactly as bp_pg_claim would one after another (same verdicts,
 *  same rows, the analytics of new players only when they won something, each claim's own
 *  actor in its audit row), and concurrent batches over the same players (in opposite
 *  orders) neither deadlock nor grant twice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/level.h"
#include "core/reward.h"
#include "store/pg.h"
#include "store/rewards.h"
#include "tests/integration/support.h"

#define HTTP_PORT 23190 /* unused: this test starts no daemon (as test_rewards) */
#define TOPIC "battlepass.reward-grants"
#define ACTOR "it-batch"
#define RACE_PLAYERS 40
#define RACE_ROUNDS 10

static it_env_t env;
static bp_pg_t *pg;
static PGconn *db;
static bp_season_list_t seasons;
static const bp_season_t *sample;
static char prefix[48];

static void skip_without_services(void)
{
    if (!pg)
        skip();
}

/* A player with a progress row at the start of level @p level (earned XP only). */
static void set_level(const char *p, int32_t level)
{
    it_progress_set(db, sample, p, sample->xp_total[level], level);
}

/* @return the lowest level >= 2 with a reward of @p tier. */
static int32_t level_with(bp_tier_t tier)
{
    for (int32_t l = 2; l <= sample->max_level; l++)
        if (bp_rewards_at(sample, l, tier, NULL, 0) > 0)
            return l;
    fail_msg("the sample season has no %s reward above level 1", bp_tier_str(tier));
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "claim_batch", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char path[1024];
    it_sample_season_path(&env, path, sizeof(path));
    if (!it_db_prepare(&env, path))
        return -1;
    if (!it_store_open(&env, &pg, &seasons, &db) || seasons.n != 1)
        return -1;
    sample = &seasons.items[0];
    it_run_prefix(prefix, sizeof(prefix), "cb");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    it_store_close(pg, &seasons, db);
    return 0;
}

/* The claims of the verdict test, for the players of @p tag. */
typedef struct {
    const char *who; /* suffix of the player id */
    int32_t level;   /* 0: the level of a premium reward, -1: of a free one above level 1 */
    bp_tier_t tier;
    const char *actor;
    bp_claim_verdict_t want;
} claim_case_t;

static const claim_case_t CASES[] = {
    {"new", 1, BP_TIER_FREE, ACTOR, BP_CLAIM_OK},                         /* creates the row */
    {"new", 1, BP_TIER_FREE, "again", BP_CLAIM_ALREADY_CLAIMED},          /* won just before */
    {"new-low", -1, BP_TIER_FREE, ACTOR, BP_CLAIM_LEVEL_NOT_REACHED},     /* no row left */
    {"lvl5", 0, BP_TIER_PREMIUM, ACTOR, BP_CLAIM_PREMIUM_REQUIRED},       /* not premium */
    {"lvl5", -1, BP_TIER_FREE, "someone", BP_CLAIM_OK},                   /* its own actor */
    {"had", 1, BP_TIER_FREE, ACTOR, BP_CLAIM_ALREADY_CLAIMED},            /* claimed before */
    {"had", 999, BP_TIER_FREE, ACTOR, BP_CLAIM_NO_SUCH_REWARD},           /* no such reward */
    {"lvl5", -1, BP_TIER_FREE, "someone-else", BP_CLAIM_ALREADY_CLAIMED}, /* won above */
};
#define N_CASES (sizeof(CASES) / sizeof(CASES[0]))

/* Prepare the players of @p tag: "lvl5" and "had" exist at level 5, "had" has claimed the
 * level-1 free reward; "new" and "new-low" have no row. */
static void prepare(const char *tag)
{
    char p[BP_ID_MAX + 1];
    snprintf(p, sizeof(p), "%s%s-lvl5", prefix, tag);
    set_level(p, 5);
    snprintf(p, sizeof(p), "%s%s-had", prefix, tag);
    set_level(p, 5);
    bp_claim_verdict_t v;
    bp_grants_t g = {0};
    assert_int_equal(bp_pg_claim(pg, sample, p, 1, BP_TIER_FREE, ACTOR, TOPIC, it_now_ms(), &v, &g),
                     BP_OK);
    assert_int_equal(v, BP_CLAIM_OK);
    bp_grants_fini(&g);
}

static void fill_requests(const char *tag, char ids[][BP_ID_MAX + 1], bp_claim_req_t *reqs)
{
    for (size_t i = 0; i < N_CASES; i++) {
        snprintf(ids[i], BP_ID_MAX + 1, "%s%s-%s", prefix, tag, CASES[i].who);
        int32_t level = CASES[i].level;
        if (level == 0)
            level = level_with(BP_TIER_PREMIUM);
        else if (level == -1)
            level = level_with(BP_TIER_FREE);
        reqs[i] = (bp_claim_req_t){
            ids[i], level, CASES[i].tier, CASES[i].actor, BP_CLAIM_NO_SUCH_REWARD, {NULL, 0}};
    }
}

/* The rows of the players of @p tag. */
static it_claim_rows_t rows_of(const char *tag)
{
    char p[BP_ID_MAX + 1];
    snprintf(p, sizeof(p), "%s%s-", prefix, tag);
    return it_claim_rows(db, p, true, NULL);
}

/* One batch against the same claims one by one: the same verdicts and the same rows. */
static void test_batch_as_one_by_one(void **state)
{
    (void)state;
    skip_without_services();
    char ids_b[N_CASES][BP_ID_MAX + 1], ids_s[N_CASES][BP_ID_MAX + 1];
    bp_claim_req_t batch[N_CASES], one[N_CASES];
    prepare("b");
    prepare("s");
    fill_requests("b", ids_b, batch);
    fill_requests("s", ids_s, one);
    long long enrolled0 = it_pg_int(
        db, "SELECT coalesce(sum(enrolled), 0)::bigint FROM season_stats WHERE season_id = '%s'",
        sample->id);
    long long claimed0 = it_pg_int(
        db, "SELECT coalesce(sum(claimed), 0)::bigint FROM season_stats WHERE season_id = '%s'",
        sample->id);

    bool at_commit = true;
    assert_int_equal(bp_pg_claim_batch(pg, sample, batch, N_CASES, TOPIC, it_now_ms(), &at_commit),
                     BP_OK);
    assert_false(at_commit);
    for (size_t i = 0; i < N_CASES; i++) {
        bp_claim_verdict_t v;
        assert_int_equal(bp_pg_claim(pg, sample, one[i].player_id, one[i].level, one[i].tier,
                                     one[i].actor, TOPIC, it_now_ms(), &v, &one[i].grants),
                         BP_OK);
        one[i].verdict = v;
    }
    for (size_t i = 0; i < N_CASES; i++) {
        if (batch[i].verdict != CASES[i].want || one[i].verdict != CASES[i].want)
            fail_msg("claim %zu (%s level %d %s): batch %s, one by one %s, want %s", i,
                     CASES[i].who, (int)batch[i].level, bp_tier_str(batch[i].tier),
                     bp_claim_verdict_str(batch[i].verdict), bp_claim_verdict_str(one[i].verdict),
                     bp_claim_verdict_str(CASES[i].want));
        assert_int_equal(batch[i].grants.n, one[i].grants.n);
        assert_int_equal(batch[i].grants.n,
                         CASES[i].want == BP_CLAIM_OK
                             ? bp_rewards_at(sample, batch[i].level, batch[i].tier, NULL, 0)
                             : 0);
        for (size_t k = 0; k < batch[i].grants.n; k++) {
            const bp_grant_t *g = &batch[i].grants.items[k];
            assert_string_equal(g->player_id, batch[i].player_id);
            assert_int_equal(g->level, batch[i].level);
            assert_int_equal(g->tier, batch[i].tier);
            assert_string_equal(g->reward_id, one[i].grants.items[k].reward_id);
            /* The audit row names the claim's own actor. */
            assert_int_equal(it_pg_int(db,
                                       "SELECT count(*) FROM audit_log WHERE grant_id = '%s'"
                                       " AND actor = '%s' AND action = 'claim'",
                                       g->grant_id, batch[i].actor),
                             1);
            assert_int_equal(
                it_pg_int(db, "SELECT count(*) FROM outbox WHERE payload->>'grantId' = '%s'",
                          g->grant_id),
                1);
        }
    }
    /* The same rows either way (the two "had" claims made by prepare() included). */
    it_claim_rows_t b = rows_of("b"), o = rows_of("s");
    assert_int_equal(b.claims, o.claims);
    assert_int_equal(b.audit, o.audit);
    assert_int_equal(b.outbox, o.outbox);
    assert_int_equal(b.progress, o.progress);
    /* The player refused at level 1 has no row; the new winner has one. */
    assert_int_equal(
        it_pg_int(db, "SELECT count(*) FROM player_progress WHERE player_id = '%sb-new-low'",
                  prefix),
        0);
    assert_int_equal(
        it_pg_int(db, "SELECT count(*) FROM player_progress WHERE player_id = '%sb-new'", prefix),
        1);
    /* Analytics: one new player per run ("new"), and what the two runs granted. */
    long long granted = 0;
    for (size_t i = 0; i < N_CASES; i++)
        granted += (long long)(batch[i].grants.n + one[i].grants.n);
    assert_true(granted >= 4);
    assert_int_equal(
        it_pg_int(
            db,
            "SELECT coalesce(sum(enrolled), 0)::bigint FROM season_stats WHERE season_id = '%s'",
            sample->id),
        enrolled0 + 2);
    assert_int_equal(
        it_pg_int(
            db, "SELECT coalesce(sum(claimed), 0)::bigint FROM season_stats WHERE season_id = '%s'",
            sample->id),
        claimed0 + granted);
    for (size_t i = 0; i < N_CASES; i++) {
        bp_grants_fini(&batch[i].grants);
        bp_grants_fini(&one[i].grants);
    }
}

/* Batches that only refuse or that are empty write nothing. */
static void test_batch_nothing_won(void **state)
{
    (void)state;
    skip_without_services();
    char p[BP_ID_MAX + 1];
    snprintf(p, sizeof(p), "%snothing", prefix);
    bp_claim_req_t reqs[2] = {
        {p, level_with(BP_TIER_FREE), BP_TIER_FREE, ACTOR, BP_CLAIM_OK, {NULL, 0}},
        {p, 999, BP_TIER_FREE, ACTOR, BP_CLAIM_OK, {NULL, 0}}};
    bool at_commit = true;
    assert_int_equal(bp_pg_claim_batch(pg, sample, reqs, 2, TOPIC, it_now_ms(), &at_commit), BP_OK);
    assert_false(at_commit);
    assert_int_equal(reqs[0].verdict, BP_CLAIM_LEVEL_NOT_REACHED);
    assert_int_equal(reqs[1].verdict, BP_CLAIM_NO_SUCH_REWARD);
    assert_int_equal(
        it_pg_int(db, "SELECT count(*) FROM player_progress WHERE player_id = '%s'", p), 0);
    assert_int_equal(bp_pg_claim_batch(pg, sample, reqs, 0, TOPIC, it_now_ms(), &at_commit), BP_OK);
    for (size_t i = 0; i < 2; i++)
        bp_grants_fini(&reqs[i].grants);
}

typedef struct {
    bp_pg_t *pg;
    int round;
    bool reversed;
    int won;
    int errors;
} race_arg_t;

static void *race_thread(void *arg)
{
    race_arg_t *a = arg;
    char ids[RACE_PLAYERS][BP_ID_MAX + 1];
    bp_claim_req_t reqs[RACE_PLAYERS];
    for (int i = 0; i < RACE_PLAYERS; i++) {
        int k = a->reversed ? RACE_PLAYERS - 1 - i : i;
        snprintf(ids[i], sizeof(ids[i]), "%srace%d-%02d", prefix, a->round, k);
        reqs[i] = (bp_claim_req_t){ids[i], 1, BP_TIER_FREE, ACTOR, BP_CLAIM_OK, {NULL, 0}};
    }
    bool at_commit = false;
    if (bp_pg_claim_batch(a->pg, sample, reqs, RACE_PLAYERS, TOPIC, it_now_ms(), &at_commit) !=
        BP_OK)
        a->errors++;
    for (int i = 0; i < RACE_PLAYERS; i++) {
        a->won += reqs[i].verdict == BP_CLAIM_OK;
        if (reqs[i].verdict != BP_CLAIM_OK && reqs[i].verdict != BP_CLAIM_ALREADY_CLAIMED)
            a->errors++;
        bp_grants_fini(&reqs[i].grants);
    }
    return NULL;
}

/* Two batches claim the same new players' reward at once, in opposite orders: each claim is
 * won exactly once, and neither batch fails (rows are created and locked in player order). */
static void test_concurrent_batches(void **state)
{
    (void)state;
    skip_without_services();
    bp_pg_t *other = NULL;
    assert_int_equal(bp_pg_connect(env.db_dsn, &other), BP_OK);
    for (int round = 0; round < RACE_ROUNDS; round++) {
        race_arg_t a = {pg, round, false, 0, 0}, b = {other, round, true, 0, 0};
        pthread_t ta, tb;
        assert_int_equal(pthread_create(&ta, NULL, race_thread, &a), 0);
        assert_int_equal(pthread_create(&tb, NULL, race_thread, &b), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        assert_int_equal(a.errors + b.errors, 0);
        assert_int_equal(a.won + b.won, RACE_PLAYERS);
        char race[BP_ID_MAX + 1];
        snprintf(race, sizeof(race), "%srace%d-", prefix, round);
        it_claim_rows_t c = it_claim_rows(db, race, true, NULL);
        assert_int_equal(c.claims, RACE_PLAYERS);
        assert_int_equal(c.audit, RACE_PLAYERS);
    }
    bp_pg_destroy(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_as_one_by_one),
        cmocka_unit_test(test_batch_nothing_won),
        cmocka_unit_test(test_concurrent_batches),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
