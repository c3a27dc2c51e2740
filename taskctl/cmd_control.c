/*
 * cmd_control.c - taskctl workers, inspect and revoke: Celery's pidbox protocol (broadcast on
 * the celery.pidbox fanout exchange, replies on reply.celery.pidbox matched by ticket), so they
 * see taskd and Python Celery workers alike.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "conn.h"
#include "internal.h"
#include "stream.h"

struct pidbox {
    struct task__conn *c;
    char oid[37];
    char ticket[37];
};

static int pidbox_open(struct pidbox *p, const struct globals *g)
{
    p->c = ctl_conn(g);
    if (p->c == NULL)
        return EXIT_ERROR;
    task__uuid4(p->oid);
    task__uuid4(p->ticket);
    amqp_connection_state_t st = task__conn_amqp(p->c);
    amqp_exchange_declare(st, 1, amqp_cstring_bytes("reply.celery.pidbox"),
                          amqp_cstring_bytes("direct"), 0, 0, 0, 0, amqp_empty_table);
    int rc = task__conn_check(p->c, amqp_get_rpc_reply(st), "declare reply.celery.pidbox");
    char q[80];
    snprintf(q, sizeof(q), "%s.reply.celery.pidbox", p->oid);
    amqp_table_entry_t e[2] = {
        {.key = amqp_cstring_bytes("x-expires"), .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 10000}},
        {.key = amqp_cstring_bytes("x-message-ttl"), .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 300000}},
    };
    amqp_table_t args = {.num_entries = 2, .entries = e};
    if (rc == 0)
        rc = task__conn_declare_queue(p->c, 1, q, false, false, true, args);
    if (rc == 0) {
        amqp_queue_bind(st, 1, amqp_cstring_bytes(q), amqp_cstring_bytes("reply.celery.pidbox"),
                        amqp_cstring_bytes(p->oid), amqp_empty_table);
        rc = task__conn_check(p->c, amqp_get_rpc_reply(st), "bind reply queue");
    }
    if (rc == 0)
        rc = task__conn_consume(p->c, 1, q, true, amqp_empty_table, NULL);
    if (rc != 0) {
        ctl_error("%s", task__conn_errmsg(p->c));
        task__conn_close(p->c);
        return EXIT_ERROR;
    }
    return 0;
}

/* Broadcast `method`; with want_reply, collect {node: reply} for timeout_s into *out. */
static int pidbox_call(struct pidbox *p, const char *method, json_object *arguments,
                       bool want_reply, double timeout_s, json_object **out)
{
    json_object *req = json_object_new_object();
    json_object_object_add(req, "method", json_object_new_string(method));
    json_object_object_add(req, "arguments", arguments ? arguments : json_object_new_object());
    json_object_object_add(req, "destination", NULL);
    json_object_object_add(req, "pattern", NULL);
    json_object_object_add(req, "matcher", NULL);
    if (want_reply) {
        json_object_object_add(req, "ticket", json_object_new_string(p->ticket));
        json_object *rt = json_object_new_object();
        json_object_object_add(rt, "exchange", json_object_new_string("reply.celery.pidbox"));
        json_object_object_add(rt, "routing_key", json_object_new_string(p->oid));
        json_object_object_add(req, "reply_to", rt);
    }
    amqp_table_entry_t h[2] = {
        {.key = amqp_cstring_bytes("clock"), .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 1}},
        {.key = amqp_cstring_bytes("expires"),
         .value = {.kind = AMQP_FIELD_KIND_F64, .value.f64 = task__now_wall() + timeout_s}},
    };
    amqp_basic_properties_t props = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG |
                  AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                  AMQP_BASIC_PRIORITY_FLAG,
        .content_type = amqp_cstring_bytes("application/json"),
        .content_encoding = amqp_cstring_bytes("utf-8"),
        .headers = {.num_entries = 2, .entries = h},
        .delivery_mode = 2,
    };
    size_t len;
    const char *text = task__json_str(req, &len);
    amqp_connection_state_t st = task__conn_amqp(p->c);
    amqp_exchange_declare(st, 1, amqp_cstring_bytes("celery.pidbox"),
                          amqp_cstring_bytes("fanout"), 0, 0, 0, 0, amqp_empty_table);
    int rc = task__conn_check(p->c, amqp_get_rpc_reply(st), "declare celery.pidbox");
    if (rc == 0)
        rc = task__conn_publish(p->c, 1, "celery.pidbox", "", &props, text, len, NULL);
    json_object_put(req);
    if (rc != 0)
        return ctl_error("%s", task__conn_errmsg(p->c));
    if (!want_reply)
        return 0;
    *out = json_object_new_object();
    double deadline = task__now_mono() + timeout_s;
    for (;;) {
        int left = (int)((deadline - task__now_mono()) * 1000);
        if (left <= 0)
            break;
        amqp_frame_t f;
        rc = task__conn_next_frame(p->c, &f, left, NULL);
        if (rc < 0)
            return ctl_error("%s", task__conn_errmsg(p->c));
        if (rc == 0 || f.frame_type != AMQP_FRAME_METHOD ||
            f.payload.method.id != AMQP_BASIC_DELIVER_METHOD)
            continue;
        struct task__delivery d;
        if (task__conn_read_delivery(p->c, &f, &d) != 0)
            continue;
        char *text_in = task__bytes_dup(d.msg.body);
        json_object *body = text_in ? json_tokener_parse(text_in) : NULL;
        free(text_in);
        if (json_object_is_type(body, json_type_object)) {
            json_object_object_foreach(body, node, value)
                json_object_object_add(*out, node, json_object_get(value));
        }
        json_object_put(body);
        task__delivery_free(&d);
    }
    return 0;
}

