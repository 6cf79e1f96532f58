/** @file Season administration: definition reads and optimistic updates of seasons rows. */
#include "store/season_admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "store/pg_conn.h"

/* Windows travel as milliseconds since the epoch ($n::bigint). */
static const char OVERLAP_SQL[] =
    "SELECT id FROM seasons WHERE id <> $1 AND tstzrange(starts_at, ends_at) &&"
    " tstzrange(timestamptz 'epoch' + $2::bigint * interval '1 millisecond',"
    "           timestamptz 'epoch' + $3::bigint * interval '1 millisecond')"
    " ORDER BY starts_at LIMIT 1";
/* Optimistic: only while the stored definition is still the one the caller read. */
static const char UPDATE_SQL[] =
    "UPDATE seasons SET name = $2,"
    " starts_at = timestamptz 'epoch' + $3::bigint * interval '1 millisecond',"
    " ends_at = timestamptz 'epoch' + $4::bigint * interval '1 millisecond',"
    " max_level = $5, definition = $6::jsonb"
    " WHERE id = $1 AND definition = $7::jsonb";

/* A failed statement: log it, say why, classify. */
static bp_err_t failed(const char *what, PGconn *conn, PGresult *res, char *why, size_t why_len)
{
    bp_pg_log_error(what, conn, res);
    if (why && why_len)
        snprintf(why, why_len, "database error: %s",
                 res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    return bp_pg_classify(res, conn);
}

bp_err_t bp_season_admin_get(bp_pg_t *pg, const char *id, char **definition)
{
    *definition = NULL;
    bp_err_t err = bp_pg_ensure(pg);
    if (err != BP_OK)
        return err;
    PGconn *conn = bp_pg_conn(pg);
    const char *params[1] = {id};
    PGresult *res = PQexecParams(conn, "SELECT definition::text FROM seasons WHERE id = $1", 1,
                                 NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = failed("season read", conn, res, NULL, 0);
        /* A read that fails for another reason than the connection is still worth a retry
         * from the caller's point of view: nothing was changed. */
        err = err == BP_EFATAL ? BP_ERETRY : err;
    } else if (PQntuples(res) == 0) {
        err = BP_ENOTFOUND;
    } else if (!(*definition = strdup(PQgetvalue(res, 0, 0)))) {
        err = BP_ENOMEM;
    }
    PQclear(res);
    return err;
}

bp_err_t bp_season_admin_update(bp_pg_t *pg, const bp_season_t *s, const char *definition,
                                const char *previous, char *why, size_t why_len)
{
    char starts[24], ends[24], maxlvl[16];
    PGresult *res = NULL;
    bp_err_t err = bp_pg_ensure(pg);
    if (err != BP_OK) {
        snprintf(why, why_len, "database unreachable");
        return err;
    }
    PGconn *conn = bp_pg_conn(pg);
    snprintf(starts, sizeof(starts), "%lld", (long long)s->starts_at_ms);
    snprintf(ends, sizeof(ends), "%lld", (long long)s->ends_at_ms);
    snprintf(maxlvl, sizeof(maxlvl), "%d", s->max_level);

    /* Checked first so that the error names the season in the way; the exclusion
     * constraint of the table still decides when two writers race. */
    const char *chk[3] = {s->id, starts, ends};
    res = PQexecParams(conn, OVERLAP_SQL, 3, NULL, chk, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = failed("season overlap check", conn, res, why, why_len);
        goto out;
    }
    if (PQntuples(res) > 0) {
        snprintf(why, why_len, "season \"%s\" would overlap the window of season \"%s\"", s->id,
                 PQgetvalue(res, 0, 0));
        err = BP_EINVAL;
        goto out;
    }
    PQclear(res);

    const char *params[7] = {s->id, s->name, starts, ends, maxlvl, definition, previous};
    res = PQexecParams(conn, UPDATE_SQL, 7, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "23P01") == 0) { /* lost a race with another writer */
            snprintf(why, why_len, "season \"%s\" would overlap the window of another season",
                     s->id);
            err = BP_EINVAL;
        } else {
            err = failed("season update", conn, res, why, why_len);
        }
        goto out;
    }
    if (strcmp(PQcmdTuples(res), "1") != 0) {
        snprintf(why, why_len,
                 "season \"%s\" was changed or removed by another request meanwhile; read it "
                 "again and retry",
                 s->id);
        err = BP_EINVAL;
        goto out;
    }
    err = BP_OK;
out:
    PQclear(res);
    return err;
}
