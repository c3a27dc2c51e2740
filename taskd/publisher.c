/* publisher.c - publishes on the confirm channel and acks deliveries once their publishes are
 * confirmed (acks late: a result is never lost between the worker and the broker). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <task/client.h>
#include "log.h"
#include "publisher.h"
#include "signing.h"
#include "worker.h"

static int pend_push(struct worker *w, uint64_t seq, struct job *job, struct job **batch,
                     int nbatch, bool soft)
{
    if (w->pend_len == w->pend_cap) {
        size_t cap = w->pend_cap ? w->pend_cap * 2 : 256;
        struct pending *p = malloc(cap * sizeof(*p));
        if (p == NULL)
            return TASK_ENOMEM;
        for (size_t i = 0; i < w->pend_len; i++)
            p[i] = w->pend[(w->pend_head + i) % w->pend_cap];
        free(w->pend);
        w->pend = p;
        w->pend_cap = cap;
        w->pend_head = 0;
    }
    w->pend[(w->pend_head + w->pend_len) % w->pend_cap] = (struct pending){seq, job, batch, nbatch, soft};
    w->pend_len++;
    return 0;
}

static int send_tracked(struct worker *w, struct job *job, bool mandatory, bool soft,
                        const char *exchange,
                        const char *rk, const amqp_basic_properties_t *props, const void *body,
                        size_t len)
{
    uint64_t seq = 0;
    int rc = mandatory ? task__conn_publish_mandatory(w->conn, CH_PUBLISH, exchange, rk, props,
                                                      body, len, &seq)
                       : task__conn_publish(w->conn, CH_PUBLISH, exchange, rk, props, body, len,
                                            &seq);
    if (rc != 0)
        return rc;
    rc = pend_push(w, seq, job, NULL, 0, soft);
    if (rc != 0)
        return rc;
    if (job != NULL)
        job->waits++;
    return 0;
}

int pub_send(struct worker *w, struct job *job, const char *exchange, const char *rk,
             const amqp_basic_properties_t *props, const void *body, size_t len)
{
    return send_tracked(w, job, false, false, exchange, rk, props, body, len);
}

int pub_send_mandatory(struct worker *w, struct job *job, const char *exchange, const char *rk,
                       const amqp_basic_properties_t *props, const void *body, size_t len)
{
    return send_tracked(w, job, true, false, exchange, rk, props, body, len);
}

void pub_on_return(struct worker *w)
{
    log_event(LV_WARN, 0, "publish_returned", "detail=\"no queue took a mandatory message\"");
    w->returned = true;
    /* A queue we declared earlier is gone (deleted, expired): declare again before the next
     * try, or the requeued task would bounce off the same missing queue forever (the delay
     * cascade too: the supervisor tells delay.c). */
    task__topo_forget(&w->topo);
}

static void settle_job(struct worker *w, struct job *job, bool nack)
{
    if (job == NULL)
        return;
    if (nack)
        job->nacked = true;
    job->waits--;
    if (job->done && job->waits == 0)
        w->settled(w, job); /* the layer above acks or requeues it */
}

static void settle_one(struct worker *w, struct pending *p, bool nack)
{
    struct job *job = p->job;
    struct job **batch = p->batch;
    int n = p->nbatch;
    if (nack && p->soft) {
        /* The caller's reply queue refused it (a length limit that rejects, say): the result is
         * still in the results stream. Requeueing would run the task again, and again. */
        log_event(LV_WARN, 0, "reply_nacked", "task_id=%s action=\"kept in the results "
                  "stream\"", job != NULL ? log_v(job->m.id) : "-");
        nack = false;
    }
    p->job = NULL;
    p->batch = NULL;
    p->nbatch = 0;
    p->seq = 0;
    settle_job(w, job, nack);
    for (int i = 0; i < n; i++)
        settle_job(w, batch[i], nack);
    free(batch);
}

