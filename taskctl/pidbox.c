/* pidbox.c - see pidbox.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conn.h"
#include "internal.h"
#include "codec.h"
#include "pidbox.h"

#define STOP_SLICE_MS 50

static int fail(struct pidbox *p, char *err, size_t errsize)
{
    snprintf(err, errsize, "%s", task__conn_errmsg(p->c));
    return -1;
}

int pidbox_open(struct pidbox *p, struct task__conn *c, char *err, size_t errsize)
{
    p->c = c;
    task__uuid4(p->oid);
    amqp_connection_state_t st = task__conn_amqp(c);
    amqp_exchange_declare(st, 1, amqp_cstring_bytes("reply.celery.pidbox"),
                          amqp_cstring_bytes("direct"), 0, 0, 0, 0, amqp_empty_table);
    int rc = task__conn_check(c, amqp_get_rpc_reply(st), "declare reply.celery.pidbox");
    char q[80];
    snprintf(q, sizeof(q), "%s.reply.celery.pidbox", p->oid);
    /* Celery's reply queue arguments: it goes away 10 s after we stop reading it. */
    amqp_table_entry_t e[2] = {
        {.key = amqp_cstring_bytes("x-expires"),
         .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 10000}},
        {.key = amqp_cstring_bytes("x-message-ttl"),
         .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 300000}},
    };
    amqp_table_t args = {.num_entries = 2, .entries = e};
    if (rc == 0)
        rc = task__conn_declare_queue(c, 1, q, false, false, true, args);
    if (rc == 0) {
        amqp_queue_bind(st, 1, amqp_cstring_bytes(q), amqp_cstring_bytes("reply.celery.pidbox"),
                        amqp_cstring_bytes(p->oid), amqp_empty_table);
        rc = task__conn_check(c, amqp_get_rpc_reply(st), "bind reply queue");
    }
    if (rc == 0)
        rc = task__conn_consume(c, 1, q, true, amqp_empty_table, NULL);
    return rc == 0 ? 0 : fail(p, err, errsize);
}

static int broadcast(struct pidbox *p, struct pidbox_req *r, double timeout_s)
{
    task__uuid4(r->ticket);
    json_object *req = json_object_new_object();
    json_object_object_add(req, "method", json_object_new_string(r->method));
    json_object_object_add(req, "arguments", r->arguments ? r->arguments : json_object_new_object());
    r->arguments = NULL;
    json_object_object_add(req, "destination", r->destination);
    r->destination = NULL;
    json_object_object_add(req, "pattern", NULL);
    json_object_object_add(req, "matcher", NULL);
    json_object_object_add(req, "ticket", json_object_new_string(r->ticket));
    json_object *rt = json_object_new_object();
    json_object_object_add(rt, "exchange", json_object_new_string("reply.celery.pidbox"));
    json_object_object_add(rt, "routing_key", json_object_new_string(p->oid));
    json_object_object_add(req, "reply_to", rt);
    /* "expires": workers drop a request that reaches them after we stopped listening */
    amqp_table_entry_t h[2] = {
        {.key = amqp_cstring_bytes("clock"),
         .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 1}},
        {.key = amqp_cstring_bytes("expires"),
         .value = {.kind = AMQP_FIELD_KIND_F64, .value.f64 = task__now_wall() + timeout_s}},
    };
    amqp_basic_properties_t props =
        task__json_props((amqp_table_t){.num_entries = 2, .entries = h}, 2);
    size_t len;
    const char *text = task__json_str(req, &len);
    amqp_connection_state_t st = task__conn_amqp(p->c);
    amqp_exchange_declare(st, 1, amqp_cstring_bytes("celery.pidbox"),
                          amqp_cstring_bytes("fanout"), 0, 0, 0, 0, amqp_empty_table);
    int rc = task__conn_check(p->c, amqp_get_rpc_reply(st), "declare celery.pidbox");
    if (rc == 0)
        rc = task__conn_publish(p->c, 1, "celery.pidbox", "", &props, text, len, NULL);
    json_object_put(req);
    return rc;
}

/* The request a reply belongs to, by its "ticket" header; a reply without one (an old worker)
 * goes to the only request, if there is only one. */
static struct pidbox_req *owner(const struct task__delivery *d, struct pidbox_req *reqs, int n)
{
    const amqp_table_t *h = &d->msg.properties.headers;
    if (!(d->msg.properties._flags & AMQP_BASIC_HEADERS_FLAG))
        return n == 1 ? &reqs[0] : NULL;
    for (int i = 0; i < h->num_entries; i++) {
        const amqp_table_entry_t *e = &h->entries[i];
        if (e->key.len != 6 || memcmp(e->key.bytes, "ticket", 6) != 0)
            continue;
        if (e->value.kind != AMQP_FIELD_KIND_UTF8 && e->value.kind != AMQP_FIELD_KIND_BYTES)
            return NULL;
        amqp_bytes_t t = e->value.value.bytes;
        for (int j = 0; j < n; j++)
            if (t.len == 36 && memcmp(t.bytes, reqs[j].ticket, 36) == 0)
                return &reqs[j];
        return NULL; /* an answer to an earlier request */
    }
    return n == 1 ? &reqs[0] : NULL;
}

static void take_reply(struct task__delivery *d, struct pidbox_req *reqs, int n)
{
    struct pidbox_req *r = owner(d, reqs, n);
    if (r == NULL)
        return;
    char *text = task__bytes_dup(d->msg.body);
    json_object *body = text ? json_tokener_parse(text) : NULL;
    free(text);
    if (json_object_is_type(body, json_type_object)) {
        json_object_object_foreach(body, node, value)
            json_object_object_add(r->replies, node, json_object_get(value));
    }
    json_object_put(body);
}

int pidbox_ask(struct pidbox *p, struct pidbox_req *reqs, int n, double timeout_s,
               bool (*stop)(void *), void *ud, char *err, size_t errsize)
{
    for (int i = 0; i < n; i++) {
        reqs[i].replies = json_object_new_object();
        if (broadcast(p, &reqs[i], timeout_s) != 0)
            return fail(p, err, errsize);
    }
    double deadline = task__now_mono() + timeout_s;
    for (;;) {
        if (stop != NULL && stop(ud))
            return 1;
        int left = (int)((deadline - task__now_mono()) * 1000);
        if (left <= 0)
            return 0;
        if (stop != NULL && left > STOP_SLICE_MS)
            left = STOP_SLICE_MS;
        amqp_frame_t f;
        int rc = task__conn_next_frame(p->c, &f, left, NULL);
        if (rc < 0)
            return fail(p, err, errsize);
        if (rc == 0 || f.frame_type != AMQP_FRAME_METHOD ||
            f.payload.method.id != AMQP_BASIC_DELIVER_METHOD)
            continue;
        struct task__delivery d;
        if (task__conn_read_delivery(p->c, &f, &d) != 0)
            continue;
        take_reply(&d, reqs, n);
        task__delivery_free(&d);
    }
}
