/*
 * test_matrix.c - the task-lifecycle matrix (issue 14) driven by libtask's public API, as a C
 * producer writes it: {no delay, countdown 2 s, eta 2 s ahead, a retry first} x {plain, retry,
 * link, link_error, chain, group, chord} x {the default queue `celery`, `q2` named per call
 * (task_send_opts.queue), `q4` chosen by the client's queues.routes} x worker {-c 1 --threads 1,
 * -c 2 --threads 4}. Callbacks carry no task id. (libtask publishes through the default
 * exchange only, so the direct-exchange column of the Python matrix, test_matrix.py, has no
 * libtask counterpart.)
 *
 * All cells of a worker configuration are sent at once, then waited for (task_wait). Each must
 * end in its expected state and result; each link / link_error / chain / chord callback must run
 * exactly once (counted from the worker's task events, taskd -E, read by `taskctl events
 * --json`), with the finished task as its parent; countdown/eta tasks must not start early; and
 * afterwards no task message waits anywhere and the broker holds no queue the test did not
 * expect (management API: no `0.0.0...1.celery`).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <task/canvas.h>
#include <task/client.h>
#include "itest.h"

#define WAIT_S 30.0
#define CALLBACK_WAIT_S 10.0
#define NMEM 3

enum { D_NONE, D_COUNTDOWN, D_ETA, D_RETRY, ND };
enum { S_PLAIN, S_RETRY, S_LINK, S_LINK_ERROR, S_CHAIN, S_GROUP, S_CHORD, NS };
enum { R_DEFAULT, R_NAMED, R_ROUTED, NR };
static const char *dname[] = {"none", "countdown", "eta", "retry"};
static const char *sname[] = {"plain", "retry", "link", "link_error", "chain", "group", "chord"};
static const char *rname[] = {"celery", "q2", "q4-routed"};

struct cell {
    char name[96];
    int d, s, r;
    char token[40];
    task_id wait_id;          /* plain, retry, link(_error) parent, chain's last, chord callback */
    task_id ids[NMEM];        /* group / chord members */
    task_id first_id;         /* the task the delay applies to (chain: its first step) */
    bool sent;
    bool failure;             /* expected FAILURE (exc_type below) rather than SUCCESS */
    json_object *expect;      /* SUCCESS value; group: array of member values */
    const char *exc_type;
    const char *cb_kind;      /* "link", "link_error", "chain", "chord" or NULL */
    json_object *cb_args;     /* the callback's expected args (link, link_error) */
    double sent_at;
    char problems[2048];
};

static struct cell cells[ND * NS * NR];
static task_client *cdef, *croute;
static struct itest_worker worker;
static pid_t events_pid;
static char events_log[256];
static char *queues_before;

static void problem(struct cell *c, const char *fmt, ...)
{
    size_t n = strlen(c->problems);
    if (n > 0 && n + 2 < sizeof(c->problems)) {
        strcat(c->problems, "; ");
        n += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->problems + n, sizeof(c->problems) - n, fmt, ap);
    va_end(ap);
}

static json_object *jparse(const char *s)
{
    return json_tokener_parse(s);
}

static json_object *sig(const char *name, const char *args_json)
{
    json_object *a = jparse(args_json);
    json_object *s = task_sig_new(name, a, NULL, NULL, false);
    json_object_put(a);
    return s;
}

/* The delay row's work: test.add(i, 100) -> i + 100, or (retry row) test.retry(i) -> i. */
static json_object *work(int d, int i, int *value)
{
    char a[32];
    if (d == D_RETRY) {
        snprintf(a, sizeof(a), "[%d]", i);
        *value = i;
        return sig("test.retry", a);
    }
    snprintf(a, sizeof(a), "[%d, 100]", i);
    *value = i + 100;
    return sig("test.add", a);
}

static const char *sig_name(json_object *s)
{
    return json_object_get_string(json_object_object_get(s, "task"));
}

