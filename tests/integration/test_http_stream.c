/** @file GET /progress/{playerId}/stream against a real battlepassd, PostgreSQL, Redis and
 *  devbroker: the first Progress event; progress, level-up and reward-available events after
 *  XP events (latency from produce to event measured and printed); premium rewards; the
 *  access rules; clients that go away; the stream limit; a resync after the Redis
 *  subscription is cut; one channel subscribed per streamed player (PUBSUB CHANNELS, no
 *  pattern), kept while any of its streams is open, subscribed again after a Redis restart;
 *  keep-alives; a stream served by a second instance (Redis pub/sub across processes) and a
 *  clean SIGTERM with streams open. BP_TEST_FILTER=<cmocka pattern> runs some tests only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/level.h"
#include "core/reward.h"
#include "store/cache.h"
#include "tests/integration/support.h"

#define HTTP_PORT 23188
#define HTTP_PORT_B 23288 /* the second instance; 2318x/2319x belong to other tests */
#define BUF_MAX (1 << 16)
/** Longest wait for one event; the target is well under a second. */
#define EVENT_WAIT_MS 5000
/** Longest acceptable produce → event latency on one instance. */
#define LATENCY_MAX_MS 3000
#define ROUNDS 8

static it_env_t env;
static bp_season_t season;
static pid_t daemon_pid = -1;
static char prefix[32];
static char group[64];
static char *service_token;
/** Open files this process (and the daemons it starts) may have. */
static unsigned long long nofile;
/** Enough for test_limit_and_gone_clients: its sockets, and as many in the daemon. */
#define NOFILE_WANTED 2200

/* ---- a minimal SSE client over a raw socket (HTTP/1.1, chunked) ---- */

typedef struct {
    int fd;
    int status;
    char headers[4096];
    char raw[BUF_MAX]; /* received, not yet de-chunked; NUL-terminated */
    size_t raw_len;
    char body[BUF_MAX]; /* de-chunked body not yet parsed into events; NUL-terminated */
    size_t body_len;
    bool chunked;
    bool ended;  /* the terminating chunk arrived */
    bool closed; /* the server closed the socket */
} sse_t;

typedef struct {
    char event[32];
    char data[BUF_MAX / 2];
} sse_event_t;

static void body_add(sse_t *s, const char *p, size_t n)
{
    if (s->body_len + n >= sizeof(s->body))
        n = sizeof(s->body) - 1 - s->body_len;
    memcpy(s->body + s->body_len, p, n);
    s->body_len += n;
    s->body[s->body_len] = '\0';
}

/* Move complete chunks from raw to body. */
static void dechunk(sse_t *s)
{
    if (!s->chunked) {
        body_add(s, s->raw, s->raw_len);
        s->raw_len = 0;
        return;
    }
    for (;;) {
        char *crlf = strstr(s->raw, "\r\n");
        if (!crlf)
            return;
        size_t size = strtoul(s->raw, NULL, 16), head = (size_t)(crlf - s->raw) + 2;
        if (size == 0) {
            s->ended = true;
            s->raw_len = 0;
            s->raw[0] = '\0';
            return;
        }
        if (s->raw_len < head + size + 2)
            return;
        body_add(s, s->raw + head, size);
        size_t used = head + size + 2;
        memmove(s->raw, s->raw + used, s->raw_len - used);
        s->raw_len -= used;
        s->raw[s->raw_len] = '\0';
    }
}

/* Read what arrives within @p timeout_ms. @return false on timeout or close. */
static bool sse_fill(sse_t *s, int timeout_ms)
{
    struct pollfd p = {s->fd, POLLIN, 0};
    if (s->closed || poll(&p, 1, timeout_ms) <= 0)
        return false;
    ssize_t n = read(s->fd, s->raw + s->raw_len, sizeof(s->raw) - 1 - s->raw_len);
    if (n <= 0) {
        s->closed = true;
        return false;
    }
    s->raw_len += (size_t)n;
    s->raw[s->raw_len] = '\0';
    return true;
}

/* Connect and send the request; read the status line and headers. */
static bool sse_open(sse_t *s, uint16_t port, const char *path, const char *token)
{
    memset(s, 0, sizeof(*s));
    /* Close-on-exec: a Redis restarted by it_fault() would hold the socket open. */
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        return false;
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                     "%s%s%s\r\n",
                     path, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "");
    if (write(s->fd, req, (size_t)n) != n)
        return false;
    char *end;
    while (!(end = strstr(s->raw, "\r\n\r\n")))
        if (!sse_fill(s, EVENT_WAIT_MS))
            return false;
    size_t head = (size_t)(end - s->raw) + 4;
    snprintf(s->headers, sizeof(s->headers), "%.*s", (int)head, s->raw);
    if (sscanf(s->raw, "HTTP/1.%*d %d", &s->status) != 1)
        return false;
    for (char *line = strstr(s->headers, "\r\n"); line; line = strstr(line + 2, "\r\n"))
        if (strncasecmp(line + 2, "transfer-encoding: chunked", 26) == 0)
            s->chunked = true;
    memmove(s->raw, s->raw + head, s->raw_len - head);
    s->raw_len -= head;
    s->raw[s->raw_len] = '\0';
    dechunk(s);
    return true;
}

