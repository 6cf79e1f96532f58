/** @file Batching lanes for deferred requests: threads that each own a store slot (a
 *  PostgreSQL connection and a Redis client) and run the jobs queued meanwhile as one batch,
 *  so that many requests share one round trip, one statement or one COMMIT (group commit).
 *
 *  There is no timer: a lane takes everything that arrived while it was busy, so batches
 *  grow with the load by themselves and an idle lane answers a lone request at once.
 *
 *  Ownership: a job is embedded in a struct of the submitter's; once submitted it belongs to
 *  the lane until the batch function has completed it (the lane never touches it after). */
#ifndef BP_BATCHER_H
#define BP_BATCHER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "http/pool.h"

/** Intrusive queue link; embed it in the job's own struct. */
typedef struct bp_http_job {
    struct bp_http_job *next;
} bp_http_job_t;

/**
 * Runs one batch on a lane's thread. Must complete every job of @p jobs[0..n) (in arrival
 * order); @p conn is the lane's slot, held by the lane for its lifetime (connect PostgreSQL
 * with bp_http_conn_pg, which backs off after a failure).
 */
typedef void (*bp_http_batch_fn)(void *ctx, bp_http_conn_t *conn, bp_http_job_t **jobs, size_t n);

typedef struct bp_http_batcher bp_http_batcher_t;

/**
 * Start @p lanes threads named @p name, each with its own slot (nothing connects yet).
 * @param max_batch most jobs handed to one call of @p fn
 * @param pg_dsn, redis_url borrowed, must outlive the batcher (redis_url NULL or "": none)
 * @return BP_OK with *out owned by the caller (bp_http_batcher_destroy), BP_EINVAL (bad
 *         Redis URL or arguments), BP_ENOMEM, BP_EFATAL (a thread could not start).
 */
bp_err_t bp_http_batcher_new(const char *name, int lanes, size_t max_batch, const char *pg_dsn,
                             const char *redis_url, int cache_ttl_s, bp_http_batch_fn fn, void *ctx,
                             bp_http_batcher_t **out) BP_MUSTCHECK;

/** Queue @p job. @return false once the batcher is closing (the caller keeps the job and
 *  must complete it itself). Thread-safe. */
bool bp_http_batcher_submit(bp_http_batcher_t *b, bp_http_job_t *job) BP_MUSTCHECK;

/** Refuse new jobs, run every job already queued, and join the lanes. Idempotent. */
void bp_http_batcher_close(bp_http_batcher_t *b);

/** Close (if not yet), then free. Accepts NULL. */
void bp_http_batcher_destroy(bp_http_batcher_t *b);

#endif
