/** @file Unit tests of core/event: id rules, XP event validation, duplicates in a batch. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/event.h"

#define S64 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-"
#define S65 S64 "x"

/* Copy @p src into a fixed buffer; a string as long as the buffer stays unterminated, as a
 * decoder bug could leave it. */
static void set_field(char *dst, size_t size, const char *src)
{
    size_t len = strlen(src);
    if (len > size)
        len = size;
    memcpy(dst, src, len);
    if (len < size)
        dst[len] = '\0';
}

static bp_xp_event_t make_event(const char *event_id, const char *player_id, const char *season_id,
                                const char *reason, int32_t amount, int64_t occurred)
{
    bp_xp_event_t ev;
    memset(&ev, 0, sizeof ev);
    set_field(ev.event_id, sizeof ev.event_id, event_id);
    set_field(ev.player_id, sizeof ev.player_id, player_id);
    set_field(ev.season_id, sizeof ev.season_id, season_id);
    set_field(ev.reason, sizeof ev.reason, reason);
    ev.amount = amount;
    ev.occurred_at_ms = occurred;
    return ev;
}

static void test_id_valid(void **state)
{
    static const struct {
        const char *id;
        size_t len; /* SIZE_MAX: strlen(id) */
        bool ok;
    } cases[] = {
        {"a", SIZE_MAX, true},
        {"", SIZE_MAX, false},
        {S64, SIZE_MAX, true},
        {S65, SIZE_MAX, false},
        {"A-z_0.9:@x", SIZE_MAX, true},
        {"player-42", SIZE_MAX, true},
        {"evt:2026-01-01@match.7", SIZE_MAX, true},
        {"a b", SIZE_MAX, false},
        {"a/b", SIZE_MAX, false},
        {"a+b", SIZE_MAX, false},
        {"a\"b", SIZE_MAX, false},
        {"a\nb", SIZE_MAX, false},
        {"caf\xc3\xa9", SIZE_MAX, false},
        {"abc\0def", 7, false}, /* embedded NUL */
        {"ab cd", 2, true},     /* only len bytes are looked at */
        {"abc", 0, false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len == SIZE_MAX ? strlen(cases[i].id) : cases[i].len;
        if (bp_id_valid(cases[i].id, len) != cases[i].ok)
            fail_msg("case %zu \"%s\" len %zu: expected %d", i, cases[i].id, len, cases[i].ok);
    }
    assert_false(bp_id_valid(NULL, 3));
}

static void test_validate(void **state)
{
    static const struct {
        const char *event_id, *player_id, *season_id, *reason;
        int32_t amount;
        int64_t occurred;
        const char *why; /* NULL: valid */
    } cases[] = {
        {"e1", "p1", "", "match_complete", 10, 1, NULL},
        {"e1", "p1", "s1", "match_complete", 10, 1, NULL},
        {S64, S64, S64, "r", 1, INT64_MAX, NULL},
        /* ids */
        {"", "p1", "", "r", 10, 1, "eventId must be 1..64 characters of [A-Za-z0-9._:@-]"},
        {S65, "p1", "", "r", 10, 1, "eventId must be 1..64 characters of [A-Za-z0-9._:@-]"},
        {"e 1", "p1", "", "r", 10, 1, "eventId must be 1..64 characters of [A-Za-z0-9._:@-]"},
        {"e1", "", "", "r", 10, 1, "playerId must be 1..64 characters of [A-Za-z0-9._:@-]"},
        {"e1", S65, "", "r", 10, 1, "playerId must be 1..64 characters of [A-Za-z0-9._:@-]"},
        {"e1", "p#1", "", "r", 10, 1, "playerId must be 1..64 characters of [A-Za-z0-9._:@-]"},
        {"e1", "p1", S65, "r", 10, 1,
         "seasonId must be empty or 1..64 characters of [A-Za-z0-9._:@-]"},
        {"e1", "p1", "s/1", "r", 10, 1,
         "seasonId must be empty or 1..64 characters of [A-Za-z0-9._:@-]"},
        /* amount */
        {"e1", "p1", "", "r", 0, 1, "amount must be > 0"},
        {"e1", "p1", "", "r", -1, 1, "amount must be > 0"},
        {"e1", "p1", "", "r", INT32_MIN, 1, "amount must be > 0"},
        {"e1", "p1", "", "r", 1, 1, NULL},
        {"e1", "p1", "", "r", BP_XP_AMOUNT_MAX, 1, NULL},
        {"e1", "p1", "", "r", BP_XP_AMOUNT_MAX + 1, 1, "amount must be <= 1000000"},
        {"e1", "p1", "", "r", INT32_MAX, 1, "amount must be <= 1000000"},
        /* reason */
        {"e1", "p1", "", "", 10, 1, "reason must be 1..64 characters of printable ASCII"},
        {"e1", "p1", "", S64, 10, 1, NULL},
        {"e1", "p1", "", "mission complete: #7 (daily)!", 10, 1, NULL},
        {"e1", "p1", "", S65, 10, 1, "reason must be 1..64 characters of printable ASCII"},
        {"e1", "p1", "", "tab\there", 10, 1, "reason must be 1..64 characters of printable ASCII"},
        {"e1", "p1", "", "del\x7f", 10, 1, "reason must be 1..64 characters of printable ASCII"},
        {"e1", "p1", "", "caf\xc3\xa9", 10, 1,
         "reason must be 1..64 characters of printable ASCII"},
        /* occurredAt */
        {"e1", "p1", "", "r", 10, 0, "occurredAt must be > 0"},
        {"e1", "p1", "", "r", 10, -1, "occurredAt must be > 0"},
        {"e1", "p1", "", "r", 10, INT64_MIN, "occurredAt must be > 0"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bp_xp_event_t ev = make_event(cases[i].event_id, cases[i].player_id, cases[i].season_id,
                                      cases[i].reason, cases[i].amount, cases[i].occurred);
        const char *why = "untouched";
        bp_err_t err = bp_xp_event_validate(&ev, &why);
        if (cases[i].why == NULL) {
            if (err != BP_OK || why != NULL)
                fail_msg("case %zu: expected valid, got %d (%s)", i, err, why ? why : "NULL");
        } else {
            if (err != BP_EINVAL || why == NULL || strcmp(why, cases[i].why) != 0)
                fail_msg("case %zu: expected \"%s\", got %d (%s)", i, cases[i].why, err,
                         why ? why : "NULL");
        }
        /* why is optional */
        assert_int_equal(bp_xp_event_validate(&ev, NULL), err);
    }
}

static void check_dups(const char *ids_csv, const char *expect)
{
    bp_xp_event_t evs[16];
    bool dup[16];
    char buf[256];
    size_t n = 0;

    memset(evs, 0, sizeof evs);
    strcpy(buf, ids_csv);
    for (char *tok = strtok(buf, ","); tok != NULL; tok = strtok(NULL, ","))
        evs[n++] = make_event(tok, "p", "", "r", 1, 1);
    assert_int_equal(strlen(expect), n);
    memset(dup, 1, sizeof dup); /* garbage in: every flag must be written */
    assert_int_equal(bp_batch_mark_duplicates(evs, n, dup), BP_OK);
    for (size_t i = 0; i < n; i++) {
        if (dup[i] != (expect[i] == 'D'))
            fail_msg("\"%s\": event %zu expected %c", ids_csv, i, expect[i]);
    }
}

typedef struct {
    const char *name;
    const char *transaction_id, *player_id, *season_id, *source;
    int64_t granted_at_ms;
    bool ok;
} premium_case_t;

static void test_premium_validate(void **state)
{
    (void)state;
    static const premium_case_t cases[] = {
        {"valid", "tx-1", "p1", "s1", "purchase", 1, true},
        {"empty transaction", "", "p1", "s1", "purchase", 1, false},
        {"bad transaction chars", "tx 1", "p1", "s1", "purchase", 1, false},
        {"empty player", "tx-1", "", "s1", "purchase", 1, false},
        {"empty season", "tx-1", "p1", "", "purchase", 1, false},
        {"empty source", "tx-1", "p1", "s1", "", 1, false},
        {"source with control char", "tx-1", "p1", "s1", "gift\n", 1, false},
        {"grantedAt zero", "tx-1", "p1", "s1", "gift", 0, false},
        {"grantedAt negative", "tx-1", "p1", "s1", "gift", -5, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const premium_case_t *c = &cases[i];
        bp_premium_event_t ev;
        memset(&ev, 0, sizeof(ev));
        snprintf(ev.transaction_id, sizeof(ev.transaction_id), "%s", c->transaction_id);
        snprintf(ev.player_id, sizeof(ev.player_id), "%s", c->player_id);
        snprintf(ev.season_id, sizeof(ev.season_id), "%s", c->season_id);
        snprintf(ev.source, sizeof(ev.source), "%s", c->source);
        ev.granted_at_ms = c->granted_at_ms;
        const char *why = NULL;
        bp_err_t err = bp_premium_event_validate(&ev, &why);
        if ((err == BP_OK) != c->ok)
            fail_msg("case '%s': got %s (%s)", c->name, bp_err_str(err), why ? why : "");
        if (!c->ok)
            assert_non_null(why);
    }
    /* a 65-byte id fills the buffer with no terminator: invalid */
    bp_premium_event_t ev;
    memset(&ev, 'a', sizeof(ev));
    ev.granted_at_ms = 1;
    assert_int_equal(bp_premium_event_validate(&ev, NULL), BP_EINVAL);
}

static void test_duplicates_table(void **state)
{
    static const struct {
        const char *ids;    /* comma separated, arrival order */
        const char *expect; /* per event: '.' first seen, 'D' duplicate */
    } cases[] = {
        {"a", "."},
        {"a,b,c", "..."},
        {"a,a", ".D"},
        {"a,b,a,b,a", "..DDD"},
        {"b,a,b", "..D"},
        {"c,b,a,a,b,c", "...DDD"},
        {"a,ab,abc,ab", "...D"},
        {"A,a", ".."},
        {"x,x,x,x,x,x,x,x,x,x,x,x,x,x,x,x", ".DDDDDDDDDDDDDDD"},
        {S64 "," S64, ".D"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_dups(cases[i].ids, cases[i].expect);
}

static void test_duplicates_empty(void **state)
{
    bool dup[1] = {true};
    (void)state;
    assert_int_equal(bp_batch_mark_duplicates(NULL, 0, dup), BP_OK);
    assert_true(dup[0]); /* nothing written */
}

/* A large batch against the obvious quadratic definition. */
static void test_duplicates_reference(void **state)
{
    enum { N = 3000 };
    bp_xp_event_t *evs = calloc(N, sizeof *evs);
    bool *dup = calloc(N, sizeof *dup);
    unsigned seed = 12345;
    (void)state;
    assert_non_null(evs);
    assert_non_null(dup);
    for (size_t i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        snprintf(evs[i].event_id, sizeof evs[i].event_id, "evt-%u", (seed >> 16) % 1000);
    }
    assert_int_equal(bp_batch_mark_duplicates(evs, N, dup), BP_OK);
    for (size_t i = 0; i < N; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(evs[j].event_id, evs[i].event_id) == 0;
        if (dup[i] != seen)
            fail_msg("event %zu (%s): expected dup=%d", i, evs[i].event_id, seen);
    }
    free(evs);
    free(dup);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_valid),         cmocka_unit_test(test_validate),
        cmocka_unit_test(test_premium_validate), cmocka_unit_test(test_duplicates_table),
        cmocka_unit_test(test_duplicates_empty), cmocka_unit_test(test_duplicates_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
