/** @file Progress in PostgreSQL beyond the worker's batch: level purchases (paid XP, LevelUp
 *  outbox rows and autoClaim grants in one transaction, idempotent by transactionId) and a
 *  player's XP history, cursor-paginated. */
#ifndef BP_PROGRESS_H
#define BP_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/event.h"
#include "core/season.h"
#include "store/pg.h"
#include "store/rewards.h"

/** The outcome of a level purchase. */
typedef enum {
    BP_PURCHASE_DONE = 0,  /**< recorded and applied now */
    BP_PURCHASE_DUPLICATE, /**< this transactionId was recorded before for the same player,
                            *   season and count: nothing changed (idempotent replay) */
    BP_PURCHASE_CONFLICT,  /**< this transactionId was recorded for another player, season
                            *   or count: refused, nothing changed (HTTP 409) */
    BP_PURCHASE_MAX_LEVEL  /**< the player is at max level already: nothing changed (422) */
} bp_purchase_result_t;

/** One level purchase; strings and the season are borrowed for the call. */
typedef struct {
    const bp_season_t *season;
    const char *player_id;
    const char *transaction_id; /**< the idempotency key; also the LevelUps' causeEventId */
    int32_t count;              /**< levels to buy, >= 1 (capped at the max level) */
    const char *actor;          /**< who buys (the token's subject), for the audit of grants */
    const char *levelup_topic;  /**< outbox topic of the LevelUp events */
    const char *rewards_topic;  /**< outbox topic of the RewardGrant events (autoClaim) */
    int64_t now_ms;             /**< the LevelUps' occurredAt */
} bp_level_purchase_t;

/**
 * Buy levels as paid XP in one transaction: lock (or create) the player's progress row,
 * compute the paid XP with bp_level_purchase_xp(), record the purchase in level_purchases
 * (the transactionId's primary key makes it happen once), add the XP to paid_xp and
 * total_xp and set the level, write one LevelUp outbox row per level gained (eventId from
 * bp_levelup_event_id, causeEventId = transactionId, the JSON the worker writes), and with
 * the season's autoClaim grant the rewards unlocked (bp_pg_grants_insert, source "auto");
 * then COMMIT. Anything but BP_PURCHASE_DONE is rolled back.
 * @param result out: what happened (meaningful on BP_OK)
 * @param row    out on BP_OK with DONE or DUPLICATE: the player's progress now
 * @param out    when not NULL, the rewards granted by autoClaim are appended (DONE only)
 * @return BP_OK (see result); BP_EINVAL when count < 1; BP_ERETRY / BP_EFATAL on database
 *         errors (logged, rolled back); BP_ENOMEM.
 */
bp_err_t bp_pg_levels_buy(bp_pg_t *pg, const bp_level_purchase_t *p, bp_purchase_result_t *result,
                          bp_progress_row_t *row, bp_grants_t *out) BP_MUSTCHECK;

/**
 * Read the progress of many (player, season) pairs in one statement (GET /progress under
 * load: one round trip and one index scan per pair instead of a statement each).
 * @param players, seasons  @p n ids each (pair i = players[i] in seasons[i]; repeats allowed)
 * @param rows     out: @p n rows, as bp_pg_progress_get() fills them (a pair without a row
 *                 is zero at level 1)
 * @return BP_OK; BP_ERETRY / BP_EFATAL on database errors (logged; rows then meaningless);
 *         BP_ENOMEM.
 */
bp_err_t bp_pg_progress_get_many(bp_pg_t *pg, const char *const *players,
                                 const char *const *seasons, size_t n,
                                 bp_progress_row_t *rows) BP_MUSTCHECK;

/** Most items one history page may hold. */
#define BP_HISTORY_LIMIT_MAX 100

/** One applied XP event of a player. */
typedef struct {
    int64_t seq; /**< processing order; the cursor of the page after this item */
    char event_id[BP_ID_MAX + 1];
    char season_id[BP_ID_MAX + 1];
    int32_t amount;         /**< as sent */
    int32_t applied_amount; /**< as counted (after boosts and caps); = amount for now */
    int32_t boost_pct;      /**< 100 = no boost */
    char reason[BP_REASON_MAX + 1];
    int64_t occurred_at_ms;
    int64_t processed_at_ms;
} bp_history_item_t;

/** One page of history, newest first. Owns items; release with bp_history_fini(). */
typedef struct {
    bp_history_item_t *items;
    size_t n;
    int64_t next_seq; /**< > 0: older items remain, pass it as before_seq; 0: last page */
} bp_history_t;
void bp_history_fini(bp_history_t *h);

/**
 * Read a page of @p player_id's applied XP events, newest (last processed) first. Events
 * recorded outside every season are not listed.
 * @param season_id  NULL: every season; else only that season's events
 * @param before_seq 0: from the newest; else only events with seq < before_seq (a cursor)
 * @param limit      1..BP_HISTORY_LIMIT_MAX
 * @return BP_OK with *out filled (owned by the caller); BP_EINVAL for a limit out of range;
 *         BP_ERETRY / BP_EFATAL on database errors; BP_ENOMEM. On error *out is empty.
 */
bp_err_t bp_pg_history(bp_pg_t *pg, const char *player_id, const char *season_id,
                       int64_t before_seq, size_t limit, bp_history_t *out) BP_MUSTCHECK;

#endif
