/** @file PostgreSQL adapter: migrations, seasons, the batch-apply transaction, offsets and
 *  fencing, the outbox, progress reads. Arrays travel as text array literals to unnest(). */
#include "store/pg.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "app/log.h"
#include "core/fold.h"
#include "core/level.h"
#include "core/reward.h"
#include "store/pg_conn.h"
#include "store/pgtext.h"
#include "store/rewards.h"
#include "store/season_json.h"

struct bp_pg {
    PGconn *conn;
    char *dsn;
};

/* ---- prepared statements: one table, prepared on every (re)connect ---- */

enum {
    ST_FENCE,
    ST_EVENTS,
    ST_PROGRESS,
    ST_LEVELS,
    ST_OUTBOX_INSERT,
    ST_CLAIM,
    ST_OUTBOX_TAKE,
    ST_OUTBOX_DELETE,
    ST_PROGRESS_GET,
    ST_COUNT
};

static const struct {
    const char *name;
    const char *sql;
} statements[ST_COUNT] = {
    [ST_FENCE] = {"fence", "UPDATE partition_offsets p SET next_offset = u.next_offset"
                           " FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[])"
                           "   AS u(topic, partition, next_offset, epoch)"
                           " WHERE p.consumer_group = $1 AND p.topic = u.topic"
                           "   AND p.partition = u.partition AND p.epoch = u.epoch"
                           " RETURNING p.topic, p.partition"},
    [ST_EVENTS] = {"events",
                   "WITH ev AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[],"
                   "   $4::int[], $5::text[], $6::bigint[]) WITH ORDINALITY"
                   "   AS t(event_id, player_id, season_id, amount, reason, occurred_ms, ord)),"
                   " ins AS (INSERT INTO processed_events"
                   "   (event_id, player_id, season_id, amount, reason, occurred_at)"
                   "   SELECT event_id, player_id, season_id, amount, reason,"
                   "     timestamptz 'epoch' + occurred_ms * interval '1 millisecond' FROM ev"
                   "   ON CONFLICT (event_id) DO NOTHING RETURNING event_id)"
                   " SELECT ev.ord - 1 FROM ev JOIN ins USING (event_id)"},
    [ST_PROGRESS] = {"progress",
                     "INSERT INTO player_progress AS p (player_id, season_id, total_xp, earned_xp)"
                     " SELECT player_id, season_id, delta, delta"
                     " FROM unnest($1::text[], $2::text[], $3::bigint[])"
                     "   AS u(player_id, season_id, delta)"
                     " ORDER BY player_id, season_id"
                     " ON CONFLICT (player_id, season_id) DO UPDATE"
                     "   SET total_xp = p.total_xp + EXCLUDED.total_xp,"
                     "       earned_xp = p.earned_xp + EXCLUDED.earned_xp, updated_at = now()"
                     " RETURNING player_id, season_id, total_xp, premium, (xmax = 0)"},
    [ST_LEVELS] = {"levels", "UPDATE player_progress p SET level = u.level"
                             " FROM unnest($1::text[], $2::text[], $3::int[])"
                             "   AS u(player_id, season_id, level)"
                             " WHERE p.player_id = u.player_id AND p.season_id = u.season_id"},
    [ST_OUTBOX_INSERT] = {"outbox_insert",
                          "INSERT INTO outbox (topic, key, payload)"
                          " SELECT $1, k, p::jsonb FROM unnest($2::text[], $3::text[]) AS u(k, p)"},
    [ST_CLAIM] = {"claim", "INSERT INTO partition_offsets (consumer_group, topic, partition, epoch)"
                           " SELECT $1, $2, unnest($3::int[]), 1"
                           " ON CONFLICT (consumer_group, topic, partition) DO UPDATE"
                           "   SET epoch = partition_offsets.epoch + 1"
                           " RETURNING partition, next_offset, epoch"},
    [ST_OUTBOX_TAKE] = {"outbox_take",
                        "SELECT id, topic, key, payload::text FROM outbox ORDER BY id"
                        " LIMIT $1 FOR UPDATE SKIP LOCKED"},
    [ST_OUTBOX_DELETE] = {"outbox_delete", "DELETE FROM outbox WHERE id = ANY($1::bigint[])"},
    [ST_PROGRESS_GET] = {"progress_get",
                         "SELECT total_xp, level, premium,"
                         " (extract(epoch FROM updated_at) * 1000)::bigint"
                         " FROM player_progress WHERE player_id = $1 AND season_id = $2"},
};

/* ---- connection ---- */

/* SQLSTATE classes worth retrying: connection, transaction rollback (deadlock,
 * serialization), insufficient resources, operator intervention, system error. */
