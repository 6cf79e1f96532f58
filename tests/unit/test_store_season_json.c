/** @file Unit tests of store/season_json.c: invalid definitions, the sample season, round trip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/season.h"
#include "core/timefmt.h"
#include "store/season_json.h"

/* A valid three-level season; the table below breaks one thing at a time. */
#define HEAD "\"id\":\"s1\",\"name\":\"Season 1\",\"startsAt\":\"2026-01-01T00:00:00Z\","
#define ENDS "\"endsAt\":\"2026-04-01T00:00:00Z\","
#define L1 "{\"level\":1,\"xpTotal\":0,\"rewards\":[]}"
#define L2                                                                                         \
    "{\"level\":2,\"xpTotal\":100,\"rewards\":[{\"tier\":\"free\",\"rewardId\":\"r2f\","           \
    "\"itemId\":\"currency.coins\",\"quantity\":50}]}"
#define L3 "{\"level\":3,\"xpTotal\":300}"
#define VALID "{" HEAD ENDS "\"maxLevel\":3,\"levels\":[" L1 "," L2 "," L3 "]}"

/* The options as printed for a season that sets none of them. */
#define DEFAULT_OPTIONS                                                                            \
    "\"autoClaim\":false,\"claimWindowHours\":0,\"grantUnclaimedAtEnd\":false,"                    \
    "\"lateEventGraceHours\":0,\"dailyXpCap\":null,\"xpBoosts\":[],\"overflow\":{\"policy\":"      \
    "\"none\"}"

static const char *sample_path(char *buf, size_t len)
{
    const char *root = getenv("BP_SOURCE_DIR");
    snprintf(buf, len, "%s/schemas/seasons/sample-season.json", root ? root : BP_SOURCE_DIR);
    return buf;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (text = malloc((size_t)n + 1)) != NULL) {
        *len = fread(text, 1, (size_t)n, f);
        text[*len] = '\0';
    }
    fclose(f);
    return text;
}

static void test_valid_minimal(void **state)
{
    (void)state;
    bp_season_t s;
    char why[256] = "";
    bp_err_t rc = bp_season_from_json(VALID, strlen(VALID), &s, why, sizeof(why));
    assert_int_equal(rc, BP_OK);
    assert_string_equal(s.id, "s1");
    assert_string_equal(s.name, "Season 1");
    assert_int_equal(s.max_level, 3);
    assert_int_equal(s.xp_total[1], 0);
    assert_int_equal(s.xp_total[2], 100);
    assert_int_equal(s.xp_total[3], 300);
    assert_int_equal(s.n_rewards, 1);
    assert_int_equal(s.rewards[0].level, 2);
    assert_int_equal(s.rewards[0].tier, BP_TIER_FREE);
    assert_string_equal(s.rewards[0].reward_id, "r2f");
    assert_string_equal(s.rewards[0].item_id, "currency.coins");
    assert_int_equal(s.rewards[0].quantity, 50);
    assert_string_equal(s.rewards[0].asset_url, "");
    int64_t t;
    assert_int_equal(bp_time_parse("2026-01-01T00:00:00Z", &t), BP_OK);
    assert_int_equal(s.starts_at_ms, t);
    bp_season_fini(&s);
}