static void sse_close(sse_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* @return true when header @p name has @p value (case-insensitive name). */
static bool sse_header_is(const sse_t *s, const char *name, const char *value)
{
    char want[256];
    snprintf(want, sizeof(want), "\r\n%s: %s\r\n", name, value);
    for (const char *p = s->headers; (p = strstr(p, "\r\n")); p += 2)
        if (strncasecmp(p, want, strlen(want)) == 0)
            return true;
    return false;
}

/* The next event with data (comments and retry-only blocks skipped), within @p timeout_ms. */
static bool sse_next(sse_t *s, int timeout_ms, sse_event_t *ev)
{
    int64_t until = it_now_ms() + timeout_ms;
    for (;;) {
        char *end;
        while ((end = strstr(s->body, "\n\n"))) {
            size_t block = (size_t)(end - s->body) + 2;
            memset(ev, 0, sizeof(*ev));
            snprintf(ev->event, sizeof(ev->event), "message");
            bool has_data = false;
            for (char *line = s->body; line < end;) {
                char *nl = strchr(line, '\n');
                *nl = '\0';
                if (strncmp(line, "event: ", 7) == 0)
                    snprintf(ev->event, sizeof(ev->event), "%s", line + 7);
                else if (strncmp(line, "data: ", 6) == 0) {
                    snprintf(ev->data, sizeof(ev->data), "%s", line + 6);
                    has_data = true;
                }
                line = nl + 1;
            }
            memmove(s->body, s->body + block, s->body_len - block + 1);
            s->body_len -= block;
            if (has_data)
                return true;
        }
        int64_t left = until - it_now_ms();
        if (s->ended || left <= 0 || !sse_fill(s, (int)left))
            return false;
        dechunk(s);
    }
}

/* Read events until one named @p name (others are skipped); its data parsed. */
static json_t *expect_event(sse_t *s, const char *name, int timeout_ms)
{
    sse_event_t ev;
    int64_t until = it_now_ms() + timeout_ms;
    while (sse_next(s, (int)(until - it_now_ms()), &ev)) {
        if (strcmp(ev.event, name) != 0) {
            fprintf(stderr, "  (skipped event %s: %s)\n", ev.event, ev.data);
            continue;
        }
        json_t *o = json_loads(ev.data, 0, NULL);
        if (!o)
            fail_msg("event %s: data is not JSON: %s", name, ev.data);
        return o;
    }
    fail_msg("no %s event within %d ms", name, timeout_ms);
    return NULL;
}

static long long jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("member %s missing or not an integer", key);
    return (long long)json_integer_value(v);
}

/* ---- Redis, as the tests see it ---- */

