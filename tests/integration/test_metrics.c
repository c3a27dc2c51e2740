/*
 * test_metrics.c - taskd --metrics against a real broker: exact per-task counts after known
 * runs (successes, failures, an autoretried task, an expired one, an unknown task), the
 * histogram's count and bucket order, gauges (slots, busy slots while tasks run and 0 when
 * idle, prefetch), the text format's HELP/TYPE lines, 404/405 answers, a second taskd on the
 * same port failing at start with one error line, and clients that stall (silent, half a
 * request, junk, never reading the answer) not holding up tasks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <task/client.h>
#include "itest.h"

#define PROCS 2
#define WINDOW 16 /* worker.confirm_window */
#define WINDOW_STR "16"
#define THREADS 2

static int seq;

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void new_queue(char *q, size_t size, const char *what)
{
    snprintf(q, size, "t_metrics_%d_%s_%d", (int)getpid(), what, ++seq);
}

struct worker_on_port {
    struct itest_worker w;
    int port;
    char q[96];
    char dead_env[160];
};

/* A worker on a new queue named for `what`, or on `queue` when given. */
/* `window` overrides worker.confirm_window and `mult` worker.prefetch_multiplier (NULL: the
 * defaults of this test). */
static void start_worker_with(struct worker_on_port *wp, const char *what, const char *queue,
                              const char *window, const char *mult)
{
    if (queue != NULL)
        snprintf(wp->q, sizeof(wp->q), "%s", queue);
    else
        new_queue(wp->q, sizeof(wp->q), what);
    wp->port = itest_free_port();
    char port[16], procs[8], threads[8];
    snprintf(port, sizeof(port), "%d", wp->port);
    snprintf(procs, sizeof(procs), "%d", PROCS);
    snprintf(threads, sizeof(threads), "%d", THREADS);
    /* Quarantined test messages go to this test's own dead queue. */
    snprintf(wp->dead_env, sizeof(wp->dead_env), "TASKD_WORKER_DEAD_QUEUE=%s.dead", wp->q);
    char win_env[64], mult_env[64];
    snprintf(win_env, sizeof(win_env), "TASKD_WORKER_CONFIRM_WINDOW=%s", window ? window : WINDOW_STR);
    snprintf(mult_env, sizeof(mult_env), "TASKD_WORKER_PREFETCH_MULTIPLIER=%s", mult ? mult : "4");
    const char *env[] = {wp->dead_env, win_env, mult_env, NULL};
    const char *args[] = {"-c", procs, "--threads", threads, "--metrics", port, NULL};
    assert_int_equal(itest_worker_start(&wp->w, wp->q, env, args), 0);
    char line[64];
    snprintf(line, sizeof(line), "addr=127.0.0.1:%d", wp->port);
    assert_true(itest_file_has(wp->w.log, line));
}

static void start_worker(struct worker_on_port *wp, const char *what)
{
    start_worker_with(wp, what, NULL, NULL, NULL);
}

struct reply {
    long status;
    char *ctype;
    char *body;
    size_t len;
};

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    struct reply *r = ud;
    char *b = realloc(r->body, r->len + size * n + 1);
    assert_non_null(b);
    memcpy(b + r->len, p, size * n);
    r->body = b;
    r->len += size * n;
    r->body[r->len] = '\0';
    return size * n;
}

/* GET (or another method) http://127.0.0.1:port/path with libcurl. */
static struct reply http(int port, const char *method, const char *path)
{
    struct reply r = {0};
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    CURL *h = curl_easy_init();
    assert_non_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK)
        fail_msg("GET %s: %s", url, curl_easy_strerror(rc));
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    char *ct = NULL;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
    r.ctype = strdup(ct ? ct : "");
    curl_easy_cleanup(h);
    if (r.body == NULL)
        r.body = strdup("");
    return r;
}

static void reply_free(struct reply *r)
{
    free(r->body);
    free(r->ctype);
}

/* The value of the sample whose name and labels are exactly `key`; NAN when absent. */
static double sample(const char *body, const char *key)
{
    size_t k = strlen(key);
    for (const char *p = body; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        if (strncmp(p, key, k) == 0 && p[k] == ' ')
            return strtod(p + k + 1, NULL);
    }
    return NAN;
}

static double task_sample(const char *body, const char *name, const char *task)
{
    char key[256];
    snprintf(key, sizeof(key), "%s{task=\"%s\"}", name, task);
    return sample(body, key);
}