typedef struct {
    const char *name;
    const char *json;
    const char *want; /* substring of the error message */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"not json", "{\"id\":", "invalid JSON"},
    {"not an object", "[1,2]", "is not a JSON object"},
    {"missing endsAt", "{" HEAD "\"maxLevel\":3,\"levels\":[" L1 "," L2 "," L3 "]}",
     "missing field \"endsAt\""},
    {"missing id", "{\"name\":\"x\"}", "missing field \"id\""},
    {"missing levels", "{" HEAD ENDS "\"maxLevel\":3}", "missing field \"levels\""},
    {"missing xpTotal", "{" HEAD ENDS "\"maxLevel\":3,\"levels\":[" L1 "," L2 ",{\"level\":3}]}",
     "missing field \"levels[2].xpTotal\""},
    {"missing itemId",
     "{" HEAD ENDS "\"maxLevel\":2,\"levels\":[" L1
     ",{\"level\":2,\"xpTotal\":5,\"rewards\":[{\"tier\":\"free\",\"rewardId\":\"a\","
     "\"quantity\":1}]}]}",
     "missing field \"levels[1].rewards[0].itemId\""},
    {"bad startsAt",
     "{\"id\":\"s1\",\"name\":\"n\",\"startsAt\":\"yesterday\"," ENDS
     "\"maxLevel\":3,\"levels\":[" L1 "," L2 "," L3 "]}",
     "startsAt \"yesterday\" is not an RFC 3339 time"},
    {"numeric endsAt", "{" HEAD "\"endsAt\":17,\"maxLevel\":3,\"levels\":[" L1 "," L2 "," L3 "]}",
     "endsAt 17 is not an RFC 3339 time"},
    {"ends before starts",
     "{" HEAD "\"endsAt\":\"2025-12-01T00:00:00Z\",\"maxLevel\":3,\"levels\":[" L1 "," L2 "," L3
     "]}",
     "endsAt \"2025-12-01T00:00:00Z\" is not after startsAt \"2026-01-01T00:00:00Z\""},
    {"ends equals starts",
     "{" HEAD "\"endsAt\":\"2026-01-01T00:00:00Z\",\"maxLevel\":3,\"levels\":[" L1 "," L2 "," L3
     "]}",
     "is not after startsAt"},
    {"duplicate key",
     "{" HEAD ENDS "\"id\":\"s2\",\"maxLevel\":3,\"levels\":[" L1 "," L2 "," L3 "]}", "duplicate"},
    {"non-increasing xpTotal",
     "{" HEAD ENDS "\"maxLevel\":3,\"levels\":[" L1 "," L2 ",{\"level\":3,\"xpTotal\":100}]}",
     "levels[2].xpTotal 100 is not greater than levels[1].xpTotal 100"},
    {"decreasing xpTotal",
     "{" HEAD ENDS "\"maxLevel\":3,\"levels\":[" L1 "," L2 ",{\"level\":3,\"xpTotal\":50}]}",
     "levels[2].xpTotal 50 is not greater than levels[1].xpTotal 100"},
    {"level 1 not 0",
     "{" HEAD ENDS "\"maxLevel\":3,\"levels\":[{\"level\":1,\"xpTotal\":10}," L2 "," L3 "]}",
     "levels[0].xpTotal 10 is not 0"},
    {"negative xpTotal",
     "{" HEAD ENDS "\"maxLevel\":3,\"levels\":[" L1 "," L2 ",{\"level\":3,\"xpTotal\":-5}]}",
     "levels[2].xpTotal -5 is less than 0"},
    {"xpTotal not an integer",
     "{" HEAD ENDS "\"maxLevel\":3,\"levels\":[" L1 "," L2 ",{\"level\":3,\"xpTotal\":\"300\"}]}",
     "levels[2].xpTotal \"300\" is not an integer"},
    {"unknown tier",
     "{" HEAD ENDS "\"maxLevel\":2,\"levels\":[" L1
     ",{\"level\":2,\"xpTotal\":5,\"rewards\":[{\"tier\":\"gold\",\"rewardId\":\"a\","
     "\"itemId\":\"b\",\"quantity\":1}]}]}",
     "levels[1].rewards[0].tier \"gold\" is not one of free, premium"},
    {"quantity 0",
     "{" HEAD ENDS "\"maxLevel\":2,\"levels\":[" L1
     ",{\"level\":2,\"xpTotal\":5,\"rewards\":[{\"tier\":\"free\",\"rewardId\":\"a\","
     "\"itemId\":\"b\",\"quantity\":0}]}]}",
     "levels[1].rewards[0].quantity 0 is not between 1 and 2147483647"},
    {"levels out of order", "{" HEAD ENDS "\"maxLevel\":3,\"levels\":[" L1 "," L3 "," L2 "]}",
     "levels[1].level 3 is not 2"},
    {"too few levels", "{" HEAD ENDS "\"maxLevel\":4,\"levels\":[" L1 "," L2 "," L3 "]}",
     "levels has 3 entries but maxLevel is 4"},
    {"maxLevel 0", "{" HEAD ENDS "\"maxLevel\":0,\"levels\":[]}",
     "maxLevel 0 is not between 1 and 10000"},
    {"bad id",
     "{\"id\":\"s 1\",\"name\":\"n\",\"startsAt\":\"2026-01-01T00:00:00Z\"," ENDS
     "\"maxLevel\":3,\"levels\":[" L1 "," L2 "," L3 "]}",
     "id \"s 1\" is not a valid id"},
    {"empty name",
     "{\"id\":\"s1\",\"name\":\"\",\"startsAt\":\"2026-01-01T00:00:00Z\"," ENDS
     "\"maxLevel\":3,\"levels\":[" L1 "," L2 "," L3 "]}",
     "name \"\" is empty"},
    {"rewards not an array",
     "{" HEAD ENDS "\"maxLevel\":2,\"levels\":[" L1 ",{\"level\":2,\"xpTotal\":5,\"rewards\":7}]}",
     "levels[1].rewards 7 is not an array"},
    {"level not an object", "{" HEAD ENDS "\"maxLevel\":3,\"levels\":[" L1 "," L2 ",3]}",
     "levels[2] 3 is not an object"},
    {"duplicate reward",
     "{" HEAD ENDS "\"maxLevel\":2,\"levels\":[" L1
     ",{\"level\":2,\"xpTotal\":5,\"rewards\":[{\"tier\":\"free\",\"rewardId\":\"a\","
     "\"itemId\":\"b\",\"quantity\":1},{\"tier\":\"free\",\"rewardId\":\"a\","
     "\"itemId\":\"c\",\"quantity\":1}]}]}",
     "repeats rewards[0] (level 2, tier free, rewardId \"a\")"},
    {"asset url too long",
     "{" HEAD ENDS "\"maxLevel\":2,\"levels\":[" L1
     ",{\"level\":2,\"xpTotal\":5,\"rewards\":[{\"tier\":\"free\",\"rewardId\":\"a\","
     "\"itemId\":\"b\",\"quantity\":1,\"assetUrl\":\"https://cdn.example.com/"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}]}]}",
     "levels[1].rewards[0].assetUrl \"https://cdn.example.com/"},
};

static void test_invalid_table(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case_t *c = &bad_cases[i];
        bp_season_t s;
        char why[256] = "";
        memset(&s, 0x5a, sizeof(s)); /* "untouched on error" */
        bp_err_t rc = bp_season_from_json(c->json, strlen(c->json), &s, why, sizeof(why));
        if (rc != BP_EINVAL || !strstr(why, c->want)) {
            print_error("case \"%s\": rc %d, why \"%s\", want \"%s\"\n", c->name, (int)rc, why,
                        c->want);
            failures++;
        }
        if (rc == BP_OK)
            bp_season_fini(&s);
        else if (s.max_level != 0x5a5a5a5a)
            failures++, print_error("case \"%s\": out was touched\n", c->name);
    }
    assert_int_equal(failures, 0);
}

static void test_status_ignored(void **state)
{
    (void)state;
    static const char json[] = "{\"status\":\"active\",\"extra\":1," HEAD ENDS
                               "\"maxLevel\":3,\"levels\":[" L1 "," L2 "," L3 "]}";
    bp_season_t s;
    char why[256] = "";
    assert_int_equal(bp_season_from_json(json, strlen(json), &s, why, sizeof(why)), BP_OK);
    bp_season_fini(&s);
}

