/*
 * lookup.c - task_lookup() and task_watch(): find a task's state from any process by reading the
 * durable results stream that every worker appends each state message to (one of 64, picked
 * by the id: stream.h).
 *
 * A stream has no "end of data" signal over AMQP 0-9-1, and queue.declare reports 0 messages
 * for streams, so a lookup publishes a marker record of its own after it starts reading and
 * stops when the marker comes back: everything confirmed before the lookup began lies before it.
 * A lookup also stops at the id's first final state (SUCCESS, FAILURE, REVOKED).
 * A stream message holds one state record or, as taskd writes them, a JSON array of records.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "task_limits.h"
#include "client_impl.h"
#include "stream.h"

struct task__stream_read {
    const char *id;
    char stream[32];        /* the id's results stream */
    char marker[37];        /* "" for task_watch() */
    bool marker_seen;
    bool final_seen;        /* a final state of the id: nothing later can change the answer */
    unsigned since_ack;
    unsigned read;          /* messages so far */
    unsigned prefetch;      /* the consumer's window */
    bool widen;             /* time to move to the wide window */
    int64_t offset;         /* stream offset of the last message read; -1: none yet */
    int64_t first;          /* offset of the first message this read got; -1: none yet */
    int64_t stop_at;        /* a window's end: where the previous, narrower read began; -1 */
    char *tag;              /* consumer tag (malloc'd) */
};

/* Messages in flight on a stream read. A lookup starts small, since most stop after a few
 * messages (at the id's final state, near its start offset), and the broker reads a whole
 * window of chunks before it sends the first (128 chunks took 20-100 ms here). A read that goes
 * on is widened, as a small window keeps the broker from streaming (a read of 1M records did
 * not finish in 30 s at 256). basic.qos binds only new consumers, so widening is a new consumer
 * from the next offset. */
#define PREFETCH_START 16
#define PREFETCH_WIDE 2000
#define WIDEN_AFTER 512

struct take {
    struct task__replies *replies;
    const char *id;
    bool *final_seen;
    unsigned *rejected;
};

/* Any client or worker can append to a results stream, so a record (an object, as
 * task__stream_body() hands it over) is checked field by field: one that does not fit is
 * skipped, never trusted (a null task_id once crashed lookups). */
static void take_record(json_object *rec, void *ud)
{
    struct take *t = ud;
    const char *tid = task__json_get_str(rec, "task_id");
    const char *status = task__json_get_str(rec, "status");
    if (tid == NULL || status == NULL) {
        ++*t->rejected;
        return;
    }
    if (strcmp(tid, t->id) != 0)
        return;
    json_object *result = NULL;
    json_object_object_get_ex(rec, "result", &result);
    (void)task__replies_put(t->replies, t->id, status, json_object_get(result));
    *t->final_seen |= task_state_is_final(task_state_from_name(status));
}

int task__results_body(const void *body, size_t len, const char *id, const char *marker,
                       struct task__replies *replies, bool *marker_seen, bool *final_seen,
                       unsigned *rejected)
{
    /* Workers write their records in batches, oldest first; the walk is the revoked
     * stream's. */
    struct take t = {replies, id, final_seen, rejected};
    return task__stream_body(body, len, marker != NULL && marker[0] != '\0' ? marker : NULL,
                             take_record, &t, marker_seen, rejected);
}

/* The x-stream-offset header RabbitMQ puts on every message it delivers from a stream. */
static int64_t stream_offset(const struct task__delivery *d)
{
    const amqp_basic_properties_t *p = &d->msg.properties;
    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return -1;
    for (int i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        if (e->key.len == 15 && memcmp(e->key.bytes, "x-stream-offset", 15) == 0 &&
            e->value.kind == AMQP_FIELD_KIND_I64)
            return e->value.value.i64;
    }
    return -1;
}

