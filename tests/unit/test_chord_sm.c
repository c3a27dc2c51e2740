/*
 * test_chord_sm.c - the steps of a chord member's end (chord_sm.h), driven by the replies the
 * broker would send, without a broker: a member short of the size is done after its count; the
 * last one takes the lock, reads the parts and fires once, then deletes both queues; a lock
 * held elsewhere (405) counts the member as done; duplicates send the holder through DROP and
 * RECHECK (at most three times); any other close, or a reply out of order, fails the step so
 * the member is requeued.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>
#include "chord_sm.h"

/* The COUNT step's two replies, then TALLY's count. */
static enum chord_action count(struct chord_sm *s, long n)
{
    assert_int_equal(chord_sm_on(s, CHE_DECLARE_OK, 0), CHA_WAIT);
    assert_int_equal(chord_sm_on(s, CHE_COMMIT_OK, 0), CHA_SEND_TALLY);
    return chord_sm_on(s, CHE_DECLARE_OK, n);
}

static void a_member_short_of_the_size_is_done_after_its_count(void **state)
{
    (void)state;
    struct chord_sm s;
    chord_sm_init(&s, 3);
    assert_int_equal(count(&s, 2), CHA_DONE);
    assert_true(chord_sm_over(&s));
    assert_false(s.lock_held);
    assert_false(s.fired);
}

static void the_last_member_fires_once_and_cleans_up(void **state)
{
    (void)state;
    struct chord_sm s;
    bool seen[3] = {0};
    chord_sm_init(&s, 3);
    assert_int_equal(count(&s, 3), CHA_SEND_LOCK);
    assert_int_equal(chord_sm_on(&s, CHE_DECLARE_OK, 0), CHA_SEND_GET);
    assert_true(s.lock_held);
    for (int i = 2; i >= 0; i--) { /* any order: parts are placed by position */
        assert_true(chord_sm_part(&s, seen, i));
        assert_int_equal(chord_sm_on(&s, CHE_GET_OK, 0), CHA_SEND_GET);
    }
    assert_int_equal(chord_sm_on(&s, CHE_GET_EMPTY, 0), CHA_FIRE);
    assert_false(s.fired);
    assert_int_equal(chord_sm_on(&s, CHE_COMMIT_OK, 0), CHA_DEL_QUEUE);
    assert_true(s.fired);
    assert_int_equal(chord_sm_on(&s, CHE_DELETE_OK, 0), CHA_DEL_LOCK);
    assert_int_equal(chord_sm_on(&s, CHE_DELETE_OK, 0), CHA_DONE);
    assert_false(s.lock_held);
    assert_true(chord_sm_over(&s));
    /* Nothing after the end moves it: no second FIRE. */
    assert_int_equal(chord_sm_on(&s, CHE_GET_EMPTY, 0), CHA_WAIT);
    assert_int_equal(chord_sm_on(&s, CHE_COMMIT_OK, 0), CHA_WAIT);
}

static void a_lock_held_elsewhere_counts_the_member(void **state)
{
    (void)state;
    struct chord_sm s;
    chord_sm_init(&s, 2);
    assert_int_equal(count(&s, 2), CHA_SEND_LOCK);
    assert_int_equal(chord_sm_on(&s, CHE_CLOSED, 405), CHA_DONE);
    assert_int_equal(s.step, CHS_BUSY);
    assert_false(s.lock_held);
}

static void duplicates_are_dropped_and_the_count_rechecked(void **state)
{
    (void)state;
    struct chord_sm s;
    bool seen[3] = {0};
    chord_sm_init(&s, 3);
    /* A member ran twice: four parts, two distinct positions. */
    assert_int_equal(count(&s, 4), CHA_SEND_LOCK);
    assert_int_equal(chord_sm_on(&s, CHE_DECLARE_OK, 0), CHA_SEND_GET);
    int pos[4] = {0, 1, 1, -1}; /* a duplicate and an unreadable part */
    bool kept[4] = {true, true, false, false};
    for (int k = 0; k < 4; k++) {
        assert_true(chord_sm_part(&s, seen, pos[k]) == kept[k]);
        assert_int_equal(chord_sm_on(&s, CHE_GET_OK, 0), CHA_SEND_GET);
    }
    assert_int_equal(s.have, 2);
    assert_int_equal(chord_sm_on(&s, CHE_GET_EMPTY, 0), CHA_DROP);
    assert_int_equal(chord_sm_on(&s, CHE_COMMIT_OK, 0), CHA_SEND_RECHECK);
    /* The third member ended meanwhile: three ready, look again. */
    assert_int_equal(chord_sm_on(&s, CHE_DECLARE_OK, 3), CHA_SEND_GET);
    assert_int_equal(s.have, 0);
    bool seen2[3] = {0};
    for (int i = 0; i < 3; i++) {
        assert_true(chord_sm_part(&s, seen2, i));
        assert_int_equal(chord_sm_on(&s, CHE_GET_OK, 0), CHA_SEND_GET);
    }
    assert_int_equal(chord_sm_on(&s, CHE_GET_EMPTY, 0), CHA_FIRE);
    assert_int_equal(chord_sm_on(&s, CHE_COMMIT_OK, 0), CHA_DEL_QUEUE);
}

