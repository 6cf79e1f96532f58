/** @file The level curve: from total XP to level, XP into the level and the level's span. */
#ifndef BP_LEVEL_H
#define BP_LEVEL_H

#include <stdint.h>

#include "core/season.h"

typedef struct {
    int32_t level;      /**< 1..max_level */
    int64_t current_xp; /**< XP into the current level (past xpTotal of max level at the cap) */
    int64_t xp_to_next; /**< XP span of the current level; 0 at max level */
} bp_level_info_t;

/** @return the level information for @p total_xp (negative totals count as 0). */
bp_level_info_t bp_level_for_xp(const bp_season_t *s, int64_t total_xp);

#endif