static void on_stream(task_client *c, const amqp_frame_t *f)
{
    struct task__delivery d;
    if (task__conn_read_delivery(c->conn, f, &d) != 0)
        return;
    c->stream_tag = d.tag;
    struct task__stream_read *s = c->stream;
    /* A delivery to an earlier read's consumer, sent before the broker saw its cancel: acked
     * along with the next. */
    if (s == NULL || s->tag == NULL || d.consumer_tag == NULL ||
        strcmp(d.consumer_tag, s->tag) != 0)
        goto out;
    /* Ack well before the window runs dry: a stream consumer out of credit stalls for tens of
     * milliseconds before the broker reads on (measured, RabbitMQ 3.10). And before waiting for
     * more: a watch may wait for hours, and the broker closes a channel whose deliveries stay
     * unacked past its consumer_timeout (30 min by default). */
    if (++s->since_ack >= s->prefetch / 4 || !task__conn_has_buffered(c->conn)) {
        (void)task__conn_ack(c->conn, CH_STREAM, d.tag, true);
        c->stream_acked = d.tag;
        s->since_ack = 0;
    }
    s->widen = ++s->read >= WIDEN_AFTER && s->prefetch < PREFETCH_WIDE;
    s->offset = stream_offset(&d);
    if (s->first < 0)
        s->first = s->offset;
    /* A wider window ends where the narrower one began: from there on it was read already. */
    if (s->stop_at >= 0 && s->offset >= s->stop_at) {
        s->marker_seen = true;
        goto out;
    }
    /* Most messages hold neither the id nor the marker: skip them without parsing, so a
     * lookup costs about a byte scan per record instead of a JSON parse. */
    const void *raw = d.msg.body.bytes;
    size_t len = d.msg.body.len;
    if (raw == NULL || len == 0) /* an empty message: memmem() must not see NULL */
        goto out;
    if (memmem(raw, len, s->id, strlen(s->id)) == NULL &&
        (s->marker[0] == '\0' || memmem(raw, len, s->marker, strlen(s->marker)) == NULL))
        goto out;
    /* Junk in the stream is skipped and the read goes on: the answer is in the records that
     * fit. */
    unsigned rejected = 0;
    (void)task__results_body(raw, len, s->id, s->marker, &c->replies, &s->marker_seen,
                             &s->final_seen, &rejected);
out:
    task__delivery_free(&d);
}

/* A lookup starts this much before its id was made: the clocks of the host that made the id and
 * the one looking it up may differ by up to this much. */
#define SLACK_S 0.25

/* The offset `back_s` seconds back from the broker's now, or the first record when <= 0. */
static amqp_field_value_t window_offset(double back_s, char buf[32])
{
    amqp_field_value_t v = {.kind = AMQP_FIELD_KIND_UTF8};
    if (back_s <= 0) {
        v.value.bytes = amqp_cstring_bytes("first");
        return v;
    }
    double back = back_s + SLACK_S;
    long long n = back < 1 ? 1 : (long long)back;
    n += (double)n < back;
    snprintf(buf, 32, "%llds", n);
    v.value.bytes = amqp_cstring_bytes(buf);
    return v;
}

/* The stream's first offset to read for `id`: "first", or an interval back from the broker's
 * clock ("Ns"), which unlike a timestamp does not need the broker's clock to agree with ours;
 * either has whole seconds only, so a read starts SLACK_S to SLACK_S + 1 s early. */
static amqp_field_value_t start_offset(const char *id, double since_s, char buf[32])
{
    uint64_t ms;
    if (since_s <= 0 && task__uuid7_time_ms(id, &ms) == 0)
        since_s = (double)ms / 1000.0;
    return since_s <= 0 ? window_offset(0, buf) : window_offset(task__now_wall() - since_s, buf);
}

