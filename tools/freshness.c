/** @file freshness: measures how long an XP event takes from being produced to Kafka to
 *  being visible in GET /progress over HTTP, as percentiles over many probes (benchmarks). */

/*
 * Each probe produces one XpEvent (amount 1) for one of a few probe players, flushes it,
 * then polls GET /progress/{player} on one keep-alive connection until totalXp shows it.
 * The time from the produce call to the answer that shows it is the probe's latency; the
 * polling adds at most --poll-us to it. Meant to run while tools/loadgen streams the load
 * (scripts/bench).
 */

#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <jwt.h>
#include <librdkafka/rdkafka.h>

#include "core/event.h"
#include "producers/codec.h"

typedef struct {
    const char *bootstrap;
    const char *http; /* host:port */
    const char *secret;
    const char *schemas;
    const char *topic;
    long probes;
    long interval_ms;
    long players;
    long timeout_ms;
    long poll_us;
    int json;
} options_t;

static const struct {
    const char *flag;
    long lo, hi;
    size_t offset;
    const char *help;
} num_options[] = {
    {"--probes", 1, 1000000, offsetof(options_t, probes), "probes to run (default 200)"},
    {"--interval-ms", 0, 60000, offsetof(options_t, interval_ms),
     "pause between two probes (default 50)"},
    {"--players", 1, 10000, offsetof(options_t, players), "distinct probe players (default 20)"},
    {"--timeout-ms", 100, 600000, offsetof(options_t, timeout_ms),
     "a probe not visible by then counts as lost (default 10000)"},
    {"--poll-us", 0, 1000000, offsetof(options_t, poll_us),
     "pause between two polls of one probe (default 1000)"},
};

