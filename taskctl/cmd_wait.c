/* cmd_wait.c - taskctl wait: follow the results stream until the task is done. */
#include <getopt.h>
#include <stdio.h>
#include <unistd.h>
#include "common.h"

/* On a terminal, PROGRESS meta becomes a live line on stderr. */
static void on_state(const char *id, task_state st, const char *name, json_object *meta, void *ud)
{
    (void)id;
    (void)ud;
    fprintf(stderr, "\r\033[K%s %s", name,
            meta ? json_object_to_json_string_ext(meta, JSON_C_TO_STRING_PLAIN) : "");
    if (st != TASK_STATE_PROGRESS)
        fputc('\n', stderr);
    fflush(stderr);
}

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
    bool tty = !g->json && isatty(STDERR_FILENO) && isatty(STDOUT_FILENO);
    int timeout_ms = timeout_s < 0 ? -1 : (int)(timeout_s * 1000);
    int rc = task_watch(cl, id, 0, timeout_ms, &st, &res, tty ? on_state : NULL, NULL);
    if (tty)
        fputs("\r\033[K", stderr);
    if (rc == TASK_ETIMEDOUT) {
        fprintf(stderr, "taskctl: task %s: no final state within %.1f s\n", id, timeout_s);
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
