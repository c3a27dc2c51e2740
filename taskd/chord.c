/*
 * chord.c - the chord barrier, counted by the broker (no result database).
 *
 * A chord header member carries the group id (`group` header), its position (`group_index`) and
 * the callback signature (`chord` in the embed) with the header's size in `chord_size`. When a
 * member ends (SUCCESS, FAILURE or REVOKED), the worker, before acking the member:
 *   1. appends a part {"i", "id", "status", "result"} to the durable queue taskd.chord.<group>
 *      and commits it (channel in tx mode: tx.commit-ok comes after the broker has it);
 *   2. reads the queue's ready count with a passive declare; on the same channel it is ordered
 *      after the publish, so it counts this part;
 *   3. when the count reaches chord_size, takes the lock: the exclusive queue
 *      taskd.chord.<group>.lock (a second connection gets 405 RESOURCE_LOCKED and leaves the work
 *      to the holder; the broker drops the lock when its connection dies);
 *   4. the holder basic.gets every part, publishes the callback with the results in header order
 *      (or a FAILURE with ChordError for it when a member failed), acks the parts in the same
 *      transaction, commits, then deletes both queues.
 * A worker that dies between 1 and 4 does not ack its member: the broker redelivers it, it runs
 * again and adds a duplicate part. The ready count then overstates the members that ended, so
 * the lock holder counts distinct positions: short of the size, it acks the duplicates away and
 * requeues the rest in one transaction, and the last distinct member fires the callback.
 * The callback may run twice only if a worker dies between the commit and the queue delete.
 * Barrier queues expire (x-expires) after results.max_age unused.
 *
 * None of it waits for the broker: the steps are chord_sm.h's state machine, advanced by the
 * replies the loop reads (chord_on_frame). Member ends take turns on CH_CHORD (a transaction
 * spans the channel), in the order they ended; each holds its member's ack until it is over.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "canvas.h"
#include "canvas_sig.h"
#include "canvas_wait.h"
#include "chord.h"
#include "chord_sm.h"
#include "log.h"
#include "stream.h"
#include "task_limits.h"
#include "txchan.h"
#include "worker.h"

/* Delivery tags of the parts read: the first of each position (kept) and the duplicates. */
struct part_tags {
    uint64_t *keep, *dup;
    int nkeep, ndup;
};

/* One member's end under way (w->chords, oldest first). */
struct chord_op {
    struct chord_op *next;
    struct job *job;            /* its waits counts this op */
    struct chord_sm sm;
    char queue[300], lock[310];
    char *part;                 /* the part's body */
    size_t part_len;
    json_object **parts;        /* GET: by position (new references) */
    bool *seen;
    struct part_tags tags;
    uint64_t last_tag;
    double started;             /* task__now_mono() it was queued */
    bool started_sending;       /* COUNT sent: replies are this op's */
    char target[256];           /* the callback's queue */
    bool target_pending;        /* being declared (canvas_wait): the op waits for it */
};

static int send_method(struct worker *w, amqp_method_number_t id, void *m)
{
    if (amqp_send_method(task__conn_amqp(w->conn), CH_CHORD, id, m) != AMQP_STATUS_OK)
        return task__conn_fail(w->conn, TASK_ECLOSED, "chord: write failed");
    return 0;
}

static int send_commit(struct worker *w)
{
    amqp_tx_commit_t c = {0};
    return send_method(w, AMQP_TX_COMMIT_METHOD, &c);
}

static int send_passive(struct worker *w, const char *queue)
{
    amqp_queue_declare_t q = {.queue = amqp_cstring_bytes(queue), .passive = 1,
                              .arguments = amqp_empty_table};
    return send_method(w, AMQP_QUEUE_DECLARE_METHOD, &q);
}

static int send_delete(struct worker *w, const char *queue, bool nowait)
{
    amqp_queue_delete_t d = {.queue = amqp_cstring_bytes(queue), .nowait = nowait};
    return send_method(w, AMQP_QUEUE_DELETE_METHOD, &d);
}

static int send_get(struct worker *w, const char *queue)
{
    amqp_basic_get_t g = {.queue = amqp_cstring_bytes(queue)};
    return send_method(w, AMQP_BASIC_GET_METHOD, &g);
}

