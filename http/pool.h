/** @file The HTTP threads' pool of store connections: one slot per libmicrohttpd worker,
 *  each with its own PostgreSQL connection and Redis client (neither is thread-safe).
 *
 *  Ownership: the pool owns every slot and what is in it. A request borrows one slot with
 *  bp_http_pool_acquire() and has it to itself until bp_http_pool_release(); connections
 *  are opened lazily on first use inside the borrowed slot (outside the pool's lock) and
 *  reopened after a failure, at most once per BP_HTTP_POOL_RETRY_MS per slot, so that a
 *  database that is down costs requests nothing but a quick 503. */
#ifndef BP_POOL_H
#define BP_POOL_H

#include <stdint.h>

#include "core/err.h"
#include "store/cache.h"
#include "store/pg.h"

/** Least time between two connection attempts of one slot. */
#define BP_HTTP_POOL_RETRY_MS 1000

typedef struct bp_http_pool bp_http_pool_t;
typedef struct bp_http_conn bp_http_conn_t;

/**
 * Create a pool of @p slots slots. Nothing connects yet; Redis clients are created (which
 * validates @p redis_url) but connect lazily too.
 * @param pg_dsn    borrowed, must outlive the pool
 * @param redis_url borrowed; NULL or "" = no cache (reads go to PostgreSQL)
 * @return BP_OK with *out owned by the caller (bp_http_pool_destroy), BP_EINVAL for a bad
 *         Redis URL or slots < 1, BP_ENOMEM.
 */
bp_err_t bp_http_pool_new(const char *pg_dsn, const char *redis_url, int cache_ttl_s, int slots,
                          bp_http_pool_t **out) BP_MUSTCHECK;
/** Close every connection and free. Every slot must have been released. Accepts NULL. */
void bp_http_pool_destroy(bp_http_pool_t *p);

/**
 * Borrow a slot, waiting up to @p wait_ms for one to be free.
 * @return BP_OK with *out borrowed until bp_http_pool_release(), or BP_ERETRY on timeout.
 */
bp_err_t bp_http_pool_acquire(bp_http_pool_t *p, int64_t wait_ms,
                              bp_http_conn_t **out) BP_MUSTCHECK;
/** Give a borrowed slot back. Accepts NULL. */
void bp_http_pool_release(bp_http_pool_t *p, bp_http_conn_t *c);

/**
 * The slot's PostgreSQL connection, connected (or reconnected) on demand.
 * @param now_ms monotonic-enough current time, for the retry back-off
 * @return BP_OK with *out borrowed along with the slot, or BP_ERETRY when the database
 *         cannot be reached now (or was not, less than BP_HTTP_POOL_RETRY_MS ago).
 */
bp_err_t bp_http_conn_pg(bp_http_conn_t *c, int64_t now_ms, bp_pg_t **out) BP_MUSTCHECK;

/**
 * Tell the slot that a statement on its connection failed for want of the database (the
 * caller got BP_ERETRY): its next successful connection counts as the database coming back,
 * which lets the other slots retry at once instead of waiting out BP_HTTP_POOL_RETRY_MS.
 */
void bp_http_conn_failed(bp_http_conn_t *c);

/** @return the slot's Redis client (borrowed along with the slot), or NULL without cache. */
bp_cache_t *bp_http_conn_cache(bp_http_conn_t *c);

#endif
