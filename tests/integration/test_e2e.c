/*
 * test_e2e.c - the main path against a real broker: libtask client -> taskd (with the test-task
 * module) -> results. Each test uses its own queue and dead queue.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <task/client.h>
#include "conn.h"
#include "internal.h"
#include "itest.h"
#include "stream.h"

static char queue[128], dead[160], dead_env[200];
static struct itest_worker worker;

static task_client *client_for(const char *q)
{
    task_client *c = itest_client(q, NULL);
    assert_non_null(c);
    return c;
}

static int setup(void **state)
{
    (void)state;
    snprintf(queue, sizeof(queue), "t_e2e_%d", (int)getpid());
    snprintf(dead, sizeof(dead), "%s.dead", queue);
    snprintf(dead_env, sizeof(dead_env), "TASKD_WORKER_DEAD_QUEUE=%s", dead);
    const char *env[] = {dead_env, NULL};
    return itest_worker_start(&worker, queue, env, NULL);
}

static int teardown(void **state)
{
    (void)state;
    int rc = itest_worker_stop(&worker, SIGTERM, 15);
    return rc == 0 ? 0 : -1;
}

static json_object *ints(int a, int b)
{
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_int(a));
    json_object_array_add(args, json_object_new_int(b));
    return args;
}

static void thousand_adds_give_thousand_correct_results(void **state)
{
    (void)state;
    enum { N = 1000 };
    task_client *c = client_for(queue);
    static task_id ids[N];
    for (int i = 0; i < N; i++) {
        json_object *args = ints(i, 2 * i);
        int rc = task_send(c, "test.add", args, NULL, NULL, &ids[i]);
        json_object_put(args);
        assert_int_equal(rc, 0);
    }
    for (int i = 0; i < N; i++) {
        task_state st;
        json_object *res = NULL;
        int rc = task_wait(c, ids[i].str, 20000, &st, &res);
        if (rc != 0)
            fail_msg("wait %d: %s", i, task_client_errmsg(c));
        assert_int_equal(st, TASK_STATE_SUCCESS);
        assert_true(json_object_is_type(res, json_type_int));
        assert_int_equal(json_object_get_int(res), 3 * i);
        json_object_put(res);
    }
    task_client_free(c);
}

static void fail_gives_failure_with_exception_fields(void **state)
{
    (void)state;
    task_client *c = client_for(queue);
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_string("boom happened"));
    task_id id;
    assert_int_equal(task_send(c, "test.fail", args, NULL, NULL, &id), 0);
    json_object_put(args);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id.str, 10000, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_FAILURE);
    json_object *v;
    assert_true(json_object_object_get_ex(res, "exc_type", &v));
    assert_string_equal(json_object_get_string(v), "ValueError");
    assert_true(json_object_object_get_ex(res, "exc_module", &v));
    assert_string_equal(json_object_get_string(v), "builtins");
    assert_true(json_object_object_get_ex(res, "exc_message", &v));
    assert_true(json_object_is_type(v, json_type_array));
    assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 0)), "boom happened");
    json_object_put(res);
    task_client_free(c);
}

/* Number of messages ready in `q` (passive declare), -1 if it does not exist. */
static int queue_depth(const char *q)
{
    task_strlist urls = {.v = (char *[]){(char *)itest_broker()}, .n = 1};
    struct task__conn_opts o = {.urls = &urls, .connect_timeout_s = 5, .name = "itest"};
    struct task__conn *cn;
    task_error err = {0};
    assert_int_equal(task__conn_open(&cn, &o, &err), 0);
    assert_int_equal(task__conn_channel_open(cn, 1), 0);
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(task__conn_amqp(cn), 1,
                                                     amqp_cstring_bytes(q), 1, 0, 0, 0,
                                                     amqp_empty_table);
    int n = ok ? (int)ok->message_count : -1;
    task__conn_close(cn);
    return n;
}

