/*
 * control.c - remote control over Celery's pidbox layout (celery-protocol.md section 6): a
 * fanout exchange `celery.pidbox`, one `<node>.celery.pidbox` queue per worker, replies on
 * `reply.celery.pidbox` with the request's ticket. So `celery inspect ping` and
 * `app.control.revoke()` work against taskd. Commands: ping, registered, active, stats,
 * revoked, revoke (terminate), shutdown.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "log.h"
#include "worker.h"

#define CH_CONTROL 3

static amqp_table_entry_t int_arg(const char *key, int v)
{
    return (amqp_table_entry_t){.key = amqp_cstring_bytes(key),
                                .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = v}};
}

int control_start(struct worker *w)
{
    struct task__conn *c = w->conn;
    amqp_connection_state_t st = task__conn_amqp(c);
    int rc = task__conn_channel_open(c, CH_CONTROL);
    if (rc != 0)
        return rc;
    amqp_exchange_declare(st, CH_CONTROL, amqp_cstring_bytes("celery.pidbox"),
                          amqp_cstring_bytes("fanout"), 0, 0, 0, 0, amqp_empty_table);
    rc = task__conn_check(c, amqp_get_rpc_reply(st), "declare exchange celery.pidbox");
    if (rc != 0)
        return rc;
    amqp_exchange_declare(st, CH_CONTROL, amqp_cstring_bytes("reply.celery.pidbox"),
                          amqp_cstring_bytes("direct"), 0, 0, 0, 0, amqp_empty_table);
    rc = task__conn_check(c, amqp_get_rpc_reply(st), "declare exchange reply.celery.pidbox");
    if (rc != 0)
        return rc;
    char q[300];
    snprintf(q, sizeof(q), "%s.celery.pidbox", w->hostname);
    /* The same arguments a Celery worker uses, so tools see a familiar queue. */
    amqp_table_entry_t e[2] = {int_arg("x-expires", 10000), int_arg("x-message-ttl", 300000)};
    amqp_table_t args = {.num_entries = 2, .entries = e};
    rc = task__conn_declare_queue(c, CH_CONTROL, q, false, false, true, args);
    if (rc != 0)
        return rc;
    amqp_queue_bind(st, CH_CONTROL, amqp_cstring_bytes(q), amqp_cstring_bytes("celery.pidbox"),
                    amqp_cstring_bytes(""), amqp_empty_table);
    rc = task__conn_check(c, amqp_get_rpc_reply(st), "bind pidbox queue");
    if (rc == 0)
        rc = task__conn_consume(c, CH_CONTROL, q, true, amqp_empty_table, NULL);
    return rc;
}

static json_object *get(json_object *o, const char *k)
{
    json_object *v = NULL;
    json_object_object_get_ex(o, k, &v);
    return v;
}

static bool for_me(const struct worker *w, json_object *req)
{
    json_object *dest = get(req, "destination");
    if (!json_object_is_type(dest, json_type_array))
        return true;
    for (size_t i = 0; i < json_object_array_length(dest); i++)
        if (strcmp(json_object_get_string(json_object_array_get_idx(dest, i)), w->hostname) == 0)
            return true;
    return false;
}

static json_object *registered(void)
{
    json_object *list = json_object_new_array();
    int n = task_registry_count();
    const char **names = calloc((size_t)n + 1, sizeof(*names));
    for (int i = 0; names && i < n; i++)
        names[i] = task_registry_at(i)->name;
    for (int i = 1; names && i < n; i++) /* sorted, as Celery answers */
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    for (int i = 0; names && i < n; i++)
        json_object_array_add(list, json_object_new_string(names[i]));
    free(names);
    return list;
}

