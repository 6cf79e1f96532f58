/** @file Rewards in PostgreSQL: claims, claim-all, premium passes, reward states, and the one
 *  grant statement (claim rows + audit rows + RewardGrant outbox rows) they all share. */
#include "store/rewards.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "app/log.h"
#include "core/level.h"
#include "store/analytics.h"
#include "store/pg_conn.h"
#include "store/pgtext.h"

/* ---- statements (PQexecParams: nothing to re-prepare after a reconnect) ---- */

/* The grant statement. Rows the claims' primary key (or grant_id) already holds are skipped
 * by ON CONFLICT DO NOTHING, so only the rows inserted now get an audit row, an outbox row
 * and a count in season_stats.claimed (store/analytics.h; seasons in order, after the claim
 * rows). grantedAt is the claim time in epoch milliseconds, the same value returned. */
static const char sql_grants[] =
    "WITH req AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[],"
    "   $5::text[], $6::text[], $7::int[], $8::text[])"
    "   AS t(player_id, season_id, level, tier, reward_id, item_id, quantity, grant_id)),"
    " ins AS (INSERT INTO reward_claims"
    "   (player_id, season_id, level, tier, reward_id, item_id, quantity, grant_id, source)"
    "   SELECT player_id, season_id, level, tier, reward_id, item_id, quantity, grant_id,"
    "     $9::text FROM req"
    "   ON CONFLICT DO NOTHING"
    "   RETURNING player_id, season_id, level, tier, reward_id, item_id, quantity, grant_id,"
    "     floor(extract(epoch FROM claimed_at) * 1000)::bigint AS granted_ms),"
    " aud AS (INSERT INTO audit_log"
    "   (actor, action, player_id, season_id, level, tier, reward_id, grant_id, detail)"
    "   SELECT $10::text, $11::text, player_id, season_id, level, tier, reward_id, grant_id,"
    "     jsonb_build_object('itemId', item_id, 'quantity', quantity, 'source', $9::text)"
    "   FROM ins ORDER BY player_id, level, tier, reward_id),"
    " box AS (INSERT INTO outbox (topic, key, payload)"
    "   SELECT $12::text, player_id, jsonb_build_object('grantId', grant_id,"
    "     'playerId', player_id, 'seasonId', season_id, 'level', level, 'tier', tier,"
    "     'rewardId', reward_id, 'itemId', item_id, 'quantity', quantity,"
    "     'grantedAt', granted_ms, 'source', $9::text)"
    "   FROM ins ORDER BY player_id, level, tier, reward_id),"
    " cnt AS (INSERT INTO season_stats AS s (season_id, claimed)"
    "   SELECT season_id, count(*) FROM ins GROUP BY season_id ORDER BY season_id"
    "   ON CONFLICT (season_id) DO UPDATE SET claimed = s.claimed + EXCLUDED.claimed)"
    " SELECT grant_id, player_id, level, tier, reward_id, item_id, quantity, granted_ms"
    " FROM ins ORDER BY player_id, level, tier, reward_id";

static const char sql_progress_ensure[] =
    "INSERT INTO player_progress (player_id, season_id) VALUES ($1, $2)"
    " ON CONFLICT (player_id, season_id) DO NOTHING RETURNING 1";

static const char sql_progress_lock[] = "SELECT total_xp, premium FROM player_progress"
                                        " WHERE player_id = $1 AND season_id = $2 FOR UPDATE";

static const char sql_progress_read[] =
    "SELECT total_xp, premium FROM player_progress WHERE player_id = $1 AND season_id = $2";

static const char sql_claimed_at[] =
    "SELECT reward_id FROM reward_claims"
    " WHERE player_id = $1 AND season_id = $2 AND level = $3 AND tier = $4";

static const char sql_claimed_all[] = "SELECT level, tier, reward_id FROM reward_claims"
                                      " WHERE player_id = $1 AND season_id = $2";

static const char sql_premium_insert[] =
    "INSERT INTO premium_grants (transaction_id, player_id, season_id, source, granted_at)"
    " VALUES ($1, $2, $3, $4, timestamptz 'epoch' + $5::bigint * interval '1 millisecond')"
    " ON CONFLICT (transaction_id) DO NOTHING RETURNING 1";

static const char sql_premium_existing[] =
    "SELECT player_id, season_id FROM premium_grants WHERE transaction_id = $1";

