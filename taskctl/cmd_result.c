/* cmd_result.c - taskctl result: a task's latest recorded state, no waiting. */
#include <getopt.h>
#include <stdio.h>
#include "common.h"

int cmd_result(const struct globals *g, int argc, char **argv)
{
    static const struct option opts[] = {{"since", required_argument, NULL, 's'},
                                         {NULL, 0, NULL, 0}};
    double since = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c != 's' || (since = ctl_parse_seconds(optarg)) < 0)
            return ctl_error("usage: taskctl result ID [--since UNIX_S]");
    }
    if (optind != argc - 1)
        return ctl_error("usage: taskctl result ID [--since UNIX_S]");
    const char *id = argv[optind];
    task_client *cl = ctl_connect(g);
    if (cl == NULL)
        return EXIT_ERROR;
    task_state st;
    json_object *res = NULL;
    int rc = task_lookup(cl, id, since, &st, &res);
    if (rc != 0) {
        rc = ctl_error("result %s: %s", id, task_client_errmsg(cl));
        goto out;
    }
    if (g->json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_string(id));
        json_object_object_add(o, "state", json_object_new_string(task_state_name(st)));
        json_object_object_add(o, "result", json_object_get(res));
        ctl_print_json(o);
        json_object_put(o);
    } else {
        printf("%s\n", task_state_name(st));
        if (res != NULL)
            ctl_print_json(res);
    }
    /* The exit codes of wait and call (taskctl(1)): a script need not parse the state. */
    if (st == TASK_STATE_PENDING)
        rc = EXIT_UNKNOWN;
    else if (st == TASK_STATE_FAILURE || st == TASK_STATE_REVOKED)
        rc = ctl_report_failed(id, st, res);
    else
        rc = EXIT_OK;
out:
    json_object_put(res);
    task_client_free(cl);
    return rc;
}
