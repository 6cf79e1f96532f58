/** @file Unit tests of store/seasons.c against a fake bp_pg_seasons_load (no database). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg.h"
#include "store/seasons.h"

/* The fake database: these two definitions stand in for store/pg.c, which the linker then
 * leaves out of the test (nothing else of it is referenced). */
static atomic_int loads;      /* calls of bp_pg_seasons_load */
static atomic_int inside;     /* loads running right now */
static atomic_int max_inside; /* most loads ever running at once */
static atomic_int fail_next;  /* the next load returns BP_ERETRY */
static atomic_int generation; /* id suffix of the seasons of the next load */
static atomic_int live_lists; /* loaded lists not finalised yet */

bp_err_t bp_pg_seasons_load(bp_pg_t *pg, bp_season_list_t *out)
{
    (void)pg;
    int now = atomic_fetch_add(&inside, 1) + 1;
    int m = atomic_load(&max_inside);
    while (now > m && !atomic_compare_exchange_weak(&max_inside, &m, now))
        ;
    atomic_fetch_add(&loads, 1);
    bp_err_t rc = BP_OK;
    memset(out, 0, sizeof(*out));
    if (atomic_exchange(&fail_next, 0)) {
        rc = BP_ERETRY;
        goto out;
    }
    out->items = calloc(2, sizeof(*out->items));
    out->json = calloc(2, sizeof(*out->json));
    assert_non_null(out->items);
    assert_non_null(out->json);
    int gen = atomic_fetch_add(&generation, 1);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(bp_season_init(&out->items[i], 3, 0), BP_OK);
        snprintf(out->items[i].id, sizeof(out->items[i].id), "g%d-s%zu", gen, i);
        out->json[i] = strdup("{}");
    }
    out->n = 2;
    atomic_fetch_add(&live_lists, 1);
out:
    atomic_fetch_sub(&inside, 1);
    return rc;
}

void bp_season_list_fini(bp_season_list_t *l)
{
    if (!l)
        return;
    if (l->n)
        atomic_fetch_sub(&live_lists, 1);
    for (size_t i = 0; i < l->n; i++) {
        bp_season_fini(&l->items[i]);
        free(l->json[i]);
    }
    free(l->items);
    free(l->json);
    memset(l, 0, sizeof(*l));
}

static int reset(void **state)
{
    (void)state;
    atomic_store(&loads, 0);
    atomic_store(&max_inside, 0);
    atomic_store(&fail_next, 0);
    atomic_store(&generation, 0);
    return 0;
}

static void test_empty_then_loaded(void **state)
{
    (void)state;
    bp_seasons_t *s = bp_seasons_new(1000);
    assert_non_null(s);
    const bp_season_list_t *l = bp_seasons_acquire(s);
    assert_non_null(l);
    assert_int_equal(l->n, 0);
    bp_seasons_release(s, l);

    assert_int_equal(bp_seasons_refresh(s, NULL, 5000, 0), BP_OK);
    assert_int_equal(loads, 1);
    l = bp_seasons_acquire(s);
    assert_int_equal(l->n, 2);
    assert_string_equal(l->items[0].id, "g0-s0");
    bp_seasons_release(s, l);
    bp_seasons_destroy(s);
    assert_int_equal(live_lists, 0);
}

static void test_max_age_and_force(void **state)
{
    (void)state;
    bp_seasons_t *s = bp_seasons_new(1000);
    assert_int_equal(bp_seasons_refresh(s, NULL, 5000, 0), BP_OK);
    assert_int_equal(bp_seasons_refresh(s, NULL, 5999, 0), BP_OK);
    assert_int_equal(loads, 1); /* still fresh */
    assert_int_equal(bp_seasons_refresh(s, NULL, 6000, 0), BP_OK);
    assert_int_equal(loads, 2); /* old enough */
    assert_int_equal(bp_seasons_refresh(s, NULL, 6001, 1), BP_OK);
    assert_int_equal(loads, 3); /* forced */
    bp_seasons_destroy(s);
    assert_int_equal(live_lists, 0);
}