static const char sql_premium_progress[] =
    "INSERT INTO player_progress AS p (player_id, season_id, premium) VALUES ($1, $2, true)"
    " ON CONFLICT (player_id, season_id) DO UPDATE SET premium = true, updated_at = now()"
    " RETURNING p.total_xp, (p.xmax = 0)";

static const char sql_premium_audit[] =
    "INSERT INTO audit_log (actor, action, player_id, season_id, detail)"
    " VALUES ($1, 'premium-grant', $2, $3,"
    "   jsonb_build_object('transactionId', $4::text, 'source', $5::text))";

/* ---- helpers ---- */

void bp_grants_fini(bp_grants_t *g)
{
    if (!g)
        return;
    free(g->items);
    g->items = NULL;
    g->n = 0;
}

void bp_player_rewards_fini(bp_player_rewards_t *p)
{
    if (!p)
        return;
    free(p->claimed);
    memset(p, 0, sizeof(*p));
}

/* @return the audit action of a grant source, or NULL for an unknown source. */
static const char *source_action(const char *source)
{
    static const char *const map[][2] = {{"claim", "claim"},
                                         {"auto", "auto-grant"},
                                         {"premium", "premium-grant"},
                                         {"season-end", "season-end-grant"}};
    for (size_t i = 0; source && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(source, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

/* @return the index in s->rewards of (level, tier, reward_id), or -1 (not in the
 * definition, e.g. an overflow reward). */
static long reward_index(const bp_season_t *s, int32_t level, bp_tier_t tier, const char *reward_id)
{
    for (size_t i = 0; i < s->n_rewards; i++) {
        const bp_reward_t *r = &s->rewards[i];
        if (r->level == level && r->tier == tier && strcmp(r->reward_id, reward_id) == 0)
            return (long)i;
    }
    return -1;
}

/* Mark in @p claimed (indexed like s->rewards) every reward of the player's claim rows in
 * @p res (columns level, tier, reward_id). */
static void mark_claimed(const bp_season_t *s, PGresult *res, bool *claimed)
{
    for (int row = 0; row < PQntuples(res); row++) {
        bp_tier_t tier =
            strcmp(PQgetvalue(res, row, 1), "premium") == 0 ? BP_TIER_PREMIUM : BP_TIER_FREE;
        long i =
            reward_index(s, (int32_t)atoi(PQgetvalue(res, row, 0)), tier, PQgetvalue(res, row, 2));
        if (i >= 0)
            claimed[i] = true;
    }
}

/* Copy at most len-1 bytes of @p src into @p dst, always terminated. */
static void copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src);
}

/* ---- the grant statement ---- */

bp_err_t bp_pg_grants_insert(bp_pg_t *pg, const bp_grant_req_t *reqs, size_t n, const char *source,
                             const char *actor, const char *topic, bp_grants_t *out)
{
    if (n == 0)
        return BP_OK;
    bp_grant_row_t *rows = malloc(n * sizeof(*rows));
    if (!rows)
        return BP_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const bp_season_t *s = reqs[i].season;
        if (!s || reqs[i].reward_idx >= s->n_rewards) {
            BP_LOG_ERROR("grant refused: bad request row", "\"row\":%zu", i);
            free(rows);
            return BP_EFATAL; /* a caller's bug: nothing sent */
        }
        const bp_reward_t *r = &s->rewards[reqs[i].reward_idx];
        rows[i] = (bp_grant_row_t){reqs[i].player_id, s, r, r->level};
    }
    bp_err_t err = bp_pg_grant_rows_insert(pg, rows, n, source, actor, topic, out);
    free(rows);
    return err;
}