bp_err_t bp_pg_classify(const PGresult *res, PGconn *conn)
{
    if (PQstatus(conn) == CONNECTION_BAD)
        return BP_ERETRY;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!state)
        return BP_ERETRY;
    static const char *const retry_classes[] = {"08", "40", "53", "57", "58"};
    for (size_t i = 0; i < sizeof(retry_classes) / sizeof(retry_classes[0]); i++)
        if (strncmp(state, retry_classes[i], 2) == 0)
            return BP_ERETRY;
    return BP_EFATAL;
}

void bp_pg_log_error(const char *what, PGconn *conn, const PGresult *res)
{
    char esc[512];
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
    BP_LOG_WARN("postgresql error", "\"op\":\"%s\",\"error\":\"%s\"", what,
                bp_log_str(esc, sizeof(esc), msg));
}

static bp_err_t prepare_all(bp_pg_t *pg)
{
    for (int i = 0; i < ST_COUNT; i++) {
        PGresult *res = PQprepare(pg->conn, statements[i].name, statements[i].sql, 0, NULL);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok) {
            /* Tables missing before `migrate` is fine: prepare lazily later. */
            bp_err_t err = bp_pg_classify(res, pg->conn);
            PQclear(res);
            return err == BP_ERETRY ? BP_ERETRY : BP_OK;
        }
        PQclear(res);
    }
    return BP_OK;
}

static bp_err_t open_conn(bp_pg_t *pg)
{
    /* Defaults first so the DSN can override them: a server that hangs instead of failing
     * must not block a thread forever (keepalives, tcp_user_timeout, statement_timeout). */
    const char *keys[] = {
        "connect_timeout",  "application_name", "keepalives_idle", "keepalives_interval",
        "tcp_user_timeout", "options",          "dbname",          NULL};
    const char *vals[] = {"3",     "battlepassd", "10", "5", "15000", "-c statement_timeout=30000",
                          pg->dsn, NULL};
    if (pg->conn)
        PQfinish(pg->conn);
    pg->conn = PQconnectdbParams(keys, vals, 1);
    if (!pg->conn)
        return BP_ENOMEM;
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        bp_pg_log_error("connect", pg->conn, NULL);
        return BP_ERETRY;
    }
    PQsetNoticeProcessor(pg->conn, NULL, NULL);
    return prepare_all(pg);
}

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

bp_err_t bp_pg_connect(const char *dsn, bp_pg_t **out)
{
    bp_pg_t *pg = calloc(1, sizeof(*pg));
    if (!pg)
        return BP_ENOMEM;
    pg->dsn = strdup(dsn);
    if (!pg->dsn) {
        free(pg);
        return BP_ENOMEM;
    }
    bp_err_t err = open_conn(pg);
    if (err == BP_OK && pg->conn)
        PQsetNoticeProcessor(pg->conn, quiet_notice, NULL);
    if (err != BP_OK) {
        bp_pg_destroy(pg);
        return err;
    }
    *out = pg;
    return BP_OK;
}

void bp_pg_destroy(bp_pg_t *pg)
{
    if (!pg)
        return;
    if (pg->conn)
        PQfinish(pg->conn);
    free(pg->dsn);
    free(pg);
}

bp_err_t bp_pg_ensure(bp_pg_t *pg)
{
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
        return BP_OK;
    bp_err_t err = open_conn(pg);
    if (err == BP_OK)
        PQsetNoticeProcessor(pg->conn, quiet_notice, NULL);
    return err;
}

PGconn *bp_pg_conn(bp_pg_t *pg)
{
    return pg->conn;
}

bool bp_pg_ping(bp_pg_t *pg)
{
    if (bp_pg_ensure(pg) != BP_OK)
        return false;
    PGresult *res = PQexec(pg->conn, "SELECT 1");
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    return ok;
}

/* Run a command without results; on failure log and return its classification. */
static bp_err_t exec_cmd(bp_pg_t *pg, const char *sql)
{
    PGresult *res = PQexec(pg->conn, sql);
    bp_err_t err = BP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        bp_pg_log_error(sql, pg->conn, res);
        err = bp_pg_classify(res, pg->conn);
    }
    PQclear(res);
    return err;
}

static void rollback(bp_pg_t *pg)
{
    PGresult *res = PQexec(pg->conn, "ROLLBACK");
    PQclear(res);
}

/* Execute prepared statement @p st; returns the result (caller PQclears) or NULL with
 * *err set (the error is logged). A statement that is not prepared yet (first use after
 * migrate) is prepared on demand. */
static PGresult *exec_prepared(bp_pg_t *pg, int st, int n, const char *const *params,
                               ExecStatusType want, bp_err_t *err)
{
    PGresult *res = PQexecPrepared(pg->conn, statements[st].name, n, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "26000") == 0) { /* invalid_sql_statement_name */
            PQclear(res);
            PGresult *p = PQprepare(pg->conn, statements[st].name, statements[st].sql, 0, NULL);
            PQclear(p);
            res = PQexecPrepared(pg->conn, statements[st].name, n, params, NULL, NULL, 0);
        }
    }
    if (PQresultStatus(res) != want) {
        bp_pg_log_error(statements[st].name, pg->conn, res);
        *err = bp_pg_classify(res, pg->conn);
        PQclear(res);
        return NULL;
    }
    *err = BP_OK;
    return res;
}

