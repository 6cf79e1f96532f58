/** @file Unit tests of core/reward: states, claim decisions, unlocks, grant ids, purchases,
 *  boosts, daily caps, overflow levels (earned and crossed) and late grace, each as a table
 *  of boundary cases. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/reward.h"

#define T0 INT64_C(1767225600000) /* 2026-01-01T00:00:00Z */
#define HOUR INT64_C(3600000)
#define DAY (24 * HOUR)
#define END (T0 + 90 * DAY)
#define WINDOW (7 * DAY)
#define GRACE DAY
#define NONE ((size_t)-1) /* end of an expected index list */
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const int64_t curve[] = {0, 0, 100, 250, 450, 700}; /* index = level, max 5 */

/* Rewards by index: what the index lists of the tables below refer to. */
static const struct {
    int32_t level;
    bp_tier_t tier;
    const char *id;
} fixture_rewards[] = {
    {1, BP_TIER_FREE, "r1"},     /* 0 */
    {1, BP_TIER_PREMIUM, "r1p"}, /* 1 */
    {2, BP_TIER_FREE, "r2"},     /* 2 */
    {3, BP_TIER_PREMIUM, "r3p"}, /* 3 */
    {3, BP_TIER_FREE, "r3a"},    /* 4 */
    {3, BP_TIER_FREE, "r3b"},    /* 5 */
    {5, BP_TIER_PREMIUM, "r5p"}, /* 6 */
};

/* Boosts: double XP on days 10-11, triple XP for matches on days 11-12, and a weaker
 * x1.5 hour inside both that must never win. */
static const struct {
    int64_t starts, ends;
    int32_t pct;
    const char *reasons[2];
} fixture_boosts[] = {
    {T0 + 10 * DAY, T0 + 12 * DAY, 200, {NULL, NULL}},
    {T0 + 11 * DAY, T0 + 13 * DAY, 300, {"match_complete", "mission_complete"}},
    {T0 + 11 * DAY, T0 + 11 * DAY + HOUR, 150, {NULL, NULL}},
};

/* A valid 5-level season with the rewards and boosts above and every option set. */
static void make_season(bp_season_t *s)
{
    assert_int_equal(bp_season_init(s, 5, COUNT(fixture_rewards)), BP_OK);
    strcpy(s->id, "s1");
    strcpy(s->name, "Season One");
    s->starts_at_ms = T0;
    s->ends_at_ms = END;
    memcpy(s->xp_total, curve, sizeof curve);
    for (size_t i = 0; i < COUNT(fixture_rewards); i++) {
        bp_reward_t *r = &s->rewards[i];
        r->level = fixture_rewards[i].level;
        r->tier = fixture_rewards[i].tier;
        strcpy(r->reward_id, fixture_rewards[i].id);
        strcpy(r->item_id, "item");
        r->quantity = 1;
    }
    s->claim_window_ms = WINDOW;
    s->late_grace_ms = GRACE;
    s->daily_xp_cap = 5000;
    for (size_t i = 0; i < COUNT(fixture_boosts); i++) {
        bp_boost_t *b = &s->boosts[i];
        b->starts_at_ms = fixture_boosts[i].starts;
        b->ends_at_ms = fixture_boosts[i].ends;
        b->multiplier_pct = fixture_boosts[i].pct;
        for (size_t j = 0; j < 2 && fixture_boosts[i].reasons[j]; j++)
            strcpy(b->reasons[b->n_reasons++], fixture_boosts[i].reasons[j]);
    }
    s->n_boosts = COUNT(fixture_boosts);
    s->overflow = BP_OVERFLOW_BONUS_LEVELS;
    s->overflow_xp_per_level = 1000;
    s->overflow_reward.tier = BP_TIER_FREE;
    strcpy(s->overflow_reward.reward_id, "bonus");
    strcpy(s->overflow_reward.item_id, "chest");
    s->overflow_reward.quantity = 1;

    char why[256];
    if (bp_season_validate(s, why, sizeof why) != BP_OK)
        fail_msg("fixture season is invalid: %s", why);
}

