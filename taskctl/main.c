/* main.c - taskctl: global options (before or after the command), then the command. */
#include <stdio.h>
#include <string.h>
#include "common.h"

static const struct cmd cmds[] = {
    {"send", cmd_send, "send NAME [--args JSON] [--kwargs JSON] [--countdown S] [--eta ISO]\n"
                       "       [--expires S|ISO] [--queue Q] [--priority N]"},
    {"call", cmd_call, "call NAME [send options] [--timeout S]"},
    {"wait", cmd_wait, "wait ID [--timeout S]"},
    {"result", cmd_result, "result ID [--since UNIX_S]"},
    {"workers", cmd_workers, "workers [--timeout S]"},
    {"inspect", cmd_inspect, "inspect COMMAND [ARG...] [--timeout S] [--destination NODE,...]\n"
                             "       (active reserved scheduled active_queues registered revoked\n"
                             "        stats conf query_task clock report ping; no COMMAND: list)"},
    {"control", cmd_control, "control COMMAND [ARG...] [--timeout S] [--destination NODE,...]\n"
                             "       (revoke terminate rate_limit time_limit add_consumer\n"
                             "        cancel_consumer pool_grow pool_shrink pool_restart autoscale\n"
                             "        enable_events disable_events heartbeat shutdown)"},
    {"revoke", cmd_revoke, "revoke ID [--terminate]"},
    {"events", cmd_events, "events [--count N] [--timeout S]"},
    {"queues", cmd_queues, "queues [QUEUE...]"},
    {"top", cmd_top, "top [QUEUE...] [--once] [--interval S]"},
    {"purge", cmd_purge, "purge QUEUE [--yes]"},
    {"dead", cmd_dead, "dead [--queue Q] [--limit N] [--republish N|all]"},
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void usage(FILE *out)
{
    fprintf(out, "usage: taskctl [--broker URL]... [--config FILE] [--json] COMMAND ...\n");
    for (size_t i = 0; i < NCMDS; i++)
        fprintf(out, "  taskctl %s\n", cmds[i].usage);
    fprintf(out, "Exit: 0 ok, 1 task failed or revoked, 2 timeout, 3 unknown id, 4 error.\n");
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
        if (broker)
            append(g->brokers, sizeof(g->brokers), val);
        else
            g->config = val;
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
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_ERROR : EXIT_OK;
    }
    for (size_t i = 0; i < NCMDS; i++) {
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].run(&g, argc - 1, argv + 1);
    }
    ctl_error("unknown command '%s' (try taskctl --help)", argv[1]);
    return EXIT_ERROR;
}
