/** @file Season definitions as JSON (the Season resource of the API, minus status). */
#ifndef BP_SEASON_JSON_H
#define BP_SEASON_JSON_H

#include <stddef.h>

#include "core/err.h"
#include "core/season.h"

/**
 * Parse and validate a season definition:
 * {id, name, startsAt, endsAt (RFC 3339), maxLevel, levels: [{level, xpTotal,
 *  rewards: [{tier: "free"|"premium", rewardId, itemId, quantity, assetUrl?}]}]}.
 * Levels must be listed 1..maxLevel in order. Options, each optional (absent or null is
 * the default): autoClaim, grantUnclaimedAtEnd (booleans, false), claimWindowHours,
 * lateEventGraceHours (integers 0..8760, 0), dailyXpCap (integer 1..10^9, none),
 * xpBoosts ([{startsAt, endsAt, multiplier (1.01..10, at most 2 decimals), reasons?}], at
 * most BP_BOOSTS_MAX), overflow ({"policy": "none"} or {"policy": "bonusLevels",
 * "xpPerLevel", "reward": {tier, rewardId, itemId, quantity, assetUrl?}}); unknown members
 * of a boost or of overflow are refused.
 * @param out initialised on success (caller calls bp_season_fini); untouched on error
 * @return BP_OK, BP_EINVAL with @p why naming the problem (field path and value),
 *         BP_ENOMEM.
 */
bp_err_t bp_season_from_json(const char *text, size_t len, bp_season_t *out, char *why,
                             size_t why_len) BP_MUSTCHECK;

/**
 * Serialise @p s as the Season resource with `status` at @p now_ms, every option included
 * (dailyXpCap null when there is none; windows in whole hours, rounded down).
 * @return a heap string owned by the caller (free()), or NULL on allocation failure.
 */
char *bp_season_to_json(const bp_season_t *s, int64_t now_ms);

#endif
