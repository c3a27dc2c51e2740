/*
 * test_pool.c - the worker runtime against a real broker: crash isolation, hard and soft time
 * limits, kill -9 of children mid-task, warm shutdown under load, recycling, sd_notify.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <task/client.h>
#include "itest.h"

static int seq;

static task_client *client_for(const char *q)
{
    task_client *c = itest_client(q, NULL);
    assert_non_null(c);
    return c;
}

static void new_queue(char *q, size_t size, const char *what)
{
    snprintf(q, size, "t_pool_%d_%s_%d", (int)getpid(), what, ++seq);
}

static json_object *num_args(double a)
{
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_double(a));
    return args;
}

static const char *exc_type(json_object *res)
{
    json_object *v;
    return json_object_object_get_ex(res, "exc_type", &v) ? json_object_get_string(v) : "";
}

/* Pids of taskd's children (the pool). */
static int children_of(pid_t parent, pid_t *out, int max)
{
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL && n < max) {
        char path[300], line[512];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fgets(line, sizeof(line), f) != NULL) {
            char *rp = strrchr(line, ')');
            int ppid = 0;
            char st;
            if (rp != NULL && sscanf(rp + 2, "%c %d", &st, &ppid) == 2 && ppid == parent &&
                st != 'Z')
                out[n++] = atoi(e->d_name);
        }
        fclose(f);
    }
    if (d != NULL)
        closedir(d);
    return n;
}

static void segv_kills_only_its_child_and_fails_with_worker_lost(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "segv");
    struct itest_worker w;
    const char *args[] = {"-c", "2", NULL};
    assert_int_equal(itest_worker_start(&w, q, NULL, args), 0);
    pid_t before[8];
    assert_int_equal(children_of(w.pid, before, 8), 2);
    task_client *c = client_for(q);
    task_id id;
    assert_int_equal(task_send(c, "test.segv", NULL, NULL, NULL, &id), 0);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id.str, 10000, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_FAILURE);
    assert_string_equal(exc_type(res), "WorkerLostError");
    json_object_put(res);
    for (int i = 0; i < 10; i++) { /* the pool keeps serving, replacement forked */
        json_object *a = json_object_new_array();
        json_object_array_add(a, json_object_new_int(i));
        json_object_array_add(a, json_object_new_int(1));
        assert_int_equal(task_send(c, "test.add", a, NULL, NULL, &id), 0);
        json_object_put(a);
        assert_int_equal(task_wait(c, id.str, 10000, &st, &res), 0);
        assert_int_equal(json_object_get_int(res), i + 1);
        json_object_put(res);
    }
    pid_t after[8];
    assert_int_equal(children_of(w.pid, after, 8), 2);
    assert_true(itest_worker_alive(&w));
    assert_true(itest_file_has(w.log, "event=child_lost"));
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);
}

static void hard_time_limit_kills_and_reports_time_limit_exceeded(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "hard");
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, NULL, NULL), 0);
    task_client *c = client_for(q);
    task_send_opts o = {.time_limit_s = 0.5};
    json_object *a = num_args(30);
    task_id id;
    double t0 = itest_now();
    assert_int_equal(task_send(c, "test.sleep", a, NULL, &o, &id), 0);
    json_object_put(a);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id.str, 15000, &st, &res), 0);
    assert_true(itest_now() - t0 < 4);
    assert_int_equal(st, TASK_STATE_FAILURE);
    assert_string_equal(exc_type(res), "TimeLimitExceeded");
    json_object_put(res);
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);
}

static void soft_time_limit_cancels_the_task(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "soft");
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, NULL, NULL), 0);
    task_client *c = client_for(q);
    task_send_opts o = {.soft_time_limit_s = 0.3};
    json_object *a = num_args(30);
    task_id id;
    double t0 = itest_now();
    assert_int_equal(task_send(c, "test.sleep", a, NULL, &o, &id), 0);
    json_object_put(a);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id.str, 15000, &st, &res), 0);
    double took = itest_now() - t0;
    assert_true(took >= 0.3 && took < 3);
    assert_int_equal(st, TASK_STATE_FAILURE);
    assert_string_equal(exc_type(res), "SoftTimeLimitExceeded");
    json_object_put(res);
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);
}

