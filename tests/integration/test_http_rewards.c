/** @file The reward and premium routes against a real battlepassd, PostgreSQL, Redis and
 *  devbroker: reward states, claims and their refusals, body validation, access rules,
 *  premium grants (new, replayed, conflicting), claim-all, 50 concurrent claims of one
 *  reward (exactly one wins, one RewardGrant event) and claims after the season ended. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "core/level.h"
#include "tests/integration/support.h"

#define HTTP_PORT 23184
#define CONCURRENT 50
#define BODY_MAX (1 << 16)

static it_env_t env;
static bp_season_t season;
static pid_t daemon_pid = -1;
static char prefix[32];
static char *service_token;
static char *admin_token;

static void skip_without_services(void)
{
    if (!env.bootstrap)
        skip();
}

static void player_name(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s%s", prefix, name);
}

/* Give @p player @p total_xp (all earned) in the season, straight in PostgreSQL: the reward
 * routes read progress from there, not from the cache. A connection of its own: one test
 * cuts the database's connections. */
static void set_xp(const char *player, int64_t total_xp)
{
    PGconn *db = it_pg_connect(&env);
    assert_non_null(db);
    it_progress_set(db, &season, player, total_xp, 0);
    PQfinish(db);
}

/* One request; @return the status, the body parsed into *out (NULL when not JSON). */
static int call(const char *method, const char *path, const char *token, const char *body,
                json_t **out)
{
    static char text[BODY_MAX];
    int status = it_http(HTTP_PORT, method, path, token, NULL, body, text, sizeof(text), NULL, 0);
    if (out)
        *out = json_loads(text, 0, NULL);
    return status;
}

/* Assert a problem+json answer of @p status whose type ends with @p slug; when @p word is
 * not NULL the detail must mention it. */
static void expect_problem(const char *what, int status, json_t **op, int want, const char *slug,
                           const char *word)
{
    json_t *o = *op;
    if (status != want || !o)
        fprintf(stderr, "%s: got %d want %d\n", what, status, want);
    assert_int_equal(status, want);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "status")), want);
    const char *type = json_string_value(json_object_get(o, "type"));
    assert_non_null(type);
    size_t tl = strlen(type), sl = strlen(slug);
    if (tl < sl || strcmp(type + tl - sl, slug) != 0)
        fprintf(stderr, "%s: type %s, want slug %s\n", what, type, slug);
    assert_true(tl >= sl && strcmp(type + tl - sl, slug) == 0);
    if (word) {
        const char *detail = json_string_value(json_object_get(o, "detail"));
        if (!detail || !strstr(detail, word))
            fprintf(stderr, "%s: detail '%s' does not name '%s'\n", what,
                    detail ? detail : "(none)", word);
        assert_non_null(detail);
        assert_non_null(strstr(detail, word));
    }
    json_decref(o);
    *op = NULL;
}

static int claim(const char *player, const char *token, int level, const char *tier, json_t **out)
{
    char path[128], body[96];
    snprintf(path, sizeof(path), "/rewards/%s/claim", player);
    snprintf(body, sizeof(body), "{\"level\":%d,\"tier\":\"%s\"}", level, tier);
    return call("POST", path, token, body, out);
}

static int premium(const char *player, const char *token, const char *body, json_t **out)
{
    char path[128];
    snprintf(path, sizeof(path), "/premium/%s", player);
    return call("POST", path, token, body, out);
}

/* The state of reward (level, tier) in a GET /rewards answer, or NULL. */
static const char *state_of(json_t *o, int level, const char *tier)
{
    json_t *arr = json_object_get(o, "rewards"), *r;
    size_t i;
    json_array_foreach(arr, i, r)
    {
        if (json_integer_value(json_object_get(r, "level")) == level &&
            strcmp(json_string_value(json_object_get(r, "tier")), tier) == 0)
            return json_string_value(json_object_get(r, "state"));
    }
    return NULL;
}

