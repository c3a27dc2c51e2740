/*
 * test_control.c - pidbox requests as anyone can publish them to the celery.pidbox fanout:
 * control_req_parse() refuses every shape that is not a request, and control_on_delivery()
 * (with the worker stubbed) survives them. A [null] destination and a revoke of [null] once
 * crashed every worker (issue 15).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "control_req.h"
#include "log.h"
#include "stub_worker.h"

#define HOST "celery@w1"

static struct worker *w;

static int setup(void **state)
{
    (void)state;
    memset(&stub_calls, 0, sizeof(stub_calls));
    w = stub_worker_new(HOST);
    return w == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    stub_worker_free(w);
    w = NULL;
    return 0;
}

static void deliver(const char *body)
{
    struct task__delivery d = {0};
    d.msg.body = amqp_cstring_bytes(body);
    control_on_delivery(w, &d);
}

static enum control_bad parse_why(const char *body)
{
    struct control_req req;
    enum control_bad why = CONTROL_BAD_NONE;
    int rc = control_req_parse(body, strlen(body), HOST, &req, &why);
    if (rc == 0) {
        assert_int_equal(why, CONTROL_BAD_NONE);
        control_req_free(&req);
    } else {
        assert_int_equal(rc, TASK_EPROTO);
        assert_null(req.root);
    }
    return why;
}

#define REPLY ",\"reply_to\":{\"exchange\":\"reply.celery.pidbox\",\"routing_key\":\"rk1\"}," \
              "\"ticket\":\"t1\""

static void null_destination_element_names_no_one(void **state)
{
    (void)state;
    deliver("{\"method\":\"ping\",\"destination\":[null]" REPLY "}");
    assert_int_equal(stub_calls.replies, 0);
    deliver("{\"method\":\"ping\",\"destination\":[null,7,{},[\"" HOST "\"]]" REPLY "}");
    assert_int_equal(stub_calls.replies, 0);
    deliver("{\"method\":\"ping\",\"destination\":[null,\"" HOST "\"]" REPLY "}");
    assert_int_equal(stub_calls.replies, 1);
    assert_string_equal(stub_calls.reply_rk, "rk1");
    assert_non_null(strstr(stub_calls.reply_body, "pong"));
    assert_int_equal(stub_calls.control_rejected, 0);
}

static void revoke_of_null_ids_revokes_nothing(void **state)
{
    (void)state;
    deliver("{\"method\":\"revoke\",\"arguments\":{\"task_id\":[null]}}");
    assert_int_equal(stub_calls.revokes, 0);
    assert_int_equal(w->revoked.count, 0);
    assert_int_equal(stub_calls.control_rejected, 1);
    deliver("{\"method\":\"revoke\",\"arguments\":{\"task_id\":null}}");
    deliver("{\"method\":\"revoke\",\"arguments\":{\"task_id\":5}}");
    deliver("{\"method\":\"revoke\",\"arguments\":null}");
    deliver("{\"method\":\"revoke\"}");
    assert_int_equal(w->revoked.count, 0);
    assert_int_equal(stub_calls.control_rejected, 5);
    /* Good ids among junk are still revoked. */
    deliver("{\"method\":\"revoke\",\"arguments\":{\"task_id\":[\"a-1\",null,5,\"\",[],\"b-2\"],"
            "\"terminate\":true}}");
    assert_int_equal(stub_calls.revokes, 2);
    assert_int_equal(stub_calls.terminates, 2);
    assert_true(revoked_has(w, "a-1"));
    assert_true(revoked_has(w, "b-2"));
    assert_int_equal(w->revoked.count, 2);
    /* "terminate": "yes" is not true: no coercion of a string into a kill. */
    deliver("{\"method\":\"revoke\",\"arguments\":{\"task_id\":\"c-3\",\"terminate\":\"yes\"}}");
    assert_int_equal(stub_calls.terminates, 2);
    assert_true(revoked_has(w, "c-3"));
}