static double parse_timeout(int argc, char **argv, int *rest)
{
    static const struct option opts[] = {{"timeout", required_argument, NULL, 't'},
                                         {"terminate", no_argument, NULL, 'T'},
                                         {NULL, 0, NULL, 0}};
    double t = 1.0;
    int c;
    optind = 1;
    *rest = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 't')
            t = ctl_parse_seconds(optarg);
        else if (c == 'T')
            *rest = 1;
        else
            return -1;
    }
    return t;
}

int cmd_workers(const struct globals *g, int argc, char **argv)
{
    int flag;
    double timeout = parse_timeout(argc, argv, &flag);
    if (timeout < 0 || optind != argc)
        return ctl_error("usage: taskctl workers [--timeout S]");
    struct pidbox p;
    if (pidbox_open(&p, g) != 0)
        return EXIT_ERROR;
    json_object *replies = NULL;
    int rc = pidbox_call(&p, "ping", NULL, true, timeout, &replies);
    if (rc == 0) {
        if (g->json) {
            ctl_print_json(replies);
        } else {
            json_object_object_foreach(replies, node, v) printf("%s\t%s\n", node,
                                                                json_object_get_string(json_object_object_get(v, "ok")));
        }
        if (json_object_object_length(replies) == 0) {
            fprintf(stderr, "taskctl: no worker answered within %.1f s\n", timeout);
            rc = EXIT_UNKNOWN;
        }
    }
    json_object_put(replies);
    task__conn_close(p.c);
    return rc;
}

int cmd_inspect(const struct globals *g, int argc, char **argv)
{
    int flag;
    double timeout = parse_timeout(argc, argv, &flag);
    static const char *const methods[] = {"active", "registered", "stats", "revoked", NULL};
    const char *method = optind == argc - 1 ? argv[optind] : NULL;
    bool known = false;
    for (int i = 0; method && methods[i]; i++)
        known |= strcmp(methods[i], method) == 0;
    if (timeout < 0 || !known)
        return ctl_error("usage: taskctl inspect active|registered|stats|revoked [--timeout S]");
    struct pidbox p;
    if (pidbox_open(&p, g) != 0)
        return EXIT_ERROR;
    json_object *replies = NULL;
    int rc = pidbox_call(&p, method, NULL, true, timeout, &replies);
    if (rc == 0) {
        if (g->json) {
            ctl_print_json(replies);
        } else {
            json_object_object_foreach(replies, node, v)
            {
                printf("%s:\n", node);
                if (json_object_is_type(v, json_type_array))
                    for (size_t i = 0; i < json_object_array_length(v); i++)
                        printf("  %s\n", json_object_to_json_string_ext(
                                             json_object_array_get_idx(v, i), JSON_C_TO_STRING_PLAIN));
                else
                    printf("  %s\n", json_object_to_json_string_ext(v, JSON_C_TO_STRING_PRETTY));
            }
        }
        if (json_object_object_length(replies) == 0) {
            fprintf(stderr, "taskctl: no worker answered within %.1f s\n", timeout);
            rc = EXIT_UNKNOWN;
        }
    }
    json_object_put(replies);
    task__conn_close(p.c);
    return rc;
}

/* Append the revoke to taskd.revoked (confirmed), so workers that are down or not yet started
 * honour it when they connect. */
static int persist_revoke(const struct globals *g, struct task__conn *c, const char *id)
{
    task_config *cfg = ctl_config(g);
    if (cfg == NULL)
        return EXIT_ERROR;
    char ts[40];
    task__iso8601_format(task__now_wall(), ts, sizeof(ts));
    json_object *rec = json_object_new_object();
    json_object_object_add(rec, "task_id", json_object_new_string(id));
    json_object_object_add(rec, "revoked_at", json_object_new_string(ts));
    int rc = task__stream_append_confirmed(c, 2, TASK__REVOKED_STREAM, cfg->results_max_age_s,
                                           task__json_str(rec, NULL), 5000);
    json_object_put(rec);
    task_config_free(cfg);
    if (rc != 0)
        return ctl_error("revoke %s: could not record it in %s: %s", id, TASK__REVOKED_STREAM,
                         task__conn_errmsg(c)[0] ? task__conn_errmsg(c) : task_strerror(rc));
    return 0;
}

int cmd_revoke(const struct globals *g, int argc, char **argv)
{
    int terminate;
    double timeout = parse_timeout(argc, argv, &terminate);
    if (timeout < 0 || optind != argc - 1)
        return ctl_error("usage: taskctl revoke ID [--terminate]");
    struct pidbox p;
    if (pidbox_open(&p, g) != 0)
        return EXIT_ERROR;
    if (persist_revoke(g, p.c, argv[optind]) != 0) {
        task__conn_close(p.c);
        return EXIT_ERROR;
    }
    json_object *args = json_object_new_object();
    json_object_object_add(args, "task_id", json_object_new_string(argv[optind]));
    json_object_object_add(args, "terminate", json_object_new_boolean(terminate));
    json_object_object_add(args, "signal", json_object_new_string("SIGTERM"));
    json_object *replies = NULL;
    int rc = pidbox_call(&p, "revoke", args, true, timeout, &replies);
    if (rc == 0) {
        int n = json_object_object_length(replies);
        if (g->json)
            ctl_print_json(replies);
        else
            printf("revoked %s (%d worker%s acknowledged)\n", argv[optind], n, n == 1 ? "" : "s");
    }
    json_object_put(replies);
    task__conn_close(p.c);
    return rc;
}
