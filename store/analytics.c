/** @file Analytics in PostgreSQL: season counters maintained set-based in the callers'
 *  transactions (a few statements per batch, rows locked in a fixed order), and the reads of
 *  season reports, player statistics and the audit log. */
#include "store/analytics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/reward.h"
#include "store/pg_conn.h"
#include "store/pgtext.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- statements, prepared on a connection at first use ----
 * Every counter statement inserts in ORDER BY key order: concurrent batches lock the rows
 * they share in the same order, so they queue instead of deadlocking. */
enum {
    ST_ACTIVITY,
    ST_LEVELS,
    ST_STATS,
    ST_PREMIUM,
    ST_REPORT,
    ST_PLAYER,
    ST_AUDIT,        /* no filter */
    ST_AUDIT_PLAYER, /* playerId */
    ST_AUDIT_SEASON, /* seasonId */
    ST_AUDIT_BOTH,   /* both */
    ST_COUNT
};

#define AUDIT_SELECT                                                                               \
    "SELECT id, floor(extract(epoch FROM at) * 1000)::bigint, actor, action, player_id,"           \
    "   season_id, level, tier, reward_id, grant_id, detail::text FROM audit_log WHERE id < $1"
#define AUDIT_ORDER " ORDER BY id DESC LIMIT $2"