/* ---- migrations ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool migration_name(const char *n)
{
    size_t len = strlen(n);
    return len > 8 && n[0] >= '0' && n[0] <= '9' && n[1] >= '0' && n[1] <= '9' && n[2] >= '0' &&
           n[2] <= '9' && n[3] == '_' && strcmp(n + len - 4, ".sql") == 0;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) != 0)
        goto out;
    long sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto out;
    buf = malloc((size_t)sz + 1);
    if (!buf)
        goto out;
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        buf = NULL;
        goto out;
    }
    buf[sz] = '\0';
out:
    fclose(f);
    return buf;
}

static bp_err_t apply_migration(bp_pg_t *pg, const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char *sql = read_file(path);
    if (!sql) {
        BP_LOG_ERROR("cannot read migration", "\"file\":\"%s\",\"error\":\"%s\"", path,
                     strerror(errno));
        return BP_EFATAL;
    }
    char version[4] = {name[0], name[1], name[2], '\0'};
    const char *params[2] = {version, name};
    bp_err_t err = exec_cmd(pg, "BEGIN");
    if (err != BP_OK)
        goto out;
    err = exec_cmd(pg, sql);
    if (err != BP_OK) {
        BP_LOG_ERROR("migration failed, rolled back", "\"file\":\"%s\"", name);
        rollback(pg);
        goto out;
    }
    PGresult *res =
        PQexecParams(pg->conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                     NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        bp_pg_log_error("record migration", pg->conn, res);
        err = bp_pg_classify(res, pg->conn);
        PQclear(res);
        rollback(pg);
        goto out;
    }
    PQclear(res);
    err = exec_cmd(pg, "COMMIT");
    if (err == BP_OK)
        BP_LOG_INFO("migration applied", "\"file\":\"%s\"", name);
out:
    free(sql);
    return err;
}

bp_err_t bp_pg_migrate(bp_pg_t *pg, const char *sql_dir)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    bp_err_t err = bp_pg_ensure(pg);
    if (err != BP_OK)
        return err;
    DIR *d = opendir(sql_dir);
    if (!d) {
        BP_LOG_ERROR("cannot open migrations directory", "\"dir\":\"%s\",\"error\":\"%s\"", sql_dir,
                     strerror(errno));
        return BP_EFATAL;
    }
    for (struct dirent *e; (e = readdir(d));) {
        if (!migration_name(e->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **p = realloc(names, cap * sizeof(*names));
            if (!p) {
                err = BP_ENOMEM;
                goto out;
            }
            names = p;
        }
        if (!(names[n] = strdup(e->d_name))) {
            err = BP_ENOMEM;
            goto out;
        }
        n++;
    }
    qsort(names, n, sizeof(*names), cmp_str);

    /* Several instances may start at once: serialise them on an advisory lock. */
    err = exec_cmd(pg, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                       " version integer PRIMARY KEY, name text NOT NULL,"
                       " applied_at timestamptz NOT NULL DEFAULT now())");
    if (err != BP_OK)
        goto out;
    PGresult *lock = PQexec(pg->conn, "SELECT pg_advisory_lock(7261001)");
    err = PQresultStatus(lock) == PGRES_TUPLES_OK ? BP_OK : bp_pg_classify(lock, pg->conn);
    PQclear(lock);
    if (err != BP_OK)
        goto out;
    size_t applied = 0;
    for (size_t i = 0; i < n; i++) {
        char version[4] = {names[i][0], names[i][1], names[i][2], '\0'};
        const char *params[1] = {version};
        PGresult *res = PQexecParams(pg->conn, "SELECT 1 FROM schema_migrations WHERE version = $1",
                                     1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            bp_pg_log_error("read schema_migrations", pg->conn, res);
            err = bp_pg_classify(res, pg->conn);
            PQclear(res);
            break;
        }
        bool done = PQntuples(res) > 0;
        PQclear(res);
        if (done)
            continue;
        if ((err = apply_migration(pg, sql_dir, names[i])) != BP_OK)
            break;
        applied++;
    }
    PGresult *res = PQexec(pg->conn, "SELECT pg_advisory_unlock(7261001)");
    PQclear(res);
    if (err == BP_OK) {
        BP_LOG_INFO("migrations up to date", "\"applied\":%zu,\"known\":%zu", applied, n);
        prepare_all(pg);
    }
out:
    closedir(d);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return err;
}

/* ---- seasons ---- */

