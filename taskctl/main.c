/* main.c - taskctl: global options (before or after the command), then the command. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include "common.h"
#include "internal.h"

static const struct cmd cmds[] = {
    {"send", cmd_send, "send NAME [--args JSON] [--kwargs JSON] [--countdown S] [--eta ISO]\n"
                       "       [--expires S|ISO] [--queue Q] [--priority N] [--id ID]",
     "Send task NAME and print its id once the broker confirmed the message. --args is a JSON\n"
     "array, --kwargs a JSON object (strict JSON). --countdown/--eta delay it (in the broker),\n"
     "--expires revokes it if it has not started by then, --queue overrides the routes."},
    {"call", cmd_call, "call NAME [send options] [--timeout S]",
     "Send task NAME and wait for its result: prints the result JSON (exit 0), or names the\n"
     "failure on stderr (exit 1); exit 2 when --timeout ran out first."},
    {"wait", cmd_wait, "wait ID [--timeout S]",
     "Wait for task ID to end, from any process (reads the results stream); output and exit\n"
     "codes as for call."},
    {"result", cmd_result, "result ID [--since UNIX_S]",
     "Print the state and result of task ID without waiting (exit 3: no record of the id)."},
    {"workers", cmd_workers, "workers [--timeout S]",
     "Ping every worker (taskd and Celery) and list those that answer within --timeout (1 s)."},
    {"inspect", cmd_inspect, "inspect COMMAND [ARG...] [--timeout S] [--destination NODE,...]\n"
                             "       (active reserved scheduled active_queues registered revoked\n"
                             "        stats conf query_task clock report ping; no COMMAND: list)",
     "Ask every worker (or --destination's) what Celery's `celery inspect COMMAND` asks: running,\n"
     "reserved and scheduled tasks, queues, registered tasks, statistics, configuration, ..."},
    {"control", cmd_control, "control COMMAND [ARG...] [--timeout S] [--destination NODE,...]\n"
                             "       (revoke terminate rate_limit time_limit add_consumer\n"
                             "        cancel_consumer pool_grow pool_shrink pool_restart autoscale\n"
                             "        enable_events disable_events heartbeat shutdown)",
     "Send Celery's `celery control COMMAND` to every worker (or --destination's) and print the\n"
     "answers; exit 4 on an error answer, 3 when nobody answered."},
    {"revoke", cmd_revoke, "revoke ID [--terminate] [--timeout S]",
     "Revoke task ID on every worker, now and later (kept in the broker); --terminate also\n"
     "kills the process running it."},
    {"events", cmd_events, "events [--count N] [--timeout S]",
     "Print worker and task events (celeryev) as they come; stop after N events or S seconds."},
    {"queues", cmd_queues, "queues [QUEUE...]",
     "Ready, unacked, consumers and rates of QUEUEs; without a name, of every queue (needs\n"
     "broker.management_url, TASKD_MANAGEMENT_URL; else the default and dead queues only)."},
    {"top", cmd_top, "top [QUEUE...] [--once] [--interval S]",
     "Live view of queues, workers and running tasks; q or Ctrl-C quits. --once (or not a\n"
     "terminal): one snapshot."},
    {"purge", cmd_purge, "purge QUEUE [--yes]",
     "Delete every ready message of QUEUE. Asks first on a terminal (answering no exits 0);\n"
     "without a terminal it needs --yes."},
    {"beat", cmd_beat, "beat",
     "The periodic task entries (beat.entries) with their last and next run, which beat\n"
     "instance leads and how many run (taskd --beat, --beat-only). Exit 3: no leader has\n"
     "reported in the last 5 s."},
    {"dead", cmd_dead, "dead [--queue Q] [--limit N] [--republish N|all]",
     "List the quarantined messages (taskd.dead) with the reason for each, or publish the Nth\n"
     "(or all) to its queue again."},
    {"help", NULL, "help [COMMAND]", "Show the commands, or one command's help."},
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void usage(FILE *out)
{
    fprintf(out, "usage: taskctl [--broker URL]... [--config FILE] [--json] COMMAND ...\n");
    for (size_t i = 0; i < NCMDS; i++)
        fprintf(out, "  taskctl %s\n", cmds[i].usage);
    fprintf(out, "Global options go before or after the command; `taskctl COMMAND --help` tells\n"
                 "more. Keep the broker password in broker.password_file\n"
                 "(TASKD_BROKER_PASSWORD_FILE), not in a --broker URL. See taskctl(1).\n"
                 "Exit: 0 ok, 1 task failed or revoked, 2 timeout, 3 unknown id, 4 error.\n");
}

static const struct cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (strcmp(name, cmds[i].name) == 0)
            return &cmds[i];
    return NULL;
}

static int cmd_help(const struct cmd *c)
{
    printf("usage: taskctl [global options] %s\n%s\n", c->usage, c->help);
    printf("Global options: --broker URL, --config FILE, --json. See taskctl(1).\n");
    return EXIT_OK;
}

/* `COMMAND --help` (or -h) anywhere before a "--": the command's help, whatever else is there. */
static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

static void append(char *list, size_t size, const char *item)
{
    size_t n = strlen(list);
    snprintf(list + n, size - n, "%s%s", n ? "," : "", item);
}

/* Take the global options out of argv wherever they stand; the rest stays in order. */
static int take_globals(int *argc, char **argv, struct globals *g)
{
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (strcmp(a, "--") == 0) {
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        if (strcmp(a, "--json") == 0) {
            g->json = true;
            continue;
        }
        bool broker = strncmp(a, "--broker", 8) == 0 && (a[8] == '\0' || a[8] == '=');
        bool config = strncmp(a, "--config", 8) == 0 && (a[8] == '\0' || a[8] == '=');
        if (!broker && !config) {
            argv[out++] = argv[i];
            continue;
        }
        if (a[8] == '=') {
            val = a + 9;
        } else if (i + 1 < *argc) {
            val = argv[++i];
        } else {
            return ctl_error("%s needs a value", a);
        }
        if (broker) {
            append(g->brokers, sizeof(g->brokers), val);
            /* Copied: take the password out of /proc/PID/cmdline (ps) while we run. */
            task__url_scrub(argv[i]);
        } else {
            g->config = val;
        }
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    struct globals g = {0};
    if (take_globals(&argc, argv, &g) != 0)
        return EXIT_ERROR;
    if (argc < 2) {
        usage(stderr);
        return EXIT_ERROR;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("taskctl %s\n", TASKD_VERSION);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "help") == 0) {
        if (argc < 3) {
            usage(stdout);
            return EXIT_OK;
        }
        /* `help --help` is help's own help; `help CMD` is CMD's. */
        const struct cmd *c = find_cmd(wants_help(argc - 1, argv + 1) ? "help" : argv[2]);
        return c != NULL ? cmd_help(c)
                         : ctl_error("no command '%s' (try taskctl help)", argv[2]);
    }
    const struct cmd *c = find_cmd(argv[1]);
    if (c == NULL)
        return ctl_error("unknown command '%s' (try taskctl help)", argv[1]);
    if (wants_help(argc - 1, argv + 1))
        return cmd_help(c);
    return c->run(&g, argc - 1, argv + 1);
}
