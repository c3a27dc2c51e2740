/*
 * task/task.h - defining tasks.
 *
 *     static int add(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result);
 *     TASK(add, "test.add", .max_retries = 3, .time_limit = 60);
 *
 * TASK() registers the function when the object that contains it is loaded (an ELF constructor),
 * so a task module built as a shared object registers its tasks when taskd dlopen()s it.
 *
 * A task function returns TASK_OK with *result set (a new reference, taken over by the runtime),
 * TASK_FAIL after task_fail(), or TASK_RETRY after task_retry_in(). `args` (a JSON array) and
 * `kwargs` (a JSON object) are borrowed for the duration of the call.
 */
#ifndef TASK_TASK_H
#define TASK_TASK_H

#include <stdbool.h>
#include <json-c/json.h>
#include <task/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a task function returns. Not errno codes: these name outcomes. */
enum task_outcome {
    TASK_OK = 0,
    TASK_FAIL = 1,
    TASK_RETRY = 2,
};

typedef struct task_ctx task_ctx; /* opaque; valid only during the task call */

typedef int (*task_fn)(task_ctx *ctx, json_object *args, json_object *kwargs,
                       json_object **result);

/*
 * task_def - a registered task. Zero means "default" for every option.
 */
typedef struct task_def {
    const char *name;         /* "audio.render"; the name on the wire */
    task_fn fn;
    int max_retries;          /* 0: the worker's default (3); -1: unlimited */
    double retry_backoff;     /* base of the exponential backoff, seconds; 0: default */
    double retry_backoff_max; /* cap, seconds; 0: default (600) */
    double time_limit;        /* hard limit, seconds; 0: none (or the worker default) */
    double soft_time_limit;   /* soft limit, seconds; 0: none */
    const char *rate_limit;   /* "10/s", "100/m"; NULL: none */
    const char *autoretry_for; /* exc_types of task_fail() that retry with the backoff instead of
                                  failing, e.g. "ConnectionError TimeoutError"; "*": any. Past
                                  max_retries the task fails with that exception. NULL: none */
    const char *queue;        /* default queue for senders that route by name; NULL: default */
    bool track_started;       /* publish STARTED before running */
    bool ignore_result;       /* publish no state messages */
} task_def;

/*
 * task_register - add `def` to the process-wide task registry. `def` is kept (must outlive the
 * registry, as a static does). Returns 0, TASK_EINVAL for a missing name or function, or
 * TASK_EINVAL when the name is already registered (the first registration stays).
 * Thread-safe against other registrations; TASK() calls it for you. Since: 0.1.
 */
TASK_API int task_register(const task_def *def);

/* task_registry_find - the task named `name`, or NULL. Borrowed. Since: 0.1. */
TASK_API const task_def *task_registry_find(const char *name);

/* task_registry_count / task_registry_at - iterate registered tasks in registration order. */
TASK_API int task_registry_count(void);
TASK_API const task_def *task_registry_at(int i);

#define TASK_CONCAT_(a, b) a##b
#define TASK_CONCAT(a, b) TASK_CONCAT_(a, b)

/* TASK(fn, "name", options...) - define and register a task at load time. */
#define TASK(fn_, name_, ...)                                                       \
    static const task_def TASK_CONCAT(task__def_, fn_) = {                          \
        .name = (name_), .fn = (fn_), __VA_ARGS__};                                 \
    __attribute__((constructor)) static void TASK_CONCAT(task__reg_, fn_)(void)     \
    {                                                                               \
        (void)task_register(&TASK_CONCAT(task__def_, fn_));                         \
    }

/* ---- calls a running task makes on its context ---- */

/* task_id_str - the running task's id (borrowed, valid during the call). */
TASK_API const char *task_ctx_id(const task_ctx *ctx);

/* task_ctx_retries - how many times this task was retried before this run. */
TASK_API int task_ctx_retries(const task_ctx *ctx);

/*
 * task_fail - record the failure to report; the task then returns TASK_FAIL. `exc_type` is the
 * exception type name Python clients see (e.g. "ValueError"); printf-style message. The first
 * call wins. Returns TASK_FAIL, so `return task_fail(ctx, "ValueError", "bad %d", x);` works.
 */
TASK_API int task_fail(task_ctx *ctx, const char *exc_type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * task_retry_in - ask for a retry after `seconds` (< 0: the task's backoff policy). Returns
 * TASK_RETRY for `return task_retry_in(ctx, 5);`. Past max_retries the task fails instead.
 */
TASK_API int task_retry_in(task_ctx *ctx, double seconds);

/*
 * task_progress - publish a PROGRESS state with `meta` (borrowed; copied). Returns 0 or a
 * negative TASK_E* when it could not be published (the task may go on).
 */
TASK_API int task_progress(task_ctx *ctx, json_object *meta);

/*
 * task_cancelled - true once the task should stop: its soft time limit passed, it was revoked,
 * or the worker is shutting down cold. Cheap; call it in loops. The libcurl helpers check it.
 */
TASK_API bool task_cancelled(const task_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
