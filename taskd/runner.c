/*
 * runner.c - runs one task and publishes its outcome: SUCCESS, FAILURE (Celery's exception
 * object), or a retry (the same message re-published with retries+1 and a new eta, then RETRY).
 * This is the in-process runner; the process pool hands the same work to children.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ctx.h"
#include "log.h"
#include "worker.h"

/* Exception names a Python client can re-raise as the real class (module "builtins"). */
static const char *const builtin_excs[] = {
    "Exception", "ValueError", "TypeError", "KeyError", "IndexError", "RuntimeError",
    "ArithmeticError", "ZeroDivisionError", "OverflowError", "AttributeError", "LookupError",
    "NotImplementedError", "OSError", "IOError", "TimeoutError", "ConnectionError",
    "PermissionError", "FileNotFoundError", "MemoryError", "AssertionError", "UnicodeError",
};

static const char *exc_module(const char *type)
{
    for (size_t i = 0; i < sizeof(builtin_excs) / sizeof(builtin_excs[0]); i++) {
        if (strcmp(type, builtin_excs[i]) == 0)
            return "builtins";
    }
    if (strcmp(type, "SoftTimeLimitExceeded") == 0 || strcmp(type, "TimeLimitExceeded") == 0 ||
        strcmp(type, "WorkerLostError") == 0)
        return "billiard.exceptions";
    if (strcmp(type, "TaskRevokedError") == 0 || strcmp(type, "NotRegistered") == 0 ||
        strcmp(type, "MaxRetriesExceededError") == 0 || strcmp(type, "Retry") == 0)
        return "celery.exceptions";
    /* Not importable by Python clients: they synthesize a class with this name (tested). */
    return "taskd.errors";
}

int delivery_count(const struct task__delivery *d)
{
    const amqp_basic_properties_t *p = &d->msg.properties;
    if (p->_flags & AMQP_BASIC_HEADERS_FLAG) {
        for (int i = 0; i < p->headers.num_entries; i++) {
            const amqp_table_entry_t *e = &p->headers.entries[i];
            if (e->key.len == 16 && memcmp(e->key.bytes, "x-delivery-count", 16) == 0) {
                if (e->value.kind == AMQP_FIELD_KIND_I64)
                    return (int)e->value.value.i64 + 1;
                if (e->value.kind == AMQP_FIELD_KIND_I32)
                    return e->value.value.i32 + 1;
            }
        }
    }
    return d->redelivered ? 2 : 1;
}

struct run {
    struct worker *w;
    const struct task__msg *m;
};

static int ctx_progress(task_ctx *ctx, json_object *meta)
{
    struct run *r = ctx->rt;
    return pub_result(r->w, NULL, r->m, "PROGRESS", meta, NULL, 0);
}

static const struct task_ctx_ops inline_ops = {.progress = ctx_progress};

static double backoff_s(const task_def *def, int retries)
{
    double base = def->retry_backoff > 0 ? def->retry_backoff : 1.0;
    double cap = def->retry_backoff_max > 0 ? def->retry_backoff_max : 600.0;
    double d = base * pow(2.0, retries > 30 ? 30 : retries);
    if (d > cap)
        d = cap;
    /* Full jitter keeps many failing tasks from retrying in lockstep. */
    return d * (0.5 + 0.5 * ((double)random() / (double)RAND_MAX));
}

static void publish_failure(struct worker *w, struct job *job, const struct task__msg *m,
                            const char *type, const char *message, int dc)
{
    json_object *exc = task__exc_new(type, message, exc_module(type));
    char tb[1400];
    snprintf(tb, sizeof(tb), "Traceback (taskd, C task %s):\n%s: %s\n", m->task, type, message);
    (void)pub_result(w, job, m, "FAILURE", exc, tb, dc);
    json_object_put(exc);
    w->n_failed++;
}

