/*
 * test_revoked.c - the worker's revoked set: bounded at Celery's 50000, it forgets the oldest
 * revoke first; it used to drop all 50000 at once, un-revoking every pending task.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>
#include "log.h"
#include "stub_worker.h"

static void the_oldest_revoke_goes_first(void **state)
{
    (void)state;
    struct worker *w = stub_worker_new("celery@w1");
    assert_non_null(w);
    char id[40];
    for (int i = 0; i < 50000; i++) {
        snprintf(id, sizeof(id), "rev-%d", i);
        revoked_add(w, id);
    }
    assert_int_equal(w->revoked.count, 50000);
    revoked_add(w, "rev-0"); /* revoked again: young again */
    for (int i = 50000; i < 50010; i++) {
        snprintf(id, sizeof(id), "rev-%d", i);
        revoked_add(w, id);
    }
    assert_int_equal(w->revoked.count, 50000);
    assert_true(revoked_has(w, "rev-0"));
    for (int i = 1; i <= 10; i++) {
        snprintf(id, sizeof(id), "rev-%d", i);
        assert_false(revoked_has(w, id));
    }
    assert_true(revoked_has(w, "rev-11"));
    assert_true(revoked_has(w, "rev-49999"));
    assert_true(revoked_has(w, "rev-50009"));
    json_object *list = revoked_list(w);
    assert_int_equal(json_object_array_length(list), 50000);
    json_object_put(list);
    stub_worker_free(w);
}

int main(void)
{
    (void)log_set_level("error");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_oldest_revoke_goes_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