/*
 * kill -9 a child in the middle of a task, 50 times: every task ends with a result (requeued
 * once, then run to success or failed as WorkerLostError), and the worker never stops serving.
 */
static void kill9_children_fifty_times_every_task_ends(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "kill9");
    struct itest_worker w;
    const char *env[] = {"TASKD_WORKER_REQUEUE_ON_CRASH=true", NULL};
    const char *args[] = {"-c", "2", NULL};
    assert_int_equal(itest_worker_start(&w, q, env, args), 0);
    task_client *c = client_for(q);
    enum { N = 50 };
    task_id ids[N];
    int killed = 0;
    for (int i = 0; i < N; i++) {
        json_object *a = num_args(0.4);
        assert_int_equal(task_send(c, "test.sleep", a, NULL, NULL, &ids[i]), 0);
        json_object_put(a);
        usleep(150000); /* let it start */
        pid_t kids[8];
        int n = children_of(w.pid, kids, 8);
        if (n > 0 && kill(kids[i % n], SIGKILL) == 0)
            killed++;
    }
    int ok = 0, lost = 0;
    for (int i = 0; i < N; i++) {
        task_state st;
        json_object *res = NULL;
        int rc = task_wait(c, ids[i].str, 30000, &st, &res);
        if (rc != 0)
            fail_msg("task %d (%s) got no result: %s", i, ids[i].str, task_client_errmsg(c));
        if (st == TASK_STATE_SUCCESS)
            ok++;
        else if (st == TASK_STATE_FAILURE && strcmp(exc_type(res), "WorkerLostError") == 0)
            lost++;
        else
            fail_msg("task %d: unexpected %s %s", i, task_state_name(st),
                     json_object_to_json_string(res));
        json_object_put(res);
    }
    print_message("kill9: killed=%d succeeded=%d worker_lost=%d\n", killed, ok, lost);
    assert_true(killed >= N - 2);
    assert_int_equal(ok + lost, N);
    assert_true(ok > 0);
    assert_true(itest_worker_alive(&w));
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 20), 0);
}

static void warm_shutdown_under_load_loses_nothing(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "warm");
    struct itest_worker w;
    const char *args[] = {"-c", "2", "--threads", "4", NULL};
    assert_int_equal(itest_worker_start(&w, q, NULL, args), 0);
    task_client *c = client_for(q);
    enum { N = 300 };
    static task_id ids[N];
    for (int i = 0; i < N; i++) {
        json_object *a = num_args(0.02);
        assert_int_equal(task_send(c, "test.sleep", a, NULL, NULL, &ids[i]), 0);
        json_object_put(a);
    }
    usleep(300000);
    double t0 = itest_now();
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 20), 0);
    print_message("warm shutdown took %.3f s\n", itest_now() - t0);
    assert_true(itest_file_has(w.log, "event=shutdown_warm"));
    /* A second worker picks up whatever the first gave back. */
    struct itest_worker w2;
    assert_int_equal(itest_worker_start(&w2, q, NULL, args), 0);
    for (int i = 0; i < N; i++) {
        task_state st;
        json_object *res = NULL;
        if (task_wait(c, ids[i].str, 30000, &st, &res) != 0)
            fail_msg("task %d lost: %s", i, task_client_errmsg(c));
        assert_int_equal(st, TASK_STATE_SUCCESS);
        json_object_put(res);
    }
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w2, SIGTERM, 20), 0);
}

/* Cold shutdown, by the grace period and by a second signal: running tasks are killed, their
 * messages go back to the queue, and another worker finishes them. Nothing is lost. */
