/** @file Level purchases and XP history in PostgreSQL (statements run with PQexecParams:
 *  nothing to re-prepare after a reconnect). */
#include "store/progress.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "app/log.h"
#include "core/fold.h"
#include "core/level.h"
#include "core/reward.h"
#include "store/analytics.h"
#include "store/pg_conn.h"
#include "store/payloads.h"
#include "store/pgtext.h"

/* ---- statements ---- */

static const char sql_progress_ensure[] =
    "INSERT INTO player_progress (player_id, season_id) VALUES ($1, $2)"
    " ON CONFLICT (player_id, season_id) DO NOTHING RETURNING 1";

static const char sql_progress_lock[] = "SELECT total_xp, premium FROM player_progress"
                                        " WHERE player_id = $1 AND season_id = $2 FOR UPDATE";

static const char sql_purchase_insert[] =
    "INSERT INTO level_purchases (transaction_id, player_id, season_id, levels, paid_xp)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (transaction_id) DO NOTHING RETURNING 1";

static const char sql_purchase_existing[] =
    "SELECT player_id, season_id, levels FROM level_purchases WHERE transaction_id = $1";

static const char sql_progress_pay[] =
    "UPDATE player_progress SET paid_xp = paid_xp + $3, total_xp = total_xp + $3, level = $4,"
    "   updated_at = now()"
    " WHERE player_id = $1 AND season_id = $2"
    " RETURNING total_xp, level, premium, (extract(epoch FROM updated_at) * 1000)::bigint,"
    "   earned_xp, paid_xp";

static const char sql_outbox_levelups[] =
    "INSERT INTO outbox (topic, key, payload)"
    " SELECT $1, $2, p::jsonb FROM unnest($3::text[]) WITH ORDINALITY AS u(p, i) ORDER BY i";

/* Newest first by processing order; one row more than asked tells whether a page follows.
 * applied_amount is NULL until the worker records boosts and caps: it is the amount then. */
static const char sql_history[] =
    "SELECT seq, event_id, season_id, amount, COALESCE(applied_amount, amount), boost_pct,"
    "   reason, floor(extract(epoch FROM occurred_at) * 1000)::bigint,"
    "   floor(extract(epoch FROM processed_at) * 1000)::bigint"
    " FROM processed_events"
    " WHERE player_id = $1 AND season_id IS NOT NULL"
    "   AND ($2::text IS NULL OR season_id = $2) AND ($3::bigint IS NULL OR seq < $3)"
    " ORDER BY seq DESC LIMIT $4";

/* Prepared (bp_pg_exec_stmt): GET /progress runs it thousands of times a second. The row
 * number of each pair in the arrays tells which request a row answers. */
static const bp_pg_stmt_t st_progress_many = {
    "progress_get_many",
    "SELECT u.i, p.total_xp, p.level, p.premium,"
    "   (extract(epoch FROM p.updated_at) * 1000)::bigint, p.earned_xp, p.paid_xp"
    " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(player_id, season_id, i)"
    " JOIN player_progress p ON p.player_id = u.player_id AND p.season_id = u.season_id"};

/* ---- helpers ---- */

/* ---- level purchases ---- */

/* The LevelUp payload, as store/pg.c writes it for XP (Avro field names; ids are restricted
 * to JSON-safe characters by bp_id_valid, so they need no escaping). */
/* One outbox row per level in (old_level, new_level]. @return BP_OK or the failure. */
static bp_err_t write_levelups(bp_pg_t *pg, const bp_level_purchase_t *p, int32_t old_level,
                               int32_t new_level, int64_t total_xp)
{
    bp_sbuf_t arr = {0}, js = {0};
    bp_err_t err = BP_OK;
    if (new_level <= old_level)
        return BP_OK;
    bp_arr_open(&arr);
    for (int32_t lv = old_level + 1; lv <= new_level; lv++) {
        bp_levelup_payload(&js, p->season->id, p->player_id, lv, total_xp, p->transaction_id,
                           p->now_ms);
        bp_arr_text(&arr, js.s);
    }
    bp_arr_close(&arr);
    if (arr.oom || js.oom) {
        err = BP_ENOMEM;
        goto out;
    }
    const char *params[3] = {p->levelup_topic, p->player_id, arr.s};
    PGresult *res = bp_pg_exec_params(pg, "levelup outbox", sql_outbox_levelups, 3, params,
                                      PGRES_COMMAND_OK, &err);
    PQclear(res);
out:
    bp_sb_free(&arr);
    bp_sb_free(&js);
    return err;
}