bp_err_t bp_pg_season_insert(bp_pg_t *pg, const bp_season_t *s, const char *json, char *why,
                             size_t why_len)
{
    char starts[40], ends[40], maxlvl[16];
    bp_err_t err = bp_pg_ensure(pg);
    if (err != BP_OK)
        return err;
    snprintf(starts, sizeof(starts), "%lld", (long long)s->starts_at_ms);
    snprintf(ends, sizeof(ends), "%lld", (long long)s->ends_at_ms);
    snprintf(maxlvl, sizeof(maxlvl), "%d", s->max_level);

    /* Check first so the error names the season in the way. */
    const char *chk[3] = {s->id, starts, ends};
    PGresult *res = PQexecParams(
        pg->conn,
        "SELECT id, id = $1 FROM seasons WHERE id = $1 OR tstzrange(starts_at, ends_at) &&"
        " tstzrange(timestamptz 'epoch' + $2::bigint * interval '1 millisecond',"
        "           timestamptz 'epoch' + $3::bigint * interval '1 millisecond') LIMIT 1",
        3, NULL, chk, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        bp_pg_log_error("season check", pg->conn, res);
        err = bp_pg_classify(res, pg->conn);
        snprintf(why, why_len, "database error: %s", PQresultErrorMessage(res));
        PQclear(res);
        return err;
    }
    if (PQntuples(res) > 0) {
        if (strcmp(PQgetvalue(res, 0, 1), "t") == 0)
            snprintf(why, why_len, "season \"%s\" already exists", s->id);
        else
            snprintf(why, why_len, "season \"%s\" overlaps the window of season \"%s\"", s->id,
                     PQgetvalue(res, 0, 0));
        PQclear(res);
        return BP_EINVAL;
    }
    PQclear(res);

    const char *params[6] = {s->id, s->name, starts, ends, maxlvl, json};
    res =
        PQexecParams(pg->conn,
                     "INSERT INTO seasons (id, name, starts_at, ends_at, max_level, definition)"
                     " VALUES ($1, $2, timestamptz 'epoch' + $3::bigint * interval '1 millisecond',"
                     " timestamptz 'epoch' + $4::bigint * interval '1 millisecond', $5, $6::jsonb)",
                     6, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        err = (state && (strcmp(state, "23505") == 0 || strcmp(state, "23P01") == 0))
                  ? BP_EINVAL /* lost a race with another import */
                  : bp_pg_classify(res, pg->conn);
        snprintf(why, why_len, "cannot insert season \"%s\": %s", s->id, PQresultErrorMessage(res));
        PQclear(res);
        return err;
    }
    PQclear(res);
    return BP_OK;
}

void bp_season_list_fini(bp_season_list_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        bp_season_fini(&l->items[i]);
        if (l->json)
            free(l->json[i]);
    }
    free(l->items);
    free(l->json);
    memset(l, 0, sizeof(*l));
}

bp_err_t bp_pg_seasons_load(bp_pg_t *pg, bp_season_list_t *out)
{
    memset(out, 0, sizeof(*out));
    bp_err_t err = bp_pg_ensure(pg);
    if (err != BP_OK)
        return err;
    PGresult *res = PQexec(pg->conn, "SELECT definition::text FROM seasons ORDER BY starts_at");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        bp_pg_log_error("load seasons", pg->conn, res);
        err = bp_pg_classify(res, pg->conn);
        goto out;
    }
    size_t n = (size_t)PQntuples(res);
    out->items = calloc(n ? n : 1, sizeof(*out->items));
    out->json = calloc(n ? n : 1, sizeof(*out->json));
    if (!out->items || !out->json) {
        err = BP_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char why[256];
        const char *text = PQgetvalue(res, (int)i, 0);
        err = bp_season_from_json(text, strlen(text), &out->items[out->n], why, sizeof(why));
        if (err == BP_EINVAL) {
            /* Stored definitions were validated at import; a bad one is skipped, loudly. */
            char esc[300];
            BP_LOG_ERROR("stored season is invalid, skipped", "\"error\":\"%s\"",
                         bp_log_str(esc, sizeof(esc), why));
            err = BP_OK;
            continue;
        }
        if (err != BP_OK)
            goto out;
        if (!(out->json[out->n] = strdup(text))) {
            bp_season_fini(&out->items[out->n]);
            err = BP_ENOMEM;
            goto out;
        }
        out->n++;
    }
out:
    PQclear(res);
    if (err != BP_OK)
        bp_season_list_fini(out);
    return err;
}

/* ---- partitions and fencing ---- */

