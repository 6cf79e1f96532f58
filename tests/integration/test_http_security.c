/** @file The security matrix against a real battlepassd: every HTTP route × every scope
 *  (none, player self, player other, service, admin) → 401/403 or allowed, and the token
 *  attacks (alg none, RS256/HS256 confusion, tampering, exp/nbf, iss/aud, sub, size) with
 *  HS256 pinned and then with RS256 pinned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <jwt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/support.h"
#include "tests/support_jwt.h"

#define HTTP_PORT 23192
#define ISSUER "bp-it"
#define AUDIENCE "battlepass"
#define PAD_BYTES 9000 /* claims beyond the 8 KiB token limit */

static it_env_t env;
static char season_id[BP_ID_MAX + 1];
static pid_t daemon_pid = -1;
static char self_id[64], other_id[64];
static char *rs_private, *rs_public_path, *other_private;

/* Who may call a route, as the design's route table says (kept apart from the server's own
 * constants on purpose: this is the specification the server is checked against). */
#define W_PUBLIC 0u
#define W_ANY (1u << 0) /* any valid token */
#define W_PLAYER (1u << 1)
#define W_SERVICE (1u << 2)
#define W_ADMIN (1u << 3)

typedef struct {
    const char *method;
    const char *path; /* {p} = player id, {s} = season id */
    const char *body;
    unsigned who;
    int stream; /* answers with an endless event stream when allowed */
} route_t;

/* Every route of http/routes_*.c. Bodies are deliberately incomplete: an allowed call is
 * refused by validation (4xx) and changes nothing; the point is who gets past auth. */
static const route_t routes[] = {
    {"GET", "/health", NULL, W_PUBLIC, 0},
    {"GET", "/ready", NULL, W_PUBLIC, 0},
    {"GET", "/metrics", NULL, W_PUBLIC, 0},
    {"GET", "/openapi.yaml", NULL, W_PUBLIC, 0},
    {"GET", "/seasons", NULL, W_ANY, 0},
    {"POST", "/seasons", "{}", W_ADMIN, 0},
    {"GET", "/seasons/current", NULL, W_ANY, 0},
    {"GET", "/seasons/{s}", NULL, W_ANY, 0},
    {"PATCH", "/seasons/{s}", "{}", W_ADMIN, 0},
    {"GET", "/progress/{p}", NULL, W_PLAYER | W_SERVICE | W_ADMIN, 0},
    {"GET", "/progress/{p}/seasons/{s}", NULL, W_PLAYER | W_SERVICE | W_ADMIN, 0},
    {"GET", "/progress/{p}/history", NULL, W_PLAYER | W_SERVICE | W_ADMIN, 0},
    {"GET", "/progress/{p}/stream", NULL, W_PLAYER | W_SERVICE | W_ADMIN, 1},
    {"POST", "/progress/{p}/xp", "{}", W_SERVICE | W_ADMIN, 0},
    {"POST", "/progress/{p}/levels", "{}", W_SERVICE, 0},
    {"GET", "/rewards/{p}", NULL, W_PLAYER | W_SERVICE | W_ADMIN, 0},
    {"POST", "/rewards/{p}/claim", "{}", W_PLAYER | W_SERVICE, 0},
    {"POST", "/rewards/{p}/claim-all", "{}", W_PLAYER | W_SERVICE, 0},
    {"POST", "/premium/{p}", "{}", W_SERVICE | W_ADMIN, 0},
    {"GET", "/stats/{p}", NULL, W_PLAYER | W_SERVICE | W_ADMIN, 0},
    {"GET", "/analytics/seasons/{s}", NULL, W_ADMIN, 0},
    {"GET", "/audit", NULL, W_ADMIN, 0},
};

typedef enum { S_NONE, S_SELF, S_OTHER, S_SERVICE, S_ADMIN, S_COUNT } scope_t;
static const char *const scope_names[S_COUNT] = {"none", "player self", "player other", "service",
                                                 "admin"};

static void skip_without_services(void)
{
    if (daemon_pid < 0)
        skip();
}

/** @return the contents of @p path, heap (NULL when unreadable). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (buf && n == 0) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

/** Standard claims for @p sub / @p scope valid now, plus @p extra members ("" or ",..."). */
static void claims_std(char *buf, size_t len, const char *sub, const char *scope, const char *extra)
{
    snprintf(buf, len,
             "{\"sub\":\"%s\",\"scope\":\"%s\",\"exp\":%lld,\"iss\":\"" ISSUER
             "\",\"aud\":\"" AUDIENCE "\"%s}",
             sub, scope, (long long)time(NULL) + 300, extra);
}

