/** @file The Progress resources: GET /progress/{playerId} (current season) and
 *  /progress/{playerId}/seasons/{seasonId}, read in batches from PostgreSQL by the read lanes
 *  (from Redis when PostgreSQL fails); POST /progress/{playerId}/levels (level purchases,
 *  store/progress.h); GET /progress/{playerId}/history (applied XP events). */
#include "http/routes.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/log.h"
#include "core/event.h"
#include "core/level.h"
#include "core/timefmt.h"
#include "http/auth.h"
#include "http/batcher.h"
#include "http/bodies.h"
#include "http/request.h"
#include "store/cache.h"
#include "store/progress.h"

/** Level purchases come from the economy service only. */
#define ACCESS_PURCHASE (BP_ACCESS_TOKEN | BP_SCOPE_SERVICE)
/** Read lanes. One: a second split the same requests into smaller statements (measured:
 *  2 lanes ~30k req/s, 1 lane ~46k on 2 cores, docs/benchmarks.md). */
#define READ_LANES 1
/** Most reads in one statement. */
#define READ_BATCH_MAX 256
/** Redis entries completed after reads, at most per second (see fill_batch). */
#define BP_HTTP_FILLS_PER_S 2000
/** Completions waiting at most; beyond, new ones are dropped. */
#define BP_HTTP_FILLS_PENDING_MAX 4096
/** While Redis is unavailable, waiting completions are tried again this often. */
#define BP_HTTP_FILL_RETRY_MS 200
/** History page size when the request names none. */
#define HISTORY_LIMIT_DEFAULT 20

/* ---- reading and rendering progress ---- */

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

bp_err_t bp_http_progress_read(bp_http_req_t *req, const char *season_id, const char *player_id,
                               bp_progress_row_t *row)
{
    return read_progress(req, season_id, player_id, row);
}

json_t *bp_http_progress_json(const bp_season_t *s, const char *player_id,
                              const bp_progress_row_t *row)
{
    bp_level_info_t lv = bp_level_for_xp(s, row->total_xp);
    char updated[32];
    if (row->updated_at_ms > 0)
        bp_time_format(row->updated_at_ms, updated, sizeof(updated));
    json_t *obj = json_pack(
        "{s:s, s:s, s:I, s:I, s:I, s:i, s:I, s:I, s:b, s:s?}", "playerId", player_id, "seasonId",
        s->id, "totalXp", (json_int_t)row->total_xp, "earnedXp", (json_int_t)row->earned_xp,
        "paidXp", (json_int_t)row->paid_xp, "currentLevel", (int)lv.level, "currentXp",
        (json_int_t)lv.current_xp, "xpToNextLevel", (json_int_t)lv.xp_to_next, "premium",
        (int)row->premium, "updatedAt", row->updated_at_ms > 0 ? updated : NULL);
    return obj;
}

/** @return true when @p s can go between JSON quotes as it is. */
static bool json_plain(const char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
            return false;
    return true;
}

char *bp_http_progress_text(const bp_season_t *s, const char *player_id,
                            const bp_progress_row_t *row, size_t *len)
{
    if (!json_plain(player_id) || !json_plain(s->id)) {
        json_t *obj = bp_http_progress_json(s, player_id, row);
        char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
        json_decref(obj);
        *len = text ? strlen(text) : 0;
        return text;
    }
    bp_level_info_t lv = bp_level_for_xp(s, row->total_xp);
    char updated[40] = "null";
    if (row->updated_at_ms > 0) {
        updated[0] = '"';
        bp_time_format(row->updated_at_ms, updated + 1, sizeof(updated) - 2);
        strcat(updated, "\"");
    }
    /* members and punctuation 160, six numbers of up to 20 digits, the date 40 */
    size_t cap = 330 + strlen(player_id) + strlen(s->id);
    char *text = malloc(cap);
    if (!text)
        return NULL;
    int n = snprintf(text, cap,
                     "{\"playerId\":\"%s\",\"seasonId\":\"%s\",\"totalXp\":%" PRId64
                     ",\"earnedXp\":%" PRId64 ",\"paidXp\":%" PRId64 ",\"currentLevel\":%d"
                     ",\"currentXp\":%" PRId64 ",\"xpToNextLevel\":%" PRId64
                     ",\"premium\":%s,\"updatedAt\":%s}",
                     player_id, s->id, row->total_xp, row->earned_xp, row->paid_xp, (int)lv.level,
                     lv.current_xp, lv.xp_to_next, row->premium ? "true" : "false", updated);
    if (n < 0 || (size_t)n >= cap) {
        free(text);
        return NULL;
    }
    *len = (size_t)n;
    return text;
}

