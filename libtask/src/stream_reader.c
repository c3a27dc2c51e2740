/* stream_reader.c - see stream_reader.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codec.h"
#include "internal.h"
#include "stream.h"
#include "stream_reader.h"
#include "task_limits.h"

amqp_field_value_t task__stream_from_first(void)
{
    return (amqp_field_value_t){.kind = AMQP_FIELD_KIND_UTF8,
                                .value.bytes = amqp_cstring_bytes("first")};
}

amqp_field_value_t task__stream_from_time(double unix_s)
{
    return (amqp_field_value_t){.kind = AMQP_FIELD_KIND_TIMESTAMP,
                                .value.u64 = unix_s > 0 ? (uint64_t)unix_s : 0};
}

amqp_field_value_t task__stream_from_offset(int64_t offset)
{
    return (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I64, .value.i64 = offset};
}

amqp_field_value_t task__stream_from_ago(double back_s, char buf[32])
{
    long long n = back_s < 1 ? 1 : (long long)back_s;
    n += (double)n < back_s;
    snprintf(buf, 32, "%llds", n);
    return (amqp_field_value_t){.kind = AMQP_FIELD_KIND_UTF8,
                                .value.bytes = amqp_cstring_bytes(buf)};
}

int64_t task__stream_offset_of(const amqp_basic_properties_t *p)
{
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

/* Ack well before the window runs dry: a stream consumer out of credit stalls for tens of
 * milliseconds before the broker reads on (measured, RabbitMQ 3.10). And before waiting for
 * more: a watch may wait for hours, and the broker closes a channel whose deliveries stay
 * unacked past its consumer_timeout (30 min by default). */
bool task__stream_ack_due(unsigned since_ack, unsigned prefetch, bool buffered)
{
    return since_ack >= prefetch / 4 || !buffered;
}

bool task__stream_widen_due(const struct task__stream_window *w, unsigned read,
                            unsigned prefetch)
{
    return read >= w->after && prefetch < w->wide;
}

int task__stream_marker_body(char buf[80], const char *marker)
{
    return snprintf(buf, 80, "{\"taskd_marker\": \"%s\"}", marker);
}

int task__stream_publish_marker(struct task__conn *c, uint16_t ch, const char *name,
                                const char *marker)
{
    char body[80];
    int n = task__stream_marker_body(body, marker);
    amqp_basic_properties_t p = task__record_props();
    return task__conn_publish(c, ch, "", name, &p, body, (size_t)n, NULL);
}

/* Anyone who can publish to the stream can write a record, so nothing in one is trusted: a
 * marker that is not a string, or a record that is not an object, is skipped and counted. */
static void one_record(const char *marker, json_object *rec,
                       void (*fn)(json_object *rec, void *ud), void *ud,
                       bool *marker_seen, unsigned *rejected)
{
    json_object *m;
    if (!json_object_is_type(rec, json_type_object)) {
        ++*rejected;
    } else if (json_object_object_get_ex(rec, "taskd_marker", &m)) {
        const char *text = json_object_is_type(m, json_type_string) ? json_object_get_string(m)
                                                                   : NULL;
        if (text == NULL)
            ++*rejected;
        else if (marker != NULL && strcmp(text, marker) == 0)
            *marker_seen = true;
    } else if (fn != NULL) {
        fn(rec, ud);
    }
}

int task__stream_body(const void *body, size_t len, const char *marker,
                      void (*fn)(json_object *rec, void *ud), void *ud, bool *marker_seen,
                      unsigned *rejected)
{
    enum task__bad why;
    json_object *root = task__json_parse(body, len, TASK__JSON_MAX_DEPTH, &why, NULL);
    if (root == NULL) {
        ++*rejected;
        return TASK_EPROTO;
    }
    if (json_object_is_type(root, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(root); i++)
            one_record(marker, json_object_array_get_idx(root, i), fn, ud, marker_seen, rejected);
    } else {
        one_record(marker, root, fn, ud, marker_seen, rejected);
    }
    json_object_put(root);
    return 0;
}

void task__stream_reader_init(struct task__stream_reader *r, struct task__conn *c, uint16_t ch)
{
    *r = (struct task__stream_reader){.conn = c, .ch = ch, .offset = -1, .first = -1,
                                      .stop_at = -1};
}

void task__stream_reader_reset(struct task__stream_reader *r, struct task__conn *c)
{
    r->conn = c;
    r->open = false;
}

void task__stream_reader_free(struct task__stream_reader *r)
{
    free(r->consumer);
    r->consumer = NULL;
}

