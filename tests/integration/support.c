/** @file Integration-test helpers: real services only (PostgreSQL, Redis, devbroker). */
#include "tests/integration/support.h"

#include <setjmp.h>
#include <stdarg.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jwt.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include <jansson.h>

#include "core/level.h"
#include "core/timefmt.h"
#include "producers/codec.h"
#include "store/season_json.h"

int64_t it_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void it_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

bool it_env_load(it_env_t *env, const char *test_name, uint16_t http_port)
{
    memset(env, 0, sizeof(*env));
    env->bootstrap = getenv("BP_KAFKA_BOOTSTRAP");
    env->pg_dsn = getenv("BP_PG_DSN");
    env->redis_url = getenv("BP_REDIS_URL");
    env->secret = getenv("BP_JWT_HS256_SECRET");
    env->daemon = getenv("BP_BATTLEPASSD");
    env->source_dir = getenv("BP_SOURCE_DIR") ? getenv("BP_SOURCE_DIR") : BP_SOURCE_DIR;
    env->http_port = http_port;
    if (!env->bootstrap || !env->pg_dsn || !env->redis_url || !env->secret || !env->daemon) {
        fprintf(stderr,
                "%s: services not configured (run through scripts/test, or source "
                ".run/env and set BP_BATTLEPASSD)\n",
                test_name);
        return false;
    }
    snprintf(env->db_name, sizeof(env->db_name), "it_%s", test_name);
    const char *slash = strrchr(env->pg_dsn, '/');
    int prefix = slash ? (int)(slash - env->pg_dsn) : (int)strlen(env->pg_dsn);
    snprintf(env->db_dsn, sizeof(env->db_dsn), "%.*s/%s", prefix, env->pg_dsn, env->db_name);
    return true;
}

/* Run argv with extra environment; @return exit status or -1. */
static int run_cmd(const char *const *argv, const char *const *envs)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        for (size_t i = 0; envs && envs[i]; i++)
            putenv((char *)envs[i]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool it_db_prepare(it_env_t *env, const char *season_file)
{
    PGconn *c = PQconnectdb(env->pg_dsn);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect to %s: %s", env->pg_dsn, PQerrorMessage(c));
        PQfinish(c);
        return false;
    }
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", env->db_name);
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", env->db_name);
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "create database: %s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    if (!ok)
        return false;

    static char dsn_env[600];
    snprintf(dsn_env, sizeof(dsn_env), "BP_PG_DSN=%s", env->db_dsn);
    const char *envs[] = {dsn_env, NULL};
    const char *migrate[] = {env->daemon, "migrate", NULL};
    if (run_cmd(migrate, envs) != 0) {
        fprintf(stderr, "battlepassd migrate failed\n");
        return false;
    }
    if (!season_file)
        return true;
    const char *import[] = {env->daemon, "season", "import", season_file, "--starts-now", NULL};
    if (run_cmd(import, envs) != 0) {
        fprintf(stderr, "battlepassd season import failed\n");
        return false;
    }
    return true;
}

bool it_season_import(const it_env_t *env, const char *path, bool starts_now)
{
    static char dsn_env[600];
    snprintf(dsn_env, sizeof(dsn_env), "BP_PG_DSN=%s", env->db_dsn);
    const char *envs[] = {dsn_env, NULL};
    const char *argv[] = {env->daemon, "season", "import", path, starts_now ? "--starts-now" : NULL,
                          NULL};
    return run_cmd(argv, envs) == 0;
}

bool it_season_write(const it_env_t *env, const char *path, const char *id, int64_t start_offset_ms,
                     int64_t duration_ms, const char *extra_json)
{
    char sample[1024], t[40];
    snprintf(sample, sizeof(sample), "%s/schemas/seasons/sample-season.json", env->source_dir);
    json_t *root = json_load_file(sample, 0, NULL);
    json_t *extra = extra_json ? json_loads(extra_json, 0, NULL) : NULL;
    if (!root || (extra_json && !extra)) {
        json_decref(root);
        return false;
    }
    json_object_set_new(root, "id", json_string(id));
    if (start_offset_ms || duration_ms) {
        int64_t start = it_now_ms() + start_offset_ms;
        bp_time_format(start, t, sizeof(t));
        json_object_set_new(root, "startsAt", json_string(t));
        bp_time_format(start + duration_ms, t, sizeof(t));
        json_object_set_new(root, "endsAt", json_string(t));
    }
    if (extra)
        json_object_update(root, extra);
    int rc = json_dump_file(root, path, JSON_COMPACT);
    json_decref(root);
    json_decref(extra);
    return rc == 0;
}

