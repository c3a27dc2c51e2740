/*
 * loadgen.c - the one C load generator every benchmark uses, so taskd, the raw broker ceiling
 * and Python Celery are driven the same way: Celery protocol v2 task messages, persistent,
 * publisher confirms (a window of unconfirmed messages), results read from one reply queue.
 *
 *   loadgen throughput N TASK ARGS_JSON QUEUE    N tasks pipelined; prints tasks/s end to end
 *   loadgen latency N TASK ARGS_JSON QUEUE       N sequential round trips; prints p50/p99 ms
 *   loadgen backlog N TASK ARGS_JSON QUEUE       queue N tasks (all confirmed), print "filled"
 *       on stderr, then wait for the N results: tasks/s from the first result to the last, so
 *       a worker started after "filled" is timed draining a backlog of N
 * Prints one JSON object on stdout. Broker from TASKD_BROKER_URL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "codec.h"
#include "conn.h"

#define CH 1
#define WINDOW 2000

struct gen {
    struct task__conn *conn;
    char reply_q[40];
    unsigned run;          /* the first 8 hex digits of this run's ids: a worker drops a copy
                            * of an id that ended there lately, so runs must not share ids */
    uint64_t confirmed;
    long results, failures;
    double *t_sent;        /* by task index, for latency */
    double *t_done;
};

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, detail);
    exit(1);
}

static void handle_frame(struct gen *g, amqp_frame_t *f)
{
    if (f->frame_type != AMQP_FRAME_METHOD)
        return;
    if (f->payload.method.id == AMQP_BASIC_ACK_METHOD) {
        const amqp_basic_ack_t *a = f->payload.method.decoded;
        if (a->delivery_tag > g->confirmed)
            g->confirmed = a->delivery_tag;
    } else if (f->payload.method.id == AMQP_BASIC_NACK_METHOD) {
        die("publish", "nacked by the broker");
    } else if (f->payload.method.id == AMQP_BASIC_DELIVER_METHOD) {
        struct task__delivery d;
        if (task__conn_read_delivery(g->conn, f, &d) != 0)
            die("read", task__conn_errmsg(g->conn));
        struct task__result r;
        if (task__result_decode(d.msg.body.bytes, d.msg.body.len, &r, NULL) == 0) {
            if (strcmp(r.status, "SUCCESS") == 0 || strcmp(r.status, "FAILURE") == 0) {
                g->results++;
                if (strcmp(r.status, "FAILURE") == 0)
                    g->failures++;
                if (g->t_done != NULL) {
                    long idx = strtol(r.task_id + 24, NULL, 16); /* our ids end in the index */
                    g->t_done[idx] = task__now_mono();
                }
            }
            task__result_clear(&r);
        }
        task__delivery_free(&d);
    }
}

static void pump(struct gen *g, int timeout_ms)
{
    amqp_frame_t f;
    int rc = task__conn_next_frame(g->conn, &f, timeout_ms, NULL);
    if (rc < 0)
        die("read", task__conn_errmsg(g->conn));
    if (rc > 0)
        handle_frame(g, &f);
    task__conn_release_buffers(g->conn);
}

