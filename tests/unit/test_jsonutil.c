/* test_jsonutil.c - Celery's ISO 8601 times and strict UTF-8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>
#include "internal.h"

static void formats_like_python_isoformat(void **state)
{
    (void)state;
    char buf[40];
    task__iso8601_format(1795510548.558101, buf, sizeof(buf));
    assert_string_equal(buf, "2026-11-24T08:55:48.558101+00:00");
    task__iso8601_format(0, buf, sizeof(buf));
    assert_string_equal(buf, "1970-01-01T00:00:00.000000+00:00");
}

static void parses_offsets_zulu_and_naive_as_utc(void **state)
{
    (void)state;
    double t;
    assert_int_equal(task__iso8601_parse("2026-11-24T08:55:48.558101+00:00", &t), 0);
    assert_true(fabs(t - 1795510548.558101) < 1e-6);
    assert_int_equal(task__iso8601_parse("2026-11-24T09:55:48.558101+01:00", &t), 0);
    assert_true(fabs(t - 1795510548.558101) < 1e-6);
    assert_int_equal(task__iso8601_parse("2026-11-24T08:55:48Z", &t), 0);
    assert_true(t == 1795510548.0);
    assert_int_equal(task__iso8601_parse("2026-11-24 08:55:48", &t), 0);
    assert_true(t == 1795510548.0);
    assert_int_equal(task__iso8601_parse("2026-11-24T03:25:48-0530", &t), 0);
    assert_true(t == 1795510548.0);
}

static void refuses_what_is_not_a_time(void **state)
{
    (void)state;
    const char *bad[] = {"", "tomorrow", "2026-13-01T00:00:00", "2026-02-30T00:00:00",
                         "2026-11-24T25:00:00", "2026-11-24T08:55:48.+00:00",
                         "2026-11-24T08:55:48+00:00x", "2026-11-24", "20261124T085548"};
    double t;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(task__iso8601_parse(bad[i], &t), TASK_EINVAL);
    assert_int_equal(task__iso8601_parse(NULL, &t), TASK_EINVAL);
}

/* A string with a NUL inside is no string to a reader that takes C strings. */
static void strings_with_a_nul_inside_are_refused(void **state)
{
    (void)state;
    json_object *o = json_tokener_parse("{\"a\": \"x\\u0000y\", \"b\": \"xy\", \"l\": [\"p\\u0000\", \"q\"]}");
    assert_non_null(o);
    assert_null(task__json_get_str(o, "a"));
    assert_string_equal(task__json_get_str(o, "b"), "xy");
    json_object *l = task__json_get_arr(o, "l");
    assert_null(task__json_idx_str(l, 0));
    assert_string_equal(task__json_idx_str(l, 1), "q");
    json_object_put(o);
}

static void utf8_is_strict(void **state)
{
    (void)state;
    assert_true(task__utf8_valid("caf\xc3\xa9 \xf0\x9f\x98\x80", 10));
    assert_false(task__utf8_valid("\xc3\x28", 2));         /* bad continuation */
    assert_false(task__utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(task__utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(task__utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    assert_false(task__utf8_valid("\xe2\x82", 2));         /* truncated */
    assert_false(task__utf8_valid("a\0b", 3));
    assert_true(task__utf8_check("a\0b", 3, true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(formats_like_python_isoformat),
        cmocka_unit_test(parses_offsets_zulu_and_naive_as_utc),
        cmocka_unit_test(refuses_what_is_not_a_time),
        cmocka_unit_test(utf8_is_strict),
        cmocka_unit_test(strings_with_a_nul_inside_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