long long it_sql_int(const it_env_t *env, const char *sql)
{
    PGconn *c = PQconnectdb(env->db_dsn);
    long long v = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
            v = atoll(PQgetvalue(r, 0, 0));
        else if (PQresultStatus(r) == PGRES_TUPLES_OK)
            v = 0;
        else
            fprintf(stderr, "sql error: %s", PQresultErrorMessage(r));
        PQclear(r);
    }
    PQfinish(c);
    return v;
}

pid_t it_daemon_start(const it_env_t *env, const char *group, const char *const *extra,
                      const char *log_path)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        char dsn[600], grp[200], listen[64];
        snprintf(dsn, sizeof(dsn), "%s", env->db_dsn);
        snprintf(grp, sizeof(grp), "%s", group);
        snprintf(listen, sizeof(listen), "127.0.0.1:%u", (unsigned)env->http_port);
        setenv("BP_PG_DSN", dsn, 1);
        setenv("BP_KAFKA_GROUP", grp, 1);
        setenv("BP_HTTP_LISTEN", listen, 1);
        setenv("BP_KAFKA_SESSION_TIMEOUT_MS", "6000", 1);
        setenv("BP_BATCH_MAX_WAIT_MS", "20", 1);
        setenv("BP_SEASON_REFRESH_MS", "1000", 1);
        for (size_t i = 0; extra && extra[i]; i++)
            putenv((char *)extra[i]);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(env->daemon, env->daemon, "serve", (char *)NULL);
        _exit(127);
    }
    return pid;
}

int it_daemon_stop(pid_t pid, int sig, int timeout_ms)
{
    kill(pid, sig);
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        it_sleep_ms(20);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

pid_t it_daemon_up(const it_env_t *env, const char *group, const char *const *extra,
                   const char *log_path)
{
    pid_t pid = it_daemon_start(env, group, extra, log_path);
    if (pid > 0 && it_http_wait(env->http_port, 15000)) {
        if (waitpid(pid, NULL, WNOHANG) == 0)
            return pid;
        /* It exited, yet the port answered: another process holds it. */
        fprintf(stderr, "daemon exited; port %u is held by another process; see %s\n",
                (unsigned)env->http_port, log_path);
        return -1;
    }
    fprintf(stderr, "daemon did not come up; see %s\n", log_path);
    if (pid > 0)
        it_daemon_stop(pid, SIGKILL, 5000);
    return -1;
}

bool it_daemon_down(pid_t *pid)
{
    if (*pid <= 0)
        return true;
    int st = it_daemon_stop(*pid, SIGTERM, 30000);
    *pid = -1;
    if (st != 0)
        fprintf(stderr, "daemon exit status on SIGTERM: %d (want 0)\n", st);
    return st == 0;
}

bool it_http_wait(uint16_t port, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        if (it_http_get(port, "/health", NULL, NULL, 0) == 200)
            return true;
        it_sleep_ms(100);
    }
    return false;
}

/* ---- faults ---- */

bool it_fault(const char *what)
{
    char words[1024], script[1100];
    const char *argv[96];
    int argc = 0;
    const char *src = getenv("BP_SOURCE_DIR") ? getenv("BP_SOURCE_DIR") : BP_SOURCE_DIR;
    if (!getenv("BP_RUN_DIR") || !getenv("BP_PG_PORT") || !getenv("BP_REDIS_PORT")) {
        fprintf(stderr,
                "it_fault(%s): BP_RUN_DIR, BP_PG_PORT and BP_REDIS_PORT must name the "
                "services (run through scripts/test)\n",
                what);
        return false;
    }
    snprintf(script, sizeof(script), "%s/scripts/services", src);
    snprintf(words, sizeof(words), "%s", what);
    argv[argc++] = script;
    argv[argc++] = "fault";
    for (char *save = NULL, *w = strtok_r(words, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        if (argc == (int)(sizeof(argv) / sizeof(argv[0])) - 1 || strlen(what) >= sizeof(words)) {
            fprintf(stderr, "it_fault(%.40s...): too long\n", what);
            return false;
        }
        argv[argc++] = w;
    }
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        /* scripts/services looks for devbroker in BP_BUILD_DIR: the daemon's build. */
        const char *daemon = getenv("BP_BATTLEPASSD");
        if (!getenv("BP_BUILD_DIR") && daemon && strrchr(daemon, '/')) {
            char dir[1024];
            snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(daemon, '/') - daemon), daemon);
            setenv("BP_BUILD_DIR", dir, 1);
        }
        execv(script, (char *const *)argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return false;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return true;
    fprintf(stderr, "it_fault: 'scripts/services fault %s' failed (status %d)\n", what,
            WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return false;
}

/* ---- Kafka ---- */

struct it_producer {
    rd_kafka_t *rk;
    bp_codec_t *codec;
    int32_t xp_id;
};

it_producer_t *it_producer_new(const it_env_t *env)
{
    char err[256], dir[1024];
    it_producer_t *p = calloc(1, sizeof(*p));
    snprintf(dir, sizeof(dir), "%s/schemas/avro", env->source_dir);
    if (bp_codec_new(dir, &p->codec, err, sizeof(err)) != BP_OK) {
        fprintf(stderr, "codec: %s\n", err);
        abort();
    }
    p->xp_id = bp_codec_subject_id(p->codec, "battlepass.xp-events-value");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", env->bootstrap, err, sizeof(err));
    rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err));
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!p->rk) {
        fprintf(stderr, "producer: %s\n", err);
        abort();
    }
    return p;
}

