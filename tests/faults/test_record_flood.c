/*
 * test_record_flood.c - issue 15: junk in what every worker and client reads from outside the
 * task queues. Thousands of records of many kinds (null fields, wrong types, arrays, deep
 * nesting, invalid UTF-8, huge strings, not JSON) with valid ones in between, published with
 * rabbitmq-c straight to:
 *   - the celery.pidbox fanout: the worker keeps its pids, still answers ping (taskctl
 *     workers), honours the valid revokes in between, refuses each junk request exactly once
 *     (log line and taskd_control_rejected_total), and its log stays one event per line;
 *   - the taskd.revoked stream, before a worker starts: it starts, skips the junk (counted in
 *     taskd_stream_records_rejected_total), and honours the valid revokes;
 *   - a results stream: lookups (task_lookup, taskctl result) still find the valid records.
 * N per stream = 5000, or TASKD_FAULT_RECORD_N.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <task/client.h>
#include "conn.h"
#include "faultlib.h"
#include "internal.h"
#include "stream.h"
#include "../integration/itest.h"

enum { N_DEFAULT = 5000, VALID_EVERY = 50, HUGE = 65536, DEEP = 200 };
#define PIDBOX_PREFIX "f5f5f5f5-0000-4000-8000-"
#define STREAM_PREFIX "f6f6f6f6-0000-4000-8000-"
#define RESULT_PREFIX "f7f7f7f7-0000-4000-8000-"

static long record_n(void)
{
    const char *s = getenv("TASKD_FAULT_RECORD_N");
    long n = s != NULL ? strtol(s, NULL, 10) : 0;
    return n > 0 ? n : N_DEFAULT;
}

/* ---------------------------------------------------------------- publishing */

struct pub {
    struct task__conn *cn;
    uint64_t seq, acked;
};

static void pub_open(struct pub *p)
{
    task_strlist urls = {.v = (char *[]){(char *)itest_broker()}, .n = 1};
    struct task__conn_opts o = {.urls = &urls, .connect_timeout_s = 5, .name = "record-flood"};
    task_error err = {0};
    memset(p, 0, sizeof(*p));
    if (task__conn_open(&p->cn, &o, &err) != 0)
        fail_msg("connect: %s", err.msg);
    assert_int_equal(task__conn_channel_open(p->cn, 1), 0);
}

/* Read confirms until every publish up to `seq` is acked; a nack fails the test. */
static void pub_wait(struct pub *p, uint64_t seq)
{
    while (p->acked < seq) {
        amqp_frame_t f;
        int rc = task__conn_next_frame(p->cn, &f, 10000, NULL);
        if (rc <= 0)
            fail_msg("waiting for confirms: %s", rc == 0 ? "timeout" : task__conn_errmsg(p->cn));
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        if (f.payload.method.id == AMQP_BASIC_NACK_METHOD)
            fail_msg("the broker refused a publish");
        if (f.payload.method.id != AMQP_BASIC_ACK_METHOD)
            continue;
        amqp_basic_ack_t *a = f.payload.method.decoded;
        p->acked = a->delivery_tag > p->acked ? a->delivery_tag : p->acked;
        task__conn_release_buffers(p->cn);
    }
}

static void pub_confirmed(struct pub *p)
{
    assert_int_equal(task__conn_confirm_select(p->cn, 1), 0);
}

static void pub_send(struct pub *p, const char *exchange, const char *rk, const void *body,
                     size_t len)
{
    amqp_basic_properties_t props = task__record_props();
    if (task__conn_publish(p->cn, 1, exchange, rk, &props, body, len, &p->seq) != 0)
        fail_msg("publish to %s/%s: %s", exchange, rk, task__conn_errmsg(p->cn));
    if (p->seq - p->acked >= 2000)
        pub_wait(p, p->seq - 1000);
}

static void pub_close(struct pub *p)
{
    pub_wait(p, p->seq);
    task__conn_close(p->cn);
}

/* ---------------------------------------------------------------- junk */

struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < b->cap - b->len);
    b->len += (size_t)n;
}

static void put_huge(struct buf *b, char c)
{
    assert_true(b->len + HUGE < b->cap);
    memset(b->p + b->len, c, HUGE);
    b->len += HUGE;
}

