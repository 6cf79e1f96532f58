/** @file XP event validation and duplicate detection inside a batch. */
#include "core/event.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One slot of the sort used by bp_batch_mark_duplicates(); carrying the id pointer
 * avoids a comparator that needs the batch as context (qsort has none in C11). */
typedef struct {
    const char *id;
    size_t idx;
} id_slot_t;

static bool id_char_ok(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
}

bool bp_id_valid(const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > BP_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!id_char_ok((unsigned char)id[i]))
            return false;
    }
    return true;
}

/* The struct's fields are fixed-size buffers: an unterminated one is longer than allowed. */
static bool field_id_valid(const char *field, size_t size)
{
    size_t len = strnlen(field, size);
    return len < size && bp_id_valid(field, len);
}

static bool reason_valid(const char *reason, size_t size)
{
    size_t len = strnlen(reason, size);
    if (len == 0 || len > BP_REASON_MAX) /* also catches an unterminated buffer */
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)reason[i];
        if (c < 0x20 || c > 0x7e)
            return false;
    }
    return true;
}

bp_err_t bp_xp_event_validate(const bp_xp_event_t *ev, const char **why)
{
    const char *msg = NULL;

    if (ev == NULL)
        msg = "event is missing";
    else if (!field_id_valid(ev->event_id, sizeof ev->event_id))
        msg = "eventId must be 1..64 characters of [A-Za-z0-9._:@-]";
    else if (!field_id_valid(ev->player_id, sizeof ev->player_id))
        msg = "playerId must be 1..64 characters of [A-Za-z0-9._:@-]";
    else if (ev->season_id[0] != '\0' && !field_id_valid(ev->season_id, sizeof ev->season_id))
        msg = "seasonId must be empty or 1..64 characters of [A-Za-z0-9._:@-]";
    else if (ev->amount <= 0)
        msg = "amount must be > 0";
    else if (ev->amount > BP_XP_AMOUNT_MAX)
        msg = "amount must be <= 1000000";
    else if (!reason_valid(ev->reason, sizeof ev->reason))
        msg = "reason must be 1..64 characters of printable ASCII";
    else if (ev->occurred_at_ms <= 0)
        msg = "occurredAt must be > 0";

    if (why != NULL)
        *why = msg;
    return msg == NULL ? BP_OK : BP_EINVAL;
}

bp_err_t bp_premium_event_validate(const bp_premium_event_t *ev, const char **why)
{
    const char *msg = NULL;

    if (ev == NULL)
        msg = "event is missing";
    else if (!field_id_valid(ev->transaction_id, sizeof ev->transaction_id))
        msg = "transactionId must be 1..64 characters of [A-Za-z0-9._:@-]";
    else if (!field_id_valid(ev->player_id, sizeof ev->player_id))
        msg = "playerId must be 1..64 characters of [A-Za-z0-9._:@-]";
    else if (!field_id_valid(ev->season_id, sizeof ev->season_id))
        msg = "seasonId must be 1..64 characters of [A-Za-z0-9._:@-]";
    else if (!reason_valid(ev->source, sizeof ev->source))
        msg = "source must be 1..64 characters of printable ASCII";
    else if (ev->granted_at_ms <= 0)
        msg = "grantedAt must be > 0";

    if (why != NULL)
        *why = msg;
    return msg == NULL ? BP_OK : BP_EINVAL;
}

/* By id, then by arrival, so the first of each run of equal ids is the earliest. */
static int id_slot_cmp(const void *a, const void *b)
{
    const id_slot_t *x = a, *y = b;
    int c = strncmp(x->id, y->id, BP_ID_MAX + 1);
    if (c != 0)
        return c;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

bp_err_t bp_batch_mark_duplicates(const bp_xp_event_t *evs, size_t n, bool *dup)
{
    bp_err_t err = BP_OK;
    id_slot_t *slots = NULL;

    if (n == 0)
        goto out;
    if (n > SIZE_MAX / sizeof *slots) {
        err = BP_ENOMEM;
        goto out;
    }
    slots = malloc(n * sizeof *slots);
    if (slots == NULL) {
        err = BP_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        slots[i].id = evs[i].event_id;
        slots[i].idx = i;
    }
    qsort(slots, n, sizeof *slots, id_slot_cmp);
    dup[slots[0].idx] = false;
    for (size_t i = 1; i < n; i++)
        dup[slots[i].idx] = strncmp(slots[i - 1].id, slots[i].id, BP_ID_MAX + 1) == 0;
out:
    free(slots);
    return err;
}
