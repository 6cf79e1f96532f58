/** @file Season definitions as JSON: parsing with path-naming errors, and the Season resource. */
#include "store/season_json.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/log.h"
#include "core/event.h"
#include "core/timefmt.h"

/* Longest rendering of an offending value inside an error message. */
#define VALUE_SHOW_MAX 48

static void fail(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(char *why, size_t why_len, const char *fmt, ...)
{
    if (!why || why_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

/* Render @p v for an error message: JSON text of scalars (strings quoted), shortened. */
static const char *show(const json_t *v, char *buf, size_t len)
{
    if (json_is_object(v)) {
        snprintf(buf, len, "{...}");
        return buf;
    }
    if (json_is_array(v)) {
        snprintf(buf, len, "[...]");
        return buf;
    }
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text) {
        snprintf(buf, len, "(value)");
        return buf;
    }
    size_t n = strlen(text);
    if (n > VALUE_SHOW_MAX) {
        n = VALUE_SHOW_MAX;
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
            n--; /* never cut a UTF-8 sequence: the message may end up in a JSON response */
        snprintf(buf, len, "%.*s...", (int)n, text);
    } else
        snprintf(buf, len, "%s", text);
    free(text);
    return buf;
}

/* Fetch member @p key of @p obj; on absence writes `missing field "<path><key>"`. */
static json_t *member(json_t *obj, const char *path, const char *key, char *why, size_t why_len)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        fail(why, why_len, "missing field \"%s%s\"", path, key);
    return v;
}

/* Copy a string member into @p dst (capacity @p cap including the NUL); with @p need_id it
 * must be a valid id (bp_id_valid). On error writes @p why and returns false. */
static bool get_string(json_t *obj, const char *path, const char *key, char *dst, size_t cap,
                       bool need_id, char *why, size_t why_len)
{
    char vb[VALUE_SHOW_MAX + 8];
    json_t *v = member(obj, path, key, why, why_len);
    if (!v)
        return false;
    if (!json_is_string(v)) {
        fail(why, why_len, "%s%s %s is not a string", path, key, show(v, vb, sizeof(vb)));
        return false;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (need_id) {
        if (!bp_id_valid(s, n)) {
            fail(why, why_len, "%s%s %s is not a valid id (1..%d characters of A-Za-z0-9._:@-)",
                 path, key, show(v, vb, sizeof(vb)), BP_ID_MAX);
            return false;
        }
    } else if (n >= cap) {
        fail(why, why_len, "%s%s %s is longer than %zu bytes", path, key, show(v, vb, sizeof(vb)),
             cap - 1);
        return false;
    } else if (strlen(s) != n) {
        fail(why, why_len, "%s%s %s contains a NUL character", path, key, show(v, vb, sizeof(vb)));
        return false;
    }
    memcpy(dst, s, n + 1);
    return true;
}

/* Fetch an integer member within [lo, hi]. On error writes @p why and returns false. */
static bool get_int(json_t *obj, const char *path, const char *key, int64_t lo, int64_t hi,
                    int64_t *out, char *why, size_t why_len)
{
    char vb[VALUE_SHOW_MAX + 8];
    json_t *v = member(obj, path, key, why, why_len);
    if (!v)
        return false;
    if (!json_is_integer(v)) {
        fail(why, why_len, "%s%s %s is not an integer", path, key, show(v, vb, sizeof(vb)));
        return false;
    }
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        if (hi == INT64_MAX)
            fail(why, why_len, "%s%s %lld is less than %lld", path, key, (long long)x,
                 (long long)lo);
        else
            fail(why, why_len, "%s%s %lld is not between %lld and %lld", path, key, (long long)x,
                 (long long)lo, (long long)hi);
        return false;
    }
    *out = (int64_t)x;
    return true;
}

/* Fetch an RFC 3339 time member as milliseconds. On error writes @p why, returns false. */
static bool get_time(json_t *obj, const char *path, const char *key, int64_t *out, char *why,
                     size_t why_len)
{
    char vb[VALUE_SHOW_MAX + 8];
    json_t *v = member(obj, path, key, why, why_len);
    if (!v)
        return false;
    if (!json_is_string(v) || bp_time_parse(json_string_value(v), out) != BP_OK) {
        fail(why, why_len, "%s%s %s is not an RFC 3339 time", path, key, show(v, vb, sizeof(vb)));
        return false;
    }
    return true;
}

/* Optional members: absent and null both mean "the default" (the out value is left alone). */
static json_t *optional(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

static bool get_opt_bool(json_t *obj, const char *key, bool *out, char *why, size_t why_len)
{
    char vb[VALUE_SHOW_MAX + 8];
    json_t *v = optional(obj, key);
    if (!v)
        return true;
    if (!json_is_boolean(v)) {
        fail(why, why_len, "%s %s is not a boolean", key, show(v, vb, sizeof(vb)));
        return false;
    }
    *out = json_is_true(v);
    return true;
}

static bool get_opt_int(json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out,
                        char *why, size_t why_len)
{
    return !optional(obj, key) || get_int(obj, "", key, lo, hi, out, why, why_len);
}

/* Reject members of @p obj (at @p path, e.g. "xpBoosts[0]") not among @p known: in these
 * small objects a misspelt optional member (say "reason") would otherwise silently change
 * what the season does. */
static bool only_known(json_t *obj, const char *path, const char *const *known, size_t n,
                       const char *list, char *why, size_t why_len)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        size_t i = 0;
        while (i < n && strcmp(key, known[i]) != 0)
            i++;
        if (i == n) {
            char kb[VALUE_SHOW_MAX + 8];
            json_t *k = json_string(key);
            fail(why, why_len, "%s has an unknown member %s (known: %s)", path,
                 k ? show(k, kb, sizeof(kb)) : "(name)", list);
            json_decref(k);
            return false;
        }
    }
    return true;
}

