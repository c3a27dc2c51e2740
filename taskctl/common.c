/* common.c - see common.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <task/config.h>
#include <unistd.h>
#include "common.h"
#include "conn.h"
#include "jsonarg.h"
#include "config_opts.h"
#include "tls.h"

int ctl_error(const char *fmt, ...)
{
    va_list ap;
    fputs("taskctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_ERROR;
}

task_config *ctl_config(const struct globals *g)
{
    task_error err = {0};
    task_config *cfg = task_config_new();
    if (cfg == NULL) {
        ctl_error("out of memory");
        return NULL;
    }
    int rc = task_config_load_default(cfg, "taskctl.conf", g->config, &err);
    if (rc == 0 && g->brokers[0] != '\0')
        rc = task_config_set(cfg, "broker.urls", g->brokers, "--broker", &err);
    if (rc == 0)
        rc = task_config_resolve(cfg, &err); /* again: --broker came after the files */
    if (rc != 0) {
        ctl_error("%s", err.msg);
        task_config_free(cfg);
        return NULL;
    }
    return cfg;
}

struct task__conn *ctl_conn_open(const task_config *cfg, char *err, size_t errsize)
{
    struct task__tls_opts tls;
    task__tls_from_config(cfg, &tls);
    struct task__conn_opts o = {.urls = &cfg->broker_urls,
                                .connect_timeout_s = cfg->connect_timeout_s,
                                .name = "taskctl",
                                .tls = &tls};
    struct task__conn *c = NULL;
    task_error terr = {0};
    if (task__conn_open(&c, &o, &terr) != 0 || task__conn_channel_open(c, 1) != 0) {
        snprintf(err, errsize, "%s", terr.msg[0] ? terr.msg : task__conn_errmsg(c));
        task__conn_close(c);
        c = NULL;
    }
    return c;
}

struct task__conn *ctl_conn(const struct globals *g)
{
    task_config *cfg = ctl_config(g);
    if (cfg == NULL)
        return NULL;
    char err[512];
    struct task__conn *c = ctl_conn_open(cfg, err, sizeof(err));
    if (c == NULL)
        ctl_error("%s", err);
    task_config_free(cfg);
    return c;
}

bool ctl_confirm(const char *prompt)
{
    if (!isatty(STDIN_FILENO))
        return false;
    fprintf(stderr, "%s [y/N] ", prompt);
    char line[16];
    return fgets(line, sizeof(line), stdin) != NULL && (line[0] == 'y' || line[0] == 'Y');
}

task_client *ctl_connect(const struct globals *g)
{
    task_config *cfg = ctl_config(g);
    if (cfg == NULL)
        return NULL;
    task_error err = {0};
    task_client *c = task_client_new(cfg, &err);
    if (c == NULL)
        ctl_error("%s", err.msg[0] ? err.msg : task_strerror(err.code));
    task_config_free(cfg);
    return c;
}

json_object *ctl_parse_json(const char *what, const char *text, json_type want)
{
    char why[300];
    json_object *o = ctl_json_arg(text, want, why, sizeof(why));
    if (o == NULL)
        ctl_error("%s: %s", what, why);
    return o;
}

double ctl_parse_seconds(const char *text)
{
    char *end;
    double v = strtod(text, &end);
    /* NaN passes every comparison but this one; a century is more than any wait or delay. */
    if (end == text || *end != '\0' || !(v >= 0 && v <= 3.2e9))
        return -1;
    return v;
}

void ctl_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    for (; p != NULL && *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f)
            *p = '?';
        else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
            p[0] = '?', p[1] = '?';
    }
}

const char *ctl_safe(const char *s, int slot)
{
    static char buf[8][512];
    char *b = buf[slot & 7];
    snprintf(b, sizeof(buf[0]), "%s", s != NULL ? s : "-");
    ctl_scrub(b);
    return b;
}

void ctl_print_json(json_object *o)
{
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    fflush(stdout); /* one line an event for `taskctl --json events | jq`, not a 4 KiB block */
}

/* "ValueError: bad" from an exception object, for stderr. */
static void describe_exc(json_object *res, char *buf, size_t size)
{
    json_object *type, *msg;
    const char *t = "Exception";
    const char *m = "";
    if (json_object_object_get_ex(res, "exc_type", &type))
        t = json_object_get_string(type);
    if (json_object_object_get_ex(res, "exc_message", &msg)) {
        if (json_object_is_type(msg, json_type_array) && json_object_array_length(msg) == 1)
            msg = json_object_array_get_idx(msg, 0);
        m = json_object_is_type(msg, json_type_string) ? json_object_get_string(msg)
                                                        : json_object_to_json_string(msg);
    }
    snprintf(buf, size, "%s: %s", t, m);
}

int ctl_report_final(const struct globals *g, const char *id, task_state st, json_object *res)
{
    if (g->json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_string(id));
        json_object_object_add(o, "state", json_object_new_string(task_state_name(st)));
        json_object_object_add(o, "result", json_object_get(res));
        ctl_print_json(o);
        json_object_put(o);
    } else {
        ctl_print_json(res);
    }
    if (st == TASK_STATE_SUCCESS)
        return EXIT_OK;
    return ctl_report_failed(id, st, res);
}

int ctl_report_failed(const char *id, task_state st, json_object *res)
{
    char exc[1200];
    describe_exc(res, exc, sizeof(exc));
    fprintf(stderr, "taskctl: task %s %s: %s\n", id, task_state_name(st), exc);
    return EXIT_TASK_FAILED;
}
