/** @file Unit tests of http/auth: token verification (HS256 and RS256 tokens minted here with
 *  libjwt; RS256 test keys in tests/unit/data/auth) and the access rules of routes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/auth.h"
#include "tests/support_jwt.h"

#define SECRET "test-secret-0123456789"
#define NOW 1767225600LL /* 2026-01-01T00:00:00Z */

static const bp_auth_config_t cfg = {SECRET, "bp-test", "battlepass", 0, BP_AUTH_ALG_HS256, NULL};

/** The RS256 test keys: the pinned key pair, and another private key. */
static char *rs_public, *rs_private, *other_private;

/** Mint an HS256 token over @p claims with @p secret (other algorithms: tjwt_mint).
 *  @return heap string. */
static char *mint(const char *secret, const char *claims)
{
    return tjwt_mint(JWT_ALG_HS256, secret, claims);
}

/** Valid claims for p1, padded past BP_AUTH_TOKEN_MAX: a validly signed token of them is
 *  still too large. @return heap string. */
static char *oversized_claims(void)
{
    char c[256];
    snprintf(c, sizeof(c),
             "{\"sub\":\"p1\",\"exp\":%lld,\"iss\":\"bp-test\",\"aud\":\"battlepass\"}", NOW + 60);
    return tjwt_padded(c, BP_AUTH_TOKEN_MAX);
}

/** "Bearer " + @p tok into a heap string; frees @p tok. */
static char *bearer(char *tok)
{
    size_t n = strlen(tok) + 8;
    char *h = malloc(n);
    assert_non_null(h);
    snprintf(h, n, "Bearer %s", tok);
    free(tok);
    return h;
}

/** A token with the standard claims plus @p extra (JSON members, may be ""). */
static char *std_claims(const char *sub, const char *scope, const char *extra)
{
    char *c = malloc(1024);
    assert_non_null(c);
    snprintf(c, 1024,
             "{\"sub\":\"%s\",\"scope\":\"%s\",\"exp\":%lld,\"iss\":\"bp-test\","
             "\"aud\":\"battlepass\"%s%s}",
             sub, scope, NOW + 3600, *extra ? "," : "", extra);
    return c;
}

static char *token_std(const char *sub, const char *scope)
{
    char *c = std_claims(sub, scope, "");
    char *h = bearer(mint(SECRET, c));
    free(c);
    return h;
}

static char *token_claims(const char *claims)
{
    return bearer(mint(SECRET, claims));
}

typedef struct {
    const char *name;
    char *header; /* owned; NULL = no header */
    bp_auth_result_t want;
    int status;
} auth_case_t;

static void check_case_with(const bp_auth_config_t *conf, const auth_case_t *c)
{
    bp_principal_t p;
    const char *detail = NULL;
    bp_auth_result_t r = bp_auth_verify(conf, c->header, NOW, &p, &detail);
    if (r != c->want)
        fail_msg("%s: expected %s, got %s (%s)", c->name, bp_auth_result_slug(c->want),
                 bp_auth_result_slug(r), detail ? detail : "-");
    assert_non_null(detail);
    assert_int_equal(bp_auth_http_status(r), c->status);
    if (r != BP_AUTH_OK) {
        assert_string_equal(p.sub, "");
        assert_int_equal(p.scopes, 0);
    }
    /* The detail never echoes token material. */
    if (c->header && strlen(c->header) > 20)
        assert_null(strstr(detail, c->header + 7));
    /* Through the cache of verified tokens: the same answer the first time (verified, then
     * remembered when valid) and the second (from the cache when it was remembered). */
    bp_auth_cache_t *cache = bp_auth_cache_new(64);
    assert_non_null(cache);
    for (int k = 0; k < 2; k++) {
        bp_principal_t q;
        const char *d = NULL;
        bp_auth_result_t rc = bp_auth_verify_cached(cache, conf, c->header, NOW, &q, &d);
        if (rc != r)
            fail_msg("%s, cached (%d): expected %s, got %s", c->name, k, bp_auth_result_slug(r),
                     bp_auth_result_slug(rc));
        assert_string_equal(d, detail);
        assert_memory_equal(&q, &p, sizeof(p));
    }
    bp_auth_cache_destroy(cache);
}

static void check_case(const auth_case_t *c)
{
    check_case_with(&cfg, c);
}

