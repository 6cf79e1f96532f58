/** @file Integration tests of store/cache.c against a real Redis (BP_REDIS_URL; skipped when
 *  unset), plus its behaviour when Redis is down (always run). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/cache.h"

#define TTL_S 120

static char season[64]; /* unique per run so runs do not see each other's keys */
static char host[256] = "127.0.0.1";
static int port = 6379, db = 0;
static char password[256]; /* "" when none */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *redis_url(void)
{
    const char *u = getenv("BP_REDIS_URL");
    return u && *u ? u : NULL;
}

/* Split BP_REDIS_URL for the test's own connection (redis://[[user]:pass@]host:port[/db]). */
static void parse_env_url(const char *url)
{
    const char *p = url + strlen("redis://");
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon)
            snprintf(password, sizeof(password), "%.*s", (int)(at - colon - 1), colon + 1);
        p = at + 1;
    }
    const char *colon = strchr(p, ':');
    const char *slash = strchr(p, '/');
    size_t hl = colon ? (size_t)(colon - p) : slash ? (size_t)(slash - p) : strlen(p);
    snprintf(host, sizeof(host), "%.*s", (int)hl, p);
    if (colon)
        port = atoi(colon + 1);
    if (slash)
        db = atoi(slash + 1);
}

/* A plain hiredis connection to look at what the cache wrote. */
static redisContext *peek(void)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisReply *r;
    if (password[0]) {
        r = redisCommand(c, "AUTH %s", password);
        assert_non_null(r);
        freeReplyObject(r);
    }
    r = redisCommand(c, "SELECT %d", db);
    assert_non_null(r);
    freeReplyObject(r);
    return c;
}

static long long hget_ll(redisContext *c, const char *season_id, const char *player, const char *f)
{
    redisReply *r = redisCommand(c, "HGET bp:progress:{%s}:%s %s", season_id, player, f);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(season, sizeof(season), "it-%ld-%lld", (long)getpid(), (long long)mono_ms());
    if (redis_url())
        parse_env_url(redis_url());
    return 0;
}

static bp_cache_t *new_cache(void)
{
    bp_cache_t *c = NULL;
    assert_int_equal(bp_cache_new(redis_url(), TTL_S, &c), BP_OK);
    assert_non_null(c);
    return c;
}

static bp_progress_change_t change(const char *player, int season_idx, int64_t xp, int32_t level)
{
    bp_progress_change_t ch;
    memset(&ch, 0, sizeof(ch));
    snprintf(ch.player_id, sizeof(ch.player_id), "%s", player);
    ch.season_idx = season_idx;
    ch.total_xp = xp;
    ch.level = level;
    return ch;
}

#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        if (!redis_url()) {                                                                        \
            print_message("BP_REDIS_URL not set: skipped\n");                                      \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void test_put_fill_get_monotonic(void **state)
{
    (void)state;
    NEED_REDIS();
    bp_cache_t *c = new_cache();
    const char *ids[] = {season};
    bp_progress_row_t row;

    assert_int_equal(bp_cache_get_progress(c, season, "p-mono", &row), BP_ENOTFOUND);
    bp_progress_change_t ch = change("p-mono", 0, 500, 3);
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 1000), BP_OK);
    /* written by a batch, premium still unknown: a miss, so the reader fills from PG */
    assert_int_equal(bp_cache_get_progress(c, season, "p-mono", &row), BP_ENOTFOUND);

    bp_progress_row_t pg = {.total_xp = 500, .level = 3, .premium = true, .updated_at_ms = 900};
    assert_int_equal(bp_cache_fill_progress(c, season, "p-mono", &pg), BP_OK);
    assert_int_equal(bp_cache_get_progress(c, season, "p-mono", &row), BP_OK);
    assert_int_equal(row.total_xp, 500);
    assert_int_equal(row.level, 3);
    assert_true(row.premium);
    assert_int_equal(row.updated_at_ms, 1000); /* the batch's write was not older */

    /* a late, lower writer changes nothing */
    ch = change("p-mono", 0, 400, 2);
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 2000), BP_OK);
    pg = (bp_progress_row_t){.total_xp = 300, .level = 2, .premium = false, .updated_at_ms = 5};
    assert_int_equal(bp_cache_fill_progress(c, season, "p-mono", &pg), BP_OK);
    assert_int_equal(bp_cache_get_progress(c, season, "p-mono", &row), BP_OK);
    assert_int_equal(row.total_xp, 500);
    assert_int_equal(row.level, 3);
    assert_true(row.premium); /* a granted pass is never taken back by a stale read */

    /* a higher one replaces it and keeps premium */
    ch = change("p-mono", 0, 1200, 5);
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 3000), BP_OK);
    assert_int_equal(bp_cache_get_progress(c, season, "p-mono", &row), BP_OK);
    assert_int_equal(row.total_xp, 1200);
    assert_int_equal(row.level, 5);
    assert_true(row.premium);
    assert_int_equal(row.updated_at_ms, 3000);
    bp_cache_destroy(c);
}

