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

/* ---- statements ----
 * Hot ones are prepared on each connection at first use (bp_pg_exec_stmt, re-prepared after
 * a reconnect); the others run with PQexecParams. */

/* The grant statement. Rows the claims' primary key (or grant_id) already holds are skipped
 * by ON CONFLICT DO NOTHING, so only the rows inserted now get an audit row (by the row's
 * actor: a group-committed batch of claims has one per claim), an outbox row and a count in
 * season_stats.claimed (store/analytics.h: the connection's shard; seasons in order, after
 * the claim rows).
 * grantedAt is the claim time in epoch milliseconds, the same value returned. */
static const bp_pg_stmt_t st_grants = {
    "rewards_grant",
    "WITH req AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[],"
    "   $5::text[], $6::text[], $7::int[], $8::text[], $10::text[])"
    "   AS t(player_id, season_id, level, tier, reward_id, item_id, quantity, grant_id, actor)),"
    " ins AS (INSERT INTO reward_claims"
    "   (player_id, season_id, level, tier, reward_id, item_id, quantity, grant_id, source)"
    "   SELECT player_id, season_id, level, tier, reward_id, item_id, quantity, grant_id,"
    "     $9::text FROM req"
    "   ON CONFLICT DO NOTHING"
    "   RETURNING player_id, season_id, level, tier, reward_id, item_id, quantity, grant_id,"
    "     floor(extract(epoch FROM claimed_at) * 1000)::bigint AS granted_ms),"
    " who AS (SELECT DISTINCT ON (grant_id) grant_id, actor FROM req ORDER BY grant_id),"
    " aud AS (INSERT INTO audit_log"
    "   (actor, action, player_id, season_id, level, tier, reward_id, grant_id, detail)"
    "   SELECT who.actor, $11::text, ins.player_id, ins.season_id, ins.level, ins.tier,"
    "     ins.reward_id, ins.grant_id,"
    "     jsonb_build_object('itemId', ins.item_id, 'quantity', ins.quantity, 'source', $9::text)"
    "   FROM ins JOIN who ON who.grant_id = ins.grant_id"
    "   ORDER BY ins.player_id, ins.level, ins.tier, ins.reward_id),"
    " box AS (INSERT INTO outbox (topic, key, payload)"
    "   SELECT $12::text, player_id, jsonb_build_object('grantId', grant_id,"
    "     'playerId', player_id, 'seasonId', season_id, 'level', level, 'tier', tier,"
    "     'rewardId', reward_id, 'itemId', item_id, 'quantity', quantity,"
    "     'grantedAt', granted_ms, 'source', $9::text)"
    "   FROM ins ORDER BY player_id, level, tier, reward_id),"
    " cnt AS (INSERT INTO season_stats AS s (season_id, claimed, shard)"
    "   SELECT season_id, count(*), counter_shard() FROM ins GROUP BY season_id"
    "   ORDER BY season_id"
    "   ON CONFLICT (season_id, shard) DO UPDATE SET claimed = s.claimed + EXCLUDED.claimed)"
    " SELECT grant_id, player_id, level, tier, reward_id, item_id, quantity, granted_ms"
    " FROM ins ORDER BY player_id, level, tier, reward_id"};

/* A batch of claims (bp_pg_claim_batch): the players' progress rows are created (in player
 * order) and locked (in player order: two batches cannot deadlock on them), then the claims
 * already made at the (player, level, tier) of the batch are read. */
static const bp_pg_stmt_t st_batch_ensure = {
    "claims_batch_ensure", "INSERT INTO player_progress (player_id, season_id)"
                           " SELECT p, $2 FROM unnest($1::text[]) AS p ORDER BY p"
                           " ON CONFLICT (player_id, season_id) DO NOTHING RETURNING player_id"};
static const bp_pg_stmt_t st_batch_lock = {
    "claims_batch_lock", "SELECT player_id, total_xp, premium FROM player_progress"
                         " WHERE season_id = $2 AND player_id = ANY ($1::text[])"
                         " ORDER BY player_id FOR UPDATE"};
