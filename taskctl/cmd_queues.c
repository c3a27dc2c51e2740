/*
 * cmd_queues.c - taskctl queues and purge, with passive declares (what the AMQP protocol can
 * tell: ready messages and consumers). The management HTTP API is not used yet.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "common.h"
#include "conn.h"

/* Ready count and consumers of `q`; -1 when it does not exist (the channel is reopened). */
static int peek(struct task__conn *cn, const char *q, long *ready, long *consumers)
{
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(task__conn_amqp(cn), 1, amqp_cstring_bytes(q),
                                                     1, 0, 0, 0, amqp_empty_table);
    if (ok == NULL) {
        amqp_rpc_reply_t r = amqp_get_rpc_reply(task__conn_amqp(cn));
        if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_ok_t cok = {0};
            amqp_send_method(task__conn_amqp(cn), 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &cok);
            task__conn_channel_open(cn, 1);
        }
        return -1;
    }
    *ready = (long)ok->message_count;
    *consumers = (long)ok->consumer_count;
    return 0;
}

int cmd_queues(const struct globals *g, int argc, char **argv)
{
    struct task__conn *cn = ctl_conn(g);
    if (cn == NULL)
        return EXIT_ERROR;
    const char *defaults[] = {"celery", "taskd.dead"};
    int n = argc > 1 ? argc - 1 : 2;
    json_object *all = json_object_new_array();
    int rc = EXIT_OK;
    if (!g->json)
        printf("%-32s %10s %10s\n", "queue", "ready", "consumers");
    for (int i = 0; i < n; i++) {
        const char *q = argc > 1 ? argv[i + 1] : defaults[i];
        long ready = 0, consumers = 0;
        if (peek(cn, q, &ready, &consumers) != 0) {
            fprintf(stderr, "taskctl: queue %s does not exist\n", q);
            rc = EXIT_UNKNOWN;
            continue;
        }
        if (g->json) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "name", json_object_new_string(q));
            json_object_object_add(o, "ready", json_object_new_int64(ready));
            json_object_object_add(o, "consumers", json_object_new_int64(consumers));
            json_object_array_add(all, o);
        } else {
            printf("%-32s %10ld %10ld\n", q, ready, consumers);
        }
    }
    if (g->json)
        ctl_print_json(all);
    json_object_put(all);
    task__conn_close(cn);
    return rc;
}

int cmd_purge(const struct globals *g, int argc, char **argv)
{
    static const struct option opts[] = {{"yes", no_argument, NULL, 'y'}, {NULL, 0, NULL, 0}};
    bool yes = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c != 'y')
            return ctl_error("usage: taskctl purge QUEUE [--yes]");
        yes = true;
    }
    if (optind != argc - 1)
        return ctl_error("usage: taskctl purge QUEUE [--yes]");
    const char *q = argv[optind];
    char prompt[300];
    snprintf(prompt, sizeof(prompt), "Delete every ready message in queue %s?", q);
    if (!yes && !ctl_confirm(prompt))
        return ctl_error("not purged (pass --yes to purge without asking)");
    struct task__conn *cn = ctl_conn(g);
    if (cn == NULL)
        return EXIT_ERROR;
    amqp_queue_purge_ok_t *ok = amqp_queue_purge(task__conn_amqp(cn), 1, amqp_cstring_bytes(q));
    int rc = task__conn_check(cn, amqp_get_rpc_reply(task__conn_amqp(cn)), "purge");
    if (rc != 0) {
        rc = ctl_error("%s", task__conn_errmsg(cn));
    } else if (g->json) {
        printf("{\"queue\":\"%s\",\"purged\":%u}\n", q, ok->message_count);
    } else {
        printf("purged %u message%s from %s\n", ok->message_count,
               ok->message_count == 1 ? "" : "s", q);
    }
    task__conn_close(cn);
    return rc;
}
