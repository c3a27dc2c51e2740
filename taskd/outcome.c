/*
 * outcome.c - the one place that decides what a task's end publishes and how its delivery is
 * settled: SUCCESS, FAILURE (Celery's exception object), a retry (the same message re-published
 * with retries+1 and a new eta, then RETRY), REVOKED, a fresh copy back to its queue, or an
 * outcome kept until the broker can take it. Lower layers (the pool, the publisher) report
 * here through their hooks; see outcome.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "canvas.h"
#include "chord.h"
#include "ended.h"
#include "events.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "msgcopy.h"
#include "orphan.h"
#include "outcome.h"
#include "publisher.h"
#include "result_check.h"
#include "signing.h"
#include "task_limits.h"
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
    if (strcmp(type, "EncodeError") == 0)
        return "kombu.exceptions";
    if (strcmp(type, "TaskRevokedError") == 0 || strcmp(type, "NotRegistered") == 0 ||
        strcmp(type, "MaxRetriesExceededError") == 0 || strcmp(type, "Retry") == 0)
        return "celery.exceptions";
    /* Not importable by Python clients: they synthesize a class with this name (tested). */
    return "taskd.errors";
}

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

/* A final state of the job's own task. A chord member is counted before its ack, whether or
 * not it keeps results; a count that did not reach the broker requeues the member. */
static void publish_final(struct worker *w, struct job *job, const char *status,
                          json_object *result, const char *traceback, int dc)
{
    if (job->m.chord != NULL && chord_part_done(w, job, status, result) != 0)
        job->nacked = true;
    (void)pub_result(w, job, &job->m, status, result, traceback, dc);
    job->final = true; /* ended.h notes it once this is confirmed and the delivery acked */
}

static void publish_failure(struct worker *w, struct job *job, const struct task__msg *m,
                            const char *type, const char *message, int dc)
{
    json_object *exc = task__exc_new(type, message, exc_module(type));
    char tb[1400];
    snprintf(tb, sizeof(tb), "Traceback (taskd, C task %s):\n%s: %s\n", m->task, type, message);
    publish_final(w, job, "FAILURE", exc, tb, dc);
    json_object_put(exc);
    canvas_on_failure(w, job, type, exc_module(type), message);
    char repr[1400];
    snprintf(repr, sizeof(repr), "%s('%s')", type, message);
    json_object *ev = json_object_new_object();
    json_object_object_add(ev, "exception", json_object_new_string(repr));
    json_object_object_add(ev, "traceback", json_object_new_string(tb));
    events_task(w, "task-failed", job, ev);
    w->n_failed++;
    metrics_outcome(w->metrics, m->task, MO_FAILED);
}

static void republish_retry(struct worker *w, struct job *job, double delay_s,
                            const char *exc_type, const char *exc_msg, int dc)
{
    const struct task__msg *m = &job->m;
    struct task__msg again = *m;
    again.retries = m->retries + 1;
    again.eta = task__now_wall() + delay_s;
    again.parent_id = m->id;
    again.lang = "c";
    struct task__wire wire;
    task_error err = {0};
    int rc = task__msg_encode(&again, &wire, &err);
    if (rc == 0 && (rc = task__wire_seal(w->sec, &wire, &err)) != 0)
        task__wire_free(&wire);
    if (rc == 0) {
        rc = pub_send_mandatory(w, job, "", job->d.queue, &wire.props, wire.body, wire.body_len);
        task__wire_free(&wire);
    }
    if (rc != 0) {
        log_event(LV_ERROR, rc, "retry_publish_failed", "task_id=%s detail=%s", log_v(m->id),
                  log_v(err.msg[0] ? err.msg : task__conn_errmsg(w->conn)));
        job->nacked = true; /* requeue the original: the retry is not lost */
        return;
    }
    const char *type = exc_type[0] ? exc_type : "Retry";
    const char *msg = exc_msg[0] ? exc_msg : "retry requested";
    json_object *exc = task__exc_new(type, msg, exc_module(type));
    (void)pub_result(w, job, m, "RETRY", exc, NULL, dc);
    json_object_put(exc);
    w->n_retried++;
    metrics_outcome(w->metrics, m->task, MO_RETRIED);
    char repr[1400];
    snprintf(repr, sizeof(repr), "%s('%s')", type, msg);
    json_object *ev = json_object_new_object();
    json_object_object_add(ev, "exception", json_object_new_string(repr));
    events_task(w, "task-retried", job, ev);
    log_event(LV_INFO, 0, "task_retry", "task=%s task_id=%s retries=%d delay_s=%.3f",
              log_v(m->task), log_v(m->id), again.retries, delay_s);
}

