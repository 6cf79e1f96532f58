/** @file The XP worker loop: poll → decode/validate/attribute → batch → one PostgreSQL
 *  transaction (offsets fenced inside it) → Redis (cache writer thread) and the outbox relay
 *  (relay thread), so the loop goes on with the next batch meanwhile. On a retryable failure
 *  the batch is dropped and its partitions are rewound to where the batch began. */
#include "consumers/worker.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "app/log.h"
#include "app/metrics.h"
#include "consumers/cache_writer.h"
#include "consumers/premium.h"
#include "core/event.h"
#include "core/reward.h"
#include "core/season.h"
#include "producers/codec.h"
#include "producers/producer.h"
#include "producers/relay.h"
#include "store/pg.h"
#include "store/rewards.h"
#include "store/season_end.h"

#define RELAY_LIMIT 2000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define STATS_EVERY_MS 10000
#define LAG_EVERY_MS 1000
/* Committed batches waiting for Redis, at most (bp_cache_writer_start). */
#define CACHE_QUEUE 2
#define SEASON_END_EVERY_MS 5000
#define SEASON_END_CHUNK 200
#define CLOSED_MAX 64

/* The topics the worker consumes, as indices into worker_t.topics. */
enum { T_XP = 0, T_PREMIUM, T_COUNT };

/* One assigned partition. */
typedef struct {
    int topic; /* T_XP or T_PREMIUM */
    int32_t partition;
    int64_t epoch;       /* fencing token from bp_pg_partitions_claim */
    int64_t batch_start; /* offset of its first message in the current batch, -1 if none */
    int64_t next_offset; /* offset after its last message in the current batch */
    int64_t applied;     /* next offset stored in PostgreSQL (-1: nothing ever stored) */
    int64_t counted_to;  /* loss counted up to here (check_skipped; -1: none) */
} part_t;

/* A PremiumGranted of the batch, with what the DLQ would need if it is refused. */
typedef struct {
    bp_premium_event_t ev;
    int season_idx;
    int32_t partition;
    int64_t offset;
    void *key; /* heap copies */
    size_t key_len;
    void *value;
    size_t value_len;
} premium_msg_t;

typedef struct {
    const bp_worker_config_t *cfg;
    rd_kafka_t *rk;
    bp_producer_t *prod;
    bp_codec_t *codec;
    bp_pg_t *pg;
    bp_cache_writer_t *cache; /* Redis writes (own thread) */
    bp_relay_t *relay;        /* the outbox relay (own thread) */
    int32_t xp_schema_id;
    int32_t premium_schema_id;
    const char *topics[T_COUNT];

    part_t *parts;
    size_t n_parts;
    bool assigned; /* a first assignment happened (the lag means something from then on) */

    /* the batch being built */
    const bp_season_list_t *snap;
    bp_xp_event_t *evs;
    int *season_idx;
    int32_t *ev_part;
    size_t n_evs;
    premium_msg_t *premiums; /* premium grants of the batch, applied before its XP */
    size_t n_premiums, cap_premiums;
    size_t n_msgs;
    size_t n_dlq;

    /* seasons known to be closed (end-of-season grants done): not asked again */
    char closed[CLOSED_MAX][BP_ID_MAX + 1];
    size_t n_closed;

    int backoff_ms;
    struct {
        unsigned long long consumed, applied, duplicates, unattributed, dlq, level_ups, batches,
            premiums, auto_grants, season_end_grants;
    } stats;
} worker_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep @p ms in slices, returning early when asked to stop. */
static void nap(const worker_t *w, int ms)
{
    while (ms > 0 && !*w->cfg->stop) {
        int slice = ms < 100 ? ms : 100;
        struct timespec ts = {0, (long)slice * 1000000L};
        nanosleep(&ts, NULL);
        ms -= slice;
    }
}

static part_t *find_part(worker_t *w, int topic, int32_t partition)
{
    for (size_t i = 0; i < w->n_parts; i++)
        if (w->parts[i].topic == topic && w->parts[i].partition == partition)
            return &w->parts[i];
    return NULL;
}

/* @return the T_* index of topic @p name, or -1. */
static int topic_index(const worker_t *w, const char *name)
{
    for (int t = 0; t < T_COUNT; t++)
        if (strcmp(w->topics[t], name) == 0)
            return t;
    return -1;
}

static void premium_msg_free(premium_msg_t *p)
{
    free(p->key);
    free(p->value);
}

static void batch_reset(worker_t *w)
{
    for (size_t i = 0; i < w->n_premiums; i++)
        premium_msg_free(&w->premiums[i]);
    w->n_premiums = 0;
    w->n_evs = w->n_msgs = w->n_dlq = 0;
    for (size_t i = 0; i < w->n_parts; i++)
        w->parts[i].batch_start = -1;
}

