/* test_uuid.c - UUIDv7 ids: format, version bits, time prefix, ordering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "internal.h"

static void v7_has_version_variant_and_current_time(void **state)
{
    (void)state;
    char id[37];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t before = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    task__uuid7(id);
    assert_int_equal(strlen(id), 36);
    assert_int_equal(id[14], '7');
    assert_non_null(strchr("89ab", id[19]));
    uint64_t ms;
    assert_int_equal(task__uuid7_time_ms(id, &ms), 0);
    assert_true(ms >= before && ms < before + 1000);
}

static void v7_ids_sort_by_time_and_differ(void **state)
{
    (void)state;
    char a[37], b[37];
    task__uuid7(a);
    struct timespec d = {0, 3000000};
    nanosleep(&d, NULL);
    task__uuid7(b);
    assert_true(strcmp(a, b) < 0);
    char c[37];
    task__uuid7(c);
    assert_string_not_equal(b, c);
}

static void v4_is_not_v7(void **state)
{
    (void)state;
    char id[37];
    uint64_t ms;
    task__uuid4(id);
    assert_int_equal(id[14], '4');
    assert_int_equal(task__uuid7_time_ms(id, &ms), TASK_EINVAL);
    assert_int_equal(task__uuid7_time_ms("not-a-uuid", &ms), TASK_EINVAL);
    assert_int_equal(task__uuid7_time_ms("0190aaaa-bbbb-7ccc-8ddd-eeeeffff000g", &ms), TASK_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v7_has_version_variant_and_current_time),
        cmocka_unit_test(v7_ids_sort_by_time_and_differ),
        cmocka_unit_test(v4_is_not_v7),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