void outcome_started(struct worker *w, struct job *job)
{
    /* Counted from here, not from when it joined the backlog: a status page must tell queued
     * from running, and monitors' state agrees with inspect active. */
    if (job->def->track_started || w->cfg->track_started) {
        job->started_due = true;
        w->started_due++;
        w->started_first = INFINITY; /* scan again (outcome_started_due) */
    }
    events_task(w, "task-started", job, NULL);
    lease_at_start(w, job);
}

static void publish_started(struct worker *w, struct job *job)
{
    json_object *meta = json_object_new_object();
    json_object_object_add(meta, "pid", json_object_new_int(getpid()));
    json_object_object_add(meta, "hostname", json_object_new_string(w->hostname));
    (void)pub_result(w, NULL, &job->m, "STARTED", meta, NULL, delivery_count(&job->d));
    json_object_put(meta);
}

/* STARTED for the running jobs that started by `due`; returns how many still wait, and the
 * earliest start among them in *first. */
static int publish_started_due(struct worker *w, double due, double *first)
{
    int left = 0;
    for (int i = 0; i < w->pool.n; i++) {
        for (struct job *j = w->pool.ch[i].running; j != NULL; j = j->next) {
            if (!j->started_due)
                continue;
            if (j->started <= due && !j->orphan) {
                j->started_due = false;
                publish_started(w, j);
                continue;
            }
            left++;
            if (j->started < *first)
                *first = j->started;
        }
    }
    return left;
}

void outcome_started_due(struct worker *w)
{
    if (w->started_due == 0 || w->blocked || w->conn == NULL || !task__conn_alive(w->conn))
        return;
    double now = task__now_mono(), first = INFINITY;
    w->started_due = publish_started_due(w, now - OUTCOME_STARTED_AFTER_S, &first);
    w->started_first = first;
}

int outcome_started_next_ms(const struct worker *w)
{
    if (w->started_due == 0 || w->blocked || w->conn == NULL || !task__conn_alive(w->conn))
        return -1;
    if (w->started_first == INFINITY)
        return 0; /* not scanned since the last start */
    double ms = (w->started_first + OUTCOME_STARTED_AFTER_S - task__now_mono()) * 1000;
    return ms <= 0 ? 0 : (int)ceil(ms);
}


static const char *unstorable(const struct worker *w, json_object *result, char *buf, size_t size)
{
    /* worker.max_message_size bounds the task messages a worker takes in (it may be set small);
     * results are bounded by what a reader takes: the larger of the two. */
    size_t cap = (size_t)w->cfg->max_message_bytes > TASK__MAX_MESSAGE_BYTES
                     ? (size_t)w->cfg->max_message_bytes
                     : TASK__MAX_MESSAGE_BYTES;
    return result_unstorable(result, cap, buf, size);
}

void outcome_progress(struct worker *w, struct job *job, json_object *meta)
{
    char why[160];
    if (unstorable(w, meta, why, sizeof(why)) != NULL) {
        log_event(LV_WARN, 0, "progress_dropped", "task_id=%s reason=\"%s\"", log_v(job->m.id),
                  why);
        return;
    }
    job->started_due = false; /* PROGRESS says it runs */
    (void)pub_result(w, NULL, &job->m, "PROGRESS", meta, NULL, 0);
}

/* Is `type` in the task's autoretry_for list (blank- or comma-separated; "*" is any)? */
static bool autoretry(const task_def *def, const char *type)
{
    const char *p = def->autoretry_for;
    size_t tlen = strlen(type);
    while (p != NULL && *p != '\0' && tlen > 0) {
        p += strspn(p, " ,");
        size_t n = strcspn(p, " ,");
        if ((n == 1 && *p == '*') || (n == tlen && strncmp(p, type, n) == 0))
            return true;
        p += n;
    }
    return false;
}