/* GET /rewards/{player} as the service; checks the shape. @return the parsed answer. */
static json_t *get_rewards(const char *player)
{
    char path[128];
    json_t *o;
    snprintf(path, sizeof(path), "/rewards/%s", player);
    assert_int_equal(call("GET", path, service_token, NULL, &o), 200);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "playerId")), player);
    assert_string_equal(json_string_value(json_object_get(o, "seasonId")), season.id);
    assert_int_equal(json_array_size(json_object_get(o, "rewards")), season.n_rewards);
    json_t *r;
    size_t i;
    json_array_foreach(json_object_get(o, "rewards"), i, r)
    {
        const bp_reward_t *want = &season.rewards[i];
        assert_int_equal(json_integer_value(json_object_get(r, "level")), want->level);
        assert_string_equal(json_string_value(json_object_get(r, "rewardId")), want->reward_id);
        assert_string_equal(json_string_value(json_object_get(r, "itemId")), want->item_id);
        assert_int_equal(json_integer_value(json_object_get(r, "quantity")), want->quantity);
        if (want->asset_url[0])
            assert_string_equal(json_string_value(json_object_get(r, "assetUrl")), want->asset_url);
        else
            assert_null(json_object_get(r, "assetUrl"));
    }
    return o;
}

static bool progress_premium(const char *player)
{
    char path[128];
    json_t *o;
    snprintf(path, sizeof(path), "/progress/%s", player);
    assert_int_equal(call("GET", path, service_token, NULL, &o), 200);
    bool p = json_is_true(json_object_get(o, "premium"));
    json_decref(o);
    return p;
}

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "http_rewards", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/schemas/seasons/sample-season.json", env.source_dir);
    if (!it_season_load(path, &season) || !it_db_prepare(&env, path))
        return -1;
    srand((unsigned)(getpid() ^ it_now_ms()));
    snprintf(prefix, sizeof(prefix), "hr%d-%04x-", (int)getpid(), (unsigned)rand() & 0xffff);
    char group[64];
    snprintf(group, sizeof(group), "it-http-rewards-%d", (int)getpid());
    daemon_pid = it_daemon_up(&env, group, NULL, "http-rewards-daemon.log");
    if (daemon_pid < 0)
        return -1;
    service_token = it_jwt(env.secret, "economy-service", "service", 600);
    admin_token = it_jwt(env.secret, "ops", "admin", 600);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (!it_daemon_down(&daemon_pid))
        rc = -1;
    free(service_token);
    free(admin_token);
    bp_season_fini(&season);
    return rc;
}

typedef struct {
    const char *name;
    const char *method;
    const char *base; /* the path is base + player + suffix */
    const char *suffix;
    const char *body;
    int token; /* 0 none, 1 the player, 2 another player, 3 service, 4 admin */
    int want;
    const char *slug; /* for errors */
} access_case_t;

