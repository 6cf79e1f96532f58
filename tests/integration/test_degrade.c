/** @file Degradation under dependency outages, against the real services and one running
 *  daemon per test: Redis down (the worker goes on, HTTP reads fall back to PostgreSQL, the
 *  cache heals), PostgreSQL down (/ready 503, consumption stops without committing, resumes
 *  by itself with nothing lost) and the brokers down or answering errors (retries, resumes).
 *  Every outcome is checked against an oracle of what was produced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "core/level.h"
#include "store/cache.h"
#include "tests/integration/support.h"

#define PORT_REDIS 23193
#define PORT_PG 23194
#define PORT_BROKER 23195
#define PLAYERS 40
#define MAX_EVENTS 4096
#define XP_TOPIC "battlepass.xp-events"
#define MAX_PARTS 64
/* How long Redis stops answering in the stall phase of test_redis_down. */
#define REDIS_PAUSE_MS 4000

/* The Kafka request types this test pushes errors for (cleared in every restore). */
static const char *const error_apis[] = {"Fetch", "OffsetCommit", "Produce"};

static it_env_t env;
static bp_season_t season;
static char group[64];
static pid_t daemon_pid = -1; /* the running daemon, stopped in teardown when a check failed */

/* What was produced for one test's players: the oracle. */
typedef struct {
    char prefix[32];
    int64_t totals[PLAYERS];
    int player_of[MAX_EVENTS]; /* per original event */
    int amount_of[MAX_EVENTS];
    size_t originals; /* distinct eventIds sent (each applied exactly once) */
    size_t sent;      /* messages, duplicates included */
    size_t dups;
} oracle_t;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void player_name(const oracle_t *o, int pl, char *out, size_t len)
{
    snprintf(out, len, "%sp%02d", o->prefix, pl);
}

/* ---- services ------------------------------------------------------------------------- */

static redisContext *redis_connect(void)
{
    bp_cache_url_t u;
    if (bp_cache_url_parse(env.redis_url, &u) != BP_OK)
        return NULL;
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout(u.host, u.port, tv);
    redisReply *r = NULL;
    if (c && !c->err && u.password)
        r = u.user ? redisCommand(c, "AUTH %s %s", u.user, u.password)
                   : redisCommand(c, "AUTH %s", u.password);
    freeReplyObject(r);
    r = c && !c->err ? redisCommand(c, "SELECT %d", u.db) : NULL;
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    bp_cache_url_fini(&u);
    if (!ok) {
        if (c)
            redisFree(c);
        return NULL;
    }
    return c;
}

static bool redis_up(void)
{
    redisContext *c = redis_connect();
    if (c)
        redisFree(c);
    return c != NULL;
}

/* Field @p field of the cached progress of player @p pl; -1 when absent (or no Redis). */
static long long cached_field(redisContext *c, const oracle_t *o, int pl, const char *field)
{
    char player[64];
    player_name(o, pl, player, sizeof(player));
    redisReply *r = redisCommand(c, "HGET bp:progress:{%s}:%s %s", season.id, player, field);
    long long v = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}

/* Players whose cached totalXp is the oracle's (and, when @p complete, whose entry a read
 * has completed: premium is set, so reads are served from it). */
static int cached_right(redisContext *c, const oracle_t *o, bool complete)
{
    int n = 0;
    for (int pl = 0; pl < PLAYERS; pl++)
        n += cached_field(c, o, pl, "totalXp") == o->totals[pl] &&
             (!complete || cached_field(c, o, pl, "premium") == 0);
    return n;
}

/* Wait until every player is cached right. @return ms waited, or -1 (with the count). */
static long long wait_cached(redisContext *c, const oracle_t *o, bool complete, int timeout_ms)
{
    int64_t t0 = mono_ms();
    int n = 0;
    while (mono_ms() - t0 <= timeout_ms) {
        if ((n = cached_right(c, o, complete)) == PLAYERS)
            return mono_ms() - t0;
        it_sleep_ms(50);
    }
    printf("  after %d ms, %d of %d players cached right%s\n", timeout_ms, n, PLAYERS,
           complete ? " and complete" : "");
    return -1;
}

/* Bring back whatever a test took down: idempotent, also after a failed check. */
static void restore_services(void)
{
    char cmd[64];
    if (it_sql_int(&env, "SELECT 1") != 1)
        (void)it_fault("pg-start");
    if (!redis_up())
        (void)it_fault("redis-start");
    for (int id = 1; id <= 3; id++) {
        snprintf(cmd, sizeof(cmd), "broker broker up %d", id);
        (void)it_fault(cmd);
    }
    for (size_t i = 0; i < sizeof(error_apis) / sizeof(error_apis[0]); i++) {
        snprintf(cmd, sizeof(cmd), "broker clear %s", error_apis[i]);
        (void)it_fault(cmd);
    }
}

