/** @file Bearer-token verification (libjwt 1.10 for the HS256/RS256 signature, the algorithm
 *  pinned here, the claims checked here because libjwt 1.10 checks none of exp/nbf/iss/aud)
 *  and route access rules. */
#include "http/auth.h"

#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/** @return the 6-bit value of base64url character @p c, or -1. */
static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/** @return true when s[0..n) is unpadded base64url (JWS compact serialisation). */
static bool b64url_valid(const char *s, size_t n)
{
    if (n % 4 == 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (b64url_value((unsigned char)s[i]) < 0)
            return false;
    }
    return true;
}

/** Decode unpadded base64url s[0..n) and parse it as a JSON object.
 *  @return a new reference owned by the caller, or NULL when anything is wrong. */
static json_t *b64url_json(const char *s, size_t n)
{
    json_t *obj = NULL;
    unsigned char *buf = NULL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (n == 0 || !b64url_valid(s, n))
        goto out;
    buf = malloc(n / 4 * 3 + 3);
    if (!buf)
        goto out;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 6) | (uint32_t)b64url_value((unsigned char)s[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* Duplicate names would let the verified bytes mean two things to two parsers. */
    obj = json_loadb((const char *)buf, o, JSON_REJECT_DUPLICATES, NULL);
    if (obj && !json_is_object(obj)) {
        json_decref(obj);
        obj = NULL;
    }
out:
    free(buf);
    return obj;
}

/** Read a NumericDate claim. @return 1 present and numeric, 0 absent, -1 not a number. */
static int numeric_date(const json_t *claims, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(claims, name);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return -1;
    double d = json_number_value(v);
    if (d >= 9.0e18)
        *out = INT64_MAX;
    else if (d <= -9.0e18)
        *out = INT64_MIN;
    else
        *out = (int64_t)d;
    return 1;
}

/** @return true when `aud` (a string or an array of strings) contains @p want. */
static bool audience_ok(const json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (json_is_array(aud)) {
        size_t i;
        const json_t *v;
        json_array_foreach(aud, i, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
                return true;
        }
    }
    return false;
}

/** @return the BP_SCOPE_* bits named in a space-separated scope string. */
static unsigned parse_scopes(const char *s)
{
    unsigned bits = 0;
    while (*s) {
        while (*s == ' ')
            s++;
        size_t n = strcspn(s, " ");
        if (n == 6 && strncmp(s, "player", 6) == 0)
            bits |= BP_SCOPE_PLAYER;
        else if (n == 7 && strncmp(s, "service", 7) == 0)
            bits |= BP_SCOPE_SERVICE;
        else if (n == 5 && strncmp(s, "admin", 5) == 0)
            bits |= BP_SCOPE_ADMIN;
        s += n;
    }
    return bits;
}

/** Check the verified claims; fills @p out. @return BP_AUTH_OK or why not. */
static bp_auth_result_t check_claims(const bp_auth_config_t *cfg, const json_t *claims,
                                     int64_t now_s, bp_principal_t *out, const char **why)
{
    int64_t exp = 0, nbf = 0;
    int64_t leeway = cfg->leeway_s > 0 ? cfg->leeway_s : 0;

    int has = numeric_date(claims, "exp", &exp);
    if (has <= 0) {
        *why = has == 0 ? "token has no exp claim" : "token exp claim is not a number";
        return BP_AUTH_BAD_CLAIMS;
    }
    const json_t *sub = json_object_get(claims, "sub");
    if (!json_is_string(sub) || json_string_length(sub) == 0) {
        *why = "token has no sub claim";
        return BP_AUTH_BAD_CLAIMS;
    }
    if (json_string_length(sub) > BP_AUTH_SUB_MAX ||
        strlen(json_string_value(sub)) != json_string_length(sub)) {
        *why = "token sub claim is too long or contains NUL";
        return BP_AUTH_BAD_CLAIMS;
    }
    const json_t *scope = json_object_get(claims, "scope");
    if (scope && !json_is_string(scope)) {
        *why = "token scope claim is not a string";
        return BP_AUTH_BAD_CLAIMS;
    }
    /* RFC 7519 4.1.4: the token is valid strictly before exp. */
    if (exp <= INT64_MAX - leeway && now_s >= exp + leeway) {
        *why = "token has expired";
        return BP_AUTH_EXPIRED;
    }
    has = numeric_date(claims, "nbf", &nbf);
    if (has < 0) {
        *why = "token nbf claim is not a number";
        return BP_AUTH_BAD_CLAIMS;
    }
    if (has > 0 && nbf > INT64_MIN + leeway && now_s < nbf - leeway) {
        *why = "token is not valid yet (nbf is in the future)";
        return BP_AUTH_NOT_YET_VALID;
    }
    if (cfg->issuer && *cfg->issuer) {
        const json_t *iss = json_object_get(claims, "iss");
        if (!json_is_string(iss) || strcmp(json_string_value(iss), cfg->issuer) != 0) {
            *why = "token issuer is not accepted";
            return BP_AUTH_BAD_ISSUER;
        }
    }
    if (cfg->audience && *cfg->audience) {
        if (!audience_ok(json_object_get(claims, "aud"), cfg->audience)) {
            *why = "token audience does not include this service";
            return BP_AUTH_BAD_AUDIENCE;
        }
    }
    memcpy(out->sub, json_string_value(sub), json_string_length(sub) + 1);
    out->scopes = scope ? parse_scopes(json_string_value(scope)) : 0;
    out->exp_s = exp;
    *why = "ok";
    return BP_AUTH_OK;
}

/** Find the token of an Authorization header value (the one place that decides what the
 *  token is, for verification and for the cache alike).
 *  @return true with tok[0..len) the token, or false with @p why set. */
static bool bearer_token(const char *header, const char **tok, size_t *len, const char **why)
{
    if (strncasecmp(header, "Bearer", 6) != 0 || header[6] != ' ') {
        *why = "Authorization scheme must be Bearer";
        return false;
    }
    const char *t = header + 7;
    while (*t == ' ')
        t++;
    size_t n = strnlen(t, BP_AUTH_TOKEN_MAX + 1);
    if (n > BP_AUTH_TOKEN_MAX) {
        *why = "bearer token is longer than 8192 bytes";
        return false;
    }
    *tok = t;
    *len = n;
    return true;
}

bp_auth_result_t bp_auth_verify(const bp_auth_config_t *cfg, const char *header, int64_t now_s,
                                bp_principal_t *out, const char **detail)
{
    bp_auth_result_t r = BP_AUTH_MALFORMED;
    const char *why = "malformed bearer token";
    json_t *jhdr = NULL, *claims = NULL;
    jwt_t *jwt = NULL;

    memset(out, 0, sizeof(*out));
    if (!header) {
        r = BP_AUTH_MISSING;
        why = "missing Authorization header";
        goto out;
    }
    const char *tok;
    size_t len;
    if (!bearer_token(header, &tok, &len, &why))
        goto out;
    const char *dot1 = memchr(tok, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - tok)) : NULL;
    if (!dot2 || !b64url_valid(dot2 + 1, len - (size_t)(dot2 + 1 - tok))) {
        why = "bearer token is not a compact JWT (header.payload.signature)";
        goto out;
    }
    jhdr = b64url_json(tok, (size_t)(dot1 - tok));
    claims = b64url_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (!jhdr || !claims) {
        why = "token header or payload is not base64url-encoded JSON";
        goto out;
    }
    /* Decided here, before libjwt, so that "alg":"none" and every algorithm but the pinned
     * one never reach verification whatever the libjwt build does with them (some accept
     * "none" even when given a key; an HS256 token checked against an RSA public key PEM
     * would use the public text as the HMAC secret), and so the caller learns why. */
    const bool rs256 = cfg->alg == BP_AUTH_ALG_RS256;
    const char *want_alg = rs256 ? "RS256" : "HS256";
    const char *alg = json_string_value(json_object_get(jhdr, "alg"));
    if (!alg || strcmp(alg, want_alg) != 0) {
        r = BP_AUTH_BAD_ALG;
        why = rs256 ? "token alg must be RS256" : "token alg must be HS256";
        goto out;
    }
    const json_t *typ = json_object_get(jhdr, "typ");
    if (typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0)) {
        why = "token typ must be JWT";
        goto out;
    }
    const char *key = rs256 ? cfg->rs256_public_key : cfg->hs256_secret;
    if (!key || !*key) {
        /* An empty HMAC key would accept tokens anyone can mint. */
        r = BP_AUTH_BAD_SIGNATURE;
        why = "no token key is configured";
        goto out;
    }
    if (jwt_decode(&jwt, tok, (const unsigned char *)key, (int)strlen(key)) != 0 || !jwt) {
        r = BP_AUTH_BAD_SIGNATURE;
        why = "token signature does not verify";
        goto out;
    }
    if (jwt_get_alg(jwt) != (rs256 ? JWT_ALG_RS256 : JWT_ALG_HS256)) {
        r = BP_AUTH_BAD_ALG;
        why = rs256 ? "token alg must be RS256" : "token alg must be HS256";
        goto out;
    }
    /* The payload parsed above is exactly the one whose signature libjwt verified. */
    r = check_claims(cfg, claims, now_s, out, &why);
