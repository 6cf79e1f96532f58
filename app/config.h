/** @file The daemon's configuration: one declarative table of BP_* environment variables,
 *  validated at start. */
#ifndef BP_CONFIG_H
#define BP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct {
    char *kafka_bootstrap;
    char *kafka_group;
    char *topic_xp;
    char *topic_premium;
    char *topic_levelups;
    char *topic_rewards;
    char *topic_dlq;
    int64_t kafka_session_timeout_ms;
    int64_t batch_max_events;
    int64_t batch_max_wait_ms;
    char *pg_dsn;
    char *redis_url;
    int64_t cache_ttl_s;
    char *http_listen; /**< host:port */
    int64_t http_threads;
    char *jwt_hs256_secret;
    char *jwt_issuer;
    char *jwt_audience;
    char *schemas_dir;
    char *log_level;
    int64_t season_refresh_ms;
    int64_t xp_grants_per_minute;
    /* derived from http_listen */
    char http_host[256];
    uint16_t http_port;
    char *jwt_alg;                   /**< "HS256" or "RS256": the one accepted */
    char *jwt_rs256_public_key_file; /**< PEM file of the RS256 public key */
    char *jwt_rs256_public_key;      /**< derived: its text, read at load when RS256 */
} bp_config_t;

/**
 * Fill @p cfg from the environment (@p getenv_fn, normally getenv) and defaults, then
 * validate every setting. @p need_secret: the JWT secret must be set (serve) when the
 * pinned algorithm is HS256. With BP_JWT_ALG=RS256 the public key file is read and checked
 * here, whatever @p need_secret.
 * @return BP_OK; BP_EINVAL with @p why naming the variable and the problem
 *         ("BP_BATCH_MAX_EVENTS=0: must be between 1 and 100000"); BP_ENOMEM.
 *         On error cfg holds nothing to free.
 */
bp_err_t bp_config_load(bp_config_t *cfg, const char *(*getenv_fn)(const char *), int need_secret,
                        char *why, size_t why_len) BP_MUSTCHECK;
/** Free the strings of a loaded configuration. */
void bp_config_fini(bp_config_t *cfg);

/** Log a warning for each BP_* variable in @p environ_vars that no setting reads (typos). */
void bp_config_warn_unknown(char **environ_vars);

/** Print every setting as VAR=value lines (secrets masked) to stdout. */
void bp_config_print(const bp_config_t *cfg);

/** Print the table (variable, default, meaning) for --help. */
void bp_config_help(void);

#endif