/* A connection of our own to the services' Redis, or NULL. */
static redisContext *redis_open(void)
{
    bp_cache_url_t url;
    if (bp_cache_url_parse(env.redis_url, &url) != BP_OK)
        return NULL;
    redisContext *ctx = redisConnect(url.host, url.port);
    bp_cache_url_fini(&url);
    if (ctx && ctx->err) {
        redisFree(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* @return how many channels bp:progress:<prefix><like> (a glob) have subscribers, -1 when
 * Redis does not answer. A connection per call: the tests restart Redis. */
static long long channel_count(const char *like)
{
    long long n = -1;
    redisContext *rc = redis_open();
    redisReply *r = rc ? redisCommand(rc, "PUBSUB CHANNELS bp:progress:%s%s", prefix, like) : NULL;
    if (r && r->type == REDIS_REPLY_ARRAY)
        n = (long long)r->elements;
    if (r)
        freeReplyObject(r);
    if (rc)
        redisFree(rc);
    return n;
}

/* Wait until channel_count(@p like) is @p n. @return false on timeout (the count printed). */
static bool wait_channels(const char *like, long long n, int timeout_ms)
{
    long long got = -1;
    for (int64_t until = it_now_ms() + timeout_ms; it_now_ms() < until; it_sleep_ms(50))
        if ((got = channel_count(like)) == n)
            return true;
    printf("  channels bp:progress:%s%s: %lld subscribed, %lld wanted\n", prefix, like, got, n);
    return false;
}

/* @return how many patterns Redis has subscribers of, -1 on failure. */
static long long pattern_count(void)
{
    long long n = -1;
    redisContext *rc = redis_open();
    redisReply *r = rc ? redisCommand(rc, "PUBSUB NUMPAT") : NULL;
    if (r && r->type == REDIS_REPLY_INTEGER)
        n = r->integer;
    if (r)
        freeReplyObject(r);
    if (rc)
        redisFree(rc);
    return n;
}

/* ---- when the worker published: a Redis subscriber of our own ---- */

#define SEEN_MAX 256

/* Arrival times of the messages on bp:progress:<player>, to split the latency into the
 * worker's part (produce → publish) and the stream's (publish → event). */
typedef struct {
    pthread_t thread;
    atomic_bool stop;
    atomic_bool ready;
    char channel[128];
    pthread_mutex_t mu;
    long long total[SEEN_MAX];
    int64_t at_ms[SEEN_MAX];
    size_t n;
} pubwatch_t;

static void *pubwatch_main(void *arg)
{
    pubwatch_t *w = arg;
    redisContext *ctx = redis_open();
    if (!ctx)
        goto out;
    redisReply *r = redisCommand(ctx, "SUBSCRIBE %s", w->channel);
    if (!r)
        goto out;
    freeReplyObject(r);
    atomic_store(&w->ready, true);
    while (!atomic_load(&w->stop)) {
        struct pollfd p = {ctx->fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        if (redisBufferRead(ctx) != REDIS_OK)
            break;
        void *v = NULL;
        while (redisGetReplyFromReader(ctx, &v) == REDIS_OK && v) {
            redisReply *m = v;
            json_t *o = m->type == REDIS_REPLY_ARRAY && m->elements == 3
                            ? json_loads(m->element[2]->str, 0, NULL)
                            : NULL;
            pthread_mutex_lock(&w->mu);
            if (o && w->n < SEEN_MAX) {
                w->total[w->n] = (long long)json_integer_value(json_object_get(o, "totalXp"));
                w->at_ms[w->n++] = it_now_ms();
            }
            pthread_mutex_unlock(&w->mu);
            json_decref(o);
            freeReplyObject(m);
        }
    }
out:
    if (ctx)
        redisFree(ctx);
    return NULL;
}

static void pubwatch_start(pubwatch_t *w, const char *player)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mu, NULL);
    snprintf(w->channel, sizeof(w->channel), "bp:progress:%s", player);
    assert_int_equal(pthread_create(&w->thread, NULL, pubwatch_main, w), 0);
    for (int i = 0; i < 200 && !atomic_load(&w->ready); i++)
        usleep(10000);
    assert_true(atomic_load(&w->ready));
}

/* @return when the message with @p total arrived, or -1. */
static int64_t pubwatch_at(pubwatch_t *w, long long total)
{
    int64_t at = -1;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n; i++)
        if (w->total[i] == total)
            at = w->at_ms[i];
    pthread_mutex_unlock(&w->mu);
    return at;
}

static void pubwatch_stop(pubwatch_t *w)
{
    atomic_store(&w->stop, true);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
}

/* ---- fixtures ---- */

static void skip_without_services(void)
{
    if (!env.bootstrap)
        skip();
}

static void player_name(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s%s", prefix, name);
}

/* One producer for the whole run: a new one would first fetch metadata, which the
 * latency would then include. */
static it_producer_t *producer;

static void produce(const char *player, int32_t amount, int n)
{
    static int seq;
    it_producer_t *p = producer;
    bp_xp_event_t ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "%sev-%d", prefix, ++seq);
    snprintf(ev.player_id, sizeof(ev.player_id), "%s", player);
    snprintf(ev.reason, sizeof(ev.reason), "match_complete");
    ev.amount = amount;
    ev.occurred_at_ms = it_now_ms();
    it_produce_xp(p, &ev);
    for (int i = 1; i < n; i++) { /* the rest for warm-up only */
        snprintf(ev.event_id, sizeof(ev.event_id), "%sev-%d", prefix, ++seq);
        it_produce_xp(p, &ev);
    }
}

