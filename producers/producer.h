/** @file Kafka producer (librdkafka, idempotent): sends with headers and waits for delivery. */
#ifndef BP_PRODUCER_H
#define BP_PRODUCER_H

#include <stddef.h>

#include "core/err.h"

typedef struct bp_producer bp_producer_t;

struct rd_kafka_s;
/** librdkafka log callback (rd_kafka_conf_set_log_cb) writing through app/log.h; shared by
 *  every Kafka client of the process. */
void bp_kafka_log_cb(const struct rd_kafka_s *rk, int level, const char *fac, const char *buf);

/** A message header; value bytes are copied by bp_producer_send. */
typedef struct {
    const char *name;
    const void *value;
    size_t len;
} bp_header_t;

/**
 * Create an idempotent producer (enable.idempotence, acks=all) for @p bootstrap.
 * @return BP_OK with *out owned by the caller (bp_producer_destroy); BP_EFATAL with @p why
 *         set when librdkafka rejects the configuration.
 */
bp_err_t bp_producer_new(const char *bootstrap, bp_producer_t **out, char *why,
                         size_t why_len) BP_MUSTCHECK;
/** Wait up to 10 s for queued messages, then free; accepts NULL. */
void bp_producer_destroy(bp_producer_t *p);

/**
 * Queue one message (key, value and headers are copied). Blocks while the local queue is
 * full. @return BP_OK, or BP_ERETRY when librdkafka refuses it (unknown topic, ...).
 */
bp_err_t bp_producer_send(bp_producer_t *p, const char *topic, const void *key, size_t key_len,
                          const void *value, size_t value_len, const bp_header_t *headers,
                          size_t n_headers) BP_MUSTCHECK;

/**
 * Wait until every message queued so far is delivered or failed, at most @p timeout_ms.
 * @return BP_OK when all were delivered since the previous flush; BP_ERETRY when one
 *         failed or the wait timed out (the caller resends: delivery is at least once).
 */
bp_err_t bp_producer_flush(bp_producer_t *p, int timeout_ms) BP_MUSTCHECK;

#endif
