/** @file Input limits over HTTP against a real battlepassd: JSON nesting depth, body size,
 *  duplicate keys, numbers out of range, of the wrong type, fractional or beyond 64 bits in
 *  bodies and query strings, bad path parameters. Each bad request must get its 4xx
 *  problem+json naming the problem and leave the stored data as it was (a snapshot of
 *  the season definitions and every row of the player before and after); refused XP grants
 *  must never reach the worker. Most bodies
 *  would succeed but for the limit, so an unenforced limit shows as a change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "core/level.h"
#include "tests/integration/support.h"

#define HTTP_PORT 23196
#define OUT_MAX (1 << 16)
/** The server's limits, as the API document states them. */
#define DEPTH_MAX 16
#define BODY_LIMIT 65536
/** The level the player has reached, and claims. */
#define LEVEL 10
#define WAIT_MS 60000

static it_env_t env;
static bp_season_t season;
static pid_t daemon_pid = -1;
static char player[64];
static char *player_token, *service_token, *admin_token;
static PGconn *db; /* the snapshots' connection */

/** What a refused request must not change: the season definitions, and every row of the
 *  test's player (the worker may still be applying other tests' events from the shared
 *  topic, so season-wide counters move on their own; each of them changes with one of the
 *  player's rows here). The outbox too: nothing here may put an event in it. */
static const struct {
    const char *table;
    const char *player_column; /**< NULL: every row */
} ROWS[] = {
    {"seasons", NULL},
    {"processed_events", "player_id"},
    {"player_progress", "player_id"},
    {"outbox", "key"},
    {"reward_claims", "player_id"},
    {"premium_grants", "player_id"},
    {"level_purchases", "player_id"},
    {"audit_log", "player_id"},
    {"player_daily_xp", "player_id"},
};

static void skip_without_services(void)
{
    if (daemon_pid < 0)
        skip();
}

/** The ROWS at one moment: per table, its rows as text, one a line, sorted. */
typedef struct {
    char *rows[sizeof(ROWS) / sizeof(ROWS[0])];
} snapshot_t;

/** Read the ROWS in one statement (one consistent view). Fails the test on error. */
static void snapshot_take(snapshot_t *s)
{
    static char sql[8192];
    size_t o = 0;
    for (size_t i = 0; i < sizeof(ROWS) / sizeof(ROWS[0]); i++) {
        o += (size_t)snprintf(sql + o, sizeof(sql) - o,
                              "%sSELECT %zu AS i, coalesce(string_agg(t::text, E'\\n' ORDER BY "
                              "t::text), '') FROM %s t",
                              i ? " UNION ALL " : "", i, ROWS[i].table);
        if (ROWS[i].player_column)
            o += (size_t)snprintf(sql + o, sizeof(sql) - o, " WHERE t.%s = '%s'",
                                  ROWS[i].player_column, player);
    }
    assert_true(o < sizeof(sql));
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("snapshot: %s", PQresultErrorMessage(r));
    assert_int_equal(PQntuples(r), sizeof(ROWS) / sizeof(ROWS[0]));
    for (int k = 0; k < PQntuples(r); k++) {
        size_t i = (size_t)atoi(PQgetvalue(r, k, 0));
        assert_true(i < sizeof(ROWS) / sizeof(ROWS[0]));
        s->rows[i] = strdup(PQgetvalue(r, k, 1));
        assert_non_null(s->rows[i]);
    }
    PQclear(r);
}

static void snapshot_fini(snapshot_t *s)
{
    for (size_t i = 0; i < sizeof(ROWS) / sizeof(ROWS[0]); i++)
        free(s->rows[i]);
}

/** Compare two snapshots; every table that differs is printed before and after.
 *  @return the number of tables that differ. */
static int snapshot_diff(const char *what, const snapshot_t *before, const snapshot_t *after)
{
    int changed = 0;
    for (size_t i = 0; i < sizeof(ROWS) / sizeof(ROWS[0]); i++) {
        if (strcmp(before->rows[i], after->rows[i]) == 0)
            continue;
        changed++;
        fprintf(stderr, "%s: table %s changed (%s %s)\n--- before:\n%s\n--- after:\n%s\n---\n",
                what, ROWS[i].table, ROWS[i].player_column ? "rows of player" : "every row",
                ROWS[i].player_column ? player : "", before->rows[i], after->rows[i]);
    }
    return changed;
}