/* Wait until the worker has applied @p n events of @p player. */
static bool wait_applied(const char *player, long long n, int timeout_ms)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM processed_events WHERE player_id = '%s'",
             player);
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        if (it_sql_int(&env, sql) >= n)
            return true;
        usleep(100000);
    }
    return false;
}

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "http_stream", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/schemas/seasons/sample-season.json", env.source_dir);
    if (!it_season_load(path, &season) || !it_db_prepare(&env, path))
        return -1;
    struct rlimit rl; /* raised before the daemons start: they inherit it */
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < NOFILE_WANTED && rl.rlim_max >= NOFILE_WANTED) {
        rl.rlim_cur = NOFILE_WANTED;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    nofile = (unsigned long long)rl.rlim_cur;
    snprintf(prefix, sizeof(prefix), "st%d-", (int)getpid());
    snprintf(group, sizeof(group), "it-stream-%d", (int)getpid());
    daemon_pid = it_daemon_up(&env, group, NULL, "http-stream-daemon.log");
    if (daemon_pid < 0)
        return -1;
    service_token = it_jwt(env.secret, "gameplay", "service", 3600);
    producer = it_producer_new(&env);
    /* The worker joins its group in a few seconds: wait until it applies events. */
    char warm[BP_ID_MAX + 1];
    player_name(warm, sizeof(warm), "warm-up");
    produce(warm, 10, 1);
    if (!wait_applied(warm, 1, 60000)) {
        fprintf(stderr, "the worker applied nothing; see http-stream-daemon.log\n");
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (!it_daemon_down(&daemon_pid))
        rc = -1;
    it_producer_destroy(producer);
    free(service_token);
    bp_season_fini(&season);
    return rc;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Produce @p amount for @p player and wait for the `progress` event with @p want_total.
 * With @p w, the part from publish to event goes to *fanout_ms (-1 when unknown).
 * @return the latency in ms. */
static long long round_trip(sse_t *s, const char *player, int32_t amount, long long want_total,
                            pubwatch_t *w, long long *fanout_ms)
{
    int64_t t0 = it_now_ms();
    produce(player, amount, 1);
    json_t *o = expect_event(s, "progress", EVENT_WAIT_MS);
    int64_t t1 = it_now_ms();
    long long latency = t1 - t0;
    if (w) { /* our subscriber may note the message a moment after the stream had it */
        int64_t at = pubwatch_at(w, want_total);
        for (int i = 0; at < 0 && i < 100; i++, at = pubwatch_at(w, want_total))
            usleep(2000);
        *fanout_ms = at < 0 ? -1 : at > t1 ? 0 : t1 - at;
    }
    assert_int_equal(jint(o, "totalXp"), want_total);
    bp_level_info_t lv = bp_level_for_xp(&season, want_total);
    assert_int_equal(jint(o, "currentLevel"), lv.level);
    assert_int_equal(jint(o, "currentXp"), lv.current_xp);
    assert_int_equal(jint(o, "xpToNextLevel"), lv.xp_to_next);
    json_decref(o);
    return latency;
}

/* Assert one `reward-available` event per id of @p ids, in the season's order. */
static void expect_rewards(sse_t *s, const char *player, const char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_t *o = expect_event(s, "reward-available", EVENT_WAIT_MS);
        assert_string_equal(json_string_value(json_object_get(o, "playerId")), player);
        assert_string_equal(json_string_value(json_object_get(o, "seasonId")), season.id);
        assert_string_equal(json_string_value(json_object_get(o, "rewardId")), ids[i]);
        size_t at[4];
        bp_tier_t tier = strstr(ids[i], "premium") ? BP_TIER_PREMIUM : BP_TIER_FREE;
        assert_string_equal(json_string_value(json_object_get(o, "tier")),
                            tier == BP_TIER_PREMIUM ? "premium" : "free");
        assert_true(bp_rewards_at(&season, (int32_t)jint(o, "level"), tier, at, 4) >= 1);
        assert_true(jint(o, "quantity") >= 1);
        json_decref(o);
    }
}

static void expect_level_up(sse_t *s, int prev, int next, long long total)
{
    json_t *o = expect_event(s, "level-up", EVENT_WAIT_MS);
    assert_int_equal(jint(o, "previousLevel"), prev);
    assert_int_equal(jint(o, "newLevel"), next);
    assert_int_equal(jint(o, "totalXp"), total);
    json_decref(o);
}

/* Expect a `progress` event with @p total within @p timeout_ms. */
static void expect_total(sse_t *s, long long total, int timeout_ms)
{
    json_t *o = expect_event(s, "progress", timeout_ms);
    assert_int_equal(jint(o, "totalXp"), total);
    json_decref(o);
}

/* Read until the server ends the stream (silent 2 s at most): it must have ended. */
static void expect_end(sse_t *s)
{
    sse_event_t ev;
    while (sse_next(s, 2000, &ev))
        ;
    assert_true(s->ended || s->closed);
}

/* Open @p player's stream on @p port: status 200, then the first event (the Progress
 * resource), its totalXp checked when @p want_total >= 0 and handed to the caller with
 * @p first (json_decref) when not NULL. Free with stream_end(). */
static sse_t *stream_start(uint16_t port, const char *player, const char *token,
                           long long want_total, json_t **first)
{
    char path[256];
    snprintf(path, sizeof(path), "/progress/%s/stream", player);
    sse_t *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    assert_true(sse_open(s, port, path, token));
    assert_int_equal(s->status, 200);
    json_t *o = expect_event(s, "progress", EVENT_WAIT_MS);
    if (want_total >= 0)
        assert_int_equal(jint(o, "totalXp"), want_total);
    if (first)
        *first = o;
    else
        json_decref(o);
    return s;
}

static void stream_end(sse_t *s)
{
    if (!s)
        return;
    sse_close(s);
    free(s);
}

/* ---- tests ---- */

static void test_progress_level_up_rewards(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1];
    player_name(player, sizeof(player), "p1");
    /* First: the Progress resource, as GET /progress/{playerId} has it. */
    json_t *o;
    sse_t *s = stream_start(HTTP_PORT, player, service_token, 0, &o);
    assert_true(sse_header_is(s, "Content-Type", "text/event-stream"));
    assert_true(sse_header_is(s, "Cache-Control", "no-store"));
    assert_string_equal(json_string_value(json_object_get(o, "playerId")), player);
    assert_string_equal(json_string_value(json_object_get(o, "seasonId")), season.id);
    assert_int_equal(jint(o, "currentLevel"), 1);
    assert_true(json_is_false(json_object_get(o, "premium")));
    json_decref(o);

    /* 1500 XP: level 1 → 2 (xpTotal 1000). */
    pubwatch_t *w = calloc(1, sizeof(*w));
    pubwatch_start(w, player);
    long long lat[ROUNDS + 2], fan[ROUNDS + 2];
    size_t n = 0;
    lat[n] = round_trip(s, player, 1500, 1500, w, &fan[n]);
    n++;
    expect_level_up(s, 1, 2, 1500);
    const char *l2[] = {"reward-002-free"};
    expect_rewards(s, player, l2, 1);

    /* Small steps within level 2: progress only. */
    long long total = 1500;
    for (int i = 0; i < ROUNDS; i++, n++) {
        total += 50;
        lat[n] = round_trip(s, player, 50, total, w, &fan[n]);
    }
    /* Several levels at once: one level-up 2 → 5 and the free rewards of 3, 4 and 5. */
    lat[n] = round_trip(s, player, (int32_t)(4500 - total), 4500, w, &fan[n]);
    n++;
    expect_level_up(s, 2, 5, 4500);
    const char *l5[] = {"reward-003-free", "reward-004-free", "reward-005-free"};
    expect_rewards(s, player, l5, 3);
    pubwatch_stop(w);
    free(w);

    printf("latency per update, produce → event (publish → event) in ms:");
    for (size_t i = 0; i < n; i++)
        printf(" %lld (%lld)", lat[i], fan[i]);
    printf("\n");
    qsort(lat, n, sizeof(lat[0]), cmp_ll);
    qsort(fan, n, sizeof(fan[0]), cmp_ll);
    printf("produce → progress event over %zu updates: min %lld ms, median %lld ms, max %lld ms; "
           "of which publish → event: median %lld ms, max %lld ms\n",
           n, lat[0], lat[n / 2], lat[n - 1], fan[n / 2], fan[n - 1]);
    assert_true(lat[n - 1] < LATENCY_MAX_MS);
    assert_true(fan[0] >= 0);
    assert_true(fan[n - 1] < 1000);
    stream_end(s);
}