/* ---- the daemon ----------------------------------------------------------------------- */

static bool daemon_alive(void)
{
    int st;
    return daemon_pid > 0 && waitpid(daemon_pid, &st, WNOHANG) == 0;
}

static void daemon_start(uint16_t port, const char *log)
{
    env.http_port = port;
    unlink(log);
    daemon_pid = it_daemon_up(&env, group, NULL, log);
    assert_true(daemon_pid > 0);
    /* /health answered: from this daemon, not from something else on the port. */
    it_sleep_ms(200);
    if (!daemon_alive())
        fprintf(stderr, "degrade: the daemon exited at start (port %u taken?), see %s\n",
                (unsigned)port, log);
    assert_true(daemon_alive());
}

static void daemon_stop(void)
{
    assert_true(daemon_alive());
    assert_true(it_daemon_down(&daemon_pid));
}

/* Lines of @p log containing @p needle. */
static int log_count(const char *log, const char *needle)
{
    FILE *f = fopen(log, "r");
    char line[8192];
    int n = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

static int log_lines(const char *log)
{
    return log_count(log, "");
}

/* ---- HTTP ----------------------------------------------------------------------------- */

static int http_status(const char *path)
{
    return it_http_get(env.http_port, path, NULL, NULL, 0);
}

/* Does the header block @p hdr contain @p want (lower case), ignoring case? */
static bool has_header(const char *hdr, const char *want)
{
    char low[4096];
    size_t i = 0;
    for (; hdr[i] && i < sizeof(low) - 1; i++)
        low[i] = (char)(hdr[i] >= 'A' && hdr[i] <= 'Z' ? hdr[i] - 'A' + 'a' : hdr[i]);
    low[i] = '\0';
    return strstr(low, want) != NULL;
}

/* A counter of GET /metrics (a line "name value"); -1 when absent. */
static long long metric(const char *name)
{
    static char body[1 << 18];
    if (it_http_get(env.http_port, "/metrics", NULL, body, sizeof(body)) != 200)
        return -1;
    size_t n = strlen(name);
    for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return atoll(p + n + 1);
    return -1;
}

/* GET /progress/{player} with the player's own token. @return the status; total and
 * level filled on 200. */
static int http_progress(const oracle_t *o, int pl, long long *total, int *level)
{
    char player[64], path[128], body[4096];
    player_name(o, pl, player, sizeof(player));
    snprintf(path, sizeof(path), "/progress/%s", player);
    char *tok = it_jwt(env.secret, player, "player", 3600);
    int st = it_http_get(env.http_port, path, tok, body, sizeof(body));
    free(tok);
    *total = -1;
    *level = -1;
    if (st != 200)
        return st;
    json_t *j = json_loads(body, 0, NULL);
    if (json_is_integer(json_object_get(j, "totalXp")))
        *total = json_integer_value(json_object_get(j, "totalXp"));
    if (json_is_integer(json_object_get(j, "currentLevel")))
        *level = (int)json_integer_value(json_object_get(j, "currentLevel"));
    json_decref(j);
    return st;
}

/* Players whose progress over HTTP differs from the oracle (or does not answer 200). */
static int http_mismatches(const oracle_t *o)
{
    int bad = 0;
    for (int pl = 0; pl < PLAYERS; pl++) {
        long long total;
        int level;
        int st = http_progress(o, pl, &total, &level);
        if (st != 200 || total != o->totals[pl] ||
            level != bp_level_for_xp(&season, o->totals[pl]).level) {
            if (bad++ < 3)
                printf("  progress of player %d: status %d, totalXp %lld level %d (want %lld, "
                       "%d)\n",
                       pl, st, total, level, (long long)o->totals[pl],
                       bp_level_for_xp(&season, o->totals[pl]).level);
        }
    }
    return bad;
}

/* ---- producing ------------------------------------------------------------------------ */

/* Produce @p n messages for the oracle's players; every @p dup_every-th one repeats an
 * earlier eventId of this oracle (same content, as a producer retry would). */
static void produce(oracle_t *o, it_producer_t *p, int n, int dup_every)
{
    for (int i = 0; i < n; i++) {
        bp_xp_event_t ev;
        memset(&ev, 0, sizeof(ev));
        size_t id;
        bool dup = dup_every > 0 && o->originals > 0 && i % dup_every == dup_every - 1;
        if (dup) {
            id = (size_t)rand() % o->originals;
        } else {
            assert_true(o->originals < MAX_EVENTS);
            id = o->originals++;
            o->player_of[id] = rand() % PLAYERS;
            o->amount_of[id] = 1 + rand() % 700;
            o->totals[o->player_of[id]] += o->amount_of[id];
        }
        snprintf(ev.event_id, sizeof(ev.event_id), "%se%05zu", o->prefix, id);
        player_name(o, o->player_of[id], ev.player_id, sizeof(ev.player_id));
        snprintf(ev.reason, sizeof(ev.reason), "match_complete");
        ev.amount = o->amount_of[id];
        ev.occurred_at_ms = it_now_ms();
        it_produce_xp(p, &ev);
        o->sent++;
        o->dups += dup;
    }
}

static void produce_wave(oracle_t *o, int n, int dup_every)
{
    it_producer_t *p = it_producer_new(&env);
    produce(o, p, n, dup_every);
    it_producer_destroy(p); /* flushes */
}

/* ---- checking against the oracle ------------------------------------------------------ */

/* Distinct events of the oracle recorded as processed. */
static long long processed(const oracle_t *o)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM processed_events WHERE event_id LIKE '%s%%'",
             o->prefix);
    return it_sql_int(&env, sql);
}

