/** @file GET /rewards/{playerId}, POST /rewards/{playerId}/claim and /claim-all: reward
 *  states and claims; core/reward.h decides, store/rewards.h writes atomically. */
#include "http/routes.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/log.h"
#include "app/metrics.h"
#include "core/reward.h"
#include "core/timefmt.h"
#include "http/auth.h"
#include "http/batcher.h"
#include "http/bodies.h"
#include "http/grants.h"
#include "http/request.h"
#include "store/rewards.h"

/** Claims: the player (self) or a service acting for any player; admins read only. */
#define ACCESS_CLAIM (BP_ACCESS_TOKEN | BP_SCOPE_PLAYER | BP_SCOPE_SERVICE)
/** Claim lanes: two, so that one batch's statements run while the other's COMMIT waits for
 *  its WAL flush (measured: 1 lane 7.8-9.4k claims/s, p99 25-27 ms; 2 lanes 9.8-11.7k, p99
 *  16-18 ms; 3 lanes no better: they wait on the same season counter rows). */
#define CLAIM_LANES 2
/** Most claims in one transaction. */
#define CLAIM_BATCH_MAX 128

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

/** Answer a claim: the store's error, the refusal, or 200 with the grants. Every claim
 *  decided is counted by its verdict (bp_claims_total); a store error decided nothing. */
static void reply_claim(bp_http_req_t *req, const bp_season_t *s, const char *player_id,
                        int32_t level, bp_tier_t tier, bp_err_t err, bp_claim_verdict_t v,
                        const bp_grants_t *g)
{
    if (err == BP_OK)
        bp_metrics_claim(v);
    if (err != BP_OK)
        bp_http_reply_store_error(req, err, "claim the reward");
    else if (v != BP_CLAIM_OK)
        reply_verdict(req, v, level, tier);
    else {
        json_t *arr = bp_http_grants_json(g);
        json_t *obj =
            arr ? json_pack("{s:s, s:s, s:i, s:s, s:o}", "playerId", player_id, "seasonId", s->id,
                            "level", (int)level, "tier", bp_tier_str(tier), "grants", arr)
                : NULL;
        bp_http_reply_json(req, 200, obj);
        req->resp.cache_control = "no-store";
    }
}

/** One claim on the request's own thread, in its own transaction. */
static void claim_now(bp_http_req_t *req, const bp_season_t *s, const char *player_id,
                      int32_t level, bp_tier_t tier)
{
    bp_pg_t *pg = NULL;
    bp_grants_t g = {NULL, 0};
    bp_claim_verdict_t v = BP_CLAIM_OK;
    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_pg_claim(pg, s, player_id, level, tier, req->principal->sub,
                          req->env->cfg->rewards_topic, req->now_ms, &v, &g);
    reply_claim(req, s, player_id, level, tier, err, v, &g);
    bp_grants_fini(&g);
}

/* ---- the claim lanes: group commit ---- */

/** One deferred claim. */
typedef struct {
    bp_http_job_t job; /* first: a job pointer is the claim_job_t */
    bp_http_req_t *req;
    const bp_season_t *season; /* in req's snapshot */
    const char *player_id;     /* in req's path params */
    int32_t level;
    bp_tier_t tier;
    bool done;
} claim_job_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** Answer @p j (with @p err, @p v and @p g) and hand its request back. */
static void claim_answer(claim_job_t *j, bp_err_t err, bp_claim_verdict_t v, const bp_grants_t *g)
{
    bp_http_req_t *req = j->req;
    reply_claim(req, j->season, j->player_id, j->level, j->tier, err, v, g);
    j->done = true;
    bp_http_req_resume(req); /* req belongs to the HTTP thread from here on */
}

/**
 * The claims of one season in one transaction (bp_pg_claim_batch). When it fails before
 * its COMMIT nothing was written, and each claim runs again on its own, so that one bad
 * claim (or a deadlock with a worker batch) costs the others nothing but time. When the
 * COMMIT itself fails its outcome may be unknown: every claim answers 503, as a lone claim
 * whose COMMIT fails does, and the client's retry finds out (200 or 409).
 */
