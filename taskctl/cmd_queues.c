/*
 * cmd_queues.c - taskctl queues and purge. Queue figures come from the management HTTP API when
 * broker.management_url is set (ready, unacked, consumers, publish and deliver rates), else from
 * passive declares (ready and consumers: what AMQP can tell).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "common.h"
#include "conn.h"
#include "mgmt.h"
#include "qrows.h"

/* Rows from the management API: every queue of the vhost, or `names`. */
static int rows_from_mgmt(struct mgmt *m, char **names, int n, json_object **rows,
                          json_object **missing)
{
    char err[768];
    int rc = mgmt_queue_rows(m, n > 0 ? names : NULL, n, rows, missing, err, sizeof(err));
    return rc == MGMT_OK ? 0 : ctl_error("%s", err);
}

/* Rows from passive declares: `names`, or the default and dead-letter queues. */
static int rows_from_amqp(const task_config *cfg, char **names, int n, json_object **rows,
                          json_object **missing)
{
    char err[512];
    struct task__conn *cn = ctl_conn_open(cfg, err, sizeof(err));
    if (cn == NULL)
        return ctl_error("%s", err);
    char *defaults[] = {cfg->default_queue, cfg->dead_queue};
    *rows = n > 0 ? qrows_peek(cn, 1, names, n, missing) : qrows_peek(cn, 1, defaults, 2, missing);
    task__conn_close(cn);
    return 0;
}

static void print_rows(const struct globals *g, json_object *rows)
{
    if (g->json) {
        ctl_print_json(rows);
        return;
    }
    char line[256];
    qrows_format(NULL, line, sizeof(line));
    puts(line);
    for (size_t i = 0; i < json_object_array_length(rows); i++) {
        qrows_format(json_object_array_get_idx(rows, i), line, sizeof(line));
        ctl_scrub(line);
        puts(line);
    }
}

int cmd_queues(const struct globals *g, int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-')
            return ctl_error("usage: taskctl queues [QUEUE...]");
    task_config *cfg = ctl_config(g);
    if (cfg == NULL)
        return EXIT_ERROR;
    struct mgmt m;
    char err[512];
    int use = mgmt_open(&m, cfg, err, sizeof(err));
    json_object *rows = NULL, *missing = NULL;
    int rc;
    if (use < 0)
        rc = ctl_error("%s", err);
    else if (use == 0)
        rc = rows_from_mgmt(&m, argv + 1, argc - 1, &rows, &missing);
    else
        rc = rows_from_amqp(cfg, argv + 1, argc - 1, &rows, &missing);
    if (rc == 0) {
        print_rows(g, rows);
        /* AMQP cannot list queues: say what was shown and how to see them all. */
        if (use == 1 && argc < 2)
            fprintf(stderr, "taskctl: showing %s and %s only; to list every queue set "
                    "broker.management_url (TASKD_MANAGEMENT_URL=http://HOST:15672), or name "
                    "queues: taskctl queues Q...\n", ctl_safe(cfg->default_queue, 0),
                    ctl_safe(cfg->dead_queue, 1));
        /* Only a queue the user named is an error when missing; a default one (no worker has
         * declared it yet) is simply not shown. */
        bool named = argc > 1;
        for (size_t i = 0; named && missing != NULL && i < json_object_array_length(missing); i++)
            fprintf(stderr, "taskctl: queue %s does not exist\n",
                    json_object_get_string(json_object_array_get_idx(missing, i)));
        rc = named && missing != NULL ? EXIT_UNKNOWN : EXIT_OK;
    }
    json_object_put(rows);
    json_object_put(missing);
    if (use == 0)
        mgmt_close(&m);
    task_config_free(cfg);
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
    if (!yes) {
        /* No terminal to ask: an error (a script must say --yes). A "no" is an answer: exit 0. */
        if (!isatty(STDIN_FILENO))
            return ctl_error("not purged: no terminal to ask (pass --yes to purge without asking)");
        if (!ctl_confirm(prompt)) {
            fprintf(stderr, "taskctl: not purged\n");
            return EXIT_OK;
        }
    }
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