/** Fail the test when the ROWS are not as in @p before (printing what changed). */
static void assert_unchanged(const char *what, const snapshot_t *before)
{
    snapshot_t after = {0};
    snapshot_take(&after);
    int changed = snapshot_diff(what, before, &after);
    snapshot_fini(&after);
    if (changed)
        fail_msg("%s: the database changed (%d table%s, printed above)", what, changed,
                 changed == 1 ? "" : "s");
}

/** Wait until the relay has produced (and deleted) the player's outbox rows: a claim that
 *  succeeded leaves one, and its deletion must not count as a change made by a later
 *  refused request. */
static void outbox_drained(void)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM outbox WHERE key = '%s'", player);
    long long pending = -1;
    for (int waited = 0; waited < WAIT_MS; waited += 100) {
        if ((pending = it_sql_int(&env, sql)) == 0)
            break;
        usleep(100000);
    }
    if (pending != 0)
        fail_msg("the outbox still holds %lld row(s) of %s after %d ms", pending, player, WAIT_MS);
}

/** @return "<open>" x @p n, "1", "<close>" x @p n between @p head and @p tail; heap. */
static char *nest(const char *head, const char *open, const char *close, int n, const char *tail)
{
    size_t lo = strlen(open), lc = strlen(close);
    size_t cap = strlen(head) + strlen(tail) + (size_t)n * (lo + lc) + 2;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t o = (size_t)snprintf(s, cap, "%s", head);
    for (int i = 0; i < n; i++, o += lo)
        memcpy(s + o, open, lo);
    s[o++] = '1';
    for (int i = 0; i < n; i++, o += lc)
        memcpy(s + o, close, lc);
    snprintf(s + o, cap - o, "%s", tail);
    return s;
}

/**
 * Check a problem answer: @p status, Content-Type application/problem+json, a body whose
 * `status` matches, whose `type` ends with @p slug and whose `detail` contains every
 * '|'-separated word of @p words. @p what names the case on failure.
 */
static void check_problem(const char *what, int got, int status, const char *headers,
                          const char *body, const char *slug, const char *words)
{
    if (got != status)
        fail_msg("%s: status %d, want %d: %.300s", what, got, status, body);
    bool ct = false;
    for (const char *h = headers; (h = strchr(h, '\n')) != NULL; h++)
        if (strncasecmp(h + 1, "Content-Type: application/problem+json", 38) == 0)
            ct = true;
    if (!ct)
        fail_msg("%s: not application/problem+json: %.300s", what, headers);
    json_t *o = json_loads(body, 0, NULL);
    if (!o)
        fail_msg("%s: body is not JSON: %.300s", what, body);
    const char *type = json_string_value(json_object_get(o, "type"));
    const char *detail = json_string_value(json_object_get(o, "detail"));
    size_t tl = type ? strlen(type) : 0, sl = strlen(slug);
    if (json_integer_value(json_object_get(o, "status")) != status || tl < sl ||
        strcmp(type + tl - sl, slug) != 0)
        fail_msg("%s: want status %d slug %s: %.300s", what, status, slug, body);
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", words ? words : "");
    for (char *save = NULL, *w = strtok_r(buf, "|", &save); w; w = strtok_r(NULL, "|", &save))
        if (!detail || !strstr(detail, w))
            fail_msg("%s: detail '%s' does not name '%s'", what, detail ? detail : "(none)", w);
    json_decref(o);
}

/** One refused request. */
typedef struct {
    const char *name;
    const char *method;
    const char *path; /**< "{p}" is the player, "{s}" the season */
    char **token;
    const char *body; /**< NULL: none */
    int status;
    const char *slug;
    const char *words;
} bad_t;