/* ---- DLQ ---- */

static bp_err_t dlq_send(worker_t *w, const char *topic, int32_t partition, int64_t offset,
                         const void *key, size_t key_len, const void *value, size_t value_len,
                         const char *why)
{
    char part[16], off[24];
    snprintf(part, sizeof(part), "%d", (int)partition);
    snprintf(off, sizeof(off), "%lld", (long long)offset);
    bp_header_t h[4] = {{"error", why, strlen(why)},
                        {"source-topic", topic, strlen(topic)},
                        {"source-partition", part, strlen(part)},
                        {"source-offset", off, strlen(off)}};
    BP_LOG_WARN("event sent to DLQ",
                "\"topic\":\"%s\",\"partition\":%d,\"offset\":%lld,\"error\":\"%s\"", topic,
                (int)partition, (long long)offset, why);
    w->n_dlq++;
    return bp_producer_send(w->prod, w->cfg->dlq_topic, key, key_len, value, value_len, h, 4);
}

static bp_err_t send_to_dlq(worker_t *w, const rd_kafka_message_t *m, const char *why)
{
    return dlq_send(w, rd_kafka_topic_name(m->rkt), m->partition, m->offset, m->key, m->key_len,
                    m->payload, m->len, why);
}

/* ---- one message into the batch ---- */

/* Decode, validate and attribute an XP event into the batch. @return BP_OK, BP_EINVAL
 * with *why (to the DLQ). */
static bp_err_t take_xp(worker_t *w, const rd_kafka_message_t *m, const char **why)
{
    bp_xp_event_t *ev = &w->evs[w->n_evs];
    int idx = -1;
    bp_err_t err = bp_codec_decode_xp(w->codec, w->xp_schema_id, m->payload, m->len, ev, why);
    if (err == BP_OK)
        err = bp_xp_event_validate(ev, why);
    if (err == BP_OK)
        err = bp_event_attribute(w->snap->items, w->snap->n, ev, &idx, why);
    if (err != BP_OK)
        return err;
    /* Too late for its season's grace window: recorded as processed, changes nothing. */
    if (idx >= 0 && !bp_season_accepts(&w->snap->items[idx], now_ms()))
        idx = -1;
    w->season_idx[w->n_evs] = idx;
    w->ev_part[w->n_evs] = m->partition;
    w->n_evs++;
    return BP_OK;
}

/* Decode and validate a PremiumGranted into the batch. @return BP_OK, BP_EINVAL with
 * *why (to the DLQ), BP_ENOMEM. */
static bp_err_t take_premium(worker_t *w, const rd_kafka_message_t *m, const char **why)
{
    premium_msg_t p = {.partition = m->partition, .offset = m->offset};
    bp_err_t err =
        bp_premium_decode(w->codec, w->premium_schema_id, m->payload, m->len, &p.ev, why);
    if (err != BP_OK)
        return err;
    p.season_idx = bp_season_find(w->snap->items, w->snap->n, p.ev.season_id);
    if (p.season_idx < 0) {
        *why = "seasonId names no known season";
        return BP_EINVAL;
    }
    if (w->n_premiums == w->cap_premiums) {
        size_t cap = w->cap_premiums ? w->cap_premiums * 2 : 16;
        premium_msg_t *np = realloc(w->premiums, cap * sizeof(*np));
        if (!np)
            return BP_ENOMEM;
        w->premiums = np;
        w->cap_premiums = cap;
    }
    p.key = malloc(m->key_len + 1);
    p.value = malloc(m->len + 1);
    if (!p.key || !p.value) {
        premium_msg_free(&p);
        return BP_ENOMEM;
    }
    if (m->key_len)
        memcpy(p.key, m->key, m->key_len);
    if (m->len)
        memcpy(p.value, m->payload, m->len);
    p.key_len = m->key_len;
    p.value_len = m->len;
    w->premiums[w->n_premiums++] = p;
    return BP_OK;
}

/*
 * Messages lost before they were read: @p expected is the offset the partition should go on
 * from (-1: nothing stored yet, wherever it starts is right), @p got the offset of the
 * message that came, @p log_start the partition's first offset still on the broker (-1:
 * unknown). Offsets may have gaps that lose nothing (transaction markers, compaction); a gap
 * is a loss only where the log no longer reaches back to the expected offset: retention
 * deleted those messages, and auto.offset.reset moved the consumer on without a word.
 * @return how many were lost, 0 when none.
 */
