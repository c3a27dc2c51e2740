/*
 * cmd_dead.c - taskctl dead: list the quarantined messages (taskd.dead) with their reasons, and
 * re-publish one or all of them, unchanged but for the quarantine headers, to the queue they came
 * from once the cause is fixed. Listing takes messages with basic.get and gives them back.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "conn.h"
#include "internal.h"

#define CH_GET 1
#define CH_PUB 2

static char *header_str(const amqp_basic_properties_t *p, const char *key)
{
    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return NULL;
    for (int i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        if (e->key.len == strlen(key) && memcmp(e->key.bytes, key, e->key.len) == 0 &&
            e->value.kind == AMQP_FIELD_KIND_UTF8)
            return task__bytes_dup(e->value.value.bytes);
    }
    return NULL;
}

/* Publish `m` to its original queue without the quarantine headers; waits for the confirm. */
static int republish(struct task__conn *cn, const amqp_message_t *m, const char *queue)
{
    amqp_basic_properties_t p = m->properties;
    amqp_table_entry_t kept[64];
    int n = 0;
    for (int i = 0; (p._flags & AMQP_BASIC_HEADERS_FLAG) && i < p.headers.num_entries && n < 64; i++) {
        const amqp_table_entry_t *e = &p.headers.entries[i];
        if ((e->key.len == 13 && memcmp(e->key.bytes, "x-taskd-error", 13) == 0) ||
            (e->key.len == 13 && memcmp(e->key.bytes, "x-taskd-queue", 13) == 0))
            continue;
        kept[n++] = *e;
    }
    p.headers.num_entries = n;
    p.headers.entries = kept;
    uint64_t seq;
    /* Mandatory: a queue that is gone returns the message, and the dead copy stays. */
    int rc = task__conn_publish_mandatory(cn, CH_PUB, "", queue, &p, m->body.bytes, m->body.len,
                                          &seq);
    bool returned = false;
    while (rc == 0) {
        amqp_frame_t f;
        rc = task__conn_next_frame(cn, &f, 10000, NULL);
        if (rc == 0)
            return TASK_ETIMEDOUT;
        if (rc < 0)
            return rc;
        rc = 0;
        if (f.frame_type == AMQP_FRAME_METHOD && f.channel == CH_PUB) {
            /* The broker sends basic.return (then the message's header and body frames, skipped
             * here) before the confirm of an unroutable message. */
            if (f.payload.method.id == AMQP_BASIC_RETURN_METHOD)
                returned = true;
            if (f.payload.method.id == AMQP_BASIC_ACK_METHOD)
                return returned ? TASK_EUNROUTABLE : 0;
            if (f.payload.method.id == AMQP_BASIC_NACK_METHOD)
                return TASK_ENACK;
        }
    }
    return rc;
}

