/** @file Messages lost to retention are loud: the worker's stored offset of a partition falls
 *  below the log start (the devbroker keeps only the newest 5 MB of a partition), the
 *  consumer resumes at the log start, and the worker logs an ERROR naming the partition, the
 *  stored offset, where it resumed and how many messages were skipped, and counts them in
 *  bp_messages_skipped_total{topic}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "producers/codec.h"
#include "tests/integration/support.h"

#define HTTP_PORT 23290
#define FIRST 5                /* events applied before the worker stops */
#define FILLER 700             /* events of ~10 kB while it is stopped: 7 MB, past the 5 MB kept */
#define LAST 3                 /* events after them: still in the log, applied after the reset */
#define PAD 10000              /* metadata bytes of a filler event */
#define KEY "offset-reset-key" /* one key: every event in one partition */

static it_env_t env;
static pid_t daemon_pid = -1;
static char group[64], prefix[32], topic[64], schemas[256];
static char body[1 << 20];

/* A schemas folder like the source's, whose subjects.json also names the test's own XP
 * topic: rolling a shared topic's log would delete other tests' messages. */
static bool write_schemas(void)
{
    char cmd[2048];
    snprintf(schemas, sizeof(schemas), "%s/offset-reset-schemas-%d", getcwd(cmd, 1024),
             (int)getpid());
    snprintf(cmd, sizeof(cmd),
             "rm -rf '%s' && mkdir -p '%s/avro' && for f in '%s'/schemas/*; do"
             " [ \"$(basename \"$f\")\" = avro ] || ln -s \"$f\" '%s'/; done &&"
             " ln -s '%s'/schemas/avro/*.avsc '%s/avro/'",
             schemas, schemas, env.source_dir, schemas, env.source_dir, schemas);
    if (system(cmd) != 0)
        return false;
    snprintf(cmd, sizeof(cmd), "%s/avro/subjects.json", schemas);
    FILE *f = fopen(cmd, "w");
    if (!f)
        return false;
    fprintf(f,
            "{\"battlepass.xp-events-value\": {\"id\": 1, \"schema\": \"xp_event.avsc\"},\n"
            " \"battlepass.premium-events-value\": {\"id\": 2, \"schema\": "
            "\"premium_granted.avsc\"},\n"
            " \"battlepass.level-ups-value\": {\"id\": 3, \"schema\": \"level_up.avsc\"},\n"
            " \"battlepass.reward-grants-value\": {\"id\": 4, \"schema\": "
            "\"reward_grant.avsc\"},\n"
            " \"%s-value\": {\"id\": 1, \"schema\": \"xp_event.avsc\"}}\n",
            topic);
    return fclose(f) == 0;
}

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "offset_reset", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    snprintf(group, sizeof(group), "it-offset-reset-%d", (int)getpid());
    snprintf(prefix, sizeof(prefix), "or%d-", (int)getpid());
    snprintf(topic, sizeof(topic), "it-offset-reset-%d", (int)getpid());
    if (!write_schemas() ||
        !it_season_write(&env, "offset-reset-season.json", "or", -2000, 30LL * 24 * 3600 * 1000,
                         "{\"autoClaim\":false,\"xpBoosts\":[],\"dailyXpCap\":null}") ||
        !it_db_prepare(&env, NULL) || !it_season_import(&env, "offset-reset-season.json", false))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (!env.bootstrap)
        return 0;
    int rc = it_daemon_down(&daemon_pid) ? 0 : -1;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", schemas);
    if (schemas[0] && system(cmd) != 0)
        rc = -1;
    return rc;
}

/* Produce @p n XP events of player @p who (ids <prefix><who>-<i>) to the test's topic, each
 * with @p pad bytes of metadata. */
static void produce(const char *who, int n, size_t pad)
{
    char why[256], dir[300];
    bp_codec_t *codec = NULL;
    snprintf(dir, sizeof(dir), "%s/avro", schemas);
    assert_int_equal(bp_codec_new(dir, &codec, why, sizeof(why)), BP_OK);
    int32_t id = bp_codec_subject_id(codec, "battlepass.xp-events-value");
    char *filler = malloc(pad + 1);
    assert_non_null(filler);
    memset(filler, 'x', pad);
    filler[pad] = '\0';
    const char *k[1] = {"pad"}, *v[1] = {filler};
    it_producer_t *p = it_producer_new(&env);
    assert_non_null(p);
    for (int i = 0; i < n; i++) {
        bp_xp_event_t ev;
        memset(&ev, 0, sizeof(ev));
        snprintf(ev.event_id, sizeof(ev.event_id), "%s%s-%d", prefix, who, i);
        snprintf(ev.player_id, sizeof(ev.player_id), "%s%s", prefix, who);
        snprintf(ev.reason, sizeof(ev.reason), "match_complete");
        ev.amount = 1;
        ev.occurred_at_ms = it_now_ms();
        void *buf = NULL;
        size_t len = 0;
        assert_int_equal(bp_codec_encode_xp(codec, id, &ev, k, v, pad ? 1 : 0, &buf, &len), BP_OK);
        it_produce_raw(p, topic, KEY, buf, len);
        free(buf);
    }
    it_producer_destroy(p); /* flushes */
    free(filler);
    bp_codec_destroy(codec);
}

