/** @file RFC 3339 timestamps to and from milliseconds since the Unix epoch (UTC). */
#ifndef BP_TIMEFMT_H
#define BP_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/** Parse "2026-01-01T00:00:00Z" (fractions and ±hh:mm offsets allowed).
 *  @return BP_OK or BP_EINVAL (*ms untouched). */
bp_err_t bp_time_parse(const char *s, int64_t *ms) BP_MUSTCHECK;
/** Format @p ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" into @p buf (at least 32 bytes). */
void bp_time_format(int64_t ms, char *buf, size_t len);

#endif