out:
    if (r != BP_AUTH_OK)
        memset(out, 0, sizeof(*out));
    jwt_free(jwt);
    json_decref(jhdr);
    json_decref(claims);
    if (detail)
        *detail = why;
    return r;
}

/* ---- the cache of verified tokens ---- */

/** Shards, each under its own lock, so HTTP threads rarely wait for one another. */
#define CACHE_SHARDS 16

typedef struct {
    uint64_t hash;
    size_t len;  /* 0: empty */
    char *token; /* heap, len bytes (no NUL) */
    bp_principal_t principal;
} cache_entry_t;

typedef struct {
    pthread_mutex_t lock;
    size_t n;
    cache_entry_t *entries;
} cache_shard_t;

struct bp_auth_cache {
    cache_shard_t shards[CACHE_SHARDS];
};

/** FNV-1a, 64 bits: only picks the slot; a hit is confirmed by comparing the token. */
static uint64_t token_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static cache_entry_t *cache_slot(bp_auth_cache_t *c, uint64_t h, cache_shard_t **shard)
{
    cache_shard_t *s = &c->shards[h % CACHE_SHARDS];
    *shard = s;
    return &s->entries[(h / CACHE_SHARDS) % s->n];
}

static void entry_clear(cache_entry_t *e)
{
    if (e->token) {
        explicit_bzero(e->token, e->len);
        free(e->token);
    }
    memset(e, 0, sizeof(*e));
}

