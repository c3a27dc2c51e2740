/*
 * test_asyncdecl.c - the bookkeeping of declarations sent without waiting (asyncdecl.h), which
 * the delay cascade uses so that its first countdown does not block the loop: it is ready only
 * after every -ok, a refusal makes it reopen and wait out a growing back-off before it may
 * start again, stray frames change nothing, and a lost connection forgets everything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "asyncdecl.h"

static void ready_only_after_every_ok(void **state)
{
    (void)state;
    struct adecl a = {0};
    assert_true(adecl_may_start(&a, 0));
    adecl_sent(&a, 3);
    assert_int_equal(a.state, ADECL_PENDING);
    assert_false(adecl_may_start(&a, 100)); /* under way: not sent twice */
    assert_int_equal(adecl_on_ok(&a), ADECL_MORE);
    assert_int_equal(adecl_on_ok(&a), ADECL_MORE);
    assert_int_equal(a.state, ADECL_PENDING);
    assert_int_equal(adecl_on_ok(&a), ADECL_NOW_READY);
    assert_int_equal(a.state, ADECL_READY);
    assert_int_equal(adecl_on_ok(&a), ADECL_STRAY); /* one too many: ignored */
    assert_int_equal(a.state, ADECL_READY);
}

static void nothing_to_send_is_ready_at_once(void **state)
{
    (void)state;
    struct adecl a = {0};
    adecl_sent(&a, 0);
    assert_int_equal(a.state, ADECL_READY);
}

static void a_refusal_reopens_and_backs_off(void **state)
{
    (void)state;
    struct adecl a = {0};
    adecl_sent(&a, 5);
    assert_int_equal(adecl_on_ok(&a), ADECL_MORE);
    adecl_on_closed(&a, 406, 10.0);
    assert_int_equal(a.state, ADECL_REOPENING);
    assert_int_equal(a.refused, 406);
    assert_int_equal(adecl_on_ok(&a), ADECL_STRAY); /* an -ok sent before the close */
    assert_false(adecl_may_start(&a, 100));          /* not before the channel is open */
    assert_false(adecl_on_open_ok(&(struct adecl){0})); /* an open-ok nobody waits for */
    assert_true(adecl_on_open_ok(&a));
    assert_int_equal(a.state, ADECL_NONE);
    assert_false(adecl_may_start(&a, 10.5)); /* back-off: 1 s after the first refusal */
    assert_true(adecl_may_start(&a, 11.0));
    adecl_sent(&a, 2);
    adecl_on_closed(&a, 406, 20.0); /* refused again: twice the wait */
    assert_true(adecl_on_open_ok(&a));
    assert_false(adecl_may_start(&a, 21.5));
    assert_true(adecl_may_start(&a, 22.0));
    /* Success clears the count: the next refusal waits 1 s again. */
    adecl_sent(&a, 1);
    assert_int_equal(adecl_on_ok(&a), ADECL_NOW_READY);
    assert_int_equal(a.refusals, 0);
    adecl_on_closed(&a, 404, 30.0);
    assert_true(adecl_on_open_ok(&a));
    assert_true(adecl_may_start(&a, 31.0));
}

static void backoff_is_capped(void **state)
{
    (void)state;
    assert_true(adecl_backoff_s(1) == 1);
    assert_true(adecl_backoff_s(3) == 4);
    assert_true(adecl_backoff_s(40) == 60);
}

static void forget_only_what_is_declared(void **state)
{
    (void)state;
    struct adecl a = {0};
    adecl_sent(&a, 2);
    adecl_forget(&a); /* under way: its -oks still come and are counted */
    assert_int_equal(a.state, ADECL_PENDING);
    assert_int_equal(adecl_on_ok(&a), ADECL_MORE);
    assert_int_equal(adecl_on_ok(&a), ADECL_NOW_READY);
    adecl_forget(&a);
    assert_int_equal(a.state, ADECL_NONE);
    assert_true(adecl_may_start(&a, 0));
    adecl_sent(&a, 1);
    adecl_on_closed(&a, 406, 0);
    adecl_forget(&a);
    assert_int_equal(a.state, ADECL_REOPENING);
}

static void a_lost_connection_forgets_everything(void **state)
{
    (void)state;
    struct adecl a = {0};
    adecl_sent(&a, 4);
    adecl_on_closed(&a, 406, 50.0);
    adecl_reset(&a);
    assert_int_equal(a.state, ADECL_NONE);
    assert_true(adecl_may_start(&a, 0)); /* a new connection declares at once */
    assert_int_equal(adecl_on_ok(&a), ADECL_STRAY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ready_only_after_every_ok),
        cmocka_unit_test(nothing_to_send_is_ready_at_once),
        cmocka_unit_test(a_refusal_reopens_and_backs_off),
        cmocka_unit_test(backoff_is_capped),
        cmocka_unit_test(forget_only_what_is_declared),
        cmocka_unit_test(a_lost_connection_forgets_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
