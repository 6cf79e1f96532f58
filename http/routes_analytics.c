/** @file GET /analytics/seasons/{seasonId} (admin: the season's counters, kept by the
 *  writers, read in one statement) and GET /stats/{playerId} (a player's seasons). Both
 *  answer a superset: the fields of the issue and those of schemas/openapi/main.yaml. */
#include "http/routes.h"

#include <stdio.h>
#include <string.h>

#include "app/log.h"
#include "core/level.h"
#include "core/timefmt.h"
#include "http/auth.h"
#include "http/request.h"
#include "store/analytics.h"

/** Season analytics are for admins only. */
#define ACCESS_ANALYTICS (BP_ACCESS_TOKEN | BP_SCOPE_ADMIN)
#define DAY_MS 86400000LL

/** @return @p num / @p den within 0..1; 0 when there is nothing to divide by. */
static double ratio(int64_t num, int64_t den)
{
    if (den <= 0 || num <= 0)
        return 0.0;
    return num >= den ? 1.0 : (double)num / (double)den;
}

/** Write the UTC date "YYYY-MM-DD" of @p day (days since 1970-01-01). */
static void format_day(int64_t day, char buf[32])
{
    bp_time_format(day * DAY_MS, buf, 32);
    buf[10] = '\0';
}

/** Append @p item to @p arr (reference taken). @return false when out of memory. */
static bool append(json_t *arr, json_t *item)
{
    return arr && json_array_append_new(arr, item) == 0;
}

/** @return the floor of @p ms in days since 1970-01-01. */
static int64_t day_of(int64_t ms)
{
    return ms >= 0 ? ms / DAY_MS : -((-ms + DAY_MS - 1) / DAY_MS);
}

/** The current day's and week's active players: today, or the last day of an ended season
 *  (0 when that day or week has no data among the latest ones read). */
static void active_now(const bp_season_t *s, const bp_season_report_t *r, int64_t now_ms,
                       int64_t *daily, int64_t *weekly)
{
    int64_t day = day_of(now_ms < s->ends_at_ms ? now_ms : s->ends_at_ms - 1);
    int64_t monday = day - ((day + 3) % 7 + 7) % 7; /* 1970-01-01 was a Thursday */
    *daily = *weekly = 0;
    for (size_t i = 0; i < r->n_days; i++)
        if (r->days[i].day == day)
            *daily = r->days[i].active;
    for (size_t i = 0; i < r->n_weeks; i++)
        if (r->weeks[i].first_day == monday)
            *weekly = r->weeks[i].active;
}

/** @return the report as the Analytics resource, NULL when out of memory. */
static json_t *report_json(const bp_season_t *s, const bp_season_report_t *r, int64_t now_ms)
{
    char date[32];
    int64_t dau, wau;
    json_t *daily = json_array(), *weekly = json_array(), *levels = json_array();
    bool ok = daily && weekly && levels;
    for (size_t i = 0; ok && i < r->n_days; i++) {
        const bp_analytics_day_t *d = &r->days[i];
        format_day(d->day, date);
        ok = append(daily,
                    json_pack("{s:s, s:I, s:I, s:f}", "date", date, "activePlayers",
                              (json_int_t)d->active, "xp", (json_int_t)d->xp, "xpPerActivePlayer",
                              d->active > 0 ? (double)d->xp / (double)d->active : 0.0));
    }
    for (size_t i = 0; ok && i < r->n_weeks; i++) {
        format_day(r->weeks[i].first_day, date);
        ok = append(weekly, json_pack("{s:s, s:I}", "weekStart", date, "activePlayers",
                                      (json_int_t)r->weeks[i].active));
    }
    for (size_t i = 0; ok && i < r->n_levels; i++)
        ok = append(levels, json_pack("{s:i, s:I}", "level", (int)r->levels[i].level, "players",
                                      (json_int_t)r->levels[i].players));
    if (!ok) {
        json_decref(daily);
        json_decref(weekly);
        json_decref(levels);
        return NULL;
    }
    active_now(s, r, now_ms, &dau, &wau);
    double completion = ratio(r->at_max, r->enrolled);
    double velocity = r->player_days > 0 ? (double)r->day_xp / (double)r->player_days : 0.0;
    return json_pack("{s:s, s:I, s:I, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:f, s:o, s:o, s:o}",
                     "seasonId", s->id, "enrolledPlayers", (json_int_t)r->enrolled,
                     "premiumPlayers", (json_int_t)r->premium, "premiumConversion",
                     ratio(r->premium, r->enrolled), "completion", completion, "completionRate",
                     completion, "claimRate", ratio(r->claimed, r->unlocked), "xp",
                     (json_int_t)r->xp, "dailyActivePlayers", (json_int_t)dau,
                     "weeklyActivePlayers", (json_int_t)wau, "xpVelocity", velocity, "daily", daily,
                     "weekly", weekly, "levelDistribution", levels);
}

