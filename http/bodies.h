/** @file What clients send, checked by pure functions (no request, no server): the JSON
 *  body limits and parsing shared by every route, one parser and validator per route body
 *  filling a struct, and numeric query parameters. Routes answer 400 with the reason these
 *  give; unit tests and the fuzz target call them directly. */
#ifndef BP_BODIES_H
#define BP_BODIES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/event.h"
#include "core/season.h"

/** Deepest nesting of a JSON body: the object itself is level 1. A season definition, the
 *  deepest body of the API, needs 5. */
#define BP_BODY_DEPTH_MAX 16
/** Most metadata entries of an XP grant, and the longest key and value in bytes. */
#define BP_XP_META_MAX 32
#define BP_XP_META_KEY_MAX 64
#define BP_XP_META_VALUE_MAX 512
/** Longest premium `source` in bytes (printable ASCII). */
#define BP_PREMIUM_SOURCE_MAX 64
/** Room a reason of these functions needs: longer ones are cut. */
#define BP_BODY_WHY_MAX 256

/**
 * Parse @p text[0..len) as one request body: a JSON object, duplicate keys refused, nested
 * at most BP_BODY_DEPTH_MAX levels, every number within what jansson represents (a 64-bit
 * integer, a finite double). Checked before jansson allocates anything, so a hostile body
 * costs one pass over its bytes.
 * @param text need not be NUL-terminated; NULL when @p len is 0
 * @param why  out on BP_EINVAL: printable ASCII naming the problem (and the member, for a
 *             number out of range: "amount: 9223372036854775808 is out of range")
 * @return BP_OK with *out owned by the caller (json_decref), or BP_EINVAL with *out NULL
 *         (empty body, depth, number range, syntax at line:column, not an object).
 */
bp_err_t bp_http_body_json(const char *text, size_t len, json_t **out, char *why,
                           size_t why_len) BP_MUSTCHECK;

/** The request bodies of the routes, each with the struct bp_http_body_parse fills. */
typedef enum {
    BP_BODY_CLAIM,   /**< POST /rewards/{playerId}/claim: bp_claim_body_t */
    BP_BODY_PREMIUM, /**< POST /premium/{playerId}: bp_premium_body_t */
    BP_BODY_LEVELS,  /**< POST /progress/{playerId}/levels: bp_levels_body_t */
    BP_BODY_XP,      /**< POST /progress/{playerId}/xp: bp_xp_body_t */
    BP_BODY_KINDS
} bp_body_kind_t;

/** {level, tier}. */
typedef struct {
    int32_t level; /**< 1..BP_LEVEL_MAX */
    bp_tier_t tier;
} bp_claim_body_t;

/** {seasonId?, transactionId, source}. */
typedef struct {
    const char *season_id;      /**< a valid id, or NULL (the current season) */
    const char *transaction_id; /**< a valid id */
    const char *source;         /**< 1..BP_PREMIUM_SOURCE_MAX printable ASCII */
} bp_premium_body_t;

/** {count, transactionId}. */
typedef struct {
    int32_t count;              /**< 1..BP_LEVEL_MAX */
    const char *transaction_id; /**< a valid id */
} bp_levels_body_t;

/** {amount, reason, metadata?, occurredAt?, seasonId?}; any other member is refused (a
 *  misspelt member must not be dropped silently from a grant). */
typedef struct {
    bp_xp_event_t ev; /**< amount, reason, season_id ("" when absent) and occurred_at_ms
                       *   (0 when absent) filled; event_id and player_id left empty */
    size_t n_meta;
    const char *meta_keys[BP_XP_META_MAX]; /**< borrowed from the body */
    const char *meta_values[BP_XP_META_MAX];
} bp_xp_body_t;

/**
 * Check the body @p root (as bp_http_body_json gave it) of route @p kind and fill @p out,
 * the struct of that kind. Listed members are checked in the order of the API document; a
 * missing required member, a value of the wrong type or out of range is refused with a
 * reason that names it ("level must be an integer from 1 to 10000", "transactionId is
 * required"). An optional member given as null is absent. Members not listed are ignored
 * except where said. Strings in the structs are borrowed from @p root unless they are
 * arrays.
 * @return BP_OK, or BP_EINVAL with @p why (printable ASCII) set; @p out is then partly
 *         filled and must not be used. BP_EINVAL also for a @p kind out of range.
 */
bp_err_t bp_http_body_parse(bp_body_kind_t kind, json_t *root, void *out, char *why,
                            size_t why_len) BP_MUSTCHECK;

/** A numeric query parameter (limit, cursor). */
typedef struct {
    const char *name;
    long long min, max, def;
    bool empty_is_default; /**< "cursor=" asks for the first page */
    const char *problem;   /**< the 400 detail, naming the parameter */
} bp_query_num_t;

/**
 * The value of query parameter @p p given as @p text (NULL when absent): 1 to 18 decimal
 * digits, nothing else (no sign, space or exponent), within [min, max]; absent (or empty
 * when empty_is_default) gives def.
 * @return true with *out set, false when the text breaks the rule (*out untouched).
 */
bool bp_http_query_num(const bp_query_num_t *p, const char *text, long long *out);

#endif