static void republish_retry(struct worker *w, struct job *job, struct task__delivery *d,
                            struct task__msg *m, double delay_s, const task_ctx *ctx, int dc)
{
    struct task__msg again = *m;
    again.retries = m->retries + 1;
    again.eta = task__now_wall() + delay_s;
    again.parent_id = m->id;
    again.lang = "c";
    struct task__wire wire;
    task_error err = {0};
    int rc = task__msg_encode(&again, &wire, &err);
    if (rc == 0) {
        rc = pub_send(w, job, "", d->routing_key, &wire.props, wire.body, wire.body_len);
        task__wire_free(&wire);
    }
    if (rc != 0) {
        log_event(LV_ERROR, rc, "retry_publish_failed", "task_id=%s detail=\"%s\"", m->id,
                  err.msg[0] ? err.msg : task__conn_errmsg(w->conn));
        job->nacked = true; /* requeue the original: the retry is not lost */
        return;
    }
    const char *type = ctx->exc_type[0] ? ctx->exc_type : "Retry";
    const char *msg = ctx->exc_message[0] ? ctx->exc_message : "retry requested";
    json_object *exc = task__exc_new(type, msg, exc_module(type));
    (void)pub_result(w, job, m, "RETRY", exc, NULL, dc);
    json_object_put(exc);
    w->n_retried++;
    log_event(LV_INFO, 0, "task_retry", "task=%s task_id=%s retries=%d delay_s=%.3f", m->task,
              m->id, again.retries, delay_s);
}

void run_task(struct worker *w, struct job *job, struct task__delivery *d, struct task__msg *m)
{
    const task_def *def = task_registry_find(m->task);
    int dc = delivery_count(d);
    struct run r = {.w = w, .m = m};
    task_ctx ctx;
    double soft = m->timelimit_soft > 0 ? m->timelimit_soft
                  : def->soft_time_limit > 0 ? def->soft_time_limit
                                             : w->cfg->soft_time_limit_s;
    task__ctx_init(&ctx, &inline_ops, &r, m->id, m->retries,
                   soft > 0 ? task__now_mono() + soft : 0);

    if (def->track_started) {
        json_object *meta = json_object_new_object();
        json_object_object_add(meta, "pid", json_object_new_int(getpid()));
        json_object_object_add(meta, "hostname", json_object_new_string(w->hostname));
        (void)pub_result(w, NULL, m, "STARTED", meta, NULL, dc);
        json_object_put(meta);
    }

    json_object *result = NULL;
    double t0 = task__now_mono();
    int outcome = def->fn(&ctx, m->args, m->kwargs, &result);
    double runtime = task__now_mono() - t0;
    int max_retries = def->max_retries != 0 ? def->max_retries : w->cfg->max_retries;

    if (outcome == TASK_OK) {
        (void)pub_result(w, job, m, "SUCCESS", result, NULL, dc);
        w->n_succeeded++;
        log_event(LV_DEBUG, 0, "task_succeeded", "task=%s task_id=%s runtime_s=%.6f", m->task,
                  m->id, runtime);
    } else if (outcome == TASK_RETRY && (max_retries < 0 || m->retries < max_retries)) {
        double delay = ctx.retry_in_s >= 0 ? ctx.retry_in_s : backoff_s(def, m->retries);
        republish_retry(w, job, d, m, delay, &ctx, dc);
    } else {
        const char *type = ctx.exc_type[0] ? ctx.exc_type : "Exception";
        const char *msg = ctx.exc_message;
        if (outcome == TASK_RETRY) {
            type = ctx.exc_type[0] ? ctx.exc_type : "MaxRetriesExceededError";
            if (!ctx.exc_type[0])
                msg = "maximum retries exceeded";
        } else if (outcome != TASK_FAIL) {
            type = "RuntimeError";
            msg = "task returned an unknown outcome";
        }
        publish_failure(w, job, m, type, msg, dc);
        log_event(LV_INFO, 0, "task_failed", "task=%s task_id=%s exc_type=%s runtime_s=%.6f",
                  m->task, m->id, type, runtime);
    }
    json_object_put(result);
    task__ctx_release(&ctx);
}