static double scrape_value(int port, const char *key)
{
    struct reply r = http(port, "GET", "/metrics");
    assert_int_equal(r.status, 200);
    double v = sample(r.body, key);
    reply_free(&r);
    return v;
}

/* Poll /metrics until `key` reads `want` (gauges settle after acks); returns the last value. */
static double wait_value(int port, const char *key, double want, double timeout_s)
{
    double deadline = itest_now() + timeout_s, v;
    while ((v = scrape_value(port, key)) != want && itest_now() < deadline)
        usleep(50000);
    return v;
}

/* Every sample's family has # HELP then # TYPE before it; values parse as numbers. */
static void assert_exposition_format(const char *body)
{
    char family[128] = "";
    bool help = false, type = false;
    int samples = 0;
    for (const char *p = body; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl); /* every line ends with \n */
        char line[512];
        snprintf(line, sizeof(line), "%.*s", (int)(nl - p), p);
        p = nl + 1;
        if (strncmp(line, "# HELP ", 7) == 0) {
            sscanf(line + 7, "%127s", family);
            help = true;
            type = false;
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128], kind[32];
            assert_int_equal(sscanf(line + 7, "%127s %31s", name, kind), 2);
            assert_string_equal(name, family);
            assert_true(help);
            assert_true(strcmp(kind, "counter") == 0 || strcmp(kind, "gauge") == 0 ||
                        strcmp(kind, "histogram") == 0);
            type = true;
            continue;
        }
        assert_true(type);
        assert_int_equal(strncmp(line, family, strlen(family)), 0);
        const char *rest = line + strlen(family);
        if (strncmp(rest, "_bucket", 7) == 0)
            rest += 7;
        else if (strncmp(rest, "_sum", 4) == 0)
            rest += 4;
        else if (strncmp(rest, "_count", 6) == 0)
            rest += 6;
        assert_true(*rest == '{' || *rest == ' ');
        const char *sp = strrchr(line, ' ');
        char *end = NULL;
        strtod(sp + 1, &end);
        assert_true(end != sp + 1 && *end == '\0');
        samples++;
    }
    assert_true(samples > 50);
}

/* Buckets of `task` in order: le increasing, counts non-decreasing, +Inf last and == _count. */
static void assert_histogram(const char *body, const char *task, double want_count)
{
    char prefix[200];
    int n = snprintf(prefix, sizeof(prefix), "taskd_task_runtime_seconds_bucket{task=\"%s\",le=\"",
                     task);
    double last_le = -1, last = 0;
    int buckets = 0;
    bool inf = false;
    for (const char *p = body; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        if (strncmp(p, prefix, (size_t)n) != 0)
            continue;
        assert_false(inf); /* nothing after +Inf */
        double le = strncmp(p + n, "+Inf", 4) == 0 ? INFINITY : strtod(p + n, NULL);
        inf = isinf(le);
        const char *sp = strchr(p + n, ' ');
        double v = strtod(sp + 1, NULL);
        assert_true(le > last_le);
        assert_true(v >= last);
        last_le = le;
        last = v;
        buckets++;
    }
    assert_true(inf);
    assert_true(buckets >= 10);
    assert_true(last == want_count);
    assert_true(task_sample(body, "taskd_task_runtime_seconds_count", task) == want_count);
    double sum = task_sample(body, "taskd_task_runtime_seconds_sum", task);
    assert_true(want_count == 0 ? sum == 0 : sum > 0);
}

static json_object *int_args(int a, int b)
{
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_int(a));
    json_object_array_add(args, json_object_new_int(b));
    return args;
}

/* Send `n` calls of `task` (args from mk, may be NULL) and wait for each; returns how many
 * ended in `want`. */
static int run_many(task_client *c, const char *task, int n, json_object *(*mk)(int),
                    const task_send_opts *o, task_state want)
{
    task_id *ids = calloc((size_t)n, sizeof(*ids));
    for (int i = 0; i < n; i++) {
        json_object *args = mk ? mk(i) : NULL;
        assert_int_equal(task_send(c, task, args, NULL, o, &ids[i]), 0);
        json_object_put(args);
    }
    int got = 0;
    for (int i = 0; i < n; i++) {
        task_state st;
        json_object *res = NULL;
        assert_int_equal(task_wait(c, ids[i].str, 20000, &st, &res), 0);
        got += st == want;
        json_object_put(res);
    }
    free(ids);
    return got;
}

