/** @file GET /progress/{playerId}/stream against a real battlepassd, PostgreSQL, Redis and
 *  devbroker: the first Progress event; progress, level-up and reward-available events after
 *  XP events (latency from produce to event measured and printed); premium rewards; the
 *  access rules; clients that go away; the stream limit; a resync after the Redis
 *  subscription is cut; keep-alives; a stream served by a second instance (Redis pub/sub
 *  across processes) and a clean SIGTERM with streams open. */
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
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
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
    bp_cache_url_t url;
    if (bp_cache_url_parse(env.redis_url, &url) != BP_OK)
        return NULL;
    redisContext *ctx = redisConnect(url.host, url.port);
    bp_cache_url_fini(&url);
    if (!ctx || ctx->err)
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

/* ---- tests ---- */

static void test_progress_level_up_rewards(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1], path[256];
    player_name(player, sizeof(player), "p1");
    snprintf(path, sizeof(path), "/progress/%s/stream", player);
    sse_t *s = calloc(1, sizeof(*s));
    assert_true(sse_open(s, HTTP_PORT, path, service_token));
    assert_int_equal(s->status, 200);
    assert_true(sse_header_is(s, "Content-Type", "text/event-stream"));
    assert_true(sse_header_is(s, "Cache-Control", "no-store"));

    /* First: the Progress resource, as GET /progress/{playerId} has it. */
    json_t *o = expect_event(s, "progress", EVENT_WAIT_MS);
    assert_string_equal(json_string_value(json_object_get(o, "playerId")), player);
    assert_string_equal(json_string_value(json_object_get(o, "seasonId")), season.id);
    assert_int_equal(jint(o, "totalXp"), 0);
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
    sse_close(s);
    free(s);
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
    snprintf(path, sizeof(path), "/progress/%s/stream", player);
    sse_t *s = calloc(1, sizeof(*s));
    assert_true(sse_open(s, HTTP_PORT, path, token));
    assert_int_equal(s->status, 200);
    json_t *o = expect_event(s, "progress", EVENT_WAIT_MS);
    assert_true(json_is_true(json_object_get(o, "premium")));
    json_decref(o);
    /* 2100 XP: level 1 → 3; free and premium rewards of levels 2 and 3. */
    round_trip(s, player, 2100, 2100, NULL, NULL);
    expect_level_up(s, 1, 3, 2100);
    const char *ids[] = {"reward-002-free", "reward-002-premium", "reward-003-free"};
    expect_rewards(s, player, ids, 3);
    sse_close(s);
    free(s);
    free(token);
}

/* A level purchase is a progress change like any other: it reaches the stream at once. */
static void test_purchase_reaches_stream(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1], path[256], body[256], out[4096];
    player_name(player, sizeof(player), "buyer");
    snprintf(path, sizeof(path), "/progress/%s/stream", player);
    sse_t *s = calloc(1, sizeof(*s));
    assert_true(sse_open(s, HTTP_PORT, path, service_token));
    assert_int_equal(s->status, 200);
    json_t *o = expect_event(s, "progress", EVENT_WAIT_MS);
    assert_int_equal(jint(o, "totalXp"), 0);
    json_decref(o);
    snprintf(path, sizeof(path), "/progress/%s/levels", player);
    snprintf(body, sizeof(body), "{\"count\":2,\"transactionId\":\"%sbuy\"}", prefix);
    int64_t t0 = it_now_ms();
    int st = it_http(HTTP_PORT, "POST", path, service_token, NULL, body, out, sizeof(out), NULL, 0);
    if (st != 200)
        fail_msg("purchase: %d %s", st, out);
    o = expect_event(s, "progress", EVENT_WAIT_MS);
    printf("purchase → progress event: %lld ms\n", (long long)(it_now_ms() - t0));
    assert_int_equal(jint(o, "totalXp"), season.xp_total[3]);
    assert_int_equal(jint(o, "currentLevel"), 3);
    json_decref(o);
    expect_level_up(s, 1, 3, season.xp_total[3]);
    sse_close(s);
    free(s);
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
    sse_t *s = calloc(1, sizeof(*s));
    assert_true(sse_open(s, HTTP_PORT, path, admin));
    assert_int_equal(s->status, 200);
    json_decref(expect_event(s, "progress", EVENT_WAIT_MS));
    sse_close(s);
    free(s);
    free(admin);
}

/* Clients that vanish must free their streams: many open/close cycles, some mid-update,
 * then a stream still works. */
