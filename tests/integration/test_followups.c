/*
 * test_followups.c - what comes after a task, tried the way an outside attacker broke it: a
 * callback naming a queue, id or reply_to past AMQP's 255 bytes; a follow-up queue deleted after
 * the worker declared it; a chord callback whose queue the broker refuses; the worker's own queue
 * deleted and re-created; options inside signatures (a link's link, a step's countdown); a chain
 * whose middle step fails. Each ends in a state a caller can see, and no task loops.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <task/canvas.h>
#include <task/client.h>
#include "codec.h"
#include "conn.h"
#include "itest.h"

static char queue[96];
static struct itest_worker w;
static task_client *c;
static struct task__conn *admin; /* a plain connection for what an operator would do */

static const char *exc_type(json_object *res)
{
    json_object *v;
    return json_object_object_get_ex(res, "exc_type", &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : "";
}

static void expect(const char *id, task_state want, const char *want_exc, int timeout_ms)
{
    task_state st = TASK_STATE_PENDING;
    json_object *res = NULL;
    int rc = task_wait(c, id, timeout_ms, &st, &res);
    if (rc != 0 || st != want || (want_exc && strcmp(exc_type(res), want_exc) != 0))
        fprintf(stderr, "task %s: rc %d %s %s, wanted %s %s\n", id, rc, task_state_name(st),
                res ? json_object_to_json_string(res) : "null", task_state_name(want),
                want_exc ? want_exc : "");
    assert_int_equal(rc, 0);
    assert_int_equal(st, want);
    if (want_exc != NULL)
        assert_string_equal(exc_type(res), want_exc);
    json_object_put(res);
}

/* A signature with options (JSON text), as a Celery client writes one. */
static json_object *sig(const char *text)
{
    json_object *o = json_tokener_parse(text);
    assert_non_null(o);
    return o;
}

static int setup(void **state)
{
    (void)state;
    snprintf(queue, sizeof(queue), "t_fu_%d", (int)getpid());
    const char *args[] = {"-c", "1", "--threads", "4", NULL};
    if (itest_worker_start(&w, queue, NULL, args) != 0)
        return -1;
    c = itest_client(queue, NULL);
    task_strlist urls = {.v = (char *[]){(char *)itest_broker()}, .n = 1};
    struct task__conn_opts co = {.urls = &urls, .connect_timeout_s = 5, .name = "test admin"};
    task_error err = {0};
    if (c == NULL || task__conn_open(&admin, &co, &err) != 0 ||
        task__conn_channel_open(admin, 1) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = itest_worker_stop(&w, SIGTERM, 20);
    task_client_free(c);
    if (admin != NULL)
        task__conn_close(admin);
    /* One session from start to end: nothing made the worker drop its connection. */
    int connects = itest_file_count(w.log, "event=broker_connected");
    if (connects != 1)
        fprintf(stderr, "worker connected %d times (log %s)\n", connects, w.log);
    return rc == 0 && connects == 1 ? 0 : -1;
}

static void delete_queue(const char *q)
{
    amqp_queue_delete(task__conn_amqp(admin), 1, amqp_cstring_bytes(q), 0, 0);
    assert_int_equal(task__conn_check(admin, amqp_get_rpc_reply(task__conn_amqp(admin)), q), 0);
}

/* Runs of task `id` the worker logged (debug level: task_succeeded/task_failed lines). */
static int runs_of(const char *id)
{
    char needle[160];
    snprintf(needle, sizeof(needle), "task_id=%s runtime_s=", id);
    return itest_file_count(w.log, needle);
}

static void overlong_callback_fields_do_not_break_the_connection(void **state)
{
    (void)state;
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *keys[] = {"queue", "task_id", "reply_to"};
    for (int k = 0; k < 3; k++) {
        char text[700];
        snprintf(text, sizeof(text),
                 "[{\"task\": \"test.add\", \"args\": [1], \"options\": {\"%s\": \"%s\"}}]",
                 keys[k], big);
        json_object *link = sig(text);
        task_send_opts o = {.link = link};
        json_object *args = json_tokener_parse("[1, 2]");
        task_id id;
        assert_int_equal(task_send(c, "test.add", args, NULL, &o, &id), 0);
        expect(id.str, TASK_STATE_SUCCESS, NULL, 20000);
        json_object_put(args);
        json_object_put(link);
        usleep(300000); /* a loop would show as more runs */
        assert_int_equal(runs_of(id.str), 1);
    }
    assert_true(itest_file_has(w.log, "event=canvas_skipped"));
}

static void a_deleted_follow_up_queue_is_declared_again(void **state)
{
    (void)state;
    char zq[128];
    snprintf(zq, sizeof(zq), "%s_z", queue);
    for (int round = 0; round < 2; round++) {
        char text[300], cb_id[64];
        snprintf(cb_id, sizeof(cb_id), "zcb-%d-%d", (int)getpid(), round);
        snprintf(text, sizeof(text),
                 "[{\"task\": \"test.echo\", \"args\": [], \"immutable\": true, "
                 "\"options\": {\"queue\": \"%s\", \"task_id\": \"%s\"}}]",
                 zq, cb_id);
        json_object *link = sig(text);
        task_send_opts o = {.link = link};
        json_object *args = json_tokener_parse("[1, 2]");
        task_id id;
        assert_int_equal(task_send(c, "test.add", args, NULL, &o, &id), 0);
        expect(id.str, TASK_STATE_SUCCESS, NULL, 20000);
        json_object_put(args);
        json_object_put(link);
        usleep(500000);
        assert_true(runs_of(id.str) <= 2); /* one bounce at most, never a loop */
        /* Nobody consumes zq: the callback is there, once. */
        amqp_queue_declare_ok_t ok;
        uint16_t refused;
        assert_int_equal(task__conn_declare_probe(admin, 1, zq, true, amqp_empty_table, &ok,
                                                  &refused),
                         0);
        assert_int_equal(ok.message_count, 1);
        delete_queue(zq); /* an operator cleans up (or x-expires does) */
    }
}

static void a_refused_chord_callback_fails_once(void **state)
{
    (void)state;
    char rq[128];
    snprintf(rq, sizeof(rq), "%s_refused", queue);
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-max-priority"),
                            .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 5}};
    assert_int_equal(task__conn_declare_queue(admin, 1, rq, true, false, false,
                                              (amqp_table_t){.num_entries = 1, .entries = &e}),
                     0);
    json_object *a = json_tokener_parse("[1, 2]");
    json_object *header[2] = {task_sig_new("test.add", a, NULL, NULL, false),
                              task_sig_new("test.add", a, NULL, NULL, false)};
    json_object *cb = task_sig_new("test.xsum", NULL, NULL, rq, false);
    task_id done, ids[2];
    assert_int_equal(task_send_chord(c, header, 2, cb, NULL, &done, ids), 0);
    expect(done.str, TASK_STATE_FAILURE, "QueueRefused", 20000);
    usleep(500000);
    for (int i = 0; i < 2; i++)
        assert_int_equal(runs_of(ids[i].str), 1);
    delete_queue(rq);
    json_object_put(header[0]);
    json_object_put(header[1]);
    json_object_put(cb);
    json_object_put(a);
}

