/*
 * consumer.c - declares and consumes the task queues, and turns each delivery into a run, a
 * quarantine, a REVOKED result (expired) or a wait for its eta.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <task/client.h>
#include "consumer.h"
#include "declare.h"
#include "delay.h"
#include "events.h"
#include "ended.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "msgauth.h"
#include "orphan.h"
#include "outcome.h"
#include "pool.h"
#include "quarantine.h"
#include "ratelimit.h"
#include "revoked.h"
#include "stream.h"
#include "worker.h"

/* On CH_CONSUME, before its consumers: a stream that refuses our arguments closes the channel,
 * and reopening this one loses no confirm mode. */
static int results_declare(struct worker *w)
{
    int kept = 0;
    int rc = task__results_declare(w->conn, CH_CONSUME, w->cfg->results_max_age_s, &kept,
                                   &w->results_rest);
    if (rc == 0 && kept > 0)
        log_event(LV_WARN, 0, "stream_kept",
                  "streams=" TASK__RESULTS_PREFIX "* count=%d detail=\"declared before with "
                  "other arguments; results.max_age applies to them through a policy only\"",
                  kept);
    return rc;
}

int consumer_declare_rest(struct worker *w)
{
    if (!w->results_rest)
        return 0;
    w->results_rest = false;
    return task__results_declare_rest(w->conn, CH_PUBLISH, w->cfg->results_max_age_s);
}

int consumer_ask(struct worker *w)
{
    int rc = task__topo_ask_declare(&w->topo, w->conn, CH_PUBLISH, w->cfg->dead_queue, true);
    for (int i = 0; rc == 0 && i < w->cfg->queues.n; i++)
        rc = task__topo_ask_declare(&w->topo, w->conn, CH_DECLARE, w->cfg->queues.v[i], false);
    for (int i = 0; rc == 0 && i < w->cfg->queues.n; i++) {
        if (!delay_fits(w->cfg->queues.v[i])) {
            log_event(LV_WARN, 0, "delay_unavailable", "queue=%s reason=\"name longer than %d "
                      "bytes\" action=\"countdowns wait in memory\"",
                      log_v(w->cfg->queues.v[i]), DELAY_MAX_QUEUE);
            continue;
        }
        rc = delay_ask_bind(w, w->cfg->queues.v[i]);
    }
    return rc;
}

int consumer_start(struct worker *w)
{
    struct task__conn *c = w->conn;
    int rc = 0;
    if (w->cfg->results_stream)
        rc = results_declare(w);
    if (rc == 0)
        rc = revoked_load(w); /* before the first task arrives */
    if (rc == 0)
        rc = task__conn_qos(c, CH_CONSUME, (uint16_t)(w->prefetch > 65535 ? 65535 : w->prefetch));
    for (int i = 0; rc == 0 && i < w->cfg->queues.n && w->ntags < 32; i++) {
        w->tag_queues[w->ntags] = strdup(w->cfg->queues.v[i]);
        if (w->tag_queues[w->ntags] == NULL)
            return TASK_ENOMEM;
        rc = task__conn_consume(c, CH_CONSUME, w->cfg->queues.v[i], false, amqp_empty_table,
                                &w->tags[w->ntags++]);
    }
    w->win.apply = false; /* these consumers have it */
    return rc;
}

int consumer_refresh(struct worker *w)
{
    int rc = task__conn_qos_nowait(w->conn, CH_CONSUME,
                                   (uint16_t)(w->prefetch > 65535 ? 65535 : w->prefetch));
    for (int i = 0; rc == 0 && i < w->ntags; i++) {
        if (w->tags[i] == NULL)
            continue; /* cancelled by the broker: consumer_reconsume makes it anew */
        /* A single-active-consumer queue keeps its consumer: RabbitMQ 3.10 crashed such a queue
         * (rabbit_amqqueue_process badmatch) once while one was replaced under load. */
        if (task__topo_has_arg(&w->topo, w->tag_queues[i], "x-single-active-consumer"))
            continue;
        char name[32];
        snprintf(name, sizeof(name), "taskd.%u", ++w->win.gen);
        char *tag = strdup(name);
        if (tag == NULL)
            return TASK_ENOMEM;
        /* The new one first: a single-active-consumer queue stays with this worker. */
        rc = task__conn_consume_nowait(w->conn, CH_CONSUME, w->tag_queues[i], tag);
        if (rc == 0)
            rc = task__conn_cancel_nowait(w->conn, CH_CONSUME, w->tags[i]);
        free(w->old_tags[i]);
        w->old_tags[i] = w->tags[i];
        w->tags[i] = tag;
    }
    return rc;
}

