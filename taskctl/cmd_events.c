/* cmd_events.c - taskctl events: tail the celeryev exchange as `celery events` does. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common.h"
#include "conn.h"
#include "internal.h"

static void print_event(const struct globals *g, json_object *ev)
{
    if (g->json) {
        ctl_print_json(ev);
        return;
    }
    json_object *v;
    double ts = json_object_object_get_ex(ev, "timestamp", &v) ? json_object_get_double(v) : 0;
    time_t secs = (time_t)ts;
    struct tm tm;
    gmtime_r(&secs, &tm);
    const char *type = json_object_object_get_ex(ev, "type", &v) ? json_object_get_string(v) : "?";
    const char *host = json_object_object_get_ex(ev, "hostname", &v) ? json_object_get_string(v) : "?";
    printf("%02d:%02d:%02d.%03d %-16s %s", tm.tm_hour, tm.tm_min, tm.tm_sec,
           (int)((ts - (double)secs) * 1000), ctl_safe(type, 0), ctl_safe(host, 1));
    const char *keys[] = {"uuid", "name", "result", "exception", "runtime", "active"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (json_object_object_get_ex(ev, keys[i], &v) && v != NULL)
            printf(" %s=%s", keys[i], ctl_safe(json_object_get_string(v), 2));
    putchar('\n');
    fflush(stdout);
}

int cmd_events(const struct globals *g, int argc, char **argv)
{
    static const struct option opts[] = {{"count", required_argument, NULL, 'n'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {NULL, 0, NULL, 0}};
    long count = -1;
    double timeout = -1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        if (c == 'n')
            count = strtol(optarg, &end, 10);
        else if (c == 't')
            timeout = ctl_parse_seconds(optarg);
        if ((c == 'n' && (*end != '\0' || end == optarg || count < 1)) ||
            (c == 't' && timeout < 0) || (c != 'n' && c != 't'))
            return ctl_error("usage: taskctl events [--count N (>= 1)] [--timeout S]");
    }
    if (optind != argc)
        return ctl_error("usage: taskctl events [--count N (>= 1)] [--timeout S]");
    struct task__conn *cn = ctl_conn(g);
    if (cn == NULL)
        return EXIT_ERROR;
    char q[64] = "celeryev.";
    task__uuid4(q + 9);
    /* Declared as Celery's event monitors declare theirs. */
    amqp_table_entry_t e[2] = {
        {.key = amqp_cstring_bytes("x-expires"), .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 60000}},
        {.key = amqp_cstring_bytes("x-message-ttl"), .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 5000}},
    };
    amqp_table_t args = {.num_entries = 2, .entries = e};
    amqp_connection_state_t st = task__conn_amqp(cn);
    amqp_exchange_declare(st, 1, amqp_cstring_bytes("celeryev"), amqp_cstring_bytes("topic"), 0, 1,
                          0, 0, amqp_empty_table);
    int rc = task__conn_check(cn, amqp_get_rpc_reply(st), "declare celeryev");
    if (rc == 0)
        rc = task__conn_declare_queue(cn, 1, q, false, false, true, args);
    if (rc == 0) {
        amqp_queue_bind(st, 1, amqp_cstring_bytes(q), amqp_cstring_bytes("celeryev"),
                        amqp_cstring_bytes("#"), amqp_empty_table);
        rc = task__conn_check(cn, amqp_get_rpc_reply(st), "bind");
    }
    if (rc == 0)
        rc = task__conn_consume(cn, 1, q, true, amqp_empty_table, NULL);
    if (rc != 0) {
        ctl_error("%s", task__conn_errmsg(cn));
        task__conn_close(cn);
        return EXIT_ERROR;
    }
    double deadline = timeout < 0 ? -1 : task__now_mono() + timeout;
    long seen = 0;
    while (count < 0 || seen < count) {
        int left = deadline < 0 ? 1000 : (int)((deadline - task__now_mono()) * 1000);
        if (deadline >= 0 && left <= 0)
            break;
        amqp_frame_t f;
        rc = task__conn_next_frame(cn, &f, left > 1000 ? 1000 : left, NULL);
        if (rc < 0) {
            rc = ctl_error("%s", task__conn_errmsg(cn));
            break;
        }
        rc = 0;
        if (f.frame_type != AMQP_FRAME_METHOD || f.payload.method.id != AMQP_BASIC_DELIVER_METHOD)
            continue;
        struct task__delivery d;
        if (task__conn_read_delivery(cn, &f, &d) != 0)
            continue;
        char *text = task__bytes_dup(d.msg.body);
        json_object *body = text ? json_tokener_parse(text) : NULL;
        free(text);
        /* Workers batch task events into one array (task.multi); others come one by one. */
        if (json_object_is_type(body, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(body) && (count < 0 || seen < count); i++, seen++)
                print_event(g, json_object_array_get_idx(body, i));
        } else if (body != NULL) {
            print_event(g, body);
            seen++;
        }
        json_object_put(body);
        task__delivery_free(&d);
        task__conn_release_buffers(cn);
    }
    task__conn_close(cn);
    return rc;
}