static json_object *sig_args(json_object *s)
{
    return json_object_object_get(s, "args");
}

static void send_cell(struct cell *c)
{
    task_client *cl = c->r == R_ROUTED ? croute : cdef;
    task_send_opts o = {0};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (c->d == D_COUNTDOWN)
        o.countdown_s = 2;
    else if (c->d == D_ETA)
        o.eta = now + 2;
    if (c->r == R_NAMED)
        o.queue = "q2";
    c->sent_at = now;
    char tokargs[64];
    snprintf(tokargs, sizeof(tokargs), "[\"%s\"]", c->token);
    int rc = 0, v;
    switch (c->s) {
    case S_PLAIN: {
        json_object *w = work(c->d, 1, &v);
        c->expect = json_object_new_int(v);
        rc = task_send(cl, sig_name(w), sig_args(w), NULL, &o, &c->wait_id);
        c->first_id = c->wait_id;
        json_object_put(w);
        break;
    }
    case S_RETRY: {
        json_object *w = c->d == D_RETRY ? sig("test.flaky", "[2, \"ConnectionError\"]")
                                         : sig("test.retry", "[2]");
        c->expect = json_object_new_int(2);
        rc = task_send(cl, sig_name(w), sig_args(w), NULL, &o, &c->wait_id);
        c->first_id = c->wait_id;
        json_object_put(w);
        break;
    }
    case S_LINK: {
        json_object *w = work(c->d, 2, &v);
        c->expect = json_object_new_int(v);
        json_object *links = json_object_new_array();
        json_object_array_add(links, sig("test.echo", tokargs));
        o.link = links;
        rc = task_send(cl, sig_name(w), sig_args(w), NULL, &o, &c->wait_id);
        c->first_id = c->wait_id;
        c->cb_kind = "link";
        c->cb_args = json_object_new_array();
        json_object_array_add(c->cb_args, json_object_new_int(v));
        json_object_array_add(c->cb_args, json_object_new_string(c->token));
        json_object_put(links);
        json_object_put(w);
        break;
    }
    case S_LINK_ERROR: {
        json_object *w = c->d == D_RETRY ? sig("test.flaky", "[9, \"TimeoutError\"]")
                                         : sig("test.fail", tokargs);
        c->failure = true;
        c->exc_type = c->d == D_RETRY ? "TimeoutError" : "ValueError";
        json_object *errs = json_object_new_array();
        json_object_array_add(errs, sig("test.echo", tokargs));
        o.link_error = errs;
        rc = task_send(cl, sig_name(w), sig_args(w), NULL, &o, &c->wait_id);
        c->first_id = c->wait_id;
        c->cb_kind = "link_error";
        c->cb_args = json_object_new_array();
        json_object_array_add(c->cb_args, json_object_new_string(c->wait_id.str));
        json_object_array_add(c->cb_args, json_object_new_string(c->token));
        json_object_put(errs);
        json_object_put(w);
        break;
    }
    case S_CHAIN: {
        json_object *steps[3] = {work(c->d, 3, &v), sig("test.add", "[10]"),
                                 sig("test.echo", tokargs)};
        char exp[128];
        snprintf(exp, sizeof(exp), "[[%d, \"%s\"], {}]", v + 10, c->token);
        c->expect = jparse(exp);
        rc = task_send_chain(cl, steps, 3, &o, &c->wait_id);
        c->cb_kind = "chain";
        for (int i = 0; i < 3; i++)
            json_object_put(steps[i]);
        break;
    }
    case S_GROUP:
    case S_CHORD: {
        json_object *m[NMEM];
        int sum = 0;
        c->expect = json_object_new_array();
        for (int i = 0; i < NMEM; i++) {
            m[i] = work(c->d, i + 1, &v);
            sum += v;
            json_object_array_add(c->expect, json_object_new_int(v));
        }
        if (c->s == S_GROUP) {
            task_id g;
            rc = task_send_group(cl, m, NMEM, &o, &g, c->ids);
        } else {
            json_object_put(c->expect);
            c->expect = json_object_new_int(sum);
            json_object *cb = task_sig_new("test.xsum", NULL, NULL, NULL, false);
            rc = task_send_chord(cl, m, NMEM, cb, &o, &c->wait_id, c->ids);
            c->cb_kind = "chord";
            json_object_put(cb);
        }
        for (int i = 0; i < NMEM; i++)
            json_object_put(m[i]);
        break;
    }
    }
    if (rc != 0)
        problem(c, "send failed: %s", task_client_errmsg(cl));
    c->sent = rc == 0;
}