static void test_premium_rewards(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1], path[256], body[256], out[4096];
    player_name(player, sizeof(player), "prem");
    snprintf(path, sizeof(path), "/premium/%s", player);
    snprintf(body, sizeof(body),
             "{\"seasonId\":\"%s\",\"transactionId\":\"%stx\",\"source\":\"it\"}", season.id,
             prefix);
    int st = it_http(HTTP_PORT, "POST", path, service_token, NULL, body, out, sizeof(out), NULL, 0);
    if (st != 200 && st != 201)
        fail_msg("premium grant: %d %s", st, out);

    /* The player's own token may open the stream. */
    char *token = it_jwt(env.secret, player, "player", 3600);
    json_t *o;
    sse_t *s = stream_start(HTTP_PORT, player, token, -1, &o);
    assert_true(json_is_true(json_object_get(o, "premium")));
    json_decref(o);
    /* 2100 XP: level 1 → 3; free and premium rewards of levels 2 and 3. */
    round_trip(s, player, 2100, 2100, NULL, NULL);
    expect_level_up(s, 1, 3, 2100);
    const char *ids[] = {"reward-002-free", "reward-002-premium", "reward-003-free"};
    expect_rewards(s, player, ids, 3);
    stream_end(s);
    free(token);
}

/* A level purchase is a progress change like any other: it reaches the stream at once. */
static void test_purchase_reaches_stream(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1], path[256], body[256], out[4096];
    player_name(player, sizeof(player), "buyer");
    sse_t *s = stream_start(HTTP_PORT, player, service_token, 0, NULL);
    snprintf(path, sizeof(path), "/progress/%s/levels", player);
    snprintf(body, sizeof(body), "{\"count\":2,\"transactionId\":\"%sbuy\"}", prefix);
    int64_t t0 = it_now_ms();
    int st = it_http(HTTP_PORT, "POST", path, service_token, NULL, body, out, sizeof(out), NULL, 0);
    if (st != 200)
        fail_msg("purchase: %d %s", st, out);
    json_t *o = expect_event(s, "progress", EVENT_WAIT_MS);
    printf("purchase → progress event: %lld ms\n", (long long)(it_now_ms() - t0));
    assert_int_equal(jint(o, "totalXp"), season.xp_total[3]);
    assert_int_equal(jint(o, "currentLevel"), 3);
    json_decref(o);
    expect_level_up(s, 1, 3, season.xp_total[3]);
    stream_end(s);
}

static void test_access_rules(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1], path[256], out[4096];
    player_name(player, sizeof(player), "p1");
    snprintf(path, sizeof(path), "/progress/%s/stream", player);
    assert_int_equal(it_http_get(HTTP_PORT, path, NULL, out, sizeof(out)), 401);
    char *other = it_jwt(env.secret, "someone-else", "player", 3600);
    assert_int_equal(it_http_get(HTTP_PORT, path, other, out, sizeof(out)), 403);
    free(other);
    char *expired = it_jwt(env.secret, player, "player", -10);
    assert_int_equal(it_http_get(HTTP_PORT, path, expired, out, sizeof(out)), 401);
    free(expired);
    char *admin = it_jwt(env.secret, "ops", "admin", 3600);
    stream_end(stream_start(HTTP_PORT, player, admin, -1, NULL));
    free(admin);
}

/* Clients that vanish must free their streams: many open/close cycles, some mid-update,
 * then a stream still works. */
