/** @file The routing tables of the resources, one per routes_*.c file; the server
 *  concatenates them (http/server.c). */
#ifndef BP_ROUTES_H
#define BP_ROUTES_H

#include <stddef.h>

#include "http/router.h"

/** GET /health, GET /ready. */
extern const bp_http_route_t bp_http_routes_health[];
extern const size_t bp_http_routes_health_n;

/** GET /openapi.yaml. */
extern const bp_http_route_t bp_http_routes_openapi[];
extern const size_t bp_http_routes_openapi_n;

/** GET /seasons/current, GET /seasons/{seasonId}. */
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

#endif
