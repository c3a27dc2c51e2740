/*
 * test_joblist.c - the lists jobs wait in (taskd/job.c): FIFO order, the give-back cut by
 * receipt time (jobs received before a moment leave, in order; the rest keep their order and
 * the tail stays right for the next push), and counts that follow every change.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "job.h"

static struct job *job_at(uint64_t tag, double received)
{
    struct job *j = job_new(tag);
    assert_non_null(j);
    j->d.received = received;
    return j;
}

static size_t chain_len(const struct job *c)
{
    size_t n = 0;
    for (; c != NULL; c = c->next)
        n++;
    return n;
}

static void fifo_order(void **state)
{
    (void)state;
    struct joblist l = {0};
    for (uint64_t t = 1; t <= 3; t++)
        joblist_push(&l, job_at(t, (double)t));
    assert_int_equal(l.n, 3);
    struct job *j = joblist_pop(&l);
    assert_int_equal(j->dtag, 1);
    joblist_push_front(&l, j); /* a dispatch that failed puts it back where it was */
    assert_int_equal(l.n, 3);
    for (uint64_t t = 1; t <= 3; t++) {
        j = joblist_pop(&l);
        assert_int_equal(j->dtag, t);
        assert_null(j->next);
        job_free(j);
    }
    assert_null(joblist_pop(&l));
    assert_null(l.head);
    assert_null(l.tail);
    assert_int_equal(l.n, 0);
}

static void take_before_cuts_by_receipt(void **state)
{
    (void)state;
    struct joblist l = {0};
    double at[] = {5, 1, 7, 2, 9}; /* tags 1..5 */
    for (int i = 0; i < 5; i++)
        joblist_push(&l, job_at((uint64_t)i + 1, at[i]));
    struct job *old = joblist_take_before(&l, 5.0);
    assert_int_equal(chain_len(old), 2);
    assert_int_equal(old->dtag, 2); /* oldest first: list order */
    assert_int_equal(old->next->dtag, 4);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.head->dtag, 1);
    assert_int_equal(l.tail->dtag, 5);
    /* The tail must be the real last one, or this push would be lost. */
    joblist_push(&l, job_at(6, 10));
    assert_int_equal(l.tail->dtag, 6);
    uint64_t want[] = {1, 3, 5, 6};
    size_t k = 0;
    for (struct job *j = l.head; j != NULL; j = j->next)
        assert_int_equal(j->dtag, want[k++]);
    assert_int_equal(k, 4);
    job_free_chain(old);
    struct job *all = joblist_take_before(&l, INFINITY);
    assert_int_equal(chain_len(all), 4);
    assert_int_equal(l.n, 0);
    assert_null(l.head);
    assert_null(l.tail);
    job_free_chain(all);
}

static void take_before_last_leaves(void **state)
{
    (void)state;
    struct joblist l = {0};
    joblist_push(&l, job_at(1, 9));
    joblist_push(&l, job_at(2, 1)); /* the tail leaves */
    struct job *old = joblist_take_before(&l, 5);
    assert_int_equal(chain_len(old), 1);
    assert_ptr_equal(l.tail, l.head);
    joblist_push(&l, job_at(3, 9));
    assert_int_equal(l.head->next->dtag, 3);
    job_free_chain(old);
    job_free_chain(joblist_take_before(&l, INFINITY));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fifo_order),
        cmocka_unit_test(take_before_cuts_by_receipt),
        cmocka_unit_test(take_before_last_leaves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