static void publish(struct gen *g, const char *task, json_object *args, const char *queue,
                    long idx, uint64_t *seq)
{
    char id[37];
    snprintf(id, sizeof(id), "%08x-0000-4000-8000-%012lx", g->run,
             (unsigned long)idx & 0xffffffffffffUL);
    struct task__msg m = {.task = (char *)task, .id = id, .group_index = -1, .args = args,
                          .reply_to = g->reply_q, .delivery_mode = 2};
    struct task__wire w;
    if (task__msg_encode(&m, &w, NULL) != 0)
        die("encode", task);
    if (task__conn_publish(g->conn, CH, "", queue, &w.props, w.body, w.body_len, seq) != 0)
        die("publish", task__conn_errmsg(g->conn));
    task__wire_free(&w);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 6)
        die("usage", "loadgen throughput|latency N TASK ARGS_JSON QUEUE");
    const char *mode = argv[1];
    long n = strtol(argv[2], NULL, 10);
    json_object *args = json_tokener_parse(argv[4]);
    const char *queue = argv[5];
    const char *url = getenv("TASKD_BROKER_URL");
    if (url == NULL || n <= 0 || args == NULL)
        die("usage", "needs TASKD_BROKER_URL, N > 0 and JSON args");
    char first[512];
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(url, ","), url);
    task_strlist urls = {.v = (char *[]){first}, .n = 1};
    struct task__conn_opts o = {.urls = &urls, .connect_timeout_s = 5, .name = "loadgen"};
    struct gen g = {0};
    g.run = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    task_error err = {0};
    if (task__conn_open(&g.conn, &o, &err) != 0)
        die("connect", err.msg);
    task__uuid4(g.reply_q);
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-expires"),
                            .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 600000}};
    amqp_table_t qargs = {.num_entries = 1, .entries = &e};
    if (task__conn_channel_open(g.conn, CH) || task__conn_confirm_select(g.conn, CH) ||
        task__conn_declare_task_queue(g.conn, CH, queue, amqp_empty_table) ||
        task__conn_declare_queue(g.conn, CH, g.reply_q, false, false, true, qargs) ||
        task__conn_consume(g.conn, CH, g.reply_q, true, amqp_empty_table, NULL))
        die("setup", task__conn_errmsg(g.conn));

    if (strcmp(mode, "throughput") == 0) {
        double t0 = task__now_mono();
        uint64_t seq = 0;
        for (long i = 0; i < n; i++) {
            publish(&g, argv[3], args, queue, i, &seq);
            while (seq - g.confirmed > WINDOW)
                pump(&g, 1000);
            while (task__conn_has_buffered(g.conn))
                pump(&g, 0);
        }
        double deadline = task__now_mono() + 600;
        while (g.results < n && task__now_mono() < deadline)
            pump(&g, 1000);
        double dt = task__now_mono() - t0;
        printf("{\"mode\":\"throughput\",\"tasks\":%ld,\"results\":%ld,\"failures\":%ld,"
               "\"seconds\":%.4f,\"tasks_per_s\":%.1f}\n",
               n, g.results, g.failures, dt, (double)g.results / dt);
        return g.results == n && g.failures == 0 ? 0 : 1;
    }
    if (strcmp(mode, "latency") == 0) {
        double *lat = calloc((size_t)n, sizeof(double));
        g.t_done = calloc((size_t)n, sizeof(double));
        for (long i = 0; i < n; i++) {
            uint64_t seq;
            double t0 = task__now_mono();
            publish(&g, argv[3], args, queue, i, &seq);
            while (g.results <= i)
                pump(&g, 5000);
            lat[i] = (g.t_done[i] - t0) * 1000.0;
        }
        qsort(lat, (size_t)n, sizeof(double), cmp_double);
        printf("{\"mode\":\"latency\",\"round_trips\":%ld,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"max_ms\":%.3f}\n",
               n, lat[n / 2], lat[(size_t)((double)n * 0.99)], lat[n - 1]);
        return g.failures == 0 ? 0 : 1;
    }
    if (strcmp(mode, "backlog") == 0) {
        uint64_t seq = 0;
        for (long i = 0; i < n; i++) {
            publish(&g, argv[3], args, queue, i, &seq);
            while (seq - g.confirmed > WINDOW)
                pump(&g, 1000);
        }
        while (g.confirmed < seq)
            pump(&g, 1000);
        fprintf(stderr, "filled\n");
        double deadline = task__now_mono() + 1800, t_first = 0;
        while (g.results < n && task__now_mono() < deadline) {
            pump(&g, 1000);
            if (t_first == 0 && g.results > 0)
                t_first = task__now_mono();
        }
        double dt = task__now_mono() - t_first;
        printf("{\"mode\":\"backlog\",\"tasks\":%ld,\"results\":%ld,\"failures\":%ld,"
               "\"seconds\":%.4f,\"tasks_per_s\":%.1f}\n",
               n, g.results, g.failures, dt, n > 1 ? (double)(g.results - 1) / dt : 0.0);
        return g.results == n && g.failures == 0 ? 0 : 1;
    }
    die("usage", "mode is throughput, latency or backlog");
}
