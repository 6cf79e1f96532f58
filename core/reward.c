/** @file Reward rules: states, claim decisions, unlocks, grant ids, purchases, boosts, caps. */
#include "core/reward.h"

#include <stdio.h>
#include <string.h>

#include "core/level.h"

/* Indexed by bp_reward_state_t. */
static const char *const state_names[] = {
    [BP_REWARD_LOCKED] = "locked",
    [BP_REWARD_AVAILABLE] = "available",
    [BP_REWARD_CLAIMED] = "claimed",
};

static const struct {
    const char *name;
    bp_tier_t tier;
} tiers[] = {
    {"free", BP_TIER_FREE},
    {"premium", BP_TIER_PREMIUM},
};

/* Indexed by bp_claim_verdict_t: the HTTP status and reason of each verdict. */
static const struct {
    int status;
    const char *str;
} verdicts[] = {
    [BP_CLAIM_OK] = {200, "ok"},
    [BP_CLAIM_NO_SUCH_REWARD] = {404, "no such reward"},
    [BP_CLAIM_NOT_OPEN] = {409, "claims are not open"},
    [BP_CLAIM_LEVEL_NOT_REACHED] = {422, "level not reached"},
    [BP_CLAIM_PREMIUM_REQUIRED] = {403, "premium pass required"},
    [BP_CLAIM_ALREADY_CLAIMED] = {409, "already claimed"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* a + b for b >= 0, saturating at INT64_MAX: an end of season near the end of time plus a
 * window must not wrap into the past. Negative b (an invalid definition) counts as 0. */
static int64_t add_window(int64_t a, int64_t b)
{
    if (b <= 0)
        return a;
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

static bool tier_valid(bp_tier_t tier)
{
    return tier == BP_TIER_FREE || tier == BP_TIER_PREMIUM;
}

const char *bp_reward_state_str(bp_reward_state_t st)
{
    if ((unsigned)st >= COUNT(state_names))
        return "unknown";
    return state_names[st];
}

const char *bp_tier_str(bp_tier_t tier)
{
    for (size_t i = 0; i < COUNT(tiers); i++) {
        if (tiers[i].tier == tier)
            return tiers[i].name;
    }
    return "unknown";
}

bp_err_t bp_tier_parse(const char *s, bp_tier_t *out)
{
    if (s == NULL)
        return BP_EINVAL;
    for (size_t i = 0; i < COUNT(tiers); i++) {
        if (strcmp(s, tiers[i].name) == 0) {
            *out = tiers[i].tier;
            return BP_OK;
        }
    }
    return BP_EINVAL;
}

bp_reward_state_t bp_reward_state(const bp_reward_t *r, int32_t level, bool premium, bool claimed)
{
    if (claimed)
        return BP_REWARD_CLAIMED;
    if (r->level > level || (r->tier == BP_TIER_PREMIUM && !premium))
        return BP_REWARD_LOCKED;
    return BP_REWARD_AVAILABLE;
}

int bp_claim_verdict_status(bp_claim_verdict_t v)
{
    if ((unsigned)v >= COUNT(verdicts))
        return 500;
    return verdicts[v].status;
}

const char *bp_claim_verdict_str(bp_claim_verdict_t v)
{
    if ((unsigned)v >= COUNT(verdicts))
        return "unknown verdict";
    return verdicts[v].str;
}

bool bp_claims_open(const bp_season_t *s, int64_t now_ms)
{
    return s->starts_at_ms <= now_ms && now_ms < add_window(s->ends_at_ms, s->claim_window_ms);
}

bp_claim_verdict_t bp_claim_decide(const bp_season_t *s, int32_t level, bp_tier_t tier,
                                   int32_t player_level, bool premium, bool all_claimed,
                                   int64_t now_ms)
{
    if (bp_rewards_at(s, level, tier, NULL, 0) == 0)
        return BP_CLAIM_NO_SUCH_REWARD;
    if (!bp_claims_open(s, now_ms))
        return BP_CLAIM_NOT_OPEN;
    if (player_level < level)
        return BP_CLAIM_LEVEL_NOT_REACHED;
    if (tier == BP_TIER_PREMIUM && !premium)
        return BP_CLAIM_PREMIUM_REQUIRED;
    if (all_claimed)
        return BP_CLAIM_ALREADY_CLAIMED;
    return BP_CLAIM_OK;
}

/* The one scan behind the index queries: rewards with level in (lo, hi] whose tier is
 * accepted, in storage order. */
static size_t collect(const bp_season_t *s, int32_t lo, int32_t hi, bool want_free,
                      bool want_premium, size_t *idx, size_t cap)
{
    size_t n = 0;

    if (s == NULL || s->rewards == NULL || hi <= lo)
        return 0;
    for (size_t i = 0; i < s->n_rewards; i++) {
        const bp_reward_t *r = &s->rewards[i];
        bool tier_ok =
            (r->tier == BP_TIER_FREE && want_free) || (r->tier == BP_TIER_PREMIUM && want_premium);
        if (r->level <= lo || r->level > hi || !tier_ok)
            continue;
        if (idx != NULL && n < cap)
            idx[n] = i;
        n++;
    }
    return n;
}

size_t bp_rewards_at(const bp_season_t *s, int32_t level, bp_tier_t tier, size_t *idx, size_t cap)
{
    if (!tier_valid(tier) || level == INT32_MIN)
        return 0;
    return collect(s, level - 1, level, tier == BP_TIER_FREE, tier == BP_TIER_PREMIUM, idx, cap);
}

size_t bp_rewards_unlocked(const bp_season_t *s, int32_t old_level, int32_t new_level, bool premium,
                           size_t *idx, size_t cap)
{
    /* Rewards sit on levels >= 1, so any old level <= 0 means "nothing reached yet". */
    return collect(s, old_level, new_level, true, premium, idx, cap);
}

size_t bp_rewards_premium_upto(const bp_season_t *s, int32_t level, size_t *idx, size_t cap)
{
    return collect(s, 0, level, false, true, idx, cap);
}

bp_err_t bp_grant_id(char *buf, size_t len, const char *season_id, const char *player_id,
                     int32_t level, bp_tier_t tier, const char *reward_id)
{
    int n;

    if (buf == NULL || len == 0)
        return BP_EINVAL;
    buf[0] = '\0';
    /* An unknown tier or a missing id would make ids that collide or mean nothing. */
    if (season_id == NULL || player_id == NULL || reward_id == NULL || !tier_valid(tier))
        return BP_EINVAL;
    n = snprintf(buf, len, "grant:%s:%s:%d:%s:%s", season_id, player_id, (int)level,
                 bp_tier_str(tier), reward_id);
    if (n < 0 || (size_t)n >= len) {
        buf[0] = '\0';
        return BP_EINVAL;
    }
    return BP_OK;
}

bp_err_t bp_level_purchase_xp(const bp_season_t *s, int64_t total_xp, int32_t count,
                              int64_t *paid_xp)
{
    bp_level_info_t info;
    int64_t target;

    if (s == NULL || s->xp_total == NULL || s->max_level < 1 || count < 1)
        return BP_EINVAL;
    if (total_xp < 0) /* as bp_level_for_xp() does */
        total_xp = 0;
    info = bp_level_for_xp(s, total_xp);
    if (info.level >= s->max_level)
        return BP_EINVAL;
    target = (int64_t)info.level + count; /* no int32 overflow for count near INT32_MAX */
    if (target > s->max_level)
        target = s->max_level;
    *paid_xp = s->xp_total[target] - total_xp;
    return BP_OK;
}

static bool boost_matches(const bp_boost_t *b, int64_t t, const char *reason)
{
    size_t n = b->n_reasons < BP_BOOST_REASONS_MAX ? b->n_reasons : BP_BOOST_REASONS_MAX;

    if (t < b->starts_at_ms || t >= b->ends_at_ms)
        return false;
    if (n == 0)
        return true;
    if (reason == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(b->reasons[i], reason, sizeof b->reasons[i]) == 0)
            return true;
    }
    return false;
}

int32_t bp_boost_pct(const bp_season_t *s, int64_t occurred_at_ms, const char *reason)
{
    int32_t best = 100;
    size_t n = s->n_boosts < BP_BOOSTS_MAX ? s->n_boosts : BP_BOOSTS_MAX;

    for (size_t i = 0; i < n; i++) {
        const bp_boost_t *b = &s->boosts[i];
        if (b->multiplier_pct > best && boost_matches(b, occurred_at_ms, reason))
            best = b->multiplier_pct;
    }
    return best;
}

int64_t bp_daily_cap_allow(int64_t cap, int64_t earned_today, int64_t amount)
{
    if (amount <= 0)
        return 0;
    if (cap <= 0) /* 0 is "no cap"; a negative cap is invalid and caps nothing either */
        return amount;
    if (earned_today < 0)
        earned_today = 0;
    if (earned_today >= cap)
        return 0;
    return amount < cap - earned_today ? amount : cap - earned_today;
}

int64_t bp_overflow_levels(const bp_season_t *s, int64_t total_xp)
{
    int64_t top;

    if (s->overflow != BP_OVERFLOW_BONUS_LEVELS || s->overflow_xp_per_level <= 0 ||
        s->xp_total == NULL || s->max_level < 1)
        return 0;
    top = s->xp_total[s->max_level];
    if (total_xp <= top)
        return 0;
    return (total_xp - top) / s->overflow_xp_per_level;
}

int64_t bp_overflow_crossed(const bp_season_t *s, int64_t old_total, int64_t new_total,
                            int64_t *first_k)
{
    int64_t lo = bp_overflow_levels(s, old_total);
    int64_t hi = bp_overflow_levels(s, new_total);
    int64_t k_max = s->max_level >= 1 ? (int64_t)INT32_MAX - s->max_level : 0;

    if (lo > k_max)
        lo = k_max;
    if (hi > k_max)
        hi = k_max;
    if (hi <= lo)
        return 0;
    if (first_k)
        *first_k = lo + 1;
    return hi - lo;
}

bool bp_season_accepts(const bp_season_t *s, int64_t now_ms)
{
    return now_ms < add_window(s->ends_at_ms, s->late_grace_ms);
}
