/* lease.c - see lease.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lease.h"
#include "log.h"
#include "msgcopy.h"
#include "txchan.h"

/* taskd.lease.<id>; an id too long for a queue name (255 bytes) keeps its first 200 bytes
 * and gets a 64-bit FNV-1a hash of the whole id after them. */
static bool lease_name(const struct job *job, char *buf, size_t size)
{
    const char *id = job->m.id;
    if (id == NULL || size < 256)
        return false;
    int n = snprintf(buf, size, LEASE_PREFIX "%s", id);
    if (n > 0 && n <= 255)
        return true;
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    n = snprintf(buf, size, LEASE_PREFIX "%.200s.%016llx", id, (unsigned long long)h);
    return n > 0 && n <= 255;
}

/* Renewals of a queue whose TTL we do not know (declared by another worker): often enough for
 * the shortest lease a worker accepts (10 s). */
#define KEPT_RENEW_S 3.0

static double renew_every(const struct job *job)
{
    return job->lease_kept ? KEPT_RENEW_S : job->lease_s / 3;
}

/* Messages in the lease queue go back to the task's queue when they expire; the queue goes
 * after two leases without a renewal (basic.get and redeclares count as use). */
static int declare(struct worker *w, struct job *job, const char *name)
{
    int64_t lease_ms = (int64_t)(job->lease_s * 1000);
    amqp_table_entry_t e[4] = {
        {.key = amqp_cstring_bytes("x-message-ttl"),
         .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = lease_ms}},
        {.key = amqp_cstring_bytes("x-expires"),
         .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = 2 * lease_ms}},
        {.key = amqp_cstring_bytes("x-dead-letter-exchange"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("")}},
        {.key = amqp_cstring_bytes("x-dead-letter-routing-key"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(job->d.queue)}},
    };
    amqp_table_t args = {.num_entries = 4, .entries = e};
    uint16_t refused = 0;
    int rc = task__conn_declare_probe(w->conn, CH_LEASE, name, false, args, NULL, &refused);
    if (rc == 0 || refused == 0)
        return rc;
    /* The broker closed the channel (answered). 406: the queue exists with other arguments
     * (declared by a worker with another worker.lease, or before a reload): take it as it
     * is, its own TTL governs; asking again with ours would be refused for ever. */
    w->lease_ready = false;
    if (refused != 406) {
        log_event(LV_ERROR, TASK_EBROKER, "lease_declare_refused", "queue=%s code=%u detail=\"%s\"",
                  log_v(name), (unsigned)refused, task__conn_errmsg(w->conn));
        task__conn_clear_error(w->conn);
        return TASK_EBROKER;
    }
    task__conn_clear_error(w->conn);
    rc = txchan_open(w->conn, CH_LEASE, &w->lease_ready);
    if (rc == 0)
        rc = task__conn_declare_probe(w->conn, CH_LEASE, name, true, amqp_empty_table, NULL,
                                      &refused);
    if (rc != 0 && refused != 0) {
        w->lease_ready = false;
        task__conn_clear_error(w->conn);
    }
    if (rc == 0 && !job->lease_kept)
        log_event(LV_INFO, 0, "lease_queue_kept", "queue=%s reason=\"declared before with "
                  "other arguments\" renew_every_s=%g", log_v(name), KEPT_RENEW_S);
    job->lease_kept |= rc == 0;
    return rc;
}

/* Publish a copy of the job's message to `rk` (in the open transaction). Its delivery count
 * goes with it, so a crash loop is still seen as one after the copy comes back. */
static int publish_copy(struct worker *w, const struct job *job, const char *rk, int seq)
{
    amqp_table_entry_t extra[2] = {
        {.key = amqp_cstring_bytes("x-taskd-delivery-count"),
         .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = delivery_count(&job->d)}},
        {.key = amqp_cstring_bytes("x-taskd-lease"),
         .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = seq}},
    };
    amqp_basic_properties_t p;
    amqp_table_entry_t *kept;
    int rc = msgcopy_props(&job->d.msg.properties, extra, seq > 0 ? 2 : 1, &p, &kept);
    if (rc != 0)
        return rc;
    p._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.delivery_mode = 2;
    rc = task__conn_publish(w->conn, CH_LEASE, "", rk, &p, job->d.msg.body.bytes,
                            job->d.msg.body.len, NULL);
    free(kept);
    return rc;
}