static int stream_consume(task_client *c, struct task__stream_read *s, amqp_field_value_t from)
{
    if (c->stream_qos != s->prefetch) {
        int rc = task__conn_qos(c->conn, CH_STREAM, (uint16_t)s->prefetch);
        if (rc != 0)
            return task__client_from_conn(c, rc);
        c->stream_qos = (uint16_t)s->prefetch;
    }
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-stream-offset"), .value = from};
    amqp_table_t args = {.num_entries = 1, .entries = &e};
    free(s->tag);
    s->tag = NULL;
    uint16_t refused;
    int rc = task__conn_consume_probe(c->conn, CH_STREAM, s->stream, args, &s->tag, &refused);
    if (refused != 0)
        c->stream_ch = false; /* the broker closed it */
    if (refused == 404) {
        task__conn_clear_error(c->conn);
        return TASK_ENOTFOUND; /* no worker has ever published a result here */
    }
    return rc != 0 ? task__client_from_conn(c, rc) : 0;
}

/* The channel stays open from one lookup to the next: opening, setting up and closing one
 * cost a lookup four round trips and the broker's reader teardown. */
static void forget_lookups(task_client *c);

static int stream_open(task_client *c, struct task__stream_read *s, amqp_field_value_t from)
{
    c->on_stream = on_stream;
    c->forget_lookups = forget_lookups;
    if (!c->stream_ch) {
        int rc = task__conn_channel_open(c->conn, CH_STREAM);
        if (rc != 0)
            return task__client_from_conn(c, rc);
        c->stream_ch = true;
        c->stream_qos = 0;
        c->stream_tag = c->stream_acked = 0;
    }
    task__results_name(task__results_partition(s->id), s->stream);
    s->prefetch = PREFETCH_START;
    s->offset = s->first = -1;
    return stream_consume(c, s, from);
}

/* Cancel the read's consumer; what the broker sent before its cancel-ok waits in rabbitmq-c's
 * queue and is read while `s` (may be NULL: dropped) is the read in progress. */
static int stream_cancel(task_client *c, struct task__stream_read *s)
{
    amqp_connection_state_t st = task__conn_amqp(c->conn);
    amqp_basic_cancel(st, CH_STREAM, amqp_cstring_bytes(s->tag));
    int rc = task__conn_check(c->conn, amqp_get_rpc_reply(st), "cancel stream read");
    if (rc != 0)
        rc = task__client_from_conn(c, rc);
    c->stream = s->marker_seen || s->final_seen ? NULL : s;
    while (rc == 0 && amqp_frames_enqueued(st)) {
        rc = task__client_pump(c, 0); /* an error here is already the client's */
        rc = rc < 0 ? rc : 0;
        if (s->marker_seen || s->final_seen)
            c->stream = NULL;
    }
    c->stream = s;
    free(s->tag);
    s->tag = NULL;
    return rc;
}

/* Replace the narrow consumer by a wide one that starts after the last message read. */
static int stream_widen(task_client *c, struct task__stream_read *s)
{
    s->widen = false;
    if (s->offset < 0 || s->tag == NULL)
        return 0;
    int rc = stream_cancel(c, s);
    if (rc != 0 || s->marker_seen || s->final_seen)
        return rc;
    s->prefetch = PREFETCH_WIDE;
    amqp_field_value_t from = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = s->offset + 1};
    return stream_consume(c, s, from);
}

/* End a read: cancel its consumer and ack what it was sent, keeping the channel for the next;
 * after a failure, close the channel. The cancel does not wait for the broker: deliveries it
 * sends meanwhile carry the old consumer tag and are dropped (on_stream()). */
static void stream_close(task_client *c, struct task__stream_read *s, int rc)
{
    c->stream = NULL;
    if (!task__conn_alive(c->conn) || !c->stream_ch)
        return;
    amqp_connection_state_t st = task__conn_amqp(c->conn);
    if (rc == 0 && s->tag != NULL) {
        amqp_basic_cancel_t m = {.consumer_tag = amqp_cstring_bytes(s->tag), .nowait = 1};
        rc = amqp_send_method(st, CH_STREAM, AMQP_BASIC_CANCEL_METHOD, &m) == AMQP_STATUS_OK
                 ? 0
                 : TASK_ECONNECT;
    }
    if (rc == 0 && c->stream_tag > c->stream_acked)
        rc = task__conn_ack(c->conn, CH_STREAM, c->stream_tag, true);
    c->stream_acked = c->stream_tag;
    if (rc == 0)
        return;
    c->stream_ch = false;
    amqp_rpc_reply_t r = amqp_channel_close(st, CH_STREAM, AMQP_REPLY_SUCCESS);
    (void)task__conn_check(c->conn, r, "close stream channel");
    task__conn_clear_error(c->conn);
    /* Deliveries that came in while the channel closed wait in rabbitmq-c's frame queue; with
     * no stream read going on they are dropped here, before a new channel of the same number
     * could mistake their delivery tags for its own. Other channels' frames are handled. */
    while (task__conn_alive(c->conn) && amqp_frames_enqueued(st) && task__client_pump(c, 0) > 0) {
    }
}