static void load_sample(bp_season_t *s)
{
    char path[1024], why[256] = "";
    size_t len = 0;
    char *text = read_file(sample_path(path, sizeof(path)), &len);
    if (!text)
        fail_msg("cannot read %s", path);
    bp_err_t rc = bp_season_from_json(text, len, s, why, sizeof(why));
    free(text);
    if (rc != BP_OK)
        fail_msg("sample season rejected: %s", why);
}

static void test_sample(void **state)
{
    (void)state;
    bp_season_t s;
    load_sample(&s);
    assert_int_equal(s.max_level, 100);
    assert_int_equal(s.xp_total[1], 0);
    for (int l = 2; l <= 100; l++)
        assert_true(s.xp_total[l] > s.xp_total[l - 1]);
    assert_true(s.n_rewards >= 100);
    assert_int_equal(s.ends_at_ms - s.starts_at_ms, 90LL * 24 * 3600 * 1000);
    size_t premium = 0, with_url = 0;
    for (size_t i = 0; i < s.n_rewards; i++) {
        premium += s.rewards[i].tier == BP_TIER_PREMIUM;
        with_url += s.rewards[i].asset_url[0] != '\0';
    }
    assert_true(premium >= 50);
    assert_true(with_url > 0);
    /* it shows every option */
    assert_int_equal(s.claim_window_ms, 168 * INT64_C(3600000));
    assert_true(s.grant_unclaimed_at_end);
    assert_int_equal(s.late_grace_ms, 24 * INT64_C(3600000));
    assert_int_equal(s.n_boosts, 2);
    assert_int_equal(s.boosts[0].multiplier_pct, 150);
    assert_int_equal(s.boosts[0].n_reasons, 1);
    assert_int_equal(s.boosts[1].multiplier_pct, 200);
    assert_int_equal(s.overflow, BP_OVERFLOW_BONUS_LEVELS);
    assert_int_equal(s.overflow_xp_per_level, 25000);
    bp_season_fini(&s);
}

static void assert_same_season(const bp_season_t *a, const bp_season_t *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->starts_at_ms, b->starts_at_ms);
    assert_int_equal(a->ends_at_ms, b->ends_at_ms);
    assert_int_equal(a->max_level, b->max_level);
    assert_memory_equal(a->xp_total + 1, b->xp_total + 1,
                        (size_t)a->max_level * sizeof(*a->xp_total));
    assert_int_equal(a->n_rewards, b->n_rewards);
    for (size_t i = 0; i < a->n_rewards; i++) {
        assert_int_equal(a->rewards[i].level, b->rewards[i].level);
        assert_int_equal(a->rewards[i].tier, b->rewards[i].tier);
        assert_string_equal(a->rewards[i].reward_id, b->rewards[i].reward_id);
        assert_string_equal(a->rewards[i].item_id, b->rewards[i].item_id);
        assert_int_equal(a->rewards[i].quantity, b->rewards[i].quantity);
        assert_string_equal(a->rewards[i].asset_url, b->rewards[i].asset_url);
    }
    assert_int_equal(a->auto_claim, b->auto_claim);
    assert_int_equal(a->claim_window_ms, b->claim_window_ms);
    assert_int_equal(a->grant_unclaimed_at_end, b->grant_unclaimed_at_end);
    assert_int_equal(a->late_grace_ms, b->late_grace_ms);
    assert_int_equal(a->daily_xp_cap, b->daily_xp_cap);
    assert_int_equal(a->n_boosts, b->n_boosts);
    for (size_t i = 0; i < a->n_boosts; i++) {
        const bp_boost_t *x = &a->boosts[i], *y = &b->boosts[i];
        assert_int_equal(x->starts_at_ms, y->starts_at_ms);
        assert_int_equal(x->ends_at_ms, y->ends_at_ms);
        assert_int_equal(x->multiplier_pct, y->multiplier_pct);
        assert_int_equal(x->n_reasons, y->n_reasons);
        for (size_t j = 0; j < x->n_reasons; j++)
            assert_string_equal(x->reasons[j], y->reasons[j]);
    }
    assert_int_equal(a->overflow, b->overflow);
    assert_int_equal(a->overflow_xp_per_level, b->overflow_xp_per_level);
    assert_int_equal(a->overflow_reward.tier, b->overflow_reward.tier);
    assert_string_equal(a->overflow_reward.reward_id, b->overflow_reward.reward_id);
    assert_string_equal(a->overflow_reward.item_id, b->overflow_reward.item_id);
    assert_int_equal(a->overflow_reward.quantity, b->overflow_reward.quantity);
    assert_string_equal(a->overflow_reward.asset_url, b->overflow_reward.asset_url);
}

static void test_round_trip(void **state)
{
    (void)state;
    bp_season_t a, b;
    char why[256] = "";
    load_sample(&a);
    char *text = bp_season_to_json(&a, a.starts_at_ms + 1000);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"status\":\"active\""));
    assert_non_null(strstr(text, "\"startsAt\":\"2026-01-01T00:00:00.000Z\""));
    /* key order of the resource */
    const char *order[] = {"\"id\"",     "\"name\"",     "\"startsAt\"", "\"endsAt\"",
                           "\"status\"", "\"maxLevel\"", "\"levels\""};
    const char *prev = text;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        const char *p = strstr(text, order[i]);
        assert_non_null(p);
        assert_true(p >= prev);
        prev = p;
    }
    assert_int_equal(bp_season_from_json(text, strlen(text), &b, why, sizeof(why)), BP_OK);
    assert_same_season(&a, &b);
    char *again = bp_season_to_json(&b, a.starts_at_ms + 1000);
    assert_non_null(again);
    assert_string_equal(text, again);
    char *before = bp_season_to_json(&b, a.starts_at_ms - 1);
    char *after = bp_season_to_json(&b, a.ends_at_ms);
    assert_non_null(strstr(before, "\"status\":\"upcoming\""));
    assert_non_null(strstr(after, "\"status\":\"ended\""));
    free(before);
    free(after);
    free(again);
    free(text);
    bp_season_fini(&a);
    bp_season_fini(&b);
}

