/** @file Unit tests of core/fold: grouping a batch, level-ups per group, LevelUp event ids. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fold.h"
#include "core/level.h"

#define MAXEV 12

typedef struct {
    const char *player;
    int season;
    bool apply;
    int32_t amount;
} ev_row_t;

typedef struct {
    int season;
    const char *player;
    int64_t delta;
    size_t count;
    size_t idx[MAXEV];
} group_row_t;

static void build_batch(const ev_row_t *rows, size_t n, bp_xp_event_t *evs, int *season,
                        bool *apply)
{
    for (size_t i = 0; i < n; i++) {
        memset(&evs[i], 0, sizeof evs[i]);
        snprintf(evs[i].event_id, sizeof evs[i].event_id, "e%zu", i);
        snprintf(evs[i].player_id, sizeof evs[i].player_id, "%s", rows[i].player);
        strcpy(evs[i].reason, "test");
        evs[i].amount = rows[i].amount;
        evs[i].occurred_at_ms = 1;
        season[i] = rows[i].season;
        apply[i] = rows[i].apply;
    }
}

static void test_fold_batch_table(void **state)
{
    static const struct {
        const char *name;
        size_t n;
        ev_row_t ev[MAXEV];
        size_t n_groups;
        group_row_t g[MAXEV];
    } cases[] = {
        {"empty batch", 0, {{0}}, 0, {{0}}},
        {"everything skipped",
         3,
         {{"a", 0, false, 5}, {"b", -1, true, 5}, {"c", -1, false, 5}},
         0,
         {{0}}},
        {"one event", 1, {{"p", 0, true, 42}}, 1, {{0, "p", 42, 1, {0}}}},
        {"one player, arrival order kept",
         4,
         {{"p", 0, true, 3}, {"p", 0, true, 1}, {"p", 0, true, 2}, {"p", 0, true, 1000000}},
         1,
         {{0, "p", 1000006, 4, {0, 1, 2, 3}}}},
        {"mixed players, seasons, skips",
         9,
         {{"bob", 0, true, 10},
          {"alice", 0, true, 5},
          {"bob", 1, true, 7},
          {"alice", 0, false, 100},
          {"bob", 0, true, 20},
          {"carol", -1, true, 1},
          {"alice", 0, true, 3},
          {"ba", 0, true, 2},
          {"Alice", 0, true, 4}},
         5,
         {{0, "Alice", 4, 1, {8}},
          {0, "alice", 8, 2, {1, 6}},
          {0, "ba", 2, 1, {7}},
          {0, "bob", 30, 2, {0, 4}},
          {1, "bob", 7, 1, {2}}}},
        {"seasons sort before players",
         4,
         {{"a", 2, true, 1}, {"z", 0, true, 2}, {"a", 0, true, 3}, {"z", 2, true, 4}},
         4,
         {{0, "a", 3, 1, {2}}, {0, "z", 2, 1, {1}}, {2, "a", 1, 1, {0}}, {2, "z", 4, 1, {3}}}},
    };
    (void)state;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bp_xp_event_t evs[MAXEV];
        int season[MAXEV];
        bool apply[MAXEV];
        bp_fold_t f;
        size_t pos = 0;

        memset(&f, 0xa5, sizeof f); /* out needs no initialisation */
        build_batch(cases[c].ev, cases[c].n, evs, season, apply);
        assert_int_equal(bp_fold_batch(evs, NULL, season, apply, cases[c].n, &f), BP_OK);
        if (f.n_groups != cases[c].n_groups)
            fail_msg("%s: expected %zu groups, got %zu", cases[c].name, cases[c].n_groups,
                     f.n_groups);
        for (size_t g = 0; g < f.n_groups; g++) {
            const group_row_t *want = &cases[c].g[g];
            const bp_fold_group_t *got = &f.groups[g];
            if (got->season_idx != want->season || strcmp(got->player_id, want->player) != 0 ||
                got->delta != want->delta || got->count != want->count || got->first != pos)
                fail_msg("%s: group %zu expected %d/%s/%lld/%zu@%zu, got %d/%s/%lld/%zu@%zu",
                         cases[c].name, g, want->season, want->player, (long long)want->delta,
                         want->count, pos, got->season_idx, got->player_id, (long long)got->delta,
                         got->count, got->first);
            for (size_t k = 0; k < want->count; k++) {
                if (f.order[got->first + k] != want->idx[k])
                    fail_msg("%s: group %zu event %zu expected index %zu, got %zu", cases[c].name,
                             g, k, want->idx[k], f.order[got->first + k]);
            }
            pos += want->count;
        }
        assert_int_equal(f.n_order, pos);
        bp_fold_fini(&f);
        assert_null(f.order);
        assert_null(f.groups);
        bp_fold_fini(&f);
    }
    bp_fold_fini(NULL);
}

typedef struct {
    int32_t prev, next;
    int64_t total;
    size_t cause_k; /* position in the case's amounts */
} lu_row_t;