static void unknown_task_fails_fast_and_worker_goes_on(void **state)
{
    (void)state;
    task_client *c = client_for(queue);
    task_id id;
    double t0 = itest_now();
    assert_int_equal(task_send(c, "test.no_such_task", NULL, NULL, NULL, &id), 0);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id.str, 10000, &st, &res), 0);
    assert_true(itest_now() - t0 < 5);
    assert_int_equal(st, TASK_STATE_FAILURE);
    json_object *v;
    assert_true(json_object_object_get_ex(res, "exc_type", &v));
    assert_string_equal(json_object_get_string(v), "NotRegistered");
    json_object_put(res);
    /* The worker still runs tasks, and the message waits in the dead queue. */
    json_object *args = ints(20, 22);
    assert_int_equal(task_send(c, "test.add", args, NULL, NULL, &id), 0);
    json_object_put(args);
    assert_int_equal(task_wait(c, id.str, 10000, &st, &res), 0);
    assert_int_equal(json_object_get_int(res), 42);
    json_object_put(res);
    assert_true(itest_worker_alive(&worker));
    assert_true(queue_depth(dead) >= 1);
    task_client_free(c);
}

static void malformed_message_is_quarantined_with_reason(void **state)
{
    (void)state;
    int before = queue_depth(dead);
    task_strlist urls = {.v = (char *[]){(char *)itest_broker()}, .n = 1};
    struct task__conn_opts o = {.urls = &urls, .connect_timeout_s = 5, .name = "itest"};
    struct task__conn *cn;
    task_error err = {0};
    assert_int_equal(task__conn_open(&cn, &o, &err), 0);
    assert_int_equal(task__conn_channel_open(cn, 1), 0);
    amqp_table_entry_t h[2] = {
        {.key = amqp_cstring_bytes("task"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("test.add")}},
        {.key = amqp_cstring_bytes("id"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8,
                   .value.bytes = amqp_cstring_bytes("0b5e3c8e-1111-4222-8333-944455556666")}},
    };
    amqp_basic_properties_t p = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_HEADERS_FLAG,
        .content_type = amqp_cstring_bytes("application/json"),
        .headers = {.num_entries = 2, .entries = h}};
    const char *body = "{\"not json";
    assert_int_equal(task__conn_publish(cn, 1, "", queue, &p, body, strlen(body), NULL), 0);
    task__conn_close(cn);
    double deadline = itest_now() + 10;
    while (queue_depth(dead) <= before && itest_now() < deadline)
        usleep(50000);
    assert_int_equal(queue_depth(dead), before + 1);
    assert_true(itest_worker_alive(&worker));
    assert_true(itest_file_has(worker.log, "reason=not-json"));
}

static void count_progress(const char *tid, task_state s, const char *name, json_object *meta, void *ud)
{
    (void)tid;
    (void)name;
    if (s == TASK_STATE_PROGRESS) {
        json_object *cur;
        assert_true(json_object_object_get_ex(meta, "current", &cur));
        (*(int *)ud)++;
    }
}

/* test.progress(steps, delay) sent on client c. */
static void send_progress(task_client *c, int steps, double delay, task_id *id)
{
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_int(steps));
    json_object_array_add(args, json_object_new_double(delay));
    assert_int_equal(task_send(c, "test.progress", args, NULL, NULL, id), 0);
    json_object_put(args);
}

static void progress_states_reach_the_waiter(void **state)
{
    (void)state;
    task_client *c = client_for(queue);
    task_id id;
    send_progress(c, 3, 0.05, &id);
    int seen = 0;
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait_progress(c, id.str, 10000, &st, &res, count_progress, &seen), 0);
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), 3);
    assert_int_equal(seen, 3);
    json_object_put(res);
    task_client_free(c);
}

static void count_started(const char *tid, task_state s, const char *name, json_object *meta,
                          void *ud)
{
    (void)tid, (void)name, (void)meta;
    if (s == TASK_STATE_STARTED)
        (*(int *)ud)++;
}

/* STARTED (worker.track_started, on) goes out once a task has run 20 ms: a task that ends
 * sooner publishes its final state only (outcome.h); a longer one shows STARTED once. */
