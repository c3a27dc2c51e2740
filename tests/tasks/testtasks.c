/*
 * testtasks.c - the test-task module (docs/architecture.md, "The test-task module"), loaded with
 * `taskd --module build/tests/tasks/libtesttasks.so`. Interop tests, benchmarks, fault tests and
 * the demo use these names and results; keep them stable. Wrong arity or argument types fail
 * with TypeError, as the Python function would.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <task/http.h>
#include <task/task.h>

static int nargs(json_object *args)
{
    return json_object_is_type(args, json_type_array) ? (int)json_object_array_length(args) : 0;
}

static json_object *arg(json_object *args, int i)
{
    return i < nargs(args) ? json_object_array_get_idx(args, (size_t)i) : NULL;
}

static bool is_int(json_object *o)
{
    return json_object_is_type(o, json_type_int);
}

static bool is_number(json_object *o)
{
    return is_int(o) || json_object_is_type(o, json_type_double);
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Sleeps `s` seconds in 10 ms steps; false (after task_fail) once the task is cancelled. */
static bool sleep_unless_cancelled(task_ctx *ctx, double s)
{
    while (s > 0) {
        if (task_cancelled(ctx)) {
            task_fail(ctx, "SoftTimeLimitExceeded", "cancelled with %.3f s left", s);
            return false;
        }
        double step = s < 0.01 ? s : 0.01;
        sleep_s(step);
        s -= step;
    }
    return true;
}

/* test.add(a, b) -> a + b: integers stay integers; a double on either side gives a double. */
static int add(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *a = arg(args, 0), *b = arg(args, 1);
    if (nargs(args) != 2 || !is_number(a) || !is_number(b))
        return task_fail(ctx, "TypeError", "add(a, b) takes two numbers");
    if (is_int(a) && is_int(b)) {
        int64_t sum;
        if (__builtin_add_overflow(json_object_get_int64(a), json_object_get_int64(b), &sum))
            return task_fail(ctx, "OverflowError", "add(a, b): the sum is out of 64-bit range");
        *result = json_object_new_int64(sum);
    } else {
        *result = json_object_new_double(json_object_get_double(a) + json_object_get_double(b));
    }
    return TASK_OK;
}
TASK(add, "test.add");

/* test.echo(*args, **kwargs) -> [args, kwargs] */
static int echo(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)ctx;
    *result = json_object_new_array();
    json_object_array_add(*result, args != NULL ? json_object_get(args) : json_object_new_array());
    json_object_array_add(*result,
                          kwargs != NULL ? json_object_get(kwargs) : json_object_new_object());
    return TASK_OK;
}
TASK(echo, "test.echo");

/* test.xsum(numbers) -> their sum (a chord callback: the header's results come as one list). */
static int xsum(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *list = arg(args, 0);
    if (nargs(args) != 1 || !json_object_is_type(list, json_type_array))
        return task_fail(ctx, "TypeError", "xsum(numbers) takes one list");
    int64_t sum = 0;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *v = json_object_array_get_idx(list, i);
        if (!is_int(v))
            return task_fail(ctx, "TypeError", "xsum: every element must be an integer");
        sum += json_object_get_int64(v);
    }
    *result = json_object_new_int64(sum);
    return TASK_OK;
}
TASK(xsum, "test.xsum");

/* test.sleep(seconds) -> seconds; fails with SoftTimeLimitExceeded as soon as it is cancelled
 * (soft time limit, revoke, cold shutdown: the task cannot tell which). */
static int sleep_task(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *a = arg(args, 0);
    if (nargs(args) != 1 || !is_number(a) || json_object_get_double(a) < 0)
        return task_fail(ctx, "TypeError", "sleep(seconds) takes one non-negative number");
    if (!sleep_unless_cancelled(ctx, json_object_get_double(a)))
        return TASK_FAIL;
    *result = json_object_get(a);
    return TASK_OK;
}
TASK(sleep_task, "test.sleep");

/* test.fail(message) -> FAILURE ValueError(message) */
static int fail_task(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    (void)result;
    json_object *m = arg(args, 0);
    if (nargs(args) != 1 || !json_object_is_type(m, json_type_string))
        return task_fail(ctx, "TypeError", "fail(message) takes one string");
    return task_fail(ctx, "ValueError", "%s", json_object_get_string(m));
}
TASK(fail_task, "test.fail");