static void test_verify_table(void **state)
{
    (void)state;
    char buf[1024];
    auth_case_t cases[64];
    size_t n = 0;
#define CASE(nm, hdr, w, st) cases[n++] = (auth_case_t){nm, hdr, w, st}

    CASE("valid player", token_std("p1", "player"), BP_AUTH_OK, 200);
    CASE("valid service", token_std("gameplay", "service"), BP_AUTH_OK, 200);
    CASE("valid admin", token_std("ops", "admin"), BP_AUTH_OK, 200);
    CASE("several scopes", token_std("p1", "player  service"), BP_AUTH_OK, 200);
    CASE("lower-case scheme", NULL, BP_AUTH_OK, 200);
    {
        char *h = token_std("p1", "player");
        h[0] = 'b';
        cases[n - 1].header = h;
    }
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"p1\",\"exp\":%lld,\"iss\":\"bp-test\",\"aud\":[\"x\",\"battlepass\"]}",
             NOW + 60);
    CASE("aud array containing ours", token_claims(buf), BP_AUTH_OK, 200);
    snprintf(
        buf, sizeof(buf),
        "{\"sub\":\"p1\",\"exp\":%lld,\"nbf\":%lld,\"iss\":\"bp-test\",\"aud\":\"battlepass\"}",
        NOW + 60, NOW);
    CASE("nbf now", token_claims(buf), BP_AUTH_OK, 200);

    CASE("no header", NULL, BP_AUTH_MISSING, 401);
    CASE("Basic scheme", strdup("Basic dXNlcjpwYXNz"), BP_AUTH_MALFORMED, 401);
    CASE("Bearer without token", strdup("Bearer "), BP_AUTH_MALFORMED, 401);
    CASE("BearerX", strdup("Bearerxyz"), BP_AUTH_MALFORMED, 401);
    CASE("garbage", strdup("Bearer not-a-jwt"), BP_AUTH_MALFORMED, 401);
    CASE("three garbage parts", strdup("Bearer a.b.c"), BP_AUTH_MALFORMED, 401);
    CASE("four parts", strdup("Bearer eyJhIjoxfQ.eyJhIjoxfQ.abc.def"), BP_AUTH_MALFORMED, 401);
    {
        char *big = malloc(BP_AUTH_TOKEN_MAX + 100);
        assert_non_null(big);
        memset(big, 'A', BP_AUTH_TOKEN_MAX + 99);
        memcpy(big, "Bearer ", 7);
        big[20] = '.';
        big[40] = '.';
        big[BP_AUTH_TOKEN_MAX + 99] = '\0';
        CASE("oversized", big, BP_AUTH_MALFORMED, 401);
    }
    {
        char *claims = oversized_claims();
        CASE("oversized but validly signed", token_claims(claims), BP_AUTH_MALFORMED, 401);
        free(claims);
    }
    {
        char *c = std_claims("p1", "player", "");
        CASE("wrong secret", bearer(mint("another-secret", c)), BP_AUTH_BAD_SIGNATURE, 401);
        CASE("HS512", bearer(tjwt_mint(JWT_ALG_HS512, SECRET, c)), BP_AUTH_BAD_ALG, 401);
        /* alg none, built by hand: header . payload . empty signature */
        CASE("alg none", bearer(tjwt_unsigned("{\"alg\":\"none\",\"typ\":\"JWT\"}", c)),
             BP_AUTH_BAD_ALG, 401);
        CASE("no alg", bearer(tjwt_unsigned("{\"typ\":\"JWT\"}", c)), BP_AUTH_BAD_ALG, 401);
        /* A valid signature over other claims, payload swapped for an admin one. */
        char *good = mint(SECRET, c);
        char *admin = std_claims("p1", "admin", "");
        CASE("payload swapped", bearer(tjwt_swap_payload(good, admin)), BP_AUTH_BAD_SIGNATURE, 401);
        free(good);
        free(admin);
        free(c);
    }
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"p1\",\"exp\":%lld,\"iss\":\"bp-test\",\"aud\":\"battlepass\"}",
             NOW - 3600);
    CASE("expired", token_claims(buf), BP_AUTH_EXPIRED, 401);
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"p1\",\"exp\":%lld,\"iss\":\"bp-test\",\"aud\":\"battlepass\"}", NOW);
    CASE("expires exactly now", token_claims(buf), BP_AUTH_EXPIRED, 401);
    snprintf(
        buf, sizeof(buf),
        "{\"sub\":\"p1\",\"exp\":%lld,\"nbf\":%lld,\"iss\":\"bp-test\",\"aud\":\"battlepass\"}",
        NOW + 3600, NOW + 600);
    CASE("nbf in the future", token_claims(buf), BP_AUTH_NOT_YET_VALID, 401);
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"p1\",\"exp\":%lld,\"iss\":\"evil\",\"aud\":\"battlepass\"}", NOW + 60);
    CASE("wrong iss", token_claims(buf), BP_AUTH_BAD_ISSUER, 401);
    snprintf(buf, sizeof(buf), "{\"sub\":\"p1\",\"exp\":%lld,\"aud\":\"battlepass\"}", NOW + 60);
    CASE("no iss", token_claims(buf), BP_AUTH_BAD_ISSUER, 401);
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"p1\",\"exp\":%lld,\"iss\":\"bp-test\",\"aud\":\"other\"}", NOW + 60);
    CASE("wrong aud", token_claims(buf), BP_AUTH_BAD_AUDIENCE, 401);
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"p1\",\"exp\":%lld,\"iss\":\"bp-test\",\"aud\":[\"a\",\"b\"]}", NOW + 60);
    CASE("aud array without ours", token_claims(buf), BP_AUTH_BAD_AUDIENCE, 401);
    snprintf(buf, sizeof(buf), "{\"exp\":%lld,\"iss\":\"bp-test\",\"aud\":\"battlepass\"}",
             NOW + 60);
    CASE("missing sub", token_claims(buf), BP_AUTH_BAD_CLAIMS, 401);
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"\",\"exp\":%lld,\"iss\":\"bp-test\",\"aud\":\"battlepass\"}", NOW + 60);
    CASE("empty sub", token_claims(buf), BP_AUTH_BAD_CLAIMS, 401);
    CASE("missing exp", token_claims("{\"sub\":\"p1\",\"iss\":\"bp-test\",\"aud\":\"battlepass\"}"),
         BP_AUTH_BAD_CLAIMS, 401);
    CASE("exp not a number",
         token_claims(
             "{\"sub\":\"p1\",\"exp\":\"tomorrow\",\"iss\":\"bp-test\",\"aud\":\"battlepass\"}"),
         BP_AUTH_BAD_CLAIMS, 401);
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"p1\",\"scope\":[\"admin\"],\"exp\":%lld,\"iss\":\"bp-test\",\"aud\":"
             "\"battlepass\"}",
             NOW + 60);
    CASE("scope not a string", token_claims(buf), BP_AUTH_BAD_CLAIMS, 401);
