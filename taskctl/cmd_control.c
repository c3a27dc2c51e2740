/*
 * cmd_control.c - taskctl workers, inspect, control and revoke: Celery's pidbox protocol (broadcast on
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

/* The commands of `taskctl inspect` and `taskctl control`: Celery 5.2's, with the arguments its
 * CLI takes (positional, typed as celery/worker/control.py declares them; the variadic rest
 * goes into a list). */
enum rtype { R_STR, R_INT, R_FLOAT, R_BOOL };
struct rarg {
    const char *name;
    enum rtype type;
};
struct rcmd {
    const char *name;
    bool inspect;
    struct rarg args[4];
    const char *variadic; /* the list the rest of the words go to; NULL: none */
    const char *usage;
};

static const struct rcmd rcmds[] = {
    {"active", true, {{0}}, NULL, ""},
    {"reserved", true, {{0}}, NULL, ""},
    {"scheduled", true, {{0}}, NULL, ""},
    {"active_queues", true, {{0}}, NULL, ""},
    {"registered", true, {{0}}, "taskinfoitems", "[ATTR...]"},
    {"revoked", true, {{0}}, NULL, ""},
    {"stats", true, {{0}}, NULL, ""},
    {"conf", true, {{"with_defaults", R_BOOL}}, NULL, "[true|false]"},
    {"query_task", true, {{0}}, "ids", "ID..."},
    {"clock", true, {{0}}, NULL, ""},
    {"report", true, {{0}}, NULL, ""},
    {"ping", true, {{0}}, NULL, ""},
    {"memsample", true, {{0}}, NULL, ""},
    {"memdump", true, {{"samples", R_INT}}, NULL, "[N]"},
    {"objgraph", true, {{"type", R_STR}, {"num", R_INT}, {"max_depth", R_INT}}, NULL, ""},
    {"revoke", false, {{0}}, "task_id", "ID..."},
    {"terminate", false, {{"signal", R_STR}}, "task_id", "SIGNAL ID..."},
    {"rate_limit", false, {{"task_name", R_STR}, {"rate_limit", R_STR}}, NULL,
     "TASK RATE (e.g. 5/s, 0: none)"},
    {"time_limit", false, {{"task_name", R_STR}, {"soft", R_FLOAT}, {"hard", R_FLOAT}}, NULL,
     "TASK SOFT_S [HARD_S]"},
    {"enable_events", false, {{0}}, NULL, ""},
    {"disable_events", false, {{0}}, NULL, ""},
    {"heartbeat", false, {{0}}, NULL, ""},
    {"pool_grow", false, {{"n", R_INT}}, NULL, "[N=1]"},
    {"pool_shrink", false, {{"n", R_INT}}, NULL, "[N=1]"},
    {"pool_restart", false, {{0}}, NULL, ""},
    {"autoscale", false, {{"max", R_INT}, {"min", R_INT}}, NULL, "[MAX [MIN]]"},
    {"add_consumer", false,
     {{"queue", R_STR}, {"exchange", R_STR}, {"exchange_type", R_STR}, {"routing_key", R_STR}},
     NULL, "QUEUE"},
    {"cancel_consumer", false, {{"queue", R_STR}}, NULL, "QUEUE"},
    {"shutdown", false, {{0}}, NULL, ""},
};
#define NRCMDS (sizeof(rcmds) / sizeof(rcmds[0]))

static const struct rcmd *rcmd_find(const char *name, bool inspect)
{
    for (size_t i = 0; name != NULL && i < NRCMDS; i++)
        if (rcmds[i].inspect == inspect && strcmp(rcmds[i].name, name) == 0)
            return &rcmds[i];
    return NULL;
}

