/** @file JSON-lines logging on stdout. */
#include "app/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static bp_log_level_t min_level = BP_LOG_INFO;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void bp_log_set_level(bp_log_level_t lvl)
{
    min_level = lvl;
}

int bp_log_level_parse(const char *s, bp_log_level_t *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (bp_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

const char *bp_log_str(char *buf, unsigned long len, const char *s)
{
    size_t o = 0;
    if (len == 0)
        return buf;
    for (; s && *s && o + 7 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(buf + o, len - o, "\\u%04x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = '\0';
    return buf;
}

void bp_log(bp_log_level_t lvl, const char *msg, const char *fields, ...)
{
    if (lvl < min_level)
        return;
    char line[4096], esc[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n =
        snprintf(line, sizeof(line),
                 "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":\"%s\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000L, level_names[lvl], bp_log_str(esc, sizeof(esc), msg));
    if (fields && *fields && n > 0 && (size_t)n < sizeof(line) - 2) {
        line[n++] = ',';
        va_list ap;
        va_start(ap, fields);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fields, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if (n < 0 || (size_t)n > sizeof(line) - 3)
        n = (int)sizeof(line) - 3;
    line[n++] = '}';
    line[n++] = '\n';
    pthread_mutex_lock(&out_lock);
    fwrite(line, 1, (size_t)n, stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}
