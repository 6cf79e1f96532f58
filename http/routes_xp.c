/** @file POST /progress/{playerId}/xp: an XP grant, validated, rate-limited per player in
 *  Redis and produced to the XP topic as a Confluent-framed XpEvent; the worker applies it
 *  like any other event (one write path). The answer waits for the broker's acknowledgement
 *  of that one message. */
#include "http/routes.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "app/log.h"
#include "core/event.h"
#include "core/season.h"
#include "http/auth.h"
#include "http/bodies.h"
#include "http/request.h"
#include "producers/codec.h"
#include "producers/producer.h"
#include "store/cache.h"

/** Rate-limit window: grants are counted per player per minute. */
#define RATE_WINDOW_S 60
/** A broker that does not acknowledge within this time fails the request (503): the
 *  request thread waits for the delivery report, so this bounds the answer's latency. */
#define DELIVERY_TIMEOUT_MS "5000"
/** Retry-After of a 503 when Kafka failed; for as long, grants fail fast without waiting
 *  (a blocked request blocks its libmicrohttpd thread and every connection on it), then
 *  one request at a time probes the broker again. */
#define KAFKA_RETRY_AFTER_S 2
/** Random bits of a generated eventId, in bytes (rendered as hex). */
#define EVENT_ID_RANDOM_BYTES 16

struct bp_http_xp {
    rd_kafka_t *rk;
    const char *topic; /* borrowed from the server's config */
    int limit;         /* grants per player per RATE_WINDOW_S */
    int32_t schema_id;
    pthread_mutex_t codec_lock; /* the codec is not thread-safe */
    bp_codec_t *codec;
    atomic_bool rate_unenforced;     /* Redis failed: logged once until it works again */
    _Atomic int64_t fail_fast_until; /* monotonic ms; 0 while deliveries succeed */
    atomic_bool probing;             /* a request is trying the broker after a failure */
};

/* The delivery report of one message, written by whichever thread polls it. */
typedef struct {
    rd_kafka_resp_err_t err;
    atomic_int state; /* 0 pending, 1 delivered, 2 failed */
} delivery_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    delivery_t *d = m->_private;
    if (!d)
        return;
    d->err = m->err;
    atomic_store(&d->state, m->err ? 2 : 1);
}

bp_err_t bp_http_xp_new(const bp_http_config_t *cfg, bp_http_xp_t **out)
{
    /* The settings of producers/producer.c (idempotent, acks=all), with a delivery timeout
     * that fits an HTTP request. */
    static const char *const settings[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "1"},
        {"message.timeout.ms", DELIVERY_TIMEOUT_MS},
        {"compression.type", "lz4"},
    };
    bp_err_t err = BP_EFATAL;
    char why[256], subject[300], esc[320];
    bp_http_xp_t *x = NULL;
    rd_kafka_conf_t *conf = NULL;

    *out = NULL;
    if (!cfg->kafka_bootstrap || !*cfg->kafka_bootstrap || !cfg->xp_topic || !*cfg->xp_topic ||
        !cfg->schemas_dir) {
        BP_LOG_ERROR("XP grants need kafka_bootstrap, xp_topic and schemas_dir", NULL);
        return BP_EFATAL;
    }
    if (!(x = calloc(1, sizeof(*x))))
        return BP_ENOMEM;
    x->topic = cfg->xp_topic;
    x->limit = cfg->xp_grants_per_minute > 0 ? cfg->xp_grants_per_minute : 1;
    atomic_init(&x->rate_unenforced, false);
    atomic_init(&x->fail_fast_until, 0);
    atomic_init(&x->probing, false);
    if (pthread_mutex_init(&x->codec_lock, NULL) != 0) {
        free(x);
        return BP_ENOMEM;
    }
    if (bp_codec_new(cfg->schemas_dir, &x->codec, why, sizeof(why)) != BP_OK) {
        BP_LOG_ERROR("XP grant codec not loaded", "\"error\":\"%s\"",
                     bp_log_str(esc, sizeof(esc), why));
        goto out;
    }
    snprintf(subject, sizeof(subject), "%s-value", cfg->xp_topic);
    x->schema_id = bp_codec_subject_id(x->codec, subject);
    if (x->schema_id < 0) {
        BP_LOG_ERROR("no schema for the XP topic's subject in subjects.json", "\"subject\":\"%s\"",
                     bp_log_str(esc, sizeof(esc), subject));
        goto out;
    }
    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg->kafka_bootstrap, why, sizeof(why)) !=
        RD_KAFKA_CONF_OK)
        goto conf_failed;
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], why, sizeof(why)) !=
            RD_KAFKA_CONF_OK)
            goto conf_failed;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_log_cb(conf, bp_kafka_log_cb);
    x->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (x->rk) {
        conf = NULL; /* owned by x->rk */
        err = BP_OK;
        goto out;
    }
