/** @file Batching lanes: a FIFO of jobs under one mutex, drained by the lane threads. */
#include "http/batcher.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>

#include "app/log.h"

struct bp_http_batcher {
    char name[16]; /* thread name (at most 15 characters: the kernel's limit) */
    size_t max_batch;
    bp_http_batch_fn fn;
    void *ctx;
    bp_http_pool_t *pool; /* one slot per lane, held by the lane for its lifetime */
    pthread_mutex_t lock;
    pthread_cond_t more; /* signalled when a job arrives while a lane waits */
    bp_http_job_t *head, *tail;
    int waiting; /* lanes blocked on `more`: a submit only signals when one is */
    bool closing;
    bool closed; /* joined */
    int n_lanes;
    int started;
    pthread_t *lanes;
};

static void *lane_main(void *arg)
{
    bp_http_batcher_t *b = arg;
    bp_http_conn_t *conn = NULL;
    bp_http_job_t **jobs = calloc(b->max_batch, sizeof(*jobs));

    prctl(PR_SET_NAME, b->name, 0, 0, 0);
    /* The pool has one slot per lane: this never waits. */
    if (bp_http_pool_acquire(b->pool, 60000, &conn) != BP_OK || !jobs) {
        BP_LOG_ERROR("batch lane cannot start", "\"lane\":\"%s\"", b->name);
        abort(); /* every job queued would wait forever: fail loudly */
    }
    pthread_mutex_lock(&b->lock);
    for (;;) {
        while (!b->head && !b->closing) {
            b->waiting++;
            pthread_cond_wait(&b->more, &b->lock);
            b->waiting--;
        }
        if (!b->head)
            break; /* closing and drained */
        size_t n = 0;
        while (b->head && n < b->max_batch) {
            jobs[n++] = b->head;
            b->head = b->head->next;
        }
        if (!b->head)
            b->tail = NULL;
        /* Another lane may take what is left while this one works. */
        if (b->head && b->waiting > 0)
            pthread_cond_signal(&b->more);
        pthread_mutex_unlock(&b->lock);
        for (size_t i = 0; i < n; i++)
            jobs[i]->next = NULL;
        b->fn(b->ctx, conn, jobs, n);
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    bp_http_pool_release(b->pool, conn);
    free(jobs);
    return NULL;
}

bp_err_t bp_http_batcher_new(const char *name, int lanes, size_t max_batch, const char *pg_dsn,
                             const char *redis_url, int cache_ttl_s, bp_http_batch_fn fn, void *ctx,
                             bp_http_batcher_t **out)
{
    bp_err_t err = BP_OK;
    bp_http_batcher_t *b = NULL;

    *out = NULL;
    if (lanes < 1 || max_batch < 1 || !fn || !pg_dsn)
        return BP_EINVAL;
    b = calloc(1, sizeof(*b));
    if (!b)
        return BP_ENOMEM;
    snprintf(b->name, sizeof(b->name), "%s", name ? name : "bp-batch");
    b->max_batch = max_batch;
    b->fn = fn;
    b->ctx = ctx;
    b->n_lanes = lanes;
    if (pthread_mutex_init(&b->lock, NULL) != 0) {
        free(b);
        return BP_ENOMEM;
    }
    if (pthread_cond_init(&b->more, NULL) != 0) {
        pthread_mutex_destroy(&b->lock);
        free(b);
        return BP_ENOMEM;
    }
    if (!(b->lanes = calloc((size_t)lanes, sizeof(*b->lanes)))) {
        err = BP_ENOMEM;
        goto out;
    }
    if ((err = bp_http_pool_new(pg_dsn, redis_url, cache_ttl_s, lanes, &b->pool)) != BP_OK)
        goto out;
    for (; b->started < lanes; b->started++) {
        if (pthread_create(&b->lanes[b->started], NULL, lane_main, b) != 0) {
            BP_LOG_ERROR("batch lane thread not started", "\"lane\":\"%s\"", b->name);
            err = BP_EFATAL;
            goto out;
        }
    }
out:
    if (err != BP_OK) {
        bp_http_batcher_destroy(b);
        b = NULL;
    }
    *out = b;
    return err;
}

bool bp_http_batcher_submit(bp_http_batcher_t *b, bp_http_job_t *job)
{
    job->next = NULL;
    pthread_mutex_lock(&b->lock);
    bool ok = !b->closing;
    if (ok) {
        if (b->tail)
            b->tail->next = job;
        else
            b->head = job;
        b->tail = job;
        if (b->waiting > 0)
            pthread_cond_signal(&b->more);
    }
    pthread_mutex_unlock(&b->lock);
    return ok;
}

void bp_http_batcher_close(bp_http_batcher_t *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    bool join = !b->closed;
    b->closing = true;
    b->closed = true;
    pthread_cond_broadcast(&b->more);
    pthread_mutex_unlock(&b->lock);
    if (!join)
        return;
    for (int i = 0; i < b->started; i++)
        pthread_join(b->lanes[i], NULL);
}

void bp_http_batcher_destroy(bp_http_batcher_t *b)
{
    if (!b)
        return;
    bp_http_batcher_close(b);
    bp_http_pool_destroy(b->pool);
    pthread_cond_destroy(&b->more);
    pthread_mutex_destroy(&b->lock);
    free(b->lanes);
    free(b);
}
