/*
 * raw_worker.c - the raw broker ceiling: the same round trip taskd makes, with nothing else.
 * Consumes a queue (acks late), "runs" test.add by summing the two args, publishes an rpc
 * result to reply_to with a publisher confirm, and acks the delivery once that is confirmed.
 * One process; bench/run starts two (like taskd -c 2). No decoding beyond what the reply needs.
 * With `stream`, each result is also appended to a stream (bench.raw.results), as taskd appends
 * every state to a results stream, and the delivery is acked once both are confirmed.
 *
 *   raw_worker QUEUE PREFETCH [stream]   (broker from TASKD_BROKER_URL; runs until killed)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codec.h"
#include "conn.h"

#define CH_IN 1
#define CH_OUT 2
#define MAXPEND 65536

static uint64_t pend_dtag[MAXPEND]; /* confirm sequence -> delivery tag to ack */

#define STREAM "bench.raw.results"

static int declare_stream(struct task__conn *c)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-queue-type"),
                            .value = {.kind = AMQP_FIELD_KIND_UTF8,
                                      .value.bytes = amqp_cstring_bytes("stream")}};
    amqp_table_t args = {.num_entries = 1, .entries = &e};
    return task__conn_declare_queue(c, CH_IN, STREAM, true, false, false, args);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4 || getenv("TASKD_BROKER_URL") == NULL) {
        fprintf(stderr, "usage: raw_worker QUEUE PREFETCH [stream] (with TASKD_BROKER_URL)\n");
        return 2;
    }
    bool stream = argc == 4 && strcmp(argv[3], "stream") == 0;
    char url[512];
    const char *env = getenv("TASKD_BROKER_URL");
    snprintf(url, sizeof(url), "%.*s", (int)strcspn(env, ","), env);
    task_strlist urls = {.v = (char *[]){url}, .n = 1};
    struct task__conn_opts o = {.urls = &urls, .connect_timeout_s = 5, .name = "raw_worker"};
    struct task__conn *c;
    task_error err = {0};
    if (task__conn_open(&c, &o, &err) != 0 || task__conn_channel_open(c, CH_IN) ||
        task__conn_channel_open(c, CH_OUT) || task__conn_confirm_select(c, CH_OUT) ||
        task__conn_declare_task_queue(c, CH_IN, argv[1], amqp_empty_table) ||
        task__conn_qos(c, CH_IN, (uint16_t)atoi(argv[2])) ||
        (stream && declare_stream(c) != 0) ||
        task__conn_consume(c, CH_IN, argv[1], false, amqp_empty_table, NULL)) {
        fprintf(stderr, "raw_worker: %s %s\n", err.msg, c ? task__conn_errmsg(c) : "");
        return 1;
    }
    json_tokener *tok = json_tokener_new();
    uint64_t lo_seq = 1; /* lowest sequence number that may still be unconfirmed */
    for (;;) {
        amqp_frame_t f;
        int rc = task__conn_next_frame(c, &f, -1, NULL);
        if (rc < 0)
            return 1;
        if (rc == 0 || f.frame_type != AMQP_FRAME_METHOD)
            continue;
        if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            const amqp_basic_ack_t *a = f.payload.method.decoded;
            uint64_t lo = a->multiple ? lo_seq : a->delivery_tag;
            if (a->multiple)
                lo_seq = a->delivery_tag + 1;
            for (uint64_t s = lo; s <= a->delivery_tag; s++) {
                if (pend_dtag[s % MAXPEND] != 0) {
                    task__conn_ack(c, CH_IN, pend_dtag[s % MAXPEND], false);
                    pend_dtag[s % MAXPEND] = 0;
                }
            }
        } else if (f.payload.method.id == AMQP_BASIC_DELIVER_METHOD) {
            struct task__delivery d;
            if (task__conn_read_delivery(c, &f, &d) != 0)
                return 1;
            json_tokener_reset(tok);
            json_object *body = json_tokener_parse_ex(tok, d.msg.body.bytes, (int)d.msg.body.len);
            json_object *args = json_object_array_get_idx(body, 0);
            long sum = json_object_get_int64(json_object_array_get_idx(args, 0)) +
                       json_object_get_int64(json_object_array_get_idx(args, 1));
            char *id = task__bytes_dup(d.msg.properties.correlation_id);
            char *reply = task__bytes_dup(d.msg.properties.reply_to);
            json_object *res = json_object_new_int64(sum);
            struct task__result r = {.task_id = id, .status = "SUCCESS", .result = res};
            struct task__result_wire w;
            uint64_t seq = 0;
            if (task__result_encode(&r, &w, NULL) == 0 &&
                task__conn_publish(c, CH_OUT, "", reply, &w.props, w.body, w.body_len, &seq) == 0 &&
                (!stream || task__conn_publish(c, CH_OUT, "", STREAM, &w.props, w.body,
                                               w.body_len, &seq) == 0))
                pend_dtag[seq % MAXPEND] = d.tag; /* the later confirm: both are in */
            task__result_wire_free(&w);
            json_object_put(res);
            json_object_put(body);
            free(id);
            free(reply);
            task__delivery_free(&d);
        }
        task__conn_release_buffers(c);
    }
}