static void put_deep(struct buf *b, const char *inner)
{
    for (int i = 0; i < DEEP; i++)
        put(b, "[");
    put(b, "%s", inner);
    for (int i = 0; i < DEEP; i++)
        put(b, "]");
}

/* The junk kinds of one target: `refused` when the reader must count it as malformed. */
struct kind {
    const char *name;
    bool refused;
    void (*make)(struct buf *b, const char *s); /* s: the hostname or the id it is about */
};

#define RK ",\"reply_to\":{\"exchange\":\"reply.celery.pidbox\",\"routing_key\":\"junk.rk\"}"
#define T ",\"ticket\":\"t-1\""

static void p_method_null(struct buf *b, const char *h)
{
    put(b, "{\"method\":null" RK T "}");
}
static void p_method_num(struct buf *b, const char *h)
{
    put(b, "{\"method\":5,\"arguments\":{}}");
}
static void p_method_arr(struct buf *b, const char *h)
{
    put(b, "{\"method\":[\"ping\"]" RK T "}");
}
static void p_no_method(struct buf *b, const char *h)
{
    put(b, "{\"arguments\":{}" RK T "}");
}
static void p_dest_null(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"ping\",\"destination\":[null]" RK T "}");
}
static void p_dest_mixed(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"ping\",\"destination\":[null,5,{},\"%s\"]}", h);
}
static void p_dest_str(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"ping\",\"destination\":\"%s\"" RK T "}", h);
}
static void p_args_arr(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"revoke\",\"arguments\":[\"x\"]}");
}
static void p_args_num(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"stats\",\"arguments\":5}");
}
static void p_revoke_null(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"revoke\",\"arguments\":{\"task_id\":[null]}}");
}
static void p_revoke_num(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"revoke\",\"arguments\":{\"task_id\":5,\"terminate\":\"yes\"}}");
}
static void p_revoke_obj(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"revoke\",\"arguments\":{\"task_id\":{\"a\":null}}}");
}
static void p_rate_null(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"rate_limit\",\"arguments\":{\"task_name\":null,\"rate_limit\":null}" RK T
           "}");
}
static void p_reply_str(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"ping\",\"reply_to\":\"junk.rk\"" T "}");
}
static void p_reply_empty(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"ping\",\"reply_to\":{}" T "}");
}
static void p_rk_null(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"ping\",\"reply_to\":{\"routing_key\":null}" T "}");
}
static void p_ticket_num(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"ping\"" RK ",\"ticket\":7}");
}
static void p_deep(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"ping\",\"arguments\":{\"a\":");
    put_deep(b, "null");
    put(b, "}}");
}
static void p_utf8(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"pi\xff\xfeng\"}");
}
static void p_huge(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"");
    put_huge(b, 'm');
    put(b, "\"}");
}
static void p_not_json(struct buf *b, const char *h)
{
    put(b, "not json {\"method\":");
}
static void p_empty(struct buf *b, const char *h)
{
    (void)b;
}
static void p_array(struct buf *b, const char *h)
{
    put(b, "[\"ping\",null]");
}
static void p_null(struct buf *b, const char *h)
{
    put(b, "null");
}
static void p_forged(struct buf *b, const char *h)
{
    put(b, "{\"method\":\"evil\\nts=0 level=error event=forged x\\\"=\\\\\"}");
}

static const struct kind pidbox_kinds[] = {
    {"method_null", true, p_method_null},   {"method_num", true, p_method_num},
    {"method_arr", true, p_method_arr},     {"no_method", true, p_no_method},
    {"dest_null", false, p_dest_null},      {"dest_mixed", false, p_dest_mixed},
    {"dest_str", true, p_dest_str},         {"args_arr", true, p_args_arr},
    {"args_num", true, p_args_num},         {"revoke_null", true, p_revoke_null},
    {"revoke_num", true, p_revoke_num},     {"revoke_obj", true, p_revoke_obj},
    {"rate_null", false, p_rate_null},      {"reply_str", true, p_reply_str},
    {"reply_empty", true, p_reply_empty},   {"rk_null", true, p_rk_null},
    {"ticket_num", true, p_ticket_num},     {"deep", true, p_deep},
    {"utf8", true, p_utf8},                 {"huge", true, p_huge},
    {"not_json", true, p_not_json},         {"empty", true, p_empty},
    {"array", true, p_array},               {"null", true, p_null},
    {"forged", false, p_forged},
};
#define NPIDBOX (int)(sizeof(pidbox_kinds) / sizeof(pidbox_kinds[0]))

