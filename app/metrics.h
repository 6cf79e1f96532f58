/** @file Process-wide metrics (counters and histograms) rendered in the Prometheus text
 *  format for GET /metrics. Lock-free for counters; safe from any thread. */
#ifndef BP_METRICS_H
#define BP_METRICS_H

#include <stddef.h>
#include <stdint.h>

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

/** Record one committed batch: its size in messages and the apply time. */
void bp_metrics_batch(size_t messages, double seconds);

/** Record one answered HTTP request. @p route is the route's pattern (static storage) or
 *  NULL when no route matched. */
void bp_metrics_http(const char *method, const char *route, int status, double seconds);

/** @return the metrics as Prometheus text (heap, caller frees), or NULL when out of memory. */
char *bp_metrics_render(size_t *len);

#endif
