/** @file Request body limits and parsing, the per-route body validators as field tables,
 *  and numeric query parameters (see http/bodies.h). */
#include "http/bodies.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/reward.h"
#include "core/timefmt.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/** The rule of every id member. */
#define RULE_ID "1 to " STR(BP_ID_MAX) " characters of [A-Za-z0-9._:@-]"
/** Most bytes of a member name or number shown in a reason. */
#define SHOW_MAX 40

/** printf into @p why, then replace every byte that is not printable ASCII with '?', so
 *  that the reason is valid UTF-8 whatever the body held. */
__attribute__((format(printf, 3, 4))) static void set_why(char *why, size_t why_len,
                                                          const char *fmt, ...)
{
    va_list ap;
    if (!why || why_len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    for (char *c = why; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            *c = '?';
}

/** Copy at most SHOW_MAX bytes of @p s[0..n) into @p buf (SHOW_MAX + 4 bytes), "..."
 *  marking a cut; set_why makes the bytes printable afterwards. */
static const char *show(const char *s, size_t n, char *buf)
{
    size_t k = n > SHOW_MAX ? SHOW_MAX : n;
    memcpy(buf, s, k);
    strcpy(buf + k, n > SHOW_MAX ? "..." : "");
    return buf;
}

/* ---- the body limits, checked in one pass before jansson parses ---- */

/** One open object or array of the scan. */
typedef struct {
    bool object;
    bool want_key;          /**< object: the next string is a member name */
    size_t index;           /**< array: the current element */
    char key[SHOW_MAX + 4]; /**< object: the current member's name, as shown */
} level_t;

/** Where the scan is: the open levels, outermost first. */
typedef struct {
    level_t lv[BP_BODY_DEPTH_MAX];
    size_t depth;
} scan_t;

/** Write the path of the current value ("levels[3].xpTotal"; "the body" at the top). */
static void scan_path(const scan_t *sc, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t d = 0; d < sc->depth && o < len; d++) {
        const level_t *l = &sc->lv[d];
        int n = l->object ? snprintf(buf + o, len - o, "%s%s", o ? "." : "", l->key)
                          : snprintf(buf + o, len - o, "[%zu]", l->index);
        o += n > 0 ? (size_t)n : 0;
    }
    if (!buf[0])
        snprintf(buf, len, "the body");
}

/** @return true when @p s[0..n) is a JSON number (RFC 8259 grammar). */
static bool number_syntax(const char *s, size_t n)
{
    size_t i = 0, digits;
    if (i < n && s[i] == '-')
        i++;
    for (digits = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (digits == 0 || (digits > 1 && s[i - digits] == '0'))
        return false;
    if (i < n && s[i] == '.') {
        for (i++, digits = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
        if (digits == 0)
            return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        for (digits = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
        if (digits == 0)
            return false;
    }
    return i == n;
}

/**
 * Would jansson refuse the number @p s[0..n) as too large? Integers must fit json_int_t
 * (64 bits), other numbers a finite double, exactly as jansson's lexer decides.
 * @return true when it is a number out of that range; false otherwise, including text
 *         that is no number at all (jansson reports the syntax).
 */
static bool number_out_of_range(const char *s, size_t n)
{
    static const char int64_max[] = "9223372036854775807", int64_min[] = "9223372036854775808";
    if (!number_syntax(s, n))
        return false;
    if (!memchr(s, '.', n) && !memchr(s, 'e', n) && !memchr(s, 'E', n)) {
        bool neg = s[0] == '-';
        const char *digits = s + neg;
        size_t k = n - neg, lim = sizeof(int64_max) - 1;
        return k > lim || (k == lim && memcmp(digits, neg ? int64_min : int64_max, lim) > 0);
    }
    char small[64];
    char *copy = n < sizeof(small) ? small : malloc(n + 1);
    if (!copy)
        return false; /* jansson copies it too and will say what it finds */
    memcpy(copy, s, n);
    copy[n] = '\0';
    errno = 0;
    double v = strtod(copy, NULL);
    bool overflow = (v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE;
    if (copy != small)
        free(copy);
    return overflow;
}

/**
 * One pass over the body's tokens: nesting depth and number ranges. Syntax is jansson's
 * business: on anything malformed the scan stops and lets it report.
 * @return BP_OK or BP_EINVAL with @p why set.
 */
static bp_err_t scan_limits(const char *s, size_t len, char *why, size_t why_len)
{
    scan_t sc;
    char path[BP_BODY_DEPTH_MAX * (SHOW_MAX + 8)], num[SHOW_MAX + 4];
    size_t i = 0;
    sc.depth = 0;
    while (i < len) {
        level_t *top = sc.depth ? &sc.lv[sc.depth - 1] : NULL;
        char c = s[i];
        if (c == '{' || c == '[') {
            if (sc.depth == BP_BODY_DEPTH_MAX) {
                scan_path(&sc, path, sizeof(path));
                set_why(why, why_len, "body nests deeper than %d levels (at %s)", BP_BODY_DEPTH_MAX,
                        path);
                return BP_EINVAL;
            }
            sc.lv[sc.depth++] = (level_t){.object = c == '{', .want_key = c == '{'};
            i++;
        } else if (c == '}' || c == ']') {
            if (!top)
                return BP_OK;
            sc.depth--;
            i++;
        } else if (c == ',' || c == ':') {
            if (top && c == ':')
                top->want_key = false;
            else if (top && top->object)
                top->want_key = true;
            else if (top)
                top->index++;
            i++;
        } else if (c == '"') {
            size_t start = ++i;
            while (i < len && s[i] != '"')
                i += s[i] == '\\' ? 2 : 1;
            if (i >= len)
                return BP_OK;
            if (top && top->object && top->want_key)
                show(s + start, i - start, top->key);
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t start = i;
            while (i < len && s[i] && strchr("+-.0123456789eE", s[i]))
                i++;
            if (number_out_of_range(s + start, i - start)) {
                scan_path(&sc, path, sizeof(path));
                set_why(why, why_len, "%s: %s is out of range", path,
                        show(s + start, i - start, num));
                return BP_EINVAL;
            }
        } else {
            i++;
        }
    }
    return BP_OK;
}

bp_err_t bp_http_body_json(const char *text, size_t len, json_t **out, char *why, size_t why_len)
{
    json_error_t jerr;
    json_t *root = NULL;
    bp_err_t err = BP_EINVAL;

    *out = NULL;
    if (!text || len == 0) {
        set_why(why, why_len, "a JSON object body is required");
        goto out;
    }
    if (scan_limits(text, len, why, why_len) != BP_OK)
        goto out;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        set_why(why, why_len, "body is not valid JSON (line %d, column %d): %s", jerr.line,
                jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        set_why(why, why_len, "body must be a JSON object");
        goto out;
    }
    *out = root;
    root = NULL;
    err = BP_OK;
out:
    json_decref(root);
    return err;
}

/* ---- route bodies: a table of members per body ---- */

typedef struct field field_t;
/** Store member value @p v at @p out + f->offset. @return false when @p v breaks the
 *  field's rule; @p why is set only when f->rule alone would not say why. */
typedef bool (*take_fn)(const field_t *f, json_t *v, void *out, char *why, size_t why_len);

struct field {
    const char *name;
    bool required;
    take_fn take;
    size_t offset;      /**< of the destination in the body struct */
    long long min, max; /**< integers: the range; strings: the longest (bytes) in max */
    const char *rule;   /**< completes "<name> must be ..." */
};

typedef struct {
    const field_t *fields;
    size_t n;
    bool strict; /**< members not in the table are refused */
} body_spec_t;

#define AT(out, f, type) ((type *)((char *)(out) + (f)->offset))

static bool take_int32(const field_t *f, json_t *v, void *out, char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    if (!json_is_integer(v) || json_integer_value(v) < f->min || json_integer_value(v) > f->max)
        return false;
    *AT(out, f, int32_t) = (int32_t)json_integer_value(v);
    return true;
}

static bool is_id(json_t *v)
{
    return json_is_string(v) && bp_id_valid(json_string_value(v), json_string_length(v));
}

/** @return true when @p v is a string of 1..@p max bytes of printable ASCII. */
static bool is_text(json_t *v, long long max)
{
    if (!json_is_string(v))
        return false;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return n >= 1 && (long long)n <= max;
}

/** An id, borrowed. */
static bool take_id(const field_t *f, json_t *v, void *out, char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    if (!is_id(v))
        return false;
    *AT(out, f, const char *) = json_string_value(v);
    return true;
}

/** An id, copied into a char[BP_ID_MAX + 1]. */
static bool copy_id(const field_t *f, json_t *v, void *out, char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    if (!is_id(v))
        return false;
    memcpy(AT(out, f, char), json_string_value(v), json_string_length(v) + 1);
    return true;
}

/** Printable text of 1..f->max bytes, borrowed. */
static bool take_text(const field_t *f, json_t *v, void *out, char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    if (!is_text(v, f->max))
        return false;
    *AT(out, f, const char *) = json_string_value(v);
    return true;
}

/** Printable text of 1..f->max bytes, copied into a char[f->max + 1]. */
static bool copy_text(const field_t *f, json_t *v, void *out, char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    if (!is_text(v, f->max))
        return false;
    memcpy(AT(out, f, char), json_string_value(v), json_string_length(v) + 1);
    return true;
}

static bool take_tier(const field_t *f, json_t *v, void *out, char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    return json_is_string(v) && bp_tier_parse(json_string_value(v), AT(out, f, bp_tier_t)) == BP_OK;
}

/** An RFC 3339 time after the epoch, as int64_t milliseconds. */
static bool take_time(const field_t *f, json_t *v, void *out, char *why, size_t why_len)
{
    int64_t ms = 0;
    (void)why;
    (void)why_len;
    if (!json_is_string(v) || bp_time_parse(json_string_value(v), &ms) != BP_OK || ms <= 0)
        return false;
    *AT(out, f, int64_t) = ms;
    return true;
}

/** XP grant metadata: an object of at most BP_XP_META_MAX string values into the
 *  bp_xp_body_t (the offset is unused). */
static bool take_metadata(const field_t *f, json_t *v, void *out, char *why, size_t why_len)
{
    bp_xp_body_t *b = out;
    const char *key;
    json_t *val;
    char shown[SHOW_MAX + 4];
    (void)f;
    if (!json_is_object(v))
        return false;
    if (json_object_size(v) > BP_XP_META_MAX) {
        set_why(why, why_len, "metadata may hold at most %d entries", BP_XP_META_MAX);
        return false;
    }
    b->n_meta = 0;
    json_object_foreach(v, key, val)
    {
        size_t klen = strlen(key);
        /* A NUL inside a value would cut it short on the wire: refuse it. */
        if (!json_is_string(val) || strlen(json_string_value(val)) != json_string_length(val)) {
            set_why(why, why_len, "metadata.%s must be a string", show(key, klen, shown));
            return false;
        }
        if (klen < 1 || klen > BP_XP_META_KEY_MAX ||
            json_string_length(val) > BP_XP_META_VALUE_MAX) {
            set_why(why, why_len, "metadata keys must be 1 to %d bytes and values at most %d bytes",
                    BP_XP_META_KEY_MAX, BP_XP_META_VALUE_MAX);
            return false;
        }
        b->meta_keys[b->n_meta] = key;
        b->meta_values[b->n_meta] = json_string_value(val);
        b->n_meta++;
    }
    return true;
}

/**
 * Fill @p out from @p root by @p spec: unknown members first (strict specs), then each
 * listed member in order. @return BP_OK or BP_EINVAL with @p why naming the member.
 */
static bp_err_t parse_members(const body_spec_t *spec, json_t *root, void *out, char *why,
                              size_t why_len)
{
    const char *key;
    json_t *v;
    char shown[SHOW_MAX + 4], expected[160];
    if (spec->strict) {
        json_object_foreach(root, key, v)
        {
            size_t i = 0;
            while (i < spec->n && strcmp(spec->fields[i].name, key) != 0)
                i++;
            if (i < spec->n)
                continue;
            size_t o = 0;
            for (size_t k = 0; k < spec->n && o < sizeof(expected); k++) {
                int n = snprintf(expected + o, sizeof(expected) - o, "%s%s", k ? ", " : "",
                                 spec->fields[k].name);
                o += n > 0 ? (size_t)n : 0;
            }
            set_why(why, why_len, "unknown member \"%s\" (expected %s)",
                    show(key, strlen(key), shown), expected);
            return BP_EINVAL;
        }
    }
    for (size_t i = 0; i < spec->n; i++) {
        const field_t *f = &spec->fields[i];
        v = json_object_get(root, f->name);
        if (!f->required && json_is_null(v))
            v = NULL; /* an optional member given as null is absent */
        if (!v && !f->required)
            continue;
        if (!v) {
            set_why(why, why_len, "%s is required", f->name);
            return BP_EINVAL;
        }
        if (why && why_len)
            why[0] = '\0';
        if (!f->take(f, v, out, why, why_len)) {
            if (!why || !why_len || !why[0])
                set_why(why, why_len, "%s must be %s", f->name, f->rule);
            return BP_EINVAL;
        }
    }
    return BP_OK;
}

#define FIELDS(t) t, sizeof(t) / sizeof(t[0])

static const field_t CLAIM_FIELDS[] = {
    {"level", true, take_int32, offsetof(bp_claim_body_t, level), 1, BP_LEVEL_MAX,
     "an integer from 1 to " STR(BP_LEVEL_MAX)},
    {"tier", true, take_tier, offsetof(bp_claim_body_t, tier), 0, 0, "\"free\" or \"premium\""},
};

static const field_t PREMIUM_FIELDS[] = {
    {"seasonId", false, take_id, offsetof(bp_premium_body_t, season_id), 0, 0, RULE_ID},
    {"transactionId", true, take_id, offsetof(bp_premium_body_t, transaction_id), 0, 0, RULE_ID},
    {"source", true, take_text, offsetof(bp_premium_body_t, source), 0, BP_PREMIUM_SOURCE_MAX,
     "1 to " STR(BP_PREMIUM_SOURCE_MAX) " printable ASCII characters"},
};

static const field_t LEVELS_FIELDS[] = {
    {"count", true, take_int32, offsetof(bp_levels_body_t, count), 1, BP_LEVEL_MAX,
     "an integer from 1 to " STR(BP_LEVEL_MAX)},
    {"transactionId", true, take_id, offsetof(bp_levels_body_t, transaction_id), 0, 0, RULE_ID},
};

static const field_t XP_FIELDS[] = {
    {"amount", true, take_int32, offsetof(bp_xp_body_t, ev.amount), 1, BP_XP_AMOUNT_MAX,
     "an integer from 1 to " STR(BP_XP_AMOUNT_MAX)},
    {"reason", true, copy_text, offsetof(bp_xp_body_t, ev.reason), 0, BP_REASON_MAX,
     "a string of 1 to " STR(BP_REASON_MAX) " printable ASCII characters"},
    {"metadata", false, take_metadata, 0, 0, 0, "an object of string values"},
    {"occurredAt", false, take_time, offsetof(bp_xp_body_t, ev.occurred_at_ms), 0, 0,
     "an RFC 3339 time (2026-01-01T12:00:00Z)"},
    {"seasonId", false, copy_id, offsetof(bp_xp_body_t, ev.season_id), 0, 0, RULE_ID},
};

/** Each kind's table and struct. */
static const struct {
    body_spec_t spec;
    size_t size;
} BODIES[BP_BODY_KINDS] = {
    [BP_BODY_CLAIM] = {{FIELDS(CLAIM_FIELDS), false}, sizeof(bp_claim_body_t)},
    [BP_BODY_PREMIUM] = {{FIELDS(PREMIUM_FIELDS), false}, sizeof(bp_premium_body_t)},
    [BP_BODY_LEVELS] = {{FIELDS(LEVELS_FIELDS), false}, sizeof(bp_levels_body_t)},
    [BP_BODY_XP] = {{FIELDS(XP_FIELDS), true}, sizeof(bp_xp_body_t)},
};

bp_err_t bp_http_body_parse(bp_body_kind_t kind, json_t *root, void *out, char *why, size_t why_len)
{
    if ((unsigned)kind >= BP_BODY_KINDS || !json_is_object(root)) {
        set_why(why, why_len, "no such body");
        return BP_EINVAL;
    }
    memset(out, 0, BODIES[kind].size);
    return parse_members(&BODIES[kind].spec, root, out, why, why_len);
}

/* ---- numeric query parameters ---- */

bool bp_http_query_num(const bp_query_num_t *p, const char *text, long long *out)
{
    long long v = 0;
    size_t n = text ? strlen(text) : 0;
    if (!text || (n == 0 && p->empty_is_default)) {
        *out = p->def;
        return true;
    }
    if (n < 1 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        v = v * 10 + (text[i] - '0');
    }
    if (v < p->min || v > p->max)
        return false;
    *out = v;
    return true;
}