/* autoClaim: grant what going from @p old_level to @p new_level unlocked. */
static bp_err_t auto_grants(bp_pg_t *pg, const bp_level_purchase_t *p, int32_t old_level,
                            int32_t new_level, bool premium, bp_grants_t *out)
{
    const bp_season_t *s = p->season;
    size_t *idx = NULL;
    bp_grant_req_t *reqs = NULL;
    bp_err_t err = BP_OK;
    size_t n = bp_rewards_unlocked(s, old_level, new_level, premium, NULL, 0);
    if (n == 0)
        return BP_OK;
    idx = malloc(n * sizeof(*idx));
    reqs = calloc(n, sizeof(*reqs));
    if (!idx || !reqs) {
        err = BP_ENOMEM;
        goto out;
    }
    n = bp_rewards_unlocked(s, old_level, new_level, premium, idx, n);
    for (size_t i = 0; i < n; i++)
        reqs[i] = (bp_grant_req_t){p->player_id, s, idx[i]};
    err = bp_pg_grants_insert(pg, reqs, n, "auto", p->actor, p->rewards_topic, out);
out:
    free(idx);
    free(reqs);
    return err;
}

/* The transactionId was recorded before: same purchase (replay) or another one. */
static bp_err_t classify_existing(bp_pg_t *pg, const bp_level_purchase_t *p,
                                  bp_purchase_result_t *result)
{
    bp_err_t err = BP_OK;
    const char *tx[1] = {p->transaction_id};
    PGresult *res = bp_pg_exec_params(pg, "purchase existing", sql_purchase_existing, 1, tx,
                                      PGRES_TUPLES_OK, &err);
    if (!res)
        return err;
    if (PQntuples(res) != 1)
        err = BP_ERETRY; /* gone in between (deleted by hand?): try again */
    else if (strcmp(PQgetvalue(res, 0, 0), p->player_id) == 0 &&
             strcmp(PQgetvalue(res, 0, 1), p->season->id) == 0 &&
             atoll(PQgetvalue(res, 0, 2)) == (long long)p->count)
        *result = BP_PURCHASE_DUPLICATE;
    else
        *result = BP_PURCHASE_CONFLICT;
    PQclear(res);
    return err;
}