static const bp_pg_stmt_t statements[ST_COUNT] = {
    /* Rows arrive distinct by (season, day) and by (season, week), with the players new to
     * each (from their progress rows' active_days, see store/batch.c) and the day's XP:
     * a few rows per batch. Every counter statement adds to the rows of its connection's
     * shard, counter_shard() (migration 008: concurrent transactions rarely share a row),
     * sorted, so that those that do lock them in the same order. */
    [ST_ACTIVITY] =
        {"an_activity",
         "WITH dd AS (INSERT INTO season_daily AS t (season_id, day, active, xp, shard)"
         "   SELECT *, counter_shard()"
         "   FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[]) ORDER BY 1, 2"
         "   ON CONFLICT (season_id, day, shard) DO UPDATE"
         "     SET active = t.active + EXCLUDED.active, xp = t.xp + EXCLUDED.xp"
         "   RETURNING 1),"
         " ww AS (INSERT INTO season_weekly AS t (season_id, week, active, shard)"
         "   SELECT *, counter_shard() FROM unnest($5::text[], $6::int[], $7::bigint[])"
         "   ORDER BY 1, 2"
         "   ON CONFLICT (season_id, week, shard) DO UPDATE"
         "     SET active = t.active + EXCLUDED.active"
         "   RETURNING 1)"
         " SELECT (SELECT count(*) FROM dd), (SELECT count(*) FROM ww)"},
    [ST_LEVELS] = {"an_levels",
                   "INSERT INTO season_level_counts AS c (season_id, level, players, shard)"
                   " SELECT *, counter_shard() FROM unnest($1::text[], $2::int[], $3::bigint[])"
                   " ORDER BY 1, 2"
                   " ON CONFLICT (season_id, level, shard) DO UPDATE"
                   "   SET players = c.players + EXCLUDED.players"},
    [ST_STATS] =
        {"an_stats",
         "INSERT INTO season_stats AS s (season_id, enrolled, at_max, unlocked, xp, shard)"
         " SELECT *, counter_shard() FROM unnest($1::text[], $2::bigint[], $3::bigint[],"
         "   $4::bigint[], $5::bigint[]) ORDER BY 1"
         " ON CONFLICT (season_id, shard) DO UPDATE SET enrolled = s.enrolled + EXCLUDED.enrolled,"
         "   at_max = s.at_max + EXCLUDED.at_max, unlocked = s.unlocked + EXCLUDED.unlocked,"
         "   xp = s.xp + EXCLUDED.xp"},
    /* The caller holds the player's progress row: every earlier pass of this player has
     * committed, so this statement's snapshot sees them all. */
    [ST_PREMIUM] =
        {"an_premium",
         "INSERT INTO season_stats AS s (season_id, enrolled, premium, at_max, unlocked, shard)"
         " SELECT $1, $2::bigint, f.first, $3::bigint, $4::bigint + f.first * $5::bigint,"
         "   counter_shard()"
         " FROM (SELECT (count(*) = 1)::int AS first FROM premium_grants"
         "   WHERE player_id = $6 AND season_id = $1) f"
         " ON CONFLICT (season_id, shard) DO UPDATE SET enrolled = s.enrolled + EXCLUDED.enrolled,"
         "   premium = s.premium + EXCLUDED.premium, at_max = s.at_max + EXCLUDED.at_max,"
         "   unlocked = s.unlocked + EXCLUDED.unlocked"},
    /* One statement, one snapshot; every counter summed over its shards. Kind 0: the totals
     * (zeros for a season without a row) with the player-days and XP summed over the
     * season's days (a row per day, not per player); 1: the latest days, 2: the latest
     * weeks, 3: the levels with players. */
    [ST_REPORT] = {"an_report",
                   "SELECT 0 AS k, 0 AS n, COALESCE(s.enrolled, 0), COALESCE(s.premium, 0),"
                   "   COALESCE(s.at_max, 0), COALESCE(s.unlocked, 0), COALESCE(s.claimed, 0),"
                   "   COALESCE(s.xp, 0), d.player_days, d.xp"
                   " FROM (SELECT COALESCE(sum(active), 0)::bigint AS player_days,"
                   "   COALESCE(sum(xp), 0)::bigint AS xp FROM season_daily WHERE season_id = $1) d"
                   " CROSS JOIN (SELECT sum(enrolled)::bigint AS enrolled,"
                   "   sum(premium)::bigint AS premium, sum(at_max)::bigint AS at_max,"
                   "   sum(unlocked)::bigint AS unlocked, sum(claimed)::bigint AS claimed,"
                   "   sum(xp)::bigint AS xp FROM season_stats WHERE season_id = $1) s"
                   " UNION ALL SELECT * FROM (SELECT 1, day, sum(active)::bigint, sum(xp)::bigint,"
                   "   0, 0, 0, 0, 0, 0 FROM season_daily WHERE season_id = $1"
                   "   GROUP BY day ORDER BY day DESC LIMIT $2) d"
                   " UNION ALL SELECT * FROM (SELECT 2, week, sum(active)::bigint, 0, 0, 0, 0, 0,"
                   "   0, 0 FROM season_weekly WHERE season_id = $1"
                   "   GROUP BY week ORDER BY week DESC LIMIT $3) w"
                   " UNION ALL SELECT 3, level, sum(players)::bigint, 0, 0, 0, 0, 0, 0, 0"
                   "   FROM season_level_counts WHERE season_id = $1"
                   "   GROUP BY level HAVING sum(players) <> 0"
                   " ORDER BY 1, 2"},
    [ST_PLAYER] = {"an_player",
                   "SELECT p.season_id, p.total_xp, p.level, p.premium,"
                   "   (SELECT count(*) FROM reward_claims c"
                   "     WHERE c.player_id = p.player_id AND c.season_id = p.season_id)"
                   " FROM player_progress p LEFT JOIN seasons s ON s.id = p.season_id"
                   " WHERE p.player_id = $1 ORDER BY s.starts_at, p.season_id"},
    [ST_AUDIT] = {"an_audit", AUDIT_SELECT AUDIT_ORDER},
    [ST_AUDIT_PLAYER] = {"an_audit_player", AUDIT_SELECT " AND player_id = $3" AUDIT_ORDER},
    [ST_AUDIT_SEASON] = {"an_audit_season", AUDIT_SELECT " AND season_id = $3" AUDIT_ORDER},
    [ST_AUDIT_BOTH] = {"an_audit_both",
                       AUDIT_SELECT " AND player_id = $3 AND season_id = $4" AUDIT_ORDER},
};