static json_object *add_args(int i) { return int_args(i, 1); }

static json_object *fail_args(int i)
{
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_string(i % 2 ? "odd" : "even"));
    return args;
}

static json_object *flaky_args(int i)
{
    (void)i;
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_int(2)); /* fails twice, then succeeds */
    json_object_array_add(args, json_object_new_string("ConnectionError"));
    return args;
}

static json_object *sleep_args(int i)
{
    (void)i;
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_double(1.5));
    return args;
}

static void counts_histogram_and_gauges_match_the_runs(void **state)
{
    (void)state;
    struct worker_on_port wp;
    double t0 = wall_now();
    start_worker(&wp, "counts");
    task_client *c = itest_client(wp.q, NULL);
    assert_non_null(c);

    assert_int_equal(run_many(c, "test.add", 50, add_args, NULL, TASK_STATE_SUCCESS), 50);
    assert_int_equal(run_many(c, "test.fail", 5, fail_args, NULL, TASK_STATE_FAILURE), 5);
    assert_int_equal(run_many(c, "test.flaky", 1, flaky_args, NULL, TASK_STATE_SUCCESS), 1);
    /* Held for its eta (0.5 s), expired by then: REVOKED without running. */
    task_send_opts late = {.countdown_s = 0.5, .expires_s = 0.1};
    assert_int_equal(run_many(c, "test.echo", 1, NULL, &late, TASK_STATE_REVOKED), 1);
    /* Nobody registers it: quarantined, the caller gets FAILURE (NotRegistered). */
    assert_int_equal(run_many(c, "test.no_such_task", 1, NULL, NULL, TASK_STATE_FAILURE), 1);

    /* Acks follow the results' confirms: wait for the last one before reading gauges. */
    assert_true(wait_value(wp.port, "taskd_prefetch_in_use", 0, 5) == 0);
    struct reply r = http(wp.port, "GET", "/metrics");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert_exposition_format(r.body);
    const char *b = r.body;

    assert_true(task_sample(b, "taskd_tasks_received_total", "test.add") == 50);
    assert_true(task_sample(b, "taskd_tasks_succeeded_total", "test.add") == 50);
    assert_true(task_sample(b, "taskd_tasks_failed_total", "test.add") == 0);
    assert_true(task_sample(b, "taskd_tasks_retried_total", "test.add") == 0);
    assert_true(task_sample(b, "taskd_tasks_received_total", "test.fail") == 5);
    assert_true(task_sample(b, "taskd_tasks_failed_total", "test.fail") == 5);
    assert_true(task_sample(b, "taskd_tasks_succeeded_total", "test.fail") == 0);
    /* flaky: three deliveries (the first and two retries), two retried, one success. */
    assert_true(task_sample(b, "taskd_tasks_received_total", "test.flaky") == 3);
    assert_true(task_sample(b, "taskd_tasks_retried_total", "test.flaky") == 2);
    assert_true(task_sample(b, "taskd_tasks_succeeded_total", "test.flaky") == 1);
    assert_true(task_sample(b, "taskd_tasks_failed_total", "test.flaky") == 0);
    assert_true(task_sample(b, "taskd_tasks_revoked_total", "test.echo") == 1);
    assert_true(task_sample(b, "taskd_tasks_received_total", "test.echo") == 0);
    assert_true(task_sample(b, "taskd_tasks_received_total", "test.sleep") == 0); /* zero series */
    assert_true(sample(b, "taskd_tasks_rejected_total{reason=\"unknown-task\"}") == 1);
    assert_true(sample(b, "taskd_tasks_rejected_total{reason=\"not-json\"}") == 0);
    assert_null(strstr(b, "test.no_such_task")); /* unknown names never become labels */

    assert_histogram(b, "test.add", 50);
    assert_histogram(b, "test.fail", 5);
    assert_histogram(b, "test.flaky", 3);
    assert_histogram(b, "test.echo", 0);

    assert_true(sample(b, "taskd_slots") == PROCS * THREADS);
    assert_true(sample(b, "taskd_busy_slots") == 0);
    assert_true(sample(b, "taskd_children") == PROCS);
    /* slots x worker.prefetch_multiplier (4) + the window's confirm part: worker.confirm_window
     * doubled while the bursts above starved slots (window.h), at most 512. */
    int confirm = (int)sample(b, "taskd_prefetch_limit") - PROCS * THREADS * 4;
    assert_true(confirm >= WINDOW && confirm <= 512 && confirm % WINDOW == 0);
    assert_true(((confirm / WINDOW) & (confirm / WINDOW - 1)) == 0);
    assert_true(sample(b, "taskd_backlog") == 0);
    assert_true(sample(b, "taskd_broker_connected") == 1);
    double start = sample(b, "process_start_time_seconds");
    assert_true(start >= t0 - 1 && start <= wall_now());
    reply_free(&r);

    /* Busy slots count running tasks: 3 sleepers on 4 slots. */
    task_id ids[3];
    for (int i = 0; i < 3; i++) {
        json_object *a = sleep_args(i);
        assert_int_equal(task_send(c, "test.sleep", a, NULL, NULL, &ids[i]), 0);
        json_object_put(a);
    }
    assert_true(wait_value(wp.port, "taskd_busy_slots", 3, 5) == 3);
    assert_true(scrape_value(wp.port, "taskd_prefetch_in_use") == 3);
    for (int i = 0; i < 3; i++) {
        task_state st;
        json_object *res = NULL;
        assert_int_equal(task_wait(c, ids[i].str, 10000, &st, &res), 0);
        assert_int_equal(st, TASK_STATE_SUCCESS);
        json_object_put(res);
    }
    assert_true(wait_value(wp.port, "taskd_busy_slots", 0, 5) == 0);
    assert_true(wait_value(wp.port, "taskd_prefetch_in_use", 0, 5) == 0);

    task_client_free(c);
    assert_int_equal(itest_worker_stop(&wp.w, SIGTERM, 15), 0);
}