bp_err_t bp_pg_partitions_claim(bp_pg_t *pg, const char *group, const char *topic,
                                bp_partition_state_t *parts, size_t n)
{
    bp_sbuf_t arr = {0};
    bp_err_t err = bp_pg_ensure(pg);
    if (err != BP_OK || n == 0)
        return err;
    bp_arr_open(&arr);
    for (size_t i = 0; i < n; i++)
        bp_arr_int(&arr, parts[i].partition);
    bp_arr_close(&arr);
    if (arr.oom) {
        err = BP_ENOMEM;
        goto out;
    }
    const char *params[3] = {group, topic, arr.s};
    PGresult *res = exec_prepared(pg, ST_CLAIM, 3, params, PGRES_TUPLES_OK, &err);
    if (!res)
        goto out;
    for (int r = 0; r < PQntuples(res); r++) {
        int32_t p = (int32_t)atoi(PQgetvalue(res, r, 0));
        for (size_t i = 0; i < n; i++) {
            if (parts[i].partition == p) {
                parts[i].next_offset = atoll(PQgetvalue(res, r, 1));
                parts[i].epoch = atoll(PQgetvalue(res, r, 2));
            }
        }
    }
    PQclear(res);
out:
    bp_sb_free(&arr);
    return err;
}

/* ---- the batch ---- */

void bp_batch_result_fini(bp_batch_result_t *r)
{
    if (!r)
        return;
    free(r->changes);
    free(r->fenced);
    memset(r, 0, sizeof(*r));
}