static int publish_marker(task_client *c, const char *stream, const char *marker)
{
    char body[80];
    int n = snprintf(body, sizeof(body), "{\"taskd_marker\": \"%s\"}", marker);
    amqp_basic_properties_t p = task__record_props();
    int rc = task__conn_publish(c->conn, CH, "", stream, &p, body, (size_t)n, NULL);
    return rc != 0 ? task__client_from_conn(c, rc) : 0;
}

static int finish(task_client *c, const char *id, task_state *state, json_object **result)
{
    struct task__reply *r = task__replies_find(&c->replies, id);
    if (state != NULL)
        *state = r ? r->state : TASK_STATE_PENDING;
    if (result != NULL)
        *result = r ? json_object_get(r->result) : NULL;
    if (r != NULL)
        task__replies_remove(&c->replies, id);
    return 0;
}

static void resume_clear(struct task__resume *r)
{
    r->id[0] = '\0';
    free(r->status);
    r->status = NULL;
    json_object_put(r->result);
    r->result = NULL;
}

static void forget_lookups(task_client *c)
{
    for (int i = 0; i < TASK__RESUME_SLOTS; i++)
        resume_clear(&c->resume[i]);
}

static struct task__resume *resume_find(task_client *c, const char *id)
{
    for (int i = 0; i < TASK__RESUME_SLOTS; i++)
        if (strcmp(c->resume[i].id, id) == 0)
            return &c->resume[i];
    return NULL;
}

/* After a read up to its marker: remember where it stopped and what it found, unless the id
 * reached a final state (nothing later can change it) or is too long to keep. */
static void resume_note(task_client *c, const char *id, double until)
{
    struct task__resume *r = resume_find(c, id);
    struct task__reply *rep = task__replies_find(&c->replies, id);
    bool final = rep != NULL && task_state_is_final(rep->state);
    if (final || strlen(id) >= sizeof(r->id)) {
        if (r != NULL)
            resume_clear(r);
        return;
    }
    if (r == NULL)
        r = &c->resume[c->resume_next++ % TASK__RESUME_SLOTS];
    resume_clear(r);
    snprintf(r->id, sizeof(r->id), "%s", id);
    r->until = until;
    r->status = rep != NULL ? strdup(rep->status) : NULL;
    r->result = rep != NULL ? json_object_get(rep->result) : NULL;
}

/* Windows, in seconds back from now, that a lookup of an id with no time in it (a Celery uuid4)
 * reads one after the other, newest first, until one holds a record of the id: a status poll
 * for a task sent a minute ago then reads a minute or two of its stream, not the retention
 * (1M stored results took 4-39 s to read whole). A wider read stops where the narrower one
 * began. 0: from the stream's first record, the retention's bound. */
static const double WINDOWS_S[] = {5, 60, 240, 900, 3600, 6 * 3600, 0};
#define N_WINDOWS (sizeof(WINDOWS_S) / sizeof(WINDOWS_S[0]))

/* Read on until the marker (or the window's end) or the id's first final state: a task ends
 * once, so a lookup need not read the records written after it. */
