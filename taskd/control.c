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
#include "task_limits.h"
#include "control.h"
#include "log.h"
#include "metrics.h"
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

/* AMQP short strings (routing keys) and Celery's names fit in this. */
#define SHORT_MAX 255

static const char *const bad_slugs[] = {
    "none",
#define CONTROL_X_SLUG(sym, slug) slug,
    CONTROL_BAD_MAP(CONTROL_X_SLUG)
#undef CONTROL_X_SLUG
};

const char *control_bad_slug(enum control_bad b)
{
    return b > CONTROL_BAD_NONE && b < CONTROL_BAD__COUNT ? bad_slugs[b] : "unknown";
}

static bool short_str(const char *s)
{
    return s != NULL && s[0] != '\0' && strlen(s) <= SHORT_MAX;
}

/* destination: absent or null is a broadcast; else a list naming the workers meant. */
static int read_destination(json_object *root, const char *hostname, bool *for_me)
{
    json_object *dest = NULL;
    *for_me = true;
    if (!json_object_object_get_ex(root, "destination", &dest) || dest == NULL)
        return 0;
    if (!json_object_is_type(dest, json_type_array))
        return TASK_EPROTO;
    *for_me = false;
    for (size_t i = 0; i < json_object_array_length(dest) && !*for_me; i++) {
        const char *name = task__json_idx_str(dest, i);
        *for_me = name != NULL && strcmp(name, hostname) == 0;
    }
    return 0;
}

/* reply_to and ticket: both there and well-formed is a call, both absent (or null) a cast. */
static enum control_bad read_reply(json_object *root, struct control_req *out)
{
    json_object *to = NULL, *ticket = NULL;
    bool has_to = json_object_object_get_ex(root, "reply_to", &to) && to != NULL;
    bool has_ticket = json_object_object_get_ex(root, "ticket", &ticket) && ticket != NULL;
    if (has_ticket && !(json_object_is_type(ticket, json_type_string) &&
                        short_str(json_object_get_string(ticket))))
        return CONTROL_BAD_TICKET;
    if (!has_to)
        return CONTROL_BAD_NONE;
    const char *rk = task__json_get_str(to, "routing_key");
    if (!short_str(rk))
        return CONTROL_BAD_REPLY_TO;
    if (has_ticket) {
        out->reply_rk = rk;
        out->ticket = json_object_get_string(ticket);
    }
    return CONTROL_BAD_NONE;
}

static enum control_bad read_req(json_object *root, const char *hostname, struct control_req *out)
{
    if (!json_object_is_type(root, json_type_object))
        return CONTROL_BAD_NOT_OBJECT;
    out->method = task__json_get_str(root, "method");
    if (!short_str(out->method))
        return CONTROL_BAD_METHOD;
    if (read_destination(root, hostname, &out->for_me) != 0)
        return CONTROL_BAD_DESTINATION;
    json_object *args = NULL;
    if (json_object_object_get_ex(root, "arguments", &args) && args != NULL &&
        !json_object_is_type(args, json_type_object))
        return CONTROL_BAD_ARGUMENTS;
    out->args = args;
    return read_reply(root, out);
}

int control_req_parse(const void *body, size_t len, const char *hostname,
                      struct control_req *out, enum control_bad *why)
{
    enum task__bad jwhy;
    memset(out, 0, sizeof(*out));
    json_object *root = task__json_parse(body, len, TASK__JSON_MAX_DEPTH, &jwhy, NULL);
    *why = root == NULL ? CONTROL_BAD_NOT_JSON : read_req(root, hostname, out);
    if (*why != CONTROL_BAD_NONE) {
        json_object_put(root);
        memset(out, 0, sizeof(*out));
        return TASK_EPROTO;
    }
    out->root = root;
    return 0;
}

void control_req_free(struct control_req *req)
{
    json_object_put(req->root);
    memset(req, 0, sizeof(*req));
}

size_t control_revoke_count(json_object *args)
{
    json_object *ids = NULL;
    json_object_object_get_ex(args, "task_id", &ids);
    if (json_object_is_type(ids, json_type_string))
        return 1;
    return json_object_is_type(ids, json_type_array) ? json_object_array_length(ids) : 0;
}

