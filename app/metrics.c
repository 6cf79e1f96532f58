/** @file Metrics registry and its Prometheus rendering. Counters are atomics; the HTTP
 *  series (one per method, route and status) live in a small table under a mutex. */
#include "app/metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    const char *help;
} counter_info[BP_M_COUNT] = {
    [BP_M_XP_CONSUMED] = {"bp_messages_consumed_total", "Messages taken from the input topics."},
    [BP_M_XP_APPLIED] = {"bp_xp_events_applied_total", "XP events that changed progress."},
    [BP_M_XP_DUPLICATE] = {"bp_xp_events_duplicate_total", "XP events already processed."},
    [BP_M_XP_UNATTRIBUTED] = {"bp_xp_events_unattributed_total",
                              "XP events outside every season, recorded only."},
    [BP_M_DLQ] = {"bp_dlq_messages_total", "Messages sent to the dead-letter topic."},
    [BP_M_LEVEL_UPS] = {"bp_level_ups_total", "LevelUp events written to the outbox."},
    [BP_M_AUTO_GRANTS] = {"bp_rewards_auto_granted_total", "Rewards granted by autoClaim."},
    [BP_M_SEASON_END_GRANTS] = {"bp_rewards_season_end_granted_total",
                                "Rewards granted when a claim window closed."},
    [BP_M_PREMIUM_GRANTS] = {"bp_premium_grants_total",
                             "Premium passes granted from the premium topic."},
    [BP_M_OUTBOX_RELAYED] = {"bp_outbox_relayed_total", "Outbox rows produced to Kafka."},
    [BP_M_BATCHES] = {"bp_batches_total", "Batches committed."},
    [BP_M_BATCH_RETRIES] = {"bp_batch_retries_total", "Batches rewound after a failure."},
};

static _Atomic uint64_t counters[BP_M_COUNT];

/* A histogram: cumulative buckets are computed at render time from these counts. */
#define BUCKETS_MAX 12
typedef struct {
    size_t n;
    double bounds[BUCKETS_MAX];
    _Atomic uint64_t counts[BUCKETS_MAX + 1]; /* last: above every bound */
    _Atomic uint64_t sum_micro;               /* sum, in millionths */
} histogram_t;

static histogram_t batch_size = {9, {1, 10, 100, 500, 1000, 5000, 10000, 20000, 50000}, {0}, 0};
static histogram_t batch_seconds = {
    11, {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}, {0}, 0};
static histogram_t commit_seconds = {
    11, {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}, {0}, 0};

static const struct {
    const char *name;
    const char *help;
} gauge_info[BP_G_COUNT] = {
    [BP_G_OUTBOX_BACKLOG] = {"bp_outbox_backlog",
                             "Outbox rows waiting to be produced (counted up to 1000000)."},
};
static _Atomic int64_t gauges[BP_G_COUNT];

/* A series per input topic (the first TOPICS_MAX distinct ones), under its own lock. */
#define TOPICS_MAX 8
typedef struct {
    pthread_mutex_t lock;
    struct {
        char topic[250];
        int64_t v;
    } s[TOPICS_MAX];
    size_t n;
} topic_series_t;

static topic_series_t lags = {PTHREAD_MUTEX_INITIALIZER, {{"", 0}}, 0};    /* consumer lag */
static topic_series_t skipped = {PTHREAD_MUTEX_INITIALIZER, {{"", 0}}, 0}; /* messages lost */

/* Claims by verdict (core/reward.h), in the order of bp_claim_verdict_t. */
static const char *const claim_results[] = {
    [BP_CLAIM_OK] = "granted",
    [BP_CLAIM_NO_SUCH_REWARD] = "no_such_reward",
    [BP_CLAIM_NOT_OPEN] = "claims_closed",
    [BP_CLAIM_LEVEL_NOT_REACHED] = "level_not_reached",
    [BP_CLAIM_PREMIUM_REQUIRED] = "premium_required",
    [BP_CLAIM_ALREADY_CLAIMED] = "already_claimed",
};
#define CLAIM_RESULTS (sizeof(claim_results) / sizeof(claim_results[0]))
static _Atomic uint64_t claims[CLAIM_RESULTS];

