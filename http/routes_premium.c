/** @file POST /premium/{playerId}: grant a season's premium pass, idempotent by
 *  transactionId (store/rewards.h does it in one transaction), then heal the cached
 *  progress so GET /progress shows the pass at once. */
#include "http/routes.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "app/log.h"
#include "core/event.h"
#include "core/reward.h"
#include "core/timefmt.h"
#include "http/auth.h"
#include "http/bodies.h"
#include "http/grants.h"
#include "http/request.h"
#include "store/cache.h"
#include "store/rewards.h"

/** Premium grants come from the economy service or an admin, never from the player. */
#define ACCESS_PREMIUM (BP_ACCESS_TOKEN | BP_SCOPE_SERVICE | BP_SCOPE_ADMIN)

/** The season named by the body, else the current one. @return NULL after a 404. */
static const bp_season_t *premium_season(bp_http_req_t *req, const char *season_id)
{
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    char detail[BP_ID_MAX + 64];
    if (season_id) {
        int i = bp_season_find(snap->items, snap->n, season_id);
        if (i >= 0)
            return &snap->items[i];
        snprintf(detail, sizeof(detail), "season %s does not exist", season_id);
        bp_http_reply_problem(req, 404, "season-not-found", detail);
        return NULL;
    }
    int i = bp_season_at(snap->items, snap->n, req->now_ms);
    if (i >= 0)
        return &snap->items[i];
    bp_http_reply_problem(req, 404, "no-current-season", "no season is active now");
    return NULL;
}

/**
 * Put premium into the cached progress: the committed row is read back and cached, and
 * the cache script lets premium "1" override a cached "0" while keeping a cached totalXp
 * that is ahead. Best effort: a failure leaves an entry that expires after the TTL.
 */
static void heal_cache(bp_http_req_t *req, bp_pg_t *pg, const char *season_id,
                       const char *player_id)
{
    bp_cache_t *cache = bp_http_req_cache(req);
    bp_progress_row_t row;
    if (!cache)
        return;
    if (bp_pg_progress_get(pg, player_id, season_id, &row) != BP_OK ||
        bp_cache_fill_progress(cache, season_id, player_id, &row) != BP_OK)
        BP_LOG_DEBUG("premium not written to the progress cache", "\"seasonId\":\"%s\"", season_id);
}

static void post_premium(bp_http_req_t *req)
{
    const char *player_id = bp_http_req_param(req, "playerId");
    json_t *root = NULL;
    bp_premium_body_t b = {NULL, NULL, NULL};
    bp_grants_t g = {NULL, 0};
    bp_premium_result_t result = BP_PREMIUM_GRANTED;
    bp_pg_t *pg = NULL;
    const bp_season_t *s = NULL;
    json_t *arr = NULL;
    bp_err_t err = BP_OK;
    char detail[BP_ID_MAX + 96];

    if (!bp_http_req_body(req, BP_BODY_PREMIUM, &root, &b) ||
        !(s = premium_season(req, b.season_id)))
        goto out;
    err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_pg_premium_grant(pg, s, player_id, b.transaction_id, b.source, req->now_ms,
                                  req->principal->sub, req->env->cfg->rewards_topic, &result, &g);
    if (err != BP_OK) {
        bp_http_reply_store_error(req, err, "grant the premium pass");
        goto out;
    }
    if (result == BP_PREMIUM_CONFLICT) {
        snprintf(detail, sizeof(detail), "transaction %s was recorded for another player or season",
                 b.transaction_id);
        bp_http_reply_problem(req, 409, "transaction-conflict", detail);
        goto out;
    }
    heal_cache(req, pg, s->id, player_id);
    arr = bp_http_grants_json(&g);
    json_t *obj =
        arr ? json_pack("{s:s, s:s, s:s, s:b, s:o}", "playerId", player_id, "seasonId", s->id,
                        "transactionId", b.transaction_id, "premium", 1, "grants", arr)
            : NULL;
    bp_http_reply_json(req, result == BP_PREMIUM_GRANTED ? 201 : 200, obj);
    req->resp.cache_control = "no-store";
out:
    bp_grants_fini(&g);
    json_decref(root);
}

const bp_http_route_t bp_http_routes_premium[] = {
    {"POST", "/premium/{playerId}", post_premium, ACCESS_PREMIUM},
};
const size_t bp_http_routes_premium_n =
    sizeof(bp_http_routes_premium) / sizeof(bp_http_routes_premium[0]);