static void method_must_be_a_string(void **state)
{
    (void)state;
    const char *bad[] = {"{}", "{\"method\":null}", "{\"method\":1}", "{\"method\":[\"ping\"]}",
                         "{\"method\":{}}", "{\"method\":\"\"}", "{\"method\":true}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse_why(bad[i]), CONTROL_BAD_METHOD);
        deliver(bad[i]);
    }
    assert_int_equal(stub_calls.control_rejected, (int)(sizeof(bad) / sizeof(bad[0])));
    assert_int_equal(stub_calls.last_reject_reason, CONTROL_BAD_METHOD);
    assert_int_equal(stub_calls.replies, 0);
}

static void other_fields_must_have_their_types(void **state)
{
    (void)state;
    assert_int_equal(parse_why(""), CONTROL_BAD_NOT_JSON);
    assert_int_equal(parse_why("{\"method\":"), CONTROL_BAD_NOT_JSON);
    assert_int_equal(parse_why("[\"ping\"]"), CONTROL_BAD_NOT_OBJECT);
    assert_int_equal(parse_why("null"), CONTROL_BAD_NOT_JSON); /* json-c parses null as NULL */
    assert_int_equal(parse_why("{\"method\":\"ping\",\"destination\":\"" HOST "\"}"),
                     CONTROL_BAD_DESTINATION);
    assert_int_equal(parse_why("{\"method\":\"revoke\",\"arguments\":[1]}"),
                     CONTROL_BAD_ARGUMENTS);
    assert_int_equal(parse_why("{\"method\":\"revoke\",\"arguments\":\"x\"}"),
                     CONTROL_BAD_ARGUMENTS);
    assert_int_equal(parse_why("{\"method\":\"ping\",\"reply_to\":\"rk\",\"ticket\":\"t\"}"),
                     CONTROL_BAD_REPLY_TO);
    assert_int_equal(parse_why("{\"method\":\"ping\",\"reply_to\":{},\"ticket\":\"t\"}"),
                     CONTROL_BAD_REPLY_TO);
    assert_int_equal(
        parse_why("{\"method\":\"ping\",\"reply_to\":{\"routing_key\":null},\"ticket\":\"t\"}"),
        CONTROL_BAD_REPLY_TO);
    assert_int_equal(
        parse_why("{\"method\":\"ping\",\"reply_to\":{\"routing_key\":\"rk\"},\"ticket\":7}"),
        CONTROL_BAD_TICKET);
    char big[600] = "{\"method\":\"ping\",\"reply_to\":{\"routing_key\":\"";
    size_t n = strlen(big);
    memset(big + n, 'k', 300);
    strcpy(big + n + 300, "\"},\"ticket\":\"t\"}");
    assert_int_equal(parse_why(big), CONTROL_BAD_REPLY_TO);
    /* A cast (no reply_to, or nulls) and a call without a ticket parse, and get no answer. */
    assert_int_equal(parse_why("{\"method\":\"ping\"}"), CONTROL_BAD_NONE);
    assert_int_equal(parse_why("{\"method\":\"ping\",\"destination\":null,\"arguments\":null,"
                               "\"reply_to\":null,\"ticket\":null}"),
                     CONTROL_BAD_NONE);
    deliver("{\"method\":\"ping\",\"reply_to\":{\"routing_key\":\"rk\"}}");
    deliver("{\"method\":\"ping\",\"reply_to\":\"rk\",\"ticket\":\"t\"}");
    deliver("{\"method\":\"ping\",\"reply_to\":{\"routing_key\":null},\"ticket\":\"t\"}");
    deliver("{\"method\":\"ping\",\"reply_to\":{\"routing_key\":\"rk\"},\"ticket\":null}");
    deliver("{\"method\":\"ping\",\"reply_to\":{\"routing_key\":\"rk\"},\"ticket\":[1]}");
    assert_int_equal(stub_calls.replies, 0);
}

static void rate_limit_with_junk_arguments_answers_an_error(void **state)
{
    (void)state;
    const char *bad[] = {
        "{\"method\":\"rate_limit\"" REPLY "}",
        "{\"method\":\"rate_limit\",\"arguments\":{}" REPLY "}",
        "{\"method\":\"rate_limit\",\"arguments\":{\"task_name\":null,\"rate_limit\":null}" REPLY
        "}",
        "{\"method\":\"rate_limit\",\"arguments\":{\"task_name\":\"no.such\",\"rate_limit\":[]}"
        REPLY "}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        deliver(bad[i]);
        assert_int_equal(stub_calls.replies, (int)i + 1);
        assert_non_null(strstr(stub_calls.reply_body, "\"error\""));
    }
    assert_int_equal(stub_calls.rate_sets, 0);
}