static void test_access(void **state)
{
    (void)state;
    skip_without_services();
    char me[64], other[64];
    player_name(me, sizeof(me), "access");
    player_name(other, sizeof(other), "access-other");
    char *mine = it_jwt(env.secret, me, "player", 600);
    char *theirs = it_jwt(env.secret, other, "player", 600);
    const char *claim1 = "{\"level\":1,\"tier\":\"free\"}";
    const char *prem = "{\"transactionId\":\"tx-access\",\"source\":\"store\"}";
    const access_case_t cases[] = {
        {"read without token", "GET", "/rewards/", "", NULL, 0, 401, "token-missing"},
        {"read own", "GET", "/rewards/", "", NULL, 1, 200, NULL},
        {"read another's", "GET", "/rewards/", "", NULL, 2, 403, "forbidden"},
        {"service reads", "GET", "/rewards/", "", NULL, 3, 200, NULL},
        {"admin reads", "GET", "/rewards/", "", NULL, 4, 200, NULL},
        {"claim without token", "POST", "/rewards/", "/claim", claim1, 0, 401, "token-missing"},
        {"claim for another", "POST", "/rewards/", "/claim", claim1, 2, 403, "forbidden"},
        {"admin claims", "POST", "/rewards/", "/claim", claim1, 4, 403, "forbidden"},
        {"claim-all for another", "POST", "/rewards/", "/claim-all", NULL, 2, 403, "forbidden"},
        {"admin claims all", "POST", "/rewards/", "/claim-all", NULL, 4, 403, "forbidden"},
        {"claim own", "POST", "/rewards/", "/claim", claim1, 1, 200, NULL},
        {"premium without token", "POST", "/premium/", "", prem, 0, 401, "token-missing"},
        {"player buys own premium", "POST", "/premium/", "", prem, 1, 403, "forbidden"},
        {"premium GET", "GET", "/premium/", "", NULL, 3, 405, "method-not-allowed"},
        {"claim GET", "GET", "/rewards/", "/claim", NULL, 3, 405, "method-not-allowed"},
        {"admin grants premium", "POST", "/premium/", "", prem, 4, 201, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const access_case_t *c = &cases[i];
        const char *tokens[] = {NULL, mine, theirs, service_token, admin_token};
        char path[128];
        json_t *o;
        snprintf(path, sizeof(path), "%s%s%s", c->base, me, c->suffix);
        int st = call(c->method, path, tokens[c->token], c->body, &o);
        if (c->slug)
            expect_problem(c->name, st, &o, c->want, c->slug, NULL);
        else {
            if (st != c->want)
                fprintf(stderr, "%s: got %d want %d\n", c->name, st, c->want);
            assert_int_equal(st, c->want);
        }
        json_decref(o);
    }
    free(mine);
    free(theirs);
}

static void test_claims(void **state)
{
    (void)state;
    skip_without_services();
    char p[64];
    json_t *o;
    player_name(p, sizeof(p), "claims");
    char *token = it_jwt(env.secret, p, "player", 600);

    /* A new player: level 1, its free reward available, everything else locked. */
    o = get_rewards(p);
    assert_int_equal(json_integer_value(json_object_get(o, "currentLevel")), 1);
    assert_true(json_is_false(json_object_get(o, "premium")));
    assert_string_equal(state_of(o, 1, "free"), "available");
    assert_string_equal(state_of(o, 1, "premium"), "locked");
    assert_string_equal(state_of(o, 2, "free"), "locked");
    json_decref(o);

    set_xp(p, 2100); /* level 3 */
    o = get_rewards(p);
    assert_int_equal(json_integer_value(json_object_get(o, "currentLevel")), 3);
    for (int lv = 1; lv <= 3; lv++)
        assert_string_equal(state_of(o, lv, "free"), "available");
    assert_string_equal(state_of(o, 2, "premium"), "locked");
    assert_string_equal(state_of(o, 4, "free"), "locked");
    json_decref(o);

    /* Claim: 200 with the grant, then 409. */
    assert_int_equal(claim(p, token, 2, "free", &o), 200);
    assert_string_equal(json_string_value(json_object_get(o, "playerId")), p);
    assert_string_equal(json_string_value(json_object_get(o, "seasonId")), season.id);
    assert_int_equal(json_integer_value(json_object_get(o, "level")), 2);
    assert_string_equal(json_string_value(json_object_get(o, "tier")), "free");
    json_t *grants = json_object_get(o, "grants");
    assert_int_equal(json_array_size(grants), 1);
    json_t *g = json_array_get(grants, 0);
    assert_string_equal(json_string_value(json_object_get(g, "rewardId")), "reward-002-free");
    assert_string_equal(json_string_value(json_object_get(g, "itemId")), "currency.coins");
    assert_int_equal(json_integer_value(json_object_get(g, "quantity")), 100);
    assert_non_null(strstr(json_string_value(json_object_get(g, "grantId")), p));
    assert_non_null(json_string_value(json_object_get(g, "grantedAt")));
    json_decref(o);
    o = NULL;
    expect_problem("claim again", claim(p, token, 2, "free", &o), &o, 409, "already-claimed", NULL);

    /* Refusals. */
    expect_problem("above level", claim(p, token, 5, "free", &o), &o, 422, "level-not-reached",
                   NULL);
    expect_problem("premium tier", claim(p, token, 2, "premium", &o), &o, 403, "premium-required",
                   NULL);
    expect_problem("no premium at 3", claim(p, token, 3, "premium", &o), &o, 404, "no-such-reward",
                   NULL);
    expect_problem("past max level", claim(p, token, season.max_level + 1, "free", &o), &o, 404,
                   "no-such-reward", NULL);

    o = get_rewards(p);
    assert_string_equal(state_of(o, 2, "free"), "claimed");
    assert_string_equal(state_of(o, 1, "free"), "available");
    json_decref(o);

    /* Premium unlocks the premium tier of every level reached. */
    assert_int_equal(
        premium(p, service_token, "{\"transactionId\":\"tx-claims\",\"source\":\"store\"}", &o),
        201);
    json_decref(o);
    o = get_rewards(p);
    assert_true(json_is_true(json_object_get(o, "premium")));
    assert_string_equal(state_of(o, 1, "premium"), "available");
    assert_string_equal(state_of(o, 2, "premium"), "available");
    assert_string_equal(state_of(o, 4, "premium"), "locked");
    json_decref(o);
    assert_int_equal(claim(p, token, 2, "premium", &o), 200);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(o, "grants"), 0), "rewardId")),
                        "reward-002-premium");
    json_decref(o);

    /* Claim-all: what is left below level 3 (1 free, 1 premium, 3 free), then nothing. */
    char path[128];
    snprintf(path, sizeof(path), "/rewards/%s/claim-all", p);
    assert_int_equal(call("POST", path, token, NULL, &o), 200);
    assert_string_equal(json_string_value(json_object_get(o, "playerId")), p);
    assert_string_equal(json_string_value(json_object_get(o, "seasonId")), season.id);
    grants = json_object_get(o, "grants");
    assert_int_equal(json_array_size(grants), 3);
    const char *want_ids[] = {"reward-001-free", "reward-001-premium", "reward-003-free"};
    for (size_t i = 0; i < 3; i++) {
        bool found = false;
        for (size_t k = 0; k < 3; k++)
            found |=
                strcmp(json_string_value(json_object_get(json_array_get(grants, k), "rewardId")),
                       want_ids[i]) == 0;
        assert_true(found);
    }
    json_decref(o);
    assert_int_equal(call("POST", path, service_token, "{}", &o), 200);
    assert_int_equal(json_array_size(json_object_get(o, "grants")), 0);
    json_decref(o);

    o = get_rewards(p);
    for (int lv = 1; lv <= 3; lv++)
        assert_string_equal(state_of(o, lv, "free"), "claimed");
    assert_string_equal(state_of(o, 1, "premium"), "claimed");
    assert_string_equal(state_of(o, 2, "premium"), "claimed");
    assert_string_equal(state_of(o, 4, "free"), "locked");
    json_decref(o);

    /* Every claim left an audit row. */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM audit_log WHERE player_id = '%s' AND action = 'claim'"
             " AND actor = '%s'",
             p, p);
    assert_int_equal(it_sql_int(&env, sql), 5);
    free(token);
}