/* Top-level members we read (or knowingly drop): anything else is logged and ignored. */
static bool known_top_level(const char *key)
{
    static const char *const known[] = {"id",
                                        "name",
                                        "startsAt",
                                        "endsAt",
                                        "status",
                                        "maxLevel",
                                        "levels",
                                        "autoClaim",
                                        "claimWindowHours",
                                        "grantUnclaimedAtEnd",
                                        "lateEventGraceHours",
                                        "dailyXpCap",
                                        "xpBoosts",
                                        "overflow"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(key, known[i]) == 0)
            return true;
    return false;
}

/* Fill one reward from the object @p r found at @p where (e.g. "levels[1].rewards[0]"). On
 * error writes @p why, returns false. */
static bool parse_reward(json_t *r, const char *where, int32_t level, bp_reward_t *out, char *why,
                         size_t why_len)
{
    char path[80], vb[VALUE_SHOW_MAX + 8];
    int64_t q;
    snprintf(path, sizeof(path), "%s.", where);
    if (!json_is_object(r)) {
        fail(why, why_len, "%s %s is not an object", where, show(r, vb, sizeof(vb)));
        return false;
    }
    memset(out, 0, sizeof(*out));
    out->level = level;
    json_t *t = member(r, path, "tier", why, why_len);
    if (!t)
        return false;
    const char *ts = json_string_value(t); /* NULL when not a string */
    if (ts && strcmp(ts, "free") == 0 && json_string_length(t) == 4) {
        out->tier = BP_TIER_FREE;
    } else if (ts && strcmp(ts, "premium") == 0 && json_string_length(t) == 7) {
        out->tier = BP_TIER_PREMIUM;
    } else {
        fail(why, why_len, "%stier %s is not one of free, premium", path, show(t, vb, sizeof(vb)));
        return false;
    }
    if (!get_string(r, path, "rewardId", out->reward_id, sizeof(out->reward_id), true, why,
                    why_len) ||
        !get_string(r, path, "itemId", out->item_id, sizeof(out->item_id), true, why, why_len) ||
        !get_int(r, path, "quantity", 1, INT32_MAX, &q, why, why_len))
        return false;
    out->quantity = (int32_t)q;
    json_t *a = json_object_get(r, "assetUrl");
    if (a && !json_is_null(a) &&
        !get_string(r, path, "assetUrl", out->asset_url, sizeof(out->asset_url), false, why,
                    why_len))
        return false;
    return true;
}