static void the_worker_consumes_its_queue_again_after_a_delete(void **state)
{
    (void)state;
    delete_queue(queue);
    assert_int_equal(itest_file_waits_for(w.log, "event=consumer_cancelled_by_broker", 10), 1);
    /* A client sends again: its declare re-creates the queue, the worker finds it. */
    json_object *args = json_tokener_parse("[2, 2]");
    task_id id;
    assert_int_equal(task_send(c, "test.add", args, NULL, NULL, &id), 0);
    json_object_put(args);
    expect(id.str, TASK_STATE_SUCCESS, NULL, 20000);
}

static void options_inside_signatures_are_honoured(void **state)
{
    (void)state;
    char text[600], inner_id[64], step_id[64];
    /* A link with a link of its own. */
    snprintf(inner_id, sizeof(inner_id), "inner-%d", (int)getpid());
    snprintf(text, sizeof(text),
             "[{\"task\": \"test.add\", \"args\": [10], \"options\": {\"link\": "
             "[{\"task\": \"test.add\", \"args\": [100], \"options\": {\"task_id\": \"%s\"}}]}}]",
             inner_id);
    json_object *link = sig(text);
    task_send_opts o = {.link = link};
    json_object *args = json_tokener_parse("[1, 2]");
    task_id id;
    assert_int_equal(task_send(c, "test.add", args, NULL, &o, &id), 0);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, inner_id, 20000, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), 113);
    json_object_put(res);
    json_object_put(link);
    json_object_put(args);

    /* A chain step with a countdown of its own. */
    snprintf(step_id, sizeof(step_id), "step-%d", (int)getpid());
    snprintf(text, sizeof(text),
             "{\"task\": \"test.add\", \"args\": [10], \"options\": {\"countdown\": 2, "
             "\"task_id\": \"%s\"}}",
             step_id);
    json_object *a12 = json_tokener_parse("[1, 2]");
    json_object *sigs[2] = {task_sig_new("test.add", a12, NULL, NULL, false), sig(text)};
    task_id last;
    double t0 = itest_now();
    assert_int_equal(task_send_chain(c, sigs, 2, NULL, &last), 0);
    assert_int_equal(task_wait(c, last.str, 20000, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), 13);
    assert_true(itest_now() - t0 >= 1.9);
    json_object_put(res);
    json_object_put(sigs[0]);
    json_object_put(sigs[1]);
    json_object_put(a12);
}

