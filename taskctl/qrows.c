/* qrows.c - see qrows.h. */
#include <stdio.h>
#include "conn.h"
#include "qrows.h"

/* Ready count and consumers of `q`; -1 when it does not exist (the channel is reopened: the
 * broker closes it on a failed passive declare). */
static int peek(struct task__conn *c, uint16_t ch, const char *q, long *ready, long *consumers)
{
    amqp_queue_declare_ok_t ok;
    uint16_t refused;
    if (task__conn_declare_probe(c, ch, q, true, amqp_empty_table, &ok, &refused) != 0) {
        task__conn_clear_error(c);
        if (refused != 0)
            task__conn_channel_open(c, ch);
        return -1;
    }
    *ready = (long)ok.message_count;
    *consumers = (long)ok.consumer_count;
    return 0;
}

json_object *qrows_peek(struct task__conn *c, uint16_t ch, char *const *names, int n,
                        json_object **missing)
{
    json_object *rows = json_object_new_array();
    for (int i = 0; i < n; i++) {
        long ready = 0, consumers = 0;
        if (peek(c, ch, names[i], &ready, &consumers) != 0) {
            if (*missing == NULL)
                *missing = json_object_new_array();
            json_object_array_add(*missing, json_object_new_string(names[i]));
            continue;
        }
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(names[i]));
        json_object_object_add(o, "ready", json_object_new_int64(ready));
        json_object_object_add(o, "unacked", NULL);
        json_object_object_add(o, "consumers", json_object_new_int64(consumers));
        json_object_object_add(o, "publish_rate", NULL);
        json_object_object_add(o, "deliver_rate", NULL);
        json_object_array_add(rows, o);
    }
    return rows;
}

/* A count or a rate as text; "-" when unknown. */
static void cell(json_object *row, const char *key, char *buf, size_t size)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(row, key, &v) || v == NULL)
        snprintf(buf, size, "-");
    else if (json_object_is_type(v, json_type_double))
        snprintf(buf, size, "%.2f", json_object_get_double(v));
    else
        snprintf(buf, size, "%lld", (long long)json_object_get_int64(v));
}

void qrows_format(json_object *row, char *buf, size_t size)
{
    if (row == NULL) {
        snprintf(buf, size, "%-40s %9s %9s %9s %10s %10s", "QUEUE", "READY", "UNACKED",
                 "CONSUMERS", "PUBLISH/S", "DELIVER/S");
        return;
    }
    char ready[24], unacked[24], consumers[24], pub[24], del[24];
    cell(row, "ready", ready, sizeof(ready));
    cell(row, "unacked", unacked, sizeof(unacked));
    cell(row, "consumers", consumers, sizeof(consumers));
    cell(row, "publish_rate", pub, sizeof(pub));
    cell(row, "deliver_rate", del, sizeof(del));
    snprintf(buf, size, "%-40s %9s %9s %9s %10s %10s",
             json_object_get_string(json_object_object_get(row, "name")), ready, unacked,
             consumers, pub, del);
}
