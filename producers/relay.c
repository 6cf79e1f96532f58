/** @file The outbox relay: PostgreSQL outbox rows → Avro → Kafka, then DELETE. */
#include "producers/relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/log.h"

bp_err_t bp_relay_once(bp_pg_t *pg, bp_codec_t *codec, bp_producer_t *prod, const char *dlq_topic,
                       size_t limit, size_t *relayed)
{
    bp_outbox_batch_t batch;
    *relayed = 0;
    bp_err_t err = bp_pg_outbox_take(pg, limit, &batch);
    if (err != BP_OK || batch.n == 0)
        return err;
    for (size_t i = 0; i < batch.n && err == BP_OK; i++) {
        const bp_outbox_row_t *row = &batch.rows[i];
        char subject[300];
        snprintf(subject, sizeof(subject), "%s-value", row->topic);
        void *buf = NULL;
        size_t len = 0;
        const char *why = "no schema for the topic's subject";
        int32_t id = bp_codec_subject_id(codec, subject);
        bp_err_t enc = id < 0
                           ? BP_EINVAL
                           : bp_codec_encode_json(codec, id, row->payload_json, &buf, &len, &why);
        if (enc == BP_OK) {
            err = bp_producer_send(prod, row->topic, row->key, strlen(row->key), buf, len, NULL, 0);
        } else if (enc == BP_EINVAL) {
            BP_LOG_ERROR("outbox row cannot be encoded, sent to DLQ",
                         "\"topic\":\"%s\",\"outboxId\":%lld,\"error\":\"%s\"", row->topic,
                         (long long)row->id, why);
            bp_header_t h[2] = {{"error", why, strlen(why)},
                                {"source-topic", row->topic, strlen(row->topic)}};
            err = bp_producer_send(prod, dlq_topic, row->key, strlen(row->key), row->payload_json,
                                   strlen(row->payload_json), h, 2);
        } else {
            err = enc;
        }
        free(buf);
    }
    if (err == BP_OK)
        err = bp_producer_flush(prod, 30000);
    size_t n = batch.n;
    bp_err_t fin = bp_pg_outbox_finish(pg, &batch, err == BP_OK ? n : 0);
    if (err == BP_OK && fin == BP_OK)
        *relayed = n;
    return err != BP_OK ? err : fin;
}