/* The window's confirm part (taskd/window.h) grows under a burst of short tasks, whose results
 * wait for confirms with slots idle, and nothing is lost or run twice while the consumers are
 * replaced to apply it; it halves again after a while at low use; long tasks do not grow it. */
static void window_follows_what_waits_for_confirms(void **state)
{
    (void)state;
    enum { BURST = 3000 };
    struct worker_on_port wp;
    char q[96];
    new_queue(q, sizeof(q), "window");
    task_client *c = itest_client(q, NULL);
    assert_non_null(c);
    /* A backlog queued before the worker starts: drained as fast as it goes. */
    static task_id ids[BURST];
    double t0 = itest_now();
    for (int i = 0; i < BURST; i++) {
        json_object *a = json_object_new_array();
        json_object_array_add(a, json_object_new_int(i));
        json_object_array_add(a, json_object_new_int(1));
        assert_int_equal(task_send(c, "test.add", a, NULL, NULL, &ids[i]), 0);
        json_object_put(a);
    }
    double t1 = itest_now();
    /* A window of one beyond the slots (prefetch 4 + 1): finished tasks waiting for confirms
     * fill it while slots idle, however fast this machine drains the backlog. */
    start_worker_with(&wp, "window", q, "1", "1");
    int base = PROCS * THREADS * 1 + 1;
    for (int i = 0; i < BURST; i++) {
        task_state st;
        json_object *res = NULL;
        assert_int_equal(task_wait(c, ids[i].str, 60000, &st, &res), 0);
        assert_int_equal(st, TASK_STATE_SUCCESS);
        assert_int_equal(json_object_get_int(res), i + 1);
        json_object_put(res);
    }
    fprintf(stderr, "window: %d sent in %.2f s, run in %.2f s\n", BURST, t1 - t0,
            itest_now() - t1);
    assert_true(itest_file_count(wp.w.log, "event=window_resized") >= 1);
    double grown = scrape_value(wp.port, "taskd_prefetch_limit");
    assert_true(grown > base);
    /* Every delivery acked, on the old consumers and the new ones; none ran twice. */
    assert_true(wait_value(wp.port, "taskd_prefetch_in_use", 0, 5) == 0);
    assert_true(scrape_value(wp.port, "taskd_tasks_succeeded_total{task=\"test.add\"}") == BURST);
    /* Idle: it halves after worker-side WINDOW_SHRINK_AFTER_S (10 s) at low use. */
    double deadline = itest_now() + 25;
    while (scrape_value(wp.port, "taskd_prefetch_limit") >= grown && itest_now() < deadline)
        usleep(200000);
    assert_true(scrape_value(wp.port, "taskd_prefetch_limit") < grown);
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&wp.w, SIGTERM, 15), 0);
}