static const char *exc_type_of(json_object *res)
{
    json_object *v;
    return json_object_object_get_ex(res, "exc_type", &v) ? json_object_get_string(v) : "?";
}

static void wait_one(struct cell *c, task_client *cl, const char *id, json_object *expect,
                     double deadline)
{
    task_state st = TASK_STATE_PENDING;
    json_object *res = NULL;
    int left = (int)((deadline - itest_now()) * 1000);
    int rc = task_wait(cl, id, left > 100 ? left : 100, &st, &res);
    if (rc == TASK_ETIMEDOUT) {
        task_state now = TASK_STATE_PENDING;
        (void)task_client_poll(cl, id, &now, NULL);
        problem(c, "%s: no final state within %.0f s (last seen %s)", id, WAIT_S,
                task_state_name(now));
        return;
    }
    if (rc != 0) {
        problem(c, "wait %s: %s", id, task_client_errmsg(cl));
        return;
    }
    if (c->failure) {
        if (st != TASK_STATE_FAILURE || strcmp(exc_type_of(res), c->exc_type) != 0)
            problem(c, "ended %s %s, expected FAILURE %s", task_state_name(st),
                    json_object_to_json_string(res), c->exc_type);
    } else if (st != TASK_STATE_SUCCESS || !json_object_equal(res, expect)) {
        problem(c, "ended %s %s, expected SUCCESS %s", task_state_name(st),
                json_object_to_json_string(res), json_object_to_json_string(expect));
    }
    json_object_put(res);
}

static void wait_cell(struct cell *c, double deadline)
{
    if (!c->sent)
        return;
    task_client *cl = c->r == R_ROUTED ? croute : cdef;
    if (c->s == S_GROUP) {
        for (int i = 0; i < NMEM; i++)
            wait_one(c, cl, c->ids[i].str, json_object_array_get_idx(c->expect, i), deadline);
    } else {
        wait_one(c, cl, c->wait_id.str, c->expect, deadline);
    }
}

/* ---- task events, read from `taskctl --json events` ---------------------------------------- */

struct evlist {
    json_object **v;
    int n;
};

static void events_read(struct evlist *l)
{
    l->v = NULL;
    l->n = 0;
    FILE *f = fopen(events_log, "r");
    char *line = NULL;
    size_t cap = 0;
    int size = 0;
    while (f != NULL && getline(&line, &cap, f) > 0) {
        json_object *e = json_tokener_parse(line);
        if (e == NULL)
            continue;
        if (l->n == size) {
            size = size ? 2 * size : 1024;
            l->v = realloc(l->v, (size_t)size * sizeof(*l->v));
        }
        l->v[l->n++] = e;
    }
    free(line);
    if (f != NULL)
        fclose(f);
}

static void events_free(struct evlist *l)
{
    for (int i = 0; i < l->n; i++)
        json_object_put(l->v[i]);
    free(l->v);
}

static const char *ev_str(json_object *e, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(e, key, &v) && v != NULL ? json_object_get_string(v) : "";
}

static bool ev_is(json_object *e, const char *type)
{
    return strcmp(ev_str(e, "type"), type) == 0;
}

/* The ids of test.echo runs whose args carry `token` (task-received), up to `max`; the count
 * of task-received events (*received). */
