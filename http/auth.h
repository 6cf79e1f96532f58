/** @file Bearer-token authentication (JWT HS256 or RS256 via libjwt, one algorithm pinned by
 *  configuration) and the access rules of routes;
 *  pure functions of (header, config, now), testable without a server. */
#ifndef BP_AUTH_H
#define BP_AUTH_H

#include <stddef.h>
#include <stdint.h>

/** Longest token accepted; longer ones are rejected before any parsing. */
#define BP_AUTH_TOKEN_MAX 8192
/** Longest `sub` claim accepted, in bytes. */
#define BP_AUTH_SUB_MAX 128

/** Scopes of the `scope` claim (space-separated names), as bits. */
#define BP_SCOPE_PLAYER (1u << 0)  /**< "player": own data only */
#define BP_SCOPE_SERVICE (1u << 1) /**< "service": gameplay/economy services, any player */
#define BP_SCOPE_ADMIN (1u << 2)   /**< "admin": seasons, analytics, any player */

/**
 * Who may call a route, as data: BP_ACCESS_PUBLIC needs no token; otherwise
 * BP_ACCESS_TOKEN plus the scope bits that grant access (no scope bit: any valid token).
 * BP_SCOPE_PLAYER in a rule grants access only to the player's own data: the token's
 * `sub` must equal the route's {playerId}.
 */
#define BP_ACCESS_PUBLIC 0u
#define BP_ACCESS_TOKEN (1u << 8)
/** Player (self), service or admin: the rule of player-scoped reads. */
#define BP_ACCESS_PLAYER_READ                                                                      \
    (BP_ACCESS_TOKEN | BP_SCOPE_PLAYER | BP_SCOPE_SERVICE | BP_SCOPE_ADMIN)

/** The one signature algorithm accepted; every token whose header names another is rejected
 *  before its signature is looked at (alg none, RS256/HS256 confusion). */
typedef enum {
    BP_AUTH_ALG_HS256 = 0, /**< HMAC-SHA256 with hs256_secret (the default) */
    BP_AUTH_ALG_RS256      /**< RSASSA-PKCS1-v1_5 SHA-256 with rs256_public_key */
} bp_auth_alg_t;

/** What verification checks; strings are borrowed. */
typedef struct {
    const char *hs256_secret; /**< NULL or "" rejects every token (never an empty key) */
    const char *issuer;       /**< NULL or "" = `iss` not checked */
    const char *audience;     /**< NULL or "" = `aud` not checked */
    int64_t leeway_s;         /**< clock skew tolerated on exp/nbf, seconds (>= 0) */
    bp_auth_alg_t alg;        /**< the pinned algorithm */
    /** PEM text of the RSA public key ("-----BEGIN PUBLIC KEY-----"), used when alg is
     *  RS256; NULL or "" rejects every token. */
    const char *rs256_public_key;
} bp_auth_config_t;

/** The authenticated caller. */
typedef struct {
    char sub[BP_AUTH_SUB_MAX + 1];
    unsigned scopes; /**< BP_SCOPE_* bits; unknown scope names are ignored */
    int64_t exp_s;
} bp_principal_t;

/** Outcome of verification/authorization; every value but OK and FORBIDDEN means 401. */
typedef enum {
    BP_AUTH_OK = 0,
    BP_AUTH_MISSING,       /**< no Authorization header */
    BP_AUTH_MALFORMED,     /**< not "Bearer <jwt>", too long, not three base64url JSON parts */
    BP_AUTH_BAD_ALG,       /**< alg is not the pinned one (none, HS256 when RS256, ...) */
    BP_AUTH_BAD_SIGNATURE, /**< signature does not verify with the secret or public key */
    BP_AUTH_BAD_CLAIMS,    /**< exp or sub missing, claims of the wrong type */
    BP_AUTH_EXPIRED,       /**< now >= exp */
    BP_AUTH_NOT_YET_VALID, /**< now < nbf */
    BP_AUTH_BAD_ISSUER,    /**< iss differs from the configured issuer */
    BP_AUTH_BAD_AUDIENCE,  /**< aud (string or array) lacks the configured audience */
    BP_AUTH_FORBIDDEN      /**< valid token without the right: 403 */
} bp_auth_result_t;

/**
 * Verify the value of an Authorization header.
 * @param header  the header value, NULL when absent (never logged)
 * @param now_s   current time, seconds since the Unix epoch
 * @param out     filled on BP_AUTH_OK, zeroed otherwise
 * @param detail  out: a static, human-readable reason (for the problem's `detail`);
 *                never contains token material
 * @return BP_AUTH_OK or the reason for a 401.
 */
bp_auth_result_t bp_auth_verify(const bp_auth_config_t *cfg, const char *header, int64_t now_s,
                                bp_principal_t *out, const char **detail);

/**
 * Tokens verified before, so that a client presenting the same token on every request
 * (what clients do until it expires) costs a hash and a compare instead of two base64url
 * decodes, three JSON parses and an HMAC or RSA verification. Only tokens that verified are
 * kept, keyed by the whole token (compared byte for byte, never by hash alone); a hit is
 * still refused once `exp` has passed (`nbf` had passed when it verified). Bound to one
 * bp_auth_config_t for its lifetime: changing the key or the issuer/audience rules needs a new
 * cache. Thread-safe; fixed size (older entries are overwritten).
 */
typedef struct bp_auth_cache bp_auth_cache_t;

/** @return a cache of about @p slots tokens (owned by the caller: bp_auth_cache_destroy),
 *  or NULL when out of memory. */
bp_auth_cache_t *bp_auth_cache_new(size_t slots);
/** Free, wiping the tokens. Accepts NULL. */
void bp_auth_cache_destroy(bp_auth_cache_t *c);

/**
 * bp_auth_verify() through @p cache (NULL: no cache): same results, same @p detail.
 * @p cfg must be the configuration every earlier call on this cache used.
 */
bp_auth_result_t bp_auth_verify_cached(bp_auth_cache_t *cache, const bp_auth_config_t *cfg,
                                       const char *header, int64_t now_s, bp_principal_t *out,
                                       const char **detail);

/**
 * Apply a route's access rule (BP_ACCESS_*) to a verified principal.
 * @param player_id the route's {playerId}, or NULL when it has none (then the player
 *                  scope grants access without a self check)
 * @param detail    out: static reason when forbidden
 * @return BP_AUTH_OK or BP_AUTH_FORBIDDEN.
 */
bp_auth_result_t bp_auth_authorize(const bp_principal_t *p, unsigned access, const char *player_id,
                                   const char **detail);

/**
 * Parse an algorithm name of the configuration.
 * @return 0 with *out set for "HS256" or "RS256" (exact case), -1 for anything else.
 */
int bp_auth_alg_parse(const char *name, bp_auth_alg_t *out);

/**
 * Check that @p pem is one PEM "PUBLIC KEY" block (SubjectPublicKeyInfo, what libjwt's
 * RS256 verification reads) holding an RSA key of at least 2048 bits; a structural check
 * done at start so a wrong file stops the program instead of failing every request.
 * @return NULL when usable, else a static reason.
 */
const char *bp_auth_rs256_key_problem(const char *pem);

/** @return the HTTP status of @p r: 200 for OK, 403 for FORBIDDEN, 401 otherwise. */
int bp_auth_http_status(bp_auth_result_t r);

/** @return a static slug naming @p r ("token-expired", ...) for the problem's `type`. */
const char *bp_auth_result_slug(bp_auth_result_t r);

#endif
