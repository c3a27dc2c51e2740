/*
 * test_lifecycle.c - every task reaches its end (issue 14), against a real broker and worker:
 * a kill (time limit, revoke --terminate, segfault) fails only its own task among busy threads;
 * revokes reach tasks the worker already holds (backlog, sub-second eta) and running ones
 * (cancel); the worker, not the task, reports a soft time limit; a follow-up whose queue the
 * broker refuses fails with the reason and the worker goes on; a result no reader could read
 * back fails alike for task_wait() and task_lookup().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <task/canvas.h>
#include <task/client.h>
#include <sys/stat.h>
#include "conn.h"
#include "itest.h"

static int seq;

static void new_queue(char *q, size_t size, const char *what)
{
    snprintf(q, size, "t_lc_%d_%s_%d", (int)getpid(), what, ++seq);
}

static json_object *one_num(double a)
{
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_double(a));
    return args;
}

static const char *exc_type(json_object *res)
{
    json_object *v;
    return json_object_object_get_ex(res, "exc_type", &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : "";
}

static void send_num(task_client *c, const char *task, double a, const task_send_opts *o,
                     task_id *id)
{
    json_object *args = one_num(a);
    assert_int_equal(task_send(c, task, args, NULL, o, id), 0);
    json_object_put(args);
}

/* Wait for `id`; assert its final state; return the exception type (or "" on SUCCESS). */
static void expect(task_client *c, const char *id, task_state want, const char *want_exc)
{
    task_state st = TASK_STATE_PENDING;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id, 40000, &st, &res), 0);
    if (st != want || (want_exc != NULL && strcmp(exc_type(res), want_exc) != 0))
        fprintf(stderr, "task %s: %s %s, wanted %s %s\n", id, task_state_name(st),
                res ? json_object_to_json_string(res) : "null", task_state_name(want),
                want_exc ? want_exc : "");
    assert_int_equal(st, want);
    if (want_exc != NULL)
        assert_string_equal(exc_type(res), want_exc);
    json_object_put(res);
}

static int taskctl(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/taskctl/taskctl --broker '%s' %s >/dev/null", itest_build_root(),
             itest_broker(), args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

struct neighbours {
    char q[96];
    struct itest_worker w;
    task_client *c;
    task_id busy[3];
};

/* One child with four threads, three of them sleeping `secs` (the neighbours). */
static void neighbours_start(struct neighbours *n, const char *what, double secs)
{
    new_queue(n->q, sizeof(n->q), what);
    const char *args[] = {"-c", "1", "--threads", "4", NULL};
    assert_int_equal(itest_worker_start(&n->w, n->q, NULL, args), 0);
    n->c = itest_client(n->q, NULL);
    assert_non_null(n->c);
    for (int i = 0; i < 3; i++)
        send_num(n->c, "test.sleep", secs, NULL, &n->busy[i]);
}

static void neighbours_finish(struct neighbours *n)
{
    for (int i = 0; i < 3; i++)
        expect(n->c, n->busy[i].str, TASK_STATE_SUCCESS, NULL);
    /* The child that died was replaced and the worker stays up. */
    task_id id;
    send_num(n->c, "test.sleep", 0, NULL, &id);
    expect(n->c, id.str, TASK_STATE_SUCCESS, NULL);
    assert_true(itest_worker_alive(&n->w));
    assert_int_equal(itest_worker_stop(&n->w, SIGTERM, 20), 0);
    task_client_free(n->c);
}

static void time_limit_fails_only_its_task(void **state)
{
    (void)state;
    struct neighbours n;
    neighbours_start(&n, "tl", 2);
    task_send_opts o = {.time_limit_s = 1};
    task_id target;
    send_num(n.c, "test.busy", 30, &o, &target);
    expect(n.c, target.str, TASK_STATE_FAILURE, "TimeLimitExceeded");
    neighbours_finish(&n);
}

static void segfault_fails_only_its_task(void **state)
{
    (void)state;
    struct neighbours n;
    neighbours_start(&n, "segv", 2);
    task_id target;
    json_object *none = json_object_new_array();
    usleep(300000); /* the neighbours are running */
    assert_int_equal(task_send(n.c, "test.segv", none, NULL, NULL, &target), 0);
    json_object_put(none);
    expect(n.c, target.str, TASK_STATE_FAILURE, "WorkerLostError");
    neighbours_finish(&n);
}

static void terminate_fails_only_its_task(void **state)
{
    (void)state;
    struct neighbours n;
    neighbours_start(&n, "term", 2);
    task_id target;
    send_num(n.c, "test.busy", 30, NULL, &target);
    assert_int_equal(itest_file_waits_for(n.w.log, "event=child_started", 5), 1);
    usleep(500000); /* all four running */
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "revoke %s --terminate --timeout 1", target.str);
    assert_int_equal(taskctl(cmd), 0);
    expect(n.c, target.str, TASK_STATE_REVOKED, NULL);
    neighbours_finish(&n);
}