static int echo_ids(const struct evlist *l, const char *token, char ids[][37], int max,
                    int *received)
{
    int n = 0;
    *received = 0;
    for (int i = 0; i < l->n; i++) {
        json_object *e = l->v[i];
        if (!ev_is(e, "task-received") || strcmp(ev_str(e, "name"), "test.echo") != 0 ||
            strstr(ev_str(e, "args"), token) == NULL)
            continue;
        (*received)++;
        bool known = false;
        for (int k = 0; k < n; k++)
            known |= strcmp(ids[k], ev_str(e, "uuid")) == 0;
        if (!known && n < max)
            snprintf(ids[n++], 37, "%s", ev_str(e, "uuid"));
    }
    return n;
}

static int count_events(const struct evlist *l, const char *type, const char *id,
                        json_object **last)
{
    int n = 0;
    for (int i = 0; i < l->n; i++)
        if (ev_is(l->v[i], type) && strcmp(ev_str(l->v[i], "uuid"), id) == 0) {
            n++;
            if (last != NULL)
                *last = l->v[i];
        }
    return n;
}

static bool callback_seen(const struct cell *c, const struct evlist *l)
{
    if (strcmp(c->cb_kind, "chain") == 0 || strcmp(c->cb_kind, "chord") == 0)
        return count_events(l, "task-received", c->wait_id.str, NULL) > 0;
    char ids[4][37];
    int received;
    return echo_ids(l, c->token, ids, 4, &received) > 0;
}

static void check_callback(struct cell *c, const struct evlist *l)
{
    if (c->cb_kind == NULL || !c->sent)
        return;
    const char *id = c->wait_id.str;
    char ids[8][37];
    int received = 0;
    if (strcmp(c->cb_kind, "link") == 0 || strcmp(c->cb_kind, "link_error") == 0) {
        int n = echo_ids(l, c->token, ids, 8, &received);
        if (n != 1) {
            problem(c, "%s callback ran %d times (distinct ids), expected 1", c->cb_kind, n);
            return;
        }
        id = ids[0];
    } else {
        received = count_events(l, "task-received", id, NULL);
    }
    json_object *rec = NULL, *ok = NULL;
    count_events(l, "task-received", id, &rec);
    int succeeded = count_events(l, "task-succeeded", id, &ok);
    if (received != 1 || succeeded != 1) {
        problem(c, "%s callback %s: received %d times, succeeded %d times, expected 1 and 1",
                c->cb_kind, id, received, succeeded);
        return;
    }
    if (c->cb_args == NULL)
        return; /* chain, chord: their value came through task_wait */
    if (strcmp(ev_str(rec, "parent_id"), c->wait_id.str) != 0)
        problem(c, "%s callback parent_id %s, expected %s", c->cb_kind, ev_str(rec, "parent_id"),
                c->wait_id.str);
    json_object *got = json_tokener_parse(ev_str(ok, "result"));
    json_object *want = json_object_new_array();
    json_object_array_add(want, json_object_get(c->cb_args));
    json_object_array_add(want, json_object_new_object());
    if (!json_object_equal(got, want))
        problem(c, "%s callback result %s, expected %s", c->cb_kind, ev_str(ok, "result"),
                json_object_to_json_string(want));
    json_object_put(got);
    json_object_put(want);
}

static void check_not_early(struct cell *c, const struct evlist *l)
{
    if (c->d != D_COUNTDOWN && c->d != D_ETA)
        return;
    int n = c->s == S_GROUP || c->s == S_CHORD ? NMEM : 1;
    for (int k = 0; k < n; k++) {
        const char *id = n == 1 ? c->first_id.str : c->ids[k].str;
        for (int i = 0; id[0] != '\0' && i < l->n; i++) {
            if (!ev_is(l->v[i], "task-started") || strcmp(ev_str(l->v[i], "uuid"), id) != 0)
                continue;
            double t = json_object_get_double(json_object_object_get(l->v[i], "timestamp"));
            if (t < c->sent_at + 1.9)
                problem(c, "%s started %.2f s after sending, before its 2 s delay", id,
                        t - c->sent_at);
            break;
        }
    }
}