static int64_t skipped_messages(int64_t expected, int64_t got, int64_t log_start)
{
    if (expected < 0 || got <= expected || log_start <= expected)
        return 0;
    return (got < log_start ? got : log_start) - expected;
}

/* Count and log loudly the messages of @p p lost before @p m (skipped_messages), once: a
 * batch rewound after a failure reads the same gap again. */
static void check_skipped(worker_t *w, part_t *p, const rd_kafka_message_t *m)
{
    int64_t expected = p->batch_start >= 0 ? p->next_offset : p->applied;
    if (p->counted_to > expected)
        expected = p->counted_to;
    if (expected < 0 || m->offset <= expected)
        return; /* the usual case: no gap, no broker call */
    const char *topic = w->topics[p->topic];
    int64_t lo = RD_KAFKA_OFFSET_INVALID, hi = RD_KAFKA_OFFSET_INVALID;
    /* The log start of the last fetch response; asked of the broker only when unknown. */
    if (rd_kafka_get_watermark_offsets(w->rk, topic, p->partition, &lo, &hi) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        lo < 0)
        (void)rd_kafka_query_watermark_offsets(w->rk, topic, p->partition, &lo, &hi, 2000);
    int64_t n = skipped_messages(expected, m->offset, lo);
    if (n == 0)
        return;
    BP_LOG_ERROR("messages lost: the partition's log starts past the offset to consume next "
                 "(deleted by retention before they were applied)",
                 "\"topic\":\"%s\",\"partition\":%d,\"storedOffset\":%lld,"
                 "\"expectedOffset\":%lld,\"resumedOffset\":%lld,\"logStartOffset\":%lld,"
                 "\"skipped\":%lld",
                 topic, (int)p->partition, (long long)p->applied, (long long)expected,
                 (long long)m->offset, (long long)lo, (long long)n);
    bp_metrics_skipped(topic, (uint64_t)n);
    p->counted_to = m->offset;
}

static bp_err_t add_message(worker_t *w, const rd_kafka_message_t *m)
{
    int t = topic_index(w, rd_kafka_topic_name(m->rkt));
    part_t *p = t < 0 ? NULL : find_part(w, t, m->partition);
    if (!p)
        return BP_OK; /* left over from a revoked assignment */
    check_skipped(w, p, m);
    const char *why = NULL;
    bp_err_t err = t == T_XP ? take_xp(w, m, &why) : take_premium(w, m, &why);
    if (err == BP_EINVAL)
        err = send_to_dlq(w, m, why ? why : "invalid event");
    if (err != BP_OK)
        return err;
    if (p->batch_start < 0)
        p->batch_start = m->offset;
    p->next_offset = m->offset + 1;
    w->n_msgs++;
    w->stats.consumed++;
    return BP_OK;
}

/* ---- rewinding after a failure ---- */