static void cold_shutdown_returns_running_tasks_to_the_queue(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "cold");
    const char *env[] = {"TASKD_WORKER_SHUTDOWN_GRACE=0.5", NULL};
    task_client *c = client_for(q);
    task_id ids[2];
    for (int round = 0; round < 2; round++) {
        struct itest_worker w;
        assert_int_equal(itest_worker_start(&w, q, env, NULL), 0);
        json_object *a = num_args(2);
        assert_int_equal(task_send(c, "test.sleep", a, NULL, NULL, &ids[round]), 0);
        json_object_put(a);
        usleep(300000); /* running now */
        double t0 = itest_now();
        kill(w.pid, SIGTERM);
        if (round == 1) {
            usleep(50000);
            kill(w.pid, SIGTERM); /* a second signal turns it cold at once */
        }
        int rc = itest_worker_stop(&w, 0, 10); /* signal 0: just wait for the exit */
        double took = itest_now() - t0;
        print_message("cold shutdown (%s) took %.2f s\n", round ? "second signal" : "grace", took);
        assert_int_equal(rc, 3); /* cold: tasks were stopped, not finished */
        assert_true(took < (round ? 0.5 : 1.5));
        assert_true(itest_file_has(w.log, round ? "reason=second signal" : "reason=grace period over"));
    }
    struct itest_worker w2;
    assert_int_equal(itest_worker_start(&w2, q, NULL, NULL), 0);
    for (int i = 0; i < 2; i++) {
        task_state st;
        json_object *res = NULL;
        assert_int_equal(task_wait(c, ids[i].str, 20000, &st, &res), 0);
        assert_int_equal(st, TASK_STATE_SUCCESS);
        json_object_put(res);
    }
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w2, SIGTERM, 15), 0);
}

static void children_are_recycled_after_max_tasks(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "recycle");
    struct itest_worker w;
    const char *env[] = {"TASKD_WORKER_MAX_TASKS_PER_CHILD=5", NULL};
    const char *args[] = {"-c", "1", NULL};
    assert_int_equal(itest_worker_start(&w, q, env, args), 0);
    pid_t first[4];
    assert_int_equal(children_of(w.pid, first, 4), 1);
    task_client *c = client_for(q);
    for (int i = 0; i < 20; i++) {
        task_id id;
        json_object *a = json_object_new_array();
        json_object_array_add(a, json_object_new_int(i));
        json_object_array_add(a, json_object_new_int(i));
        assert_int_equal(task_send(c, "test.add", a, NULL, NULL, &id), 0);
        json_object_put(a);
        task_state st;
        json_object *res = NULL;
        assert_int_equal(task_wait(c, id.str, 10000, &st, &res), 0);
        assert_int_equal(json_object_get_int(res), 2 * i);
        json_object_put(res);
    }
    usleep(200000);
    pid_t now[4];
    assert_int_equal(children_of(w.pid, now, 4), 1);
    assert_int_not_equal(first[0], now[0]);
    assert_true(itest_file_has(w.log, "event=child_recycle"));
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);
}

/* Runs one task and returns its state; *res (may be NULL) gets the result. */
static task_state run_one(task_client *c, const char *task, json_object *args, json_object **res)
{
    task_id id;
    assert_int_equal(task_send(c, task, args, NULL, NULL, &id), 0);
    json_object_put(args);
    task_state st;
    json_object *r = NULL;
    assert_int_equal(task_wait(c, id.str, 15000, &st, &r), 0);
    if (res != NULL)
        *res = r;
    else
        json_object_put(r);
    return st;
}

