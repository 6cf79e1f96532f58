/** @file Rewards in PostgreSQL: a player's reward states, claims, premium passes, level
 *  purchases, the audit log, and the one statement that grants rewards (claim row + audit
 *  row + RewardGrant outbox row, never twice thanks to the claims' primary key). */
#ifndef BP_REWARDS_H
#define BP_REWARDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/reward.h"
#include "core/season.h"
#include "store/pg.h"

/** A reward to grant to a player (one row of the grant statement). */
typedef struct {
    const char *player_id;
    const bp_season_t *season;
    size_t reward_idx; /**< into season->rewards */
} bp_grant_req_t;

/** A reward to grant at an explicit level (one row of the grant statement): what
 *  bp_grant_req_t resolves to, and how overflow bonus levels are granted (the season's
 *  overflow_reward at level max_level + k). */
typedef struct {
    const char *player_id;
    const bp_season_t *season;
    const bp_reward_t *reward; /**< borrowed; its level field is ignored */
    int32_t level;             /**< the level granted at (>= 1): claim row, grant id, event */
} bp_grant_row_t;

/** A reward actually granted by a call (not granted before). */
typedef struct {
    char grant_id[4 * BP_ID_MAX + 32];
    char player_id[BP_ID_MAX + 1];
    int32_t level;
    bp_tier_t tier;
    char reward_id[BP_ID_MAX + 1];
    char item_id[BP_ID_MAX + 1];
    int32_t quantity;
    int64_t granted_at_ms;
} bp_grant_t;

/** Granted rewards; owns items; release with bp_grants_fini(). Zero-initialise. */
typedef struct {
    bp_grant_t *items;
    size_t n;
} bp_grants_t;
void bp_grants_fini(bp_grants_t *g);

/**
 * Grant rewards in one statement, inside the caller's open transaction (or on its own):
 * inserts the reward_claims rows (ON CONFLICT DO NOTHING: what was granted before is
 * skipped), an audit_log row and a RewardGrant outbox row (topic @p topic, key playerId,
 * payload with the Avro field names of reward_grant.avsc and `source`) for each new one.
 * @param source "claim", "auto", "premium" or "season-end" (also the audit action)
 * @param actor  who: the token's subject, or "worker"
 * @param out    when not NULL, the rewards newly granted are appended
 * @return BP_OK; BP_ERETRY / BP_EFATAL on database errors (logged; the caller rolls
 *         back); BP_ENOMEM.
 */
bp_err_t bp_pg_grants_insert(bp_pg_t *pg, const bp_grant_req_t *reqs, size_t n, const char *source,
                             const char *actor, const char *topic, bp_grants_t *out) BP_MUSTCHECK;

/**
 * bp_pg_grants_insert() for rows naming their reward and level explicitly (e.g. overflow
 * bonus levels, whose reward is not in season->rewards). Same statement, same guarantees:
 * the claims' primary key (player, season, level, tier, rewardId) skips what was granted.
 * @return as bp_pg_grants_insert(); BP_EFATAL for a row without player, season or reward,
 *         or with level < 1 (a caller's bug: nothing sent).
 */
bp_err_t bp_pg_grant_rows_insert(bp_pg_t *pg, const bp_grant_row_t *rows, size_t n,
                                 const char *source, const char *actor, const char *topic,
                                 bp_grants_t *out) BP_MUSTCHECK;

/** A player's standing in a season, for reward states. */
typedef struct {
    int64_t total_xp;
    int32_t level;
    bool premium;
    bool *claimed; /**< n_rewards flags, indexed like season->rewards; heap */
    size_t n_rewards;
} bp_player_rewards_t;
void bp_player_rewards_fini(bp_player_rewards_t *p);

/**
 * Read @p player_id's level, premium flag and claimed rewards in @p s (a player without a
 * row is at level 1, not premium, nothing claimed).
 * @return BP_OK, BP_ERETRY, BP_ENOMEM.
 */
bp_err_t bp_pg_player_rewards(bp_pg_t *pg, const bp_season_t *s, const char *player_id,
                              bp_player_rewards_t *out) BP_MUSTCHECK;