void it_produce_raw(it_producer_t *p, const char *topic, const char *key, const void *buf,
                    size_t len)
{
    for (;;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                              RD_KAFKA_V_VALUE((void *)buf, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(p->rk, 50);
            continue;
        }
        if (e) {
            fprintf(stderr, "produce: %s\n", rd_kafka_err2str(e));
            abort();
        }
        rd_kafka_poll(p->rk, 0);
        return;
    }
}

void it_produce_xp(it_producer_t *p, const bp_xp_event_t *ev)
{
    void *buf = NULL;
    size_t len = 0;
    const char *k[1] = {"matchId"}, *v[1] = {"m-1"};
    if (bp_codec_encode_xp(p->codec, p->xp_id, ev, k, v, 1, &buf, &len) != BP_OK) {
        fprintf(stderr, "encode failed\n");
        abort();
    }
    it_produce_raw(p, "battlepass.xp-events", ev->player_id, buf, len);
    free(buf);
}

void it_producer_destroy(it_producer_t *p)
{
    if (!p)
        return;
    if (rd_kafka_flush(p->rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        fprintf(stderr, "producer flush timed out\n");
    rd_kafka_destroy(p->rk);
    bp_codec_destroy(p->codec);
    free(p);
}

static char *header_dup(rd_kafka_message_t *m, const char *name)
{
    rd_kafka_headers_t *h = NULL;
    const void *val;
    size_t len;
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &val, &len))
        return NULL;
    char *s = malloc(len + 1);
    memcpy(s, val, len);
    s[len] = '\0';
    return s;
}

size_t it_consume_all(const it_env_t *env, const char *topic, it_msg_t **out)
{
    char err[256], group[64];
    snprintf(group, sizeof(group), "it-reader-%d-%lld", (int)getpid(), (long long)it_now_ms());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", env->bootstrap, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    rd_kafka_poll_set_consumer(rk);

    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        md->topic_cnt != 1) {
        fprintf(stderr, "metadata for %s failed\n", topic);
        abort();
    }
    int np = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);

    int64_t *high = calloc((size_t)np, sizeof(*high));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    int64_t remaining = 0;
    for (int p = 0; p < np; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        high[p] = hi;
        remaining += hi - lo;
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);

    size_t n = 0, cap = 1024;
    it_msg_t *msgs = calloc(cap, sizeof(*msgs));
    int64_t deadline = it_now_ms() + 60000;
    while (remaining > 0 && it_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (!m->err && m->offset < high[m->partition]) {
            if (n == cap) {
                cap *= 2;
                msgs = realloc(msgs, cap * sizeof(*msgs));
            }
            it_msg_t *o = &msgs[n++];
            memset(o, 0, sizeof(*o));
            o->key = strndup(m->key ? (const char *)m->key : "", m->key_len);
            o->value = malloc(m->len + 1);
            memcpy(o->value, m->payload, m->len);
            o->len = m->len;
            o->error_header = header_dup(m, "error");
            o->source_offset = header_dup(m, "source-offset");
            remaining--;
        }
        rd_kafka_message_destroy(m);
    }
    if (remaining > 0)
        fprintf(stderr, "consume %s: %lld messages not read in time\n", topic,
                (long long)remaining);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(high);
    *out = msgs;
    return n;
}