/* A task waiting in the worker's backlog behind a busy slot is revoked: it never runs. */
static void revoke_reaches_the_backlog(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "backlog");
    struct itest_worker w;
    const char *args[] = {"-c", "1", "--threads", "1", NULL};
    assert_int_equal(itest_worker_start(&w, q, NULL, args), 0);
    task_client *c = itest_client(q, NULL);
    assert_non_null(c);
    task_id first, waiting;
    send_num(c, "test.sleep", 1.5, NULL, &first);
    send_num(c, "test.busy", 0.01, NULL, &waiting);
    usleep(300000); /* both delivered: one runs, one waits for the slot */
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "revoke %s --timeout 1", waiting.str);
    assert_int_equal(taskctl(cmd), 0);
    expect(c, first.str, TASK_STATE_SUCCESS, NULL);
    expect(c, waiting.str, TASK_STATE_REVOKED, "TaskRevokedError");
    char ran[200];
    snprintf(ran, sizeof(ran), "event=task_succeeded task=test.busy task_id=%s", waiting.str);
    assert_int_equal(itest_file_has(w.log, ran), 0);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 20), 0);
    task_client_free(c);
}

/* A task waiting in the worker for its rate-limit token is revoked: it never runs. */
static void revoke_reaches_a_rate_limited_task(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "rate");
    struct itest_worker w;
    const char *args[] = {"-c", "1", "--threads", "4", NULL};
    assert_int_equal(itest_worker_start(&w, q, NULL, args), 0);
    task_client *c = itest_client(q, NULL);
    assert_non_null(c);
    task_id ids[3];
    json_object *a = json_tokener_parse("[1, 2]");
    for (int i = 0; i < 3; i++)
        assert_int_equal(task_send(c, "test.limited", a, NULL, NULL, &ids[i]), 0);
    json_object_put(a);
    usleep(200000); /* the first ran; the others wait for tokens (1/s) */
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "revoke %s --timeout 1", ids[2].str);
    assert_int_equal(taskctl(cmd), 0);
    expect(c, ids[0].str, TASK_STATE_SUCCESS, NULL);
    expect(c, ids[1].str, TASK_STATE_SUCCESS, NULL);
    expect(c, ids[2].str, TASK_STATE_REVOKED, "TaskRevokedError");
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 20), 0);
    task_client_free(c);
}

/* A task held in memory for its sub-second eta is revoked before it is due. */
static void revoke_reaches_a_held_task(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "held");
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, NULL, NULL), 0);
    task_client *c = itest_client(q, NULL);
    assert_non_null(c);
    task_send_opts o = {.countdown_s = 0.9};
    task_id id;
    send_num(c, "test.busy", 0.01, &o, &id);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "revoke %s --timeout 1", id.str);
    assert_int_equal(taskctl(cmd), 0);
    expect(c, id.str, TASK_STATE_REVOKED, "TaskRevokedError");
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 20), 0);
    task_client_free(c);
}

/* A revoke without --terminate reaches the running task as task_cancelled(), on a child with
 * threads (a cancel frame) and on a one-thread child, whose only thread is busy (a signal). */
static void revoke_cancels_a_running_task(void **state)
{
    (void)state;
    const char *threads[] = {"2", "1"};
    for (int k = 0; k < 2; k++) {
        char q[96];
        new_queue(q, sizeof(q), "cancel");
        struct itest_worker w;
        const char *args[] = {"-c", "1", "--threads", threads[k], NULL};
        assert_int_equal(itest_worker_start(&w, q, NULL, args), 0);
        task_client *c = itest_client(q, NULL);
        assert_non_null(c);
        task_id id;
        send_num(c, "test.sleep", 30, NULL, &id);
        usleep(500000);
        double t0 = itest_now();
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "revoke %s --timeout 1", id.str);
        assert_int_equal(taskctl(cmd), 0);
        expect(c, id.str, TASK_STATE_REVOKED, "TaskRevokedError");
        assert_true(itest_now() - t0 < 10);
        /* The child goes on with the next task. */
        task_id next;
        send_num(c, "test.sleep", 0.01, NULL, &next);
        expect(c, next.str, TASK_STATE_SUCCESS, NULL);
        assert_int_equal(itest_worker_stop(&w, SIGTERM, 20), 0);
        task_client_free(c);
    }
}