/* test.segv() -> crashes the process that runs it, whatever its signal setup. */
static int segv(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)args, (void)kwargs, (void)result;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGSEGV);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    raise(SIGSEGV);
    /* still here: SIGSEGV is caught or ignored; a real fault cannot be ignored */
    volatile int *volatile p = NULL;
    *p = 1;
    abort();
    return task_fail(ctx, "RuntimeError", "survived SIGSEGV");
}
TASK(segv, "test.segv");

/* test.http_get(url) -> HTTP status code, through the libcurl helper. */
static int http_get(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *u = arg(args, 0);
    if (nargs(args) != 1 || !json_object_is_type(u, json_type_string))
        return task_fail(ctx, "TypeError", "http_get(url) takes one string");
    const char *url = json_object_get_string(u);
    task_http_response resp;
    int rc = task_http_get(ctx, url, NULL, &resp);
    if (rc == TASK_ECANCELLED)
        return task_fail(ctx, "SoftTimeLimitExceeded", "GET %s: cancelled", url);
    if (rc == TASK_ETIMEDOUT)
        return task_fail(ctx, "TimeoutError", "GET %s: timed out", url);
    if (rc != 0)
        return task_fail(ctx, "IOError", "GET %s: %s", url, task_strerror(rc));
    *result = json_object_new_int((int)resp.status);
    task_http_response_free(&resp);
    return TASK_OK;
}
TASK(http_get, "test.http_get");

/* test.http_hit(base_url) -> HTTP status code: GETs base_url/<its own task id>, so the local
 * server counts the runs of each id (the beat tests: one run per tick). */
static int http_hit(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *u = arg(args, 0);
    if (nargs(args) != 1 || !json_object_is_type(u, json_type_string))
        return task_fail(ctx, "TypeError", "http_hit(base_url) takes one string");
    char url[1024];
    snprintf(url, sizeof(url), "%s/%s", json_object_get_string(u), task_ctx_id(ctx));
    task_http_response resp;
    int rc = task_http_get(ctx, url, NULL, &resp);
    if (rc != 0)
        return task_fail(ctx, "IOError", "GET %s: %s", url, task_strerror(rc));
    *result = json_object_new_int((int)resp.status);
    task_http_response_free(&resp);
    return TASK_OK;
}
TASK(http_hit, "test.http_hit");

/* test.http_wait(url, timeout_s) -> HTTP status code: a GET allowed to take timeout_s (the
 * helper's default is 60 s), for the long-task tests: the local server counts the calls. */
static int http_wait(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *u = arg(args, 0), *t = arg(args, 1);
    if (nargs(args) != 2 || !json_object_is_type(u, json_type_string) || !is_number(t) ||
        json_object_get_double(t) <= 0)
        return task_fail(ctx, "TypeError", "http_wait(url, timeout_s) takes a string and a "
                         "number > 0");
    const char *url = json_object_get_string(u);
    task_http_opts o = {.timeout_s = json_object_get_double(t)};
    task_http_response resp;
    int rc = task_http_get(ctx, url, &o, &resp);
    if (rc != 0)
        return task_fail(ctx, rc == TASK_ETIMEDOUT ? "TimeoutError" : "IOError", "GET %s: %s",
                         url, task_strerror(rc));
    *result = json_object_new_int((int)resp.status);
    task_http_response_free(&resp);
    return TASK_OK;
}
TASK(http_wait, "test.http_wait");

/* test.progress(steps[, delay_s]) -> steps; PROGRESS {current, total} after each step, which
 * takes delay_s (default 0.05). */
static int progress(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *s = arg(args, 0), *d = arg(args, 1);
    int n = nargs(args);
    if (n < 1 || n > 2 || !is_int(s) || json_object_get_int64(s) < 0 ||
        json_object_get_int64(s) > INT32_MAX || (n == 2 && !is_number(d)) ||
        (n == 2 && json_object_get_double(d) < 0))
        return task_fail(ctx, "TypeError",
                         "progress(steps[, delay]) takes a count >= 0 and a delay >= 0");
    int steps = json_object_get_int(s);
    double delay = n == 2 ? json_object_get_double(d) : 0.05;
    for (int i = 1; i <= steps; i++) {
        if (!sleep_unless_cancelled(ctx, delay))
            return TASK_FAIL;
        json_object *meta = json_object_new_object();
        json_object_object_add(meta, "current", json_object_new_int(i));
        json_object_object_add(meta, "total", json_object_new_int(steps));
        /* a state that could not be published is not the task's failure: it goes on */
        (void)task_progress(ctx, meta);
        json_object_put(meta);
    }
    *result = json_object_new_int(steps);
    return TASK_OK;
}
TASK(progress, "test.progress");

