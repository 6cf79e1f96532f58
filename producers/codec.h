/** @file Avro in the Confluent wire format: the schema table of schemas/avro/subjects.json,
 *  XpEvent decoding and JSON-to-Avro encoding of output events. Not thread-safe: one codec
 *  per thread. */
#ifndef BP_CODEC_H
#define BP_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/event.h"

typedef struct bp_codec bp_codec_t;

/**
 * Load @p schemas_dir/subjects.json and every schema file it names.
 * @return BP_OK with *out owned by the caller (bp_codec_destroy); BP_EFATAL with @p why
 *         naming the file and the problem (missing file, bad JSON, bad schema).
 */
bp_err_t bp_codec_new(const char *schemas_dir, bp_codec_t **out, char *why,
                      size_t why_len) BP_MUSTCHECK;
/** Free; accepts NULL. */
void bp_codec_destroy(bp_codec_t *c);

/** @return the schema id of @p subject (e.g. "battlepass.level-ups-value"), or -1. */
int32_t bp_codec_subject_id(const bp_codec_t *c, const char *subject);

/**
 * Decode one Confluent-framed XpEvent: magic byte 0, 4-byte big-endian schema id equal to
 * @p schema_id, then the Avro binary datum, consumed exactly. metadata is read and
 * discarded.
 * @return BP_OK with *out filled (not yet validated: see bp_xp_event_validate), or
 *         BP_EINVAL with *why set to a static reason ("no magic byte", "unknown schema id",
 *         "truncated Avro datum", "playerId longer than 64 bytes", "trailing bytes", ...).
 */
bp_err_t bp_codec_decode_xp(bp_codec_t *c, int32_t schema_id, const void *buf, size_t len,
                            bp_xp_event_t *out, const char **why) BP_MUSTCHECK;

/**
 * Encode an XpEvent (metadata given as parallel key/value arrays, may be 0 long) with
 * @p schema_id. @return BP_OK with *buf (malloc'd, caller frees) and *len; BP_EINVAL
 * (unknown id), BP_ENOMEM.
 */
bp_err_t bp_codec_encode_xp(bp_codec_t *c, int32_t schema_id, const bp_xp_event_t *ev,
                            const char *const *meta_keys, const char *const *meta_values,
                            size_t n_meta, void **buf, size_t *len) BP_MUSTCHECK;

/**
 * Encode a JSON object whose members are the record's fields (by Avro field name) with
 * the schema of @p schema_id. Supports the field types of the project's schemas: string,
 * int, long (incl. timestamp-millis), boolean, enum (JSON string), ["null", T] (JSON
 * null or T), map<string> (JSON object); a missing field takes its default.
 * @return BP_OK with *buf (malloc'd, caller frees) and *len; BP_EINVAL with *why set
 *         (unknown id, missing field without default, wrong JSON type); BP_ENOMEM.
 */
bp_err_t bp_codec_encode_json(bp_codec_t *c, int32_t schema_id, const char *json, void **buf,
                              size_t *len, const char **why) BP_MUSTCHECK;

/**
 * Decode a Confluent-framed datum of any known schema into a JSON object text (the reverse
 * of bp_codec_encode_json; enums as strings, unions as their value, longs as numbers).
 * Used by tests and tools. @return BP_OK with *json (malloc'd), BP_EINVAL, BP_ENOMEM.
 */
bp_err_t bp_codec_decode_json(bp_codec_t *c, const void *buf, size_t len, char **json,
                              int32_t *schema_id, const char **why) BP_MUSTCHECK;

#endif