bp_err_t bp_pg_grant_rows_insert(bp_pg_t *pg, const bp_grant_row_t *reqs, size_t n,
                                 const char *source, const char *actor, const char *topic,
                                 bp_grants_t *out)
{
    enum { N_ARR = 8 };
    bp_sbuf_t a[N_ARR] = {{0}};
    char gid[sizeof(((bp_grant_t *)0)->grant_id)];
    PGresult *res = NULL;
    bp_err_t err = BP_OK;

    if (n == 0)
        return BP_OK;
    const char *action = source_action(source);
    if (!action || !actor || !topic) {
        char esc[64];
        BP_LOG_ERROR("grant refused: unknown source or no actor/topic", "\"source\":\"%s\"",
                     bp_log_str(esc, sizeof(esc), source ? source : "(null)"));
        return BP_EFATAL; /* a caller's bug: nothing sent */
    }
    /* No reconnect here: inside a caller's transaction a fresh connection would run the
     * statement on its own and the caller's COMMIT would commit nothing. A broken
     * connection fails the statement (BP_ERETRY) and the caller starts over. */
    if (PQstatus(bp_pg_conn(pg)) != CONNECTION_OK) {
        bp_pg_log_error("grants", bp_pg_conn(pg), NULL);
        return BP_ERETRY;
    }

    for (int k = 0; k < N_ARR; k++)
        bp_arr_open(&a[k]);
    for (size_t i = 0; i < n; i++) {
        const bp_season_t *s = reqs[i].season;
        const bp_reward_t *r = reqs[i].reward;
        if (!s || !r || !reqs[i].player_id || reqs[i].level < 1) {
            BP_LOG_ERROR("grant refused: bad request row", "\"row\":%zu", i);
            err = BP_EFATAL; /* a caller's bug: nothing sent */
            goto out;
        }
        if (bp_grant_id(gid, sizeof(gid), s->id, reqs[i].player_id, reqs[i].level, r->tier,
                        r->reward_id) != BP_OK) {
            BP_LOG_ERROR("grant refused: grant id does not fit", "\"row\":%zu", i);
            err = BP_EFATAL;
            goto out;
        }
        bp_arr_text(&a[0], reqs[i].player_id);
        bp_arr_text(&a[1], s->id);
        bp_arr_int(&a[2], reqs[i].level);
        bp_arr_text(&a[3], bp_tier_str(r->tier));
        bp_arr_text(&a[4], r->reward_id);
        bp_arr_text(&a[5], r->item_id);
        bp_arr_int(&a[6], r->quantity);
        bp_arr_text(&a[7], gid);
    }
    for (int k = 0; k < N_ARR; k++) {
        bp_arr_close(&a[k]);
        if (a[k].oom) {
            err = BP_ENOMEM;
            goto out;
        }
    }

    const char *params[12] = {a[0].s, a[1].s, a[2].s, a[3].s, a[4].s, a[5].s,
                              a[6].s, a[7].s, source, actor,  action, topic};
    res = bp_pg_exec_params(pg, "grants insert", sql_grants, 12, params, PGRES_TUPLES_OK, &err);
    if (!res || !out)
        goto out;
    size_t rows = (size_t)PQntuples(res);
    if (rows == 0)
        goto out;
    bp_grant_t *items = realloc(out->items, (out->n + rows) * sizeof(*items));
    if (!items) {
        err = BP_ENOMEM; /* the rows are written: the caller must roll back */
        goto out;
    }
    out->items = items;
    for (size_t i = 0; i < rows; i++) {
        int row = (int)i;
        bp_grant_t *g = &out->items[out->n++];
        memset(g, 0, sizeof(*g));
        copy_str(g->grant_id, sizeof(g->grant_id), PQgetvalue(res, row, 0));
        copy_str(g->player_id, sizeof(g->player_id), PQgetvalue(res, row, 1));
        g->level = (int32_t)atoi(PQgetvalue(res, row, 2));
        g->tier = strcmp(PQgetvalue(res, row, 3), "premium") == 0 ? BP_TIER_PREMIUM : BP_TIER_FREE;
        copy_str(g->reward_id, sizeof(g->reward_id), PQgetvalue(res, row, 4));
        copy_str(g->item_id, sizeof(g->item_id), PQgetvalue(res, row, 5));
        g->quantity = (int32_t)atoi(PQgetvalue(res, row, 6));
        g->granted_at_ms = (int64_t)atoll(PQgetvalue(res, row, 7));
    }
out:
    PQclear(res);
    for (int k = 0; k < N_ARR; k++)
        bp_sb_free(&a[k]);
    return err;
}

/* ---- the claim transaction ---- */

/* Inside an open transaction: create the player's progress row at level 1 when absent
 * (counted by the analytics) and lock it, so that claims of one player serialise. On error
 * *err is set (logged). */
