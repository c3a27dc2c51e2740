/*
 * test_revoke.c - the revoked set lives in the broker (stream taskd.revoked): a revoke reaches
 * workers that restart after it, and workers that were not running when it was sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <task/client.h>
#include "internal.h"
#include "itest.h"

static char queue[64];

static int taskctl_revoke(const char *id)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/taskctl/taskctl --broker '%s' revoke %s --timeout 1",
             itest_build_root(), itest_broker(), id);
    return system(cmd);
}

/* Send test.add with task id `id`; the state it ends in. */
static task_state run_with_id(task_client *c, const char *id)
{
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_int(1));
    json_object_array_add(args, json_object_new_int(2));
    task_send_opts o = {.task_id = id};
    task_id tid;
    assert_int_equal(task_send(c, "test.add", args, NULL, &o, &tid), 0);
    json_object_put(args);
    task_state st = TASK_STATE_PENDING;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id, 10000, &st, &res), 0);
    json_object_put(res);
    return st;
}

/* Revoked while a worker ran; that worker restarts; the id still never runs. */
static void revoke_survives_a_worker_restart(void **state)
{
    (void)state;
    char id[37];
    task__uuid7(id);
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, queue, NULL, NULL), 0);
    assert_int_equal(taskctl_revoke(id), 0);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);

    struct itest_worker w2;
    assert_int_equal(itest_worker_start(&w2, queue, NULL, NULL), 0);
    assert_true(itest_file_has(w2.log, "event=revoked_loaded"));
    task_client *c = itest_client(queue, NULL);
    assert_non_null(c);
    assert_int_equal(run_with_id(c, id), TASK_STATE_REVOKED);
    char other[37];
    task__uuid7(other);
    assert_int_equal(run_with_id(c, other), TASK_STATE_SUCCESS);
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w2, SIGTERM, 15), 0);
}

/* Revoked while no worker ran at all: the first worker to start honours it. */
static void revoke_reaches_workers_started_later(void **state)
{
    (void)state;
    char id[37];
    task__uuid7(id);
    assert_int_equal(taskctl_revoke(id), 0);
    task_client *c = itest_client(queue, NULL);
    assert_non_null(c);
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, queue, NULL, NULL), 0);
    assert_int_equal(run_with_id(c, id), TASK_STATE_REVOKED);
    assert_true(itest_file_waits_for(w.log, "reason=revoked", 5));
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);
}

int main(void)
{
    itest_broker(); /* exits 77 (skip) without a broker */
    snprintf(queue, sizeof(queue), "t_revoke_%d", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(revoke_survives_a_worker_restart),
        cmocka_unit_test(revoke_reaches_workers_started_later),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
