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
#include "pidbox.h"
#include "stream.h"

/* Connect and open the pidbox; prints the error. */
static int open_box(struct pidbox *p, const struct globals *g)
{
    struct task__conn *c = ctl_conn(g);
    if (c == NULL)
        return EXIT_ERROR;
    char err[512];
    if (pidbox_open(p, c, err, sizeof(err)) != 0) {
        ctl_error("%s", err);
        task__conn_close(c);
        return EXIT_ERROR;
    }
    return 0;
}

/* Broadcast `method` and collect {node: reply} for timeout_s into *out. */
static int pidbox_call(struct pidbox *p, const char *method, json_object *arguments,
                       double timeout_s, json_object **out)
{
    struct pidbox_req r = {.method = method, .arguments = arguments};
    char err[512];
    int rc = pidbox_ask(p, &r, 1, timeout_s, NULL, NULL, err, sizeof(err));
    *out = r.replies;
    return rc == 0 ? 0 : ctl_error("%s", err);
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
    if (open_box(&p, g) != 0)
        return EXIT_ERROR;
    json_object *replies = NULL;
    int rc = pidbox_call(&p, "ping", NULL, timeout, &replies);
    if (rc == 0) {
        if (g->json) {
            ctl_print_json(replies);
        } else {
            json_object_object_foreach(replies, node, v) {
                const char *ok = task__json_get_str(v, "ok");
                printf("%s\t%s\n", ctl_safe(node, 0), ctl_safe(ok ? ok : "-", 1));
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
    if (open_box(&p, g) != 0)
        return EXIT_ERROR;
    json_object *replies = NULL;
    int rc = pidbox_call(&p, method, NULL, timeout, &replies);
    if (rc == 0) {
        if (g->json) {
            ctl_print_json(replies);
        } else {
            json_object_object_foreach(replies, node, v)
            {
                printf("%s:\n", ctl_safe(node, 0));
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
    size_t idlen = strlen(argv[optind]);
    if (idlen == 0 || idlen > 255)
        return ctl_error("revoke: a task id has 1 to 255 bytes");
    struct pidbox p;
    if (open_box(&p, g) != 0)
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
    int rc = pidbox_call(&p, "revoke", args, timeout, &replies);
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
