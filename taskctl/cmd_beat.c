/*
 * cmd_beat.c - taskctl beat: the periodic task entries with their last and next run, and which
 * beat instance leads. The leader publishes its state every second to the one-message queue
 * taskd.beat.state (taskd/beat_store.h); this reads it without taking it. (The standby
 * instances are not counted: a single-active-consumer queue's declare-ok counts only the active
 * consumer.)
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "beat_store.h"
#include "common.h"
#include "conn.h"
#include "internal.h"

#define STALE_S 5.0 /* the leader reports every second: this old, nobody leads */

static json_object *read_state(struct task__conn *cn, int *rc)
{
    uint16_t refused = 0;
    *rc = task__conn_declare_probe(cn, 1, BEAT_STATE_QUEUE, true, amqp_empty_table, NULL,
                                   &refused);
    if (*rc != 0) {
        if (refused == 404 && task__conn_channel_open(cn, 1) == 0)
            *rc = 0;
        return NULL;
    }
    char *body = NULL;
    *rc = beat_store_peek(cn, 1, BEAT_STATE_QUEUE, &body);
    json_object *st = body != NULL ? json_tokener_parse(body) : NULL;
    free(body);
    return json_object_is_type(st, json_type_object) ? st : (json_object_put(st), NULL);
}

static const char *when(json_object *o, const char *key, char *buf, size_t size)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        return "-";
    time_t t = (time_t)json_object_get_double(v);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static double num(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

static void print_table(json_object *st, double age)
{
    char since[64];
    if (st == NULL) {
        printf("leader: none has reported yet\n");
        return;
    }
    if (age > STALE_S)
        printf("leader: none reporting (the last report, by %s, is %.0f s old)\n",
               ctl_safe(task__json_get_str(st, "leader"), 0), age);
    else
        printf("leader: %s (pid %d), leading since %s\n",
               ctl_safe(task__json_get_str(st, "leader"), 0), (int)num(st, "pid"),
               when(st, "leading_since", since, sizeof(since)));
    printf("%-20s %-32s %-20s %-21s %s\n", "ENTRY", "SCHEDULE", "TASK", "LAST RUN", "NEXT RUN");
    json_object *arr = task__json_get_arr(st, "entries");
    for (size_t i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        char last[64], next[64];
        printf("%-20s %-32s %-20s %-21s %s\n", ctl_safe(task__json_get_str(e, "name"), 0),
               ctl_safe(task__json_get_str(e, "schedule"), 1),
               ctl_safe(task__json_get_str(e, "task"), 2), when(e, "last_run", last, sizeof(last)),
               when(e, "next_run", next, sizeof(next)));
    }
}

int cmd_beat(const struct globals *g, int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return ctl_error("usage: taskctl beat [--json]");
    struct task__conn *cn = ctl_conn(g);
    if (cn == NULL)
        return EXIT_ERROR;
    int rc;
    json_object *st = read_state(cn, &rc); /* on channel 1, which ctl_conn() opened */
    if (rc != 0) {
        int code = ctl_error("beat: %s", task__conn_errmsg(cn));
        task__conn_close(cn);
        return code;
    }
    task__conn_close(cn);
    double age = st != NULL ? task__now_wall() - num(st, "at") : -1;
    if (g->json) {
        json_object *out = st != NULL ? json_object_get(st) : json_object_new_object();
        json_object_object_add(out, "age_s", json_object_new_double(age));
        json_object_object_add(out, "leading", json_object_new_boolean(st != NULL &&
                                                                       age <= STALE_S));
        ctl_print_json(out);
        json_object_put(out);
    } else {
        print_table(st, age);
    }
    json_object_put(st);
    return st != NULL && age <= STALE_S ? EXIT_OK : EXIT_UNKNOWN;
}
