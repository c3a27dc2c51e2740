/*
 * test_delay.c - countdown/eta through the broker-side delay cascade: tasks wait in the
 * taskd.delay.* queues, not unacked in the worker, and arrive within a second of their due time;
 * an `expires` (with Celery's AMQP expiration) neither loses the task in the cascade nor lets it
 * run after its expiry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <task/client.h>
#include "conn.h"
#include "itest.h"

static char queue[64];
static struct itest_worker worker;

static task_client *client(void)
{
    task_client *c = itest_client(queue, NULL);
    assert_non_null(c);
    return c;
}

/* Ready messages in `q`, or -1 if it does not exist. */
static long depth(struct task__conn *cn, const char *q)
{
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(task__conn_amqp(cn), 1, amqp_cstring_bytes(q),
                                                     1, 0, 0, 0, amqp_empty_table);
    return ok ? (long)ok->message_count : -1;
}

/* Messages parked in the cascade; *ready gets the task queue's own ready count. */
static long delayed_total(long *ready_out)
{
    task_strlist urls = {.v = (char *[]){(char *)itest_broker()}, .n = 1};
    struct task__conn_opts o = {.urls = &urls, .connect_timeout_s = 5, .name = "itest"};
    struct task__conn *cn;
    assert_int_equal(task__conn_open(&cn, &o, NULL), 0);
    assert_int_equal(task__conn_channel_open(cn, 1), 0);
    long sum = 0;
    for (int level = 0; level < 28; level++) {
        char q[40];
        snprintf(q, sizeof(q), "taskd.delay.%d", 100 + level);
        long n = depth(cn, q);
        sum += n > 0 ? n : 0;
    }
    *ready_out = depth(cn, queue);
    task__conn_close(cn);
    return sum;
}

/* The cascade's queues are quorum queues that dead-letter at least once: declaring one with
 * exactly those arguments is accepted (the broker refuses, 406, any that differ), and the same
 * name as a classic queue is refused. A classic queue's expiry move has no confirm: a broker
 * killed in the middle of it lost messages (taskd/delay.c). */
static void cascade_dead_letters_at_least_once(void **state)
{
    (void)state;
    task_client *c = client();
    task_id id;
    task_send_opts o = {.countdown_s = 3};
    json_object *a = json_object_new_array();
    json_object_array_add(a, json_object_new_int(1));
    json_object_array_add(a, json_object_new_int(2));
    assert_int_equal(task_send(c, "test.add", a, NULL, &o, &id), 0);
    json_object_put(a);
    task_state st;
    assert_int_equal(task_wait(c, id.str, 20000, &st, NULL), 0);
    assert_int_equal(st, TASK_STATE_SUCCESS);
    task_client_free(c);

    task_strlist urls = {.v = (char *[]){(char *)itest_broker()}, .n = 1};
    struct task__conn_opts co = {.urls = &urls, .connect_timeout_s = 5, .name = "itest"};
    struct task__conn *cn;
    assert_int_equal(task__conn_open(&cn, &co, NULL), 0);
    for (int level = 0; level < 28; level++) {
        char q[40], next[40];
        snprintf(q, sizeof(q), "taskd.delay.%d", 100 + level);
        snprintf(next, sizeof(next), level == 0 ? "taskd.delivery" : "taskd.delay.%d",
                 100 + level - 1);
        amqp_table_entry_t e[5] = {
            {.key = amqp_cstring_bytes("x-message-ttl"),
             .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = (int64_t)(1ll << level) * 1000}},
            {.key = amqp_cstring_bytes("x-dead-letter-exchange"),
             .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(next)}},
            {.key = amqp_cstring_bytes("x-queue-type"),
             .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("quorum")}},
            {.key = amqp_cstring_bytes("x-dead-letter-strategy"),
             .value = {.kind = AMQP_FIELD_KIND_UTF8,
                       .value.bytes = amqp_cstring_bytes("at-least-once")}},
            {.key = amqp_cstring_bytes("x-overflow"),
             .value = {.kind = AMQP_FIELD_KIND_UTF8,
                       .value.bytes = amqp_cstring_bytes("reject-publish")}},
        };
        uint16_t ch = (uint16_t)(1 + 2 * level); /* a refusal closes its channel */
        assert_int_equal(task__conn_channel_open(cn, ch), 0);
        amqp_table_t args = {.num_entries = 5, .entries = e};
        if (task__conn_declare_queue(cn, ch, q, true, false, false, args) != 0)
            fail_msg("%s: %s", q, task__conn_errmsg(cn));
        assert_int_equal(task__conn_channel_open(cn, ch + 1), 0);
        args.num_entries = 2; /* as a classic queue, as before */
        assert_int_not_equal(task__conn_declare_queue(cn, ch + 1, q, true, false, false, args),
                             0);
    }
    task__conn_close(cn);
}

