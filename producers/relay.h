/** @file The transactional outbox relay: produces committed outbox rows, then deletes them. */
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

#endif