void it_msgs_free(it_msg_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].key);
        free(m[i].value);
        free(m[i].error_header);
        free(m[i].source_offset);
    }
    free(m);
}

/* ---- HTTP ---- */

int it_http(uint16_t port, const char *method, const char *path, const char *token,
            const char *extra_header, const char *body, char *out, size_t out_len, char *headers,
            size_t headers_len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    size_t body_len = body ? strlen(body) : 0;
    size_t cap = body_len + 16384;
    char *req = malloc(cap);
    int n = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "%s%s%s%s%s%s%s%zu\r\n\r\n%s",
                     method, path, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "", extra_header ? extra_header : "",
                     extra_header ? "\r\n" : "", body ? "Content-Type: application/json\r\n" : "",
                     "Content-Length: ", body_len, body ? body : "");
    bool sent = n > 0 && (size_t)n < cap && write(fd, req, (size_t)n) == n;
    free(req);
    if (!sent) {
        close(fd);
        return -1;
    }
    int status = it_http_read(fd, out, out_len, headers, headers_len);
    close(fd);
    return status;
}

int it_http_read(int fd, char *out, size_t out_len, char *headers, size_t headers_len)
{
    static __thread char resp[1 << 20];
    size_t got = 0;
    for (ssize_t r;
         got < sizeof(resp) - 1 && (r = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0;)
        got += (size_t)r;
    resp[got] = '\0';
    int status = -1;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    const char *b = strstr(resp, "\r\n\r\n");
    if (out && out_len)
        snprintf(out, out_len, "%s", b ? b + 4 : "");
    if (headers && headers_len)
        snprintf(headers, headers_len, "%.*s", b ? (int)(b - resp) : 0, resp);
    return status;
}

void it_path_expand(char *out, size_t len, const char *tmpl, const char *player,
                    const char *season_id)
{
    size_t o = 0;
    for (const char *t = tmpl; *t && o + 1 < len; t++) {
        const char *sub = strncmp(t, "{p}", 3) == 0   ? player
                          : strncmp(t, "{s}", 3) == 0 ? season_id
                                                      : NULL;
        if (sub) {
            o += (size_t)snprintf(out + o, len - o, "%s", sub);
            t += 2;
        } else {
            out[o++] = *t;
        }
    }
    out[o < len ? o : len - 1] = '\0';
}

int it_http_get(uint16_t port, const char *path, const char *token, char *body, size_t body_len)
{
    return it_http(port, "GET", path, token, NULL, NULL, body, body_len, NULL, 0);
}

char *it_jwt(const char *secret, const char *sub, const char *scope, long exp_offset_s)
{
    jwt_t *j = NULL;
    jwt_new(&j);
    if (sub)
        jwt_add_grant(j, "sub", sub);
    if (scope)
        jwt_add_grant(j, "scope", scope);
    jwt_add_grant_int(j, "iat", (long)time(NULL));
    jwt_add_grant_int(j, "exp", (long)time(NULL) + exp_offset_s);
    jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret));
    char *t = jwt_encode_str(j);
    jwt_free(j);
    return t;
}

bool it_season_load(const char *path, bp_season_t *s)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char why[256];
    if (bp_season_from_json(buf, n, s, why, sizeof(why)) != BP_OK) {
        fprintf(stderr, "season %s: %s\n", path, why);
        return false;
    }
    return true;
}

/* ---- LevelUp events ---- */

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void it_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

char **it_levelups_expected(const bp_season_t *s, const char *season_id, char **names,
                            const int64_t *totals, size_t n_players, size_t *n_out)
{
    size_t n = 0;
    for (size_t p = 0; p < n_players; p++)
        n += (size_t)(bp_level_for_xp(s, totals[p]).level - 1);
    char **v = calloc(n + 1, sizeof(*v));
    size_t k = 0;
    for (size_t p = 0; p < n_players; p++) {
        for (int lvl = 2; lvl <= bp_level_for_xp(s, totals[p]).level; lvl++) {
            v[k] = malloc(256);
            snprintf(v[k++], 256, "levelup:%s:%s:%d", season_id, names[p], lvl);
        }
    }
    qsort(v, n, sizeof(*v), cmp_strp);
    *n_out = n;
    return v;
}