static void done(struct worker *w, struct job *job, const struct ipc_up *up)
{
    const struct task__msg *m = &job->m;
    int outcome = up->outcome;
    double runtime = up->runtime_s;
    int dc = delivery_count(&job->d);
    int max_retries = job->def->max_retries != 0 ? job->def->max_retries : w->cfg->max_retries;
    const char *exc_type = up->exc_type;
    const char *exc_msg = up->exc_message;
    if (job->cancelled && up->cancelled && outcome != TASK_OK) {
        /* Revoked while it ran, and it stopped: that is the revoke's outcome, not a failure. */
        metrics_runtime(w->metrics, m->task, task__now_mono() - job->started);
        outcome_revoked(w, job, "revoked");
        return;
    }
    if (up->soft_expired && (outcome == TASK_OK || outcome == TASK_FAIL)) {
        outcome = TASK_FAIL;
        exc_type = "SoftTimeLimitExceeded";
        exc_msg = "the task ran past its soft time limit";
    }
    if (outcome == TASK_FAIL && autoretry(job->def, exc_type))
        outcome = TASK_RETRY; /* with no retry_in: the backoff policy */
    metrics_runtime(w->metrics, m->task, task__now_mono() - job->started);

    json_object *result = up->result;
    char why[160];
    if (outcome == TASK_OK && unstorable(w, result, why, sizeof(why)) != NULL) {
        outcome = TASK_FAIL;
        exc_type = "EncodeError";
        exc_msg = why;
    }
    if (outcome == TASK_OK) {
        publish_final(w, job, "SUCCESS", result, NULL, dc);
        canvas_on_success(w, job, result);
        json_object *ev = json_object_new_object();
        json_object_object_add(ev, "result", json_object_new_string(result ? task__json_str(result, NULL) : "None"));
        json_object_object_add(ev, "runtime", json_object_new_double(runtime));
        events_task(w, "task-succeeded", job, ev);
        w->n_succeeded++;
        metrics_outcome(w->metrics, m->task, MO_SUCCEEDED);
        log_event(LV_DEBUG, 0, "task_succeeded", "task=%s task_id=%s runtime_s=%.6f",
                  log_v(m->task), log_v(m->id), runtime);
    } else if (outcome == TASK_RETRY && (max_retries < 0 || m->retries < max_retries)) {
        double in = up->retry_in_s;
        republish_retry(w, job, in >= 0 ? in : backoff_s(job->def, m->retries), exc_type,
                        exc_msg, dc);
    } else {
        const char *type = exc_type[0] ? exc_type : "Exception";
        const char *msg = exc_msg;
        if (outcome == TASK_RETRY && !exc_type[0]) {
            type = "MaxRetriesExceededError";
            msg = "maximum retries exceeded";
        } else if (outcome != TASK_FAIL && outcome != TASK_RETRY) {
            type = "RuntimeError";
            msg = "task returned an unknown outcome";
        }
        publish_failure(w, job, m, type, msg, dc);
        log_event(LV_INFO, 0, "task_failed", "task=%s task_id=%s exc_type=%s runtime_s=%.6f",
                  log_v(m->task), log_v(m->id), log_v(type), runtime);
    }
    outcome_finish(w, job);
}

/* A fresh copy of the job's message to the tail of its queue; the delivery is acked once the
 * copy is confirmed. The broker's own counts of its deliveries stay with the old copy. */
static int requeue_copy(struct worker *w, struct job *job)
{
    amqp_basic_properties_t p;
    amqp_table_entry_t *kept;
    int rc = msgcopy_props(&job->d.msg.properties, NULL, 0, &p, &kept);
    if (rc == 0) {
        rc = pub_send_mandatory(w, job, "", job->d.queue, &p, job->d.msg.body.bytes,
                                job->d.msg.body.len);
        free(kept); /* the frame is serialised */
    }
    if (rc != 0)
        job->nacked = true; /* the broker's requeue then, counted or not */
    outcome_finish(w, job);
    return rc;
}

