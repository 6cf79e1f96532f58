/** @file The fault suite: streams XP events with duplicates and malformed messages through a
 *  group of workers on the real PostgreSQL, Redis and devbroker while injecting crashes,
 *  outages and broker faults, then checks the outcome against an oracle (docs/faults.md). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "core/level.h"
#include "core/reward.h"
#include "producers/codec.h"
#include "tests/integration/support.h"

enum {
    MAX_WORKERS = 8,
    HTTP_PORT_BASE = 23200, /* workers listen on 23200.. */
};

/* ---- options ---------------------------------------------------------------------- */

typedef struct {
    int seconds;         /* how long faults are injected while events stream */
    int players;         /* distinct players */
    int rate;            /* events per second (originals, duplicates and malformed) */
    int dup_pct;         /* share of messages that repeat an earlier event, percent */
    int malformed_every; /* one malformed message per this many; 0 = none */
    int workers;         /* worker processes in the consumer group */
    int fault_ms;        /* mean time between two faults */
    unsigned seed;
} options_t;

static const struct {
    const char *flag;
    int lo, hi;
    size_t offset;
    const char *help;
} option_table[] = {
    {"--seconds", 1, 86400, offsetof(options_t, seconds), "fault phase length (s)"},
    {"--players", 1, 1000000, offsetof(options_t, players), "distinct players"},
    {"--rate", 1, 100000, offsetof(options_t, rate), "messages produced per second"},
    {"--dup-pct", 0, 90, offsetof(options_t, dup_pct), "percent of messages that are duplicates"},
    {"--malformed-every", 0, 1000000, offsetof(options_t, malformed_every),
     "one malformed message per N (0: none)"},
    {"--workers", 1, MAX_WORKERS, offsetof(options_t, workers), "worker processes"},
    {"--fault-ms", 100, 600000, offsetof(options_t, fault_ms), "mean time between faults (ms)"},
    {"--seed", 0, 2147483647, offsetof(options_t, seed), "random seed (default: pid)"},
};
enum { N_OPTIONS = sizeof(option_table) / sizeof(option_table[0]) };

static void usage(FILE *out)
{
    fprintf(out, "usage: fault_suite [options]\n\n"
                 "Needs the services of scripts/services (BP_* environment, as scripts/test\n"
                 "exports it) and BP_BATTLEPASSD. Prints what it injected and what it found;\n"
                 "exit status 0 only when every check holds.\n\noptions:\n");
    for (size_t i = 0; i < N_OPTIONS; i++)
        fprintf(out, "  %-18s N  %s (%d..%d)\n", option_table[i].flag, option_table[i].help,
                option_table[i].lo, option_table[i].hi);
}

/* @return 0, 1 after --help, -1 on a usage error (printed). */
static int parse_options(int argc, char **argv, options_t *o)
{
    *o = (options_t){.seconds = 40,
                     .players = 2000,
                     .rate = 1500,
                     .dup_pct = 5,
                     .malformed_every = 400,
                     .workers = 3,
                     .fault_ms = 2500,
                     .seed = (unsigned)getpid()};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 1;
        }
        size_t k = 0;
        while (k < N_OPTIONS && strcmp(argv[i], option_table[k].flag) != 0)
            k++;
        char *end = NULL;
        long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
        if (k == N_OPTIONS || i + 1 >= argc || *end != '\0' || v < option_table[k].lo ||
            v > option_table[k].hi) {
            fprintf(stderr, "fault_suite: bad option '%s' (see --help)\n", argv[i]);
            return -1;
        }
        *(int *)((char *)o + option_table[k].offset) = (int)v;
        i++;
    }
    return 0;
}

/* ---- shared state ----------------------------------------------------------------- */

static options_t opt;
static it_env_t env;
static bp_season_t season;
static char prefix[32];
static char group[64];

/* The oracle, written by the producer thread only, read after it has stopped. */
static int64_t *totals;     /* per player: sum of the amounts of unique events */
static int64_t *occurred;   /* per event index: occurredAt, to repeat an event exactly */
static size_t n_events_cap; /* capacity of occurred */
static size_t n_unique;     /* events 0..n_unique-1 exist */
static size_t n_duplicates; /* repeats of an earlier event */
static size_t n_malformed;  /* malformed messages, keys <prefix>bad-<n> */
static atomic_bool producing;
static atomic_ulong delivery_errors;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Event i, always the same: player, amount and id derive from i, occurredAt is recorded. */
static void event_of(size_t i, bp_xp_event_t *ev)
{
    memset(ev, 0, sizeof(*ev));
    snprintf(ev->event_id, sizeof(ev->event_id), "%se%08zu", prefix, i);
    snprintf(ev->player_id, sizeof(ev->player_id), "%sp%06zu", prefix,
             (size_t)((i * 2654435761u) % (unsigned)opt.players));
    snprintf(ev->reason, sizeof(ev->reason), "match_complete");
    ev->amount = 1 + (int32_t)((i * 40503u) % 700);
    ev->occurred_at_ms = occurred[i];
}

