/** @file The in-memory season snapshot shared by the worker and the HTTP threads,
 *  reloaded from PostgreSQL when older than a configured age. */
#ifndef BP_SEASONS_H
#define BP_SEASONS_H

#include <stdint.h>

#include "core/err.h"
#include "store/pg.h"

typedef struct bp_seasons bp_seasons_t;

/** @return a new, empty snapshot holder (caller owns; bp_seasons_destroy), or NULL. */
bp_seasons_t *bp_seasons_new(int64_t max_age_ms);
/** Free; every acquired snapshot must have been released. Accepts NULL. */
void bp_seasons_destroy(bp_seasons_t *s);

/**
 * Reload from @p pg when the snapshot is older than max_age_ms (or @p force).
 * Thread-safe; concurrent callers do not reload twice.
 * @return BP_OK (the old snapshot stays in use on error), BP_ERETRY, BP_ENOMEM.
 */
bp_err_t bp_seasons_refresh(bp_seasons_t *s, bp_pg_t *pg, int64_t now_ms, int force) BP_MUSTCHECK;

/** Borrow the current snapshot (never NULL; may be empty). Release it when done. */
const bp_season_list_t *bp_seasons_acquire(bp_seasons_t *s);
void bp_seasons_release(bp_seasons_t *s, const bp_season_list_t *snap);

#endif