static bool lock_progress(bp_pg_t *pg, const bp_season_t *s, const char *player_id, int32_t *level,
                          bool *premium, bp_err_t *err)
{
    const char *params[2] = {player_id, s->id};
    PGresult *res = bp_pg_exec_params(pg, "progress ensure", sql_progress_ensure, 2, params,
                                      PGRES_TUPLES_OK, err);
    if (!res)
        return false;
    bool created = PQntuples(res) > 0;
    PQclear(res);
    if (!(res = bp_pg_exec_params(pg, "progress lock", sql_progress_lock, 2, params,
                                  PGRES_TUPLES_OK, err)))
        return false;
    if (PQntuples(res) != 1) { /* cannot happen after the insert: a broken invariant */
        BP_LOG_ERROR("claim: progress row missing after upsert", "\"rows\":%d", PQntuples(res));
        PQclear(res);
        *err = BP_EFATAL;
        return false;
    }
    /* The level follows from the XP; the stored level is only a cache of it. */
    *level = bp_level_for_xp(s, (int64_t)atoll(PQgetvalue(res, 0, 0))).level;
    *premium = PQgetvalue(res, 0, 1)[0] == 't';
    PQclear(res);
    bp_analytics_change_t c = {
        .season = s, .player_id = player_id, .created = true, .new_level = *level};
    return !created || (*err = bp_analytics_progress(pg, &c, 1)) == BP_OK;
}

bp_err_t bp_pg_claim(bp_pg_t *pg, const bp_season_t *s, const char *player_id, int32_t level,
                     bp_tier_t tier, const char *actor, const char *topic, int64_t now_ms,
                     bp_claim_verdict_t *verdict, bp_grants_t *out)
{
    size_t *idx = NULL;
    bp_grant_req_t *reqs = NULL;
    PGresult *res = NULL;
    size_t out_n0 = out ? out->n : 0;
    bool in_tx = false;
    bp_grants_t local = {0};
    bp_grants_t *dst = out ? out : &local; /* to tell whether something was granted */
    char lvl[16];
    bp_err_t err;

    *verdict = BP_CLAIM_NO_SUCH_REWARD;
    /* No such reward is the first rule of bp_claim_decide: no transaction needed for it. */
    size_t n_idx = bp_rewards_at(s, level, tier, NULL, 0);
    if (n_idx == 0)
        return BP_OK;
    idx = malloc(n_idx * sizeof(*idx));
    reqs = calloc(n_idx, sizeof(*reqs));
    bool *claimed = calloc(n_idx, sizeof(*claimed));
    if (!idx || !reqs || !claimed) {
        err = BP_ENOMEM;
        goto out;
    }
    bp_rewards_at(s, level, tier, idx, n_idx);
    if ((err = bp_pg_ensure(pg)) != BP_OK)
        goto out;
    if ((err = bp_pg_exec_cmd(pg, "BEGIN")) != BP_OK)
        goto out;
    in_tx = true;

    int32_t player_level;
    bool premium;
    if (!lock_progress(pg, s, player_id, &player_level, &premium, &err))
        goto out;

    /* Read after the lock: a claim that held it before us has committed, and this
     * statement's snapshot sees its rows. */
    snprintf(lvl, sizeof(lvl), "%d", (int)level);
    const char *params[4] = {player_id, s->id, lvl, bp_tier_str(tier)};
    if (!(res = bp_pg_exec_params(pg, "claimed rewards", sql_claimed_at, 4, params, PGRES_TUPLES_OK,
                                  &err)))
        goto out;
    size_t n_claimed = 0;
    for (size_t i = 0; i < n_idx; i++) {
        for (int row = 0; row < PQntuples(res) && !claimed[i]; row++)
            claimed[i] = strcmp(s->rewards[idx[i]].reward_id, PQgetvalue(res, row, 0)) == 0;
        n_claimed += claimed[i];
    }
    PQclear(res);
    res = NULL;

    *verdict = bp_claim_decide(s, level, tier, player_level, premium, n_claimed == n_idx, now_ms);
    if (*verdict != BP_CLAIM_OK)
        goto out; /* rolled back: nothing written */

    size_t n_req = 0;
    for (size_t i = 0; i < n_idx; i++)
        if (!claimed[i])
            reqs[n_req++] = (bp_grant_req_t){player_id, s, idx[i]};
    size_t before = dst->n;
    if ((err = bp_pg_grants_insert(pg, reqs, n_req, "claim", actor, topic, dst)) != BP_OK)
        goto out;
    if (dst->n == before) { /* the primary key refused them: someone else was first */
        *verdict = BP_CLAIM_ALREADY_CLAIMED;
        goto out;
    }
    err = bp_pg_exec_cmd(pg, "COMMIT");
    in_tx = false; /* a failed COMMIT has rolled back */
out:
    PQclear(res);
    if (in_tx)
        bp_pg_rollback(pg);
    if (err != BP_OK) {
        *verdict = BP_CLAIM_NO_SUCH_REWARD; /* meaningless on error; never BP_CLAIM_OK */
        if (out)
            out->n = out_n0;
    }
    bp_grants_fini(&local);
    free(claimed);
    free(reqs);
    free(idx);
    return err;
}