static void a_failed_chain_step_fails_the_rest(void **state)
{
    (void)state;
    json_object *a12 = json_tokener_parse("[1, 2]"), *m = json_tokener_parse("[\"boom\"]");
    json_object *a10 = json_tokener_parse("[10]");
    json_object *sigs[3] = {task_sig_new("test.add", a12, NULL, NULL, false),
                            task_sig_new("test.fail", m, NULL, NULL, true),
                            task_sig_new("test.add", a10, NULL, NULL, false)};
    task_id last;
    assert_int_equal(task_send_chain(c, sigs, 3, NULL, &last), 0);
    expect(last.str, TASK_STATE_FAILURE, "ValueError", 20000);
    for (int i = 0; i < 3; i++)
        json_object_put(sigs[i]);
    json_object_put(a12);
    json_object_put(m);
    json_object_put(a10);
}

/* A countdown, then retries by the backoff policy (the later ones parked in the cascade), then a
 * chain step and a link without an id: all of it reaches its end, once. */
static void countdown_backoff_chain_and_link(void **state)
{
    (void)state;
    char text[300], cb_id[64];
    snprintf(cb_id, sizeof(cb_id), "bo-link-%d", (int)getpid());
    snprintf(text, sizeof(text),
             "{\"task\": \"test.backoff\", \"args\": [3], \"immutable\": true, "
             "\"options\": {\"link\": [{\"task\": \"test.add\", \"args\": [1000], "
             "\"options\": {\"task_id\": \"%s\"}}]}}",
             cb_id);
    json_object *a12 = json_tokener_parse("[1, 2]");
    json_object *sigs[2] = {task_sig_new("test.add", a12, NULL, NULL, false), sig(text)};
    task_send_opts o = {.countdown_s = 2};
    task_id last;
    double t0 = itest_now();
    assert_int_equal(task_send_chain(c, sigs, 2, &o, &last), 0);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, last.str, 40000, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), 3); /* three retries, then done */
    json_object_put(res);
    assert_true(itest_now() - t0 >= 2 + 0.5 + 1 + 2 - 0.2);
    assert_int_equal(task_wait(c, cb_id, 20000, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), 1003);
    json_object_put(res);
    assert_true(itest_file_has(w.log, "event=task_delayed task=test.backoff"));
    json_object_put(sigs[0]);
    json_object_put(sigs[1]);
    json_object_put(a12);
}

/* A task id past 255 bytes (legal in a header, impossible as the result's correlation_id) with a
 * reply queue: quarantined once, not requeued forever because its FAILURE cannot be sent. */
static void an_overlong_task_id_is_quarantined_once(void **state)
{
    (void)state;
    char big[301];
    memset(big, 'i', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct task__msg m = {.task = "test.add", .id = big, .correlation_id = "short-corr",
                          .reply_to = "t_fu_nobody", .group_index = -1, .delivery_mode = 2};
    m.args = json_tokener_parse("[1, 2]");
    struct task__wire wire;
    task_error err = {0};
    assert_int_equal(task__msg_encode(&m, &wire, &err), 0);
    assert_int_equal(task__conn_publish(admin, 1, "", queue, &wire.props, wire.body,
                                        wire.body_len, NULL),
                     0);
    task__wire_free(&wire);
    json_object_put(m.args);
    assert_int_equal(itest_file_waits_for(w.log, "longer than 255 bytes", 10), 1);
    usleep(1000000); /* a loop would run thousands of times a second */
    assert_int_equal(itest_file_count(w.log, "header 'id': longer than 255 bytes"), 1);
}

int main(void)
{
    if (itest_broker() == NULL)
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(overlong_callback_fields_do_not_break_the_connection),
        cmocka_unit_test(a_deleted_follow_up_queue_is_declared_again),
        cmocka_unit_test(a_refused_chord_callback_fails_once),
        cmocka_unit_test(options_inside_signatures_are_honoured),
        cmocka_unit_test(a_failed_chain_step_fails_the_rest),
        cmocka_unit_test(countdown_backoff_chain_and_link),
        cmocka_unit_test(an_overlong_task_id_is_quarantined_once),
        cmocka_unit_test(the_worker_consumes_its_queue_again_after_a_delete),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
