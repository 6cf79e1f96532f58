/** @file Unit tests of store/season_json.c: invalid definitions, the sample season, round trip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

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
        text,
        "{\"id\":\"s9\",\"name\":\"Nine\",\"startsAt\":\"1970-01-01T00:00:00.000Z\","
        "\"endsAt\":\"1970-01-01T00:00:01.000Z\",\"status\":\"ended\",\"maxLevel\":3,\"levels\":["
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_minimal),   cmocka_unit_test(test_invalid_table),
        cmocka_unit_test(test_status_ignored),  cmocka_unit_test(test_sample),
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_to_json_groups_rewards),
        cmocka_unit_test(test_to_json_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
