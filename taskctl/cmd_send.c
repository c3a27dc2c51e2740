/* cmd_send.c - taskctl send and taskctl call. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "internal.h"
#include "progress.h"

struct send_args {
    const char *name;
    json_object *args, *kwargs;
    task_send_opts opts;
    double timeout_s;       /* call only; < 0: wait forever */
};

static void send_args_free(struct send_args *s)
{
    json_object_put(s->args);
    json_object_put(s->kwargs);
}

/* Parses NAME and the send options (and --timeout when `with_timeout`). */
static int parse_send(int argc, char **argv, bool with_timeout, struct send_args *s)
{
    static const struct option opts[] = {
        {"args", required_argument, NULL, 'a'},    {"kwargs", required_argument, NULL, 'k'},
        {"countdown", required_argument, NULL, 'c'}, {"eta", required_argument, NULL, 'e'},
        {"expires", required_argument, NULL, 'x'}, {"queue", required_argument, NULL, 'q'},
        {"priority", required_argument, NULL, 'p'}, {"timeout", required_argument, NULL, 't'},
        {"id", required_argument, NULL, 'i'},      {NULL, 0, NULL, 0},
    };
    memset(s, 0, sizeof(*s));
    s->timeout_s = -1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        double v;
        char *end;
        switch (c) {
        case 'a':
            json_object_put(s->args);
            if ((s->args = ctl_parse_json("--args", optarg, json_type_array)) == NULL)
                return EXIT_ERROR;
            break;
        case 'k':
            json_object_put(s->kwargs);
            if ((s->kwargs = ctl_parse_json("--kwargs", optarg, json_type_object)) == NULL)
                return EXIT_ERROR;
            break;
        case 'c':
            if ((s->opts.countdown_s = ctl_parse_seconds(optarg)) < 0)
                return ctl_error("--countdown: '%s' is not a number of seconds", optarg);
            break;
        case 'e':
            if (task__iso8601_parse(optarg, &s->opts.eta) != 0)
                return ctl_error("--eta: '%s' is not an ISO 8601 time", optarg);
            break;
        case 'x':
            v = ctl_parse_seconds(optarg);
            if (v < 0) {
                if (task__iso8601_parse(optarg, &v) != 0)
                    return ctl_error("--expires: '%s' is neither seconds nor ISO 8601", optarg);
                v -= task__now_wall();
                if (v <= 0)
                    v = 0.001; /* already past: the worker revokes it */
            }
            s->opts.expires_s = v;
            break;
        case 'q':
            s->opts.queue = optarg;
            break;
        case 'p':
            s->opts.priority = (int)strtol(optarg, &end, 10);
            if (*end != '\0' || s->opts.priority < 0 || s->opts.priority > 255)
                return ctl_error("--priority: '%s' is not 0..255", optarg);
            break;
        case 'i':
            s->opts.task_id = optarg;
            break;
        case 't':
            if (!with_timeout || (s->timeout_s = ctl_parse_seconds(optarg)) < 0)
                return ctl_error("--timeout: '%s' is not a number of seconds", optarg);
            break;
        default:
            return EXIT_ERROR;
        }
    }
    if (optind != argc - 1)
        return ctl_error("%s needs exactly one task NAME", argv[0]);
    s->name = argv[optind];
    return 0;
}

static int do_send(task_client *cl, struct send_args *s, task_id *id)
{
    int rc = task_send(cl, s->name, s->args, s->kwargs, &s->opts, id);
    if (rc != 0)
        return ctl_error("send %s: %s", s->name, task_client_errmsg(cl)[0]
                                                      ? task_client_errmsg(cl)
                                                      : task_strerror(rc));
    return 0;
}

int cmd_send(const struct globals *g, int argc, char **argv)
{
    struct send_args s;
    int rc = parse_send(argc, argv, false, &s);
    task_client *cl = rc == 0 ? ctl_connect(g) : NULL;
    task_id id;
    if (cl == NULL)
        rc = EXIT_ERROR;
    else
        rc = do_send(cl, &s, &id);
    if (rc == 0) {
        if (g->json)
            printf("{\"id\":\"%s\"}\n", id.str);
        else
            printf("%s\n", id.str);
    }
    task_client_free(cl);
    send_args_free(&s);
    return rc;
}

int cmd_call(const struct globals *g, int argc, char **argv)
{
    struct send_args s;
    int rc = parse_send(argc, argv, true, &s);
    task_client *cl = rc == 0 ? ctl_connect(g) : NULL;
    task_id id;
    if (cl == NULL)
        rc = EXIT_ERROR;
    else
        rc = do_send(cl, &s, &id);
    if (rc == 0) {
        task_state st;
        json_object *res = NULL;
        int timeout_ms = s.timeout_s < 0 ? -1 : (int)(s.timeout_s * 1000);
        bool tty = progress_wanted(g->json);
        int w = task_wait_progress(cl, id.str, timeout_ms, &st, &res,
                                   tty ? progress_show : NULL, NULL);
        progress_clear();
        if (w == TASK_ETIMEDOUT) {
            fprintf(stderr, "taskctl: task %s: no result within %.1f s\n", id.str, s.timeout_s);
            rc = EXIT_TIMEOUT;
        } else if (w != 0) {
            rc = ctl_error("wait %s: %s", id.str, task_client_errmsg(cl));
        } else {
            rc = ctl_report_final(g, id.str, st, res);
        }
        json_object_put(res);
    }
    task_client_free(cl);
    send_args_free(&s);
    return rc;
}
