/** @file Unit tests of http/router (path matching, 404/405/400 decisions) against a test
 *  table and the real resource tables, and of http/problem (problem+json bodies). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/auth.h"
#include "http/problem.h"
#include "http/router.h"
#include "http/routes.h"

static void h_a(struct bp_http_req *req)
{
    (void)req;
}

static const bp_http_route_t table[] = {
    {"GET", "/health", h_a, BP_ACCESS_PUBLIC},
    {"GET", "/seasons/current", h_a, BP_ACCESS_TOKEN},
    {"GET", "/seasons/{seasonId}", h_a, BP_ACCESS_TOKEN},
    {"PATCH", "/seasons/{seasonId}", h_a, BP_ACCESS_TOKEN | BP_SCOPE_ADMIN},
    {"GET", "/progress/{playerId}", h_a, BP_ACCESS_PLAYER_READ},
    {"POST", "/progress/{playerId}/xp", h_a, BP_ACCESS_TOKEN | BP_SCOPE_SERVICE},
    {"GET", "/progress/{playerId}/seasons/{seasonId}", h_a, BP_ACCESS_PLAYER_READ},
};
#define N_TABLE (sizeof(table) / sizeof(table[0]))

static const char id64[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static void test_match_table(void **state)
{
    (void)state;
    static const struct {
        const char *method, *path;
        bp_route_result_t want;
        int route;         /* index in table when found, -1 otherwise */
        const char *extra; /* allow list, bad param name, or "name=value" of the first param */
    } cases[] = {
        {"GET", "/health", BP_ROUTE_FOUND, 0, NULL},
        {"HEAD", "/health", BP_ROUTE_FOUND, 0, NULL},
        {"POST", "/health", BP_ROUTE_BAD_METHOD, -1, "GET, HEAD"},
        {"GET", "/healthz", BP_ROUTE_NOT_FOUND, -1, NULL},
        {"GET", "/health/", BP_ROUTE_NOT_FOUND, -1, NULL},
        {"GET", "//health", BP_ROUTE_NOT_FOUND, -1, NULL},
        {"GET", "", BP_ROUTE_NOT_FOUND, -1, NULL},
        {"GET", "/", BP_ROUTE_NOT_FOUND, -1, NULL},
        {"GET", "/seasons/current", BP_ROUTE_FOUND, 1, NULL},
        {"GET", "/seasons/s1", BP_ROUTE_FOUND, 2, "seasonId=s1"},
        {"PATCH", "/seasons/s1", BP_ROUTE_FOUND, 3, "seasonId=s1"},
        {"PATCH", "/seasons/current", BP_ROUTE_FOUND, 3, "seasonId=current"},
        {"DELETE", "/seasons/s1", BP_ROUTE_BAD_METHOD, -1, "GET, HEAD, PATCH"},
        {"DELETE", "/seasons/current", BP_ROUTE_BAD_METHOD, -1, "GET, HEAD, PATCH"},
        {"GET", "/seasons", BP_ROUTE_NOT_FOUND, -1, NULL},
        {"GET", "/seasons/", BP_ROUTE_NOT_FOUND, -1, NULL},
        {"GET", "/progress/p1", BP_ROUTE_FOUND, 4, "playerId=p1"},
        {"GET", "/progress/user@example.com:x-1_2", BP_ROUTE_FOUND, 4,
         "playerId=user@example.com:x-1_2"},
        {"GET", "/progress/p1/", BP_ROUTE_NOT_FOUND, -1, NULL},
        {"GET", "/progress/p1/xp", BP_ROUTE_BAD_METHOD, -1, "POST"},
        {"POST", "/progress/p1/xp", BP_ROUTE_FOUND, 5, "playerId=p1"},
        {"GET", "/progress/p1/seasons/s2", BP_ROUTE_FOUND, 6, "playerId=p1"},
        {"GET", "/progress/bad$id", BP_ROUTE_BAD_PARAM, 4, "playerId"},
        {"GET", "/progress/sp ace", BP_ROUTE_BAD_PARAM, 4, "playerId"},
        {"GET", "/progress/p1/seasons/s%2", BP_ROUTE_BAD_PARAM, 6, "seasonId"},
        {"POST", "/progress/bad$id", BP_ROUTE_BAD_METHOD, -1, "GET, HEAD"},
        {"GET", "/progress/", BP_ROUTE_NOT_FOUND, -1, NULL},
        {"get", "/health", BP_ROUTE_BAD_METHOD, -1, "GET, HEAD"}, /* methods are case-sensitive */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bp_route_match_t m;
        bp_route_result_t r = bp_route_match(table, N_TABLE, cases[i].method, cases[i].path, &m);
        if (r != cases[i].want)
            fail_msg("%s %s: expected %d, got %d", cases[i].method, cases[i].path, cases[i].want,
                     r);
        if (cases[i].route >= 0)
            assert_ptr_equal(m.route, &table[cases[i].route]);
        else
            assert_null(m.route);
        if (r == BP_ROUTE_BAD_METHOD)
            assert_string_equal(m.allow, cases[i].extra);
        if (r == BP_ROUTE_BAD_PARAM)
            assert_string_equal(m.bad_param, cases[i].extra);
        if (r == BP_ROUTE_FOUND && cases[i].extra) {
            char want[128];
            snprintf(want, sizeof(want), "%s=%s", m.params[0].name, m.params[0].value);
            assert_string_equal(want, cases[i].extra);
        }
    }
}