/* ---- the broker: queue list (management API) and ready counts (passive declare) ---------- */

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

/* Every queue name on the node as "\nname\n...\n" (caller frees), or NULL without management. */
static char *mgmt_queue_names(void)
{
    const char *port = getenv("TASKD_RMQ_MGMT_PORT_1");
    if (port == NULL || port[0] == '\0')
        return NULL;
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%s/api/queues?columns=name", port);
    struct buf b = {0};
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_USERPWD, "guest:guest");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    json_object *arr = rc == CURLE_OK && b.p ? json_tokener_parse(b.p) : NULL;
    free(b.p);
    if (!json_object_is_type(arr, json_type_array)) {
        json_object_put(arr);
        return strdup("");
    }
    size_t cap = 2;
    for (size_t i = 0; i < json_object_array_length(arr); i++)
        cap += strlen(ev_str(json_object_array_get_idx(arr, i), "name")) + 1;
    char *out = calloc(1, cap);
    strcpy(out, "\n");
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        strcat(out, ev_str(json_object_array_get_idx(arr, i), "name"));
        strcat(out, "\n");
    }
    json_object_put(arr);
    return out;
}

static bool is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++)
        if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : strchr("0123456789abcdef", s[i]) == NULL)
            return false;
    return true;
}

/* Queues a run may leave: its task queues, taskd's own (but no chord barrier: each is deleted
 * once its callback is out), reply queues (uuids), pidbox and event queues. */
static bool expected_queue(const char *q)
{
    size_t n = strlen(q);
    return strcmp(q, "celery") == 0 || strcmp(q, "q2") == 0 || strcmp(q, "q4") == 0 ||
           (strncmp(q, "taskd.", 6) == 0 && strncmp(q, "taskd.chord.", 12) != 0) ||
           strncmp(q, "celeryev.", 9) == 0 ||
           (n > 7 && strcmp(q + n - 7, ".pidbox") == 0) || is_uuid(q);
}

/* Queues new since `before` that the test did not expect, as one line (caller frees). */
static char *stray_queues(const char *before)
{
    char *after = mgmt_queue_names();
    if (after == NULL)
        return strdup("");
    char *out = calloc(1, strlen(after) + 1);
    char *save = NULL;
    for (char *q = strtok_r(after, "\n", &save); q != NULL; q = strtok_r(NULL, "\n", &save)) {
        char key[600];
        snprintf(key, sizeof(key), "\n%s\n", q);
        if (strstr(before, key) == NULL && !expected_queue(q)) {
            strcat(out, q);
            strcat(out, " ");
        }
    }
    free(after);
    return out;
}

/* ---- the run --------------------------------------------------------------------------------- */

static long ready_sum(const char *queues)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "TASKD_MANAGEMENT_URL= %s/taskctl/taskctl --broker '%s' --json queues %s 2>/dev/null",
             itest_build_root(), itest_broker(), queues);
    FILE *p = popen(cmd, "r");
    static char out[65536];
    size_t n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
    out[n] = '\0';
    if (p != NULL)
        pclose(p);
    json_object *arr = json_tokener_parse(out);
    long sum = 0;
    for (size_t i = 0; json_object_is_type(arr, json_type_array) &&
                       i < json_object_array_length(arr); i++) {
        json_object *v = json_object_object_get(json_object_array_get_idx(arr, i), "ready");
        if (json_object_is_type(v, json_type_int))
            sum += (long)json_object_get_int64(v);
    }
    json_object_put(arr);
    return sum;
}

/* Messages parked in the delay cascade (other tests' long countdowns may sit there too). */
static long delayed_total(void)
{
    char list[1024] = "";
    for (int i = 0; i < 28; i++) {
        char q[32];
        snprintf(q, sizeof(q), " taskd.delay.%d", 100 + i);
        strcat(list, q);
    }
    return ready_sum(list);
}