/* COUNT: the part appended and committed at once (TALLY reads the count after commit-ok). */
static int send_count(struct worker *w, struct chord_op *op)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-expires"),
                            .value = {.kind = AMQP_FIELD_KIND_I64,
                                      .value.i64 = (int64_t)(w->cfg->results_max_age_s * 1000)}};
    amqp_queue_declare_t q = {.queue = amqp_cstring_bytes(op->queue), .durable = 1,
                              .arguments = {.num_entries = 1, .entries = &e}};
    int rc = send_method(w, AMQP_QUEUE_DECLARE_METHOD, &q);
    amqp_basic_properties_t props = task__record_props();
    if (rc == 0)
        rc = task__conn_publish(w->conn, CH_CHORD, "", op->queue, &props, op->part,
                                op->part_len, NULL);
    if (rc == 0)
        rc = send_commit(w);
    return rc;
}

static int send_lock(struct worker *w, const char *lock)
{
    amqp_queue_declare_t q = {.queue = amqp_cstring_bytes(lock), .exclusive = 1,
                              .auto_delete = 1, .arguments = amqp_empty_table};
    return send_method(w, AMQP_QUEUE_DECLARE_METHOD, &q);
}


static int push_tag(uint64_t **v, int *n, uint64_t tag)
{
    uint64_t *grow = realloc(*v, (size_t)(*n + 1) * sizeof(*grow));
    if (grow == NULL)
        return TASK_ENOMEM;
    *v = grow;
    grow[(*n)++] = tag;
    return 0;
}

/* GET: a basic.get-ok; its header and body follow it. A part that is not an object with an
 * in-range integer "i" counts as a duplicate (dropped). */
static int read_part(struct worker *w, struct chord_op *op, const amqp_frame_t *f)
{
    uint64_t tag = ((const amqp_basic_get_ok_t *)f->payload.method.decoded)->delivery_tag;
    op->last_tag = tag;
    amqp_message_t msg;
    amqp_connection_state_t st = task__conn_amqp(w->conn);
    int rc = task__conn_check(w->conn, amqp_read_message(st, CH_CHORD, &msg, 0), "read part");
    if (rc != 0)
        return rc;
    /* At the depth every reader shares: a part wraps a member's result in one object, and
     * json-c's default (32) left results past 31 levels unreadable: no callback, ever. */
    enum task__bad why;
    json_object *part = task__json_parse(msg.body.bytes, msg.body.len, TASK__JSON_MAX_DEPTH,
                                         &why, NULL);
    amqp_destroy_message(&msg);
    int i = chord_part_index(part, op->sm.size);
    if (chord_sm_part(&op->sm, op->seen, i)) {
        op->parts[i] = part;
        return push_tag(&op->tags.keep, &op->tags.nkeep, tag);
    }
    /* A member run twice (redelivered after a worker died) wrote the same part again. */
    json_object_put(part);
    return push_tag(&op->tags.dup, &op->tags.ndup, tag);
}

/* A new GET round: forget the last one's parts. */
static void clear_parts(struct chord_op *op)
{
    for (int i = 0; op->parts != NULL && i < op->sm.size; i++) {
        json_object_put(op->parts[i]);
        op->parts[i] = NULL;
        op->seen[i] = false;
    }
    free(op->tags.keep);
    free(op->tags.dup);
    memset(&op->tags, 0, sizeof(op->tags));
    op->last_tag = 0;
}

/* Not complete: the duplicates go (acked), the distinct parts go back (requeued), in one
 * transaction, so the ready count is the number of distinct members again. */
static int drop_duplicates(struct worker *w, const struct part_tags *t)
{
    int rc = 0;
    for (int k = 0; rc == 0 && k < t->ndup; k++)
        rc = task__conn_ack(w->conn, CH_CHORD, t->dup[k], false);
    for (int k = 0; rc == 0 && k < t->nkeep; k++)
        rc = task__conn_reject(w->conn, CH_CHORD, t->keep[k], true);
    return rc == 0 ? send_commit(w) : rc;
}

