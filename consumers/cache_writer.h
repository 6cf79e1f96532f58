/** @file The worker's Redis writes on a thread of their own: the progress a batch committed
 *  goes to Redis (store/cache.h) while the worker goes on with the next batch. */
#ifndef BP_CACHE_WRITER_H
#define BP_CACHE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/season.h"
#include "store/pg.h"

typedef struct bp_cache_writer bp_cache_writer_t;

/**
 * Start the thread with its own cache client (bp_cache_new: connects lazily). At most
 * @p max_queued batches wait for it; bp_cache_writer_put blocks beyond (so a slow Redis
 * slows the worker down instead of growing memory; a down one fails fast).
 * @return BP_OK with *out owned by the caller (bp_cache_writer_stop); BP_EINVAL for a bad
 *         URL; BP_ENOMEM.
 */
bp_err_t bp_cache_writer_start(const char *redis_url, int ttl_s, size_t max_queued,
                               bp_cache_writer_t **out) BP_MUSTCHECK;

/**
 * Queue the progress rows of one committed batch for Redis (bp_cache_put_progress; failed
 * writes are remembered and written again, see there). Takes ownership of *changes (set to
 * NULL); the ids of @p seasons (which changes[i].season_idx index) are copied.
 * @return BP_OK, or BP_ENOMEM (the rows are dropped: the cache fills from PostgreSQL).
 */
bp_err_t bp_cache_writer_put(bp_cache_writer_t *cw, bp_progress_change_t **changes, size_t n,
                             const bp_season_t *seasons, size_t n_seasons,
                             int64_t now_ms) BP_MUSTCHECK;

/** Write what is queued (Redis permitting), stop the thread and free. Accepts NULL. */
void bp_cache_writer_stop(bp_cache_writer_t *cw);

#endif
