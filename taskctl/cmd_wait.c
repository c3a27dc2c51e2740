/* cmd_wait.c - taskctl wait: follow the results stream until the task is done; on a terminal,
 * its STARTED/PROGRESS states as a live line (progress.h). */
#include <getopt.h>
#include <stdio.h>
#include "common.h"
#include "progress.h"

int cmd_wait(const struct globals *g, int argc, char **argv)
{
    static const struct option opts[] = {{"timeout", required_argument, NULL, 't'},
                                         {NULL, 0, NULL, 0}};
    double timeout_s = -1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c != 't' || (timeout_s = ctl_parse_seconds(optarg)) < 0)
            return ctl_error("usage: taskctl wait ID [--timeout S]");
    }
    if (optind != argc - 1)
        return ctl_error("usage: taskctl wait ID [--timeout S]");
    const char *id = argv[optind];
    task_client *cl = ctl_connect(g);
    if (cl == NULL)
        return EXIT_ERROR;
    task_state st;
    json_object *res = NULL;
    bool tty = progress_wanted(g->json);
    int timeout_ms = timeout_s < 0 ? -1 : (int)(timeout_s * 1000);
    int rc = task_watch(cl, id, 0, timeout_ms, &st, &res, tty ? progress_show : NULL, NULL);
    progress_clear();
    if (rc == TASK_ETIMEDOUT) {
        fprintf(stderr, "taskctl: task %s: no final state within %.1f s\n", ctl_safe(id, 0),
                timeout_s);
        rc = EXIT_TIMEOUT;
    } else if (rc != 0) {
        rc = ctl_error("wait %s: %s", id, task_client_errmsg(cl));
    } else {
        rc = ctl_report_final(g, id, st, res);
    }
    json_object_put(res);
    task_client_free(cl);
    return rc;
}