conf_failed:
    BP_LOG_ERROR("XP grant producer not created", "\"error\":\"%s\"",
                 bp_log_str(esc, sizeof(esc), why));
out:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (err != BP_OK) {
        bp_http_xp_destroy(x);
        x = NULL;
    }
    *out = x;
    return err;
}

void bp_http_xp_destroy(bp_http_xp_t *x)
{
    if (!x)
        return;
    if (x->rk) {
        /* No request waits any more (the server has stopped): nothing is left to deliver
         * but messages whose requests already got their answer. */
        if (rd_kafka_flush(x->rk, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
            BP_LOG_WARN("XP grant producer closed with undelivered messages", "\"queued\":%d",
                        rd_kafka_outq_len(x->rk));
        rd_kafka_destroy(x->rk);
    }
    bp_codec_destroy(x->codec);
    pthread_mutex_destroy(&x->codec_lock);
    free(x);
}

/* 128 random bits as 32 hex digits. @return false when the kernel gives no randomness. */
static bool random_event_id(char *out, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[EVENT_ID_RANDOM_BYTES];
    size_t got = 0;
    while (got < sizeof(rnd)) {
        ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    if (len < 2 * sizeof(rnd) + 1)
        return false;
    for (size_t i = 0; i < sizeof(rnd); i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 15];
    }
    out[2 * sizeof(rnd)] = '\0';
    return true;
}

/* ---- rate limit and produce ---- */

/* @return true when the grant may go on; false after replying 429. Redis being down or
 * absent lets every grant through (fail open), logged once per outage. */
static bool rate_allows(bp_http_req_t *req, bp_http_xp_t *x, const char *player_id)
{
    char key[sizeof("bp:rate:xp:") + BP_ID_MAX];
    int retry_after = 0;
    bp_cache_t *cache = bp_http_req_cache(req);
    snprintf(key, sizeof(key), "bp:rate:xp:%s", player_id);
    bp_err_t err =
        cache ? bp_cache_rate_hit(cache, key, x->limit, RATE_WINDOW_S, &retry_after) : BP_ERETRY;
    if (err == BP_EINVAL) {
        char detail[128];
        snprintf(detail, sizeof(detail),
                 "at most %d XP grants per minute per player; retry in %d s", x->limit,
                 retry_after);
        bp_http_reply_problem(req, 429, "rate-limited", detail);
        req->resp.retry_after_s = retry_after;
        return false;
    }
    if (err == BP_OK) {
        if (atomic_exchange(&x->rate_unenforced, false))
            BP_LOG_INFO("XP grant rate limit enforced again", NULL);
    } else if (!atomic_exchange(&x->rate_unenforced, true)) {
        BP_LOG_WARN("XP grant rate limit not enforced: Redis unavailable", "\"error\":\"%s\"",
                    cache ? bp_err_str(err) : "no cache configured");
    }
    return true;
}

/* Encode and produce @p g, waiting for its delivery report.
 * @return BP_OK (acknowledged by the broker), BP_ERETRY (refused, failed or timed out),
 *         BP_ENOMEM/BP_EINVAL (could not encode). */
static bp_err_t produce(bp_http_xp_t *x, const bp_xp_body_t *g)
{
    void *buf = NULL;
    size_t len = 0;
    delivery_t d = {.err = RD_KAFKA_RESP_ERR_NO_ERROR};
    atomic_init(&d.state, 0);

    pthread_mutex_lock(&x->codec_lock);
    bp_err_t err = bp_codec_encode_xp(x->codec, x->schema_id, &g->ev, g->meta_keys, g->meta_values,
                                      g->n_meta, &buf, &len);
    pthread_mutex_unlock(&x->codec_lock);
    if (err != BP_OK)
        return err;
    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        x->rk, RD_KAFKA_V_TOPIC(x->topic), RD_KAFKA_V_KEY(g->ev.player_id, strlen(g->ev.player_id)),
        RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&d),
        RD_KAFKA_V_END);
    free(buf);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        BP_LOG_WARN("XP grant not queued", "\"topic\":\"%s\",\"error\":\"%s\"", x->topic,
                    rd_kafka_err2str(kerr));
        return BP_ERETRY;
    }
    /* Every queued message gets exactly one report within message.timeout.ms, so this
     * ends; d lives on this frame and must not be left before its report. Any waiting
     * thread may serve any report. */
    while (atomic_load(&d.state) == 0)
        rd_kafka_poll(x->rk, 10);
    if (atomic_load(&d.state) != 1) {
        BP_LOG_WARN("XP grant not delivered",
                    "\"topic\":\"%s\",\"eventId\":\"%s\",\"error\":\"%s\"", x->topic,
                    g->ev.event_id, rd_kafka_err2str(d.err));
        return BP_ERETRY;
    }
    return BP_OK;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* produce() behind a circuit breaker: after a failed delivery, grants fail fast for
 * KAFKA_RETRY_AFTER_S; then a single request probes while the others still fail fast.
 * @return as produce(). */