/* Records for a stream; `s` is an id the record is about (results: the looked-up id, so the
 * lookup's byte scan lets the record through to the parser). */
static void r_marker_null(struct buf *b, const char *s)
{
    put(b, "{\"taskd_marker\": null, \"x\": \"%s\"}", s);
}
static void r_marker_num(struct buf *b, const char *s)
{
    put(b, "[{\"taskd_marker\": 5}, \"%s\"]", s);
}
static void r_id_null(struct buf *b, const char *s)
{
    put(b, "{\"task_id\": null, \"status\": \"SUCCESS\", \"result\": 1, \"x\": \"%s\"}", s);
}
static void r_id_num(struct buf *b, const char *s)
{
    put(b, "{\"task_id\": 5, \"x\": \"%s\"}", s);
}
static void r_id_arr(struct buf *b, const char *s)
{
    put(b, "{\"task_id\": [\"%s\"], \"status\": \"SUCCESS\"}", s);
}
static void r_status_null(struct buf *b, const char *s)
{
    put(b, "{\"task_id\": \"%s\", \"status\": null}", s);
}
static void r_status_num(struct buf *b, const char *s)
{
    put(b, "{\"task_id\": \"%s\", \"status\": 3}", s);
}
static void r_array_junk(struct buf *b, const char *s)
{
    put(b, "[null, 1, \"%s\", [], {\"task_id\": null}]", s);
}
static void r_deep(struct buf *b, const char *s)
{
    char inner[100];
    snprintf(inner, sizeof(inner), "\"%s\"", s);
    put_deep(b, inner);
}
static void r_utf8(struct buf *b, const char *s)
{
    put(b, "{\"task_id\": \"%s\xff\"}", s);
}
static void r_huge(struct buf *b, const char *s)
{
    put(b, "{\"task_id\": \"");
    put_huge(b, 'i');
    put(b, "\", \"x\": \"%s\"}", s);
}
static void r_not_json(struct buf *b, const char *s)
{
    put(b, "%s not json", s);
}
static void r_null(struct buf *b, const char *s)
{
    put(b, "null");
}
static void r_string(struct buf *b, const char *s)
{
    put(b, "\"%s\"", s);
}
static void r_empty(struct buf *b, const char *s)
{
    (void)b;
}

static const struct kind record_kinds[] = {
    {"marker_null", true, r_marker_null}, {"marker_num", true, r_marker_num},
    {"id_null", true, r_id_null},         {"id_num", true, r_id_num},
    {"id_arr", true, r_id_arr},           {"status_null", true, r_status_null},
    {"status_num", true, r_status_num},   {"array_junk", true, r_array_junk},
    {"deep", true, r_deep},               {"utf8", true, r_utf8},
    {"huge", true, r_huge},               {"not_json", true, r_not_json},
    {"null", true, r_null},               {"string", true, r_string},
    {"empty", true, r_empty},
};
#define NRECORD (int)(sizeof(record_kinds) / sizeof(record_kinds[0]))

/* ---------------------------------------------------------------- the worker, from outside */

/* Output of a command (the test's broker in the environment), into out; its exit status. */
static int run(const char *cmd, char *out, size_t size)
{
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *taskctl(void)
{
    static char path[600];
    snprintf(path, sizeof(path), "%s/taskctl/taskctl", itest_build_root());
    return path;
}

/* GET /metrics; the value of series `name` (e.g. `x_total{reason="y"}`), or -1. */
static long metric(int port, const char *series)
{
    static char text[1 << 20];
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "curl -s --max-time 10 http://127.0.0.1:%d/metrics", port);
    if (run(cmd, text, sizeof(text)) != 0)
        return -1;
    const char *at = strstr(text, series);
    while (at != NULL && at != text && at[-1] != '\n')
        at = strstr(at + 1, series);
    return at != NULL ? strtol(at + strlen(series), NULL, 10) : -1;
}

