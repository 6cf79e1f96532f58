/** @file The subcommands: wiring of config → store, worker and HTTP server. */
#include "app/commands.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "app/log.h"
#include "consumers/worker.h"
#include "core/timefmt.h"
#include "http/server.h"
#include "store/pg.h"
#include "store/season_json.h"
#include "store/seasons.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connect, waiting up to @p wait_s for PostgreSQL to come up. */
static bp_err_t connect_wait(const char *dsn, int wait_s, bp_pg_t **pg)
{
    bp_err_t err;
    for (int i = 0;; i++) {
        err = bp_pg_connect(dsn, pg);
        if (err != BP_ERETRY || i >= wait_s * 2 || stop_requested)
            return err;
        struct timespec ts = {0, 500000000L};
        nanosleep(&ts, NULL);
    }
}

int bp_cmd_serve(const bp_config_t *cfg)
{
    install_signals();
    int status = 1;
    bp_http_t *http = NULL;
    bp_seasons_t *seasons = bp_seasons_new(cfg->season_refresh_ms);
    if (!seasons)
        return 1;
    char avro_dir[4096], openapi[4096];
    snprintf(avro_dir, sizeof(avro_dir), "%s/avro", cfg->schemas_dir);
    snprintf(openapi, sizeof(openapi), "%s/openapi/main.yaml", cfg->schemas_dir);
    bp_http_config_t hc = {
        .listen_host = cfg->http_host,
        .port = cfg->http_port,
        .threads = (int)cfg->http_threads,
        .pg_dsn = cfg->pg_dsn,
        .redis_url = cfg->redis_url,
        .cache_ttl_s = (int)cfg->cache_ttl_s,
        .jwt_hs256_secret = cfg->jwt_hs256_secret,
        .jwt_issuer = cfg->jwt_issuer,
        .jwt_audience = cfg->jwt_audience,
        .seasons = seasons,
        .kafka_bootstrap = cfg->kafka_bootstrap,
        .xp_topic = cfg->topic_xp,
        .rewards_topic = cfg->topic_rewards,
        .schemas_dir = avro_dir,
        .openapi_path = openapi,
        .xp_grants_per_minute = (int)cfg->xp_grants_per_minute,
        .levelup_topic = cfg->topic_levelups,
        .jwt_alg = cfg->jwt_alg,
        .jwt_rs256_public_key = cfg->jwt_rs256_public_key,
    };
    if (bp_http_start(&hc, &http) != BP_OK)
        goto out;
    BP_LOG_INFO("http listening", "\"host\":\"%s\",\"port\":%u", cfg->http_host,
                (unsigned)cfg->http_port);

    bp_worker_config_t wc = {
        .kafka_bootstrap = cfg->kafka_bootstrap,
        .group = cfg->kafka_group,
        .xp_topic = cfg->topic_xp,
        .levelup_topic = cfg->topic_levelups,
        .rewards_topic = cfg->topic_rewards,
        .premium_topic = cfg->topic_premium,
        .dlq_topic = cfg->topic_dlq,
        .session_timeout_ms = (int)cfg->kafka_session_timeout_ms,
        .batch_max_events = (int)cfg->batch_max_events,
        .batch_max_wait_ms = (int)cfg->batch_max_wait_ms,
        .pg_dsn = cfg->pg_dsn,
        .redis_url = cfg->redis_url,
        .cache_ttl_s = (int)cfg->cache_ttl_s,
        .schemas_dir = avro_dir,
        .seasons = seasons,
        .stop = &stop_requested,
    };
    status = bp_worker_run(&wc) == BP_OK ? 0 : 1;
out:
    bp_http_stop(http);
    bp_seasons_destroy(seasons);
    BP_LOG_INFO("stopped", "\"status\":%d", status);
    return status;
}

int bp_cmd_migrate(const bp_config_t *cfg)
{
    bp_pg_t *pg = NULL;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/sql", cfg->schemas_dir);
    bp_err_t err = connect_wait(cfg->pg_dsn, 30, &pg);
    if (err != BP_OK) {
        fprintf(stderr, "battlepassd migrate: cannot connect to PostgreSQL (BP_PG_DSN)\n");
        return 2;
    }
    err = bp_pg_migrate(pg, dir);
    bp_pg_destroy(pg);
    if (err != BP_OK) {
        fprintf(stderr, "battlepassd migrate: failed (%s); see the log above\n", bp_err_str(err));
        return err == BP_ERETRY ? 2 : 1;
    }
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The definition as stored: the Season resource without its time-dependent status. */
static char *definition_json(const bp_season_t *s)
{
    char *full = bp_season_to_json(s, 0);
    if (!full)
        return NULL;
    json_t *root = json_loads(full, 0, NULL);
    free(full);
    if (!root)
        return NULL;
    json_object_del(root, "status");
    char *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return out;
}

int bp_cmd_season_import(const bp_config_t *cfg, const char *path, int starts_now)
{
    size_t len = 0;
    char why[512];
    int status = 1;
    bp_season_t s;
    bp_pg_t *pg = NULL;
    char *def = NULL;
    char *text = slurp(path, &len);
    if (!text) {
        fprintf(stderr, "battlepassd season import: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (bp_season_from_json(text, len, &s, why, sizeof(why)) != BP_OK) {
        fprintf(stderr, "battlepassd season import: %s: %s\n", path, why);
        free(text);
        return 1;
    }
    if (starts_now) {
        int64_t duration = s.ends_at_ms - s.starts_at_ms;
        /* to the millisecond: events that happened before the import stay outside it */
        int64_t shift = wall_ms() - s.starts_at_ms;
        s.starts_at_ms += shift;
        s.ends_at_ms = s.starts_at_ms + duration;
        /* boost windows keep their place within the season */
        for (size_t i = 0; i < s.n_boosts; i++) {
            s.boosts[i].starts_at_ms += shift;
            s.boosts[i].ends_at_ms += shift;
        }
    }
    if (!(def = definition_json(&s))) {
        fprintf(stderr, "battlepassd season import: out of memory\n");
        goto out;
    }
    if (connect_wait(cfg->pg_dsn, 30, &pg) != BP_OK) {
        fprintf(stderr, "battlepassd season import: cannot connect to PostgreSQL (BP_PG_DSN)\n");
        status = 2;
        goto out;
    }
    bp_err_t err = bp_pg_season_insert(pg, &s, def, why, sizeof(why));
    if (err != BP_OK) {
        fprintf(stderr, "battlepassd season import: %s: %s\n", path, why);
        status = err == BP_ERETRY ? 2 : 1;
        goto out;
    }
    char a[40], b[40];
    bp_time_format(s.starts_at_ms, a, sizeof(a));
    bp_time_format(s.ends_at_ms, b, sizeof(b));
    printf("imported season %s (%s .. %s, %d levels, %zu rewards)\n", s.id, a, b, s.max_level,
           s.n_rewards);
    status = 0;
out:
    bp_pg_destroy(pg);
    free(def);
    free(text);
    bp_season_fini(&s);
    return status;
}
