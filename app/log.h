/** @file JSON-lines logging on stdout, shared by every adapter (core/ never logs). */
#ifndef BP_LOG_H
#define BP_LOG_H

typedef enum { BP_LOG_DEBUG = 0, BP_LOG_INFO, BP_LOG_WARN, BP_LOG_ERROR } bp_log_level_t;

/** Set the lowest level written (default BP_LOG_INFO). Call before threads start. */
void bp_log_set_level(bp_log_level_t lvl);

/** Parse "debug", "info", "warn" or "error". @return 0 on success, -1 otherwise. */
int bp_log_level_parse(const char *s, bp_log_level_t *out);

/**
 * Write one JSON line {"ts":..,"level":..,"msg":..,<fields>} to stdout, thread-safely.
 * @p fields is NULL or a printf format producing the inner members of a JSON object
 * (e.g. "\"topic\":\"%s\",\"partition\":%d"); string values substituted into it must
 * be passed through bp_log_str() when they can hold quotes or control characters.
 */
void bp_log(bp_log_level_t lvl, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Escape @p s for use inside a JSON string into @p buf (truncating safely).
 * @return @p buf.
 */
const char *bp_log_str(char *buf, unsigned long len, const char *s);

#define BP_LOG_DEBUG(msg, ...) bp_log(BP_LOG_DEBUG, msg, __VA_ARGS__)
#define BP_LOG_INFO(msg, ...) bp_log(BP_LOG_INFO, msg, __VA_ARGS__)
#define BP_LOG_WARN(msg, ...) bp_log(BP_LOG_WARN, msg, __VA_ARGS__)
#define BP_LOG_ERROR(msg, ...) bp_log(BP_LOG_ERROR, msg, __VA_ARGS__)

#endif