static void make_curve(bp_season_t *s)
{
    static const int64_t totals[] = {0, 0, 100, 250, 450, 700};
    assert_int_equal(bp_season_init(s, 5, 0), BP_OK);
    memcpy(s->xp_total, totals, sizeof totals);
}

static void test_levelups_table(void **state)
{
    static const struct {
        const char *name;
        int64_t old_total;
        size_t n;
        int32_t amounts[6];
        size_t n_lu;
        lu_row_t lu[6];
    } cases[] = {
        {"exactly at a threshold", 0, 1, {100}, 1, {{1, 2, 100, 0}}},
        {"one below", 0, 1, {99}, 0, {{0}}},
        {"from one below", 99, 1, {1}, 1, {{1, 2, 100, 0}}},
        {"two levels at once", 0, 1, {250}, 2, {{1, 2, 250, 0}, {2, 3, 250, 0}}},
        {"3 to 5", 250, 1, {450}, 2, {{3, 4, 700, 0}, {4, 5, 700, 0}}},
        {"1 to max in one event",
         0,
         1,
         {1000000},
         4,
         {{1, 2, 1000000, 0}, {2, 3, 1000000, 0}, {3, 4, 1000000, 0}, {4, 5, 1000000, 0}}},
        {"capped at max", 600, 1, {1000000}, 1, {{4, 5, 1000600, 0}}},
        {"already at max", 700, 1, {50}, 0, {{0}}},
        {"far beyond max", 5000, 2, {1, 1}, 0, {{0}}},
        {"several events, causes", 0, 4, {50, 50, 200, 1}, 2, {{1, 2, 100, 1}, {2, 3, 300, 2}}},
        {"threshold then jump", 449, 3, {1, 250, 1}, 2, {{3, 4, 450, 0}, {4, 5, 700, 1}}},
        {"small steps", 98, 3, {1, 1, 1}, 1, {{1, 2, 100, 1}}},
    };
    bp_season_t s;
    (void)state;
    make_curve(&s);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* p's events at odd indices, q's in between, so cause must be a batch index */
        ev_row_t rows[MAXEV];
        bp_xp_event_t evs[MAXEV];
        int season[MAXEV];
        bool apply[MAXEV];
        size_t n = 0;
        bp_fold_t f;
        bp_levelups_t lu = {0};

        for (size_t k = 0; k < cases[c].n; k++) {
            rows[n++] = (ev_row_t){"q", 0, true, 1000};
            rows[n++] = (ev_row_t){"p", 0, true, cases[c].amounts[k]};
        }
        build_batch(rows, n, evs, season, apply);
        assert_int_equal(bp_fold_batch(evs, NULL, season, apply, n, &f), BP_OK);
        assert_int_equal(f.n_groups, 2);
        assert_string_equal(f.groups[0].player_id, "p");
        assert_int_equal(bp_fold_levelups(&s, evs, &f, &f.groups[0], cases[c].old_total, &lu),
                         BP_OK);
        if (lu.n != cases[c].n_lu)
            fail_msg("%s: expected %zu level-ups, got %zu", cases[c].name, cases[c].n_lu, lu.n);
        for (size_t i = 0; i < lu.n; i++) {
            const lu_row_t *w = &cases[c].lu[i];
            const bp_levelup_t *g = &lu.items[i];
            if (g->previous_level != w->prev || g->new_level != w->next ||
                g->total_xp != w->total || g->cause != 2 * w->cause_k + 1)
                fail_msg("%s: level-up %zu expected %d->%d at %lld by %zu, got %d->%d at %lld "
                         "by %zu",
                         cases[c].name, i, w->prev, w->next, (long long)w->total,
                         2 * w->cause_k + 1, g->previous_level, g->new_level,
                         (long long)g->total_xp, g->cause);
        }
        bp_fold_fini(&f);
        bp_levelups_fini(&lu);
        assert_null(lu.items);
        assert_int_equal(lu.n, 0);
    }
    bp_season_fini(&s);
}

/* Two groups appended to one list; the second keeps the first's items. */
static void test_levelups_append(void **state)
{
    static const ev_row_t rows[] = {{"b", 0, true, 300}, {"a", 0, true, 100}};
    bp_xp_event_t evs[2];
    int season[2];
    bool apply[2];
    bp_fold_t f;
    bp_levelups_t lu = {0};
    bp_season_t s;
    (void)state;
    make_curve(&s);
    build_batch(rows, 2, evs, season, apply);
    assert_int_equal(bp_fold_batch(evs, NULL, season, apply, 2, &f), BP_OK);
    assert_int_equal(bp_fold_levelups(&s, evs, &f, &f.groups[0], 0, &lu), BP_OK); /* a */
    assert_int_equal(lu.n, 1);
    assert_int_equal(bp_fold_levelups(&s, evs, &f, &f.groups[1], 0, &lu), BP_OK); /* b */
    assert_int_equal(lu.n, 3);
    assert_int_equal(lu.items[0].cause, 1);
    assert_int_equal(lu.items[0].new_level, 2);
    assert_int_equal(lu.items[1].cause, 0);
    assert_int_equal(lu.items[1].new_level, 2);
    assert_int_equal(lu.items[2].new_level, 3);
    assert_int_equal(lu.items[2].total_xp, 300);
    bp_fold_fini(&f);
    bp_levelups_fini(&lu);
    bp_levelups_fini(&lu);
    bp_levelups_fini(NULL);
    bp_season_fini(&s);
}