bp_err_t bp_pg_levels_buy(bp_pg_t *pg, const bp_level_purchase_t *p, bp_purchase_result_t *result,
                          bp_progress_row_t *row, bp_grants_t *out)
{
    const bp_season_t *s = p->season;
    PGresult *res = NULL;
    size_t out_n0 = out ? out->n : 0;
    bool in_tx = false;
    char count[16], paid_s[24], level_s[16];
    int64_t paid = 0;
    bp_err_t err;

    *result = BP_PURCHASE_CONFLICT;
    if (p->count < 1)
        return BP_EINVAL;
    if ((err = bp_pg_ensure(pg)) != BP_OK)
        return err;
    if ((err = bp_pg_exec_cmd(pg, "BEGIN")) != BP_OK)
        return err;
    in_tx = true;

    /* Lock the row first: concurrent purchases, claims and batches of this player queue up
     * behind us, so the paid XP is computed from the total that is updated. */
    const char *key[2] = {p->player_id, s->id};
    if (!(res = bp_pg_exec_params(pg, "progress ensure", sql_progress_ensure, 2, key,
                                  PGRES_TUPLES_OK, &err)))
        goto out;
    bool inserted = PQntuples(res) > 0;
    PQclear(res);
    if (!(res = bp_pg_exec_params(pg, "progress lock", sql_progress_lock, 2, key, PGRES_TUPLES_OK,
                                  &err)))
        goto out;
    if (PQntuples(res) != 1) {
        err = BP_ERETRY;
        goto out;
    }
    int64_t old_total = (int64_t)atoll(PQgetvalue(res, 0, 0));
    bool premium = PQgetvalue(res, 0, 1)[0] == 't';
    PQclear(res);
    res = NULL;
    bool at_max = bp_level_purchase_xp(s, old_total, p->count, &paid) != BP_OK;
    if (at_max)
        paid = 0;

    /* Record the purchase; a replay is told apart before the max-level check, so that
     * retrying a purchase that reached the max level answers like the first time. */
    snprintf(count, sizeof(count), "%d", (int)p->count);
    snprintf(paid_s, sizeof(paid_s), "%lld", (long long)paid);
    const char *ins[5] = {p->transaction_id, p->player_id, s->id, count, paid_s};
    if (!(res = bp_pg_exec_params(pg, "purchase insert", sql_purchase_insert, 5, ins,
                                  PGRES_TUPLES_OK, &err)))
        goto out;
    bool recorded = PQntuples(res) > 0;
    PQclear(res);
    res = NULL;
    if (!recorded) {
        err = classify_existing(pg, p, result);
        goto out; /* rolled back: nothing changes */
    }
    if (at_max) {
        *result = BP_PURCHASE_MAX_LEVEL;
        goto out;
    }

    int64_t new_total = old_total + paid;
    int32_t old_level = bp_level_for_xp(s, old_total).level;
    int32_t new_level = bp_level_for_xp(s, new_total).level;
    snprintf(level_s, sizeof(level_s), "%d", (int)new_level);
    const char *pay[4] = {p->player_id, s->id, paid_s, level_s};
    if (!(res = bp_pg_exec_params(pg, "progress pay", sql_progress_pay, 4, pay, PGRES_TUPLES_OK,
                                  &err)))
        goto out;
    if (PQntuples(res) != 1) {
        err = BP_ERETRY;
        goto out;
    }
    memset(row, 0, sizeof(*row));
    row->total_xp = (int64_t)atoll(PQgetvalue(res, 0, 0));
    row->level = (int32_t)atoi(PQgetvalue(res, 0, 1));
    row->premium = PQgetvalue(res, 0, 2)[0] == 't';
    row->updated_at_ms = (int64_t)atoll(PQgetvalue(res, 0, 3));
    row->earned_xp = (int64_t)atoll(PQgetvalue(res, 0, 4));
    row->paid_xp = (int64_t)atoll(PQgetvalue(res, 0, 5));
    PQclear(res);
    res = NULL;

    if ((err = write_levelups(pg, p, old_level, new_level, new_total)) != BP_OK)
        goto out;
    /* Paid XP moves levels but is not earned XP: the analytics count no XP for it. */
    bp_analytics_change_t an = {.season = s,
                                .player_id = p->player_id,
                                .created = inserted,
                                .old_level = old_level,
                                .new_level = new_level,
                                .premium = premium};
    if ((err = bp_analytics_progress(pg, &an, 1)) != BP_OK)
        goto out;
    /* As the worker does: a row created now has reached level 1 now, so its rewards count. */
    if (s->auto_claim &&
        (err = auto_grants(pg, p, inserted ? 0 : old_level, new_level, premium, out)) != BP_OK)
        goto out;
    err = bp_pg_exec_cmd(pg, "COMMIT");
    in_tx = false; /* a failed COMMIT has rolled back */
    if (err == BP_OK)
        *result = BP_PURCHASE_DONE;
out:
    PQclear(res);
    if (in_tx)
        bp_pg_rollback(pg);
    if (err != BP_OK && out)
        out->n = out_n0;
    if (err == BP_OK && *result == BP_PURCHASE_DUPLICATE)
        err = bp_pg_progress_get(pg, p->player_id, s->id, row);
    return err;
}

/* ---- batched reads ---- */