bp_err_t bp_pg_claim_all(bp_pg_t *pg, const bp_season_t *s, const char *player_id,
                         const char *actor, const char *topic, int64_t now_ms,
                         bp_claim_verdict_t *verdict, bp_grants_t *out)
{
    size_t n = s->n_rewards;
    size_t *idx = malloc((n ? n : 1) * sizeof(*idx));
    bool *claimed = calloc(n ? n : 1, sizeof(*claimed));
    bp_grant_req_t *reqs = calloc(n ? n : 1, sizeof(*reqs));
    PGresult *res = NULL;
    size_t out_n0 = out ? out->n : 0;
    bool in_tx = false;
    bp_err_t err = BP_OK;

    *verdict = BP_CLAIM_NOT_OPEN;
    if (!idx || !claimed || !reqs) {
        err = BP_ENOMEM;
        goto out;
    }
    if (!bp_claims_open(s, now_ms))
        goto out; /* nothing to do in the database */
    if ((err = bp_pg_ensure(pg)) != BP_OK)
        goto out;
    if ((err = bp_pg_exec_cmd(pg, "BEGIN")) != BP_OK)
        goto out;
    in_tx = true;

    int32_t player_level;
    bool premium;
    if (!lock_progress(pg, s, player_id, &player_level, &premium, &err))
        goto out;
    const char *params[2] = {player_id, s->id};
    if (!(res = bp_pg_exec_params(pg, "claimed rewards", sql_claimed_all, 2, params,
                                  PGRES_TUPLES_OK, &err)))
        goto out;
    mark_claimed(s, res, claimed);
    PQclear(res);
    res = NULL;

    /* Available: levels 1..player_level, premium tier only with premium, not claimed. */
    size_t n_idx = bp_rewards_unlocked(s, 0, player_level, premium, idx, n);
    size_t n_req = 0;
    for (size_t i = 0; i < n_idx && i < n; i++)
        if (!claimed[idx[i]])
            reqs[n_req++] = (bp_grant_req_t){player_id, s, idx[i]};
    *verdict = BP_CLAIM_OK;
    if (n_req == 0)
        goto out; /* nothing to grant: roll back the progress row we may have created */
    if ((err = bp_pg_grants_insert(pg, reqs, n_req, "claim", actor, topic, out)) != BP_OK)
        goto out;
    err = bp_pg_exec_cmd(pg, "COMMIT");
    in_tx = false; /* a failed COMMIT has rolled back */
out:
    PQclear(res);
    if (in_tx)
        bp_pg_rollback(pg);
    if (err != BP_OK) {
        *verdict = BP_CLAIM_NOT_OPEN; /* meaningless on error; never BP_CLAIM_OK */
        if (out)
            out->n = out_n0;
    }
    free(reqs);
    free(claimed);
    free(idx);
    return err;
}

/* ---- premium ---- */

