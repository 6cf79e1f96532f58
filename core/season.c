/** @file Season lifecycle, validation of a definition, and attribution of events to seasons. */
#include "core/season.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/timefmt.h"

/* A reward's identity for the duplicate check, sortable without a comparator context. */
typedef struct {
    const bp_reward_t *r;
    size_t idx;
} reward_slot_t;

bp_err_t bp_season_init(bp_season_t *s, int32_t max_level, size_t n_rewards)
{
    bp_err_t err = BP_OK;

    memset(s, 0, sizeof *s);
    if (max_level < 1 || max_level > BP_LEVEL_MAX) {
        err = BP_EINVAL;
        goto out;
    }
    s->xp_total = calloc((size_t)max_level + 1, sizeof *s->xp_total);
    if (s->xp_total == NULL) {
        err = BP_ENOMEM;
        goto out;
    }
    if (n_rewards > 0) {
        s->rewards = calloc(n_rewards, sizeof *s->rewards);
        if (s->rewards == NULL) {
            err = BP_ENOMEM;
            goto out;
        }
    }
    s->max_level = max_level;
    s->n_rewards = n_rewards;
out:
    if (err != BP_OK)
        bp_season_fini(s);
    return err;
}

void bp_season_fini(bp_season_t *s)
{
    if (s == NULL)
        return;
    free(s->xp_total);
    free(s->rewards);
    s->xp_total = NULL;
    s->rewards = NULL;
    s->n_rewards = 0;
    s->max_level = 0;
}