/** Answer 200 with the Progress resource of @p row. */
static void reply_progress(bp_http_req_t *req, const bp_season_t *s, const char *player_id,
                           const bp_progress_row_t *row)
{
    size_t len = 0;
    char *text = bp_http_progress_text(s, player_id, row, &len);
    bp_http_reply_owned(req, 200, text, len, "application/json");
    req->resp.cache_control = "no-store";
}

/* ---- GET /progress: the read lanes ---- */

struct bp_http_reads {
    bp_http_batcher_t *lanes; /* the reads */
    bp_http_batcher_t *fills; /* completing Redis entries, best effort */
    atomic_long fills_pending;
    atomic_bool closing;
    /* The fill lane's pace (touched by that lane only). */
    int64_t window_ms;
    long window_fills;
};

/** One deferred read. */
typedef struct {
    bp_http_job_t job; /* first: a job pointer is the read_job_t */
    bp_http_req_t *req;
    const bp_season_t *season; /* in req's snapshot */
    const char *player_id;     /* in req's path params */
} read_job_t;

/** One Redis entry to complete: copies, the request is long gone when it runs. */
typedef struct {
    bp_http_job_t job; /* first */
    char season_id[BP_ID_MAX + 1];
    char player_id[BP_ID_MAX + 1];
    bp_progress_row_t row;
} fill_job_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** Queue the completion of the Redis entry of @p row, unless BP_HTTP_FILLS_PENDING_MAX wait
 *  already (then it is dropped: the entry is completed by a later read, or never needed). */
static void fill_later(struct bp_http_reads *r, const char *season_id, const char *player_id,
                       const bp_progress_row_t *row)
{
    if (atomic_load_explicit(&r->fills_pending, memory_order_relaxed) >= BP_HTTP_FILLS_PENDING_MAX)
        return;
    fill_job_t *f = malloc(sizeof(*f));
    if (!f)
        return;
    snprintf(f->season_id, sizeof(f->season_id), "%s", season_id);
    snprintf(f->player_id, sizeof(f->player_id), "%s", player_id);
    f->row = *row;
    atomic_fetch_add_explicit(&r->fills_pending, 1, memory_order_relaxed);
    if (!bp_http_batcher_submit(r->fills, &f->job)) {
        atomic_fetch_sub_explicit(&r->fills_pending, 1, memory_order_relaxed);
        free(f);
    }
}

/**
 * Complete Redis entries (premium, paidXp: what the worker's writes leave out) with rows read
 * from PostgreSQL, as reads did when they went to Redis first, so that what was read lately
 * can still be served from Redis while PostgreSQL is down. One unpipelined round trip each
 * (store/cache.h has no batched fill), so at most BP_HTTP_FILLS_PER_S: beyond, the lane waits
 * and the queue's bound drops the surplus; the reads themselves never wait for Redis. While
 * Redis is unavailable the fills wait and are tried again every BP_HTTP_FILL_RETRY_MS (a late
 * fill is harmless: the cache only ever raises what it holds).
 */
