/** @file For store/ modules only: the libpq connection under a bp_pg_t and the shared
 *  error handling, so each SQL module can run its own statements. */
#ifndef BP_PG_CONN_H
#define BP_PG_CONN_H

#include <libpq-fe.h>

#include "core/err.h"
#include "store/pg.h"

/** A statement prepared under @p name on each connection at first use. Tables of these
 *  are static const arrays in the module that runs them. */
typedef struct {
    const char *name; /**< unique across the process */
    const char *sql;
} bp_pg_stmt_t;

/**
 * Execute @p st (preparing it first on this connection if needed) with text @p params.
 * @return the result (caller PQclears) when its status is @p want; else NULL with *err
 *         set (BP_ERETRY or BP_EFATAL, see bp_pg_classify) and the error logged.
 */
PGresult *bp_pg_exec_stmt(bp_pg_t *pg, const bp_pg_stmt_t *st, int n, const char *const *params,
                          ExecStatusType want, bp_err_t *err);

/**
 * Execute @p sql once with text @p params (for statements run rarely; hot ones go through
 * bp_pg_exec_stmt). @p what names it in the log.
 * @return the result (caller PQclears) when its status is @p want; else NULL with *err
 *         set (bp_pg_classify, BP_ENOMEM when libpq could not allocate) and the error logged.
 */
PGresult *bp_pg_exec_params(bp_pg_t *pg, const char *what, const char *sql, int n,
                            const char *const *params, ExecStatusType want, bp_err_t *err);

/** Run a command without results (BEGIN, COMMIT, ...). A COMMIT that the server turned
 *  into a ROLLBACK counts as failed (BP_ERETRY). @return BP_OK, or the classification. */
bp_err_t bp_pg_exec_cmd(bp_pg_t *pg, const char *sql);

/** ROLLBACK, ignoring the outcome (the connection may be gone). */
void bp_pg_rollback(bp_pg_t *pg);

/** @return the connection of @p pg (borrowed; valid until bp_pg_destroy or a reconnect
 *  by bp_pg_ensure). */
PGconn *bp_pg_conn(bp_pg_t *pg);

/** Classify a failed result: BP_ERETRY for connection loss and SQLSTATE classes 08, 40,
 *  53, 57, 58 (worth retrying), else BP_EFATAL. */
bp_err_t bp_pg_classify(const PGresult *res, PGconn *conn);

/** Log a failed statement at warn: @p what and the server's message. */
void bp_pg_log_error(const char *what, PGconn *conn, const PGresult *res);

#endif