static size_t player_of(size_t i)
{
    return (size_t)((i * 2654435761u) % (unsigned)opt.players);
}

/* ---- the producer thread ---------------------------------------------------------- */

typedef struct {
    rd_kafka_t *rk;
    bp_codec_t *codec;
    int32_t xp_id;
    unsigned rnd;
} producer_t;

/* A message whose delivery failed is produced again: the opaque is its event index + 1,
 * or -(malformed number + 1). Repeating an event is harmless (dedupe by eventId). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    atomic_fetch_add(&delivery_errors, 1);
    fprintf(stderr, "fault_suite: delivery failed (%s); produced again\n",
            rd_kafka_err2str(m->err));
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(rd_kafka_topic_name(m->rkt)), RD_KAFKA_V_KEY(m->key, m->key_len),
        RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(m->_private), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "fault_suite: cannot produce again: %s\n", rd_kafka_err2str(e));
        abort();
    }
}

static void produce(producer_t *p, const char *key, const void *buf, size_t len, intptr_t tag)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC("battlepass.xp-events"), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE((void *)tag), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "fault_suite: produce: %s\n", rd_kafka_err2str(e));
            abort();
        }
        rd_kafka_poll(p->rk, 20);
    }
}

static void produce_event(producer_t *p, size_t i)
{
    bp_xp_event_t ev;
    void *buf = NULL;
    size_t len = 0;
    event_of(i, &ev);
    if (bp_codec_encode_xp(p->codec, p->xp_id, &ev, NULL, NULL, 0, &buf, &len) != BP_OK)
        abort();
    produce(p, ev.player_id, buf, len, (intptr_t)i + 1);
    free(buf);
}

/* Kinds of malformed message, in turn: each must reach the DLQ with a reason. */
static void produce_malformed(producer_t *p, size_t n)
{
    char key[64];
    unsigned char junk[48];
    void *buf = NULL;
    size_t len = 0;
    bp_xp_event_t ev;

    snprintf(key, sizeof(key), "%sbad-%zu", prefix, n);
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "%sbad-%zu", prefix, n);
    snprintf(ev.player_id, sizeof(ev.player_id), "%s", key);
    snprintf(ev.reason, sizeof(ev.reason), "match_complete");
    ev.occurred_at_ms = it_now_ms();
    switch (n % 4) {
    case 0: /* not Avro at all */
        for (size_t k = 0; k < sizeof(junk); k++)
            junk[k] = (unsigned char)rand_r(&p->rnd);
        junk[0] = 0xff;
        produce(p, key, junk, sizeof(junk), -(intptr_t)n - 1);
        return;
    case 1: /* a valid event cut short */
    case 2: /* a valid frame holding an invalid event (negative amount) */
        ev.amount = n % 4 == 1 ? 10 : -5;
        if (bp_codec_encode_xp(p->codec, p->xp_id, &ev, NULL, NULL, 0, &buf, &len) != BP_OK)
            abort();
        produce(p, key, buf, n % 4 == 1 ? len / 2 : len, -(intptr_t)n - 1);
        free(buf);
        return;
    default: /* an unknown schema id */
        ev.amount = 10;
        if (bp_codec_encode_xp(p->codec, p->xp_id, &ev, NULL, NULL, 0, &buf, &len) != BP_OK)
            abort();
        ((unsigned char *)buf)[1] = 0x7f;
        produce(p, key, buf, len, -(intptr_t)n - 1);
        free(buf);
        return;
    }
}

/* One message: a duplicate of an earlier event, a malformed one, or a new event. */
static void produce_one(producer_t *p, size_t seq)
{
    if (opt.malformed_every > 0 &&
        seq % (size_t)opt.malformed_every == (size_t)opt.malformed_every - 1) {
        produce_malformed(p, n_malformed++);
        return;
    }
    if (n_unique > 0 && (int)(rand_r(&p->rnd) % 100) < opt.dup_pct) {
        produce_event(p, (size_t)rand_r(&p->rnd) % n_unique);
        n_duplicates++;
        return;
    }
    if (n_unique == n_events_cap) {
        n_events_cap *= 2;
        occurred = realloc(occurred, n_events_cap * sizeof(*occurred));
        if (occurred == NULL)
            abort();
    }
    occurred[n_unique] = it_now_ms();
    produce_event(p, n_unique);
    totals[player_of(n_unique)] += 1 + (int64_t)((n_unique * 40503u) % 700);
    n_unique++;
}