/* Compare an index list produced by a query with an expected list ending in NONE. */
static void check_indices(const char *what, size_t i, size_t n, const size_t *got,
                          const size_t *want)
{
    size_t k = 0;
    while (want[k] != NONE)
        k++;
    if (n != k)
        fail_msg("%s case %zu: expected %zu indices, got %zu", what, i, k, n);
    for (size_t j = 0; j < k; j++) {
        if (got[j] != want[j])
            fail_msg("%s case %zu: index %zu expected %zu, got %zu", what, i, j, want[j], got[j]);
    }
}

static void test_strings(void **state)
{
    static const struct {
        const char *in;
        bp_err_t err;
        bp_tier_t tier;
    } parses[] = {
        {"free", BP_OK, BP_TIER_FREE},
        {"premium", BP_OK, BP_TIER_PREMIUM},
        {"Free", BP_EINVAL, 0},
        {"PREMIUM", BP_EINVAL, 0},
        {"", BP_EINVAL, 0},
        {"free ", BP_EINVAL, 0},
        {"fre", BP_EINVAL, 0},
        {"premiumx", BP_EINVAL, 0},
        {NULL, BP_EINVAL, 0},
    };
    static const struct {
        bp_claim_verdict_t v;
        int status;
        const char *str;
    } verdicts[] = {
        {BP_CLAIM_OK, 200, "ok"},
        {BP_CLAIM_NO_SUCH_REWARD, 404, "no such reward"},
        {BP_CLAIM_NOT_OPEN, 409, "claims are not open"},
        {BP_CLAIM_LEVEL_NOT_REACHED, 422, "level not reached"},
        {BP_CLAIM_PREMIUM_REQUIRED, 403, "premium pass required"},
        {BP_CLAIM_ALREADY_CLAIMED, 409, "already claimed"},
        {(bp_claim_verdict_t)99, 500, "unknown verdict"},
    };
    (void)state;
    assert_string_equal(bp_reward_state_str(BP_REWARD_LOCKED), "locked");
    assert_string_equal(bp_reward_state_str(BP_REWARD_AVAILABLE), "available");
    assert_string_equal(bp_reward_state_str(BP_REWARD_CLAIMED), "claimed");
    assert_string_equal(bp_reward_state_str((bp_reward_state_t)7), "unknown");
    assert_string_equal(bp_tier_str(BP_TIER_FREE), "free");
    assert_string_equal(bp_tier_str(BP_TIER_PREMIUM), "premium");
    assert_string_equal(bp_tier_str((bp_tier_t)7), "unknown");
    for (size_t i = 0; i < COUNT(parses); i++) {
        bp_tier_t t = (bp_tier_t)42;
        bp_err_t err = bp_tier_parse(parses[i].in, &t);
        if (err != parses[i].err)
            fail_msg("parse case %zu: expected %d, got %d", i, parses[i].err, err);
        if (err == BP_OK && t != parses[i].tier)
            fail_msg("parse case %zu: expected tier %d, got %d", i, parses[i].tier, t);
        if (err != BP_OK && t != (bp_tier_t)42)
            fail_msg("parse case %zu: out touched on error", i);
    }
    for (size_t i = 0; i < COUNT(verdicts); i++) {
        assert_int_equal(bp_claim_verdict_status(verdicts[i].v), verdicts[i].status);
        assert_string_equal(bp_claim_verdict_str(verdicts[i].v), verdicts[i].str);
    }
}

static void test_reward_state(void **state)
{
    static const struct {
        int32_t reward_level;
        bp_tier_t tier;
        int32_t level;
        bool premium, claimed;
        bp_reward_state_t want;
    } cases[] = {
        {3, BP_TIER_FREE, 3, false, false, BP_REWARD_AVAILABLE},   /* level exactly reached */
        {3, BP_TIER_FREE, 2, false, false, BP_REWARD_LOCKED},      /* one below */
        {3, BP_TIER_FREE, 9, false, false, BP_REWARD_AVAILABLE},   /* above */
        {3, BP_TIER_PREMIUM, 3, false, false, BP_REWARD_LOCKED},   /* premium needed */
        {3, BP_TIER_PREMIUM, 3, true, false, BP_REWARD_AVAILABLE}, /* premium owned */
        {3, BP_TIER_PREMIUM, 2, true, false, BP_REWARD_LOCKED},    /* premium, too low */
        {3, BP_TIER_FREE, 3, true, false, BP_REWARD_AVAILABLE},    /* premium sees free too */
        {3, BP_TIER_FREE, 3, false, true, BP_REWARD_CLAIMED},
        {3, BP_TIER_PREMIUM, 1, false, true, BP_REWARD_CLAIMED}, /* claimed wins */
        {1, BP_TIER_FREE, 1, false, false, BP_REWARD_AVAILABLE}, /* level 1 from the start */
    };
    (void)state;
    for (size_t i = 0; i < COUNT(cases); i++) {
        bp_reward_t r = {.level = cases[i].reward_level, .tier = cases[i].tier, .quantity = 1};
        bp_reward_state_t got =
            bp_reward_state(&r, cases[i].level, cases[i].premium, cases[i].claimed);
        if (got != cases[i].want)
            fail_msg("case %zu: expected %s, got %s", i, bp_reward_state_str(cases[i].want),
                     bp_reward_state_str(got));
    }
}

