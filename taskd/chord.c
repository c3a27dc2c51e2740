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
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "canvas.h"
#include "canvas_sig.h"
#include "chord.h"
#include "log.h"
#include "stream.h"
#include "task_limits.h"
#include "txchan.h"
#include "worker.h"

#define CH_CHORD 6

static int commit(struct worker *w)
{
    return txchan_commit(w->conn, CH_CHORD);
}

/* Ready messages in `queue` (passive declare): >= 0, or a negative TASK_E*. */
static long ready_count(struct worker *w, const char *queue)
{
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(task__conn_amqp(w->conn), CH_CHORD,
                                                     amqp_cstring_bytes(queue), 1, 0, 0, 0,
                                                     amqp_empty_table);
    int rc = task__conn_check(w->conn, amqp_get_rpc_reply(task__conn_amqp(w->conn)), queue);
    return rc != 0 ? rc : (long)ok->message_count;
}

static int delete_queue(struct worker *w, const char *queue)
{
    amqp_queue_delete(task__conn_amqp(w->conn), CH_CHORD, amqp_cstring_bytes(queue), 0, 0);
    return task__conn_check(w->conn, amqp_get_rpc_reply(task__conn_amqp(w->conn)), queue);
}

static int publish_part(struct worker *w, const struct task__msg *m, const char *queue,
                        const char *status, json_object *result)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-expires"),
                            .value = {.kind = AMQP_FIELD_KIND_I64,
                                      .value.i64 = (int64_t)(w->cfg->results_max_age_s * 1000)}};
    amqp_table_t args = {.num_entries = 1, .entries = &e};
    int rc = task__conn_declare_queue(w->conn, CH_CHORD, queue, true, false, false, args);
    if (rc != 0)
        return rc;
    json_object *part = json_object_new_object();
    json_object_object_add(part, "i", json_object_new_int(m->group_index));
    json_object_object_add(part, "id", json_object_new_string(m->id));
    json_object_object_add(part, "status", json_object_new_string(status));
    json_object_object_add(part, "result", json_object_get(result));
    size_t len;
    const char *body = task__json_str(part, &len);
    amqp_basic_properties_t props = task__record_props();
    rc = task__conn_publish(w->conn, CH_CHORD, "", queue, &props, body, len, NULL);
    json_object_put(part);
    return rc == 0 ? commit(w) : rc;
}

/* Delivery tags of the parts read: the first of each position (kept) and the duplicates. */
struct part_tags {
    uint64_t *keep, *dup;
    int nkeep, ndup;
};

/* The parts, by position: parts[i] is a new reference or NULL. Gets everything ready. A part
 * that is not an object with an in-range integer "i" counts as a duplicate (dropped). */