/* Applied amounts (after boosts and caps) replace the events' own amounts in deltas and
 * level-ups; a capped-out event (0) adds nothing and levels nothing. */
static void test_applied_amounts(void **state)
{
    static const ev_row_t rows[] = {{"a", 0, true, 100}, {"a", 0, true, 100}, {"a", 0, true, 100}};
    static const int64_t applied[] = {200, 0, 100};
    bp_xp_event_t evs[3];
    int season[3];
    bool apply[3];
    bp_fold_t f;
    bp_levelups_t lu = {0};
    bp_season_t s;
    (void)state;
    make_curve(&s);
    build_batch(rows, 3, evs, season, apply);
    assert_int_equal(bp_fold_batch(evs, applied, season, apply, 3, &f), BP_OK);
    assert_int_equal(f.n_groups, 1);
    assert_int_equal(f.groups[0].delta, 300);
    assert_int_equal(bp_fold_levelups(&s, evs, &f, &f.groups[0], 0, &lu), BP_OK);
    int64_t total = 0;
    for (size_t i = 0; i < lu.n; i++) {
        assert_true(lu.items[i].cause != 1); /* the capped-out event causes nothing */
        assert_true(lu.items[i].total_xp >= total);
        total = lu.items[i].total_xp;
    }
    assert_int_equal(lu.n, (size_t)(bp_level_for_xp(&s, 300).level - 1));
    bp_fold_fini(&f);
    bp_levelups_fini(&lu);
    bp_season_fini(&s);
}

/* One event climbing every level of the largest season: one item per level, in order. */
static void test_levelups_many(void **state)
{
    static const ev_row_t rows[] = {{"p", 0, true, 1000000}};
    bp_xp_event_t evs[1];
    int season[1];
    bool apply[1];
    bp_fold_t f;
    bp_levelups_t lu = {0};
    bp_season_t s;
    (void)state;
    assert_int_equal(bp_season_init(&s, BP_LEVEL_MAX, 0), BP_OK);
    for (int32_t l = 1; l <= BP_LEVEL_MAX; l++)
        s.xp_total[l] = l - 1;
    build_batch(rows, 1, evs, season, apply);
    assert_int_equal(bp_fold_batch(evs, NULL, season, apply, 1, &f), BP_OK);
    assert_int_equal(bp_fold_levelups(&s, evs, &f, &f.groups[0], 0, &lu), BP_OK);
    assert_int_equal(lu.n, BP_LEVEL_MAX - 1);
    for (size_t i = 0; i < lu.n; i++) {
        assert_int_equal(lu.items[i].previous_level, (int32_t)i + 1);
        assert_int_equal(lu.items[i].new_level, (int32_t)i + 2);
        assert_int_equal(lu.items[i].total_xp, 1000000);
    }
    bp_fold_fini(&f);
    bp_levelups_fini(&lu);
    bp_season_fini(&s);
}

static void test_levelup_event_id(void **state)
{
    static const struct {
        const char *season, *player;
        int32_t level;
        size_t len; /* 0: sizeof buf */
        bp_err_t err;
        const char *want;
    } cases[] = {
        {"s1", "p1", 2, 0, BP_OK, "levelup:s1:p1:2"},
        {"season-2026", "player:42", 10000, 0, BP_OK, "levelup:season-2026:player:42:10000"},
        {"s1", "p1", 2, 16, BP_OK, "levelup:s1:p1:2"}, /* exactly fits with its NUL */
        {"s1", "p1", 2, 15, BP_EINVAL, ""},
        {"s1", "p1", 2, 1, BP_EINVAL, ""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[200];
        memset(buf, 'x', sizeof buf);
        size_t len = cases[i].len ? cases[i].len : sizeof buf;
        bp_err_t err =
            bp_levelup_event_id(buf, len, cases[i].season, cases[i].player, cases[i].level);
        if (err != cases[i].err || strcmp(buf, cases[i].want) != 0)
            fail_msg("case %zu: expected %d \"%s\", got %d \"%.*s\"", i, cases[i].err,
                     cases[i].want, err, (int)len, buf);
    }
    char buf[8] = "keep";
    assert_int_equal(bp_levelup_event_id(buf, 0, "s", "p", 1), BP_EINVAL);
    assert_string_equal(buf, "keep");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_batch_table), cmocka_unit_test(test_levelups_table),
        cmocka_unit_test(test_levelups_append),  cmocka_unit_test(test_applied_amounts),
        cmocka_unit_test(test_levelups_many),    cmocka_unit_test(test_levelup_event_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