/* Seek every partition of the batch back to its first message and drop the batch. */
static void rewind_batch(worker_t *w)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)w->n_parts);
    for (size_t i = 0; i < w->n_parts; i++)
        if (w->parts[i].batch_start >= 0)
            rd_kafka_topic_partition_list_add(l, w->topics[w->parts[i].topic],
                                              w->parts[i].partition)
                ->offset = w->parts[i].batch_start;
    if (l->cnt > 0) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(w->rk, l, 5000);
        if (e) {
            BP_LOG_WARN("rewind failed", "\"error\":\"%s\"", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    batch_reset(w);
}

/* Remove the messages and offsets of partitions we no longer own. */
static void drop_partitions(worker_t *w, const bp_partition_state_t *gone, size_t n_gone)
{
    for (size_t j = 0; j < n_gone; j++) {
        int t = topic_index(w, gone[j].topic);
        size_t keep = 0;
        if (t == T_XP) {
            for (size_t i = 0; i < w->n_evs; i++) {
                if (w->ev_part[i] == gone[j].partition)
                    continue;
                w->evs[keep] = w->evs[i];
                w->season_idx[keep] = w->season_idx[i];
                w->ev_part[keep] = w->ev_part[i];
                keep++;
            }
            w->n_evs = keep;
        } else if (t == T_PREMIUM) {
            for (size_t i = 0; i < w->n_premiums; i++) {
                if (w->premiums[i].partition == gone[j].partition)
                    premium_msg_free(&w->premiums[i]);
                else
                    w->premiums[keep++] = w->premiums[i];
            }
            w->n_premiums = keep;
        }
        part_t *p = find_part(w, t, gone[j].partition);
        if (p)
            *p = w->parts[--w->n_parts];
    }
}

/* ---- applying a batch ---- */

static void after_commit(worker_t *w, bp_batch_result_t *r)
{
    w->stats.applied += r->applied;
    w->stats.duplicates += r->duplicates;
    w->stats.unattributed += r->unattributed;
    w->stats.level_ups += r->level_ups;
    w->stats.auto_grants += r->auto_grants;
    w->stats.dlq += w->n_dlq;
    w->stats.batches++;
    bp_metrics_add(BP_M_XP_CONSUMED, w->n_msgs);
    bp_metrics_add(BP_M_XP_APPLIED, r->applied);
    bp_metrics_add(BP_M_XP_DUPLICATE, r->duplicates);
    bp_metrics_add(BP_M_XP_UNATTRIBUTED, r->unattributed);
    bp_metrics_add(BP_M_LEVEL_UPS, r->level_ups);
    bp_metrics_add(BP_M_AUTO_GRANTS, r->auto_grants);
    bp_metrics_add(BP_M_DLQ, w->n_dlq);
    bp_metrics_add(BP_M_BATCHES, 1);

    /* Level-ups and grants wait in the outbox: the relay thread produces them now. */
    if (r->level_ups > 0 || r->auto_grants > 0)
        bp_relay_kick(w->relay);
    /* Redis on the writer thread; a batch it cannot take costs the cache, not the data. */
    if (w->cache && r->n_changes > 0 &&
        bp_cache_writer_put(w->cache, &r->changes, r->n_changes, w->snap->items, w->snap->n,
                            now_ms()) != BP_OK)
        BP_LOG_WARN("progress not queued for redis (out of memory); reads use PostgreSQL", NULL);

    /* Offsets live in PostgreSQL; committing them to Kafka too only shows consumer lag. */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)w->n_parts);
    for (size_t i = 0; i < w->n_parts; i++)
        if (w->parts[i].batch_start >= 0) {
            w->parts[i].applied = w->parts[i].next_offset;
            rd_kafka_topic_partition_list_add(l, w->topics[w->parts[i].topic],
                                              w->parts[i].partition)
                ->offset = w->parts[i].next_offset;
        }
    if (l->cnt > 0)
        (void)rd_kafka_commit(w->rk, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Grant the batch's premium passes, each in its own transaction (idempotent by
 * transactionId, so a batch consumed again changes nothing). A transactionId already used
 * for another player or season goes to the DLQ. @return BP_OK, BP_ERETRY, BP_EFATAL. */
static bp_err_t apply_premiums(worker_t *w)
{
    for (size_t i = 0; i < w->n_premiums; i++) {
        premium_msg_t *p = &w->premiums[i];
        bp_premium_result_t result;
        bp_err_t err = bp_pg_premium_grant(w->pg, &w->snap->items[p->season_idx], p->ev.player_id,
                                           p->ev.transaction_id, p->ev.source, p->ev.granted_at_ms,
                                           "worker", w->cfg->rewards_topic, &result, NULL);
        if (err != BP_OK)
            return err;
        if (result == BP_PREMIUM_CONFLICT) {
            err = dlq_send(w, w->topics[T_PREMIUM], p->partition, p->offset, p->key, p->key_len,
                           p->value, p->value_len,
                           "transactionId already used for another player or season");
            if (err != BP_OK)
                return err;
        } else if (result == BP_PREMIUM_GRANTED) {
            w->stats.premiums++;
            bp_metrics_add(BP_M_PREMIUM_GRANTS, 1);
            bp_relay_kick(w->relay); /* autoClaim grants of the levels already reached */
        }
    }
    return BP_OK;
}

/* Apply the batch once. @return BP_OK (committed, batch cleared), BP_ERETRY (caller
 * rewinds and backs off), BP_EFATAL. Fenced partitions are dropped and the rest retried. */
