/** @file The progress routes against a real battlepassd, PostgreSQL, Redis and devbroker:
 *  earned and paid XP after XP events and level purchases (PostgreSQL, Redis, HTTP), level
 *  purchases (exact levels and paid XP, LevelUp events, autoClaim grants, replay, conflict,
 *  max level, bad bodies, access), the XP history (pagination, order, filters, bad
 *  parameters) and progress in a named season. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fold.h"
#include "core/level.h"
#include "producers/codec.h"
#include "tests/integration/support.h"

#define HTTP_PORT 23187
#define BODY_MAX (1 << 16)
#define WAIT_MS 60000
#define HISTORY_EVENTS 45
#define HISTORY_OUTSIDE 2

static it_env_t env;
static bp_season_t season;
static pid_t daemon_pid = -1;
static char prefix[24];
static char *service_token;
static char *admin_token;

static void skip_without_services(void)
{
    if (!env.bootstrap)
        skip();
}

static void player_name(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s%s", prefix, name);
}

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "http_progress", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/schemas/seasons/sample-season.json", env.source_dir);
    /* The sample season with autoClaim, so that purchases grant rewards too. */
    const char *auto_path = "http-progress-season.json";
    if (!it_season_load(path, &season) ||
        !it_season_write(&env, auto_path, season.id, 0, 0, "{\"autoClaim\":true}") ||
        !it_db_prepare(&env, auto_path))
        return -1;
    srand((unsigned)(getpid() ^ it_now_ms()));
    snprintf(prefix, sizeof(prefix), "hp%u-%04x-", (unsigned)getpid() % 10000000u,
             (unsigned)rand() & 0xffffu);
    char group[64];
    snprintf(group, sizeof(group), "it-http-progress-%d", (int)getpid());
    daemon_pid = it_daemon_up(&env, group, NULL, "http-progress-daemon.log");
    if (daemon_pid < 0)
        return -1;
    service_token = it_jwt(env.secret, "economy-service", "service", 600);
    admin_token = it_jwt(env.secret, "ops", "admin", 600);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (!it_daemon_down(&daemon_pid))
        rc = -1;
    free(service_token);
    free(admin_token);
    bp_season_fini(&season);
    return rc;
}

/* ---- helpers ---- */

/* One request; @return the status, the body parsed into *out (NULL when not JSON). */
static int call(const char *method, const char *path, const char *token, const char *body,
                json_t **out)
{
    static char text[BODY_MAX];
    text[0] = '\0';
    int status = it_http(HTTP_PORT, method, path, token, NULL, body, text, sizeof(text), NULL, 0);
    if (out)
        *out = json_loads(text, 0, NULL);
    return status;
}

/* Assert a problem+json answer of @p want whose type ends with @p slug; frees it. @p op is
 * read here, after the call that fills it has run. */
static void expect_problem(const char *what, int status, json_t **op, int want, const char *slug)
{
    json_t *o = *op;
    *op = NULL;
    if (status != want)
        fprintf(stderr, "%s: got %d want %d\n", what, status, want);
    assert_int_equal(status, want);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "status")), want);
    const char *type = json_string_value(json_object_get(o, "type"));
    assert_non_null(type);
    size_t tl = strlen(type), sl = strlen(slug);
    if (tl < sl || strcmp(type + tl - sl, slug) != 0)
        fprintf(stderr, "%s: type %s, want slug %s\n", what, type, slug);
    assert_true(tl >= sl && strcmp(type + tl - sl, slug) == 0);
    json_decref(o);
}

static long long sqlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long long sqlf(const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    return it_sql_int(&env, sql);
}

/* Wait until the worker has recorded @p n events of @p player (in or outside seasons). */
static void wait_events(const char *player, long long n)
{
    long long got = -1;
    for (int waited = 0; waited < WAIT_MS; waited += 100) {
        got = sqlf("SELECT count(*) FROM processed_events WHERE player_id = '%s'", player);
        if (got == n)
            break;
        usleep(100000);
    }
    assert_int_equal(got, n);
}

static void make_event(bp_xp_event_t *ev, const char *player, const char *id, int32_t amount,
                       int64_t occurred_at_ms)
{
    memset(ev, 0, sizeof(*ev));
    snprintf(ev->event_id, sizeof(ev->event_id), "%s", id);
    snprintf(ev->player_id, sizeof(ev->player_id), "%s", player);
    snprintf(ev->reason, sizeof(ev->reason), "match_complete");
    ev->amount = amount;
    ev->occurred_at_ms = occurred_at_ms;
}

