/* stream.c - see stream.h. */
#include <stdio.h>
#include <string.h>
#include "internal.h"
#include "stream.h"

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

const char *task__revoked_record_id(json_object *rec)
{
    const char *id = task__json_get_str(rec, "task_id");
    size_t n = id != NULL ? strlen(id) : 0;
    return n > 0 && n <= TASK__ID_MAX ? id : NULL;
}