bp_err_t bp_pg_premium_grant(bp_pg_t *pg, const bp_season_t *s, const char *player_id,
                             const char *transaction_id, const char *source, int64_t granted_at_ms,
                             const char *actor, const char *topic, bp_premium_result_t *result,
                             bp_grants_t *out)
{
    size_t n = s->n_rewards;
    size_t *idx = NULL;
    bp_grant_req_t *reqs = NULL;
    PGresult *res = NULL;
    size_t out_n0 = out ? out->n : 0;
    bool in_tx = false;
    char at[24];
    bp_err_t err;

    *result = BP_PREMIUM_CONFLICT;
    if ((err = bp_pg_ensure(pg)) != BP_OK)
        return err;
    if ((err = bp_pg_exec_cmd(pg, "BEGIN")) != BP_OK)
        return err;
    in_tx = true;

    snprintf(at, sizeof(at), "%lld", (long long)granted_at_ms);
    const char *ins[5] = {transaction_id, player_id, s->id, source, at};
    if (!(res = bp_pg_exec_params(pg, "premium insert", sql_premium_insert, 5, ins, PGRES_TUPLES_OK,
                                  &err)))
        goto out;
    bool inserted = PQntuples(res) > 0;
    PQclear(res);
    res = NULL;
    if (!inserted) {
        /* Recorded before (by a committed transaction: ON CONFLICT waited for it). */
        const char *tx[1] = {transaction_id};
        if (!(res = bp_pg_exec_params(pg, "premium existing", sql_premium_existing, 1, tx,
                                      PGRES_TUPLES_OK, &err)))
            goto out;
        if (PQntuples(res) != 1)
            err = BP_ERETRY; /* gone in between (deleted by hand?): try again */
        else if (strcmp(PQgetvalue(res, 0, 0), player_id) == 0 &&
                 strcmp(PQgetvalue(res, 0, 1), s->id) == 0)
            *result = BP_PREMIUM_DUPLICATE;
        else
            *result = BP_PREMIUM_CONFLICT;
        goto out; /* rolled back: nothing changes */
    }

    /* Set premium and lock the row: a concurrent claim of this player waits for us. */
    const char *pp[2] = {player_id, s->id};
    if (!(res = bp_pg_exec_params(pg, "premium progress", sql_premium_progress, 2, pp,
                                  PGRES_TUPLES_OK, &err)))
        goto out;
    int32_t level = bp_level_for_xp(s, (int64_t)atoll(PQgetvalue(res, 0, 0))).level;
    bool created = PQgetvalue(res, 0, 1)[0] == 't';
    PQclear(res);
    res = NULL;
    if ((err = bp_analytics_premium(pg, s, player_id, created, level)) != BP_OK)
        goto out;

    const char *audit[5] = {actor, player_id, s->id, transaction_id, source};
    if (!(res = bp_pg_exec_params(pg, "premium audit", sql_premium_audit, 5, audit,
                                  PGRES_COMMAND_OK, &err)))
        goto out;
    PQclear(res);
    res = NULL;

    if (s->auto_claim && n > 0) {
        /* Retroactive: the premium rewards of every level reached. Those granted before
         * (another premium grant of the same player) are skipped by the grant statement. */
        idx = malloc(n * sizeof(*idx));
        reqs = calloc(n, sizeof(*reqs));
        if (!idx || !reqs) {
            err = BP_ENOMEM;
            goto out;
        }
        size_t n_idx = bp_rewards_premium_upto(s, level, idx, n);
        for (size_t i = 0; i < n_idx && i < n; i++)
            reqs[i] = (bp_grant_req_t){player_id, s, idx[i]};
        err = bp_pg_grants_insert(pg, reqs, n_idx < n ? n_idx : n, "premium", actor, topic, out);
        if (err != BP_OK)
            goto out;
    }
    err = bp_pg_exec_cmd(pg, "COMMIT");
    in_tx = false; /* a failed COMMIT has rolled back */
    if (err == BP_OK)
        *result = BP_PREMIUM_GRANTED;
out:
    PQclear(res);
    if (in_tx)
        bp_pg_rollback(pg);
    if (err != BP_OK && out)
        out->n = out_n0;
    free(reqs);
    free(idx);
    return err;
}

/* ---- reward states ---- */

bp_err_t bp_pg_player_rewards(bp_pg_t *pg, const bp_season_t *s, const char *player_id,
                              bp_player_rewards_t *out)
{
    PGresult *res = NULL;
    bp_err_t err;

    memset(out, 0, sizeof(*out));
    out->level = 1;
    out->n_rewards = s->n_rewards;
    if (!(out->claimed = calloc(s->n_rewards ? s->n_rewards : 1, sizeof(*out->claimed)))) {
        err = BP_ENOMEM;
        goto out;
    }
    if ((err = bp_pg_ensure(pg)) != BP_OK)
        goto out;
    const char *params[2] = {player_id, s->id};
    if (!(res = bp_pg_exec_params(pg, "progress read", sql_progress_read, 2, params,
                                  PGRES_TUPLES_OK, &err)))
        goto out;
    if (PQntuples(res) > 0) {
        out->total_xp = (int64_t)atoll(PQgetvalue(res, 0, 0));
        out->premium = PQgetvalue(res, 0, 1)[0] == 't';
    }
    /* As for claims: the level follows from the XP, so states and claims agree. */
    out->level = bp_level_for_xp(s, out->total_xp).level;
    PQclear(res);
    if (!(res = bp_pg_exec_params(pg, "claimed rewards", sql_claimed_all, 2, params,
                                  PGRES_TUPLES_OK, &err)))
        goto out;
    mark_claimed(s, res, out->claimed);
out:
    PQclear(res);
    if (err != BP_OK)
        bp_player_rewards_fini(out);
    return err;
}