#undef CASE
    assert_true(n <= sizeof(cases) / sizeof(cases[0]));
    for (size_t i = 0; i < n; i++) {
        check_case(&cases[i]);
        free(cases[i].header);
    }
}

/* A remembered token is still refused from its exp on, a token that differs in one byte
 * is verified (and refused) on its own, and a full cache forgets without mixing up tokens. */
static void test_cache(void **state)
{
    (void)state;
    char buf[512];
    bp_principal_t p;
    const char *d = NULL;
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"p1\",\"scope\":\"player\",\"exp\":%lld,\"iss\":\"bp-test\","
             "\"aud\":\"battlepass\"}",
             NOW + 60);
    char *h = token_claims(buf);
    bp_auth_cache_t *cache = bp_auth_cache_new(1);
    assert_non_null(cache);
    assert_int_equal(bp_auth_verify_cached(cache, &cfg, h, NOW, &p, &d), BP_AUTH_OK);
    assert_string_equal(p.sub, "p1");
    assert_int_equal(p.scopes, BP_SCOPE_PLAYER);
    assert_int_equal(bp_auth_verify_cached(cache, &cfg, h, NOW + 59, &p, &d), BP_AUTH_OK);
    assert_int_equal(bp_auth_verify_cached(cache, &cfg, h, NOW + 60, &p, &d), BP_AUTH_EXPIRED);
    assert_string_equal(d, "token has expired");
    assert_string_equal(p.sub, "");
    assert_int_equal(bp_auth_verify_cached(cache, &cfg, h, NOW, &p, &d), BP_AUTH_OK);

    /* One byte of the signature changed: not the remembered token. */
    char *bad = strdup(h);
    assert_non_null(bad);
    char *last = bad + strlen(bad) - 2;
    *last = *last == 'A' ? 'B' : 'A';
    assert_int_equal(bp_auth_verify_cached(cache, &cfg, bad, NOW, &p, &d), BP_AUTH_BAD_SIGNATURE);
    /* The same token with one space more after the scheme is the same token. */
    size_t n = strlen(h) + 2;
    char *spaced = malloc(n);
    assert_non_null(spaced);
    snprintf(spaced, n, "Bearer  %s", h + 7);
    assert_int_equal(bp_auth_verify_cached(cache, &cfg, spaced, NOW, &p, &d), BP_AUTH_OK);
    /* ... and with a byte more at the end, another one, whose signature does not verify. */
    snprintf(spaced, n, "%sA", h);
    assert_int_equal(bp_auth_verify_cached(cache, &cfg, spaced, NOW, &p, &d),
                     BP_AUTH_BAD_SIGNATURE);

    /* Two tokens taking turns in a one-slot cache each keep their own principal. */
    char *other = token_std("ops", "admin");
    for (int i = 0; i < 4; i++) {
        assert_int_equal(bp_auth_verify_cached(cache, &cfg, h, NOW, &p, &d), BP_AUTH_OK);
        assert_string_equal(p.sub, "p1");
        assert_int_equal(bp_auth_verify_cached(cache, &cfg, other, NOW, &p, &d), BP_AUTH_OK);
        assert_string_equal(p.sub, "ops");
        assert_int_equal(p.scopes, BP_SCOPE_ADMIN);
    }
    /* No cache: plain verification. */
    assert_int_equal(bp_auth_verify_cached(NULL, &cfg, h, NOW, &p, &d), BP_AUTH_OK);
    assert_int_equal(bp_auth_verify_cached(NULL, &cfg, NULL, NOW, &p, &d), BP_AUTH_MISSING);
    bp_auth_cache_destroy(cache);
    bp_auth_cache_destroy(NULL);
    free(other);
    free(spaced);
    free(bad);
    free(h);
}