static void observe(histogram_t *h, double v)
{
    size_t i = 0;
    while (i < h->n && v > h->bounds[i])
        i++;
    atomic_fetch_add(&h->counts[i], 1);
    atomic_fetch_add(&h->sum_micro, (uint64_t)(v * 1e6));
}

/* HTTP series. */
#define HTTP_SERIES_MAX 256
static const double http_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05,   0.1,   0.25,   0.5,   1,    2.5};
#define HTTP_BUCKETS (sizeof(http_bounds) / sizeof(http_bounds[0]))

typedef struct {
    char method[8];
    const char *route;
    int status;
    uint64_t count;
    uint64_t buckets[HTTP_BUCKETS + 1];
    double sum;
} http_series_t;

static pthread_mutex_t http_lock = PTHREAD_MUTEX_INITIALIZER;
static http_series_t http_series[HTTP_SERIES_MAX];
static size_t n_http_series;

void bp_metrics_add(bp_metric_t m, uint64_t n)
{
    if (m < BP_M_COUNT)
        atomic_fetch_add(&counters[m], n);
}

void bp_metrics_batch(size_t messages, double seconds, double commit)
{
    observe(&batch_size, (double)messages);
    observe(&batch_seconds, seconds);
    observe(&commit_seconds, commit);
}

void bp_metrics_gauge(bp_gauge_t g, int64_t v)
{
    if (g < BP_G_COUNT)
        atomic_store(&gauges[g], v);
}

/* Set (or, with @p add, add to) the value of @p topic's series in @p t. */
static void topic_series_put(topic_series_t *t, const char *topic, int64_t v, bool add)
{
    pthread_mutex_lock(&t->lock);
    size_t i = 0;
    while (i < t->n && strcmp(t->s[i].topic, topic) != 0)
        i++;
    if (i == t->n && t->n < TOPICS_MAX)
        snprintf(t->s[t->n++].topic, sizeof(t->s[0].topic), "%s", topic);
    if (i < t->n)
        t->s[i].v = add ? t->s[i].v + v : v;
    pthread_mutex_unlock(&t->lock);
}

void bp_metrics_consumer_lag(const char *topic, int64_t lag)
{
    topic_series_put(&lags, topic, lag, false);
}

void bp_metrics_skipped(const char *topic, uint64_t n)
{
    topic_series_put(&skipped, topic, (int64_t)n, true);
}

void bp_metrics_claim(bp_claim_verdict_t v)
{
    if ((size_t)v < CLAIM_RESULTS)
        atomic_fetch_add(&claims[v], 1);
}

/* A label value: topic names are [A-Za-z0-9._-], anything else is replaced. */
static void label_value(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(*s == '"' || *s == '\\' || *s == '\n' ? '_' : *s, f);
}

void bp_metrics_http(const char *method, const char *route, int status, double seconds)
{
    if (!route)
        route = "unmatched";
    pthread_mutex_lock(&http_lock);
    http_series_t *s = NULL;
    for (size_t i = 0; i < n_http_series && !s; i++)
        if (http_series[i].status == status && strcmp(http_series[i].route, route) == 0 &&
            strcmp(http_series[i].method, method) == 0)
            s = &http_series[i];
    if (!s && n_http_series < HTTP_SERIES_MAX) {
        s = &http_series[n_http_series++];
        snprintf(s->method, sizeof(s->method), "%s", method);
        s->route = route;
        s->status = status;
    }
    if (s) { /* beyond HTTP_SERIES_MAX distinct series, new ones are not counted */
        size_t b = 0;
        while (b < HTTP_BUCKETS && seconds > http_bounds[b])
            b++;
        s->count++;
        s->buckets[b]++;
        s->sum += seconds;
    }
    pthread_mutex_unlock(&http_lock);
}