void consumer_forget_tags(struct worker *w)
{
    for (int i = 0; i < w->ntags; i++) {
        free(w->tags[i]);
        free(w->tag_queues[i]);
        free(w->old_tags[i]);
        w->tags[i] = w->tag_queues[i] = w->old_tags[i] = NULL;
    }
    w->ntags = 0;
}

void consumer_cancel(struct worker *w)
{
    for (int i = 0; w->conn != NULL && i < w->ntags; i++) {
        if (w->tags[i] == NULL)
            continue; /* cancelled by the broker, not consumed again yet */
        amqp_basic_cancel(task__conn_amqp(w->conn), CH_CONSUME, amqp_cstring_bytes(w->tags[i]));
        int rc = task__conn_check(w->conn, amqp_get_rpc_reply(task__conn_amqp(w->conn)),
                                  "basic.cancel");
        if (rc != 0)
            log_event(LV_WARN, rc, "cancel_failed", "detail=\"%s\"", task__conn_errmsg(w->conn));
    }
}

void consumer_pause(struct worker *w)
{
    if (w->paused || w->conn == NULL || w->state != W_RUNNING)
        return;
    log_event(LV_ERROR, 0, "consuming_paused", "reason=\"no live pool child\" action=\"giving "
              "back waiting tasks; consuming again when a child runs\"");
    consumer_cancel(w);
    consumer_forget_tags(w);
    consumer_requeue_waiting(w);
    w->paused = true;
}

void consumer_resume(struct worker *w)
{
    if (!w->paused || w->conn == NULL || w->state != W_RUNNING)
        return;
    int rc = 0;
    for (int i = 0; rc == 0 && i < w->cfg->queues.n && w->ntags < 32; i++) {
        w->tag_queues[w->ntags] = strdup(w->cfg->queues.v[i]);
        if (w->tag_queues[w->ntags] == NULL)
            return;
        rc = task__conn_consume(w->conn, CH_CONSUME, w->cfg->queues.v[i], false,
                                amqp_empty_table, &w->tags[w->ntags++]);
    }
    w->paused = false;
    log_event(rc == 0 ? LV_INFO : LV_ERROR, rc, "consuming_resumed", "children=%d", pool_live(w));
}

void consumer_lost(struct worker *w, const char *tag)
{
    for (int i = 0; i < w->ntags; i++) {
        if (w->tags[i] == NULL || strcmp(w->tags[i], tag) != 0)
            continue;
        log_event(LV_WARN, 0, "consumer_cancelled_by_broker", "queue=%s action=\"declare and "
                  "consume again\"", log_v(w->tag_queues[i]));
        free(w->tags[i]);
        w->tags[i] = NULL;
        w->reconsume_at = task__now_mono() + 0.5;
    }
}

void consumer_reconsume(struct worker *w)
{
    if (w->reconsume_at <= 0 || task__now_mono() < w->reconsume_at || w->conn == NULL ||
        w->state != W_RUNNING || w->paused || w->blocked)
        return;
    w->reconsume_at = 0;
    task__topo_forget(&w->topo); /* the queue is gone: its declaration is not cached any more */
    for (int i = 0; i < w->ntags; i++) {
        if (w->tags[i] != NULL)
            continue;
        const char *q = w->tag_queues[i];
        int rc = declare_queue(w, q);
        if (rc == 0)
            rc = delay_bind_queue(w, q);
        if (rc == 0)
            rc = task__conn_consume(w->conn, CH_CONSUME, q, false, amqp_empty_table, &w->tags[i]);
        log_event(rc == 0 ? LV_INFO : LV_ERROR, rc, "consumer_restarted", "queue=%s%s", log_v(q),
                  rc == 0 ? "" : " action=\"retry in 2 s\"");
        if (rc != 0)
            w->reconsume_at = task__now_mono() + 2;
    }
}

/* The queue a delivery was consumed from, by its consumer tag. A routing key is no substitute:
 * the delay cascade's keys and exchange routes name no queue. */
static const char *queue_of(const struct worker *w, const struct task__delivery *d)
{
    for (int i = 0; d->consumer_tag != NULL && i < w->ntags; i++)
        if ((w->tags[i] != NULL && strcmp(w->tags[i], d->consumer_tag) == 0) ||
            (w->old_tags[i] != NULL && strcmp(w->old_tags[i], d->consumer_tag) == 0))
            return w->tag_queues[i];
    return NULL;
}

/* A job for a delivery of ours: it counts as in flight until outcome.c settles it. */
static struct job *new_job(struct worker *w, uint64_t dtag)
{
    struct job *job = job_new(dtag);
    if (job != NULL)
        w->inflight++;
    return job;
}

