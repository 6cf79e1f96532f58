/** @file Exactly-once under crashes: the worker is killed with SIGKILL again and again in the
 *  middle of a stream with duplicates, restarted, and must end with every player's total
 *  equal to the sum of its unique events and every LevelUp id present exactly as expected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/level.h"
#include "tests/integration/support.h"

#define PLAYERS 1000
#define EVENTS_PER_ROUND 8000
#define KILLS 4
#define HTTP_PORT 23182

static it_env_t env;
static bp_season_t season;
static char prefix[32];
static int64_t totals[PLAYERS];
static pid_t pid = -1; /* the running worker, killed in teardown if a check failed */

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "crash", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/schemas/seasons/sample-season.json", env.source_dir);
    if (!it_season_load(path, &season) || !it_db_prepare(&env, path))
        return -1;
    snprintf(prefix, sizeof(prefix), "cr%d-", (int)getpid());
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (pid > 0)
        it_daemon_stop(pid, SIGKILL, 5000);
    bp_season_fini(&season);
    return 0;
}

/* Produce one round of events; every 20th repeats an eventId of the previous round (one
 * that was sent there as an original, never as a repeat itself). */
static size_t produce_round(int round, size_t *dups)
{
    it_producer_t *p = it_producer_new(&env);
    size_t sent = 0;
    for (int i = 0; i < EVENTS_PER_ROUND; i++) {
        bp_xp_event_t ev;
        memset(&ev, 0, sizeof(ev));
        int n = round * EVENTS_PER_ROUND + i;
        bool dup = round > 0 && i % 20 == 0;
        int id = dup ? n - EVENTS_PER_ROUND + 1 : n;
        snprintf(ev.event_id, sizeof(ev.event_id), "%sev-%07d", prefix, id);
        snprintf(ev.player_id, sizeof(ev.player_id), "%spl-%04d", prefix, id % PLAYERS);
        snprintf(ev.reason, sizeof(ev.reason), "match_complete");
        ev.amount = 1 + (int32_t)((id * 2654435761u) % 700);
        ev.occurred_at_ms = it_now_ms();
        it_produce_xp(p, &ev);
        if (dup)
            (*dups)++;
        else
            totals[id % PLAYERS] += ev.amount;
        sent++;
    }
    it_producer_destroy(p);
    return sent;
}

static void test_sigkill_restarts(void **state)
{
    (void)state;
    if (!env.bootstrap)
        skip();
    char group[64];
    snprintf(group, sizeof(group), "it-crash-%d", (int)getpid());
    size_t sent = 0, dups = 0, unique = 0;
    srand((unsigned)getpid());

    char count_sql[256];
    snprintf(count_sql, sizeof(count_sql),
             "SELECT count(*) FROM processed_events WHERE event_id LIKE '%s%%'", prefix);
    for (int k = 0; k <= KILLS; k++) {
        /* Send a round, start the worker, and once it is applying, kill it mid-stream. */
        sent += produce_round(k, &dups);
        long long before = it_sql_int(&env, count_sql);
        pid = it_daemon_start(&env, group, NULL, "crash-daemon.log");
        assert_true(pid > 0);
        if (k == KILLS)
            break;
        long long now = before;
        for (int waited = 0; now == before && waited < 60000; waited += 20) {
            usleep(20000);
            now = it_sql_int(&env, count_sql);
        }
        int ms = rand() % 400;
        usleep((useconds_t)ms * 1000);
        int status = it_daemon_stop(pid, SIGKILL, 5000);
        pid = -1;
        assert_int_equal(status, 128 + SIGKILL);
        printf("kill %d, %d ms after it began applying: %lld -> %lld events applied\n", k + 1, ms,
               before, it_sql_int(&env, count_sql));
    }
    unique = sent - dups;

    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM processed_events WHERE event_id LIKE '%s%%'",
             prefix);
    long long done = 0;
    for (int waited = 0; waited < 180000; waited += 200) {
        done = it_sql_int(&env, sql);
        if (done == (long long)unique)
            break;
        usleep(200000);
    }
    printf("sent %zu events (%zu duplicates) across %d kills; %lld unique applied (want %zu)\n",
           sent, dups, KILLS, done, unique);
    assert_int_equal(done, (long long)unique);

    /* Nothing lost, nothing twice: every total is the sum of its unique events. */
    long long mismatches = 0;
    for (int pl = 0; pl < PLAYERS; pl++) {
        snprintf(sql, sizeof(sql),
                 "SELECT COALESCE(sum(total_xp), 0) FROM player_progress WHERE player_id = "
                 "'%spl-%04d'",
                 prefix, pl);
        if (it_sql_int(&env, sql) != totals[pl])
            mismatches++;
    }
    printf("players with a wrong total: %lld\n", mismatches);
    assert_int_equal(mismatches, 0);

    /* Every LevelUp row was written once (the outbox may still hold undelivered ones). */
    long long want_levelups = 0;
    for (int pl = 0; pl < PLAYERS; pl++)
        want_levelups += bp_level_for_xp(&season, totals[pl]).level - 1;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM player_progress WHERE player_id LIKE '%s%%'",
             prefix);
    assert_int_equal(it_sql_int(&env, sql), PLAYERS);
    snprintf(sql, sizeof(sql),
             "SELECT COALESCE(sum(level - 1), 0) FROM player_progress WHERE player_id LIKE '%s%%'",
             prefix);
    assert_int_equal(it_sql_int(&env, sql), want_levelups);

    /* ... and each reached the topic (at least once; ids are what count). */
    char *names[PLAYERS];
    for (int pl = 0; pl < PLAYERS; pl++) {
        names[pl] = malloc(64);
        snprintf(names[pl], 64, "%spl-%04d", prefix, pl);
    }
    size_t n_want, unexpected;
    char **want = it_levelups_expected(&season, season.id, names, totals, PLAYERS, &n_want);
    size_t seen = it_levelups_wait(&env, prefix, want, n_want, 60000, &unexpected);
    printf("level-ups: %zu expected, %zu distinct on the topic, %zu unexpected\n", n_want, seen,
           unexpected);
    assert_int_equal(unexpected, 0);
    assert_int_equal(seen, n_want);
    it_strv_free(want, n_want);
    for (int pl = 0; pl < PLAYERS; pl++)
        free(names[pl]);

    int status = it_daemon_stop(pid, SIGTERM, 30000);
    pid = -1;
    assert_int_equal(status, 0);
    /* After a clean stop the outbox is drained. */
    assert_int_equal(it_sql_int(&env, "SELECT count(*) FROM outbox"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_restarts),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
