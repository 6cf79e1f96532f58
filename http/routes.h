/** @file The routing tables of the resources, one per routes_*.c file; the server
 *  concatenates them (http/server.c). */
#ifndef BP_ROUTES_H
#define BP_ROUTES_H

#include <stddef.h>

#include <jansson.h>

#include "core/err.h"
#include "core/season.h"
#include "http/router.h"
#include "http/server.h"
#include "store/pg.h"
#include "store/seasons.h"

struct bp_http_batcher;
struct bp_http_reads;
struct bp_http_season_cache;

/** GET /health, GET /ready, GET /metrics. */
extern const bp_http_route_t bp_http_routes_health[];
extern const size_t bp_http_routes_health_n;

/** GET /openapi.yaml. */
extern const bp_http_route_t bp_http_routes_openapi[];
extern const size_t bp_http_routes_openapi_n;

/** GET /seasons[?status=], POST /seasons (admin), GET /seasons/current,
 *  GET /seasons/{seasonId}, PATCH /seasons/{seasonId} (admin). */
extern const bp_http_route_t bp_http_routes_seasons[];
extern const size_t bp_http_routes_seasons_n;

/** GET /progress/{playerId}. */
extern const bp_http_route_t bp_http_routes_progress[];
extern const size_t bp_http_routes_progress_n;

/** GET /rewards/{playerId}, POST /rewards/{playerId}/claim and /claim-all. */
extern const bp_http_route_t bp_http_routes_rewards[];
extern const size_t bp_http_routes_rewards_n;

/** POST /premium/{playerId}. */
extern const bp_http_route_t bp_http_routes_premium[];
extern const size_t bp_http_routes_premium_n;

/** GET /analytics/seasons/{seasonId} (admin), GET /stats/{playerId}. */
extern const bp_http_route_t bp_http_routes_analytics[];
extern const size_t bp_http_routes_analytics_n;

/** GET /audit (admin). */
extern const bp_http_route_t bp_http_routes_audit[];
extern const size_t bp_http_routes_audit_n;

/** POST /progress/{playerId}/xp. */
extern const bp_http_route_t bp_http_routes_xp[];
extern const size_t bp_http_routes_xp_n;

/** The XP grant route's producer and codec (routes_xp.c), shared by every request. */
typedef struct bp_http_xp bp_http_xp_t;
/**
 * Create it from the server's config (kafka_bootstrap, xp_topic, schemas_dir,
 * xp_grants_per_minute; strings borrowed, must outlive it). Nothing connects yet.
 * @return BP_OK with *out owned by the caller (bp_http_xp_destroy), BP_EFATAL (logged: a
 *         setting is missing, the schemas do not load or name no "<xp_topic>-value"
 *         subject, librdkafka refuses the configuration), BP_ENOMEM.
 */
bp_err_t bp_http_xp_new(const bp_http_config_t *cfg, bp_http_xp_t **out) BP_MUSTCHECK;
/** Wait briefly for messages still queued, then free. No request may be running.
 *  Accepts NULL. */
void bp_http_xp_destroy(bp_http_xp_t *x);

/**
 * GET /progress in batches (routes_progress.c): a lane reads each batch from PostgreSQL in
 * one statement (from Redis when PostgreSQL fails), and another completes the Redis entries
 * of what was read, best effort (BP_HTTP_FILLS_PER_S).
 * @return BP_OK with *out owned by the caller (bp_http_reads_destroy), or the error of
 *         bp_http_batcher_new.
 */
bp_err_t bp_http_reads_new(const bp_http_config_t *cfg, struct bp_http_reads **out) BP_MUSTCHECK;
/** Answer what is queued and stop taking reads (later ones are answered on their own
 *  thread), then stop the cache completion. Accepts NULL. */
void bp_http_reads_close(struct bp_http_reads *r);
/** Close, then free. Accepts NULL. */
void bp_http_reads_destroy(struct bp_http_reads *r);

/**
 * The lanes that group-commit reward claims (routes_rewards.c): the claims that arrive
 * while a transaction commits are decided and written together in the next one
 * (store/rewards.h bp_pg_claim_batch).
 * @return as bp_http_reads_new.
 */
bp_err_t bp_http_claims_new(const bp_http_config_t *cfg, struct bp_http_batcher **out) BP_MUSTCHECK;

/** Rendered seasons, reused while the snapshot and the season's status stay the same
 *  (routes_seasons.c). @return a new cache, NULL when out of memory. */
struct bp_http_season_cache *bp_http_season_cache_new(void);
/** Free @p c, releasing the snapshots it holds from @p seasons. Accepts NULL. */
void bp_http_season_cache_destroy(struct bp_http_season_cache *c, bp_seasons_t *seasons);

/** GET /progress/{playerId}/stream: Server-Sent Events of progress, level-ups and rewards
 *  (routes_stream.c, fed by http/stream.h). */
extern const bp_http_route_t bp_http_routes_stream[];
extern const size_t bp_http_routes_stream_n;

/**
 * A player's progress in season @p season_id, as GET /progress reads it: Redis first,
 * PostgreSQL on a miss (then cached) or when Redis is down (routes_progress.c).
 * @return BP_OK with @p row filled (a player without progress has a zero row at level 1),
 *         BP_ERETRY (PostgreSQL unavailable).
 */
bp_err_t bp_http_progress_read(struct bp_http_req *req, const char *season_id,
                               const char *player_id, bp_progress_row_t *row) BP_MUSTCHECK;
/** @return the Progress resource of @p row in season @p s (a new reference), or NULL when
 *  out of memory (routes_progress.c). */
json_t *bp_http_progress_json(const bp_season_t *s, const char *player_id,
                              const bp_progress_row_t *row);
/** @return bp_http_progress_json() serialised compactly (the same text), written without
 *  building a JSON object; heap (free()), length in *len; NULL when out of memory. */
char *bp_http_progress_text(const bp_season_t *s, const char *player_id,
                            const bp_progress_row_t *row, size_t *len);

#endif