/* Distinct LevelUp ids of players with @p prefix currently on the topic (sorted). */
static char **levelup_ids(const it_env_t *env, bp_codec_t *codec, const char *prefix, size_t *n_out)
{
    it_msg_t *msgs;
    size_t n = it_consume_all(env, "battlepass.level-ups", &msgs);
    char **ids = calloc(n + 1, sizeof(*ids));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char *json = NULL;
        int32_t sid;
        const char *why = NULL;
        if (bp_codec_decode_json(codec, msgs[i].value, msgs[i].len, &json, &sid, &why) != BP_OK) {
            fprintf(stderr, "undecodable LevelUp: %s\n", why ? why : "?");
            abort();
        }
        json_t *o = json_loads(json, 0, NULL);
        free(json);
        const char *pl = json_string_value(json_object_get(o, "playerId"));
        if (pl && strncmp(pl, prefix, strlen(prefix)) == 0) {
            int prev = (int)json_integer_value(json_object_get(o, "previousLevel"));
            int next = (int)json_integer_value(json_object_get(o, "newLevel"));
            if (prev + 1 != next || strcmp(msgs[i].key, pl) != 0) {
                fprintf(stderr, "inconsistent LevelUp for %s: %d -> %d, key %s\n", pl, prev, next,
                        msgs[i].key);
                abort();
            }
            ids[k++] = strdup(json_string_value(json_object_get(o, "eventId")));
        }
        json_decref(o);
    }
    it_msgs_free(msgs, n);
    qsort(ids, k, sizeof(*ids), cmp_strp);
    size_t u = 0;
    for (size_t i = 0; i < k; i++) {
        if (u > 0 && strcmp(ids[u - 1], ids[i]) == 0) {
            free(ids[i]);
            continue;
        }
        ids[u++] = ids[i];
    }
    *n_out = u;
    return ids;
}

size_t it_levelups_wait(const it_env_t *env, const char *prefix, char **want, size_t n_want,
                        int timeout_ms, size_t *unexpected)
{
    char dir[1024], why[256];
    bp_codec_t *codec;
    snprintf(dir, sizeof(dir), "%s/schemas/avro", env->source_dir);
    if (bp_codec_new(dir, &codec, why, sizeof(why)) != BP_OK)
        abort();
    size_t n_seen = 0;
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        char **seen = levelup_ids(env, codec, prefix, &n_seen);
        *unexpected = 0;
        size_t found = 0;
        for (size_t i = 0; i < n_seen; i++) {
            if (bsearch(&seen[i], want, n_want, sizeof(*want), cmp_strp))
                found++;
            else
                (*unexpected)++;
        }
        it_strv_free(seen, n_seen);
        if (found == n_want || it_now_ms() > deadline)
            break;
        it_sleep_ms(1000);
    }
    bp_codec_destroy(codec);
    return n_seen;
}

void it_sample_season_path(const it_env_t *env, char *buf, size_t len)
{
    snprintf(buf, len, "%s/schemas/seasons/sample-season.json", env->source_dir);
}

void it_run_prefix(char *buf, size_t len, const char *tag)
{
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    snprintf(buf, len, "%s%d-%04x-", tag, (int)getpid(), (unsigned)rand() & 0xffff);
}

bool it_store_open(const it_env_t *env, bp_pg_t **pg, bp_season_list_t *seasons, PGconn **db)
{
    if (bp_pg_connect(env->db_dsn, pg) != BP_OK || bp_pg_seasons_load(*pg, seasons) != BP_OK) {
        fprintf(stderr, "%s: cannot connect or load the seasons\n", env->db_name);
        return false;
    }
    return (*db = it_pg_connect(env)) != NULL;
}

void it_store_close(bp_pg_t *pg, bp_season_list_t *seasons, PGconn *db)
{
    bp_season_list_fini(seasons);
    bp_pg_destroy(pg);
    if (db)
        PQfinish(db);
}

PGconn *it_pg_connect(const it_env_t *env)
{
    PGconn *db = PQconnectdb(env->db_dsn);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "%s: %s", env->db_name, PQerrorMessage(db));
        PQfinish(db);
        return NULL;
    }
    return db;
}

static PGresult *vquery(PGconn *db, ExecStatusType want, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static PGresult *vquery(PGconn *db, ExecStatusType want, const char *fmt, va_list ap)
{
    char sql[2048];
    int n = vsnprintf(sql, sizeof(sql), fmt, ap);
    if (n < 0 || (size_t)n >= sizeof(sql))
        fail_msg("SQL of %d bytes does not fit: %.200s", n, fmt);
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) != want)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    return r;
}

PGresult *it_pg_query(PGconn *db, ExecStatusType want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGresult *r = vquery(db, want, fmt, ap);
    va_end(ap);
    return r;
}