void pub_on_confirm(struct worker *w, uint64_t tag, bool multiple, bool nack)
{
    /* The broker confirms a returned message right after its basic.return. A multiple confirm
     * may cover others too; they are requeued with it, which at worst runs them again. */
    nack = nack || w->returned;
    w->returned = false;
    if (nack)
        log_event(LV_WARN, 0, "publish_nacked", "seq=%llu multiple=%d", (unsigned long long)tag,
                  (int)multiple);
    for (size_t i = 0; i < w->pend_len; i++) {
        struct pending *p = &w->pend[(w->pend_head + i) % w->pend_cap];
        if (p->seq == 0)
            continue;
        if (p->seq > tag)
            break;
        if (multiple || p->seq == tag)
            settle_one(w, p, nack);
    }
    /* Drop settled entries from the front; confirms mostly arrive in order. */
    while (w->pend_len > 0 && w->pend[w->pend_head].seq == 0) {
        w->pend_head = (w->pend_head + 1) % w->pend_cap;
        w->pend_len--;
    }
}

static void flush_one(struct worker *w, struct stream_batch *b, unsigned partition);

/* Queue one state record for its results stream; the job's ack waits for the batch. */
static int batch_add(struct worker *w, struct job *job, const char *id, const char *rec,
                     size_t len)
{
    struct stream_batch *b = &w->batch[task__results_partition(id)];
    if (b->len + len + 2 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + len + 2)
            cap *= 2;
        char *p = realloc(b->body, cap);
        if (p == NULL)
            return TASK_ENOMEM;
        b->body = p;
        b->cap = cap;
    }
    if (b->count == 0)
        b->first_at = task__now_mono();
    b->body[b->len++] = b->count == 0 ? '[' : ',';
    memcpy(b->body + b->len, rec, len);
    b->len += len;
    b->count++;
    if (job != NULL) {
        if (b->njobs == b->cap_jobs) {
            int cap = b->cap_jobs ? b->cap_jobs * 2 : 64;
            struct job **j = realloc(b->jobs, (size_t)cap * sizeof(*j));
            if (j == NULL)
                return TASK_ENOMEM;
            b->jobs = j;
            b->cap_jobs = cap;
        }
        b->jobs[b->njobs++] = job;
        job->waits++;
    }
    /* Keep one message well under the frame and body limits. */
    if (b->len > 512 * 1024)
        flush_one(w, b, (unsigned)(b - w->batch));
    return 0;
}

static int publish_state(struct worker *w, struct job *job, const struct task__msg *m,
                         const char *status, json_object *result, const char *traceback,
                         int delivery_count, bool final);

int pub_result(struct worker *w, struct job *job, const struct task__msg *m, const char *status,
               json_object *result, const char *traceback, int delivery_count)
{
    bool final = strcmp(status, "SUCCESS") == 0 || strcmp(status, "FAILURE") == 0 ||
                 strcmp(status, "REVOKED") == 0;
    if (m->ignore_result || m->id == NULL)
        return 0;
    int rc = publish_state(w, job, m, status, result, traceback, delivery_count, final);
    /* An outcome that did not reach the broker must not be acked away: the delivery goes back
     * to the queue and runs again (at-least-once). */
    if (rc != 0 && job != NULL)
        job->nacked = true;
    return rc;
}

/* The reply goes signed when signing is on (the caller's AsyncResult accepts only 'auth'); the
 * results stream keeps the plain record: its readers are lookups, not Celery. */
static int send_reply(struct worker *w, struct job *job, const struct task__msg *m,
                      const struct task__result_wire *rw)
{
    bool stream = w->cfg->results_stream;
    if (w->sec == NULL)
        return send_tracked(w, job, false, stream, "", m->reply_to, &rw->props, rw->body,
                            rw->body_len);
    struct task__result_wire sealed = *rw;
    task_error err = {0};
    int rc = (sealed.body = malloc(rw->body_len + 1)) == NULL ? TASK_ENOMEM : 0;
    if (rc == 0) {
        memcpy(sealed.body, rw->body, rw->body_len + 1);
        rc = task__result_wire_seal(w->sec, &sealed, &err);
    }
    if (rc == 0)
        rc = send_tracked(w, job, false, stream, "", m->reply_to, &sealed.props, sealed.body,
                          sealed.body_len);
    else
        log_event(LV_ERROR, rc, "result_sign_failed", "task_id=%s detail=%s", log_v(m->id),
                  log_v(err.msg));
    free(sealed.body);
    return rc;
}