/* worker.max_memory_per_child: a child whose RSS passes the limit is replaced after its task. */
static void children_are_recycled_above_max_memory(void **state)
{
    (void)state;
    char q[96];
    new_queue(q, sizeof(q), "memory");
    struct itest_worker w;
    /* 1 KiB: every child is over it, so each one goes after one task */
    const char *env[] = {"TASKD_WORKER_MAX_MEMORY_PER_CHILD=1", NULL};
    const char *args[] = {"-c", "1", NULL};
    assert_int_equal(itest_worker_start(&w, q, env, args), 0);
    pid_t first[4];
    assert_int_equal(children_of(w.pid, first, 4), 1);
    task_client *c = client_for(q);
    for (int i = 0; i < 3; i++) {
        json_object *a = json_object_new_array();
        json_object_array_add(a, json_object_new_int(i));
        json_object_array_add(a, json_object_new_int(1));
        json_object *res = NULL;
        assert_int_equal(run_one(c, "test.add", a, &res), TASK_STATE_SUCCESS);
        assert_int_equal(json_object_get_int(res), i + 1);
        json_object_put(res);
    }
    assert_true(itest_file_waits_for(w.log, "event=child_recycle", 5));
    usleep(300000);
    assert_true(itest_file_count(w.log, "event=child_recycle") >= 2);
    pid_t now[4];
    assert_int_equal(children_of(w.pid, now, 4), 1);
    assert_int_not_equal(first[0], now[0]);
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* SIGHUP reloads the config file: a reloadable option takes effect at once, one that needs a
 * restart is named in a warning, and a broken file keeps the old config. */
static void sighup_reloads_the_config(void **state)
{
    (void)state;
    char q[96], conf[128], arg[160];
    new_queue(q, sizeof(q), "hup");
    snprintf(conf, sizeof(conf), "/tmp/itest-hup-%d.conf", (int)getpid());
    write_file(conf, "worker: { pool_size = 1; };\ntasks: { time_limit = 0; };\n");
    snprintf(arg, sizeof(arg), "%s", conf);
    const char *args[] = {"--config", arg, NULL};
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, NULL, args), 0);
    task_client *c = client_for(q);
    assert_int_equal(run_one(c, "test.sleep", num_args(1.5), NULL), TASK_STATE_SUCCESS);

    write_file(conf, "worker: { pool_size = 2; };\ntasks: { time_limit = 1; };\n");
    kill(w.pid, SIGHUP);
    assert_true(itest_file_waits_for(w.log, "event=config_reloaded", 5));
    assert_true(itest_file_has(w.log, "event=reload_needs_restart option=worker.pool_size"));
    json_object *res = NULL;
    assert_int_equal(run_one(c, "test.sleep", num_args(3), &res), TASK_STATE_FAILURE);
    assert_string_equal(exc_type(res), "TimeLimitExceeded");
    json_object_put(res);

    write_file(conf, "tasks: { time_limit = \"soon\"; };\n");
    kill(w.pid, SIGHUP);
    assert_true(itest_file_waits_for(w.log, "event=reload_failed", 5));
    res = NULL;
    assert_int_equal(run_one(c, "test.sleep", num_args(3), &res), TASK_STATE_FAILURE);
    assert_string_equal(exc_type(res), "TimeLimitExceeded"); /* the 1 s limit is still on */
    json_object_put(res);
    assert_true(itest_worker_alive(&w));
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 15), 0);
    unlink(conf);
}

static void readiness_and_stopping_reach_notify_socket(void **state)
{
    (void)state;
    char q[96], path[108], env_notify[160];
    new_queue(q, sizeof(q), "notify");
    snprintf(path, sizeof(path), "/tmp/itest-notify-%d.sock", (int)getpid());
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    snprintf(env_notify, sizeof(env_notify), "NOTIFY_SOCKET=%s", path);
    const char *env[] = {env_notify, NULL};
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, env, NULL), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[64] = {0};
    assert_true(recv(fd, buf, sizeof(buf) - 1, 0) > 0);
    assert_string_equal(buf, "READY=1");
    kill(w.pid, SIGTERM);
    memset(buf, 0, sizeof(buf));
    assert_true(recv(fd, buf, sizeof(buf) - 1, 0) > 0);
    assert_string_equal(buf, "STOPPING=1");
    assert_int_equal(itest_worker_stop(&w, 0, 15), 0); /* warm: a second signal would be cold */
    close(fd);
    unlink(path);
}

int main(void)
{
    itest_broker();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(segv_kills_only_its_child_and_fails_with_worker_lost),
        cmocka_unit_test(hard_time_limit_kills_and_reports_time_limit_exceeded),
        cmocka_unit_test(soft_time_limit_cancels_the_task),
        cmocka_unit_test(kill9_children_fifty_times_every_task_ends),
        cmocka_unit_test(children_are_recycled_above_max_memory),
        cmocka_unit_test(sighup_reloads_the_config),
        cmocka_unit_test(warm_shutdown_under_load_loses_nothing),
        cmocka_unit_test(cold_shutdown_returns_running_tasks_to_the_queue),
        cmocka_unit_test(children_are_recycled_after_max_tasks),
        cmocka_unit_test(readiness_and_stopping_reach_notify_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