/* Players whose total in PostgreSQL differs from the oracle; -1 when PostgreSQL fails. */
static long long pg_mismatches(const oracle_t *o)
{
    char *sql = malloc(PLAYERS * 96 + 512);
    size_t n = (size_t)sprintf(sql, "SELECT count(*) FROM (VALUES ");
    for (int pl = 0; pl < PLAYERS; pl++) {
        char player[64];
        player_name(o, pl, player, sizeof(player));
        n += (size_t)sprintf(sql + n, "%s('%s', %lld)", pl ? "," : "", player,
                             (long long)o->totals[pl]);
    }
    sprintf(sql + n,
            ") AS want(player, total) LEFT JOIN player_progress p ON p.player_id = want.player"
            " WHERE COALESCE(p.total_xp, 0) <> want.total");
    long long bad = it_sql_int(&env, sql);
    free(sql);
    return bad;
}

/* Wait until every event of the oracle is applied exactly once. @return ms waited, or -1. */
static long long wait_applied(const oracle_t *o, int timeout_ms)
{
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 <= timeout_ms) {
        if (processed(o) == (long long)o->originals && pg_mismatches(o) == 0)
            return mono_ms() - t0;
        it_sleep_ms(50);
    }
    printf("  not applied in %d ms: %lld of %zu events processed, %lld players wrong\n", timeout_ms,
           processed(o), o->originals, pg_mismatches(o));
    return -1;
}

/* Levels in PostgreSQL equal the level curve at each player's total. */
static void assert_levels(const oracle_t *o)
{
    for (int pl = 0; pl < PLAYERS; pl++) {
        char player[64], sql[256];
        player_name(o, pl, player, sizeof(player));
        snprintf(sql, sizeof(sql), "SELECT level FROM player_progress WHERE player_id = '%s'",
                 player);
        assert_int_equal(it_sql_int(&env, sql), bp_level_for_xp(&season, o->totals[pl]).level);
    }
}

/* Every LevelUp of the oracle's players reached the topic, none unexpected. */
static void assert_levelups(const oracle_t *o, int timeout_ms)
{
    char *names[PLAYERS];
    for (int pl = 0; pl < PLAYERS; pl++) {
        names[pl] = malloc(64);
        player_name(o, pl, names[pl], 64);
    }
    size_t n_want, unexpected;
    char **want = it_levelups_expected(&season, season.id, names, o->totals, PLAYERS, &n_want);
    int64_t t0 = mono_ms();
    size_t seen = it_levelups_wait(&env, o->prefix, want, n_want, timeout_ms, &unexpected);
    printf("  level-ups: %zu expected, %zu distinct on the topic (%lld ms), %zu unexpected\n",
           n_want, seen, (long long)(mono_ms() - t0), unexpected);
    it_strv_free(want, n_want);
    for (int pl = 0; pl < PLAYERS; pl++)
        free(names[pl]);
    assert_int_equal(unexpected, 0);
    assert_int_equal(seen, n_want);
}