static int publish_state(struct worker *w, struct job *job, const struct task__msg *m,
                         const char *status, json_object *result, const char *traceback,
                         int delivery_count, bool final)
{
    struct task__result r = {
        .task_id = m->id,
        .status = (char *)status,
        .result = result,
        .traceback = (char *)traceback,
        .delivery_count = delivery_count,
        .hostname = w->hostname,
    };
    /* When it ended: for `taskctl result` and lookups; Python's AsyncResult.date_done reads it. */
    if (final)
        r.date_done = task__now_wall();
    struct task__result_wire rw;
    task_error err = {0};
    int rc = task__result_encode(&r, &rw, &err);
    if (rc != 0) {
        log_event(LV_ERROR, rc, "result_encode_failed", "task_id=%s detail=%s", log_v(m->id),
                  log_v(err.msg));
        return rc;
    }
    /* The caller's reply queue for task_wait()/AsyncResult.get(), and the results stream for
     * lookups from any process. The delivery is acked only when both are confirmed. */
    /* With the results stream on, a refused reply costs the caller's rpc wait, not the result. */
    bool fits = strlen(m->id) <= 255 && m->reply_to != NULL && strlen(m->reply_to) <= 255;
    if (m->reply_to != NULL && m->reply_to[0] != '\0' && !fits)
        /* AMQP cannot carry it (a quarantined message's id); the stream record still goes. */
        log_event(LV_WARN, 0, "reply_skipped", "task_id=%s reason=\"id or reply_to longer than "
                  "255 bytes\"", log_v(m->id));
    else if (m->reply_to != NULL && m->reply_to[0] != '\0')
        rc = send_reply(w, job, m, &rw);
    if (rc == 0 && w->cfg->results_stream)
        rc = batch_add(w, job, m->id, rw.body, rw.body_len);
    task__result_wire_free(&rw);
    return rc;
}

void pub_drop_batch(struct worker *w)
{
    for (unsigned i = 0; i < TASK__RESULTS_PARTITIONS; i++) {
        struct stream_batch *b = &w->batch[i];
        free(b->body);
        free(b->jobs);
        memset(b, 0, sizeof(*b));
    }
}

static void flush_one(struct worker *w, struct stream_batch *b, unsigned partition)
{
    if (b->count == 0)
        return;
    b->body[b->len++] = ']';
    amqp_basic_properties_t p = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG |
                  AMQP_BASIC_DELIVERY_MODE_FLAG,
        .content_type = amqp_cstring_bytes("application/json"),
        .content_encoding = amqp_cstring_bytes("utf-8"),
        .delivery_mode = 2,
    };
    uint64_t seq = 0;
    char name[32];
    int rc = task__conn_publish(w->conn, CH_PUBLISH, "", task__results_name(partition, name), &p,
                                b->body, b->len, &seq);
    struct job **jobs = b->jobs;
    int n = b->njobs;
    b->jobs = NULL;
    b->njobs = b->cap_jobs = 0;
    b->len = 0;
    b->count = 0;
    if (rc != 0 || pend_push(w, seq, NULL, jobs, n, false) != 0) {
        /* Unpublished: requeue the deliveries rather than ack without a record. */
        for (int i = 0; i < n; i++)
            settle_job(w, jobs[i], true);
        free(jobs);
    }
}

void pub_flush_stream(struct worker *w)
{
    if (w->blocked)
        return; /* the records wait in the batch */
    double now = task__now_mono(), due = now - PUB_STREAM_LINGER_S;
    /* Quiet (nothing flushed lately): at once, as a lookup right after a reply expects. */
    bool all = w->stream_flushed_at <= due;
    for (unsigned i = 0; i < TASK__RESULTS_PARTITIONS; i++) {
        struct stream_batch *b = &w->batch[i];
        if (b->count > 0 && (all || b->count >= PUB_STREAM_BATCH_MAX || b->first_at <= due)) {
            flush_one(w, b, i);
            w->stream_flushed_at = now;
        }
    }
}

int pub_stream_next_ms(const struct worker *w)
{
    double first = INFINITY;
    for (unsigned i = 0; i < TASK__RESULTS_PARTITIONS; i++)
        if (w->batch[i].count > 0 && w->batch[i].first_at < first)
            first = w->batch[i].first_at;
    if (first == INFINITY || w->blocked)
        return -1;
    double ms = (first + PUB_STREAM_LINGER_S - task__now_mono()) * 1000;
    return ms <= 0 ? 0 : (int)ceil(ms);
}