static int read_to_end(task_client *c, struct task__stream_read *s, double deadline)
{
    int rc = 0;
    while (rc == 0 && !s->marker_seen && !s->final_seen) {
        int left = task__remaining_ms(deadline);
        if (left == 0)
            return task__client_fail(c, TASK_ETIMEDOUT, "lookup %s: results stream did not "
                                     "answer", s->id);
        rc = task__client_pump(c, left);
        rc = rc > 0 ? 0 : rc;
        if (rc == 0 && s->widen)
            rc = stream_widen(c, s);
    }
    return rc;
}

/* The next wider window back_s seconds back, up to where the last read began. 1: there is
 * nothing before it (the last read got nothing), 0 or an error code. */
static int next_window(task_client *c, struct task__stream_read *s, double back_s)
{
    stream_close(c, s, 0);
    free(s->tag);
    s->tag = NULL;
    if (s->first < 0)
        return 1;
    s->stop_at = s->first;
    s->marker_seen = s->widen = false;
    s->read = s->since_ack = 0;
    s->prefetch = PREFETCH_START;
    s->offset = s->first = -1;
    char buf[32];
    int rc = stream_consume(c, s, window_offset(back_s, buf));
    c->stream = s;
    return rc;
}

int task_lookup(task_client *c, const char *id, double since_s, task_state *state,
                json_object **result)
{
    if (c == NULL || id == NULL)
        return TASK_EINVAL;
    task__error_clear(&c->err);
    struct task__stream_read s = {.id = id, .stop_at = -1};
    task__uuid4(s.marker);
    task__replies_remove(&c->replies, id);
    /* An id this client looked up before without a final state: read on from there. */
    struct task__resume *from = since_s <= 0 ? resume_find(c, id) : NULL;
    if (from != NULL && from->status != NULL)
        (void)task__replies_put(&c->replies, id, from->status, json_object_get(from->result));
    if (from != NULL)
        since_s = from->until;
    uint64_t ms;
    bool timeless = since_s <= 0 && task__uuid7_time_ms(id, &ms) != 0;
    char buf[32];
    int rc = task__client_ensure_conn(c);
    if (rc != 0)
        return rc;
    rc = stream_open(c, &s, timeless ? window_offset(WINDOWS_S[0], buf)
                                     : start_offset(id, since_s, buf));
    if (rc == TASK_ENOTFOUND)
        return finish(c, id, state, result);
    double marked = task__now_wall();
    if (rc == 0)
        rc = publish_marker(c, s.stream, s.marker);
    c->stream = &s;
    double deadline = task__now_mono() + c->send_timeout_s;
    if (rc == 0)
        rc = read_to_end(c, &s, deadline);
    /* Records of one id lie in time order: if a window holds any, it holds the latest. */
    for (size_t w = 1; timeless && rc == 0 && w < N_WINDOWS &&
                       task__replies_find(&c->replies, id) == NULL; w++) {
        rc = next_window(c, &s, WINDOWS_S[w]);
        if (rc == 0)
            rc = read_to_end(c, &s, deadline);
    }
    rc = rc > 0 ? 0 : rc;
    stream_close(c, &s, rc);
    free(s.tag);
    if (rc == 0)
        resume_note(c, id, marked);
    return rc != 0 ? rc : finish(c, id, state, result);
}

int task_watch(task_client *c, const char *id, double since_s, int timeout_ms,
               task_state *state, json_object **result, task_state_cb cb, void *userdata)
{
    if (c == NULL || id == NULL)
        return TASK_EINVAL;
    task__error_clear(&c->err);
    struct task__stream_read s = {.id = id, .stop_at = -1};
    task__replies_remove(&c->replies, id);
    char buf[32];
    int rc = task__client_ensure_conn(c);
    if (rc != 0)
        return rc;
    rc = stream_open(c, &s, start_offset(id, since_s, buf));
    if (rc == TASK_ENOTFOUND)
        rc = 0; /* no stream yet: the first worker result creates it; wait on */
    c->stream = &s;
    if (rc == 0)
        rc = task_wait_progress(c, id, timeout_ms, state, result, cb, userdata);
    stream_close(c, &s, rc);
    free(s.tag);
    return rc;
}