static void test_principal(void **state)
{
    (void)state;
    bp_principal_t p;
    const char *detail;
    char *h = token_std("p1", "player admin bogus");
    assert_int_equal(bp_auth_verify(&cfg, h, NOW, &p, &detail), BP_AUTH_OK);
    assert_string_equal(p.sub, "p1");
    assert_int_equal(p.scopes, BP_SCOPE_PLAYER | BP_SCOPE_ADMIN);
    assert_int_equal(p.exp_s, NOW + 3600);
    free(h);
}

static void test_unchecked_iss_aud(void **state)
{
    (void)state;
    bp_auth_config_t open = {SECRET, "", NULL, 0, BP_AUTH_ALG_HS256, NULL};
    bp_principal_t p;
    const char *detail;
    char claims[128];
    snprintf(claims, sizeof(claims), "{\"sub\":\"p1\",\"exp\":%lld}", NOW + 60);
    char *h = token_claims(claims);
    assert_int_equal(bp_auth_verify(&open, h, NOW, &p, &detail), BP_AUTH_OK);
    assert_int_equal(p.scopes, 0);
    free(h);
}

static void test_empty_secret_rejects(void **state)
{
    (void)state;
    bp_auth_config_t none = {"", NULL, NULL, 0, BP_AUTH_ALG_HS256, NULL};
    bp_principal_t p;
    const char *detail;
    char *h = token_std("p1", "admin");
    assert_int_equal(bp_auth_verify(&none, h, NOW, &p, &detail), BP_AUTH_BAD_SIGNATURE);
    none.hs256_secret = NULL;
    assert_int_equal(bp_auth_verify(&none, h, NOW, &p, &detail), BP_AUTH_BAD_SIGNATURE);
    free(h);
}