static json_object *active(const struct worker *w)
{
    json_object *list = json_object_new_array();
    double wall_minus_mono = task__now_wall() - task__now_mono();
    for (int i = 0; i < w->pool.n; i++) {
        for (const struct job *j = w->pool.ch[i].running; j != NULL; j = j->next) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "id", json_object_new_string(j->m.id));
            json_object_object_add(o, "name", json_object_new_string(j->m.task));
            json_object_object_add(o, "args", json_object_get(j->m.args));
            json_object_object_add(o, "kwargs", json_object_get(j->m.kwargs));
            json_object_object_add(o, "type", json_object_new_string(j->m.task));
            json_object_object_add(o, "hostname", json_object_new_string(w->hostname));
            json_object_object_add(o, "time_start",
                                   json_object_new_double(j->started + wall_minus_mono));
            json_object_object_add(o, "acknowledged", json_object_new_boolean(0));
            json_object *di = json_object_new_object();
            json_object_object_add(di, "exchange", json_object_new_string(j->d.exchange));
            json_object_object_add(di, "routing_key", json_object_new_string(j->d.routing_key));
            json_object_object_add(di, "priority", json_object_new_int(j->m.priority));
            json_object_object_add(di, "redelivered", json_object_new_boolean(j->d.redelivered));
            json_object_object_add(o, "delivery_info", di);
            json_object_object_add(o, "worker_pid", json_object_new_int(w->pool.ch[i].pid));
            json_object_array_add(list, o);
        }
    }
    return list;
}

static json_object *stats(const struct worker *w)
{
    json_object *o = json_object_new_object();
    json_object *total = json_object_new_object();
    json_object_object_add(total, "received", json_object_new_int64((int64_t)w->n_received));
    json_object_object_add(total, "succeeded", json_object_new_int64((int64_t)w->n_succeeded));
    json_object_object_add(total, "failed", json_object_new_int64((int64_t)w->n_failed));
    json_object_object_add(total, "retried", json_object_new_int64((int64_t)w->n_retried));
    json_object_object_add(total, "quarantined", json_object_new_int64((int64_t)w->n_quarantined));
    json_object_object_add(total, "delayed", json_object_new_int64((int64_t)w->n_delayed));
    json_object_object_add(o, "total", total);
    json_object_object_add(o, "pid", json_object_new_int(getpid()));
    json_object_object_add(o, "clock", json_object_new_string("0"));
    json_object_object_add(o, "uptime", json_object_new_int((int)(task__now_mono() - w->started)));
    json_object *pool = json_object_new_object();
    json_object *procs = json_object_new_array();
    for (int i = 0; i < w->pool.n; i++)
        if (w->pool.ch[i].pid > 0)
            json_object_array_add(procs, json_object_new_int(w->pool.ch[i].pid));
    json_object_object_add(pool, "max-concurrency", json_object_new_int(w->pool.n * w->pool.threads));
    json_object_object_add(pool, "processes", procs);
    json_object_object_add(pool, "threads", json_object_new_int(w->pool.threads));
    json_object_object_add(pool, "running", json_object_new_int(pool_running(w)));
    json_object_object_add(pool, "backlog", json_object_new_int64((int64_t)w->pool.backlog));
    json_object_object_add(o, "pool", pool);
    json_object_object_add(o, "prefetch_count", json_object_new_int(w->prefetch));
    json_object_object_add(o, "held", json_object_new_int64((int64_t)w->nheld));
    json_object_object_add(o, "unacked", json_object_new_int(w->inflight + (int)w->nheld));
    json_object *broker = json_object_new_object();
    json_object_object_add(broker, "url", json_object_new_string(task__conn_where(w->conn)));
    json_object_object_add(o, "broker", broker);
    json_object_object_add(o, "sw_ident", json_object_new_string("taskd"));
    return o;
}

