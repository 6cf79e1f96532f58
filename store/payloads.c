/** @file JSON payloads of outbox events. */
#include "store/payloads.h"

#include "core/event.h"
#include "core/fold.h"

void bp_levelup_payload(bp_sbuf_t *out, const char *season_id, const char *player_id,
                        int32_t new_level, int64_t total_xp, const char *cause_event_id,
                        int64_t occurred_at_ms)
{
    char id[3 * BP_ID_MAX + 32];
    if (bp_levelup_event_id(id, sizeof(id), season_id, player_id, new_level) != BP_OK)
        id[0] = '\0';
    bp_sb_reset(out);
    bp_sb_printf(out, "{\"eventId\":\"%s\",\"playerId\":\"%s\",", id, player_id);
    bp_sb_printf(out, "\"seasonId\":\"%s\",\"previousLevel\":%d,\"newLevel\":%d,", season_id,
                 (int)(new_level - 1), (int)new_level);
    bp_sb_printf(out, "\"totalXp\":%lld,\"causeEventId\":\"%s\",\"occurredAt\":%lld}",
                 (long long)total_xp, cause_event_id, (long long)occurred_at_ms);
}