static const bp_pg_stmt_t st_batch_claimed = {
    "claims_batch_claimed",
    "SELECT c.player_id, c.level, c.tier, c.reward_id"
    " FROM unnest($1::text[], $3::int[], $4::text[]) AS u(player_id, level, tier)"
    " JOIN reward_claims c ON c.player_id = u.player_id AND c.season_id = $2"
    "   AND c.level = u.level AND c.tier = u.tier"};
static const bp_pg_stmt_t st_batch_unmake = {
    "claims_batch_unmake", "DELETE FROM player_progress"
                           " WHERE season_id = $2 AND player_id = ANY ($1::text[])"};

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

/* bp_pg_grant_rows_insert with an actor per row (@p actors NULL: @p actor for all). */
static bp_err_t grant_rows(bp_pg_t *pg, const bp_grant_row_t *reqs, const char *const *actors,
                           size_t n, const char *source, const char *actor, const char *topic,
                           bp_grants_t *out)
{
    enum { N_ARR = 9 };
    bp_sbuf_t a[N_ARR] = {{0}};
    char gid[sizeof(((bp_grant_t *)0)->grant_id)];
    PGresult *res = NULL;
    bp_err_t err = BP_OK;

    if (n == 0)
        return BP_OK;
    const char *action = source_action(source);
    if (!action || (!actor && !actors) || !topic) {
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
        const char *who = actors && actors[i] ? actors[i] : actor;
        if (!who) {
            BP_LOG_ERROR("grant refused: no actor", "\"row\":%zu", i);
            err = BP_EFATAL;
            goto out;
        }
        bp_arr_text(&a[8], who);
    }
    for (int k = 0; k < N_ARR; k++) {
        bp_arr_close(&a[k]);
        if (a[k].oom) {
            err = BP_ENOMEM;
            goto out;
        }
    }

    const char *params[12] = {a[0].s, a[1].s, a[2].s, a[3].s, a[4].s, a[5].s,
                              a[6].s, a[7].s, source, a[8].s, action, topic};
    res = bp_pg_exec_stmt(pg, &st_grants, 12, params, PGRES_TUPLES_OK, &err);
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

bp_err_t bp_pg_grant_rows_insert(bp_pg_t *pg, const bp_grant_row_t *reqs, size_t n,
                                 const char *source, const char *actor, const char *topic,
                                 bp_grants_t *out)
{
    if (!actor && n > 0) {
        BP_LOG_ERROR("grant refused: no actor", NULL);
        return BP_EFATAL; /* a caller's bug: nothing sent */
    }
    return grant_rows(pg, reqs, NULL, n, source, actor, topic, out);
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

/* ---- claims in batches (group commit) ---- */

/* A player of a batch. */
typedef struct {
    const char *id;
    bool created; /* its progress row was inserted by this transaction */
    bool locked;  /* its row was locked (always, after the ensure) */
    bool granted; /* a claim of the batch wins something for it */
    int32_t level;
    bool premium;
} batch_player_t;

/* What the batch keeps per claim. */
typedef struct {
    size_t player; /* index into the sorted players */
    size_t *idx;   /* rewards at (level, tier), into s->rewards */
    bool *claimed; /* per idx: claimed already (before the batch) */
    size_t n_idx;
} batch_claim_t;

static int cmp_player(const void *a, const void *b)
{
    return strcmp(((const batch_player_t *)a)->id, ((const batch_player_t *)b)->id);
}

static batch_player_t *find_player(batch_player_t *ps, size_t n, const char *id)
{
    batch_player_t key = {.id = id};
    return bsearch(&key, ps, n, sizeof(*ps), cmp_player);
}

/* @return true when claims @p a and @p b are for the same (player, level, tier). */
static bool same_claim(const bp_claim_req_t *a, const bp_claim_req_t *b)
{
    return a->level == b->level && a->tier == b->tier && strcmp(a->player_id, b->player_id) == 0;
}

bp_err_t bp_pg_claim_batch(bp_pg_t *pg, const bp_season_t *s, bp_claim_req_t *reqs, size_t n,
                           const char *topic, int64_t now_ms, bool *at_commit)
{
    batch_player_t *ps = calloc(n ? n : 1, sizeof(*ps));
    batch_claim_t *cs = calloc(n ? n : 1, sizeof(*cs));
    bp_grant_row_t *rows = NULL;
    const char **actors = NULL;
    bp_analytics_change_t *an = NULL;
    bp_sbuf_t pa = {0}, ka = {0}, la = {0}, ta = {0}, da = {0};
    PGresult *res = NULL;
    bp_grants_t g = {0};
    bool in_tx = false;
    size_t np = 0, n_rows = 0;
    bp_err_t err = BP_OK;

    *at_commit = false;
    for (size_t i = 0; i < n; i++) {
        reqs[i].verdict = BP_CLAIM_NO_SUCH_REWARD;
        reqs[i].grants.n = 0;
    }
    if (!ps || !cs) {
        err = BP_ENOMEM;
        goto out;
    }
    /* The rewards each claim is for; no such reward needs no database (bp_pg_claim). */
    size_t n_db = 0, total_idx = 0;
    for (size_t i = 0; i < n; i++) {
        batch_claim_t *c = &cs[i];
        c->n_idx = bp_rewards_at(s, reqs[i].level, reqs[i].tier, NULL, 0);
        if (c->n_idx == 0)
            continue;
        c->idx = malloc(c->n_idx * sizeof(*c->idx));
        c->claimed = calloc(c->n_idx, sizeof(*c->claimed));
        if (!c->idx || !c->claimed) {
            err = BP_ENOMEM;
            goto out;
        }
        bp_rewards_at(s, reqs[i].level, reqs[i].tier, c->idx, c->n_idx);
        ps[np++].id = reqs[i].player_id;
        total_idx += c->n_idx;
        n_db++;
    }
    if (n_db == 0)
        goto out;
    qsort(ps, np, sizeof(*ps), cmp_player);
    size_t w = 0;
    for (size_t i = 0; i < np; i++)
        if (w == 0 || strcmp(ps[w - 1].id, ps[i].id) != 0)
            ps[w++] = ps[i];
    np = w;
    bp_arr_open(&pa);
    for (size_t i = 0; i < np; i++)
        bp_arr_text(&pa, ps[i].id);
    bp_arr_close(&pa);
    if (pa.oom) {
        err = BP_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (cs[i].n_idx > 0)
            cs[i].player = (size_t)(find_player(ps, np, reqs[i].player_id) - ps);

    if ((err = bp_pg_ensure(pg)) != BP_OK)
        goto out;
    if ((err = bp_pg_exec_cmd(pg, "BEGIN")) != BP_OK)
        goto out;
    in_tx = true;
    const char *pp[2] = {pa.s, s->id};
    if (!(res = bp_pg_exec_stmt(pg, &st_batch_ensure, 2, pp, PGRES_TUPLES_OK, &err)))
        goto out;
    size_t n_created = 0;
    for (int r = 0; r < PQntuples(res); r++) {
        batch_player_t *p = find_player(ps, np, PQgetvalue(res, r, 0));
        if (p && !p->created) {
            /* Inserted now: nobody else sees the row before COMMIT (another insert of it
             * waits for us), and it holds the defaults: level 1, no pass, no claims. */
            p->created = p->locked = true;
            p->level = bp_level_for_xp(s, 0).level;
            p->premium = false;
            n_created++;
        }
    }
    PQclear(res);
    res = NULL;
    if (n_created < np) { /* the players that had a row: lock them, read their standing */
        bp_arr_open(&da);
        for (size_t i = 0; i < np; i++)
            if (!ps[i].created)
                bp_arr_text(&da, ps[i].id);
        bp_arr_close(&da);
        if (da.oom) {
            err = BP_ENOMEM;
            goto out;
        }
        const char *lp[2] = {da.s, s->id};
        if (!(res = bp_pg_exec_stmt(pg, &st_batch_lock, 2, lp, PGRES_TUPLES_OK, &err)))
            goto out;
        for (int r = 0; r < PQntuples(res); r++) {
            batch_player_t *p = find_player(ps, np, PQgetvalue(res, r, 0));
            if (!p || p->created)
                continue;
            p->locked = true;
            /* The level follows from the XP; the stored level is only a cache of it. */
            p->level = bp_level_for_xp(s, (int64_t)atoll(PQgetvalue(res, r, 1))).level;
            p->premium = PQgetvalue(res, r, 2)[0] == 't';
        }
        PQclear(res);
        res = NULL;
        bp_sb_reset(&da);
    }
    for (size_t i = 0; i < np; i++) {
        if (!ps[i].locked) { /* cannot happen after the insert: a broken invariant */
            BP_LOG_ERROR("claim batch: progress row missing after upsert", NULL);
            err = BP_EFATAL;
            goto out;
        }
    }
    /* The claims already made, of players that had a row (a new one has none). Read after
     * the locks: a claim that held one before us has committed, and this statement's
     * snapshot sees its rows. */
    bp_arr_open(&ka);
    bp_arr_open(&la);
    bp_arr_open(&ta);
    size_t n_keys = 0;
    for (size_t i = 0; i < n; i++) {
        if (cs[i].n_idx == 0 || ps[cs[i].player].created)
            continue;
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = cs[k].n_idx > 0 && same_claim(&reqs[k], &reqs[i]);
        if (seen)
            continue;
        bp_arr_text(&ka, reqs[i].player_id);
        bp_arr_int(&la, reqs[i].level);
        bp_arr_text(&ta, bp_tier_str(reqs[i].tier));
        n_keys++;
    }
    bp_arr_close(&ka);
    bp_arr_close(&la);
    bp_arr_close(&ta);
    if (ka.oom || la.oom || ta.oom) {
        err = BP_ENOMEM;
        goto out;
    }
    const char *kp[4] = {ka.s, s->id, la.s, ta.s};
    if (n_keys > 0 && !(res = bp_pg_exec_stmt(pg, &st_batch_claimed, 4, kp, PGRES_TUPLES_OK, &err)))
        goto out;
    for (int r = 0; res && r < PQntuples(res); r++) {
        const char *player = PQgetvalue(res, r, 0);
        int32_t level = (int32_t)atoi(PQgetvalue(res, r, 1));
        bp_tier_t tier =
            strcmp(PQgetvalue(res, r, 2), "premium") == 0 ? BP_TIER_PREMIUM : BP_TIER_FREE;
        const char *reward_id = PQgetvalue(res, r, 3);
        for (size_t i = 0; i < n; i++) {
            batch_claim_t *c = &cs[i];
            if (c->n_idx == 0 || reqs[i].level != level || reqs[i].tier != tier ||
                strcmp(reqs[i].player_id, player) != 0)
                continue;
            for (size_t k = 0; k < c->n_idx; k++)
                if (strcmp(s->rewards[c->idx[k]].reward_id, reward_id) == 0)
                    c->claimed[k] = true;
        }
    }
    PQclear(res);
    res = NULL;

    /* Decide in arrival order, as one claim after another would: a claim of what an
     * earlier claim of the batch won finds it claimed. */
    if (!(rows = calloc(total_idx, sizeof(*rows))) ||
        !(actors = calloc(total_idx, sizeof(*actors)))) {
        err = BP_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        batch_claim_t *c = &cs[i];
        if (c->n_idx == 0)
            continue;
        batch_player_t *p = &ps[c->player];
        bool won_earlier = false;
        for (size_t k = 0; k < i && !won_earlier; k++)
            won_earlier = reqs[k].verdict == BP_CLAIM_OK && same_claim(&reqs[k], &reqs[i]);
        size_t n_claimed = 0;
        for (size_t k = 0; k < c->n_idx; k++)
            n_claimed += c->claimed[k] || won_earlier;
        reqs[i].verdict = bp_claim_decide(s, reqs[i].level, reqs[i].tier, p->level, p->premium,
                                          n_claimed == c->n_idx, now_ms);
        if (reqs[i].verdict != BP_CLAIM_OK)
            continue;
        p->granted = true;
        for (size_t k = 0; k < c->n_idx; k++) {
            if (c->claimed[k])
                continue;
            const bp_reward_t *r = &s->rewards[c->idx[k]];
            rows[n_rows] = (bp_grant_row_t){reqs[i].player_id, s, r, r->level};
            actors[n_rows++] = reqs[i].actor;
        }
    }

    /* As a refused claim rolls back alone: rows created for players who win nothing go, and
     * the analytics count the new players who won something (before the grant statement:
     * counter rows are locked in the order store/analytics.h fixes). */
    size_t n_unmake = 0, n_an = 0;
    if (!(an = calloc(np, sizeof(*an)))) {
        err = BP_ENOMEM;
        goto out;
    }
    bp_arr_open(&da);
    for (size_t i = 0; i < np; i++) {
        if (!ps[i].created)
            continue;
        if (!ps[i].granted) {
            bp_arr_text(&da, ps[i].id);
            n_unmake++;
        } else {
            an[n_an++] = (bp_analytics_change_t){
                .season = s, .player_id = ps[i].id, .created = true, .new_level = ps[i].level};
        }
    }
    bp_arr_close(&da);
    if (da.oom) {
        err = BP_ENOMEM;
        goto out;
    }
    if (n_unmake > 0) {
        const char *dp[2] = {da.s, s->id};
        if (!(res = bp_pg_exec_stmt(pg, &st_batch_unmake, 2, dp, PGRES_COMMAND_OK, &err)))
            goto out;
        PQclear(res);
        res = NULL;
    }
    if (n_an > 0 && (err = bp_analytics_progress(pg, an, n_an)) != BP_OK)
        goto out;
    if (n_rows > 0 &&
        (err = grant_rows(pg, rows, actors, n_rows, "claim", NULL, topic, &g)) != BP_OK)
        goto out;
    /* Each granted row to its claim (one per (player, level, tier) can have won). */
    for (size_t k = 0; k < g.n; k++) {
        const bp_grant_t *gr = &g.items[k];
        for (size_t i = 0; i < n; i++) {
            bp_claim_req_t *q = &reqs[i];
            if (q->verdict != BP_CLAIM_OK || q->level != gr->level || q->tier != gr->tier ||
                strcmp(q->player_id, gr->player_id) != 0)
                continue;
            bp_grant_t *items = realloc(q->grants.items, (q->grants.n + 1) * sizeof(*items));
            if (!items) {
                err = BP_ENOMEM;
                goto out;
            }
            q->grants.items = items;
            items[q->grants.n++] = *gr;
            break;
        }
    }
    /* The primary key refused them all: someone else was first (bp_pg_claim). */
    for (size_t i = 0; i < n; i++)
        if (reqs[i].verdict == BP_CLAIM_OK && reqs[i].grants.n == 0)
            reqs[i].verdict = BP_CLAIM_ALREADY_CLAIMED;
    *at_commit = true;
    err = bp_pg_exec_cmd(pg, "COMMIT");
    in_tx = false; /* a failed COMMIT has rolled back, or the connection is gone */
    if (err == BP_OK)
        *at_commit = false;
out:
    PQclear(res);
    if (in_tx)
        bp_pg_rollback(pg);
    if (err != BP_OK) {
        for (size_t i = 0; i < n; i++) {
            reqs[i].verdict = BP_CLAIM_NO_SUCH_REWARD; /* meaningless on error; never OK */
            reqs[i].grants.n = 0;
        }
    }
    for (size_t i = 0; cs && i < n; i++) {
        free(cs[i].idx);
        free(cs[i].claimed);
    }
    bp_grants_fini(&g);
    bp_sb_free(&pa);
    bp_sb_free(&ka);
    bp_sb_free(&la);
    bp_sb_free(&ta);
    bp_sb_free(&da);
    free(an);
    free(actors);
    free(rows);
    free(cs);
    free(ps);
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