/* Produce events of @p amounts for @p player, ids "<player>-ev-<i>", and wait for them. */
static void feed_xp(const char *player, const int32_t *amounts, size_t n, size_t already)
{
    it_producer_t *p = it_producer_new(&env);
    int64_t t0 = it_now_ms();
    for (size_t i = 0; i < n; i++) {
        bp_xp_event_t ev;
        char id[BP_ID_MAX + 1];
        /* Checked: a truncated id could repeat an earlier one (and not be applied). */
        int len = snprintf(id, sizeof(id), "%s-ev-%zu", player, already + i);
        assert_true(len > 0 && (size_t)len < sizeof(id));
        make_event(&ev, player, id, amounts[i], t0 + (int64_t)i);
        it_produce_xp(p, &ev);
    }
    it_producer_destroy(p);
    wait_events(player, (long long)(already + n));
}

/* GET the player's progress (@p season_id NULL: current season) as the service. */
static json_t *get_progress(const char *player, const char *season_id)
{
    char path[256];
    json_t *o;
    if (season_id)
        snprintf(path, sizeof(path), "/progress/%s/seasons/%s", player, season_id);
    else
        snprintf(path, sizeof(path), "/progress/%s", player);
    assert_int_equal(call("GET", path, service_token, NULL, &o), 200);
    assert_non_null(o);
    return o;
}

static long long num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fprintf(stderr, "member %s missing or not an integer\n", key);
    assert_true(json_is_integer(v));
    return (long long)json_integer_value(v);
}

/* Assert a Progress resource: totals, split, level and the level's derived fields. */
static void expect_progress(const json_t *o, const char *player, long long earned, long long paid)
{
    long long total = earned + paid;
    bp_level_info_t lv = bp_level_for_xp(&season, total);
    assert_string_equal(json_string_value(json_object_get(o, "playerId")), player);
    assert_string_equal(json_string_value(json_object_get(o, "seasonId")), season.id);
    if (num(o, "totalXp") != total || num(o, "earnedXp") != earned || num(o, "paidXp") != paid)
        fprintf(stderr, "%s: total/earned/paid %lld/%lld/%lld, want %lld/%lld/%lld\n", player,
                num(o, "totalXp"), num(o, "earnedXp"), num(o, "paidXp"), total, earned, paid);
    assert_int_equal(num(o, "totalXp"), total);
    assert_int_equal(num(o, "earnedXp"), earned);
    assert_int_equal(num(o, "paidXp"), paid);
    assert_int_equal(num(o, "currentLevel"), lv.level);
    assert_int_equal(num(o, "currentXp"), lv.current_xp);
    assert_int_equal(num(o, "xpToNextLevel"), lv.xp_to_next);
    assert_true(json_is_boolean(json_object_get(o, "premium")));
}

/* Wait until GET /progress shows @p total XP (the worker commits asynchronously). */
static json_t *wait_progress(const char *player, long long total)
{
    json_t *o = NULL;
    for (int waited = 0; waited < WAIT_MS; waited += 100) {
        o = get_progress(player, NULL);
        if (num(o, "totalXp") == total)
            return o;
        json_decref(o);
        usleep(100000);
    }
    fail_msg("progress of %s never reached %lld XP", player, total);
    return NULL;
}

static int buy(const char *player, const char *token, const char *body, json_t **out)
{
    char path[256];
    snprintf(path, sizeof(path), "/progress/%s/levels", player);
    return call("POST", path, token, body, out);
}

static int buy_levels(const char *player, int count, const char *tx, json_t **out)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"count\":%d,\"transactionId\":\"%s\"}", count, tx);
    return buy(player, service_token, body, out);
}

/* The LevelUp events of exactly @p player in the level-ups topic, decoded; waits until
 * there are @p want of them. @return a JSON array (caller decrefs). */