/* Close @p n arrays. @return BP_ENOMEM when one of them ran out of memory. */
static bp_err_t close_arrays(bp_sbuf_t *a, int n)
{
    bp_err_t err = BP_OK;
    for (int k = 0; k < n; k++) {
        bp_arr_close(&a[k]);
        if (a[k].oom)
            err = BP_ENOMEM;
    }
    return err;
}

/* Run @p st with the @p n arrays as parameters; only its success matters. */
static bp_err_t run_arrays(bp_pg_t *pg, int st, bp_sbuf_t *a, int n, ExecStatusType want)
{
    const char *params[8];
    bp_err_t err;
    for (int k = 0; k < n; k++)
        params[k] = a[k].s;
    PGresult *res = bp_pg_exec_stmt(pg, &statements[st], n, params, want, &err);
    PQclear(res);
    return err;
}

/* ---- progress: players per level and season totals ---- */

typedef struct {
    const char *season_id;
    int32_t level;
    int64_t players;
} level_delta_t;

typedef struct {
    const char *season_id;
    int64_t enrolled, at_max, unlocked, xp;
} season_delta_t;

static int level_delta_cmp(const void *a, const void *b)
{
    const level_delta_t *x = a, *y = b;
    int c = strcmp(x->season_id, y->season_id);
    return c ? c : (x->level > y->level) - (x->level < y->level);
}

static int season_delta_cmp(const void *a, const void *b)
{
    return strcmp(((const season_delta_t *)a)->season_id, ((const season_delta_t *)b)->season_id);
}

/* What @p c adds: level deltas appended to @p lv, season totals written to @p sd. */
static void count_change(const bp_analytics_change_t *c, level_delta_t *lv, size_t *n_lv,
                         season_delta_t *sd)
{
    const bp_season_t *s = c->season;
    int32_t from = c->created ? 0 : c->old_level;
    if (c->created || c->old_level != c->new_level) {
        if (!c->created)
            lv[(*n_lv)++] = (level_delta_t){s->id, c->old_level, -1};
        lv[(*n_lv)++] = (level_delta_t){s->id, c->new_level, 1};
    }
    *sd = (season_delta_t){s->id, c->created, from < s->max_level && c->new_level >= s->max_level,
                           c->new_level > from ? (int64_t)bp_rewards_unlocked(s, from, c->new_level,
                                                                              c->premium, NULL, 0)
                                               : 0,
                           c->xp};
}

/* Sort and merge equal keys, dropping rows that add nothing. @return the rows left. */
static size_t merge_levels(level_delta_t *lv, size_t n)
{
    size_t u = 0, kept = 0;
    qsort(lv, n, sizeof(*lv), level_delta_cmp);
    for (size_t i = 0; i < n; i++) {
        if (u > 0 && level_delta_cmp(&lv[u - 1], &lv[i]) == 0)
            lv[u - 1].players += lv[i].players;
        else
            lv[u++] = lv[i];
    }
    for (size_t i = 0; i < u; i++)
        if (lv[i].players != 0)
            lv[kept++] = lv[i];
    return kept;
}

static size_t merge_seasons(season_delta_t *sd, size_t n)
{
    size_t u = 0;
    qsort(sd, n, sizeof(*sd), season_delta_cmp);
    for (size_t i = 0; i < n; i++) {
        season_delta_t *last = u > 0 ? &sd[u - 1] : NULL;
        if (last && strcmp(last->season_id, sd[i].season_id) == 0) {
            last->enrolled += sd[i].enrolled;
            last->at_max += sd[i].at_max;
            last->unlocked += sd[i].unlocked;
            last->xp += sd[i].xp;
        } else {
            sd[u++] = sd[i];
        }
    }
    size_t kept = 0;
    for (size_t i = 0; i < u; i++)
        if (sd[i].enrolled || sd[i].at_max || sd[i].unlocked || sd[i].xp)
            sd[kept++] = sd[i];
    return kept;
}

