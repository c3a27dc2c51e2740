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
#include "internal.h"
#include "../integration/itest.h"

enum { N = 3000, RESTART_AT = 1000, NDELAYED = 100 };
#define COUNTDOWN_S 8.0

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

/* Ids of this test: PREFIX + 12 hex digits of the task's index. */
#define PREFIX "faaaaaaa-0000-4000-8000-"
#define DELAYED_PREFIX "fddddddd-0000-4000-8000-"

struct want {
    const char *prefix;
    int n;
    unsigned char *seen;
    int dups;
    double not_before;      /* a date_done earlier than this (Unix s) counts as early */
    int early;
};

/* Read the results stream from `since` until every wanted id has a SUCCESS (or the deadline). */
static int collect(double since, struct want *wt, double deadline)
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
    while (found < wt->n && itest_now() < deadline) {
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
            if (strncmp(id, wt->prefix, 24) != 0)
                continue;
            long idx = strtol(id + 24, NULL, 16);
            if (idx < 0 || idx >= wt->n)
                continue;
            json_object *res;
            json_object_object_get_ex(rec, "result", &res);
            if (json_object_get_int(res) != (int)(2 * idx))
                fail_msg("task %ld: wrong result %s", idx, json_object_to_json_string(res));
            double done = 0;
            if (json_object_object_get_ex(rec, "date_done", &v))
                (void)task__iso8601_parse(json_object_get_string(v), &done);
            if (done < wt->not_before) /* no date_done cannot prove it on time */
                wt->early++;
            if (wt->seen[idx]++)
                wt->dups++;
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

static void send_add(task_client *c, const char *prefix, long i, double countdown_s)
{
    char id[37];
    snprintf(id, sizeof(id), "%s%012lx", prefix, (unsigned long)i);
    json_object *a = json_object_new_array();
    json_object_array_add(a, json_object_new_int((int)i));
    json_object_array_add(a, json_object_new_int((int)i));
    task_send_opts o = {.task_id = id, .countdown_s = countdown_s};
    task_id tid;
    int rc = task_send(c, "test.add", a, NULL, &o, &tid);
    json_object_put(a);
    if (rc != 0)
        fail_msg("send %s failed: %s", id, task_client_errmsg(c));
}

/* Also: tasks with a countdown wait in the broker's delay queues through the restart, and
 * arrive, none before its due time. */
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
    for (long i = 0; i < NDELAYED; i++)
        send_add(c, DELAYED_PREFIX, i, COUNTDOWN_S);
    double due = (double)time(NULL) + COUNTDOWN_S - 1; /* time(): whole seconds, round down */
    for (long i = 0; i < N; i++) {
        double before = itest_now();
        send_add(c, PREFIX, i, 0);
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
    static unsigned char seen[N], seen_delayed[NDELAYED];
    struct want now = {.prefix = PREFIX, .n = N, .seen = seen};
    int found = collect(wall0, &now, itest_now() + 120);
    int lost = N - found;
    printf("broker restart: sent=%d results=%d lost=%d duplicates=%d "
           "producer_recovered_after_s=%.2f total_s=%.2f\n",
           N, found, lost, now.dups, recovered_at > 0 ? recovered_at - restarted_at : 0,
           itest_now() - t0);
    for (int i = 0; i < N && lost > 0; i++)
        if (!seen[i]) {
            printf("first lost: %d\n", i);
            break;
        }
    assert_int_equal(lost, 0);
    struct want later = {.prefix = DELAYED_PREFIX, .n = NDELAYED, .seen = seen_delayed,
                         .not_before = due};
    int found_delayed = collect(wall0, &later, itest_now() + 60);
    printf("broker restart, countdown %d s: sent=%d results=%d lost=%d early=%d\n",
           (int)COUNTDOWN_S, NDELAYED, found_delayed, NDELAYED - found_delayed, later.early);
    assert_int_equal(found_delayed, NDELAYED);
    assert_int_equal(later.early, 0);
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
