/*
 * events.c - Celery's event stream (celery-protocol.md section 7): worker-online, a
 * worker-heartbeat every 2 s and worker-offline always; task events when worker.send_events
 * is on (taskd -E). Published to the `celeryev` topic exchange, routing key = type with '-'
 * replaced by '.', so `celery events`, Flower and `taskctl events` see taskd workers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "events.h"
#include "log.h"
#include "pool.h"
#include "publisher.h"
#include "worker.h"

#define HEARTBEAT_S 2.0

int events_start(struct worker *w)
{
    amqp_exchange_declare_t m = {.exchange = amqp_cstring_bytes("celeryev"),
                                 .type = amqp_cstring_bytes("topic"), .durable = 1,
                                 .arguments = amqp_empty_table};
    return task__conn_ask(w->conn, CH_PUBLISH, AMQP_EXCHANGE_DECLARE_METHOD, &m,
                          "declare exchange celeryev");
}

static json_object *event_new(struct worker *w, const char *type)
{
    json_object *o = json_object_new_object();
    time_t now = time(NULL);
    struct tm lt;
    localtime_r(&now, &lt);
    json_object_object_add(o, "hostname", json_object_new_string(w->hostname));
    json_object_object_add(o, "utcoffset", json_object_new_int((int)(-lt.tm_gmtoff / 3600)));
    json_object_object_add(o, "pid", json_object_new_int(getpid()));
    json_object_object_add(o, "clock", json_object_new_int64((int64_t)++w->clock));
    json_object_object_add(o, "timestamp", json_object_new_double(task__now_wall()));
    json_object_object_add(o, "type", json_object_new_string(type));
    return o;
}

static void event_send(struct worker *w, json_object *ev, const char *type)
{
    if (w->conn == NULL || !task__conn_alive(w->conn) || w->blocked) {
        json_object_put(ev);
        return;
    }
    char rk[64];
    snprintf(rk, sizeof(rk), "%s", type);
    for (char *p = rk; *p; p++)
        if (*p == '-')
            *p = '.';
    amqp_table_entry_t h = {.key = amqp_cstring_bytes("hostname"),
                            .value = {.kind = AMQP_FIELD_KIND_UTF8,
                                      .value.bytes = amqp_cstring_bytes(w->hostname)}};
    amqp_basic_properties_t p =
        task__json_props((amqp_table_t){.num_entries = 1, .entries = &h}, 1);
    size_t len;
    const char *text = task__json_str(ev, &len);
    (void)pub_send(w, NULL, "celeryev", rk, &p, text, len);
    json_object_put(ev);
}

void events_worker(struct worker *w, const char *type)
{
    json_object *ev = event_new(w, type);
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) != 3)
        load[0] = load[1] = load[2] = 0;
    json_object *la = json_object_new_array();
    for (int i = 0; i < 3; i++)
        json_object_array_add(la, json_object_new_double(load[i]));
    json_object_object_add(ev, "freq", json_object_new_double(HEARTBEAT_S));
    json_object_object_add(ev, "active", json_object_new_int(pool_running(w)));
    json_object_object_add(ev, "processed", json_object_new_int64((int64_t)w->n_received));
    json_object_object_add(ev, "loadavg", la);
    json_object_object_add(ev, "sw_ident", json_object_new_string("taskd"));
    json_object_object_add(ev, "sw_ver", json_object_new_string("0.1.0"));
    json_object_object_add(ev, "sw_sys", json_object_new_string("Linux"));
    event_send(w, ev, type);
    w->last_heartbeat = task__now_mono();
}

void events_tick(struct worker *w)
{
    if (w->state == W_RUNNING && task__now_mono() - w->last_heartbeat >= HEARTBEAT_S)
        events_worker(w, "worker-heartbeat");
}

static json_object *str_or_null(const char *s)
{
    return s ? json_object_new_string(s) : NULL;
}

void events_task_msg(struct worker *w, const char *type, const struct task__msg *m)
{
    struct job j; /* events_task reads only the message */
    memset(&j, 0, sizeof(j));
    j.m = *m;
    events_task(w, type, &j, NULL);
}

void events_task(struct worker *w, const char *type, const struct job *job, json_object *extra)
{
    if (!w->cfg->send_events) {
        json_object_put(extra);
        return;
    }
    json_object *ev = event_new(w, type);
    const struct task__msg *m = &job->m;
    json_object_object_add(ev, "uuid", json_object_new_string(m->id));
    if (strcmp(type, "task-received") == 0) {
        char buf[40];
        json_object_object_add(ev, "name", json_object_new_string(m->task));
        json_object_object_add(ev, "args", json_object_new_string(
                                               m->argsrepr ? m->argsrepr : task__json_str(m->args, NULL)));
        json_object_object_add(ev, "kwargs", json_object_new_string(
                                                 m->kwargsrepr ? m->kwargsrepr : task__json_str(m->kwargs, NULL)));
        json_object_object_add(ev, "root_id", str_or_null(m->root_id));
        json_object_object_add(ev, "parent_id", str_or_null(m->parent_id));
        json_object_object_add(ev, "retries", json_object_new_int(m->retries));
        task__iso8601_format(m->eta, buf, sizeof(buf));
        json_object_object_add(ev, "eta", m->eta > 0 ? json_object_new_string(buf) : NULL);
        task__iso8601_format(m->expires, buf, sizeof(buf));
        json_object_object_add(ev, "expires", m->expires > 0 ? json_object_new_string(buf) : NULL);
    }
    if (extra != NULL) {
        json_object_object_foreach(extra, k, v) json_object_object_add(ev, k, json_object_get(v));
        json_object_put(extra);
    }
    event_send(w, ev, type);
}