typedef struct {
    const char *name;
    const char *body; /* NULL: no body */
    const char *word; /* the detail names it */
} bad_body_t;

static void test_bad_bodies(void **state)
{
    (void)state;
    skip_without_services();
    char p[64], path[128];
    player_name(p, sizeof(p), "bodies");
    const bad_body_t claims[] = {
        {"no body", NULL, "body"},
        {"not JSON", "{\"level\":1,", "JSON"},
        {"not an object", "[1, \"free\"]", "object"},
        {"duplicate keys", "{\"level\":1,\"level\":2,\"tier\":\"free\"}", "JSON"},
        {"missing level", "{\"tier\":\"free\"}", "level"},
        {"missing tier", "{\"level\":1}", "tier"},
        {"tier gold", "{\"level\":1,\"tier\":\"gold\"}", "tier"},
        {"tier number", "{\"level\":1,\"tier\":1}", "tier"},
        {"level string", "{\"level\":\"x\",\"tier\":\"free\"}", "level"},
        {"level numeric string", "{\"level\":\"1\",\"tier\":\"free\"}", "level"},
        {"level fraction", "{\"level\":1.5,\"tier\":\"free\"}", "level"},
        {"level zero", "{\"level\":0,\"tier\":\"free\"}", "level"},
        {"level too high", "{\"level\":10001,\"tier\":\"free\"}", "level"},
        {"level null", "{\"level\":null,\"tier\":\"free\"}", "level"},
    };
    snprintf(path, sizeof(path), "/rewards/%s/claim", p);
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        json_t *o;
        int st = call("POST", path, service_token, claims[i].body, &o);
        expect_problem(claims[i].name, st, &o, 400, "invalid-body", claims[i].word);
    }

    char long_source[80];
    memset(long_source, 'a', 65);
    long_source[65] = '\0';
    char long_body[160];
    snprintf(long_body, sizeof(long_body), "{\"transactionId\":\"t1\",\"source\":\"%s\"}",
             long_source);
    const bad_body_t prem[] = {
        {"no body", NULL, "body"},
        {"not JSON", "transactionId=1", "JSON"},
        {"missing transactionId", "{\"source\":\"store\"}", "transactionId"},
        {"missing source", "{\"transactionId\":\"t1\"}", "source"},
        {"transactionId number", "{\"transactionId\":1,\"source\":\"store\"}", "transactionId"},
        {"transactionId with space", "{\"transactionId\":\"t 1\",\"source\":\"store\"}",
         "transactionId"},
        {"empty source", "{\"transactionId\":\"t1\",\"source\":\"\"}", "source"},
        {"source too long", long_body, "source"},
        {"source control char", "{\"transactionId\":\"t1\",\"source\":\"a\\u0001b\"}", "source"},
        {"seasonId number", "{\"seasonId\":5,\"transactionId\":\"t1\",\"source\":\"store\"}",
         "seasonId"},
        {"seasonId invalid", "{\"seasonId\":\"a/b\",\"transactionId\":\"t1\",\"source\":\"s\"}",
         "seasonId"},
    };
    snprintf(path, sizeof(path), "/premium/%s", p);
    for (size_t i = 0; i < sizeof(prem) / sizeof(prem[0]); i++) {
        json_t *o;
        int st = call("POST", path, service_token, prem[i].body, &o);
        expect_problem(prem[i].name, st, &o, 400, "invalid-body", prem[i].word);
    }
    /* Nothing of the above reached the database. */
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM premium_grants WHERE player_id = '%s'", p);
    assert_int_equal(it_sql_int(&env, sql), 0);
}