/* test.retry(times) -> asks for a retry (0.1 s) `times` times, then succeeds with the count. */
static int retry(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *t = arg(args, 0);
    if (nargs(args) != 1 || !is_int(t) || json_object_get_int64(t) < 0)
        return task_fail(ctx, "TypeError", "retry(times) takes an integer >= 0");
    if (task_ctx_retries(ctx) < json_object_get_int64(t))
        return task_retry_in(ctx, 0.1);
    *result = json_object_new_int(task_ctx_retries(ctx));
    return TASK_OK;
}
TASK(retry, "test.retry", .max_retries = -1);

/* test.flaky(times, exc_type) -> fails with exc_type `times` times, then succeeds with the retry
 * count. ConnectionError and TimeoutError are autoretried (backoff 0.1 s, at most 3 retries). */
static int flaky(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *t = arg(args, 0), *e = arg(args, 1);
    if (nargs(args) != 2 || !is_int(t) || !json_object_is_type(e, json_type_string))
        return task_fail(ctx, "TypeError", "flaky(times, exc_type) takes an integer and a string");
    if (task_ctx_retries(ctx) < json_object_get_int64(t))
        return task_fail(ctx, json_object_get_string(e), "attempt %d failed",
                         task_ctx_retries(ctx) + 1);
    *result = json_object_new_int(task_ctx_retries(ctx));
    return TASK_OK;
}
TASK(flaky, "test.flaky", .autoretry_for = "ConnectionError TimeoutError", .max_retries = 3,
     .retry_backoff = 0.1, .retry_backoff_max = 0.2);

/* test.busy(seconds) -> seconds; sleeps without ever looking at task_cancelled(), as a task
 * stuck in a library call would: the worker, not the task, must report its soft time limit. */
static int busy(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *a = arg(args, 0);
    if (nargs(args) != 1 || !is_number(a) || json_object_get_double(a) < 0)
        return task_fail(ctx, "TypeError", "busy(seconds) takes one non-negative number");
    sleep_s(json_object_get_double(a));
    *result = json_object_get(a);
    return TASK_OK;
}
TASK(busy, "test.busy");

/* test.nest(depth) -> [[...[depth]...]], `depth` arrays deep (at most 10000). */
static int nest(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *d = arg(args, 0);
    if (nargs(args) != 1 || !is_int(d) || json_object_get_int64(d) < 1 ||
        json_object_get_int64(d) > 10000)
        return task_fail(ctx, "TypeError", "nest(depth) takes an integer in 1..10000");
    int64_t depth = json_object_get_int64(d);
    json_object *o = json_object_new_int64(depth);
    for (int64_t i = 0; i < depth; i++) {
        json_object *a = json_object_new_array();
        json_object_array_add(a, o);
        o = a;
    }
    *result = o;
    return TASK_OK;
}
TASK(nest, "test.nest");

/* test.limited(a, b) -> a + b, at most one a second per worker (a rate limit to wait for). */
static int limited(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    return add(ctx, args, kwargs, result);
}
TASK(limited, "test.limited", .rate_limit = "1/s");

/* test.backoff(times) -> the retry count; asks for a retry by the backoff policy (base 1 s, cap
 * 4 s, full jitter: 0.5-1 s, 1-2 s, 2-4 s, ...) `times` times, so its later retries are parked
 * in the broker's delay cascade as a default policy parks them. */
static int backoff(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *t = arg(args, 0);
    if (nargs(args) != 1 || !is_int(t) || json_object_get_int64(t) < 0)
        return task_fail(ctx, "TypeError", "backoff(times) takes an integer >= 0");
    if (task_ctx_retries(ctx) < json_object_get_int64(t))
        return task_retry_in(ctx, -1);
    *result = json_object_new_int(task_ctx_retries(ctx));
    return TASK_OK;
}
TASK(backoff, "test.backoff", .max_retries = 5, .retry_backoff = 1, .retry_backoff_max = 4);
