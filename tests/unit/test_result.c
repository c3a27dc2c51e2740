/*
 * test_result.c - rpc-backend state messages: every captured result decodes, and taskd's
 * encoding of the same state has Celery's properties and an equal body.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "codec.h"
#include "golden.h"

static void every_captured_result_roundtrips(void **state)
{
    (void)state;
    char **files = golden_list("result_");
    int n = 0;
    for (int i = 0; files[i] != NULL; i++) {
        struct golden g;
        assert_int_equal(golden_load(files[i], &g), 0);
        json_object *body = golden_get(g.root, "body");
        if (!json_object_is_type(body, json_type_object) || !golden_get(body, "status")) {
            golden_free(&g); /* result_consumer_check.json is a report, not a message */
            continue;
        }
        n++;
        struct task__result r;
        task_error err = {0};
        if (task__result_decode(g.body, g.body_len, &r, &err) != 0)
            fail_msg("%s: %s", files[i], err.msg);
        assert_string_equal(r.task_id, json_object_get_string(golden_get(body, "task_id")));
        assert_string_equal(r.status, json_object_get_string(golden_get(body, "status")));
        json_object *want = golden_get(body, "result");
        assert_true(json_object_equal(json_object_is_type(want, json_type_null) ? NULL : want,
                                      r.result));

        struct task__result_wire w;
        assert_int_equal(task__result_encode(&r, &w, &err), 0);
        const char *flags = json_object_get_string(golden_get(g.root, "property_flags"));
        assert_int_equal(w.props._flags, strtol(flags, NULL, 16));
        assert_int_equal(w.props.delivery_mode, 1);
        assert_int_equal(w.props.headers.num_entries, 0);
        assert_int_equal(w.props.correlation_id.len, strlen(r.task_id));
        json_object *got = json_tokener_parse(w.body);
        /* Same keys and values; the captured order too (Python reads either). */
        assert_true(json_object_equal(body, got));
        const char *order[] = {"task_id", "status", "result", "traceback", "children"};
        int k = 0;
        json_object_object_foreach(got, key, val)
        {
            (void)val;
            assert_string_equal(key, order[k++]);
        }
        json_object_put(got);
        task__result_wire_free(&w);
        task__result_clear(&r);
        golden_free(&g);
    }
    assert_true(n >= 10);
    golden_list_free(files);
}

static void extras_and_exceptions(void **state)
{
    (void)state;
    json_object *exc = task__exc_new("ValueError", "bad", "builtins");
    struct task__result r = {.task_id = "id1", .status = "FAILURE", .result = exc,
                             .traceback = "tb", .delivery_count = 2, .hostname = "h@x"};
    struct task__result_wire w;
    assert_int_equal(task__result_encode(&r, &w, NULL), 0);
    assert_string_equal(w.body, "{\"task_id\":\"id1\",\"status\":\"FAILURE\",\"result\":{\"exc_type\":"
                                "\"ValueError\",\"exc_message\":[\"bad\"],\"exc_module\":\"builtins\"},"
                                "\"traceback\":\"tb\",\"children\":[],\"delivery_count\":2,"
                                "\"hostname\":\"h@x\"}");
    struct task__result back;
    assert_int_equal(task__result_decode(w.body, w.body_len, &back, NULL), 0);
    assert_int_equal(back.delivery_count, 2);
    assert_string_equal(back.traceback, "tb");
    task__result_clear(&back);
    task__result_wire_free(&w);
    json_object_put(exc);
    task_error err = {0};
    assert_int_equal(task__result_decode("{\"status\":\"SUCCESS\"}", 20, &back, &err), TASK_EPROTO);
    assert_int_equal(task__result_decode("[1]", 3, &back, NULL), TASK_EPROTO);
    assert_int_equal(task__result_decode("{\"task_", 7, &back, NULL), TASK_EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_captured_result_roundtrips),
        cmocka_unit_test(extras_and_exceptions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