static void started_only_for_tasks_that_run_a_while(void **state)
{
    (void)state;
    task_client *c = client_for(queue);
    task_id quick[20], slow;
    for (int i = 0; i < 20; i++) {
        json_object *a = ints(i, 1);
        assert_int_equal(task_send(c, "test.add", a, NULL, NULL, &quick[i]), 0);
        json_object_put(a);
    }
    json_object *a = json_object_new_array();
    json_object_array_add(a, json_object_new_double(0.2));
    assert_int_equal(task_send(c, "test.sleep", a, NULL, NULL, &slow), 0);
    json_object_put(a);
    int started = 0;
    task_state st;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(task_wait_progress(c, quick[i].str, 10000, &st, NULL, count_started,
                                            &started), 0);
        assert_int_equal(st, TASK_STATE_SUCCESS);
    }
    assert_int_equal(started, 0);
    assert_int_equal(task_wait_progress(c, slow.str, 10000, &st, NULL, count_started, &started), 0);
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_int_equal(started, 1);
    task_client_free(c);
}

static void retry_retries_then_succeeds(void **state)
{
    (void)state;
    task_client *c = client_for(queue);
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_int(2));
    task_id id;
    assert_int_equal(task_send(c, "test.retry", args, NULL, NULL, &id), 0);
    json_object_put(args);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id.str, 15000, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), 2);
    json_object_put(res);
    task_client_free(c);
}

/* test.flaky(times, type): TASK(.autoretry_for = "ConnectionError TimeoutError",
 * .max_retries = 3). Listed types retry (same id, retries + 1) until success or max_retries,
 * then fail with the task's own exception; other types fail at once. */
static void autoretry_for_listed_failures(void **state)
{
    (void)state;
    task_client *c = client_for(queue);
    struct { int times; const char *type; task_state want; const char *exc; int value; } cases[] = {
        {2, "ConnectionError", TASK_STATE_SUCCESS, NULL, 2},
        {1, "ValueError", TASK_STATE_FAILURE, "ValueError", 0},
        {9, "TimeoutError", TASK_STATE_FAILURE, "TimeoutError", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *args = json_object_new_array();
        json_object_array_add(args, json_object_new_int(cases[i].times));
        json_object_array_add(args, json_object_new_string(cases[i].type));
        task_id id;
        assert_int_equal(task_send(c, "test.flaky", args, NULL, NULL, &id), 0);
        json_object_put(args);
        task_state st;
        json_object *res = NULL;
        assert_int_equal(task_wait(c, id.str, 15000, &st, &res), 0);
        assert_int_equal(st, cases[i].want);
        if (cases[i].exc != NULL) {
            json_object *v;
            assert_true(json_object_object_get_ex(res, "exc_type", &v));
            assert_string_equal(json_object_get_string(v), cases[i].exc);
            assert_true(json_object_object_get_ex(res, "exc_message", &v));
            /* the last attempt's message: 4 attempts for max_retries 3, 1 for no autoretry */
            assert_non_null(strstr(json_object_to_json_string(v),
                                   cases[i].times > 3 ? "attempt 4 failed" : "attempt 1 failed"));
        } else {
            assert_int_equal(json_object_get_int(res), cases[i].value);
        }
        json_object_put(res);
    }
    task_client_free(c);
}

/* test.add(a, b) on queue q, waited for by its sender, then looked up by a new client, which
 * is returned (and must find a + b). */
static task_client *add_then_look_up_elsewhere(const char *q, int a, int b, task_id *id)
{
    task_client *c = client_for(q);
    json_object *args = ints(a, b);
    assert_int_equal(task_send(c, "test.add", args, NULL, NULL, id), 0);
    json_object_put(args);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id->str, 10000, &st, &res), 0);
    json_object_put(res);
    task_client_free(c);
    task_client *other = client_for(q);
    res = NULL;
    assert_int_equal(task_lookup(other, id->str, 0, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), a + b);
    json_object_put(res);
    return other;
}