/* Rewards stored out of level order are still listed under their own level; an empty
 * assetUrl is omitted. */
static void test_to_json_groups_rewards(void **state)
{
    (void)state;
    bp_season_t s;
    assert_int_equal(bp_season_init(&s, 3, 3), BP_OK);
    strcpy(s.id, "s9");
    strcpy(s.name, "Nine");
    s.starts_at_ms = 0;
    s.ends_at_ms = 1000;
    s.xp_total[2] = 10;
    s.xp_total[3] = 20;
    bp_reward_t r[3] = {
        {.level = 3, .tier = BP_TIER_PREMIUM, .reward_id = "c", .item_id = "i3", .quantity = 3},
        {.level = 1,
         .tier = BP_TIER_FREE,
         .reward_id = "a",
         .item_id = "i1",
         .quantity = 1,
         .asset_url = "https://cdn.example.com/a.png"},
        {.level = 3, .tier = BP_TIER_FREE, .reward_id = "b", .item_id = "i2", .quantity = 2},
    };
    memcpy(s.rewards, r, sizeof(r));
    s.n_rewards = 3;
    char *text = bp_season_to_json(&s, 5000);
    assert_non_null(text);
    assert_string_equal(
        text, "{\"id\":\"s9\",\"name\":\"Nine\",\"startsAt\":\"1970-01-01T00:00:00.000Z\","
              "\"endsAt\":\"1970-01-01T00:00:01.000Z\",\"status\":\"ended\",\"maxLevel\":"
              "3," DEFAULT_OPTIONS ",\"levels\":["
              "{\"level\":1,\"xpTotal\":0,\"rewards\":[{\"tier\":\"free\",\"rewardId\":\"a\","
              "\"itemId\":\"i1\",\"quantity\":1,\"assetUrl\":\"https://cdn.example.com/a.png\"}]},"
              "{\"level\":2,\"xpTotal\":10,\"rewards\":[]},"
              "{\"level\":3,\"xpTotal\":20,\"rewards\":[{\"tier\":\"premium\",\"rewardId\":\"c\","
              "\"itemId\":\"i3\",\"quantity\":3},{\"tier\":\"free\",\"rewardId\":\"b\","
              "\"itemId\":\"i2\",\"quantity\":2}]}]}");
    free(text);
    bp_season_fini(&s);
}

/* Names may hold quotes, backslashes, control characters and UTF-8: escaped, and the
 * output parses back to the same season. */
static void test_to_json_escapes(void **state)
{
    (void)state;
    static const char name[] = "Saison \"\u00c9t\u00e9\" \\ 1\ttab";
    static const char json[] = "{\"id\":\"s1\",\"name\":\""
                               "Saison \\\"\u00c9t\u00e9\\\" "
                               "\\\\ 1\\ttab"
                               "\",\"startsAt\":\"2026-01-01T00:00:00Z\"," ENDS
                               "\"maxLevel\":3,\"levels\":[" L1 "," L2 "," L3 "]}";
    bp_season_t a, b;
    char why[256] = "";
    assert_int_equal(bp_season_from_json(json, strlen(json), &a, why, sizeof(why)), BP_OK);
    assert_string_equal(a.name, name);
    char *text = bp_season_to_json(&a, 0);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"name\":\"Saison \\\"\u00c9t\u00e9\\\" \\\\ 1\\u0009tab\""));
    assert_int_equal(bp_season_from_json(text, strlen(text), &b, why, sizeof(why)), BP_OK);
    assert_same_season(&a, &b);
    free(text);
    bp_season_fini(&a);
    bp_season_fini(&b);
}

/* ---- Season options ---- */

/* VALID with extra top-level members @p opts (each ending in a comma). */
#define WITH(opts) "{" HEAD ENDS opts "\"maxLevel\":3,\"levels\":[" L1 "," L2 "," L3 "]}"
#define BOOST(body) WITH("\"xpBoosts\":[" body "],")
#define B0 "{\"startsAt\":\"2026-01-10T00:00:00Z\",\"endsAt\":\"2026-01-12T00:00:00Z\","
#define OVF(body) WITH("\"overflow\":" body ",")
#define OREWARD "{\"tier\":\"free\",\"rewardId\":\"bonus\",\"itemId\":\"chest\",\"quantity\":1}"

static const char options_json[] =
    WITH("\"autoClaim\":true,\"claimWindowHours\":168,\"grantUnclaimedAtEnd\":true,"
         "\"lateEventGraceHours\":24,\"dailyXpCap\":5000,\"xpBoosts\":["
         "{\"startsAt\":\"2026-01-10T00:00:00Z\",\"endsAt\":\"2026-01-12T00:00:00Z\","
         "\"multiplier\":2},"
         "{\"startsAt\":\"2026-01-11T00:00:00Z\",\"endsAt\":\"2026-01-11T06:00:00.500Z\","
         "\"multiplier\":1.5,\"reasons\":[\"match_complete\",\"say \\\"hi\\\" \\\\o/\"]},"
         "{\"startsAt\":\"2026-02-01T00:00:00Z\",\"endsAt\":\"2026-02-02T00:00:00Z\","
         "\"multiplier\":1.05,\"reasons\":[]},"
         "{\"startsAt\":\"2026-02-03T00:00:00Z\",\"endsAt\":\"2026-02-04T00:00:00Z\","
         "\"multiplier\":1.1000000000000001,\"reasons\":null},"
         "{\"startsAt\":\"2026-02-05T00:00:00Z\",\"endsAt\":\"2026-02-06T00:00:00Z\","
         "\"multiplier\":10.0},"
         "{\"startsAt\":\"2026-02-07T00:00:00+02:00\",\"endsAt\":\"2026-02-08T00:00:00Z\","
         "\"multiplier\":1.01}],"
         "\"overflow\":{\"policy\":\"bonusLevels\",\"xpPerLevel\":25000,\"reward\":{\"tier\":"
         "\"premium\",\"rewardId\":\"bonus-chest\",\"itemId\":\"chest.bonus\",\"quantity\":2,"
         "\"assetUrl\":\"https://cdn.example.com/chest.png\"}},");