static void test_fill_then_premium_granted(void **state)
{
    (void)state;
    NEED_REDIS();
    bp_cache_t *c = new_cache();
    bp_progress_row_t row, pg = {.total_xp = 0, .level = 1, .premium = false, .updated_at_ms = 0};
    assert_int_equal(bp_cache_fill_progress(c, season, "p-fill", &pg), BP_OK);
    assert_int_equal(bp_cache_get_progress(c, season, "p-fill", &row), BP_OK);
    assert_int_equal(row.total_xp, 0);
    assert_int_equal(row.level, 1);
    assert_false(row.premium);
    assert_int_equal(row.updated_at_ms, 0);
    /* same XP, pass granted since: the fill sets premium */
    pg.premium = true;
    assert_int_equal(bp_cache_fill_progress(c, season, "p-fill", &pg), BP_OK);
    assert_int_equal(bp_cache_get_progress(c, season, "p-fill", &row), BP_OK);
    assert_true(row.premium);
    bp_cache_destroy(c);
}

static void test_ttl(void **state)
{
    (void)state;
    NEED_REDIS();
    bp_cache_t *c = new_cache();
    const char *ids[] = {season};
    bp_progress_change_t ch = change("p-ttl", 0, 10, 1);
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 1), BP_OK);
    redisContext *p = peek();
    redisReply *r = redisCommand(p, "TTL bp:progress:{%s}:p-ttl", season);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer > 0 && r->integer <= TTL_S);
    freeReplyObject(r);
    /* a non-applied write still refreshes the TTL */
    r = redisCommand(p, "EXPIRE bp:progress:{%s}:p-ttl 5", season);
    freeReplyObject(r);
    ch.total_xp = 5;
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 2), BP_OK);
    r = redisCommand(p, "TTL bp:progress:{%s}:p-ttl", season);
    assert_true(r->integer > 5);
    freeReplyObject(r);
    redisFree(p);
    bp_cache_destroy(c);
}

static void test_publish(void **state)
{
    (void)state;
    NEED_REDIS();
    bp_cache_t *c = new_cache();
    const char *ids[] = {season};
    redisContext *sub = peek();
    redisReply *r = redisCommand(sub, "SUBSCRIBE bp:progress:p-pub");
    assert_non_null(r);
    freeReplyObject(r);

    bp_progress_change_t ch = change("p-pub", 0, 700, 4);
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 1), BP_OK);
    ch = change("p-pub", 0, 600, 3); /* lower: not published */
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 2), BP_OK);
    ch = change("p-pub", 0, 800, 5);
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 3), BP_OK);

    char want[256];
    const long long xps[] = {700, 800};
    const int levels[] = {4, 5};
    for (int i = 0; i < 2; i++) {
        r = NULL;
        assert_int_equal(redisGetReply(sub, (void **)&r), REDIS_OK);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        assert_int_equal(r->elements, 3);
        assert_string_equal(r->element[1]->str, "bp:progress:p-pub");
        snprintf(want, sizeof(want),
                 "{\"playerId\":\"p-pub\",\"seasonId\":\"%s\",\"totalXp\":%lld,\"level\":%d}",
                 season, xps[i], levels[i]);
        assert_string_equal(r->element[2]->str, want);
        freeReplyObject(r);
    }
    redisFree(sub);
    bp_cache_destroy(c);
}

