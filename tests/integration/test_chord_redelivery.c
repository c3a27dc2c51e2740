/*
 * test_chord_redelivery.c - a chord whose worker is killed (SIGKILL, supervisor and children)
 * while members run (issue 14, case C). Members: two test.sleep(0) that end (their parts are in
 * the barrier, their messages acked) and six test.sleep(2): four running, two waiting in the
 * worker, all unacked. A new worker gets the six again (redelivered); the callback (test.echo,
 * no explicit id in the signature beyond the one task_send_chord gives it) must run exactly once,
 * with every member's result in header order, and the barrier queues must be gone afterwards.
 * "Exactly once" is counted after the worker is idle (its /metrics: nothing busy, nothing
 * prefetched) and the queue is empty, so a late second run would have been seen. Then a chord
 * of 400 quick members whose worker is killed mid-barrier, three rounds.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <task/canvas.h>
#include <task/client.h>
#include "../faults/faultlib.h"
#include "itest.h"

static char queue[64];
static struct itest_worker wa, wb;
/* Every worker started, stopped (SIGKILL) in teardown even after a failed assertion. */
static struct itest_worker *started[16];
static int nstarted;
static int port_a, port_b;
static task_client *c;

struct buf {
    char *p;
    size_t n;
};

static size_t on_body(char *d, size_t s, size_t n, void *u)
{
    struct buf *b = u;
    b->p = realloc(b->p, b->n + s * n + 1);
    memcpy(b->p + b->n, d, s * n);
    b->n += s * n;
    b->p[b->n] = '\0';
    return s * n;
}

/* The value of the metric line starting with `prefix` (e.g. `taskd_busy_slots `), -1 if none. */
static double metric(int port, const char *prefix)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    struct buf b = {0};
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 5L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    double v = -1;
    for (char *l = rc == CURLE_OK ? b.p : NULL; l != NULL && *l != '\0';) {
        if (strncmp(l, prefix, strlen(prefix)) == 0) {
            v = strtod(l + strlen(prefix), NULL);
            break;
        }
        l = strchr(l, '\n');
        l = l ? l + 1 : NULL;
    }
    free(b.p);
    return v;
}

/* Messages ready in `q` (taskctl queues without the management API), -1 if it does not exist. */
static long ready(const char *q)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "TASKD_MANAGEMENT_URL= %s/taskctl/taskctl --broker '%s' --json queues %s 2>/dev/null",
             itest_build_root(), itest_broker(), q);
    FILE *p = popen(cmd, "r");
    char out[4096];
    size_t n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
    out[n] = '\0';
    if (p != NULL)
        pclose(p);
    json_object *arr = json_tokener_parse(out);
    long r = -1;
    if (json_object_is_type(arr, json_type_array) && json_object_array_length(arr) == 1)
        r = (long)json_object_get_int64(
            json_object_object_get(json_object_array_get_idx(arr, 0), "ready"));
    json_object_put(arr);
    return r;
}

static int start(struct itest_worker *w, int *port)
{
    static char ports[2][16];
    static int k;
    *port = itest_free_port();
    char *ps = ports[k++ % 2];
    snprintf(ps, 16, "%d", *port);
    const char *args[] = {"-c", "2", "--threads", "2", "--metrics", ps, NULL};
    if (nstarted < 16)
        started[nstarted++] = w;
    return itest_worker_start(w, queue, NULL, args);
}

/* SIGKILL the supervisor, then its children (they never talk to the broker, but must not
 * linger); waits until all are gone. */
static void kill_worker(struct itest_worker *w)
{
    pid_t kids[64];
    int nk = fault_children(w->pid, kids, 64);
    assert_int_equal(kill(w->pid, SIGKILL), 0);
    for (int i = 0; i < nk; i++)
        kill(kids[i], SIGKILL);
    int st;
    waitpid(w->pid, &st, 0);
    w->pid = 0;
    for (int i = 0; i < nk; i++) {
        double until = itest_now() + 5;
        while (fault_pid_alive(kids[i]) && itest_now() < until)
            usleep(10000);
    }
}

static int count_both(const char *needle)
{
    return itest_file_count(wa.log, needle) + itest_file_count(wb.log, needle);
}

