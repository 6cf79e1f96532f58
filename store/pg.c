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
#include "store/pg_conn.h"
#include "store/pgtext.h"
#include "store/season_json.h"

#define PREPARED_MAX 64

struct bp_pg {
    PGconn *conn;
    char *dsn;
    /* statements prepared on this connection (forgotten on reconnect) */
    const bp_pg_stmt_t *prepared[PREPARED_MAX];
    size_t n_prepared;
};

/* ---- statements, prepared on a connection at first use ---- */
enum { ST_CLAIM, ST_OUTBOX_TAKE, ST_OUTBOX_DELETE, ST_OUTBOX_COUNT, ST_PROGRESS_GET, ST_COUNT };

static const bp_pg_stmt_t statements[ST_COUNT] = {
    [ST_CLAIM] = {"claim", "INSERT INTO partition_offsets (consumer_group, topic, partition, epoch)"
                           " SELECT $1, $2, unnest($3::int[]), 1"
                           " ON CONFLICT (consumer_group, topic, partition) DO UPDATE"
                           "   SET epoch = partition_offsets.epoch + 1"
                           " RETURNING partition, next_offset, epoch"},
    [ST_OUTBOX_TAKE] = {"outbox_take",
                        "SELECT id, topic, key, payload::text FROM outbox ORDER BY id"
                        " LIMIT $1 FOR UPDATE SKIP LOCKED"},
    [ST_OUTBOX_DELETE] = {"outbox_delete", "DELETE FROM outbox WHERE id = ANY($1::bigint[])"},
    /* Capped, so a huge backlog costs a bounded scan. */
    [ST_OUTBOX_COUNT] = {"outbox_count", "SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT $1) o"},
    [ST_PROGRESS_GET] = {"progress_get",
                         "SELECT total_xp, level, premium,"
                         " (extract(epoch FROM updated_at) * 1000)::bigint, earned_xp, paid_xp"
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
    pg->n_prepared = 0;
    return BP_OK;
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

bp_err_t bp_pg_page_begin(bp_pg_t *pg, int64_t before, int64_t first, size_t limit,
                          size_t limit_max, bp_pg_page_t *out)
{
    if (limit < 1 || limit > limit_max || before < 0)
        return BP_EINVAL;
    bp_err_t err = bp_pg_ensure(pg);
    if (err != BP_OK)
        return err;
    snprintf(out->before, sizeof(out->before), "%lld", (long long)(before > 0 ? before : first));
    snprintf(out->limit, sizeof(out->limit), "%zu", limit + 1);
    out->size = limit;
    return BP_OK;
}

bp_err_t bp_pg_page_rows(bp_pg_page_t *page, size_t n_rows, size_t item_size, void **items)
{
    page->more = n_rows > page->size;
    page->take = page->more ? page->size : n_rows;
    *items = NULL;
    if (page->take > 0 && !(*items = calloc(page->take, item_size))) {
        page->take = 0;
        return BP_ENOMEM;
    }
    return BP_OK;
}

bp_err_t bp_pg_exec_cmd(bp_pg_t *pg, const char *sql)
{
    /* PQexec, not PQexecParams: a migration file holds several statements. */
    PGresult *res = PQexec(pg->conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        char what[64];
        snprintf(what, sizeof(what), "%.*s", (int)strcspn(sql, "\n"), sql);
        bp_pg_log_error(what, pg->conn, res);
        bp_err_t err =
            res || PQstatus(pg->conn) == CONNECTION_BAD ? bp_pg_classify(res, pg->conn) : BP_ENOMEM;
        PQclear(res);
        return err;
    }
    bp_err_t err = BP_OK;
    /* COMMIT of a transaction that had failed answers "ROLLBACK": an error too. */
    if (strcmp(sql, "COMMIT") == 0 && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        BP_LOG_WARN("postgresql error", "\"op\":\"COMMIT\",\"error\":\"rolled back\"");
        err = BP_ERETRY;
    }
    PQclear(res);
    return err;
}

PGresult *bp_pg_exec_params(bp_pg_t *pg, const char *what, const char *sql, int n,
                            const char *const *params, ExecStatusType want, bp_err_t *err)
{
    PGresult *res = PQexecParams(pg->conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == want) {
        *err = BP_OK;
        return res;
    }
    bp_pg_log_error(what, pg->conn, res);
    *err = res || PQstatus(pg->conn) == CONNECTION_BAD ? bp_pg_classify(res, pg->conn) : BP_ENOMEM;
    PQclear(res);
    return NULL;
}

void bp_pg_rollback(bp_pg_t *pg)
{
    PGresult *res = PQexec(pg->conn, "ROLLBACK");
    PQclear(res);
}

PGresult *bp_pg_exec_stmt(bp_pg_t *pg, const bp_pg_stmt_t *st, int n, const char *const *params,
                          ExecStatusType want, bp_err_t *err)
{
    bool prepared = false;
    for (size_t i = 0; i < pg->n_prepared && !prepared; i++)
        prepared = pg->prepared[i] == st;
    if (!prepared) {
        PGresult *p = PQprepare(pg->conn, st->name, st->sql, 0, NULL);
        if (PQresultStatus(p) != PGRES_COMMAND_OK) {
            bp_pg_log_error(st->name, pg->conn, p);
            *err = bp_pg_classify(p, pg->conn);
            PQclear(p);
            return NULL;
        }
        PQclear(p);
        if (pg->n_prepared < PREPARED_MAX)
            pg->prepared[pg->n_prepared++] = st;
    }
    PGresult *res = PQexecPrepared(pg->conn, st->name, n, params, NULL, NULL, 0);
    if (PQresultStatus(res) != want) {
        bp_pg_log_error(st->name, pg->conn, res);
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
    bp_err_t err = bp_pg_exec_cmd(pg, "BEGIN");
    if (err != BP_OK)
        goto out;
    err = bp_pg_exec_cmd(pg, sql);
    if (err != BP_OK) {
        BP_LOG_ERROR("migration failed, rolled back", "\"file\":\"%s\"", name);
        bp_pg_rollback(pg);
        goto out;
    }
    PGresult *res =
        PQexecParams(pg->conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                     NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        bp_pg_log_error("record migration", pg->conn, res);
        err = bp_pg_classify(res, pg->conn);
        PQclear(res);
        bp_pg_rollback(pg);
        goto out;
    }
    PQclear(res);
    err = bp_pg_exec_cmd(pg, "COMMIT");
    if (err == BP_OK)
        BP_LOG_INFO("migration applied", "\"file\":\"%s\"", name);
out:
    free(sql);
    return err;
}

/* Ids are compared in every index lookup of every batch and read; under a libc collation
 * (C.UTF-8, en_US.UTF-8, ...) each comparison goes through strcoll. A database created with
 * LC_COLLATE 'C' compares bytes: PostgreSQL's CPU per ingested event 21.3 -> 17.4 us on the
 * bench (docs/benchmarks.md, "Ingest"). Ids are opaque, so nothing depends on the order;
 * a warning, once per migrate, names the way out. */
static void warn_collation(bp_pg_t *pg)
{
    PGresult *res = PQexec(pg->conn, "SELECT datcollate FROM pg_database"
                                     " WHERE datname = current_database()");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        const char *c = PQgetvalue(res, 0, 0);
        char cb[128];
        if (strcmp(c, "C") != 0 && strcmp(c, "POSIX") != 0)
            BP_LOG_WARN("database collation is not C: id comparisons cost more (create the"
                        " database with TEMPLATE template0 LC_COLLATE 'C')",
                        "\"collation\":\"%s\"", bp_log_str(cb, sizeof(cb), c));
    }
    PQclear(res);
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
    err = bp_pg_exec_cmd(pg, "CREATE TABLE IF NOT EXISTS schema_migrations ("
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
        warn_collation(pg);
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
    PGresult *res = bp_pg_exec_stmt(pg, &statements[ST_CLAIM], 3, params, PGRES_TUPLES_OK, &err);
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
    if ((err = bp_pg_exec_cmd(pg, "BEGIN")) != BP_OK)
        return err;
    const char *params[1] = {lim};
    PGresult *res =
        bp_pg_exec_stmt(pg, &statements[ST_OUTBOX_TAKE], 1, params, PGRES_TUPLES_OK, &err);
    if (!res)
        goto fail;
    size_t n = (size_t)PQntuples(res);
    if (n == 0) {
        PQclear(res);
        bp_pg_rollback(pg);
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
    bp_pg_rollback(pg);
    return err;
}

bp_err_t bp_pg_outbox_finish(bp_pg_t *pg, bp_outbox_batch_t *b, size_t n_done)
{
    bp_sbuf_t arr = {0};
    bp_err_t err = BP_OK;
    if (b->n == 0)
        goto out;
    if (n_done == 0) {
        bp_pg_rollback(pg);
        goto out;
    }
    bp_arr_open(&arr);
    for (size_t i = 0; i < n_done && i < b->n; i++)
        bp_arr_int(&arr, b->rows[i].id);
    bp_arr_close(&arr);
    if (arr.oom) {
        bp_pg_rollback(pg);
        err = BP_ENOMEM;
        goto out;
    }
    const char *params[1] = {arr.s};
    PGresult *res =
        bp_pg_exec_stmt(pg, &statements[ST_OUTBOX_DELETE], 1, params, PGRES_COMMAND_OK, &err);
    if (!res) {
        bp_pg_rollback(pg);
        goto out;
    }
    PQclear(res);
    err = bp_pg_exec_cmd(pg, "COMMIT");
out:
    bp_sb_free(&arr);
    outbox_free(b);
    return err;
}

bp_err_t bp_pg_outbox_count(bp_pg_t *pg, int64_t cap, int64_t *out)
{
    char lim[24];
    bp_err_t err = bp_pg_ensure(pg);
    if (err != BP_OK)
        return err;
    snprintf(lim, sizeof(lim), "%lld", (long long)cap);
    const char *params[1] = {lim};
    PGresult *res =
        bp_pg_exec_stmt(pg, &statements[ST_OUTBOX_COUNT], 1, params, PGRES_TUPLES_OK, &err);
    if (!res)
        return err;
    *out = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return BP_OK;
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
    PGresult *res =
        bp_pg_exec_stmt(pg, &statements[ST_PROGRESS_GET], 2, params, PGRES_TUPLES_OK, &err);
    if (!res)
        return err;
    if (PQntuples(res) > 0) {
        out->total_xp = atoll(PQgetvalue(res, 0, 0));
        out->level = atoi(PQgetvalue(res, 0, 1));
        out->premium = PQgetvalue(res, 0, 2)[0] == 't';
        out->updated_at_ms = atoll(PQgetvalue(res, 0, 3));
        out->earned_xp = atoll(PQgetvalue(res, 0, 4));
        out->paid_xp = atoll(PQgetvalue(res, 0, 5));
    }
    PQclear(res);
    return BP_OK;
}
