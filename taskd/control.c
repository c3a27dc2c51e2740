/*
 * control.c - remote control over Celery's pidbox layout (celery-protocol.md section 6): a
 * fanout exchange `celery.pidbox`, one `<node>.celery.pidbox` queue per worker, replies on
 * `reply.celery.pidbox` with the request's ticket. So `celery inspect ping` and
 * `app.control.revoke()` work against taskd. Every command of Celery 5.2's worker answers:
 * inspect replies are built in inspect.c, control commands act here (the table `handlers`);
 * Python-only tools answer a "not supported by taskd" error.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "autoscale.h"
#include "consumer.h"
#include "control.h"
#include "control_req.h"
#include "events.h"
#include "inspect.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "publisher.h"
#include "ratelimit.h"
#include "revoked.h"
#include "task_limits.h"
#include "worker.h"

#define CH_CONTROL 3

static amqp_table_entry_t int_arg(const char *key, int v)
{
    return (amqp_table_entry_t){.key = amqp_cstring_bytes(key),
                                .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = v}};
}

static void pidbox_name(const struct worker *w, char *q, size_t size)
{
    snprintf(q, size, "%s.celery.pidbox", w->hostname);
}

int control_ask(struct worker *w)
{
    struct task__conn *c = w->conn;
    char q[300];
    pidbox_name(w, q, sizeof(q));
    amqp_channel_open_t open = {.out_of_band = amqp_empty_bytes};
    amqp_exchange_declare_t fan = {.exchange = amqp_cstring_bytes("celery.pidbox"),
                                   .type = amqp_cstring_bytes("fanout"),
                                   .arguments = amqp_empty_table};
    amqp_exchange_declare_t reply = {.exchange = amqp_cstring_bytes("reply.celery.pidbox"),
                                     .type = amqp_cstring_bytes("direct"),
                                     .arguments = amqp_empty_table};
    /* The same arguments a Celery worker uses, so tools see a familiar queue. */
    amqp_table_entry_t e[2] = {int_arg("x-expires", 10000), int_arg("x-message-ttl", 300000)};
    amqp_queue_declare_t qd = {.queue = amqp_cstring_bytes(q), .auto_delete = 1,
                               .arguments = {.num_entries = 2, .entries = e}};
    amqp_queue_bind_t b = {.queue = amqp_cstring_bytes(q),
                           .exchange = amqp_cstring_bytes("celery.pidbox"),
                           .routing_key = amqp_empty_bytes, .arguments = amqp_empty_table};
    int rc = task__conn_ask(c, CH_CONTROL, AMQP_CHANNEL_OPEN_METHOD, &open, "open channel 3");
    if (rc == 0)
        rc = task__conn_ask(c, CH_CONTROL, AMQP_EXCHANGE_DECLARE_METHOD, &fan,
                            "declare exchange celery.pidbox");
    if (rc == 0)
        rc = task__conn_ask(c, CH_CONTROL, AMQP_EXCHANGE_DECLARE_METHOD, &reply,
                            "declare exchange reply.celery.pidbox");
    if (rc == 0)
        rc = task__conn_ask(c, CH_CONTROL, AMQP_QUEUE_DECLARE_METHOD, &qd, "declare pidbox queue");
    if (rc == 0)
        rc = task__conn_ask(c, CH_CONTROL, AMQP_QUEUE_BIND_METHOD, &b, "bind pidbox queue");
    return rc;
}

int control_start(struct worker *w)
{
    char q[300];
    pidbox_name(w, q, sizeof(q));
    return task__conn_consume(w->conn, CH_CONTROL, q, true, amqp_empty_table, NULL);
}

static bool is_running(const struct worker *w, const char *id)
{
    for (int i = 0; i < w->pool.n; i++)
        for (const struct job *j = w->pool.ch[i].running; j != NULL; j = j->next)
            if (strcmp(j->m.id, id) == 0)
                return true;
    return false;
}

