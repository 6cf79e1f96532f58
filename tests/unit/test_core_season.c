/** @file Unit tests of core/season: init/fini, validation messages, status, attribution. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/season.h"

#define S64 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-"
#define S65 S64 "x"
#define T2026 INT64_C(1767225600000) /* 2026-01-01T00:00:00Z */
#define DAY INT64_C(86400000)

static const int64_t curve[] = {0, 0, 100, 250, 450, 700}; /* index = level, max 5 */

static void set_field(char *dst, size_t size, const char *src)
{
    size_t len = strlen(src);
    if (len > size)
        len = size;
    memcpy(dst, src, len);
    if (len < size)
        dst[len] = '\0';
}

static void set_reward(bp_reward_t *r, int32_t level, bp_tier_t tier, const char *reward_id,
                       const char *item_id, int32_t quantity)
{
    r->level = level;
    r->tier = tier;
    set_field(r->reward_id, sizeof r->reward_id, reward_id);
    set_field(r->item_id, sizeof r->item_id, item_id);
    r->quantity = quantity;
}

/* A valid 5-level season with three rewards. */
static void make_season(bp_season_t *s)
{
    assert_int_equal(bp_season_init(s, 5, 3), BP_OK);
    strcpy(s->id, "s1");
    strcpy(s->name, "Season One");
    s->starts_at_ms = T2026;
    s->ends_at_ms = T2026 + 90 * DAY;
    memcpy(s->xp_total, curve, sizeof curve);
    set_reward(&s->rewards[0], 1, BP_TIER_FREE, "r1", "coins", 100);
    set_reward(&s->rewards[1], 1, BP_TIER_PREMIUM, "r1", "skin.gold", 1);
    set_reward(&s->rewards[2], 5, BP_TIER_FREE, "r5", "emote:wave", 1);
}