static long metric_sum(int port, const char *prefix)
{
    static char text[1 << 20];
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "curl -s --max-time 10 http://127.0.0.1:%d/metrics", port);
    if (run(cmd, text, sizeof(text)) != 0)
        return -1;
    long sum = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n"))
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            sum += strtol(strrchr(line, ' ') + 1, NULL, 10);
    return sum;
}

/* Every line of the worker's log is one event: it starts with ts=. */
static void one_event_per_line(const char *log)
{
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    static char line[1 << 16];
    long n = 0, bad = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        n++;
        if (strncmp(line, "ts=", 3) != 0) {
            if (bad++ < 3)
                fprintf(stderr, "not an event line: %.200s\n", line);
        }
    }
    fclose(f);
    assert_true(n > 0);
    assert_int_equal(bad, 0);
}

static void ping_answers(const char *host)
{
    char out[8192], cmd[800];
    snprintf(cmd, sizeof(cmd), "%s workers --timeout 5 2>&1", taskctl());
    int st = run(cmd, out, sizeof(out));
    if (st != 0 || strstr(out, host) == NULL)
        fail_msg("taskctl workers (exit %d) did not list %s: %s", st, host, out);
}

/* Tasks sent with these ids (test.add) end REVOKED without running. */
static void revoked_ids_are_honoured(const char *q, const char *prefix, const long *idx, int n)
{
    task_client *c = fault_client(q);
    for (int i = 0; i < n; i++)
        fault_send_add(c, prefix, idx[i], 0);
    for (int i = 0; i < n; i++) {
        char id[48];
        snprintf(id, sizeof(id), "%s%012lx", prefix, (unsigned long)idx[i]);
        task_state st = TASK_STATE_PENDING;
        json_object *res = NULL;
        assert_int_equal(task_wait(c, id, 30000, &st, &res), 0);
        json_object_put(res);
        if (st != TASK_STATE_REVOKED)
            fail_msg("%s was revoked but ended %s", id, task_state_name(st));
    }
    task_client_free(c);
}

static void same_pids(const struct itest_worker *wk, const pid_t *before, int nbefore)
{
    pid_t now[16];
    assert_true(itest_worker_alive(wk));
    int n = fault_children(wk->pid, now, 16);
    assert_int_equal(n, nbefore);
    for (int i = 0; i < nbefore; i++) {
        bool found = false;
        for (int j = 0; j < n; j++)
            found = found || now[j] == before[i];
        if (!found)
            fail_msg("pool child %d is gone", (int)before[i]);
    }
}

static struct buf new_buf(void)
{
    struct buf b = {.cap = HUGE + 4096};
    b.p = malloc(b.cap);
    assert_non_null(b.p);
    return b;
}

static void start_worker(const char *q, const char *host, int *port)
{
    static char host_env[200], metrics_env[100];
    *port = itest_free_port();
    snprintf(host_env, sizeof(host_env), "TASKD_WORKER_HOSTNAME=%s", host);
    snprintf(metrics_env, sizeof(metrics_env), "TASKD_WORKER_METRICS_LISTEN=127.0.0.1:%d", *port);
    const char *env[] = {host_env, metrics_env, NULL};
    const char *args[] = {"-c", "1", NULL};
    assert_int_equal(itest_worker_start(&fault_worker, q, env, args), 0);
}

/* ---------------------------------------------------------------- tests */