/* Find the fold group of (season id, player id); groups are sorted by (season_idx, player). */
static bp_fold_group_t *find_group(const bp_fold_t *f, int season_idx, const char *player)
{
    size_t lo = 0, hi = f->n_groups;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const bp_fold_group_t *g = &f->groups[mid];
        int c = g->season_idx != season_idx ? (g->season_idx < season_idx ? -1 : 1)
                                            : strcmp(g->player_id, player);
        if (c == 0)
            return &f->groups[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Step 1: store offsets where our epoch still holds; collect fenced partitions. */
static bp_err_t store_offsets(bp_pg_t *pg, const bp_batch_t *b, bp_sbuf_t *a, bp_batch_result_t *r)
{
    bp_err_t err;
    if (b->n_offsets == 0)
        return BP_OK;
    for (int k = 0; k < 4; k++)
        bp_arr_open(&a[k]);
    for (size_t i = 0; i < b->n_offsets; i++) {
        bp_arr_text(&a[0], b->offsets[i].topic);
        bp_arr_int(&a[1], b->offsets[i].partition);
        bp_arr_int(&a[2], b->offsets[i].next_offset);
        bp_arr_int(&a[3], b->offsets[i].epoch);
    }
    for (int k = 0; k < 4; k++) {
        bp_arr_close(&a[k]);
        if (a[k].oom)
            return BP_ENOMEM;
    }
    const char *params[5] = {b->group, a[0].s, a[1].s, a[2].s, a[3].s};
    PGresult *res = exec_prepared(pg, ST_FENCE, 5, params, PGRES_TUPLES_OK, &err);
    if (!res)
        return err;
    if ((size_t)PQntuples(res) == b->n_offsets) {
        PQclear(res);
        return BP_OK;
    }
    r->fenced = calloc(b->n_offsets, sizeof(*r->fenced));
    if (!r->fenced) {
        PQclear(res);
        return BP_ENOMEM;
    }
    for (size_t i = 0; i < b->n_offsets; i++) {
        bool ok = false;
        for (int row = 0; row < PQntuples(res) && !ok; row++)
            ok = atoi(PQgetvalue(res, row, 1)) == b->offsets[i].partition &&
                 strcmp(PQgetvalue(res, row, 0), b->offsets[i].topic) == 0;
        if (!ok)
            r->fenced[r->n_fenced++] = b->offsets[i];
    }
    PQclear(res);
    return BP_EINVAL;
}

/* Step 2: record the events; mark in fresh[] those not seen before. */
static bp_err_t insert_events(bp_pg_t *pg, const bp_batch_t *b, const bool *dup, bool *fresh,
                              bp_sbuf_t a[6])
{
    bp_err_t err;
    for (int k = 0; k < 6; k++)
        bp_arr_open(&a[k]);
    size_t sent = 0;
    for (size_t i = 0; i < b->n_events; i++) {
        const bp_xp_event_t *ev = &b->events[i];
        fresh[i] = false;
        if (dup[i])
            continue;
        int si = b->season_idx[i];
        bp_arr_text(&a[0], ev->event_id);
        bp_arr_text(&a[1], ev->player_id);
        bp_arr_text(&a[2], si >= 0 ? b->seasons[si].id : NULL);
        bp_arr_int(&a[3], ev->amount);
        bp_arr_text(&a[4], ev->reason);
        bp_arr_int(&a[5], ev->occurred_at_ms);
        sent++;
    }
    for (int k = 0; k < 6; k++) {
        bp_arr_close(&a[k]);
        if (a[k].oom)
            return BP_ENOMEM;
    }
    if (sent == 0)
        return BP_OK;
    size_t *map = malloc(sent * sizeof(*map));
    if (!map)
        return BP_ENOMEM;
    for (size_t i = 0, j = 0; i < b->n_events; i++)
        if (!dup[i])
            map[j++] = i;
    const char *params[6] = {a[0].s, a[1].s, a[2].s, a[3].s, a[4].s, a[5].s};
    PGresult *res = exec_prepared(pg, ST_EVENTS, 6, params, PGRES_TUPLES_OK, &err);
    if (res) {
        for (int row = 0; row < PQntuples(res); row++) {
            long long ord = atoll(PQgetvalue(res, row, 0));
            if (ord >= 0 && (size_t)ord < sent)
                fresh[map[ord]] = true;
        }
        PQclear(res);
    }
    free(map);
    return err;
}

/* Build the LevelUp outbox payload (Avro field names; ids are restricted to JSON-safe
 * characters by bp_id_valid, so they need no escaping). */
static void levelup_json(bp_sbuf_t *out, const char *season_id, const bp_xp_event_t *cause,
                         const bp_levelup_t *lu)
{
    char id[3 * BP_ID_MAX + 32];
    if (bp_levelup_event_id(id, sizeof(id), season_id, cause->player_id, lu->new_level) != BP_OK)
        id[0] = '\0';
    bp_sb_reset(out);
    bp_sb_printf(out, "{\"eventId\":\"%s\",\"playerId\":\"%s\",", id, cause->player_id);
    bp_sb_printf(out, "\"seasonId\":\"%s\",\"previousLevel\":%d,\"newLevel\":%d,", season_id,
                 lu->previous_level, lu->new_level);
    bp_sb_printf(out, "\"totalXp\":%lld,\"causeEventId\":\"%s\",\"occurredAt\":%lld}",
                 (long long)lu->total_xp, cause->event_id, (long long)cause->occurred_at_ms);
}

/* Rewards to grant by autoClaim, collected over a batch. */
typedef struct {
    bp_grant_req_t *items;
    size_t n, cap;
} grant_reqs_t;

/* Queue the rewards a player unlocked going from @p old_level to @p new_level. */
static bp_err_t add_auto_grants(grant_reqs_t *q, const bp_season_t *s, const char *player_id,
                                int32_t old_level, int32_t new_level, bool premium)
{
    if (new_level <= old_level)
        return BP_OK;
    size_t n = bp_rewards_unlocked(s, old_level, new_level, premium, NULL, 0);
    if (q->n + n > q->cap) {
        size_t cap = q->cap ? q->cap : 64;
        while (cap < q->n + n)
            cap *= 2;
        bp_grant_req_t *p = realloc(q->items, cap * sizeof(*p));
        if (!p)
            return BP_ENOMEM;
        q->items = p;
        q->cap = cap;
    }
    size_t idx[256];
    size_t *all = n <= 256 ? idx : malloc(n * sizeof(*all));
    if (!all)
        return BP_ENOMEM;
    bp_rewards_unlocked(s, old_level, new_level, premium, all, n);
    for (size_t i = 0; i < n; i++)
        q->items[q->n++] = (bp_grant_req_t){player_id, s, all[i]};
    if (all != idx)
        free(all);
    return BP_OK;
}

bp_err_t bp_pg_apply_batch(bp_pg_t *pg, const bp_batch_t *b, bp_batch_result_t *r)
{
    bp_sbuf_t a[6] = {{0}};
    bp_sbuf_t js = {0};
    bool *dup = NULL, *fresh = NULL, *apply = NULL;
    bp_fold_t fold = {0};
    bp_levelups_t lus = {0};
    int32_t *new_level = NULL;
    grant_reqs_t grants = {0};
    bool in_tx = false;
    bp_err_t err;

    memset(r, 0, sizeof(*r));
    if ((err = bp_pg_ensure(pg)) != BP_OK)
        return err;
    size_t n = b->n_events;
    dup = calloc(n ? n : 1, sizeof(*dup));
    fresh = calloc(n ? n : 1, sizeof(*fresh));
    apply = calloc(n ? n : 1, sizeof(*apply));
    if (!dup || !fresh || !apply) {
        err = BP_ENOMEM;
        goto out;
    }
    if ((err = bp_batch_mark_duplicates(b->events, n, dup)) != BP_OK)
        goto out;

    if ((err = exec_cmd(pg, "BEGIN")) != BP_OK)
        goto out;
    in_tx = true;
    if ((err = store_offsets(pg, b, a, r)) != BP_OK)
        goto out;
    if ((err = insert_events(pg, b, dup, fresh, a)) != BP_OK)
        goto out;

    for (size_t i = 0; i < n; i++) {
        if (!fresh[i]) {
            r->duplicates++;
        } else if (b->season_idx[i] < 0) {
            r->unattributed++;
        } else {
            apply[i] = true;
            r->applied++;
        }
    }
    if ((err = bp_fold_batch(b->events, b->season_idx, apply, n, &fold)) != BP_OK)
        goto out;

    if (fold.n_groups > 0) {
        for (int k = 0; k < 3; k++)
            bp_arr_open(&a[k]);
        for (size_t g = 0; g < fold.n_groups; g++) {
            bp_arr_text(&a[0], fold.groups[g].player_id);
            bp_arr_text(&a[1], b->seasons[fold.groups[g].season_idx].id);
            bp_arr_int(&a[2], fold.groups[g].delta);
        }
        for (int k = 0; k < 3; k++) {
            bp_arr_close(&a[k]);
            if (a[k].oom) {
                err = BP_ENOMEM;
                goto out;
            }
        }
        const char *params[3] = {a[0].s, a[1].s, a[2].s};
        PGresult *res = exec_prepared(pg, ST_PROGRESS, 3, params, PGRES_TUPLES_OK, &err);
        if (!res)
            goto out;
        r->changes = calloc(fold.n_groups, sizeof(*r->changes));
        new_level = calloc(fold.n_groups, sizeof(*new_level));
        if (!r->changes || !new_level) {
            PQclear(res);
            err = BP_ENOMEM;
            goto out;
        }
        for (int row = 0; row < PQntuples(res); row++) {
            int si = bp_season_find(b->seasons, b->n_seasons, PQgetvalue(res, row, 1));
            bp_fold_group_t *g = si < 0 ? NULL : find_group(&fold, si, PQgetvalue(res, row, 0));
            if (!g)
                continue;
            int64_t total = atoll(PQgetvalue(res, row, 2));
            size_t before = lus.n;
            err = bp_fold_levelups(&b->seasons[si], b->events, &fold, g, total - g->delta, &lus);
            if (err != BP_OK) {
                PQclear(res);
                goto out;
            }
            if (b->seasons[si].auto_claim) {
                bool inserted = PQgetvalue(res, row, 4)[0] == 't';
                int32_t old_level =
                    inserted ? 0 : bp_level_for_xp(&b->seasons[si], total - g->delta).level;
                err = add_auto_grants(&grants, &b->seasons[si], g->player_id, old_level,
                                      bp_level_for_xp(&b->seasons[si], total).level,
                                      PQgetvalue(res, row, 3)[0] == 't');
                if (err != BP_OK) {
                    PQclear(res);
                    goto out;
                }
            }
            bp_progress_change_t *ch = &r->changes[r->n_changes++];
            memcpy(ch->player_id, g->player_id, strlen(g->player_id) + 1);
            ch->season_idx = si;
            ch->total_xp = total;
            bp_level_info_t li = bp_level_for_xp(&b->seasons[si], total);
            ch->level = li.level;
            new_level[g - fold.groups] = lus.n > before ? li.level : 0;
        }
        PQclear(res);
    }

    if (lus.n > 0) {
        /* Levels of the players who levelled up. */
        for (int k = 0; k < 3; k++)
            bp_arr_open(&a[k]);
        for (size_t g = 0; g < fold.n_groups; g++) {
            if (!new_level[g])
                continue;
            bp_arr_text(&a[0], fold.groups[g].player_id);
            bp_arr_text(&a[1], b->seasons[fold.groups[g].season_idx].id);
            bp_arr_int(&a[2], new_level[g]);
        }
        for (int k = 0; k < 3; k++)
            bp_arr_close(&a[k]);
        const char *lp[3] = {a[0].s, a[1].s, a[2].s};
        PGresult *res = exec_prepared(pg, ST_LEVELS, 3, lp, PGRES_COMMAND_OK, &err);
        if (!res)
            goto out;
        PQclear(res);

        /* One outbox row per level gained. */
        bp_arr_open(&a[0]);
        bp_arr_open(&a[1]);
        for (size_t i = 0; i < lus.n; i++) {
            const bp_xp_event_t *cause = &b->events[lus.items[i].cause];
            int si = b->season_idx[lus.items[i].cause];
            levelup_json(&js, b->seasons[si].id, cause, &lus.items[i]);
            if (js.oom) {
                err = BP_ENOMEM;
                goto out;
            }
            bp_arr_text(&a[0], cause->player_id);
            bp_arr_text(&a[1], js.s);
        }
        bp_arr_close(&a[0]);
        bp_arr_close(&a[1]);
        if (a[0].oom || a[1].oom) {
            err = BP_ENOMEM;
            goto out;
        }
        const char *op[3] = {b->levelup_topic, a[0].s, a[1].s};
        res = exec_prepared(pg, ST_OUTBOX_INSERT, 3, op, PGRES_COMMAND_OK, &err);
        if (!res)
            goto out;
        PQclear(res);
        r->level_ups = lus.n;
    }

    if (grants.n > 0) {
        bp_grants_t done = {0};
        err = bp_pg_grants_insert(pg, grants.items, grants.n, "auto", "worker", b->rewards_topic,
                                  &done);
        r->auto_grants = done.n;
        bp_grants_fini(&done);
        if (err != BP_OK)
            goto out;
    }

    err = exec_cmd(pg, "COMMIT");
    in_tx = false;
out:
    free(grants.items);
    if (in_tx)
        rollback(pg);
    if (err != BP_OK && err != BP_EINVAL) {
        free(r->changes);
        r->changes = NULL;
        r->n_changes = 0;
    }
    if (err != BP_OK) {
        r->applied = r->duplicates = r->unattributed = r->level_ups = 0;
    }
    for (int k = 0; k < 6; k++)
        bp_sb_free(&a[k]);
    bp_sb_free(&js);
    free(dup);
    free(fresh);
    free(apply);
    free(new_level);
    bp_fold_fini(&fold);
    bp_levelups_fini(&lus);
    return err;
}

/* ---- outbox ---- */

static void outbox_free(bp_outbox_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->rows[i].topic);
        free(b->rows[i].key);
        free(b->rows[i].payload_json);
    }
    free(b->rows);
    memset(b, 0, sizeof(*b));
}

