/** @file The XP worker: consumer group on the XP topic, batches applied exactly once to
 *  PostgreSQL, then Redis and the outbox relay; bad events to the DLQ. */
#ifndef BP_WORKER_H
#define BP_WORKER_H

#include <signal.h>
#include <stdint.h>

#include "core/err.h"
#include "store/seasons.h"

typedef struct {
    const char *kafka_bootstrap;
    const char *group;
    const char *xp_topic;
    const char *levelup_topic;
    const char *dlq_topic;
    const char *rewards_topic; /**< outbox topic of RewardGrant events (auto-claims) */
    const char *premium_topic; /**< PremiumGranted events in (consumed with the XP topic) */
    int session_timeout_ms;
    int batch_max_events;  /**< a batch closes at this many messages ... */
    int batch_max_wait_ms; /**< ... or this long after its first message */
    const char *pg_dsn;
    const char *redis_url;
    int cache_ttl_s;
    const char *schemas_dir;     /**< holds subjects.json and the .avsc files */
    bp_seasons_t *seasons;       /**< shared with the HTTP threads; borrowed */
    volatile sig_atomic_t *stop; /**< set by the signal handler: finish the batch and return */
} bp_worker_config_t;

/**
 * Run the worker on the calling thread until *cfg->stop is set; then finish the current
 * batch, relay the outbox, flush, leave the group and return.
 * @return BP_OK after a clean stop; BP_EFATAL when it cannot go on (bad schemas, a
 *         database error that retrying cannot fix), logged.
 */
bp_err_t bp_worker_run(const bp_worker_config_t *cfg) BP_MUSTCHECK;

#endif