/* What bp_season_to_json() prints for options_json. */
#define OPTIONS_OUT                                                                                \
    "\"autoClaim\":true,\"claimWindowHours\":168,\"grantUnclaimedAtEnd\":true,"                    \
    "\"lateEventGraceHours\":24,\"dailyXpCap\":5000,\"xpBoosts\":["                                \
    "{\"startsAt\":\"2026-01-10T00:00:00.000Z\",\"endsAt\":\"2026-01-12T00:00:00.000Z\","          \
    "\"multiplier\":2,\"reasons\":[]},"                                                            \
    "{\"startsAt\":\"2026-01-11T00:00:00.000Z\",\"endsAt\":\"2026-01-11T06:00:00.500Z\","          \
    "\"multiplier\":1.5,\"reasons\":[\"match_complete\",\"say \\\"hi\\\" \\\\o/\"]},"              \
    "{\"startsAt\":\"2026-02-01T00:00:00.000Z\",\"endsAt\":\"2026-02-02T00:00:00.000Z\","          \
    "\"multiplier\":1.05,\"reasons\":[]},"                                                         \
    "{\"startsAt\":\"2026-02-03T00:00:00.000Z\",\"endsAt\":\"2026-02-04T00:00:00.000Z\","          \
    "\"multiplier\":1.1,\"reasons\":[]},"                                                          \
    "{\"startsAt\":\"2026-02-05T00:00:00.000Z\",\"endsAt\":\"2026-02-06T00:00:00.000Z\","          \
    "\"multiplier\":10,\"reasons\":[]},"                                                           \
    "{\"startsAt\":\"2026-02-06T22:00:00.000Z\",\"endsAt\":\"2026-02-08T00:00:00.000Z\","          \
    "\"multiplier\":1.01,\"reasons\":[]}],"                                                        \
    "\"overflow\":{\"policy\":\"bonusLevels\",\"xpPerLevel\":25000,\"reward\":{\"tier\":"          \
    "\"premium\",\"rewardId\":\"bonus-chest\",\"itemId\":\"chest.bonus\",\"quantity\":2,"          \
    "\"assetUrl\":\"https://cdn.example.com/chest.png\"}}"

static int64_t at(const char *rfc3339)
{
    int64_t t = 0;
    assert_int_equal(bp_time_parse(rfc3339, &t), BP_OK);
    return t;
}

static void test_options_parsed(void **state)
{
    static const struct {
        const char *starts, *ends;
        int32_t pct;
        size_t n_reasons;
    } boosts[] = {
        {"2026-01-10T00:00:00Z", "2026-01-12T00:00:00Z", 200, 0},
        {"2026-01-11T00:00:00Z", "2026-01-11T06:00:00.500Z", 150, 2},
        {"2026-02-01T00:00:00Z", "2026-02-02T00:00:00Z", 105, 0},
        {"2026-02-03T00:00:00Z", "2026-02-04T00:00:00Z", 110, 0},
        {"2026-02-05T00:00:00Z", "2026-02-06T00:00:00Z", 1000, 0},
        {"2026-02-06T22:00:00Z", "2026-02-08T00:00:00Z", 101, 0},
    };
    bp_season_t s;
    char why[256] = "";
    (void)state;
    if (bp_season_from_json(options_json, strlen(options_json), &s, why, sizeof(why)) != BP_OK)
        fail_msg("options rejected: %s", why);
    assert_true(s.auto_claim);
    assert_int_equal(s.claim_window_ms, 168 * INT64_C(3600000));
    assert_true(s.grant_unclaimed_at_end);
    assert_int_equal(s.late_grace_ms, 24 * INT64_C(3600000));
    assert_int_equal(s.daily_xp_cap, 5000);
    assert_int_equal(s.n_boosts, sizeof(boosts) / sizeof(boosts[0]));
    for (size_t i = 0; i < s.n_boosts; i++) {
        assert_int_equal(s.boosts[i].starts_at_ms, at(boosts[i].starts));
        assert_int_equal(s.boosts[i].ends_at_ms, at(boosts[i].ends));
        assert_int_equal(s.boosts[i].multiplier_pct, boosts[i].pct);
        assert_int_equal(s.boosts[i].n_reasons, boosts[i].n_reasons);
    }
    assert_string_equal(s.boosts[1].reasons[0], "match_complete");
    assert_string_equal(s.boosts[1].reasons[1], "say \"hi\" \\o/");
    assert_int_equal(s.overflow, BP_OVERFLOW_BONUS_LEVELS);
    assert_int_equal(s.overflow_xp_per_level, 25000);
    assert_int_equal(s.overflow_reward.tier, BP_TIER_PREMIUM);
    assert_string_equal(s.overflow_reward.reward_id, "bonus-chest");
    assert_string_equal(s.overflow_reward.item_id, "chest.bonus");
    assert_int_equal(s.overflow_reward.quantity, 2);
    assert_string_equal(s.overflow_reward.asset_url, "https://cdn.example.com/chest.png");
    bp_season_fini(&s);
}