/**
 * Claim every reward at (@p level, @p tier) in one transaction: lock the player's progress
 * row (creating it at level 1 if absent), decide with bp_claim_decide(), and on
 * BP_CLAIM_OK grant them with bp_pg_grants_insert(source "claim"). Concurrent claims of the
 * same reward serialise on the row lock and the claims' primary key: exactly one wins.
 * @param verdict out: BP_CLAIM_OK or why not (nothing written then)
 * @param out     the grants made (on BP_CLAIM_OK)
 * @return BP_OK (see verdict), BP_ERETRY, BP_EFATAL, BP_ENOMEM.
 */
bp_err_t bp_pg_claim(bp_pg_t *pg, const bp_season_t *s, const char *player_id, int32_t level,
                     bp_tier_t tier, const char *actor, const char *topic, int64_t now_ms,
                     bp_claim_verdict_t *verdict, bp_grants_t *out) BP_MUSTCHECK;

/** One claim of a batch (bp_pg_claim_batch): what is claimed, then the outcome. */
typedef struct {
    const char *player_id;
    int32_t level;
    bp_tier_t tier;
    const char *actor;          /**< who claims: the token's subject (audit rows) */
    bp_claim_verdict_t verdict; /**< out: BP_CLAIM_OK or why not */
    bp_grants_t grants;         /**< out: the grants of this claim; zero-initialise, release
                                 *   with bp_grants_fini() */
} bp_claim_req_t;

/**
 * Many claims in season @p s in one transaction, so that they share one COMMIT (one WAL
 * flush: group commit). Each claim is decided and written exactly as bp_pg_claim() would,
 * one after another in array order: a claim of what an earlier claim of the batch won is
 * BP_CLAIM_ALREADY_CLAIMED, and only what is won is written (a progress row created for a
 * player who wins nothing is removed again). The players' rows are created and locked in
 * player order, so concurrent batches wait for one another instead of deadlocking.
 * @param at_commit out: true when the error came from COMMIT (its outcome is unknown if the
 *                  connection was lost: do not run these claims again as new ones)
 * @return BP_OK with every verdict set (and the grants of the won ones). Otherwise nothing
 *         was written (rolled back; with *at_commit, maybe committed) and verdicts are
 *         meaningless: BP_ERETRY (e.g. a deadlock with a worker batch, or the database is
 *         gone: claim them one by one), BP_EFATAL, BP_ENOMEM.
 */
bp_err_t bp_pg_claim_batch(bp_pg_t *pg, const bp_season_t *s, bp_claim_req_t *reqs, size_t n,
                           const char *topic, int64_t now_ms, bool *at_commit) BP_MUSTCHECK;

/**
 * Claim every available reward of the player in @p s in one transaction.
 * @param verdict BP_CLAIM_OK (possibly with nothing to grant) or BP_CLAIM_NOT_OPEN
 * @return as bp_pg_claim.
 */
bp_err_t bp_pg_claim_all(bp_pg_t *pg, const bp_season_t *s, const char *player_id,
                         const char *actor, const char *topic, int64_t now_ms,
                         bp_claim_verdict_t *verdict, bp_grants_t *out) BP_MUSTCHECK;

/** The outcome of a premium grant. */
typedef enum {
    BP_PREMIUM_GRANTED = 0, /**< recorded now; the player is premium */
    BP_PREMIUM_DUPLICATE,   /**< this transactionId was recorded before, same player and
                             *   season: nothing changed (idempotent replay) */
    BP_PREMIUM_CONFLICT     /**< this transactionId was recorded for another player or
                             *   season: refused (HTTP 409, DLQ on the topic) */
} bp_premium_result_t;

/**
 * Grant the premium pass of @p s to a player, idempotent by @p transaction_id, in one
 * transaction: record the grant, set premium on the progress row (creating it), write an
 * audit row (action "premium-grant"), and with autoClaim grant the premium rewards of
 * every level already reached (source "premium").
 * @return BP_OK with *result set; BP_ERETRY, BP_EFATAL, BP_ENOMEM.
 */
bp_err_t bp_pg_premium_grant(bp_pg_t *pg, const bp_season_t *s, const char *player_id,
                             const char *transaction_id, const char *source, int64_t granted_at_ms,
                             const char *actor, const char *topic, bp_premium_result_t *result,
                             bp_grants_t *out) BP_MUSTCHECK;

#endif