bp_auth_cache_t *bp_auth_cache_new(size_t slots)
{
    bp_auth_cache_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    size_t per = slots / CACHE_SHARDS > 0 ? slots / CACHE_SHARDS : 1;
    for (int i = 0; i < CACHE_SHARDS; i++) {
        cache_shard_t *s = &c->shards[i];
        s->n = per;
        if (!(s->entries = calloc(per, sizeof(*s->entries))) ||
            pthread_mutex_init(&s->lock, NULL) != 0) {
            free(s->entries);
            s->entries = NULL;
            for (int k = 0; k < i; k++) {
                pthread_mutex_destroy(&c->shards[k].lock);
                free(c->shards[k].entries);
            }
            free(c);
            return NULL;
        }
    }
    return c;
}

void bp_auth_cache_destroy(bp_auth_cache_t *c)
{
    if (!c)
        return;
    for (int i = 0; i < CACHE_SHARDS; i++) {
        cache_shard_t *s = &c->shards[i];
        for (size_t k = 0; k < s->n; k++)
            entry_clear(&s->entries[k]);
        pthread_mutex_destroy(&s->lock);
        free(s->entries);
    }
    free(c);
}

/** @return true with @p out filled when tok[0..len) verified before. */
static bool cache_get(bp_auth_cache_t *c, uint64_t h, const char *tok, size_t len,
                      bp_principal_t *out)
{
    cache_shard_t *s;
    cache_entry_t *e = cache_slot(c, h, &s);
    pthread_mutex_lock(&s->lock);
    bool hit = e->len == len && e->hash == h && memcmp(e->token, tok, len) == 0;
    if (hit)
        *out = e->principal;
    pthread_mutex_unlock(&s->lock);
    return hit;
}

static void cache_put(bp_auth_cache_t *c, uint64_t h, const char *tok, size_t len,
                      const bp_principal_t *p)
{
    char *copy = malloc(len);
    if (!copy)
        return; /* not cached: verified again next time */
    memcpy(copy, tok, len);
    cache_shard_t *s;
    cache_entry_t *e = cache_slot(c, h, &s);
    pthread_mutex_lock(&s->lock);
    entry_clear(e);
    e->hash = h;
    e->len = len;
    e->token = copy;
    e->principal = *p;
    pthread_mutex_unlock(&s->lock);
}

