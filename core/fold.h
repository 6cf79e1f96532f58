/** @file Folding a batch of new XP events into per-player deltas and level-ups. */
#ifndef BP_FOLD_H
#define BP_FOLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/event.h"
#include "core/season.h"

/** The new events of one (season, player) in a batch. */
typedef struct {
    int season_idx;        /**< index into the seasons array given to bp_fold_batch() */
    const char *player_id; /**< points into the batch's events */
    size_t first;          /**< first position in bp_fold_t.order */
    size_t count;          /**< number of events */
    int64_t delta;         /**< sum of their amounts */
} bp_fold_group_t;

/** Result of bp_fold_batch(); owns its arrays, release with bp_fold_fini(). */
typedef struct {
    size_t *order; /**< event indices grouped by (season, player), arrival order kept */
    size_t n_order;
    bp_fold_group_t *groups; /**< sorted by (season index, player id) */
    size_t n_groups;
    const int64_t *amounts; /**< borrowed from bp_fold_batch(): XP each event adds, or NULL */
} bp_fold_t;

/**
 * Group the events to apply by (season, player) and sum their amounts.
 * @param evs        the batch
 * @param amounts    XP each event adds (after boosts and caps), or NULL for evs[i].amount;
 *                   borrowed by @p out until bp_fold_fini (bp_fold_levelups reads it)
 * @param season_idx season of each event (from bp_event_attribute)
 * @param apply      apply[i] false: skip evs[i] (duplicate, invalid or unattributed)
 * @param n          number of events
 * @param out        filled on success; on error left empty (safe to bp_fold_fini)
 * @return BP_OK or BP_ENOMEM.
 */
bp_err_t bp_fold_batch(const bp_xp_event_t *evs, const int64_t *amounts, const int *season_idx,
                       const bool *apply, size_t n, bp_fold_t *out) BP_MUSTCHECK;
void bp_fold_fini(bp_fold_t *f);

/** One level gained. Every level gets its own event: a jump from 3 to 5 gives 3→4, 4→5. */
typedef struct {
    int32_t previous_level;
    int32_t new_level;
    int64_t total_xp; /**< total XP right after the causing event */
    size_t cause;     /**< index into the batch of the event that crossed the threshold */
} bp_levelup_t;

/** A growable array of level-ups; zero-initialise, release with bp_levelups_fini(). */
typedef struct {
    bp_levelup_t *items;
    size_t n, cap;
} bp_levelups_t;

/**
 * Append to @p out the level-ups of one group: starting at @p old_total XP, apply the
 * group's events in order and record each level crossed (capped at max_level).
 * @return BP_OK or BP_ENOMEM (out keeps what was appended before).
 */
bp_err_t bp_fold_levelups(const bp_season_t *s, const bp_xp_event_t *evs, const bp_fold_t *f,
                          const bp_fold_group_t *g, int64_t old_total,
                          bp_levelups_t *out) BP_MUSTCHECK;
void bp_levelups_fini(bp_levelups_t *l);

/**
 * Write the deterministic LevelUp eventId "levelup:<seasonId>:<playerId>:<newLevel>".
 * @return BP_OK, or BP_EINVAL when it does not fit in @p len bytes.
 */
bp_err_t bp_levelup_event_id(char *buf, size_t len, const char *season_id, const char *player_id,
                             int32_t new_level) BP_MUSTCHECK;

#endif