static void callback_runs_once_after_a_member_is_redelivered(void **state)
{
    (void)state;
    enum { QUICK = 2, SLOW = 6, N = QUICK + SLOW };
    json_object *header[N];
    json_object *expect = json_object_new_array();
    for (int i = 0; i < N; i++) {
        int secs = i < QUICK ? 0 : 2;
        json_object *a = json_object_new_array();
        json_object_array_add(a, json_object_new_int(secs));
        header[i] = task_sig_new("test.sleep", a, NULL, NULL, false);
        json_object_put(a);
        json_object_array_add(expect, json_object_new_int(secs));
    }
    json_object *cb = task_sig_new("test.echo", NULL, NULL, NULL, false);
    task_id cb_id, ids[N];
    assert_int_equal(task_send_chord(c, header, N, cb, NULL, &cb_id, ids), 0);

    /* Kill when the quick members ended and every slot runs a slow one. */
    double deadline = itest_now() + 20;
    while (itest_now() < deadline &&
           !(metric(port_a, "taskd_tasks_succeeded_total{task=\"test.sleep\"} ") >= QUICK &&
             metric(port_a, "taskd_busy_slots ") == 4))
        usleep(20000);
    assert_true(metric(port_a, "taskd_busy_slots ") == 4);
    assert_true(metric(port_a, "taskd_tasks_succeeded_total{task=\"test.sleep\"} ") == QUICK);
    kill_worker(&wa);
    assert_int_equal(count_both("event=chord_done"), 0); /* nothing fired early */

    assert_int_equal(start(&wb, &port_b), 0);
    task_state s = TASK_STATE_PENDING;
    json_object *res = NULL;
    int rc = task_wait(c, cb_id.str, 30000, &s, &res);
    if (rc != 0)
        fail_msg("chord callback %s: no final state within 30 s (%s); logs %s %s", cb_id.str,
                 task_client_errmsg(c), wa.log, wb.log);
    json_object *want = json_object_new_array();
    json_object_array_add(want, json_object_new_array());
    json_object_array_add(json_object_array_get_idx(want, 0), json_object_get(expect));
    json_object_array_add(want, json_object_new_object());
    if (s != TASK_STATE_SUCCESS || !json_object_equal(res, want))
        fail_msg("callback ended %s %s, expected SUCCESS %s", task_state_name(s),
                 json_object_to_json_string(res), json_object_to_json_string(want));
    json_object_put(res);
    json_object_put(want);

    /* Idle: the queue empty, worker b with nothing running or prefetched. */
    deadline = itest_now() + 15;
    while (itest_now() < deadline &&
           !(ready(queue) == 0 && metric(port_b, "taskd_busy_slots ") == 0 &&
             metric(port_b, "taskd_prefetch_in_use ") == 0))
        usleep(50000);
    assert_int_equal(ready(queue), 0);
    assert_true(metric(port_b, "taskd_prefetch_in_use ") == 0);
    char needle[128];
    snprintf(needle, sizeof(needle), "task=test.echo task_id=%s", cb_id.str);
    int runs = 0;
    FILE *f = NULL;
    const char *logs[] = {wa.log, wb.log};
    for (int k = 0; k < 2; k++) {
        char line[4096];
        f = fopen(logs[k], "r");
        while (f != NULL && fgets(line, sizeof(line), f) != NULL)
            runs += strstr(line, "event=task_succeeded") != NULL && strstr(line, needle) != NULL;
        if (f != NULL)
            fclose(f);
    }
    if (runs != 1 || count_both("event=chord_done") != 1)
        fail_msg("callback ran %d times, chord_done logged %d times (expected 1 and 1); logs %s %s",
                 runs, count_both("event=chord_done"), wa.log, wb.log);
    /* The barrier and its lock are gone. */
    char group[40] = "", name[96];
    f = fopen(wb.log, "r");
    char line[4096];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        const char *g = strstr(line, "event=chord_done group=");
        if (g != NULL)
            snprintf(group, sizeof(group), "%.36s", g + strlen("event=chord_done group="));
    }
    if (f != NULL)
        fclose(f);
    assert_int_equal(strlen(group), 36);
    snprintf(name, sizeof(name), "taskd.chord.%s", group);
    assert_int_equal(ready(name), -1);
    strcat(name, ".lock");
    assert_int_equal(ready(name), -1);
    assert_int_equal(itest_worker_stop(&wb, SIGTERM, 20), 0);
    json_object_put(expect);
    json_object_put(cb);
    for (int i = 0; i < N; i++)
        json_object_put(header[i]);
}

/* How many lines of the files in `logs` contain both needles. */
static int count_lines(struct itest_worker *const *ws, int n, const char *a, const char *b)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(ws[i]->log, "r");
        char line[4096];
        while (f != NULL && fgets(line, sizeof(line), f) != NULL)
            k += strstr(line, a) != NULL && strstr(line, b) != NULL;
        if (f != NULL)
            fclose(f);
    }
    return k;
}