static json_t *levelups_of(const char *player, size_t want)
{
    char dir[1024], why[256];
    bp_codec_t *codec;
    snprintf(dir, sizeof(dir), "%s/schemas/avro", env.source_dir);
    assert_int_equal(bp_codec_new(dir, &codec, why, sizeof(why)), BP_OK);
    json_t *mine = NULL;
    for (int waited = 0; waited < WAIT_MS; waited += 1000) {
        it_msg_t *msgs;
        size_t n = it_consume_all(&env, "battlepass.level-ups", &msgs);
        json_decref(mine);
        mine = json_array();
        for (size_t i = 0; i < n; i++) {
            char *text = NULL;
            int32_t sid;
            const char *err = NULL;
            assert_int_equal(
                bp_codec_decode_json(codec, msgs[i].value, msgs[i].len, &text, &sid, &err), BP_OK);
            json_t *o = json_loads(text, 0, NULL);
            free(text);
            const char *pl = json_string_value(json_object_get(o, "playerId"));
            if (pl && strcmp(pl, player) == 0) {
                assert_string_equal(msgs[i].key, player);
                json_array_append(mine, o);
            }
            json_decref(o);
        }
        it_msgs_free(msgs, n);
        if (json_array_size(mine) >= want)
            break;
        sleep(1);
    }
    bp_codec_destroy(codec);
    return mine;
}

/* The LevelUp of @p level in @p arr (exactly one), or fail. */
static json_t *levelup_at(json_t *arr, int level)
{
    size_t i;
    json_t *o, *found = NULL;
    int n = 0;
    json_array_foreach(arr, i, o)
    {
        if (json_integer_value(json_object_get(o, "newLevel")) == level) {
            found = o;
            n++;
        }
    }
    if (n != 1)
        fprintf(stderr, "%d LevelUp events for level %d, want 1\n", n, level);
    assert_int_equal(n, 1);
    return found;
}

/* ---- earned and paid XP, level purchases ---- */

static void test_earned_paid_and_purchase(void **state)
{
    (void)state;
    skip_without_services();
    char a[64], b[64], tx[96], body[256], id[3 * BP_ID_MAX + 32];
    player_name(a, sizeof(a), "buyer");
    player_name(b, sizeof(b), "other");
    snprintf(tx, sizeof(tx), "%stx-1", prefix);

    /* 1500 XP earned: level 2. */
    const int32_t amounts[] = {600, 400, 500};
    feed_xp(a, amounts, 3, 0);
    json_t *o = wait_progress(a, 1500);
    expect_progress(o, a, 1500, 0);
    json_decref(o);

    /* Buy 3 levels: 2 -> 5, paid = xpTotal[5] - 1500, exactly. */
    int64_t paid = season.xp_total[5] - 1500;
    assert_int_equal(buy_levels(a, 3, tx, &o), 200);
    expect_progress(o, a, 1500, paid);
    assert_int_equal(num(o, "currentLevel"), 5);
    assert_int_equal(num(o, "currentXp"), 0);
    json_decref(o);
    assert_int_equal(sqlf("SELECT paid_xp FROM player_progress WHERE player_id = '%s'", a), paid);
    assert_int_equal(sqlf("SELECT earned_xp FROM player_progress WHERE player_id = '%s'", a), 1500);
    assert_int_equal(sqlf("SELECT level FROM player_progress WHERE player_id = '%s'", a), 5);
    assert_int_equal(sqlf("SELECT paid_xp FROM level_purchases WHERE transaction_id = '%s'"
                          " AND player_id = '%s' AND levels = 3",
                          tx, a),
                     paid);

    /* The cache holds paidXp, and GET answers from it. */
    char host[64];
    int port;
    assert_int_equal(sscanf(env.redis_url, "redis://%63[^:]:%d", host, &port), 2);
    redisContext *rc = redisConnect(host, port);
    assert_non_null(rc);
    assert_int_equal(rc->err, 0);
    redisReply *r = redisCommand(rc, "HGET bp:progress:{%s}:%s paidXp", season.id, a);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(atoll(r->str), paid);
    freeReplyObject(r);
    o = get_progress(a, NULL);
    expect_progress(o, a, 1500, paid);
    json_decref(o);

    /* LevelUps: 2 from the XP, 3..5 from the purchase, caused by the transaction. */
    json_t *lus = levelups_of(a, 4);
    assert_int_equal(json_array_size(lus), 4);
    for (int lv = 3; lv <= 5; lv++) {
        json_t *lu = levelup_at(lus, lv);
        assert_int_equal(bp_levelup_event_id(id, sizeof(id), season.id, a, lv), BP_OK);
        assert_string_equal(json_string_value(json_object_get(lu, "eventId")), id);
        assert_string_equal(json_string_value(json_object_get(lu, "causeEventId")), tx);
        assert_string_equal(json_string_value(json_object_get(lu, "seasonId")), season.id);
        assert_int_equal(num(lu, "previousLevel"), lv - 1);
        assert_int_equal(num(lu, "totalXp"), 1500 + paid);
    }
    assert_string_not_equal(json_string_value(json_object_get(levelup_at(lus, 2), "causeEventId")),
                            tx);
    json_decref(lus);

    /* autoClaim: the free rewards of levels 3..5 granted by the purchase, on the buyer's
     * behalf (levels 1 and 2 by the worker). */
    assert_int_equal(sqlf("SELECT count(*) FROM reward_claims WHERE player_id = '%s'"
                          " AND source = 'auto' AND level BETWEEN 3 AND 5",
                          a),
                     3);
    assert_int_equal(sqlf("SELECT count(*) FROM audit_log WHERE player_id = '%s'"
                          " AND actor = 'economy-service' AND action = 'auto-grant'",
                          a),
                     3);
    assert_int_equal(sqlf("SELECT count(*) FROM reward_claims WHERE player_id = '%s'", a), 5);

    /* Replay: 200 with the current progress, nothing changes. */
    long long purchases = sqlf("SELECT count(*) FROM level_purchases");
    assert_int_equal(buy_levels(a, 3, tx, &o), 200);
    expect_progress(o, a, 1500, paid);
    json_decref(o);
    assert_int_equal(sqlf("SELECT paid_xp FROM player_progress WHERE player_id = '%s'", a), paid);
    assert_int_equal(sqlf("SELECT count(*) FROM level_purchases"), purchases);
    assert_int_equal(sqlf("SELECT count(*) FROM reward_claims WHERE player_id = '%s'", a), 5);

    /* The same transactionId for another count or another player: 409. */
    expect_problem("other count", buy_levels(a, 2, tx, &o), &o, 409, "transaction-conflict");
    expect_problem("other player", buy_levels(b, 3, tx, &o), &o, 409, "transaction-conflict");
    assert_int_equal(sqlf("SELECT count(*) FROM player_progress WHERE player_id = '%s'", b), 0);

    /* XP earned after the purchase adds to earned only (the worker's cache write keeps the
     * cached paidXp). */
    const int32_t more[] = {250};
    feed_xp(a, more, 1, 3);
    o = wait_progress(a, 1750 + paid);
    expect_progress(o, a, 1750, paid);
    json_decref(o);

    /* The named-season route answers the same. */
    o = get_progress(a, season.id);
    expect_progress(o, a, 1750, paid);
    json_decref(o);

    /* Player scope, admin scope and no token may not buy. */
    char *self = it_jwt(env.secret, a, "player", 600);
    snprintf(body, sizeof(body), "{\"count\":1,\"transactionId\":\"%sp\"}", prefix);
    expect_problem("player scope", buy(a, self, body, &o), &o, 403, "forbidden");
    expect_problem("admin scope", buy(a, admin_token, body, &o), &o, 403, "forbidden");
    int st = buy(a, NULL, body, &o);
    assert_int_equal(st, 401);
    json_decref(o);
    free(self);
    redisFree(rc);
}