static void test_clients_going_away(void **state)
{
    (void)state;
    skip_without_services();
    enum { N = 40 };
    char player[BP_ID_MAX + 1];
    player_name(player, sizeof(player), "churn");
    sse_t *s[N];
    for (int i = 0; i < N; i++)
        s[i] = stream_start(HTTP_PORT, player, service_token, 0, NULL);
    for (int i = 0; i < N / 2; i++) /* half go away before the update */
        stream_end(s[i]);
    produce(player, 1200, 1);
    for (int i = N / 2; i < N; i++) {
        expect_total(s[i], 1200, EVENT_WAIT_MS);
        stream_end(s[i]);
    }
    /* The server only notices a client gone on its next write: a keep-alive or update. */
    produce(player, 10, 1);
    assert_true(wait_applied(player, 2, 10000));
    stream_end(stream_start(HTTP_PORT, player, service_token, 1210, NULL));
}

/* Send @p player's stream request on a new socket and read the status line and headers
 * (and what follows in the same reads). @return the status, -1 on failure; *fd stays
 * open. */
static int raw_stream(const char *player, const char *token, int *fd, bool *retry_after)
{
    char buf[2048];
    size_t got = 0;
    /* Close-on-exec: a Redis restarted by it_fault() would hold the socket open. */
    *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(HTTP_PORT)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (*fd < 0 || connect(*fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        return -1;
    int n = snprintf(buf, sizeof(buf),
                     "GET /progress/%s/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Authorization: Bearer %s\r\n\r\n",
                     player, token);
    if (write(*fd, buf, (size_t)n) != n)
        return -1;
    buf[0] = '\0';
    while (!strstr(buf, "\r\n\r\n") && got < sizeof(buf) - 1) {
        struct pollfd p = {*fd, POLLIN, 0};
        ssize_t r =
            poll(&p, 1, EVENT_WAIT_MS) == 1 ? read(*fd, buf + got, sizeof(buf) - 1 - got) : -1;
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = '\0';
    }
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    *retry_after = strstr(buf, "\r\nRetry-After: ") != NULL;
    return status;
}

/* Open @p n raw streams (raw_stream) of @p players players, named @p stem and a number,
 * round-robin. @return how many were refused with 503 and
 * Retry-After; any other status fails. */
static int raw_streams(int *fds, int n, const char *stem, int players)
{
    int refused = 0;
    for (int i = 0; i < n; i++) {
        char player[BP_ID_MAX + 1], name[32];
        bool retry_after = false;
        snprintf(name, sizeof(name), "%s%d", stem, i % players);
        player_name(player, sizeof(player), name);
        int st = raw_stream(player, service_token, &fds[i], &retry_after);
        if (st == 503 && retry_after)
            refused++;
        else if (st != 200)
            fail_msg("stream %d: status %d", i, st);
    }
    return refused;
}

/* Open streams until refused: 503 with Retry-After beyond BP_STREAM_MAX_DEFAULT (1000). Then
 * the clients go away, and their streams are freed within seconds (not at the next
 * keep-alive, 15 s later): as many can open again. */
static void test_limit_and_gone_clients(void **state)
{
    (void)state;
    skip_without_services();
    enum { LIMIT = 1000, TRY = LIMIT + 20 };
    if (nofile < NOFILE_WANTED) {
        printf("RLIMIT_NOFILE %llu is too low for %d streams: skipped\n", nofile, TRY);
        skip();
    }
    int *fds = calloc(TRY, sizeof(*fds));
    sleep(3); /* streams of the tests before are gone */
    for (int round = 0; round < 2; round++) {
        int64_t t0 = it_now_ms();
        int refused = raw_streams(fds, TRY, "many-", 50);
        printf("round %d: %d streams open, %d refused with 503 (%lld ms)\n", round, TRY - refused,
               refused, (long long)(it_now_ms() - t0));
        /* One channel a player streamed, whatever the number of streams. */
        bool subscribed = wait_channels("many-*", 50, 3000);
        for (int i = 0; i < TRY; i++)
            close(fds[i]);
        /* The hub probes suspended sockets every second (before any check: a failure must
         * not leave the next tests 1000 streams). */
        sleep(3);
        assert_int_equal(refused, TRY - LIMIT);
        assert_true(subscribed);
    }
    assert_true(wait_channels("many-*", 0, 3000));
    free(fds);
}

/* The hub's Redis subscription is cut: what was published meanwhile is lost, so once
 * resubscribed every stream re-reads its state. The "missed" change is made in PostgreSQL
 * (the cache entry dropped) and never published. */
static void test_resync_after_reconnect(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1], sql[512];
    player_name(player, sizeof(player), "resync");
    sse_t *s = stream_start(HTTP_PORT, player, service_token, 0, NULL);
    assert_true(wait_channels("resync", 1, 3000));

    snprintf(sql, sizeof(sql),
             "INSERT INTO player_progress (player_id, season_id, total_xp, earned_xp, level)"
             " VALUES ('%s', '%s', 700, 700, 1) RETURNING 1",
             player, season.id);
    assert_int_equal(it_sql_int(&env, sql), 1);
    redisContext *rc = redis_open();
    assert_non_null(rc);
    redisReply *r = redisCommand(rc, "DEL bp:progress:{%s}:%s", season.id, player);
    assert_non_null(r);
    freeReplyObject(r);
    r = redisCommand(rc, "CLIENT KILL TYPE pubsub");
    assert_true(r && r->type == REDIS_REPLY_INTEGER && r->integer >= 1);
    freeReplyObject(r);
    redisFree(rc);

    int64_t t0 = it_now_ms();
    json_t *o = expect_event(s, "progress", EVENT_WAIT_MS);
    printf("resynced %lld ms after the subscription was cut\n", (long long)(it_now_ms() - t0));
    assert_int_equal(jint(o, "totalXp"), 700);
    assert_int_equal(jint(o, "earnedXp"), 700);
    json_decref(o);
    /* And the new subscription delivers: 700 + 600 crosses level 2. */
    produce(player, 600, 1);
    expect_total(s, 1300, EVENT_WAIT_MS);
    expect_level_up(s, 1, 2, 1300);
    stream_end(s);
}

/* Two streams of one player both get its updates; one closed, the other still does: the
 * channel goes with the player's last stream, not with the first one. */
static void test_two_streams_one_player(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1];
    player_name(player, sizeof(player), "twin");
    sse_t *a = stream_start(HTTP_PORT, player, service_token, 0, NULL);
    sse_t *b = stream_start(HTTP_PORT, player, service_token, 0, NULL);
    produce(player, 1100, 1);
    expect_total(a, 1100, EVENT_WAIT_MS);
    expect_total(b, 1100, EVENT_WAIT_MS);
    stream_end(a);
    sleep(3); /* the hub notices the client gone and frees its stream */
    assert_int_equal(channel_count("twin"), 1);
    produce(player, 100, 1);
    expect_total(b, 1200, EVENT_WAIT_MS);
    stream_end(b);
    assert_true(wait_channels("twin", 0, 5000));
}