bp_err_t bp_pg_outbox_take(bp_pg_t *pg, size_t limit, bp_outbox_batch_t *out)
{
    char lim[24];
    memset(out, 0, sizeof(*out));
    bp_err_t err = bp_pg_ensure(pg);
    if (err != BP_OK)
        return err;
    snprintf(lim, sizeof(lim), "%zu", limit);
    if ((err = exec_cmd(pg, "BEGIN")) != BP_OK)
        return err;
    const char *params[1] = {lim};
    PGresult *res = exec_prepared(pg, ST_OUTBOX_TAKE, 1, params, PGRES_TUPLES_OK, &err);
    if (!res)
        goto fail;
    size_t n = (size_t)PQntuples(res);
    if (n == 0) {
        PQclear(res);
        rollback(pg);
        return BP_OK;
    }
    out->rows = calloc(n, sizeof(*out->rows));
    if (!out->rows) {
        PQclear(res);
        err = BP_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        bp_outbox_row_t *row = &out->rows[i];
        row->id = atoll(PQgetvalue(res, (int)i, 0));
        row->topic = strdup(PQgetvalue(res, (int)i, 1));
        row->key = strdup(PQgetvalue(res, (int)i, 2));
        row->payload_json = strdup(PQgetvalue(res, (int)i, 3));
        out->n++;
        if (!row->topic || !row->key || !row->payload_json) {
            PQclear(res);
            err = BP_ENOMEM;
            goto fail;
        }
    }
    PQclear(res);
    return BP_OK;
fail:
    outbox_free(out);
    rollback(pg);
    return err;
}

