/*
 * test_canvas.c - chain, group and chord sent with libtask's canvas API and run by taskd. The
 * chord tests run two workers on one queue, so members end concurrently in two processes and
 * the broker-side barrier (taskd/chord.c) must fire each callback exactly once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <task/canvas.h>
#include <task/client.h>
#include "conn.h"
#include "itest.h"

static char queue[64];
static struct itest_worker w1, w2;
static task_client *c;

static json_object *ints(int n, const int *v)
{
    json_object *a = json_object_new_array();
    for (int i = 0; i < n; i++)
        json_object_array_add(a, json_object_new_int(v[i]));
    return a;
}

static json_object *add_sig(int n, const int *v)
{
    json_object *args = ints(n, v);
    json_object *sig = task_sig_new("test.add", args, NULL, NULL, false);
    json_object_put(args);
    return sig;
}

/* Waits for `id`; returns its state and stores the result (new reference) in *res. */
static task_state wait_for(const char *id, json_object **res)
{
    task_state st = TASK_STATE_PENDING;
    int rc = task_wait(c, id, 30000, &st, res);
    if (rc != 0)
        fail_msg("wait %s: %s", id, task_client_errmsg(c));
    return st;
}

/* How many lines of both workers' logs contain `needle`. */
static int log_count(const char *needle)
{
    return itest_file_count(w1.log, needle) + itest_file_count(w2.log, needle);
}

/* The group id of the last chord_done line in either log ("" if none). */
static void last_chord_group(char *out, size_t size)
{
    out[0] = '\0';
    const char *logs[] = {w1.log, w2.log};
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(logs[k], "r");
        char line[4096];
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            const char *g = strstr(line, "event=chord_done group=");
            if (g != NULL)
                snprintf(out, size, "%.36s", g + strlen("event=chord_done group="));
        }
        if (f != NULL)
            fclose(f);
    }
}

/* True if queue `name` exists (passive declare on a fresh connection). */
static bool queue_exists(const char *name)
{
    task_strlist urls = {.v = (char *[]){(char *)itest_broker()}, .n = 1};
    struct task__conn_opts o = {.urls = &urls, .connect_timeout_s = 5, .name = "test"};
    struct task__conn *cn = NULL;
    task_error err = {0};
    assert_int_equal(task__conn_open(&cn, &o, &err), 0);
    assert_int_equal(task__conn_channel_open(cn, 1), 0);
    amqp_queue_declare(task__conn_amqp(cn), 1, amqp_cstring_bytes(name), 1, 0, 0, 0,
                       amqp_empty_table);
    bool exists = task__conn_check(cn, amqp_get_rpc_reply(task__conn_amqp(cn)), name) == 0;
    if (!exists)
        assert_non_null(strstr(task__conn_errmsg(cn), "404"));
    task__conn_close(cn);
    return exists;
}

static void chain_passes_each_result_on(void **state)
{
    (void)state;
    json_object *sigs[3] = {add_sig(2, (int[]){2, 3}), add_sig(1, (int[]){10}),
                            add_sig(1, (int[]){100})};
    task_id last;
    assert_int_equal(task_send_chain(c, sigs, 3, NULL, &last), 0);
    json_object *res = NULL;
    assert_int_equal(wait_for(last.str, &res), TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), 115);
    json_object_put(res);
    for (int i = 0; i < 3; i++)
        json_object_put(sigs[i]);
}

static void group_results_come_in_order(void **state)
{
    (void)state;
    enum { N = 8 };
    json_object *sigs[N];
    for (int i = 0; i < N; i++)
        sigs[i] = add_sig(2, (int[]){i, i * 10});
    task_id group, ids[N];
    assert_int_equal(task_send_group(c, sigs, N, NULL, &group, ids), 0);
    for (int i = 0; i < N; i++) {
        json_object *res = NULL;
        assert_int_equal(wait_for(ids[i].str, &res), TASK_STATE_SUCCESS);
        assert_int_equal(json_object_get_int(res), i * 11);
        json_object_put(res);
        json_object_put(sigs[i]);
    }
}

/* Sends a chord of n test.add(i, i) members with a test.xsum callback. */
static void send_sum_chord(int n, task_id *cb_id)
{
    json_object **sigs = calloc((size_t)n, sizeof(*sigs));
    for (int i = 0; i < n; i++)
        sigs[i] = add_sig(2, (int[]){i, i});
    json_object *cb = task_sig_new("test.xsum", NULL, NULL, NULL, false);
    assert_int_equal(task_send_chord(c, sigs, n, cb, NULL, cb_id, NULL), 0);
    json_object_put(cb);
    for (int i = 0; i < n; i++)
        json_object_put(sigs[i]);
    free(sigs);
}

static void chords_fire_once_with_every_result(void **state)
{
    (void)state;
    enum { CHORDS = 20, N = 10 };
    int before = log_count("event=chord_done");
    task_id cb[CHORDS];
    for (int k = 0; k < CHORDS; k++)
        send_sum_chord(N, &cb[k]);
    for (int k = 0; k < CHORDS; k++) {
        json_object *res = NULL;
        assert_int_equal(wait_for(cb[k].str, &res), TASK_STATE_SUCCESS);
        assert_int_equal(json_object_get_int(res), N * (N - 1)); /* sum of 2i for i < N */
        json_object_put(res);
    }
    /* Exactly one callback per chord, though two workers raced for each barrier. */
    usleep(300000);
    assert_int_equal(log_count("event=chord_done") - before, CHORDS);
    assert_int_equal(log_count("outcome=ChordError"), 0);
    /* The barrier and its lock are gone once the callback is out. */
    char group[40], name[80];
    last_chord_group(group, sizeof(group));
    assert_int_equal(strlen(group), 36);
    assert_true(queue_exists(queue)); /* the check can tell */
    /* Deleted right after the commit that published the callback: the callback may end first
     * (seen under load with ASan), so give the delete a moment. */
    snprintf(name, sizeof(name), "taskd.chord.%s", group);
    for (int i = 0; i < 50 && queue_exists(name); i++)
        usleep(100000);
    assert_false(queue_exists(name));
    strcat(name, ".lock");
    for (int i = 0; i < 50 && queue_exists(name); i++)
        usleep(100000);
    assert_false(queue_exists(name));
}