long long it_pg_int(PGconn *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGresult *r = vquery(db, PGRES_TUPLES_OK, fmt, ap);
    va_end(ap);
    long long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return v;
}

void it_pg_exec(PGconn *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PQclear(vquery(db, PGRES_COMMAND_OK, fmt, ap));
    va_end(ap);
}

void it_progress_set(PGconn *db, const bp_season_t *s, const char *player, int64_t xp,
                     int32_t level)
{
    if (level == 0)
        level = bp_level_for_xp(s, xp).level;
    it_pg_exec(db,
               "INSERT INTO player_progress (player_id, season_id, total_xp, earned_xp, paid_xp,"
               " level) VALUES ('%s', '%s', %lld, %lld, 0, %d)"
               " ON CONFLICT (player_id, season_id) DO UPDATE SET total_xp = EXCLUDED.total_xp,"
               " earned_xp = EXCLUDED.earned_xp, paid_xp = 0, level = EXCLUDED.level",
               player, s->id, (long long)xp, (long long)xp, (int)level);
}

it_claim_rows_t it_claim_rows(PGconn *db, const char *player, bool prefix, const char *topic)
{
    static const char *const column[4] = {"player_id", "player_id", "key", "player_id"};
    char cond[4][200], on_topic[160] = "";
    for (int i = 0; i < 4; i++) {
        if (prefix) /* compared as text: ids may hold LIKE's wildcard _ */
            snprintf(cond[i], sizeof(cond[i]), "left(%s, %zu) = '%s'", column[i], strlen(player),
                     player);
        else
            snprintf(cond[i], sizeof(cond[i]), "%s = '%s'", column[i], player);
    }
    if (topic)
        snprintf(on_topic, sizeof(on_topic), " AND topic = '%s'", topic);
    PGresult *r = it_pg_query(db, PGRES_TUPLES_OK,
                              "SELECT (SELECT count(*) FROM reward_claims WHERE %s),"
                              " (SELECT count(*) FROM audit_log WHERE %s),"
                              " (SELECT count(*) FROM outbox WHERE %s%s),"
                              " (SELECT count(*) FROM player_progress WHERE %s)",
                              cond[0], cond[1], cond[2], on_topic, cond[3]);
    it_claim_rows_t c = {atoll(PQgetvalue(r, 0, 0)), atoll(PQgetvalue(r, 0, 1)),
                         atoll(PQgetvalue(r, 0, 2)), atoll(PQgetvalue(r, 0, 3))};
    PQclear(r);
    return c;
}

int it_claim_http(uint16_t port, const char *player, const char *token, int level, const char *tier,
                  char *out, size_t out_len)
{
    char path[128], body[96];
    snprintf(path, sizeof(path), "/rewards/%s/claim", player);
    snprintf(body, sizeof(body), "{\"level\":%d,\"tier\":\"%s\"}", level, tier);
    return it_http(port, "POST", path, token, NULL, body, out, out_len, NULL, 0);
}

json_t *it_reward_grants(const it_env_t *env, const char *key, int timeout_ms)
{
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM outbox WHERE key = '%s'", key);
    long long pending = -1;
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        if ((pending = it_sql_int(env, sql)) == 0)
            break;
        it_sleep_ms(100);
    }
    if (pending != 0)
        fail_msg("the outbox still holds %lld row(s) keyed %s after %d ms", pending, key,
                 timeout_ms);
    char dir[1024], why[256];
    snprintf(dir, sizeof(dir), "%s/schemas/avro", env->source_dir);
    bp_codec_t *codec;
    assert_int_equal(bp_codec_new(dir, &codec, why, sizeof(why)), BP_OK);
    const char *topic = "battlepass.reward-grants";
    int32_t want_id = bp_codec_subject_id(codec, "battlepass.reward-grants-value");
    it_msg_t *msgs;
    size_t n = it_consume_all(env, topic, &msgs);
    json_t *events = json_array();
    assert_non_null(events);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(msgs[i].key, key) != 0)
            continue;
        char *text = NULL;
        int32_t id = 0;
        const char *err = NULL;
        assert_int_equal(bp_codec_decode_json(codec, msgs[i].value, msgs[i].len, &text, &id, &err),
                         BP_OK);
        assert_int_equal(id, want_id);
        json_t *o = json_loads(text, 0, NULL);
        assert_non_null(o);
        json_array_append_new(events, o);
        free(text);
    }
    it_msgs_free(msgs, n);
    bp_codec_destroy(codec);
    return events;
}
