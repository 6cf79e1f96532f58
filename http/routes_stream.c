/** @file GET /progress/{playerId}/stream: Server-Sent Events of a player's progress in the
 *  current season. First the Progress resource (as GET /progress/{playerId}), then, as the
 *  worker commits XP (Redis pub/sub through http/stream.h), `progress` with the new totals,
 *  `level-up` when the level rose and one `reward-available` per reward it made available
 *  (event names and data as schemas/openapi/main.yaml's x-sse-events). */
#include "http/routes.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/log.h"
#include "core/level.h"
#include "core/reward.h"
#include "http/auth.h"
#include "http/request.h"
#include "http/stream.h"

/** Retry-After of a 503 when this process has as many streams as it takes. */
#define FULL_RETRY_AFTER_S 5

/** What one stream remembers between events; owned by its stream (ctx_destroy). */
typedef struct {
    bp_http_env_t *env;
    char player_id[BP_ID_MAX + 1];
    char season_id[BP_ID_MAX + 1]; /**< the season followed: current when the stream opened */
    bp_progress_row_t row;         /**< as last sent (premium as of the last read) */
    int32_t level;                 /**< level last sent, from the season's curve */
} stream_ctx_t;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** Append @p obj (reference taken; NULL = out of memory) as one event. */
static bp_err_t add_event(bp_stream_buf_t *out, const char *event, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text)
        return BP_ENOMEM;
    bp_err_t err = bp_stream_buf_event(out, event, text);
    free(text);
    return err;
}

/** One `reward-available` event per reward of levels (from, to]: the free tier, and the
 *  premium tier for a premium player. None with autoClaim: the worker grants those itself. */
static bp_err_t add_rewards(bp_stream_buf_t *out, const stream_ctx_t *c, const bp_season_t *s,
                            int32_t from, int32_t to)
{
    bp_err_t err = BP_OK;
    size_t n = s->auto_claim ? 0 : bp_rewards_unlocked(s, from, to, c->row.premium, NULL, 0);
    if (n == 0)
        return BP_OK;
    size_t *idx = malloc(n * sizeof(*idx));
    if (!idx)
        return BP_ENOMEM;
    n = bp_rewards_unlocked(s, from, to, c->row.premium, idx, n);
    for (size_t k = 0; err == BP_OK && k < n; k++) {
        const bp_reward_t *r = &s->rewards[idx[k]];
        err = add_event(out, "reward-available",
                        json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:i}", "playerId", c->player_id,
                                  "seasonId", s->id, "level", (int)r->level, "tier",
                                  bp_tier_str(r->tier), "rewardId", r->reward_id, "itemId",
                                  r->item_id, "quantity", (int)r->quantity));
    }
    free(idx);
    return err;
}

/** Send @p row (newer than the last one sent) as `progress`, then `level-up` and
 *  `reward-available` when its level is higher than the last one sent. */
static bp_err_t advance(stream_ctx_t *c, const bp_season_t *s, const bp_progress_row_t *row,
                        bp_stream_buf_t *out)
{
    int32_t prev = c->level;
    bp_level_info_t lv = bp_level_for_xp(s, row->total_xp);
    c->row = *row;
    bp_err_t err = add_event(out, "progress", bp_http_progress_json(s, c->player_id, row));
    if (err != BP_OK || lv.level <= prev)
        return err;
    c->level = lv.level;
    err = add_event(out, "level-up",
                    json_pack("{s:s, s:s, s:i, s:i, s:I}", "playerId", c->player_id, "seasonId",
                              s->id, "previousLevel", (int)prev, "newLevel", (int)lv.level,
                              "totalXp", (json_int_t)row->total_xp));
    if (err == BP_OK)
        err = add_rewards(out, c, s, prev, lv.level);
    return err;
}

/**
 * The row to send for an update: re-read (cache first, as GET /progress) so that every
 * member of the resource is current; when the store cannot answer, the message's total
 * with the difference counted as earned XP (the worker only publishes XP it applied).
 * @return true with @p row filled, false when there is nothing newer to send.
 */
static bool next_row(stream_ctx_t *c, const bp_stream_update_t *up, bp_progress_row_t *row)
{
    bp_http_req_t req;
    memset(&req, 0, sizeof(req));
    req.env = c->env;
    req.now_ms = wall_ms();
    bp_err_t err = bp_http_progress_read(&req, c->season_id, c->player_id, row);
    bp_http_req_finish(&req);
    if (err != BP_OK || (up && row->total_xp < up->total_xp)) {
        if (!up)
            return false; /* a resync without the store: the next update will do */
        *row = c->row;
        row->earned_xp += up->total_xp - c->row.total_xp;
        row->total_xp = up->total_xp;
        row->updated_at_ms = req.now_ms;
    }
    return row->total_xp > c->row.total_xp;
}

