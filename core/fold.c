/** @file Folding a batch of XP events into per-(season, player) deltas and level-ups. */
#include "core/fold.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/level.h"

/* Sort key of one applied event; carries what the comparator needs (qsort has no context). */
typedef struct {
    int season;
    const char *player;
    size_t idx;
} fold_slot_t;

static int fold_slot_cmp(const void *a, const void *b)
{
    const fold_slot_t *x = a, *y = b;
    int c;

    if (x->season != y->season)
        return x->season < y->season ? -1 : 1;
    c = strncmp(x->player, y->player, BP_ID_MAX + 1);
    if (c != 0)
        return c;
    /* The arrival order inside a group is the order XP is applied in. */
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static bool same_group(const fold_slot_t *x, const fold_slot_t *y)
{
    return x->season == y->season && strncmp(x->player, y->player, BP_ID_MAX + 1) == 0;
}

/* XP event @p i adds: its applied amount when given, else its own amount. */
static int64_t amount_of(const bp_xp_event_t *evs, const int64_t *amounts, size_t i)
{
    return amounts ? amounts[i] : evs[i].amount;
}

bp_err_t bp_fold_batch(const bp_xp_event_t *evs, const int64_t *amounts, const int *season_idx,
                       const bool *apply, size_t n, bp_fold_t *out)
{
    bp_err_t err = BP_OK;
    fold_slot_t *slots = NULL;
    size_t m = 0, n_groups = 0;

    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        if ((apply == NULL || apply[i]) && season_idx[i] >= 0)
            m++;
    }
    if (m == 0)
        goto out;
    if (m > SIZE_MAX / sizeof *slots) {
        err = BP_ENOMEM;
        goto out;
    }
    slots = malloc(m * sizeof *slots);
    out->order = malloc(m * sizeof *out->order);
    if (slots == NULL || out->order == NULL) {
        err = BP_ENOMEM;
        goto out;
    }
    m = 0;
    for (size_t i = 0; i < n; i++) {
        if ((apply == NULL || apply[i]) && season_idx[i] >= 0) {
            slots[m].season = season_idx[i];
            slots[m].player = evs[i].player_id;
            slots[m].idx = i;
            m++;
        }
    }
    qsort(slots, m, sizeof *slots, fold_slot_cmp);
    for (size_t k = 0; k < m; k++) {
        if (k == 0 || !same_group(&slots[k - 1], &slots[k]))
            n_groups++;
    }
    out->groups = calloc(n_groups, sizeof *out->groups);
    if (out->groups == NULL) {
        err = BP_ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < m; k++) {
        if (k == 0 || !same_group(&slots[k - 1], &slots[k])) {
            out->groups[out->n_groups] = (bp_fold_group_t){
                .season_idx = slots[k].season, .player_id = slots[k].player, .first = k};
            out->n_groups++;
        }
        out->groups[out->n_groups - 1].count++;
        out->groups[out->n_groups - 1].delta += amount_of(evs, amounts, slots[k].idx);
        out->order[k] = slots[k].idx;
    }
    out->n_order = m;
    out->amounts = amounts;
out:
    free(slots);
    if (err != BP_OK)
        bp_fold_fini(out);
    return err;
}

void bp_fold_fini(bp_fold_t *f)
{
    if (f == NULL)
        return;
    free(f->order);
    free(f->groups);
    memset(f, 0, sizeof *f);
}

/* Make room for @p more items, doubling so a long run of appends stays linear. */
static bp_err_t reserve(bp_levelups_t *l, size_t more)
{
    size_t cap = l->cap ? l->cap : 8;
    bp_levelup_t *items;

    if (more <= l->cap - l->n)
        return BP_OK;
    if (more > SIZE_MAX / sizeof *items - l->n)
        return BP_ENOMEM;
    while (cap < l->n + more)
        cap = cap > SIZE_MAX / sizeof *items / 2 ? l->n + more : cap * 2;
    items = realloc(l->items, cap * sizeof *items);
    if (items == NULL)
        return BP_ENOMEM;
    l->items = items;
    l->cap = cap;
    return BP_OK;
}

bp_err_t bp_fold_levelups(const bp_season_t *s, const bp_xp_event_t *evs, const bp_fold_t *f,
                          const bp_fold_group_t *g, int64_t old_total, bp_levelups_t *out)
{
    bp_err_t err = BP_OK;
    int64_t total = old_total;
    int32_t level = bp_level_for_xp(s, total).level;

    for (size_t k = g->first; k < g->first + g->count; k++) {
        size_t i = f->order[k];
        int32_t next;

        total += amount_of(evs, f->amounts, i);
        next = bp_level_for_xp(s, total).level;
        if (next <= level)
            continue;
        err = reserve(out, (size_t)(next - level));
        if (err != BP_OK)
            goto out;
        for (int32_t l = level; l < next; l++) {
            out->items[out->n++] = (bp_levelup_t){
                .previous_level = l, .new_level = l + 1, .total_xp = total, .cause = i};
        }
        level = next;
    }
out:
    return err;
}

void bp_levelups_fini(bp_levelups_t *l)
{
    if (l == NULL)
        return;
    free(l->items);
    memset(l, 0, sizeof *l);
}

bp_err_t bp_levelup_event_id(char *buf, size_t len, const char *season_id, const char *player_id,
                             int32_t new_level)
{
    int r;

    if (buf == NULL || len == 0 || season_id == NULL || player_id == NULL)
        return BP_EINVAL;
    r = snprintf(buf, len, "levelup:%s:%s:%d", season_id, player_id, (int)new_level);
    if (r < 0 || (size_t)r >= len) {
        buf[0] = '\0'; /* never hand out a truncated id that could collide */
        return BP_EINVAL;
    }
    return BP_OK;
}
