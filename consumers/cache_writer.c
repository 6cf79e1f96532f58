/** @file The worker's Redis writer thread: a bounded FIFO of committed batches, written in
 *  order with one pipeline each; missed writes are written again every second. */
#include "consumers/cache_writer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/log.h"
#include "store/cache.h"

#define CATCH_UP_EVERY_MS 1000

/* One committed batch waiting for Redis. */
typedef struct job {
    bp_progress_change_t *changes;
    size_t n;
    char (*season_ids)[BP_ID_MAX + 1];
    size_t n_seasons;
    int64_t now_ms;
    struct job *next;
} job_t;

struct bp_cache_writer {
    bp_cache_t *cache;
    size_t max_queued;
    bool down; /* the last write failed (logged once per outage) */

    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t more, room;
    job_t *head, *tail; /* under lock */
    size_t queued;      /* under lock */
    bool stopping;      /* under lock */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void job_free(job_t *j)
{
    if (!j)
        return;
    free(j->changes);
    free(j->season_ids);
    free(j);
}

static void write_job(bp_cache_writer_t *cw, job_t *j)
{
    const char *ids[64];
    const char **season_ids = j->n_seasons <= 64 ? ids : malloc(j->n_seasons * sizeof(*ids));
    if (!season_ids)
        return; /* the cache fills from PostgreSQL */
    for (size_t i = 0; i < j->n_seasons; i++)
        season_ids[i] = j->season_ids[i];
    bp_err_t err = bp_cache_put_progress(cw->cache, season_ids, j->changes, j->n, j->now_ms);
    if (err != BP_OK && !cw->down)
        BP_LOG_WARN("redis unavailable: cache not updated, reads use PostgreSQL", NULL);
    else if (err == BP_OK && cw->down)
        BP_LOG_INFO("redis available again", NULL);
    cw->down = err != BP_OK;
    if (season_ids != ids)
        free(season_ids);
}

static void *writer_main(void *arg)
{
    bp_cache_writer_t *cw = arg;
    int64_t last_catch_up = mono_ms();
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += 1;
        pthread_mutex_lock(&cw->lock);
        while (!cw->head && !cw->stopping)
            if (pthread_cond_timedwait(&cw->more, &cw->lock, &until) != 0)
                break;
        job_t *j = cw->head;
        if (j) {
            cw->head = j->next;
            if (!cw->head)
                cw->tail = NULL;
            cw->queued--;
            pthread_cond_signal(&cw->room);
        }
        bool stop = cw->stopping && !j;
        pthread_mutex_unlock(&cw->lock);
        if (j) {
            write_job(cw, j);
            job_free(j);
        }
        /* Progress Redis missed is written again before any other write; when no batch
         * comes, this gets it there anyway. */
        if (bp_cache_behind(cw->cache) && mono_ms() - last_catch_up >= CATCH_UP_EVERY_MS) {
            if (bp_cache_catch_up(cw->cache) == BP_OK && cw->down) {
                BP_LOG_INFO("redis available again", NULL);
                cw->down = false;
            }
            last_catch_up = mono_ms();
        }
        if (stop)
            break;
    }
    return NULL;
}

static void writer_free(bp_cache_writer_t *cw)
{
    while (cw->head) {
        job_t *j = cw->head;
        cw->head = j->next;
        job_free(j);
    }
    bp_cache_destroy(cw->cache);
    pthread_mutex_destroy(&cw->lock);
    pthread_cond_destroy(&cw->more);
    pthread_cond_destroy(&cw->room);
    free(cw);
}

bp_err_t bp_cache_writer_start(const char *redis_url, int ttl_s, size_t max_queued,
                               bp_cache_writer_t **out)
{
    *out = NULL;
    bp_cache_writer_t *cw = calloc(1, sizeof(*cw));
    if (!cw)
        return BP_ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cw->more, &ca);
    pthread_cond_init(&cw->room, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&cw->lock, NULL);
    cw->max_queued = max_queued ? max_queued : 1;
    bp_err_t err = bp_cache_new(redis_url, ttl_s, &cw->cache);
    if (err == BP_OK && pthread_create(&cw->thread, NULL, writer_main, cw) != 0)
        err = BP_ENOMEM;
    if (err != BP_OK) {
        writer_free(cw);
        return err;
    }
    cw->started = true;
    *out = cw;
    return BP_OK;
}

bp_err_t bp_cache_writer_put(bp_cache_writer_t *cw, bp_progress_change_t **changes, size_t n,
                             const bp_season_t *seasons, size_t n_seasons, int64_t now_ms)
{
    job_t *j = calloc(1, sizeof(*j));
    if (j)
        j->season_ids = malloc((n_seasons ? n_seasons : 1) * sizeof(*j->season_ids));
    if (!j || !j->season_ids) {
        job_free(j);
        free(*changes);
        *changes = NULL;
        return BP_ENOMEM;
    }
    for (size_t i = 0; i < n_seasons; i++)
        memcpy(j->season_ids[i], seasons[i].id, strlen(seasons[i].id) + 1);
    j->n_seasons = n_seasons;
    j->changes = *changes;
    *changes = NULL;
    j->n = n;
    j->now_ms = now_ms;
    pthread_mutex_lock(&cw->lock);
    while (cw->queued >= cw->max_queued)
        pthread_cond_wait(&cw->room, &cw->lock);
    if (cw->tail)
        cw->tail->next = j;
    else
        cw->head = j;
    cw->tail = j;
    cw->queued++;
    pthread_cond_signal(&cw->more);
    pthread_mutex_unlock(&cw->lock);
    return BP_OK;
}

void bp_cache_writer_stop(bp_cache_writer_t *cw)
{
    if (!cw)
        return;
    pthread_mutex_lock(&cw->lock);
    cw->stopping = true;
    pthread_cond_signal(&cw->more);
    pthread_mutex_unlock(&cw->lock);
    if (cw->started)
        pthread_join(cw->thread, NULL);
    writer_free(cw);
}