const char *control_revoke_id(json_object *args, size_t i)
{
    json_object *ids = NULL;
    json_object_object_get_ex(args, "task_id", &ids);
    const char *id = json_object_is_type(ids, json_type_string)
                         ? (i == 0 ? json_object_get_string(ids) : NULL)
                         : task__json_idx_str(ids, i);
    return id != NULL && id[0] != '\0' && strlen(id) <= TASK__ID_MAX ? id : NULL;
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
    json_object_object_add(pool, "max-concurrency",
                           json_object_new_int(w->pool.n * w->pool.threads));
    json_object_object_add(pool, "processes", procs);
    json_object_object_add(pool, "threads", json_object_new_int(w->pool.threads));
    json_object_object_add(pool, "running", json_object_new_int(pool_running(w)));
    json_object_object_add(pool, "backlog", json_object_new_int64((int64_t)w->pool.backlog));
    json_object_object_add(o, "pool", pool);
    json_object_object_add(o, "prefetch_count", json_object_new_int(w->prefetch));
    json_object_object_add(o, "held", json_object_new_int64((int64_t)w->nheld));
    json_object_object_add(o, "unacked", json_object_new_int(w->inflight + (int)w->nheld));
    json_object *broker = json_object_new_object();
    const char *where = w->conn != NULL ? task__conn_where(w->conn) : "";
    json_object_object_add(broker, "url", json_object_new_string(where));
    json_object_object_add(o, "broker", broker);
    json_object_object_add(o, "sw_ident", json_object_new_string("taskd"));
    return o;
}

static json_object *do_revoke(struct worker *w, json_object *args)
{
    bool terminate = task__json_get_bool(args, "terminate");
    size_t n = control_revoke_count(args), done = 0;
    const char *one = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *id = control_revoke_id(args, i);
        if (id == NULL)
            continue; /* counted below: an element that names no task */
        revoked_persist(w, id);
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
    snprintf(msg, sizeof(msg), "tasks %.100s flagged as revoked", done == 1 ? one : "(several)");
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_string(msg));
    return o;
}

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
    json_object *value = json_object_new_object();
    if (name != NULL && limit != NULL && task_registry_find(name) != NULL &&
        rate_set(w, name, limit) == 0)
        json_object_object_add(value, "ok",
                               json_object_new_string("new rate limit set successfully"));
    else
        json_object_object_add(value, "error",
                               json_object_new_string("unknown task or bad rate limit"));
    return value;
}

static json_object *pong(void)
{
    json_object *value = json_object_new_object();
    json_object_object_add(value, "ok", json_object_new_string("pong"));
    return value;
}

/* The answer to a request, or NULL for one that gets none. */
static json_object *dispatch(struct worker *w, const struct control_req *req)
{
    const char *method = req->method;
    if (strcmp(method, "ping") == 0)
        return pong();
    if (strcmp(method, "registered") == 0)
        return registered();
    if (strcmp(method, "active") == 0)
        return active(w);
    if (strcmp(method, "stats") == 0)
        return stats(w);
    if (strcmp(method, "revoked") == 0)
        return revoked_list(w);
    if (strcmp(method, "revoke") == 0)
        return do_revoke(w, req->args);
    if (strcmp(method, "rate_limit") == 0)
        return do_rate_limit(w, req->args);
    if (strcmp(method, "heartbeat") == 0) {
        events_worker(w, "worker-heartbeat"); /* monitors ask on start */
        return NULL;
    }
    json_object *value = json_object_new_object();
    if (strcmp(method, "shutdown") == 0) {
        log_event(LV_INFO, 0, "shutdown_requested", "via=pidbox");
        worker_request_shutdown(w);
        json_object_object_add(value, "ok", json_object_new_string("shutting down"));
        return value;
    }
    char err[200];
    snprintf(err, sizeof(err), "KeyError('%.150s')", method);
    json_object_object_add(value, "error", json_object_new_string(err));
    return value;
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
        json_object *value = dispatch(w, &req);
        if (value != NULL)
            reply(w, &req, value);
    }
    control_req_free(&req);
}
