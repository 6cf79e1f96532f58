/** @file The HTTP threads' pool of store connections (mutex + condition variable). */
#include "http/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct bp_http_conn {
    const char *dsn;               /**< borrowed from the pool's creator */
    bp_pg_t *pg;                   /**< NULL until the first successful connect */
    bp_cache_t *cache;             /**< NULL without cache */
    int64_t retry_at_ms;           /**< no connection attempt before this time */
    bool failed;                   /**< the last attempt to connect failed */
    unsigned long recoveries_seen; /**< value of `recoveries` when last connected or checked */
    bool busy;
};

/**
 * Bumped each time a slot of any pool (the HTTP threads', the batch lanes') connects again
 * after failing to: the database came back. A slot that backs off then tries at once, and an
 * idle slot checks its connection (SELECT 1) before handing it out, since the outage may
 * have closed it: without this the first request on each slot after an outage answered 503.
 */
static atomic_ulong recoveries;

struct bp_http_pool {
    pthread_mutex_t lock;
    pthread_cond_t freed; /**< signalled when a slot is released */
    int n;
    bp_http_conn_t *slots;
};

bp_err_t bp_http_pool_new(const char *pg_dsn, const char *redis_url, int cache_ttl_s, int slots,
                          bp_http_pool_t **out)
{
    bp_err_t err = BP_OK;
    bp_http_pool_t *p = NULL;
    pthread_condattr_t attr;
    bool attr_ok = false, lock_ok = false;

    if (slots < 1 || !pg_dsn)
        return BP_EINVAL;
    p = calloc(1, sizeof(*p));
    if (!p || !(p->slots = calloc((size_t)slots, sizeof(*p->slots)))) {
        err = BP_ENOMEM;
        goto out;
    }
    p->n = slots;
    for (int i = 0; i < slots; i++)
        p->slots[i].dsn = pg_dsn;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        err = BP_ENOMEM;
        goto out;
    }
    lock_ok = true;
    /* Waits are timed on the monotonic clock so that wall-clock steps do not stretch them. */
    if (pthread_condattr_init(&attr) != 0) {
        err = BP_ENOMEM;
        goto out;
    }
    attr_ok = true;
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&p->freed, &attr) != 0) {
        err = BP_ENOMEM;
        goto out;
    }
    if (redis_url && *redis_url) {
        for (int i = 0; i < slots; i++) {
            err = bp_cache_new(redis_url, cache_ttl_s, &p->slots[i].cache);
            if (err != BP_OK) {
                pthread_cond_destroy(&p->freed);
                goto out;
            }
        }
    }
out:
    if (attr_ok)
        pthread_condattr_destroy(&attr);
    if (err != BP_OK && p) {
        if (p->slots) {
            for (int i = 0; i < p->n; i++)
                bp_cache_destroy(p->slots[i].cache);
        }
        if (lock_ok)
            pthread_mutex_destroy(&p->lock);
        free(p->slots);
        free(p);
        p = NULL;
    }
    *out = p;
    return err;
}

void bp_http_pool_destroy(bp_http_pool_t *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        bp_pg_destroy(p->slots[i].pg);
        bp_cache_destroy(p->slots[i].cache);
    }
    pthread_cond_destroy(&p->freed);
    pthread_mutex_destroy(&p->lock);
    free(p->slots);
    free(p);
}

bp_err_t bp_http_pool_acquire(bp_http_pool_t *p, int64_t wait_ms, bp_http_conn_t **out)
{
    struct timespec until;
    bp_err_t err = BP_ERETRY;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(wait_ms / 1000);
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    *out = NULL;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        bp_http_conn_t *pick = NULL;
        /* Prefer a slot already connected: a cold slot costs a connection setup. */
        for (int i = 0; i < p->n; i++) {
            bp_http_conn_t *c = &p->slots[i];
            if (!c->busy && (!pick || (!pick->pg && c->pg)))
                pick = c;
        }
        if (pick) {
            pick->busy = true;
            *out = pick;
            err = BP_OK;
            break;
        }
        if (pthread_cond_timedwait(&p->freed, &p->lock, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&p->lock);
    return err;
}

void bp_http_pool_release(bp_http_pool_t *p, bp_http_conn_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&p->lock);
    c->busy = false;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

/* The slot is borrowed by the caller: its fields are touched without the pool's lock. */
bp_err_t bp_http_conn_pg(bp_http_conn_t *c, int64_t now_ms, bp_pg_t **out)
{
    bp_err_t err = BP_ERETRY;

    *out = NULL;
    unsigned long rec = atomic_load(&recoveries);
    if (now_ms < c->retry_at_ms && rec == c->recoveries_seen)
        goto out;
    if (!c->pg) {
        err = bp_pg_connect(c->dsn, &c->pg);
    } else {
        err = bp_pg_ensure(c->pg);
        /* The database was unreachable since this slot last used its connection: check it
         * (a closed one is reopened by the next ensure). */
        if (err == BP_OK && rec != c->recoveries_seen && !c->failed && !bp_pg_ping(c->pg))
            err = bp_pg_ensure(c->pg);
    }
    c->recoveries_seen = rec;
    if (err != BP_OK) {
        c->retry_at_ms = now_ms + BP_HTTP_POOL_RETRY_MS;
        c->failed = true;
        err = err == BP_ENOMEM ? BP_ENOMEM : BP_ERETRY;
        goto out;
    }
    if (c->failed) {
        c->failed = false;
        c->retry_at_ms = 0;
        c->recoveries_seen = atomic_fetch_add(&recoveries, 1) + 1;
    }
    *out = c->pg;
out:
    return err;
}

void bp_http_conn_failed(bp_http_conn_t *c)
{
    if (c)
        c->failed = true;
}

bp_cache_t *bp_http_conn_cache(bp_http_conn_t *c)
{
    return c->cache;
}