static void requeue_fresh(struct worker *w, struct job *job, const char *reason)
{
    char id[LOG_V_MAX + 3], task[LOG_V_MAX + 3];
    snprintf(id, sizeof(id), "%s", log_v(job->m.id));
    snprintf(task, sizeof(task), "%s", log_v(job->m.task));
    int rc = requeue_copy(w, job); /* may free the job */
    log_event(rc == 0 ? LV_WARN : LV_ERROR, rc, "task_requeued", "task=%s task_id=%s reason=%s",
              task, id, reason);
}

void outcome_give_back(struct worker *w, struct job *job)
{
    char id[LOG_V_MAX + 3];
    snprintf(id, sizeof(id), "%s", log_v(job->m.id));
    double held = task__now_mono() - job->d.received;
    int rc = requeue_copy(w, job);
    log_event(rc == 0 ? LV_INFO : LV_ERROR, rc, "task_given_back", "task_id=%s held_s=%.1f "
              "reason=\"waited past worker.give_back_after\"", id, held);
}

void outcome_revoked(struct worker *w, struct job *job, const char *why)
{
    const struct task__msg *m = &job->m;
    json_object *exc = task__exc_new("TaskRevokedError", why, "celery.exceptions");
    publish_final(w, job, "REVOKED", exc, NULL, delivery_count(&job->d));
    json_object_put(exc);
    json_object *ev = json_object_new_object();
    json_object_object_add(ev, "terminated", json_object_new_boolean(0));
    json_object_object_add(ev, "signum", NULL);
    json_object_object_add(ev, "expired", json_object_new_boolean(strcmp(why, "expired") == 0));
    events_task(w, "task-revoked", job, ev);
    metrics_outcome(w->metrics, m->task, MO_REVOKED);
    log_event(LV_INFO, 0, "task_discarded", "task=%s task_id=%s reason=%s", log_v(m->task),
              log_v(m->id), why);
    outcome_finish(w, job);
}

static void lost(struct worker *w, struct job *job)
{
    const struct task__msg *m = &job->m;
    int dc = delivery_count(&job->d);
    metrics_runtime(w->metrics, m->task, task__now_mono() - job->started);
    if (job->terminated) {
        json_object *exc = task__exc_new("TaskRevokedError", "terminated", "celery.exceptions");
        publish_final(w, job, "REVOKED", exc, NULL, dc);
        json_object_put(exc);
        json_object *ev = json_object_new_object();
        json_object_object_add(ev, "terminated", json_object_new_boolean(1));
        json_object_object_add(ev, "signum", json_object_new_int(9));
        json_object_object_add(ev, "expired", json_object_new_boolean(0));
        events_task(w, "task-revoked", job, ev);
        metrics_outcome(w->metrics, m->task, MO_REVOKED);
    } else if (job->timed_out) {
        char msg[128];
        snprintf(msg, sizeof(msg), "TimeLimitExceeded(%g)", task__now_mono() - job->started);
        publish_failure(w, job, m, "TimeLimitExceeded", msg, dc);
    } else if (w->cfg->requeue_on_crash && dc < 2) {
        /* Once only: the redelivered copy that kills a child again fails for good. */
        log_event(LV_WARN, 0, "task_requeued", "task=%s task_id=%s reason=worker_lost",
                  log_v(m->task), log_v(m->id));
        job->nacked = true;
    } else {
        publish_failure(w, job, m, "WorkerLostError",
                        "Worker exited prematurely: the process running the task died.", dc);
    }
    outcome_finish(w, job);
}

void outcome_settled(struct worker *w, struct job *job)
{
    if (!job->done || job->waits > 0)
        return;
    /* From now on a copy under the same id is dropped here (ended.h); not before: an outcome
     * the broker refused (a follow-up no queue took) requeues the task to run again. */
    if (job->final && !job->nacked)
        ended_note(job->m.id);
    if (job->no_delivery) {
        job_free(job); /* its outcome is out; there is no delivery of ours to settle */
        return;
    }
    if (job->leased) {
        /* Its delivery was acked when it was leased; the lease queue holds the message. */
        if (job->nacked)
            lease_return(w, job);
        else
            lease_end(w, job);
        job_free(job);
        return;
    }
    int rc = job->nacked ? task__conn_reject(w->conn, CH_CONSUME, job->dtag, true)
                         : task__conn_ack(w->conn, CH_CONSUME, job->dtag, false);
    if (job->lease_dangling && !job->nacked)
        lease_end(w, job); /* the lease queue a lapsed copy came back from */
    if (rc != 0)
        log_event(LV_WARN, rc, "ack_failed", "delivery_tag=%llu detail=\"%s\"",
                  (unsigned long long)job->dtag, task__conn_errmsg(w->conn));
    w->inflight--;
    job_free(job);
}