static int remote_usage(bool inspect)
{
    fprintf(stderr, "usage: taskctl [--json] %s COMMAND [ARG...] [--timeout S] "
            "[--destination NODE,...]\ncommands:\n", inspect ? "inspect" : "control");
    for (size_t i = 0; i < NRCMDS; i++)
        if (rcmds[i].inspect == inspect)
            fprintf(stderr, "  %s%s%s\n", rcmds[i].name, rcmds[i].usage[0] ? " " : "",
                    rcmds[i].usage);
    return EXIT_ERROR;
}

/* One word as the argument's type; NULL (with a message) when it is not one. */
static json_object *typed(const struct rarg *a, const char *word)
{
    char *end;
    if (a->type == R_STR)
        return json_object_new_string(word);
    if (a->type == R_BOOL) {
        bool t = strcmp(word, "true") == 0 || strcmp(word, "1") == 0 || strcmp(word, "yes") == 0;
        bool f = strcmp(word, "false") == 0 || strcmp(word, "0") == 0 || strcmp(word, "no") == 0;
        if (t || f)
            return json_object_new_boolean(t);
    } else if (a->type == R_INT) {
        long long v = strtoll(word, &end, 10);
        if (*word != '\0' && *end == '\0')
            return json_object_new_int64(v);
    } else {
        double v = strtod(word, &end);
        if (*word != '\0' && *end == '\0' && v == v)
            return json_object_new_double(v);
    }
    ctl_error("%s: \"%s\" is not %s", a->name, word,
              a->type == R_BOOL ? "true or false" : a->type == R_INT ? "an integer" : "a number");
    return NULL;
}

/* The words after the command into its arguments object; NULL after a message. */
static json_object *remote_args(const struct rcmd *c, char **words, int n)
{
    json_object *args = json_object_new_object();
    json_object *rest = c->variadic ? json_object_new_array() : NULL;
    int named = 0;
    while (named < 4 && c->args[named].name != NULL)
        named++;
    for (int i = 0; i < n; i++) {
        if (i >= named && rest == NULL) {
            ctl_error("%s takes %s", c->name, c->usage[0] ? c->usage : "no arguments");
            goto bad;
        }
        if (i >= named) {
            json_object_array_add(rest, json_object_new_string(words[i]));
            continue;
        }
        json_object *v = typed(&c->args[i], words[i]);
        if (v == NULL)
            goto bad;
        json_object_object_add(args, c->args[i].name, v);
    }
    if (rest != NULL)
        json_object_object_add(args, c->variadic, rest);
    return args;
bad:
    json_object_put(rest);
    json_object_put(args);
    return NULL;
}

/* "a,b" into ["a","b"]. */
static json_object *node_list(const char *text)
{
    json_object *a = json_object_new_array();
    char *copy = strdup(text), *save = NULL;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
        json_object_array_add(a, json_object_new_string(t));
    free(copy);
    return a;
}

struct wanted {
    const struct pidbox_req *req;
    size_t want; /* stop when this many nodes answered (as Celery's CLI); 0: wait the timeout */
};

static bool all_answered(void *ud)
{
    const struct wanted *w = ud;
    return w->want > 0 && w->req->replies != NULL &&
           (size_t)json_object_object_length(w->req->replies) >= w->want;
}

/* Human output: Celery's CLI layout, "NODE: OK|ERROR" then the value. Returns true for an
 * error reply. */
static bool print_reply(const char *node, json_object *v)
{
    json_object *ok = NULL, *er = NULL;
    bool is_obj = json_object_is_type(v, json_type_object);
    if (is_obj && json_object_object_get_ex(v, "error", &er)) {
        printf("%s: ERROR\n    %s\n", ctl_safe(node, 0), ctl_safe(json_object_get_string(er), 1));
        return true;
    }
    printf("%s: OK\n", ctl_safe(node, 0));
    if (is_obj && json_object_object_get_ex(v, "ok", &ok) && json_object_object_length(v) == 1) {
        printf("    %s\n", ctl_safe(json_object_get_string(ok), 1));
    } else if (json_object_is_type(v, json_type_array)) {
        size_t n = json_object_array_length(v);
        if (n == 0)
            printf("    - empty -\n");
        for (size_t i = 0; i < n; i++)
            printf("    * %s\n", json_object_to_json_string_ext(json_object_array_get_idx(v, i),
                                                                JSON_C_TO_STRING_PLAIN));
    } else if (v != NULL) {
        const char *text = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PRETTY);
        for (const char *line = text; *line != '\0';) { /* indented under the node */
            size_t len = strcspn(line, "\n");
            printf("    %.*s\n", (int)len, line);
            line += len + (line[len] == '\n');
        }
    }
    return false;
}