static void test_pipeline_1000(void **state)
{
    (void)state;
    NEED_REDIS();
    enum { N = 1000, SEASONS = 3 };
    bp_cache_t *c = new_cache();
    char sids[SEASONS][80];
    const char *ids[SEASONS];
    for (int s = 0; s < SEASONS; s++) {
        snprintf(sids[s], sizeof(sids[s]), "%s-%d", season, s);
        ids[s] = sids[s];
    }
    bp_progress_change_t *ch = calloc(N + 1, sizeof(*ch));
    assert_non_null(ch);
    char player[32];
    for (int i = 0; i < N; i++) {
        snprintf(player, sizeof(player), "pp-%04d", i);
        ch[i] = change(player, i % SEASONS, 100 + i, 1 + i % 50);
    }
    ch[N] = change("pp-none", -1, 5, 1); /* no season: skipped */
    int64_t t0 = mono_ms();
    assert_int_equal(bp_cache_put_progress(c, ids, ch, N + 1, 42), BP_OK);
    int64_t took = mono_ms() - t0;
    print_message("pipelined %d cache updates in %lld ms\n", N, (long long)took);

    redisContext *p = peek();
    for (int i = 0; i < N; i++)
        assert_int_equal(redisAppendCommand(p, "HMGET bp:progress:{%s}:%s totalXp level",
                                            ids[ch[i].season_idx], ch[i].player_id),
                         REDIS_OK);
    for (int i = 0; i < N; i++) {
        redisReply *r = NULL;
        assert_int_equal(redisGetReply(p, (void **)&r), REDIS_OK);
        assert_int_equal(r->elements, 2);
        assert_non_null(r->element[0]->str);
        assert_int_equal(atoll(r->element[0]->str), 100 + i);
        assert_int_equal(atoi(r->element[1]->str), 1 + i % 50);
        freeReplyObject(r);
    }
    redisReply *r = redisCommand(p, "EXISTS bp:progress:{%s}:pp-none", sids[0]);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redisFree(p);
    free(ch);
    bp_cache_destroy(c);
}

/* The script cache flushed under us: EVAL fallback, then EVALSHA works again. */
static void test_noscript_fallback(void **state)
{
    (void)state;
    NEED_REDIS();
    bp_cache_t *c = new_cache();
    const char *ids[] = {season};
    bp_progress_change_t ch[2] = {change("p-ns1", 0, 10, 1), change("p-ns2", 0, 20, 2)};
    assert_int_equal(bp_cache_put_progress(c, ids, ch, 2, 1), BP_OK); /* connects, loads */
    redisContext *p = peek();
    redisReply *r = redisCommand(p, "SCRIPT FLUSH");
    freeReplyObject(r);
    ch[0].total_xp = 30;
    ch[1].total_xp = 40;
    assert_int_equal(bp_cache_put_progress(c, ids, ch, 2, 2), BP_OK);
    assert_int_equal(hget_ll(p, season, "p-ns1", "totalXp"), 30);
    assert_int_equal(hget_ll(p, season, "p-ns2", "totalXp"), 40);
    r = redisCommand(p, "SCRIPT LOAD %s", "return 1"); /* just to see the server is fine */
    freeReplyObject(r);
    bp_progress_row_t pg = {.total_xp = 50, .level = 3, .premium = false, .updated_at_ms = 3};
    assert_int_equal(bp_cache_fill_progress(c, season, "p-ns1", &pg), BP_OK);
    assert_int_equal(hget_ll(p, season, "p-ns1", "totalXp"), 50);
    redisFree(p);
    bp_cache_destroy(c);
}

/* An ACL user of our own: lets the test AUTH as someone and kill only our connections.
 * @return false when the server has no ACLs (Redis < 6) or the URL has a password. */
static bool make_user(redisContext *p, const char *user)
{
    if (password[0])
        return false;
    redisReply *r = redisCommand(p, "ACL SETUSER %s on >s3cr%%t:@ ~* &* +@all", user);
    bool ok = r && r->type != REDIS_REPLY_ERROR;
    freeReplyObject(r);
    return ok;
}

static void drop_user(redisContext *p, const char *user)
{
    redisReply *r = redisCommand(p, "ACL DELUSER %s", user);
    freeReplyObject(r);
}

/* AUTH with user and password (percent-encoded in the URL), SELECT of the URL's db, and one
 * reconnect inside a call when the server closed the connection (restart, idle kill). */