static void test_premium(void **state)
{
    (void)state;
    skip_without_services();
    char p[64], q[64], body[256], tx[64];
    json_t *o;
    player_name(p, sizeof(p), "premium");
    player_name(q, sizeof(q), "premium-other");
    snprintf(tx, sizeof(tx), "%stx-1", prefix);

    /* Cached first (premium false), so the grant must heal the cache. */
    assert_false(progress_premium(p));
    assert_false(progress_premium(p));

    snprintf(body, sizeof(body), "{\"transactionId\":\"%s\",\"source\":\"shop:web\"}", tx);
    assert_int_equal(premium(p, service_token, body, &o), 201);
    assert_string_equal(json_string_value(json_object_get(o, "playerId")), p);
    assert_string_equal(json_string_value(json_object_get(o, "seasonId")), season.id);
    assert_string_equal(json_string_value(json_object_get(o, "transactionId")), tx);
    assert_true(json_is_true(json_object_get(o, "premium")));
    assert_true(json_is_array(json_object_get(o, "grants")));
    json_decref(o);
    assert_true(progress_premium(p));

    /* Replay: 200, same shape, nothing new. */
    assert_int_equal(premium(p, service_token, body, &o), 200);
    assert_string_equal(json_string_value(json_object_get(o, "transactionId")), tx);
    assert_true(json_is_true(json_object_get(o, "premium")));
    assert_int_equal(json_array_size(json_object_get(o, "grants")), 0);
    json_decref(o);
    /* With the season named explicitly, it is the same grant. */
    snprintf(body, sizeof(body),
             "{\"seasonId\":\"%s\",\"transactionId\":\"%s\",\"source\":\"shop:web\"}", season.id,
             tx);
    assert_int_equal(premium(p, admin_token, body, &o), 200);
    json_decref(o);

    /* The same transaction for another player: conflict, and q stays without premium. */
    assert_int_equal(premium(q, service_token, body, &o), 409);
    expect_problem("conflict", 409, &o, 409, "transaction-conflict", tx);
    assert_false(progress_premium(q));

    /* Unknown season. */
    snprintf(body, sizeof(body),
             "{\"seasonId\":\"no-such-season\",\"transactionId\":\"%stx-2\",\"source\":\"s\"}",
             prefix);
    int st = premium(q, service_token, body, &o);
    expect_problem("unknown season", st, &o, 404, "season-not-found", "no-such-season");

    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM premium_grants WHERE transaction_id LIKE '%s%%'", prefix);
    assert_int_equal(it_sql_int(&env, sql), 1);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM audit_log WHERE player_id = '%s' AND action = 'premium-grant'"
             " AND actor = 'economy-service'",
             p);
    assert_int_equal(it_sql_int(&env, sql), 1);
}