/** Send @p b, check its problem answer and that the database did not change. */
static void refuse(const bad_t *b)
{
    static char out[OUT_MAX], headers[8192];
    char path[512];
    it_path_expand(path, sizeof(path), b->path, player, season.id);
    snapshot_t before = {0};
    snapshot_take(&before);
    int st = it_http(HTTP_PORT, b->method, path, b->token ? *b->token : NULL, NULL, b->body, out,
                     sizeof(out), headers, sizeof(headers));
    check_problem(b->name, st, b->status, headers, out, b->slug, b->words);
    assert_unchanged(b->name, &before);
    snapshot_fini(&before);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (!it_env_load(&env, "http_limits", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/schemas/seasons/sample-season.json", env.source_dir);
    if (!it_season_load(path, &season) || !it_db_prepare(&env, path))
        return -1;
    db = PQconnectdb(env.db_dsn);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "%s: %s", env.db_name, PQerrorMessage(db));
        return -1;
    }
    snprintf(player, sizeof(player), "lim%d-%04x", (int)getpid(), (unsigned)(it_now_ms() & 0xffff));
    char group[64];
    snprintf(group, sizeof(group), "it-http-limits-%d", (int)getpid());
    daemon_pid = it_daemon_up(&env, group, NULL, "http-limits-daemon.log");
    if (daemon_pid < 0)
        return -1;
    player_token = it_jwt(env.secret, player, "player", 600);
    service_token = it_jwt(env.secret, "economy-service", "service", 600);
    admin_token = it_jwt(env.secret, "ops", "admin", 600);
    /* The player has reached LEVEL: a claim of it succeeds unless refused. */
    char sql[512];
    int64_t xp = season.xp_total[LEVEL];
    snprintf(sql, sizeof(sql),
             "INSERT INTO player_progress (player_id, season_id, total_xp, earned_xp, level)"
             " VALUES ('%s', '%s', %lld, %lld, %d) RETURNING 1",
             player, season.id, (long long)xp, (long long)xp,
             (int)bp_level_for_xp(&season, xp).level);
    return it_sql_int(&env, sql) == 1 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = it_daemon_down(&daemon_pid) ? 0 : -1;
    if (db)
        PQfinish(db);
    free(player_token);
    free(service_token);
    free(admin_token);
    bp_season_fini(&season);
    return rc;
}

/* Bodies nested one level too deep, on every route that reads a body; each would
 * otherwise succeed (or be refused for another reason). */
static void test_depth(void **state)
{
    (void)state;
    skip_without_services();
    char claim[64];
    snprintf(claim, sizeof(claim), "{\"level\":%d,\"tier\":\"free\",\"x\":", LEVEL);
    static const struct {
        const char *name, *method, *path;
        char **token;
        const char *head; /* the members before the deep one, ending with its name */
    } routes[] = {
        {"claim", "POST", "/rewards/{p}/claim", &player_token, NULL},
        {"level purchase", "POST", "/progress/{p}/levels", &service_token,
         "{\"count\":1,\"transactionId\":\"lim-depth-1\",\"x\":"},
        {"premium", "POST", "/premium/{p}", &service_token,
         "{\"transactionId\":\"lim-depth-2\",\"source\":\"purchase\",\"x\":"},
        {"XP grant", "POST", "/progress/{p}/xp", &service_token,
         "{\"amount\":5,\"reason\":\"r\",\"metadata\":"},
        {"season create", "POST", "/seasons", &admin_token, "{\"x\":"},
        {"season patch", "PATCH", "/seasons/{s}", &admin_token, "{\"name\":\"renamed\",\"x\":"},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const char *head = routes[i].head ? routes[i].head : claim;
        /* DEPTH_MAX objects inside the body object: one level too many. */
        char *objects = nest(head, "{\"x\":", "}", DEPTH_MAX, "}");
        char *arrays = nest(head, "[", "]", 3000, "}");
        char name[96];
        snprintf(name, sizeof(name), "%s, %d levels", routes[i].name, DEPTH_MAX + 1);
        bad_t b = {name,           routes[i].method,
                   routes[i].path, routes[i].token,
                   objects,        400,
                   "invalid-body", "deeper than 16 levels|x.x.x"};
        if (strstr(head, "metadata"))
            b.words = "deeper than 16 levels|metadata.x";
        refuse(&b);
        snprintf(name, sizeof(name), "%s, 3001 levels of arrays", routes[i].name);
        b.body = arrays;
        b.words = "deeper than 16 levels";
        refuse(&b);
        free(objects);
        free(arrays);
    }
    /* At the limit the body is read: the claim goes through. */
    char *ok = nest(claim, "{\"x\":", "}", DEPTH_MAX - 1, "}");
    char path[128], out[4096];
    snprintf(path, sizeof(path), "/rewards/%s/claim", player);
    int st = it_http(HTTP_PORT, "POST", path, player_token, NULL, ok, out, sizeof(out), NULL, 0);
    if (st != 200)
        fail_msg("claim nested %d levels: %d %s", DEPTH_MAX, st, out);
    free(ok);
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM reward_claims WHERE player_id = '%s'", player);
    assert_int_equal(it_sql_int(&env, sql), 1);
    /* The relay deletes the claim's outbox row whenever it gets to it: seconds later when the
     * worker is busy (a fresh group replays the shared topic, whose LevelUps queue before
     * it). The tests after this one compare the player's outbox rows around each request. */
    outbox_drained();
}