void outcome_finish(struct worker *w, struct job *job)
{
    job->done = true;
    outcome_settled(w, job);
}

static void settle_as(struct worker *w, struct job *job, int how, const struct ipc_up *up)
{
    if (how == STASH_DONE)
        done(w, job, up);
    else if (how == STASH_REQUEUE)
        requeue_fresh(w, job, "neighbour_lost");
    else
        lost(w, job);
}

void outcome_child_ended(struct worker *w, struct job *job, int how, const struct ipc_up *up)
{
    /* A kept outcome keeps the child's frame; it is read again when it is settled. */
    json_object *reply = up != NULL ? up->frame : NULL;
    bool cold = w->pool.cold;
    /* Outside attack: a lease that lapsed during a memory alarm brought its copy back after
     * the run ended but before its outcome reached the broker, and it ran again. (A run that
     * did not end with a reply may be requeued: its copies must still run.) */
    if (how == STASH_DONE)
        lease_ran(w, job);
    if (cold && (job->orphan || w->conn == NULL)) {
        job_free(job);
    } else if (job->orphan) {
        orphan_keep(w, job, how, json_object_get(reply));
    } else if (w->conn == NULL || w->blocked) {
        /* leased (not an orphan) with no connection, or the broker blocks us */
        lease_stash(w, job, how, json_object_get(reply));
    } else if (cold) {
        /* Stopped by us: what it returned is not its outcome; it runs again, unacked. */
        job->nacked = true;
        outcome_finish(w, job);
    } else {
        settle_as(w, job, how, up);
    }
}

void outcome_settle_kept(struct worker *w, struct job *job)
{
    json_object *reply = job->stash_reply;
    int how = job->stash;
    job->next = NULL;
    job->stash_reply = NULL;
    job->stash = STASH_NONE;
    struct ipc_up up;
    if (how == STASH_DONE && ipc_up_read(reply, &up, NULL, 0) != 0)
        how = STASH_LOST; /* cannot happen: it was read when it came */
    settle_as(w, job, how, how == STASH_DONE ? &up : NULL);
    json_object_put(reply);
}

void outcome_replay(struct worker *w)
{
    struct job *j = w->stashed;
    w->stashed = NULL;
    while (j != NULL) {
        struct job *next = j->next;
        outcome_settle_kept(w, j);
        j = next;
    }
}

void outcome_give_back_chain(struct worker *w, struct job *chain)
{
    while (chain != NULL) {
        struct job *next = chain->next;
        chain->next = NULL;
        outcome_give_back(w, chain);
        chain = next;
    }
}

void outcome_requeue_chain(struct worker *w, struct job *chain)
{
    while (chain != NULL) {
        struct job *next = chain->next;
        chain->next = NULL;
        chain->nacked = true; /* settles as reject(requeue) */
        outcome_finish(w, chain);
        chain = next;
    }
}

void outcome_orphans_expired(struct worker *w, struct job *chain)
{
    while (chain != NULL) {
        struct job *j = chain;
        chain = j->next;
        j->next = NULL;
        if (j->stash != STASH_DONE) {
            /* Lost with its child: the broker's redelivery (if it has the message) runs it
             * again; nothing here is an outcome. */
            job_free(j);
            continue;
        }
        /* It ran to its end here, but its redelivery never came (a broker that lost the
         * message, or another worker that took it): publish the outcome it has rather than
         * leave its state STARTED for ever. A later copy of it is dropped here (ended.h). */
        log_event(LV_WARN, 0, "task_outcome_published_late", "task=%s task_id=%s "
                  "reason=\"its redelivery did not come within %.0f s\"", log_v(j->m.task),
                  log_v(j->m.id), ORPHAN_KEEP_S);
        j->no_delivery = true;
        j->orphan = false;
        outcome_settle_kept(w, j);
    }
}