bp_err_t bp_pg_progress_get_many(bp_pg_t *pg, const char *const *players,
                                 const char *const *seasons, size_t n, bp_progress_row_t *rows)
{
    bp_sbuf_t pa = {0}, sa = {0};
    PGresult *res = NULL;
    bp_err_t err = BP_OK;

    for (size_t i = 0; i < n; i++) {
        memset(&rows[i], 0, sizeof(rows[i]));
        rows[i].level = 1;
    }
    if (n == 0)
        return BP_OK;
    if ((err = bp_pg_ensure(pg)) != BP_OK)
        return err;
    bp_arr_open(&pa);
    bp_arr_open(&sa);
    for (size_t i = 0; i < n; i++) {
        bp_arr_text(&pa, players[i]);
        bp_arr_text(&sa, seasons[i]);
    }
    bp_arr_close(&pa);
    bp_arr_close(&sa);
    if (pa.oom || sa.oom) {
        err = BP_ENOMEM;
        goto out;
    }
    const char *params[2] = {pa.s, sa.s};
    if (!(res = bp_pg_exec_stmt(pg, &st_progress_many, 2, params, PGRES_TUPLES_OK, &err)))
        goto out;
    for (int r = 0; r < PQntuples(res); r++) {
        long long i = atoll(PQgetvalue(res, r, 0)); /* 1-based */
        if (i < 1 || (size_t)i > n)
            continue;
        bp_progress_row_t *row = &rows[i - 1];
        row->total_xp = (int64_t)atoll(PQgetvalue(res, r, 1));
        row->level = (int32_t)atoi(PQgetvalue(res, r, 2));
        row->premium = PQgetvalue(res, r, 3)[0] == 't';
        row->updated_at_ms = (int64_t)atoll(PQgetvalue(res, r, 4));
        row->earned_xp = (int64_t)atoll(PQgetvalue(res, r, 5));
        row->paid_xp = (int64_t)atoll(PQgetvalue(res, r, 6));
    }
out:
    PQclear(res);
    bp_sb_free(&pa);
    bp_sb_free(&sa);
    return err;
}

/* ---- history ---- */

void bp_history_fini(bp_history_t *h)
{
    if (!h)
        return;
    free(h->items);
    memset(h, 0, sizeof(*h));
}

bp_err_t bp_pg_history(bp_pg_t *pg, const char *player_id, const char *season_id,
                       int64_t before_seq, size_t limit, bp_history_t *out)
{
    PGresult *res = NULL;
    bp_pg_page_t page;
    bp_err_t err;

    memset(out, 0, sizeof(*out));
    if ((err = bp_pg_page_begin(pg, before_seq, 0, limit, BP_HISTORY_LIMIT_MAX, &page)) != BP_OK)
        return err;
    /* No cursor: $3 is NULL (the statement then starts at the newest). */
    const char *params[4] = {player_id, season_id, before_seq > 0 ? page.before : NULL, page.limit};
    if (!(res = bp_pg_exec_params(pg, "history", sql_history, 4, params, PGRES_TUPLES_OK, &err)))
        goto out;
    void *rows;
    if ((err = bp_pg_page_rows(&page, (size_t)PQntuples(res), sizeof(*out->items), &rows)) != BP_OK)
        goto out;
    out->items = rows;
    out->n = page.take;
    for (size_t i = 0; i < page.take; i++) {
        bp_history_item_t *it = &out->items[i];
        int r = (int)i;
        it->seq = (int64_t)atoll(PQgetvalue(res, r, 0));
        snprintf(it->event_id, sizeof(it->event_id), "%s", PQgetvalue(res, r, 1));
        snprintf(it->season_id, sizeof(it->season_id), "%s", PQgetvalue(res, r, 2));
        it->amount = (int32_t)atoi(PQgetvalue(res, r, 3));
        it->applied_amount = (int32_t)atoi(PQgetvalue(res, r, 4));
        it->boost_pct = (int32_t)atoi(PQgetvalue(res, r, 5));
        snprintf(it->reason, sizeof(it->reason), "%s", PQgetvalue(res, r, 6));
        it->occurred_at_ms = (int64_t)atoll(PQgetvalue(res, r, 7));
        it->processed_at_ms = (int64_t)atoll(PQgetvalue(res, r, 8));
    }
    out->next_seq = page.more ? out->items[page.take - 1].seq : 0;
out:
    PQclear(res);
    if (err != BP_OK)
        bp_history_fini(out);
    return err;
}
