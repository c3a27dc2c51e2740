/*
 * quarantine.c - bad input is never dropped and never loops: the message is copied, body and
 * properties unchanged plus an x-taskd-error header, to the durable dead queue; the original is
 * acked only after that copy is confirmed. When the message names a task id and a reply queue,
 * the caller also gets a FAILURE at once instead of waiting forever.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "log.h"
#include "metrics.h"
#include "outcome.h"
#include "publisher.h"
#include "quarantine.h"
#include "worker.h"

#define MAX_HDR 64 /* headers that fit the stack copy; more take the heap */

/* Properties of `d` with x-taskd-error (and x-taskd-queue) added to its headers. `entries`
 * holds the original headers + 2. */
static void build_props(const struct task__delivery *d, amqp_basic_properties_t *p,
                        amqp_table_entry_t *entries, const char *reason, const char *queue)
{
    *p = d->msg.properties;
    int n = 0;
    if (p->_flags & AMQP_BASIC_HEADERS_FLAG) {
        for (int i = 0; i < p->headers.num_entries; i++) {
            const amqp_table_entry_t *e = &p->headers.entries[i];
            /* A re-quarantined message gets a fresh reason, not two. */
            if (e->key.len == 13 && memcmp(e->key.bytes, "x-taskd-error", 13) == 0)
                continue;
            if (e->key.len == 13 && memcmp(e->key.bytes, "x-taskd-queue", 13) == 0)
                continue;
            entries[n++] = *e;
        }
    }
    entries[n].key = amqp_cstring_bytes("x-taskd-error");
    entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[n].value.value.bytes = amqp_cstring_bytes(reason);
    n++;
    entries[n].key = amqp_cstring_bytes("x-taskd-queue");
    entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[n].value.value.bytes = amqp_cstring_bytes(queue);
    n++;
    p->headers.num_entries = n;
    p->headers.entries = entries;
    p->_flags |= AMQP_BASIC_HEADERS_FLAG;
    /* The copy must outlive a broker restart like the task it stands for. */
    p->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
    p->delivery_mode = 2;
    /* An expiration would let the broker drop the evidence. */
    p->_flags &= ~(amqp_flags_t)AMQP_BASIC_EXPIRATION_FLAG;
}

static json_object *failure_for(const struct task__msg *m, enum task__bad reason,
                                const char *detail)
{
    if (reason == TASK_BAD_UNKNOWN_TASK)
        return task__exc_new("NotRegistered", m->task ? m->task : "", "celery.exceptions");
    char text[512];
    snprintf(text, sizeof(text), "%s: %s", task__bad_slug(reason), detail);
    if (reason >= TASK_BAD_UNSIGNED && reason <= TASK_BAD_SIGNATURE)
        return task__exc_new("SecurityError", text, "celery.exceptions");
    return task__exc_new("ContentDisallowed", text, "kombu.exceptions");
}

void quarantine(struct worker *w, struct task__delivery *d, const struct task__msg *partial,
                enum task__bad reason, const char *detail)
{
    struct job *job = job_new(d->tag);
    if (job == NULL) {
        /* Cannot track it: leave it unacked; the broker redelivers after we reconnect. */
        log_event(LV_ERROR, TASK_ENOMEM, "quarantine_failed", "delivery_tag=%llu",
                  (unsigned long long)d->tag);
        return;
    }
    w->inflight++; /* settled by outcome.c */
    w->n_quarantined++;
    metrics_rejected(w->metrics, (int)reason);

    char why[640];
    snprintf(why, sizeof(why), "%s: %s", task__bad_slug(reason), detail);
    amqp_basic_properties_t props;
    /* Every header goes with the copy: a stack of 64 used to drop the ones past it. */
    amqp_table_entry_t stack[MAX_HDR], *entries = stack;
    const amqp_basic_properties_t *in = &d->msg.properties;
    size_t need = 2;
    if (in->_flags & AMQP_BASIC_HEADERS_FLAG)
        need += (size_t)in->headers.num_entries;
    if (need > MAX_HDR && (entries = malloc(need * sizeof(*entries))) == NULL) {
        log_event(LV_ERROR, TASK_ENOMEM, "quarantine_failed", "delivery_tag=%llu headers=%zu",
                  (unsigned long long)d->tag, need - 2);
        job->nacked = true; /* back to the queue rather than a copy without its headers */
        outcome_finish(w, job);
        return;
    }
    build_props(d, &props, entries, why, d->queue ? d->queue : d->routing_key);
    int rc = pub_send_mandatory(w, job, "", w->cfg->dead_queue, &props, d->msg.body.bytes,
                      d->msg.body.len);
    if (entries != stack)
        free(entries); /* pub_send has serialised the frame */
    log_event(rc == 0 ? LV_WARN : LV_ERROR, rc, "message_quarantined",
              "reason=%s queue=%s dead_queue=%s task=%s task_id=%s detail=%s",
              task__bad_slug(reason), log_v(d->queue ? d->queue : d->routing_key),
              w->cfg->dead_queue,
              log_v(partial && partial->task ? partial->task : "-"),
              log_v(partial && partial->id ? partial->id : "-"), log_v(detail));
    if (rc != 0) {
        /* Not confirmed into the dead queue: requeue rather than lose it. */
        job->nacked = true;
        outcome_finish(w, job);
        return;
    }
    if (partial != NULL && partial->id != NULL && partial->reply_to != NULL) {
        json_object *exc = failure_for(partial, reason, detail);
        struct task__msg m = *partial;
        m.ignore_result = false;
        /* A caller that sent it unsigned most likely cannot verify a signed answer either (a
         * plain Celery app refuses application/data): it gets this one FAILURE unsigned. A
         * forged unsigned reply can only fail a wait, and a signing caller refuses it. */
        struct task__sec *sec = w->sec;
        if (reason == TASK_BAD_UNSIGNED)
            w->sec = NULL;
        (void)pub_result(w, job, &m, "FAILURE", exc, NULL, 0);
        w->sec = sec;
        json_object_put(exc);
    }
    outcome_finish(w, job);
}
