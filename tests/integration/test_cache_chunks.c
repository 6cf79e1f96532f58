/** @file store/cache.c writes a batch's progress as script calls of up to 128 keys of one
 *  season each (one hash slot): against a real Redis (BP_REDIS_URL; skipped when unset),
 *  thousands of rows across seasons, in long runs and interleaved, all land, monotonic, and
 *  the changed ones are published. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "store/cache.h"

#define N 3000 /* rows per batch: many calls, several pipeline rounds */

static char tag[32]; /* unique per run */
static char host[256] = "127.0.0.1";
static int port = 6379, db = 0;

static const char *redis_url(void)
{
    const char *u = getenv("BP_REDIS_URL");
    return u && *u ? u : NULL;
}

/* host, port and db of BP_REDIS_URL (no password: scripts/services runs Redis without). */
static redisContext *connect_plain(void)
{
    const char *p = redis_url() + strlen("redis://");
    const char *colon = strchr(p, ':'), *slash = strchr(p, '/');
    size_t hl = colon ? (size_t)(colon - p) : slash ? (size_t)(slash - p) : strlen(p);
    snprintf(host, sizeof(host), "%.*s", (int)hl, p);
    if (colon)
        port = atoi(colon + 1);
    if (slash)
        db = atoi(slash + 1);
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err)
        return NULL;
    if (db) {
        redisReply *r = redisCommand(c, "SELECT %d", db);
        freeReplyObject(r);
    }
    return c;
}

static long long hget_ll(redisContext *c, const char *season, const char *player, const char *field)
{
    redisReply *r = redisCommand(c, "HGET bp:progress:{%s}:%s %s", season, player, field);
    long long v = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}

/* Rows i = 0..N-1 for player "<tag>p<i>"; season picked by @p season_of. */
static void fill(bp_progress_change_t *ch, int (*season_of)(int), int64_t xp_base)
{
    for (int i = 0; i < N; i++) {
        memset(&ch[i], 0, sizeof(ch[i]));
        snprintf(ch[i].player_id, sizeof(ch[i].player_id), "%sp%d", tag, i);
        ch[i].season_idx = season_of(i);
        ch[i].total_xp = xp_base + i;
        ch[i].level = 1 + i % 7;
    }
}

static int runs(int i)
{
    return i < N / 3 ? 0 : i < 2 * N / 3 ? 1 : 2; /* three long runs */
}

static int interleaved(int i)
{
    return i % 3; /* a season change at every row: one key per call */
}

static void check_all(redisContext *rc, const char *const *ids, int (*season_of)(int),
                      int64_t xp_base)
{
    char player[64];
    for (int i = 0; i < N; i++) {
        snprintf(player, sizeof(player), "%sp%d", tag, i);
        const char *s = ids[season_of(i)];
        if (hget_ll(rc, s, player, "totalXp") != xp_base + i ||
            hget_ll(rc, s, player, "level") != 1 + i % 7)
            fail_msg("row %d (%s, %s): totalXp %lld, level %lld", i, s, player,
                     hget_ll(rc, s, player, "totalXp"), hget_ll(rc, s, player, "level"));
        redisReply *r = redisCommand(rc, "TTL bp:progress:{%s}:%s", s, player);
        assert_true(r && r->type == REDIS_REPLY_INTEGER && r->integer > 0);
        freeReplyObject(r);
    }
}

static void test_chunks(void **state)
{
    (void)state;
    if (!redis_url())
        skip();
    snprintf(tag, sizeof(tag), "cc%d-", (int)getpid());
    char s0[40], s1[40], s2[40];
    snprintf(s0, sizeof(s0), "%sa", tag);
    snprintf(s1, sizeof(s1), "%sb", tag);
    snprintf(s2, sizeof(s2), "%sc", tag);
    const char *ids[3] = {s0, s1, s2};
    redisContext *rc = connect_plain();
    assert_non_null(rc);
    /* A subscriber counts the publications of one player of each kind of call. */
    redisContext *sub = connect_plain();
    assert_non_null(sub);
    char ch_name[96];
    snprintf(ch_name, sizeof(ch_name), "bp:progress:%sp%d", tag, N / 2);
    redisReply *r = redisCommand(sub, "SUBSCRIBE %s", ch_name);
    freeReplyObject(r);

    bp_cache_t *c = NULL;
    assert_int_equal(bp_cache_new(redis_url(), 120, &c), BP_OK);
    bp_progress_change_t *ch = calloc(N, sizeof(*ch));
    assert_non_null(ch);

    fill(ch, runs, 1000);
    assert_int_equal(bp_cache_put_progress(c, ids, ch, N, 1), BP_OK);
    check_all(rc, ids, runs, 1000);

    /* Lower totals change nothing (and publish nothing); higher ones win. */
    fill(ch, runs, 10);
    assert_int_equal(bp_cache_put_progress(c, ids, ch, N, 2), BP_OK);
    check_all(rc, ids, runs, 1000);
    fill(ch, runs, 5000);
    assert_int_equal(bp_cache_put_progress(c, ids, ch, N, 3), BP_OK);
    check_all(rc, ids, runs, 5000);

    /* Interleaved seasons: every row its own call, all of them land. */
    fill(ch, interleaved, 7000);
    assert_int_equal(bp_cache_put_progress(c, ids, ch, N, 4), BP_OK);
    check_all(rc, ids, interleaved, 7000);

    /* Rows without a season are skipped, the others written. */
    fill(ch, runs, 9000);
    for (int i = 0; i < N; i += 2)
        ch[i].season_idx = -1;
    assert_int_equal(bp_cache_put_progress(c, ids, ch, N, 5), BP_OK);
    char player[64];
    for (int i = 1; i < N; i += 2) {
        snprintf(player, sizeof(player), "%sp%d", tag, i);
        assert_int_equal(hget_ll(rc, ids[runs(i)], player, "totalXp"), 9000 + i);
    }

    /* Player N/2 (season 1 in runs, 0 interleaved): published at 1000, 5000, 7000, 9000 (not
     * at 10, lower); the messages carry the totals. */
    long long want[] = {1000 + N / 2, 5000 + N / 2, 7000 + N / 2};
    struct timeval tv = {2, 0};
    redisSetTimeout(sub, tv);
    for (size_t k = 0; k < 3; k++) {
        redisReply *m = NULL;
        assert_int_equal(redisGetReply(sub, (void **)&m), REDIS_OK);
        if (m && m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
            strcmp(m->element[0]->str, "subscribe") == 0) {
            freeReplyObject(m);
            assert_int_equal(redisGetReply(sub, (void **)&m), REDIS_OK);
        }
        assert_true(m && m->type == REDIS_REPLY_ARRAY && m->elements == 3);
        char total[48];
        snprintf(total, sizeof(total), "\"totalXp\":%lld,", want[k]);
        if (!strstr(m->element[2]->str, total))
            fail_msg("message %zu: %s, want %s", k, m->element[2]->str, total);
        freeReplyObject(m);
    }

    free(ch);
    bp_cache_destroy(c);
    redisFree(sub);
    redisFree(rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_chunks)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