static bp_err_t on_update(void *ctx, const bp_stream_update_t *up, bp_stream_buf_t *out)
{
    stream_ctx_t *c = ctx;
    bp_progress_row_t row;
    if (up && (strcmp(up->season_id, c->season_id) != 0 || up->total_xp <= c->row.total_xp))
        return BP_OK; /* another season, or not newer than what was sent */
    if (!next_row(c, up, &row))
        return BP_OK;
    const bp_season_list_t *snap = bp_seasons_acquire(c->env->seasons);
    int i = bp_season_find(snap->items, snap->n, c->season_id);
    /* A season that left the snapshot ends the stream; the client reconnects. */
    bp_err_t err = i < 0 ? BP_ENOTFOUND : advance(c, &snap->items[i], &row, out);
    bp_seasons_release(c->env->seasons, snap);
    return err;
}

/** Every keep-alive: a stream follows one season; once another one is current (or none),
 *  end it so that the client reconnects to the current one. */
static bp_err_t on_idle(void *ctx, bp_stream_buf_t *out)
{
    stream_ctx_t *c = ctx;
    (void)out;
    const bp_season_list_t *snap = bp_seasons_acquire(c->env->seasons);
    int i = bp_season_at(snap->items, snap->n, wall_ms());
    bool same = i >= 0 && strcmp(snap->items[i].id, c->season_id) == 0;
    bp_seasons_release(c->env->seasons, snap);
    return same ? BP_OK : BP_EINVAL;
}

static void ctx_destroy(void *ctx)
{
    free(ctx);
}

static const bp_stream_ops_t OPS = {on_update, on_idle, ctx_destroy};

static void get_stream(bp_http_req_t *req)
{
    const char *player_id = bp_http_req_param(req, "playerId");
    bp_stream_t *st = NULL;
    stream_ctx_t *c = NULL;
    void *owned = NULL;
    const bp_season_t *s = NULL;
    bp_err_t err;

    if (!req->env->streams) {
        bp_http_reply_problem(req, 503, "streams-unavailable", "real-time updates are off");
        goto out;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        bp_http_reply_problem(req, 500, "internal-error", "out of memory");
        goto out;
    }
    c->env = req->env;
    snprintf(c->player_id, sizeof(c->player_id), "%s", player_id);
    owned = c;
    /* Subscribe before reading, so that no change falls between the read and the stream. */
    err = bp_stream_open(req->env->streams, player_id, &OPS, &owned, &st);
    if (err == BP_ERETRY) {
        bp_http_reply_problem(req, 503, "too-many-streams",
                              "this instance has as many streams open as it takes");
        req->resp.retry_after_s = FULL_RETRY_AFTER_S;
        goto out;
    } else if (err != BP_OK) {
        bp_http_reply_problem(req, 500, "internal-error", "out of memory");
        goto out;
    }
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    int i = bp_season_at(snap->items, snap->n, req->now_ms);
    if (i < 0) {
        bp_http_reply_problem(req, 404, "no-current-season", "no season is active now");
        goto out;
    }
    s = &snap->items[i];
    err = bp_http_progress_read(req, s->id, player_id, &c->row);
    if (err != BP_OK) {
        BP_LOG_WARN("progress read failed", "\"seasonId\":\"%s\",\"error\":\"%s\"", s->id,
                    bp_err_str(err));
        bp_http_reply_problem(req, 503, "database-unavailable",
                              "progress cannot be read right now, retry later");
        req->resp.retry_after_s = 1;
        goto out;
    }
    snprintf(c->season_id, sizeof(c->season_id), "%s", s->id);
    c->level = bp_level_for_xp(s, c->row.total_xp).level;
    if (add_event(bp_stream_out(st), "progress", bp_http_progress_json(s, player_id, &c->row)) !=
        BP_OK) {
        bp_http_reply_problem(req, 500, "internal-error", "out of memory");
        goto out;
    }
    req->resp.status = 200;
    req->resp.stream = st; /* the server answers with it (bp_stream_respond) */
    st = NULL;

out:
    bp_stream_close(st); /* c goes with it */
}

const bp_http_route_t bp_http_routes_stream[] = {
    {"GET", "/progress/{playerId}/stream", get_stream, BP_ACCESS_PLAYER_READ},
};
const size_t bp_http_routes_stream_n =
    sizeof(bp_http_routes_stream) / sizeof(bp_http_routes_stream[0]);