static int start_events(void)
{
    snprintf(events_log, sizeof(events_log), "/tmp/itest-matrix-events-%d.jsonl", (int)getpid());
    unlink(events_log);
    char ctl[512];
    snprintf(ctl, sizeof(ctl), "%s/taskctl/taskctl", itest_build_root());
    events_pid = fork();
    if (events_pid < 0)
        return -1;
    if (events_pid == 0) {
        int fd = open(events_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        /* taskctl --json events does not flush per event into a file or pipe: line-buffer it
         * (stdbuf preloads a library: an ASan build of taskctl must not insist on coming first) */
        const char *asan = getenv("ASAN_OPTIONS");
        char opts[1024];
        snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", asan ? asan : "",
                 asan && asan[0] ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
        execlp("stdbuf", "stdbuf", "-oL", ctl, "--broker", itest_broker(), "--json", "events",
               (char *)NULL);
        _exit(127);
    }
    return 0;
}

static void stop_events(void)
{
    if (events_pid > 0) {
        kill(events_pid, SIGTERM);
        waitpid(events_pid, NULL, 0);
        events_pid = 0;
    }
}

static void run_config(const char *cfg, const char *c_arg, const char *threads)
{
    double t0 = itest_now();
    assert_int_equal(start_events(), 0);
    char host[128];
    snprintf(host, sizeof(host), "matrix-%s-%d@localhost", cfg, (int)getpid());
    const char *args[] = {"-c", c_arg, "--threads", threads, "-E", "--hostname", host, NULL};
    long dead_before = ready_sum("taskd.dead");
    assert_int_equal(itest_worker_start(&worker, "celery,q2,q4", NULL, args), 0);
    /* The events consumer is bound once it has seen this worker's first event. */
    double until = itest_now() + 15;
    char needle[160];
    snprintf(needle, sizeof(needle), "\"hostname\":\"%s\"", host);
    while (!itest_file_has(events_log, needle) && itest_now() < until)
        usleep(50000);
    assert_true(itest_file_has(events_log, needle));

    int n = 0;
    for (int d = 0; d < ND; d++)
        for (int s = 0; s < NS; s++)
            for (int r = 0; r < NR; r++) {
                struct cell *c = &cells[n++];
                memset(c, 0, sizeof(*c));
                c->d = d, c->s = s, c->r = r;
                snprintf(c->name, sizeof(c->name), "%s %s/%s/%s", cfg, dname[d], sname[s],
                         rname[r]);
                snprintf(c->token, sizeof(c->token), "tok-%s-%d-%03d", cfg, (int)getpid(), n);
            }
    long delayed_baseline = delayed_total();
    for (int i = 0; i < n; i++)
        send_cell(&cells[i]);
    double deadline = itest_now() + WAIT_S;
    for (int i = 0; i < n; i++)
        wait_cell(&cells[i], deadline);

    /* Callbacks: wait until each expected one was seen (or the deadline), then for quiet: no
     * message waiting in a task or delay queue and no new event for 0.5 s. */
    double cb_deadline = itest_now() + CALLBACK_WAIT_S;
    struct evlist l;
    for (;;) {
        events_read(&l);
        bool all = true;
        for (int i = 0; i < n && all; i++)
            if (cells[i].cb_kind != NULL && cells[i].sent)
                all = callback_seen(&cells[i], &l);
        events_free(&l);
        if (all || itest_now() > cb_deadline)
            break;
        usleep(100000);
    }
    double quiet_deadline = itest_now() + 10, last_change = itest_now();
    int last_n = -1;
    bool settled = false;
    while (itest_now() < quiet_deadline) {
        events_read(&l);
        int en = l.n;
        events_free(&l);
        if (en != last_n)
            last_n = en, last_change = itest_now();
        if (ready_sum("celery q2 q4") == 0 && delayed_total() <= delayed_baseline &&
            itest_now() - last_change >= 0.5) {
            settled = true;
            break;
        }
        usleep(100000);
    }
    events_read(&l);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        check_callback(&cells[i], &l);
        check_not_early(&cells[i], &l);
        if (cells[i].problems[0] != '\0') {
            failed++;
            printf("not ok - %s %s\n", cells[i].name, cells[i].problems);
        } else {
            printf("ok - %s\n", cells[i].name);
        }
        json_object_put(cells[i].expect);
        json_object_put(cells[i].cb_args);
    }
    events_free(&l);
    if (!settled) {
        failed++;
        printf("not ok - %s: task messages still waiting: %ld in celery/q2/q4, %ld in the delay "
               "cascade (%ld before)\n", cfg, ready_sum("celery q2 q4"), delayed_total(),
               delayed_baseline);
    }
    long dead = ready_sum("taskd.dead") - dead_before;
    if (dead != 0) {
        failed++;
        printf("not ok - %s: %ld messages quarantined in taskd.dead (the matrix sends no bad "
               "input); log %s\n", cfg, dead, worker.log);
    }
    bool alive = itest_worker_alive(&worker);
    int rc = itest_worker_stop(&worker, SIGTERM, 30);
    stop_events();
    if (!alive || rc != 0) {
        failed++;
        printf("not ok - %s: taskd alive until the end and exits 0 (alive %d, exit %d)\n", cfg,
               alive, rc);
    }
    if (queues_before != NULL) {
        char *stray = stray_queues(queues_before);
        if (stray[0] != '\0') {
            failed++;
            printf("not ok - %s: the broker holds unexpected queues: %s\n", cfg, stray);
        }
        free(stray);
    }
    printf("# %s: %d cells, %d problems, %.1f s; worker log %s\n", cfg, n, failed,
           itest_now() - t0, worker.log);
    fflush(stdout);
    assert_int_equal(failed, 0);
}