static void test_claims_open(void **state)
{
    static const struct {
        int64_t window, now;
        bool open;
    } cases[] = {
        {WINDOW, INT64_MIN, false},
        {WINDOW, T0 - 1, false}, /* before the start */
        {WINDOW, T0, true},
        {WINDOW, END - 1, true},
        {WINDOW, END, true}, /* at ends_at the window is open */
        {WINDOW, END + WINDOW - 1, true},
        {WINDOW, END + WINDOW, false}, /* closed exactly then */
        {WINDOW, INT64_MAX, false},
        {0, END - 1, true}, /* no window: closes with the season */
        {0, END, false},
        {-DAY, END - 1, true}, /* an invalid negative window counts as none */
        {-DAY, END, false},
    };
    bp_season_t s;
    (void)state;
    make_season(&s);
    for (size_t i = 0; i < COUNT(cases); i++) {
        s.claim_window_ms = cases[i].window;
        if (bp_claims_open(&s, cases[i].now) != cases[i].open)
            fail_msg("case %zu: expected open=%d", i, cases[i].open);
    }
    /* ends_at + window past INT64_MAX saturates instead of wrapping into the past */
    s.ends_at_ms = INT64_MAX - 10;
    s.claim_window_ms = WINDOW;
    assert_true(bp_claims_open(&s, INT64_MAX - 1));
    assert_false(bp_claims_open(&s, INT64_MAX));
    bp_season_fini(&s);
}

