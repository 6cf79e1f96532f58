/** @file GET /progress/{playerId}: a player's progress in the current season, from Redis
 *  when cached, else from PostgreSQL (then cached); Redis being down is not an error. */
#include "http/routes.h"

#include <string.h>

#include "app/log.h"
#include "core/level.h"
#include "core/timefmt.h"
#include "http/auth.h"
#include "http/request.h"

/** Read the row: cache first, PostgreSQL on a miss (filling the cache) or when Redis is
 *  unreachable. @return BP_OK or BP_ERETRY (PostgreSQL failed). */
static bp_err_t read_progress(bp_http_req_t *req, const char *season_id, const char *player_id,
                              bp_progress_row_t *row)
{
    bp_cache_t *cache = bp_http_req_cache(req);
    bp_err_t cached = BP_ENOTFOUND;
    if (cache) {
        cached = bp_cache_get_progress(cache, season_id, player_id, row);
        if (cached == BP_OK)
            return BP_OK;
        if (cached != BP_ENOTFOUND) /* Redis down: PostgreSQL is the truth anyway */
            BP_LOG_DEBUG("progress cache unavailable, reading PostgreSQL", "\"error\":\"%s\"",
                         bp_err_str(cached));
    }
    bp_pg_t *pg = NULL;
    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_pg_progress_get(pg, player_id, season_id, row);
    if (err != BP_OK)
        return err;
    if (cache && cached == BP_ENOTFOUND &&
        bp_cache_fill_progress(cache, season_id, player_id, row) != BP_OK)
        BP_LOG_DEBUG("progress cache fill failed", NULL);
    return BP_OK;
}

static void get_progress(bp_http_req_t *req)
{
    const char *player_id = bp_http_req_param(req, "playerId");
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    int i = bp_season_at(snap->items, snap->n, req->now_ms);
    if (i < 0) {
        bp_http_reply_problem(req, 404, "no-current-season", "no season is active now");
        return;
    }
    const bp_season_t *s = &snap->items[i];
    bp_progress_row_t row;
    bp_err_t err = read_progress(req, s->id, player_id, &row);
    if (err != BP_OK) {
        BP_LOG_WARN("progress read failed", "\"seasonId\":\"%s\",\"error\":\"%s\"", s->id,
                    bp_err_str(err));
        bp_http_reply_problem(req, 503, "database-unavailable",
                              "progress cannot be read right now, retry later");
        req->resp.retry_after_s = 1;
        return;
    }
    bp_level_info_t lv = bp_level_for_xp(s, row.total_xp);
    char updated[32];
    if (row.updated_at_ms > 0)
        bp_time_format(row.updated_at_ms, updated, sizeof(updated));
    json_t *obj = json_pack("{s:s, s:s, s:I, s:i, s:I, s:I, s:b, s:s?}", "playerId", player_id,
                            "seasonId", s->id, "totalXp", (json_int_t)row.total_xp, "currentLevel",
                            (int)lv.level, "currentXp", (json_int_t)lv.current_xp, "xpToNextLevel",
                            (json_int_t)lv.xp_to_next, "premium", (int)row.premium, "updatedAt",
                            row.updated_at_ms > 0 ? updated : NULL);
    bp_http_reply_json(req, 200, obj);
    req->resp.cache_control = "no-store";
}

const bp_http_route_t bp_http_routes_progress[] = {
    {"GET", "/progress/{playerId}", get_progress, BP_ACCESS_PLAYER_READ},
};
const size_t bp_http_routes_progress_n =
    sizeof(bp_http_routes_progress) / sizeof(bp_http_routes_progress[0]);
