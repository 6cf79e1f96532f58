/** @file Process-wide metrics (counters and histograms) rendered in the Prometheus text
 *  format for GET /metrics. Lock-free for counters; safe from any thread. */
#ifndef BP_METRICS_H
#define BP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/reward.h"

/** The worker's counters. */
typedef enum {
    BP_M_XP_CONSUMED = 0,   /**< messages taken from the input topics */
    BP_M_XP_APPLIED,        /**< XP events that changed progress */
    BP_M_XP_DUPLICATE,      /**< XP events already processed */
    BP_M_XP_UNATTRIBUTED,   /**< XP events outside every season (recorded only) */
    BP_M_DLQ,               /**< messages sent to the DLQ */
    BP_M_LEVEL_UPS,         /**< LevelUp events written to the outbox */
    BP_M_AUTO_GRANTS,       /**< rewards granted by autoClaim */
    BP_M_SEASON_END_GRANTS, /**< rewards granted when a claim window closed */
    BP_M_PREMIUM_GRANTS,    /**< premium passes granted from the premium topic */
    BP_M_OUTBOX_RELAYED,    /**< outbox rows produced to Kafka */
    BP_M_BATCHES,           /**< batches committed */
    BP_M_BATCH_RETRIES,     /**< batches rewound after a failure */
    BP_M_COUNT
} bp_metric_t;

/** Add @p n to counter @p m. */
void bp_metrics_add(bp_metric_t m, uint64_t n);

/** Record one committed batch: its size in messages, the apply time (transaction from
 *  BEGIN to COMMIT's end) and the COMMIT alone (the WAL flush, fsync). */
void bp_metrics_batch(size_t messages, double seconds, double commit_seconds);

/** The process's gauges (last value set wins). */
typedef enum {
    BP_G_OUTBOX_BACKLOG = 0, /**< outbox rows waiting to be relayed (capped count) */
    BP_G_COUNT
} bp_gauge_t;

/** Set gauge @p g to @p v. */
void bp_metrics_gauge(bp_gauge_t g, int64_t v);

/**
 * Set the consumer lag of input topic @p topic: over the partitions this process is assigned,
 * the sum of (high watermark - next offset to apply). The first 8 distinct topics are kept.
 */
void bp_metrics_consumer_lag(const char *topic, int64_t lag);

/**
 * Add @p n to bp_messages_skipped_total{topic}: messages of input topic @p topic lost before
 * they were applied (the partition's log no longer held them when the worker read on, e.g.
 * retention deleted them). n = 0 makes the series appear. The first 8 distinct topics are
 * kept.
 */
void bp_metrics_skipped(const char *topic, uint64_t n);

/**
 * Count one reward claim answered (POST /rewards/{playerId}/claim or /claim-all) by its
 * verdict: BP_CLAIM_OK as granted, every other one as refused with its reason
 * (bp_claims_total{result=...}).
 */
void bp_metrics_claim(bp_claim_verdict_t v);

/** Record one answered HTTP request. @p route is the route's pattern (static storage) or
 *  NULL when no route matched. */
void bp_metrics_http(const char *method, const char *route, int status, double seconds);

/** @return the metrics as Prometheus text (heap, caller frees), or NULL when out of memory. */
char *bp_metrics_render(size_t *len);

#endif