static void test_claim_decide(void **state)
{
    static const struct {
        const char *name;
        int32_t level;
        bp_tier_t tier;
        int32_t player_level;
        bool premium, all_claimed;
        int64_t now;
        bp_claim_verdict_t want;
    } cases[] = {
        {"free, level exactly reached", 3, BP_TIER_FREE, 3, false, false, T0 + DAY, BP_CLAIM_OK},
        {"free, above the level", 1, BP_TIER_FREE, 5, false, false, T0 + DAY, BP_CLAIM_OK},
        {"free, one below", 3, BP_TIER_FREE, 2, false, false, T0 + DAY, BP_CLAIM_LEVEL_NOT_REACHED},
        {"premium without premium", 3, BP_TIER_PREMIUM, 3, false, false, T0 + DAY,
         BP_CLAIM_PREMIUM_REQUIRED},
        {"premium with premium", 3, BP_TIER_PREMIUM, 3, true, false, T0 + DAY, BP_CLAIM_OK},
        {"already claimed", 3, BP_TIER_FREE, 3, false, true, T0 + DAY, BP_CLAIM_ALREADY_CLAIMED},
        {"no reward at level 4", 4, BP_TIER_FREE, 5, true, false, T0 + DAY,
         BP_CLAIM_NO_SUCH_REWARD},
        {"no free reward at level 5", 5, BP_TIER_FREE, 5, true, false, T0 + DAY,
         BP_CLAIM_NO_SUCH_REWARD},
        {"level 0", 0, BP_TIER_FREE, 5, true, false, T0 + DAY, BP_CLAIM_NO_SUCH_REWARD},
        {"level past max", 6, BP_TIER_FREE, 5, true, false, T0 + DAY, BP_CLAIM_NO_SUCH_REWARD},
        {"unknown tier", 1, (bp_tier_t)5, 5, true, false, T0 + DAY, BP_CLAIM_NO_SUCH_REWARD},
        {"before the start", 1, BP_TIER_FREE, 1, false, false, T0 - 1, BP_CLAIM_NOT_OPEN},
        {"at the start", 1, BP_TIER_FREE, 1, false, false, T0, BP_CLAIM_OK},
        {"at ends_at", 1, BP_TIER_FREE, 1, false, false, END, BP_CLAIM_OK},
        {"at ends_at + window - 1", 1, BP_TIER_FREE, 1, false, false, END + WINDOW - 1,
         BP_CLAIM_OK},
        {"at ends_at + window", 1, BP_TIER_FREE, 1, false, false, END + WINDOW, BP_CLAIM_NOT_OPEN},
        /* the order: each refusal hides the ones after it */
        {"no such reward before not open", 4, BP_TIER_FREE, 1, false, true, T0 - 1,
         BP_CLAIM_NO_SUCH_REWARD},
        {"not open before level", 3, BP_TIER_PREMIUM, 1, false, true, END + WINDOW,
         BP_CLAIM_NOT_OPEN},
        {"level before premium", 3, BP_TIER_PREMIUM, 2, false, true, T0 + DAY,
         BP_CLAIM_LEVEL_NOT_REACHED},
        {"premium before claimed", 3, BP_TIER_PREMIUM, 3, false, true, T0 + DAY,
         BP_CLAIM_PREMIUM_REQUIRED},
        {"claimed premium", 3, BP_TIER_PREMIUM, 3, true, true, T0 + DAY, BP_CLAIM_ALREADY_CLAIMED},
    };
    bp_season_t s;
    (void)state;
    make_season(&s);
    for (size_t i = 0; i < COUNT(cases); i++) {
        bp_claim_verdict_t got =
            bp_claim_decide(&s, cases[i].level, cases[i].tier, cases[i].player_level,
                            cases[i].premium, cases[i].all_claimed, cases[i].now);
        if (got != cases[i].want)
            fail_msg("%s: expected %s, got %s", cases[i].name, bp_claim_verdict_str(cases[i].want),
                     bp_claim_verdict_str(got));
    }
    bp_season_fini(&s);
}

static void test_rewards_at(void **state)
{
    static const struct {
        int32_t level;
        bp_tier_t tier;
        size_t want[4];
    } cases[] = {
        {1, BP_TIER_FREE, {0, NONE}},      {1, BP_TIER_PREMIUM, {1, NONE}},
        {2, BP_TIER_PREMIUM, {NONE}},      {3, BP_TIER_FREE, {4, 5, NONE}},
        {3, BP_TIER_PREMIUM, {3, NONE}},   {4, BP_TIER_FREE, {NONE}},
        {5, BP_TIER_PREMIUM, {6, NONE}},   {0, BP_TIER_FREE, {NONE}},
        {6, BP_TIER_PREMIUM, {NONE}},      {INT32_MIN, BP_TIER_FREE, {NONE}},
        {INT32_MAX, BP_TIER_FREE, {NONE}}, {1, (bp_tier_t)2, {NONE}},
    };
    bp_season_t s;
    (void)state;
    make_season(&s);
    for (size_t i = 0; i < COUNT(cases); i++) {
        size_t idx[8];
        size_t n = bp_rewards_at(&s, cases[i].level, cases[i].tier, idx, COUNT(idx));
        check_indices("rewards_at", i, n, idx, cases[i].want);
        assert_int_equal(bp_rewards_at(&s, cases[i].level, cases[i].tier, NULL, 0), n);
    }
    /* a short buffer: the full count comes back, only cap entries are written */
    size_t one[2] = {NONE, NONE};
    assert_int_equal(bp_rewards_at(&s, 3, BP_TIER_FREE, one, 1), 2);
    assert_int_equal(one[0], 4);
    assert_int_equal(one[1], NONE);
    bp_season_fini(&s);
}

