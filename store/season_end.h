/** @file End of a season's claim window: granting every reward still available to its
 *  players when the season asks for it (grantUnclaimedAtEnd). */
#ifndef BP_SEASON_END_H
#define BP_SEASON_END_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/season.h"
#include "store/pg.h"

/**
 * Close season @p s if it is due (grantUnclaimedAtEnd set, claim window over at @p now_ms,
 * not closed yet): under an advisory lock (one worker at a time), walk its players in
 * chunks of @p chunk, each chunk one transaction granting what they could still claim
 * (store/rewards.h bp_pg_grants_insert, source "season-end"), then mark it closed. Safe to
 * interrupt and run again: grants already made are skipped.
 * @param granted out: rewards granted by this call
 * @param closed  out: the season is closed (now or before)
 * @return BP_OK (also when not due or another worker holds the lock), BP_ERETRY,
 *         BP_EFATAL, BP_ENOMEM.
 */
bp_err_t bp_pg_season_close(bp_pg_t *pg, const bp_season_t *s, const char *rewards_topic,
                            int64_t now_ms, size_t chunk, size_t *granted,
                            bool *closed) BP_MUSTCHECK;

#endif