static const struct {
    const char *flag;
    size_t offset;
    const char *env;
    const char *help;
} str_options[] = {
    {"--bootstrap", offsetof(options_t, bootstrap), "BP_KAFKA_BOOTSTRAP", "Kafka bootstrap"},
    {"--http", offsetof(options_t, http), "BP_HTTP_URL", "service address host:port"},
    {"--secret", offsetof(options_t, secret), "BP_JWT_HS256_SECRET", "HS256 secret"},
    {"--schemas", offsetof(options_t, schemas), "BP_SCHEMAS_DIR", "schemas dir (has avro/)"},
    {"--topic", offsetof(options_t, topic), "BP_TOPIC_XP", "XP topic"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: freshness [options]\n\noptions (defaults from the environment):\n");
    for (size_t i = 0; i < sizeof(str_options) / sizeof(str_options[0]); i++)
        fprintf(out, "  %-14s S  %s (%s)\n", str_options[i].flag, str_options[i].help,
                str_options[i].env);
    for (size_t i = 0; i < sizeof(num_options) / sizeof(num_options[0]); i++)
        fprintf(out, "  %-14s N  %s\n", num_options[i].flag, num_options[i].help);
    fprintf(out, "  --json            print the result as one JSON line\n");
}

/* @return 0, 1 after --help, -1 on a usage error (printed). */
static int parse_options(int argc, char **argv, options_t *o)
{
    *o = (options_t){.probes = 200,
                     .interval_ms = 50,
                     .players = 20,
                     .timeout_ms = 10000,
                     .poll_us = 1000,
                     .topic = "battlepass.xp-events"};
    for (size_t i = 0; i < sizeof(str_options) / sizeof(str_options[0]); i++) {
        const char *v = getenv(str_options[i].env);
        if (v != NULL && v[0] != '\0')
            *(const char **)((char *)o + str_options[i].offset) = v;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(argv[i], "--json") == 0) {
            o->json = 1;
            continue;
        }
        int done = 0;
        for (size_t k = 0; !done && k < sizeof(str_options) / sizeof(str_options[0]); k++) {
            if (strcmp(argv[i], str_options[k].flag) == 0 && i + 1 < argc) {
                *(const char **)((char *)o + str_options[k].offset) = argv[++i];
                done = 1;
            }
        }
        for (size_t k = 0; !done && k < sizeof(num_options) / sizeof(num_options[0]); k++) {
            char *end = NULL;
            if (strcmp(argv[i], num_options[k].flag) != 0 || i + 1 >= argc)
                continue;
            long v = strtol(argv[i + 1], &end, 10);
            if (*end != '\0' || v < num_options[k].lo || v > num_options[k].hi) {
                fprintf(stderr, "freshness: %s must be %ld..%ld\n", argv[i], num_options[k].lo,
                        num_options[k].hi);
                return -1;
            }
            *(long *)((char *)o + num_options[k].offset) = v;
            i++;
            done = 1;
        }
        if (!done) {
            fprintf(stderr, "freshness: bad argument '%s' (see --help)\n", argv[i]);
            return -1;
        }
    }
    const char *missing = !o->bootstrap ? "--bootstrap"
                          : !o->http    ? "--http"
                          : !o->secret  ? "--secret"
                          : !o->schemas ? "--schemas"
                                        : NULL;
    if (missing != NULL) {
        fprintf(stderr, "freshness: %s is required (or its environment variable)\n", missing);
        return -1;
    }
    if (strncmp(o->http, "http://", 7) == 0)
        o->http += 7;
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- a keep-alive HTTP/1.1 client, just enough for GET + Content-Length ------------- */

typedef struct {
    int fd;
    struct sockaddr_in addr;
    char buf[65536];
} http_t;

static int http_connect(http_t *h)
{
    int one = 1;
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (h->fd < 0 || connect(h->fd, (struct sockaddr *)&h->addr, sizeof(h->addr)) != 0) {
        if (h->fd >= 0)
            close(h->fd);
        h->fd = -1;
        return -1;
    }
    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

/* One GET. @return the status, the body NUL-terminated in h->buf via *body; -1 on a
 * transport error (the connection is dropped and reopened on the next call). */
static int http_get(http_t *h, const char *path, const char *token, const char **body)
{
    char req[2048];
    int n =
        snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n\r\n", path, token);
    if (h->fd < 0 && http_connect(h) != 0)
        return -1;
    if (send(h->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        goto fail;
    size_t got = 0;
    char *hdr_end = NULL;
    long clen = -1;
    for (;;) {
        ssize_t r = recv(h->fd, h->buf + got, sizeof(h->buf) - 1 - got, 0);
        if (r <= 0)
            goto fail;
        got += (size_t)r;
        h->buf[got] = '\0';
        if (hdr_end == NULL && (hdr_end = strstr(h->buf, "\r\n\r\n")) != NULL) {
            const char *cl = strcasestr(h->buf, "\r\nContent-Length:");
            if (cl == NULL || cl > hdr_end)
                goto fail;
            clen = strtol(cl + 17, NULL, 10);
        }
        if (hdr_end != NULL && (long)(got - (size_t)(hdr_end + 4 - h->buf)) >= clen)
            break;
        if (got == sizeof(h->buf) - 1)
            goto fail;
    }
    *body = hdr_end + 4;
    return (int)strtol(h->buf + 9, NULL, 10);
fail:
    close(h->fd);
    h->fd = -1;
    return -1;
}

/* ---- the probes -------------------------------------------------------------------- */

static char *mint_token(const char *secret)
{
    jwt_t *jwt = NULL;
    char *tok = NULL;
    if (jwt_new(&jwt) != 0)
        return NULL;
    time_t now = time(NULL);
    if (jwt_add_grant(jwt, "sub", "freshness-probe") == 0 &&
        jwt_add_grant(jwt, "scope", "service") == 0 &&
        jwt_add_grant_int(jwt, "exp", now + 24 * 3600) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)) == 0)
        tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    return tok;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

int main(int argc, char **argv)
{
    options_t o;
    char err[512], dir[1024], prefix[40];
    int rc = 1;
    int r = parse_options(argc, argv, &o);
    if (r != 0)
        return r > 0 ? 0 : 2;

    bp_codec_t *codec = NULL;
    rd_kafka_t *rk = NULL;
    char *token = NULL;
    int64_t *expected = calloc((size_t)o.players, sizeof(*expected));
    double *lat = calloc((size_t)o.probes, sizeof(*lat));
    http_t *h = calloc(1, sizeof(*h));
    size_t n_lat = 0, lost = 0;

    snprintf(dir, sizeof(dir), "%s/avro", o.schemas);
    if (bp_codec_new(dir, &codec, err, sizeof(err)) != BP_OK) {
        fprintf(stderr, "freshness: %s\n", err);
        goto out;
    }
    int32_t schema_id = bp_codec_subject_id(codec, "battlepass.xp-events-value");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o.bootstrap, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "linger.ms", "0", err, sizeof(err))) {
        fprintf(stderr, "freshness: %s\n", err);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "freshness: %s\n", err);
        goto out;
    }
    token = mint_token(o.secret);
    const char *colon = strrchr(o.http, ':');
    h->fd = -1;
    h->addr.sin_family = AF_INET;
    h->addr.sin_port = htons((uint16_t)(colon ? atoi(colon + 1) : 80));
    char host[256];
    snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - o.http) : (int)strlen(o.http),
             o.http);
    if (token == NULL || inet_pton(AF_INET, host, &h->addr.sin_addr) != 1) {
        fprintf(stderr, "freshness: bad --http address or token\n");
        goto out;
    }
    snprintf(prefix, sizeof(prefix), "fresh-%x-%x", (unsigned)time(NULL), (unsigned)getpid());

    for (long i = 0; i < o.probes; i++) {
        long k = i % o.players;
        bp_xp_event_t ev;
        void *buf = NULL;
        size_t len = 0;
        memset(&ev, 0, sizeof(ev));
        snprintf(ev.event_id, sizeof(ev.event_id), "%s-e%ld", prefix, i);
        snprintf(ev.player_id, sizeof(ev.player_id), "%s-p%ld", prefix, k);
        snprintf(ev.reason, sizeof(ev.reason), "match_complete");
        ev.amount = 1;
        ev.occurred_at_ms = wall_ms();
        if (bp_codec_encode_xp(codec, schema_id, &ev, NULL, NULL, 0, &buf, &len) != BP_OK)
            goto out;
        expected[k]++;
        char path[256];
        snprintf(path, sizeof(path), "/progress/%s", ev.player_id);

        double t0 = now_ms();
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(o.topic), RD_KAFKA_V_KEY(ev.player_id, strlen(ev.player_id)),
            RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        free(buf);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR || rd_kafka_flush(rk, 10000) != 0) {
            fprintf(stderr, "freshness: produce failed: %s\n", rd_kafka_err2str(e));
            goto out;
        }
        for (;;) {
            const char *body = NULL;
            int st = http_get(h, path, token, &body);
            if (st == 200) {
                json_t *j = json_loads(body, 0, NULL);
                json_int_t xp = json_integer_value(json_object_get(j, "totalXp"));
                json_decref(j);
                if (xp >= expected[k]) {
                    lat[n_lat++] = now_ms() - t0;
                    break;
                }
            } else if (st != 404) {
                fprintf(stderr, "freshness: GET %s answered %d\n", path, st);
            }
            if (now_ms() - t0 > (double)o.timeout_ms) {
                lost++;
                break;
            }
            if (o.poll_us > 0)
                usleep((useconds_t)o.poll_us);
        }
        if (o.interval_ms > 0)
            usleep((useconds_t)o.interval_ms * 1000);
    }
    qsort(lat, n_lat, sizeof(*lat), cmp_double);
    if (o.json)
        printf("{\"probes\":%ld,\"visible\":%zu,\"lost\":%zu,\"p50_ms\":%.1f,\"p90_ms\":%.1f,"
               "\"p99_ms\":%.1f,\"max_ms\":%.1f}\n",
               o.probes, n_lat, lost, pct(lat, n_lat, 50), pct(lat, n_lat, 90), pct(lat, n_lat, 99),
               n_lat ? lat[n_lat - 1] : 0.0);
    else
        printf("freshness: %zu of %ld probes visible (%zu lost): p50 %.1f ms, p90 %.1f ms, "
               "p99 %.1f ms, max %.1f ms\n",
               n_lat, o.probes, lost, pct(lat, n_lat, 50), pct(lat, n_lat, 90), pct(lat, n_lat, 99),
               n_lat ? lat[n_lat - 1] : 0.0);
    rc = lost == 0 ? 0 : 1;
out:
    if (h->fd >= 0)
        close(h->fd);
    free(h);
    free(lat);
    free(expected);
    free(token);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    bp_codec_destroy(codec);
    return rc;
}
