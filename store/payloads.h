/** @file JSON payloads of outbox events, with the field names of their Avro schemas (the
 *  relay encodes them, producers/relay.h). */
#ifndef BP_PAYLOADS_H
#define BP_PAYLOADS_H

#include <stdint.h>

#include "store/pgtext.h"

/**
 * Write a LevelUp (schemas/avro/level_up.avsc) reaching @p new_level from new_level - 1
 * into @p out (reset first; out->oom tells an allocation failure). Ids must be valid ids
 * (core/event.h bp_id_valid), which need no JSON escaping.
 */
void bp_levelup_payload(bp_sbuf_t *out, const char *season_id, const char *player_id,
                        int32_t new_level, int64_t total_xp, const char *cause_event_id,
                        int64_t occurred_at_ms);

#endif