static void a_failed_member_fails_the_callback_with_chord_error(void **state)
{
    (void)state;
    json_object *fargs = json_object_new_array();
    json_object_array_add(fargs, json_object_new_string("member broke"));
    json_object *sigs[3] = {add_sig(2, (int[]){1, 1}),
                            task_sig_new("test.fail", fargs, NULL, NULL, false),
                            add_sig(2, (int[]){2, 2})};
    json_object_put(fargs);
    json_object *cb = task_sig_new("test.xsum", NULL, NULL, NULL, false);
    task_id cb_id, ids[3];
    assert_int_equal(task_send_chord(c, sigs, 3, cb, NULL, &cb_id, ids), 0);
    json_object *res = NULL;
    assert_int_equal(wait_for(cb_id.str, &res), TASK_STATE_FAILURE);
    json_object *v;
    assert_true(json_object_object_get_ex(res, "exc_type", &v));
    assert_string_equal(json_object_get_string(v), "ChordError");
    assert_true(json_object_object_get_ex(res, "exc_module", &v));
    assert_string_equal(json_object_get_string(v), "celery.exceptions");
    assert_true(json_object_object_get_ex(res, "exc_message", &v));
    assert_non_null(strstr(json_object_get_string(v), ids[1].str));
    assert_non_null(strstr(json_object_get_string(v), "ValueError('member broke')"));
    json_object_put(res);
    json_object_put(cb);
    for (int i = 0; i < 3; i++)
        json_object_put(sigs[i]);
}

static void a_one_member_chord_works(void **state)
{
    (void)state;
    task_id cb;
    send_sum_chord(1, &cb);
    json_object *res = NULL;
    assert_int_equal(wait_for(cb.str, &res), TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), 0);
    json_object_put(res);
}

/* A callback to a queue no one declared yet: the members declare it without stopping their
 * worker's loop (the last member then finds it declared), and it is there, holding the
 * callback, when its worker starts. */
static void a_callback_to_a_new_queue_waits_there(void **state)
{
    (void)state;
    enum { CHORDS = 4, N = 5 };
    char cbq[CHORDS][96], list[CHORDS * 96] = "";
    task_id cb[CHORDS];
    for (int k = 0; k < CHORDS; k++) {
        snprintf(cbq[k], sizeof(cbq[k]), "%s_cb%d", queue, k);
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", k ? "," : "", cbq[k]);
        json_object *sigs[N];
        for (int i = 0; i < N; i++)
            sigs[i] = add_sig(2, (int[]){i, k});
        json_object *cbs = task_sig_new("test.xsum", NULL, NULL, cbq[k], false);
        assert_int_equal(task_send_chord(c, sigs, N, cbs, NULL, &cb[k], NULL), 0);
        json_object_put(cbs);
        for (int i = 0; i < N; i++)
            json_object_put(sigs[i]);
    }
    /* Every member ran before anyone consumes the callbacks' queues. */
    for (int k = 0; k < CHORDS; k++) {
        for (int t = 0; t < 100 && !queue_exists(cbq[k]); t++)
            usleep(100000);
        assert_true(queue_exists(cbq[k]));
    }
    struct itest_worker w3;
    const char *args[] = {"-c", "1", NULL};
    assert_int_equal(itest_worker_start(&w3, list, NULL, args), 0);
    for (int k = 0; k < CHORDS; k++) {
        json_object *res = NULL;
        assert_int_equal(wait_for(cb[k].str, &res), TASK_STATE_SUCCESS);
        assert_int_equal(json_object_get_int(res), N * (N - 1) / 2 + N * k);
        json_object_put(res);
    }
    assert_int_equal(itest_worker_stop(&w3, SIGTERM, 20), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(queue, sizeof(queue), "t_canvas_%d", (int)getpid());
    const char *args[] = {"-c", "2", NULL};
    if (itest_worker_start(&w1, queue, NULL, args) != 0 ||
        itest_worker_start(&w2, queue, NULL, args) != 0)
        return -1;
    c = itest_client(queue, NULL);
    return c != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    task_client_free(c);
    int a = itest_worker_stop(&w1, SIGTERM, 20);
    int b = itest_worker_stop(&w2, SIGTERM, 20);
    if (a != 0 || b != 0)
        fprintf(stderr, "worker exits %d %d; logs %s %s\n", a, b, w1.log, w2.log);
    return a == 0 && b == 0 ? 0 : -1;
}

int main(void)
{
    itest_broker();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chain_passes_each_result_on),
        cmocka_unit_test(group_results_come_in_order),
        cmocka_unit_test(chords_fire_once_with_every_result),
        cmocka_unit_test(a_failed_member_fails_the_callback_with_chord_error),
        cmocka_unit_test(a_one_member_chord_works),
        cmocka_unit_test(a_callback_to_a_new_queue_waits_there),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