/** A valid token of scope @p s signed with the pinned algorithm; NULL for S_NONE. */
static char *token_for(scope_t s, jwt_alg_t alg, const char *key)
{
    char c[512];
    switch (s) {
    case S_NONE:
        return NULL;
    case S_SELF:
    case S_OTHER:
        claims_std(c, sizeof(c), self_id, "player", "");
        break;
    case S_SERVICE:
        claims_std(c, sizeof(c), "gameplay", "service", "");
        break;
    default:
        claims_std(c, sizeof(c), "ops", "admin", "");
        break;
    }
    return tjwt_mint(alg, key, c);
}

/** The status line only, for a response that may never end (event streams). */
static int head_status(const char *path, const char *token)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(HTTP_PORT)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    char req[16384];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                     "%s%s%sConnection: close\r\n\r\n",
                     path, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "");
    int status = -1;
    char resp[4096];
    size_t got = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && n > 0 && (size_t)n < sizeof(req) &&
        write(fd, req, (size_t)n) == n) {
        for (ssize_t r;
             got < sizeof(resp) - 1 && (r = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0;) {
            got += (size_t)r;
            resp[got] = '\0';
            if (strstr(resp, "\r\n"))
                break;
        }
        resp[got] = '\0';
        if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
            status = -1;
    }
    close(fd);
    return status;
}

/** Every route × every scope against the running daemon, tokens signed with @p alg/@p key. */
static void route_matrix(jwt_alg_t alg, const char *key)
{
    size_t checked = 0;
    for (size_t r = 0; r < sizeof(routes) / sizeof(routes[0]); r++) {
        const route_t *rt = &routes[r];
        int has_player = strstr(rt->path, "{p}") != NULL;
        for (int s = 0; s < S_COUNT; s++) {
            bool allowed;
            if (rt->who == W_PUBLIC)
                allowed = true;
            else if (s == S_NONE)
                allowed = false;
            else if (rt->who & W_ANY)
                allowed = true;
            else if (s == S_SERVICE)
                allowed = rt->who & W_SERVICE;
            else if (s == S_ADMIN)
                allowed = rt->who & W_ADMIN;
            else
                allowed = (rt->who & W_PLAYER) && (s == S_SELF || !has_player);
            int want = allowed ? 0 : s == S_NONE ? 401 : 403;

            char path[512];
            it_path_expand(path, sizeof(path), rt->path, s == S_OTHER ? other_id : self_id,
                           season_id);
            char *token = token_for((scope_t)s, alg, key);
            static char body[1 << 16];
            body[0] = '\0';
            int status = rt->stream ? head_status(path, token)
                                    : it_http(HTTP_PORT, rt->method, path, token, NULL, rt->body,
                                              body, sizeof(body), NULL, 0);
            bool ok = status > 0 && (want ? status == want : status != 401 && status != 403);
            if (!ok)
                fail_msg("%s %s as %s: got %d, want %s%d: %.300s", rt->method, path, scope_names[s],
                         status, want ? "" : "anything but 401/403, e.g. ", want ? want : 200,
                         body);
            free(token);
            checked++;
        }
    }
    assert_int_equal(checked, S_COUNT * sizeof(routes) / sizeof(routes[0]));
}

typedef struct {
    const char *name;
    char *token; /* owned */
    int want;
} attack_t;

/** The token attacks against GET /progress/{self}. @p pinned/@p key sign the valid tokens;
 *  @p wrong/@p wrong_key is the other algorithm of a confusion attempt. */