/* A task that never looks at task_cancelled() still ends SoftTimeLimitExceeded. */
static void soft_limit_is_reported_by_the_worker(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "soft");
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, NULL, NULL), 0);
    task_client *c = itest_client(q, NULL);
    assert_non_null(c);
    task_send_opts o = {.soft_time_limit_s = 0.3};
    task_id id, ok;
    send_num(c, "test.busy", 1, &o, &id);
    send_num(c, "test.busy", 0.05, &o, &ok);
    expect(c, id.str, TASK_STATE_FAILURE, "SoftTimeLimitExceeded");
    expect(c, ok.str, TASK_STATE_SUCCESS, NULL);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 20), 0);
    task_client_free(c);
}

/* A chain step names a queue that exists with other arguments: the broker refuses its declare.
 * The step (and the chain after it) fails with the reason, and the worker keeps working and
 * stops warm (before: the publish channel was dead, results vanished, shutdown hung). */
static void refused_follow_up_fails_and_the_worker_goes_on(void **state)
{
    (void)state;
    char q[96], other[120];
    new_queue(q, sizeof(q), "refused");
    snprintf(other, sizeof(other), "%s_prio", q);
    /* The queue as some other app declared it. */
    task_strlist urls = {.v = (char *[]){(char *)itest_broker()}, .n = 1};
    struct task__conn_opts co = {.urls = &urls, .connect_timeout_s = 5, .name = "test"};
    struct task__conn *cn = NULL;
    task_error err = {0};
    assert_int_equal(task__conn_open(&cn, &co, &err), 0);
    assert_int_equal(task__conn_channel_open(cn, 1), 0);
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-max-priority"),
                            .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 3}};
    assert_int_equal(task__conn_declare_queue(cn, 1, other, true, false, false,
                                              (amqp_table_t){.num_entries = 1, .entries = &e}),
                     0);

    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, NULL, NULL), 0);
    task_client *c = itest_client(q, NULL);
    assert_non_null(c);
    json_object *a12 = json_tokener_parse("[1, 2]"), *a10 = json_tokener_parse("[10]");
    json_object *sigs[3] = {task_sig_new("test.add", a12, NULL, NULL, false),
                            task_sig_new("test.add", a10, NULL, other, false),
                            task_sig_new("test.add", a10, NULL, NULL, false)};
    task_id last;
    assert_int_equal(task_send_chain(c, sigs, 3, NULL, &last), 0);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, last.str, 20000, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_FAILURE);
    assert_string_equal(exc_type(res), "QueueRefused");
    json_object_put(res);
    /* Results, retries and countdowns still flow. */
    task_send_opts o = {.countdown_s = 1};
    task_id after;
    json_object *one = json_tokener_parse("[1]");
    assert_int_equal(task_send(c, "test.retry", one, NULL, &o, &after), 0);
    expect(c, after.str, TASK_STATE_SUCCESS, NULL);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 10), 0);
    for (int i = 0; i < 3; i++)
        json_object_put(sigs[i]);
    json_object_put(a12);
    json_object_put(a10);
    json_object_put(one);
    amqp_queue_delete(task__conn_amqp(cn), 1, amqp_cstring_bytes(other), 0, 0);
    task__conn_close(cn);
    task_client_free(c);
}

/* Results nested past what every reader accepts: FAILURE EncodeError, the same for task_wait()
 * and task_lookup() (before: SUCCESS for one, PENDING forever for the other). */
static void unreadable_result_fails_for_every_reader(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "deep");
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, NULL, NULL), 0);
    task_client *c = itest_client(q, NULL);
    assert_non_null(c);
    /* test.nest(k) is k + 1 deep; 62 (TASK__RESULT_MAX_DEPTH) is the deepest any reader takes. */
    const double depths[] = {62, 3000};
    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        task_id id;
        json_object *args = json_object_new_array();
        json_object_array_add(args, json_object_new_int((int)depths[i]));
        assert_int_equal(task_send(c, "test.nest", args, NULL, NULL, &id), 0);
        json_object_put(args);
        expect(c, id.str, TASK_STATE_FAILURE, "EncodeError");
        task_state st = TASK_STATE_PENDING;
        json_object *res = NULL;
        double deadline = itest_now() + 10;
        while (st != TASK_STATE_FAILURE && itest_now() < deadline) {
            json_object_put(res);
            res = NULL;
            assert_int_equal(task_lookup(c, id.str, 0, &st, &res), 0);
            if (st != TASK_STATE_FAILURE)
                usleep(100000);
        }
        assert_int_equal(st, TASK_STATE_FAILURE);
        assert_string_equal(exc_type(res), "EncodeError");
        json_object_put(res);
    }
    /* Just within the limit: both readers get it. */
    task_id id;
    json_object *args = json_tokener_parse("[61]");
    assert_int_equal(task_send(c, "test.nest", args, NULL, NULL, &id), 0);
    json_object_put(args);
    expect(c, id.str, TASK_STATE_SUCCESS, NULL);
    task_state st = TASK_STATE_PENDING;
    json_object *res = NULL;
    double deadline = itest_now() + 10;
    while (st != TASK_STATE_SUCCESS && itest_now() < deadline) {
        json_object_put(res);
        res = NULL;
        assert_int_equal(task_lookup(c, id.str, 0, &st, &res), 0);
        if (st != TASK_STATE_SUCCESS)
            usleep(100000);
    }
    assert_int_equal(st, TASK_STATE_SUCCESS);
    json_object_put(res);
    /* A chord whose members return 41-deep results: its parts (a result in an object) must be
     * read back at the shared depth (json-c's default of 32 left the callback waiting forever). */
    json_object *a40 = json_tokener_parse("[40]");
    json_object *header[2] = {task_sig_new("test.nest", a40, NULL, NULL, false),
                              task_sig_new("test.nest", a40, NULL, NULL, false)};
    json_object *cb = task_sig_new("test.echo", NULL, NULL, NULL, false);
    task_id done;
    assert_int_equal(task_send_chord(c, header, 2, cb, NULL, &done, NULL), 0);
    expect(c, done.str, TASK_STATE_SUCCESS, NULL);
    json_object_put(header[0]);
    json_object_put(header[1]);
    json_object_put(cb);
    json_object_put(a40);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 20), 0);
    task_client_free(c);
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int rc = fputs(text, f) < 0 ? -1 : 0;
    return fclose(f) != 0 ? -1 : rc;
}