static void test_clients_going_away(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1], path[256];
    player_name(player, sizeof(player), "churn");
    snprintf(path, sizeof(path), "/progress/%s/stream", player);
    sse_t *s = calloc(40, sizeof(*s));
    for (int i = 0; i < 40; i++) {
        assert_true(sse_open(&s[i], HTTP_PORT, path, service_token));
        assert_int_equal(s[i].status, 200);
    }
    for (int i = 0; i < 20; i++) /* half go away before the update */
        sse_close(&s[i]);
    produce(player, 1200, 1);
    for (int i = 20; i < 40; i++) {
        json_decref(expect_event(&s[i], "progress", EVENT_WAIT_MS)); /* the first one */
        json_t *o = expect_event(&s[i], "progress", EVENT_WAIT_MS);
        assert_int_equal(jint(o, "totalXp"), 1200);
        json_decref(o);
        sse_close(&s[i]);
    }
    /* The server only notices a client gone on its next write: a keep-alive or update. */
    produce(player, 10, 1);
    assert_true(wait_applied(player, 2, 10000));
    sse_t one;
    assert_true(sse_open(&one, HTTP_PORT, path, service_token));
    assert_int_equal(one.status, 200);
    json_t *o = expect_event(&one, "progress", EVENT_WAIT_MS);
    assert_int_equal(jint(o, "totalXp"), 1210);
    json_decref(o);
    sse_close(&one);
    free(s);
}

/* Send a stream request on a new socket and read the status line and headers (and what
 * follows in the same reads). @return the status, -1 on failure; *fd stays open. */
static int raw_stream(const char *path, const char *token, int *fd, bool *retry_after)
{
    char buf[2048];
    size_t got = 0;
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(HTTP_PORT)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (*fd < 0 || connect(*fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        return -1;
    int n = snprintf(buf, sizeof(buf),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Authorization: Bearer %s\r\n\r\n",
                     path, token);
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
    char path[256];
    sleep(3); /* streams of the tests before are gone */
    for (int round = 0; round < 2; round++) {
        int ok = 0, refused = 0;
        int64_t t0 = it_now_ms();
        for (int i = 0; i < TRY; i++) {
            char player[BP_ID_MAX + 1], name[32];
            bool retry_after = false;
            snprintf(name, sizeof(name), "many-%d", i % 50);
            player_name(player, sizeof(player), name);
            snprintf(path, sizeof(path), "/progress/%s/stream", player);
            int st = raw_stream(path, service_token, &fds[i], &retry_after);
            if (st == 200)
                ok++;
            else if (st == 503 && retry_after)
                refused++;
            else
                fail_msg("stream %d: status %d", i, st);
        }
        printf("round %d: %d streams open, %d refused with 503 (%lld ms)\n", round, ok, refused,
               (long long)(it_now_ms() - t0));
        assert_int_equal(ok, LIMIT);
        assert_int_equal(refused, TRY - LIMIT);
        for (int i = 0; i < TRY; i++)
            close(fds[i]);
        sleep(3); /* the hub probes suspended sockets every second */
    }
    free(fds);
}

/* The hub's Redis subscription is cut: what was published meanwhile is lost, so once
 * resubscribed every stream re-reads its state. The "missed" change is made in PostgreSQL
 * (the cache entry dropped) and never published. */
static void test_resync_after_reconnect(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1], path[256], sql[512];
    player_name(player, sizeof(player), "resync");
    snprintf(path, sizeof(path), "/progress/%s/stream", player);
    sse_t *s = calloc(1, sizeof(*s));
    assert_true(sse_open(s, HTTP_PORT, path, service_token));
    assert_int_equal(s->status, 200);
    json_t *o = expect_event(s, "progress", EVENT_WAIT_MS);
    assert_int_equal(jint(o, "totalXp"), 0);
    json_decref(o);

    snprintf(sql, sizeof(sql),
             "INSERT INTO player_progress (player_id, season_id, total_xp, earned_xp, level)"
             " VALUES ('%s', '%s', 700, 700, 1) RETURNING 1",
             player, season.id);
    assert_int_equal(it_sql_int(&env, sql), 1);
    bp_cache_url_t url;
    assert_int_equal(bp_cache_url_parse(env.redis_url, &url), BP_OK);
    redisContext *rc = redisConnect(url.host, url.port);
    bp_cache_url_fini(&url);
    assert_true(rc && !rc->err);
    redisReply *r = redisCommand(rc, "DEL bp:progress:{%s}:%s", season.id, player);
    assert_non_null(r);
    freeReplyObject(r);
    r = redisCommand(rc, "CLIENT KILL TYPE pubsub");
    assert_true(r && r->type == REDIS_REPLY_INTEGER && r->integer >= 1);
    freeReplyObject(r);
    redisFree(rc);

    int64_t t0 = it_now_ms();
    o = expect_event(s, "progress", EVENT_WAIT_MS);
    printf("resynced %lld ms after the subscription was cut\n", (long long)(it_now_ms() - t0));
    assert_int_equal(jint(o, "totalXp"), 700);
    assert_int_equal(jint(o, "earnedXp"), 700);
    json_decref(o);
    /* And the new subscription delivers: 700 + 600 crosses level 2. */
    produce(player, 600, 1);
    o = expect_event(s, "progress", EVENT_WAIT_MS);
    assert_int_equal(jint(o, "totalXp"), 1300);
    json_decref(o);
    expect_level_up(s, 1, 2, 1300);
    sse_close(s);
    free(s);
}

/* A quiet stream gets a ": keep-alive" comment every 15 s. */
static void test_keep_alive(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1], path[256];
    player_name(player, sizeof(player), "quiet");
    snprintf(path, sizeof(path), "/progress/%s/stream", player);
    sse_t *s = calloc(1, sizeof(*s));
    int64_t t0 = it_now_ms();
    assert_true(sse_open(s, HTTP_PORT, path, service_token));
    json_decref(expect_event(s, "progress", EVENT_WAIT_MS));
    while (!strstr(s->body, ": keep-alive\n\n") && it_now_ms() - t0 < 18000) {
        if (sse_fill(s, 1000))
            dechunk(s);
    }
    long long after = it_now_ms() - t0;
    printf("keep-alive after %lld ms\n", after);
    assert_non_null(strstr(s->body, ": keep-alive\n\n"));
    assert_true(after >= 14000);
    sse_close(s);
    free(s);
}