static void token_attacks(jwt_alg_t pinned, const char *key, jwt_alg_t wrong, const char *wrong_key,
                          const char *forged_key)
{
    char c[512], path[256], other_path[256];
    long long now = (long long)time(NULL);
    snprintf(path, sizeof(path), "/progress/%s", self_id);
    snprintf(other_path, sizeof(other_path), "/progress/%s", other_id);
    attack_t a[24];
    size_t n = 0;
#define ATTACK(nm, tok, w) a[n++] = (attack_t){nm, tok, w}

    claims_std(c, sizeof(c), self_id, "player", "");
    ATTACK("valid", tjwt_mint(pinned, key, c), 200);
    ATTACK("other algorithm (confusion)", tjwt_mint(wrong, wrong_key, c), 401);
    ATTACK("signed with another key", tjwt_mint(pinned, forged_key, c), 401);
    ATTACK("alg none", tjwt_unsigned("{\"alg\":\"none\",\"typ\":\"JWT\"}", c), 401);
    {
        /* A valid signature over the player's claims, payload swapped for an admin one. */
        char *good = tjwt_mint(pinned, key, c);
        char admin[512];
        claims_std(admin, sizeof(admin), self_id, "admin", "");
        ATTACK("tampered payload", tjwt_swap_payload(good, admin), 401);
        free(good);
    }
    snprintf(c, sizeof(c),
             "{\"sub\":\"%s\",\"scope\":\"player\",\"exp\":%lld,\"iss\":\"" ISSUER
             "\",\"aud\":\"" AUDIENCE "\"}",
             self_id, now - 5);
    ATTACK("expired", tjwt_mint(pinned, key, c), 401);
    snprintf(c, sizeof(c),
             "{\"sub\":\"%s\",\"scope\":\"player\",\"exp\":%lld,\"nbf\":%lld,\"iss\":\"" ISSUER
             "\",\"aud\":\"" AUDIENCE "\"}",
             self_id, now + 600, now + 300);
    ATTACK("not yet valid", tjwt_mint(pinned, key, c), 401);
    snprintf(
        c, sizeof(c),
        "{\"sub\":\"%s\",\"scope\":\"player\",\"exp\":%lld,\"iss\":\"evil\",\"aud\":\"" AUDIENCE
        "\"}",
        self_id, now + 300);
    ATTACK("wrong issuer", tjwt_mint(pinned, key, c), 401);
    snprintf(c, sizeof(c),
             "{\"sub\":\"%s\",\"scope\":\"player\",\"exp\":%lld,\"iss\":\"" ISSUER
             "\",\"aud\":\"someone-else\"}",
             self_id, now + 300);
    ATTACK("wrong audience", tjwt_mint(pinned, key, c), 401);
    snprintf(c, sizeof(c),
             "{\"scope\":\"service\",\"exp\":%lld,\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE "\"}",
             now + 300);
    ATTACK("missing sub", tjwt_mint(pinned, key, c), 401);
    {
        claims_std(c, sizeof(c), self_id, "player", "");
        char *big = tjwt_padded(c, PAD_BYTES);
        ATTACK("oversized (validly signed)", tjwt_mint(pinned, key, big), 401);
        free(big);
    }
#undef ATTACK
    for (size_t i = 0; i < n; i++) {
        static char body[1 << 16];
        int status =
            it_http(HTTP_PORT, "GET", path, a[i].token, NULL, NULL, body, sizeof(body), NULL, 0);
        if (status != a[i].want)
            fail_msg("attack '%s': got %d want %d: %.300s", a[i].name, status, a[i].want, body);
        free(a[i].token);
    }
    /* Another player's data with a valid player token. */
    claims_std(c, sizeof(c), self_id, "player", "");
    char *t = tjwt_mint(pinned, key, c);
    assert_int_equal(it_http_get(HTTP_PORT, other_path, t, NULL, 0), 403);
    free(t);
}

static bool start_daemon(const char *const *extra, const char *log)
{
    char group[64];
    snprintf(group, sizeof(group), "it-security-%d", (int)getpid());
    daemon_pid = it_daemon_start(&env, group, extra, log);
    if (daemon_pid < 0 || !it_http_wait(HTTP_PORT, 15000)) {
        fprintf(stderr, "daemon did not come up; see %s\n", log);
        return false;
    }
    return true;
}

static int group_setup(void **state)
{
    (void)state;
    if (!it_env_load(&env, "http_security", HTTP_PORT))
        return getenv("BP_REQUIRE_SERVICES") ? -1 : 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/schemas/seasons/sample-season.json", env.source_dir);
    bp_season_t season;
    if (!it_season_load(path, &season))
        return -1;
    snprintf(season_id, sizeof(season_id), "%s", season.id);
    bp_season_fini(&season);
    if (!it_db_prepare(&env, path))
        return -1;
    snprintf(self_id, sizeof(self_id), "sec%d-alice", (int)getpid());
    snprintf(other_id, sizeof(other_id), "sec%d-bob", (int)getpid());
    snprintf(path, sizeof(path), "%s/tests/unit/data/auth/rs256-private.pem", env.source_dir);
    rs_private = slurp(path);
    snprintf(path, sizeof(path), "%s/tests/unit/data/auth/other-private.pem", env.source_dir);
    other_private = slurp(path);
    rs_public_path = malloc(1100);
    if (!rs_private || !other_private || !rs_public_path)
        return -1;
    snprintf(rs_public_path, 1100, "%s/tests/unit/data/auth/rs256-public.pem", env.source_dir);
    static const char *const extra[] = {"BP_JWT_ISSUER=" ISSUER, "BP_JWT_AUDIENCE=" AUDIENCE, NULL};
    return start_daemon(extra, "http-security-daemon.log") ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (!it_daemon_down(&daemon_pid))
        rc = -1;
    free(rs_private);
    free(other_private);
    free(rs_public_path);
    return rc;
}