/* The offsets of the group on the XP topic committed to Kafka, per partition (-1 when
 * none). @return the partition count, or -1 when the broker could not tell. */
static int kafka_committed(int64_t *off, int max)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", env.bootstrap, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk)
        return -1;
    /* Never subscribes: only asks the coordinator (OffsetFetch), the group is untouched. */
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, XP_TOPIC, NULL);
    int np = -1;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1)
        np = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    if (np > 0 && np <= max) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
        for (int p = 0; p < np; p++)
            rd_kafka_topic_partition_list_add(l, XP_TOPIC, p);
        if (rd_kafka_committed(rk, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            for (int p = 0; p < np; p++)
                off[p] = l->elems[p].err || l->elems[p].offset < 0 ? -1 : l->elems[p].offset;
        } else {
            np = -1;
        }
        rd_kafka_topic_partition_list_destroy(l);
    } else {
        np = -1;
    }
    rd_kafka_destroy(rk);
    return np;
}

/* The next offset stored in PostgreSQL for XP partition @p p; -1 when none. */
static long long pg_offset(int p)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT COALESCE(max(next_offset), -1) FROM partition_offsets WHERE consumer_group ="
             " '%s' AND topic = '" XP_TOPIC "' AND partition = %d",
             group, p);
    return it_sql_int(&env, sql);
}

/* No offset committed to Kafka lies past what PostgreSQL applied (Kafka's offsets only
 * show the lag; PostgreSQL's are where the worker resumes). */
static void assert_kafka_offsets_behind_pg(void)
{
    int64_t off[MAX_PARTS];
    int np = kafka_committed(off, MAX_PARTS);
    assert_true(np > 0);
    for (int p = 0; p < np; p++) {
        long long stored = pg_offset(p);
        if (off[p] > stored)
            printf("  partition %d: Kafka committed %lld, PostgreSQL %lld\n", p, (long long)off[p],
                   stored);
        assert_true(off[p] <= stored);
    }
}

/* ---- setup ---------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!it_env_load(&env, "degrade", PORT_REDIS))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    if (!getenv("BP_RUN_DIR")) {
        fprintf(stderr, "degrade: BP_RUN_DIR is not set: faults need scripts/services (run "
                        "through scripts/test)\n");
        if (getenv("BP_REQUIRE_SERVICES"))
            return -1;
        env.bootstrap = NULL; /* skip */
        return 0;
    }
    srand((unsigned)getpid());
    snprintf(group, sizeof(group), "it-degrade-%d", (int)getpid());
    /* An active autoClaim season without boosts or caps: the oracle is a plain sum, and
     * level-ups and reward grants go through the outbox relay. */
    if (!it_season_write(&env, "degrade-season.json", "degrade", -2000, 30LL * 24 * 3600 * 1000,
                         "{\"autoClaim\":true,\"xpBoosts\":[],\"dailyXpCap\":null}") ||
        !it_season_load("degrade-season.json", &season) || !it_db_prepare(&env, NULL) ||
        !it_season_import(&env, "degrade-season.json", false))
        return -1;
    restore_services();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (daemon_pid > 0)
        it_daemon_stop(daemon_pid, SIGKILL, 5000);
    if (env.bootstrap)
        restore_services();
    bp_season_fini(&season);
    return 0;
}

/* After each test, even a failed one: the daemon gone, every service back. */
static int test_teardown(void **state)
{
    (void)state;
    if (daemon_pid > 0) {
        it_daemon_stop(daemon_pid, SIGKILL, 5000);
        daemon_pid = -1;
    }
    if (env.bootstrap)
        restore_services();
    return 0;
}

#define NEED_SERVICES()                                                                            \
    do {                                                                                           \
        if (!env.bootstrap)                                                                        \
            skip();                                                                                \
    } while (0)

/* ---- Redis down ----------------------------------------------------------------------- */

/* Redis is a cache: while it is down the worker applies everything to PostgreSQL, HTTP
 * reads answer from PostgreSQL, XP grants skip the rate limit, /ready stays 200 (the
 * service can work; taking it out of rotation would turn a cache outage into an API
 * outage); when it is back, the cache fills again from both the worker and the reads. */
