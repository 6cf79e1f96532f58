/** @file GET /health (liveness, touches nothing), GET /ready (PostgreSQL reachable and the
 *  season snapshot loaded) and GET /metrics (Prometheus text). */
#include "http/routes.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "app/log.h"
#include "app/metrics.h"
#include "http/auth.h"
#include "http/request.h"

static void get_health(bp_http_req_t *req)
{
    static const char body[] = "{\"status\":\"ok\"}";
    bp_http_reply_owned(req, 200, strdup(body), sizeof(body) - 1, "application/json");
    req->resp.cache_control = "no-store";
}

/** Has a season load succeeded at least once? Forces the first one, at most once a
 *  second however often /ready is called (it is public). */
static bp_err_t seasons_ready(bp_http_req_t *req, bp_pg_t *pg)
{
    bp_http_env_t *env = req->env;
    if (atomic_load(&env->seasons_loaded))
        return bp_seasons_refresh(env->seasons, pg, req->now_ms, 0);
    int64_t due = atomic_load(&env->next_ready_load);
    if (req->now_ms < due ||
        !atomic_compare_exchange_strong(&env->next_ready_load, &due, req->now_ms + 1000))
        return BP_ERETRY;
    bp_err_t err = bp_seasons_refresh(env->seasons, pg, req->now_ms, 1);
    if (err == BP_OK)
        atomic_store(&env->seasons_loaded, true);
    return err;
}

/* /ready is public: a success is remembered this long, so that probing it cannot turn
 * into a query load on PostgreSQL. Failures are not remembered (they are cheap anyway:
 * the pool backs off reconnecting). */
#define READY_MEMO_MS 1000

/** Ask PostgreSQL and the season snapshot. @return true when ready, else the 503 is filled. */
static bool check_ready(bp_http_req_t *req)
{
    bp_pg_t *pg = NULL;
    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err != BP_OK || !bp_pg_ping(pg)) {
        bp_http_reply_problem(req, 503, "database-unavailable", "PostgreSQL is not reachable");
        req->resp.retry_after_s = 1;
        return false;
    }
    if (seasons_ready(req, pg) != BP_OK) {
        bp_http_reply_problem(req, 503, "seasons-unavailable",
                              "the season definitions could not be loaded");
        req->resp.retry_after_s = 1;
        return false;
    }
    return true;
}

static void get_ready(bp_http_req_t *req)
{
    if (req->now_ms >= atomic_load(&req->env->ready_until)) {
        if (!check_ready(req))
            return;
        atomic_store(&req->env->ready_until, req->now_ms + READY_MEMO_MS);
    }
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    int cur = bp_season_at(snap->items, snap->n, req->now_ms);
    bp_http_reply_json(req, 200,
                       json_pack("{s:s, s:I, s:s?}", "status", "ready", "seasons",
                                 (json_int_t)snap->n, "currentSeason",
                                 cur >= 0 ? snap->items[cur].id : NULL));
    req->resp.cache_control = "no-store";
}

/** GET /metrics: the process's counters and histograms, Prometheus text format. */
static void get_metrics(bp_http_req_t *req)
{
    size_t len = 0;
    char *text = bp_metrics_render(&len);
    bp_http_reply_owned(req, 200, text, len, "text/plain; version=0.0.4; charset=utf-8");
    req->resp.cache_control = "no-store";
}

const bp_http_route_t bp_http_routes_health[] = {
    {"GET", "/health", get_health, BP_ACCESS_PUBLIC},
    {"GET", "/ready", get_ready, BP_ACCESS_PUBLIC},
    {"GET", "/metrics", get_metrics, BP_ACCESS_PUBLIC},
};
const size_t bp_http_routes_health_n =
    sizeof(bp_http_routes_health) / sizeof(bp_http_routes_health[0]);