/* Fill xp_total and rewards of @p s from the validated-shape @p levels array. */
static bool parse_levels(json_t *levels, bp_season_t *s, char *why, size_t why_len)
{
    char path[48], vb[VALUE_SHOW_MAX + 8];
    size_t k = 0;
    for (size_t i = 0; i < json_array_size(levels); i++) {
        json_t *lv = json_array_get(levels, i);
        int64_t level, xp;
        snprintf(path, sizeof(path), "levels[%zu].", i);
        if (!get_int(lv, path, "level", INT64_MIN, INT64_MAX, &level, why, why_len))
            return false;
        if (level != (int64_t)i + 1) {
            fail(why, why_len,
                 "levels[%zu].level %lld is not %zu (levels must be listed 1..%d in order)", i,
                 (long long)level, i + 1, s->max_level);
            return false;
        }
        if (!get_int(lv, path, "xpTotal", 0, INT64_MAX, &xp, why, why_len))
            return false;
        if (i == 0 && xp != 0) {
            fail(why, why_len, "levels[0].xpTotal %lld is not 0 (every player starts at level 1)",
                 (long long)xp);
            return false;
        }
        if (i > 0 && xp <= s->xp_total[i]) {
            fail(why, why_len,
                 "levels[%zu].xpTotal %lld is not greater than levels[%zu].xpTotal %lld", i,
                 (long long)xp, i - 1, (long long)s->xp_total[i]);
            return false;
        }
        s->xp_total[i + 1] = xp;
        json_t *rw = json_object_get(lv, "rewards");
        if (!rw || json_is_null(rw))
            continue; /* a level without rewards */
        if (!json_is_array(rw)) {
            fail(why, why_len, "levels[%zu].rewards %s is not an array", i,
                 show(rw, vb, sizeof(vb)));
            return false;
        }
        for (size_t j = 0; j < json_array_size(rw); j++, k++) {
            char where[64];
            snprintf(where, sizeof(where), "levels[%zu].rewards[%zu]", i, j);
            if (!parse_reward(json_array_get(rw, j), where, (int32_t)level, &s->rewards[k], why,
                              why_len))
                return false;
        }
    }
    s->n_rewards = k;
    return true;
}

#define HOUR_MS INT64_C(3600000)
#define WINDOW_HOURS_MAX (BP_WINDOW_MS_MAX / HOUR_MS)
/* Tolerance when turning a JSON multiplier into whole percents: 1.1 arrives as
 * 1.1000000000000001 after a round trip through a double printer. */
#define PCT_EPSILON 1e-6

/* A boost multiplier (a JSON number, 2 or 1.5) as whole percents. */
static bool parse_multiplier(json_t *b, const char *path, int32_t *pct, char *why, size_t why_len)
{
    char vb[VALUE_SHOW_MAX + 8];
    json_t *v = member(b, path, "multiplier", why, why_len);
    if (!v)
        return false;
    if (!json_is_number(v)) {
        fail(why, why_len, "%smultiplier %s is not a number", path, show(v, vb, sizeof(vb)));
        return false;
    }
    double m = json_number_value(v);
    double lo = BP_BOOST_PCT_MIN / 100.0, hi = BP_BOOST_PCT_MAX / 100.0;
    if (!(m >= lo - PCT_EPSILON / 100 && m <= hi + PCT_EPSILON / 100)) {
        fail(why, why_len, "%smultiplier %.15g is not between %.15g and %.15g", path, m, lo, hi);
        return false;
    }
    double scaled = m * 100.0;
    int32_t whole = (int32_t)(scaled + 0.5); /* positive here: rounds to nearest */
    if (scaled - whole > PCT_EPSILON || whole - scaled > PCT_EPSILON) {
        fail(why, why_len, "%smultiplier %.15g has more than 2 decimals", path, m);
        return false;
    }
    *pct = whole;
    return true;
}