/* Absent and null options are the defaults, and the defaults are printed. */
static void test_options_defaults(void **state)
{
    static const char *const inputs[] = {
        VALID,
        WITH("\"autoClaim\":null,\"claimWindowHours\":null,\"grantUnclaimedAtEnd\":null,"
             "\"lateEventGraceHours\":null,\"dailyXpCap\":null,\"xpBoosts\":null,"
             "\"overflow\":null,"),
        WITH("\"autoClaim\":false,\"claimWindowHours\":0,\"grantUnclaimedAtEnd\":false,"
             "\"lateEventGraceHours\":0,\"xpBoosts\":[],\"overflow\":{\"policy\":\"none\"},"),
    };
    (void)state;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        bp_season_t s;
        char why[256] = "";
        if (bp_season_from_json(inputs[i], strlen(inputs[i]), &s, why, sizeof(why)) != BP_OK)
            fail_msg("input %zu rejected: %s", i, why);
        assert_false(s.auto_claim);
        assert_int_equal(s.claim_window_ms, 0);
        assert_false(s.grant_unclaimed_at_end);
        assert_int_equal(s.late_grace_ms, 0);
        assert_int_equal(s.daily_xp_cap, 0);
        assert_int_equal(s.n_boosts, 0);
        assert_int_equal(s.overflow, BP_OVERFLOW_NONE);
        char *text = bp_season_to_json(&s, 0);
        assert_non_null(text);
        assert_non_null(strstr(text, "\"maxLevel\":3," DEFAULT_OPTIONS ",\"levels\":["));
        free(text);
        bp_season_fini(&s);
    }
}

/* JSON → season → JSON → season: the options print exactly and parse back the same. */
static void test_options_round_trip(void **state)
{
    bp_season_t a, b;
    char why[256] = "";
    (void)state;
    assert_int_equal(bp_season_from_json(options_json, strlen(options_json), &a, why, sizeof(why)),
                     BP_OK);
    char *text = bp_season_to_json(&a, 0);
    assert_non_null(text);
    if (!strstr(text, "\"maxLevel\":3," OPTIONS_OUT ",\"levels\":["))
        fail_msg("unexpected options in %s", text);
    if (bp_season_from_json(text, strlen(text), &b, why, sizeof(why)) != BP_OK)
        fail_msg("printed season rejected: %s", why);
    assert_same_season(&a, &b);
    char *again = bp_season_to_json(&b, 0);
    assert_non_null(again);
    assert_string_equal(text, again);
    free(again);
    free(text);
    bp_season_fini(&a);
    bp_season_fini(&b);
}

/* Every whole percent in range prints as a number that parses back to itself. */
static void test_multiplier_every_percent(void **state)
{
    (void)state;
    for (int32_t pct = BP_BOOST_PCT_MIN; pct <= BP_BOOST_PCT_MAX; pct++) {
        bp_season_t a, b;
        char why[256] = "";
        assert_int_equal(bp_season_from_json(VALID, strlen(VALID), &a, why, sizeof(why)), BP_OK);
        a.boosts[0].starts_at_ms = a.starts_at_ms;
        a.boosts[0].ends_at_ms = a.ends_at_ms;
        a.boosts[0].multiplier_pct = pct;
        a.n_boosts = 1;
        char *text = bp_season_to_json(&a, 0);
        assert_non_null(text);
        if (bp_season_from_json(text, strlen(text), &b, why, sizeof(why)) != BP_OK)
            fail_msg("pct %d rejected: %s", pct, why);
        if (b.boosts[0].multiplier_pct != pct)
            fail_msg("pct %d came back as %d", pct, b.boosts[0].multiplier_pct);
        free(text);
        bp_season_fini(&a);
        bp_season_fini(&b);
    }
}

/* Stored definitions pass through jansson (load + dump) before they are parsed again:
 * multipliers printed by a double printer (1.05 as 1.0500000000000000) still come back as
 * whole percents. */
static void test_options_through_jansson(void **state)
{
    bp_season_t a, b;
    char why[256] = "";
    (void)state;
    assert_int_equal(bp_season_from_json(options_json, strlen(options_json), &a, why, sizeof(why)),
                     BP_OK);
    char *text = bp_season_to_json(&a, 0);
    assert_non_null(text);
    json_t *root = json_loads(text, 0, NULL);
    assert_non_null(root);
    char *dumped = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(17));
    assert_non_null(dumped);
    if (bp_season_from_json(dumped, strlen(dumped), &b, why, sizeof(why)) != BP_OK)
        fail_msg("re-dumped season rejected: %s", why);
    assert_same_season(&a, &b);
    free(dumped);
    json_decref(root);
    free(text);
    bp_season_fini(&a);
    bp_season_fini(&b);
}

