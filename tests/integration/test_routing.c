/*
 * test_routing.c - where tasks go and how their queues are declared, against a real broker:
 * routes (task-name globs), several queues per worker, a per-call queue, priorities on a queue
 * configured with x-max-priority, a quorum queue, and the clear error when a worker's queue
 * arguments differ from the queue's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <task/client.h>
#include <task/config.h>
#include "itest.h"

static char qname[4][64];

/* A client whose default queue is `dflt`, with optional queues.arguments and queues.routes. */
static task_client *client(const char *dflt, const char *arguments, const char *routes)
{
    char a[200], r[200];
    snprintf(a, sizeof(a), "queues.arguments=%s", arguments ? arguments : "");
    snprintf(r, sizeof(r), "queues.routes=%s", routes ? routes : "");
    const char *settings[] = {a, r, NULL};
    task_client *c = itest_client(dflt, settings);
    assert_non_null(c);
    return c;
}

static int wait_int(task_client *c, const char *id, int timeout_ms, int64_t *out)
{
    task_state st;
    json_object *res = NULL;
    int rc = task_wait(c, id, timeout_ms, &st, &res);
    if (rc == 0 && st == TASK_STATE_SUCCESS)
        *out = json_object_get_int64(res);
    json_object_put(res);
    return rc != 0 ? rc : st == TASK_STATE_SUCCESS ? 0 : -1;
}

static task_id send_add(task_client *c, int a, int b, const task_send_opts *o)
{
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_int(a));
    json_object_array_add(args, json_object_new_int(b));
    task_id id;
    if (task_send(c, "test.add", args, NULL, o, &id) != 0)
        fail_msg("send: %s", task_client_errmsg(c));
    json_object_put(args);
    return id;
}

/* Routes pick the queue by task name; -Q takes several queues; .queue overrides both. Nothing
 * consumes the client's default queue, so a task that went there would time out. */
static void routes_multiple_queues_and_per_call_queue(void **state)
{
    (void)state;
    char routes[200], both[140];
    snprintf(routes, sizeof(routes), "test.a?d %s", qname[0]);
    snprintf(both, sizeof(both), "%s,%s", qname[0], qname[1]);
    struct itest_worker w;
    const char *args[] = {"-Q", both, NULL};
    assert_int_equal(itest_worker_start(&w, qname[0], NULL, args), 0);
    task_client *c = client(qname[2], NULL, routes);
    task_id routed = send_add(c, 2, 3, NULL);
    task_send_opts o = {.queue = qname[1]};
    task_id explicit_q = send_add(c, 4, 5, &o);
    int64_t v = 0;
    assert_int_equal(wait_int(c, routed.str, 10000, &v), 0);
    assert_int_equal(v, 5);
    assert_int_equal(wait_int(c, explicit_q.str, 10000, &v), 0);
    assert_int_equal(v, 9);
    /* An unrouted name goes to the default queue, which no worker reads. */
    json_object *e = json_object_new_array();
    json_object_array_add(e, json_object_new_string("x"));
    task_id stray;
    assert_int_equal(task_send(c, "test.echo", e, NULL, NULL, &stray), 0);
    json_object_put(e);
    task_state st;
    assert_int_equal(task_wait(c, stray.str, 1500, &st, NULL), TASK_ETIMEDOUT);
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);
}

/* Position of the task_succeeded line of `id` in the worker's log; -1 if absent. */
static int finish_rank(const char *log, const char *id)
{
    FILE *f = fopen(log, "r");
    if (f == NULL)
        return -1;
    char line[1024];
    int rank = 0, found = -1;
    while (found < 0 && fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, "event=task_succeeded") == NULL)
            continue;
        if (strstr(line, id) != NULL)
            found = rank;
        rank++;
    }
    fclose(f);
    return found;
}

/* On a queue declared with x-max-priority (by client and worker alike), a priority-9 task sent
 * after six priority-1 tasks runs first once a worker with one slot and prefetch 1 starts. */
static void priority_queue_runs_urgent_tasks_first(void **state)
{
    (void)state;
    const char *q = qname[3];
    char arguments[120], env_args[160];
    snprintf(arguments, sizeof(arguments), "%s x-max-priority=9", q);
    snprintf(env_args, sizeof(env_args), "TASKD_QUEUES_ARGUMENTS=%s", arguments);
    task_client *c = client(q, arguments, NULL);
    task_id low[6];
    task_send_opts lo = {.priority = 1}, hi = {.priority = 9};
    for (int i = 0; i < 6; i++)
        low[i] = send_add(c, i, 1, &lo);
    task_id urgent = send_add(c, 100, 1, &hi);

    /* A worker that declares the queue without the argument is refused, with one clear line. */
    struct itest_worker bad;
    const char *one[] = {"-c", "1", NULL};
    assert_int_equal(itest_worker_start(&bad, q, NULL, one), -1);
    assert_true(itest_file_has(bad.log, "x-max-priority"));
    assert_true(itest_file_has(bad.log, "PRECONDITION_FAILED"));

    const char *env[] = {env_args, "TASKD_WORKER_PREFETCH_MULTIPLIER=1", NULL};
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, env, one), 0);
    int64_t v = 0;
    assert_int_equal(wait_int(c, urgent.str, 10000, &v), 0);
    assert_int_equal(v, 101);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(wait_int(c, low[i].str, 10000, &v), 0);
        assert_int_equal(v, i + 1);
    }
    int r_urgent = finish_rank(w.log, urgent.str);
    print_message("urgent task finished as number %d of 7\n", r_urgent + 1);
    assert_int_equal(r_urgent, 0);
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);
}

/* A quorum queue from config: clients and the worker declare it alike and tasks run; a client
 * without the argument gets the broker's 406, which proves the queue really is quorum. */
static void quorum_queue_from_config(void **state)
{
    (void)state;
    char q[80], arguments[140], env_args[180];
    snprintf(q, sizeof(q), "%s_qq", qname[0]);
    snprintf(arguments, sizeof(arguments), "%s x-queue-type=quorum", q);
    snprintf(env_args, sizeof(env_args), "TASKD_QUEUES_ARGUMENTS=%s", arguments);
    const char *env[] = {env_args, NULL};
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, env, NULL), 0);
    task_client *c = client(q, arguments, NULL);
    task_id ids[20];
    for (int i = 0; i < 20; i++)
        ids[i] = send_add(c, i, i, NULL);
    for (int i = 0; i < 20; i++) {
        int64_t v = -1;
        assert_int_equal(wait_int(c, ids[i].str, 10000, &v), 0);
        assert_int_equal(v, 2 * i);
    }
    task_client *plain = client(q, NULL, NULL);
    json_object *args = json_object_new_array();
    task_id id;
    assert_int_not_equal(task_send(plain, "test.add", args, NULL, NULL, &id), 0);
    json_object_put(args);
    print_message("plain declare of a quorum queue: %s\n", task_client_errmsg(plain));
    assert_non_null(strstr(task_client_errmsg(plain), "x-queue-type"));
    task_client_free(plain);
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);
}

int main(void)
{
    itest_broker(); /* exits 77 (skip) without a broker */
    for (int i = 0; i < 4; i++)
        snprintf(qname[i], sizeof(qname[i]), "t_route_%d_%d", (int)getpid(), i);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routes_multiple_queues_and_per_call_queue),
        cmocka_unit_test(priority_queue_runs_urgent_tasks_first),
        cmocka_unit_test(quorum_queue_from_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