static void test_leeway(void **state)
{
    (void)state;
    bp_auth_config_t lax = cfg;
    lax.leeway_s = 30;
    bp_principal_t p;
    const char *detail;
    char claims[256];
    snprintf(
        claims, sizeof(claims),
        "{\"sub\":\"p1\",\"exp\":%lld,\"nbf\":%lld,\"iss\":\"bp-test\",\"aud\":\"battlepass\"}",
        NOW - 10, NOW + 10);
    char *h = token_claims(claims);
    assert_int_equal(bp_auth_verify(&lax, h, NOW, &p, &detail), BP_AUTH_OK);
    assert_int_equal(bp_auth_verify(&lax, h, NOW + 40, &p, &detail), BP_AUTH_EXPIRED);
    assert_int_equal(bp_auth_verify(&lax, h, NOW - 50, &p, &detail), BP_AUTH_NOT_YET_VALID);
    assert_int_equal(bp_auth_verify(&cfg, h, NOW, &p, &detail), BP_AUTH_EXPIRED);
    free(h);
}

static void test_authorize_table(void **state)
{
    (void)state;
    static const struct {
        const char *sub;
        unsigned scopes;
        unsigned access;
        const char *player;
        bp_auth_result_t want;
    } cases[] = {
        {"p1", BP_SCOPE_PLAYER, BP_ACCESS_PLAYER_READ, "p1", BP_AUTH_OK},
        {"p1", BP_SCOPE_PLAYER, BP_ACCESS_PLAYER_READ, "p2", BP_AUTH_FORBIDDEN},
        {"p1", BP_SCOPE_PLAYER, BP_ACCESS_PLAYER_READ, "P1", BP_AUTH_FORBIDDEN},
        {"gameplay", BP_SCOPE_SERVICE, BP_ACCESS_PLAYER_READ, "p2", BP_AUTH_OK},
        {"ops", BP_SCOPE_ADMIN, BP_ACCESS_PLAYER_READ, "p2", BP_AUTH_OK},
        {"p1", 0, BP_ACCESS_PLAYER_READ, "p1", BP_AUTH_FORBIDDEN},
        {"p1", 0, BP_ACCESS_TOKEN, NULL, BP_AUTH_OK},
        {"p1", BP_SCOPE_PLAYER, BP_ACCESS_TOKEN, "p2", BP_AUTH_OK},
        {"p1", BP_SCOPE_PLAYER, BP_ACCESS_TOKEN | BP_SCOPE_ADMIN, NULL, BP_AUTH_FORBIDDEN},
        {"p1", BP_SCOPE_SERVICE, BP_ACCESS_TOKEN | BP_SCOPE_ADMIN, NULL, BP_AUTH_FORBIDDEN},
        {"ops", BP_SCOPE_ADMIN, BP_ACCESS_TOKEN | BP_SCOPE_ADMIN, NULL, BP_AUTH_OK},
        /* claim rule of the design: player (self) and service, not admin */
        {"ops", BP_SCOPE_ADMIN, BP_ACCESS_TOKEN | BP_SCOPE_PLAYER | BP_SCOPE_SERVICE, "p1",
         BP_AUTH_FORBIDDEN},
        {"p1", BP_SCOPE_PLAYER, BP_ACCESS_TOKEN | BP_SCOPE_PLAYER, NULL, BP_AUTH_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bp_principal_t p = {.scopes = cases[i].scopes};
        snprintf(p.sub, sizeof(p.sub), "%s", cases[i].sub);
        const char *detail = NULL;
        bp_auth_result_t r = bp_auth_authorize(&p, cases[i].access, cases[i].player, &detail);
        if (r != cases[i].want)
            fail_msg("case %zu: expected %s, got %s", i, bp_auth_result_slug(cases[i].want),
                     bp_auth_result_slug(r));
        assert_non_null(detail);
        assert_int_equal(bp_auth_http_status(r), r == BP_AUTH_OK ? 200 : 403);
    }
    const char *detail = NULL;
    assert_int_equal(bp_auth_authorize(NULL, BP_ACCESS_PUBLIC, NULL, &detail), BP_AUTH_OK);
    assert_int_equal(bp_auth_authorize(NULL, BP_ACCESS_TOKEN, NULL, &detail), BP_AUTH_MISSING);
}

/* End to end: a player token reading another player's data is authenticated, then
 * forbidden. */
static void test_player_reads_other_player(void **state)
{
    (void)state;
    bp_principal_t p;
    const char *detail;
    char *h = token_std("alice", "player");
    assert_int_equal(bp_auth_verify(&cfg, h, NOW, &p, &detail), BP_AUTH_OK);
    assert_int_equal(bp_auth_authorize(&p, BP_ACCESS_PLAYER_READ, "bob", &detail),
                     BP_AUTH_FORBIDDEN);
    assert_int_equal(bp_auth_authorize(&p, BP_ACCESS_PLAYER_READ, "alice", &detail), BP_AUTH_OK);
    free(h);
}

/** @return the contents of tests/unit/data/auth/@p name, heap. */
static char *read_key(const char *name)
{
    const char *src = getenv("BP_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/unit/data/auth/%s", src ? src : BP_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = calloc(1, 16384);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 16383, f);
    fclose(f);
    assert_true(n > 0 && n < 16383);
    return buf;
}

static int keys_setup(void **state)
{
    (void)state;
    rs_public = read_key("rs256-public.pem");
    rs_private = read_key("rs256-private.pem");
    other_private = read_key("other-private.pem");
    return 0;
}

static int keys_teardown(void **state)
{
    (void)state;
    free(rs_public);
    free(rs_private);
    free(other_private);
    return 0;
}

typedef struct {
    const bp_auth_config_t *conf;
    auth_case_t c;
} rs_case_t;

/* RS256 pinned: the same attacks as HS256, plus the algorithm confusion where the RSA public
 * key (public by nature) is used as an HMAC secret. */
static void test_rs256_table(void **state)
{
    (void)state;
    const bp_auth_config_t rs = {"", "bp-test", "battlepass", 0, BP_AUTH_ALG_RS256, rs_public};
    const bp_auth_config_t rs_nokey = {SECRET, "bp-test", "battlepass", 0, BP_AUTH_ALG_RS256, NULL};
    /* HS256 pinned with the public key as its secret: shows the confusion token is a validly
     * signed HS256 token, so only the pin rejects it. */
    const bp_auth_config_t hs_pub = {rs_public, "bp-test",         "battlepass",
                                     0,         BP_AUTH_ALG_HS256, NULL};
    char buf[1024];
    rs_case_t cases[32];
    size_t n = 0;
#define RCASE(conf, nm, hdr, w, st)                                                                \
    cases[n++] = (rs_case_t)                                                                       \
    {                                                                                              \
        conf,                                                                                      \
        {                                                                                          \
            nm, hdr, w, st                                                                         \
        }                                                                                          \
    }
#define RS(claims) bearer(tjwt_mint(JWT_ALG_RS256, rs_private, claims))
    char *c = std_claims("p1", "player", "");

    RCASE(&rs, "RS256 valid", RS(c), BP_AUTH_OK, 200);
    RCASE(&rs, "RS256 other key", bearer(tjwt_mint(JWT_ALG_RS256, other_private, c)),
          BP_AUTH_BAD_SIGNATURE, 401);
    RCASE(&rs, "confusion: HS256 with the public key as secret",
          bearer(tjwt_mint(JWT_ALG_HS256, rs_public, c)), BP_AUTH_BAD_ALG, 401);
    RCASE(&hs_pub, "the confusion token is validly signed",
          bearer(tjwt_mint(JWT_ALG_HS256, rs_public, c)), BP_AUTH_OK, 200);
    RCASE(&rs, "HS256 with the shared secret", bearer(mint(SECRET, c)), BP_AUTH_BAD_ALG, 401);
    RCASE(&cfg, "RS256 while HS256 is pinned", RS(c), BP_AUTH_BAD_ALG, 401);
    RCASE(&rs, "RS384 with the right key", bearer(tjwt_mint(JWT_ALG_RS384, rs_private, c)),
          BP_AUTH_BAD_ALG, 401);
    RCASE(&rs_nokey, "RS256 pinned, no key", RS(c), BP_AUTH_BAD_SIGNATURE, 401);
    {
        RCASE(&rs, "alg none", bearer(tjwt_unsigned("{\"alg\":\"none\",\"typ\":\"JWT\"}", c)),
              BP_AUTH_BAD_ALG, 401);
        /* A valid RS256 signature over other claims, payload swapped for an admin one. */
        char *good = tjwt_mint(JWT_ALG_RS256, rs_private, c);
        char *admin = std_claims("p1", "admin", "");
        RCASE(&rs, "tampered payload", bearer(tjwt_swap_payload(good, admin)),
              BP_AUTH_BAD_SIGNATURE, 401);
        free(good);
        free(admin);
    }
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"p1\",\"exp\":%lld,\"iss\":\"bp-test\",\"aud\":\"battlepass\"}", NOW - 1);
    RCASE(&rs, "expired", RS(buf), BP_AUTH_EXPIRED, 401);
    snprintf(
        buf, sizeof(buf),
        "{\"sub\":\"p1\",\"exp\":%lld,\"nbf\":%lld,\"iss\":\"bp-test\",\"aud\":\"battlepass\"}",
        NOW + 3600, NOW + 1);
    RCASE(&rs, "nbf in the future", RS(buf), BP_AUTH_NOT_YET_VALID, 401);
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"p1\",\"exp\":%lld,\"iss\":\"evil\",\"aud\":\"battlepass\"}", NOW + 60);
    RCASE(&rs, "wrong iss", RS(buf), BP_AUTH_BAD_ISSUER, 401);
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"p1\",\"exp\":%lld,\"iss\":\"bp-test\",\"aud\":\"other\"}", NOW + 60);
    RCASE(&rs, "wrong aud", RS(buf), BP_AUTH_BAD_AUDIENCE, 401);
    snprintf(buf, sizeof(buf), "{\"exp\":%lld,\"iss\":\"bp-test\",\"aud\":\"battlepass\"}",
             NOW + 60);
    RCASE(&rs, "missing sub", RS(buf), BP_AUTH_BAD_CLAIMS, 401);
    RCASE(&rs, "missing exp", RS("{\"sub\":\"p1\",\"iss\":\"bp-test\",\"aud\":\"battlepass\"}"),
          BP_AUTH_BAD_CLAIMS, 401);
    {
        char *claims = oversized_claims();
        RCASE(&rs, "oversized but validly signed", RS(claims), BP_AUTH_MALFORMED, 401);
        free(claims);
    }
    free(c);