static void test_purchase_max_level(void **state)
{
    (void)state;
    skip_without_services();
    char c[64], tx[96], tx2[96];
    player_name(c, sizeof(c), "whale");
    snprintf(tx, sizeof(tx), "%stx-max", prefix);
    snprintf(tx2, sizeof(tx2), "%stx-max-2", prefix);
    int32_t max = season.max_level;
    int64_t top = season.xp_total[max];

    /* More levels than there are: capped at the max level, never past it. */
    json_t *o;
    assert_int_equal(buy_levels(c, max + 50, tx, &o), 200);
    expect_progress(o, c, 0, top);
    assert_int_equal(num(o, "currentLevel"), max);
    assert_int_equal(num(o, "xpToNextLevel"), 0);
    json_decref(o);
    assert_int_equal(sqlf("SELECT level FROM player_progress WHERE player_id = '%s'", c), max);

    /* At the max level: 422, nothing recorded; the first purchase still replays. */
    expect_problem("at max", buy_levels(c, 1, tx2, &o), &o, 422, "max-level");
    assert_int_equal(sqlf("SELECT count(*) FROM level_purchases WHERE transaction_id = '%s'", tx2),
                     0);
    assert_int_equal(buy_levels(c, max + 50, tx, &o), 200);
    expect_progress(o, c, 0, top);
    json_decref(o);

    /* One LevelUp per level 2..max. */
    json_t *lus = levelups_of(c, (size_t)max - 1);
    assert_int_equal(json_array_size(lus), (size_t)max - 1);
    for (int lv = 2; lv <= max; lv++)
        assert_int_equal(num(levelup_at(lus, lv), "totalXp"), top);
    json_decref(lus);
}