/* A player whose last stream went is unsubscribed; a stream opened afterwards, of another
 * player or of the same one again, is subscribed and gets its updates. */
static void test_stream_after_another_closed(void **state)
{
    (void)state;
    skip_without_services();
    char first[BP_ID_MAX + 1], second[BP_ID_MAX + 1];
    player_name(first, sizeof(first), "seq-1");
    player_name(second, sizeof(second), "seq-2");
    stream_end(stream_start(HTTP_PORT, first, service_token, 0, NULL));
    assert_true(wait_channels("seq-*", 0, 5000));

    sse_t *s = stream_start(HTTP_PORT, second, service_token, 0, NULL);
    produce(second, 300, 1);
    expect_total(s, 300, EVENT_WAIT_MS);
    stream_end(s);
    assert_true(wait_channels("seq-*", 0, 5000));

    s = stream_start(HTTP_PORT, first, service_token, 0, NULL);
    produce(first, 400, 1);
    expect_total(s, 400, EVENT_WAIT_MS);
    stream_end(s);
}

/* Only the channels of players streamed here are subscribed, no pattern: the messages of
 * other players never reach this process. */
static void test_only_streamed_players_subscribed(void **state)
{
    (void)state;
    skip_without_services();
    char a[BP_ID_MAX + 1], b[BP_ID_MAX + 1], x[BP_ID_MAX + 1];
    player_name(a, sizeof(a), "only-a");
    player_name(b, sizeof(b), "only-b");
    player_name(x, sizeof(x), "only-x");
    sse_t *sa = stream_start(HTTP_PORT, a, service_token, 0, NULL);
    sse_t *sb = stream_start(HTTP_PORT, b, service_token, 0, NULL);
    produce(x, 10, 1); /* published, to nobody */
    assert_true(wait_applied(x, 1, 10000));
    assert_true(wait_channels("only-*", 2, 3000));
    assert_int_equal(channel_count("only-a"), 1);
    assert_int_equal(channel_count("only-b"), 1);
    assert_int_equal(channel_count("only-x"), 0);
    assert_int_equal(pattern_count(), 0);
    produce(b, 20, 1);
    expect_total(sb, 20, EVENT_WAIT_MS);
    stream_end(sa);
    stream_end(sb);
    assert_true(wait_channels("only-*", 0, 5000));
}

/* Redis restarts (empty) under open streams: once back, the hub subscribes every streamed
 * player again, more than one SUBSCRIBE's worth of channels, and updates arrive again. */