/* task-received once per delivery, as Celery: not again after an eta hold or a rate wait. */
static void announce(struct worker *w, struct job *job)
{
    if (!job->announced)
        events_task(w, "task-received", job, NULL);
    job->announced = true;
}

static void run(struct worker *w, struct job *job)
{
    announce(w, job);
    pool_submit(w, job);
}

/* Discard a task that must not run; the job takes over the delivery and the message. */
static void revoke_expired(struct worker *w, struct task__delivery *d, struct task__msg *m,
                           const char *why)
{
    struct job *job = new_job(w, d->tag);
    if (job == NULL) {
        (void)task__conn_reject(w->conn, CH_CONSUME, d->tag, true);
        return;
    }
    job->d = *d;
    job->m = *m;
    memset(d, 0, sizeof(*d));
    memset(m, 0, sizeof(*m));
    outcome_revoked(w, job, why);
}

static void hold(struct worker *w, struct task__delivery *d, double due)
{
    if (w->nheld == w->held_cap) {
        size_t cap = w->held_cap ? w->held_cap * 2 : 16;
        struct held *h = realloc(w->held, cap * sizeof(*h));
        if (h == NULL) {
            /* Cannot hold it: give it back to the broker. */
            (void)task__conn_reject(w->conn, CH_CONSUME, d->tag, true);
            task__delivery_free(d);
            return;
        }
        w->held = h;
        w->held_cap = cap;
    }
    w->held[w->nheld].due = due;
    w->held[w->nheld].d = *d;
    w->nheld++;
    memset(d, 0, sizeof(*d));
    /* No basic.qos to widen the window for it (Celery's way): RabbitMQ applies a per-consumer
     * prefetch to consumers created after it only, so it was a round trip per held message
     * that changed nothing. Held messages are due within a second (later ones go to the
     * broker's delay cascade), so they take a prefetch slot only briefly. */
}

/* Hand a task due later to the broker's delay cascade; ack once the broker has it. */
static void park(struct worker *w, struct task__delivery *d, const struct task__msg *m)
{
    struct job *job = new_job(w, d->tag);
    if (job == NULL) {
        (void)task__conn_reject(w->conn, CH_CONSUME, d->tag, true);
        return;
    }
    int rc = delay_park(w, job, d, m->eta);
    if (rc != 0) {
        log_event(LV_WARN, rc, "delay_failed", "task_id=%s action=hold", log_v(m->id));
        job->nacked = true;
    } else {
        w->n_delayed++;
        log_event(LV_DEBUG, 0, "task_delayed", "task=%s task_id=%s eta_in_s=%.3f", log_v(m->task),
                  log_v(m->id), m->eta - task__now_wall());
    }
    outcome_finish(w, job);
}

/* Decode, check and run one delivery. With `due_checked`, the eta has already passed. */
static void handle(struct worker *w, struct task__delivery *d, bool due_checked)
{
    struct task__msg m;
    enum task__bad reason = TASK_BAD_NONE;
    task_error err = {0};
    int rc = msgauth_decode(w, d, &m, &reason, &err);
    if (rc != 0) {
        quarantine(w, d, &m, reason, err.msg);
        goto out;
    }
    /* Back after our connection broke, while its first run goes on (or just ended) here. */
    struct job *ended = NULL;
    if (d->redelivered && orphan_adopt(w, d, m.id, &ended)) {
        if (ended != NULL)
            outcome_settle_kept(w, ended);
        goto out;
    }
    if (lease_copy_back(w, d, m.id))
        goto out;
    if (m.parent_id != NULL && strcmp(m.parent_id, ENDED_BEAT_PARENT) == 0 &&
        ended_lately(m.id)) {
        /* A beat tick sent again (a failover) under an id that ended here. */
        log_event(LV_WARN, 0, "duplicate_dropped", "task=%s task_id=%s detail=\"this id "
                  "reached a final state here lately\"", log_v(m.task), log_v(m.id));
        (void)task__conn_ack(w->conn, CH_CONSUME, d->tag, false);
        goto out;
    }
    if (task_registry_find(m.task) == NULL) {
        char detail[300];
        snprintf(detail, sizeof(detail), "no task named '%s' is registered", m.task);
        quarantine(w, d, &m, TASK_BAD_UNKNOWN_TASK, detail);
        goto out;
    }
    double now = task__now_wall();
    if (m.expires > 0 && m.expires <= now) {
        revoke_expired(w, d, &m, "expired");
        goto out;
    }
    if (revoked_has(w, m.id)) {
        revoke_expired(w, d, &m, "revoked");
        goto out;
    }
    if (!due_checked && m.eta > now + 1.0 && delay_fits(d->queue) && delay_usable(w)) {
        park(w, d, &m);
        goto out;
    }
    if (!due_checked && m.eta > now + 0.001) {
        events_task_msg(w, "task-received", &m); /* with its eta: inspect scheduled lists it */
        hold(w, d, m.eta); /* under a second (the cascade's granularity), or no cascade */
        goto out;
    }
    w->n_received++;
    metrics_received(w->metrics, m.task);
    struct job *job = new_job(w, d->tag);
    if (job == NULL) {
        (void)task__conn_reject(w->conn, CH_CONSUME, d->tag, true);
        goto out;
    }
    /* The job owns the delivery and the decoded message from here on. */
    job->d = *d;
    job->m = m;
    job->def = task_registry_find(m.task);
    job->announced = due_checked; /* out of an eta hold: task-received went out then */
    memset(d, 0, sizeof(*d));
    memset(&m, 0, sizeof(m));
    double wait = rate_take(w, job->m.task);
    if (wait > 0) {
        announce(w, job); /* received now (inspect reserved lists it), started at its token */
        rate_wait(w, job, wait);
    } else {
        run(w, job);
    }
    return;
out:
    task__msg_clear(&m);
    task__delivery_free(d);
}

