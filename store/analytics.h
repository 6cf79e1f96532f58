/** @file Analytics in PostgreSQL: the season counters (schemas/sql/006_analytics.sql) kept up
 *  to date inside the transactions that change progress, premium and claims, and the reads
 *  behind GET /analytics/seasons/{id}, GET /stats/{playerId} and GET /audit. */
#ifndef BP_ANALYTICS_H
#define BP_ANALYTICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/event.h"
#include "core/season.h"
#include "store/pg.h"

/* ---- counter maintenance: call inside the caller's open transaction ----
 * None of these reconnect or roll back: on error the caller rolls back (the counters go
 * with the data). Counter rows are locked in a fixed order (level counts, then season
 * totals, each sorted), after the player's progress row: callers keep to that order. */

/** How one player's progress changed in one transaction. Strings and season borrowed. */
typedef struct {
    const bp_season_t *season;
    const char *player_id;
    bool created;      /**< the progress row was inserted by this transaction */
    int32_t old_level; /**< level before (ignored when created: a new player had none) */
    int32_t new_level; /**< level after */
    bool premium;      /**< has the pass (what level-ups unlock) */
    int64_t xp;        /**< earned XP applied (paid XP is not counted) */
} bp_analytics_change_t;

/**
 * Count progress changes: players per level (-1 at the old level, +1 at the new one; a
 * created row +1 at its level), and per season enrolled (+1 per created row), at_max
 * (reached max level now), unlocked (bp_rewards_unlocked from old to new level, from 0 for
 * a created row) and xp. At most two statements whatever @p n; none when nothing changes.
 * @return BP_OK; BP_ERETRY / BP_EFATAL on database errors (logged); BP_ENOMEM.
 */
bp_err_t bp_analytics_progress(bp_pg_t *pg, const bp_analytics_change_t *ch, size_t n) BP_MUSTCHECK;

/** What one batch adds to a (season, day) of activity. Strings borrowed. */
typedef struct {
    const char *season_id;
    int64_t day;    /**< days since 1970-01-01 (UTC) of the events' occurredAt */
    int64_t active; /**< players active that day for the first time */
    int64_t xp;     /**< XP applied by the batch's events of that day (after boosts and caps) */
} bp_analytics_day_delta_t;

/** What one batch adds to a (season, Monday week) of activity. Strings borrowed. */
typedef struct {
    const char *season_id;
    int64_t week;   /**< floor((day + 3) / 7) */
    int64_t active; /**< players active that week for the first time */
} bp_analytics_week_delta_t;

/**
 * Count activity: each (season, day) gains its players new to the day and its XP, each
 * (season, week) its players new to the week. Which players are new comes from the
 * active_days of their progress rows (the batch upsert's days_added, migration 007): no row
 * per player is written here. One statement whatever the sizes; none when both are empty.
 * Rows are written in (season, day) / (season, week) order, distinct keys expected.
 * @return BP_OK; BP_ERETRY / BP_EFATAL (logged); BP_ENOMEM.
 */
bp_err_t bp_analytics_activity(bp_pg_t *pg, const bp_analytics_day_delta_t *days, size_t n_days,
                               const bp_analytics_week_delta_t *weeks, size_t n_weeks) BP_MUSTCHECK;

/**
 * Count a premium pass just recorded in premium_grants and set on the player's progress row
 * (which this transaction holds locked): premium +1 and unlocked += the premium rewards of
 * levels 1..@p level, only when it is the player's first pass in the season; and when
 * @p created, the new player as bp_analytics_progress counts one.
 * @return as bp_analytics_progress.
 */
bp_err_t bp_analytics_premium(bp_pg_t *pg, const bp_season_t *s, const char *player_id,
                              bool created, int32_t level) BP_MUSTCHECK;

/* ---- reads ---- */

/** Most days and weeks a season report holds (the latest ones with data). */
#define BP_ANALYTICS_DAYS 30
#define BP_ANALYTICS_WEEKS 8

typedef struct {
    int64_t day; /**< days since 1970-01-01, UTC */
    int64_t active;
    int64_t xp;
} bp_analytics_day_t;

