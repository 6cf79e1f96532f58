/** @file Text building for libpq parameters: a growable string and PostgreSQL array
 *  literals ({"a","b"}) that travel as one text parameter to unnest(). */
#ifndef BP_PGTEXT_H
#define BP_PGTEXT_H

#include <stdbool.h>
#include <stddef.h>

/** A growable NUL-terminated string; zero-initialise. oom is set (and sticks) when an
 *  allocation failed: check it once after building. Release with bp_sb_free(). */
typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} bp_sbuf_t;

void bp_sb_reserve(bp_sbuf_t *b, size_t extra);
void bp_sb_put(bp_sbuf_t *b, const char *s, size_t len);
/** Append formatted text (at most 255 bytes at a time; longer sets oom). */
void bp_sb_printf(bp_sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bp_sb_reset(bp_sbuf_t *b);
void bp_sb_free(bp_sbuf_t *b);

/** Array literals: bp_arr_open, then elements, then bp_arr_close. */
void bp_arr_open(bp_sbuf_t *b);
void bp_arr_sep(bp_sbuf_t *b);
/** A quoted text element (any bytes but NUL); NULL becomes SQL NULL. */
void bp_arr_text(bp_sbuf_t *b, const char *s);
void bp_arr_int(bp_sbuf_t *b, long long v);
void bp_arr_close(bp_sbuf_t *b);

#endif
