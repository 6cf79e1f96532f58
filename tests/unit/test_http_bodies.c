/** @file Unit tests of http/bodies: the JSON body limits (depth, number range, duplicate
 *  keys, not an object), each route's body validator, and numeric query parameters, as
 *  tables of inputs and the outcome (accepted values, or the words the reason must name). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/bodies.h"

/** @return a heap string of @p open repeated @p n times, "1", then @p close n times. */
static char *nested(const char *open, const char *close, int n)
{
    size_t lo = strlen(open), lc = strlen(close);
    char *s = malloc((size_t)n * (lo + lc) + 2);
    assert_non_null(s);
    size_t o = 0;
    for (int i = 0; i < n; i++, o += lo)
        memcpy(s + o, open, lo);
    s[o++] = '1';
    for (int i = 0; i < n; i++, o += lc)
        memcpy(s + o, close, lc);
    s[o] = '\0';
    return s;
}

/** Assert @p why is printable ASCII and contains @p words ('|'-separated), else fail
 *  naming @p what. */
static void expect_words(const char *what, const char *why, const char *words)
{
    for (const char *c = why; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            fail_msg("%s: reason is not printable ASCII: %s", what, why);
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", words);
    for (char *save = NULL, *w = strtok_r(buf, "|", &save); w; w = strtok_r(NULL, "|", &save))
        if (!strstr(why, w))
            fail_msg("%s: reason '%s' does not name '%s'", what, why, w);
}

static void test_body_json(void **state)
{
    (void)state;
    static const struct {
        const char *body; /* NULL: no body */
        bool ok;
        const char *words; /* in the reason when refused */
    } cases[] = {
        {NULL, false, "required"},
        {"", false, "required"},
        {"{}", true, NULL},
        {" {\"a\":1} ", true, NULL},
        {"[1]", false, "object"},
        {"\"x\"", false, "not valid JSON|expected"},
        {"5", false, "not valid JSON|expected"},
        {"null", false, "not valid JSON|expected"},
        {"{\"a\":1", false, "not valid JSON|line 1"},
        {"not json", false, "not valid JSON"},
        {"{\"a\":1,\"a\":2}", false, "duplicate"},
        {"{\"s\":\"a\\u0000b\"}", false, "not valid JSON"},
        /* Numbers: the range of a 64-bit integer and of a double, named by member path. */
        {"{\"amount\":9223372036854775807}", true, NULL},
        {"{\"amount\":-9223372036854775808}", true, NULL},
        {"{\"amount\":9223372036854775808}", false, "amount: 9223372036854775808 is out of range"},
        {"{\"amount\":-9223372036854775809}", false, "amount|out of range"},
        {"{\"amount\":18446744073709551616}", false, "amount|out of range"},
        {"{\"amount\":100000000000000000000000000000}", false, "amount|out of range"},
        {"{\"amount\":1e400}", false, "amount: 1e400 is out of range"},
        {"{\"amount\":-1.5E+309}", false, "amount|out of range"},
        {"{\"amount\":1e308}", true, NULL},
        {"{\"amount\":1e-400}", true, NULL}, /* underflow is 0: jansson accepts it */
        {"{\"amount\":1.5}", true, NULL},    /* a number: the route says it is no integer */
        {"{\"levels\":[{\"level\":1},{\"xpTotal\":1e999}]}", false, "levels[1].xpTotal"},
        {"{\"a\":[1,2,[3,99999999999999999999]]}", false, "a[2][1]"},
        {"{\"k\\\"ey\":1e400}", false, "k\\\"ey"},
        {"{\"a\":\"1e400\"}", true, NULL}, /* a string, not a number */
        {"{\"a\":01}", false, "not valid JSON"},
        {"{\"a\":-}", false, "not valid JSON"},
        {"{\"a\":1e}", false, "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char why[BP_BODY_WHY_MAX] = "", what[64];
        json_t *root = (json_t *)&why; /* must be overwritten */
        const char *b = cases[i].body;
        bp_err_t err = bp_http_body_json(b, b ? strlen(b) : 0, &root, why, sizeof(why));
        snprintf(what, sizeof(what), "case %zu %.40s", i, b ? b : "(none)");
        if ((err == BP_OK) != cases[i].ok)
            fail_msg("%s: got %s (%s)", what, bp_err_str(err), why);
        if (cases[i].ok) {
            assert_true(json_is_object(root));
            json_decref(root);
        } else {
            assert_int_equal(err, BP_EINVAL);
            assert_null(root);
            expect_words(what, why, cases[i].words);
        }
    }
}

static void test_body_depth(void **state)
{
    (void)state;
    static const struct {
        const char *open, *close;
        int reps; /* of open; the body object is the first level */
        bool ok;
    } cases[] = {
        {"{\"a\":", "}", BP_BODY_DEPTH_MAX, true},
        {"{\"a\":", "}", BP_BODY_DEPTH_MAX + 1, false},
        {"{\"a\":", "}", 100000, false},
        {"{\"a\":[", "]}", BP_BODY_DEPTH_MAX / 2, true}, /* two levels a repetition */
        {"{\"a\":[", "]}", BP_BODY_DEPTH_MAX / 2 + 1, false},
        {"[", "]", 5000, false}, /* deep and not an object: the depth is seen first */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *body = nested(cases[i].open, cases[i].close, cases[i].reps);
        char why[BP_BODY_WHY_MAX] = "", what[64];
        json_t *root = NULL;
        bp_err_t err = bp_http_body_json(body, strlen(body), &root, why, sizeof(why));
        snprintf(what, sizeof(what), "depth case %zu", i);
        if ((err == BP_OK) != cases[i].ok)
            fail_msg("%s: got %s (%s)", what, bp_err_str(err), why);
        if (err == BP_OK)
            json_decref(root);
        else
            expect_words(what, why, "deeper than 16 levels");
        free(body);
    }
    /* The path of the value that goes too deep is named. */
    char why[BP_BODY_WHY_MAX];
    json_t *root = NULL;
    char *body = nested("{\"deep\":", "}", BP_BODY_DEPTH_MAX + 1);
    assert_int_equal(bp_http_body_json(body, strlen(body), &root, why, sizeof(why)), BP_EINVAL);
    expect_words("path", why, "at deep.deep");
    free(body);
}

/** One route body case: the JSON, and either the reason's words or NULL (accepted). */
typedef struct {
    bp_body_kind_t kind;
    const char *body;
    const char *words;
} body_case_t;

static const body_case_t body_cases[] = {
    /* claim */
    {BP_BODY_CLAIM, "{\"level\":1,\"tier\":\"free\"}", NULL},
    {BP_BODY_CLAIM, "{\"level\":10000,\"tier\":\"premium\",\"extra\":[1]}", NULL},
    {BP_BODY_CLAIM, "{\"tier\":\"free\"}", "level is required"},
    {BP_BODY_CLAIM, "{\"level\":1}", "tier is required"},
    {BP_BODY_CLAIM, "{\"level\":0,\"tier\":\"free\"}", "level must be an integer from 1 to 10000"},
    {BP_BODY_CLAIM, "{\"level\":10001,\"tier\":\"free\"}", "level"},
    {BP_BODY_CLAIM, "{\"level\":-1,\"tier\":\"free\"}", "level"},
    {BP_BODY_CLAIM, "{\"level\":1.5,\"tier\":\"free\"}", "level"},
    {BP_BODY_CLAIM, "{\"level\":1.0,\"tier\":\"free\"}", "level"},
    {BP_BODY_CLAIM, "{\"level\":1e1,\"tier\":\"free\"}", "level"},
    {BP_BODY_CLAIM, "{\"level\":\"1\",\"tier\":\"free\"}", "level"},
    {BP_BODY_CLAIM, "{\"level\":true,\"tier\":\"free\"}", "level"},
    {BP_BODY_CLAIM, "{\"level\":null,\"tier\":\"free\"}", "level"},
    {BP_BODY_CLAIM, "{\"level\":4294967297,\"tier\":\"free\"}", "level"}, /* 2^32 + 1 */
    {BP_BODY_CLAIM, "{\"level\":9223372036854775807,\"tier\":\"free\"}", "level"},
    {BP_BODY_CLAIM, "{\"level\":1,\"tier\":\"gold\"}", "tier must be \"free\" or \"premium\""},
    {BP_BODY_CLAIM, "{\"level\":1,\"tier\":1}", "tier"},
    {BP_BODY_CLAIM, "{\"level\":1,\"tier\":\"FREE\"}", "tier"},
    /* premium */
    {BP_BODY_PREMIUM, "{\"transactionId\":\"t-1\",\"source\":\"purchase\"}", NULL},
    {BP_BODY_PREMIUM, "{\"seasonId\":\"s1\",\"transactionId\":\"t-1\",\"source\":\"gift\"}", NULL},
    {BP_BODY_PREMIUM, "{\"seasonId\":null,\"transactionId\":\"t-1\",\"source\":\"gift\"}", NULL},
    {BP_BODY_PREMIUM, "{\"source\":\"purchase\"}", "transactionId is required"},
    {BP_BODY_PREMIUM, "{\"transactionId\":\"t1\"}", "source is required"},
    {BP_BODY_PREMIUM, "{\"transactionId\":1,\"source\":\"s\"}", "transactionId must be 1 to 64"},
    {BP_BODY_PREMIUM, "{\"transactionId\":\"t 1\",\"source\":\"s\"}", "transactionId"},
    {BP_BODY_PREMIUM, "{\"transactionId\":\"\",\"source\":\"s\"}", "transactionId"},
    {BP_BODY_PREMIUM, "{\"transactionId\":\"t1\",\"source\":\"\"}", "source"},
    {BP_BODY_PREMIUM, "{\"transactionId\":\"t1\",\"source\":\"a\\u0001b\"}", "source"},
    {BP_BODY_PREMIUM, "{\"transactionId\":\"t1\",\"source\":\"caf\\u00e9\"}", "source"},
    {BP_BODY_PREMIUM, "{\"seasonId\":5,\"transactionId\":\"t1\",\"source\":\"s\"}", "seasonId"},
    {BP_BODY_PREMIUM, "{\"seasonId\":\"a/b\",\"transactionId\":\"t1\",\"source\":\"s\"}",
     "seasonId"},
    /* level purchases */
    {BP_BODY_LEVELS, "{\"count\":5,\"transactionId\":\"tx-5\"}", NULL},
    {BP_BODY_LEVELS, "{\"count\":10000,\"transactionId\":\"tx\"}", NULL},
    {BP_BODY_LEVELS, "{\"count\":0,\"transactionId\":\"tx\"}", "count must be an integer from 1"},
    {BP_BODY_LEVELS, "{\"count\":10001,\"transactionId\":\"tx\"}", "count"},
    {BP_BODY_LEVELS, "{\"count\":-2147483649,\"transactionId\":\"tx\"}", "count"},
    {BP_BODY_LEVELS, "{\"count\":2.5,\"transactionId\":\"tx\"}", "count"},
    {BP_BODY_LEVELS, "{\"count\":\"3\",\"transactionId\":\"tx\"}", "count"},
    {BP_BODY_LEVELS, "{\"count\":null,\"transactionId\":\"tx\"}", "count"},
    {BP_BODY_LEVELS, "{\"count\":1}", "transactionId is required"},
    {BP_BODY_LEVELS, "{\"count\":1,\"transactionId\":[\"tx\"]}", "transactionId"},
    /* XP grants */
    {BP_BODY_XP, "{\"amount\":1,\"reason\":\"r\"}", NULL},
    {BP_BODY_XP,
     "{\"amount\":1000000,\"reason\":\"mission_complete\",\"metadata\":{\"missionId\":\"m7\"},"
     "\"occurredAt\":\"2026-01-01T12:00:00Z\",\"seasonId\":\"s1\"}",
     NULL},
    {BP_BODY_XP, "{\"amount\":1,\"reason\":\"r\",\"occurredAt\":null,\"seasonId\":null}", NULL},
    {BP_BODY_XP, "{\"reason\":\"r\"}", "amount is required"},
    {BP_BODY_XP, "{\"amount\":5}", "reason is required"},
    {BP_BODY_XP, "{\"amount\":0,\"reason\":\"r\"}", "amount must be an integer from 1 to 1000000"},
    {BP_BODY_XP, "{\"amount\":1000001,\"reason\":\"r\"}", "amount"},
    {BP_BODY_XP, "{\"amount\":-5,\"reason\":\"r\"}", "amount"},
    {BP_BODY_XP, "{\"amount\":2147483648,\"reason\":\"r\"}", "amount"},
    {BP_BODY_XP, "{\"amount\":1.5,\"reason\":\"r\"}", "amount"},
    {BP_BODY_XP, "{\"amount\":\"10\",\"reason\":\"r\"}", "amount"},
    {BP_BODY_XP, "{\"amount\":null,\"reason\":\"r\"}", "amount"},
    {BP_BODY_XP, "{\"amount\":5,\"reason\":\"\"}", "reason"},
    {BP_BODY_XP, "{\"amount\":5,\"reason\":\"tab\\there\"}", "reason"},
    {BP_BODY_XP,
     "{\"amount\":5,\"reason\":"
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
     "reason must be a string of 1 to 64"},
    {BP_BODY_XP, "{\"amount\":5,\"reason\":\"r\",\"metadata\":{\"a\":1}}", "metadata.a"},
    {BP_BODY_XP, "{\"amount\":5,\"reason\":\"r\",\"metadata\":[\"a\"]}", "metadata"},
    {BP_BODY_XP, "{\"amount\":5,\"reason\":\"r\",\"metadata\":{\"\":\"v\"}}", "metadata keys"},
    {BP_BODY_XP, "{\"amount\":5,\"reason\":\"r\",\"occurredAt\":\"yesterday\"}", "occurredAt"},
    {BP_BODY_XP, "{\"amount\":5,\"reason\":\"r\",\"occurredAt\":1767268800000}", "occurredAt"},
    {BP_BODY_XP, "{\"amount\":5,\"reason\":\"r\",\"seasonId\":\"bad id\"}", "seasonId"},
    {BP_BODY_XP, "{\"amount\":5,\"reason\":\"r\",\"bonus\":true}",
     "unknown member \"bonus\" (expected amount, reason, metadata, occurredAt, seasonId)"},
    {BP_BODY_XP, "{\"amount\":5,\"reason\":\"r\",\"\\u00e9t\\u00e9\":1}", "unknown member"},
};

static void test_route_bodies(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(body_cases) / sizeof(body_cases[0]); i++) {
        const body_case_t *c = &body_cases[i];
        char why[BP_BODY_WHY_MAX] = "", what[96];
        union {
            bp_claim_body_t claim;
            bp_premium_body_t premium;
            bp_levels_body_t levels;
            bp_xp_body_t xp;
        } out;
        json_t *root = NULL;
        snprintf(what, sizeof(what), "case %zu %.70s", i, c->body);
        if (bp_http_body_json(c->body, strlen(c->body), &root, why, sizeof(why)) != BP_OK)
            fail_msg("%s: not parsed: %s", what, why);
        bp_err_t err = bp_http_body_parse(c->kind, root, &out, why, sizeof(why));
        if ((err == BP_OK) != (c->words == NULL))
            fail_msg("%s: got %s (%s)", what, bp_err_str(err), err == BP_OK ? "" : why);
        if (c->words)
            expect_words(what, why, c->words);
        json_decref(root);
    }
}

/* What an accepted body fills. */
static void test_route_values(void **state)
{
    (void)state;
    char why[BP_BODY_WHY_MAX];
    json_t *root = NULL;
    const char *b = "{\"level\":42,\"tier\":\"premium\"}";
    bp_claim_body_t claim;
    assert_int_equal(bp_http_body_json(b, strlen(b), &root, why, sizeof(why)), BP_OK);
    assert_int_equal(bp_http_body_parse(BP_BODY_CLAIM, root, &claim, why, sizeof(why)), BP_OK);
    assert_int_equal(claim.level, 42);
    assert_int_equal(claim.tier, BP_TIER_PREMIUM);
    json_decref(root);

    b = "{\"transactionId\":\"t-9\",\"source\":\"gift\"}";
    bp_premium_body_t prem;
    assert_int_equal(bp_http_body_json(b, strlen(b), &root, why, sizeof(why)), BP_OK);
    assert_int_equal(bp_http_body_parse(BP_BODY_PREMIUM, root, &prem, why, sizeof(why)), BP_OK);
    assert_null(prem.season_id);
    assert_string_equal(prem.transaction_id, "t-9");
    assert_string_equal(prem.source, "gift");
    json_decref(root);

    b = "{\"count\":3,\"transactionId\":\"tx\"}";
    bp_levels_body_t lv;
    assert_int_equal(bp_http_body_json(b, strlen(b), &root, why, sizeof(why)), BP_OK);
    assert_int_equal(bp_http_body_parse(BP_BODY_LEVELS, root, &lv, why, sizeof(why)), BP_OK);
    assert_int_equal(lv.count, 3);
    assert_string_equal(lv.transaction_id, "tx");
    json_decref(root);

    b = "{\"amount\":250,\"reason\":\"match_complete\",\"metadata\":{\"m\":\"1\",\"n\":\"2\"},"
        "\"occurredAt\":\"2026-01-01T00:00:01Z\",\"seasonId\":\"s-1\"}";
    bp_xp_body_t xp;
    assert_int_equal(bp_http_body_json(b, strlen(b), &root, why, sizeof(why)), BP_OK);
    assert_int_equal(bp_http_body_parse(BP_BODY_XP, root, &xp, why, sizeof(why)), BP_OK);
    assert_int_equal(xp.ev.amount, 250);
    assert_string_equal(xp.ev.reason, "match_complete");
    assert_string_equal(xp.ev.season_id, "s-1");
    assert_true(xp.ev.occurred_at_ms == INT64_C(1767225601000));
    assert_int_equal(xp.n_meta, 2);
    assert_string_equal(xp.ev.event_id, "");
    json_decref(root);

    /* Out of range kinds and non-objects are refused, not read. */
    root = json_object();
    assert_int_equal(bp_http_body_parse(BP_BODY_KINDS, root, &claim, why, sizeof(why)), BP_EINVAL);
    json_decref(root);
    root = json_array();
    assert_int_equal(bp_http_body_parse(BP_BODY_CLAIM, root, &claim, why, sizeof(why)), BP_EINVAL);
    json_decref(root);
}

static void test_xp_metadata_limits(void **state)
{
    (void)state;
    char body[8192], why[BP_BODY_WHY_MAX];
    for (int entries = BP_XP_META_MAX; entries <= BP_XP_META_MAX + 1; entries++) {
        size_t o =
            (size_t)snprintf(body, sizeof(body), "{\"amount\":1,\"reason\":\"r\",\"metadata\":{");
        for (int i = 0; i < entries; i++)
            o += (size_t)snprintf(body + o, sizeof(body) - o, "%s\"k%d\":\"v\"", i ? "," : "", i);
        snprintf(body + o, sizeof(body) - o, "}}");
        json_t *root = NULL;
        bp_xp_body_t xp;
        assert_int_equal(bp_http_body_json(body, strlen(body), &root, why, sizeof(why)), BP_OK);
        bp_err_t err = bp_http_body_parse(BP_BODY_XP, root, &xp, why, sizeof(why));
        if (entries <= BP_XP_META_MAX) {
            assert_int_equal(err, BP_OK);
            assert_int_equal(xp.n_meta, (size_t)entries);
        } else {
            assert_int_equal(err, BP_EINVAL);
            expect_words("metadata entries", why, "at most 32 entries");
        }
        json_decref(root);
    }
    /* Key of 64 bytes accepted, 65 refused; value of 512 accepted, 513 refused. */
    static const struct {
        int key, value;
        bool ok;
    } sizes[] = {{64, 1, true}, {65, 1, false}, {1, 512, true}, {1, 513, false}};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char key[128], value[1024];
        memset(key, 'k', (size_t)sizes[i].key);
        key[sizes[i].key] = '\0';
        memset(value, 'v', (size_t)sizes[i].value);
        value[sizes[i].value] = '\0';
        snprintf(body, sizeof(body), "{\"amount\":1,\"reason\":\"r\",\"metadata\":{\"%s\":\"%s\"}}",
                 key, value);
        json_t *root = NULL;
        bp_xp_body_t xp;
        assert_int_equal(bp_http_body_json(body, strlen(body), &root, why, sizeof(why)), BP_OK);
        bp_err_t err = bp_http_body_parse(BP_BODY_XP, root, &xp, why, sizeof(why));
        if ((err == BP_OK) != sizes[i].ok)
            fail_msg("metadata size case %zu: got %s", i, bp_err_str(err));
        json_decref(root);
    }
}