static bp_err_t apply_batch(worker_t *w)
{
    bp_err_t err = apply_premiums(w);
    if (err != BP_OK)
        return err;
    if (w->n_dlq > 0 && bp_producer_flush(w->prod, 30000) != BP_OK) {
        BP_LOG_WARN("DLQ delivery failed; batch will be consumed again", NULL);
        return BP_ERETRY;
    }
    for (;;) {
        bp_partition_state_t offs[256];
        size_t n_offs = 0;
        for (size_t i = 0; i < w->n_parts && n_offs < 256; i++) {
            if (w->parts[i].batch_start < 0)
                continue;
            offs[n_offs].topic = w->topics[w->parts[i].topic];
            offs[n_offs].partition = w->parts[i].partition;
            offs[n_offs].next_offset = w->parts[i].next_offset;
            offs[n_offs].epoch = w->parts[i].epoch;
            n_offs++;
        }
        if (n_offs == 0) {
            batch_reset(w);
            return BP_OK;
        }
        bp_batch_t b = {
            .group = w->cfg->group,
            .events = w->evs,
            .season_idx = w->season_idx,
            .n_events = w->n_evs,
            .seasons = w->snap->items,
            .n_seasons = w->snap->n,
            .offsets = offs,
            .n_offsets = n_offs,
            .levelup_topic = w->cfg->levelup_topic,
            .rewards_topic = w->cfg->rewards_topic,
        };
        bp_batch_result_t r;
        int64_t t0 = mono_ms();
        err = bp_pg_apply_batch(w->pg, &b, &r);
        if (err == BP_OK) {
            BP_LOG_DEBUG("batch committed",
                         "\"messages\":%zu,\"applied\":%zu,\"duplicates\":%zu,\"dlq\":%zu,"
                         "\"levelUps\":%zu,\"ms\":%lld",
                         w->n_msgs, r.applied, r.duplicates, w->n_dlq, r.level_ups,
                         (long long)(mono_ms() - t0));
            bp_metrics_batch(w->n_msgs, (double)(mono_ms() - t0) / 1000.0, r.commit_seconds);
            after_commit(w, &r);
            bp_batch_result_fini(&r);
            batch_reset(w);
            return BP_OK;
        }
        if (err == BP_EINVAL && r.n_fenced > 0) {
            for (size_t i = 0; i < r.n_fenced; i++)
                BP_LOG_WARN("partition fenced: another worker owns it now",
                            "\"topic\":\"%s\",\"partition\":%d", r.fenced[i].topic,
                            (int)r.fenced[i].partition);
            drop_partitions(w, r.fenced, r.n_fenced);
            bp_batch_result_fini(&r);
            continue;
        }
        bp_batch_result_fini(&r);
        return err == BP_EINVAL ? BP_EFATAL : err;
    }
}

/* ---- rebalancing ---- */

/* Claim the assigned partitions of topic @p t in PostgreSQL (retrying until it works or
 * the worker stops); fills their offsets and epochs in @p st. */