static int consume(struct task__stream_reader *r, amqp_field_value_t from)
{
    if (r->qos != r->prefetch) {
        int rc = task__conn_qos(r->conn, r->ch, (uint16_t)r->prefetch);
        if (rc != 0)
            return rc;
        r->qos = (uint16_t)r->prefetch;
    }
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-stream-offset"), .value = from};
    amqp_table_t args = {.num_entries = 1, .entries = &e};
    free(r->consumer);
    r->consumer = NULL;
    uint16_t refused;
    int rc = task__conn_consume_probe(r->conn, r->ch, r->stream, args, &r->consumer, &refused);
    if (refused != 0)
        r->open = false; /* the broker closed it */
    if (refused == 404) {
        task__conn_clear_error(r->conn);
        return TASK_ENOTFOUND;
    }
    return rc;
}

/* A new read's state, on the window's narrow start. */
static void read_reset(struct task__stream_reader *r, int64_t stop_at)
{
    r->prefetch = r->window.start;
    r->since_ack = r->read = 0;
    r->widen = r->done = false;
    r->offset = r->first = -1;
    r->stop_at = stop_at;
}

int task__stream_reader_start(struct task__stream_reader *r, const char *name,
                              amqp_field_value_t from, const struct task__stream_window *w)
{
    if (!r->open) {
        int rc = task__conn_channel_open(r->conn, r->ch);
        if (rc != 0)
            return rc;
        r->open = true;
        r->qos = 0;
        r->tag = r->acked = 0;
    }
    r->stream = name;
    r->window = *w;
    read_reset(r, -1);
    return consume(r, from);
}

enum task__stream_take task__stream_reader_note(struct task__stream_reader *r, int64_t offset)
{
    if (r->done)
        return TASK__STREAM_SKIP;
    r->widen = task__stream_widen_due(&r->window, ++r->read, r->prefetch);
    r->offset = offset;
    if (r->first < 0)
        r->first = offset;
    /* A window ends where the later, narrower read began: from there on it was read already. */
    if (r->stop_at >= 0 && offset >= r->stop_at) {
        r->done = true;
        return TASK__STREAM_END;
    }
    return TASK__STREAM_RECORD;
}

enum task__stream_take task__stream_reader_take(struct task__stream_reader *r,
                                                const struct task__delivery *d)
{
    r->tag = d->tag;
    /* A delivery to an earlier read's consumer, sent before the broker saw its cancel: acked
     * along with the next, or now when no next is buffered: a quiet stream may send none for
     * longer than the broker's consumer_timeout, which closes a channel holding an unacked one
     * (a watch of a long task would then wait in vain). */
    if (r->consumer == NULL || d->consumer_tag == NULL ||
        strcmp(d->consumer_tag, r->consumer) != 0) {
        if (r->conn != NULL && !task__conn_has_buffered(r->conn)) {
            (void)task__conn_ack(r->conn, r->ch, d->tag, true);
            r->acked = d->tag;
            r->since_ack = 0;
        }
        return TASK__STREAM_SKIP;
    }
    if (task__stream_ack_due(++r->since_ack, r->prefetch, task__conn_has_buffered(r->conn))) {
        (void)task__conn_ack(r->conn, r->ch, d->tag, true);
        r->acked = d->tag;
        r->since_ack = 0;
    }
    return task__stream_reader_note(r, task__stream_offset_of(&d->msg.properties));
}

/* Cancel the consumer and wait for the broker's cancel-ok; what it sent before that waits in
 * rabbitmq-c's queue and is drained through pump while the consumer tag is still the read's. */
static int cancel(struct task__stream_reader *r, task__stream_pump_fn pump, void *ud)
{
    amqp_connection_state_t st = task__conn_amqp(r->conn);
    amqp_basic_cancel(st, r->ch, amqp_cstring_bytes(r->consumer));
    int rc = task__conn_check(r->conn, amqp_get_rpc_reply(st), "cancel stream read");
    while (rc == 0 && amqp_frames_enqueued(st)) {
        int p = pump(ud);
        rc = p < 0 ? p : 0;
    }
    free(r->consumer);
    r->consumer = NULL;
    return rc;
}

int task__stream_reader_widen(struct task__stream_reader *r, task__stream_pump_fn pump,
                              void *ud)
{
    r->widen = false;
    if (r->offset < 0 || r->consumer == NULL)
        return 0;
    int rc = cancel(r, pump, ud);
    if (rc != 0 || r->done)
        return rc;
    /* basic.qos binds only new consumers: the wide window is a new consumer. */
    r->prefetch = r->window.wide;
    return consume(r, task__stream_from_offset(r->offset + 1));
}

int task__stream_reader_before(struct task__stream_reader *r, amqp_field_value_t from,
                               task__stream_pump_fn pump, void *ud)
{
    task__stream_reader_end(r, 0, pump, ud);
    if (r->first < 0)
        return 1;
    read_reset(r, r->first);
    return consume(r, from);
}