static bool reason_ok(const char *s, size_t n)
{
    if (n == 0 || n > BP_REASON_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static bool parse_reasons(json_t *b, const char *path, bp_boost_t *out, char *why, size_t why_len)
{
    char vb[VALUE_SHOW_MAX + 8];
    json_t *rs = optional(b, "reasons");
    if (!rs)
        return true; /* every reason */
    if (!json_is_array(rs)) {
        fail(why, why_len, "%sreasons %s is not an array", path, show(rs, vb, sizeof(vb)));
        return false;
    }
    if (json_array_size(rs) > BP_BOOST_REASONS_MAX) {
        fail(why, why_len, "%sreasons has %zu entries, more than %d", path, json_array_size(rs),
             BP_BOOST_REASONS_MAX);
        return false;
    }
    for (size_t j = 0; j < json_array_size(rs); j++) {
        json_t *r = json_array_get(rs, j);
        if (!json_is_string(r)) {
            fail(why, why_len, "%sreasons[%zu] %s is not a string", path, j,
                 show(r, vb, sizeof(vb)));
            return false;
        }
        size_t n = json_string_length(r);
        if (!reason_ok(json_string_value(r), n)) {
            fail(why, why_len, "%sreasons[%zu] %s is not 1..%d characters of printable ASCII", path,
                 j, show(r, vb, sizeof(vb)), BP_REASON_MAX);
            return false;
        }
        memcpy(out->reasons[j], json_string_value(r), n + 1);
    }
    out->n_reasons = json_array_size(rs);
    return true;
}

static bool parse_boost(json_t *b, size_t i, bp_boost_t *out, char *why, size_t why_len)
{
    static const char *const known[] = {"startsAt", "endsAt", "multiplier", "reasons"};
    char where[32], path[40], vb[VALUE_SHOW_MAX + 8], vb2[VALUE_SHOW_MAX + 8];
    snprintf(where, sizeof(where), "xpBoosts[%zu]", i);
    snprintf(path, sizeof(path), "%s.", where);
    if (!json_is_object(b)) {
        fail(why, why_len, "%s %s is not an object", where, show(b, vb, sizeof(vb)));
        return false;
    }
    memset(out, 0, sizeof(*out));
    if (!only_known(b, where, known, sizeof(known) / sizeof(known[0]),
                    "startsAt, endsAt, multiplier, reasons", why, why_len) ||
        !get_time(b, path, "startsAt", &out->starts_at_ms, why, why_len) ||
        !get_time(b, path, "endsAt", &out->ends_at_ms, why, why_len))
        return false;
    if (out->ends_at_ms <= out->starts_at_ms) {
        fail(why, why_len, "%sendsAt %s is not after startsAt %s", path,
             show(json_object_get(b, "endsAt"), vb, sizeof(vb)),
             show(json_object_get(b, "startsAt"), vb2, sizeof(vb2)));
        return false;
    }
    return parse_multiplier(b, path, &out->multiplier_pct, why, why_len) &&
           parse_reasons(b, path, out, why, why_len);
}

static bool parse_boosts(json_t *root, bp_season_t *s, char *why, size_t why_len)
{
    char vb[VALUE_SHOW_MAX + 8];
    json_t *bs = optional(root, "xpBoosts");
    if (!bs)
        return true;
    if (!json_is_array(bs)) {
        fail(why, why_len, "xpBoosts %s is not an array", show(bs, vb, sizeof(vb)));
        return false;
    }
    if (json_array_size(bs) > BP_BOOSTS_MAX) {
        fail(why, why_len, "xpBoosts has %zu entries, more than %d", json_array_size(bs),
             BP_BOOSTS_MAX);
        return false;
    }
    for (size_t i = 0; i < json_array_size(bs); i++)
        if (!parse_boost(json_array_get(bs, i), i, &s->boosts[i], why, why_len))
            return false;
    s->n_boosts = json_array_size(bs);
    return true;
}

/* Overflow policies by their JSON name, and the members each allows. */
static const struct {
    const char *name;
    bp_overflow_t policy;
} overflow_policies[] = {
    {"none", BP_OVERFLOW_NONE},
    {"bonusLevels", BP_OVERFLOW_BONUS_LEVELS},
};

static bool parse_overflow(json_t *root, bp_season_t *s, char *why, size_t why_len)
{
    static const char *const known_none[] = {"policy"};
    static const char *const known_bonus[] = {"policy", "xpPerLevel", "reward"};
    char vb[VALUE_SHOW_MAX + 8];
    json_t *o = optional(root, "overflow");
    size_t k = 0;
    if (!o)
        return true;
    if (!json_is_object(o)) {
        fail(why, why_len, "overflow %s is not an object", show(o, vb, sizeof(vb)));
        return false;
    }
    json_t *p = member(o, "overflow.", "policy", why, why_len);
    if (!p)
        return false;
    const char *ps = json_string_value(p);
    while (
        k < sizeof(overflow_policies) / sizeof(overflow_policies[0]) &&
        !(ps && strlen(ps) == json_string_length(p) && strcmp(ps, overflow_policies[k].name) == 0))
        k++;
    if (k == sizeof(overflow_policies) / sizeof(overflow_policies[0])) {
        fail(why, why_len, "overflow.policy %s is not one of none, bonusLevels",
             show(p, vb, sizeof(vb)));
        return false;
    }
    s->overflow = overflow_policies[k].policy;
    if (s->overflow == BP_OVERFLOW_NONE)
        return only_known(o, "overflow", known_none, 1, "policy (with policy \"none\")", why,
                          why_len);
    if (!only_known(o, "overflow", known_bonus, 3, "policy, xpPerLevel, reward", why, why_len) ||
        !get_int(o, "overflow.", "xpPerLevel", BP_OVERFLOW_XP_MIN, BP_OPTION_XP_MAX,
                 &s->overflow_xp_per_level, why, why_len))
        return false;
    json_t *r = member(o, "overflow.", "reward", why, why_len);
    return r && parse_reward(r, "overflow.reward", 0, &s->overflow_reward, why, why_len);
}

/* The season options; every one is optional and defaults to its zero value. */
static bool parse_options(json_t *root, bp_season_t *s, char *why, size_t why_len)
{
    int64_t hours = 0;
    if (!get_opt_bool(root, "autoClaim", &s->auto_claim, why, why_len) ||
        !get_opt_bool(root, "grantUnclaimedAtEnd", &s->grant_unclaimed_at_end, why, why_len) ||
        !get_opt_int(root, "claimWindowHours", 0, WINDOW_HOURS_MAX, &hours, why, why_len))
        return false;
    s->claim_window_ms = hours * HOUR_MS;
    hours = 0;
    if (!get_opt_int(root, "lateEventGraceHours", 0, WINDOW_HOURS_MAX, &hours, why, why_len))
        return false;
    s->late_grace_ms = hours * HOUR_MS;
    if (!get_opt_int(root, "dailyXpCap", 1, BP_OPTION_XP_MAX, &s->daily_xp_cap, why, why_len))
        return false;
    return parse_boosts(root, s, why, why_len) && parse_overflow(root, s, why, why_len);
}

bp_err_t bp_season_from_json(const char *text, size_t len, bp_season_t *out, char *why,
                             size_t why_len)
{
    bp_err_t rc = BP_EINVAL;
    bp_season_t s, head; /* head: id, name and times parsed before the arrays exist */
    json_error_t jerr;
    char vb[VALUE_SHOW_MAX + 8];
    int64_t max_level;
    size_t n_rewards = 0;
    memset(&s, 0, sizeof(s));
    memset(&head, 0, sizeof(head));

    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        fail(why, why_len, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
             jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        fail(why, why_len, "the season is not a JSON object but %s", show(root, vb, sizeof(vb)));
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (!known_top_level(key)) {
            char kb[96];
            BP_LOG_WARN("season JSON: unknown member ignored", "\"member\":\"%s\"",
                        bp_log_str(kb, sizeof(kb), key));
        }
    }
    if (!get_string(root, "", "id", head.id, sizeof(head.id), true, why, why_len))
        goto out;
    if (!get_string(root, "", "name", head.name, sizeof(head.name), false, why, why_len))
        goto out;
    if (head.name[0] == '\0') {
        fail(why, why_len, "name \"\" is empty");
        goto out;
    }
    if (!get_time(root, "", "startsAt", &head.starts_at_ms, why, why_len) ||
        !get_time(root, "", "endsAt", &head.ends_at_ms, why, why_len))
        goto out;
    if (head.ends_at_ms <= head.starts_at_ms) {
        char vb2[VALUE_SHOW_MAX + 8];
        fail(why, why_len, "endsAt %s is not after startsAt %s",
             show(json_object_get(root, "endsAt"), vb, sizeof(vb)),
             show(json_object_get(root, "startsAt"), vb2, sizeof(vb2)));
        goto out;
    }
    if (!get_int(root, "", "maxLevel", 1, BP_LEVEL_MAX, &max_level, why, why_len))
        goto out;
    json_t *levels = member(root, "", "levels", why, why_len);
    if (!levels)
        goto out;
    if (!json_is_array(levels)) {
        fail(why, why_len, "levels %s is not an array", show(levels, vb, sizeof(vb)));
        goto out;
    }
    if (json_array_size(levels) != (size_t)max_level) {
        fail(why, why_len, "levels has %zu entries but maxLevel is %lld", json_array_size(levels),
             (long long)max_level);
        goto out;
    }
    /* Size the reward array before filling it; shapes are checked while filling. */
    for (size_t i = 0; i < json_array_size(levels); i++) {
        json_t *lv = json_array_get(levels, i);
        if (!json_is_object(lv)) {
            fail(why, why_len, "levels[%zu] %s is not an object", i, show(lv, vb, sizeof(vb)));
            goto out;
        }
        n_rewards += json_array_size(json_object_get(lv, "rewards"));
    }
    /* init zeroes the whole struct: the head fields are copied in afterwards. */
    rc = bp_season_init(&s, (int32_t)max_level, n_rewards);
    if (rc == BP_OK) {
        memcpy(s.id, head.id, sizeof(s.id));
        memcpy(s.name, head.name, sizeof(s.name));
        s.starts_at_ms = head.starts_at_ms;
        s.ends_at_ms = head.ends_at_ms;
    } else {
        if (rc == BP_EINVAL)
            fail(why, why_len, "maxLevel %lld is not between 1 and %d", (long long)max_level,
                 BP_LEVEL_MAX);
        goto out;
    }
    rc = BP_EINVAL;
    if (!parse_levels(levels, &s, why, why_len) || !parse_options(root, &s, why, why_len))
        goto out;
    rc = bp_season_validate(&s, why, why_len);

out:
    if (rc == BP_OK)
        *out = s;
    else
        bp_season_fini(&s);
    json_decref(root);
    return rc;
}

/* Order rewards by level (stable) without assuming the stored order. @p order gets
 * n_rewards indexes, @p first gets max_level + 2 offsets into it. */
static void group_by_level(const bp_season_t *s, size_t *order, size_t *first)
{
    size_t nl = (size_t)s->max_level;
    memset(first, 0, (nl + 2) * sizeof(*first));
    for (size_t k = 0; k < s->n_rewards; k++) {
        int32_t l = s->rewards[k].level;
        if (l >= 1 && (size_t)l <= nl)
            first[l + 1]++;
    }
    for (size_t l = 1; l <= nl; l++)
        first[l + 1] += first[l];
    /* first[l] is now the start of level l; use first[l] as a cursor, then shift back. */
    for (size_t k = 0; k < s->n_rewards; k++) {
        int32_t l = s->rewards[k].level;
        if (l >= 1 && (size_t)l <= nl)
            order[first[l]++] = k;
    }
    for (size_t l = nl + 1; l >= 2; l--)
        first[l] = first[l - 1];
    first[1] = 0;
}

/* Output buffer of bp_season_to_json: grows as needed, remembers an allocation failure. */
typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} sbuf_t;

static bool sb_reserve(sbuf_t *b, size_t extra)
{
    if (b->oom)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *nb = realloc(b->buf, cap);
    if (!nb) {
        b->oom = true; /* the caller sees it once at the end */
        return false;
    }
    b->buf = nb;
    b->cap = cap;
    return true;
}

static void sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

#define SB_LIT(b, lit) sb_put((b), (lit), sizeof(lit) - 1)

static void sb_int(sbuf_t *b, int64_t v)
{
    char tmp[24], *p = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    sb_put(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* A JSON string literal of @p s (UTF-8 passes through; quotes, backslashes and control
 * characters are escaped). */
static void sb_str(sbuf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);
    if (!sb_reserve(b, 6 * n + 2))
        return;
    char *o = b->buf + b->len;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *o++ = '\\';
            *o++ = (char)*p;
        } else if (*p < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[*p >> 4];
            o[5] = hex[*p & 15];
            o += 6;
        } else {
            *o++ = (char)*p;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->buf);
}

static void sb_reward(sbuf_t *b, const bp_reward_t *r)
{
    if (r->tier == BP_TIER_PREMIUM)
        SB_LIT(b, "{\"tier\":\"premium\",\"rewardId\":");
    else
        SB_LIT(b, "{\"tier\":\"free\",\"rewardId\":");
    sb_str(b, r->reward_id);
    SB_LIT(b, ",\"itemId\":");
    sb_str(b, r->item_id);
    SB_LIT(b, ",\"quantity\":");
    sb_int(b, r->quantity);
    if (r->asset_url[0]) {
        SB_LIT(b, ",\"assetUrl\":");
        sb_str(b, r->asset_url);
    }
    SB_LIT(b, "}");
}

static void sb_bool(sbuf_t *b, bool v)
{
    if (v)
        SB_LIT(b, "true");
    else
        SB_LIT(b, "false");
}

static void sb_time(sbuf_t *b, int64_t ms)
{
    char t[40];
    bp_time_format(ms, t, sizeof(t));
    sb_str(b, t);
}

/* A multiplier in percent as the shortest JSON number: 200 → 2, 150 → 1.5, 105 → 1.05. */
static void sb_multiplier(sbuf_t *b, int32_t pct)
{
    char tmp[4] = {'.', 0, 0, 0};
    int32_t frac = pct % 100;
    sb_int(b, pct / 100);
    if (frac == 0)
        return;
    tmp[1] = (char)('0' + frac / 10);
    tmp[2] = (char)('0' + frac % 10);
    sb_put(b, tmp, frac % 10 ? 3 : 2);
}

static void sb_boost(sbuf_t *b, const bp_boost_t *x)
{
    size_t n = x->n_reasons < BP_BOOST_REASONS_MAX ? x->n_reasons : BP_BOOST_REASONS_MAX;
    SB_LIT(b, "{\"startsAt\":");
    sb_time(b, x->starts_at_ms);
    SB_LIT(b, ",\"endsAt\":");
    sb_time(b, x->ends_at_ms);
    SB_LIT(b, ",\"multiplier\":");
    sb_multiplier(b, x->multiplier_pct);
    SB_LIT(b, ",\"reasons\":[");
    for (size_t j = 0; j < n; j++) {
        if (j > 0)
            SB_LIT(b, ",");
        sb_str(b, x->reasons[j]);
    }
    SB_LIT(b, "]}");
}

/* The options, always all of them, so that clients see the effective values. Windows are
 * whole hours in JSON; a definition from JSON always holds whole hours, so they print
 * exactly. */
static void sb_options(sbuf_t *b, const bp_season_t *s)
{
    size_t n = s->n_boosts < BP_BOOSTS_MAX ? s->n_boosts : BP_BOOSTS_MAX;
    SB_LIT(b, ",\"autoClaim\":");
    sb_bool(b, s->auto_claim);
    SB_LIT(b, ",\"claimWindowHours\":");
    sb_int(b, s->claim_window_ms / HOUR_MS);
    SB_LIT(b, ",\"grantUnclaimedAtEnd\":");
    sb_bool(b, s->grant_unclaimed_at_end);
    SB_LIT(b, ",\"lateEventGraceHours\":");
    sb_int(b, s->late_grace_ms / HOUR_MS);
    SB_LIT(b, ",\"dailyXpCap\":");
    if (s->daily_xp_cap > 0)
        sb_int(b, s->daily_xp_cap);
    else
        SB_LIT(b, "null");
    SB_LIT(b, ",\"xpBoosts\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            SB_LIT(b, ",");
        sb_boost(b, &s->boosts[i]);
    }
    if (s->overflow == BP_OVERFLOW_BONUS_LEVELS) {
        SB_LIT(b, "],\"overflow\":{\"policy\":\"bonusLevels\",\"xpPerLevel\":");
        sb_int(b, s->overflow_xp_per_level);
        SB_LIT(b, ",\"reward\":");
        sb_reward(b, &s->overflow_reward);
        SB_LIT(b, "}");
    } else {
        SB_LIT(b, "],\"overflow\":{\"policy\":\"none\"}");
    }
}

/* Written by hand rather than through jansson: this serves GET /seasons/current, and building
 * a jansson tree of a 100-level season costs ~20x more than printing it. */
char *bp_season_to_json(const bp_season_t *s, int64_t now_ms)
{
    sbuf_t b = {0};
    char starts[40], ends[40];
    size_t nl = s->max_level > 0 ? (size_t)s->max_level : 0;
    size_t *order = malloc((s->n_rewards ? s->n_rewards : 1) * sizeof(*order));
    size_t *first = malloc((nl + 2) * sizeof(*first));
    if (!order || !first ||
        !sb_reserve(&b, 1024 + 48 * nl + 240 * s->n_rewards + 700 * s->n_boosts)) {
        b.oom = true; /* NULL: allocation failed */
        goto out;
    }
    group_by_level(s, order, first);
    bp_time_format(s->starts_at_ms, starts, sizeof(starts));
    bp_time_format(s->ends_at_ms, ends, sizeof(ends));

    SB_LIT(&b, "{\"id\":");
    sb_str(&b, s->id);
    SB_LIT(&b, ",\"name\":");
    sb_str(&b, s->name);
    SB_LIT(&b, ",\"startsAt\":");
    sb_str(&b, starts);
    SB_LIT(&b, ",\"endsAt\":");
    sb_str(&b, ends);
    SB_LIT(&b, ",\"status\":");
    sb_str(&b, bp_season_status_str(bp_season_status(s, now_ms)));
    SB_LIT(&b, ",\"maxLevel\":");
    sb_int(&b, s->max_level);
    sb_options(&b, s);
    SB_LIT(&b, ",\"levels\":[");
    for (size_t l = 1; l <= nl; l++) {
        SB_LIT(&b, "{\"level\":");
        sb_int(&b, (int64_t)l);
        SB_LIT(&b, ",\"xpTotal\":");
        sb_int(&b, s->xp_total ? s->xp_total[l] : 0);
        SB_LIT(&b, ",\"rewards\":[");
        for (size_t k = first[l]; k < first[l + 1]; k++) {
            if (k > first[l])
                SB_LIT(&b, ",");
            sb_reward(&b, &s->rewards[order[k]]);
        }
        if (l < nl)
            SB_LIT(&b, "]},");
        else
            SB_LIT(&b, "]}");
    }
    SB_LIT(&b, "]}");
    if (sb_reserve(&b, 0))
        b.buf[b.len] = '\0';

out:
    free(order);
    free(first);
    if (b.oom) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}