static void test_rewards_unlocked(void **state)
{
    static const struct {
        int32_t from, to;
        bool premium;
        size_t want[8];
    } cases[] = {
        {0, 1, false, {0, NONE}}, /* a new player gets level 1's rewards */
        {0, 1, true, {0, 1, NONE}},
        {-3, 1, false, {0, NONE}}, /* negative means nothing reached yet */
        {1, 2, false, {2, NONE}},
        {1, 2, true, {2, NONE}},
        {1, 3, false, {2, 4, 5, NONE}}, /* multi-level jump */
        {1, 3, true, {2, 3, 4, 5, NONE}},
        {2, 3, false, {4, 5, NONE}},
        {3, 4, true, {NONE}}, /* level without rewards */
        {4, 5, false, {NONE}},
        {4, 5, true, {6, NONE}},
        {0, 5, true, {0, 1, 2, 3, 4, 5, 6, NONE}},
        {0, 5, false, {0, 2, 4, 5, NONE}},
        {3, 3, true, {NONE}}, /* no change */
        {5, 3, true, {NONE}}, /* going down unlocks nothing */
        {5, 99, true, {NONE}},
        {0, 0, true, {NONE}},
    };
    bp_season_t s;
    (void)state;
    make_season(&s);
    for (size_t i = 0; i < COUNT(cases); i++) {
        size_t idx[16];
        size_t n =
            bp_rewards_unlocked(&s, cases[i].from, cases[i].to, cases[i].premium, idx, COUNT(idx));
        check_indices("rewards_unlocked", i, n, idx, cases[i].want);
        assert_int_equal(
            bp_rewards_unlocked(&s, cases[i].from, cases[i].to, cases[i].premium, NULL, 0), n);
    }
    size_t two[3] = {NONE, NONE, NONE};
    assert_int_equal(bp_rewards_unlocked(&s, 0, 5, true, two, 2), 7);
    assert_int_equal(two[0], 0);
    assert_int_equal(two[1], 1);
    assert_int_equal(two[2], NONE);
    bp_season_fini(&s);
}

static void test_rewards_premium_upto(void **state)
{
    static const struct {
        int32_t level;
        size_t want[4];
    } cases[] = {
        {-1, {NONE}},      {0, {NONE}},       {1, {1, NONE}},       {2, {1, NONE}},
        {3, {1, 3, NONE}}, {4, {1, 3, NONE}}, {5, {1, 3, 6, NONE}}, {INT32_MAX, {1, 3, 6, NONE}},
    };
    bp_season_t s;
    (void)state;
    make_season(&s);
    for (size_t i = 0; i < COUNT(cases); i++) {
        size_t idx[8];
        size_t n = bp_rewards_premium_upto(&s, cases[i].level, idx, COUNT(idx));
        check_indices("premium_upto", i, n, idx, cases[i].want);
    }
    size_t one[2] = {NONE, NONE};
    assert_int_equal(bp_rewards_premium_upto(&s, 5, one, 1), 3);
    assert_int_equal(one[0], 1);
    assert_int_equal(one[1], NONE);
    bp_season_fini(&s);
}

static void test_grant_id(void **state)
{
    static const char want[] = "grant:s1:player-7:12:premium:r12p";
    static const struct {
        size_t len;
        const char *season, *player;
        int32_t level;
        bp_tier_t tier;
        const char *reward;
        bp_err_t err;
        const char *out;
    } cases[] = {
        {64, "s1", "player-7", 12, BP_TIER_PREMIUM, "r12p", BP_OK, want},
        {64, "s1", "p", 1, BP_TIER_FREE, "r1", BP_OK, "grant:s1:p:1:free:r1"},
        {sizeof want, "s1", "player-7", 12, BP_TIER_PREMIUM, "r12p", BP_OK, want}, /* exact */
        {sizeof want - 1, "s1", "player-7", 12, BP_TIER_PREMIUM, "r12p", BP_EINVAL, ""},
        {8, "s1", "player-7", 12, BP_TIER_PREMIUM, "r12p", BP_EINVAL, ""},
        {1, "s1", "player-7", 12, BP_TIER_PREMIUM, "r12p", BP_EINVAL, ""},
        {64, "s1", "p", 1, (bp_tier_t)3, "r1", BP_EINVAL, ""},
        {64, NULL, "p", 1, BP_TIER_FREE, "r1", BP_EINVAL, ""},
        {64, "s1", NULL, 1, BP_TIER_FREE, "r1", BP_EINVAL, ""},
        {64, "s1", "p", 1, BP_TIER_FREE, NULL, BP_EINVAL, ""},
    };
    (void)state;
    for (size_t i = 0; i < COUNT(cases); i++) {
        char buf[80];
        memset(buf, 'x', sizeof buf);
        bp_err_t err = bp_grant_id(buf, cases[i].len, cases[i].season, cases[i].player,
                                   cases[i].level, cases[i].tier, cases[i].reward);
        if (err != cases[i].err || strcmp(buf, cases[i].out) != 0)
            fail_msg("case %zu: expected %d \"%s\", got %d \"%.*s\"", i, cases[i].err, cases[i].out,
                     err, (int)cases[i].len, buf);
        if (buf[cases[i].len] != 'x')
            fail_msg("case %zu: wrote past the buffer", i);
    }
    /* a zero-length buffer is refused without a write */
    char none = 'x';
    assert_int_equal(bp_grant_id(&none, 0, "s", "p", 1, BP_TIER_FREE, "r"), BP_EINVAL);
    assert_int_equal(none, 'x');
    assert_int_equal(bp_grant_id(NULL, 10, "s", "p", 1, BP_TIER_FREE, "r"), BP_EINVAL);
}