int cmd_dead(const struct globals *g, int argc, char **argv)
{
    static const struct option opts[] = {{"queue", required_argument, NULL, 'q'},
                                         {"republish", required_argument, NULL, 'r'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {NULL, 0, NULL, 0}};
    const char *dead = "taskd.dead";
    long pick = 0; /* 0: list only; -1: all; N: the Nth */
    long limit = 100;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'q')
            dead = optarg;
        else if (c == 'r')
            pick = strcmp(optarg, "all") == 0 ? -1 : strtol(optarg, NULL, 10);
        else if (c == 'l' && ((limit = strtol(optarg, NULL, 10)) < 1 || limit > 1000000))
            return ctl_error("dead --limit: '%s' is not a number of messages (1 to 1000000)",
                             optarg);
        else if (c != 'l')
            return ctl_error("usage: taskctl dead [--queue Q] [--limit N] [--republish N|all]");
    }
    struct task__conn *cn = ctl_conn(g);
    if (cn == NULL)
        return EXIT_ERROR;
    if (task__conn_channel_open(cn, CH_PUB) != 0 || task__conn_confirm_select(cn, CH_PUB) != 0) {
        ctl_error("%s", task__conn_errmsg(cn));
        task__conn_close(cn);
        return EXIT_ERROR;
    }
    amqp_connection_state_t st = task__conn_amqp(cn);
    if (pick == -1) {
        /* Only what is there now: a message that fails again comes back to this queue, and
         * would be taken and re-published again, up to --limit times. */
        amqp_queue_declare_ok_t ok;
        uint16_t refused = 0;
        if (task__conn_declare_probe(cn, CH_GET, dead, true, amqp_empty_table, &ok, &refused) != 0) {
            ctl_error("%s", task__conn_errmsg(cn));
            task__conn_close(cn);
            return EXIT_ERROR;
        }
        if ((long)ok.message_count < limit)
            limit = (long)ok.message_count;
    }
    json_object *list = json_object_new_array();
    int rc = EXIT_OK, moved = 0;
    for (long i = 1; i <= limit; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(st, CH_GET, amqp_cstring_bytes(dead), 0);
        if (task__conn_check(cn, r, "basic.get") != 0) {
            rc = ctl_error("%s", task__conn_errmsg(cn));
            break;
        }
        if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
            break;
        uint64_t tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
        amqp_message_t m;
        if (task__conn_check(cn, amqp_read_message(st, CH_GET, &m, 0), "read") != 0) {
            rc = ctl_error("%s", task__conn_errmsg(cn));
            break;
        }
        char *why = header_str(&m.properties, "x-taskd-error");
        char *from = header_str(&m.properties, "x-taskd-queue");
        char *task = header_str(&m.properties, "task");
        char *id = header_str(&m.properties, "id");
        json_object *o = json_object_new_object();
        json_object_object_add(o, "n", json_object_new_int64(i));
        json_object_object_add(o, "reason", why ? json_object_new_string(why) : NULL);
        json_object_object_add(o, "queue", from ? json_object_new_string(from) : NULL);
        json_object_object_add(o, "task", task ? json_object_new_string(task) : NULL);
        json_object_object_add(o, "id", id ? json_object_new_string(id) : NULL);
        json_object_object_add(o, "bytes", json_object_new_int64((int64_t)m.body.len));
        bool move = (pick == -1 || pick == i) && from != NULL;
        if (move) {
            int prc = republish(cn, &m, from);
            json_object_object_add(o, "republished", json_object_new_boolean(prc == 0));
            if (prc == 0) {
                task__conn_ack(cn, CH_GET, tag, false);
                moved++;
            } else {
                rc = ctl_error("re-publish %ld to queue '%s': %s", i, from, task_strerror(prc));
            }
        }
        json_object_array_add(list, o);
        free(why);
        free(from);
        free(task);
        free(id);
        amqp_destroy_message(&m);
        task__conn_release_buffers(cn);
    }
    if (g->json) {
        ctl_print_json(list);
    } else {
        for (size_t i = 0; i < json_object_array_length(list); i++) {
            json_object *o = json_object_array_get_idx(list, i);
            printf("%3s  %-36s %-20s %-12s %s%s\n",
                   json_object_get_string(json_object_object_get(o, "n")),
                   ctl_safe(json_object_get_string(json_object_object_get(o, "id")), 0),
                   ctl_safe(json_object_get_string(json_object_object_get(o, "task")), 1),
                   ctl_safe(json_object_get_string(json_object_object_get(o, "queue")), 2),
                   ctl_safe(json_object_get_string(json_object_object_get(o, "reason")), 3),
                   json_object_object_get(o, "republished") ? "  [re-published]" : "");
        }
        if (pick != 0)
            printf("re-published %d message%s\n", moved, moved == 1 ? "" : "s");
    }
    json_object_put(list);
    /* What we only looked at goes back (closing the channel requeues unacked gets). */
    task__conn_close(cn);
    return rc;
}
