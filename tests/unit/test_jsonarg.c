/*
 * test_jsonarg.c - taskctl's --args/--kwargs take strict JSON only (what Python's json.loads
 * and so a Celery worker reads the same way): lax forms json-c would take are refused with a
 * reason, and strict JSON that looks close to them is kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include "jsonarg.h"
#include "task_limits.h"

static void lax_json_is_refused(void **state)
{
    (void)state;
    static const struct {
        const char *text, *why;
    } lax[] = {
        {"[1] x", "trailing data"},
        {"[1][2]", "trailing data"},
        {"[NaN]", "NaN, Infinity"},
        {"[Infinity]", "NaN, Infinity"},
        {"[-Infinity]", "NaN, Infinity"},
        {"[{\"a\": [1e999]}]", "NaN, Infinity"},
        {"['a']", "not strict JSON"},
        {"{'a': 1}", "not strict JSON"},
        {"[1,]", "not strict JSON"},
        {"{\"a\":1,}", "not strict JSON"},
        {"[1] /* c */", "not strict JSON"},
        {"[1 // c\n]", "not strict JSON"},
        {"[01]", "not strict JSON"},
        {"[TRUE]", "not strict JSON"},
        {"[1.]", "not strict JSON"},
        {"[\"a\tb\"]", "not strict JSON"},
        {"[99999999999999999999]", "does not fit in 64 bits"},
        {"[1, -9223372036854775809]", "integer at byte 4"},
        {"[18446744073709551616]", "does not fit in 64 bits"},
        {"[\"\xff\"]", "not strict JSON"},
        {"[", "not strict JSON"},
        {"", "not strict JSON"},
        {"null", "expected a JSON array"},
        {"{}", "expected a JSON array"},
        {"\"[1]\"", "expected a JSON array"},
    };
    for (size_t i = 0; i < sizeof(lax) / sizeof(lax[0]); i++) {
        char why[300] = "";
        json_object *o = ctl_json_arg(lax[i].text, json_type_array, why, sizeof(why));
        if (o != NULL)
            fail_msg("'%s' was taken as %s", lax[i].text, json_object_to_json_string(o));
        if (strstr(why, lax[i].why) == NULL)
            fail_msg("'%s': reason '%s', expected it to say '%s'", lax[i].text, why, lax[i].why);
        if (strchr(why, '\n') != NULL)
            fail_msg("'%s': reason is more than one line", lax[i].text);
    }
    char why[300] = "";
    assert_null(ctl_json_arg("[1]", json_type_object, why, sizeof(why)));
    assert_string_equal(why, "expected a JSON object");
}

static void strict_json_close_to_those_is_kept(void **state)
{
    (void)state;
    static const char *fine[] = {
        "[]", " [ 1 , 2 ] \n", "[\"it's\", \"1.\", \"/* no */\", \"NaN\"]",
        "[1.5, -0.25, 1e3, 0, -0, 2E-2, 1.7976931348623157e308]", "[true, false, null]",
        "[{\"k\": [ ]}]", "[\"\\u00e9\\t\"]", "[\"\xc3\xa9\"]",
        "[9223372036854775807, -9223372036854775808, 18446744073709551615]",
        "[\"99999999999999999999\", 1e19, -1.5e-300]",
    };
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        char why[300] = "";
        json_object *o = ctl_json_arg(fine[i], json_type_array, why, sizeof(why));
        if (o == NULL)
            fail_msg("strict JSON refused: '%s' (%s)", fine[i], why);
        json_object_put(o);
    }
    char why[300] = "";
    json_object *o = ctl_json_arg("{\"a\": {\"b\": 1}}", json_type_object, why, sizeof(why));
    assert_non_null(o);
    json_object_put(o);
}

/* The deepest --args a worker accepts (one level under the body) is taken; one more is not. */
static void depth_matches_what_a_worker_accepts(void **state)
{
    (void)state;
    char text[2 * TASK__JSON_MAX_DEPTH + 8];
    for (int depth = TASK__JSON_MAX_DEPTH - 1; depth <= TASK__JSON_MAX_DEPTH; depth++) {
        size_t n = 0;
        for (int i = 1; i < depth; i++)
            text[n++] = '[';
        text[n++] = '1';
        for (int i = 1; i < depth; i++)
            text[n++] = ']';
        text[n] = '\0';
        char why[300] = "";
        json_object *o = ctl_json_arg(text, json_type_array, why, sizeof(why));
        if ((o != NULL) != (depth == TASK__JSON_MAX_DEPTH - 1))
            fail_msg("depth %d: %s (%s)", depth, o ? "taken" : "refused", why);
        json_object_put(o);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lax_json_is_refused),
        cmocka_unit_test(strict_json_close_to_those_is_kept),
        cmocka_unit_test(depth_matches_what_a_worker_accepts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