static void pidbox_flood_leaves_the_worker_answering(void **state)
{
    (void)state;
    long n = record_n();
    char q[64], host[100];
    snprintf(q, sizeof(q), "t_record_pidbox_%d", (int)getpid());
    snprintf(host, sizeof(host), "celery@flood-%d", (int)getpid());
    int port;
    start_worker(q, host, &port);
    pid_t kids[16];
    int nkids = fault_children(fault_worker.pid, kids, 16);
    assert_int_equal(nkids, 1);

    struct pub p;
    pub_open(&p);
    pub_confirmed(&p);
    struct buf b = new_buf();
    long refused = 0, valid = 0, per_kind[NPIDBOX] = {0};
    double t0 = itest_now();
    for (long i = 0; i < n; i++) {
        b.len = 0;
        if (i % VALID_EVERY == VALID_EVERY - 1) {
            put(&b, "{\"method\":\"revoke\",\"arguments\":{\"task_id\":\"%s%012lx\"}}",
                PIDBOX_PREFIX, (unsigned long)valid++);
        } else {
            const struct kind *k = &pidbox_kinds[i % NPIDBOX];
            k->make(&b, host);
            refused += k->refused;
            per_kind[i % NPIDBOX]++;
        }
        pub_send(&p, "celery.pidbox", "", b.p, b.len);
    }
    pub_close(&p);
    free(b.p);
    /* The pidbox queue is read in order: an answer to this ping comes after the flood. */
    ping_answers(host);
    double took = itest_now() - t0;
    long rejected_log = itest_file_count(fault_worker.log, "event=control_rejected");
    long rejected_metric = metric_sum(port, "taskd_control_rejected_total{");
    printf("pidbox flood: sent=%ld junk=%ld refused=%ld valid_revokes=%ld kinds=%d "
           "rejected_log=%ld rejected_metric=%ld took_s=%.1f\n",
           n, n - valid, refused, valid, NPIDBOX, rejected_log, rejected_metric, took);
    same_pids(&fault_worker, kids, nkids);
    assert_int_equal(rejected_log, refused);
    assert_int_equal(rejected_metric, refused);
    /* Every valid revoke in the flood is in the worker's set, and is honoured. */
    char *out = malloc(1 << 20), cmd[800];
    assert_non_null(out);
    snprintf(cmd, sizeof(cmd), "%s inspect revoked --json --timeout 5", taskctl());
    assert_int_equal(run(cmd, out, 1 << 20), 0);
    for (long i = 0; i < valid; i++) {
        char id[48];
        snprintf(id, sizeof(id), "%s%012lx", PIDBOX_PREFIX, (unsigned long)i);
        if (strstr(out, id) == NULL)
            fail_msg("revoke of %s (sent in the flood) is not in the revoked set", id);
    }
    free(out);
    long sample[] = {0, valid / 2, valid - 1};
    revoked_ids_are_honoured(q, PIDBOX_PREFIX, sample, 3);
    assert_int_equal(itest_worker_stop(&fault_worker, SIGTERM, 30), 0);
    one_event_per_line(fault_worker.log);
    assert_true(itest_file_has(fault_worker.log, "method=\"evil\\nts=0 level=error"));
    assert_false(itest_file_has(fault_worker.log, "runtime error:"));
    assert_false(itest_file_has(fault_worker.log, "Sanitizer"));
    unlink(fault_worker.log);
}

static void revoked_stream_junk_is_skipped_at_start(void **state)
{
    (void)state;
    long n = record_n();
    struct pub p;
    pub_open(&p);
    /* Declared as a worker declares it (an earlier one's retention is kept). */
    assert_int_equal(task__stream_declare(p.cn, 1, TASK__REVOKED_STREAM, 86400, NULL), 0);
    pub_confirmed(&p);
    struct buf b = new_buf();
    long refused = 0, valid = 0;
    char tag[40];
    snprintf(tag, sizeof(tag), "%d", (int)getpid());
    for (long i = 0; i < n; i++) {
        b.len = 0;
        if (i % VALID_EVERY == VALID_EVERY - 1) {
            put(&b, "{\"task_id\": \"%s%012lx\", \"revoked_at\": \"2026-12-01T00:00:00+00:00\"}",
                STREAM_PREFIX, (unsigned long)(getpid() * 100000L + valid++));
        } else {
            const struct kind *k = &record_kinds[i % NRECORD];
            k->make(&b, tag);
            refused += k->refused;
        }
        pub_send(&p, "", TASK__REVOKED_STREAM, b.p, b.len);
    }
    pub_close(&p);
    free(b.p);

    char q[64], host[100];
    snprintf(q, sizeof(q), "t_record_revoked_%d", (int)getpid());
    snprintf(host, sizeof(host), "celery@revoked-%d", (int)getpid());
    int port;
    start_worker(q, host, &port);
    /* Junk from earlier runs is still in the stream (retention): at least ours is counted. */
    long skipped = metric(port, "taskd_stream_records_rejected_total{stream=\"taskd.revoked\"}");
    printf("revoked stream flood: sent=%ld junk=%ld refused=%ld valid=%ld kinds=%d "
           "skipped_metric=%ld\n",
           n, n - valid, refused, valid, NRECORD, skipped);
    assert_true(skipped >= refused);
    assert_true(itest_file_has(fault_worker.log, "event=stream_records_rejected"));
    assert_int_equal(itest_file_count(fault_worker.log, "event=stream_records_rejected"), 1);
    long base = getpid() * 100000L;
    long sample[] = {base, base + valid / 2, base + valid - 1};
    revoked_ids_are_honoured(q, STREAM_PREFIX, sample, 3);
    ping_answers(host);
    assert_int_equal(itest_worker_stop(&fault_worker, SIGTERM, 30), 0);
    one_event_per_line(fault_worker.log);
    assert_false(itest_file_has(fault_worker.log, "runtime error:"));
    unlink(fault_worker.log);
}