typedef struct {
    const char *player;
    const char *token;
    pthread_barrier_t *start;
    int status;
} racer_t;

static void *racer(void *arg)
{
    racer_t *r = arg;
    pthread_barrier_wait(r->start);
    char out[1024];
    r->status = it_claim_http(HTTP_PORT, r->player, r->token, 10, "free", out, sizeof(out));
    return NULL;
}

static void test_concurrent_claims(void **state)
{
    (void)state;
    skip_without_services();
    char p[64];
    player_name(p, sizeof(p), "race");
    set_xp(p, 10800); /* exactly level 10 */
    char *token = it_jwt(env.secret, p, "player", 600);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, CONCURRENT);
    racer_t racers[CONCURRENT];
    pthread_t th[CONCURRENT];
    for (int i = 0; i < CONCURRENT; i++) {
        /* Half as the player, half as a service: both may claim. */
        racers[i] = (racer_t){p, i % 2 ? token : service_token, &start, 0};
        assert_int_equal(pthread_create(&th[i], NULL, racer, &racers[i]), 0);
    }
    int ok = 0, conflict = 0;
    for (int i = 0; i < CONCURRENT; i++) {
        pthread_join(th[i], NULL);
        ok += racers[i].status == 200;
        conflict += racers[i].status == 409;
        if (racers[i].status != 200 && racers[i].status != 409)
            fprintf(stderr, "racer %d: status %d\n", i, racers[i].status);
    }
    pthread_barrier_destroy(&start);
    printf("concurrent claims: %d x 200, %d x 409\n", ok, conflict);
    assert_int_equal(ok, 1);
    assert_int_equal(conflict, CONCURRENT - 1);

    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM reward_claims WHERE player_id = '%s' AND level = 10", p);
    assert_int_equal(it_sql_int(&env, sql), 1);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM audit_log WHERE player_id = '%s' AND action = 'claim'", p);
    assert_int_equal(it_sql_int(&env, sql), 1);

    /* The relay delivers the outbox row as exactly one RewardGrant. */
    json_t *events = it_reward_grants(&env, p, 30000), *o;
    size_t i;
    json_array_foreach(events, i, o)
    {
        assert_string_equal(json_string_value(json_object_get(o, "playerId")), p);
        assert_string_equal(json_string_value(json_object_get(o, "seasonId")), season.id);
        assert_int_equal(json_integer_value(json_object_get(o, "level")), 10);
        assert_string_equal(json_string_value(json_object_get(o, "tier")), "free");
        assert_string_equal(json_string_value(json_object_get(o, "rewardId")), "reward-010-free");
        assert_string_equal(json_string_value(json_object_get(o, "source")), "claim");
    }
    assert_int_equal(json_array_size(events), 1);
    json_decref(events);
    free(token);
}

/* Run @p sql on the server's maintenance database (not the test's). */
static void admin_sql(const char *sql)
{
    PGconn *c = PQconnectdb(env.pg_dsn);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(c);
}

/* The test database refuses connections: every route answers 503 with Retry-After, and
 * works again once it is back. */