typedef struct {
    int64_t first_day; /**< the week's Monday, days since 1970-01-01 */
    int64_t active;
} bp_analytics_week_t;

typedef struct {
    int32_t level;
    int64_t players;
} bp_analytics_level_t;

/** A season's counters; owns its arrays (bp_season_report_fini). */
typedef struct {
    int64_t enrolled, premium, at_max, unlocked, claimed, xp;
    int64_t player_days;      /**< daily active players summed over every day of the season */
    int64_t day_xp;           /**< XP summed over every day (= xp, as the days count it) */
    bp_analytics_day_t *days; /**< oldest first, at most BP_ANALYTICS_DAYS */
    size_t n_days;
    bp_analytics_week_t *weeks; /**< oldest first, at most BP_ANALYTICS_WEEKS */
    size_t n_weeks;
    bp_analytics_level_t *levels; /**< levels with players, ascending */
    size_t n_levels;
} bp_season_report_t;
void bp_season_report_fini(bp_season_report_t *r);

/**
 * Read the counters of @p season_id in one statement (one snapshot); a season nobody played
 * reads as zeros.
 * @return BP_OK with *out filled (owned by the caller); BP_ERETRY / BP_EFATAL; BP_ENOMEM.
 *         On error *out is empty.
 */
bp_err_t bp_analytics_season(bp_pg_t *pg, const char *season_id,
                             bp_season_report_t *out) BP_MUSTCHECK;

/** One season of a player. */
typedef struct {
    char season_id[BP_ID_MAX + 1];
    int64_t total_xp;
    int32_t level; /**< as stored (callers with the season recompute it from total_xp) */
    bool premium;
    int64_t claimed; /**< rewards granted, any source */
} bp_player_season_t;

/** A player's seasons, oldest season first; owns items (bp_player_stats_fini). */
typedef struct {
    bp_player_season_t *items;
    size_t n;
} bp_player_stats_t;
void bp_player_stats_fini(bp_player_stats_t *s);

/**
 * Read every season @p player_id has a progress row in, with the rewards claimed there
 * (index scans by player id).
 * @return BP_OK (n 0 for an unknown player); BP_ERETRY / BP_EFATAL; BP_ENOMEM.
 */
bp_err_t bp_analytics_player(bp_pg_t *pg, const char *player_id,
                             bp_player_stats_t *out) BP_MUSTCHECK;

/** Most rows one audit page may hold. */
#define BP_AUDIT_LIMIT_MAX 200

/** One audit_log row; optional columns are "" (strings) or 0 (level) when NULL. */
typedef struct {
    int64_t id;
    int64_t at_ms;
    char actor[BP_ID_MAX * 2 + 1];
    char action[32];
    char player_id[BP_ID_MAX + 1];
    char season_id[BP_ID_MAX + 1];
    int32_t level; /**< 0: none */
    char tier[16];
    char reward_id[BP_ID_MAX + 1];
    char grant_id[4 * BP_ID_MAX + 32];
    char *detail_json; /**< heap, the jsonb as text */
} bp_audit_row_t;

/** One page of the audit log, newest first; owns its rows (bp_audit_page_fini). */
typedef struct {
    bp_audit_row_t *items;
    size_t n;
    int64_t next_cursor; /**< > 0: older rows remain (pass it as before_id); 0: last page */
} bp_audit_page_t;
void bp_audit_page_fini(bp_audit_page_t *p);

/**
 * Read a page of the audit log, newest first.
 * @param player_id NULL or only this player's rows
 * @param season_id NULL or only this season's rows
 * @param before_id 0: from the newest; else only rows with id < before_id
 * @param limit     1..BP_AUDIT_LIMIT_MAX
 * @return BP_OK with *out filled (owned by the caller); BP_EINVAL for a limit out of range
 *         or a negative cursor; BP_ERETRY / BP_EFATAL; BP_ENOMEM. On error *out is empty.
 */
bp_err_t bp_analytics_audit(bp_pg_t *pg, const char *player_id, const char *season_id,
                            int64_t before_id, size_t limit, bp_audit_page_t *out) BP_MUSTCHECK;

#endif