/* Players per level: one statement for every (season, level) that changed. */
static bp_err_t write_levels(bp_pg_t *pg, const level_delta_t *lv, size_t n, bp_sbuf_t *a)
{
    if (n == 0)
        return BP_OK;
    for (int k = 0; k < 3; k++)
        bp_arr_open(&a[k]);
    for (size_t i = 0; i < n; i++) {
        bp_arr_text(&a[0], lv[i].season_id);
        bp_arr_int(&a[1], lv[i].level);
        bp_arr_int(&a[2], lv[i].players);
    }
    bp_err_t err = close_arrays(a, 3);
    return err != BP_OK ? err : run_arrays(pg, ST_LEVELS, a, 3, PGRES_COMMAND_OK);
}

bp_err_t bp_analytics_progress(bp_pg_t *pg, const bp_analytics_change_t *ch, size_t n)
{
    bp_sbuf_t a[5] = {{0}};
    level_delta_t *lv = NULL;
    season_delta_t *sd = NULL;
    size_t n_lv = 0;
    bp_err_t err = BP_OK;

    if (n == 0)
        return BP_OK;
    lv = malloc(2 * n * sizeof(*lv));
    sd = malloc(n * sizeof(*sd));
    if (!lv || !sd) {
        err = BP_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        count_change(&ch[i], lv, &n_lv, &sd[i]);
    n_lv = merge_levels(lv, n_lv);
    size_t n_sd = merge_seasons(sd, n);

    /* Level counts first, season totals last: the hottest row is held the shortest. */
    if ((err = write_levels(pg, lv, n_lv, a)) != BP_OK || n_sd == 0)
        goto out;
    for (int k = 0; k < 5; k++)
        bp_arr_open(&a[k]);
    for (size_t i = 0; i < n_sd; i++) {
        bp_arr_text(&a[0], sd[i].season_id);
        bp_arr_int(&a[1], sd[i].enrolled);
        bp_arr_int(&a[2], sd[i].at_max);
        bp_arr_int(&a[3], sd[i].unlocked);
        bp_arr_int(&a[4], sd[i].xp);
    }
    if ((err = close_arrays(a, 5)) != BP_OK)
        goto out;
    err = run_arrays(pg, ST_STATS, a, 5, PGRES_COMMAND_OK);
out:
    for (int k = 0; k < 5; k++)
        bp_sb_free(&a[k]);
    free(lv);
    free(sd);
    return err;
}

bp_err_t bp_analytics_premium(bp_pg_t *pg, const bp_season_t *s, const char *player_id,
                              bool created, int32_t level)
{
    bp_sbuf_t a[3] = {{0}};
    level_delta_t lv[2];
    size_t n_lv = 0;
    season_delta_t sd = {s->id, 0, 0, 0, 0};
    char num[4][24];
    bp_err_t err = BP_OK;

    /* A row created now: a new player at @p level, free rewards only (the pass is below). */
    if (created) {
        bp_analytics_change_t c = {
            .season = s, .player_id = player_id, .created = true, .new_level = level};
        count_change(&c, lv, &n_lv, &sd);
    }
    if ((err = write_levels(pg, lv, n_lv, a)) != BP_OK)
        goto out;
    snprintf(num[0], sizeof(num[0]), "%lld", (long long)sd.enrolled);
    snprintf(num[1], sizeof(num[1]), "%lld", (long long)sd.at_max);
    snprintf(num[2], sizeof(num[2]), "%lld", (long long)sd.unlocked);
    snprintf(num[3], sizeof(num[3]), "%zu", bp_rewards_premium_upto(s, level, NULL, 0));
    const char *params[6] = {s->id, num[0], num[1], num[2], num[3], player_id};
    PGresult *res = bp_pg_exec_stmt(pg, &statements[ST_PREMIUM], 6, params, PGRES_COMMAND_OK, &err);
    PQclear(res);
out:
    for (int k = 0; k < 3; k++)
        bp_sb_free(&a[k]);
    return err;
}

/* ---- activity ---- */

bp_err_t bp_analytics_activity(bp_pg_t *pg, const bp_analytics_day_delta_t *days, size_t n_days,
                               const bp_analytics_week_delta_t *weeks, size_t n_weeks)
{
    bp_sbuf_t a[7] = {{0}};
    bp_err_t err = BP_OK;

    if (n_days == 0 && n_weeks == 0)
        return BP_OK;
    for (int k = 0; k < 7; k++)
        bp_arr_open(&a[k]);
    for (size_t i = 0; i < n_days; i++) {
        bp_arr_text(&a[0], days[i].season_id);
        bp_arr_int(&a[1], days[i].day);
        bp_arr_int(&a[2], days[i].active);
        bp_arr_int(&a[3], days[i].xp);
    }
    for (size_t i = 0; i < n_weeks; i++) {
        bp_arr_text(&a[4], weeks[i].season_id);
        bp_arr_int(&a[5], weeks[i].week);
        bp_arr_int(&a[6], weeks[i].active);
    }
    if ((err = close_arrays(a, 7)) == BP_OK)
        err = run_arrays(pg, ST_ACTIVITY, a, 7, PGRES_TUPLES_OK);
    for (int k = 0; k < 7; k++)
        bp_sb_free(&a[k]);
    return err;
}

/* ---- reads ---- */

void bp_season_report_fini(bp_season_report_t *r)
{
    if (!r)
        return;
    free(r->days);
    free(r->weeks);
    free(r->levels);
    memset(r, 0, sizeof(*r));
}

static int64_t cell(const PGresult *res, int row, int col)
{
    return (int64_t)atoll(PQgetvalue(res, row, col));
}

bp_err_t bp_analytics_season(bp_pg_t *pg, const char *season_id, bp_season_report_t *out)
{
    PGresult *res = NULL;
    bp_err_t err;

    memset(out, 0, sizeof(*out));
    if ((err = bp_pg_ensure(pg)) != BP_OK)
        return err;
    const char *params[3] = {season_id, STR(BP_ANALYTICS_DAYS), STR(BP_ANALYTICS_WEEKS)};
    if (!(res = bp_pg_exec_stmt(pg, &statements[ST_REPORT], 3, params, PGRES_TUPLES_OK, &err)))
        goto out;
    int rows = PQntuples(res);
    size_t cap = rows > 0 ? (size_t)rows : 1;
    out->days = calloc(cap, sizeof(*out->days));
    out->weeks = calloc(cap, sizeof(*out->weeks));
    out->levels = calloc(cap, sizeof(*out->levels));
    if (!out->days || !out->weeks || !out->levels) {
        err = BP_ENOMEM;
        goto out;
    }
    for (int r = 0; r < rows; r++) {
        int64_t key = cell(res, r, 1), v = cell(res, r, 2);
        switch (atoi(PQgetvalue(res, r, 0))) {
        case 0:
            out->enrolled = v;
            out->premium = cell(res, r, 3);
            out->at_max = cell(res, r, 4);
            out->unlocked = cell(res, r, 5);
            out->claimed = cell(res, r, 6);
            out->xp = cell(res, r, 7);
            out->player_days = cell(res, r, 8);
            out->day_xp = cell(res, r, 9);
            break;
        case 1:
            out->days[out->n_days++] = (bp_analytics_day_t){key, v, cell(res, r, 3)};
            break;
        case 2:
            out->weeks[out->n_weeks++] = (bp_analytics_week_t){key * 7 - 3, v};
            break;
        default:
            out->levels[out->n_levels++] = (bp_analytics_level_t){(int32_t)key, v};
            break;
        }
    }
out:
    PQclear(res);
    if (err != BP_OK)
        bp_season_report_fini(out);
    return err;
}

void bp_player_stats_fini(bp_player_stats_t *s)
{
    if (!s)
        return;
    free(s->items);
    memset(s, 0, sizeof(*s));
}

bp_err_t bp_analytics_player(bp_pg_t *pg, const char *player_id, bp_player_stats_t *out)
{
    PGresult *res = NULL;
    bp_err_t err;

    memset(out, 0, sizeof(*out));
    if ((err = bp_pg_ensure(pg)) != BP_OK)
        return err;
    const char *params[1] = {player_id};
    if (!(res = bp_pg_exec_stmt(pg, &statements[ST_PLAYER], 1, params, PGRES_TUPLES_OK, &err)))
        goto out;
    size_t n = (size_t)PQntuples(res);
    if (n > 0 && !(out->items = calloc(n, sizeof(*out->items)))) {
        err = BP_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        bp_player_season_t *it = &out->items[i];
        int r = (int)i;
        snprintf(it->season_id, sizeof(it->season_id), "%s", PQgetvalue(res, r, 0));
        it->total_xp = cell(res, r, 1);
        it->level = (int32_t)cell(res, r, 2);
        it->premium = PQgetvalue(res, r, 3)[0] == 't';
        it->claimed = cell(res, r, 4);
    }
    out->n = n;
out:
    PQclear(res);
    if (err != BP_OK)
        bp_player_stats_fini(out);
    return err;
}

void bp_audit_page_fini(bp_audit_page_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i].detail_json);
    free(p->items);
    memset(p, 0, sizeof(*p));
}