static void countdown_tasks_wait_in_the_broker_and_arrive_on_time(void **state)
{
    (void)state;
    enum { N = 200 };
    task_client *c = client();
    static task_id ids[N];
    double sent = itest_now();
    for (int i = 0; i < N; i++) {
        json_object *a = json_object_new_array();
        json_object_array_add(a, json_object_new_int(i));
        json_object_array_add(a, json_object_new_int(1));
        task_send_opts o = {.countdown_s = 6};
        assert_int_equal(task_send(c, "test.add", a, NULL, &o, &ids[i]), 0);
        json_object_put(a);
    }
    double send_time = itest_now() - sent;
    /* Due in 6 s; back from the cascade at the earliest 5 s after the first send. The worker
     * moves each message from the task queue into the cascade as it arrives. */
    long parked = 0, ready = -1;
    while (itest_now() - sent < 4.5) {
        parked = delayed_total(&ready);
        if (ready == 0 && parked >= N - 5)
            break;
        usleep(100000);
    }
    print_message("parked in taskd.delay.*: %ld of %d, ready in the task queue: %ld\n", parked,
                  N, ready);
    assert_int_equal(ready, 0);    /* nothing waits in the task queue itself */
    assert_true(parked >= N - 5);  /* a few may be passing between levels right now */
    assert_true(send_time < 4.5);  /* else the check above raced the first returns */
    for (int i = 0; i < N; i++) {
        task_state st;
        json_object *res = NULL;
        assert_int_equal(task_wait(c, ids[i].str, 15000, &st, &res), 0);
        assert_int_equal(st, TASK_STATE_SUCCESS);
        assert_int_equal(json_object_get_int(res), i + 1);
        json_object_put(res);
        if (i == 0)
            assert_true(itest_now() - sent >= 6.0);
    }
    double took = itest_now() - sent;
    print_message("200 tasks with countdown 6 s done after %.2f s (sending took %.2f s)\n", took,
                  send_time);
    assert_true(took < 6.0 + send_time + 1.2);
    assert_true(itest_file_has(worker.log, "event=task_delayed"));
    task_client_free(c);
}

static void expiry_is_kept_through_the_cascade(void **state)
{
    (void)state;
    task_client *c = client();
    json_object *a = json_object_new_array();
    json_object_array_add(a, json_object_new_int(2));
    json_object_array_add(a, json_object_new_int(2));
    /* Expires after it is due: must run (the AMQP expiration must not drop it on the way). */
    task_send_opts runs = {.countdown_s = 2, .expires_s = 10};
    /* Expires before it is due: must come back REVOKED, never run. */
    task_send_opts expires = {.countdown_s = 3, .expires_s = 1.5};
    task_id a_id, b_id;
    assert_int_equal(task_send(c, "test.add", a, NULL, &runs, &a_id), 0);
    assert_int_equal(task_send(c, "test.add", a, NULL, &expires, &b_id), 0);
    json_object_put(a);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, a_id.str, 15000, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_SUCCESS);
    json_object_put(res);
    assert_int_equal(task_wait(c, b_id.str, 15000, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_REVOKED);
    json_object_put(res);
    task_client_free(c);
}

static int setup(void **state)
{
    (void)state;
    snprintf(queue, sizeof(queue), "t_delay_%d", (int)getpid());
    return itest_worker_start(&worker, queue, NULL, NULL);
}

static int teardown(void **state)
{
    (void)state;
    return itest_worker_stop(&worker, SIGTERM, 15) == 0 ? 0 : -1;
}

int main(void)
{
    itest_broker();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cascade_dead_letters_at_least_once),
        cmocka_unit_test(countdown_tasks_wait_in_the_broker_and_arrive_on_time),
        cmocka_unit_test(expiry_is_kept_through_the_cascade),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
