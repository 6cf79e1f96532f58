/** @file GET /audit (admin): the audit log of reward transactions, newest first, filtered by
 *  player and/or season, cursor-paginated by row id. */
#include "http/routes.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "app/log.h"
#include "core/event.h"
#include "core/timefmt.h"
#include "http/auth.h"
#include "http/request.h"
#include "store/analytics.h"

/** The audit log is for admins only. */
#define ACCESS_AUDIT (BP_ACCESS_TOKEN | BP_SCOPE_ADMIN)
/** Page size when the request names none. */
#define AUDIT_LIMIT_DEFAULT 50

/** Id query parameters (filters); absent means no filter. */
enum { F_PLAYER, F_SEASON, F_COUNT };
static const char *const FILTERS[F_COUNT] = {[F_PLAYER] = "playerId", [F_SEASON] = "seasonId"};

/** Read and check the query. @return false after replying 400. */
static bool audit_query(bp_http_req_t *req, bp_http_page_query_t *page, const char *ids[F_COUNT])
{
    char detail[128];
    if (!bp_http_req_page_query(req, BP_AUDIT_LIMIT_MAX, AUDIT_LIMIT_DEFAULT, page))
        return false;
    for (int i = 0; i < F_COUNT; i++) {
        ids[i] = bp_http_req_query(req, FILTERS[i]);
        if (!ids[i] || bp_id_valid(ids[i], strlen(ids[i])))
            continue;
        snprintf(detail, sizeof(detail), "%s must be 1 to %d characters of [A-Za-z0-9._:@-]",
                 FILTERS[i], BP_ID_MAX);
        bp_http_reply_problem(req, 400, "invalid-parameter", detail);
        return false;
    }
    return true;
}

/** @return @p s, or NULL when empty (a column that was NULL). */
static const char *opt(const char *s)
{
    return *s ? s : NULL;
}

/** @return the row (a bp_audit_row_t) as JSON (absent columns as null), NULL when out of
 *  memory. */
static json_t *row_json(const void *item)
{
    const bp_audit_row_t *r = item;
    char at[32];
    bp_time_format(r->at_ms, at, sizeof(at));
    json_t *detail = json_loads(r->detail_json, 0, NULL);
    json_t *level = r->level > 0 ? json_integer(r->level) : json_null();
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:o, s:s?, s:s?, s:s?, s:o}", "id",
                     (json_int_t)r->id, "at", at, "actor", r->actor, "action", r->action,
                     "playerId", r->player_id, "seasonId", r->season_id, "level", level, "tier",
                     opt(r->tier), "rewardId", opt(r->reward_id), "grantId", opt(r->grant_id),
                     "detail", detail ? detail : json_object());
}

static void get_audit(bp_http_req_t *req)
{
    bp_http_page_query_t q;
    const char *ids[F_COUNT];
    bp_audit_page_t page = {NULL, 0, 0};
    bp_pg_t *pg = NULL;

    if (!audit_query(req, &q, ids))
        return;
    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_analytics_audit(pg, ids[F_PLAYER], ids[F_SEASON], q.cursor, q.limit, &page);
    if (err != BP_OK) {
        bp_http_reply_store_error(req, err, "read the audit log");
        return;
    }
    bp_http_reply_page(req, page.items, page.n, sizeof(page.items[0]), row_json, page.next_cursor);
    bp_audit_page_fini(&page);
}

const bp_http_route_t bp_http_routes_audit[] = {
    {"GET", "/audit", get_audit, ACCESS_AUDIT},
};
const size_t bp_http_routes_audit_n =
    sizeof(bp_http_routes_audit) / sizeof(bp_http_routes_audit[0]);
