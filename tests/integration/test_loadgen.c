/** @file Smoke test of tools/loadgen on the devbroker: the topic grows by exactly the messages
 *  it reports, every message decodes to a valid XpEvent keyed by its player, duplicates are
 *  byte-identical to their originals and its oracle (unique events, duplicates, sum of
 *  amounts, distinct players) matches what is in the topic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "core/event.h"
#include "producers/codec.h"
#include "tests/integration/support.h"

/* Its own topic (auto-created by the devbroker), so that the workers of the other tests,
 * which read battlepass.xp-events from the beginning, never see these events. */
#define TOPIC "battlepass.loadgen-smoke"
#define SUBJECT "battlepass.xp-events-value"
#define EVENTS 20000
#define DUP_PCT 5
#define MAX_PARTITIONS 64

static const char *bootstrap;
static char loadgen[PATH_MAX];

/* The loadgen binary: $BP_LOADGEN, else next to this test (both land in the build folder),
 * else next to $BP_BATTLEPASSD. */
static bool find_loadgen(void)
{
    const char *env = getenv("BP_LOADGEN");
    char self[PATH_MAX];
    ssize_t n;

    if (env && *env) {
        snprintf(loadgen, sizeof(loadgen), "%s", env);
        return access(loadgen, X_OK) == 0;
    }
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(loadgen, sizeof(loadgen), "%.*s/loadgen", PATH_MAX - 16, self);
            if (access(loadgen, X_OK) == 0)
                return true;
        }
    }
    env = getenv("BP_BATTLEPASSD");
    if (env && strrchr(env, '/')) {
        snprintf(loadgen, sizeof(loadgen), "%.*s/loadgen", (int)(strrchr(env, '/') - env), env);
        return access(loadgen, X_OK) == 0;
    }
    return false;
}

static int group_setup(void **state)
{
    (void)state;
    if (!find_loadgen()) {
        fprintf(stderr, "test_loadgen: loadgen binary not found (set BP_LOADGEN)\n");
        return -1;
    }
    bootstrap = getenv("BP_KAFKA_BOOTSTRAP");
    if (!bootstrap || !*bootstrap) {
        fprintf(stderr, "test_loadgen: BP_KAFKA_BOOTSTRAP not set (run through scripts/test, "
                        "or source .run/env)\n");
        bootstrap = NULL;
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    }
    return 0;
}

/* Runs loadgen with @p args (NULL-terminated), its stdout into @p out.
 * @return its exit status, or -1 when it did not exit normally. */
static int run_loadgen(const char *const *args, char *out, size_t out_len)
{
    const char *argv[32];
    size_t n = 0, got = 0;
    int fds[2], st;

    argv[n++] = loadgen;
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(loadgen, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    for (;;) {
        char tmp[1024];
        ssize_t r = read(fds[0], tmp, sizeof(tmp));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t take = (size_t)r < out_len - 1 - got ? (size_t)r : out_len - 1 - got;
        memcpy(out + got, tmp, take);
        got += take;
    }
    out[got] = '\0';
    close(fds[0]);
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static json_t *parse_json(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DISABLE_EOF_CHECK, &err);
    if (!j)
        fprintf(stderr, "loadgen output is not JSON (%s): %s\n", err.text, text);
    return j;
}

static int64_t jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) {
        fprintf(stderr, "loadgen JSON lacks integer %s\n", key);
        return -1;
    }
    return (int64_t)json_integer_value(v);
}

/* High watermarks of every partition of TOPIC, through a producer handle (its metadata
 * request creates the topic on the devbroker). @return the partition count. */