/* Events of player @p who applied. */
static long long applied(const char *who)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM processed_events WHERE player_id = '%s%s'",
             prefix, who);
    return it_sql_int(&env, sql);
}

static bool wait_applied(const char *who, long long want, int timeout_ms)
{
    int64_t t0 = it_now_ms();
    while (applied(who) != want && it_now_ms() - t0 < timeout_ms)
        it_sleep_ms(100);
    return applied(who) == want;
}

/* The partition of the test's topic holding the events, and its watermarks, from the
 * broker. @return the partition, or -1. */
static int32_t partition_watermarks(int64_t *lo, int64_t *hi)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", env.bootstrap, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    int32_t found = -1;
    for (int32_t part = 0; part < 64 && found < 0; part++) {
        int64_t l = -1, h = -1;
        if (rd_kafka_query_watermark_offsets(rk, topic, part, &l, &h, 5000) !=
            RD_KAFKA_RESP_ERR_NO_ERROR)
            break; /* no such partition: past the last */
        if (h > 0) {
            found = part;
            *lo = l;
            *hi = h;
        }
    }
    rd_kafka_destroy(rk);
    return found;
}

static long long scrape_sample(const char *series)
{
    char want[256];
    if (it_http_get(HTTP_PORT, "/metrics", NULL, body, sizeof(body)) != 200)
        return -1;
    snprintf(want, sizeof(want), "\n%s ", series);
    const char *at = strstr(body, want);
    return at ? atoll(at + strlen(want)) : -1;
}

/* @return the last log line of @p path holding @p needle (static buffer), or NULL. */
static const char *log_line(const char *path, const char *needle)
{
    static char line[4096], found[4096];
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    bool any = false;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle)) {
            snprintf(found, sizeof(found), "%s", line);
            any = true;
        }
    fclose(f);
    return any ? found : NULL;
}

static void test_loss_is_loud(void **state)
{
    (void)state;
    if (!env.bootstrap)
        skip();
    char topic_env[128], schemas_env[300], series[160];
    snprintf(topic_env, sizeof(topic_env), "BP_TOPIC_XP=%s", topic);
    snprintf(schemas_env, sizeof(schemas_env), "BP_SCHEMAS_DIR=%s", schemas);
    const char *extra[] = {topic_env, schemas_env, NULL};
    snprintf(series, sizeof(series), "bp_messages_skipped_total{topic=\"%s\"}", topic);
    unlink("offset-reset-daemon.log");

    /* The worker applies the first events and stores the partition's next offset. */
    produce("a", FIRST, 0);
    int64_t lo = -1, hi = -1;
    int32_t part = partition_watermarks(&lo, &hi);
    assert_true(part >= 0);
    assert_int_equal(lo, 0);
    assert_int_equal(hi, FIRST);
    daemon_pid = it_daemon_up(&env, group, extra, "offset-reset-daemon.log");
    assert_true(daemon_pid > 0);
    assert_true(wait_applied("a", FIRST, 60000));
    assert_int_equal(scrape_sample(series), 0); /* the series is there from the start */
    assert_true(it_daemon_down(&daemon_pid));
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT next_offset FROM partition_offsets WHERE topic = '%s' AND partition = %d",
             topic, (int)part);
    assert_int_equal(it_sql_int(&env, sql), FIRST);

    /* While it is stopped, the partition's log rolls past the stored offset. */
    produce("filler", FILLER, PAD);
    produce("c", LAST, 0);
    assert_int_equal(partition_watermarks(&lo, &hi), part);
    printf("partition %d: log start %lld, end %lld; stored offset %d\n", (int)part, (long long)lo,
           (long long)hi, FIRST);
    assert_int_equal(hi, FIRST + FILLER + LAST);
    assert_true(lo > FIRST);
    assert_true(lo < FIRST + FILLER);

    /* Back: it resumes at the log start, applies what is left, and says what was lost. */
    daemon_pid = it_daemon_up(&env, group, extra, "offset-reset-daemon.log");
    assert_true(daemon_pid > 0);
    assert_true(wait_applied("c", LAST, 60000));
    assert_int_equal(applied("filler"), FIRST + FILLER - lo);
    assert_int_equal(scrape_sample(series), lo - FIRST);
    const char *line = log_line("offset-reset-daemon.log", "messages lost");
    assert_non_null(line);
    printf("%s", line);
    char want[256];
    snprintf(want, sizeof(want),
             "\"topic\":\"%s\",\"partition\":%d,\"storedOffset\":%d,\"expectedOffset\":%d,"
             "\"resumedOffset\":%lld,\"logStartOffset\":%lld,\"skipped\":%lld",
             topic, (int)part, FIRST, FIRST, (long long)lo, (long long)lo, (long long)(lo - FIRST));
    assert_non_null(strstr(line, want));
    assert_non_null(strstr(line, "\"level\":\"error\""));
    /* Once: no other partition, no second line. */
    snprintf(sql, sizeof(sql), "grep -c 'messages lost' offset-reset-daemon.log | grep -qx 1");
    assert_int_equal(system(sql), 0);
    assert_true(it_daemon_down(&daemon_pid));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_is_loud),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
