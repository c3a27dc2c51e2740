/*
 * test_broker_restart.c - fault (b) of issue 7: kill -9 the broker in the middle of a run of
 * tasks and start it again. The producer keeps calling task_send() through the outage (it waits
 * and reconnects), the worker reconnects by itself, and every task sent ends with a SUCCESS
 * record in the results stream: 0 lost. Prints sent / results / lost / duplicates / recovery.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <task/client.h>
#include "codec.h"
#include "conn.h"
#include "../integration/itest.h"

enum { N = 3000, RESTART_AT = 1000 };

static task_client *client_for(const char *q)
{
    task_config *cfg = task_config_new();
    task_error err = {0};
    assert_int_equal(task_config_set(cfg, "broker.urls", itest_broker(), "test", &err), 0);
    assert_int_equal(task_config_set(cfg, "client.default_queue", q, "test", &err), 0);
    assert_int_equal(task_config_set(cfg, "client.send_timeout", "60", "test", &err), 0);
    task_client *c = task_client_new(cfg, &err);
    if (c == NULL)
        fail_msg("client: %s", err.msg);
    task_config_free(cfg);
    return c;
}

static pid_t restart_broker_async(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof(cmd), "%s/scripts/rabbitmq-private kill-node 1 >/dev/null 2>&1 && "
                 "sleep 1 && %s/scripts/rabbitmq-private start-node 1 >/dev/null 2>&1",
                 getenv("TASKD_SHARED_DIR"), getenv("TASKD_SHARED_DIR"));
        _exit(system(cmd) == 0 ? 0 : 1);
    }
    return pid;
}

/* Read the results stream from `since` until all N ids have a SUCCESS (or the deadline). */
static int collect(double since, unsigned char *seen, int *dups, double deadline)
{
    task_strlist urls = {.v = (char *[]){(char *)itest_broker()}, .n = 1};
    struct task__conn_opts o = {.urls = &urls, .connect_timeout_s = 5, .name = "faults"};
    struct task__conn *cn = NULL;
    task_error err = {0};
    if (task__conn_open(&cn, &o, &err) != 0 || task__conn_channel_open(cn, 1) ||
        task__conn_qos(cn, 1, 2000))
        return -1;
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-stream-offset"),
                            .value = {.kind = AMQP_FIELD_KIND_TIMESTAMP,
                                      .value.u64 = (uint64_t)since - 5}};
    amqp_table_t args = {.num_entries = 1, .entries = &e};
    if (task__conn_consume(cn, 1, TASK_RESULTS_STREAM, false, args, NULL) != 0)
        return -1;
    int found = 0;
    while (found < N && itest_now() < deadline) {
        amqp_frame_t f;
        int rc = task__conn_next_frame(cn, &f, 500, NULL);
        if (rc < 0)
            break;
        if (rc == 0 || f.frame_type != AMQP_FRAME_METHOD ||
            f.payload.method.id != AMQP_BASIC_DELIVER_METHOD)
            continue;
        struct task__delivery d;
        if (task__conn_read_delivery(cn, &f, &d) != 0)
            break;
        task__conn_ack(cn, 1, d.tag, false);
        char *text = task__bytes_dup(d.msg.body);
        json_object *body = text ? json_tokener_parse(text) : NULL;
        free(text);
        for (size_t i = 0; json_object_is_type(body, json_type_array) &&
                           i < json_object_array_length(body); i++) {
            json_object *rec = json_object_array_get_idx(body, i), *v;
            if (!json_object_object_get_ex(rec, "status", &v) ||
                strcmp(json_object_get_string(v), "SUCCESS") != 0 ||
                !json_object_object_get_ex(rec, "task_id", &v))
                continue;
            const char *id = json_object_get_string(v);
            if (strncmp(id, "faaaaaaa-0000-4000-8000-", 24) != 0)
                continue;
            long idx = strtol(id + 24, NULL, 16);
            if (idx < 0 || idx >= N)
                continue;
            json_object *res;
            json_object_object_get_ex(rec, "result", &res);
            if (json_object_get_int(res) != (int)(2 * idx))
                fail_msg("task %ld: wrong result %s", idx, json_object_to_json_string(res));
            if (seen[idx]++)
                (*dups)++;
            else
                found++;
        }
        json_object_put(body);
        task__delivery_free(&d);
        task__conn_release_buffers(cn);
    }
    task__conn_close(cn);
    return found;
}

static void broker_restart_mid_run_loses_nothing(void **state)
{
    (void)state;
    char q[64];
    snprintf(q, sizeof(q), "t_fault_restart_%d", (int)getpid());
    struct itest_worker w;
    const char *args[] = {"-c", "2", NULL};
    assert_int_equal(itest_worker_start(&w, q, NULL, args), 0);
    task_client *c = client_for(q);
    double t0 = itest_now(), wall0 = (double)time(NULL);
    double restarted_at = 0, recovered_at = 0;
    pid_t killer = 0;
    for (long i = 0; i < N; i++) {
        char id[37];
        snprintf(id, sizeof(id), "faaaaaaa-0000-4000-8000-%012lx", (unsigned long)i);
        json_object *a = json_object_new_array();
        json_object_array_add(a, json_object_new_int((int)i));
        json_object_array_add(a, json_object_new_int((int)i));
        task_send_opts o = {.task_id = id};
        double before = itest_now();
        task_id tid;
        int rc = task_send(c, "test.add", a, NULL, &o, &tid);
        json_object_put(a);
        if (rc != 0)
            fail_msg("send %ld failed: %s", i, task_client_errmsg(c));
        if (restarted_at > 0 && recovered_at == 0 && itest_now() - before > 0.5)
            recovered_at = itest_now();
        if (i == RESTART_AT) {
            killer = restart_broker_async();
            restarted_at = itest_now();
        }
    }
    int st;
    waitpid(killer, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    static unsigned char seen[N];
    int dups = 0;
    int found = collect(wall0, seen, &dups, itest_now() + 120);
    int lost = N - found;
    printf("broker restart: sent=%d results=%d lost=%d duplicates=%d "
           "producer_recovered_after_s=%.2f total_s=%.2f\n",
           N, found, lost, dups, recovered_at > 0 ? recovered_at - restarted_at : 0,
           itest_now() - t0);
    for (int i = 0; i < N && lost > 0; i++)
        if (!seen[i]) {
            printf("first lost: %d\n", i);
            break;
        }
    assert_int_equal(lost, 0);
    assert_true(itest_worker_alive(&w));
    assert_true(itest_file_has(w.log, "event=broker_connected"));
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 30), 0);
}

int main(void)
{
    itest_broker();
    if (getenv("TASKD_RMQ_DIR") == NULL || getenv("TASKD_SHARED_DIR") == NULL) {
        fprintf(stderr, "needs TASKD_RMQ_DIR and TASKD_SHARED_DIR (run under with-broker)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(broker_restart_mid_run_loses_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