static void lookup_from_another_client_finds_final_state(void **state)
{
    (void)state;
    task_id id;
    task_client *other = add_then_look_up_elsewhere(queue, 7, 8, &id);
    task_state st;
    json_object *res = NULL;
    char unknown[37];
    snprintf(unknown, sizeof(unknown), "%s", id.str);
    unknown[35] = unknown[35] == '0' ? '1' : '0'; /* same time, different id */
    assert_int_equal(task_lookup(other, unknown, 0, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_PENDING);
    assert_null(res);
    task_client_free(other);
}

/* Lookups stop at the id's final state, before the end of the stream: many records written
 * after it, and lookups in a row on one client (a stopped read must not confuse the next). */
static void lookups_in_a_row_stop_at_the_final_state(void **state)
{
    (void)state;
    enum { N = 3000, K = 40 };
    task_client *c = client_for(queue);
    static task_id ids[N];
    for (int i = 0; i < N; i++) {
        json_object *args = ints(i, 1);
        assert_int_equal(task_send(c, "test.add", args, NULL, NULL, &ids[i]), 0);
        json_object_put(args);
    }
    for (int i = 0; i < N; i++) {
        task_state st;
        json_object *res = NULL;
        assert_int_equal(task_wait(c, ids[i].str, 30000, &st, &res), 0);
        json_object_put(res);
    }
    task_client *other = client_for(queue);
    for (int k = 0; k < K; k++) {
        int i = (k * 7919) % (N / 10); /* early ids: thousands of records follow them */
        task_state st;
        json_object *res = NULL;
        assert_int_equal(task_lookup(other, ids[i].str, 0, &st, &res), 0);
        assert_int_equal(st, TASK_STATE_SUCCESS);
        assert_int_equal(json_object_get_int(res), i + 1);
        json_object_put(res);
    }
    task_client_free(other);
    task_client_free(c);
}

/* The results streams exist with this suite's retention; a worker configured with another one
 * uses them as they are (the broker refuses a re-declaration), says so, and its results are
 * found. */
static void another_retention_keeps_the_streams(void **state)
{
    (void)state;
    char q[160];
    snprintf(q, sizeof(q), "%s_ret", queue);
    const char *env[] = {"TASKD_RESULTS_MAX_AGE=3600", dead_env, NULL};
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, env, NULL), 0);
    assert_true(itest_file_has(w.log, "event=stream_kept streams=taskd.results.* count="));
    assert_true(itest_file_has(w.log, "event=stream_kept streams=taskd.revoked"));
    task_id id;
    task_client *other = add_then_look_up_elsewhere(q, 20, 22, &id);
    task_client_free(other);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);
}

/* Polling one id from one client, as a web app's status page does: PENDING while queued, then
 * PROGRESS that never goes back, then SUCCESS; each lookup after the first reads on from where
 * the one before stopped (lookup.c's resume points) and must still see every new state. */
static void polled_lookups_follow_a_task_to_its_end(void **state)
{
    (void)state;
    char q[160];
    snprintf(q, sizeof(q), "%s_poll", queue);
    task_client *c = client_for(q);
    task_id id;
    send_progress(c, 10, 0.2, &id);
    task_client *looker = client_for(q);
    task_state st;
    json_object *res = NULL;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(task_lookup(looker, id.str, 0, &st, &res), 0);
        assert_int_equal(st, TASK_STATE_PENDING);
        assert_null(res);
    }
    const char *env[] = {dead_env, NULL};
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, env, NULL), 0);
    int last = 0, progress_seen = 0;
    double deadline = itest_now() + 20;
    st = TASK_STATE_PENDING;
    while (st != TASK_STATE_SUCCESS && itest_now() < deadline) {
        res = NULL;
        assert_int_equal(task_lookup(looker, id.str, 0, &st, &res), 0);
        json_object *cur;
        if (st == TASK_STATE_PROGRESS && json_object_object_get_ex(res, "current", &cur)) {
            if (json_object_get_int(cur) < last)
                fail_msg("PROGRESS went back from %d to %d", last, json_object_get_int(cur));
            last = json_object_get_int(cur);
            progress_seen++;
        } else if (st != TASK_STATE_SUCCESS && st != TASK_STATE_PENDING &&
                   st != TASK_STATE_STARTED) {
            fail_msg("unexpected state %s", task_state_name(st));
        }
        if (st != TASK_STATE_SUCCESS)
            json_object_put(res);
        usleep(100000);
    }
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), 10);
    json_object_put(res);
    assert_true(progress_seen > 0);
    /* Ended: the next lookup reads from the id's own time again and finds the same. */
    res = NULL;
    assert_int_equal(task_lookup(looker, id.str, 0, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), 10);
    json_object_put(res);
    task_client_free(looker);
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);
}

