/** @file The routing tables of the resources, one per routes_*.c file; the server
 *  concatenates them (http/server.c). */
#ifndef BP_ROUTES_H
#define BP_ROUTES_H

#include <stddef.h>

#include "core/err.h"
#include "http/router.h"
#include "http/server.h"

/** GET /health, GET /ready. */
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

#endif
