/** @file Season administration in PostgreSQL: read a stored definition and update a season
 *  (name, window, levels, options) under optimistic concurrency. */
#ifndef BP_SEASON_ADMIN_H
#define BP_SEASON_ADMIN_H

#include <stddef.h>

#include "core/err.h"
#include "core/season.h"
#include "store/pg.h"

/**
 * Read the stored definition JSON of season @p id (the Season resource minus status).
 * @param definition out: a heap string owned by the caller (free()), NULL on error
 * @return BP_OK, BP_ENOTFOUND (no such season), BP_ERETRY (database unreachable or the
 *         statement failed, logged), BP_ENOMEM.
 */
bp_err_t bp_season_admin_get(bp_pg_t *pg, const char *id, char **definition) BP_MUSTCHECK;

/**
 * Replace season @p s (matched by s->id): name, starts_at, ends_at, max_level and the
 * definition JSON @p definition, provided the stored definition still equals @p previous
 * (as jsonb: what bp_season_admin_get returned) and the new window overlaps no other season.
 * @p s must be valid (bp_season_validate); nothing is borrowed beyond the call.
 * @return BP_OK; BP_EINVAL with @p why naming the conflict (overlap with another season, or
 *         the season changed or disappeared since @p previous was read: read again);
 *         BP_ERETRY when the database is unreachable; BP_EFATAL for another database error
 *         (logged, @p why set).
 */
bp_err_t bp_season_admin_update(bp_pg_t *pg, const bp_season_t *s, const char *definition,
                                const char *previous, char *why, size_t why_len) BP_MUSTCHECK;

#endif