static void test_level_purchase(void **state)
{
    static const struct {
        int64_t total_xp;
        int32_t count;
        bp_err_t err;
        int64_t paid;
    } cases[] = {
        {0, 1, BP_OK, 100},         /* level 1 → 2 */
        {50, 1, BP_OK, 50},         /* part-way into level 1: exactly what is missing */
        {99, 1, BP_OK, 1},          /* one XP short */
        {100, 1, BP_OK, 150},       /* exactly level 2 → 3 */
        {0, 3, BP_OK, 450},         /* → level 4 */
        {0, 4, BP_OK, 700},         /* → max exactly */
        {0, 5, BP_OK, 700},         /* past max: capped */
        {450, 100, BP_OK, 250},     /* capped from level 4 */
        {0, INT32_MAX, BP_OK, 700}, /* no overflow of level + count */
        {699, 1, BP_OK, 1},         /* level 4, one XP short of max */
        {-5, 1, BP_OK, 100},        /* a negative total counts as 0 */
        {700, 1, BP_EINVAL, 0},     /* at max level */
        {10000, 1, BP_EINVAL, 0},   /* past max level */
        {0, 0, BP_EINVAL, 0},       /* count 0 */
        {0, -1, BP_EINVAL, 0},      /* negative count */
        {0, INT32_MIN, BP_EINVAL, 0},
    };
    bp_season_t s;
    (void)state;
    make_season(&s);
    for (size_t i = 0; i < COUNT(cases); i++) {
        int64_t paid = -42;
        bp_err_t err = bp_level_purchase_xp(&s, cases[i].total_xp, cases[i].count, &paid);
        if (err != cases[i].err || (err == BP_OK && paid != cases[i].paid))
            fail_msg("case %zu (%lld XP, %d levels): expected %d/%lld, got %d/%lld", i,
                     (long long)cases[i].total_xp, cases[i].count, cases[i].err,
                     (long long)cases[i].paid, err, (long long)paid);
        if (err != BP_OK && paid != -42)
            fail_msg("case %zu: paid_xp touched on error", i);
        if (err == BP_OK)
            assert_true(paid > 0);
    }
    bp_season_fini(&s);
}

