/** @file Decoding PremiumGranted events from the premium topic. */
#ifndef BP_PREMIUM_H
#define BP_PREMIUM_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/event.h"
#include "producers/codec.h"

/**
 * Decode a Confluent-framed PremiumGranted with schema @p schema_id and validate it
 * (core/event.h bp_premium_event_validate).
 * @return BP_OK with *out filled; BP_EINVAL with *why set (valid until the next call on
 *         @p codec): undecodable, another schema, a field too long, invalid content.
 */
bp_err_t bp_premium_decode(bp_codec_t *codec, int32_t schema_id, const void *buf, size_t len,
                           bp_premium_event_t *out, const char **why) BP_MUSTCHECK;

#endif