/* Long tasks keep the slots busy: the window never starves them and does not grow. */
static void long_tasks_keep_the_window(void **state)
{
    (void)state;
    enum { N = 3 * PROCS * THREADS };
    struct worker_on_port wp;
    start_worker(&wp, "window_long");
    task_client *c = itest_client(wp.q, NULL);
    assert_non_null(c);
    task_id slow[N];
    for (int i = 0; i < N; i++) {
        json_object *a = json_object_new_array();
        json_object_array_add(a, json_object_new_double(0.3));
        assert_int_equal(task_send(c, "test.sleep", a, NULL, NULL, &slow[i]), 0);
        json_object_put(a);
    }
    for (int i = 0; i < N; i++) {
        task_state st;
        assert_int_equal(task_wait(c, slow[i].str, 15000, &st, NULL), 0);
        assert_int_equal(st, TASK_STATE_SUCCESS);
    }
    assert_int_equal(itest_file_count(wp.w.log, "event=window_resized"), 0);
    assert_true(scrape_value(wp.port, "taskd_prefetch_limit") == PROCS * THREADS * 4 + WINDOW);
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&wp.w, SIGTERM, 15), 0);
}

static void other_paths_and_methods_are_refused(void **state)
{
    (void)state;
    struct worker_on_port wp;
    start_worker(&wp, "paths");
    struct reply r = http(wp.port, "GET", "/");
    assert_int_equal(r.status, 404);
    reply_free(&r);
    r = http(wp.port, "GET", "/metricsx");
    assert_int_equal(r.status, 404);
    reply_free(&r);
    r = http(wp.port, "POST", "/metrics");
    assert_int_equal(r.status, 405);
    reply_free(&r);
    r = http(wp.port, "GET", "/metrics?name[]=taskd_slots"); /* a query string is ignored */
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\ntaskd_slots 4\n"));
    reply_free(&r);
    assert_int_equal(itest_worker_stop(&wp.w, SIGTERM, 15), 0);
}

/* Run taskd to completion (it must not start); returns its exit status, stderr in `log`. */
static int run_taskd_expecting_exit(const char *queue, const char *metrics, const char *log)
{
    char taskd[512], module[512];
    snprintf(taskd, sizeof(taskd), "%s/taskd/taskd", itest_build_root());
    snprintf(module, sizeof(module), "%s/tests/tasks/libtesttasks.so", itest_build_root());
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        execl(taskd, taskd, "--broker", itest_broker(), "-Q", queue, "--module", module,
              "--metrics", metrics, (char *)NULL);
        _exit(127);
    }
    double deadline = itest_now() + 10;
    int st;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (itest_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("taskd with a taken metrics port kept running");
        }
        usleep(10000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void second_taskd_on_the_same_port_fails_at_start(void **state)
{
    (void)state;
    struct worker_on_port wp;
    start_worker(&wp, "taken");
    char port[16], log[128];
    snprintf(port, sizeof(port), "%d", wp.port);
    snprintf(log, sizeof(log), "/tmp/itest-metrics-%d-taken.log", (int)getpid());
    double t0 = itest_now();
    int rc = run_taskd_expecting_exit(wp.q, port, log);
    double took = itest_now() - t0;
    assert_int_equal(rc, 2);
    assert_true(took < 3);
    /* One error line, naming the address and the reason; it never reached the broker. */
    assert_int_equal(itest_file_count(log, "level=error"), 1);
    assert_int_equal(itest_file_count(log, "event=metrics_listen_failed"), 1);
    char needle[64];
    snprintf(needle, sizeof(needle), "listen=%d", wp.port);
    assert_int_equal(itest_file_count(log, needle), 1);
    assert_int_equal(itest_file_count(log, "Address already in use"), 1);
    assert_int_equal(itest_file_count(log, "event=broker_connected"), 0);
    fprintf(stderr, "second taskd on port %d exited %d after %.3f s\n", wp.port, rc, took);

    /* A malformed address is a configuration error too. */
    assert_int_equal(run_taskd_expecting_exit(wp.q, "localhost:http", log), 2);
    assert_int_equal(itest_file_count(log, "expected [HOST:]PORT"), 1);

    /* The first worker still serves. */
    assert_true(scrape_value(wp.port, "taskd_slots") == PROCS * THREADS);
    assert_true(itest_worker_alive(&wp.w));
    unlink(log);
    assert_int_equal(itest_worker_stop(&wp.w, SIGTERM, 15), 0);
}

static int tcp_connect(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    if (rcvbuf > 0) /* before connect, so the window stays small */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Seconds until the server closes `fd` (reads and discards what it sends); -1 past timeout. */
static double closed_within(int fd, double timeout_s, char *first, size_t first_size)
{
    double t0 = itest_now();
    size_t got = 0;
    while (itest_now() - t0 < timeout_s) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        char buf[4096];
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r <= 0)
            return itest_now() - t0;
        if (first != NULL && got + 1 < first_size) {
            size_t k = (size_t)r < first_size - got - 1 ? (size_t)r : first_size - got - 1;
            memcpy(first + got, buf, k);
            got += k;
            first[got] = '\0';
        }
    }
    return -1;
}