static void claim_season(const bp_http_config_t *cfg, bp_http_conn_t *conn, claim_job_t **js,
                         size_t n)
{
    bp_claim_req_t qs[CLAIM_BATCH_MAX];
    const bp_season_t *s = js[0]->season;
    int64_t now = now_ms();
    bp_pg_t *pg = NULL;
    bool at_commit = false;

    memset(qs, 0, n * sizeof(qs[0]));
    for (size_t i = 0; i < n; i++) {
        qs[i].player_id = js[i]->player_id;
        qs[i].level = js[i]->level;
        qs[i].tier = js[i]->tier;
        qs[i].actor = js[i]->req->principal->sub;
    }
    bp_err_t err = bp_http_conn_pg(conn, now, &pg);
    if (err == BP_OK)
        err = bp_pg_claim_batch(pg, s, qs, n, cfg->rewards_topic, now, &at_commit);
    if (err == BP_ERETRY)
        bp_http_conn_failed(conn);
    /* Before claiming one by one, the slot checks its connection (the batch may have failed
     * because the database went away: then it reconnects, or everything answers 503). */
    bool again = err != BP_OK && pg && !at_commit && bp_http_conn_pg(conn, now_ms(), &pg) == BP_OK;
    if (err == BP_OK) {
        for (size_t i = 0; i < n; i++)
            claim_answer(js[i], BP_OK, qs[i].verdict, &qs[i].grants);
    } else if (!again) {
        for (size_t i = 0; i < n; i++)
            claim_answer(js[i], err, BP_CLAIM_NO_SUCH_REWARD, NULL);
    } else {
        BP_LOG_WARN("claim batch failed, claiming one by one", "\"claims\":%zu,\"error\":\"%s\"", n,
                    bp_err_str(err));
        bp_err_t last = BP_OK;
        for (size_t i = 0; i < n; i++) {
            bp_grants_t g = {NULL, 0};
            bp_claim_verdict_t v = BP_CLAIM_NO_SUCH_REWARD;
            /* A database that is gone fails the rest at once instead of each waiting. */
            bp_err_t e = last == BP_ERETRY
                             ? BP_ERETRY
                             : bp_pg_claim(pg, s, js[i]->player_id, js[i]->level, js[i]->tier,
                                           qs[i].actor, cfg->rewards_topic, now, &v, &g);
            last = e;
            claim_answer(js[i], e, v, &g);
            bp_grants_fini(&g);
        }
    }
    for (size_t i = 0; i < n; i++)
        bp_grants_fini(&qs[i].grants);
}

static void claim_batch(void *ctx, bp_http_conn_t *conn, bp_http_job_t **jobs, size_t n)
{
    const bp_http_config_t *cfg = ctx;
    claim_job_t *group[CLAIM_BATCH_MAX];
    /* Claims of the same season go together (nearly always all of them). */
    for (size_t i = 0; i < n; i++) {
        claim_job_t *first = (claim_job_t *)(void *)jobs[i];
        if (first->done)
            continue;
        size_t m = 0;
        for (size_t k = i; k < n; k++) {
            claim_job_t *j = (claim_job_t *)(void *)jobs[k];
            if (!j->done && j->season == first->season)
                group[m++] = j;
        }
        claim_season(cfg, conn, group, m);
    }
    for (size_t i = 0; i < n; i++)
        free(jobs[i]);
}

bp_err_t bp_http_claims_new(const bp_http_config_t *cfg, bp_http_batcher_t **out)
{
    return bp_http_batcher_new("bp-claims", CLAIM_LANES, CLAIM_BATCH_MAX, cfg->pg_dsn, NULL, 0,
                               claim_batch, (void *)(uintptr_t)cfg, out);
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
    if (bp_rewards_at(s, b.level, b.tier, NULL, 0) == 0) { /* bp_pg_claim: no database */
        bp_metrics_claim(BP_CLAIM_NO_SUCH_REWARD);
        reply_verdict(req, BP_CLAIM_NO_SUCH_REWARD, b.level, b.tier);
        return;
    }
    claim_job_t *j = req->env->claims ? malloc(sizeof(*j)) : NULL;
    if (j && bp_http_req_defer(req)) {
        *j = (claim_job_t){
            .req = req, .season = s, .player_id = player_id, .level = b.level, .tier = b.tier};
        if (bp_http_batcher_submit(req->env->claims, &j->job))
            return;
        free(j); /* the lanes are closing: claim here, then resume */
        claim_now(req, s, player_id, b.level, b.tier);
        bp_http_req_resume(req);
        return;
    }
    free(j);
    claim_now(req, s, player_id, b.level, b.tier);
}

/**
 * Claim every available reward. Counted in bp_claims_total once per reward decided: each
 * reward granted as granted; a refusal of the whole claim (claims closed) once, as its
 * verdict; nothing when nothing was available (no reward was decided) or on a store error.
 */
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
    if (err == BP_OK && v != BP_CLAIM_OK)
        bp_metrics_claim(v);
    for (size_t i = 0; err == BP_OK && v == BP_CLAIM_OK && i < g.n; i++)
        bp_metrics_claim(BP_CLAIM_OK);
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
