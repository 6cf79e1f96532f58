/** @file GET /rewards/{playerId}, POST /rewards/{playerId}/claim and /claim-all: reward
 *  states and claims; core/reward.h decides, store/rewards.h writes atomically. */
#include "http/routes.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "app/log.h"
#include "core/reward.h"
#include "core/timefmt.h"
#include "http/auth.h"
#include "http/bodies.h"
#include "http/grants.h"
#include "http/request.h"
#include "store/rewards.h"

/** Claims: the player (self) or a service acting for any player; admins read only. */
#define ACCESS_CLAIM (BP_ACCESS_TOKEN | BP_SCOPE_PLAYER | BP_SCOPE_SERVICE)

/** The problem slug of each refused claim; the status comes from bp_claim_verdict_status. */
static const struct {
    bp_claim_verdict_t verdict;
    const char *slug;
} VERDICT_SLUGS[] = {
    {BP_CLAIM_NO_SUCH_REWARD, "no-such-reward"},
    {BP_CLAIM_NOT_OPEN, "claims-closed"},
    {BP_CLAIM_LEVEL_NOT_REACHED, "level-not-reached"},
    {BP_CLAIM_PREMIUM_REQUIRED, "premium-required"},
    {BP_CLAIM_ALREADY_CLAIMED, "already-claimed"},
};

/**
 * The season rewards are read and claimed in: the current one, or else the most recently
 * ended one (its claim window may still be open; core decides). @p ended_ok false keeps
 * only seasons whose claims are still open. @return the season or NULL after a 404.
 */
static const bp_season_t *reward_season(bp_http_req_t *req, bool ended_ok)
{
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    int i = bp_season_at(snap->items, snap->n, req->now_ms);
    if (i < 0) {
        for (size_t k = 0; k < snap->n; k++) {
            const bp_season_t *s = &snap->items[k];
            if (s->ends_at_ms > req->now_ms || (!ended_ok && !bp_claims_open(s, req->now_ms)))
                continue;
            if (i < 0 || s->ends_at_ms > snap->items[i].ends_at_ms)
                i = (int)k;
        }
    }
    if (i < 0) {
        bp_http_reply_problem(req, 404, "no-current-season", "no season is active now");
        return NULL;
    }
    return &snap->items[i];
}

/** Reply to a refused claim with its status and slug. */
static void reply_verdict(bp_http_req_t *req, bp_claim_verdict_t v, int32_t level, bp_tier_t tier)
{
    const char *slug = "claim-refused";
    char detail[160];
    for (size_t i = 0; i < sizeof(VERDICT_SLUGS) / sizeof(VERDICT_SLUGS[0]); i++)
        if (VERDICT_SLUGS[i].verdict == v)
            slug = VERDICT_SLUGS[i].slug;
    if (level > 0)
        snprintf(detail, sizeof(detail), "%s (level %d, %s tier)", bp_claim_verdict_str(v),
                 (int)level, bp_tier_str(tier));
    else
        snprintf(detail, sizeof(detail), "%s", bp_claim_verdict_str(v));
    bp_http_reply_problem(req, bp_claim_verdict_status(v), slug, detail);
}