static json_object *do_revoke(struct worker *w, json_object *args)
{
    json_object *ids = get(args, "task_id");
    bool terminate = json_object_get_boolean(get(args, "terminate"));
    json_object *list = json_object_new_array();
    if (json_object_is_type(ids, json_type_string))
        json_object_array_add(list, json_object_get(ids));
    else if (json_object_is_type(ids, json_type_array))
        for (size_t i = 0; i < json_object_array_length(ids); i++)
            json_object_array_add(list, json_object_get(json_object_array_get_idx(ids, i)));
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        const char *id = json_object_get_string(json_object_array_get_idx(list, i));
        revoked_persist(w, id);
        if (terminate)
            pool_terminate(w, id);
        log_event(LV_INFO, 0, "task_revoked", "task_id=%s terminate=%d", id, (int)terminate);
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "tasks %s flagged as revoked",
             json_object_array_length(list) == 1
                 ? json_object_get_string(json_object_array_get_idx(list, 0))
                 : "(several)");
    json_object_put(list);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_string(msg));
    return o;
}

static void reply(struct worker *w, json_object *req, json_object *value)
{
    json_object *to = get(req, "reply_to");
    json_object *ticket = get(req, "ticket");
    json_object *rk = get(to, "routing_key");
    if (rk == NULL || ticket == NULL) {
        json_object_put(value);
        return; /* a cast: nobody waits for an answer */
    }
    json_object *body = json_object_new_object();
    json_object_object_add(body, w->hostname, value);
    amqp_table_entry_t h[2] = {
        {.key = amqp_cstring_bytes("ticket"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8,
                   .value.bytes = amqp_cstring_bytes(json_object_get_string(ticket))}},
        {.key = amqp_cstring_bytes("clock"),
         .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 0}},
    };
    amqp_basic_properties_t p =
        task__json_props((amqp_table_t){.num_entries = 2, .entries = h}, 1);
    size_t len;
    const char *text = task__json_str(body, &len);
    (void)pub_send(w, NULL, "reply.celery.pidbox", json_object_get_string(rk), &p, text, len);
    json_object_put(body);
}

void control_on_delivery(struct worker *w, struct task__delivery *d)
{
    enum task__bad why;
    json_object *req = task__json_parse(d->msg.body.bytes, d->msg.body.len, 32, &why, NULL);
    const char *method = json_object_get_string(get(req, "method"));
    if (req == NULL || method == NULL || !for_me(w, req)) {
        json_object_put(req);
        return;
    }
    json_object *args = get(req, "arguments");
    json_object *value = NULL;
    if (strcmp(method, "ping") == 0) {
        value = json_object_new_object();
        json_object_object_add(value, "ok", json_object_new_string("pong"));
    } else if (strcmp(method, "registered") == 0) {
        value = registered();
    } else if (strcmp(method, "active") == 0) {
        value = active(w);
    } else if (strcmp(method, "stats") == 0) {
        value = stats(w);
    } else if (strcmp(method, "revoked") == 0) {
        value = revoked_list(w);
    } else if (strcmp(method, "revoke") == 0) {
        value = do_revoke(w, args);
    } else if (strcmp(method, "rate_limit") == 0) {
        const char *name = json_object_get_string(get(args, "task_name"));
        const char *limit = json_object_get_string(get(args, "rate_limit"));
        value = json_object_new_object();
        if (name != NULL && task_registry_find(name) != NULL &&
            rate_set(w, name, limit ? limit : "") == 0)
            json_object_object_add(value, "ok", json_object_new_string(
                                                    "new rate limit set successfully"));
        else
            json_object_object_add(value, "error", json_object_new_string(
                                                       "unknown task or bad rate limit"));
    } else if (strcmp(method, "heartbeat") == 0) {
        events_worker(w, "worker-heartbeat"); /* monitors ask on start */
        json_object_put(req);
        return;
    } else if (strcmp(method, "shutdown") == 0) {
        log_event(LV_INFO, 0, "shutdown_requested", "via=pidbox");
        worker_request_shutdown(w);
        value = json_object_new_object();
        json_object_object_add(value, "ok", json_object_new_string("shutting down"));
    } else {
        char err[200];
        snprintf(err, sizeof(err), "KeyError('%.150s')", method);
        value = json_object_new_object();
        json_object_object_add(value, "error", json_object_new_string(err));
    }
    log_event(LV_DEBUG, 0, "control", "method=%s", method);
    reply(w, req, value);
    json_object_put(req);
}