static void failed(struct worker *w, const struct job *job, const char *event, int rc,
                   const char *action)
{
    log_event(LV_ERROR, rc, event, "task_id=%s detail=\"%s\" action=\"%s\"", log_v(job->m.id),
              task__conn_errmsg(w->conn), action);
    if (w->lease_ready)
        txchan_reset(w->conn, CH_LEASE, &w->lease_ready);
    else
        task__conn_clear_error(w->conn); /* the refusal was answered where it came */
}

static void take(struct worker *w, struct job *job, double now)
{
    char name[300];
    if (!lease_name(job, name, sizeof(name))) {
        job->lease_renew_at = 1e300; /* said once */
        log_event(LV_WARN, 0, "lease_unavailable", "task_id=%s reason=\"no task id\" "
                  "action=\"stays unacked; the broker's consumer_timeout may end it\"",
                  log_v(job->m.id));
        return;
    }
    if (job->lease_s <= 0)
        job->lease_s = w->cfg->lease_s; /* kept for this task's lease, whatever a reload says */
    int rc = txchan_open(w->conn, CH_LEASE, &w->lease_ready);
    if (rc == 0)
        rc = declare(w, job, name);
    if (rc == 0)
        rc = publish_copy(w, job, name, 1);
    if (rc == 0)
        rc = txchan_commit(w->conn, CH_LEASE);
    if (rc == 0)
        rc = task__conn_ack(w->conn, CH_CONSUME, job->dtag, false);
    if (rc != 0) {
        failed(w, job, "lease_failed", rc, "try again in 1 s");
        return;
    }
    job->leased = true;
    job->lease_seq = 1;
    job->lease_renew_at = now + renew_every(job);
    w->inflight--; /* acked: no longer holds a prefetch slot */
    log_event(LV_INFO, 0, "task_leased", "task=%s task_id=%s queue=%s lease_s=%g held_s=%.1f",
              log_v(job->m.task), log_v(job->m.id), log_v(job->d.queue), job->lease_s,
              now - job->d.received);
}

static int lease_seq_of(const amqp_basic_properties_t *p)
{
    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return -1;
    for (int i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        if (msgcopy_key_is(e->key, "x-taskd-lease") && e->value.kind == AMQP_FIELD_KIND_I32)
            return e->value.value.i32;
    }
    return -1;
}

/* Take the oldest copy off the lease queue (in the open transaction): the previous one, unless
 * it expired meanwhile (the loop stalled for most of a lease) and went back to the queue. */