static void test_redis_down(void **state)
{
    (void)state;
    NEED_SERVICES();
    static oracle_t o;
    const char *log = "degrade-redis.log";
    snprintf(o.prefix, sizeof(o.prefix), "dgr%d-", (int)getpid());
    daemon_start(PORT_REDIS, log);

    produce_wave(&o, 400, 10);
    long long ms = wait_applied(&o, 120000);
    assert_true(ms >= 0);
    printf("redis: %zu messages before the outage applied in %lld ms\n", o.sent, ms);
    assert_int_equal(http_mismatches(&o), 0); /* fills the cache */
    redisContext *rc = redis_connect();
    assert_non_null(rc);
    assert_int_equal(cached_field(rc, &o, 0, "totalXp"), o.totals[0]);
    assert_int_equal(cached_field(rc, &o, 0, "premium"), 0);
    redisFree(rc);

    assert_true(it_fault("redis-stop"));
    assert_false(redis_up());
    size_t before = o.sent;
    produce_wave(&o, 400, 10);
    /* XP grants through HTTP too: the rate limit lives in Redis and fails open. */
    char *svc = it_jwt(env.secret, "gameplay", "service", 3600);
    for (int pl = 0; pl < 5; pl++) {
        char player[64], path[128], key[96], out[1024];
        player_name(&o, pl, player, sizeof(player));
        snprintf(path, sizeof(path), "/progress/%s/xp", player);
        snprintf(key, sizeof(key), "Idempotency-Key: %se%05zu", o.prefix, o.originals);
        int st = it_http(env.http_port, "POST", path, svc, key,
                         "{\"amount\":50,\"reason\":\"achievement\",\"metadata\":{}}", out,
                         sizeof(out), NULL, 0);
        if (st != 202)
            printf("  POST %s: %d %s\n", path, st, out);
        assert_int_equal(st, 202);
        o.player_of[o.originals] = pl;
        o.amount_of[o.originals++] = 50;
        o.totals[pl] += 50;
        o.sent++;
    }
    free(svc);
    ms = wait_applied(&o, 30000);
    assert_true(ms >= 0);
    printf("redis: down; %zu messages (5 through HTTP) applied to PostgreSQL in %lld ms\n",
           o.sent - before, ms);
    int64_t t0 = mono_ms();
    assert_int_equal(http_mismatches(&o), 0);
    printf("redis: down; progress of %d players read over HTTP from PostgreSQL in %lld ms\n",
           PLAYERS, (long long)(mono_ms() - t0));
    assert_int_equal(http_status("/health"), 200);
    assert_int_equal(http_status("/ready"), 200);
    assert_true(daemon_alive());
    assert_true(log_count(log, "redis unavailable") > 0);

    assert_true(it_fault("redis-start"));
    int64_t t_back = mono_ms();
    before = o.sent;
    produce_wave(&o, 400, 10);
    ms = wait_applied(&o, 30000);
    assert_true(ms >= 0);
    printf("redis: back (empty); %zu more messages applied in %lld ms\n", o.sent - before, ms);
    /* The worker writes what it missed and what came since by itself (nobody reads). */
    rc = redis_connect();
    assert_non_null(rc);
    long long healed = wait_cached(rc, &o, false, 5000);
    printf("redis: the worker cached every player's total again %lld ms after Redis was back\n",
           healed < 0 ? -1 : (long long)(mono_ms() - t_back));
    assert_true(healed >= 0);
    /* Reads answer right and complete the entries (premium, paidXp) from PostgreSQL. */
    assert_int_equal(http_mismatches(&o), 0);
    healed = wait_cached(rc, &o, true, 5000);
    printf("redis: every entry complete %lld ms after Redis was back\n",
           healed < 0 ? -1 : (long long)(mono_ms() - t_back));
    assert_true(healed >= 0);
    assert_true(log_count(log, "redis reachable again") > 0);

    /* And a wave after that goes through the cache as usual. */
    before = o.sent;
    produce_wave(&o, 200, 0);
    ms = wait_applied(&o, 30000);
    assert_true(ms >= 0);
    healed = wait_cached(rc, &o, true, 3000);
    printf("redis: %zu messages later, every cached player updated by the worker after %lld ms\n",
           o.sent - before, healed);
    assert_true(healed >= 0);
    assert_int_equal(http_mismatches(&o), 0);

    /* Redis unresponsive but keeping its data (a partition, a stall, a restart from a
     * snapshot): the cached entries are complete and now older than PostgreSQL. Once
     * Redis answers again, reads must not serve them as they are until their TTL. */
    redisReply *r = redisCommand(rc, "CLIENT PAUSE %d ALL", REDIS_PAUSE_MS);
    assert_true(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    int64_t t_pause = mono_ms();
    before = o.sent;
    produce_wave(&o, 200, 0);
    ms = wait_applied(&o, 30000);
    printf("redis: paused; %zu messages applied to PostgreSQL in %lld ms\n", o.sent - before, ms);
    assert_true(ms >= 0);
    assert_true(mono_ms() - t_pause < REDIS_PAUSE_MS); /* all of it while Redis hung */
    while (mono_ms() - t_pause < REDIS_PAUSE_MS + 100)
        it_sleep_ms(50);
    healed = wait_cached(rc, &o, true, 5000);
    printf("redis: answering again; no cached player stale %lld ms after the pause\n", healed);
    assert_true(healed >= 0);
    assert_int_equal(http_mismatches(&o), 0);
    assert_true(log_count(log, "redis caught up with the progress writes it missed") > 0);
    redisFree(rc);
    assert_levels(&o);
    assert_levelups(&o, 30000);
    daemon_stop();
}

/* More distinct players change while Redis hangs than the cache client remembers one by
 * one: once Redis answers, every cached progress entry is dropped (readers fill them from
 * PostgreSQL) rather than some being served stale until their TTL. */
static void test_redis_missed_too_many(void **state)
{
    (void)state;
    NEED_SERVICES();
    const char *ids[] = {"degrade-many"};
    bp_cache_t *c = NULL;
    assert_int_equal(bp_cache_new(env.redis_url, 600, &c), BP_OK);
    bp_progress_row_t row = {.total_xp = 10, .level = 1, .updated_at_ms = it_now_ms()};
    assert_int_equal(bp_cache_fill_progress(c, ids[0], "old", &row), BP_OK);
    assert_int_equal(bp_cache_get_progress(c, ids[0], "old", &row), BP_OK);

    redisContext *rc = redis_connect();
    assert_non_null(rc);
    redisReply *r = redisCommand(rc, "CLIENT PAUSE %d ALL", 1500);
    assert_true(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    int64_t t_pause = mono_ms();
    size_t n = BP_CACHE_MISSED_MAX + 1;
    bp_progress_change_t *ch = calloc(n, sizeof(*ch));
    assert_non_null(ch);
    for (size_t i = 0; i < n; i++) {
        snprintf(ch[i].player_id, sizeof(ch[i].player_id), "p%06zu", i);
        ch[i].total_xp = 100;
        ch[i].level = 1;
    }
    ch[0].total_xp = 20;
    snprintf(ch[0].player_id, sizeof(ch[0].player_id), "old");
    assert_int_equal(bp_cache_put_progress(c, ids, ch, n, it_now_ms()), BP_ERETRY);
    free(ch);
    assert_true(bp_cache_behind(c));

    int64_t t0 = mono_ms();
    bp_err_t err = BP_ERETRY;
    while (err != BP_OK && mono_ms() - t0 < 5000) {
        err = bp_cache_catch_up(c);
        if (err != BP_OK)
            it_sleep_ms(100);
    }
    printf("redis: %zu missed writes: every progress entry dropped %lld ms after Redis hung\n", n,
           (long long)(mono_ms() - t_pause));
    assert_int_equal(err, BP_OK);
    assert_false(bp_cache_behind(c));
    /* The stale entry is not served: read PostgreSQL, fill again. */
    assert_int_equal(bp_cache_get_progress(c, ids[0], "old", &row), BP_ENOTFOUND);
    r = redisCommand(rc, "EXISTS bp:progress:{%s}:old bp:progress:{%s}:p000001", ids[0], ids[0]);
    assert_true(r && r->type == REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redisFree(rc);
    bp_cache_destroy(c);
}

/* ---- PostgreSQL down ------------------------------------------------------------------ */

static void test_pg_down(void **state)
{
    (void)state;
    NEED_SERVICES();
    static oracle_t o;
    const char *log = "degrade-pg.log";
    snprintf(o.prefix, sizeof(o.prefix), "dgp%d-", (int)getpid());
    daemon_start(PORT_PG, log);
    pid_t pid = daemon_pid;

    produce_wave(&o, 400, 10);
    long long ms = wait_applied(&o, 120000);
    assert_true(ms >= 0);
    assert_int_equal(http_status("/ready"), 200);
    /* Kafka's offsets catch up with PostgreSQL's right after each batch. */
    int64_t before_off[MAX_PARTS], off[MAX_PARTS];
    int np = -1;
    bool same = false;
    for (int waited = 0; waited < 10000 && !same; waited += 100) {
        np = kafka_committed(before_off, MAX_PARTS);
        same = np > 0;
        for (int p = 0; p < np && same; p++)
            same = before_off[p] == pg_offset(p);
        if (!same)
            it_sleep_ms(100);
    }
    assert_true(same);
    printf("pg: %zu messages applied before the outage\n", o.sent);

    long long retries0 = metric("bp_batch_retries_total");
    int lines0 = log_lines(log);
    assert_true(retries0 >= 0);
    assert_true(it_fault("pg-stop"));
    int64_t t_down = mono_ms();
    char hdr[2048], body[1024];
    int st = 0;
    while (mono_ms() - t_down < 10000) {
        st = it_http(env.http_port, "GET", "/ready", NULL, NULL, NULL, body, sizeof(body), hdr,
                     sizeof(hdr));
        if (st == 503)
            break;
        it_sleep_ms(50);
    }
    printf("pg: down; /ready answered 503 after %lld ms\n", (long long)(mono_ms() - t_down));
    assert_int_equal(st, 503);
    assert_true(has_header(hdr, "content-type: application/problem+json"));
    assert_true(has_header(hdr, "retry-after: "));
    assert_int_equal(http_status("/health"), 200);

    /* Events keep coming while PostgreSQL is down. */
    size_t sent_before = o.sent;
    produce_wave(&o, 400, 10);
    it_sleep_ms(7000);
    assert_true(daemon_alive());
    assert_int_equal(http_status("/health"), 200);
    assert_int_equal(http_status("/ready"), 503);
    long long retries = metric("bp_batch_retries_total") - retries0;
    int lines = log_lines(log) - lines0;
    int rewinds = log_count(log, "batch not applied; rewound, backing off");
    printf("pg: down %lld ms with %zu messages waiting: %lld batch retries, %d rewinds logged, "
           "%d log lines\n",
           (long long)(mono_ms() - t_down), o.sent - sent_before, retries, rewinds, lines);
    /* It tried, and backs off rather than spinning: 100 ms doubling to 5 s is about 7
     * retries in 7 s; a hot loop would be hundreds. */
    assert_true(retries >= 1);
    assert_true(retries <= 20);
    assert_true(lines < 400);
    /* Nothing was committed to Kafka while nothing could be applied. */
    assert_int_equal(kafka_committed(off, MAX_PARTS), np);
    for (int p = 0; p < np; p++)
        assert_int_equal(off[p], before_off[p]);

    assert_true(it_fault("pg-start"));
    int64_t t_up = mono_ms();
    while (mono_ms() - t_up < 20000 && http_status("/ready") != 200)
        it_sleep_ms(50);
    long long ready_ms = mono_ms() - t_up;
    assert_int_equal(http_status("/ready"), 200);
    ms = wait_applied(&o, 60000);
    printf("pg: up again; /ready 200 after %lld ms, all %zu events (%zu messages, %zu "
           "duplicates) applied once after %lld ms\n",
           ready_ms, o.originals, o.sent, o.dups, ms < 0 ? -1 : (long long)(mono_ms() - t_up));
    assert_true(ms >= 0);
    assert_true(daemon_alive());
    assert_int_equal(daemon_pid, pid); /* never restarted */
    assert_levels(&o);
    assert_levelups(&o, 30000);
    assert_kafka_offsets_behind_pg();
    daemon_stop();
}

/* ---- brokers down and failing requests ------------------------------------------------ */

static void broker_cmd(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_true(it_fault(cmd));
}

static void test_broker_down(void **state)
{
    (void)state;
    NEED_SERVICES();
    static oracle_t o;
    const char *log = "degrade-broker.log";
    snprintf(o.prefix, sizeof(o.prefix), "dgb%d-", (int)getpid());
    daemon_start(PORT_BROKER, log);
    pid_t pid = daemon_pid;

    produce_wave(&o, 400, 10);
    long long ms = wait_applied(&o, 120000);
    assert_true(ms >= 0);
    printf("broker: %zu messages applied before the outage\n", o.sent);

    /* Every broker down, longer than the session timeout (6 s). */
    for (int id = 1; id <= 3; id++)
        broker_cmd("broker broker down %d", id);
    int64_t t_down = mono_ms();
    static oracle_t applied;
    applied = o; /* what PostgreSQL holds while the next messages wait in the producer */
    it_producer_t *p = it_producer_new(&env);
    size_t sent_before = o.sent;
    produce(&o, p, 400, 10); /* queued in the producer until a broker is back */
    /* An XP grant cannot reach Kafka: 503 with Retry-After, the daemon stays up. */
    char *svc = it_jwt(env.secret, "gameplay", "service", 3600);
    char player[64], path[128], hdr[2048], out[1024];
    player_name(&o, 0, player, sizeof(player));
    snprintf(path, sizeof(path), "/progress/%s/xp", player);
    int64_t t0 = mono_ms();
    int st = it_http(env.http_port, "POST", path, svc, NULL,
                     "{\"amount\":50,\"reason\":\"achievement\",\"metadata\":{}}", out, sizeof(out),
                     hdr, sizeof(hdr));
    printf("broker: all down; POST xp answered %d in %lld ms\n", st, (long long)(mono_ms() - t0));
    free(svc);
    assert_int_equal(st, 503);
    assert_true(has_header(hdr, "retry-after: "));
    while (mono_ms() - t_down < 8000)
        it_sleep_ms(100);
    assert_true(daemon_alive());
    assert_int_equal(http_status("/health"), 200);
    /* PostgreSQL answers: HTTP reads still work, so the instance stays ready. */
    assert_int_equal(http_status("/ready"), 200);
    assert_int_equal(http_mismatches(&applied), 0);

    for (int id = 1; id <= 3; id++)
        broker_cmd("broker broker up %d", id);
    int64_t t_up = mono_ms();
    it_producer_destroy(p); /* delivered once the brokers answer again */
    long long flushed = mono_ms() - t_up;
    ms = wait_applied(&o, 60000);
    printf("broker: down %lld ms; %zu messages produced meanwhile (in Kafka %lld ms after the "
           "brokers came back), all %zu events applied once after %lld ms\n",
           (long long)(t_up - t_down), o.sent - sent_before, flushed, o.originals,
           ms < 0 ? -1 : (long long)(mono_ms() - t_up));
    assert_true(ms >= 0);
    assert_true(daemon_alive());

    /* Failing requests. The daemon is paused (SIGSTOP, well within the session timeout)
     * while the next wave is produced, so the Produce errors pushed after the test's own
     * producer is gone can only meet the worker's producer: the relay's LevelUps. */
    assert_int_equal(kill(daemon_pid, SIGSTOP), 0);
    sent_before = o.sent;
    size_t originals_before = o.originals;
    produce_wave(&o, 400, 10);
    broker_cmd("broker errors Fetch NOT_LEADER_FOR_PARTITION NOT_LEADER_FOR_PARTITION "
               "REQUEST_TIMED_OUT NOT_LEADER_FOR_PARTITION UNKNOWN_TOPIC_OR_PART "
               "NOT_LEADER_FOR_PARTITION");
    broker_cmd("broker errors OffsetCommit NOT_COORDINATOR COORDINATOR_NOT_AVAILABLE "
               "REQUEST_TIMED_OUT NOT_COORDINATOR");
    broker_cmd("broker errors Produce NOT_LEADER_FOR_PARTITION NOT_ENOUGH_REPLICAS "
               "NOT_LEADER_FOR_PARTITION REQUEST_TIMED_OUT NOT_LEADER_FOR_PARTITION "
               "NOT_ENOUGH_REPLICAS");
    long long early = processed(&o);
    assert_int_equal(kill(daemon_pid, SIGCONT), 0);
    int64_t t_cont = mono_ms();
    ms = wait_applied(&o, 60000);
    printf("broker: with Fetch, OffsetCommit and Produce errors, %zu more messages applied "
           "%lld ms after the worker resumed\n",
           o.sent - sent_before, ms < 0 ? -1 : (long long)(mono_ms() - t_cont));
    /* Paused: none of the wave was applied, so its level-ups were not relayed yet. */
    assert_int_equal(early, (long long)originals_before);
    assert_true(ms >= 0);
    assert_true(daemon_alive());
    assert_int_equal(daemon_pid, pid);
    assert_levels(&o);
    assert_levelups(&o, 60000);
    for (size_t i = 0; i < sizeof(error_apis) / sizeof(error_apis[0]); i++)
        broker_cmd("broker clear %s", error_apis[i]);
    assert_kafka_offsets_behind_pg();
    assert_int_equal(http_mismatches(&o), 0);
    daemon_stop();
    /* After a clean stop the outbox is drained: every LevelUp and RewardGrant went out. */
    assert_int_equal(it_sql_int(&env, "SELECT count(*) FROM outbox"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_redis_down, test_teardown),
        cmocka_unit_test_teardown(test_redis_missed_too_many, test_teardown),
        cmocka_unit_test_teardown(test_pg_down, test_teardown),
        cmocka_unit_test_teardown(test_broker_down, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