static void test_purchase_bad_bodies(void **state)
{
    (void)state;
    skip_without_services();
    char d[64];
    player_name(d, sizeof(d), "badbody");
    char long_id[80];
    memset(long_id, 'x', 65);
    long_id[65] = '\0';
    char long_body[160];
    snprintf(long_body, sizeof(long_body), "{\"count\":1,\"transactionId\":\"%s\"}", long_id);
    const char *bodies[] = {
        "",
        "not json",
        "[1]",
        "{}",
        "{\"transactionId\":\"t1\"}",
        "{\"count\":1}",
        "{\"count\":0,\"transactionId\":\"t1\"}",
        "{\"count\":-1,\"transactionId\":\"t1\"}",
        "{\"count\":10001,\"transactionId\":\"t1\"}",
        "{\"count\":1.5,\"transactionId\":\"t1\"}",
        "{\"count\":\"3\",\"transactionId\":\"t1\"}",
        "{\"count\":true,\"transactionId\":\"t1\"}",
        "{\"count\":null,\"transactionId\":\"t1\"}",
        "{\"count\":1,\"transactionId\":\"\"}",
        "{\"count\":1,\"transactionId\":\"has space\"}",
        "{\"count\":1,\"transactionId\":7}",
        long_body,
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        json_t *o;
        int st = buy(d, service_token, bodies[i][0] ? bodies[i] : NULL, &o);
        if (st != 400)
            fprintf(stderr, "body %zu (%s): %d\n", i, bodies[i], st);
        assert_int_equal(st, 400);
        json_decref(o);
    }
    assert_int_equal(sqlf("SELECT count(*) FROM player_progress WHERE player_id = '%s'", d), 0);
}

/* ---- history ---- */

/* GET a history page; @return the status and the parsed body. */
static int history(const char *player, const char *token, const char *query, json_t **out)
{
    char path[512];
    snprintf(path, sizeof(path), "/progress/%s/history%s%s", player, query ? "?" : "",
             query ? query : "");
    return call("GET", path, token, NULL, out);
}