static void test_init_fini(void **state)
{
    static const struct {
        int32_t max_level;
        size_t n_rewards;
        bp_err_t err;
    } cases[] = {
        {-1, 0, BP_EINVAL},
        {0, 0, BP_EINVAL},
        {1, 0, BP_OK},
        {1, 1, BP_OK},
        {100, 200, BP_OK},
        {BP_LEVEL_MAX, 3, BP_OK},
        {BP_LEVEL_MAX + 1, 0, BP_EINVAL},
        {INT32_MAX, 0, BP_EINVAL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bp_season_t s;
        memset(&s, 0xa5, sizeof s); /* init must not rely on zeroed storage */
        bp_err_t err = bp_season_init(&s, cases[i].max_level, cases[i].n_rewards);
        if (err != cases[i].err)
            fail_msg("case %zu: expected %d, got %d", i, cases[i].err, err);
        if (err == BP_OK) {
            assert_int_equal(s.max_level, cases[i].max_level);
            assert_int_equal(s.n_rewards, cases[i].n_rewards);
            assert_non_null(s.xp_total);
            for (int32_t l = 0; l <= s.max_level; l++)
                assert_int_equal(s.xp_total[l], 0);
            if (cases[i].n_rewards > 0) {
                assert_non_null(s.rewards);
                assert_int_equal(s.rewards[cases[i].n_rewards - 1].quantity, 0);
            }
        } else {
            assert_null(s.xp_total);
            assert_null(s.rewards);
        }
        bp_season_fini(&s);
        assert_null(s.xp_total);
        assert_null(s.rewards);
        bp_season_fini(&s); /* twice is fine */
    }
    bp_season_t zero;
    memset(&zero, 0, sizeof zero);
    bp_season_fini(&zero);
    bp_season_fini(NULL);
}

typedef void (*mutate_fn)(bp_season_t *s);

static void m_none(bp_season_t *s)
{
    (void)s;
}
static void m_id_empty(bp_season_t *s)
{
    s->id[0] = '\0';
}
static void m_id_65(bp_season_t *s)
{
    set_field(s->id, sizeof s->id, S65);
}
static void m_id_64(bp_season_t *s)
{
    set_field(s->id, sizeof s->id, S64);
}
static void m_id_bad(bp_season_t *s)
{
    strcpy(s->id, "season 1");
}
static void m_name_empty(bp_season_t *s)
{
    s->name[0] = '\0';
}
static void m_name_long(bp_season_t *s)
{
    memset(s->name, 'n', sizeof s->name);
}
static void m_ends_eq(bp_season_t *s)
{
    s->ends_at_ms = s->starts_at_ms;
}
static void m_ends_before(bp_season_t *s)
{
    s->ends_at_ms = s->starts_at_ms - DAY;
}
static void m_ends_plus1(bp_season_t *s)
{
    s->ends_at_ms = s->starts_at_ms + 1;
}
static void m_max0(bp_season_t *s)
{
    s->max_level = 0;
}
static void m_maxbig(bp_season_t *s)
{
    s->max_level = BP_LEVEL_MAX + 1;
}
static void m_no_levels(bp_season_t *s)
{
    free(s->xp_total);
    s->xp_total = NULL;
}
static void m_first_not0(bp_season_t *s)
{
    s->xp_total[1] = 5;
}
static void m_equal(bp_season_t *s)
{
    s->xp_total[3] = 100;
}
static void m_decrease(bp_season_t *s)
{
    s->xp_total[5] = 400;
}
static void m_inc_by_one(bp_season_t *s)
{
    s->xp_total[2] = 1;
    s->xp_total[3] = 2;
    s->xp_total[4] = 3;
    s->xp_total[5] = 4;
}
static void m_rew_level0(bp_season_t *s)
{
    s->rewards[1].level = 0;
}
static void m_rew_level6(bp_season_t *s)
{
    s->rewards[2].level = 6;
}
static void m_rew_tier(bp_season_t *s)
{
    s->rewards[0].tier = (bp_tier_t)7;
}
static void m_rew_id_empty(bp_season_t *s)
{
    s->rewards[1].reward_id[0] = '\0';
}
static void m_rew_id_65(bp_season_t *s)
{
    set_field(s->rewards[1].reward_id, sizeof s->rewards[1].reward_id, S65);
}
static void m_rew_item_bad(bp_season_t *s)
{
    strcpy(s->rewards[2].item_id, "emote wave");
}
static void m_rew_qty0(bp_season_t *s)
{
    s->rewards[0].quantity = 0;
}
static void m_rew_qty_neg(bp_season_t *s)
{
    s->rewards[0].quantity = -3;
}
static void m_rew_url_long(bp_season_t *s)
{
    memset(s->rewards[2].asset_url, 'u', sizeof s->rewards[2].asset_url);
}
static void m_rew_dup(bp_season_t *s)
{
    set_reward(&s->rewards[2], 1, BP_TIER_PREMIUM, "r1", "other", 2);
}
static void m_rew_same_id_other_tier(bp_season_t *s)
{
    set_reward(&s->rewards[2], 1, BP_TIER_FREE, "r2", "coins", 1);
}
static void m_rew_missing(bp_season_t *s)
{
    free(s->rewards);
    s->rewards = NULL;
}
static void m_rew_none(bp_season_t *s)
{
    free(s->rewards);
    s->rewards = NULL;
    s->n_rewards = 0;
}

/* Options. A valid boost and a valid overflow first; the others break one thing. */
static void set_boost(bp_boost_t *b, int64_t starts, int64_t ends, int32_t pct)
{
    memset(b, 0, sizeof *b);
    b->starts_at_ms = starts;
    b->ends_at_ms = ends;
    b->multiplier_pct = pct;
}
static void m_options_ok(bp_season_t *s)
{
    s->auto_claim = true;
    s->grant_unclaimed_at_end = true;
    s->claim_window_ms = 7 * DAY;
    s->late_grace_ms = DAY;
    s->daily_xp_cap = 5000;
    set_boost(&s->boosts[0], T2026, T2026 + 2 * DAY, 200);
    set_boost(&s->boosts[1], T2026 + DAY, T2026 + 3 * DAY, 150);
    strcpy(s->boosts[1].reasons[0], "match_complete");
    strcpy(s->boosts[1].reasons[1], "mission complete!");
    s->boosts[1].n_reasons = 2;
    s->n_boosts = 2;
    s->overflow = BP_OVERFLOW_BONUS_LEVELS;
    s->overflow_xp_per_level = 1000;
    set_reward(&s->overflow_reward, 0, BP_TIER_PREMIUM, "bonus", "chest.bonus", 1);
}
static void m_window_neg(bp_season_t *s)
{
    s->claim_window_ms = -1;
}
static void m_window_max(bp_season_t *s)
{
    s->claim_window_ms = BP_WINDOW_MS_MAX;
}
static void m_window_big(bp_season_t *s)
{
    s->claim_window_ms = BP_WINDOW_MS_MAX + 1;
}
static void m_grace_neg(bp_season_t *s)
{
    s->late_grace_ms = -DAY;
}
static void m_grace_max(bp_season_t *s)
{
    s->late_grace_ms = BP_WINDOW_MS_MAX;
}
static void m_grace_big(bp_season_t *s)
{
    s->late_grace_ms = INT64_MAX;
}
static void m_cap_neg(bp_season_t *s)
{
    s->daily_xp_cap = -1;
}
static void m_cap_max(bp_season_t *s)
{
    s->daily_xp_cap = 1000000000;
}
static void m_cap_big(bp_season_t *s)
{
    s->daily_xp_cap = 1000000001;
}
static void m_boosts_16(bp_season_t *s)
{
    for (size_t i = 0; i < BP_BOOSTS_MAX; i++)
        set_boost(&s->boosts[i], T2026 + (int64_t)i * DAY, T2026 + (int64_t)(i + 1) * DAY, 200);
    s->n_boosts = BP_BOOSTS_MAX;
}
static void m_boosts_17(bp_season_t *s)
{
    m_boosts_16(s);
    s->n_boosts = BP_BOOSTS_MAX + 1;
}
static void m_boost_pct_100(bp_season_t *s)
{
    m_options_ok(s);
    s->boosts[1].multiplier_pct = 100;
}
static void m_boost_pct_101(bp_season_t *s)
{
    m_options_ok(s);
    s->boosts[1].multiplier_pct = 101;
}
static void m_boost_pct_1000(bp_season_t *s)
{
    m_options_ok(s);
    s->boosts[1].multiplier_pct = 1000;
}
static void m_boost_pct_1001(bp_season_t *s)
{
    m_options_ok(s);
    s->boosts[1].multiplier_pct = 1001;
}
static void m_boost_pct_0(bp_season_t *s)
{
    m_options_ok(s);
    s->boosts[0].multiplier_pct = 0;
}
static void m_boost_ends_eq(bp_season_t *s)
{
    m_options_ok(s);
    s->boosts[0].ends_at_ms = s->boosts[0].starts_at_ms;
}
static void m_boost_ends_before(bp_season_t *s)
{
    m_options_ok(s);
    s->boosts[1].ends_at_ms = T2026;
}
static void m_boost_ends_plus1(bp_season_t *s)
{
    m_options_ok(s);
    s->boosts[0].ends_at_ms = s->boosts[0].starts_at_ms + 1;
}
static void m_boost_reasons_9(bp_season_t *s)
{
    m_options_ok(s);
    s->boosts[1].n_reasons = BP_BOOST_REASONS_MAX + 1;
}
static void m_boost_reasons_8(bp_season_t *s)
{
    m_options_ok(s);
    for (size_t j = 0; j < BP_BOOST_REASONS_MAX; j++)
        snprintf(s->boosts[1].reasons[j], sizeof s->boosts[1].reasons[j], "reason-%zu", j);
    s->boosts[1].n_reasons = BP_BOOST_REASONS_MAX;
}
static void m_boost_reason_empty(bp_season_t *s)
{
    m_options_ok(s);
    s->boosts[1].reasons[1][0] = '\0';
}
static void m_boost_reason_64(bp_season_t *s)
{
    m_options_ok(s);
    set_field(s->boosts[1].reasons[0], sizeof s->boosts[1].reasons[0], S64);
}
static void m_boost_reason_65(bp_season_t *s)
{
    m_options_ok(s);
    set_field(s->boosts[1].reasons[0], sizeof s->boosts[1].reasons[0], S65);
}
static void m_boost_reason_ctrl(bp_season_t *s)
{
    m_options_ok(s);
    strcpy(s->boosts[1].reasons[1], "tab\there\x7f");
}
static void m_overflow_ok_none(bp_season_t *s)
{
    m_options_ok(s);
    s->overflow = BP_OVERFLOW_NONE; /* the rest is ignored */
    s->overflow_xp_per_level = -5;
    s->overflow_reward.quantity = 0;
}
static void m_overflow_xp0(bp_season_t *s)
{
    m_options_ok(s);
    s->overflow_xp_per_level = 0;
}
static void m_overflow_xp_big(bp_season_t *s)
{
    m_options_ok(s);
    s->overflow_xp_per_level = 1000000001;
}
static void m_overflow_xp_999(bp_season_t *s)
{
    m_options_ok(s);
    s->overflow_xp_per_level = 999;
}

static void m_overflow_xp_1000(bp_season_t *s)
{
    m_options_ok(s);
    s->overflow_xp_per_level = 1000;
}
static void m_overflow_reward_id(bp_season_t *s)
{
    m_options_ok(s);
    s->overflow_reward.reward_id[0] = '\0';
}
static void m_overflow_item_id(bp_season_t *s)
{
    m_options_ok(s);
    strcpy(s->overflow_reward.item_id, "chest bonus");
}
static void m_overflow_qty0(bp_season_t *s)
{
    m_options_ok(s);
    s->overflow_reward.quantity = 0;
}
static void m_overflow_tier(bp_season_t *s)
{
    m_options_ok(s);
    s->overflow_reward.tier = (bp_tier_t)2;
}
static void m_overflow_url(bp_season_t *s)
{
    m_options_ok(s);
    memset(s->overflow_reward.asset_url, 'u', sizeof s->overflow_reward.asset_url);
}
static void m_overflow_policy(bp_season_t *s)
{
    s->overflow = (bp_overflow_t)7;
}

static void test_validate(void **state)
{
    static const struct {
        const char *name;
        mutate_fn mutate;
        const char *why; /* NULL: valid */
    } cases[] = {
        {"valid", m_none, NULL},
        {"id 64 bytes", m_id_64, NULL},
        {"id empty", m_id_empty, "id is empty"},
        {"id 65 bytes", m_id_65, "id \"" S65 "\" is not 1..64 characters of [A-Za-z0-9._:@-]"},
        {"id bad char", m_id_bad, "id \"season 1\" is not 1..64 characters of [A-Za-z0-9._:@-]"},
        {"name empty", m_name_empty, "name is empty"},
        {"name too long", m_name_long, "name is longer than 128 bytes"},
        {"ends == starts", m_ends_eq,
         "endsAt 2026-01-01T00:00:00.000Z is not after startsAt 2026-01-01T00:00:00.000Z"},
        {"ends < starts", m_ends_before,
         "endsAt 2025-12-31T00:00:00.000Z is not after startsAt 2026-01-01T00:00:00.000Z"},
        {"ends = starts + 1ms", m_ends_plus1, NULL},
        {"maxLevel 0", m_max0, "maxLevel 0 is out of range 1..10000"},
        {"maxLevel too big", m_maxbig, "maxLevel 10001 is out of range 1..10000"},
        {"no levels", m_no_levels, "levels are missing (maxLevel 5)"},
        {"level 1 not 0", m_first_not0, "levels[1].xpTotal 5 must be 0"},
        {"equal thresholds", m_equal, "levels[3].xpTotal 100 is not greater than level 2's 100"},
        {"decreasing", m_decrease, "levels[5].xpTotal 400 is not greater than level 4's 450"},
        {"increasing by one", m_inc_by_one, NULL},
        {"reward level 0", m_rew_level0, "rewards[1].level 0 is out of range 1..5"},
        {"reward level max+1", m_rew_level6, "rewards[2].level 6 is out of range 1..5"},
        {"reward tier", m_rew_tier, "rewards[0].tier 7 is neither free nor premium"},
        {"rewardId empty", m_rew_id_empty,
         "rewards[1].rewardId \"\" is not 1..64 characters of [A-Za-z0-9._:@-]"},
        {"rewardId 65", m_rew_id_65,
         "rewards[1].rewardId \"" S65 "\" is not 1..64 characters of [A-Za-z0-9._:@-]"},
        {"itemId bad", m_rew_item_bad,
         "rewards[2].itemId \"emote wave\" is not 1..64 characters of [A-Za-z0-9._:@-]"},
        {"quantity 0", m_rew_qty0, "rewards[0].quantity 0 must be > 0"},
        {"quantity negative", m_rew_qty_neg, "rewards[0].quantity -3 must be > 0"},
        {"assetUrl too long", m_rew_url_long, "rewards[2].assetUrl is longer than 512 bytes"},
        {"duplicate reward", m_rew_dup,
         "rewards[2] repeats rewards[1] (level 1, tier premium, rewardId \"r1\")"},
        {"same level, other rewardId", m_rew_same_id_other_tier, NULL},
        {"rewards missing", m_rew_missing, "rewards are missing (3 declared)"},
        {"no rewards", m_rew_none, NULL},
        {"every option set", m_options_ok, NULL},
        {"claim window -1", m_window_neg, "claimWindowMs -1 is out of range 0..31536000000"},
        {"claim window a year", m_window_max, NULL},
        {"claim window past a year", m_window_big,
         "claimWindowMs 31536000001 is out of range 0..31536000000"},
        {"late grace negative", m_grace_neg,
         "lateEventGraceMs -86400000 is out of range 0..31536000000"},
        {"late grace a year", m_grace_max, NULL},
        {"late grace huge", m_grace_big,
         "lateEventGraceMs 9223372036854775807 is out of range 0..31536000000"},
        {"daily cap -1", m_cap_neg, "dailyXpCap -1 is out of range 0..1000000000"},
        {"daily cap 10^9", m_cap_max, NULL},
        {"daily cap 10^9 + 1", m_cap_big, "dailyXpCap 1000000001 is out of range 0..1000000000"},
        {"16 boosts", m_boosts_16, NULL},
        {"17 boosts", m_boosts_17, "xpBoosts has 17 entries, more than 16"},
        {"boost x1.00", m_boost_pct_100, "xpBoosts[1].multiplierPct 100 is out of range 101..1000"},
        {"boost x1.01", m_boost_pct_101, NULL},
        {"boost x10", m_boost_pct_1000, NULL},
        {"boost x10.01", m_boost_pct_1001,
         "xpBoosts[1].multiplierPct 1001 is out of range 101..1000"},
        {"boost x0", m_boost_pct_0, "xpBoosts[0].multiplierPct 0 is out of range 101..1000"},
        {"boost ends == starts", m_boost_ends_eq,
         "xpBoosts[0].endsAt 2026-01-01T00:00:00.000Z is not after startsAt "
         "2026-01-01T00:00:00.000Z"},
        {"boost ends before starts", m_boost_ends_before,
         "xpBoosts[1].endsAt 2026-01-01T00:00:00.000Z is not after startsAt "
         "2026-01-02T00:00:00.000Z"},
        {"boost of 1 ms", m_boost_ends_plus1, NULL},
        {"boost with 9 reasons", m_boost_reasons_9,
         "xpBoosts[1].reasons has 9 entries, more than 8"},
        {"boost with 8 reasons", m_boost_reasons_8, NULL},
        {"boost reason empty", m_boost_reason_empty,
         "xpBoosts[1].reasons[1] \"\" is not 1..64 characters of printable ASCII"},
        {"boost reason 64 bytes", m_boost_reason_64, NULL},
        {"boost reason 65 bytes", m_boost_reason_65,
         "xpBoosts[1].reasons[0] \"" S65 "\" is not 1..64 characters of printable ASCII"},
        {"boost reason control chars", m_boost_reason_ctrl,
         "xpBoosts[1].reasons[1] \"tab?here?\" is not 1..64 characters of printable ASCII"},
        {"overflow none ignores the rest", m_overflow_ok_none, NULL},
        {"overflow xpPerLevel 0", m_overflow_xp0,
         "overflow.xpPerLevel 0 is out of range 1000..1000000000"},
        {"overflow xpPerLevel 999", m_overflow_xp_999,
         "overflow.xpPerLevel 999 is out of range 1000..1000000000"},
        {"overflow xpPerLevel 1000", m_overflow_xp_1000, NULL},
        {"overflow xpPerLevel too big", m_overflow_xp_big,
         "overflow.xpPerLevel 1000000001 is out of range 1000..1000000000"},
        {"overflow rewardId empty", m_overflow_reward_id,
         "overflow.reward.rewardId \"\" is not 1..64 characters of [A-Za-z0-9._:@-]"},
        {"overflow itemId bad", m_overflow_item_id,
         "overflow.reward.itemId \"chest bonus\" is not 1..64 characters of [A-Za-z0-9._:@-]"},
        {"overflow quantity 0", m_overflow_qty0, "overflow.reward.quantity 0 must be > 0"},
        {"overflow tier", m_overflow_tier, "overflow.reward.tier 2 is neither free nor premium"},
        {"overflow assetUrl too long", m_overflow_url,
         "overflow.reward.assetUrl is longer than 512 bytes"},
        {"overflow policy unknown", m_overflow_policy,
         "overflow.policy 7 is neither none nor bonusLevels"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bp_season_t s;
        char why[256] = "untouched";
        make_season(&s);
        cases[i].mutate(&s);
        bp_err_t err = bp_season_validate(&s, why, sizeof why);
        if (cases[i].why == NULL) {
            if (err != BP_OK)
                fail_msg("%s: expected valid, got %d (%s)", cases[i].name, err, why);
        } else if (err != BP_EINVAL || strcmp(why, cases[i].why) != 0) {
            fail_msg("%s: expected \"%s\", got %d (%s)", cases[i].name, cases[i].why, err, why);
        }
        assert_int_equal(bp_season_validate(&s, NULL, 0), err);
        char tiny[8];
        assert_int_equal(bp_season_validate(&s, tiny, sizeof tiny), err);
        assert_true(strlen(tiny) < sizeof tiny);
        bp_season_fini(&s);
    }
}

/* Many rewards, duplicate far apart: the sort-based check must still see it. */
static void test_validate_many_rewards(void **state)
{
    bp_season_t s;
    char why[256];
    (void)state;
    assert_int_equal(bp_season_init(&s, BP_LEVEL_MAX, 2 * BP_LEVEL_MAX), BP_OK);
    strcpy(s.id, "big");
    strcpy(s.name, "Big");
    s.starts_at_ms = 1;
    s.ends_at_ms = 2;
    for (int32_t l = 1; l <= BP_LEVEL_MAX; l++)
        s.xp_total[l] = (int64_t)(l - 1) * 10;
    for (size_t i = 0; i < s.n_rewards; i++) {
        char id[32];
        snprintf(id, sizeof id, "r%zu", i / 2);
        set_reward(&s.rewards[i], (int32_t)(BP_LEVEL_MAX - i / 2),
                   i % 2 ? BP_TIER_PREMIUM : BP_TIER_FREE, id, "item", 1);
    }
    assert_int_equal(bp_season_validate(&s, why, sizeof why), BP_OK);
    s.rewards[s.n_rewards - 1] = s.rewards[1];
    assert_int_equal(bp_season_validate(&s, why, sizeof why), BP_EINVAL);
    assert_string_equal(why, "rewards[19999] repeats rewards[1] (level 10000, tier premium, "
                             "rewardId \"r0\")");
    bp_season_fini(&s);
}

static void test_status(void **state)
{
    static const struct {
        int64_t now;
        bp_season_status_t st;
        const char *str;
    } cases[] = {
        {INT64_MIN, BP_SEASON_UPCOMING, "upcoming"},
        {T2026 - 1, BP_SEASON_UPCOMING, "upcoming"},
        {T2026, BP_SEASON_ACTIVE, "active"},
        {T2026 + DAY, BP_SEASON_ACTIVE, "active"},
        {T2026 + 90 * DAY - 1, BP_SEASON_ACTIVE, "active"},
        {T2026 + 90 * DAY, BP_SEASON_ENDED, "ended"},
        {INT64_MAX, BP_SEASON_ENDED, "ended"},
    };
    bp_season_t s;
    (void)state;
    make_season(&s);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bp_season_status_t st = bp_season_status(&s, cases[i].now);
        if (st != cases[i].st)
            fail_msg("case %zu: expected %d, got %d", i, cases[i].st, st);
        assert_string_equal(bp_season_status_str(st), cases[i].str);
    }
    bp_season_fini(&s);
}

static void test_overlap(void **state)
{
    static const struct {
        int64_t a0, a1, b0, b1;
        bool overlap;
    } cases[] = {
        {0, 10, 10, 20, false}, /* touching: end is exclusive */
        {0, 10, 9, 20, true},   {0, 10, 20, 30, false}, {0, 10, 0, 10, true},
        {0, 10, 2, 3, true},    {0, 10, -5, 1, true},   {0, 10, -5, 0, false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bp_season_t a = {.starts_at_ms = cases[i].a0, .ends_at_ms = cases[i].a1};
        bp_season_t b = {.starts_at_ms = cases[i].b0, .ends_at_ms = cases[i].b1};
        if (bp_seasons_overlap(&a, &b) != cases[i].overlap ||
            bp_seasons_overlap(&b, &a) != cases[i].overlap)
            fail_msg("case %zu: expected overlap=%d both ways", i, cases[i].overlap);
    }
}

/* Three seasons: s1 [1000, 2000), s2 [2000, 3000), gap, s3 [5000, 6000). */
static void make_seasons(bp_season_t *ss)
{
    static const char *ids[] = {"s1", "s2", "s3"};
    static const int64_t win[][2] = {{1000, 2000}, {2000, 3000}, {5000, 6000}};
    memset(ss, 0, 3 * sizeof *ss);
    for (int i = 0; i < 3; i++) {
        strcpy(ss[i].id, ids[i]);
        ss[i].starts_at_ms = win[i][0];
        ss[i].ends_at_ms = win[i][1];
    }
}

static void test_find_at(void **state)
{
    static const struct {
        const char *id;
        int idx;
    } finds[] = {{"s1", 0}, {"s2", 1}, {"s3", 2}, {"s4", -1}, {"", -1}, {"S1", -1}, {"s", -1}};
    static const struct {
        int64_t t;
        int idx;
    } ats[] = {{INT64_MIN, -1}, {999, -1},  {1000, 0}, {1999, 0}, {2000, 1},  {2999, 1},
               {3000, -1},      {4999, -1}, {5000, 2}, {5999, 2}, {6000, -1}, {INT64_MAX, -1}};
    bp_season_t ss[3];
    (void)state;
    make_seasons(ss);
    for (size_t i = 0; i < sizeof finds / sizeof finds[0]; i++) {
        int got = bp_season_find(ss, 3, finds[i].id);
        if (got != finds[i].idx)
            fail_msg("find \"%s\": expected %d, got %d", finds[i].id, finds[i].idx, got);
    }
    assert_int_equal(bp_season_find(ss, 0, "s1"), -1);
    assert_int_equal(bp_season_find(ss, 3, NULL), -1);
    for (size_t i = 0; i < sizeof ats / sizeof ats[0]; i++) {
        int got = bp_season_at(ss, 3, ats[i].t);
        if (got != ats[i].idx)
            fail_msg("at %lld: expected %d, got %d", (long long)ats[i].t, ats[i].idx, got);
    }
    assert_int_equal(bp_season_at(ss, 0, 1500), -1);
}

static void test_attribute(void **state)
{
    static const struct {
        const char *season_id;
        int64_t t;
        bp_err_t err;
        int idx;
        const char *why;
    } cases[] = {
        {"", 1000, BP_OK, 0, NULL},
        {"", 1999, BP_OK, 0, NULL},
        {"", 2000, BP_OK, 1, NULL},
        {"", 999, BP_OK, -1, NULL},  /* before every season */
        {"", 4000, BP_OK, -1, NULL}, /* in the gap */
        {"", 6000, BP_OK, -1, NULL}, /* after every season */
        {"s1", 1000, BP_OK, 0, NULL},
        {"s1", 1999, BP_OK, 0, NULL},
        {"s3", 5500, BP_OK, 2, NULL},
        {"s1", 2000, BP_EINVAL, -1, "occurredAt is outside the window of the named season"},
        {"s1", 999, BP_EINVAL, -1, "occurredAt is outside the window of the named season"},
        {"s2", 1500, BP_EINVAL, -1, "occurredAt is outside the window of the named season"},
        {"s9", 1500, BP_EINVAL, -1, "seasonId names no known season"},
        {"s9", 4000, BP_EINVAL, -1, "seasonId names no known season"},
    };
    bp_season_t ss[3];
    (void)state;
    make_seasons(ss);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bp_xp_event_t ev;
        memset(&ev, 0, sizeof ev);
        strcpy(ev.event_id, "e");
        strcpy(ev.player_id, "p");
        strcpy(ev.season_id, cases[i].season_id);
        ev.occurred_at_ms = cases[i].t;
        int idx = 42;
        const char *why = "untouched";
        bp_err_t err = bp_event_attribute(ss, 3, &ev, &idx, &why);
        if (err != cases[i].err || idx != cases[i].idx ||
            (cases[i].why == NULL ? why != NULL : why == NULL || strcmp(why, cases[i].why) != 0))
            fail_msg("case %zu (\"%s\" at %lld): expected %d/%d/%s, got %d/%d/%s", i,
                     cases[i].season_id, (long long)cases[i].t, cases[i].err, cases[i].idx,
                     cases[i].why ? cases[i].why : "NULL", err, idx, why ? why : "NULL");
        assert_int_equal(bp_event_attribute(ss, 3, &ev, &idx, NULL), cases[i].err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_fini),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_validate_many_rewards),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_find_at),
        cmocka_unit_test(test_attribute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