/* Exit 0 when every node answered without an error, EXIT_ERROR when one answered an error,
 * EXIT_UNKNOWN when nobody answered. */
static int remote_output(const struct globals *g, json_object *replies, double timeout)
{
    bool failed = false;
    if (g->json) {
        ctl_print_json(replies);
        json_object_object_foreach(replies, node, v) {
            (void)node;
            failed |= json_object_is_type(v, json_type_object) &&
                      json_object_object_get_ex(v, "error", NULL);
        }
    } else {
        json_object_object_foreach(replies, node, v)
            failed |= print_reply(node, v);
    }
    int n = json_object_object_length(replies);
    if (n == 0) {
        fprintf(stderr, "taskctl: no worker answered within %.1f s\n", timeout);
        return EXIT_UNKNOWN;
    }
    if (!g->json)
        printf("\n%d node%s online.\n", n, n == 1 ? "" : "s");
    return failed ? EXIT_ERROR : EXIT_OK;
}

static int remote(const struct globals *g, int argc, char **argv, bool inspect)
{
    double timeout = 1.0;
    const char *dest = NULL;
    char **words = calloc((size_t)argc + 1, sizeof(*words));
    int nw = 0;
    for (int i = 1; words != NULL && i < argc; i++) {
        const char *a = argv[i];
        bool t = strcmp(a, "--timeout") == 0 || strcmp(a, "-t") == 0;
        bool d = strcmp(a, "--destination") == 0 || strcmp(a, "-d") == 0;
        if ((t || d) && i + 1 < argc)
            (t ? (void)(timeout = ctl_parse_seconds(argv[++i])) : (void)(dest = argv[++i]));
        else if (strncmp(a, "--timeout=", 10) == 0)
            timeout = ctl_parse_seconds(a + 10);
        else if (strncmp(a, "--destination=", 14) == 0)
            dest = a + 14;
        else
            words[nw++] = argv[i];
    }
    const struct rcmd *c = words != NULL && nw > 0 ? rcmd_find(words[0], inspect) : NULL;
    if (c == NULL || timeout <= 0) {
        free(words);
        return remote_usage(inspect);
    }
    json_object *args = remote_args(c, words + 1, nw - 1);
    free(words);
    if (args == NULL)
        return EXIT_ERROR;
    struct pidbox p;
    if (open_box(&p, g) != 0) {
        json_object_put(args);
        return EXIT_ERROR;
    }
    struct pidbox_req r = {.method = c->name, .arguments = args};
    struct wanted w = {.req = &r};
    if (dest != NULL) {
        r.destination = node_list(dest);
        w.want = json_object_array_length(r.destination);
    }
    char err[512];
    int rc = pidbox_ask(&p, &r, 1, timeout, all_answered, &w, err, sizeof(err));
    task__conn_close(p.c);
    if (rc < 0) {
        json_object_put(r.replies);
        return ctl_error("%s", err);
    }
    rc = remote_output(g, r.replies, timeout);
    json_object_put(r.replies);
    return rc;
}

int cmd_inspect(const struct globals *g, int argc, char **argv)
{
    return remote(g, argc, argv, true);
}

int cmd_control(const struct globals *g, int argc, char **argv)
{
    return remote(g, argc, argv, false);
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
