/*
 * ctx.h - the layout of task_ctx, shared by libtask (which implements the calls a task makes)
 * and taskd (which fills it in and reads the outcome). Never installed.
 */
#ifndef TASK_CTX_H
#define TASK_CTX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <task/task.h>

struct task_ctx_ops {
    /* publish a PROGRESS state for the running task; meta borrowed */
    int (*progress)(task_ctx *ctx, json_object *meta);
};

/* What the context holds for a helper (the libcurl handle the http helpers keep between
 * transfers), with the two things the runtime must be able to do to it without knowing what
 * it is: wake a transfer so it sees a cancel (any thread), and free it. */
struct task_ctx_res_ops {
    void (*wakeup)(void *res);
    void (*release)(void *res);
};

struct task_ctx {
    const struct task_ctx_ops *ops;
    void *rt;                  /* the runtime's own data for this task */
    const char *id;            /* borrowed from the request */
    int retries;
    double soft_deadline;      /* task__now_mono() seconds; 0: none */
    atomic_bool cancelled;     /* set by the runtime (revoke, soft limit, shutdown) */

    /* outcome, written by the task through task_fail()/task_retry_in() */
    bool failed;
    char exc_type[128];
    char exc_message[1024];
    bool retry;
    double retry_in_s;         /* < 0: use the backoff policy */

    void *http;                /* CURL easy handle kept for connection reuse; freed by runtime */
    const struct task_ctx_res_ops *http_ops; /* set by the helper that made `http` */
};

/* Initialise `ctx` for a task run. */
void task__ctx_init(task_ctx *ctx, const struct task_ctx_ops *ops, void *rt, const char *id,
                    int retries, double soft_deadline);
/* Cancel the task (revoke, cold shutdown): task_cancelled() turns true and a transfer in the
 * libcurl helpers stops at once. Callable from any thread while the task runs. */
void task__ctx_cancel(task_ctx *ctx);
/* Release what the ctx holds (the curl handle). */
void task__ctx_release(task_ctx *ctx);

#endif