/* A second instance in the same consumer group: whichever worker applies the event, both
 * instances' streams get it through Redis. Then SIGTERM that instance with its stream open:
 * exit 0 and the stream ends cleanly. */
static void test_second_instance(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1], path[256], listen[64];
    player_name(player, sizeof(player), "p2");
    snprintf(path, sizeof(path), "/progress/%s/stream", player);
    snprintf(listen, sizeof(listen), "BP_HTTP_LISTEN=127.0.0.1:%d", HTTP_PORT_B);
    const char *extra[] = {listen, NULL};
    pid_t b = it_daemon_start(&env, group, extra, "http-stream-daemon-b.log");
    assert_true(b > 0);
    assert_true(it_http_wait(HTTP_PORT_B, 15000));

    sse_t *sa = calloc(1, sizeof(*sa)), *sb = calloc(1, sizeof(*sb));
    assert_true(sse_open(sa, HTTP_PORT, path, service_token));
    assert_true(sse_open(sb, HTTP_PORT_B, path, service_token));
    assert_int_equal(sa->status, 200);
    assert_int_equal(sb->status, 200);
    json_decref(expect_event(sa, "progress", EVENT_WAIT_MS));
    json_decref(expect_event(sb, "progress", EVENT_WAIT_MS));
    /* The group rebalances as B joins: allow for it. */
    produce(player, 1100, 1);
    for (int i = 0; i < 2; i++) {
        json_t *o = expect_event(i ? sb : sa, "progress", 60000);
        assert_int_equal(jint(o, "totalXp"), 1100);
        json_decref(o);
        expect_level_up(i ? sb : sa, 1, 2, 1100);
    }
    sse_close(sa);

    int64_t t0 = it_now_ms();
    int st = it_daemon_stop(b, SIGTERM, 30000);
    printf("second instance stopped with a stream open in %lld ms, status %d\n",
           (long long)(it_now_ms() - t0), st);
    assert_int_equal(st, 0);
    sse_event_t ev;
    while (sse_next(sb, 2000, &ev))
        ;
    assert_true(sb->ended || sb->closed);
    sse_close(sb);
    free(sa);
    free(sb);
}

/* Last: SIGTERM with suspended streams open must end them and exit 0 promptly. */
static void test_stop_with_streams_open(void **state)
{
    (void)state;
    skip_without_services();
    char player[BP_ID_MAX + 1], path[256];
    player_name(player, sizeof(player), "p3");
    snprintf(path, sizeof(path), "/progress/%s/stream", player);
    sse_t *s = calloc(3, sizeof(*s));
    for (int i = 0; i < 3; i++) {
        assert_true(sse_open(&s[i], HTTP_PORT, path, service_token));
        assert_int_equal(s[i].status, 200);
        json_decref(expect_event(&s[i], "progress", EVENT_WAIT_MS));
    }
    int64_t t0 = it_now_ms();
    int st = it_daemon_stop(daemon_pid, SIGTERM, 30000);
    daemon_pid = -1;
    printf("daemon stopped with %d streams open in %lld ms, status %d\n", 3,
           (long long)(it_now_ms() - t0), st);
    assert_int_equal(st, 0);
    for (int i = 0; i < 3; i++) {
        sse_event_t ev;
        while (sse_next(&s[i], 2000, &ev))
            ;
        assert_true(s[i].ended || s[i].closed);
        sse_close(&s[i]);
    }
    free(s);
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
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_second_instance),
        cmocka_unit_test(test_stop_with_streams_open),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