static void *producer_main(void *arg)
{
    producer_t *p = arg;
    int64_t t0 = mono_ms();
    size_t seq = 0;
    while (atomic_load(&producing)) {
        size_t due = (size_t)((mono_ms() - t0) * opt.rate / 1000);
        for (int burst = 0; seq < due && burst < 2000; burst++)
            produce_one(p, seq++);
        rd_kafka_poll(p->rk, 5);
    }
    return NULL;
}

static producer_t *producer_new(void)
{
    char err[256], dir[1024];
    producer_t *p = calloc(1, sizeof(*p));
    snprintf(dir, sizeof(dir), "%s/schemas/avro", env.source_dir);
    if (p == NULL || bp_codec_new(dir, &p->codec, err, sizeof(err)) != BP_OK) {
        fprintf(stderr, "fault_suite: codec: %s\n", err);
        abort();
    }
    p->xp_id = bp_codec_subject_id(p->codec, "battlepass.xp-events-value");
    p->rnd = opt.seed ^ 0x9e3779b9u;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Idempotent, never giving up on a message: every event is eventually delivered,
     * whatever the broker faults. Batches of 50 ms: the devbroker walks a partition's
     * producer batches on every fetch, so fewer, larger ones keep consumers fast. */
    const char *kv[][2] = {{"bootstrap.servers", env.bootstrap},
                           {"enable.idempotence", "true"},
                           {"message.timeout.ms", "0"},
                           {"linger.ms", "50"}};
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "fault_suite: producer: %s\n", err);
            abort();
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (p->rk == NULL) {
        fprintf(stderr, "fault_suite: producer: %s\n", err);
        abort();
    }
    return p;
}

