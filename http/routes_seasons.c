/** @file GET /seasons/current and GET /seasons/{seasonId}: Season resources from the shared
 *  snapshot, with their status at request time. */
#include "http/routes.h"

#include <stdio.h>
#include <string.h>

#include "http/auth.h"
#include "http/request.h"
#include "store/season_json.h"

static void reply_season(bp_http_req_t *req, const bp_season_t *s)
{
    char *text = bp_season_to_json(s, req->now_ms);
    bp_http_reply_owned(req, 200, text, text ? strlen(text) : 0, "application/json");
}

static void get_current(bp_http_req_t *req)
{
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    int i = bp_season_at(snap->items, snap->n, req->now_ms);
    if (i < 0) {
        bp_http_reply_problem(req, 404, "no-current-season", "no season is active now");
        return;
    }
    reply_season(req, &snap->items[i]);
}

static void get_season(bp_http_req_t *req)
{
    const char *id = bp_http_req_param(req, "seasonId");
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    int i = bp_season_find(snap->items, snap->n, id);
    if (i < 0) {
        char detail[BP_ID_MAX + 64];
        snprintf(detail, sizeof(detail), "season %s does not exist", id);
        bp_http_reply_problem(req, 404, "season-not-found", detail);
        return;
    }
    reply_season(req, &snap->items[i]);
}

/* The literal route goes first: "current" would also match {seasonId}. */
const bp_http_route_t bp_http_routes_seasons[] = {
    {"GET", "/seasons/current", get_current, BP_ACCESS_TOKEN},
    {"GET", "/seasons/{seasonId}", get_season, BP_ACCESS_TOKEN},
};
const size_t bp_http_routes_seasons_n =
    sizeof(bp_http_routes_seasons) / sizeof(bp_http_routes_seasons[0]);
