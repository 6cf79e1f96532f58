/** @file PremiumGranted decoding: generic Avro → JSON (premium events are rare, so the
 *  codec's generic path is fast enough), then the fixed-size struct and validation. */
#include "consumers/premium.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Copy string member @p name of @p obj into @p dst; false when missing or too long. */
static bool copy_member(json_t *obj, const char *name, char *dst, size_t size)
{
    const char *v = json_string_value(json_object_get(obj, name));
    if (!v || strlen(v) >= size)
        return false;
    memcpy(dst, v, strlen(v) + 1);
    return true;
}

bp_err_t bp_premium_decode(bp_codec_t *codec, int32_t schema_id, const void *buf, size_t len,
                           bp_premium_event_t *out, const char **why)
{
    char *text = NULL;
    int32_t id = -1;
    json_t *obj = NULL;
    bp_err_t err = bp_codec_decode_json(codec, buf, len, &text, &id, why);
    if (err != BP_OK)
        goto out;
    if (id != schema_id) {
        *why = "schema id is not the premium topic's PremiumGranted schema";
        err = BP_EINVAL;
        goto out;
    }
    obj = json_loads(text, 0, NULL);
    memset(out, 0, sizeof(*out));
    if (!obj ||
        !copy_member(obj, "transactionId", out->transaction_id, sizeof(out->transaction_id)) ||
        !copy_member(obj, "playerId", out->player_id, sizeof(out->player_id)) ||
        !copy_member(obj, "seasonId", out->season_id, sizeof(out->season_id)) ||
        !copy_member(obj, "source", out->source, sizeof(out->source))) {
        *why = "a PremiumGranted string field is missing or longer than 64 bytes";
        err = BP_EINVAL;
        goto out;
    }
    out->granted_at_ms = (int64_t)json_integer_value(json_object_get(obj, "grantedAt"));
    err = bp_premium_event_validate(out, why);
out:
    json_decref(obj);
    free(text);
    return err;
}
