/* stream.c - see stream.h. */
#include <stdio.h>
#include <string.h>
#include "task_limits.h"
#include "codec.h"
#include "internal.h"
#include "stream.h"

#define ACK_EVERY 256
#define PREFETCH 1000

amqp_basic_properties_t task__record_props(void)
{
    return (amqp_basic_properties_t){
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG,
        .content_type = amqp_cstring_bytes("application/json"),
        .delivery_mode = 2,
    };
}

/* Stream arguments: type, retention and, when segment_bytes > 0, the segment size. */
static amqp_table_t stream_args(amqp_table_entry_t e[3], char age[32], double max_age_s,
                                int64_t segment_bytes)
{
    snprintf(age, 32, "%llus", (unsigned long long)max_age_s);
    e[0] = (amqp_table_entry_t){
        .key = amqp_cstring_bytes("x-queue-type"),
        .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("stream")}};
    e[1] = (amqp_table_entry_t){
        .key = amqp_cstring_bytes("x-max-age"),
        .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(age)}};
    e[2] = (amqp_table_entry_t){
        .key = amqp_cstring_bytes("x-stream-max-segment-size-bytes"),
        .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = segment_bytes}};
    return (amqp_table_t){.num_entries = segment_bytes > 0 ? 3 : 2, .entries = e};
}

/* Declare stream `name` on `ch` and wait; one that refuses our arguments is kept. */
static int declare_kept(struct task__conn *c, uint16_t ch, const char *name, amqp_table_t args,
                        int *kept)
{
    uint16_t refused;
    int rc = task__conn_declare_probe(c, ch, name, false, args, NULL, &refused);
    if (rc == 0 || refused != 406)
        return rc;
    /* Declared before with another retention: the broker keeps the first arguments (a policy
     * changes them), and the stream serves as it is. */
    task__conn_clear_error(c);
    ++*kept;
    return task__conn_channel_open(c, ch);
}

int task__stream_declare(struct task__conn *c, uint16_t ch, const char *name, double max_age_s,
                         int *kept)
{
    amqp_table_entry_t e[3];
    char age[32];
    amqp_table_t args = stream_args(e, age, max_age_s, 0);
    int n = 0;
    int rc = declare_kept(c, ch, name, args, &n);
    if (kept != NULL)
        *kept = n;
    return rc;
}

unsigned task__results_partition(const char *id)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    /* The multiplications carry upwards: the low bits depend on the input's low bits only. */
    return h >> (32 - TASK__RESULTS_BITS);
}

char *task__results_name(unsigned partition, char name[32])
{
    snprintf(name, 32, TASK__RESULTS_PREFIX "%u", partition % TASK__RESULTS_PARTITIONS);
    return name;
}

int task__results_declare(struct task__conn *c, uint16_t ch, double max_age_s, int *kept,
                          bool *rest)
{
    amqp_table_entry_t e[3];
    char age[32], name[32];
    amqp_table_t args = stream_args(e, age, max_age_s, TASK__RESULTS_SEGMENT_BYTES);
    *kept = 0;
    int rc = declare_kept(c, ch, task__results_name(0, name), args, kept);
    *rest = rc == 0 && *kept == 0;
    for (unsigned i = 1; rc == 0 && !*rest && i < TASK__RESULTS_PARTITIONS; i++)
        rc = declare_kept(c, ch, task__results_name(i, name), args, kept);
    return rc;
}

int task__results_declare_rest(struct task__conn *c, uint16_t ch, double max_age_s)
{
    amqp_table_entry_t e[3];
    char age[32], name[32];
    amqp_table_t args = stream_args(e, age, max_age_s, TASK__RESULTS_SEGMENT_BYTES);
    int rc = 0;
    for (unsigned i = 1; rc == 0 && i < TASK__RESULTS_PARTITIONS; i++)
        rc = task__conn_declare_nowait(c, ch, task__results_name(i, name), args);
    return rc;
}

int task__stream_append(struct task__conn *c, uint16_t ch, const char *name, const char *body)
{
    amqp_basic_properties_t p = task__record_props();
    return task__conn_publish(c, ch, "", name, &p, body, strlen(body), NULL);
}