static void results_stream_junk_does_not_hide_results(void **state)
{
    (void)state;
    long n = record_n();
    enum { IDS = 8 };
    char ids[IDS][48];
    unsigned part[IDS];
    for (int i = 0; i < IDS; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%s%06x%06x", RESULT_PREFIX, (unsigned)getpid() & 0xffffff,
                 (unsigned)i);
        part[i] = task__results_partition(ids[i]);
    }
    struct pub p;
    pub_open(&p);
    /* As a worker declares them, in case this test runs on a broker no worker has used. */
    int kept = 0;
    bool rest = false;
    assert_int_equal(task__results_declare(p.cn, 1, 86400, &kept, &rest), 0);
    if (rest)
        assert_int_equal(task__results_declare_rest(p.cn, 1, 86400), 0);
    pub_confirmed(&p);
    struct buf b = new_buf();
    char stream[32];
    /* Junk about each id around its one valid record, in its own results stream. */
    for (long i = 0; i < n; i++) {
        int k = (int)(i % IDS);
        b.len = 0;
        if (i / IDS == n / IDS / 2) { /* one round in the middle: the valid records */
            put(&b, "[{\"task_id\": \"%s\", \"status\": \"STARTED\", \"result\": null},"
                    "{\"task_id\": \"%s\", \"status\": \"SUCCESS\", \"result\": %d}]",
                ids[k], ids[k], 1000 + k);
        } else {
            record_kinds[(i / IDS) % NRECORD].make(&b, ids[k]);
        }
        pub_send(&p, "", task__results_name(part[k], stream), b.p, b.len);
    }
    pub_close(&p);
    free(b.p);

    task_client *c = fault_client("t_record_results");
    for (int i = 0; i < IDS; i++) {
        task_state st = TASK_STATE_PENDING;
        json_object *res = NULL;
        int rc = task_lookup(c, ids[i], 0, &st, &res);
        if (rc != 0)
            fail_msg("lookup %s: %s", ids[i], task_client_errmsg(c));
        assert_int_equal(st, TASK_STATE_SUCCESS);
        assert_int_equal(json_object_get_int(res), 1000 + i);
        json_object_put(res);
    }
    task_client_free(c);
    char out[4096], cmd[800];
    snprintf(cmd, sizeof(cmd), "%s result %s 2>&1", taskctl(), ids[0]);
    int st = run(cmd, out, sizeof(out));
    if (st != 0 || strstr(out, "1000") == NULL)
        fail_msg("taskctl result %s (exit %d): %s", ids[0], st, out);
    printf("results stream flood: sent=%ld streams=%d lookups=%d ok\n", n, IDS, IDS);
}

int main(void)
{
    itest_broker();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(pidbox_flood_leaves_the_worker_answering, fault_stop_worker),
        cmocka_unit_test_teardown(revoked_stream_junk_is_skipped_at_start, fault_stop_worker),
        cmocka_unit_test(results_stream_junk_does_not_hide_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