/* A read past 512 messages moves to a wider window through a new consumer at the next offset:
 * nothing may be lost at that seam. 3000 tasks whose ids share one results stream (over 512
 * messages, as workers batch them), then lookups that read that stream from its start: of the
 * last id (found, right result) and of an unknown id in the same stream (PENDING, read to the
 * end). */
static void long_reads_widen_and_lose_nothing(void **state)
{
    (void)state;
    enum { N = 3000 };
    task_client *c = client_for(queue);
    char first[37];
    task__uuid7(first);
    unsigned part = task__results_partition(first);
    static char ids[N][37];
    for (int i = 0; i < N; i++) {
        do
            task__uuid7(ids[i]);
        while (task__results_partition(ids[i]) != part);
        json_object *args = ints(i, 1000);
        task_send_opts o = {.task_id = ids[i]};
        task_id tid;
        assert_int_equal(task_send(c, "test.add", args, NULL, &o, &tid), 0);
        json_object_put(args);
    }
    task_state st;
    json_object *res = NULL;
    for (int i = 0; i < N; i++) {
        assert_int_equal(task_wait(c, ids[i], 30000, &st, &res), 0);
        json_object_put(res);
    }
    task_client *other = client_for(queue);
    res = NULL;
    assert_int_equal(task_lookup(other, ids[N - 1], 1, &st, &res), 0); /* 1: from the start */
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), N - 1 + 1000);
    json_object_put(res);
    char unknown[37];
    do
        task__uuid4(unknown);
    while (task__results_partition(unknown) != part);
    res = NULL;
    assert_int_equal(task_lookup(other, unknown, 0, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_PENDING);
    assert_null(res);
    task_client_free(other);
    task_client_free(c);
}

static void expired_task_is_revoked_and_never_runs(void **state)
{
    (void)state;
    task_client *c = client_for(queue);
    task_send_opts o = {.countdown_s = 1.0, .expires_s = 0.3};
    json_object *args = ints(1, 1);
    task_id id;
    assert_int_equal(task_send(c, "test.add", args, NULL, &o, &id), 0);
    json_object_put(args);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id.str, 10000, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_REVOKED);
    json_object *v;
    assert_true(json_object_object_get_ex(res, "exc_type", &v));
    assert_string_equal(json_object_get_string(v), "TaskRevokedError");
    json_object_put(res);
    task_client_free(c);
}

static void countdown_does_not_run_early(void **state)
{
    (void)state;
    task_client *c = client_for(queue);
    task_send_opts o = {.countdown_s = 1.5};
    json_object *args = ints(2, 2);
    task_id id;
    double t0 = itest_now();
    assert_int_equal(task_send(c, "test.add", args, NULL, &o, &id), 0);
    json_object_put(args);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id.str, 10000, &st, &res), 0);
    double took = itest_now() - t0;
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_true(took >= 1.45);
    assert_true(took < 3.5);
    json_object_put(res);
    task_client_free(c);
}

int main(void)
{
    itest_broker();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thousand_adds_give_thousand_correct_results),
        cmocka_unit_test(fail_gives_failure_with_exception_fields),
        cmocka_unit_test(unknown_task_fails_fast_and_worker_goes_on),
        cmocka_unit_test(malformed_message_is_quarantined_with_reason),
        cmocka_unit_test(progress_states_reach_the_waiter),
        cmocka_unit_test(started_only_for_tasks_that_run_a_while),
        cmocka_unit_test(retry_retries_then_succeeds),
        cmocka_unit_test(autoretry_for_listed_failures),
        cmocka_unit_test(lookup_from_another_client_finds_final_state),
        cmocka_unit_test(lookups_in_a_row_stop_at_the_final_state),
        cmocka_unit_test(another_retention_keeps_the_streams),
        cmocka_unit_test(polled_lookups_follow_a_task_to_its_end),
        cmocka_unit_test(long_reads_widen_and_lose_nothing),
        cmocka_unit_test(expired_task_is_revoked_and_never_runs),
        cmocka_unit_test(countdown_does_not_run_early),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