/** Send @p head then @p body_len bytes of body as @p chunked or with Content-Length; read
 *  the answer into @p out, its headers into @p headers. @return the status or -1. */
static int send_large(const char *path, bool chunked, size_t body_len, char *out, size_t out_len,
                      char *headers, size_t headers_len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(HTTP_PORT)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char head[2048];
    int n = snprintf(head, sizeof(head),
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nConnection: close\r\n",
                     path, player_token);
    if (chunked)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Transfer-Encoding: chunked\r\n\r\n");
    else
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n\r\n", body_len);
    assert_true(write(fd, head, (size_t)n) == n);
    if (chunked) { /* a JSON string in 4 KiB chunks: the size is known only as it comes */
        char chunk[4096 + 16];
        for (size_t sent = 0; sent < body_len; sent += 4096) {
            int m = snprintf(chunk, sizeof(chunk), "1000\r\n");
            memset(chunk + m, sent == 0 ? '"' : 'a', 4096);
            memcpy(chunk + m + 4096, "\r\n", 2);
            if (write(fd, chunk, (size_t)m + 4098) != m + 4098)
                break; /* the server may answer and close before the end */
        }
        if (write(fd, "0\r\n\r\n", 5) != 5) {
            /* answered already */
        }
    }
    /* With Content-Length over the limit the server answers before the body: none sent. */
    int status = it_http_read(fd, out, out_len, headers, headers_len);
    close(fd);
    return status;
}

/* Bodies over 64 KiB: 413, announced by Content-Length or found while reading chunks. */
static void test_body_size(void **state)
{
    (void)state;
    skip_without_services();
    char path[128], out[4096], headers[4096];
    snprintf(path, sizeof(path), "/rewards/%s/claim", player);
    for (int chunked = 0; chunked <= 1; chunked++) {
        const char *what = chunked ? "chunked body over 64 KiB" : "Content-Length over 64 KiB";
        snapshot_t before = {0};
        snapshot_take(&before);
        int st = send_large(path, chunked, BODY_LIMIT + 4096, out, sizeof(out), headers,
                            sizeof(headers));
        check_problem(what, st, 413, headers, out, "body-too-large", "65536");
        assert_unchanged(what, &before);
        snapshot_fini(&before);
    }
    /* A body of exactly the limit is read (and refused for what it says). */
    char *big = malloc(BODY_LIMIT + 1);
    assert_non_null(big);
    int n = snprintf(big, BODY_LIMIT + 1, "{\"level\":%d,\"tier\":\"gold\",\"pad\":\"", LEVEL);
    memset(big + n, 'a', (size_t)(BODY_LIMIT - n - 2));
    memcpy(big + BODY_LIMIT - 2, "\"}", 3);
    assert_int_equal(strlen(big), BODY_LIMIT);
    bad_t b = {"body of exactly 64 KiB", "POST", "/rewards/{p}/claim", &player_token, big, 400,
               "invalid-body",           "tier"};
    refuse(&b);
    free(big);
}

/* Numbers and types of every numeric body member, query numbers, duplicate keys, path
 * parameters. */