static bp_err_t produce_guarded(bp_http_xp_t *x, const bp_xp_body_t *g)
{
    bool probe = false;
    int64_t until = atomic_load(&x->fail_fast_until);
    if (until != 0) {
        bool idle = false;
        if (mono_ms() < until || !atomic_compare_exchange_strong(&x->probing, &idle, true))
            return BP_ERETRY;
        probe = true;
    }
    bp_err_t err = produce(x, g);
    if (err == BP_OK)
        atomic_store(&x->fail_fast_until, 0);
    else if (err == BP_ERETRY)
        atomic_store(&x->fail_fast_until, mono_ms() + KAFKA_RETRY_AFTER_S * 1000);
    if (probe)
        atomic_store(&x->probing, false);
    return err;
}

static void grant_xp(bp_http_req_t *req)
{
    bp_http_xp_t *x = req->env->xp;
    const char *player_id = bp_http_req_param(req, "playerId");
    bp_xp_body_t g;
    char why[256];
    json_t *root = NULL;

    if (!x) {
        bp_http_reply_problem(req, 503, "xp-grants-unavailable", "XP grants are not configured");
        return;
    }
    if (!bp_http_req_body(req, BP_BODY_XP, &root, &g))
        return;
    const char *key = bp_http_req_header(req, "Idempotency-Key");
    if (key) {
        if (!bp_id_valid(key, strlen(key))) {
            snprintf(why, sizeof(why),
                     "Idempotency-Key must be 1 to %d characters of [A-Za-z0-9._:@-]", BP_ID_MAX);
            bp_http_reply_problem(req, 400, "invalid-idempotency-key", why);
            goto out;
        }
        snprintf(g.ev.event_id, sizeof(g.ev.event_id), "%s", key);
    } else if (!random_event_id(g.ev.event_id, sizeof(g.ev.event_id))) {
        BP_LOG_ERROR("no randomness for an eventId", "\"errno\":%d", errno);
        bp_http_reply_problem(req, 500, "internal-error", "cannot generate an eventId");
        goto out;
    }
    snprintf(g.ev.player_id, sizeof(g.ev.player_id), "%s", player_id);
    if (g.ev.occurred_at_ms == 0) /* absent */
        g.ev.occurred_at_ms = req->now_ms;

    /* An explicit season must exist and contain occurredAt, or the worker would only
     * dead-letter the event: say so now. */
    if (g.ev.season_id[0]) {
        const bp_season_list_t *snap = bp_http_req_seasons(req);
        const char *reason = NULL;
        int idx;
        if (bp_event_attribute(snap->items, snap->n, &g.ev, &idx, &reason) != BP_OK) {
            snprintf(why, sizeof(why), "seasonId %s: %s", g.ev.season_id,
                     reason ? reason : "not applicable");
            bp_http_reply_problem(req, 422, "season-not-applicable", why);
            goto out;
        }
    }
    const char *invalid = NULL;
    if (bp_xp_event_validate(&g.ev, &invalid) != BP_OK) { /* the parsers should have caught it */
        bp_http_reply_problem(req, 400, "invalid-body", invalid);
        goto out;
    }
    if (!rate_allows(req, x, player_id))
        goto out;

    bp_err_t err = produce_guarded(x, &g);
    if (err != BP_OK) {
        if (err == BP_ERETRY) {
            bp_http_reply_problem(req, 503, "kafka-unavailable",
                                  "the grant could not be queued for processing; retry later "
                                  "(with the same Idempotency-Key)");
            req->resp.retry_after_s = KAFKA_RETRY_AFTER_S;
        } else {
            bp_http_reply_problem(req, 500, "internal-error", "the grant could not be encoded");
        }
        goto out;
    }
    BP_LOG_DEBUG("XP grant produced", "\"eventId\":\"%s\",\"playerId\":\"%s\",\"amount\":%d",
                 g.ev.event_id, g.ev.player_id, (int)g.ev.amount);
    bp_http_reply_json(req, 202,
                       json_pack("{s:s, s:s, s:i, s:s}", "eventId", g.ev.event_id, "playerId",
                                 g.ev.player_id, "amount", (int)g.ev.amount, "reason",
                                 g.ev.reason));
    req->resp.cache_control = "no-store";
out:
    json_decref(root);
}

const bp_http_route_t bp_http_routes_xp[] = {
    {"POST", "/progress/{playerId}/xp", grant_xp,
     BP_ACCESS_TOKEN | BP_SCOPE_SERVICE | BP_SCOPE_ADMIN},
};
const size_t bp_http_routes_xp_n = sizeof(bp_http_routes_xp) / sizeof(bp_http_routes_xp[0]);