bp_err_t bp_pg_outbox_finish(bp_pg_t *pg, bp_outbox_batch_t *b, size_t n_done)
{
    bp_sbuf_t arr = {0};
    bp_err_t err = BP_OK;
    if (b->n == 0)
        goto out;
    if (n_done == 0) {
        rollback(pg);
        goto out;
    }
    bp_arr_open(&arr);
    for (size_t i = 0; i < n_done && i < b->n; i++)
        bp_arr_int(&arr, b->rows[i].id);
    bp_arr_close(&arr);
    if (arr.oom) {
        rollback(pg);
        err = BP_ENOMEM;
        goto out;
    }
    const char *params[1] = {arr.s};
    PGresult *res = exec_prepared(pg, ST_OUTBOX_DELETE, 1, params, PGRES_COMMAND_OK, &err);
    if (!res) {
        rollback(pg);
        goto out;
    }
    PQclear(res);
    err = exec_cmd(pg, "COMMIT");
out:
    bp_sb_free(&arr);
    outbox_free(b);
    return err;
}

/* ---- progress reads ---- */

bp_err_t bp_pg_progress_get(bp_pg_t *pg, const char *player_id, const char *season_id,
                            bp_progress_row_t *out)
{
    memset(out, 0, sizeof(*out));
    out->level = 1;
    bp_err_t err = bp_pg_ensure(pg);
    if (err != BP_OK)
        return err;
    const char *params[2] = {player_id, season_id};
    PGresult *res = exec_prepared(pg, ST_PROGRESS_GET, 2, params, PGRES_TUPLES_OK, &err);
    if (!res)
        return err;
    if (PQntuples(res) > 0) {
        out->total_xp = atoll(PQgetvalue(res, 0, 0));
        out->level = atoi(PQgetvalue(res, 0, 1));
        out->premium = PQgetvalue(res, 0, 2)[0] == 't';
        out->updated_at_ms = atoll(PQgetvalue(res, 0, 3));
    }
    PQclear(res);
    return BP_OK;
}