static void get_season_analytics(bp_http_req_t *req)
{
    const char *id = bp_http_req_param(req, "seasonId");
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    bp_season_report_t r;
    bp_pg_t *pg = NULL;
    char detail[BP_ID_MAX + 32];
    int si = bp_season_find(snap->items, snap->n, id);

    if (si < 0) {
        snprintf(detail, sizeof(detail), "season %s does not exist", id);
        bp_http_reply_problem(req, 404, "season-not-found", detail);
        return;
    }
    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_analytics_season(pg, id, &r);
    if (err != BP_OK) {
        BP_LOG_WARN("season analytics read failed", "\"seasonId\":\"%s\",\"error\":\"%s\"", id,
                    bp_err_str(err));
        bp_http_reply_store_error(req, err, "read the analytics");
        return;
    }
    bp_http_reply_json(req, 200, report_json(&snap->items[si], &r, req->now_ms));
    req->resp.cache_control = "no-store";
    bp_season_report_fini(&r);
}

/* ---- GET /stats/{playerId} ---- */

/** @return the player's level in @p it: from the XP when the season is known (the stored
 *  level is a cache of it), else as stored. */
static int32_t level_of(const bp_season_list_t *snap, const bp_player_season_t *it)
{
    int i = bp_season_find(snap->items, snap->n, it->season_id);
    return i >= 0 ? bp_level_for_xp(&snap->items[i], it->total_xp).level : it->level;
}

static void get_player_stats(bp_http_req_t *req)
{
    const char *player_id = bp_http_req_param(req, "playerId");
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    bp_player_stats_t st;
    bp_pg_t *pg = NULL;

    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_analytics_player(pg, player_id, &st);
    if (err != BP_OK) {
        BP_LOG_WARN("player stats read failed", "\"error\":\"%s\"", bp_err_str(err));
        bp_http_reply_store_error(req, err, "read the statistics");
        return;
    }
    int64_t xp = 0, claimed = 0, premium = 0;
    json_t *seasons = json_array();
    for (size_t i = 0; seasons && i < st.n; i++) {
        const bp_player_season_t *it = &st.items[i];
        xp += it->total_xp;
        claimed += it->claimed;
        premium += it->premium;
        int level = (int)level_of(snap, it); /* levels never go down: the highest one */
        if (!append(seasons, json_pack("{s:s, s:I, s:i, s:i, s:b, s:I}", "seasonId", it->season_id,
                                       "totalXp", (json_int_t)it->total_xp, "level", level,
                                       "highestLevel", level, "premium", (int)it->premium,
                                       "rewardsClaimed", (json_int_t)it->claimed))) {
            json_decref(seasons);
            seasons = NULL;
        }
    }
    json_t *obj = seasons ? json_pack("{s:s, s:I, s:I, s:I, s:I, s:o}", "playerId", player_id,
                                      "seasonsPlayed", (json_int_t)st.n, "totalXp", (json_int_t)xp,
                                      "rewardsClaimed", (json_int_t)claimed, "premiumSeasons",
                                      (json_int_t)premium, "seasons", seasons)
                          : NULL;
    bp_http_reply_json(req, 200, obj);
    req->resp.cache_control = "no-store";
    bp_player_stats_fini(&st);
}

const bp_http_route_t bp_http_routes_analytics[] = {
    {"GET", "/analytics/seasons/{seasonId}", get_season_analytics, ACCESS_ANALYTICS},
    {"GET", "/stats/{playerId}", get_player_stats, BP_ACCESS_PLAYER_READ},
};
const size_t bp_http_routes_analytics_n =
    sizeof(bp_http_routes_analytics) / sizeof(bp_http_routes_analytics[0]);