static void get_rewards(bp_http_req_t *req)
{
    const char *player_id = bp_http_req_param(req, "playerId");
    const bp_season_t *s = reward_season(req, false);
    if (!s)
        return;
    bp_pg_t *pg = NULL;
    bp_player_rewards_t pr;
    memset(&pr, 0, sizeof(pr));
    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_pg_player_rewards(pg, s, player_id, &pr);
    if (err != BP_OK) {
        bp_http_reply_store_error(req, err, "read the rewards");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < s->n_rewards; i++) {
        const bp_reward_t *r = &s->rewards[i];
        bool claimed = i < pr.n_rewards && pr.claimed[i];
        bp_reward_state_t st = bp_reward_state(r, pr.level, pr.premium, claimed);
        json_t *o =
            json_pack("{s:i, s:s, s:s, s:s, s:i, s:s*, s:s}", "level", (int)r->level, "tier",
                      bp_tier_str(r->tier), "rewardId", r->reward_id, "itemId", r->item_id,
                      "quantity", (int)r->quantity, "assetUrl",
                      r->asset_url[0] ? r->asset_url : NULL, "state", bp_reward_state_str(st));
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    json_t *obj =
        arr ? json_pack("{s:s, s:s, s:i, s:b, s:o}", "playerId", player_id, "seasonId", s->id,
                        "currentLevel", (int)pr.level, "premium", (int)pr.premium, "rewards", arr)
            : NULL;
    bp_player_rewards_fini(&pr);
    bp_http_reply_json(req, 200, obj);
    req->resp.cache_control = "no-store";
}

static void post_claim(bp_http_req_t *req)
{
    const char *player_id = bp_http_req_param(req, "playerId");
    bp_claim_body_t b;
    json_t *root = NULL;
    if (!bp_http_req_body(req, BP_BODY_CLAIM, &root, &b))
        return;
    json_decref(root); /* the claim body holds no strings */
    const bp_season_t *s = reward_season(req, true);
    if (!s)
        return;
    bp_pg_t *pg = NULL;
    bp_grants_t g = {NULL, 0};
    bp_claim_verdict_t v = BP_CLAIM_OK;
    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_pg_claim(pg, s, player_id, b.level, b.tier, req->principal->sub,
                          req->env->cfg->rewards_topic, req->now_ms, &v, &g);
    if (err != BP_OK)
        bp_http_reply_store_error(req, err, "claim the reward");
    else if (v != BP_CLAIM_OK)
        reply_verdict(req, v, b.level, b.tier);
    else {
        json_t *arr = bp_http_grants_json(&g);
        json_t *obj =
            arr ? json_pack("{s:s, s:s, s:i, s:s, s:o}", "playerId", player_id, "seasonId", s->id,
                            "level", (int)b.level, "tier", bp_tier_str(b.tier), "grants", arr)
                : NULL;
        bp_http_reply_json(req, 200, obj);
        req->resp.cache_control = "no-store";
    }
    bp_grants_fini(&g);
}

static void post_claim_all(bp_http_req_t *req)
{
    const char *player_id = bp_http_req_param(req, "playerId");
    const bp_season_t *s = reward_season(req, true);
    if (!s)
        return;
    bp_pg_t *pg = NULL;
    bp_grants_t g = {NULL, 0};
    bp_claim_verdict_t v = BP_CLAIM_OK;
    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_pg_claim_all(pg, s, player_id, req->principal->sub, req->env->cfg->rewards_topic,
                              req->now_ms, &v, &g);
    if (err != BP_OK)
        bp_http_reply_store_error(req, err, "claim the rewards");
    else if (v != BP_CLAIM_OK)
        reply_verdict(req, v, 0, BP_TIER_FREE);
    else {
        json_t *arr = bp_http_grants_json(&g);
        json_t *obj = arr ? json_pack("{s:s, s:s, s:o}", "playerId", player_id, "seasonId", s->id,
                                      "grants", arr)
                          : NULL;
        bp_http_reply_json(req, 200, obj);
        req->resp.cache_control = "no-store";
    }
    bp_grants_fini(&g);
}

const bp_http_route_t bp_http_routes_rewards[] = {
    {"GET", "/rewards/{playerId}", get_rewards, BP_ACCESS_PLAYER_READ},
    {"POST", "/rewards/{playerId}/claim", post_claim, ACCESS_CLAIM},
    {"POST", "/rewards/{playerId}/claim-all", post_claim_all, ACCESS_CLAIM},
};
const size_t bp_http_routes_rewards_n =
    sizeof(bp_http_routes_rewards) / sizeof(bp_http_routes_rewards[0]);