static void test_boost(void **state)
{
    static const struct {
        int64_t t;
        const char *reason;
        int32_t pct;
    } cases[] = {
        {T0, "match_complete", 100}, /* no boost */
        {T0 + 10 * DAY - 1, "match_complete", 100},
        {T0 + 10 * DAY, "match_complete", 200}, /* start inclusive */
        {T0 + 10 * DAY, NULL, 200},             /* any reason, even none */
        {T0 + 11 * DAY - 1, "achievement", 200},
        {T0 + 11 * DAY, "match_complete", 300}, /* overlapping: the highest */
        {T0 + 11 * DAY, "mission_complete", 300},
        {T0 + 11 * DAY, "achievement", 200}, /* filtered out of the triple */
        {T0 + 11 * DAY, "match_complete_x", 200},
        {T0 + 11 * DAY, "match", 200},
        {T0 + 11 * DAY, "", 200},
        {T0 + 11 * DAY, NULL, 200},
        {T0 + 11 * DAY + HOUR, "achievement", 200}, /* the x1.5 hour never wins */
        {T0 + 12 * DAY - 1, "achievement", 200},
        {T0 + 12 * DAY, "achievement", 100}, /* end exclusive */
        {T0 + 12 * DAY, "match_complete", 300},
        {T0 + 13 * DAY - 1, "mission_complete", 300},
        {T0 + 13 * DAY, "mission_complete", 100},
        {INT64_MIN, "match_complete", 100},
        {INT64_MAX, "match_complete", 100},
    };
    bp_season_t s;
    (void)state;
    make_season(&s);
    for (size_t i = 0; i < COUNT(cases); i++) {
        int32_t got = bp_boost_pct(&s, cases[i].t, cases[i].reason);
        if (got != cases[i].pct)
            fail_msg("case %zu: expected %d, got %d", i, cases[i].pct, got);
    }
    /* alone, the weaker boost applies */
    s.boosts[0] = s.boosts[2];
    s.n_boosts = 1;
    assert_int_equal(bp_boost_pct(&s, T0 + 11 * DAY, "achievement"), 150);
    assert_int_equal(bp_boost_pct(&s, T0 + 11 * DAY + HOUR, "achievement"), 100);
    s.n_boosts = 0;
    assert_int_equal(bp_boost_pct(&s, T0 + 11 * DAY, "achievement"), 100);
    bp_season_fini(&s);
}

static void test_daily_cap(void **state)
{
    static const struct {
        int64_t cap, earned, amount, allow;
    } cases[] = {
        {0, 0, 500, 500},         /* no cap */
        {0, INT64_MAX, 500, 500}, /* no cap, whatever was earned */
        {1000, 0, 500, 500},      /* well under */
        {1000, 500, 500, 500},    /* reaches the cap exactly */
        {1000, 600, 500, 400},    /* partial */
        {1000, 999, 500, 1},      /* one left */
        {1000, 1000, 500, 0},     /* exhausted */
        {1000, 1500, 500, 0},     /* over (cap lowered): never negative */
        {1000, INT64_MAX, 500, 0},
        {1000, -50, 500, 500},         /* a negative tally counts as 0 */
        {1000, INT64_MIN, 5000, 1000}, /* no overflow of cap - earned */
        {1000, 0, 0, 0},               /* nothing asked */
        {1000, 0, -5, 0},              /* never negative */
        {0, 0, -5, 0},
        {-1, 0, 500, 500}, /* an invalid negative cap caps nothing */
        {INT64_MAX, 0, INT64_MAX, INT64_MAX},
    };
    (void)state;
    for (size_t i = 0; i < COUNT(cases); i++) {
        int64_t got = bp_daily_cap_allow(cases[i].cap, cases[i].earned, cases[i].amount);
        if (got != cases[i].allow)
            fail_msg("case %zu: expected %lld, got %lld", i, (long long)cases[i].allow,
                     (long long)got);
    }
}

static void test_overflow(void **state)
{
    static const struct {
        bp_overflow_t policy;
        int64_t per_level, total_xp, levels;
    } cases[] = {
        {BP_OVERFLOW_NONE, 1000, 100000, 0},
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 0, 0},
        {BP_OVERFLOW_BONUS_LEVELS, 1000, -5, 0},
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 700, 0}, /* exactly max level */
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 1699, 0},
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 1700, 1}, /* exactly one multiple past */
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 2699, 1},
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 2700, 2},
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 100700, 100},
        {BP_OVERFLOW_BONUS_LEVELS, 1, 701, 1},
        {BP_OVERFLOW_BONUS_LEVELS, 1000, INT64_MAX, (INT64_MAX - 700) / 1000},
        {BP_OVERFLOW_BONUS_LEVELS, 0, 5000, 0}, /* invalid: no bonus rather than a crash */
        {BP_OVERFLOW_BONUS_LEVELS, -10, 5000, 0},
    };
    bp_season_t s;
    (void)state;
    make_season(&s);
    for (size_t i = 0; i < COUNT(cases); i++) {
        s.overflow = cases[i].policy;
        s.overflow_xp_per_level = cases[i].per_level;
        int64_t got = bp_overflow_levels(&s, cases[i].total_xp);
        if (got != cases[i].levels)
            fail_msg("case %zu: expected %lld, got %lld", i, (long long)cases[i].levels,
                     (long long)got);
    }
    bp_season_fini(&s);
}

