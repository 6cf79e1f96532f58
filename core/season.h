/** @file Season definitions: the level curve and rewards, lifecycle status and attribution. */
#ifndef BP_SEASON_H
#define BP_SEASON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/event.h"

#define BP_SEASON_NAME_MAX 128
#define BP_ASSET_URL_MAX 512
/** Highest maxLevel a season may declare. */
#define BP_LEVEL_MAX 10000

typedef enum { BP_TIER_FREE = 0, BP_TIER_PREMIUM = 1 } bp_tier_t;

typedef enum { BP_SEASON_UPCOMING = 0, BP_SEASON_ACTIVE, BP_SEASON_ENDED } bp_season_status_t;

typedef struct {
    int32_t level;
    bp_tier_t tier;
    char reward_id[BP_ID_MAX + 1];
    char item_id[BP_ID_MAX + 1];
    int32_t quantity;
    char asset_url[BP_ASSET_URL_MAX + 1]; /**< "" when none */
} bp_reward_t;

/** Largest claim window and late-event grace: a year. */
#define BP_WINDOW_MS_MAX (INT64_C(365) * 24 * 3600 * 1000)
/** Largest daily XP cap and XP per overflow bonus level. */
#define BP_OPTION_XP_MAX INT64_C(1000000000)
/** Fewest XP per overflow bonus level: one event (at most BP_XP_AMOUNT_MAX XP) then crosses
 *  at most 1000 bonus levels, each a grant row. */
#define BP_OVERFLOW_XP_MIN INT64_C(1000)

/** Most boost windows one season may declare, and reasons one boost may name. */
#define BP_BOOSTS_MAX 16
#define BP_BOOST_REASONS_MAX 8
/** Range of a boost's multiplier in percent (x1.01 .. x10). */
#define BP_BOOST_PCT_MIN 101
#define BP_BOOST_PCT_MAX 1000

/** An XP boost window (e.g. a double-XP weekend). */
typedef struct {
    int64_t starts_at_ms;   /**< inclusive, compared with the event's occurredAt */
    int64_t ends_at_ms;     /**< exclusive */
    int32_t multiplier_pct; /**< 200 = double XP; BP_BOOST_PCT_MIN..BP_BOOST_PCT_MAX */
    size_t n_reasons;       /**< 0: every reason */
    char reasons[BP_BOOST_REASONS_MAX][BP_REASON_MAX + 1];
} bp_boost_t;

typedef enum { BP_OVERFLOW_NONE = 0, BP_OVERFLOW_BONUS_LEVELS } bp_overflow_t;

/**
 * A season. Owns xp_total and rewards (heap); release with bp_season_fini().
 * xp_total has max_level + 1 entries indexed by level; xp_total[0] is unused and
 * xp_total[1] is 0 (every player starts at level 1).
 */
typedef struct {
    char id[BP_ID_MAX + 1];
    char name[BP_SEASON_NAME_MAX + 1];
    int64_t starts_at_ms; /**< inclusive */
    int64_t ends_at_ms;   /**< exclusive */
    int32_t max_level;
    int64_t *xp_total;
    bp_reward_t *rewards;
    size_t n_rewards;
    /* Options (all optional in the definition; zero values are the defaults). */
    bool auto_claim;             /**< rewards are granted as levels are reached */
    int64_t claim_window_ms;     /**< claims still accepted this long after ends_at */
    bool grant_unclaimed_at_end; /**< when the claim window closes, grant what is available */
    int64_t late_grace_ms;       /**< events of the season processed up to this long after
                                  *   ends_at still count; later ones are only recorded */
    int64_t daily_xp_cap;        /**< earned XP per player per UTC day; 0 = no cap */
    bp_boost_t boosts[BP_BOOSTS_MAX];
    size_t n_boosts;
    bp_overflow_t overflow;        /**< XP past the last level */
    int64_t overflow_xp_per_level; /**< BP_OVERFLOW_BONUS_LEVELS: XP per bonus level */
    bp_reward_t overflow_reward;   /**< granted for each bonus level (level field unused) */
} bp_season_t;

/** Allocate xp_total for @p max_level levels (zeroed) and room for @p n_rewards rewards.
 *  @return BP_OK, BP_EINVAL (max_level out of 1..BP_LEVEL_MAX) or BP_ENOMEM. */
bp_err_t bp_season_init(bp_season_t *s, int32_t max_level, size_t n_rewards) BP_MUSTCHECK;
/** Free what bp_season_init() allocated; accepts a zeroed or already finalised season. */
void bp_season_fini(bp_season_t *s);

/**
 * Check a season definition: id valid, name non-empty, ends > starts, 1 <= max_level <=
 * BP_LEVEL_MAX, xp_total[1] == 0 and strictly increasing, each reward on a level in
 * 1..max_level with a valid rewardId and itemId and quantity > 0, no two rewards with the
 * same (level, tier, rewardId); options: 0 <= claim_window_ms, late_grace_ms <=
 * BP_WINDOW_MS_MAX, 0 <= daily_xp_cap <= BP_OPTION_XP_MAX, n_boosts <= BP_BOOSTS_MAX, each
 * boost with ends > starts, BP_BOOST_PCT_MIN <= multiplier_pct <= BP_BOOST_PCT_MAX and up to
 * BP_BOOST_REASONS_MAX reasons of 1..BP_REASON_MAX printable ASCII; overflow a known policy, and
 * with bonus levels BP_OVERFLOW_XP_MIN <= overflow_xp_per_level <= BP_OPTION_XP_MAX and a valid
 * overflow_reward (rewardId, itemId, quantity > 0, tier; its level is not checked).
 * @return BP_OK, or BP_EINVAL with a message naming the problem written to @p why
 *         (e.g. "levels[3].xpTotal 100 is not greater than level 2's 100").
 */
bp_err_t bp_season_validate(const bp_season_t *s, char *why, size_t why_len) BP_MUSTCHECK;

/** @return the status of @p s at time @p now_ms. */
bp_season_status_t bp_season_status(const bp_season_t *s, int64_t now_ms);

/** @return "upcoming", "active" or "ended". */
const char *bp_season_status_str(bp_season_status_t st);

/** @return true when the two seasons' [starts, ends) windows overlap. */
bool bp_seasons_overlap(const bp_season_t *a, const bp_season_t *b);

/** @return index of the season with id @p id in @p seasons[0..n), or -1. */
int bp_season_find(const bp_season_t *seasons, size_t n, const char *id);

/** @return index of the season whose window contains @p t_ms, or -1 if none does. */
int bp_season_at(const bp_season_t *seasons, size_t n, int64_t t_ms);

/**
 * Decide which season an event counts for. With an explicit seasonId, that season must
 * exist and contain occurredAt; without one, the season containing occurredAt is used.
 * @param idx out: season index, or -1 when occurredAt falls in no season (the event is
 *            recorded as processed but changes no progress)
 * @return BP_OK, or BP_EINVAL with *why set (unknown explicit season, occurredAt outside
 *         the explicit season).
 */
bp_err_t bp_event_attribute(const bp_season_t *seasons, size_t n, const bp_xp_event_t *ev, int *idx,
                            const char **why) BP_MUSTCHECK;

#endif
