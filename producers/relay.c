/** @file The outbox relay: PostgreSQL outbox rows → Avro → Kafka, then DELETE; and the thread
 *  that runs it beside the worker loop. */
#include "producers/relay.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/log.h"
#include "app/metrics.h"

/* The backlog gauge counts up to this many rows. */
#define BACKLOG_CAP 1000000
#define BACKLOG_EVERY_MS 1000
#define CONNECT_BACKOFF_MAX_MS 5000

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

/* ---- the relay thread ---- */

struct bp_relay {
    char *pg_dsn, *dlq_topic;
    size_t limit;
    int idle_ms;
    bp_codec_t *codec;
    bp_producer_t *prod;
    bp_pg_t *pg; /* the thread's; NULL until connected */

    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool kicked;   /* under lock */
    bool stopping; /* under lock */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until kicked, stopped or @p ms passed. @return true when stopping. */
static bool wait_kick(bp_relay_t *r, int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->lock);
    while (!r->kicked && !r->stopping)
        if (pthread_cond_timedwait(&r->cond, &r->lock, &until) != 0)
            break; /* timed out: a round anyway */
    r->kicked = false;
    bool stopping = r->stopping;
    pthread_mutex_unlock(&r->lock);
    return stopping;
}

/* Rounds until the outbox has less than a round left, or a round fails. @return the rows
 * relayed. */
static size_t drain(bp_relay_t *r)
{
    size_t n, total = 0;
    do {
        if (bp_relay_once(r->pg, r->codec, r->prod, r->dlq_topic, r->limit, &n) != BP_OK)
            break; /* rows stay in the outbox; the next round sends them */
        bp_metrics_add(BP_M_OUTBOX_RELAYED, n);
        total += n;
    } while (n == r->limit);
    return total;
}

/* Set the backlog gauge (a capped count). */
static void count_backlog(bp_relay_t *r, int64_t *next_count)
{
    int64_t backlog;
    if (bp_pg_outbox_count(r->pg, BACKLOG_CAP, &backlog) == BP_OK)
        bp_metrics_gauge(BP_G_OUTBOX_BACKLOG, backlog);
    *next_count = mono_ms() + BACKLOG_EVERY_MS;
}

static void *relay_main(void *arg)
{
    bp_relay_t *r = arg;
    int64_t next_count = 0, next_connect = 0;
    int backoff = 100;
    for (;;) {
        bool stopping = wait_kick(r, r->idle_ms);
        if (!r->pg && mono_ms() >= next_connect) {
            if (bp_pg_connect(r->pg_dsn, &r->pg) != BP_OK) {
                r->pg = NULL;
                next_connect = mono_ms() + backoff; /* logged by bp_pg_connect */
                backoff =
                    backoff * 2 > CONNECT_BACKOFF_MAX_MS ? CONNECT_BACKOFF_MAX_MS : backoff * 2;
            } else {
                backoff = 100;
            }
        }
        if (r->pg) {
            /* Before the rounds too: while Kafka is down a round waits for delivery, and the
             * gauge shows what waits meanwhile. */
            if (mono_ms() >= next_count)
                count_backlog(r, &next_count);
            if (drain(r) > 0 || mono_ms() >= next_count)
                count_backlog(r, &next_count);
        }
        if (stopping)
            break;
    }
    return NULL;
}

static void relay_free(bp_relay_t *r)
{
    bp_pg_destroy(r->pg);
    bp_producer_destroy(r->prod);
    bp_codec_destroy(r->codec);
    free(r->pg_dsn);
    free(r->dlq_topic);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}

bp_err_t bp_relay_start(const bp_relay_config_t *cfg, bp_relay_t **out)
{
    char why[512];
    bp_err_t err = BP_ENOMEM;
    *out = NULL;
    bp_relay_t *r = calloc(1, sizeof(*r));
    if (!r)
        return BP_ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&r->lock, NULL);
    r->limit = cfg->limit;
    r->idle_ms = cfg->idle_ms;
    r->pg_dsn = strdup(cfg->pg_dsn);
    r->dlq_topic = strdup(cfg->dlq_topic);
    if (!r->pg_dsn || !r->dlq_topic)
        goto fail;
    if (bp_codec_new(cfg->schemas_dir, &r->codec, why, sizeof(why)) != BP_OK) {
        BP_LOG_ERROR("relay: cannot load Avro schemas", "\"error\":\"%s\"", why);
        err = BP_EFATAL;
        goto fail;
    }
    if (bp_producer_new(cfg->kafka_bootstrap, &r->prod, why, sizeof(why)) != BP_OK) {
        BP_LOG_ERROR("relay: kafka producer", "\"error\":\"%s\"", why);
        err = BP_EFATAL;
        goto fail;
    }
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0)
        goto fail;
    r->started = true;
    *out = r;
    return BP_OK;
fail:
    relay_free(r);
    return err;
}

void bp_relay_kick(bp_relay_t *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->kicked = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

void bp_relay_stop(bp_relay_t *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (r->started)
        pthread_join(r->thread, NULL);
    relay_free(r);
}
