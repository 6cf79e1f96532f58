/** @file The level curve: binary search of total XP over a season's cumulative thresholds. */
#include "core/level.h"

#include <stddef.h>

bp_level_info_t bp_level_for_xp(const bp_season_t *s, int64_t total_xp)
{
    bp_level_info_t info = {.level = 1, .current_xp = 0, .xp_to_next = 0};
    int32_t lo = 1, hi;

    if (total_xp < 0)
        total_xp = 0;
    /* A season without a curve keeps everyone on level 1 rather than reading past it. */
    if (s == NULL || s->xp_total == NULL || s->max_level < 1) {
        info.current_xp = total_xp;
        return info;
    }
    /* Largest L in 1..max_level with xp_total[L] <= total (xp_total[1] is 0). */
    hi = s->max_level;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo + 1) / 2;
        if (s->xp_total[mid] <= total_xp)
            lo = mid;
        else
            hi = mid - 1;
    }
    info.level = lo;
    info.current_xp = total_xp - s->xp_total[lo];
    if (lo < s->max_level)
        info.xp_to_next = s->xp_total[lo + 1] - s->xp_total[lo];
    return info;
}