void consumer_on_delivery(struct worker *w, struct task__delivery *d)
{
    const char *q = queue_of(w, d);
    d->queue = strdup(q != NULL ? q : d->routing_key);
    if (d->queue == NULL) {
        (void)task__conn_reject(w->conn, CH_CONSUME, d->tag, true);
        task__delivery_free(d);
        return;
    }
    if (d->msg.body.len > (size_t)w->cfg->max_message_bytes) {
        char detail[128];
        snprintf(detail, sizeof(detail), "body of %zu bytes exceeds worker.max_message_size %d",
                 d->msg.body.len, w->cfg->max_message_bytes);
        /* The body is not read, but the headers name the task, its id and the caller's reply
         * queue: the caller gets its FAILURE instead of waiting for ever (outside attack). */
        struct task__msg partial;
        enum task__bad reason;
        task_error err = {0};
        (void)task__msg_decode(&d->msg.properties, NULL, d->msg.body.len, &w->limits, &partial,
                               &reason, &err);
        quarantine(w, d, &partial, TASK_BAD_TOO_BIG, detail);
        task__msg_clear(&partial);
        task__delivery_free(d);
        return;
    }
    if (w->blocked) {
        /* Running it would publish (STARTED, quarantine, parking) to a broker that does not
         * read: it waits here, due at once, until the broker unblocks us. */
        hold(w, d, 0);
        return;
    }
    handle(w, d, false);
}

void consumer_release_due(struct worker *w)
{
    if (w->blocked)
        return;
    double now = task__now_wall();
    for (size_t i = 0; i < w->nheld;) {
        if (w->held[i].due > now) {
            i++;
            continue;
        }
        struct task__delivery d = w->held[i].d;
        w->held[i] = w->held[--w->nheld];
        handle(w, &d, true);
    }
}

void consumer_give_back(struct worker *w, double before)
{
    for (size_t i = 0; i < w->nheld;) {
        if (w->held[i].d.received >= before) {
            i++;
            continue;
        }
        struct job *job = new_job(w, w->held[i].d.tag);
        if (job == NULL)
            return; /* the next tick tries again */
        job->d = w->held[i].d;
        w->held[i] = w->held[--w->nheld];
        outcome_give_back(w, job);
    }
    outcome_give_back_chain(w, pool_take_backlog(w, before));
    outcome_give_back_chain(w, rate_take_waiting(w, before));
}

void consumer_requeue_waiting(struct worker *w)
{
    outcome_requeue_chain(w, pool_take_backlog(w, INFINITY));
    outcome_requeue_chain(w, rate_take_waiting(w, INFINITY));
}

void consumer_release_rate(struct worker *w)
{
    struct job *j = rate_release(w);
    while (j != NULL) {
        struct job *next = j->next;
        j->next = NULL;
        run(w, j);
        j = next;
    }
}

void consumer_on_live(struct worker *w, bool any)
{
    if (any)
        consumer_resume(w);
    else
        consumer_pause(w);
}

int consumer_next_due_ms(const struct worker *w)
{
    if (w->nheld == 0 || w->blocked)
        return -1;
    double first = w->held[0].due;
    for (size_t i = 1; i < w->nheld; i++) {
        if (w->held[i].due < first)
            first = w->held[i].due;
    }
    double ms = (first - task__now_wall()) * 1000.0;
    return ms <= 0 ? 0 : (int)ms + 1;
}