#undef RS
#undef RCASE
    assert_true(n <= sizeof(cases) / sizeof(cases[0]));
    for (size_t i = 0; i < n; i++) {
        check_case_with(cases[i].conf, &cases[i].c);
        free(cases[i].c.header);
    }
}

static void test_rs256_key_check(void **state)
{
    (void)state;
    assert_null(bp_auth_rs256_key_problem(rs_public));
    /* A private key, garbage, a truncated body, nothing: refused at start. */
    assert_non_null(bp_auth_rs256_key_problem(rs_private));
    assert_non_null(bp_auth_rs256_key_problem("not a key"));
    assert_non_null(bp_auth_rs256_key_problem(""));
    assert_non_null(bp_auth_rs256_key_problem(NULL));
    char *cut = strdup(rs_public);
    assert_non_null(cut);
    char *endl = strstr(cut, "-----END");
    assert_non_null(endl);
    size_t keep = (size_t)(endl - cut) / 2;
    memmove(cut + keep, endl, strlen(endl) + 1);
    assert_non_null(bp_auth_rs256_key_problem(cut));
    free(cut);
    assert_non_null(bp_auth_rs256_key_problem("-----BEGIN PUBLIC KEY-----\nMAA=\n"
                                              "-----END PUBLIC KEY-----\n"));

    bp_auth_alg_t alg;
    assert_int_equal(bp_auth_alg_parse("HS256", &alg), 0);
    assert_int_equal(alg, BP_AUTH_ALG_HS256);
    assert_int_equal(bp_auth_alg_parse("RS256", &alg), 0);
    assert_int_equal(alg, BP_AUTH_ALG_RS256);
    assert_int_equal(bp_auth_alg_parse("none", &alg), -1);
    assert_int_equal(bp_auth_alg_parse("rs256", &alg), -1);
    assert_int_equal(bp_auth_alg_parse(NULL, &alg), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_table),
        cmocka_unit_test(test_principal),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_unchecked_iss_aud),
        cmocka_unit_test(test_empty_secret_rejects),
        cmocka_unit_test(test_leeway),
        cmocka_unit_test(test_authorize_table),
        cmocka_unit_test(test_player_reads_other_player),
        cmocka_unit_test(test_rs256_table),
        cmocka_unit_test(test_rs256_key_check),
    };
    return cmocka_run_group_tests(tests, keys_setup, keys_teardown);
}