static void render_histogram(FILE *f, const char *name, const char *help, histogram_t *h)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n; i++) {
        cum += atomic_load(&h->counts[i]);
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    cum += atomic_load(&h->counts[h->n]);
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    fprintf(f, "%s_sum %.6f\n%s_count %llu\n", name, (double)atomic_load(&h->sum_micro) / 1e6, name,
            (unsigned long long)cum);
}

static void render_topic_series(FILE *f, const char *name, const char *type, const char *help,
                                topic_series_t *t)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->n; i++) {
        fprintf(f, "%s{topic=\"", name);
        label_value(f, t->s[i].topic);
        fprintf(f, "\"} %lld\n", (long long)t->s[i].v);
    }
    pthread_mutex_unlock(&t->lock);
}

static void render_http(FILE *f)
{
    fprintf(f, "# HELP bp_http_requests_total HTTP requests answered, by method, route and "
               "status.\n# TYPE bp_http_requests_total counter\n");
    pthread_mutex_lock(&http_lock);
    for (size_t i = 0; i < n_http_series; i++) {
        const http_series_t *s = &http_series[i];
        fprintf(f, "bp_http_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} %llu\n",
                s->method, s->route, s->status, (unsigned long long)s->count);
    }
    fprintf(f, "# HELP bp_http_request_duration_seconds Time to answer HTTP requests.\n"
               "# TYPE bp_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < n_http_series; i++) {
        const http_series_t *s = &http_series[i];
        uint64_t cum = 0;
        for (size_t b = 0; b <= HTTP_BUCKETS; b++) {
            cum += s->buckets[b];
            char le[16];
            if (b < HTTP_BUCKETS)
                snprintf(le, sizeof(le), "%g", http_bounds[b]);
            else
                snprintf(le, sizeof(le), "+Inf");
            fprintf(f,
                    "bp_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                    "status=\"%d\",le=\"%s\"} %llu\n",
                    s->method, s->route, s->status, le, (unsigned long long)cum);
        }
        fprintf(f,
                "bp_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\",status=\"%d\"} "
                "%.6f\n",
                s->method, s->route, s->status, s->sum);
        fprintf(f,
                "bp_http_request_duration_seconds_count{method=\"%s\",route=\"%s\","
                "status=\"%d\"} %llu\n",
                s->method, s->route, s->status, (unsigned long long)s->count);
    }
    pthread_mutex_unlock(&http_lock);
}

char *bp_metrics_render(size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return NULL;
    for (int m = 0; m < BP_M_COUNT; m++)
        fprintf(f, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counter_info[m].name,
                counter_info[m].help, counter_info[m].name, counter_info[m].name,
                (unsigned long long)atomic_load(&counters[m]));
    fprintf(f, "# HELP bp_claims_total Reward claims answered, by result (granted or why "
               "refused).\n# TYPE bp_claims_total counter\n");
    for (size_t i = 0; i < CLAIM_RESULTS; i++)
        fprintf(f, "bp_claims_total{result=\"%s\"} %llu\n", claim_results[i],
                (unsigned long long)atomic_load(&claims[i]));
    for (int g = 0; g < BP_G_COUNT; g++)
        fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", gauge_info[g].name,
                gauge_info[g].help, gauge_info[g].name, gauge_info[g].name,
                (long long)atomic_load(&gauges[g]));
    render_topic_series(f, "bp_consumer_lag", "gauge",
                        "Messages not yet applied on the partitions this process is assigned: "
                        "high watermark minus the next offset to apply, summed per topic.",
                        &lags);
    render_topic_series(f, "bp_messages_skipped_total", "counter",
                        "Messages of the input topics lost before they were applied: the "
                        "partition's log no longer held them (retention) when the worker read on.",
                        &skipped);
    render_histogram(f, "bp_batch_messages", "Messages per committed batch.", &batch_size);
    render_histogram(f, "bp_batch_apply_seconds", "Time to apply and commit a batch in PostgreSQL.",
                     &batch_seconds);
    render_histogram(f, "bp_batch_commit_seconds",
                     "Time of a batch's COMMIT alone (the WAL flush) in PostgreSQL.",
                     &commit_seconds);
    render_http(f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}
