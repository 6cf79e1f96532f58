/** @file JSON of granted rewards, shared by the claim and premium resources. */
#ifndef BP_GRANTS_H
#define BP_GRANTS_H

#include <jansson.h>

#include "store/rewards.h"

/** @return a new JSON array of {grantId, level, tier, rewardId, itemId, quantity,
 *  grantedAt} (caller owns the reference), or NULL when out of memory. */
json_t *bp_http_grants_json(const bp_grants_t *g);

#endif