/* Flushes (waiting as long as it takes, reporting every 10 s) and frees. */
static void producer_destroy(producer_t *p)
{
    while (rd_kafka_flush(p->rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        fprintf(stderr, "fault_suite: %d messages still to deliver\n", rd_kafka_outq_len(p->rk));
    rd_kafka_destroy(p->rk);
    bp_codec_destroy(p->codec);
    free(p);
}

/* ---- the workers ------------------------------------------------------------------ */

typedef struct {
    pid_t pid;
    int64_t restart_at; /* mono ms; 0: not scheduled */
    it_env_t env;       /* env with this slot's HTTP port */
    char log[64];
} worker_t;

static worker_t workers[MAX_WORKERS];
static unsigned long n_starts, n_unexpected_exits;

static void worker_start(worker_t *w)
{
    w->pid = it_daemon_start(&w->env, group, NULL, w->log);
    w->restart_at = 0;
    n_starts++;
    if (w->pid < 0) {
        fprintf(stderr, "fault_suite: cannot start a worker\n");
        abort();
    }
}

/* Reaps workers that exited on their own and starts the ones whose time has come. */
static void supervise(void)
{
    for (int i = 0; i < opt.workers; i++) {
        worker_t *w = &workers[i];
        int st;
        if (w->pid > 0 && waitpid(w->pid, &st, WNOHANG) == w->pid) {
            n_unexpected_exits++;
            fprintf(stderr, "fault_suite: worker %d exited by itself (%s %d), see %s\n", i,
                    WIFEXITED(st) ? "status" : "signal",
                    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), w->log);
            w->pid = -1;
            w->restart_at = mono_ms() + 1000;
        }
        if (w->pid <= 0 && w->restart_at != 0 && mono_ms() >= w->restart_at)
            worker_start(w);
    }
}

/* ---- the faults ------------------------------------------------------------------- */

static unsigned rnd_state;

static int rnd(int n)
{
    return (int)(rand_r(&rnd_state) % (unsigned)n);
}

/* Injects one fault through scripts/services (it_fault); a fault that cannot be injected
 * ends the run: the suite would otherwise report on faults that never happened. */
static void fault_cmd(const char *what)
{
    if (!it_fault(what))
        exit(1);
}

static worker_t *live_worker(void)
{
    int start = rnd(opt.workers);
    for (int k = 0; k < opt.workers; k++) {
        worker_t *w = &workers[(start + k) % opt.workers];
        if (w->pid > 0)
            return w;
    }
    return NULL;
}

static void worker_kill(void)
{
    worker_t *w = live_worker();
    if (w == NULL)
        return;
    it_daemon_stop(w->pid, SIGKILL, 5000);
    w->pid = -1;
    w->restart_at = mono_ms() + rnd(2000);
}

/* A graceful leave (SIGTERM), and a join some seconds later: two rebalances. */
static void worker_leave_join(void)
{
    worker_t *w = live_worker();
    if (w == NULL)
        return;
    int st = it_daemon_stop(w->pid, SIGTERM, 30000);
    if (st != 0)
        fprintf(stderr, "fault_suite: worker stopped with status %d on SIGTERM\n", st);
    w->pid = -1;
    w->restart_at = mono_ms() + 2000 + rnd(4000);
}

static void pg_crash(void)
{
    fault_cmd("pg-crash");
}

static void pg_outage(void)
{
    fault_cmd("pg-stop");
    it_sleep_ms(2000 + rnd(3000));
    fault_cmd("pg-start");
}

static void redis_flush(void)
{
    fault_cmd("redis-flush");
}

static void redis_restart(void)
{
    fault_cmd("redis-restart");
}

static void redis_outage(void)
{
    fault_cmd("redis-stop");
    it_sleep_ms(1000 + rnd(3000));
    fault_cmd("redis-start");
}

static void broker_outage(void)
{
    char cmd[64];
    int id = 1 + rnd(3);
    snprintf(cmd, sizeof(cmd), "broker broker down %d", id);
    fault_cmd(cmd);
    it_sleep_ms(2000 + rnd(3000));
    snprintf(cmd, sizeof(cmd), "broker broker up %d", id);
    fault_cmd(cmd);
}

/* Request types and errors a real cluster sends them (all retriable). */
static const struct {
    const char *api;
    const char *errors[4];
} request_errors[] = {
    {"Produce",
     {"NOT_LEADER_FOR_PARTITION", "REQUEST_TIMED_OUT", "_TRANSPORT", "NOT_ENOUGH_REPLICAS"}},
    {"Fetch", {"NOT_LEADER_FOR_PARTITION", "_TRANSPORT", "NOT_LEADER_FOR_PARTITION", "_TRANSPORT"}},
    {"OffsetCommit",
     {"NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "REQUEST_TIMED_OUT", "_TRANSPORT"}},
    {"OffsetFetch",
     {"NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "_TRANSPORT", "_TRANSPORT"}},
    {"Heartbeat", {"NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE", "_TRANSPORT", "_TRANSPORT"}},
    {"JoinGroup",
     {"NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE", "COORDINATOR_LOAD_IN_PROGRESS",
      "_TRANSPORT"}},
    {"SyncGroup", {"NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE", "_TRANSPORT", "_TRANSPORT"}},
    {"FindCoordinator",
     {"COORDINATOR_NOT_AVAILABLE", "COORDINATOR_LOAD_IN_PROGRESS", "_TRANSPORT", "_TRANSPORT"}},
    {"Metadata", {"_TRANSPORT", "_TRANSPORT", "_TRANSPORT", "_TRANSPORT"}},
};
enum { N_REQUEST_ERRORS = sizeof(request_errors) / sizeof(request_errors[0]) };

static void broker_request_errors(void)
{
    char cmd[256];
    int k = rnd(N_REQUEST_ERRORS);
    int n = 1 + rnd(4);
    size_t used = (size_t)snprintf(cmd, sizeof(cmd), "broker errors %s", request_errors[k].api);
    for (int i = 0; i < n; i++)
        used += (size_t)snprintf(cmd + used, sizeof(cmd) - used, " %s",
                                 request_errors[k].errors[rnd(4)]);
    fault_cmd(cmd);
}

typedef struct {
    const char *name;
    int weight;
    void (*inject)(void);
    unsigned long count;
} fault_t;

static fault_t faults[] = {
    {"worker SIGKILL + restart", 6, worker_kill, 0},
    {"worker leave + join (SIGTERM)", 2, worker_leave_join, 0},
    {"PostgreSQL restart -m immediate", 2, pg_crash, 0},
    {"PostgreSQL down 2-5 s", 2, pg_outage, 0},
    {"Redis FLUSHALL", 1, redis_flush, 0},
    {"Redis restart (empty)", 1, redis_restart, 0},
    {"Redis down 1-4 s", 1, redis_outage, 0},
    {"broker down 2-5 s", 2, broker_outage, 0},
    {"broker request errors", 3, broker_request_errors, 0},
};
enum { N_FAULTS = sizeof(faults) / sizeof(faults[0]) };

static fault_t *pick_fault(void)
{
    int total = 0;
    for (size_t i = 0; i < N_FAULTS; i++)
        total += faults[i].weight;
    int r = rnd(total);
    for (size_t i = 0; i < N_FAULTS; i++) {
        if (r < faults[i].weight)
            return &faults[i];
        r -= faults[i].weight;
    }
    return &faults[0];
}

/* Brings every service back, whatever the faults left: idempotent. */
static void restore_services(void)
{
    char cmd[64];
    if (it_sql_int(&env, "SELECT 1") != 1)
        fault_cmd("pg-start");
    char ping[512];
    snprintf(ping, sizeof(ping), "redis-cli -u '%s' ping >/dev/null 2>&1", env.redis_url);
    if (system(ping) != 0)
        fault_cmd("redis-start");
    for (int id = 1; id <= 3; id++) {
        snprintf(cmd, sizeof(cmd), "broker broker up %d", id);
        fault_cmd(cmd);
    }
    for (size_t i = 0; i < N_REQUEST_ERRORS; i++) {
        snprintf(cmd, sizeof(cmd), "broker clear %s", request_errors[i].api);
        fault_cmd(cmd);
    }
}

/* ---- the checks ------------------------------------------------------------------- */

typedef struct {
    const char *name;
    long long expected;
    long long found;
    long long mismatches;
} check_t;

static check_t checks[16];
static int n_checks;

static void check(const char *name, long long expected, long long found, long long mismatches)
{
    checks[n_checks++] = (check_t){name, expected, found, mismatches};
}

static char player_name[64];
static const char *player(size_t i)
{
    snprintf(player_name, sizeof(player_name), "%sp%06zu", prefix, i);
    return player_name;
}

/* Totals in PostgreSQL, one query, compared player by player with the oracle. */
static void check_totals(void)
{
    char sql[256];
    long long wrong = 0, rows = 0;
    PGconn *c = PQconnectdb(env.db_dsn);
    snprintf(sql, sizeof(sql),
             "SELECT substr(player_id, %zu)::int, total_xp FROM player_progress "
             "WHERE player_id LIKE '%sp%%'",
             strlen(prefix) + 2, prefix);
    PGresult *r = PQexec(c, sql);
    int64_t *seen = calloc((size_t)opt.players, sizeof(*seen));
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "fault_suite: %s", PQerrorMessage(c));
        wrong = -1;
    }
    for (int i = 0; wrong >= 0 && i < PQntuples(r); i++) {
        long idx = atol(PQgetvalue(r, i, 0));
        if (idx >= 0 && idx < opt.players)
            seen[idx] = atoll(PQgetvalue(r, i, 1));
        rows++;
    }
    for (int i = 0; wrong >= 0 && i < opt.players; i++)
        wrong += seen[i] != totals[i];
    PQclear(r);
    PQfinish(c);
    free(seen);
    long long players_with_xp = 0;
    for (int i = 0; i < opt.players; i++)
        players_with_xp += totals[i] > 0;
    check("player totals in PostgreSQL", players_with_xp, rows, wrong);
}

/* Totals as the API serves them (Redis, or PostgreSQL on a miss), for every player. */
static void check_http_totals(void)
{
    char path[128], body[4096];
    long long wrong = 0, answered = 0, asked = 0;
    for (int i = 0; i < opt.players; i++) {
        if (totals[i] == 0)
            continue;
        asked++;
        char *token = it_jwt(env.secret, player((size_t)i), "player", 600);
        snprintf(path, sizeof(path), "/progress/%s", player((size_t)i));
        int st =
            it_http_get(workers[i % opt.workers].env.http_port, path, token, body, sizeof(body));
        free(token);
        json_t *o = st == 200 ? json_loads(body, 0, NULL) : NULL;
        if (o != NULL)
            answered++;
        if (o == NULL || json_integer_value(json_object_get(o, "totalXp")) != totals[i])
            wrong++;
        json_decref(o);
    }
    check("player totals over HTTP (cache)", asked, answered, wrong);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_levelups(void)
{
    char **names = calloc((size_t)opt.players, sizeof(*names));
    for (int i = 0; i < opt.players; i++)
        names[i] = strdup(player((size_t)i));
    size_t n_want = 0, unexpected = 0;
    char **want =
        it_levelups_expected(&season, season.id, names, totals, (size_t)opt.players, &n_want);
    size_t seen = it_levelups_wait(&env, prefix, want, n_want, 60000, &unexpected);
    long long found = (long long)(seen - unexpected);
    check("LevelUp ids on the topic", (long long)n_want, found,
          (long long)n_want - found + (long long)unexpected);
    it_strv_free(want, n_want);
    it_strv_free(names, (size_t)opt.players);
}

/* Expected grant ids: autoClaim grants each free reward up to the player's level, once. */
static char **expected_grants(size_t *n_out)
{
    size_t cap = 1024, n = 0;
    char **ids = malloc(cap * sizeof(*ids));
    size_t *idx = malloc(season.n_rewards * sizeof(*idx));
    for (int i = 0; i < opt.players; i++) {
        if (totals[i] == 0)
            continue;
        int32_t level = bp_level_for_xp(&season, totals[i]).level;
        size_t k = bp_rewards_unlocked(&season, 0, level, false, idx, season.n_rewards);
        for (size_t j = 0; j < k; j++) {
            const bp_reward_t *rw = &season.rewards[idx[j]];
            char id[256];
            if (bp_grant_id(id, sizeof(id), season.id, player((size_t)i), rw->level, rw->tier,
                            rw->reward_id) != BP_OK)
                abort();
            if (n == cap)
                ids = realloc(ids, (cap *= 2) * sizeof(*ids));
            ids[n++] = strdup(id);
        }
    }
    free(idx);
    qsort(ids, n, sizeof(*ids), cmp_str);
    *n_out = n;
    return ids;
}

/* RewardGrant events: every expected grant id present, none other, and one id per reward
 * (a reward delivered twice must carry the same id). */
static void check_reward_grants(void)
{
    char dir[1024], why[256];
    bp_codec_t *codec = NULL;
    snprintf(dir, sizeof(dir), "%s/schemas/avro", env.source_dir);
    if (bp_codec_new(dir, &codec, why, sizeof(why)) != BP_OK)
        abort();
    size_t n_want = 0;
    char **want = expected_grants(&n_want);
    it_msg_t *msgs = NULL;
    size_t n = it_consume_all(&env, "battlepass.reward-grants", &msgs);
    char **ids = calloc(n + 1, sizeof(*ids)), **rewards = calloc(n + 1, sizeof(*rewards));
    size_t k = 0;
    long long undecodable = 0;
    for (size_t i = 0; i < n; i++) {
        char *json = NULL;
        int32_t sid;
        const char *err = NULL;
        if (bp_codec_decode_json(codec, msgs[i].value, msgs[i].len, &json, &sid, &err) != BP_OK) {
            undecodable++;
            continue;
        }
        json_t *o = json_loads(json, 0, NULL);
        free(json);
        const char *pl = json_string_value(json_object_get(o, "playerId"));
        if (pl != NULL && strncmp(pl, prefix, strlen(prefix)) == 0) {
            char reward[256];
            snprintf(reward, sizeof(reward), "%s|%lld|%s|%s", pl,
                     (long long)json_integer_value(json_object_get(o, "level")),
                     json_string_value(json_object_get(o, "tier")),
                     json_string_value(json_object_get(o, "rewardId")));
            ids[k] = strdup(json_string_value(json_object_get(o, "grantId")));
            rewards[k] = strdup(reward);
            k++;
        }
        json_decref(o);
    }
    it_msgs_free(msgs, n);
    /* distinct (grantId, reward) pairs must be as many as distinct grant ids and rewards */
    char **pairs = calloc(k + 1, sizeof(*pairs));
    for (size_t i = 0; i < k; i++) {
        pairs[i] = malloc(strlen(ids[i]) + strlen(rewards[i]) + 2);
        sprintf(pairs[i], "%s#%s", ids[i], rewards[i]);
    }
    size_t d_ids = 0, d_rewards = 0, d_pairs = 0;
    char **lists[3] = {ids, rewards, pairs};
    size_t *counts[3] = {&d_ids, &d_rewards, &d_pairs};
    for (int l = 0; l < 3; l++) {
        qsort(lists[l], k, sizeof(char *), cmp_str);
        for (size_t i = 0; i < k; i++)
            *counts[l] += i == 0 || strcmp(lists[l][i - 1], lists[l][i]) != 0;
    }
    long long missing = 0, unexpected = 0;
    for (size_t i = 0; i < n_want; i++)
        missing += bsearch(&want[i], ids, k, sizeof(char *), cmp_str) == NULL;
    for (size_t i = 0; i < k; i++) {
        if ((i == 0 || strcmp(ids[i - 1], ids[i]) != 0) &&
            bsearch(&ids[i], want, n_want, sizeof(char *), cmp_str) == NULL)
            unexpected++;
    }
    check("RewardGrant ids on the topic", (long long)n_want, (long long)d_ids,
          missing + unexpected + undecodable);
    check("rewards carrying more than one id", (long long)d_rewards, (long long)d_pairs,
          (long long)(d_pairs - d_rewards) + (long long)(d_pairs - d_ids));
    printf("RewardGrant deliveries: %zu for %zu grants (%zu repeated)\n", k, d_ids, k - d_ids);

    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM reward_claims WHERE player_id LIKE '%s%%'",
             prefix);
    long long claims = it_sql_int(&env, sql);
    check("claim rows", (long long)n_want, claims, claims - (long long)n_want);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM (SELECT 1 FROM reward_claims WHERE player_id LIKE '%s%%' "
             "GROUP BY player_id, season_id, level, tier, reward_id HAVING count(*) > 1) d",
             prefix);
    check("rewards claimed twice", 0, it_sql_int(&env, sql), it_sql_int(&env, sql));
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM audit_log WHERE player_id LIKE '%s%%' AND grant_id IS NOT NULL",
             prefix);
    long long audits = it_sql_int(&env, sql);
    check("audit rows of grants", (long long)n_want, audits, audits - (long long)n_want);

    for (int l = 0; l < 3; l++)
        it_strv_free(lists[l], k);
    it_strv_free(want, n_want);
    bp_codec_destroy(codec);
}

/* The season's counters (store/analytics.c, summed over their shards, migration 008) against
 * the rows they count: enrolled players, claims, earned XP, and players per level. The
 * season is this run's own (a fresh database), so nothing else moved them. */
static void check_counters(void)
{
    char sql[2048];
    const char *s = season.id;
    snprintf(sql, sizeof(sql),
             "SELECT (e <> 0)::int + (c <> 0)::int + (x <> 0)::int + l FROM ("
             " SELECT (SELECT coalesce(sum(enrolled), 0) FROM season_stats WHERE season_id = '%s')"
             "   - (SELECT count(*) FROM player_progress WHERE season_id = '%s') AS e,"
             " (SELECT coalesce(sum(claimed), 0) FROM season_stats WHERE season_id = '%s')"
             "   - (SELECT count(*) FROM reward_claims WHERE season_id = '%s') AS c,"
             " (SELECT coalesce(sum(xp), 0) FROM season_stats WHERE season_id = '%s')"
             "   - (SELECT coalesce(sum(earned_xp), 0) FROM player_progress"
             "      WHERE season_id = '%s') AS x,"
             " (SELECT count(*) FROM (SELECT level, sum(players) AS n FROM season_level_counts"
             "    WHERE season_id = '%s' GROUP BY level) a"
             "  FULL JOIN (SELECT level, count(*) AS n FROM player_progress"
             "    WHERE season_id = '%s' GROUP BY level) b USING (level)"
             "  WHERE coalesce(a.n, 0) <> coalesce(b.n, 0)) AS l) d",
             s, s, s, s, s, s, s, s);
    long long wrong = it_sql_int(&env, sql); /* counters off: 0..3 plus levels off */
    check("season counters off", 0, wrong, wrong);
}

/* Every malformed message is in the DLQ (perhaps more than once), with a reason. */
static void check_dlq(void)
{
    it_msg_t *msgs = NULL;
    size_t n = it_consume_all(&env, "battlepass.dlq", &msgs);
    char bad[64];
    snprintf(bad, sizeof(bad), "%sbad-", prefix);
    char *seen = calloc(n_malformed + 1, 1);
    long long distinct = 0, no_reason = 0, unexpected = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(msgs[i].key, prefix, strlen(prefix)) != 0)
            continue;
        if (strncmp(msgs[i].key, bad, strlen(bad)) != 0) {
            unexpected++; /* a valid event of ours in the DLQ */
            continue;
        }
        size_t m = (size_t)atol(msgs[i].key + strlen(bad));
        no_reason += msgs[i].error_header == NULL || msgs[i].error_header[0] == '\0';
        if (m < n_malformed && !seen[m]) {
            seen[m] = 1;
            distinct++;
        }
    }
    it_msgs_free(msgs, n);
    free(seen);
    check("malformed messages in the DLQ", (long long)n_malformed, distinct,
          (long long)n_malformed - distinct + no_reason + unexpected);
}