/* Children that cannot be forked (a pids cgroup at its limit) are retried with backoff; with no
 * live child the worker stops consuming (the task stays in the queue, not in a dead worker's
 * hands) and says so, and it resumes once a child runs. Needs a writable cgroup v1 pids
 * hierarchy (root in a container); skipped without one. */
static void fork_failures_pause_and_resume_consuming(void **state)
{
    (void)state;
    char cg[200];
    snprintf(cg, sizeof(cg), "/sys/fs/cgroup/pids/taskd-test-%d", (int)getpid());
    if (mkdir(cg, 0755) != 0) {
        print_message("no writable pids cgroup: skipped\n");
        skip();
    }
    char q[96], path[300], pidtext[32];
    new_queue(q, sizeof(q), "fork");
    struct itest_worker w;
    const char *args[] = {"-c", "2", "--threads", "1", NULL};
    assert_int_equal(itest_worker_start(&w, q, NULL, args), 0);
    snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
    snprintf(pidtext, sizeof(pidtext), "%d", (int)w.pid);
    assert_int_equal(write_file(path, pidtext), 0); /* the supervisor; its children stay out */
    snprintf(path, sizeof(path), "%s/pids.max", cg);
    assert_int_equal(write_file(path, "1"), 0); /* no room for a child */
    pid_t kids[8];
    int n = 0;
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "pgrep -P %d", (int)w.pid);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    while (n < 8 && fscanf(p, "%d", &kids[n]) == 1)
        n++;
    pclose(p);
    assert_int_equal(n, 2);
    for (int i = 0; i < n; i++)
        kill(kids[i], SIGKILL);
    assert_int_equal(itest_file_waits_for(w.log, "event=consuming_paused", 10), 1);
    assert_true(itest_file_has(w.log, "event=fork_failed"));
    task_client *c = itest_client(q, NULL);
    assert_non_null(c);
    task_id id;
    send_num(c, "test.sleep", 0.01, NULL, &id);
    task_state st = TASK_STATE_PENDING;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id.str, 1500, &st, &res), TASK_ETIMEDOUT);
    assert_true(itest_worker_alive(&w));
    assert_int_equal(write_file(path, "max"), 0);
    expect(c, id.str, TASK_STATE_SUCCESS, NULL);
    assert_true(itest_file_has(w.log, "event=consuming_resumed"));
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 20), 0);
    task_client_free(c);
    rmdir(cg);
}

int main(void)
{
    if (itest_broker() == NULL)
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(time_limit_fails_only_its_task),
        cmocka_unit_test(segfault_fails_only_its_task),
        cmocka_unit_test(terminate_fails_only_its_task),
        cmocka_unit_test(revoke_reaches_the_backlog),
        cmocka_unit_test(revoke_reaches_a_rate_limited_task),
        cmocka_unit_test(revoke_reaches_a_held_task),
        cmocka_unit_test(revoke_cancels_a_running_task),
        cmocka_unit_test(soft_limit_is_reported_by_the_worker),
        cmocka_unit_test(refused_follow_up_fails_and_the_worker_goes_on),
        cmocka_unit_test(unreadable_result_fails_for_every_reader),
        cmocka_unit_test(fork_failures_pause_and_resume_consuming),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
