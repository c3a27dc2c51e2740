/* beat_store.c - see beat_store.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include "beat_store.h"

void beat_store_queue(const char *entry, char *buf, size_t size)
{
    snprintf(buf, size, BEAT_STORE_PREFIX "%s", entry);
}

amqp_table_t beat_quorum_args(amqp_table_entry_t e[2], const char *key, amqp_field_value_t v)
{
    e[0].key = amqp_cstring_bytes("x-queue-type");
    e[0].value.kind = AMQP_FIELD_KIND_UTF8;
    e[0].value.value.bytes = amqp_cstring_bytes("quorum");
    e[1].key = amqp_cstring_bytes(key);
    e[1].value = v;
    return (amqp_table_t){.num_entries = 2, .entries = e};
}

int beat_store_declare(struct task__conn *c, uint16_t ch, const char *name)
{
    amqp_table_entry_t e[2];
    amqp_field_value_t one = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = 1};
    uint16_t refused = 0;
    return task__conn_declare_probe(c, ch, name, false, beat_quorum_args(e, "x-max-length", one),
                                    NULL, &refused);
}

int beat_store_peek(struct task__conn *c, uint16_t ch, const char *name, char **body)
{
    *body = NULL;
    amqp_connection_state_t st = task__conn_amqp(c);
    amqp_rpc_reply_t r = amqp_basic_get(st, ch, amqp_cstring_bytes(name), 0);
    char what[300];
    snprintf(what, sizeof(what), "basic.get %s", name);
    int rc = task__conn_check(c, r, what);
    if (rc != 0)
        return rc;
    if (r.reply.id != AMQP_BASIC_GET_OK_METHOD)
        return 0; /* get-empty */
    uint64_t tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
    amqp_message_t m;
    r = amqp_read_message(st, ch, &m, 0);
    rc = task__conn_check(c, r, what);
    if (rc != 0)
        return rc;
    *body = task__bytes_dup(m.body);
    amqp_destroy_message(&m);
    /* Put it back: the store keeps its one message for the next reader. */
    rc = task__conn_reject(c, ch, tag, true);
    if (rc == 0 && *body == NULL)
        rc = TASK_ENOMEM;
    return rc;
}

int beat_store_read(struct task__conn *c, uint16_t ch, const char *entry, int64_t *tick_ms,
                    bool *found)
{
    char q[300];
    *found = false;
    beat_store_queue(entry, q, sizeof(q));
    int rc = beat_store_declare(c, ch, q);
    char *body = NULL;
    if (rc == 0)
        rc = beat_store_peek(c, ch, q, &body);
    if (rc != 0 || body == NULL)
        return rc;
    json_object *o = json_tokener_parse(body);
    json_object *t = NULL;
    if (o != NULL && json_object_object_get_ex(o, "tick_ms", &t) &&
        json_object_is_type(t, json_type_int)) {
        *tick_ms = json_object_get_int64(t);
        *found = true;
    }
    json_object_put(o);
    free(body);
    return 0;
}