void task__stream_reader_end(struct task__stream_reader *r, int rc, task__stream_pump_fn pump,
                             void *ud)
{
    char *consumer = r->consumer;
    r->consumer = NULL;
    if (!task__conn_alive(r->conn) || !r->open) {
        free(consumer);
        return;
    }
    amqp_connection_state_t st = task__conn_amqp(r->conn);
    if (rc == 0 && consumer != NULL) {
        amqp_basic_cancel_t m = {.consumer_tag = amqp_cstring_bytes(consumer), .nowait = 1};
        rc = amqp_send_method(st, r->ch, AMQP_BASIC_CANCEL_METHOD, &m) == AMQP_STATUS_OK
                 ? 0
                 : TASK_ECONNECT;
    }
    free(consumer);
    if (rc == 0 && r->tag > r->acked)
        rc = task__conn_ack(r->conn, r->ch, r->tag, true);
    r->acked = r->tag;
    if (rc == 0)
        return;
    r->open = false;
    amqp_rpc_reply_t cr = amqp_channel_close(st, r->ch, AMQP_REPLY_SUCCESS);
    (void)task__conn_check(r->conn, cr, "close stream channel");
    task__conn_clear_error(r->conn);
    /* Deliveries that came in while the channel closed wait in rabbitmq-c's frame queue; with
     * no consumer of the reader's they are skipped here, before a new channel of the same
     * number could mistake their delivery tags for its own. Other channels' frames are
     * handled. */
    while (task__conn_alive(r->conn) && amqp_frames_enqueued(st) && pump(ud) > 0) {
    }
}

int task__stream_reader_close(struct task__stream_reader *r)
{
    free(r->consumer);
    r->consumer = NULL;
    int rc = 0;
    if (r->open) { /* not after a refusal: the broker closed it */
        amqp_rpc_reply_t cr = amqp_channel_close(task__conn_amqp(r->conn), r->ch,
                                                 AMQP_REPLY_SUCCESS);
        rc = task__conn_check(r->conn, cr, "close stream channel");
    }
    r->open = false;
    task__conn_release_buffers(r->conn);
    return rc;
}

/* ---- replay: a whole stream up to now, on a connection nothing else reads yet ---- */

/* Never widened: a replay reads on to the end. */
static const struct task__stream_window REPLAY_WINDOW = {1000, 1000, 0};

struct replay {
    struct task__stream_reader r;
    const char *marker;
    void (*fn)(json_object *rec, void *ud);
    void *ud;
    bool marker_seen;
    unsigned rejected;
};

static void replay_delivery(struct replay *p, const struct task__delivery *d)
{
    if (task__stream_reader_take(&p->r, d) != TASK__STREAM_RECORD)
        return;
    (void)task__stream_body(d->msg.body.bytes, d->msg.body.len, p->marker, p->fn, p->ud,
                            &p->marker_seen, &p->rejected);
    p->r.done = p->marker_seen;
}

int task__stream_replay_counted(struct task__conn *c, uint16_t ch, const char *name,
                                double since_s, int timeout_ms,
                                void (*fn)(json_object *rec, void *ud), void *ud,
                                unsigned *rejected)
{
    char marker[37];
    task__uuid4(marker);
    struct replay p = {.marker = marker, .fn = fn, .ud = ud};
    task__stream_reader_init(&p.r, c, ch);
    /* Whole seconds, and clocks differ a little. */
    amqp_field_value_t from = since_s > 2 ? task__stream_from_time(since_s - 2)
                                          : task__stream_from_first();
    /* The marker goes first, on the read's own channel: what was written before it lies before
     * it. */
    int rc = task__conn_channel_open(c, ch);
    p.r.open = rc == 0;
    if (rc == 0)
        rc = task__stream_publish_marker(c, ch, name, marker);
    if (rc == 0)
        rc = task__stream_reader_start(&p.r, name, from, &REPLAY_WINDOW);
    double deadline = task__now_mono() + timeout_ms / 1000.0;
    while (rc == 0 && !p.marker_seen) {
        double left = deadline - task__now_mono();
        if (left <= 0) {
            rc = TASK_ETIMEDOUT;
            break;
        }
        amqp_frame_t f;
        int got = task__conn_next_frame(c, &f, (int)(left * 1000) + 1, NULL);
        if (got < 0) {
            task__stream_reader_free(&p.r);
            *rejected = p.rejected;
            return got;
        }
        if (got == 0 || f.channel != ch || f.frame_type != AMQP_FRAME_METHOD ||
            f.payload.method.id != AMQP_BASIC_DELIVER_METHOD)
            continue;
        struct task__delivery d;
        rc = task__conn_read_delivery(c, &f, &d);
        if (rc != 0)
            break;
        replay_delivery(&p, &d);
        task__delivery_free(&d);
    }
    int crc = task__stream_reader_close(&p.r);
    *rejected = p.rejected;
    return rc != 0 ? rc : crc;
}