static int drop_old(struct worker *w, const struct job *job, const char *name, int old)
{
    amqp_connection_state_t st = task__conn_amqp(w->conn);
    amqp_rpc_reply_t r = amqp_basic_get(st, CH_LEASE, amqp_cstring_bytes(name), 0);
    int rc = task__conn_check(w->conn, r, "basic.get lease");
    if (rc != 0 || r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
        return rc;
    uint64_t tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
    amqp_message_t msg;
    rc = task__conn_check(w->conn, amqp_read_message(st, CH_LEASE, &msg, 0), "read lease");
    if (rc != 0)
        return rc;
    int seq = lease_seq_of(&msg.properties);
    amqp_destroy_message(&msg);
    if (seq == old)
        return task__conn_ack(w->conn, CH_LEASE, tag, false);
    log_event(LV_WARN, 0, "lease_lapsed", "task_id=%s detail=\"the copy expired before it was "
              "renewed and went back to its queue\" action=\"it may run again\"",
              log_v(job->m.id));
    return task__conn_reject(w->conn, CH_LEASE, tag, true);
}

static void renew(struct worker *w, struct job *job, double now)
{
    char name[300];
    (void)lease_name(job, name, sizeof(name));
    /* Declared again: an operator may have deleted it, and a copy published to no queue would
     * be dropped without a word. */
    int rc = txchan_open(w->conn, CH_LEASE, &w->lease_ready);
    if (rc == 0)
        rc = declare(w, job, name);
    if (rc == 0)
        rc = publish_copy(w, job, name, job->lease_seq + 1);
    if (rc == 0)
        rc = txchan_commit(w->conn, CH_LEASE);
    if (rc == 0) {
        job->lease_seq++; /* the new copy is in: from here a failure leaves two, never none */
        job->lease_renew_at = now + renew_every(job);
        rc = drop_old(w, job, name, job->lease_seq - 1);
    }
    if (rc == 0)
        rc = txchan_commit(w->conn, CH_LEASE);
    if (rc != 0) {
        job->lease_renew_at = now + 1;
        failed(w, job, "lease_renew_failed", rc, "try again in 1 s");
        return;
    }
    log_event(LV_DEBUG, 0, "lease_renewed", "task_id=%s seq=%d", log_v(job->m.id),
              job->lease_seq);
}

static void remember_ended(struct worker *w, const char *id)
{
    unsigned i = w->lease_done_next++ % 256;
    free(w->lease_done[i]);
    w->lease_done[i] = strdup(id);
    w->lease_done_at[i] = task__now_mono();
}

static bool ended_lately(const struct worker *w, const char *id)
{
    /* Two leases: a copy committed just before an error can come back that much later. */
    double since = task__now_mono() - 2 * w->cfg->lease_s - 60;
    for (unsigned i = 0; i < 256; i++)
        if (w->lease_done[i] != NULL && w->lease_done_at[i] > since &&
            strcmp(w->lease_done[i], id) == 0)
            return true;
    return false;
}

void lease_ran(struct worker *w, const struct job *job)
{
    if ((job->leased || job->lease_dangling) && job->m.id != NULL)
        remember_ended(w, job->m.id);
}

void lease_end(struct worker *w, struct job *job)
{
    char name[300];
    if ((!job->leased && !job->lease_dangling) || w->conn == NULL ||
        !lease_name(job, name, sizeof(name)))
        return;
    if (!job->nacked)
        remember_ended(w, job->m.id);
    int rc = txchan_open(w->conn, CH_LEASE, &w->lease_ready);
    if (rc == 0) {
        amqp_queue_delete(task__conn_amqp(w->conn), CH_LEASE, amqp_cstring_bytes(name), 0, 0);
        rc = task__conn_check(w->conn, amqp_get_rpc_reply(task__conn_amqp(w->conn)), name);
    }
    if (rc != 0)
        failed(w, job, "lease_end_failed", rc, "its copy runs again after the lease");
}

void lease_return(struct worker *w, struct job *job)
{
    if (!job->leased || w->conn == NULL)
        return;
    int rc = txchan_open(w->conn, CH_LEASE, &w->lease_ready);
    if (rc == 0)
        rc = publish_copy(w, job, job->d.queue, 0);
    if (rc == 0)
        rc = txchan_commit(w->conn, CH_LEASE);
    if (rc != 0) {
        failed(w, job, "lease_return_failed", rc, "it runs again after the lease");
        return;
    }
    log_event(LV_INFO, 0, "task_requeued", "task=%s task_id=%s reason=lease_returned",
              log_v(job->m.task), log_v(job->m.id));
    lease_end(w, job);
}

void lease_at_start(struct worker *w, struct job *job)
{
    if (w->cfg->lease_after_s > 0 || w->conn == NULL || !task__conn_alive(w->conn) ||
        w->blocked || job->leased)
        return;
    take(w, job, task__now_mono());
}

static void tick_running(struct worker *w, double now)
{
    /* A blocked broker reads nothing from us (a memory or disk alarm): a lease's publish and
     * tx.commit would wait out the call timeout and drop the connection, and every unacked
     * task with it (outside attack: 6 tasks ran twice). The steps wait for the unblock. */
    if (w->blocked)
        return;
    double after = w->cfg->lease_after_s;
    for (int i = 0; i < w->pool.n; i++) {
        for (struct job *j = w->pool.ch[i].running; j != NULL; j = j->next) {
            if (j->orphan || j->done || !task__conn_alive(w->conn))
                continue;
            if (!j->leased && now - j->d.received >= after && now >= j->lease_renew_at)
                take(w, j, now);
            else if (j->leased && now >= j->lease_renew_at)
                renew(w, j, now);
        }
    }
}

void lease_tick(struct worker *w, double now)
{
    tick_running(w, now);
}

static bool is_lease_copy(const struct task__delivery *d)
{
    const amqp_basic_properties_t *p = &d->msg.properties;
    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return false;
    for (int i = 0; i < p->headers.num_entries; i++)
        if (msgcopy_key_is(p->headers.entries[i].key, "x-taskd-lease"))
            return true;
    return false;
}

static struct job *running_here(struct worker *w, const char *id)
{
    for (int i = 0; i < w->pool.n; i++)
        for (struct job *j = w->pool.ch[i].running; j != NULL; j = j->next)
            if (!j->orphan && j->m.id != NULL && strcmp(j->m.id, id) == 0)
                return j;
    return NULL;
}

/* The task's own delivery, back although it was acked when the task was leased: a broker
 * killed right after the lease's commit had not written the ack down (a classic queue writes
 * it later). The lease copy holds the task: this one is dropped, or it would run twice. */
static bool original_back(struct worker *w, struct task__delivery *d, const char *id)
{
    if (!d->redelivered)
        return false; /* sent anew under the same id: it runs */
    struct job *j = running_here(w, id);
    if (!(j != NULL && j->leased) && !(j == NULL && ended_lately(w, id)))
        return false;
    log_event(LV_WARN, 0, "lease_original_dropped", "task_id=%s detail=\"its delivery came back "
              "after it was leased (the broker lost the ack); the task %s here\"", log_v(id),
              j != NULL ? "runs" : "ended");
    (void)task__conn_ack(w->conn, CH_CONSUME, d->tag, false);
    task__delivery_free(d);
    return true;
}

bool lease_copy_back(struct worker *w, struct task__delivery *d, const char *id)
{
    if (!is_lease_copy(d))
        return original_back(w, d, id);
    struct job *j = running_here(w, id);
    if (j != NULL && j->leased && !j->done) {
        /* Its lease lapsed while it ran (an alarm, a stalled loop): the copy joins the run
         * as its delivery, and is leased again like a fresh one. */
        task__delivery_free(&j->d);
        j->d = *d;
        memset(d, 0, sizeof(*d));
        j->dtag = j->d.tag;
        j->lease_dangling |= j->leased;
        j->leased = false;
        j->lease_renew_at = 0;
        w->inflight++;
        log_event(LV_WARN, 0, "lease_copy_adopted", "task_id=%s detail=\"its lease lapsed "
                  "while it ran here; the copy that came back joins the run\"", log_v(id));
        return true;
    }
    if (j == NULL && !ended_lately(w, id))
        return false; /* the worker that leased it is gone: it runs again */
    log_event(LV_WARN, 0, "lease_copy_dropped", "task_id=%s detail=\"a lapsed lease copy of a "
              "task that %s here\"", log_v(id), j != NULL ? "runs" : "ended");
    (void)task__conn_ack(w->conn, CH_CONSUME, d->tag, false);
    task__delivery_free(d);
    return true;
}

void lease_stash(struct worker *w, struct job *job, int why, json_object *reply)
{
    log_event(w->blocked ? LV_DEBUG : LV_WARN, 0, "task_outcome_held", "task_id=%s reason=%s "
              "action=\"published when the broker takes it\"", log_v(job->m.id),
              w->blocked ? "broker_blocked" : "no_connection");
    job->stash = why;
    job->stash_reply = reply;
    job->next = w->stashed;
    w->stashed = job;
}

void lease_drop_unleased(struct worker *w)
{
    struct job **pp = &w->stashed;
    while (*pp != NULL) {
        struct job *j = *pp;
        if (j->leased) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        job_free(j); /* its delivery goes back to the queue with the connection */
    }
}

void lease_free(struct worker *w)
{
    for (unsigned i = 0; i < 256; i++) {
        free(w->lease_done[i]);
        w->lease_done[i] = NULL;
    }
    while (w->stashed != NULL) {
        struct job *j = w->stashed;
        w->stashed = j->next;
        job_free(j); /* its stash_reply too */
    }
}
