/** @file The XP event as the worker sees it after decoding, and its validation rules. */
#ifndef BP_EVENT_H
#define BP_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/** Longest eventId, playerId or seasonId in bytes; longer ids are invalid. */
#define BP_ID_MAX 64
/** Longest reason in bytes; longer reasons are invalid. */
#define BP_REASON_MAX 64
/** Largest XP amount one event may carry. */
#define BP_XP_AMOUNT_MAX 1000000

/** A decoded XpEvent (schemas/avro/xp_event.avsc). Strings are NUL-terminated copies. */
typedef struct {
    char event_id[BP_ID_MAX + 1];
    char player_id[BP_ID_MAX + 1];
    char season_id[BP_ID_MAX + 1]; /**< "" when the event names no season */
    char reason[BP_REASON_MAX + 1];
    int32_t amount;
    int64_t occurred_at_ms; /**< event time, milliseconds since the Unix epoch */
} bp_xp_event_t;

/**
 * Check an id (eventId, playerId, seasonId): 1..BP_ID_MAX bytes of [A-Za-z0-9._:@-].
 * @return true when valid.
 */
bool bp_id_valid(const char *id, size_t len);

/**
 * Check every rule an XP event must satisfy before it may be applied: ids valid
 * (seasonId may be empty), 0 < amount <= BP_XP_AMOUNT_MAX, reason 1..BP_REASON_MAX bytes
 * of printable ASCII, occurredAt > 0.
 * @return BP_OK, or BP_EINVAL with *why set to a static reason ("amount must be > 0", ...).
 */
bp_err_t bp_xp_event_validate(const bp_xp_event_t *ev, const char **why) BP_MUSTCHECK;

/** A decoded PremiumGranted event (schemas/avro/premium_granted.avsc). */
typedef struct {
    char transaction_id[BP_ID_MAX + 1];
    char player_id[BP_ID_MAX + 1];
    char season_id[BP_ID_MAX + 1];
    char source[BP_REASON_MAX + 1];
    int64_t granted_at_ms;
} bp_premium_event_t;

/**
 * Check a premium grant: transactionId, playerId and seasonId valid ids, source 1..
 * BP_REASON_MAX bytes of printable ASCII, grantedAt > 0.
 * @return BP_OK, or BP_EINVAL with *why set to a static reason.
 */
bp_err_t bp_premium_event_validate(const bp_premium_event_t *ev, const char **why) BP_MUSTCHECK;

/**
 * Mark the events of a batch whose eventId already appeared earlier in the same batch.
 * @param evs   the batch, in arrival order
 * @param n     number of events
 * @param dup   out: dup[i] set to true when evs[i] repeats an earlier eventId, else false
 * @return BP_OK, or BP_ENOMEM (dup left undefined).
 */
bp_err_t bp_batch_mark_duplicates(const bp_xp_event_t *evs, size_t n, bool *dup) BP_MUSTCHECK;

#endif
