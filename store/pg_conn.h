/** @file For store/ modules only: the libpq connection under a bp_pg_t and the shared
 *  error handling, so each SQL module can run its own statements. */
#ifndef BP_PG_CONN_H
#define BP_PG_CONN_H

#include <libpq-fe.h>

#include "core/err.h"
#include "store/pg.h"

/** @return the connection of @p pg (borrowed; valid until bp_pg_destroy or a reconnect
 *  by bp_pg_ensure). */
PGconn *bp_pg_conn(bp_pg_t *pg);

/** Classify a failed result: BP_ERETRY for connection loss and SQLSTATE classes 08, 40,
 *  53, 57, 58 (worth retrying), else BP_EFATAL. */
bp_err_t bp_pg_classify(const PGresult *res, PGconn *conn);

/** Log a failed statement at warn: @p what and the server's message. */
void bp_pg_log_error(const char *what, PGconn *conn, const PGresult *res);

#endif