static void test_params(void **state)
{
    (void)state;
    bp_route_match_t m;
    assert_int_equal(bp_route_match(table, N_TABLE, "GET", "/progress/p1/seasons/s2", &m),
                     BP_ROUTE_FOUND);
    assert_int_equal(m.n_params, 2);
    assert_string_equal(bp_route_param(&m, "playerId"), "p1");
    assert_string_equal(bp_route_param(&m, "seasonId"), "s2");
    assert_null(bp_route_param(&m, "other"));
}

static void test_id_length(void **state)
{
    (void)state;
    char path[128];
    bp_route_match_t m;
    snprintf(path, sizeof(path), "/progress/%s", id64);
    assert_int_equal(bp_route_match(table, N_TABLE, "GET", path, &m), BP_ROUTE_FOUND);
    assert_string_equal(bp_route_param(&m, "playerId"), id64);
    snprintf(path, sizeof(path), "/progress/%sa", id64);
    assert_int_equal(bp_route_match(table, N_TABLE, "GET", path, &m), BP_ROUTE_BAD_PARAM);
    assert_string_equal(m.bad_param, "playerId");
}

/* The real tables, in the order the server concatenates them. */
static void test_real_routes(void **state)
{
    (void)state;
    bp_http_route_t all[16];
    size_t n = 0;
    memcpy(all + n, bp_http_routes_health, bp_http_routes_health_n * sizeof(*all));
    n += bp_http_routes_health_n;
    memcpy(all + n, bp_http_routes_seasons, bp_http_routes_seasons_n * sizeof(*all));
    n += bp_http_routes_seasons_n;
    memcpy(all + n, bp_http_routes_progress, bp_http_routes_progress_n * sizeof(*all));
    n += bp_http_routes_progress_n;
    assert_true(n <= 16);

    bp_route_match_t m;
    assert_int_equal(bp_route_match(all, n, "GET", "/health", &m), BP_ROUTE_FOUND);
    assert_int_equal(m.route->access, BP_ACCESS_PUBLIC);
    assert_int_equal(bp_route_match(all, n, "GET", "/ready", &m), BP_ROUTE_FOUND);
    assert_int_equal(m.route->access, BP_ACCESS_PUBLIC);
    assert_int_equal(bp_route_match(all, n, "GET", "/seasons/current", &m), BP_ROUTE_FOUND);
    assert_string_equal(m.route->pattern, "/seasons/current");
    assert_int_equal(m.route->access, BP_ACCESS_TOKEN);
    assert_int_equal(bp_route_match(all, n, "GET", "/seasons/s1", &m), BP_ROUTE_FOUND);
    assert_string_equal(m.route->pattern, "/seasons/{seasonId}");
    assert_int_equal(bp_route_match(all, n, "GET", "/progress/p1", &m), BP_ROUTE_FOUND);
    assert_int_equal(m.route->access, BP_ACCESS_PLAYER_READ);
    assert_int_equal(bp_route_match(all, n, "POST", "/progress/p1", &m), BP_ROUTE_BAD_METHOD);
    assert_string_equal(m.allow, "GET, HEAD");
    assert_int_equal(bp_route_match(all, n, "GET", "/nope", &m), BP_ROUTE_NOT_FOUND);
}

static void test_problem_json(void **state)
{
    (void)state;
    size_t len = 0;
    char *text = bp_http_problem_json(404, "season-not-found", "season s9 does not exist", &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    assert_null(strstr(text, "\": ")); /* compact */
    json_error_t e;
    json_t *o = json_loads(text, 0, &e);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "type")),
                        "urn:battlepass:problem:season-not-found");
    assert_string_equal(json_string_value(json_object_get(o, "title")), "Not Found");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(o, "detail")),
                        "season s9 does not exist");
    json_decref(o);
    free(text);

    /* Invalid UTF-8 in a detail drops the detail, never the problem. */
    text = bp_http_problem_json(400, NULL, "bad \xff byte", &len);
    assert_non_null(text);
    o = json_loads(text, 0, &e);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "about:blank");
    assert_null(json_object_get(o, "detail"));
    json_decref(o);
    free(text);

    assert_string_equal(bp_http_status_title(503), "Service Unavailable");
    assert_string_equal(bp_http_status_title(418), "Error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_table),  cmocka_unit_test(test_params),
        cmocka_unit_test(test_id_length),    cmocka_unit_test(test_real_routes),
        cmocka_unit_test(test_problem_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