/* worker.queues with `add` appended or `drop` left out (either may be NULL), so a reconnect or
 * consumer_resume consumes what pidbox add_consumer / cancel_consumer left. */
static int set_queues(struct worker *w, const char *add, const char *drop)
{
    size_t size = 1 + (add != NULL ? strlen(add) + 1 : 0);
    for (int i = 0; i < w->cfg->queues.n; i++)
        size += strlen(w->cfg->queues.v[i]) + 1;
    char *list = malloc(size), *p = list;
    if (list == NULL)
        return TASK_ENOMEM;
    *p = '\0';
    for (int i = 0; i < w->cfg->queues.n; i++)
        if (drop == NULL || strcmp(w->cfg->queues.v[i], drop) != 0)
            p += sprintf(p, "%s%s", p == list ? "" : ",", w->cfg->queues.v[i]);
    if (add != NULL)
        sprintf(p, "%s%s", p == list ? "" : ",", add);
    task_error err = {0};
    int rc = task_config_set(w->cfg, "worker.queues", list, "pidbox", &err);
    if (rc != 0)
        log_event(LV_WARN, rc, "queues_update_failed", "detail=\"%s\"", err.msg);
    free(list);
    return rc;
}

static int tag_index(const struct worker *w, const char *queue)
{
    for (int i = 0; i < w->ntags; i++)
        if (w->tag_queues[i] != NULL && strcmp(w->tag_queues[i], queue) == 0)
            return i;
    return -1;
}

bool consumer_has_queue(const struct worker *w, const char *queue)
{
    for (int i = 0; i < w->cfg->queues.n; i++)
        if (strcmp(w->cfg->queues.v[i], queue) == 0)
            return true;
    return false;
}

int consumer_add_queue(struct worker *w, const char *queue)
{
    if (consumer_has_queue(w, queue))
        return 0;
    if (w->cfg->queues.n >= 32 || strchr(queue, ',') != NULL)
        return TASK_EINVAL; /* w->tags holds 32; a comma would split it in worker.queues */
    if (strcmp(queue, w->cfg->dead_queue) == 0)
        return TASK_EINVAL; /* its messages would be quarantined there again, for ever */
    int rc = set_queues(w, queue, NULL);
    if (rc != 0 || w->conn == NULL || w->paused)
        return rc; /* consumed when the connection (or a pool child) is back */
    rc = declare_queue(w, queue);
    if (rc == 0 && delay_fits(queue))
        rc = delay_bind_queue(w, queue);
    if (rc == 0) {
        w->tag_queues[w->ntags] = strdup(queue);
        if (w->tag_queues[w->ntags] == NULL)
            rc = TASK_ENOMEM;
    }
    if (rc == 0)
        rc = task__conn_consume(w->conn, CH_CONSUME, queue, false, amqp_empty_table,
                                &w->tags[w->ntags++]);
    if (rc != 0)
        (void)set_queues(w, NULL, queue); /* not consumed: not kept either */
    if (rc == 0)
        log_event(LV_INFO, 0, "consumer_added", "queue=%s", log_v(queue));
    else
        log_event(LV_WARN, rc, "consumer_add_failed", "queue=%s detail=\"%s\"", log_v(queue),
                  task__conn_errmsg(w->conn));
    return rc;
}

int consumer_cancel_queue(struct worker *w, const char *queue)
{
    if (!consumer_has_queue(w, queue))
        return TASK_ENOTFOUND;
    int rc = set_queues(w, NULL, queue);
    int i = tag_index(w, queue);
    if (rc != 0 || i < 0)
        return rc;
    if (w->tags[i] != NULL && w->conn != NULL) {
        /* Deliveries already here stay ours and run, as with Celery. */
        amqp_basic_cancel(task__conn_amqp(w->conn), CH_CONSUME, amqp_cstring_bytes(w->tags[i]));
        rc = task__conn_check(w->conn, amqp_get_rpc_reply(task__conn_amqp(w->conn)),
                              "basic.cancel");
    }
    free(w->tags[i]);
    free(w->tag_queues[i]);
    free(w->old_tags[i]);
    w->ntags--;
    w->tags[i] = w->tags[w->ntags];
    w->tag_queues[i] = w->tag_queues[w->ntags];
    w->old_tags[i] = w->old_tags[w->ntags];
    w->tags[w->ntags] = w->tag_queues[w->ntags] = w->old_tags[w->ntags] = NULL;
    log_event(rc == 0 ? LV_INFO : LV_WARN, rc, rc == 0 ? "consumer_cancelled" : "cancel_failed",
              "queue=%s", log_v(queue));
    return rc;
}