static json_object *do_revoke(struct worker *w, json_object *args)
{
    bool terminate = task__json_get_bool(args, "terminate");
    size_t n = control_revoke_count(args), done = 0, running = 0;
    const char *one = NULL, *one_running = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *id = control_revoke_id(args, i);
        if (id == NULL)
            continue; /* counted below: an element that names no task */
        revoked_persist(w, id);
        if (is_running(w, id)) {
            running++;
            one_running = id;
        }
        pool_revoke(w, id, terminate); /* running here: cancel it, or with terminate, kill it */
        log_event(LV_INFO, 0, "task_revoked", "task_id=%s terminate=%d", log_v(id),
                  (int)terminate);
        one = id;
        done++;
    }
    if (done < n || n == 0) { /* also a task_id that is missing, empty or of another type */
        log_event(LV_WARN, 0, "control_rejected", "method=revoke reason=bad_task_id ids=%zu",
                  n - done);
        metrics_control_rejected(w->metrics, CONTROL_BAD_ARGUMENTS);
    }
    char msg[160];
    if (terminate) /* Celery names the tasks it found running */
        snprintf(msg, sizeof(msg), "terminate: %.100s",
                 running == 0 ? "tasks unknown" : running == 1 ? one_running : "(several)");
    else
        snprintf(msg, sizeof(msg), "tasks %.100s flagged as revoked",
                 done == 1 ? one : "(several)");
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_string(msg));
    return o;
}

/* Sends {hostname: value}; value NULL is Celery's None (kombu replies to every call). */
static void reply(struct worker *w, const struct control_req *req, json_object *value)
{
    if (req->reply_rk == NULL) {
        json_object_put(value);
        return; /* a cast: nobody waits for an answer */
    }
    json_object *body = json_object_new_object();
    json_object_object_add(body, w->hostname, value);
    amqp_table_entry_t h[2] = {
        {.key = amqp_cstring_bytes("ticket"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(req->ticket)}},
        {.key = amqp_cstring_bytes("clock"),
         .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 0}},
    };
    amqp_basic_properties_t p =
        task__json_props((amqp_table_t){.num_entries = 2, .entries = h}, 1);
    size_t len;
    const char *text = task__json_str(body, &len);
    int rc = pub_send(w, NULL, "reply.celery.pidbox", req->reply_rk, &p, text, len);
    if (rc != 0)
        log_event(LV_WARN, rc, "control_reply_failed", "method=%s reply_to=%s",
                  log_v(req->method), log_v(req->reply_rk));
    json_object_put(body);
}

static json_object *ok_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_object *nok_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static json_object *status_msg(const char *key, const char *fmt, va_list ap)
{
    char text[512];
    vsnprintf(text, sizeof(text), fmt, ap);
    json_object *o = json_object_new_object();
    json_object_object_add(o, key, json_object_new_string(text));
    return o;
}

/* Celery's ok(value) and nok(value): {"ok": ...} and {"error": ...}. */
static json_object *ok_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_object *o = status_msg("ok", fmt, ap);
    va_end(ap);
    return o;
}

static json_object *nok_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_object *o = status_msg("error", fmt, ap);
    va_end(ap);
    return o;
}

static json_object *do_rate_limit(struct worker *w, json_object *args)
{
    const char *name = task__json_get_str(args, "task_name");
    json_object *lim = NULL;
    json_object_object_get_ex(args, "rate_limit", &lim);
    /* Celery sends "10/s", a plain number (per second) or null (no limit). */
    const char *limit = lim == NULL ? ""
                        : json_object_is_type(lim, json_type_string) ||
                                  json_object_is_type(lim, json_type_int) ||
                                  json_object_is_type(lim, json_type_double)
                            ? json_object_get_string(lim)
                            : NULL;
    /* Celery's answers, checked in its order: the limit, then the task. */
    if (limit == NULL || rate_parse(limit) < 0)
        return nok_msg("Invalid rate limit string: %.100s", limit ? limit : "(not a string)");
    if (name == NULL || task_registry_find(name) == NULL || rate_set(w, name, limit) != 0)
        return nok_msg("unknown task");
    return ok_msg(limit[0] == '\0' ? "rate limit disabled successfully"
                                   : "new rate limit set successfully");
}

/* An argument that is a count: an integer, or a string of one (the CLI sends ints, others may
 * send text); `dflt` when absent or null, -1 when it is anything else. */