static bp_err_t fail(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bp_err_t fail(char *why, size_t why_len, const char *fmt, ...)
{
    if (why != NULL && why_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return BP_EINVAL;
}

/* Length of a fixed-size text field, or @p size when it lacks its terminator. */
static int field_len(const char *field, size_t size)
{
    return (int)strnlen(field, size);
}

static const char *tier_str(bp_tier_t t)
{
    return t == BP_TIER_PREMIUM ? "premium" : "free";
}

static int reward_key_cmp(const bp_reward_t *a, const bp_reward_t *b)
{
    if (a->level != b->level)
        return a->level < b->level ? -1 : 1;
    if (a->tier != b->tier)
        return a->tier < b->tier ? -1 : 1;
    return strncmp(a->reward_id, b->reward_id, sizeof a->reward_id);
}

static int reward_slot_cmp(const void *a, const void *b)
{
    const reward_slot_t *x = a, *y = b;
    int c = reward_key_cmp(x->r, y->r);
    if (c != 0)
        return c;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* The checks shared by level rewards and the overflow reward; @p where names the reward in
 * messages ("rewards[3]", "overflow.reward"). */
static bp_err_t validate_reward_fields(const bp_reward_t *r, const char *where, char *why,
                                       size_t why_len)
{
    int len;

    if (r->tier != BP_TIER_FREE && r->tier != BP_TIER_PREMIUM)
        return fail(why, why_len, "%s.tier %d is neither free nor premium", where, (int)r->tier);
    len = field_len(r->reward_id, sizeof r->reward_id);
    if (len == (int)sizeof r->reward_id || !bp_id_valid(r->reward_id, (size_t)len))
        return fail(why, why_len,
                    "%s.rewardId \"%.*s\" is not 1..%d characters of [A-Za-z0-9._:@-]", where, len,
                    r->reward_id, BP_ID_MAX);
    len = field_len(r->item_id, sizeof r->item_id);
    if (len == (int)sizeof r->item_id || !bp_id_valid(r->item_id, (size_t)len))
        return fail(why, why_len, "%s.itemId \"%.*s\" is not 1..%d characters of [A-Za-z0-9._:@-]",
                    where, len, r->item_id, BP_ID_MAX);
    if (r->quantity <= 0)
        return fail(why, why_len, "%s.quantity %d must be > 0", where, (int)r->quantity);
    if (strnlen(r->asset_url, sizeof r->asset_url) == sizeof r->asset_url)
        return fail(why, why_len, "%s.assetUrl is longer than %d bytes", where, BP_ASSET_URL_MAX);
    return BP_OK;
}

static bp_err_t validate_reward(const bp_season_t *s, size_t i, char *why, size_t why_len)
{
    const bp_reward_t *r = &s->rewards[i];
    char where[32];

    if (r->level < 1 || r->level > s->max_level)
        return fail(why, why_len, "rewards[%zu].level %d is out of range 1..%d", i, (int)r->level,
                    (int)s->max_level);
    snprintf(where, sizeof where, "rewards[%zu]", i);
    return validate_reward_fields(r, where, why, why_len);
}

static bp_err_t duplicate(const bp_season_t *s, size_t first, size_t again, char *why,
                          size_t why_len)
{
    const bp_reward_t *r = &s->rewards[again];
    return fail(why, why_len,
                "rewards[%zu] repeats rewards[%zu] (level %d, tier %s, rewardId \"%s\")", again,
                first, (int)r->level, tier_str(r->tier), r->reward_id);
}

/* Sorting makes the check O(n log n); a season of BP_LEVEL_MAX levels may carry tens of
 * thousands of rewards. Without memory for the sort it falls back to comparing pairs,
 * because the header promises only BP_OK or BP_EINVAL. */
static bp_err_t validate_unique_rewards(const bp_season_t *s, char *why, size_t why_len)
{
    bp_err_t err = BP_OK;
    size_t n = s->n_rewards;
    reward_slot_t *slots = NULL;

    if (n < 2)
        goto out;
    if (n <= SIZE_MAX / sizeof *slots)
        slots = malloc(n * sizeof *slots);
    if (slots == NULL) {
        for (size_t j = 1; j < n && err == BP_OK; j++) {
            for (size_t i = 0; i < j && err == BP_OK; i++) {
                if (reward_key_cmp(&s->rewards[i], &s->rewards[j]) == 0)
                    err = duplicate(s, i, j, why, why_len);
            }
        }
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        slots[i].r = &s->rewards[i];
        slots[i].idx = i;
    }
    qsort(slots, n, sizeof *slots, reward_slot_cmp);
    for (size_t i = 1; i < n; i++) {
        if (reward_key_cmp(slots[i - 1].r, slots[i].r) == 0) {
            err = duplicate(s, slots[i - 1].idx, slots[i].idx, why, why_len);
            goto out;
        }
    }
out:
    free(slots);
    return err;
}

/* The numeric options bounded by a table rather than a chain of ifs. */
static const struct {
    const char *name;
    size_t off; /* of an int64_t in bp_season_t */
    int64_t max;
} int_options[] = {
    {"claimWindowMs", offsetof(bp_season_t, claim_window_ms), BP_WINDOW_MS_MAX},
    {"lateEventGraceMs", offsetof(bp_season_t, late_grace_ms), BP_WINDOW_MS_MAX},
    {"dailyXpCap", offsetof(bp_season_t, daily_xp_cap), BP_OPTION_XP_MAX},
};

/* A boost reason for a message: bytes a log or a JSON response cannot carry become '?'. */
static void show_reason(const char *reason, size_t size, char *buf, size_t len)
{
    size_t n = strnlen(reason, size), k = 0;

    for (size_t i = 0; i < n && k + 1 < len; i++) {
        unsigned char c = (unsigned char)reason[i];
        buf[k++] = c >= 0x20 && c <= 0x7e ? (char)c : '?';
    }
    buf[k] = '\0';
}

static bool reason_ok(const char *reason, size_t size)
{
    size_t n = strnlen(reason, size);

    if (n == 0 || n > BP_REASON_MAX) /* also an unterminated buffer */
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)reason[i];
        if (c < 0x20 || c > 0x7e)
            return false;
    }
    return true;
}

static bp_err_t validate_boost(const bp_boost_t *b, size_t i, char *why, size_t why_len)
{
    if (b->ends_at_ms <= b->starts_at_ms) {
        char starts[32], ends[32];
        bp_time_format(b->starts_at_ms, starts, sizeof starts);
        bp_time_format(b->ends_at_ms, ends, sizeof ends);
        return fail(why, why_len, "xpBoosts[%zu].endsAt %s is not after startsAt %s", i, ends,
                    starts);
    }
    if (b->multiplier_pct < BP_BOOST_PCT_MIN || b->multiplier_pct > BP_BOOST_PCT_MAX)
        return fail(why, why_len, "xpBoosts[%zu].multiplierPct %d is out of range %d..%d", i,
                    (int)b->multiplier_pct, BP_BOOST_PCT_MIN, BP_BOOST_PCT_MAX);
    if (b->n_reasons > BP_BOOST_REASONS_MAX)
        return fail(why, why_len, "xpBoosts[%zu].reasons has %zu entries, more than %d", i,
                    b->n_reasons, BP_BOOST_REASONS_MAX);
    for (size_t j = 0; j < b->n_reasons; j++) {
        if (!reason_ok(b->reasons[j], sizeof b->reasons[j])) {
            char shown[BP_REASON_MAX + 2]; /* an unterminated field shows whole */
            show_reason(b->reasons[j], sizeof b->reasons[j], shown, sizeof shown);
            return fail(why, why_len,
                        "xpBoosts[%zu].reasons[%zu] \"%s\" is not 1..%d characters of printable "
                        "ASCII",
                        i, j, shown, BP_REASON_MAX);
        }
    }
    return BP_OK;
}

static bp_err_t validate_options(const bp_season_t *s, char *why, size_t why_len)
{
    bp_err_t err;

    for (size_t i = 0; i < sizeof int_options / sizeof int_options[0]; i++) {
        int64_t v;
        memcpy(&v, (const char *)s + int_options[i].off, sizeof v);
        if (v < 0 || v > int_options[i].max)
            return fail(why, why_len, "%s %lld is out of range 0..%lld", int_options[i].name,
                        (long long)v, (long long)int_options[i].max);
    }
    if (s->n_boosts > BP_BOOSTS_MAX)
        return fail(why, why_len, "xpBoosts has %zu entries, more than %d", s->n_boosts,
                    BP_BOOSTS_MAX);
    for (size_t i = 0; i < s->n_boosts; i++) {
        err = validate_boost(&s->boosts[i], i, why, why_len);
        if (err != BP_OK)
            return err;
    }
    switch (s->overflow) {
    case BP_OVERFLOW_NONE:
        return BP_OK;
    case BP_OVERFLOW_BONUS_LEVELS:
        if (s->overflow_xp_per_level < BP_OVERFLOW_XP_MIN ||
            s->overflow_xp_per_level > BP_OPTION_XP_MAX)
            return fail(why, why_len, "overflow.xpPerLevel %lld is out of range %lld..%lld",
                        (long long)s->overflow_xp_per_level, (long long)BP_OVERFLOW_XP_MIN,
                        (long long)BP_OPTION_XP_MAX);
        return validate_reward_fields(&s->overflow_reward, "overflow.reward", why, why_len);
    }
    return fail(why, why_len, "overflow.policy %d is neither none nor bonusLevels",
                (int)s->overflow);
}

bp_err_t bp_season_validate(const bp_season_t *s, char *why, size_t why_len)
{
    bp_err_t err;
    int len;

    if (why != NULL && why_len > 0)
        why[0] = '\0';
    if (s == NULL)
        return fail(why, why_len, "season is missing");
    len = field_len(s->id, sizeof s->id);
    if (len == 0)
        return fail(why, why_len, "id is empty");
    if (len == (int)sizeof s->id || !bp_id_valid(s->id, (size_t)len))
        return fail(why, why_len, "id \"%.*s\" is not 1..%d characters of [A-Za-z0-9._:@-]", len,
                    s->id, BP_ID_MAX);
    len = field_len(s->name, sizeof s->name);
    if (len == 0)
        return fail(why, why_len, "name is empty");
    if (len == (int)sizeof s->name)
        return fail(why, why_len, "name is longer than %d bytes", BP_SEASON_NAME_MAX);
    if (s->ends_at_ms <= s->starts_at_ms) {
        char starts[32], ends[32];
        bp_time_format(s->starts_at_ms, starts, sizeof starts);
        bp_time_format(s->ends_at_ms, ends, sizeof ends);
        return fail(why, why_len, "endsAt %s is not after startsAt %s", ends, starts);
    }
    if (s->max_level < 1 || s->max_level > BP_LEVEL_MAX)
        return fail(why, why_len, "maxLevel %d is out of range 1..%d", (int)s->max_level,
                    BP_LEVEL_MAX);
    if (s->xp_total == NULL)
        return fail(why, why_len, "levels are missing (maxLevel %d)", (int)s->max_level);
    if (s->xp_total[1] != 0)
        return fail(why, why_len, "levels[1].xpTotal %lld must be 0", (long long)s->xp_total[1]);
    for (int32_t l = 2; l <= s->max_level; l++) {
        if (s->xp_total[l] <= s->xp_total[l - 1])
            return fail(why, why_len, "levels[%d].xpTotal %lld is not greater than level %d's %lld",
                        (int)l, (long long)s->xp_total[l], (int)(l - 1),
                        (long long)s->xp_total[l - 1]);
    }
    if (s->n_rewards > 0 && s->rewards == NULL)
        return fail(why, why_len, "rewards are missing (%zu declared)", s->n_rewards);
    for (size_t i = 0; i < s->n_rewards; i++) {
        err = validate_reward(s, i, why, why_len);
        if (err != BP_OK)
            return err;
    }
    err = validate_unique_rewards(s, why, why_len);
    if (err != BP_OK)
        return err;
    return validate_options(s, why, why_len);
}

bp_season_status_t bp_season_status(const bp_season_t *s, int64_t now_ms)
{
    if (now_ms < s->starts_at_ms)
        return BP_SEASON_UPCOMING;
    if (now_ms < s->ends_at_ms)
        return BP_SEASON_ACTIVE;
    return BP_SEASON_ENDED;
}

const char *bp_season_status_str(bp_season_status_t st)
{
    switch (st) {
    case BP_SEASON_UPCOMING:
        return "upcoming";
    case BP_SEASON_ACTIVE:
        return "active";
    case BP_SEASON_ENDED:
        return "ended";
    }
    return "unknown";
}

bool bp_seasons_overlap(const bp_season_t *a, const bp_season_t *b)
{
    return a->starts_at_ms < b->ends_at_ms && b->starts_at_ms < a->ends_at_ms;
}

int bp_season_find(const bp_season_t *seasons, size_t n, const char *id)
{
    if (seasons == NULL || id == NULL)
        return -1;
    for (size_t i = 0; i < n && i <= INT_MAX; i++) {
        if (strncmp(seasons[i].id, id, sizeof seasons[i].id) == 0)
            return (int)i;
    }
    return -1;
}

int bp_season_at(const bp_season_t *seasons, size_t n, int64_t t_ms)
{
    if (seasons == NULL)
        return -1;
    for (size_t i = 0; i < n && i <= INT_MAX; i++) {
        if (seasons[i].starts_at_ms <= t_ms && t_ms < seasons[i].ends_at_ms)
            return (int)i;
    }
    return -1;
}

bp_err_t bp_event_attribute(const bp_season_t *seasons, size_t n, const bp_xp_event_t *ev, int *idx,
                            const char **why)
{
    bp_err_t err = BP_OK;
    const char *msg = NULL;
    int i;

    if (ev->season_id[0] == '\0') {
        i = bp_season_at(seasons, n, ev->occurred_at_ms);
        goto out;
    }
    i = bp_season_find(seasons, n, ev->season_id);
    if (i < 0) {
        msg = "seasonId names no known season";
    } else if (ev->occurred_at_ms < seasons[i].starts_at_ms ||
               ev->occurred_at_ms >= seasons[i].ends_at_ms) {
        msg = "occurredAt is outside the window of the named season";
        i = -1;
    }
    if (msg != NULL)
        err = BP_EINVAL;
out:
    *idx = i;
    if (why != NULL)
        *why = msg;
    return err;
}