static void stalled_clients_do_not_hold_up_tasks(void **state)
{
    (void)state;
    struct worker_on_port wp;
    start_worker(&wp, "stall");
    task_client *c = itest_client(wp.q, NULL);
    assert_non_null(c);
    /* Baseline, without stalled clients. */
    double t0 = itest_now();
    assert_int_equal(run_many(c, "test.add", 20, add_args, NULL, TASK_STATE_SUCCESS), 20);
    double base = itest_now() - t0;

    /* Half a request, junk, one that asks for /metrics with a tiny receive window and never
     * reads, then silent connections, more than the server keeps (the extra ones are closed
     * at once). */
    int half = tcp_connect(wp.port, 0);
    assert_int_equal(send(half, "GET /metr", 9, 0), 9);
    int junk = tcp_connect(wp.port, 0);
    assert_int_equal(send(junk, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, 0), 11);
    int sink = tcp_connect(wp.port, 1024);
    const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(send(sink, req, strlen(req), 0), (ssize_t)strlen(req));
    usleep(100000); /* these three are accepted before the silent ones */
    int silent[10];
    for (int i = 0; i < 10; i++)
        silent[i] = tcp_connect(wp.port, 0);
    usleep(100000);

    t0 = itest_now();
    assert_int_equal(run_many(c, "test.add", 20, add_args, NULL, TASK_STATE_SUCCESS), 20);
    double stalled = itest_now() - t0;
    fprintf(stderr, "20 test.add: %.3f s alone, %.3f s with 13 stalled metrics clients\n", base,
            stalled);
    assert_true(stalled < 2.0);

    /* Junk is answered 400 at once and closed. */
    char first[256] = "";
    double t_junk = closed_within(junk, 1.0, first, sizeof(first));
    assert_true(t_junk >= 0);
    assert_int_equal(strncmp(first, "HTTP/1.1 400 ", 13), 0);
    /* The silent ones and the half request are dropped after the 2 s read deadline. */
    double t_half = closed_within(half, 4.0, NULL, 0);
    assert_true(t_half >= 0);
    for (int i = 0; i < 10; i++) {
        assert_true(closed_within(silent[i], 4.0, NULL, 0) >= 0);
        close(silent[i]);
    }
    /* The client that never reads is closed too (its whole answer fits the loopback socket
     * buffers, so here it ends at the linger deadline; test_metrics_http covers an answer
     * that does not fit and the write deadline). Tasks ran meanwhile. */
    assert_int_equal(run_many(c, "test.add", 5, add_args, NULL, TASK_STATE_SUCCESS), 5);
    double t_sink = closed_within(sink, 7.0, NULL, 0);
    assert_true(t_sink >= 0);
    fprintf(stderr, "junk closed after %.3f s, half request after %.3f s\n", t_junk, t_half);
    close(half);
    close(junk);
    close(sink);
    assert_true(itest_file_has(wp.w.log, "reason=timeout state=read"));

    /* And the endpoint serves again, with every run counted. */
    assert_true(scrape_value(wp.port, "taskd_tasks_succeeded_total{task=\"test.add\"}") == 45);
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&wp.w, SIGTERM, 15), 0);
}

int main(void)
{
    itest_broker();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_histogram_and_gauges_match_the_runs),
        cmocka_unit_test(window_follows_what_waits_for_confirms),
        cmocka_unit_test(long_tasks_keep_the_window),
        cmocka_unit_test(other_paths_and_methods_are_refused),
        cmocka_unit_test(second_taskd_on_the_same_port_fails_at_start),
        cmocka_unit_test(stalled_clients_do_not_hold_up_tasks),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
