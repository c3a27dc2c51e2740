/* test_registry.c - TASK() registers at load time; names are unique; lookups find them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include <task/task.h>

static int noop(task_ctx *ctx, json_object *a, json_object *k, json_object **r)
{
    (void)ctx, (void)a, (void)k;
    *r = NULL;
    return TASK_OK;
}
TASK(noop, "unit.noop", .max_retries = 7, .queue = "q1");

static void task_macro_registers_before_main(void **state)
{
    (void)state;
    const task_def *d = task_registry_find("unit.noop");
    assert_non_null(d);
    assert_ptr_equal(d->fn, noop);
    assert_int_equal(d->max_retries, 7);
    assert_string_equal(d->queue, "q1");
    assert_int_equal(task_registry_count(), 1);
    assert_ptr_equal(task_registry_at(0), d);
    assert_null(task_registry_at(1));
    assert_null(task_registry_find("unit.other"));
    assert_null(task_registry_find(NULL));
}

static void duplicates_and_incomplete_defs_are_refused(void **state)
{
    (void)state;
    static const task_def dup = {.name = "unit.noop", .fn = noop};
    static const task_def no_fn = {.name = "unit.nofn"};
    static const task_def no_name = {.fn = noop};
    static const task_def second = {.name = "unit.second", .fn = noop};
    assert_int_equal(task_register(&dup), TASK_EINVAL);
    assert_int_equal(task_register(&no_fn), TASK_EINVAL);
    assert_int_equal(task_register(&no_name), TASK_EINVAL);
    assert_int_equal(task_register(NULL), TASK_EINVAL);
    assert_int_equal(task_register(&second), 0);
    assert_int_equal(task_registry_count(), 2);
    assert_ptr_equal(task_registry_find("unit.noop")->fn, noop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(task_macro_registers_before_main),
        cmocka_unit_test(duplicates_and_incomplete_defs_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