static void every_method_answers_a_well_formed_request(void **state)
{
    (void)state;
    const char *methods[] = {"ping", "registered", "active", "stats", "revoked", "nosuch"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        char body[300];
        snprintf(body, sizeof(body), "{\"method\":\"%s\",\"arguments\":{}" REPLY "}", methods[i]);
        deliver(body);
        assert_int_equal(stub_calls.replies, (int)i + 1);
        assert_non_null(strstr(stub_calls.reply_body, "\"" HOST "\""));
    }
    assert_non_null(strstr(stub_calls.reply_body, "KeyError('nosuch')"));
    deliver("{\"method\":\"heartbeat\"" REPLY "}");
    assert_int_equal(stub_calls.heartbeats, 1);
    deliver("{\"method\":\"shutdown\",\"destination\":[\"celery@other\"]" REPLY "}");
    assert_false(w->shutdown_asked);
    deliver("{\"method\":\"shutdown\",\"destination\":[\"" HOST "\"]" REPLY "}");
    assert_true(w->shutdown_asked);
}

/* Issue 22: every command of Celery 5.2's worker answers, also with junk arguments, and the
 * reply is the {node: value} Celery's tools read. */
static void every_celery_command_answers(void **state)
{
    (void)state;
    const char *methods[] = {"ping", "active", "reserved", "scheduled", "active_queues",
                             "registered", "revoked", "stats", "conf", "query_task", "clock",
                             "report", "hello", "dump_active", "dump_reserved", "dump_schedule",
                             "dump_tasks", "dump_revoked", "dump_conf", "rate_limit",
                             "time_limit", "enable_events", "disable_events", "heartbeat",
                             "pool_grow", "pool_shrink", "pool_restart", "autoscale",
                             "add_consumer", "cancel_consumer", "revoke", "terminate"};
    const char *args[] = {"{}", "{\"n\":\"x\",\"queue\":[1],\"ids\":7,\"task_id\":{},"
                                "\"taskinfoitems\":[null,3],\"soft\":\"a\",\"max\":-1,"
                                "\"from_node\":5,\"revoked\":[null,\"\"],\"safe\":\"yes\"}"};
    int n = 0;
    for (size_t a = 0; a < 2; a++) {
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
            char body[600];
            snprintf(body, sizeof(body), "{\"method\":\"%s\",\"arguments\":%s" REPLY "}",
                     methods[i], args[a]);
            deliver(body);
            assert_int_equal(stub_calls.replies, ++n);
            char want[300];
            snprintf(want, sizeof(want), "{\"" HOST "\":");
            assert_memory_equal(stub_calls.reply_body, want, strlen(want));
            assert_null(strstr(stub_calls.reply_body, "KeyError"));
        }
    }
    assert_int_equal(stub_calls.consumers_added, 0);    /* no queue name in either */
    assert_int_equal(stub_calls.pool_grows, 1);         /* {} is n=1; "x" is refused */
    assert_int_equal(stub_calls.time_limits, 0);        /* no task named */
    assert_false(w->shutdown_asked);
}

static void python_only_tools_say_not_supported(void **state)
{
    (void)state;
    const char *methods[] = {"memdump", "memsample", "objgraph", "election"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        char body[300];
        snprintf(body, sizeof(body), "{\"method\":\"%s\"" REPLY "}", methods[i]);
        deliver(body);
        assert_non_null(strstr(stub_calls.reply_body, "\"error\""));
        assert_non_null(strstr(stub_calls.reply_body, "not supported by taskd"));
    }
    deliver("{\"method\":\"heartbeat\"" REPLY "}");
    assert_string_equal(stub_calls.reply_body, "{\"" HOST "\":null}"); /* Celery's None */
}