static void test_redis_restart(void **state)
{
    (void)state;
    skip_without_services();
    enum { MANY = 300 }; /* over the 256 channels of one SUBSCRIBE */
    if (!getenv("BP_RUN_DIR") || !getenv("BP_PG_PORT") || !getenv("BP_REDIS_PORT")) {
        printf("no fault injection outside scripts/test: skipped\n");
        skip();
    }
    char a[BP_ID_MAX + 1], b[BP_ID_MAX + 1];
    player_name(a, sizeof(a), "rs-a");
    player_name(b, sizeof(b), "rs-b");
    int *fds = calloc(MANY, sizeof(*fds));
    assert_int_equal(raw_streams(fds, MANY, "rs-", MANY), 0);
    sse_t *a1 = stream_start(HTTP_PORT, a, service_token, 0, NULL);
    sse_t *a2 = stream_start(HTTP_PORT, a, service_token, 0, NULL);
    sse_t *sb = stream_start(HTTP_PORT, b, service_token, 0, NULL);
    assert_true(wait_channels("rs-*", MANY + 2, 5000));

    assert_true(it_fault("redis-restart"));
    int64_t t0 = it_now_ms();
    assert_true(wait_channels("rs-*", MANY + 2, 20000));
    printf("%d channels subscribed again %lld ms after Redis restarted\n", MANY + 2,
           (long long)(it_now_ms() - t0));
    assert_int_equal(pattern_count(), 0);
    /* The worker reconnects to Redis too: allow for it. */
    produce(a, 1100, 1);
    produce(b, 500, 1);
    expect_total(a1, 1100, 30000);
    expect_total(a2, 1100, EVENT_WAIT_MS);
    expect_total(sb, 500, 30000);

    for (int i = 0; i < MANY; i++)
        close(fds[i]);
    assert_true(wait_channels("rs-*", 2, 5000));
    stream_end(a1);
    stream_end(a2);
    stream_end(sb);
    assert_true(wait_channels("rs-*", 0, 5000));
    free(fds);
}

/* A quiet stream gets a ": keep-alive" comment every 15 s. */
static void test_keep_alive(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1];
    player_name(player, sizeof(player), "quiet");
    int64_t t0 = it_now_ms();
    sse_t *s = stream_start(HTTP_PORT, player, service_token, -1, NULL);
    while (!strstr(s->body, ": keep-alive\n\n") && it_now_ms() - t0 < 18000) {
        if (sse_fill(s, 1000))
            dechunk(s);
    }
    long long after = it_now_ms() - t0;
    printf("keep-alive after %lld ms\n", after);
    assert_non_null(strstr(s->body, ": keep-alive\n\n"));
    assert_true(after >= 14000);
    stream_end(s);
}

/* A second instance in the same consumer group: whichever worker applies the event, both
 * instances' streams get it through Redis. Then SIGTERM that instance with its stream open:
 * exit 0 and the stream ends cleanly. */
static void test_second_instance(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1], listen[64];
    player_name(player, sizeof(player), "p2");
    snprintf(listen, sizeof(listen), "BP_HTTP_LISTEN=127.0.0.1:%d", HTTP_PORT_B);
    const char *extra[] = {listen, NULL};
    pid_t b = it_daemon_start(&env, group, extra, "http-stream-daemon-b.log");
    assert_true(b > 0);
    assert_true(it_http_wait(HTTP_PORT_B, 15000));

    sse_t *sa = stream_start(HTTP_PORT, player, service_token, -1, NULL);
    sse_t *sb = stream_start(HTTP_PORT_B, player, service_token, -1, NULL);
    /* The group rebalances as B joins: allow for it. */
    produce(player, 1100, 1);
    for (int i = 0; i < 2; i++) {
        expect_total(i ? sb : sa, 1100, 60000);
        expect_level_up(i ? sb : sa, 1, 2, 1100);
    }
    stream_end(sa);

    int64_t t0 = it_now_ms();
    int st = it_daemon_stop(b, SIGTERM, 30000);
    printf("second instance stopped with a stream open in %lld ms, status %d\n",
           (long long)(it_now_ms() - t0), st);
    assert_int_equal(st, 0);
    expect_end(sb);
    stream_end(sb);
}

/* Last: SIGTERM with suspended streams open must end them and exit 0 promptly. */
static void test_stop_with_streams_open(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1];
    player_name(player, sizeof(player), "p3");
    sse_t *s[3];
    for (int i = 0; i < 3; i++)
        s[i] = stream_start(HTTP_PORT, player, service_token, -1, NULL);
    int64_t t0 = it_now_ms();
    int st = it_daemon_stop(daemon_pid, SIGTERM, 30000);
    daemon_pid = -1;
    printf("daemon stopped with %d streams open in %lld ms, status %d\n", 3,
           (long long)(it_now_ms() - t0), st);
    assert_int_equal(st, 0);
    for (int i = 0; i < 3; i++) {
        expect_end(s[i]);
        stream_end(s[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress_level_up_rewards),
        cmocka_unit_test(test_premium_rewards),
        cmocka_unit_test(test_purchase_reaches_stream),
        cmocka_unit_test(test_access_rules),
        cmocka_unit_test(test_clients_going_away),
        cmocka_unit_test(test_limit_and_gone_clients),
        cmocka_unit_test(test_resync_after_reconnect),
        cmocka_unit_test(test_two_streams_one_player),
        cmocka_unit_test(test_stream_after_another_closed),
        cmocka_unit_test(test_only_streamed_players_subscribed),
        cmocka_unit_test(test_redis_restart),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_second_instance),
        cmocka_unit_test(test_stop_with_streams_open),
    };
    if (getenv("BP_TEST_FILTER")) /* e.g. BP_TEST_FILTER=test_redis_restart */
        cmocka_set_test_filter(getenv("BP_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