static void test_values(void **state)
{
    (void)state;
    skip_without_services();
    /* Each numeric member of the bodies, with every kind of bad value. */
    static const struct {
        const char *member, *method, *path;
        char **token;
        const char *head, *tail; /* the body around the value */
        const char *rule;        /* in the detail when the value is JSON but breaks the rule */
    } members[] = {
        {"level", "POST", "/rewards/{p}/claim", &player_token, "{\"level\":", ",\"tier\":\"free\"}",
         "level must be an integer from 1 to 10000"},
        {"count", "POST", "/progress/{p}/levels", &service_token, "{\"count\":",
         ",\"transactionId\":\"lim-values\"}", "count must be an integer from 1 to 10000"},
        {"amount", "POST", "/progress/{p}/xp", &service_token, "{\"amount\":", ",\"reason\":\"r\"}",
         "amount must be an integer from 1 to 1000000"},
    };
    static const struct {
        const char *value;
        bool unrepresentable; /* refused while parsing the JSON: named with the value */
    } values[] = {
        {"0", false},
        {"-1", false},
        {"10000001", false},
        {"2147483648", false},
        {"-2147483649", false},
        {"9223372036854775807", false},
        {"1.5", false},
        {"10.0", false},
        {"1e1", false},
        {"-0", false},
        {"\"10\"", false},
        {"true", false},
        {"null", false},
        {"[10]", false},
        {"{\"v\":10}", false},
        {"9223372036854775808", true},
        {"-9223372036854775809", true},
        {"18446744073709551616", true},
        {"1e400", true},
        {"-1e400", true},
        {"123456789012345678901234567890", true},
    };
    for (size_t m = 0; m < sizeof(members) / sizeof(members[0]); m++)
        for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
            char body[256], name[128], words[128];
            snprintf(body, sizeof(body), "%s%s%s", members[m].head, values[v].value,
                     members[m].tail);
            snprintf(name, sizeof(name), "%s = %s", members[m].member, values[v].value);
            if (values[v].unrepresentable)
                snprintf(words, sizeof(words), "%s: %s is out of range", members[m].member,
                         values[v].value);
            else
                snprintf(words, sizeof(words), "%s", members[m].rule);
            bad_t b = {name,
                       members[m].method,
                       members[m].path,
                       members[m].token,
                       body,
                       400,
                       "invalid-body",
                       words};
            refuse(&b);
        }

    const bad_t others[] = {
        /* duplicate keys (checked by jansson; the later value would otherwise win) */
        {"duplicate level", "POST", "/rewards/{p}/claim", &player_token,
         "{\"level\":99,\"level\":10,\"tier\":\"free\"}", 400, "invalid-body", "duplicate"},
        {"duplicate nested key", "POST", "/progress/{p}/xp", &service_token,
         "{\"amount\":5,\"reason\":\"r\",\"metadata\":{\"a\":\"1\",\"a\":\"2\"}}", 400,
         "invalid-body", "duplicate"},
        /* season documents: numbers beyond JSON's range are 400 and named with their path;
         * numbers in range but against the season's rules are 422 invalid-season */
        {"season maxLevel 1e400", "POST", "/seasons", &admin_token, "{\"maxLevel\":1e400}", 400,
         "invalid-body", "maxLevel: 1e400 is out of range"},
        {"season xpTotal 2^63", "POST", "/seasons", &admin_token,
         "{\"levels\":[{\"level\":1,\"xpTotal\":0},{\"level\":2,\"xpTotal\":9223372036854775808}]}",
         400, "invalid-body", "levels[1].xpTotal: 9223372036854775808 is out of range"},
        {"patch claimWindowHours 2^64", "PATCH", "/seasons/{s}", &admin_token,
         "{\"claimWindowHours\":18446744073709551616}", 400, "invalid-body",
         "claimWindowHours: 18446744073709551616 is out of range"},
        {"patch claimWindowHours 8761", "PATCH", "/seasons/{s}", &admin_token,
         "{\"claimWindowHours\":8761}", 422, "invalid-season", "claimWindowHours"},
        {"patch maxLevel 1.5", "PATCH", "/seasons/{s}", &admin_token, "{\"maxLevel\":1.5}", 422,
         "invalid-season", "maxLevel"},
        {"patch dailyXpCap -1", "PATCH", "/seasons/{s}", &admin_token, "{\"dailyXpCap\":-1}", 422,
         "invalid-season", "dailyXpCap"},
        /* query numbers */
        {"history limit=0", "GET", "/progress/{p}/history?limit=0", &service_token, NULL, 400,
         "invalid-parameter", "limit must be an integer from 1 to 100"},
        {"history limit=101", "GET", "/progress/{p}/history?limit=101", &service_token, NULL, 400,
         "invalid-parameter", "limit"},
        {"history limit=1e2", "GET", "/progress/{p}/history?limit=1e2", &service_token, NULL, 400,
         "invalid-parameter", "limit"},
        {"history limit=2.0", "GET", "/progress/{p}/history?limit=2.0", &service_token, NULL, 400,
         "invalid-parameter", "limit"},
        {"history limit=-5", "GET", "/progress/{p}/history?limit=-5", &service_token, NULL, 400,
         "invalid-parameter", "limit"},
        {"history limit=2^64", "GET", "/progress/{p}/history?limit=18446744073709551616",
         &service_token, NULL, 400, "invalid-parameter", "limit"},
        {"history cursor=2^63", "GET", "/progress/{p}/history?cursor=9223372036854775808",
         &service_token, NULL, 400, "invalid-parameter", "cursor"},
        {"history cursor=1e400", "GET", "/progress/{p}/history?cursor=1e400", &service_token, NULL,
         400, "invalid-parameter", "cursor"},
        {"audit limit=201", "GET", "/audit?limit=201", &admin_token, NULL, 400, "invalid-parameter",
         "limit must be an integer from 1 to 200"},
        {"audit limit=0x10", "GET", "/audit?limit=0x10", &admin_token, NULL, 400,
         "invalid-parameter", "limit"},
        {"audit cursor=-1", "GET", "/audit?cursor=-1", &admin_token, NULL, 400, "invalid-parameter",
         "cursor"},
        /* path parameters (checked by the router before any handler) */
        {"player id with $", "POST", "/rewards/bad$id/claim", &service_token,
         "{\"level\":10,\"tier\":\"free\"}", 400, "invalid-parameter", "playerId"},
        {"player id of 65 characters", "POST",
         "/progress/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/levels",
         &service_token, "{\"count\":1,\"transactionId\":\"lim-path\"}", 400, "invalid-parameter",
         "playerId"},
        {"season id with a space", "PATCH", "/seasons/a%20b", &admin_token, "{\"name\":\"x\"}", 400,
         "invalid-parameter", "seasonId"},
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        refuse(&others[i]);
}