/* ---- main ------------------------------------------------------------------------- */

static bool wait_converged(int timeout_s, int64_t *took_ms)
{
    char sql[256];
    int64_t t0 = mono_ms();
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT count(*) FROM processed_events WHERE event_id LIKE '%se%%')"
             " * 1000000 + (SELECT count(*) FROM outbox)",
             prefix);
    long long want = (long long)n_unique * 1000000, got = -1;
    while (mono_ms() - t0 < timeout_s * 1000LL) {
        supervise();
        got = it_sql_int(&env, sql);
        if (got == want)
            break;
        it_sleep_ms(500);
    }
    *took_ms = mono_ms() - t0;
    if (got != want)
        fprintf(stderr,
                "fault_suite: not converged after %d s: %lld of %zu events applied, %lld outbox "
                "rows left (events missing for good? the devbroker keeps only 5 MB per "
                "partition: see docs/faults.md)\n",
                timeout_s, got / 1000000, n_unique, got % 1000000);
    return got == want;
}

int main(int argc, char **argv)
{
    int r = parse_options(argc, argv, &opt);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (!it_env_load(&env, "fault", HTTP_PORT_BASE))
        return getenv("BP_REQUIRE_SERVICES") ? 1 : 77;
    if (getenv("BP_RUN_DIR") == NULL) {
        fprintf(stderr, "fault_suite: BP_RUN_DIR is not set: scripts/services must be "
                        "reachable to inject faults (run through scripts/test or see "
                        "docs/faults.md)\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    rnd_state = opt.seed;
    snprintf(prefix, sizeof(prefix), "fs%u-", opt.seed);
    snprintf(group, sizeof(group), "fault-%u", opt.seed);

    /* An active autoClaim season without boosts or caps: the oracle is a plain sum. */
    if (!it_season_write(&env, "fault-season.json", "fault", -60000, 30LL * 24 * 3600 * 1000,
                         "{\"autoClaim\":true,\"xpBoosts\":[],\"dailyXpCap\":null}") ||
        !it_season_load("fault-season.json", &season) || !it_db_prepare(&env, NULL) ||
        !it_season_import(&env, "fault-season.json", false)) {
        fprintf(stderr, "fault_suite: cannot prepare the database\n");
        return 1;
    }
    restore_services();

    totals = calloc((size_t)opt.players, sizeof(*totals));
    n_events_cap = 1 << 16;
    occurred = malloc(n_events_cap * sizeof(*occurred));
    for (int i = 0; i < opt.workers; i++) {
        workers[i].env = env;
        workers[i].env.http_port = (uint16_t)(HTTP_PORT_BASE + i);
        snprintf(workers[i].log, sizeof(workers[i].log), "fault-worker-%d.log", i);
        worker_start(&workers[i]);
    }
    for (int i = 0; i < opt.workers; i++) {
        if (!it_http_wait(workers[i].env.http_port, 15000)) {
            fprintf(stderr, "fault_suite: worker %d did not come up, see %s\n", i, workers[i].log);
            return 1;
        }
    }
    printf("fault suite: seed %u, %d s of faults, %d players, %d msg/s, %d%% duplicates, "
           "1 malformed per %d, %d workers in group %s\n",
           opt.seed, opt.seconds, opt.players, opt.rate, opt.dup_pct, opt.malformed_every,
           opt.workers, group);

    producer_t *prod = producer_new();
    pthread_t tid;
    atomic_store(&producing, true);
    pthread_create(&tid, NULL, producer_main, prod);

    int64_t t0 = mono_ms(), end = t0 + opt.seconds * 1000LL;
    int64_t next_fault = t0 + opt.fault_ms / 2 + rnd(opt.fault_ms);
    unsigned long n_faults = 0;
    while (mono_ms() < end) {
        supervise();
        if (mono_ms() >= next_fault) {
            fault_t *f = pick_fault();
            f->inject();
            f->count++;
            n_faults++;
            next_fault = mono_ms() + opt.fault_ms / 2 + rnd(opt.fault_ms);
        }
        it_sleep_ms(50);
    }
    atomic_store(&producing, false);
    pthread_join(tid, NULL);
    restore_services();
    producer_destroy(prod);
    for (int i = 0; i < opt.workers; i++) {
        if (workers[i].pid <= 0)
            worker_start(&workers[i]);
    }
    int64_t produce_ms = mono_ms() - t0;
    printf("injected %lu faults in %d s:\n", n_faults, opt.seconds);
    for (size_t i = 0; i < N_FAULTS; i++)
        printf("  %-34s %lu\n", faults[i].name, faults[i].count);
    printf("produced in %.1f s: %zu events, %zu duplicates re-sent, %zu malformed, %lu delivery "
           "failures re-sent\n",
           produce_ms / 1000.0, n_unique, n_duplicates, n_malformed,
           (unsigned long)atomic_load(&delivery_errors));

    int64_t took = 0;
    bool converged = wait_converged(300, &took);
    printf("converged: %s, %.1f s after the last fault; worker starts %lu, exits on their own "
           "%lu\n",
           converged ? "yes" : "NO", took / 1000.0, n_starts, n_unexpected_exits);

    check_totals();
    if (converged) {
        check_http_totals();
        check_levelups();
        check_reward_grants();
        check_counters();
        check_dlq();
    }

    long long bad = converged ? 0 : 1;
    printf("%-36s %10s %10s %10s\n", "check", "expected", "found", "mismatch");
    for (int i = 0; i < n_checks; i++) {
        printf("%-36s %10lld %10lld %10lld\n", checks[i].name, checks[i].expected, checks[i].found,
               checks[i].mismatches);
        bad += checks[i].mismatches != 0;
    }
    for (int i = 0; i < opt.workers; i++) {
        if (workers[i].pid > 0 && !it_daemon_down(&workers[i].pid))
            bad++;
    }
    printf("fault suite: %s\n", bad == 0 ? "PASS" : "FAIL");
    bp_season_fini(&season);
    free(totals);
    free(occurred);
    return bad == 0 ? 0 : 1;
}