bp_auth_result_t bp_auth_verify_cached(bp_auth_cache_t *cache, const bp_auth_config_t *cfg,
                                       const char *header, int64_t now_s, bp_principal_t *out,
                                       const char **detail)
{
    const char *tok = NULL, *why = NULL;
    size_t len = 0;
    uint64_t h = 0;
    bool keyed = cache && header && bearer_token(header, &tok, &len, &why) && len > 0;

    if (keyed) {
        h = token_hash(tok, len);
        int64_t leeway = cfg->leeway_s > 0 ? cfg->leeway_s : 0;
        /* The expiry rule of check_claims; an expired token goes through the full check,
         * which says why it is refused. */
        if (cache_get(cache, h, tok, len, out) &&
            !(out->exp_s <= INT64_MAX - leeway && now_s >= out->exp_s + leeway)) {
            if (detail)
                *detail = "ok";
            return BP_AUTH_OK;
        }
    }
    bp_auth_result_t r = bp_auth_verify(cfg, header, now_s, out, detail);
    if (r == BP_AUTH_OK && keyed)
        cache_put(cache, h, tok, len, out);
    return r;
}

bp_auth_result_t bp_auth_authorize(const bp_principal_t *p, unsigned access, const char *player_id,
                                   const char **detail)
{
    const unsigned all = BP_SCOPE_PLAYER | BP_SCOPE_SERVICE | BP_SCOPE_ADMIN;
    unsigned need = access & all;
    const char *why = "ok";
    bp_auth_result_t r = BP_AUTH_OK;

    if (!(access & BP_ACCESS_TOKEN))
        goto out;
    if (!p) {
        r = BP_AUTH_MISSING;
        why = "missing Authorization header";
        goto out;
    }
    if (need == 0 || (p->scopes & need & (BP_SCOPE_SERVICE | BP_SCOPE_ADMIN)))
        goto out;
    if ((need & BP_SCOPE_PLAYER) && (p->scopes & BP_SCOPE_PLAYER)) {
        if (!player_id || strcmp(p->sub, player_id) == 0)
            goto out;
        r = BP_AUTH_FORBIDDEN;
        why = "a player token may only access its own data";
        goto out;
    }
    r = BP_AUTH_FORBIDDEN;
    why = "token scope does not allow this operation";
out:
    if (detail)
        *detail = why;
    return r;
}

int bp_auth_alg_parse(const char *name, bp_auth_alg_t *out)
{
    if (name && strcmp(name, "HS256") == 0) {
        *out = BP_AUTH_ALG_HS256;
        return 0;
    }
    if (name && strcmp(name, "RS256") == 0) {
        *out = BP_AUTH_ALG_RS256;
        return 0;
    }
    return -1;
}

const char *bp_auth_rs256_key_problem(const char *pem)
{
    const char *why = NULL;
    if (!pem || !*pem)
        return "no -----BEGIN PUBLIC KEY----- block";
    /* The same OpenSSL that libjwt verifies with decides whether the key is usable. */
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    if (!key)
        why = "not a PEM public key (-----BEGIN PUBLIC KEY-----)";
    else if (EVP_PKEY_base_id(key) != EVP_PKEY_RSA)
        why = "not an RSA public key";
    else if (EVP_PKEY_bits(key) < 2048)
        why = "RSA key shorter than 2048 bits";
    EVP_PKEY_free(key);
    BIO_free(bio);
    return why;
}

int bp_auth_http_status(bp_auth_result_t r)
{
    if (r == BP_AUTH_OK)
        return 200;
    return r == BP_AUTH_FORBIDDEN ? 403 : 401;
}

const char *bp_auth_result_slug(bp_auth_result_t r)
{
    switch (r) {
    case BP_AUTH_OK:
        return "ok";
    case BP_AUTH_MISSING:
        return "token-missing";
    case BP_AUTH_MALFORMED:
        return "token-malformed";
    case BP_AUTH_BAD_ALG:
        return "token-algorithm";
    case BP_AUTH_BAD_SIGNATURE:
        return "token-signature";
    case BP_AUTH_BAD_CLAIMS:
        return "token-claims";
    case BP_AUTH_EXPIRED:
        return "token-expired";
    case BP_AUTH_NOT_YET_VALID:
        return "token-not-yet-valid";
    case BP_AUTH_BAD_ISSUER:
        return "token-issuer";
    case BP_AUTH_BAD_AUDIENCE:
        return "token-audience";
    case BP_AUTH_FORBIDDEN:
        return "forbidden";
    }
    return "token-invalid";
}