static void test_history(void **state)
{
    (void)state;
    skip_without_services();
    char h[40], other[40];
    player_name(h, sizeof(h), "historian");
    player_name(other, sizeof(other), "nosy");

    /* Two events outside every season (recorded, not listed), then 45 in the season. */
    it_producer_t *p = it_producer_new(&env);
    for (int i = 0; i < HISTORY_OUTSIDE; i++) {
        bp_xp_event_t ev;
        char id[BP_ID_MAX + 1];
        snprintf(id, sizeof(id), "%s-old-%d", h, i);
        make_event(&ev, h, id, 5, it_now_ms() - 400LL * 86400 * 1000);
        it_produce_xp(p, &ev);
    }
    it_producer_destroy(p);
    wait_events(h, HISTORY_OUTSIDE);
    int32_t amounts[HISTORY_EVENTS];
    for (int i = 0; i < HISTORY_EVENTS; i++)
        amounts[i] = 10 + i;
    feed_xp(h, amounts, HISTORY_EVENTS, HISTORY_OUTSIDE);

    /* limit 20: pages of 20, 20 and 5, newest first, every event once. */
    char seen[HISTORY_EVENTS] = {0};
    char query[256] = "limit=20";
    size_t pages = 0, total = 0;
    long next_expected = HISTORY_OUTSIDE + HISTORY_EVENTS - 1;
    for (;;) {
        json_t *o;
        assert_int_equal(history(h, service_token, query, &o), 200);
        json_t *items = json_object_get(o, "items");
        assert_true(json_is_array(items));
        pages++;
        assert_int_equal(json_array_size(items), pages < 3 ? 20 : 5);
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            const char *eid = json_string_value(json_object_get(it, "eventId"));
            assert_non_null(eid);
            char want[BP_ID_MAX + 1];
            snprintf(want, sizeof(want), "%s-ev-%ld", h, next_expected);
            assert_string_equal(eid, want);
            long k = next_expected - HISTORY_OUTSIDE;
            assert_false(seen[k]);
            seen[k] = 1;
            next_expected--;
            assert_string_equal(json_string_value(json_object_get(it, "seasonId")), season.id);
            assert_int_equal(num(it, "amount"), amounts[k]);
            assert_int_equal(num(it, "appliedAmount"), amounts[k]);
            assert_int_equal(num(it, "boostPct"), 100);
            assert_string_equal(json_string_value(json_object_get(it, "reason")), "match_complete");
            assert_true(json_is_string(json_object_get(it, "occurredAt")));
            assert_true(json_is_string(json_object_get(it, "processedAt")));
            total++;
        }
        json_t *nc = json_object_get(o, "nextCursor");
        if (pages < 3) {
            assert_true(json_is_string(nc));
            snprintf(query, sizeof(query), "limit=20&cursor=%s", json_string_value(nc));
            json_decref(o);
            continue;
        }
        assert_true(json_is_null(nc));
        json_decref(o);
        break;
    }
    assert_int_equal(pages, 3);
    assert_int_equal(total, HISTORY_EVENTS);

    /* Default limit 20; the season filter; the player's own token. */
    json_t *o;
    assert_int_equal(history(h, service_token, NULL, &o), 200);
    assert_int_equal(json_array_size(json_object_get(o, "items")), 20);
    json_decref(o);
    char q[256];
    snprintf(q, sizeof(q), "seasonId=%s&limit=100", season.id);
    assert_int_equal(history(h, admin_token, q, &o), 200);
    assert_int_equal(json_array_size(json_object_get(o, "items")), HISTORY_EVENTS);
    assert_true(json_is_null(json_object_get(o, "nextCursor")));
    json_decref(o);
    char *self = it_jwt(env.secret, h, "player", 600);
    char *nosy = it_jwt(env.secret, other, "player", 600);
    assert_int_equal(history(h, self, "limit=1&cursor=", &o), 200);
    assert_int_equal(json_array_size(json_object_get(o, "items")), 1);
    json_decref(o);
    expect_problem("other player", history(h, nosy, NULL, &o), &o, 403, "forbidden");
    assert_int_equal(history(h, NULL, NULL, &o), 401);
    json_decref(o);
    free(self);
    free(nosy);

    /* Bad parameters. */
    const char *bad[] = {"limit=0",    "limit=101",         "limit=abc",
                         "limit=",     "limit=-1",          "limit=2x",
                         "cursor=abc", "cursor=-5",         "cursor=0",
                         "cursor=1.5", "seasonId=bad%20id", "limit=99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int st = history(h, service_token, bad[i], &o);
        if (st != 400)
            fprintf(stderr, "query %s: %d\n", bad[i], st);
        expect_problem(bad[i], st, &o, 400, "invalid-parameter");
    }
    expect_problem("unknown season", history(h, service_token, "seasonId=no-such-season", &o), &o,
                   404, "season-not-found");

    /* A player without events has an empty history. */
    assert_int_equal(history(other, service_token, NULL, &o), 200);
    assert_int_equal(json_array_size(json_object_get(o, "items")), 0);
    assert_true(json_is_null(json_object_get(o, "nextCursor")));
    json_decref(o);
}

/* ---- progress in a named season ---- */

static void test_season_route(void **state)
{
    (void)state;
    skip_without_services();
    char n[64], path[256];
    player_name(n, sizeof(n), "newcomer");
    json_t *o = get_progress(n, season.id);
    expect_progress(o, n, 0, 0);
    assert_int_equal(num(o, "currentLevel"), 1);
    assert_true(json_is_null(json_object_get(o, "updatedAt")));
    json_decref(o);

    snprintf(path, sizeof(path), "/progress/%s/seasons/no-such-season", n);
    expect_problem("unknown season", call("GET", path, service_token, NULL, &o), &o, 404,
                   "season-not-found");
    snprintf(path, sizeof(path), "/progress/%s/seasons/bad%%20id", n);
    expect_problem("bad season id", call("GET", path, service_token, NULL, &o), &o, 400,
                   "invalid-parameter");

    /* Same access rule as GET /progress/{playerId}. */
    char *self = it_jwt(env.secret, n, "player", 600);
    char *other = it_jwt(env.secret, "someone-else", "player", 600);
    snprintf(path, sizeof(path), "/progress/%s/seasons/%s", n, season.id);
    assert_int_equal(call("GET", path, self, NULL, &o), 200);
    json_decref(o);
    expect_problem("other player", call("GET", path, other, NULL, &o), &o, 403, "forbidden");
    assert_int_equal(call("GET", path, NULL, NULL, &o), 401);
    json_decref(o);
    free(self);
    free(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_earned_paid_and_purchase),
        cmocka_unit_test(test_purchase_max_level),
        cmocka_unit_test(test_purchase_bad_bodies),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_season_route),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
