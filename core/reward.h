/** @file Reward rules: each reward's state for a player, claim decisions, which rewards a
 *  level-up or a premium purchase unlocks, grant ids, level purchases, boosts, daily caps
 *  and overflow levels. */
#ifndef BP_REWARD_H
#define BP_REWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/season.h"

typedef enum { BP_REWARD_LOCKED = 0, BP_REWARD_AVAILABLE, BP_REWARD_CLAIMED } bp_reward_state_t;

/** @return "locked", "available" or "claimed". */
const char *bp_reward_state_str(bp_reward_state_t st);
/** @return "free" or "premium". */
const char *bp_tier_str(bp_tier_t tier);
/** Parse "free" or "premium". @return BP_OK or BP_EINVAL. */
bp_err_t bp_tier_parse(const char *s, bp_tier_t *out) BP_MUSTCHECK;

/**
 * State of reward @p r for a player at @p level with @p premium who has (@p claimed) or has
 * not got it: claimed wins; a reward above the player's level or of the premium tier
 * without premium is locked; else available.
 */
bp_reward_state_t bp_reward_state(const bp_reward_t *r, int32_t level, bool premium, bool claimed);

/** Why a claim of (level, tier) is refused, or BP_CLAIM_OK. Each maps to an HTTP status. */
typedef enum {
    BP_CLAIM_OK = 0,
    BP_CLAIM_NO_SUCH_REWARD,    /**< 404: the season has no reward at (level, tier) */
    BP_CLAIM_NOT_OPEN,          /**< 409: the season has not started, or its claim window closed */
    BP_CLAIM_LEVEL_NOT_REACHED, /**< 422 */
    BP_CLAIM_PREMIUM_REQUIRED,  /**< 403 */
    BP_CLAIM_ALREADY_CLAIMED    /**< 409 */
} bp_claim_verdict_t;

/** @return the HTTP status of @p v (200 for BP_CLAIM_OK). */
int bp_claim_verdict_status(bp_claim_verdict_t v);
/** @return a short static reason, e.g. "level not reached". */
const char *bp_claim_verdict_str(bp_claim_verdict_t v);

/**
 * Decide a claim of every reward at (@p level, @p tier), in this order: no such reward,
 * not open (now before starts_at, or at/after ends_at + claim_window_ms), level not
 * reached, premium required, already claimed (@p all_claimed: every reward at (level,
 * tier) is claimed already).
 */
bp_claim_verdict_t bp_claim_decide(const bp_season_t *s, int32_t level, bp_tier_t tier,
                                   int32_t player_level, bool premium, bool all_claimed,
                                   int64_t now_ms);

/** @return true while claims are accepted: starts_at <= now < ends_at + claim_window_ms. */
bool bp_claims_open(const bp_season_t *s, int64_t now_ms);

/**
 * Indices (into s->rewards, ascending) of the rewards at (@p level, @p tier).
 * @return how many there are; at most @p cap are written to @p idx.
 */
size_t bp_rewards_at(const bp_season_t *s, int32_t level, bp_tier_t tier, size_t *idx, size_t cap);

/**
 * Indices of the rewards a player gets access to when going from @p old_level to
 * @p new_level (levels old_level+1..new_level; old_level 0 for a new player, so level 1's
 * rewards count): free tier always, premium tier only with @p premium.
 * @return how many; at most @p cap written.
 */
size_t bp_rewards_unlocked(const bp_season_t *s, int32_t old_level, int32_t new_level, bool premium,
                           size_t *idx, size_t cap);

/**
 * Indices of the premium rewards on levels 1..@p level: what buying premium at that level
 * makes available at once. @return how many; at most @p cap written.
 */
size_t bp_rewards_premium_upto(const bp_season_t *s, int32_t level, size_t *idx, size_t cap);

/**
 * Write the deterministic grant id "grant:<seasonId>:<playerId>:<level>:<tier>:<rewardId>".
 * @return BP_OK, or BP_EINVAL when it does not fit (buf then holds "").
 */
bp_err_t bp_grant_id(char *buf, size_t len, const char *season_id, const char *player_id,
                     int32_t level, bp_tier_t tier, const char *reward_id) BP_MUSTCHECK;

/**
 * Paid XP that buys @p count levels from @p total_xp: the XP to reach xpTotal of
 * min(level + count, max_level), exactly.
 * @return BP_OK with *paid_xp > 0; BP_EINVAL when count < 1 or the player is already at
 *         max level.
 */
bp_err_t bp_level_purchase_xp(const bp_season_t *s, int64_t total_xp, int32_t count,
                              int64_t *paid_xp) BP_MUSTCHECK;

/** @return the boost in percent (100 = none) for an event at @p occurred_at_ms with
 *  @p reason: the highest multiplier among the boosts whose window contains the time and
 *  whose reasons (if any) include @p reason. */
int32_t bp_boost_pct(const bp_season_t *s, int64_t occurred_at_ms, const char *reason);

/** @return the XP an event may still add under a daily cap: min(amount, cap - earned_today),
 *  never negative; @p amount itself when @p cap is 0 (no cap). */
int64_t bp_daily_cap_allow(int64_t cap, int64_t earned_today, int64_t amount);

/** @return the bonus levels earned past max level at @p total_xp under the season's
 *  overflow policy (0 with BP_OVERFLOW_NONE). */
int64_t bp_overflow_levels(const bp_season_t *s, int64_t total_xp);

/**
 * The bonus levels a player crosses going from @p old_total to @p new_total XP: those k with
 * bp_overflow_levels(old) < k <= bp_overflow_levels(new), each granted once as level
 * max_level + k. Bonus levels whose number max_level + k would not fit an int32 are never
 * counted.
 * @param first_k out: the first bonus level crossed (k >= 1), when the result is > 0
 * @return how many (0 with BP_OVERFLOW_NONE, or when @p new_total <= @p old_total).
 */
int64_t bp_overflow_crossed(const bp_season_t *s, int64_t old_total, int64_t new_total,
                            int64_t *first_k);

/** @return true when an event of season @p s may still change progress when processed at
 *  @p now_ms: now < ends_at + late_grace_ms. */
bool bp_season_accepts(const bp_season_t *s, int64_t now_ms);

#endif
