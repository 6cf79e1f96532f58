/** @file Kafka producer: idempotent, delivery reports counted per flush. */
#include "producers/producer.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "app/log.h"

struct bp_producer {
    rd_kafka_t *rk;
    atomic_long failed; /* delivery failures since the last flush */
};

/* Runs on the thread that calls rd_kafka_poll/flush. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    bp_producer_t *p = opaque;
    if (m->err) {
        atomic_fetch_add(&p->failed, 1);
        BP_LOG_WARN("delivery failed", "\"topic\":\"%s\",\"error\":\"%s\"",
                    rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
    }
}

void bp_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    char esc[512];
    bp_log(level <= 3   ? BP_LOG_ERROR
           : level <= 5 ? BP_LOG_WARN
                        : BP_LOG_DEBUG,
           "librdkafka", "\"facility\":\"%s\",\"detail\":\"%s\"", fac,
           bp_log_str(esc, sizeof(esc), buf));
}

bp_err_t bp_producer_new(const char *bootstrap, bp_producer_t **out, char *why, size_t why_len)
{
    static const char *const settings[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "5"},
        {"message.timeout.ms", "30000"},
        {"compression.type", "lz4"},
        /* After a broker outage, reconnect within a second instead of librdkafka's 10 s
         * ceiling, as the consumer does: queued level-ups and DLQ messages go out as soon as
         * the cluster is back. */
        {"reconnect.backoff.max.ms", "1000"},
    };
    bp_producer_t *p = calloc(1, sizeof(*p));
    if (!p)
        return BP_ENOMEM;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) !=
        RD_KAFKA_CONF_OK)
        goto fail;
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], err, sizeof(err)) !=
            RD_KAFKA_CONF_OK)
            goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_log_cb(conf, bp_kafka_log_cb);
    rd_kafka_conf_set_opaque(conf, p);
    /* On success rd_kafka_new owns conf. */
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!p->rk)
        goto fail;
    *out = p;
    return BP_OK;
fail:
    rd_kafka_conf_destroy(conf);
    free(p);
    snprintf(why, why_len, "kafka producer: %s", err);
    return BP_EFATAL;
}

void bp_producer_destroy(bp_producer_t *p)
{
    if (!p)
        return;
    if (rd_kafka_flush(p->rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        BP_LOG_WARN("producer closed with undelivered messages", "\"queued\":%d",
                    rd_kafka_outq_len(p->rk));
    rd_kafka_destroy(p->rk);
    free(p);
}

bp_err_t bp_producer_send(bp_producer_t *p, const char *topic, const void *key, size_t key_len,
                          const void *value, size_t value_len, const bp_header_t *headers,
                          size_t n_headers)
{
    rd_kafka_headers_t *hdrs = NULL;
    if (n_headers > 0) {
        hdrs = rd_kafka_headers_new(n_headers);
        for (size_t i = 0; i < n_headers; i++)
            rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                                (ssize_t)headers[i].len);
    }
    for (;;) {
        /* On success the message owns hdrs. */
        rd_kafka_resp_err_t err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return BP_OK;
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(p->rk, 50);
            continue;
        }
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        BP_LOG_WARN("produce refused", "\"topic\":\"%s\",\"error\":\"%s\"", topic,
                    rd_kafka_err2str(err));
        return BP_ERETRY;
    }
}

bp_err_t bp_producer_flush(bp_producer_t *p, int timeout_ms)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(p->rk, timeout_ms);
    long failed = atomic_exchange(&p->failed, 0);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR || failed > 0)
        return BP_ERETRY;
    return BP_OK;
}
