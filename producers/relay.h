/** @file The transactional outbox relay: produces committed outbox rows, then deletes them;
 *  one round at a time (bp_relay_once) or on a thread of its own (bp_relay_start). */
#ifndef BP_RELAY_H
#define BP_RELAY_H

#include <stddef.h>

#include "core/err.h"
#include "producers/codec.h"
#include "producers/producer.h"
#include "store/pg.h"

/**
 * Take up to @p limit outbox rows, encode each as Avro with the schema of subject
 * "<topic>-value", produce them (key = row key), wait for delivery and delete them, all
 * under the row locks of one transaction. A row that cannot be encoded (a bug) goes to
 * @p dlq_topic with the reason instead of blocking the outbox.
 * @param relayed out: rows produced and deleted
 * @return BP_OK; BP_ERETRY when PostgreSQL or Kafka failed (nothing deleted: the rows are
 *         produced again later, so delivery is at least once); BP_ENOMEM.
 */
bp_err_t bp_relay_once(bp_pg_t *pg, bp_codec_t *codec, bp_producer_t *prod, const char *dlq_topic,
                       size_t limit, size_t *relayed) BP_MUSTCHECK;

/** A relay on its own thread, with its own PostgreSQL connection, producer and codec, so
 *  that waiting for Kafka's acknowledgements never holds up the worker's batches. */
typedef struct bp_relay bp_relay_t;

typedef struct {
    const char *pg_dsn;
    const char *kafka_bootstrap;
    const char *schemas_dir;
    const char *dlq_topic;
    size_t limit; /**< rows per round (bp_relay_once) */
    int idle_ms;  /**< a round at least this often (rows of other workers, of crashes) */
} bp_relay_config_t;

/**
 * Start the relay thread. Strings of @p cfg are copied. PostgreSQL may be down: the thread
 * connects when it can. Sets the bp_outbox_backlog gauge (app/metrics.h) after its rounds,
 * at most once a second, and counts the rows relayed.
 * @return BP_OK with *out owned by the caller (bp_relay_stop); BP_EFATAL (schemas or Kafka
 *         configuration refused, logged); BP_ENOMEM.
 */
bp_err_t bp_relay_start(const bp_relay_config_t *cfg, bp_relay_t **out) BP_MUSTCHECK;

/** Outbox rows were committed: run a round now (returns at once). Accepts NULL. */
void bp_relay_kick(bp_relay_t *r);

/**
 * Run one last series of rounds (every row committed before the call, unless PostgreSQL or
 * Kafka fail), stop the thread, wait for it and free everything. Accepts NULL.
 */
void bp_relay_stop(bp_relay_t *r);

#endif