/*
 * Members end by the hundred while the worker is killed: a member whose part is already in the
 * barrier but whose message was not acked yet runs again on the next worker and writes its part
 * twice. The callback must still run once with the right sum (not early with a duplicate, not
 * never). Where the kill lands is up to the scheduler, so several rounds; a correct worker
 * passes every one.
 */
static void callback_runs_once_when_killed_mid_barrier(void **state)
{
    (void)state;
    enum { ROUNDS = 3, N = 400 };
    static struct itest_worker rw[ROUNDS][2];
    for (int round = 0; round < ROUNDS; round++) {
        /* a queue of its own: nothing left from an earlier failure can take part */
        snprintf(queue, sizeof(queue), "t_chordre_%d_r%d", (int)getpid(), round);
        struct itest_worker *a = &rw[round][0], *b = &rw[round][1];
        int pa, pb;
        assert_int_equal(start(a, &pa), 0);
        /* Frozen while the chord is sent: a worker faster than this producer would have run
         * every member before the first look at its count, and the kill must land mid-run. */
        assert_int_equal(kill(a->pid, SIGSTOP), 0);
        json_object *header[N];
        long sum = 0;
        for (int i = 0; i < N; i++) {
            json_object *args = json_object_new_array();
            json_object_array_add(args, json_object_new_int(i));
            json_object_array_add(args, json_object_new_int(round));
            header[i] = task_sig_new("test.add", args, NULL, NULL, false);
            json_object_put(args);
            sum += i + round;
        }
        json_object *cb = task_sig_new("test.xsum", NULL, NULL, NULL, false);
        task_id cb_id;
        task_send_opts o = {.queue = queue};
        assert_int_equal(task_send_chord(c, header, N, cb, &o, &cb_id, NULL), 0);
        for (int i = 0; i < N; i++)
            json_object_put(header[i]);
        json_object_put(cb);
        assert_int_equal(kill(a->pid, SIGCONT), 0);
        double deadline = itest_now() + 30;
        while (itest_now() < deadline &&
               metric(pa, "taskd_tasks_succeeded_total{task=\"test.add\"} ") < N / 2)
            usleep(2000);
        double done = metric(pa, "taskd_tasks_succeeded_total{task=\"test.add\"} ");
        kill_worker(a);
        assert_true(done >= N / 2 && done < N);
        assert_int_equal(start(b, &pb), 0);
        task_state st = TASK_STATE_PENDING;
        json_object *res = NULL;
        int rc = task_wait(c, cb_id.str, 30000, &st, &res);
        struct itest_worker *ws[] = {a, b};
        if (rc != 0)
            fail_msg("round %d (killed after %.0f of %d members): the callback %s has no final "
                     "state within 30 s; logs %s %s", round, done, N, cb_id.str, a->log, b->log);
        if (st != TASK_STATE_SUCCESS || json_object_get_int64(res) != sum)
            fail_msg("round %d: callback ended %s %s, expected SUCCESS %ld; logs %s %s", round,
                     task_state_name(st), json_object_to_json_string(res), sum, a->log, b->log);
        json_object_put(res);
        deadline = itest_now() + 15;
        while (itest_now() < deadline &&
               !(ready(queue) == 0 && metric(pb, "taskd_busy_slots ") == 0 &&
                 metric(pb, "taskd_prefetch_in_use ") == 0))
            usleep(50000);
        assert_int_equal(ready(queue), 0);
        int runs = count_lines(ws, 2, "event=task_succeeded task=test.xsum", cb_id.str);
        if (runs != 1)
            fail_msg("round %d: the callback ran %d times, expected once; logs %s %s", round,
                     runs, a->log, b->log);
        assert_int_equal(itest_worker_stop(b, SIGTERM, 20), 0);
        printf("# round %d: killed after %.0f of %d members; callback once, sum right\n", round,
               done, N);
    }
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(queue, sizeof(queue), "t_chordre_%d", (int)getpid());
    if (start(&wa, &port_a) != 0)
        return -1;
    c = itest_client(queue, NULL);
    return c != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    task_client_free(c);
    int rc = wb.pid > 0 ? itest_worker_stop(&wb, SIGTERM, 20) : 0;
    for (int i = 0; i < nstarted; i++)
        if (started[i]->pid > 0) {
            pid_t kids[64];
            int nk = fault_children(started[i]->pid, kids, 64);
            itest_worker_stop(started[i], SIGKILL, 10);
            for (int k = 0; k < nk; k++)
                kill(kids[k], SIGKILL);
        }
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

int main(void)
{
    itest_broker();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(callback_runs_once_after_a_member_is_redelivered),
        cmocka_unit_test(callback_runs_once_when_killed_mid_barrier),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
