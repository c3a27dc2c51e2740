/* faultlib.c - see faultlib.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include "faultlib.h"
#include "codec.h"
#include "conn.h"
#include "internal.h"
#include "stream.h"
#include "../integration/itest.h"

task_client *fault_client(const char *queue)
{
    const char *settings[] = {"client.send_timeout=60", NULL};
    task_client *c = itest_client(queue, settings);
    if (c == NULL)
        fail_msg("client for %s", queue);
    return c;
}

void fault_send_add(task_client *c, const char *prefix, long i, double countdown_s)
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

/* One stream record: count it if it is a SUCCESS of ours. Returns 1 for a first sighting. */
static int note_record(json_object *rec, struct want *wt)
{
    json_object *v;
    if (!json_object_object_get_ex(rec, "status", &v) ||
        strcmp(json_object_get_string(v), "SUCCESS") != 0 ||
        !json_object_object_get_ex(rec, "task_id", &v))
        return 0;
    const char *id = json_object_get_string(v);
    if (strncmp(id, wt->prefix, 24) != 0)
        return 0;
    long idx = strtol(id + 24, NULL, 16);
    if (idx < 0 || idx >= wt->n)
        return 0;
    json_object *res = NULL;
    json_object_object_get_ex(rec, "result", &res);
    if (json_object_get_int64(res) != 2 * idx)
        fail_msg("task %ld: wrong result %s", idx, json_object_to_json_string(res));
    double done = 0;
    if (json_object_object_get_ex(rec, "date_done", &v))
        (void)task__iso8601_parse(json_object_get_string(v), &done);
    if (done < wt->not_before) /* no date_done cannot prove it on time */
        wt->early++;
    if (wt->seen[idx] < 255)
        wt->seen[idx]++;
    if (wt->seen[idx] > 1) {
        wt->dups++;
        return 0;
    }
    return 1;
}

int fault_collect(double since, struct want *wt, double deadline)
{
    /* TASKD_BROKER_URL may list a cluster's nodes: the config loader splits it. */
    task_config *cfg = task_config_new();
    task_error err = {0};
    if (cfg == NULL || task_config_set(cfg, "broker.urls", itest_broker(), "test", &err) != 0) {
        task_config_free(cfg);
        return -1;
    }
    struct task__conn_opts o = {.urls = &cfg->broker_urls, .connect_timeout_s = 5,
                                .name = "faults"};
    struct task__conn *cn = NULL;
    int open_rc = task__conn_open(&cn, &o, &err);
    task_config_free(cfg);
    if (open_rc != 0)
        return -1;
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-stream-offset"),
                            .value = {.kind = AMQP_FIELD_KIND_TIMESTAMP,
                                      .value.u64 = (uint64_t)since - 5}};
    amqp_table_t args = {.num_entries = 1, .entries = &e};
    int rc = task__conn_channel_open(cn, 1);
    if (rc == 0)
        rc = task__conn_qos(cn, 1, 2000);
    /* The ids spread over every results stream: one consumer each on the same channel. */
    for (unsigned p = 0; rc == 0 && p < TASK__RESULTS_PARTITIONS; p++) {
        char name[32];
        rc = task__conn_consume(cn, 1, task__results_name(p, name), false, args, NULL);
    }
    if (rc != 0) {
        task__conn_close(cn);
        return -1;
    }
    int found = 0;
    while (found < wt->n && itest_now() < deadline) {
        amqp_frame_t f;
        int got = task__conn_next_frame(cn, &f, 500, NULL);
        if (got < 0)
            break;
        if (got == 0 || f.frame_type != AMQP_FRAME_METHOD ||
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
                           i < json_object_array_length(body); i++)
            found += note_record(json_object_array_get_idx(body, i), wt);
        json_object_put(body);
        task__delivery_free(&d);
        task__conn_release_buffers(cn);
    }
    task__conn_close(cn);
    return found;
}

struct itest_worker fault_worker;

int fault_stop_worker(void **state)
{
    (void)state;
    if (fault_worker.pid > 0)
        itest_worker_stop(&fault_worker, SIGKILL, 10);
    return 0;
}

int fault_first_lost(const struct want *wt)
{
    for (int i = 0; i < wt->n; i++)
        if (!wt->seen[i])
            return i;
    return -1;
}

/* State and parent of `pid` from /proc/PID/stat; 0, or -1 when it is gone. */
static int proc_stat(pid_t pid, char *state, pid_t *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    int pp;
    if (p == NULL || sscanf(p + 1, " %c %d", state, &pp) != 2)
        return -1;
    *ppid = pp;
    return 0;
}

int fault_children(pid_t parent, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        pid_t pid = (pid_t)atoi(e->d_name);
        char st;
        pid_t pp;
        if (pid > 0 && proc_stat(pid, &st, &pp) == 0 && pp == parent && st != 'Z')
            out[n++] = pid;
    }
    closedir(d);
    return n;
}

bool fault_pid_alive(pid_t pid)
{
    char st;
    pid_t pp;
    return proc_stat(pid, &st, &pp) == 0 && st != 'Z' && st != 'X';
}
