/** @file Text building for libpq parameters: growable strings and array literals. */
#include "store/pgtext.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bp_sb_reserve(bp_sbuf_t *b, size_t extra)
{
    if (b->oom || b->n + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1)
        cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) {
        b->oom = true;
        return;
    }
    b->s = p;
    b->cap = cap;
}

void bp_sb_put(bp_sbuf_t *b, const char *s, size_t len)
{
    bp_sb_reserve(b, len);
    if (b->oom)
        return;
    memcpy(b->s + b->n, s, len);
    b->n += len;
    b->s[b->n] = '\0';
}

void bp_sb_printf(bp_sbuf_t *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->oom = true;
        return;
    }
    bp_sb_put(b, tmp, (size_t)n);
}

void bp_sb_reset(bp_sbuf_t *b)
{
    b->n = 0;
    if (b->s)
        b->s[0] = '\0';
}

void bp_sb_free(bp_sbuf_t *b)
{
    free(b->s);
    memset(b, 0, sizeof(*b));
}

/* Array literal helpers: bp_arr_open, then elements, then bp_arr_close. */
void bp_arr_open(bp_sbuf_t *b)
{
    bp_sb_reset(b);
    bp_sb_put(b, "{", 1);
}

void bp_arr_sep(bp_sbuf_t *b)
{
    if (b->n > 1)
        bp_sb_put(b, ",", 1);
}

/* A quoted text element; NULL becomes SQL NULL. Runs without quotes or backslashes are
 * copied at once (ids never have any): this builds every array of every batch. */
void bp_arr_text(bp_sbuf_t *b, const char *s)
{
    bp_arr_sep(b);
    if (!s) {
        bp_sb_put(b, "NULL", 4);
        return;
    }
    bp_sb_put(b, "\"", 1);
    for (;;) {
        size_t run = strcspn(s, "\"\\");
        bp_sb_put(b, s, run);
        s += run;
        if (!*s)
            break;
        bp_sb_put(b, "\\", 1);
        bp_sb_put(b, s, 1);
        s++;
    }
    bp_sb_put(b, "\"", 1);
}

void bp_arr_int(bp_sbuf_t *b, long long v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    char out[24];
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    bp_arr_sep(b);
    bp_sb_put(b, out, len);
}

void bp_arr_close(bp_sbuf_t *b)
{
    bp_sb_put(b, "}", 1);
}
