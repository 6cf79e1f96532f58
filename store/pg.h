/** @file PostgreSQL adapter (libpq): migrations, seasons, the batch-apply transaction,
 *  partition offsets and fencing, the outbox, and progress reads. */
#ifndef BP_PG_H
#define BP_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/event.h"
#include "core/season.h"

/** One PostgreSQL connection (not thread-safe: one per thread). */
typedef struct bp_pg bp_pg_t;

/**
 * Connect to @p dsn (libpq connection string or URI).
 * @return BP_OK with *out owned by the caller (bp_pg_destroy), or BP_ERETRY when the
 *         server cannot be reached (the message is logged, secrets excluded).
 */
bp_err_t bp_pg_connect(const char *dsn, bp_pg_t **out) BP_MUSTCHECK;
/** Close and free; accepts NULL. */
void bp_pg_destroy(bp_pg_t *pg);
/** Reconnect when the connection has broken. @return BP_OK or BP_ERETRY. */
bp_err_t bp_pg_ensure(bp_pg_t *pg) BP_MUSTCHECK;
/** @return true when a trivial query succeeds (used by /ready). */
bool bp_pg_ping(bp_pg_t *pg);

/** The text parameters of one page of a list read newest first below a cursor (keyset
 *  pagination: store/analytics.c audit, store/progress.c history). */
typedef struct {
    char before[24]; /**< the cursor, or the caller's stand-in when there is none */
    char limit[24];  /**< limit + 1: the extra row tells whether another page follows */
    size_t size;     /**< the limit itself: rows a page holds at most */
    size_t take;     /**< rows kept (bp_pg_page_rows) */
    bool more;       /**< another page follows (bp_pg_page_rows) */
} bp_pg_page_t;

/**
 * Start reading one page: check @p limit (1..@p limit_max) and the cursor @p before (0: the
 * first page, else > 0), make sure the connection is up, and format the parameters into
 * @p out (@p before as text, or @p first when @p before is 0).
 * @return BP_OK; BP_EINVAL when the limit or the cursor is out of range (nothing else
 *         done); BP_ERETRY when the database is unreachable.
 */
bp_err_t bp_pg_page_begin(bp_pg_t *pg, int64_t before, int64_t first, size_t limit,
                          size_t limit_max, bp_pg_page_t *out) BP_MUSTCHECK;

/**
 * Keep the rows of a page from the @p n_rows its read returned (it asked for one more than
 * @p page holds): *items becomes a zeroed array of the kept rows, @p item_size bytes each
 * (the caller frees it; NULL when none is kept), page->take their number and page->more
 * whether another page follows.
 * @return BP_OK, or BP_ENOMEM (*items NULL, page->take 0).
 */
bp_err_t bp_pg_page_rows(bp_pg_page_t *page, size_t n_rows, size_t item_size,
                         void **items) BP_MUSTCHECK;

/**
 * Apply every migration in @p sql_dir (files NNN_name.sql, in order) not yet recorded in
 * schema_migrations, each in its own transaction, logging each one applied.
 * @return BP_OK, BP_ERETRY (server unreachable) or BP_EFATAL (a migration failed; it is
 *         rolled back and named in the log).
 */
bp_err_t bp_pg_migrate(bp_pg_t *pg, const char *sql_dir) BP_MUSTCHECK;

/**
 * Insert season @p s with its definition JSON @p json (kept verbatim for the API).
 * @return BP_OK; BP_EINVAL with @p why set when the id exists or the window overlaps an
 *         existing season (naming it); BP_ERETRY when the database is unreachable.
 */
bp_err_t bp_pg_season_insert(bp_pg_t *pg, const bp_season_t *s, const char *json, char *why,
                             size_t why_len) BP_MUSTCHECK;

/** All seasons ordered by start time. Owns its arrays; release with bp_season_list_fini. */
typedef struct {
    bp_season_t *items;
    char **json; /**< definition JSON of each season, as imported */
    size_t n;
} bp_season_list_t;

/** Load every season. @return BP_OK, BP_ERETRY or BP_ENOMEM (out left empty on error). */
bp_err_t bp_pg_seasons_load(bp_pg_t *pg, bp_season_list_t *out) BP_MUSTCHECK;
void bp_season_list_fini(bp_season_list_t *l);

/** Next offset to consume and the fencing epoch of one (topic, partition). */
typedef struct {
    const char *topic; /**< borrowed; set by the caller */
    int32_t partition;
    int64_t next_offset; /**< -1 when nothing was ever stored: start from the beginning */
    int64_t epoch;       /**< fencing token taken at assignment */
} bp_partition_state_t;