static void test_overflow_crossed(void **state)
{
    /* Fixture: max level 5 at 700 XP; bonus level k at 700 + k * per_level. */
    static const struct {
        bp_overflow_t policy;
        int64_t per_level, old_total, new_total, count, first;
    } cases[] = {
        {BP_OVERFLOW_NONE, 1000, 0, 100000, 0, -1},
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 0, 700, 0, -1},  /* reaching max level only */
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 0, 1699, 0, -1}, /* one XP short */
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 0, 1700, 1, 1},  /* exactly the first threshold */
        {BP_OVERFLOW_BONUS_LEVELS, 1000, -5, 1700, 1, 1}, /* a negative total counts as 0 */
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 1699, 1700, 1, 1},
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 1700, 1700, 0, -1}, /* no XP: nothing new */
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 1700, 2699, 0, -1},
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 1700, 2700, 1, 2},
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 1500, 4700, 4, 1}, /* several at once */
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 2700, 5699, 2, 3},
        {BP_OVERFLOW_BONUS_LEVELS, 1000, 5000, 2000, 0, -1}, /* going down: nothing */
        {BP_OVERFLOW_BONUS_LEVELS, 1, 700, 701, 1, 1},
        {BP_OVERFLOW_BONUS_LEVELS, 1, 0, INT64_MAX, (int64_t)INT32_MAX - 5, 1}, /* level fits */
        {BP_OVERFLOW_BONUS_LEVELS, 1, INT64_MAX - 1, INT64_MAX, 0, -1},         /* past INT32_MAX */
        {BP_OVERFLOW_BONUS_LEVELS, 0, 0, 5000, 0, -1}, /* invalid: none rather than a crash */
        {BP_OVERFLOW_BONUS_LEVELS, -10, 0, 5000, 0, -1},
    };
    bp_season_t s;
    (void)state;
    make_season(&s);
    for (size_t i = 0; i < COUNT(cases); i++) {
        s.overflow = cases[i].policy;
        s.overflow_xp_per_level = cases[i].per_level;
        int64_t first = -1;
        int64_t got = bp_overflow_crossed(&s, cases[i].old_total, cases[i].new_total, &first);
        if (got != cases[i].count || first != cases[i].first)
            fail_msg("case %zu: expected %lld from %lld, got %lld from %lld", i,
                     (long long)cases[i].count, (long long)cases[i].first, (long long)got,
                     (long long)first);
        if (bp_overflow_crossed(&s, cases[i].old_total, cases[i].new_total, NULL) != got)
            fail_msg("case %zu: differs without first_k", i);
    }
    bp_season_fini(&s);
}

static void test_season_accepts(void **state)
{
    static const struct {
        int64_t grace, now;
        bool accepts;
    } cases[] = {
        {GRACE, T0 - DAY, true}, /* before the start: attribution is by occurredAt */
        {GRACE, T0, true},           {GRACE, END - 1, true},
        {GRACE, END, true},          {GRACE, END + GRACE - 1, true},
        {GRACE, END + GRACE, false}, {GRACE, INT64_MAX, false},
        {0, END - 1, true},          {0, END, false},
        {-GRACE, END - 1, true}, /* invalid negative grace counts as none */
        {-GRACE, END, false},
    };
    bp_season_t s;
    (void)state;
    make_season(&s);
    for (size_t i = 0; i < COUNT(cases); i++) {
        s.late_grace_ms = cases[i].grace;
        if (bp_season_accepts(&s, cases[i].now) != cases[i].accepts)
            fail_msg("case %zu: expected %d", i, cases[i].accepts);
    }
    s.ends_at_ms = INT64_MAX - 1;
    s.late_grace_ms = GRACE;
    assert_true(bp_season_accepts(&s, INT64_MAX - 1));
    bp_season_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_reward_state),
        cmocka_unit_test(test_claims_open),
        cmocka_unit_test(test_claim_decide),
        cmocka_unit_test(test_rewards_at),
        cmocka_unit_test(test_rewards_unlocked),
        cmocka_unit_test(test_rewards_premium_upto),
        cmocka_unit_test(test_grant_id),
        cmocka_unit_test(test_level_purchase),
        cmocka_unit_test(test_boost),
        cmocka_unit_test(test_daily_cap),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_overflow_crossed),
        cmocka_unit_test(test_season_accepts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