static int watermarks(int64_t *high)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, TOPIC, NULL);
    const rd_kafka_metadata_t *md = NULL;
    int np = 0;
    for (int attempt = 0; attempt < 20 && np == 0; attempt++) {
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (md->topic_cnt == 1 && !md->topics[0].err)
                np = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
        }
        if (np == 0)
            usleep(100000);
    }
    assert_true(np > 0 && np <= MAX_PARTITIONS);
    for (int p = 0; p < np; p++) {
        int64_t lo = 0, hi = 0;
        assert_int_equal(rd_kafka_query_watermark_offsets(rk, TOPIC, p, &lo, &hi, 5000),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
        high[p] = hi;
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return np;
}

typedef struct {
    uint64_t k;      /* event number, from eventId "<prefix>-e<k>" */
    uint64_t player; /* from playerId "<prefix>-p<n>" */
    int32_t amount;
    void *value;
    size_t len;
} seen_t;

static int cmp_seen(const void *a, const void *b)
{
    const seen_t *x = a, *y = b;
    return x->k < y->k ? -1 : x->k > y->k;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Number after @p prefix + @p tag at the start of @p s, or UINT64_MAX. */
static uint64_t id_number(const char *s, const char *prefix, const char *tag)
{
    size_t pl = strlen(prefix), tl = strlen(tag);
    if (strncmp(s, prefix, pl) != 0 || strncmp(s + pl, tag, tl) != 0)
        return UINT64_MAX;
    const char *d = s + pl + tl;
    char *end = NULL;
    if (*d < '0' || *d > '9')
        return UINT64_MAX;
    unsigned long long v = strtoull(d, &end, 10);
    return *end == '\0' ? v : UINT64_MAX;
}

/* --random-ids: loadgen's eventId of original k is mix64(k) (splitmix64's finalizer, a
 * bijection), so the number in an id is mapped back to k through this table of (mix64(k), k)
 * for k < EVENTS, sorted by the first. Empty: ids are k itself. */
typedef struct {
    uint64_t id, k;
} id_map_t;
static id_map_t *id_map;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int cmp_id_map(const void *a, const void *b)
{
    uint64_t x = ((const id_map_t *)a)->id, y = ((const id_map_t *)b)->id;
    return x < y ? -1 : x > y;
}

/* k of the number @p v of an eventId, UINT64_MAX when it is no original's. */
static uint64_t original_of(uint64_t v)
{
    if (!id_map || v == UINT64_MAX)
        return v;
    id_map_t key = {v, 0}, *hit = bsearch(&key, id_map, EVENTS, sizeof(*id_map), cmp_id_map);
    return hit ? hit->k : UINT64_MAX;
}

/* Read [from[p], to[p]) of every partition and decode each message. @return the count. */
static size_t read_back(int np, const int64_t *from, const int64_t *to, seen_t *out, size_t cap,
                        const char *prefix, int64_t t0, int64_t t1)
{
    char err[256], dir[PATH_MAX], why_buf[256];
    const char *src = getenv("BP_SOURCE_DIR") ? getenv("BP_SOURCE_DIR") : BP_SOURCE_DIR;
    bp_codec_t *codec = NULL;
    size_t n = 0;
    int64_t remaining = 0;

    snprintf(dir, sizeof(dir), "%.*s/schemas/avro", PATH_MAX - 16, src);
    assert_int_equal(bp_codec_new(dir, &codec, why_buf, sizeof(why_buf)), BP_OK);
    int32_t sid = bp_codec_subject_id(codec, SUBJECT);
    assert_true(sid >= 0);

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", "test-loadgen-reader", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++) {
        if (to[p] > from[p])
            rd_kafka_topic_partition_list_add(l, TOPIC, p)->offset = from[p];
        remaining += to[p] - from[p];
    }
    assert_int_equal(rd_kafka_assign(rk, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);

    int64_t deadline = it_now_ms() + 20000;
    while (remaining > 0 && it_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err) {
            fprintf(stderr, "consume: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->offset >= to[m->partition]) {
            rd_kafka_message_destroy(m);
            continue;
        }
        assert_true(n < cap);
        bp_xp_event_t ev;
        const char *why = NULL;
        if (bp_codec_decode_xp(codec, sid, m->payload, m->len, &ev, &why) != BP_OK)
            fail_msg("message at %d/%" PRId64 " does not decode: %s", (int)m->partition, m->offset,
                     why);
        if (bp_xp_event_validate(&ev, &why) != BP_OK)
            fail_msg("event %s is invalid: %s", ev.event_id, why);
        assert_non_null(m->key);
        assert_int_equal(m->key_len, strlen(ev.player_id));
        assert_memory_equal(m->key, ev.player_id, m->key_len);
        assert_string_equal(ev.reason, "match_complete");
        assert_string_equal(ev.season_id, "");
        assert_true(ev.occurred_at_ms >= t0 - 1000 && ev.occurred_at_ms <= t1 + 1000);
        seen_t *s = &out[n++];
        s->k = original_of(id_number(ev.event_id, prefix, "-e"));
        s->player = id_number(ev.player_id, prefix, "-p");
        if (s->k == UINT64_MAX || s->player == UINT64_MAX)
            fail_msg("ids %s / %s do not follow prefix %s", ev.event_id, ev.player_id, prefix);
        s->amount = ev.amount;
        s->value = malloc(m->len);
        assert_non_null(s->value);
        memcpy(s->value, m->payload, m->len);
        s->len = m->len;
        remaining--;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    bp_codec_destroy(codec);
    if (remaining > 0)
        fail_msg("%" PRId64 " messages not read back within 20 s", remaining);
    return n;
}

/* 20,000 messages with 5% duplicates as fast as possible, then everything checked; with
 * @p random_ids, each eventId must be mix64 of its original's number (unique, unordered). */
static void produce_and_read_back(bool random_ids)
{
    if (!bootstrap)
        skip();
    int64_t before[MAX_PARTITIONS], after[MAX_PARTITIONS];
    int np = watermarks(before);
    char prefix[48], events[16], dup[16], out[4096];
    snprintf(prefix, sizeof(prefix), "lgt%d-%" PRId64, (int)getpid(), it_now_ms());
    snprintf(events, sizeof(events), "%d", EVENTS);
    snprintf(dup, sizeof(dup), "%d", DUP_PCT);
    const char *args[] = {"--bootstrap", bootstrap,   "--topic",
                          TOPIC,         "--subject", SUBJECT,
                          "--events",    events,      "--dup-pct",
                          dup,           "--players", "5000",
                          "--prefix",    prefix,      "--seed",
                          "42",          "--rate",    "0",
                          "--quiet",     "--json",    random_ids ? "--random-ids" : NULL,
                          NULL};
    if (random_ids) {
        id_map = calloc(EVENTS, sizeof(*id_map));
        assert_non_null(id_map);
        for (uint64_t k = 0; k < EVENTS; k++)
            id_map[k] = (id_map_t){mix64(k), k};
        qsort(id_map, EVENTS, sizeof(*id_map), cmp_id_map);
    }
    int64_t t0 = it_now_ms();
    assert_int_equal(run_loadgen(args, out, sizeof(out)), 0);
    int64_t t1 = it_now_ms();
    json_t *j = parse_json(out);
    assert_non_null(j);
    assert_int_equal(jint(j, "produced"), EVENTS);
    assert_int_equal(jint(j, "delivered"), EVENTS);
    assert_int_equal(jint(j, "failed"), 0);
    assert_int_equal(jint(j, "undelivered"), 0);

    /* the topic grew by exactly what was produced */
    assert_int_equal(watermarks(after), np);
    int64_t grown = 0;
    for (int p = 0; p < np; p++)
        grown += after[p] - before[p];
    assert_int_equal(grown, EVENTS);

    seen_t *seen = calloc(EVENTS, sizeof(*seen));
    uint64_t *players = calloc(EVENTS, sizeof(*players));
    assert_non_null(seen);
    assert_non_null(players);
    size_t n = read_back(np, before, after, seen, EVENTS, prefix, t0, t1);
    assert_int_equal(n, EVENTS);

    /* originals are 0..unique-1, each duplicate is byte-identical to its original */
    qsort(seen, n, sizeof(*seen), cmp_seen);
    uint64_t unique = 0, dups = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && seen[i].k == seen[i - 1].k) {
            assert_int_equal(seen[i].len, seen[i - 1].len);
            assert_memory_equal(seen[i].value, seen[i - 1].value, seen[i].len);
            dups++;
            continue;
        }
        assert_int_equal(seen[i].k, unique);
        players[unique] = seen[i].player;
        sum += (uint64_t)seen[i].amount;
        unique++;
    }
    qsort(players, unique, sizeof(*players), cmp_u64);
    uint64_t distinct = 0;
    for (size_t i = 0; i < unique; i++)
        distinct += i == 0 || players[i] != players[i - 1];

    /* ... and the oracle says exactly that */
    assert_int_equal(jint(j, "uniqueEvents"), unique);
    assert_int_equal(jint(j, "duplicates"), dups);
    assert_int_equal(jint(j, "amountSum"), sum);
    assert_int_equal(jint(j, "distinctPlayers"), distinct);
    assert_true(dups >= EVENTS * DUP_PCT / 100 * 8 / 10 &&
                dups <= EVENTS * DUP_PCT / 100 * 12 / 10);
    assert_true(distinct <= 5000);
    for (size_t i = 0; i < n; i++)
        free(seen[i].value);
    free(seen);
    free(players);
    free(id_map);
    id_map = NULL;
    json_decref(j);
}

static void test_produce_and_read_back(void **state)
{
    (void)state;
    produce_and_read_back(false);
}

static void test_random_ids(void **state)
{
    (void)state;
    produce_and_read_back(true);
}

/* --rate holds the pace: 3,000 messages at 6,000/s take about half a second. */
static void test_rate(void **state)
{
    (void)state;
    if (!bootstrap)
        skip();
    char out[4096];
    const char *args[] = {"--bootstrap", bootstrap,  "--topic", TOPIC,    "--subject",
                          SUBJECT,       "--events", "3000",    "--rate", "6000",
                          "--quiet",     "--json",   NULL};
    assert_int_equal(run_loadgen(args, out, sizeof(out)), 0);
    json_t *j = parse_json(out);
    assert_non_null(j);
    double s = json_number_value(json_object_get(j, "produceSeconds"));
    assert_true(s >= 0.45 && s < 3.0);
    assert_int_equal(jint(j, "delivered"), 3000);
    json_decref(j);
}

/* The same prefix and seed give the same events; another seed other ones. */
static void test_deterministic(void **state)
{
    (void)state;
    char a[4096], b[4096], c[4096];
    const char *args1[] = {"--dry-run", "--events", "5000",    "--prefix", "det",
                           "--seed",    "7",        "--quiet", "--json",   NULL};
    const char *args2[] = {"--dry-run", "--events", "5000",    "--prefix", "det",
                           "--seed",    "8",        "--quiet", "--json",   NULL};
    assert_int_equal(run_loadgen(args1, a, sizeof(a)), 0);
    assert_int_equal(run_loadgen(args1, b, sizeof(b)), 0);
    assert_int_equal(run_loadgen(args2, c, sizeof(c)), 0);
    json_t *ja = parse_json(a), *jb = parse_json(b), *jc = parse_json(c);
    assert_non_null(ja);
    assert_non_null(jb);
    assert_non_null(jc);
    static const char *const keys[] = {"uniqueEvents", "duplicates", "amountSum",
                                       "distinctPlayers"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_int_equal(jint(ja, keys[i]), jint(jb, keys[i]));
    assert_int_not_equal(jint(ja, "amountSum"), jint(jc, "amountSum"));
    json_decref(ja);
    json_decref(jb);
    json_decref(jc);
}

/* Undeliverable messages make the exit status 1; a bad option 2. */
static void test_failures_are_reported(void **state)
{
    (void)state;
    char out[4096];
    const char *unreachable[] = {
        "--bootstrap", "127.0.0.1:1", "--events", "10",     "-X", "message.timeout.ms=1000",
        "-X",          "log_level=0", "--quiet",  "--json", NULL};
    assert_int_equal(run_loadgen(unreachable, out, sizeof(out)), 1);
    json_t *j = parse_json(out);
    assert_non_null(j);
    assert_int_equal(jint(j, "failed") + jint(j, "undelivered"), 10);
    assert_int_equal(jint(j, "delivered"), 0);
    json_decref(j);

    const char *bad[] = {"--dup-pct", "100", NULL};
    assert_int_equal(run_loadgen(bad, out, sizeof(out)), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_produce_and_read_back),
        cmocka_unit_test(test_random_ids),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_failures_are_reported),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