/**
 * Claim partitions for this worker at assignment: bump each partition's epoch (so any
 * previous owner is fenced out) and read its stored next offset.
 * @param parts in: partition numbers; out: next_offset and epoch filled
 * @return BP_OK or BP_ERETRY.
 */
bp_err_t bp_pg_partitions_claim(bp_pg_t *pg, const char *group, const char *topic,
                                bp_partition_state_t *parts, size_t n) BP_MUSTCHECK;

/** A progress row changed by a batch, for the cache update after commit. */
typedef struct {
    char player_id[BP_ID_MAX + 1];
    int season_idx;
    int64_t total_xp;
    int32_t level;
} bp_progress_change_t;

/** One batch to apply. Events are decoded and valid; all arrays are borrowed. */
typedef struct {
    const char *group;
    const bp_xp_event_t *events;
    const int *season_idx; /**< per event; -1: outside every season (recorded only) */
    size_t n_events;
    const bp_season_t *seasons;
    size_t n_seasons;
    const bp_partition_state_t *offsets; /**< next offset to store per partition + epoch */
    size_t n_offsets;
    const char *levelup_topic; /**< outbox topic of the LevelUp events */
    const char *rewards_topic; /**< outbox topic of the RewardGrant events (autoClaim) */
} bp_batch_t;

/** What a batch did. Owns `changes`; release with bp_batch_result_fini(). */
typedef struct {
    size_t applied;      /**< events that changed progress */
    size_t duplicates;   /**< events already processed (here or in an earlier batch) */
    size_t unattributed; /**< new events outside every season */
    size_t level_ups;    /**< LevelUp rows written to the outbox */
    size_t auto_grants;  /**< rewards granted by autoClaim */
    bp_progress_change_t *changes;
    size_t n_changes;
    bp_partition_state_t *fenced; /**< partitions whose epoch no longer matches (BP_EINVAL) */
    size_t n_fenced;
    double commit_seconds; /**< time the COMMIT took (BP_OK only) */
} bp_batch_result_t;
void bp_batch_result_fini(bp_batch_result_t *r);

/**
 * Apply a batch in one transaction: fence check and offset store, event-id dedupe,
 * progress upsert (with the days each player was active), level updates, LevelUp outbox
 * rows, autoClaim grants (store/rewards.h bp_pg_grants_insert), analytics counters; then
 * COMMIT.
 * @return BP_OK (committed); BP_EINVAL when some partitions are fenced (rolled back,
 *         their numbers in r->fenced: drop their events and retry the rest); BP_ERETRY
 *         when the database failed (rolled back, retry the same batch later); BP_ENOMEM.
 */
bp_err_t bp_pg_apply_batch(bp_pg_t *pg, const bp_batch_t *b, bp_batch_result_t *r) BP_MUSTCHECK;

/** One outbox row: an event to produce, stored as JSON with Avro field names. */
typedef struct {
    int64_t id;
    char *topic;
    char *key;
    char *payload_json;
} bp_outbox_row_t;

typedef struct {
    bp_outbox_row_t *rows;
    size_t n;
} bp_outbox_batch_t;

/**
 * Begin a transaction and lock up to @p limit outbox rows (oldest first, skipping rows
 * another relay holds). On BP_OK the transaction stays open until bp_pg_outbox_finish.
 * @return BP_OK (out->n may be 0, transaction then already closed), BP_ERETRY.
 */
bp_err_t bp_pg_outbox_take(bp_pg_t *pg, size_t limit, bp_outbox_batch_t *out) BP_MUSTCHECK;
/**
 * Delete the first @p n_done rows of @p b (those produced) and COMMIT; n_done 0 rolls back.
 * Frees @p b's contents either way. @return BP_OK or BP_ERETRY.
 */
bp_err_t bp_pg_outbox_finish(bp_pg_t *pg, bp_outbox_batch_t *b, size_t n_done) BP_MUSTCHECK;

/** Count the outbox rows, up to @p cap (a backlog gauge). @return BP_OK or BP_ERETRY. */
bp_err_t bp_pg_outbox_count(bp_pg_t *pg, int64_t cap, int64_t *out) BP_MUSTCHECK;

/** Stored progress of a player in a season. */
typedef struct {
    int64_t total_xp;
    int32_t level;
    bool premium;
    int64_t updated_at_ms; /**< 0 when the player has no row yet */
    int64_t earned_xp;     /**< XP from events; total_xp = earned_xp + paid_xp */
    int64_t paid_xp;       /**< XP bought (level purchases) */
} bp_progress_row_t;

/**
 * Read one player's progress in one season.
 * @return BP_OK (row zeroed, level 1, when the player has none), BP_ERETRY.
 */
bp_err_t bp_pg_progress_get(bp_pg_t *pg, const char *player_id, const char *season_id,
                            bp_progress_row_t *out) BP_MUSTCHECK;

#endif
