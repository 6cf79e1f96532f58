/** @file Redis adapter (hiredis, RESP2): the progress cache and real-time publication.
 *  Redis is never the truth: every failure here is reported and survivable. */
#ifndef BP_CACHE_H
#define BP_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "store/pg.h"

typedef struct bp_cache bp_cache_t;

/**
 * Create a cache client for @p url (redis://[:password@]host:port[/db]); connects lazily,
 * so a Redis that is down now is not an error.
 * @return BP_OK with *out owned by the caller (bp_cache_destroy), BP_EINVAL for a bad
 *         URL, BP_ENOMEM.
 */
bp_err_t bp_cache_new(const char *url, int ttl_s, bp_cache_t **out) BP_MUSTCHECK;
void bp_cache_destroy(bp_cache_t *c);

/** Failed progress writes remembered one by one (distinct season and player), at most. */
#define BP_CACHE_MISSED_MAX 100000

/**
 * Write the progress rows of a committed batch in one pipeline; a row only replaces a
 * cached one with a lower totalXp (XP never decreases, so a late writer cannot regress
 * the cache); publishes each change on channel "bp:progress:<playerId>".
 * @return BP_OK, or BP_ERETRY when Redis is unreachable or refused: the rows are then
 *         remembered (the highest total per season and player, up to BP_CACHE_MISSED_MAX) and
 *         written again, before anything else, by the next call that finds Redis working,
 *         so that a Redis that kept its data does not serve older totals until their TTL.
 *         Past that bound every cached progress entry is dropped instead (readers fill
 *         them from PostgreSQL). Reads fall back to PostgreSQL meanwhile.
 */
bp_err_t bp_cache_put_progress(bp_cache_t *c, const char *const *season_ids,
                               const bp_progress_change_t *ch, size_t n,
                               int64_t now_ms) BP_MUSTCHECK;

/**
 * Write again the progress writes that failed (see bp_cache_put_progress), if any, now;
 * a writer calls it now and then while bp_cache_behind(), so that the cache heals even
 * when no new write comes.
 * @return BP_OK (nothing was pending, or all of it is written), BP_ERETRY (Redis still
 *         unreachable or refusing: kept for the next call).
 */
bp_err_t bp_cache_catch_up(bp_cache_t *c) BP_MUSTCHECK;

/** @return true while progress writes that failed wait to be written again. */
bool bp_cache_behind(const bp_cache_t *c);

/**
 * Look up one player's cached progress (earned_xp = total_xp - paid_xp). An entry that no
 * fill has completed yet (no premium flag or paidXp: batch writes leave both alone) is not
 * usable: BP_ENOTFOUND, read PostgreSQL and fill.
 * @return BP_OK (found), BP_ENOTFOUND (not cached), BP_ERETRY (Redis unreachable).
 */
bp_err_t bp_cache_get_progress(bp_cache_t *c, const char *season_id, const char *player_id,
                               bp_progress_row_t *out) BP_MUSTCHECK;

/** Cache a row read from PostgreSQL (same monotonic rule; premium and paidXp are set too,
 *  each only ever moving up). @return BP_OK or BP_ERETRY. */
bp_err_t bp_cache_fill_progress(bp_cache_t *c, const char *season_id, const char *player_id,
                                const bp_progress_row_t *row) BP_MUSTCHECK;

/**
 * Count one hit on the fixed-window rate limit @p key (e.g. "bp:rate:xp:<playerId>"):
 * at most @p limit hits per window of @p window_s seconds, the window starting at its
 * first hit (INCR and EXPIRE in one Lua script, so a crash between them cannot leave a
 * counter without expiry).
 * @param retry_after_s out: when over the limit, seconds until the window ends (>= 1);
 *                      0 otherwise
 * @return BP_OK (within the limit, counted), BP_EINVAL (over the limit: refuse the
 *         request; the hit still counts), BP_ERETRY (Redis unreachable or refused: the caller
 *         decides whether to fail open).
 */
bp_err_t bp_cache_rate_hit(bp_cache_t *c, const char *key, int limit, int window_s,
                           int *retry_after_s) BP_MUSTCHECK;

/** Longest Redis host name in a URL. */
#define BP_CACHE_HOST_MAX 255

/** The parts of a redis:// URL. */
typedef struct {
    char host[BP_CACHE_HOST_MAX + 1];
    int port;       /**< 6379 when absent */
    int db;         /**< 0 when absent */
    char *user;     /**< heap; NULL: AUTH with the password only */
    char *password; /**< heap; NULL: no AUTH; never logged */
} bp_cache_url_t;

/**
 * Parse redis://[[user]:password@]host[:port][/db] exactly as bp_cache_new() does (for
 * other Redis clients of the process, e.g. the real-time subscriber).
 * @return BP_OK with @p out filled (release with bp_cache_url_fini), BP_EINVAL for a bad
 *         URL or BP_ENOMEM (@p out then holds nothing to release).
 */
bp_err_t bp_cache_url_parse(const char *url, bp_cache_url_t *out) BP_MUSTCHECK;
/** Free what bp_cache_url_parse() allocated, wiping the password. Accepts a zeroed @p u. */
void bp_cache_url_fini(bp_cache_url_t *u);

#endif