static void test_query_num(void **state)
{
    (void)state;
    static const bp_query_num_t limit = {"limit", 1, 100, 20, false, "limit ..."};
    static const bp_query_num_t cursor = {"cursor", 1, INT64_MAX, 0, true, "cursor ..."};
    static const struct {
        const bp_query_num_t *p;
        const char *text; /* NULL: absent */
        bool ok;
        long long want;
    } cases[] = {
        {&limit, NULL, true, 20},
        {&limit, "1", true, 1},
        {&limit, "100", true, 100},
        {&limit, "007", true, 7},
        {&limit, "", false, 0},
        {&limit, "0", false, 0},
        {&limit, "101", false, 0},
        {&limit, "-1", false, 0},
        {&limit, "+5", false, 0},
        {&limit, " 5", false, 0},
        {&limit, "5 ", false, 0},
        {&limit, "1e2", false, 0},
        {&limit, "1.0", false, 0},
        {&limit, "0x10", false, 0},
        {&limit, "99999999999999999999", false, 0},
        {&cursor, NULL, true, 0},
        {&cursor, "", true, 0},
        {&cursor, "123456789012345678", true, 123456789012345678LL},
        {&cursor, "9223372036854775807", false, 0}, /* 19 digits: no cursor is that long */
        {&cursor, "9223372036854775808", false, 0},
        {&cursor, "0", false, 0},
        {&cursor, "abc", false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long long v = -42;
        bool ok = bp_http_query_num(cases[i].p, cases[i].text, &v);
        if (ok != cases[i].ok)
            fail_msg("query case %zu (%s=%s): got %d", i, cases[i].p->name,
                     cases[i].text ? cases[i].text : "(absent)", ok);
        assert_true(ok ? v == cases[i].want : v == -42);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_json),          cmocka_unit_test(test_body_depth),
        cmocka_unit_test(test_route_bodies),       cmocka_unit_test(test_route_values),
        cmocka_unit_test(test_xp_metadata_limits), cmocka_unit_test(test_query_num),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
