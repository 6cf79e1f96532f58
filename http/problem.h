/** @file RFC 7807 problem details: the body of every 4xx/5xx response. */
#ifndef BP_PROBLEM_H
#define BP_PROBLEM_H

#include <stddef.h>

/** Media type of problem responses. */
#define BP_PROBLEM_CONTENT_TYPE "application/problem+json"
/** Prefix of the `type` member; the slug names the kind of problem. */
#define BP_PROBLEM_TYPE_PREFIX "urn:battlepass:problem:"

/** @return the static reason phrase of @p status ("Not Found"), "Error" when unknown. */
const char *bp_http_status_title(int status);

/**
 * Build {"type","title","status","detail"} compactly. `type` is BP_PROBLEM_TYPE_PREFIX +
 * @p slug ("about:blank" when @p slug is NULL), `title` the status's reason phrase.
 * @param detail human-readable explanation, NULL for none (the member is then omitted)
 * @param len    out: length of the returned string
 * @return a NUL-terminated heap string owned by the caller (free()), or NULL when out of
 *         memory.
 */
char *bp_http_problem_json(int status, const char *slug, const char *detail, size_t *len);

#endif