static void rechecks_are_bounded(void **state)
{
    (void)state;
    struct chord_sm s;
    chord_sm_init(&s, 2);
    assert_int_equal(count(&s, 3), CHA_SEND_LOCK);
    assert_int_equal(chord_sm_on(&s, CHE_DECLARE_OK, 0), CHA_SEND_GET);
    for (int round = 0; round <= CHORD_RECHECKS; round++) {
        bool seen[2] = {0};
        assert_true(chord_sm_part(&s, seen, 0));
        assert_int_equal(chord_sm_on(&s, CHE_GET_OK, 0), CHA_SEND_GET);
        assert_int_equal(chord_sm_on(&s, CHE_GET_EMPTY, 0), CHA_DROP);
        assert_int_equal(chord_sm_on(&s, CHE_COMMIT_OK, 0), CHA_SEND_RECHECK);
        enum chord_action a = chord_sm_on(&s, CHE_DECLARE_OK, 2);
        if (round < CHORD_RECHECKS) {
            assert_int_equal(a, CHA_SEND_GET);
        } else {
            assert_int_equal(a, CHA_DEL_LOCK); /* gives up holding the lock; a later member
                                                * completes the chord */
        }
    }
    assert_int_equal(chord_sm_on(&s, CHE_DELETE_OK, 0), CHA_DONE);
    assert_false(s.fired);
}

static void a_recheck_short_of_the_size_releases_the_lock(void **state)
{
    (void)state;
    struct chord_sm s;
    bool seen[2] = {0};
    chord_sm_init(&s, 2);
    assert_int_equal(count(&s, 2), CHA_SEND_LOCK);
    assert_int_equal(chord_sm_on(&s, CHE_DECLARE_OK, 0), CHA_SEND_GET);
    assert_true(chord_sm_part(&s, seen, 1));
    assert_int_equal(chord_sm_on(&s, CHE_GET_OK, 0), CHA_SEND_GET);
    assert_int_equal(chord_sm_on(&s, CHE_GET_EMPTY, 0), CHA_DROP);
    assert_int_equal(chord_sm_on(&s, CHE_COMMIT_OK, 0), CHA_SEND_RECHECK);
    assert_int_equal(chord_sm_on(&s, CHE_DECLARE_OK, 1), CHA_DEL_LOCK);
    assert_true(s.lock_held);
    assert_int_equal(chord_sm_on(&s, CHE_DELETE_OK, 0), CHA_DONE);
    assert_false(s.lock_held);
}

static void other_closes_and_stray_replies_fail_the_step(void **state)
{
    (void)state;
    struct chord_sm s;
    chord_sm_init(&s, 2);
    assert_int_equal(chord_sm_on(&s, CHE_CLOSED, 404), CHA_FAIL); /* barrier refused */
    assert_int_equal(s.step, CHS_FAILED);

    chord_sm_init(&s, 2);
    assert_int_equal(chord_sm_on(&s, CHE_COMMIT_OK, 0), CHA_FAIL); /* out of order */

    chord_sm_init(&s, 2);
    assert_int_equal(chord_sm_on(&s, CHE_DECLARE_OK, 0), CHA_WAIT);
    assert_int_equal(chord_sm_on(&s, CHE_DECLARE_OK, 0), CHA_FAIL); /* commit-ok expected */

    chord_sm_init(&s, 2);
    assert_int_equal(chord_sm_on(&s, CHE_DECLARE_OK, 0), CHA_WAIT);
    assert_int_equal(chord_sm_on(&s, CHE_COMMIT_OK, 0), CHA_SEND_TALLY);
    assert_int_equal(chord_sm_on(&s, CHE_COMMIT_OK, 0), CHA_FAIL); /* the count expected */

    chord_sm_init(&s, 2);
    assert_int_equal(count(&s, 2), CHA_SEND_LOCK);
    assert_int_equal(chord_sm_on(&s, CHE_DECLARE_OK, 0), CHA_SEND_GET);
    assert_int_equal(chord_sm_on(&s, CHE_CLOSED, 406), CHA_FAIL); /* holding the lock */
    assert_int_equal(s.failed_at, CHS_GET);
    assert_true(s.lock_held); /* the owner deletes it once the channel is open again */

    chord_sm_init(&s, 2);
    assert_int_equal(count(&s, 2), CHA_SEND_LOCK);
    assert_int_equal(chord_sm_on(&s, CHE_CLOSED, 406), CHA_FAIL); /* 405 only is "busy" */

    chord_sm_init(&s, 2);
    bool seen[2] = {0};
    assert_int_equal(count(&s, 2), CHA_SEND_LOCK);
    assert_int_equal(chord_sm_on(&s, CHE_DECLARE_OK, 0), CHA_SEND_GET);
    assert_true(chord_sm_part(&s, seen, 0));
    assert_true(chord_sm_part(&s, seen, 1));
    assert_int_equal(chord_sm_on(&s, CHE_GET_EMPTY, 0), CHA_FIRE);
    assert_int_equal(chord_sm_on(&s, CHE_CLOSED, 0), CHA_FAIL); /* commit lost: no fire */
    assert_false(s.fired);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_member_short_of_the_size_is_done_after_its_count),
        cmocka_unit_test(the_last_member_fires_once_and_cleans_up),
        cmocka_unit_test(a_lock_held_elsewhere_counts_the_member),
        cmocka_unit_test(duplicates_are_dropped_and_the_count_rechecked),
        cmocka_unit_test(rechecks_are_bounded),
        cmocka_unit_test(a_recheck_short_of_the_size_releases_the_lock),
        cmocka_unit_test(other_closes_and_stray_replies_fail_the_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