static void test_database_down(void **state)
{
    (void)state;
    skip_without_services();
    char p[64], sql[256], headers[4096];
    static char out[BODY_MAX];
    player_name(p, sizeof(p), "dbdown");
    set_xp(p, 2100);
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS false", env.db_name);
    admin_sql(sql);
    snprintf(sql, sizeof(sql),
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'",
             env.db_name);
    admin_sql(sql);
    char rewards[128], claim_path[128], claim_all[128], prem[128];
    snprintf(rewards, sizeof(rewards), "/rewards/%s", p);
    snprintf(claim_path, sizeof(claim_path), "/rewards/%s/claim", p);
    snprintf(claim_all, sizeof(claim_all), "/rewards/%s/claim-all", p);
    snprintf(prem, sizeof(prem), "/premium/%s", p);
    const struct {
        const char *method, *path, *body;
    } reqs[] = {
        {"GET", rewards, NULL},
        {"POST", claim_path, "{\"level\":1,\"tier\":\"free\"}"},
        {"POST", claim_all, NULL},
        {"POST", prem, "{\"transactionId\":\"tx-dbdown\",\"source\":\"s\"}"},
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        int st = it_http(HTTP_PORT, reqs[i].method, reqs[i].path, service_token, NULL, reqs[i].body,
                         out, sizeof(out), headers, sizeof(headers));
        json_t *o = json_loads(out, 0, NULL);
        expect_problem(reqs[i].path, st, &o, 503, "database-unavailable", NULL);
        assert_non_null(strstr(headers, "Retry-After: 1\r\n"));
    }
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS true", env.db_name);
    admin_sql(sql);
    int st = 0;
    for (int waited = 0; waited < 15000 && st != 200; waited += 200) {
        if ((st = call("POST", claim_path, service_token, reqs[1].body, NULL)) != 200)
            usleep(200000);
    }
    assert_int_equal(st, 200);
}

/* End the season now with a claim window of @p window_hours, in PostgreSQL, and wait until
 * the daemon's season snapshot shows it. */
static void end_season(int window_hours)
{
    char sql[768], path[128];
    snprintf(sql, sizeof(sql),
             "WITH u AS (UPDATE seasons SET ends_at = now(), definition = jsonb_set(jsonb_set("
             "definition, '{endsAt}', to_jsonb(to_char(now() AT TIME ZONE 'UTC',"
             " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))), '{claimWindowHours}', to_jsonb(%d))"
             " WHERE id = '%s' RETURNING 1) SELECT count(*) FROM u",
             window_hours, season.id);
    assert_int_equal(it_sql_int(&env, sql), 1);
    snprintf(path, sizeof(path), "/seasons/%s", season.id);
    bool seen = false;
    for (int waited = 0; waited < 15000 && !seen; waited += 200) {
        json_t *o;
        if (call("GET", path, service_token, NULL, &o) == 200) {
            const char *status = json_string_value(json_object_get(o, "status"));
            seen = status && strcmp(status, "ended") == 0 &&
                   json_integer_value(json_object_get(o, "claimWindowHours")) == window_hours;
        }
        json_decref(o);
        if (!seen)
            usleep(200000);
    }
    assert_true(seen);
}

/* Last, since it ends the season: within the claim window rewards are still listed and
 * claimed; once it closed, claims are refused and there is no season to list. */
static void test_after_season_end(void **state)
{
    (void)state;
    skip_without_services();
    char p[64], path[128], all[128], sql[256];
    json_t *o;
    player_name(p, sizeof(p), "late");
    set_xp(p, 2100);
    snprintf(path, sizeof(path), "/rewards/%s", p);
    snprintf(all, sizeof(all), "/rewards/%s/claim-all", p);

    end_season(1);
    o = get_rewards(p);
    assert_string_equal(state_of(o, 1, "free"), "available");
    json_decref(o);
    assert_int_equal(claim(p, service_token, 1, "free", &o), 200);
    json_decref(o);
    expect_problem("above level in window", claim(p, service_token, 4, "free", &o), &o, 422,
                   "level-not-reached", NULL);
    /* Premium needs a current season unless one is named. */
    snprintf(sql, sizeof(sql), "/premium/%s", p);
    expect_problem(
        "premium without season",
        call("POST", sql, service_token, "{\"transactionId\":\"tx-late\",\"source\":\"s\"}", &o),
        &o, 404, "no-current-season", NULL);

    end_season(0);
    expect_problem("rewards after window", call("GET", path, service_token, NULL, &o), &o, 404,
                   "no-current-season", NULL);
    expect_problem("claim after window", claim(p, service_token, 2, "free", &o), &o, 409,
                   "claims-closed", NULL);
    expect_problem("claim-all after window", call("POST", all, service_token, NULL, &o), &o, 409,
                   "claims-closed", NULL);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM reward_claims WHERE player_id = '%s'", p);
    assert_int_equal(it_sql_int(&env, sql), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_access),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_bad_bodies),
        cmocka_unit_test(test_premium),
        cmocka_unit_test(test_concurrent_claims),
        cmocka_unit_test(test_database_down),
        cmocka_unit_test(test_after_season_end),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
