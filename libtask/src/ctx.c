/* ctx.c - the calls a running task makes on its context (task/task.h). */
#include <stdio.h>
#include <string.h>
#include "ctx.h"
#include "internal.h"

void task__ctx_init(task_ctx *ctx, const struct task_ctx_ops *ops, void *rt, const char *id,
                    int retries, double soft_deadline)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->ops = ops;
    ctx->rt = rt;
    ctx->id = id;
    ctx->retries = retries;
    ctx->soft_deadline = soft_deadline;
    ctx->retry_in_s = -1;
    atomic_init(&ctx->cancelled, false);
}

void task__ctx_release(task_ctx *ctx)
{
    if (ctx->http != NULL && ctx->http_ops != NULL)
        ctx->http_ops->release(ctx->http);
    ctx->http = NULL;
}

const char *task_ctx_id(const task_ctx *ctx)
{
    return ctx ? ctx->id : NULL;
}

int task_ctx_retries(const task_ctx *ctx)
{
    return ctx ? ctx->retries : 0;
}

int task_fail(task_ctx *ctx, const char *exc_type, const char *fmt, ...)
{
    if (ctx == NULL || ctx->failed)
        return TASK_FAIL;
    ctx->failed = true;
    snprintf(ctx->exc_type, sizeof(ctx->exc_type), "%s", exc_type ? exc_type : "Exception");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->exc_message, sizeof(ctx->exc_message), fmt ? fmt : "", ap);
    va_end(ap);
    return TASK_FAIL;
}

int task_retry_in(task_ctx *ctx, double seconds)
{
    if (ctx != NULL) {
        ctx->retry = true;
        ctx->retry_in_s = seconds;
    }
    return TASK_RETRY;
}

int task_progress(task_ctx *ctx, json_object *meta)
{
    if (ctx == NULL || ctx->ops == NULL || ctx->ops->progress == NULL)
        return TASK_EINVAL;
    return ctx->ops->progress(ctx, meta);
}

bool task_cancelled(const task_ctx *ctx)
{
    if (ctx == NULL)
        return false;
    if (atomic_load(&((task_ctx *)ctx)->cancelled))
        return true;
    return ctx->soft_deadline > 0 && task__now_mono() >= ctx->soft_deadline;
}

void task__ctx_cancel(task_ctx *ctx)
{
    atomic_store(&ctx->cancelled, true);
    void *http = ctx->http;
    if (http != NULL && ctx->http_ops != NULL)
        ctx->http_ops->wakeup(http);
}
