/** @file The shared season snapshot: refcounted, swapped whole on refresh from PostgreSQL. */
#include "store/seasons.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "app/log.h"

/* A database that is down is asked again at most this often (unless forced). */
#define RETRY_AFTER_MS 1000

/* One loaded season list. `list` comes first so a borrowed list pointer is the snapshot. */
typedef struct {
    bp_season_list_t list;
    long refs; /* one for being current, one per acquire; guarded by the holder's lock */
} snapshot_t;

struct bp_seasons {
    pthread_mutex_t lock;
    pthread_cond_t done; /* signalled when a refresh finishes */
    snapshot_t *current;
    int64_t max_age_ms;
    int64_t loaded_at_ms;
    int64_t retry_at_ms; /* after a failed load, unforced refreshes wait until then */
    bool loaded;         /* false until the first successful load */
    bool refreshing;     /* a thread is loading outside the lock */
};

static void snapshot_free(snapshot_t *snap)
{
    if (!snap)
        return;
    bp_season_list_fini(&snap->list);
    free(snap);
}

bp_seasons_t *bp_seasons_new(int64_t max_age_ms)
{
    bp_seasons_t *s = calloc(1, sizeof(*s));
    snapshot_t *empty = calloc(1, sizeof(*empty));
    if (!s || !empty)
        goto fail;
    if (pthread_mutex_init(&s->lock, NULL) != 0)
        goto fail;
    if (pthread_cond_init(&s->done, NULL) != 0) {
        pthread_mutex_destroy(&s->lock);
        goto fail;
    }
    empty->refs = 1;
    s->current = empty;
    s->max_age_ms = max_age_ms;
    return s;

fail: /* nothing initialised survives */
    free(empty);
    free(s);
    return NULL;
}

void bp_seasons_destroy(bp_seasons_t *s)
{
    if (!s)
        return;
    snapshot_free(s->current);
    pthread_cond_destroy(&s->done);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

bp_err_t bp_seasons_refresh(bp_seasons_t *s, bp_pg_t *pg, int64_t now_ms, int force)
{
    bp_err_t rc = BP_OK;
    snapshot_t *fresh = NULL, *old = NULL;

    pthread_mutex_lock(&s->lock);
    /* A forced refresh must see data written before it was asked for, so it waits for a
     * load that may have started earlier; an unforced one just keeps the current list. */
    while (force && s->refreshing)
        pthread_cond_wait(&s->done, &s->lock);
    bool due = force || ((!s->loaded || now_ms - s->loaded_at_ms >= s->max_age_ms) &&
                         now_ms >= s->retry_at_ms);
    if (s->refreshing || !due) {
        pthread_mutex_unlock(&s->lock);
        return BP_OK;
    }
    s->refreshing = true;
    pthread_mutex_unlock(&s->lock);

    fresh = calloc(1, sizeof(*fresh));
    if (!fresh) {
        rc = BP_ENOMEM;
        goto out;
    }
    rc = bp_pg_seasons_load(pg, &fresh->list);
    if (rc != BP_OK) {
        BP_LOG_WARN("season reload failed, keeping the loaded seasons", "\"error\":\"%s\"",
                    bp_err_str(rc));
        free(fresh); /* load leaves the list empty on error */
        fresh = NULL;
        goto out;
    }
    fresh->refs = 1;

out:
    pthread_mutex_lock(&s->lock);
    if (!fresh) { /* the old snapshot stays; retry later, but never later than its age */
        s->retry_at_ms = now_ms + (s->max_age_ms < RETRY_AFTER_MS ? s->max_age_ms : RETRY_AFTER_MS);
    } else {
        old = s->current;
        s->current = fresh;
        s->loaded = true;
        s->loaded_at_ms = now_ms;
        if (--old->refs > 0)
            old = NULL; /* still borrowed: the last release frees it */
    }
    s->refreshing = false;
    pthread_cond_broadcast(&s->done);
    pthread_mutex_unlock(&s->lock);
    snapshot_free(old);
    return rc;
}

const bp_season_list_t *bp_seasons_acquire(bp_seasons_t *s)
{
    pthread_mutex_lock(&s->lock);
    snapshot_t *snap = s->current;
    snap->refs++;
    pthread_mutex_unlock(&s->lock);
    return &snap->list;
}

void bp_seasons_release(bp_seasons_t *s, const bp_season_list_t *list)
{
    if (!list)
        return;
    /* list is the first member of its snapshot. */
    snapshot_t *snap = (snapshot_t *)(void *)(uintptr_t)list;
    pthread_mutex_lock(&s->lock);
    bool last = --snap->refs == 0; /* 0 only once it is no longer current */
    pthread_mutex_unlock(&s->lock);
    if (last)
        snapshot_free(snap);
}