/* A borrowed snapshot outlives the refresh that replaces it (ASan checks the frees). */
static void test_borrowed_snapshot_survives(void **state)
{
    (void)state;
    bp_seasons_t *s = bp_seasons_new(10);
    assert_int_equal(bp_seasons_refresh(s, NULL, 0, 0), BP_OK);
    const bp_season_list_t *old = bp_seasons_acquire(s);
    const bp_season_list_t *old2 = bp_seasons_acquire(s);
    assert_int_equal(bp_seasons_refresh(s, NULL, 100, 0), BP_OK);
    assert_int_equal(live_lists, 2);
    const bp_season_list_t *cur = bp_seasons_acquire(s);
    assert_ptr_not_equal(old, cur);
    assert_string_equal(old->items[1].id, "g0-s1");
    assert_string_equal(cur->items[1].id, "g1-s1");
    bp_seasons_release(s, old);
    assert_int_equal(live_lists, 2);
    bp_seasons_release(s, old2); /* last borrower of a replaced snapshot frees it */
    assert_int_equal(live_lists, 1);
    bp_seasons_release(s, cur);
    assert_int_equal(live_lists, 1); /* current stays */
    bp_seasons_destroy(s);
    assert_int_equal(live_lists, 0);
}

static void test_failed_load_keeps_snapshot(void **state)
{
    (void)state;
    bp_seasons_t *s = bp_seasons_new(100);
    assert_int_equal(bp_seasons_refresh(s, NULL, 0, 0), BP_OK);
    atomic_store(&fail_next, 1);
    assert_int_equal(bp_seasons_refresh(s, NULL, 200, 0), BP_ERETRY);
    assert_int_equal(loads, 2);
    const bp_season_list_t *l = bp_seasons_acquire(s);
    assert_string_equal(l->items[0].id, "g0-s0");
    bp_seasons_release(s, l);
    /* no new attempt before the retry delay (min(max age, 1 s)) ... */
    assert_int_equal(bp_seasons_refresh(s, NULL, 250, 0), BP_OK);
    assert_int_equal(loads, 2);
    /* ... unless forced, or after it */
    assert_int_equal(bp_seasons_refresh(s, NULL, 260, 1), BP_OK);
    assert_int_equal(loads, 3);
    bp_seasons_destroy(s);
    assert_int_equal(live_lists, 0);
}

typedef struct {
    bp_seasons_t *s;
    int id;
} worker_arg_t;

static void *worker(void *p)
{
    worker_arg_t *a = p;
    for (int i = 0; i < 2000; i++) {
        const bp_season_list_t *l = bp_seasons_acquire(a->s);
        if (l->n == 2 && strncmp(l->items[0].id, "g", 1) != 0)
            abort();
        if (i % 10 == a->id) {
            bp_err_t rc = bp_seasons_refresh(a->s, NULL, i, (i % 100) == 0);
            if (rc != BP_OK)
                abort();
        }
        bp_seasons_release(a->s, l);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    enum { N = 4 };
    pthread_t th[N];
    worker_arg_t args[N];
    bp_seasons_t *s = bp_seasons_new(0);
    for (int i = 0; i < N; i++) {
        args[i] = (worker_arg_t){s, i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    assert_true(loads > 0);
    assert_int_equal(max_inside, 1); /* never two loads at once */
    assert_int_equal(live_lists, 1);
    bp_seasons_destroy(s);
    assert_int_equal(live_lists, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_empty_then_loaded, reset),
        cmocka_unit_test_setup(test_max_age_and_force, reset),
        cmocka_unit_test_setup(test_borrowed_snapshot_survives, reset),
        cmocka_unit_test_setup(test_failed_load_keeps_snapshot, reset),
        cmocka_unit_test_setup(test_concurrent, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
