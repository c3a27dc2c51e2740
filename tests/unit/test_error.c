/* test_error.c - every code has a distinct name and message; the first error wins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include "internal.h"

static void every_code_has_name_and_text(void **state)
{
    (void)state;
    static const int codes[] = {
#define X(name, val, msg) TASK_##name,
        TASK_ERRNO_MAP(X)
#undef X
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_string_not_equal(task_strerror(codes[i]), "unknown error");
        assert_true(strncmp(task_err_name(codes[i]), "TASK_E", 6) == 0);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(task_err_name(codes[i]), task_err_name(codes[j]));
    }
    assert_string_equal(task_strerror(-9999), "unknown error");
    assert_string_equal(task_err_name(TASK_ETIMEDOUT), "TASK_ETIMEDOUT");
}

static void first_error_wins_and_stays_one_line(void **state)
{
    (void)state;
    task_error err = {0};
    assert_int_equal(task__fail(&err, TASK_EIO, "root cause\nsecond line"), TASK_EIO);
    assert_int_equal(task__fail(&err, TASK_EINVAL, "follow-up"), TASK_EINVAL);
    assert_int_equal(err.code, TASK_EIO);
    assert_string_equal(err.msg, "root cause second line");
    task__error_clear(&err);
    assert_int_equal(err.code, 0);
    assert_int_equal(task__fail(NULL, TASK_ENOMEM, "x"), TASK_ENOMEM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_code_has_name_and_text),
        cmocka_unit_test(first_error_wins_and_stays_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
