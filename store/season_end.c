/** @file Season closing: grants of unclaimed available rewards when the claim window ends,
 *  chunk by chunk, resumable, one worker at a time (advisory lock). */
#include "store/season_end.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "app/log.h"
#include "core/level.h"
#include "core/reward.h"
#include "store/pg_conn.h"
#include "store/rewards.h"

enum { ST_CLOSED, ST_LOCK, ST_UNLOCK, ST_PLAYERS, ST_MARK, ST_COUNT };

static const bp_pg_stmt_t statements[ST_COUNT] = {
    [ST_CLOSED] = {"season_end_closed", "SELECT closed_at IS NOT NULL FROM seasons WHERE id = $1"},
    [ST_LOCK] = {"season_end_lock", "SELECT pg_try_advisory_lock(hashtext('season-end:' || $1))"},
    [ST_UNLOCK] = {"season_end_unlock", "SELECT pg_advisory_unlock(hashtext('season-end:' || $1))"},
    [ST_PLAYERS] = {"season_end_players",
                    "SELECT player_id, total_xp, premium FROM player_progress"
                    " WHERE season_id = $1 AND player_id > $2 ORDER BY player_id LIMIT $3"},
    [ST_MARK] = {"season_end_mark",
                 "UPDATE seasons SET closed_at = now() WHERE id = $1 AND closed_at IS NULL"},
};

/* Run a one-row boolean query. @return BP_OK with *out, or the error. */
static bp_err_t query_bool(bp_pg_t *pg, int st, const char *arg, bool *out)
{
    bp_err_t err;
    const char *params[1] = {arg};
    PGresult *res = bp_pg_exec_stmt(pg, &statements[st], 1, params, PGRES_TUPLES_OK, &err);
    if (!res)
        return err;
    *out = PQntuples(res) > 0 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return BP_OK;
}

/* Grant what the players of one chunk can still claim, in one transaction. */
static bp_err_t grant_chunk(bp_pg_t *pg, const bp_season_t *s, PGresult *players, const char *topic,
                            size_t *granted)
{
    size_t n_players = (size_t)PQntuples(players);
    size_t cap = n_players * (s->n_rewards ? s->n_rewards : 1);
    bp_grant_req_t *reqs = malloc(cap * sizeof(*reqs));
    size_t *idx = malloc((s->n_rewards ? s->n_rewards : 1) * sizeof(*idx));
    bp_grants_t done = {0};
    bp_err_t err = BP_OK;
    size_t n = 0;
    if (!reqs || !idx) {
        err = BP_ENOMEM;
        goto out;
    }
    for (size_t p = 0; p < n_players; p++) {
        int64_t total = atoll(PQgetvalue(players, (int)p, 1));
        bool premium = PQgetvalue(players, (int)p, 2)[0] == 't';
        int32_t level = bp_level_for_xp(s, total).level;
        size_t k = bp_rewards_unlocked(s, 0, level, premium, idx, s->n_rewards);
        for (size_t i = 0; i < k; i++) /* player ids stay valid in @p players */
            reqs[n++] = (bp_grant_req_t){PQgetvalue(players, (int)p, 0), s, idx[i]};
    }
    if (n == 0)
        goto out;
    if ((err = bp_pg_exec_cmd(pg, "BEGIN")) != BP_OK)
        goto out;
    err = bp_pg_grants_insert(pg, reqs, n, "season-end", "worker", topic, &done);
    if (err == BP_OK)
        err = bp_pg_exec_cmd(pg, "COMMIT");
    else
        bp_pg_rollback(pg);
    if (err == BP_OK)
        *granted += done.n;
out:
    bp_grants_fini(&done);
    free(reqs);
    free(idx);
    return err;
}

bp_err_t bp_pg_season_close(bp_pg_t *pg, const bp_season_t *s, const char *rewards_topic,
                            int64_t now_ms, size_t chunk, size_t *granted, bool *closed)
{
    bool locked = false;
    char last[BP_ID_MAX + 1] = "", limit[24];
    *granted = 0;
    *closed = false;
    if (!s->grant_unclaimed_at_end || now_ms < s->ends_at_ms + s->claim_window_ms)
        return BP_OK;
    bp_err_t err = bp_pg_ensure(pg);
    if (err == BP_OK)
        err = query_bool(pg, ST_CLOSED, s->id, closed);
    if (err != BP_OK || *closed)
        return err;
    if ((err = query_bool(pg, ST_LOCK, s->id, &locked)) != BP_OK || !locked)
        return err; /* another worker is closing it */
    BP_LOG_INFO("closing season: granting unclaimed rewards", "\"seasonId\":\"%s\"", s->id);
    snprintf(limit, sizeof(limit), "%zu", chunk);
    for (;;) {
        const char *params[3] = {s->id, last, limit};
        PGresult *players =
            bp_pg_exec_stmt(pg, &statements[ST_PLAYERS], 3, params, PGRES_TUPLES_OK, &err);
        if (!players)
            break;
        int rows = PQntuples(players);
        if (rows > 0) {
            err = grant_chunk(pg, s, players, rewards_topic, granted);
            snprintf(last, sizeof(last), "%s", PQgetvalue(players, rows - 1, 0));
        }
        PQclear(players);
        if (err != BP_OK || (size_t)rows < chunk)
            break;
    }
    if (err == BP_OK) {
        const char *params[1] = {s->id};
        PGresult *res =
            bp_pg_exec_stmt(pg, &statements[ST_MARK], 1, params, PGRES_COMMAND_OK, &err);
        PQclear(res);
        *closed = err == BP_OK;
        if (*closed)
            BP_LOG_INFO("season closed", "\"seasonId\":\"%s\",\"granted\":%zu", s->id, *granted);
    }
    bool unlocked;
    (void)query_bool(pg, ST_UNLOCK, s->id, &unlocked);
    return err;
}
