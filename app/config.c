/** @file Configuration table: each BP_* variable with its type, bounds, default and meaning. */
#include "app/config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/log.h"
#include "http/auth.h"

/** Largest public key file read; a PEM RSA key of 8192 bits is under 2 KiB. */
#define KEY_FILE_MAX 65536

typedef enum { T_STR, T_INT } kind_t;

typedef struct {
    const char *env;
    kind_t kind;
    size_t offset;
    int64_t min, max; /* T_INT bounds; T_STR: min 1 = must not be empty */
    const char *def;
    bool secret;
    const char *help;
} field_t;

#define S(member, min, def, secret, help)                                                          \
    T_STR, offsetof(bp_config_t, member), min, 0, def, secret, help
#define I(member, min, max, def, help)                                                             \
    T_INT, offsetof(bp_config_t, member), min, max, def, false, help

static const field_t fields[] = {
    {"BP_KAFKA_BOOTSTRAP",
     S(kafka_bootstrap, 1, "127.0.0.1:9092", false, "Kafka bootstrap servers")},
    {"BP_KAFKA_GROUP",
     S(kafka_group, 1, "battlepass-worker", false, "consumer group of the workers")},
    {"BP_TOPIC_XP", S(topic_xp, 1, "battlepass.xp-events", false, "XP events topic (in)")},
    {"BP_TOPIC_PREMIUM",
     S(topic_premium, 1, "battlepass.premium-events", false, "premium grants topic (in)")},
    {"BP_TOPIC_LEVELUPS",
     S(topic_levelups, 1, "battlepass.level-ups", false, "LevelUp events topic (out)")},
    {"BP_TOPIC_REWARDS",
     S(topic_rewards, 1, "battlepass.reward-grants", false, "RewardGrant events topic (out)")},
    {"BP_TOPIC_DLQ", S(topic_dlq, 1, "battlepass.dlq", false, "dead-letter topic (out)")},
    {"BP_KAFKA_SESSION_TIMEOUT_MS",
     I(kafka_session_timeout_ms, 3000, 300000, "10000", "consumer group session timeout")},
    {"BP_BATCH_MAX_EVENTS",
     I(batch_max_events, 1, 100000, "10000", "a batch closes at this many messages")},
    {"BP_BATCH_MAX_WAIT_MS",
     I(batch_max_wait_ms, 1, 60000, "50",
       "... or this long after its first message while more keep coming (it closes at once "
       "when none is queued)")},
    {"BP_PG_DSN", S(pg_dsn, 1, "postgresql://postgres@127.0.0.1:5432/battlepass", true,
                    "PostgreSQL connection string (may hold a password)")},
    {"BP_REDIS_URL", S(redis_url, 1, "redis://127.0.0.1:6379/0", true,
                       "Redis URL redis://[:password@]host:port[/db]")},
    {"BP_CACHE_TTL_S", I(cache_ttl_s, 1, 604800, "3600", "lifetime of cached progress entries")},
    {"BP_HTTP_LISTEN", S(http_listen, 1, "0.0.0.0:8080", false, "HTTP listen address host:port")},
    {"BP_HTTP_THREADS", I(http_threads, 1, 64, "2", "HTTP worker threads")},
    {"BP_JWT_HS256_SECRET", S(jwt_hs256_secret, 0, "", true,
                              "HS256 key of the JWTs (at least 32 bytes; required by serve)")},
    {"BP_JWT_ALG", S(jwt_alg, 1, "HS256", false,
                     "the one accepted JWT algorithm: HS256 or RS256 (others answer 401)")},
    {"BP_JWT_RS256_PUBLIC_KEY_FILE",
     S(jwt_rs256_public_key_file, 0, "", false,
       "PEM file of the RSA public key verifying RS256 JWTs (required when BP_JWT_ALG=RS256)")},
    {"BP_JWT_ISSUER", S(jwt_issuer, 0, "", false, "required `iss` of tokens (empty: not checked)")},
    {"BP_JWT_AUDIENCE",
     S(jwt_audience, 0, "", false, "required `aud` of tokens (empty: not checked)")},
    {"BP_SCHEMAS_DIR",
     S(schemas_dir, 1, BP_SOURCE_DIR "/schemas", false, "folder with avro/ and sql/")},
    {"BP_LOG_LEVEL", S(log_level, 1, "info", false, "debug, info, warn or error")},
    {"BP_XP_GRANTS_PER_MINUTE", I(xp_grants_per_minute, 1, 1000000, "100",
                                  "XP grants per player per minute over HTTP (429 beyond)")},
    {"BP_SEASON_REFRESH_MS",
     I(season_refresh_ms, 100, 3600000, "5000", "how often season definitions are reloaded")},
};

