/** @file libFuzzer target: the per-route body validators of http/bodies.h. The first byte
 *  picks the route ('0' claim, '1' premium, '2' level purchase, '3' XP grant, '4' a numeric
 *  query parameter; other bytes wrap around), the rest is the body (or the query value). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/event.h"
#include "http/bodies.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/** Everything a route may pick. */
#define CHOICES (BP_BODY_KINDS + 1)
#define CHOICE_QUERY BP_BODY_KINDS

/** A reason must be non-empty printable ASCII (the problem builder drops invalid UTF-8). */
static void check_why(const char *why)
{
    if (!why[0])
        abort();
    for (const char *c = why; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            abort();
}

/** @return the nesting depth of @p v (an object or array counts one level). */
static int depth_of(json_t *v)
{
    int deepest = 0;
    if (json_is_object(v)) {
        const char *key;
        json_t *m;
        json_object_foreach(v, key, m)
        {
            int d = depth_of(m);
            deepest = d > deepest ? d : deepest;
        }
        return deepest + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m)
        {
            int d = depth_of(m);
            deepest = d > deepest ? d : deepest;
        }
        return deepest + 1;
    }
    return 0;
}

static bool id_ok(const char *s)
{
    return s && bp_id_valid(s, strlen(s));
}

static bool text_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return n >= 1 && n <= max;
}

/** What an accepted body of @p kind guarantees to the route. */
static void check_accepted(bp_body_kind_t kind, void *out)
{
    bool ok = false;
    switch (kind) {
    case BP_BODY_CLAIM: {
        const bp_claim_body_t *b = out;
        ok = b->level >= 1 && b->level <= BP_LEVEL_MAX &&
             (b->tier == BP_TIER_FREE || b->tier == BP_TIER_PREMIUM);
        break;
    }
    case BP_BODY_PREMIUM: {
        const bp_premium_body_t *b = out;
        ok = (!b->season_id || id_ok(b->season_id)) && id_ok(b->transaction_id) &&
             text_ok(b->source, BP_PREMIUM_SOURCE_MAX);
        break;
    }
    case BP_BODY_LEVELS: {
        const bp_levels_body_t *b = out;
        ok = b->count >= 1 && b->count <= BP_LEVEL_MAX && id_ok(b->transaction_id);
        break;
    }
    case BP_BODY_XP: {
        bp_xp_body_t *b = out;
        const char *why = NULL;
        /* What the route adds; the rest must pass the worker's own rules. */
        strcpy(b->ev.event_id, "e");
        strcpy(b->ev.player_id, "p");
        if (b->ev.occurred_at_ms == 0)
            b->ev.occurred_at_ms = 1;
        ok = bp_xp_event_validate(&b->ev, &why) == BP_OK && b->n_meta <= BP_XP_META_MAX &&
             (!b->ev.season_id[0] || id_ok(b->ev.season_id));
        for (size_t i = 0; ok && i < b->n_meta; i++) {
            size_t k = strlen(b->meta_keys[i]), v = strlen(b->meta_values[i]);
            ok = k >= 1 && k <= BP_XP_META_KEY_MAX && v <= BP_XP_META_VALUE_MAX;
        }
        break;
    }
    default:
        break;
    }
    if (!ok)
        abort();
}

static void fuzz_query(const uint8_t *data, size_t size)
{
    static const bp_query_num_t p = {"limit", 1, 100, 20, true, "limit"};
    char text[64];
    size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    long long v = -1;
    if (bp_http_query_num(&p, text, &v)) {
        if (v < p.min || v > p.max)
            abort();
        if (text[0] && (strlen(text) > 18 || strspn(text, "0123456789") != strlen(text)))
            abort();
    } else if (v != -1) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned choice = (unsigned)(uint8_t)(data[0] - '0') % CHOICES;
    data++;
    size--;
    if (choice == CHOICE_QUERY) {
        fuzz_query(data, size);
        return 0;
    }
    bp_body_kind_t kind = (bp_body_kind_t)choice;
    char why[BP_BODY_WHY_MAX];
    json_t *root = NULL;
    union {
        bp_claim_body_t claim;
        bp_premium_body_t premium;
        bp_levels_body_t levels;
        bp_xp_body_t xp;
    } out;
    why[0] = '\0';
    if (bp_http_body_json(size ? (const char *)data : NULL, size, &root, why, sizeof(why)) !=
        BP_OK) {
        if (root)
            abort();
        check_why(why);
        return 0;
    }
    if (!json_is_object(root) || depth_of(root) > BP_BODY_DEPTH_MAX)
        abort();
    why[0] = '\0';
    if (bp_http_body_parse(kind, root, &out, why, sizeof(why)) == BP_OK)
        check_accepted(kind, &out);
    else
        check_why(why);
    json_decref(root);
    return 0;
}