static long count_arg(json_object *args, const char *key, long dflt)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(args, key, &v) || v == NULL)
        return dflt;
    if (json_object_is_type(v, json_type_int))
        return (long)json_object_get_int64(v);
    if (!json_object_is_type(v, json_type_string))
        return -1;
    char *end;
    long n = strtol(json_object_get_string(v), &end, 10);
    return *end == '\0' && end != json_object_get_string(v) ? n : -1;
}

/* Seconds: a number, null or absent (0: none); NaN for anything else. */
static double seconds_arg(json_object *args, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(args, key, &v) || v == NULL)
        return 0;
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))
        return json_object_get_double(v);
    return 0.0 / 0.0;
}

static json_object *do_pool_grow(struct worker *w, json_object *args)
{
    long n = count_arg(args, "n", 1);
    if (w->autoscale.max > 0) /* Celery's answer with its autoscaler on */
        return nok_msg("pool_grow is not supported with autoscale. Adjust autoscale range "
                       "instead.");
    if (n < 1 || n > POOL_GROW_MAX)
        return nok_msg("pool_grow: n must be 1..%d", POOL_GROW_MAX);
    int added = pool_grow(w, (int)n);
    if (added <= 0)
        return nok_msg("pool_grow: the pool is at its largest (%d processes: worker.pool_size "
                       "+ %d)", w->pool.target, POOL_GROW_MAX);
    pool_prefetch_follow(w);
    if (added < n)
        return ok_msg("pool will grow by %d (to %d processes, its largest)", added,
                      w->pool.target);
    return ok_msg("pool will grow");
}

static json_object *do_pool_shrink(struct worker *w, json_object *args)
{
    long n = count_arg(args, "n", 1);
    if (w->autoscale.max > 0)
        return nok_msg("pool_shrink is not supported with autoscale. Adjust autoscale range "
                       "instead.");
    if (n < 1)
        return nok_msg("pool_shrink: n must be 1 or more");
    int dropped = pool_shrink(w, n > INT32_MAX ? INT32_MAX : (int)n);
    if (dropped <= 0)
        return nok_msg("pool_shrink: the pool keeps at least one process");
    pool_prefetch_follow(w);
    if (dropped < n)
        return ok_msg("pool will shrink by %d (to 1 process, its smallest)", dropped);
    return ok_msg("pool will shrink");
}

static json_object *do_pool_restart(struct worker *w, json_object *args)
{
    json_object *mods = NULL;
    json_object_object_get_ex(args, "modules", &mods);
    if (task__json_get_bool(args, "reload") ||
        (json_object_is_type(mods, json_type_array) && json_object_array_length(mods) > 0))
        return nok_msg("pool_restart: taskd cannot reload task modules (restart the worker); "
                       "without modules or reload it recycles the pool's processes");
    if (pool_restart(w) < 0)
        return nok_msg("pool_restart: the worker is stopping");
    return ok_msg("reload started");
}

/* A queue name as add_consumer takes it: it also goes into the comma list worker.queues. */
static bool queue_name_ok(const char *q)
{
    size_t len = q != NULL ? strlen(q) : 0;
    return len > 0 && len <= CONTROL_SHORT_MAX && strchr(q, ',') == NULL && q[0] != ' ' &&
           q[len - 1] != ' ';
}

/* add_consumer's exchange, exchange_type and routing_key: taskd binds a task queue as Celery's
 * default does (a direct exchange and a routing key both named as the queue); other values
 * would need a topology taskd does not declare. */
static bool default_binding(json_object *args, const char *queue)
{
    const char *ex = task__json_get_str(args, "exchange");
    const char *type = task__json_get_str(args, "exchange_type");
    const char *rk = task__json_get_str(args, "routing_key");
    return (ex == NULL || ex[0] == '\0' || strcmp(ex, queue) == 0) &&
           (type == NULL || strcmp(type, "direct") == 0) &&
           (rk == NULL || rk[0] == '\0' || strcmp(rk, queue) == 0);
}