#define N_FIELDS (sizeof(fields) / sizeof(fields[0]))

/* Variables that .run/env carries for clients, and the settings of scripts/services that the
 * developer scripts export: the daemon ignores them without a warning. */
static const char *const client_vars[] = {
    "BP_HTTP_URL",          "BP_SAMPLE_SEASON", "BP_PG_PORT",
    "BP_REDIS_PORT",        "BP_RUN_DIR",       "BP_HTTP_PORT",
    "BP_DEVBROKER_CONTROL", "BP_BUILD_DIR",     "BP_DEVBROKER_PARTITIONS",
    "BP_PG_SETTINGS"};

static char **str_at(bp_config_t *c, const field_t *f)
{
    return (char **)((char *)c + f->offset);
}

static int64_t *int_at(bp_config_t *c, const field_t *f)
{
    return (int64_t *)((char *)c + f->offset);
}

void bp_config_fini(bp_config_t *cfg)
{
    for (size_t i = 0; i < N_FIELDS; i++)
        if (fields[i].kind == T_STR) {
            free(*str_at(cfg, &fields[i]));
            *str_at(cfg, &fields[i]) = NULL;
        }
    free(cfg->jwt_rs256_public_key);
    cfg->jwt_rs256_public_key = NULL;
}

/** Read and check the RS256 public key named by BP_JWT_RS256_PUBLIC_KEY_FILE. */
static bp_err_t load_public_key(bp_config_t *c, char *why, size_t why_len)
{
    const char *path = c->jwt_rs256_public_key_file;
    bp_err_t err = BP_EINVAL;
    char *buf = NULL;
    FILE *f = NULL;

    if (!*path) {
        snprintf(why, why_len,
                 "BP_JWT_RS256_PUBLIC_KEY_FILE: must name a PEM public key when BP_JWT_ALG=RS256");
        goto out;
    }
    f = fopen(path, "rb");
    buf = malloc(KEY_FILE_MAX + 1);
    if (!buf) {
        err = BP_ENOMEM;
        goto out;
    }
    size_t n = f ? fread(buf, 1, KEY_FILE_MAX + 1, f) : 0;
    if (!f || ferror(f)) {
        snprintf(why, why_len, "BP_JWT_RS256_PUBLIC_KEY_FILE=%s: cannot be read: %s", path,
                 strerror(errno));
        goto out;
    }
    if (n > KEY_FILE_MAX) {
        snprintf(why, why_len, "BP_JWT_RS256_PUBLIC_KEY_FILE=%s: larger than %d bytes", path,
                 KEY_FILE_MAX);
        goto out;
    }
    buf[n] = '\0';
    const char *problem = strlen(buf) == n ? bp_auth_rs256_key_problem(buf) : "contains NUL";
    if (problem) {
        snprintf(why, why_len, "BP_JWT_RS256_PUBLIC_KEY_FILE=%s: not a usable RSA public key: %s",
                 path, problem);
        goto out;
    }
    c->jwt_rs256_public_key = buf;
    buf = NULL;
    err = BP_OK;
out:
    if (f)
        fclose(f);
    free(buf);
    return err;
}

static bp_err_t parse_listen(bp_config_t *c, char *why, size_t why_len)
{
    const char *colon = strrchr(c->http_listen, ':');
    char *end;
    errno = 0;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    size_t host_len = colon ? (size_t)(colon - c->http_listen) : 0;
    if (!colon || errno || *end || colon[1] == '\0' || port < 1 || port > 65535 || host_len == 0 ||
        host_len >= sizeof(c->http_host)) {
        snprintf(why, why_len, "BP_HTTP_LISTEN=%s: expected host:port with port 1..65535",
                 c->http_listen);
        return BP_EINVAL;
    }
    memcpy(c->http_host, c->http_listen, host_len);
    c->http_host[host_len] = '\0';
    c->http_port = (uint16_t)port;
    return BP_OK;
}

