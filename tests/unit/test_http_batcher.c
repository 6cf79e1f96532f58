/** @file Unit tests of http/batcher: every job submitted runs exactly once, in arrival order
 *  within a lane, in batches no larger than asked; close runs what is queued and refuses
 *  what comes after. No database: the lanes' slots never connect. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/batcher.h"

#define PRODUCERS 4
#define PER_PRODUCER 5000
#define MAX_BATCH 7

typedef struct {
    bp_http_job_t job;
    int producer;
    int seq;
    atomic_int runs;
} test_job_t;

typedef struct {
    atomic_int batches;
    atomic_int jobs;
    atomic_int too_big;
    atomic_int out_of_order;
    atomic_int last_seq[PRODUCERS]; /* per producer, with one lane: strictly increasing */
    bool one_lane;
    int sleep_us; /* per batch, so that jobs pile up */
} counts_t;

static void run_batch(void *ctx, bp_http_conn_t *conn, bp_http_job_t **jobs, size_t n)
{
    counts_t *c = ctx;
    assert_non_null(conn);
    atomic_fetch_add(&c->batches, 1);
    if (n < 1 || n > MAX_BATCH)
        atomic_fetch_add(&c->too_big, 1);
    for (size_t i = 0; i < n; i++) {
        test_job_t *j = (test_job_t *)(void *)jobs[i];
        atomic_fetch_add(&j->runs, 1);
        if (c->one_lane) {
            int prev = atomic_exchange(&c->last_seq[j->producer], j->seq);
            if (prev >= j->seq)
                atomic_fetch_add(&c->out_of_order, 1);
        }
        atomic_fetch_add(&c->jobs, 1);
    }
    if (c->sleep_us > 0) {
        struct timespec ts = {0, c->sleep_us * 1000L};
        nanosleep(&ts, NULL);
    }
}

typedef struct {
    bp_http_batcher_t *b;
    test_job_t *jobs;
    int producer;
} producer_t;

static void *produce(void *arg)
{
    producer_t *p = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        test_job_t *j = &p->jobs[p->producer * PER_PRODUCER + i];
        j->producer = p->producer;
        j->seq = i;
        assert_true(bp_http_batcher_submit(p->b, &j->job));
    }
    return NULL;
}

static void run(int lanes, int sleep_us)
{
    counts_t c;
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < PRODUCERS; i++)
        atomic_init(&c.last_seq[i], -1);
    c.one_lane = lanes == 1;
    c.sleep_us = sleep_us;
    test_job_t *jobs = calloc(PRODUCERS * PER_PRODUCER, sizeof(*jobs));
    assert_non_null(jobs);
    bp_http_batcher_t *b = NULL;
    assert_int_equal(bp_http_batcher_new("bp-test", lanes, MAX_BATCH,
                                         "postgresql://nobody@127.0.0.1:1/none", NULL, 0, run_batch,
                                         &c, &b),
                     BP_OK);
    pthread_t t[PRODUCERS];
    producer_t p[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (producer_t){b, jobs, i};
        assert_int_equal(pthread_create(&t[i], NULL, produce, &p[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(t[i], NULL);
    bp_http_batcher_close(b); /* runs whatever is still queued */
    test_job_t late;
    memset(&late, 0, sizeof(late));
    assert_false(bp_http_batcher_submit(b, &late.job));
    bp_http_batcher_destroy(b);

    assert_int_equal(atomic_load(&c.jobs), PRODUCERS * PER_PRODUCER);
    for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++)
        assert_int_equal(atomic_load(&jobs[i].runs), 1);
    assert_int_equal(atomic_load(&c.too_big), 0);
    assert_int_equal(atomic_load(&c.out_of_order), 0);
    assert_int_equal(atomic_load(&late.runs), 0);
    /* Jobs that pile up while a lane works are taken together. */
    if (sleep_us > 0)
        assert_true(atomic_load(&c.batches) < PRODUCERS * PER_PRODUCER / 2);
    free(jobs);
}

static void test_one_lane(void **state)
{
    (void)state;
    run(1, 0);
    run(1, 50);
}

static void test_two_lanes(void **state)
{
    (void)state;
    run(2, 0);
    run(2, 50);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    counts_t c;
    memset(&c, 0, sizeof(c));
    bp_http_batcher_t *b = (bp_http_batcher_t *)&c;
    assert_int_equal(bp_http_batcher_new("x", 0, 1, "dsn", NULL, 0, run_batch, &c, &b), BP_EINVAL);
    assert_null(b);
    assert_int_equal(bp_http_batcher_new("x", 1, 0, "dsn", NULL, 0, run_batch, &c, &b), BP_EINVAL);
    assert_int_equal(bp_http_batcher_new("x", 1, 1, NULL, NULL, 0, run_batch, &c, &b), BP_EINVAL);
    assert_int_equal(bp_http_batcher_new("x", 1, 1, "dsn", NULL, 0, NULL, &c, &b), BP_EINVAL);
    bp_http_batcher_destroy(NULL);
    bp_http_batcher_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_lane),
        cmocka_unit_test(test_two_lanes),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