/* Copy a column into a fixed buffer; NULL reads as "". */
static void copy_col(char *dst, size_t len, const PGresult *res, int row, int col)
{
    snprintf(dst, len, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

bp_err_t bp_analytics_audit(bp_pg_t *pg, const char *player_id, const char *season_id,
                            int64_t before_id, size_t limit, bp_audit_page_t *out)
{
    PGresult *res = NULL;
    bp_pg_page_t page;
    bp_err_t err;

    memset(out, 0, sizeof(*out));
    if ((err = bp_pg_page_begin(pg, before_id, INT64_MAX, limit, BP_AUDIT_LIMIT_MAX, &page)) !=
        BP_OK)
        return err;
    /* The filters given become $3 (and $4), in this order; the statement fits them. */
    const char *params[4] = {page.before, page.limit, NULL, NULL};
    int n_params = 2;
    if (player_id)
        params[n_params++] = player_id;
    if (season_id)
        params[n_params++] = season_id;
    int st = ST_AUDIT + (player_id ? 1 : 0) + (season_id ? 2 : 0);
    if (!(res = bp_pg_exec_stmt(pg, &statements[st], n_params, params, PGRES_TUPLES_OK, &err)))
        goto out;
    void *rows;
    if ((err = bp_pg_page_rows(&page, (size_t)PQntuples(res), sizeof(*out->items), &rows)) != BP_OK)
        goto out;
    out->items = rows;
    for (size_t i = 0; i < page.take; i++) {
        bp_audit_row_t *it = &out->items[i];
        int r = (int)i;
        out->n++;
        it->id = cell(res, r, 0);
        it->at_ms = cell(res, r, 1);
        copy_col(it->actor, sizeof(it->actor), res, r, 2);
        copy_col(it->action, sizeof(it->action), res, r, 3);
        copy_col(it->player_id, sizeof(it->player_id), res, r, 4);
        copy_col(it->season_id, sizeof(it->season_id), res, r, 5);
        it->level = PQgetisnull(res, r, 6) ? 0 : (int32_t)cell(res, r, 6);
        copy_col(it->tier, sizeof(it->tier), res, r, 7);
        copy_col(it->reward_id, sizeof(it->reward_id), res, r, 8);
        copy_col(it->grant_id, sizeof(it->grant_id), res, r, 9);
        if (!(it->detail_json = strdup(PQgetvalue(res, r, 10)))) {
            err = BP_ENOMEM;
            goto out;
        }
    }
    out->next_cursor = page.more ? out->items[page.take - 1].id : 0;
out:
    PQclear(res);
    if (err != BP_OK)
        bp_audit_page_fini(out);
    return err;
}
