/*
 * test_mgmt.c - the management API's answers as taskctl queues/top read them. The API is outside
 * our control (a proxy, another RabbitMQ version); a queue without "name" once crashed
 * taskctl queues (issue 15). mgmt.c is included to reach its static readers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "../../taskctl/mgmt.c"

static json_object *rows_for(const char *answer_text, int *rc)
{
    json_object *answer = json_tokener_parse(answer_text);
    json_object *rows = json_object_new_array();
    *rc = rows_of_answer(answer, rows);
    json_object_put(answer);
    return rows;
}

static void queues_without_a_name_are_left_out(void **state)
{
    (void)state;
    int rc;
    json_object *rows = rows_for("[{\"messages_ready\": 3}, {\"name\": null}, {\"name\": 5}, null,"
                                 " 7, \"q\", [], {\"name\": \"good\", \"messages_ready\": 2}]",
                                 &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(json_object_array_length(rows), 1);
    json_object *r = json_object_array_get_idx(rows, 0);
    assert_string_equal(task__json_get_str(r, "name"), "good");
    int64_t v;
    assert_int_equal(task__json_get_int(r, "ready", &v), 0);
    assert_int_equal(v, 2);
    json_object_put(rows);
    rows = rows_for("{\"messages\": 1}", &rc); /* one queue asked for, no name */
    assert_int_equal(rc, -1);
    assert_int_equal(json_object_array_length(rows), 0);
    json_object_put(rows);
    rows = rows_for("{\"name\": null}", &rc);
    assert_int_equal(rc, -1);
    json_object_put(rows);
    rows = rows_for("12", &rc);
    assert_int_equal(rc, -1);
    json_object_put(rows);
}

static void counts_and_rates_of_the_wrong_type_read_as_unknown(void **state)
{
    (void)state;
    int rc;
    json_object *rows = rows_for(
        "{\"name\": \"q\", \"messages_ready\": \"3\", \"messages_unacknowledged\": null,"
        " \"consumers\": 1.5, \"message_stats\": {\"publish_details\": {\"rate\": \"fast\"},"
        " \"deliver_get_details\": null}}",
        &rc);
    assert_int_equal(rc, 0);
    json_object *r = json_object_array_get_idx(rows, 0);
    json_object *v;
    assert_true(json_object_object_get_ex(r, "ready", &v) && v == NULL);
    assert_true(json_object_object_get_ex(r, "unacked", &v) && v == NULL);
    assert_true(json_object_object_get_ex(r, "consumers", &v) && v == NULL);
    assert_true(json_object_get_double(json_object_object_get(r, "publish_rate")) == 0.0);
    assert_true(json_object_get_double(json_object_object_get(r, "deliver_rate")) == 0.0);
    json_object_put(rows);
    rows = rows_for("{\"name\": \"q\", \"message_stats\": [], \"messages_ready\": 4,"
                    " \"message_stats\": {\"publish_details\": {\"rate\": 2}}}",
                    &rc);
    r = json_object_array_get_idx(rows, 0);
    assert_true(json_object_get_double(json_object_object_get(r, "publish_rate")) == 2.0);
    json_object_put(rows);
}

/* The password goes to the management API in every request: never over plain http:// to
 * another host unless the operator said so (issue 19). */
static int open_with(const char *url, bool allow, char *err, size_t size)
{
    task_config *cfg = task_config_new();
    task_error terr = {0};
    assert_int_equal(task_config_set(cfg, "broker.management_url", url, "test", &terr), 0);
    assert_int_equal(task_config_set(cfg, "broker.management_allow_http", allow ? "true" : "false",
                                     "test", &terr), 0);
    struct mgmt m;
    err[0] = '\0';
    int rc = mgmt_open(&m, cfg, err, size);
    if (rc == 0)
        mgmt_close(&m);
    task_config_free(cfg);
    return rc;
}

static void plain_http_password_only_to_loopback_unless_allowed(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(open_with("http://u:s3cret@10.1.2.3:15672", false, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "refusing to send the password over plain http://"));
    assert_null(strstr(err, "s3cret"));
    assert_int_equal(open_with("http://rabbit.example:15672/api", false, err, sizeof(err)), -1);
    assert_int_equal(open_with("http://rabbit.example:15672", true, err, sizeof(err)), 0);
    assert_int_equal(open_with("https://rabbit.example:15671", false, err, sizeof(err)), 0);
    assert_int_equal(open_with("http://127.0.0.1:15672", false, err, sizeof(err)), 0);
    assert_int_equal(open_with("http://localhost:15672", false, err, sizeof(err)), 0);
    assert_int_equal(open_with("http://[::1]:15672", false, err, sizeof(err)), 0);
    assert_int_equal(open_with("http://127.0.0.1.evil.example:15672", false, err, sizeof(err)),
                     -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queues_without_a_name_are_left_out),
        cmocka_unit_test(counts_and_rates_of_the_wrong_type_read_as_unknown),
        cmocka_unit_test(plain_http_password_only_to_loopback_unless_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