static json_object *do_add_consumer(struct worker *w, json_object *args)
{
    const char *q = task__json_get_str(args, "queue");
    if (!queue_name_ok(q))
        return nok_msg("add_consumer: a queue name of 1..255 bytes without commas or edge "
                       "spaces is needed");
    if (!default_binding(args, q))
        return nok_msg("add_consumer: taskd binds %s to a direct exchange named %s (custom "
                       "exchange, type or routing key not supported)", q, q);
    if (w->state != W_RUNNING)
        return nok_msg("add_consumer: the worker is stopping");
    if (consumer_has_queue(w, q))
        return ok_msg("already consuming from %s", q);
    int rc = consumer_add_queue(w, q);
    if (rc == 0)
        return ok_msg("add consumer %s", q);
    json_object *r = nok_msg("add_consumer %s: %s", q,
                             rc == TASK_EINVAL                           ? "32 queues at most"
                             : w->conn && task__conn_errmsg(w->conn)[0] ? task__conn_errmsg(w->conn)
                                                                        : task_strerror(rc));
    /* A refusal (406: the queue exists with other arguments) is answered here; the connection
     * goes on, and its next error must not read as this one. */
    if (w->conn != NULL && task__conn_alive(w->conn))
        task__conn_clear_error(w->conn);
    return r;
}

static json_object *do_cancel_consumer(struct worker *w, json_object *args)
{
    const char *q = task__json_get_str(args, "queue");
    if (q == NULL || !consumer_has_queue(w, q))
        return nok_msg("cancel_consumer: not consuming from %s", q ? q : "(no queue given)");
    int rc = consumer_cancel_queue(w, q);
    if (rc != 0)
        return nok_msg("cancel_consumer %s: %s", q, task_strerror(rc));
    return ok_msg("no longer consuming from %s", q);
}

static json_object *do_time_limit(struct worker *w, json_object *args)
{
    const char *name = task__json_get_str(args, "task_name");
    if (name == NULL || task_registry_find(name) == NULL)
        return nok_msg("unknown task");
    double soft = seconds_arg(args, "soft"), hard = seconds_arg(args, "hard");
    if (time_limit_set(w, name, soft, hard) != 0)
        return nok_msg("time limits must be numbers of seconds from 0 to 1e9 (or null)");
    return ok_msg("time limits set successfully");
}

static json_object *do_events(struct worker *w, bool on)
{
    if (w->cfg->send_events == on)
        return ok_msg("task events already %s", on ? "enabled" : "disabled");
    task_error err = {0};
    if (task_config_set(w->cfg, "worker.send_events", on ? "true" : "false", "pidbox", &err) != 0)
        return nok_msg("%s", err.msg);
    log_event(LV_INFO, 0, "task_events", "enabled=%d via=pidbox", (int)on);
    return ok_msg("task events %s", on ? "enabled" : "disabled");
}

static json_object *do_shutdown(struct worker *w, json_object *args)
{
    (void)args;
    log_event(LV_INFO, 0, "shutdown_requested", "via=pidbox");
    w->shutdown_asked = true; /* the worker drains once this is answered */
    return ok_msg("shutting down");
}

/* Python-heap and cluster tools that mean nothing for a C worker: a clear error, not Celery's
 * KeyError for an unknown command. */
static const char *const unsupported[] = {"memsample", "memdump", "objgraph", "election",
                                          "dump_conf_defaults", NULL};

/* A command that acts on, or reads, its arguments; or one that only reads the worker. */
typedef json_object *(*handler_fn)(struct worker *w, json_object *args);
typedef json_object *(*view_fn)(const struct worker *w);

static json_object *pong(const struct worker *w)
{
    (void)w;
    return ok_msg("pong");
}

static json_object *h_revoked(struct worker *w, json_object *a)
{
    (void)a;
    return revoked_list(w);
}

static json_object *h_enable(struct worker *w, json_object *a)
{
    (void)a;
    return do_events(w, true);
}

static json_object *h_disable(struct worker *w, json_object *a)
{
    (void)a;
    return do_events(w, false);
}

static json_object *h_heartbeat(struct worker *w, json_object *a)
{
    (void)a;
    events_worker(w, "worker-heartbeat"); /* monitors ask on start */
    return NULL;                          /* Celery's answer is None */
}

