/*
 * testtasks.c - the test-task module (DESIGN.md section 13), loaded with
 * `taskd --module build/tests/tasks/libtesttasks.so`. Interop tests, benchmarks, fault tests and
 * the demo use these names; keep them stable.
 */
#include <signal.h>
#include <time.h>
#include <task/http.h>
#include <task/task.h>

static int nargs(json_object *args)
{
    return json_object_is_type(args, json_type_array) ? (int)json_object_array_length(args) : 0;
}

static json_object *arg(json_object *args, int i)
{
    return json_object_array_get_idx(args, (size_t)i);
}

static bool is_number(json_object *o)
{
    return json_object_is_type(o, json_type_int) || json_object_is_type(o, json_type_double);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* test.add(a, b) -> a + b (integers stay integers). */
static int add(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *a = arg(args, 0), *b = arg(args, 1);
    if (nargs(args) != 2 || !is_number(a) || !is_number(b))
        return task_fail(ctx, "TypeError", "add(a, b) takes two numbers");
    if (json_object_is_type(a, json_type_int) && json_object_is_type(b, json_type_int))
        *result = json_object_new_int64(json_object_get_int64(a) + json_object_get_int64(b));
    else
        *result = json_object_new_double(json_object_get_double(a) + json_object_get_double(b));
    return TASK_OK;
}
TASK(add, "test.add");

/* test.echo(*args, **kwargs) -> [args, kwargs] */
static int echo(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)ctx;
    *result = json_object_new_array();
    json_object_array_add(*result, json_object_get(args));
    json_object_array_add(*result, json_object_get(kwargs));
    return TASK_OK;
}
TASK(echo, "test.echo");

/* test.sleep(seconds) -> seconds; stops early when cancelled. */
static int sleep_task(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *a = arg(args, 0);
    if (nargs(args) != 1 || !is_number(a) || json_object_get_double(a) < 0)
        return task_fail(ctx, "TypeError", "sleep(seconds) takes one non-negative number");
    double left = json_object_get_double(a);
    while (left > 0) {
        if (task_cancelled(ctx))
            return task_fail(ctx, "SoftTimeLimitExceeded", "cancelled with %.3f s left", left);
        double step = left < 0.01 ? left : 0.01;
        sleep_s(step);
        left -= step;
    }
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
    const char *msg = json_object_is_type(m, json_type_string) ? json_object_get_string(m)
                                                                : "test.fail";
    return task_fail(ctx, "ValueError", "%s", msg);
}
TASK(fail_task, "test.fail");

/* test.segv() -> crashes the process that runs it. */
static int segv(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)ctx, (void)args, (void)kwargs, (void)result;
    raise(SIGSEGV);
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
    task_http_response resp;
    int rc = task_http_get(ctx, json_object_get_string(u), NULL, &resp);
    if (rc != 0)
        return task_fail(ctx, "IOError", "GET %s: %s", json_object_get_string(u),
                         task_strerror(rc));
    *result = json_object_new_int((int)resp.status);
    task_http_response_free(&resp);
    return TASK_OK;
}
TASK(http_get, "test.http_get");

/* test.progress(steps[, delay_s]) -> steps; PROGRESS {current, total} after each step. */
static int progress(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *s = arg(args, 0);
    if (nargs(args) < 1 || !json_object_is_type(s, json_type_int) ||
        json_object_get_int(s) < 0)
        return task_fail(ctx, "TypeError", "progress(steps[, delay]) takes an integer");
    int steps = json_object_get_int(s);
    double delay = nargs(args) > 1 && is_number(arg(args, 1))
                       ? json_object_get_double(arg(args, 1))
                       : 0.05;
    for (int i = 1; i <= steps; i++) {
        sleep_s(delay);
        json_object *meta = json_object_new_object();
        json_object_object_add(meta, "current", json_object_new_int(i));
        json_object_object_add(meta, "total", json_object_new_int(steps));
        (void)task_progress(ctx, meta);
        json_object_put(meta);
    }
    *result = json_object_new_int(steps);
    return TASK_OK;
}
TASK(progress, "test.progress");

/* test.retry(times) -> retries `times` times, then succeeds with the retry count. */
static int retry(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    (void)kwargs;
    json_object *t = arg(args, 0);
    if (nargs(args) != 1 || !json_object_is_type(t, json_type_int))
        return task_fail(ctx, "TypeError", "retry(times) takes an integer");
    if (task_ctx_retries(ctx) < json_object_get_int(t))
        return task_retry_in(ctx, 0.1);
    *result = json_object_new_int(task_ctx_retries(ctx));
    return TASK_OK;
}
TASK(retry, "test.retry", .max_retries = -1);