static bp_err_t check_extra(bp_config_t *c, int need_secret, char *why, size_t why_len)
{
    bp_log_level_t lvl;
    if (bp_log_level_parse(c->log_level, &lvl) != 0) {
        snprintf(why, why_len, "BP_LOG_LEVEL=%s: must be one of debug, info, warn, error",
                 c->log_level);
        return BP_EINVAL;
    }
    if (strncmp(c->redis_url, "redis://", 8) != 0) {
        snprintf(why, why_len, "BP_REDIS_URL: must start with redis://");
        return BP_EINVAL;
    }
    bp_auth_alg_t alg;
    if (bp_auth_alg_parse(c->jwt_alg, &alg) != 0) {
        snprintf(why, why_len, "BP_JWT_ALG=%s: must be HS256 or RS256", c->jwt_alg);
        return BP_EINVAL;
    }
    if (alg == BP_AUTH_ALG_RS256) {
        bp_err_t err = load_public_key(c, why, why_len);
        if (err != BP_OK)
            return err;
    } else if (need_secret && strlen(c->jwt_hs256_secret) < 32) {
        snprintf(why, why_len,
                 "BP_JWT_HS256_SECRET: must be set to at least 32 bytes (it signs the API's "
                 "tokens)");
        return BP_EINVAL;
    }
    return parse_listen(c, why, why_len);
}

bp_err_t bp_config_load(bp_config_t *cfg, const char *(*getenv_fn)(const char *), int need_secret,
                        char *why, size_t why_len)
{
    memset(cfg, 0, sizeof(*cfg));
    bp_err_t err = BP_OK;
    for (size_t i = 0; i < N_FIELDS && err == BP_OK; i++) {
        const field_t *f = &fields[i];
        const char *v = getenv_fn(f->env);
        if (!v)
            v = f->def;
        if (f->kind == T_STR) {
            if (f->min > 0 && *v == '\0') {
                snprintf(why, why_len, "%s: must not be empty", f->env);
                err = BP_EINVAL;
            } else if (!(*str_at(cfg, f) = strdup(v))) {
                err = BP_ENOMEM;
            }
            continue;
        }
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || *v == '\0' || *end) {
            snprintf(why, why_len, "%s=%s: not an integer", f->env, v);
            err = BP_EINVAL;
        } else if (n < f->min || n > f->max) {
            snprintf(why, why_len, "%s=%lld: must be between %lld and %lld", f->env, n,
                     (long long)f->min, (long long)f->max);
            err = BP_EINVAL;
        } else {
            *int_at(cfg, f) = n;
        }
    }
    if (err == BP_OK)
        err = check_extra(cfg, need_secret, why, why_len);
    if (err != BP_OK) {
        bp_config_fini(cfg);
        return err;
    }
    return BP_OK;
}

void bp_config_warn_unknown(char **environ_vars)
{
    for (char **e = environ_vars; e && *e; e++) {
        if (strncmp(*e, "BP_", 3) != 0)
            continue;
        size_t len = strcspn(*e, "=");
        bool known = false;
        for (size_t i = 0; i < N_FIELDS && !known; i++)
            known = strlen(fields[i].env) == len && strncmp(fields[i].env, *e, len) == 0;
        for (size_t i = 0; i < sizeof(client_vars) / sizeof(client_vars[0]) && !known; i++)
            known = strlen(client_vars[i]) == len && strncmp(client_vars[i], *e, len) == 0;
        /* the test scripts' own settings */
        known = known || strncmp(*e, "BP_TEST_", 8) == 0 || strncmp(*e, "BP_E2E_", 7) == 0;
        if (!known)
            BP_LOG_WARN("unknown configuration variable ignored", "\"variable\":\"%.*s\"", (int)len,
                        *e);
    }
}

void bp_config_print(const bp_config_t *cfg)
{
    for (size_t i = 0; i < N_FIELDS; i++) {
        const field_t *f = &fields[i];
        if (f->kind == T_INT)
            printf("%s=%lld\n", f->env, (long long)*int_at((bp_config_t *)cfg, f));
        else if (f->secret)
            printf("%s=%s\n", f->env, **str_at((bp_config_t *)cfg, f) ? "(set, hidden)" : "");
        else
            printf("%s=%s\n", f->env, *str_at((bp_config_t *)cfg, f));
    }
}

void bp_config_help(void)
{
    printf("Configuration (environment variables):\n");
    for (size_t i = 0; i < N_FIELDS; i++) {
        const field_t *f = &fields[i];
        printf("  %-28s %s", f->env, f->help);
        if (!f->secret || *f->def == '\0')
            printf(" [default: %s]", *f->def ? f->def : "empty");
        if (f->kind == T_INT)
            printf(" (%lld..%lld)", (long long)f->min, (long long)f->max);
        printf("\n");
    }
}