static void claim_topic(worker_t *w, int t, bp_partition_state_t *st, size_t n)
{
    /* Claiming bumps each partition's epoch so the previous owner can no longer commit. */
    int backoff = BACKOFF_MIN_MS;
    while (n > 0 && bp_pg_partitions_claim(w->pg, w->cfg->group, w->topics[t], st, n) != BP_OK) {
        if (*w->cfg->stop)
            break;
        BP_LOG_WARN("cannot claim partitions in PostgreSQL, retrying", "\"backoffMs\":%d", backoff);
        nap(w, backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
}

static void on_assign(worker_t *w, rd_kafka_topic_partition_list_t *parts)
{
    size_t n = (size_t)parts->cnt;
    bp_partition_state_t *st = calloc(n + 1, sizeof(*st));
    part_t *np = calloc(n + 1, sizeof(*np));
    int *topic_of = calloc(n + 1, sizeof(*topic_of));
    if (!st || !np || !topic_of)
        abort(); /* cannot assign without memory; a restart is the only sane answer */
    /* Group by topic: st holds the XP partitions first, then the premium ones. */
    size_t k = 0;
    for (int t = 0; t < T_COUNT; t++) {
        size_t first = k;
        for (size_t i = 0; i < n; i++) {
            if (topic_index(w, parts->elems[i].topic) != t)
                continue;
            st[k].topic = w->topics[t];
            st[k].partition = parts->elems[i].partition;
            topic_of[k++] = t;
        }
        claim_topic(w, t, st + first, k - first);
    }
    for (size_t i = 0; i < k; i++) {
        rd_kafka_topic_partition_t *e =
            rd_kafka_topic_partition_list_find(parts, st[i].topic, st[i].partition);
        e->offset = st[i].next_offset >= 0 ? st[i].next_offset : RD_KAFKA_OFFSET_BEGINNING;
        np[i] = (part_t){topic_of[i], st[i].partition, st[i].epoch, -1, -1, st[i].next_offset, -1};
        BP_LOG_INFO("partition assigned",
                    "\"topic\":\"%s\",\"partition\":%d,\"offset\":%lld,\"epoch\":%lld", st[i].topic,
                    (int)st[i].partition, (long long)st[i].next_offset, (long long)st[i].epoch);
    }
    free(w->parts);
    w->parts = np;
    w->n_parts = k;
    w->assigned = true;
    free(st);
    free(topic_of);
    rd_kafka_assign(w->rk, parts);
}

static void on_revoke(worker_t *w)
{
    /* Commit what we have for these partitions while we still own them; if that fails the
     * next owner starts from the stored offsets, so nothing is lost. */
    if (w->n_msgs > 0 && apply_batch(w) != BP_OK)
        BP_LOG_WARN("batch dropped at revocation; the next owner consumes it again", NULL);
    batch_reset(w);
    free(w->parts);
    w->parts = NULL;
    w->n_parts = 0;
    rd_kafka_assign(w->rk, NULL);
    BP_LOG_INFO("partitions revoked", NULL);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)rk;
    worker_t *w = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        on_assign(w, parts);
    else
        on_revoke(w);
}

/* ---- setup ---- */

static bp_err_t make_consumer(worker_t *w)
{
    char err[256], session[16];
    const bp_worker_config_t *c = w->cfg;
    snprintf(session, sizeof(session), "%d", c->session_timeout_ms);
    const char *settings[][2] = {
        {"bootstrap.servers", c->kafka_bootstrap},
        {"group.id", c->group},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        /* A stored offset the log no longer holds (retention) resumes at the log start:
         * what lay between is lost, and check_skipped counts and logs it. */
        {"auto.offset.reset", "earliest"},
        {"session.timeout.ms", session},
        {"enable.partition.eof", "false"},
        /* What librdkafka may hold prefetched: about 0.8 kB of memory per message, and
         * librdkafka 2.0 resumes fetching a partition only about a second after this was
         * exceeded, so the queue must hold a second of consumption. */
        {"queued.min.messages", "40000"},
        {"queued.max.messages.kbytes", "16384"},
        {"fetch.max.bytes", "8388608"},
        {"fetch.wait.max.ms", "20"},
        /* After a broker outage, reconnect within a second instead of librdkafka's 10 s
         * ceiling: the worker resumes as soon as the cluster is back (a refused connect
         * costs nothing). */
        {"reconnect.backoff.max.ms", "1000"},
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
            BP_LOG_ERROR("kafka consumer configuration", "\"error\":\"%s\"", err);
            rd_kafka_conf_destroy(conf);
            return BP_EFATAL;
        }
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_log_cb(conf, bp_kafka_log_cb);
    rd_kafka_conf_set_opaque(conf, w);
    /* On success rd_kafka_new owns conf. */
    w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!w->rk) {
        BP_LOG_ERROR("kafka consumer", "\"error\":\"%s\"", err);
        rd_kafka_conf_destroy(conf);
        return BP_EFATAL;
    }
    rd_kafka_poll_set_consumer(w->rk);
    for (int t = 0; t < T_COUNT; t++)
        bp_metrics_skipped(w->topics[t], 0); /* the series exist from the start, at 0 */
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(T_COUNT);
    for (int t = 0; t < T_COUNT; t++)
        rd_kafka_topic_partition_list_add(topics, w->topics[t], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(w->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        BP_LOG_ERROR("kafka subscribe", "\"topic\":\"%s\",\"error\":\"%s\"", c->xp_topic,
                     rd_kafka_err2str(e));
        return BP_EFATAL;
    }
    return BP_OK;
}

static bp_err_t setup(worker_t *w)
{
    char why[512];
    const bp_worker_config_t *c = w->cfg;
    size_t cap = (size_t)c->batch_max_events;
    w->evs = malloc(cap * sizeof(*w->evs));
    w->season_idx = malloc(cap * sizeof(*w->season_idx));
    w->ev_part = malloc(cap * sizeof(*w->ev_part));
    if (!w->evs || !w->season_idx || !w->ev_part)
        return BP_ENOMEM;
    if (bp_codec_new(c->schemas_dir, &w->codec, why, sizeof(why)) != BP_OK) {
        BP_LOG_ERROR("cannot load Avro schemas", "\"dir\":\"%s\",\"error\":\"%s\"", c->schemas_dir,
                     why);
        return BP_EFATAL;
    }
    /* Every topic read or written needs its "<topic>-value" subject in subjects.json. */
    const char *needed[] = {c->xp_topic, c->premium_topic, c->levelup_topic, c->rewards_topic};
    int32_t ids[4];
    for (size_t i = 0; i < 4; i++) {
        char subject[300];
        snprintf(subject, sizeof(subject), "%s-value", needed[i]);
        if ((ids[i] = bp_codec_subject_id(w->codec, subject)) < 0) {
            BP_LOG_ERROR("subjects.json lacks the subject of a configured topic",
                         "\"subject\":\"%s\"", subject);
            return BP_EFATAL;
        }
    }
    w->xp_schema_id = ids[0];
    w->premium_schema_id = ids[1];
    /* The DLQ producer; the relay has its own, so that waiting for the DLQ's deliveries
     * never waits for the relay's and the reverse. */
    if (bp_producer_new(c->kafka_bootstrap, &w->prod, why, sizeof(why)) != BP_OK) {
        BP_LOG_ERROR("kafka producer", "\"error\":\"%s\"", why);
        return BP_EFATAL;
    }
    bp_err_t err = bp_cache_writer_start(c->redis_url, c->cache_ttl_s, CACHE_QUEUE, &w->cache);
    if (err != BP_OK)
        return err == BP_EINVAL ? BP_EFATAL : err;
    bp_relay_config_t rc = {.pg_dsn = c->pg_dsn,
                            .kafka_bootstrap = c->kafka_bootstrap,
                            .schemas_dir = c->schemas_dir,
                            .dlq_topic = c->dlq_topic,
                            .limit = RELAY_LIMIT,
                            .idle_ms = 1000};
    if ((err = bp_relay_start(&rc, &w->relay)) != BP_OK)
        return err;
    /* PostgreSQL may be down at start: wait for it, as after any outage. */
    int backoff = BACKOFF_MIN_MS;
    while ((err = bp_pg_connect(c->pg_dsn, &w->pg)) == BP_ERETRY && !*c->stop) {
        BP_LOG_WARN("postgresql unavailable, retrying", "\"backoffMs\":%d", backoff);
        nap(w, backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    if (err != BP_OK)
        return *c->stop ? BP_OK : err;
    return make_consumer(w);
}

static void teardown(worker_t *w)
{
    if (w->rk) {
        rd_kafka_consumer_close(w->rk); /* leaves the group; revocation runs on_revoke */
        rd_kafka_destroy(w->rk);
    }
    /* After the last batch (revocation may apply one): its outbox rows and its progress. */
    bp_relay_stop(w->relay);
    bp_cache_writer_stop(w->cache);
    bp_producer_destroy(w->prod);
    bp_codec_destroy(w->codec);
    bp_pg_destroy(w->pg);
    free(w->evs);
    free(w->season_idx);
    free(w->ev_part);
    free(w->parts);
    for (size_t i = 0; i < w->n_premiums; i++)
        premium_msg_free(&w->premiums[i]);
    free(w->premiums);
}

/* ---- the loop ---- */

/*
 * Fill the batch until it is full, or the consumer has nothing more queued (an idle or
 * lightly loaded consumer commits at once: no waiting for the batch to fill, the freshness
 * of a lone event is the time to apply it), or batch_max_wait_ms after its first message
 * while messages keep coming. Under load librdkafka's queue is never empty and batches fill
 * up to batch_max_events.
 */
static bp_err_t collect(worker_t *w)
{
    int64_t deadline = -1;
    while (!*w->cfg->stop && w->n_msgs < (size_t)w->cfg->batch_max_events) {
        int timeout = 100;
        if (w->n_msgs == 0)
            deadline = -1; /* a revocation may have emptied the batch */
        else if (deadline >= 0) {
            if (deadline - mono_ms() <= 0)
                break;
            timeout = 0;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, timeout);
        if (!m) {
            if (w->n_msgs == 0)
                return BP_OK; /* idle: let the caller do housekeeping */
            break;            /* nothing more queued: commit what we have */
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                BP_LOG_WARN("kafka consumer error", "\"error\":\"%s\"", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (w->n_msgs == 0)
            deadline = mono_ms() + w->cfg->batch_max_wait_ms;
        bp_err_t err = add_message(w, m);
        rd_kafka_message_destroy(m);
        if (err != BP_OK)
            return err;
    }
    return BP_OK;
}

/* Consumer lag per topic (bp_consumer_lag): high watermarks as librdkafka last saw them in
 * fetch responses (no broker call), minus the next offsets stored in PostgreSQL. A topic
 * with a partition whose high watermark is not known yet (just assigned, nothing fetched)
 * keeps its previous value: 0 would claim a backlog is gone before it is even seen; so does
 * a worker that has not joined its group yet. */
static void update_lag(worker_t *w)
{
    if (!w->assigned)
        return;
    int64_t lag[T_COUNT] = {0};
    bool known[T_COUNT];
    for (int t = 0; t < T_COUNT; t++)
        known[t] = true;
    for (size_t i = 0; i < w->n_parts; i++) {
        const part_t *p = &w->parts[i];
        int64_t lo = RD_KAFKA_OFFSET_INVALID, hi = RD_KAFKA_OFFSET_INVALID;
        if (rd_kafka_get_watermark_offsets(w->rk, w->topics[p->topic], p->partition, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < 0) {
            known[p->topic] = false;
            continue;
        }
        int64_t from = p->applied >= 0 ? p->applied : (lo >= 0 ? lo : 0);
        if (hi > from)
            lag[p->topic] += hi - from;
    }
    for (int t = 0; t < T_COUNT; t++)
        if (known[t])
            bp_metrics_consumer_lag(w->topics[t], lag[t]);
}

/* Close the seasons whose claim window has ended and that grant unclaimed rewards then. */
static void close_seasons(worker_t *w, const bp_season_list_t *snap)
{
    for (size_t i = 0; i < snap->n && !*w->cfg->stop; i++) {
        const bp_season_t *s = &snap->items[i];
        bool known = false;
        for (size_t c = 0; c < w->n_closed && !known; c++)
            known = strcmp(w->closed[c], s->id) == 0;
        if (known)
            continue;
        size_t granted = 0;
        bool closed = false;
        if (bp_pg_season_close(w->pg, s, w->cfg->rewards_topic, now_ms(), SEASON_END_CHUNK,
                               &granted, &closed) != BP_OK)
            return; /* logged; tried again next round */
        w->stats.season_end_grants += granted;
        bp_metrics_add(BP_M_SEASON_END_GRANTS, granted);
        if (granted > 0)
            bp_relay_kick(w->relay); /* the grants' RewardGrant events */
        if (closed && w->n_closed < CLOSED_MAX)
            snprintf(w->closed[w->n_closed++], sizeof(w->closed[0]), "%s", s->id);
    }
}

static void log_stats(const worker_t *w)
{
    BP_LOG_INFO("worker stats",
                "\"consumed\":%llu,\"applied\":%llu,\"duplicates\":%llu,\"unattributed\":%llu,"
                "\"dlq\":%llu,\"levelUps\":%llu,\"autoGrants\":%llu,\"seasonEndGrants\":%llu,"
                "\"premiums\":%llu,\"batches\":%llu",
                w->stats.consumed, w->stats.applied, w->stats.duplicates, w->stats.unattributed,
                w->stats.dlq, w->stats.level_ups, w->stats.auto_grants, w->stats.season_end_grants,
                w->stats.premiums, w->stats.batches);
}

bp_err_t bp_worker_run(const bp_worker_config_t *cfg)
{
    worker_t w = {
        .cfg = cfg, .backoff_ms = BACKOFF_MIN_MS, .topics = {cfg->xp_topic, cfg->premium_topic}};
    bp_err_t err = setup(&w);
    if (err != BP_OK || *cfg->stop)
        goto out;
    BP_LOG_INFO("worker started", "\"topic\":\"%s\",\"group\":\"%s\"", cfg->xp_topic, cfg->group);
    int64_t last_stats = mono_ms(), last_close = 0, last_lag = 0;
    while (!*cfg->stop) {
        if (bp_seasons_refresh(cfg->seasons, w.pg, now_ms(), 0) == BP_EFATAL) {
            err = BP_EFATAL;
            break;
        }
        w.snap = bp_seasons_acquire(cfg->seasons);
        err = collect(&w);
        if (err == BP_OK && w.n_msgs > 0)
            err = apply_batch(&w);
        if (err == BP_ERETRY) {
            bp_metrics_add(BP_M_BATCH_RETRIES, 1);
            rewind_batch(&w);
            BP_LOG_WARN("batch not applied; rewound, backing off", "\"backoffMs\":%d",
                        w.backoff_ms);
            nap(&w, w.backoff_ms);
            w.backoff_ms = w.backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w.backoff_ms * 2;
            err = BP_OK;
        } else if (err == BP_OK && w.n_msgs == 0) {
            w.backoff_ms = BACKOFF_MIN_MS;
        }
        bp_seasons_release(cfg->seasons, w.snap);
        w.snap = NULL;
        if (err != BP_OK)
            break;
        if (mono_ms() - last_close >= SEASON_END_EVERY_MS) {
            const bp_season_list_t *snap = bp_seasons_acquire(cfg->seasons);
            close_seasons(&w, snap);
            bp_seasons_release(cfg->seasons, snap);
            last_close = mono_ms();
        }
        if (mono_ms() - last_lag >= LAG_EVERY_MS) {
            update_lag(&w);
            last_lag = mono_ms();
        }
        if (mono_ms() - last_stats >= STATS_EVERY_MS) {
            log_stats(&w);
            last_stats = mono_ms();
        }
    }
out:
    if (err != BP_OK)
        BP_LOG_ERROR("worker stopping on error", "\"error\":\"%s\"", bp_err_str(err));
    /* Revocation during close may apply a batch: give it a snapshot. */
    w.snap = bp_seasons_acquire(cfg->seasons);
    teardown(&w);
    bp_seasons_release(cfg->seasons, w.snap);
    log_stats(&w);
    return err;
}