int task__stream_append_confirmed(struct task__conn *c, uint16_t ch, const char *name,
                                  double max_age_s, const char *body, int timeout_ms)
{
    int rc = task__conn_channel_open(c, ch);
    if (rc == 0)
        rc = task__stream_declare(c, ch, name, max_age_s, NULL);
    if (rc == 0)
        rc = task__conn_confirm_select(c, ch);
    if (rc == 0)
        rc = task__stream_append(c, ch, name, body);
    double deadline = task__now_mono() + timeout_ms / 1000.0;
    bool confirmed = false;
    while (rc == 0 && !confirmed) {
        double left = deadline - task__now_mono();
        amqp_frame_t f;
        int got = left > 0 ? task__conn_next_frame(c, &f, (int)(left * 1000) + 1, NULL) : 0;
        if (got < 0)
            return got;
        if (got == 0 && left <= 0)
            rc = TASK_ETIMEDOUT;
        else if (got > 0 && f.channel == ch && f.frame_type == AMQP_FRAME_METHOD &&
                 f.payload.method.id == AMQP_BASIC_NACK_METHOD)
            rc = TASK_EBROKER;
        else if (got > 0 && f.channel == ch && f.frame_type == AMQP_FRAME_METHOD &&
                 f.payload.method.id == AMQP_BASIC_ACK_METHOD)
            confirmed = true;
    }
    amqp_rpc_reply_t cr = amqp_channel_close(task__conn_amqp(c), ch, AMQP_REPLY_SUCCESS);
    int crc = task__conn_check(c, cr, "close stream channel");
    return rc != 0 ? rc : crc;
}

struct replay {
    const char *marker;
    task__stream_fn fn;
    void *ud;
    bool done;
    unsigned rejected;
};

/* Anyone who can publish to the stream can write a record, so nothing in one is trusted: a
 * marker that is not a string, or a record that is not an object, is skipped and counted. */
static void one_record(const char *marker, json_object *rec, task__stream_fn fn, void *ud,
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

const char *task__revoked_record_id(json_object *rec)
{
    const char *id = task__json_get_str(rec, "task_id");
    size_t n = id != NULL ? strlen(id) : 0;
    return n > 0 && n <= TASK__ID_MAX ? id : NULL;
}

static void on_body(struct replay *r, const struct task__delivery *d)
{
    (void)task__stream_body(d->msg.body.bytes, d->msg.body.len, r->marker, r->fn, r->ud, &r->done,
                            &r->rejected);
}

static int start(struct task__conn *c, uint16_t ch, const char *name, double since_s,
                 const char *marker)
{
    char body[80];
    snprintf(body, sizeof(body), "{\"taskd_marker\": \"%s\"}", marker);
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-stream-offset")};
    if (since_s > 2) {
        e.value.kind = AMQP_FIELD_KIND_TIMESTAMP;
        e.value.value.u64 = (uint64_t)since_s - 2; /* whole seconds; clocks differ a little */
    } else {
        e.value.kind = AMQP_FIELD_KIND_UTF8;
        e.value.value.bytes = amqp_cstring_bytes("first");
    }
    amqp_table_t args = {.num_entries = 1, .entries = &e};
    int rc = task__conn_channel_open(c, ch);
    if (rc == 0)
        rc = task__stream_append(c, ch, name, body);
    if (rc == 0)
        rc = task__conn_qos(c, ch, PREFETCH);
    if (rc == 0)
        rc = task__conn_consume(c, ch, name, false, args, NULL);
    return rc;
}

int task__stream_replay(struct task__conn *c, uint16_t ch, const char *name, double since_s,
                        int timeout_ms, task__stream_fn fn, void *ud)
{
    unsigned rejected = 0;
    return task__stream_replay_counted(c, ch, name, since_s, timeout_ms, fn, ud, &rejected);
}

int task__stream_replay_counted(struct task__conn *c, uint16_t ch, const char *name,
                                double since_s, int timeout_ms,
                                void (*fn)(json_object *rec, void *ud), void *ud,
                                unsigned *rejected)
{
    char marker[37];
    task__uuid4(marker);
    struct replay r = {.marker = marker, .fn = fn, .ud = ud};
    int rc = start(c, ch, name, since_s, marker);
    double deadline = task__now_mono() + timeout_ms / 1000.0;
    unsigned since_ack = 0;
    while (rc == 0 && !r.done) {
        double left = deadline - task__now_mono();
        if (left <= 0) {
            rc = TASK_ETIMEDOUT;
            break;
        }
        amqp_frame_t f;
        int got = task__conn_next_frame(c, &f, (int)(left * 1000) + 1, NULL);
        if (got < 0) {
            *rejected = r.rejected;
            return got;
        }
        if (got == 0 || f.channel != ch || f.frame_type != AMQP_FRAME_METHOD ||
            f.payload.method.id != AMQP_BASIC_DELIVER_METHOD)
            continue;
        struct task__delivery d;
        rc = task__conn_read_delivery(c, &f, &d);
        if (rc != 0)
            break;
        on_body(&r, &d);
        /* Stream consumers get more only as they ack (credit). */
        if (++since_ack >= ACK_EVERY || r.done) {
            (void)task__conn_ack(c, ch, d.tag, true);
            since_ack = 0;
        }
        task__delivery_free(&d);
    }
    amqp_rpc_reply_t cr = amqp_channel_close(task__conn_amqp(c), ch, AMQP_REPLY_SUCCESS);
    int crc = task__conn_check(c, cr, "close stream channel");
    task__conn_release_buffers(c);
    *rejected = r.rejected;
    return rc != 0 ? rc : crc;
}
