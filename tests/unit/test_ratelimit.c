/*
 * test_ratelimit.c - per-task rate limits (taskd/ratelimit.c) on their own: Celery's limit
 * syntax, one token per bucket, jobs released only when due and never while the broker blocks
 * the worker, the give-back cut, and pidbox time limits (NaN and negatives refused).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "ratelimit.h"

static struct worker *w;

static int setup(void **state)
{
    (void)state;
    w = calloc(1, sizeof(*w));
    return w == NULL;
}

static int teardown(void **state)
{
    (void)state;
    job_free_chain(rate_take_waiting(w, INFINITY));
    rate_free(w);
    free(w);
    return 0;
}

static struct job *job_for(const char *task, uint64_t tag)
{
    struct job *j = job_new(tag);
    assert_non_null(j);
    j->m.task = strdup(task);
    j->d.received = task__now_mono();
    return j;
}

static void parse(void **state)
{
    (void)state;
    assert_true(fabs(rate_parse("10/s") - 10) < 1e-9);
    assert_true(fabs(rate_parse("120/m") - 2) < 1e-9);
    assert_true(fabs(rate_parse("36/h") - 0.01) < 1e-9);
    assert_true(fabs(rate_parse("5") - 5) < 1e-9);
    assert_true(rate_parse("") == 0);
    assert_true(rate_parse(NULL) == 0);
    assert_true(rate_parse("0") == 0);
    assert_true(rate_parse("x") < 0);
    assert_true(rate_parse("-1/s") < 0);
    assert_true(rate_parse("nan") < 0);
    assert_true(rate_parse("inf") < 0);
    assert_true(rate_parse("1/d") < 0);
    assert_true(rate_parse("1/h") > 0);
    assert_true(rate_parse("0.01/h") < 0); /* slower than one a day is refused... */
    assert_true(rate_parse("24/d") < 0);  /* ...and an unknown unit too */
}

static void one_token_then_wait(void **state)
{
    (void)state;
    assert_int_equal(rate_set(w, "t.a", "2/s"), 0);
    assert_string_equal(rate_limit_text(w, "t.a"), "2/s");
    assert_true(rate_take(w, "t.a") == 0);
    double wait = rate_take(w, "t.a");
    assert_true(wait > 0.4 && wait <= 0.5);
    assert_true(rate_take(w, "t.unlimited") == 0);
    assert_true(rate_take(w, "t.unlimited") == 0);
    assert_null(rate_limit_text(w, "t.unlimited"));
    assert_int_equal(rate_set(w, "t.a", "nonsense"), -1);
    assert_string_equal(rate_limit_text(w, "t.a"), "2/s"); /* unchanged */
}

static void release_when_due_not_while_blocked(void **state)
{
    (void)state;
    assert_int_equal(rate_set(w, "t.b", "1000/s"), 0);
    (void)rate_take(w, "t.b"); /* the bucket's one token */
    rate_wait(w, job_for("t.b", 1), 0);     /* due now */
    rate_wait(w, job_for("t.b", 2), 3600);  /* due in an hour */
    assert_int_equal(w->rate.n, 2);
    assert_true(rate_next_ms(w) >= 0 && rate_next_ms(w) <= 1);
    w->blocked = true;
    assert_null(rate_release(w));
    w->blocked = false;
    /* 1000/s: the token is back within a millisecond. */
    struct job *due = NULL;
    for (int i = 0; i < 100 && due == NULL; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        due = rate_release(w);
    }
    assert_non_null(due);
    assert_int_equal(due->dtag, 1);
    assert_null(due->next);
    assert_int_equal(w->rate.n, 1);
    assert_int_equal(w->rate.head->dtag, 2);
    assert_true(rate_next_ms(w) > 3500 * 1000);
    job_free_chain(due);
}

static void give_back_cut(void **state)
{
    (void)state;
    struct job *a = job_for("t.c", 1), *b = job_for("t.c", 2);
    a->d.received = 10;
    b->d.received = 20;
    rate_wait(w, a, 60);
    rate_wait(w, b, 60);
    struct job *old = rate_take_waiting(w, 15);
    assert_ptr_equal(old, a);
    assert_null(old->next);
    assert_int_equal(w->rate.n, 1);
    job_free_chain(old);
}

static void time_limits(void **state)
{
    (void)state;
    double soft = -1, hard = -1;
    assert_false(time_limit_get(w, "t.d", &soft, &hard));
    assert_int_equal(time_limit_set(w, "t.d", 5, 10), 0);
    assert_true(time_limit_get(w, "t.d", &soft, &hard));
    assert_true(soft == 5 && hard == 10);
    assert_int_equal(time_limit_set(w, "t.d", NAN, 10), TASK_EINVAL);
    assert_int_equal(time_limit_set(w, "t.d", 1, -1), TASK_EINVAL);
    assert_true(time_limit_get(w, "t.d", &soft, &hard));
    assert_true(soft == 5 && hard == 10); /* a refused set changes nothing */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse),
        cmocka_unit_test_setup_teardown(one_token_then_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(release_when_due_not_while_blocked, setup, teardown),
        cmocka_unit_test_setup_teardown(give_back_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(time_limits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