static void test_hs256_route_matrix(void **state)
{
    (void)state;
    skip_without_services();
    route_matrix(JWT_ALG_HS256, env.secret);
}

static void test_hs256_token_attacks(void **state)
{
    (void)state;
    skip_without_services();
    /* Confusion here: an RS256 token (a real RSA signature) while HS256 is pinned. */
    token_attacks(JWT_ALG_HS256, env.secret, JWT_ALG_RS256, rs_private,
                  "another-secret-another-secret-xx");
}

/* A missing or unusable key file stops the daemon at start, naming the setting. */
static void test_rs256_bad_key_file(void **state)
{
    (void)state;
    skip_without_services();
    static const char *const cases[][2] = {
        {"BP_JWT_RS256_PUBLIC_KEY_FILE=/nonexistent/key.pem", "cannot be read"},
        {"BP_JWT_RS256_PUBLIC_KEY_FILE=", "must name a PEM public key"},
        {NULL, "not a usable RSA public key"}, /* the private key file */
    };
    char priv_setting[1200];
    snprintf(priv_setting, sizeof(priv_setting),
             "BP_JWT_RS256_PUBLIC_KEY_FILE=%s/tests/unit/data/auth/rs256-private.pem",
             env.source_dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *log = "http-security-badkey.log";
        unlink(log);
        const char *extra[] = {"BP_JWT_ALG=RS256", cases[i][0] ? cases[i][0] : priv_setting, NULL};
        pid_t pid = it_daemon_start(&env, "it-security-badkey", extra, log);
        assert_true(pid > 0);
        int st = -1;
        for (int waited = 0; waited < 10000; waited += 20) {
            if (waitpid(pid, &st, WNOHANG) == pid)
                break;
            st = -1;
            usleep(20000);
        }
        if (st == -1) {
            it_daemon_stop(pid, SIGTERM, 10000);
            fail_msg("case %zu: the daemon started with a bad key file", i);
        }
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
        char *text = slurp(log);
        assert_non_null(text);
        if (!strstr(text, "BP_JWT_RS256_PUBLIC_KEY_FILE") || !strstr(text, cases[i][1]))
            fail_msg("case %zu: log does not name the setting and '%s': %s", i, cases[i][1], text);
        free(text);
    }
}

/* RS256 pinned: restart the daemon with the public key, the same matrix and attacks; an
 * HS256 token signed with the public key PEM as its secret is the confusion attack. */
static void test_rs256_pinned(void **state)
{
    (void)state;
    skip_without_services();
    assert_int_equal(it_daemon_stop(daemon_pid, SIGTERM, 30000), 0);
    daemon_pid = -1;
    char key_setting[1200];
    snprintf(key_setting, sizeof(key_setting), "BP_JWT_RS256_PUBLIC_KEY_FILE=%s", rs_public_path);
    const char *const extra[] = {"BP_JWT_ALG=RS256", key_setting, "BP_JWT_ISSUER=" ISSUER,
                                 "BP_JWT_AUDIENCE=" AUDIENCE, NULL};
    assert_true(start_daemon(extra, "http-security-rs256-daemon.log"));
    char *pub = slurp(rs_public_path);
    assert_non_null(pub);
    route_matrix(JWT_ALG_RS256, rs_private);
    token_attacks(JWT_ALG_RS256, rs_private, JWT_ALG_HS256, pub, other_private);
    /* The shared HS256 secret is no key under RS256 either. */
    char c[512];
    claims_std(c, sizeof(c), self_id, "admin", "");
    char *t = tjwt_mint(JWT_ALG_HS256, env.secret, c);
    assert_int_equal(it_http_get(HTTP_PORT, "/audit", t, NULL, 0), 401);
    free(t);
    free(pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hs256_route_matrix),
        cmocka_unit_test(test_hs256_token_attacks),
        cmocka_unit_test(test_rs256_bad_key_file),
        cmocka_unit_test(test_rs256_pinned),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
