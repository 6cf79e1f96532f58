/** @file JSON of granted rewards, shared by the claim and premium resources. */
#include "http/grants.h"

#include "core/reward.h"
#include "core/timefmt.h"

json_t *bp_http_grants_json(const bp_grants_t *g)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < g->n; i++) {
        const bp_grant_t *x = &g->items[i];
        char at[32];
        bp_time_format(x->granted_at_ms, at, sizeof(at));
        json_t *o =
            json_pack("{s:s, s:i, s:s, s:s, s:s, s:i, s:s}", "grantId", x->grant_id, "level",
                      (int)x->level, "tier", bp_tier_str(x->tier), "rewardId", x->reward_id,
                      "itemId", x->item_id, "quantity", (int)x->quantity, "grantedAt", at);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}