static int get_parts(struct worker *w, const char *queue, json_object **parts, int size,
                     struct part_tags *t, uint64_t *last_tag)
{
    amqp_connection_state_t st = task__conn_amqp(w->conn);
    for (;;) {
        amqp_rpc_reply_t r = amqp_basic_get(st, CH_CHORD, amqp_cstring_bytes(queue), 0);
        int rc = task__conn_check(w->conn, r, "basic.get");
        if (rc != 0)
            return rc;
        if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
            return 0;
        uint64_t tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
        *last_tag = tag;
        amqp_message_t msg;
        rc = task__conn_check(w->conn, amqp_read_message(st, CH_CHORD, &msg, 0), "read part");
        if (rc != 0)
            return rc;
        /* At the depth every reader shares: a part wraps a member's result in one object, and
         * json-c's default (32) left results past 31 levels unreadable: no callback, ever. */
        enum task__bad why;
        json_object *part = task__json_parse(msg.body.bytes, msg.body.len, TASK__JSON_MAX_DEPTH,
                                             &why, NULL);
        amqp_destroy_message(&msg);
        int i = chord_part_index(part, size);
        uint64_t *grow;
        if (i >= 0 && parts[i] == NULL) {
            parts[i] = part;
            grow = realloc(t->keep, (size_t)(t->nkeep + 1) * sizeof(*grow));
            if (grow == NULL)
                return TASK_ENOMEM;
            t->keep = grow;
            t->keep[t->nkeep++] = tag;
        } else {
            /* A member run twice (redelivered after a worker died) wrote the same part again. */
            json_object_put(part);
            grow = realloc(t->dup, (size_t)(t->ndup + 1) * sizeof(*grow));
            if (grow == NULL)
                return TASK_ENOMEM;
            t->dup = grow;
            t->dup[t->ndup++] = tag;
        }
    }
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
    return rc == 0 ? commit(w) : rc;
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

/* Holding the lock: collect and fire when complete. 1 fired, 0 not complete, < 0 error. */
static int collect(struct worker *w, struct job *job, const char *queue, int size)
{
    json_object **parts = calloc((size_t)size, sizeof(*parts));
    if (parts == NULL)
        return TASK_ENOMEM;
    struct part_tags t = {0};
    uint64_t last = 0;
    int rc = get_parts(w, queue, parts, size, &t, &last);
    int have = 0;
    for (int i = 0; i < size; i++)
        have += parts[i] != NULL;
    if (rc == 0 && have == size)
        rc = fire(w, job, parts, size);
    if (rc == 0 && have == size && last != 0)
        rc = task__conn_ack(w->conn, CH_CHORD, last, true);
    if (rc == 0 && have == size)
        rc = commit(w);
    if (rc == 0 && have < size)
        rc = drop_duplicates(w, &t);
    if (have < size)
        log_event(LV_INFO, rc, "chord_duplicates_dropped", "group=%s distinct=%d size=%d "
                  "duplicates=%d", log_v(job->m.group), have, size, t.ndup);
    for (int i = 0; i < size; i++)
        json_object_put(parts[i]);
    free(parts);
    free(t.keep);
    free(t.dup);
    return rc != 0 ? rc : have == size;
}

static int chord_size(const struct task__msg *m)
{
    json_object *v;
    if (!json_object_object_get_ex(m->chord, "chord_size", &v) ||
        !json_object_is_type(v, json_type_int))
        return -1;
    return json_object_get_int(v);
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
    char queue[300], lock[310];
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
    snprintf(queue, sizeof(queue), "taskd.chord.%s", m->group);
    snprintf(lock, sizeof(lock), "%s.lock", queue);
    int rc = txchan_open(w->conn, CH_CHORD, &w->chord_ready);
    if (rc == 0)
        rc = publish_part(w, m, queue, status, result);
    long ready = rc == 0 ? ready_count(w, queue) : rc;
    if (ready < 0 || ready < size) {
        if (ready < 0)
            txchan_reset(w->conn, CH_CHORD, &w->chord_ready);
        return ready < 0 ? (int)ready : 0;
    }
    rc = task__conn_declare_queue(w->conn, CH_CHORD, lock, false, true, true, amqp_empty_table);
    if (rc != 0) { /* 405: another worker holds the lock and completes the chord */
        txchan_reset(w->conn, CH_CHORD, &w->chord_ready);
        log_event(LV_DEBUG, 0, "chord_lock_busy", "group=%s", log_v(m->group));
        return 0;
    }
    rc = collect(w, job, queue, size);
    /* Short of the size after dropping duplicates: a member that ended meanwhile counted while
     * the distinct parts were out (unacked) and saw too few. Holding the lock, look again. */
    for (int again = 0; rc == 0 && again < 3; again++) {
        long now_ready = ready_count(w, queue);
        if (now_ready < 0) {
            rc = (int)now_ready;
            break;
        }
        if (now_ready < size)
            break;
        rc = collect(w, job, queue, size);
    }
    if (rc == 1)
        rc = delete_queue(w, queue);
    int rc2 = delete_queue(w, lock);
    if (rc < 0 || rc2 != 0)
        txchan_reset(w->conn, CH_CHORD, &w->chord_ready);
    return rc < 0 ? rc : rc2;
}
