/** @file The HTTP API (libmicrohttpd): routing, JWT authentication, problem+json errors. */
#ifndef BP_SERVER_H
#define BP_SERVER_H

#include <stdint.h>

#include "core/err.h"
#include "store/seasons.h"

typedef struct {
    const char *listen_host; /**< address to bind, e.g. "0.0.0.0" */
    uint16_t port;
    int threads;        /**< libmicrohttpd thread pool size */
    const char *pg_dsn; /**< each HTTP thread opens its own connection */
    const char *redis_url;
    int cache_ttl_s;
    const char *jwt_hs256_secret;
    const char *jwt_issuer;      /**< "" = not checked */
    const char *jwt_audience;    /**< "" = not checked */
    bp_seasons_t *seasons;       /**< borrowed, shared with the worker */
    const char *kafka_bootstrap; /**< for POST /progress/{playerId}/xp (produces XpEvents) */
    const char *xp_topic;
    const char *rewards_topic; /**< outbox topic of RewardGrant events */
    const char *schemas_dir;   /**< holds subjects.json and the .avsc files */
    const char *openapi_path;  /**< the OpenAPI document served at GET /openapi.yaml */
    int xp_grants_per_minute;  /**< per player, enforced with Redis (429 beyond) */
    const char *levelup_topic; /**< outbox topic of LevelUp events (level purchases) */
    const char *jwt_alg; /**< the one accepted JWT algorithm: "HS256" (also NULL) or "RS256" */
    const char *jwt_rs256_public_key; /**< PEM text of the RS256 public key */
} bp_http_config_t;

typedef struct bp_http bp_http_t;

/**
 * Start serving on its own threads. The config's strings and seasons are borrowed and must
 * outlive the server.
 * @return BP_OK with *out owned by the caller (bp_http_stop), BP_EFATAL when the port
 *         cannot be bound (logged), BP_ENOMEM.
 */
bp_err_t bp_http_start(const bp_http_config_t *cfg, bp_http_t **out) BP_MUSTCHECK;
/** Stop accepting, finish in-flight requests, free. Accepts NULL. */
void bp_http_stop(bp_http_t *h);

#endif