static const bad_case_t bad_options[] = {
    {"autoClaim not a bool", WITH("\"autoClaim\":1,"), "autoClaim 1 is not a boolean"},
    {"grantUnclaimedAtEnd a string", WITH("\"grantUnclaimedAtEnd\":\"yes\","),
     "grantUnclaimedAtEnd \"yes\" is not a boolean"},
    {"claimWindowHours negative", WITH("\"claimWindowHours\":-1,"),
     "claimWindowHours -1 is not between 0 and 8760"},
    {"claimWindowHours past a year", WITH("\"claimWindowHours\":8761,"),
     "claimWindowHours 8761 is not between 0 and 8760"},
    {"claimWindowHours fractional", WITH("\"claimWindowHours\":1.5,"),
     "claimWindowHours 1.5 is not an integer"},
    {"lateEventGraceHours a string", WITH("\"lateEventGraceHours\":\"24\","),
     "lateEventGraceHours \"24\" is not an integer"},
    {"lateEventGraceHours negative", WITH("\"lateEventGraceHours\":-24,"),
     "lateEventGraceHours -24 is not between 0 and 8760"},
    {"dailyXpCap 0", WITH("\"dailyXpCap\":0,"), "dailyXpCap 0 is not between 1 and 1000000000"},
    {"dailyXpCap negative", WITH("\"dailyXpCap\":-5,"),
     "dailyXpCap -5 is not between 1 and 1000000000"},
    {"dailyXpCap too big", WITH("\"dailyXpCap\":1000000001,"),
     "dailyXpCap 1000000001 is not between 1 and 1000000000"},
    {"dailyXpCap false", WITH("\"dailyXpCap\":false,"), "dailyXpCap false is not an integer"},
    {"xpBoosts not an array", WITH("\"xpBoosts\":{},"), "xpBoosts {...} is not an array"},
    {"xpBoosts too many",
     WITH("\"xpBoosts\":[" B0 "\"multiplier\":2}," B0 "\"multiplier\":2}," B0
          "\"multiplier\":2}," B0 "\"multiplier\":2}," B0 "\"multiplier\":2}," B0
          "\"multiplier\":2}," B0 "\"multiplier\":2}," B0 "\"multiplier\":2}," B0
          "\"multiplier\":2}," B0 "\"multiplier\":2}," B0 "\"multiplier\":2}," B0
          "\"multiplier\":2}," B0 "\"multiplier\":2}," B0 "\"multiplier\":2}," B0
          "\"multiplier\":2}," B0 "\"multiplier\":2}," B0 "\"multiplier\":2}],"),
     "xpBoosts has 17 entries, more than 16"},
    {"boost not an object", BOOST(B0 "\"multiplier\":2},7"), "xpBoosts[1] 7 is not an object"},
    {"boost multiplier 0.5", BOOST(B0 "\"multiplier\":2}," B0 "\"multiplier\":0.5}"),
     "xpBoosts[1].multiplier 0.5 is not between 1.01 and 10"},
    {"boost multiplier 1", BOOST(B0 "\"multiplier\":1}"),
     "xpBoosts[0].multiplier 1 is not between 1.01 and 10"},
    {"boost multiplier 1.009", BOOST(B0 "\"multiplier\":1.009}"),
     "xpBoosts[0].multiplier 1.009 is not between 1.01 and 10"},
    {"boost multiplier 10.01", BOOST(B0 "\"multiplier\":10.01}"),
     "xpBoosts[0].multiplier 10.01 is not between 1.01 and 10"},
    {"boost multiplier negative", BOOST(B0 "\"multiplier\":-2}"),
     "xpBoosts[0].multiplier -2 is not between 1.01 and 10"},
    {"boost multiplier huge", BOOST(B0 "\"multiplier\":1e300}"),
     "xpBoosts[0].multiplier 1e+300 is not between 1.01 and 10"},
    {"boost multiplier 3 decimals", BOOST(B0 "\"multiplier\":1.555}"),
     "xpBoosts[0].multiplier 1.555 has more than 2 decimals"},
    {"boost multiplier a string", BOOST(B0 "\"multiplier\":\"2\"}"),
     "xpBoosts[0].multiplier \"2\" is not a number"},
    {"boost multiplier null", BOOST(B0 "\"multiplier\":null}"),
     "xpBoosts[0].multiplier null is not a number"},
    {"boost multiplier missing", BOOST(B0 "\"reasons\":[]}"),
     "missing field \"xpBoosts[0].multiplier\""},
    {"boost startsAt missing", BOOST("{\"endsAt\":\"2026-01-12T00:00:00Z\",\"multiplier\":2}"),
     "missing field \"xpBoosts[0].startsAt\""},
    {"boost endsAt bad",
     BOOST("{\"startsAt\":\"2026-01-10T00:00:00Z\",\"endsAt\":\"soon\",\"multiplier\":2}"),
     "xpBoosts[0].endsAt \"soon\" is not an RFC 3339 time"},
    {"boost ends == starts",
     BOOST("{\"startsAt\":\"2026-01-10T00:00:00Z\",\"endsAt\":\"2026-01-10T00:00:00Z\","
           "\"multiplier\":2}"),
     "xpBoosts[0].endsAt \"2026-01-10T00:00:00Z\" is not after startsAt "
     "\"2026-01-10T00:00:00Z\""},
    {"boost ends before starts",
     BOOST(B0 "\"multiplier\":2},{\"startsAt\":\"2026-01-10T00:00:00Z\",\"endsAt\":"
              "\"2026-01-09T00:00:00Z\",\"multiplier\":2}"),
     "xpBoosts[1].endsAt \"2026-01-09T00:00:00Z\" is not after startsAt"},
    {"boost reasons not an array", BOOST(B0 "\"multiplier\":2,\"reasons\":\"match\"}"),
     "xpBoosts[0].reasons \"match\" is not an array"},
    {"boost reason not a string", BOOST(B0 "\"multiplier\":2,\"reasons\":[\"a\",3]}"),
     "xpBoosts[0].reasons[1] 3 is not a string"},
    {"boost reason empty", BOOST(B0 "\"multiplier\":2,\"reasons\":[\"\"]}"),
     "xpBoosts[0].reasons[0] \"\" is not 1..64 characters of printable ASCII"},
    {"boost reason control", BOOST(B0 "\"multiplier\":2,\"reasons\":[\"a\\tb\"]}"),
     "xpBoosts[0].reasons[0] \"a\\tb\" is not 1..64 characters of printable ASCII"},
    {"boost reason non-ASCII", BOOST(B0 "\"multiplier\":2,\"reasons\":[\"\u00e9t\u00e9\"]}"),
     "xpBoosts[0].reasons[0] \"\u00e9t\u00e9\" is not 1..64 characters of printable ASCII"},
    {"boost reason 65 bytes",
     BOOST(B0 "\"multiplier\":2,\"reasons\":["
              "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"]}"),
     "xpBoosts[0].reasons[0] \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... is not 1..64 "
     "characters of printable ASCII"},
    {"boost with 9 reasons",
     BOOST(B0 "\"multiplier\":2,\"reasons\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\","
              "\"i\"]}"),
     "xpBoosts[0].reasons has 9 entries, more than 8"},
    {"boost member misspelt", BOOST(B0 "\"multiplier\":2,\"reason\":[\"match\"]}"),
     "xpBoosts[0] has an unknown member \"reason\" (known: startsAt, endsAt, multiplier, "
     "reasons)"},
    {"overflow not an object", OVF("\"none\""), "overflow \"none\" is not an object"},
    {"overflow policy missing", OVF("{}"), "missing field \"overflow.policy\""},
    {"overflow policy unknown", OVF("{\"policy\":\"wrap\"}"),
     "overflow.policy \"wrap\" is not one of none, bonusLevels"},
    {"overflow policy not a string", OVF("{\"policy\":1}"),
     "overflow.policy 1 is not one of none, bonusLevels"},
    {"overflow none with xpPerLevel", OVF("{\"policy\":\"none\",\"xpPerLevel\":10}"),
     "overflow has an unknown member \"xpPerLevel\" (known: policy (with policy \"none\"))"},
    {"overflow bonus without xpPerLevel",
     OVF("{\"policy\":\"bonusLevels\",\"reward\":" OREWARD "}"),
     "missing field \"overflow.xpPerLevel\""},
    {"overflow xpPerLevel 0",
     OVF("{\"policy\":\"bonusLevels\",\"xpPerLevel\":0,\"reward\":" OREWARD "}"),
     "overflow.xpPerLevel 0 is not between 1000 and 1000000000"},
    {"overflow xpPerLevel 999",
     OVF("{\"policy\":\"bonusLevels\",\"xpPerLevel\":999,\"reward\":" OREWARD "}"),
     "overflow.xpPerLevel 999 is not between 1000 and 1000000000"},
    {"overflow xpPerLevel a string",
     OVF("{\"policy\":\"bonusLevels\",\"xpPerLevel\":\"10\",\"reward\":" OREWARD "}"),
     "overflow.xpPerLevel \"10\" is not an integer"},
    {"overflow bonus without reward", OVF("{\"policy\":\"bonusLevels\",\"xpPerLevel\":1000}"),
     "missing field \"overflow.reward\""},
    {"overflow reward not an object",
     OVF("{\"policy\":\"bonusLevels\",\"xpPerLevel\":1000,\"reward\":[]}"),
     "overflow.reward [...] is not an object"},
    {"overflow reward tier",
     OVF("{\"policy\":\"bonusLevels\",\"xpPerLevel\":1000,\"reward\":{\"tier\":\"gold\","
         "\"rewardId\":\"b\",\"itemId\":\"c\",\"quantity\":1}}"),
     "overflow.reward.tier \"gold\" is not one of free, premium"},
    {"overflow reward id",
     OVF("{\"policy\":\"bonusLevels\",\"xpPerLevel\":1000,\"reward\":{\"tier\":\"free\","
         "\"rewardId\":\"b c\",\"itemId\":\"c\",\"quantity\":1}}"),
     "overflow.reward.rewardId \"b c\" is not a valid id"},
    {"overflow reward without itemId",
     OVF("{\"policy\":\"bonusLevels\",\"xpPerLevel\":1000,\"reward\":{\"tier\":\"free\","
         "\"rewardId\":\"b\",\"quantity\":1}}"),
     "missing field \"overflow.reward.itemId\""},
    {"overflow reward quantity 0",
     OVF("{\"policy\":\"bonusLevels\",\"xpPerLevel\":1000,\"reward\":{\"tier\":\"free\","
         "\"rewardId\":\"b\",\"itemId\":\"c\",\"quantity\":0}}"),
     "overflow.reward.quantity 0 is not between 1 and 2147483647"},
    {"overflow member misspelt",
     OVF("{\"policy\":\"bonusLevels\",\"xpPerLvl\":10,\"reward\":" OREWARD "}"),
     "overflow has an unknown member \"xpPerLvl\" (known: policy, xpPerLevel, reward)"},
};