static void fill_batch(void *ctx, bp_http_conn_t *conn, bp_http_job_t **jobs, size_t n)
{
    struct bp_http_reads *r = ctx;
    bp_cache_t *cache = bp_http_conn_cache(conn);
    bool down = false;
    for (size_t i = 0; i < n; i++) {
        fill_job_t *f = (fill_job_t *)(void *)jobs[i];
        if (cache && !down && !atomic_load(&r->closing)) {
            int64_t now = now_ms();
            if (now - r->window_ms >= 1000) {
                r->window_ms = now;
                r->window_fills = 0;
            }
            if (r->window_fills >= BP_HTTP_FILLS_PER_S) {
                struct timespec ts = {0, (long)(1000 - (now - r->window_ms)) * 1000000L};
                nanosleep(&ts, NULL);
                r->window_ms = now_ms();
                r->window_fills = 0;
            }
            r->window_fills++;
            down = bp_cache_fill_progress(cache, f->season_id, f->player_id, &f->row) != BP_OK;
            if (!down)
                f = NULL; /* done */
        }
        if (f && cache && down && !atomic_load(&r->closing) &&
            bp_http_batcher_submit(r->fills, &f->job))
            continue; /* kept for later */
        atomic_fetch_sub_explicit(&r->fills_pending, 1, memory_order_relaxed);
        free(jobs[i]);
    }
    if (down && !atomic_load(&r->closing)) {
        struct timespec ts = {0, BP_HTTP_FILL_RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/**
 * One statement for the whole batch (bp_pg_progress_get_many): PostgreSQL is the truth, so
 * the answer is never older than what the worker committed, and a batch costs one round
 * trip where reading Redis first cost one (unpipelined) per request, plus a PostgreSQL read
 * and a fill for each player not cached. When PostgreSQL fails, each player is looked up
 * in Redis, as before: what a fill completed is served while PostgreSQL is down.
 */
static void read_batch(void *ctx, bp_http_conn_t *conn, bp_http_job_t **jobs, size_t n)
{
    struct bp_http_reads *r = ctx;
    const char *players[READ_BATCH_MAX], *seasons[READ_BATCH_MAX];
    bp_progress_row_t rows[READ_BATCH_MAX];
    bp_pg_t *pg = NULL;

    for (size_t i = 0; i < n; i++) {
        const read_job_t *j = (const read_job_t *)(void *)jobs[i];
        players[i] = j->player_id;
        seasons[i] = j->season->id;
    }
    bp_err_t err = bp_http_conn_pg(conn, now_ms(), &pg);
    if (err == BP_OK)
        err = bp_pg_progress_get_many(pg, players, seasons, n, rows);
    if (err == BP_ERETRY)
        bp_http_conn_failed(conn);
    bp_cache_t *cache = err == BP_OK ? NULL : bp_http_conn_cache(conn);
    for (size_t i = 0; i < n; i++) {
        read_job_t *j = (read_job_t *)(void *)jobs[i];
        bp_http_req_t *req = j->req;
        if (err == BP_OK) {
            reply_progress(req, j->season, j->player_id, &rows[i]);
            fill_later(r, j->season->id, j->player_id, &rows[i]);
        } else if (cache &&
                   bp_cache_get_progress(cache, j->season->id, j->player_id, &rows[i]) == BP_OK) {
            reply_progress(req, j->season, j->player_id, &rows[i]);
        } else {
            bp_http_reply_store_error(req, err, "read progress");
        }
        free(j);
        bp_http_req_resume(req); /* req belongs to the HTTP thread from here on */
    }
}

bp_err_t bp_http_reads_new(const bp_http_config_t *cfg, struct bp_http_reads **out)
{
    struct bp_http_reads *r = calloc(1, sizeof(*r));
    bp_err_t err = BP_ENOMEM;

    *out = NULL;
    if (!r)
        return BP_ENOMEM;
    atomic_init(&r->fills_pending, 0);
    atomic_init(&r->closing, false);
    err = bp_http_batcher_new("bp-fills", 1, 64, cfg->pg_dsn, cfg->redis_url, cfg->cache_ttl_s,
                              fill_batch, r, &r->fills);
    if (err == BP_OK)
        err = bp_http_batcher_new("bp-reads", READ_LANES, READ_BATCH_MAX, cfg->pg_dsn,
                                  cfg->redis_url, cfg->cache_ttl_s, read_batch, r, &r->lanes);
    if (err != BP_OK) {
        bp_http_reads_destroy(r);
        return err;
    }
    *out = r;
    return BP_OK;
}

void bp_http_reads_close(struct bp_http_reads *r)
{
    if (!r)
        return;
    bp_http_batcher_close(r->lanes); /* answers what it holds, which may queue fills */
    atomic_store(&r->closing, true);
    bp_http_batcher_close(r->fills); /* drops what is queued */
}

void bp_http_reads_destroy(struct bp_http_reads *r)
{
    if (!r)
        return;
    bp_http_reads_close(r);
    bp_http_batcher_destroy(r->lanes);
    bp_http_batcher_destroy(r->fills);
    free(r);
}

/** Answer on the request's own thread: Redis first, PostgreSQL on a miss (then cached). */
static void progress_now(bp_http_req_t *req, const bp_season_t *s, const char *player_id)
{
    bp_progress_row_t row;
    bp_err_t err = read_progress(req, s->id, player_id, &row);
    if (err != BP_OK) {
        bp_http_reply_store_error(req, err, "read progress");
        return;
    }
    reply_progress(req, s, player_id, &row);
}

static void progress_in(bp_http_req_t *req, const bp_season_t *s)
{
    const char *player_id = bp_http_req_param(req, "playerId");
    read_job_t *j = req->env->reads ? malloc(sizeof(*j)) : NULL;
    if (j && bp_http_req_defer(req)) {
        *j = (read_job_t){.req = req, .season = s, .player_id = player_id};
        if (bp_http_batcher_submit(req->env->reads->lanes, &j->job))
            return;
        free(j); /* the lanes are closing: answer here, then resume */
        progress_now(req, s, player_id);
        bp_http_req_resume(req);
        return;
    }
    free(j);
    progress_now(req, s, player_id);
}

/** @return the season active now, or NULL after a 404. */
static const bp_season_t *current_season(bp_http_req_t *req)
{
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    int i = bp_season_at(snap->items, snap->n, req->now_ms);
    if (i >= 0)
        return &snap->items[i];
    bp_http_reply_problem(req, 404, "no-current-season", "no season is active now");
    return NULL;
}

/** @return the season @p id, or NULL after a 404. */
static const bp_season_t *named_season(bp_http_req_t *req, const char *id)
{
    const bp_season_list_t *snap = bp_http_req_seasons(req);
    char detail[BP_ID_MAX + 32];
    int i = bp_season_find(snap->items, snap->n, id);
    if (i >= 0)
        return &snap->items[i];
    snprintf(detail, sizeof(detail), "season %s does not exist", id);
    bp_http_reply_problem(req, 404, "season-not-found", detail);
    return NULL;
}

static void get_progress(bp_http_req_t *req)
{
    const bp_season_t *s = current_season(req);
    if (s)
        progress_in(req, s);
}

static void get_progress_season(bp_http_req_t *req)
{
    const bp_season_t *s = named_season(req, bp_http_req_param(req, "seasonId"));
    if (s)
        progress_in(req, s);
}

/* ---- POST /progress/{playerId}/levels ---- */

/** How each purchase outcome is answered (200 ones with the Progress resource). */
static const struct {
    int status;
    const char *slug;
    const char *detail;
} PURCHASE_REPLIES[] = {
    [BP_PURCHASE_DONE] = {200, NULL, NULL},
    [BP_PURCHASE_DUPLICATE] = {200, NULL, NULL},
    [BP_PURCHASE_CONFLICT] = {409, "transaction-conflict",
                              "this transactionId was recorded for another player, season or "
                              "count"},
    [BP_PURCHASE_MAX_LEVEL] = {422, "max-level", "the player is at the max level already"},
};

static void post_levels(bp_http_req_t *req)
{
    const char *player_id = bp_http_req_param(req, "playerId");
    const bp_http_config_t *cfg = req->env->cfg;
    json_t *root = NULL;
    bp_levels_body_t b = {0, NULL};
    bp_grants_t g = {NULL, 0};
    bp_purchase_result_t result = BP_PURCHASE_CONFLICT;
    bp_progress_row_t row;
    bp_pg_t *pg = NULL;
    const bp_season_t *s = NULL;

    if (!cfg->levelup_topic || !cfg->rewards_topic) {
        bp_http_reply_problem(req, 503, "level-purchases-unavailable",
                              "level purchases are not configured");
        return;
    }
    if (!bp_http_req_body(req, BP_BODY_LEVELS, &root, &b) || !(s = current_season(req)))
        goto out;
    bp_level_purchase_t p = {
        .season = s,
        .player_id = player_id,
        .transaction_id = b.transaction_id,
        .count = b.count,
        .actor = req->principal->sub,
        .levelup_topic = cfg->levelup_topic,
        .rewards_topic = cfg->rewards_topic,
        .now_ms = req->now_ms,
    };
    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_pg_levels_buy(pg, &p, &result, &row, &g);
    if (err != BP_OK) {
        bp_http_reply_store_error(req, err, "buy levels");
        goto out;
    }
    if (PURCHASE_REPLIES[result].status != 200) {
        bp_http_reply_problem(req, PURCHASE_REPLIES[result].status, PURCHASE_REPLIES[result].slug,
                              PURCHASE_REPLIES[result].detail);
        goto out;
    }
    if (result == BP_PURCHASE_DONE)
        BP_LOG_INFO("levels bought",
                    "\"seasonId\":\"%s\",\"transactionId\":\"%s\",\"count\":%d,\"paidXp\":%lld,"
                    "\"autoGrants\":%zu",
                    s->id, b.transaction_id, (int)b.count, (long long)row.paid_xp, g.n);
    /* As after a batch: the cached total rises and the change is published to the event
     * streams; then the fill adds paidXp (which only moves up). */
    bp_cache_t *cache = bp_http_req_cache(req);
    if (cache && result == BP_PURCHASE_DONE) {
        const char *season_ids[1] = {s->id};
        bp_progress_change_t ch = {.season_idx = 0, .total_xp = row.total_xp, .level = row.level};
        snprintf(ch.player_id, sizeof(ch.player_id), "%s", player_id);
        if (bp_cache_put_progress(cache, season_ids, &ch, 1, req->now_ms) != BP_OK)
            BP_LOG_DEBUG("level purchase not published", NULL);
    }
    if (cache && bp_cache_fill_progress(cache, s->id, player_id, &row) != BP_OK)
        BP_LOG_DEBUG("level purchase not written to the progress cache", NULL);
    reply_progress(req, s, player_id, &row);
out:
    bp_grants_fini(&g);
    json_decref(root);
}

/* ---- GET /progress/{playerId}/history ---- */

/** @return the item (a bp_history_item_t) as JSON, NULL when out of memory. */
static json_t *history_item_json(const void *item)
{
    const bp_history_item_t *it = item;
    char occurred[32], processed[32];
    bp_time_format(it->occurred_at_ms, occurred, sizeof(occurred));
    bp_time_format(it->processed_at_ms, processed, sizeof(processed));
    return json_pack("{s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:s}", "eventId", it->event_id,
                     "seasonId", it->season_id, "amount", (int)it->amount, "appliedAmount",
                     (int)it->applied_amount, "boostPct", (int)it->boost_pct, "reason", it->reason,
                     "occurredAt", occurred, "processedAt", processed);
}

/**
 * The player's applied XP events, newest (last processed) first: `limit` 1..100 (default 20),
 * `cursor` the nextCursor of the previous page (opaque to clients; the processing sequence),
 * `seasonId` to keep one season. Only XP events are listed: events recorded outside every
 * season are not, and neither are level purchases (paid XP shows as paidXp in Progress).
 */
static void get_history(bp_http_req_t *req)
{
    const char *player_id = bp_http_req_param(req, "playerId");
    bp_http_page_query_t q;
    bp_history_t h = {NULL, 0, 0};
    bp_pg_t *pg = NULL;

    if (!bp_http_req_page_query(req, BP_HISTORY_LIMIT_MAX, HISTORY_LIMIT_DEFAULT, &q))
        return;
    const char *season_id = bp_http_req_query(req, "seasonId");
    if (season_id && !bp_id_valid(season_id, strlen(season_id))) {
        bp_http_reply_problem(req, 400, "invalid-parameter",
                              "seasonId must be 1 to 64 characters of [A-Za-z0-9._:@-]");
        return;
    }
    if (season_id && !named_season(req, season_id))
        return;

    bp_err_t err = bp_http_req_pg(req, &pg);
    if (err == BP_OK)
        err = bp_pg_history(pg, player_id, season_id, q.cursor, q.limit, &h);
    if (err != BP_OK) {
        bp_http_reply_store_error(req, err, "read the history");
        return;
    }
    bp_http_reply_page(req, h.items, h.n, sizeof(h.items[0]), history_item_json, h.next_seq);
    bp_history_fini(&h);
}

const bp_http_route_t bp_http_routes_progress[] = {
    {"GET", "/progress/{playerId}", get_progress, BP_ACCESS_PLAYER_READ},
    {"GET", "/progress/{playerId}/seasons/{seasonId}", get_progress_season, BP_ACCESS_PLAYER_READ},
    {"POST", "/progress/{playerId}/levels", post_levels, ACCESS_PURCHASE},
    {"GET", "/progress/{playerId}/history", get_history, BP_ACCESS_PLAYER_READ},
};
const size_t bp_http_routes_progress_n =
    sizeof(bp_http_routes_progress) / sizeof(bp_http_routes_progress[0]);