static void test_auth_db_reconnect(void **state)
{
    (void)state;
    NEED_REDIS();
    char user[80], url[512];
    int other_db = db == 5 ? 6 : 5;
    snprintf(user, sizeof(user), "bp-%s", season);
    redisContext *p = peek();
    if (!make_user(p, user)) {
        redisFree(p);
        print_message("no ACL user possible: skipped\n");
        skip();
    }
    snprintf(url, sizeof(url), "redis://%s:s3cr%%25t%%3A%%40@%s:%d/%d", user, host, port, other_db);
    bp_cache_t *c = NULL;
    assert_int_equal(bp_cache_new(url, TTL_S, &c), BP_OK);
    const char *ids[] = {season};
    bp_progress_change_t ch = change("p-auth", 0, 77, 2);
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 1), BP_OK);
    redisReply *r = redisCommand(p, "SELECT %d", other_db);
    freeReplyObject(r);
    assert_int_equal(hget_ll(p, season, "p-auth", "totalXp"), 77);

    /* the server drops our connection: the next call reconnects once and succeeds */
    r = redisCommand(p, "CLIENT KILL USER %s", user);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    ch.total_xp = 88;
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 2), BP_OK);
    assert_int_equal(hget_ll(p, season, "p-auth", "totalXp"), 88);
    r = redisCommand(p, "CLIENT KILL USER %s", user);
    freeReplyObject(r);
    bp_progress_row_t row;
    assert_int_equal(bp_cache_get_progress(c, season, "p-auth", &row), BP_ENOTFOUND);
    bp_cache_destroy(c);
    r = redisCommand(p, "DEL bp:progress:{%s}:p-auth", season);
    freeReplyObject(r);

    /* a wrong password: a retryable failure, not a crash */
    snprintf(url, sizeof(url), "redis://%s:wrong@%s:%d", user, host, port);
    assert_int_equal(bp_cache_new(url, TTL_S, &c), BP_OK);
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 1), BP_ERETRY);
    bp_cache_destroy(c);
    drop_user(p, user);
    redisFree(p);
}

/* A Redis that accepts but does not answer (paused): the command times out after 500 ms,
 * then calls fail fast for a second instead of waiting again, then the cache heals. */
static void test_timeout(void **state)
{
    (void)state;
    NEED_REDIS();
    bp_cache_t *c = new_cache();
    const char *ids[] = {season};
    bp_progress_change_t ch = change("p-to", 0, 10, 1);
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 1), BP_OK);
    redisContext *p = peek();
    redisReply *r = redisCommand(p, "CLIENT PAUSE 1500 WRITE");
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR) { /* Redis < 6.2 */
        freeReplyObject(r);
        redisFree(p);
        bp_cache_destroy(c);
        skip();
    }
    freeReplyObject(r);
    ch.total_xp = 20;
    int64_t t0 = mono_ms();
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 2), BP_ERETRY);
    int64_t took = mono_ms() - t0;
    assert_true(took >= 400 && took < 1200);
    t0 = mono_ms();
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 3), BP_ERETRY);
    assert_true(mono_ms() - t0 < 50);
    r = redisCommand(p, "CLIENT UNPAUSE");
    freeReplyObject(r);
    usleep(1100 * 1000);
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 4), BP_OK);
    assert_int_equal(hget_ll(p, season, "p-to", "totalXp"), 20);
    redisFree(p);
    bp_cache_destroy(c);
}

/* Nothing listens: BP_ERETRY at once, and no further connect for a second. Needs no Redis. */
static void test_redis_down(void **state)
{
    (void)state;
    bp_cache_t *c = NULL;
    /* port 1 on loopback: connection refused */
    assert_int_equal(bp_cache_new("redis://127.0.0.1:1", TTL_S, &c), BP_OK);
    const char *ids[] = {"s1"};
    bp_progress_change_t ch = change("p-down", 0, 10, 1);
    bp_progress_row_t row = {.total_xp = 1, .level = 1};
    int64_t t0 = mono_ms();
    assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 1), BP_ERETRY);
    int64_t first = mono_ms() - t0;
    assert_true(first < 400);
    t0 = mono_ms();
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(bp_cache_put_progress(c, ids, &ch, 1, 1), BP_ERETRY);
        assert_int_equal(bp_cache_get_progress(c, "s1", "p-down", &row), BP_ERETRY);
        assert_int_equal(bp_cache_fill_progress(c, "s1", "p-down", &row), BP_ERETRY);
    }
    int64_t many = mono_ms() - t0;
    print_message("first failure %lld ms, 30000 more calls %lld ms\n", (long long)first,
                  (long long)many);
    assert_true(many < 500);
    bp_cache_destroy(c);

    /* a host that drops packets: the 200 ms connect timeout bounds the wait */
    assert_int_equal(bp_cache_new("redis://10.255.255.1:6379", TTL_S, &c), BP_OK);
    t0 = mono_ms();
    assert_int_equal(bp_cache_get_progress(c, "s1", "p-down", &row), BP_ERETRY);
    assert_true(mono_ms() - t0 < 1000);
    bp_cache_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_fill_get_monotonic),
        cmocka_unit_test(test_fill_then_premium_granted),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_publish),
        cmocka_unit_test(test_pipeline_1000),
        cmocka_unit_test(test_noscript_fallback),
        cmocka_unit_test(test_auth_db_reconnect),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_redis_down),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