static json_object *h_terminate(struct worker *w, json_object *a)
{
    json_object *args = json_object_new_object();
    json_object *id = NULL;
    if (json_object_object_get_ex(a, "task_id", &id))
        json_object_object_add(args, "task_id", json_object_get(id));
    json_object_object_add(args, "terminate", json_object_new_boolean(1));
    json_object *r = do_revoke(w, args);
    json_object_put(args);
    return r;
}

static json_object *h_autoscale(struct worker *w, json_object *a)
{
    long max = count_arg(a, "max", 0), min = count_arg(a, "min", 0);
    if (max < 0 || min < 0 || max > INT32_MAX || min > INT32_MAX ||
        autoscale_set(w, (int)max, (int)min) != 0)
        return nok_msg("autoscale: needs 1 <= min <= max <= %d processes", w->pool.cap);
    return ok_msg("autoscale now max=%d min=%d", w->autoscale.max, w->autoscale.min);
}

static const struct {
    const char *name, *alias; /* alias: Celery's old dump_* name */
    handler_fn act;           /* or: */
    view_fn view;
} handlers[] = {
    {"ping", NULL, NULL, pong},
    {"active", "dump_active", inspect_active, NULL},
    {"reserved", "dump_reserved", NULL, inspect_reserved},
    {"scheduled", "dump_schedule", NULL, inspect_scheduled},
    {"active_queues", NULL, NULL, inspect_active_queues},
    {"registered", "dump_tasks", inspect_registered, NULL},
    {"revoked", "dump_revoked", h_revoked, NULL},
    {"stats", NULL, NULL, inspect_stats},
    {"conf", "dump_conf", NULL, inspect_conf},
    {"query_task", NULL, inspect_query_task, NULL},
    {"clock", NULL, NULL, inspect_clock},
    {"report", NULL, NULL, inspect_report},
    {"hello", NULL, inspect_hello, NULL},
    {"revoke", NULL, do_revoke, NULL},
    {"terminate", NULL, h_terminate, NULL},
    {"rate_limit", NULL, do_rate_limit, NULL},
    {"time_limit", NULL, do_time_limit, NULL},
    {"enable_events", NULL, h_enable, NULL},
    {"disable_events", NULL, h_disable, NULL},
    {"heartbeat", NULL, h_heartbeat, NULL},
    {"pool_grow", NULL, do_pool_grow, NULL},
    {"pool_shrink", NULL, do_pool_shrink, NULL},
    {"pool_restart", NULL, do_pool_restart, NULL},
    {"autoscale", NULL, h_autoscale, NULL},
    {"add_consumer", NULL, do_add_consumer, NULL},
    {"cancel_consumer", NULL, do_cancel_consumer, NULL},
    {"shutdown", NULL, do_shutdown, NULL},
};

/* The answer to a request; NULL is Celery's None. */
static json_object *dispatch(struct worker *w, const struct control_req *req)
{
    const char *method = req->method;
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if (strcmp(method, handlers[i].name) == 0 ||
            (handlers[i].alias != NULL && strcmp(method, handlers[i].alias) == 0))
            return handlers[i].act ? handlers[i].act(w, req->args) : handlers[i].view(w);
    for (size_t i = 0; unsupported[i] != NULL; i++)
        if (strcmp(method, unsupported[i]) == 0)
            return nok_msg("%s is not supported by taskd (a C worker: no Python heap, no "
                           "gossip)", method);
    /* What Celery's worker answers for a command it does not know. */
    return nok_msg("KeyError('%.150s')", method);
}

void control_on_delivery(struct worker *w, struct task__delivery *d)
{
    struct control_req req;
    enum control_bad why;
    if (control_req_parse(d->msg.body.bytes, d->msg.body.len, w->hostname, &req, &why) != 0) {
        log_event(LV_WARN, 0, "control_rejected", "reason=%s bytes=%zu", control_bad_slug(why),
                  d->msg.body.len);
        metrics_control_rejected(w->metrics, (int)why);
        return;
    }
    if (req.for_me) {
        log_event(LV_DEBUG, 0, "control", "method=%s", log_v(req.method));
        reply(w, &req, dispatch(w, &req));
    }
    control_req_free(&req);
}