static void test_options_invalid(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof(bad_options) / sizeof(bad_options[0]); i++) {
        const bad_case_t *c = &bad_options[i];
        bp_season_t s;
        char why[256] = "";
        memset(&s, 0x5a, sizeof(s));
        bp_err_t rc = bp_season_from_json(c->json, strlen(c->json), &s, why, sizeof(why));
        if (rc != BP_EINVAL || strncmp(why, c->want, strlen(c->want)) != 0) {
            print_error("case \"%s\": rc %d, why \"%s\", want \"%s\"\n", c->name, (int)rc, why,
                        c->want);
            failures++;
        }
        if (rc == BP_OK)
            bp_season_fini(&s);
        else if (s.max_level != 0x5a5a5a5a)
            failures++, print_error("case \"%s\": out was touched\n", c->name);
    }
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_minimal),
        cmocka_unit_test(test_invalid_table),
        cmocka_unit_test(test_status_ignored),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_to_json_groups_rewards),
        cmocka_unit_test(test_to_json_escapes),
        cmocka_unit_test(test_options_parsed),
        cmocka_unit_test(test_options_defaults),
        cmocka_unit_test(test_options_round_trip),
        cmocka_unit_test(test_multiplier_every_percent),
        cmocka_unit_test(test_options_invalid),
        cmocka_unit_test(test_options_through_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