static const char *part_str(json_object *part, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(part, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : "";
}

/* Every member in: publish the callback (or its FAILURE) inside the open transaction. */
static int fire(struct worker *w, struct job *job, json_object **parts, int size)
{
    const struct task__msg *m = &job->m;
    json_object *results = json_object_new_array();
    const json_object *failed = NULL;
    for (int i = 0; i < size; i++) {
        json_object *res = json_object_object_get(parts[i], "result");
        if (strcmp(part_str(parts[i], "status"), "SUCCESS") != 0 && failed == NULL)
            failed = parts[i];
        json_object_array_add(results, json_object_get(res));
    }
    int rc = 0;
    if (failed == NULL) {
        struct task__wire wire;
        const char *target = NULL;
        rc = canvas_encode(w, job, m->chord, results, NULL, "chord", &wire, &target);
        if (rc == TASK_EBROKER && task__conn_alive(w->conn)) {
            /* Its queue was refused (on the declare channel, answered there): the callback
             * fails with the reason and the barrier is spent. */
            canvas_refused(w, job, m->chord, NULL, target, "chord");
            rc = 0;
        } else if (rc == 0) {
            rc = task__conn_publish(w->conn, CH_CHORD, "", target, &wire.props, wire.body,
                                    wire.body_len, NULL);
            task__wire_free(&wire);
        } else if (rc == TASK_EINVAL) {
            rc = 0; /* a callback that can never run (logged): the barrier is spent all the same */
        }
    } else {
        rc = canvas_chord_error(w, job, part_str((json_object *)failed, "id"),
                                json_object_object_get((json_object *)failed, "result"));
    }
    json_object_put(results);
    log_event(rc == 0 ? LV_INFO : LV_ERROR, rc, "chord_done", "group=%s size=%d outcome=%s",
              log_v(m->group), size, failed == NULL ? "callback" : "ChordError");
    return rc;
}

static int chord_size(const struct task__msg *m)
{
    json_object *v;
    if (!json_object_object_get_ex(m->chord, "chord_size", &v) ||
        !json_object_is_type(v, json_type_int))
        return -1;
    return json_object_get_int(v);
}

static void op_free(struct chord_op *op)
{
    clear_parts(op);
    free(op->parts);
    free(op->seen);
    free(op->part);
    free(op);
}

/* The head op is over: its member settles (acked unless it failed), the next one starts. */
static void op_end(struct worker *w, bool failed)
{
    struct chord_op *op = w->chords;
    w->chords = op->next;
    if (w->chords == NULL)
        w->chords_tail = NULL;
    struct job *job = op->job;
    if (failed) {
        job->nacked = true; /* requeued: its part is counted again, as a duplicate */
        log_event(LV_ERROR, TASK_EBROKER, "chord_count_failed", "group=%s task_id=%s step=%d "
                  "action=requeue", log_v(job->m.group), log_v(job->m.id),
                  (int)op->sm.failed_at);
    } else {
        log_event(LV_DEBUG, 0, "chord_member_counted", "group=%s task_id=%s took_ms=%.1f",
                  log_v(job->m.group), log_v(job->m.id),
                  (task__now_mono() - op->started) * 1000);
    }
    op_free(op);
    job->waits--;
    if (job->done && job->waits == 0)
        w->settled(w, job);
}

/* Do what the state machine asks; the head op's step failed if this returns non-zero. */
static int act(struct worker *w, struct chord_op *op, enum chord_action a)
{
    switch (a) {
    case CHA_WAIT:
        return 0;
    case CHA_SEND_TALLY:
        return send_passive(w, op->queue);
    case CHA_SEND_LOCK:
        return send_lock(w, op->lock);
    case CHA_SEND_GET:
        if (op->sm.have == 0 && op->tags.nkeep == 0 && op->tags.ndup == 0)
            clear_parts(op);
        return send_get(w, op->queue);
    case CHA_FIRE: {
        int rc = fire(w, op->job, op->parts, op->sm.size);
        if (rc == 0 && op->last_tag != 0)
            rc = task__conn_ack(w->conn, CH_CHORD, op->last_tag, true);
        return rc == 0 ? send_commit(w) : rc;
    }
    case CHA_DROP: {
        log_event(LV_INFO, 0, "chord_duplicates_dropped", "group=%s distinct=%d size=%d "
                  "duplicates=%d", log_v(op->job->m.group), op->sm.have, op->sm.size,
                  op->tags.ndup);
        int rc = drop_duplicates(w, &op->tags);
        clear_parts(op);
        return rc;
    }
    case CHA_SEND_RECHECK:
        return send_passive(w, op->queue);
    case CHA_DEL_QUEUE:
        return send_delete(w, op->queue, false);
    case CHA_DEL_LOCK:
        return send_delete(w, op->lock, false);
    case CHA_DONE:
    case CHA_FAIL:
        return 0;
    }
    return 0;
}

static void kick(struct worker *w);

/* canvas_wait: a callback queue is declared (or refused: met again when the callback fires). */
static void target_ready(struct worker *w, const char *target)
{
    for (struct chord_op *o = w->chords; o != NULL; o = o->next)
        if (o->target_pending && strcmp(o->target, target) == 0)
            o->target_pending = false;
    kick(w);
}

/* Start the head op if the channel is ready and it has not started. */
static void kick(struct worker *w)
{
    while (w->chords != NULL && w->chord_ready && !w->chords->started_sending &&
           !w->chords->target_pending) {
        struct chord_op *op = w->chords;
        op->started_sending = true;
        if (send_count(w, op) == 0)
            return;
        op_end(w, true); /* the connection broke: the loop drops the session */
        return;
    }
}

/* A reply (or close) for the head op. `open`: the channel is still open (not closed by the
 * broker), so a failed step must close it to roll its transaction back. */
static void advance(struct worker *w, enum chord_event ev, long value, bool open)
{
    struct chord_op *op = w->chords;
    if (op == NULL || !op->started_sending) {
        log_event(LV_WARN, 0, "chord_stray_reply", "event=%d", (int)ev);
        return;
    }
    enum chord_action a = chord_sm_on(&op->sm, ev, value);
    if (a != CHA_DONE && a != CHA_FAIL && act(w, op, a) != 0) {
        a = chord_sm_on(&op->sm, CHE_CLOSED, 0);
        open = true;
    }
    if (a == CHA_DONE || a == CHA_FAIL) {
        if (op->sm.lock_held && task__conn_alive(w->conn)) {
            /* Failed holding the lock: drop it once the channel is open again (it is the
             * connection's, the channel's close does not free it). */
            snprintf(w->chord_lock_left, sizeof(w->chord_lock_left), "%s", op->lock);
        }
        if (a == CHA_FAIL && open && task__conn_alive(w->conn)) {
            /* Our own step went wrong with the channel still open: close it, which rolls the
             * transaction back, and start over on a fresh one. */
            amqp_channel_close_t c = {.reply_code = AMQP_REPLY_SUCCESS,
                                      .reply_text = amqp_cstring_bytes("chord step failed")};
            (void)send_method(w, AMQP_CHANNEL_CLOSE_METHOD, &c);
            w->chord_ready = false;
            w->chord_closing = true;
        }
        op_end(w, a == CHA_FAIL);
        kick(w);
    }
}

/* Open CH_CHORD in tx mode without waiting: channel.open, tx.select; ready at select-ok. */
static void reopen(struct worker *w)
{
    amqp_channel_open_t o = {.out_of_band = amqp_empty_bytes};
    amqp_tx_select_t t = {0};
    w->chord_ready = false;
    if (send_method(w, AMQP_CHANNEL_OPEN_METHOD, &o) == 0)
        (void)send_method(w, AMQP_TX_SELECT_METHOD, &t);
}

bool chord_on_frame(struct worker *w, const amqp_frame_t *f)
{
    if (f->channel != CH_CHORD || f->frame_type != AMQP_FRAME_METHOD)
        return false;
    switch (f->payload.method.id) {
    case AMQP_CHANNEL_CLOSE_OK_METHOD:
        if (w->chord_closing) { /* ours, after a failed step */
            w->chord_closing = false;
            reopen(w);
        }
        return true;
    case AMQP_CHANNEL_OPEN_OK_METHOD:
        return true;
    case AMQP_TX_SELECT_OK_METHOD:
        w->chord_ready = true;
        if (w->chord_lock_left[0] != '\0') {
            (void)send_delete(w, w->chord_lock_left, true);
            w->chord_lock_left[0] = '\0';
        }
        kick(w);
        return true;
    case AMQP_QUEUE_DECLARE_OK_METHOD: {
        const amqp_queue_declare_ok_t *ok = f->payload.method.decoded;
        advance(w, CHE_DECLARE_OK, (long)ok->message_count, true);
        return true;
    }
    case AMQP_TX_COMMIT_OK_METHOD:
        advance(w, CHE_COMMIT_OK, 0, true);
        return true;
    case AMQP_BASIC_GET_OK_METHOD:
        if (w->chords == NULL || read_part(w, w->chords, f) != 0)
            advance(w, CHE_CLOSED, 0, true); /* unreadable: fail the step */
        else
            advance(w, CHE_GET_OK, 0, true);
        return true;
    case AMQP_BASIC_GET_EMPTY_METHOD:
        advance(w, CHE_GET_EMPTY, 0, true);
        return true;
    case AMQP_QUEUE_DELETE_OK_METHOD:
        advance(w, CHE_DELETE_OK, 0, true);
        return true;
    default:
        return true;
    }
}

void chord_on_closed(struct worker *w)
{
    /* task__conn_next_frame() answered the close and left its reason in the conn's error. */
    char why[300];
    snprintf(why, sizeof(why), "%s", task__conn_errmsg(w->conn));
    task__conn_clear_error(w->conn);
    const char *p = strstr(why, ": ");
    long code = p != NULL ? atol(p + 2) : 0;
    if (code == 405 && w->chords != NULL)
        log_event(LV_DEBUG, 0, "chord_lock_busy", "group=%s", log_v(w->chords->job->m.group));
    else
        log_event(LV_WARN, TASK_EBROKER, "chord_channel_closed", "detail=\"%s\"", why);
    w->chord_ready = false;
    if (w->chords != NULL && w->chords->started_sending) {
        w->chords->sm.lock_held = w->chords->sm.lock_held && code != 405;
        advance(w, CHE_CLOSED, code, false);
    }
    reopen(w);
}

int chord_start(struct worker *w)
{
    return txchan_ask(w->conn, CH_CHORD, &w->chord_ready);
}

void chord_drop(struct worker *w)
{
    while (w->chords != NULL) {
        struct chord_op *op = w->chords;
        w->chords = op->next;
        struct job *job = op->job;
        op_free(op);
        if (--job->waits == 0 && job->done)
            job_free(job); /* the broker requeues its delivery with the connection */
    }
    w->chords_tail = NULL;
    w->chord_ready = false;
    w->chord_closing = false;
    w->chord_lock_left[0] = '\0';
}

int chord_part_done(struct worker *w, struct job *job, const char *status, json_object *result)
{
    const struct task__msg *m = &job->m;
    int size = chord_size(m);
    if (m->group == NULL || m->group_index < 0 || size <= 0 || m->group_index >= size) {
        log_event(LV_WARN, 0, "chord_unsupported", "task_id=%s reason=\"chord member without "
                  "group, group_index or chord_size (a Celery chord needs a result backend)\"",
                  m->id);
        return 0;
    }
    if (strlen(m->group) > 200) {
        /* taskd.chord.<group>.lock must fit AMQP's 255-byte names. */
        json_object *exc = task__exc_new("ChordError", "group id longer than 200 bytes",
                                         "celery.exceptions");
        log_event(LV_ERROR, 0, "chord_refused", "task_id=%s reason=\"group id too long\"",
                  log_v(m->id));
        int rc = canvas_chord_error(w, job, m->id, exc);
        json_object_put(exc);
        return rc;
    }
    struct chord_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return TASK_ENOMEM;
    op->parts = calloc((size_t)size, sizeof(*op->parts));
    op->seen = calloc((size_t)size, sizeof(*op->seen));
    json_object *part = json_object_new_object();
    json_object_object_add(part, "i", json_object_new_int(m->group_index));
    json_object_object_add(part, "id", json_object_new_string(m->id));
    json_object_object_add(part, "status", json_object_new_string(status));
    json_object_object_add(part, "result", json_object_get(result));
    size_t len;
    const char *body = task__json_str(part, &len);
    op->part = body != NULL ? malloc(len + 1) : NULL;
    if (op->part != NULL) {
        memcpy(op->part, body, len + 1);
        op->part_len = len;
    }
    json_object_put(part);
    if (op->parts == NULL || op->seen == NULL || op->part == NULL) {
        op_free(op);
        return TASK_ENOMEM;
    }
    snprintf(op->queue, sizeof(op->queue), "taskd.chord.%s", m->group);
    snprintf(op->lock, sizeof(op->lock), "%s.lock", op->queue);
    chord_sm_init(&op->sm, size);
    op->job = job;
    op->started = task__now_mono();
    job->waits++; /* its ack waits until the part is counted */
    /* The callback's queue is declared now, without waiting, so that the member that fires
     * it finds it declared: a declaration then, inside the transaction, would be a round
     * trip with the loop stopped. */
    if (canvas_target(w, job, m->chord, op->target, sizeof(op->target)) == 0 &&
        !task__topo_declared(&w->topo, op->target)) {
        bool asked = false;
        for (const struct chord_op *o = w->chords; o != NULL && !asked; o = o->next)
            asked = o->target_pending && strcmp(o->target, op->target) == 0;
        op->target_pending = asked || canvas_wait_declare(w, op->target, target_ready) == 0;
    }
    if (w->chords_tail != NULL)
        w->chords_tail->next = op;
    else
        w->chords = op;
    w->chords_tail = op;
    kick(w);
    return 0;
}