static void matrix_c1_threads1(void **state)
{
    (void)state;
    run_config("c1t1", "1", "1");
}

static void matrix_c2_threads4(void **state)
{
    (void)state;
    run_config("c2t4", "2", "4");
}

/* After each configuration, even one that failed an assertion: no worker or events reader
 * survives into the next one (it would take the next configuration's tasks). */
static int stop_all(void **state)
{
    (void)state;
    if (worker.pid > 0)
        itest_worker_stop(&worker, SIGKILL, 10);
    stop_events();
    return 0;
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    queues_before = mgmt_queue_names();
    if (queues_before == NULL) {
        fprintf(stderr, "no TASKD_RMQ_MGMT_PORT_1: the stray-queue checks are skipped\n");
        const char *req = getenv("TASKD_REQUIRE_MANAGEMENT");
        if (req != NULL && req[0] == '1')
            return -1;
    }
    /* Whatever an earlier test left in these queues is not ours to run (it could be bad input
     * for this worker, or pass for a callback run): start from empty queues. */
    const char *purge[] = {"celery", "q2", "q4"};
    for (int i = 0; i < 3; i++) {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "%s/taskctl/taskctl --broker '%s' purge %s --yes "
                 ">/dev/null 2>&1", itest_build_root(), itest_broker(), purge[i]);
        if (system(cmd) == -1)
            return -1;
    }
    cdef = itest_client("celery", NULL);
    const char *routes[] = {"queues.routes=test.* q4", NULL};
    croute = itest_client("celery", routes);
    return cdef != NULL && croute != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (worker.pid > 0)
        itest_worker_stop(&worker, SIGKILL, 10);
    stop_events();
    task_client_free(cdef);
    task_client_free(croute);
    free(queues_before);
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    itest_broker();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(matrix_c1_threads1, stop_all),
        cmocka_unit_test_teardown(matrix_c2_threads4, stop_all),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
