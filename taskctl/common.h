/* common.h - what every taskctl command shares: global options, the client, output. */
#ifndef TASKCTL_COMMON_H
#define TASKCTL_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>
#include <task/client.h>
#include <task/config.h>

/* Exit codes (taskctl(1)). 0-3 are the contract of docs/operations.md (exit codes). */
enum {
    EXIT_OK = 0,
    EXIT_TASK_FAILED = 1,   /* wait/call: FAILURE or REVOKED */
    EXIT_TIMEOUT = 2,       /* wait/call: no final state in time */
    EXIT_UNKNOWN = 3,       /* result: no record of the id */
    EXIT_ERROR = 4,         /* bad usage, bad config, broker unreachable or refused */
};

struct globals {
    const char *config;     /* --config FILE */
    char brokers[4096];     /* --broker URL, comma-joined */
    bool json;              /* --json */
};

struct cmd {
    const char *name;
    int (*run)(const struct globals *g, int argc, char **argv);
    const char *usage;
    const char *help;       /* what it does, for `taskctl help COMMAND` */
};

/* Load config (files, env, --broker); NULL after printing a one-line error. */
task_config *ctl_config(const struct globals *g);
/* Load config (files, env, --broker) and connect. Prints a one-line error and returns NULL. */
task_client *ctl_connect(const struct globals *g);
/* Print `fmt` as "taskctl: ..." on stderr; returns EXIT_ERROR. */
int ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse a JSON argument of the expected type (json_type_array/object); NULL + message on error. */
json_object *ctl_parse_json(const char *what, const char *text, json_type want);
/* Seconds from "2.5" / "30"; -1 on error. */
double ctl_parse_seconds(const char *text);
/* Print a JSON value compactly on stdout. */
void ctl_print_json(json_object *o);
/* Replace terminal control bytes (C0, DEL, and C1 as UTF-8) in `s` with '?': text from the
 * broker (queue names, hostnames, task names) must not drive the user's terminal. */
void ctl_scrub(char *s);
/* A scrubbed copy of `s` (NULL: "-") in one of 8 rotating buffers (cut at 511 bytes), for
 * printf arguments; taskctl is single-threaded. */
const char *ctl_safe(const char *s, int slot);
/* Report a final state: stdout gets the result (or {"id","state","result"} with --json),
 * stderr names a failure. Returns the exit code. */
int ctl_report_final(const struct globals *g, const char *id, task_state st, json_object *res);
/* Name a FAILURE or REVOKED state on stderr ("taskctl: task ID FAILURE: ValueError: bad");
 * returns EXIT_TASK_FAILED. */
int ctl_report_failed(const char *id, task_state st, json_object *res);

struct task__conn;
/* A raw connection for the operator commands (config, env and --broker as for the client). */
struct task__conn *ctl_conn(const struct globals *g);
/* The same from a loaded config, quietly: NULL with a one-line message in err. */
struct task__conn *ctl_conn_open(const task_config *cfg, char *err, size_t errsize);
/* Ask the user (stdin a terminal) "prompt [y/N]"; false when not a terminal. */
bool ctl_confirm(const char *prompt);

int cmd_send(const struct globals *g, int argc, char **argv);
int cmd_workers(const struct globals *g, int argc, char **argv);
int cmd_inspect(const struct globals *g, int argc, char **argv);
int cmd_control(const struct globals *g, int argc, char **argv);
int cmd_revoke(const struct globals *g, int argc, char **argv);
int cmd_events(const struct globals *g, int argc, char **argv);
int cmd_queues(const struct globals *g, int argc, char **argv);
int cmd_purge(const struct globals *g, int argc, char **argv);
int cmd_dead(const struct globals *g, int argc, char **argv);
int cmd_call(const struct globals *g, int argc, char **argv);
int cmd_wait(const struct globals *g, int argc, char **argv);
int cmd_result(const struct globals *g, int argc, char **argv);
int cmd_top(const struct globals *g, int argc, char **argv);
int cmd_beat(const struct globals *g, int argc, char **argv);

#endif
