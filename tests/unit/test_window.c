/* test_window.c - the delivery window's confirm part (taskd/window.c): when it grows, holds and
 * shrinks, from what a second measured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "window.h"

static void grows_when_slots_starve_on_confirms(void **state)
{
    (void)state;
    int low = 0;
    assert_int_equal(window_next(64, 72, WINDOW_STARVED_TURNS, 64, &low), 128);
    assert_int_equal(window_next(128, 64, 50, 64, &low), 256);
    assert_int_equal(low, 0);
}

static void holds_without_starving_or_when_others_fill_it(void **state)
{
    (void)state;
    int low = 0;
    /* Full, but the slots never idled: long tasks keep them busy. */
    assert_int_equal(window_next(64, 72, 0, 64, &low), 64);
    assert_int_equal(window_next(64, 72, WINDOW_STARVED_TURNS - 1, 64, &low), 64);
    /* Slots idled, but few wait for confirms (rate-limited or held tasks fill it). */
    assert_int_equal(window_next(256, 100, 40, 64, &low), 256);
    assert_int_equal(low, 0);
}

static void stops_at_its_bound(void **state)
{
    (void)state;
    int low = 0;
    assert_int_equal(window_next(WINDOW_CONFIRM_MAX, WINDOW_CONFIRM_MAX, 99, 64, &low),
                     WINDOW_CONFIRM_MAX);
    assert_int_equal(window_next(WINDOW_CONFIRM_MAX / 2 + 1, WINDOW_CONFIRM_MAX, 99, 64, &low),
                     WINDOW_CONFIRM_MAX);
    /* A floor above the bound is the bound. */
    assert_int_equal(window_next(4000, 4000, 99, 4000, &low), 4000);
}

static void shrinks_after_a_while_at_low_use(void **state)
{
    (void)state;
    int low = 0, cur = 512;
    for (int s = 1; s < WINDOW_SHRINK_AFTER_S; s++) {
        cur = window_next(cur, 10, 0, 64, &low);
        assert_int_equal(cur, 512);
    }
    cur = window_next(cur, 10, 0, 64, &low);
    assert_int_equal(cur, 256);
    assert_int_equal(low, 0);
    /* A busy second in between starts the count again. */
    for (int s = 1; s < WINDOW_SHRINK_AFTER_S; s++)
        cur = window_next(cur, 10, 0, 64, &low);
    cur = window_next(cur, 200, 0, 64, &low);
    assert_int_equal(cur, 256);
    assert_int_equal(low, 0);
    /* Never below the floor. */
    cur = 100;
    for (int s = 0; s < 5 * WINDOW_SHRINK_AFTER_S; s++)
        cur = window_next(cur, 0, 0, 64, &low);
    assert_int_equal(cur, 64);
}

static void zero_floor_turns_it_off(void **state)
{
    (void)state;
    int low = 3;
    assert_int_equal(window_next(0, 500, 99, 0, &low), 0);
    assert_int_equal(window_next(64, 500, 99, 0, &low), 0);
    assert_int_equal(low, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grows_when_slots_starve_on_confirms),
        cmocka_unit_test(holds_without_starving_or_when_others_fill_it),
        cmocka_unit_test(stops_at_its_bound),
        cmocka_unit_test(shrinks_after_a_while_at_low_use),
        cmocka_unit_test(zero_floor_turns_it_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