/* None of the refused XP grants reached the worker: a valid grant for the same player (the
 * same partition, so behind every earlier one) is the only event applied. */
static void test_no_refused_grant_applied(void **state)
{
    (void)state;
    skip_without_services();
    char path[128], out[4096], sql[512], key[128];
    /* The topic outlives this test's database: the id is this run's own. */
    snprintf(path, sizeof(path), "/progress/%s/xp", player);
    snprintf(key, sizeof(key), "Idempotency-Key: %s-sentinel", player);
    int st = it_http(HTTP_PORT, "POST", path, service_token, key,
                     "{\"amount\":1,\"reason\":\"sentinel\"}", out, sizeof(out), NULL, 0);
    if (st != 202)
        fail_msg("sentinel grant: %d %s", st, out);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM processed_events WHERE event_id = '%s-sentinel'", player);
    long long seen = 0;
    for (int waited = 0; waited < WAIT_MS && seen == 0; waited += 100) {
        seen = it_sql_int(&env, sql);
        if (seen == 0)
            usleep(100000);
    }
    assert_int_equal(seen, 1);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM processed_events WHERE player_id = '%s'",
             player);
    assert_int_equal(it_sql_int(&env, sql), 1);
    snprintf(sql, sizeof(sql),
             "SELECT total_xp FROM player_progress WHERE player_id = '%s' AND season_id = '%s'",
             player, season.id);
    assert_int_equal(it_sql_int(&env, sql), season.xp_total[LEVEL] + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_body_size),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_no_refused_grant_applied),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