static void add_consumer_checks_the_queue(void **state)
{
    (void)state;
    const char *bad[] = {
        "{\"queue\":\"\"}", "{\"queue\":\"a,b\"}", "{\"queue\":\" a\"}",
        "{\"queue\":\"q\",\"exchange\":\"other\"}", "{\"queue\":\"q\",\"exchange_type\":\"topic\"}",
        "{\"queue\":\"q\",\"routing_key\":\"rk\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[300];
        snprintf(body, sizeof(body), "{\"method\":\"add_consumer\",\"arguments\":%s" REPLY "}",
                 bad[i]);
        deliver(body);
        assert_non_null(strstr(stub_calls.reply_body, "\"error\""));
    }
    assert_int_equal(stub_calls.consumers_added, 0);
    deliver("{\"method\":\"add_consumer\",\"arguments\":{\"queue\":\"q2\",\"exchange\":null,"
            "\"exchange_type\":\"direct\",\"routing_key\":null}" REPLY "}");
    assert_string_equal(stub_calls.reply_body, "{\"" HOST "\":{\"ok\":\"add consumer q2\"}}");
    deliver("{\"method\":\"active_queues\"" REPLY "}");
    assert_non_null(strstr(stub_calls.reply_body, "\"name\":\"q2\""));
    deliver("{\"method\":\"cancel_consumer\",\"arguments\":{\"queue\":\"q2\"}" REPLY "}");
    assert_string_equal(stub_calls.reply_body,
                        "{\"" HOST "\":{\"ok\":\"no longer consuming from q2\"}}");
    deliver("{\"method\":\"cancel_consumer\",\"arguments\":{\"queue\":\"q2\"}" REPLY "}");
    assert_non_null(strstr(stub_calls.reply_body, "\"error\""));
    assert_int_equal(stub_calls.consumers_added, 1);
    assert_int_equal(stub_calls.consumers_cancelled, 1);
}

static void pool_commands_take_counts(void **state)
{
    (void)state;
    deliver("{\"method\":\"pool_grow\",\"arguments\":{\"n\":2}" REPLY "}");
    assert_string_equal(stub_calls.reply_body, "{\"" HOST "\":{\"ok\":\"pool will grow\"}}");
    deliver("{\"method\":\"pool_grow\",\"arguments\":{\"n\":\"1\"}" REPLY "}");
    deliver("{\"method\":\"pool_grow\",\"arguments\":{\"n\":0}" REPLY "}");
    assert_non_null(strstr(stub_calls.reply_body, "\"error\""));
    deliver("{\"method\":\"pool_grow\",\"arguments\":{\"n\":1e300}" REPLY "}");
    assert_non_null(strstr(stub_calls.reply_body, "\"error\""));
    assert_int_equal(stub_calls.pool_grows, 3);
    deliver("{\"method\":\"pool_shrink\",\"arguments\":{\"n\":9}" REPLY "}");
    assert_non_null(strstr(stub_calls.reply_body, "shrink by 3"));
    deliver("{\"method\":\"pool_shrink\"" REPLY "}");
    assert_non_null(strstr(stub_calls.reply_body, "at least one process"));
    deliver("{\"method\":\"pool_restart\",\"arguments\":{\"reload\":true}" REPLY "}");
    assert_non_null(strstr(stub_calls.reply_body, "cannot reload"));
    assert_int_equal(stub_calls.pool_restarts, 0);
    deliver("{\"method\":\"pool_restart\"" REPLY "}");
    assert_int_equal(stub_calls.pool_restarts, 1);
}

int main(void)
{
    (void)log_set_level("error");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(null_destination_element_names_no_one, setup, teardown),
        cmocka_unit_test_setup_teardown(revoke_of_null_ids_revokes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(method_must_be_a_string, setup, teardown),
        cmocka_unit_test_setup_teardown(other_fields_must_have_their_types, setup, teardown),
        cmocka_unit_test_setup_teardown(rate_limit_with_junk_arguments_answers_an_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(every_method_answers_a_well_formed_request, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(every_celery_command_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(python_only_tools_say_not_supported, setup, teardown),
        cmocka_unit_test_setup_teardown(add_consumer_checks_the_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(pool_commands_take_counts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
