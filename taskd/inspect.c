/*
 * inspect.c - the answers to Celery's inspect commands, shaped as Celery 5.2's worker shapes
 * them (celery/worker/control.py, Request.info(), WorkController.stats()), so `celery inspect`
 * and Flower show a taskd worker as they show a Celery one. docs/flower.md maps every field.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>
#include "autoscale.h"
#include "config_opts.h"
#include "inspect.h"
#include "internal.h"
#include "metrics.h"
#include "msgauth.h"
#include "pool.h"
#include "ratelimit.h"
#include "revoked.h"
#include "task_limits.h"
#include "worker.h"

#define TASKD_VERSION "0.1.0"

/* Celery's Request.info(): time_start and worker_pid are null until the task runs. */
static json_object *request_info(const struct worker *w, const struct task__msg *m,
                                 const struct task__delivery *d, double started_wall, int pid,
                                 bool safe)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(m->id));
    json_object_object_add(o, "name", json_object_new_string(m->task));
    /* safe: the reprs the client sent, for args a monitor could not decode */
    json_object_object_add(o, "args", safe && m->argsrepr ? json_object_new_string(m->argsrepr)
                                                          : json_object_get(m->args));
    json_object_object_add(o, "kwargs", safe && m->kwargsrepr
                                            ? json_object_new_string(m->kwargsrepr)
                                            : json_object_get(m->kwargs));
    json_object_object_add(o, "type", json_object_new_string(m->task));
    json_object_object_add(o, "hostname", json_object_new_string(w->hostname));
    json_object_object_add(o, "time_start",
                           started_wall > 0 ? json_object_new_double(started_wall) : NULL);
    /* acks late: a message is acked only after its outcome is confirmed */
    json_object_object_add(o, "acknowledged", json_object_new_boolean(0));
    json_object *di = json_object_new_object();
    json_object_object_add(di, "exchange", json_object_new_string(d->exchange ? d->exchange : ""));
    json_object_object_add(di, "routing_key",
                           json_object_new_string(d->routing_key ? d->routing_key : ""));
    json_object_object_add(di, "priority", json_object_new_int(m->priority));
    json_object_object_add(di, "redelivered", json_object_new_boolean(d->redelivered));
    json_object_object_add(o, "delivery_info", di);
    json_object_object_add(o, "worker_pid", pid > 0 ? json_object_new_int(pid) : NULL);
    return o;
}

static json_object *job_info(const struct worker *w, const struct job *j, bool safe)
{
    double start = 0;
    int pid = 0;
    if (j->child >= 0 && j->child < w->pool.n && j->started > 0) {
        start = j->started + task__now_wall() - task__now_mono();
        pid = w->pool.ch[j->child].pid;
    }
    return request_info(w, &j->m, &j->d, start, pid, safe);
}

json_object *inspect_active(struct worker *w, json_object *args)
{
    bool safe = task__json_get_bool(args, "safe");
    json_object *list = json_object_new_array();
    for (int i = 0; i < w->pool.n; i++)
        for (const struct job *j = w->pool.ch[i].running; j != NULL; j = j->next)
            json_object_array_add(list, job_info(w, j, safe));
    return list;
}

json_object *inspect_reserved(const struct worker *w)
{
    json_object *list = json_object_new_array();
    for (const struct job *j = w->pool.bl.head; j != NULL; j = j->next)
        json_object_array_add(list, job_info(w, j, false));
    for (const struct job *j = w->rate.head; j != NULL; j = j->next)
        json_object_array_add(list, job_info(w, j, false));
    return list;
}

json_object *inspect_scheduled(const struct worker *w)
{
    json_object *list = json_object_new_array();
    for (size_t i = 0; i < w->nheld; i++) {
        const struct task__delivery *d = &w->held[i].d;
        struct task__msg m;
        enum task__bad why;
        task_error err = {0};
        /* Held messages were decoded once already; this cannot fail unless memory does. */
        if (msgauth_decode(w, d, &m, &why, &err) != 0) {
            task__msg_clear(&m);
            continue;
        }
        char eta[40];
        task__iso8601_format(w->held[i].due, eta, sizeof(eta));
        json_object *o = json_object_new_object();
        json_object_object_add(o, "eta", json_object_new_string(eta));
        /* Celery's timer priority for eta tasks (consumer.apply_eta_task) is always 6. */
        json_object_object_add(o, "priority", json_object_new_int(6));
        json_object_object_add(o, "request", request_info(w, &m, d, 0, 0, false));
        json_object_array_add(list, o);
        task__msg_clear(&m);
    }
    return list;
}

/* "QUEUE KEY=VALUE ..." entries of queues.arguments for `queue`, typed as the declare sends
 * them (integers, booleans, strings); NULL (Celery's None) when there are none. */
static json_object *queue_arguments(const struct worker *w, const char *queue)
{
    json_object *o = NULL;
    size_t qlen = strlen(queue);
    for (int i = 0; i < w->topo.args.n; i++) {
        const char *e = w->topo.args.v[i];
        if (strncmp(e, queue, qlen) != 0 || e[qlen] != ' ')
            continue;
        char *copy = strdup(e + qlen), *save = NULL;
        for (char *kv = copy ? strtok_r(copy, " ", &save) : NULL; kv != NULL;
             kv = strtok_r(NULL, " ", &save)) {
            char *eq = strchr(kv, '=');
            if (eq == NULL)
                continue;
            *eq = '\0';
            char *end;
            long v = strtol(eq + 1, &end, 10);
            json_object *val = *end == '\0' && end != eq + 1 ? json_object_new_int64(v)
                               : strcmp(eq + 1, "true") == 0  ? json_object_new_boolean(1)
                               : strcmp(eq + 1, "false") == 0 ? json_object_new_boolean(0)
                                                               : json_object_new_string(eq + 1);
            if (o == NULL)
                o = json_object_new_object();
            json_object_object_add(o, kv, val);
        }
        free(copy);
    }
    return o;
}

/* kombu's Queue.as_dict(recurse=True) for a task queue as taskd declares it: a durable queue
 * bound to a durable direct exchange of the same name with its name as the routing key. */
static json_object *queue_dict(const struct worker *w, const char *name)
{
    json_object *ex = json_object_new_object();
    json_object_object_add(ex, "name", json_object_new_string(name));
    json_object_object_add(ex, "type", json_object_new_string("direct"));
    json_object_object_add(ex, "arguments", NULL);
    json_object_object_add(ex, "durable", json_object_new_boolean(1));
    json_object_object_add(ex, "passive", json_object_new_boolean(0));
    json_object_object_add(ex, "auto_delete", json_object_new_boolean(0));
    json_object_object_add(ex, "delivery_mode", NULL);
    json_object_object_add(ex, "no_declare", json_object_new_boolean(0));
    json_object *q = json_object_new_object();
    json_object_object_add(q, "name", json_object_new_string(name));
    json_object_object_add(q, "exchange", ex);
    json_object_object_add(q, "routing_key", json_object_new_string(name));
    json_object_object_add(q, "queue_arguments", queue_arguments(w, name));
    static const char *const nulls[] = {"binding_arguments", "consumer_arguments", "alias",
                                        "no_declare", "expires", "message_ttl", "max_length",
                                        "max_length_bytes", "max_priority"};
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        json_object_object_add(q, nulls[i], NULL);
    json_object_object_add(q, "durable", json_object_new_boolean(1));
    json_object_object_add(q, "exclusive", json_object_new_boolean(0));
    json_object_object_add(q, "auto_delete", json_object_new_boolean(0));
    json_object_object_add(q, "no_ack", json_object_new_boolean(0));
    json_object_object_add(q, "bindings", json_object_new_array());
    return q;
}

json_object *inspect_active_queues(const struct worker *w)
{
    json_object *list = json_object_new_array();
    for (int i = 0; i < w->cfg->queues.n; i++)
        json_object_array_add(list, queue_dict(w, w->cfg->queues.v[i]));
    return list;
}

static int cmp_defs(const void *a, const void *b)
{
    return strcmp((*(const task_def *const *)a)->name, (*(const task_def *const *)b)->name);
}

/* Celery's taskinfoitems: the attribute's text, or NULL when the task has none (left out). */
static const char *task_attr(struct worker *w, const task_def *def, const char *item, char *buf,
                             size_t size)
{
    double soft = def->soft_time_limit, hard = def->time_limit;
    (void)time_limit_get(w, def->name, &soft, &hard);
    if (strcmp(item, "rate_limit") == 0)
        return rate_limit_text(w, def->name);
    if (strcmp(item, "time_limit") == 0 && hard > 0)
        return snprintf(buf, size, "%g", hard), buf;
    if (strcmp(item, "soft_time_limit") == 0 && soft > 0)
        return snprintf(buf, size, "%g", soft), buf;
    if (strcmp(item, "max_retries") == 0 && def->max_retries != 0)
        return snprintf(buf, size, "%d", def->max_retries), buf;
    if (strcmp(item, "queue") == 0)
        return def->queue;
    return NULL; /* exchange, routing_key: None on a task, as Celery's default */
}

static json_object *registered_entry(struct worker *w, const task_def *def, json_object *items)
{
    static const char *const dflt[] = {"exchange", "routing_key", "rate_limit"};
    size_t n = items != NULL ? json_object_array_length(items) : 3;
    char text[1024];
    int len = snprintf(text, sizeof(text), "%s", def->name);
    bool any = false;
    for (size_t i = 0; i < n && len < (int)sizeof(text); i++) {
        const char *item = items != NULL ? task__json_idx_str(items, i) : dflt[i];
        char buf[40];
        const char *v = item != NULL ? task_attr(w, def, item, buf, sizeof(buf)) : NULL;
        if (v == NULL)
            continue;
        len += snprintf(text + len, sizeof(text) - (size_t)len, "%s%s=%s", any ? " " : " [",
                        item, v);
        any = true;
    }
    if (any && len < (int)sizeof(text) - 1)
        snprintf(text + len, sizeof(text) - (size_t)len, "]");
    return json_object_new_string(text);
}

json_object *inspect_registered(struct worker *w, json_object *args)
{
    json_object *items = NULL;
    if (!json_object_object_get_ex(args, "taskinfoitems", &items) ||
        !json_object_is_type(items, json_type_array) || json_object_array_length(items) == 0)
        items = NULL; /* Celery: an empty list means the default items */
    int n = task_registry_count();
    const task_def **defs = calloc((size_t)n + 1, sizeof(*defs));
    json_object *list = json_object_new_array();
    for (int i = 0; defs != NULL && i < n; i++)
        defs[i] = task_registry_at(i);
    if (defs != NULL)
        qsort(defs, (size_t)n, sizeof(*defs), cmp_defs); /* sorted, as Celery answers */
    for (int i = 0; defs != NULL && i < n; i++)
        json_object_array_add(list, registered_entry(w, defs[i], items));
    free(defs);
    return list;
}

static json_object *pool_stats(const struct worker *w)
{
    const struct pool *p = &w->pool;
    json_object *o = json_object_new_object();
    json_object *procs = json_object_new_array();
    for (int i = 0; i < p->n; i++)
        if (p->ch[i].pid > 0 && !p->ch[i].retiring)
            json_object_array_add(procs, json_object_new_int(p->ch[i].pid));
    json_object_object_add(o, "max-concurrency", json_object_new_int(p->target * p->threads));
    json_object_object_add(o, "processes", procs);
    int mtpc = w->cfg->max_tasks_per_child;
    json_object_object_add(o, "max-tasks-per-child",
                           mtpc > 0 ? json_object_new_int(mtpc) : json_object_new_string("N/A"));
    json_object_object_add(o, "put-guarded-by-semaphore", json_object_new_boolean(0));
    json_object *t = json_object_new_array();
    json_object_array_add(t, json_object_new_double(w->cfg->soft_time_limit_s));
    json_object_array_add(t, json_object_new_double(w->cfg->time_limit_s));
    json_object_object_add(o, "timeouts", t);
    json_object_object_add(o, "implementation", json_object_new_string("taskd:prefork-threads"));
    json_object_object_add(o, "threads", json_object_new_int(p->threads));
    json_object_object_add(o, "running", json_object_new_int(pool_running(w)));
    json_object_object_add(o, "backlog", json_object_new_int64((int64_t)p->bl.n));
    return o;
}

/* kombu's Connection.info() for the broker we are connected to (no password in it). */
static json_object *broker_stats(const struct worker *w)
{
    json_object *o = json_object_new_object();
    struct task__url u;
    task_error err = {0};
    const char *where = w->conn != NULL ? task__conn_where(w->conn) : NULL;
    bool ok = where != NULL && task__url_parse(where, &u, &err) == 0;
    json_object_object_add(o, "hostname", ok ? json_object_new_string(u.host) : NULL);
    json_object_object_add(o, "userid", ok ? json_object_new_string(u.user) : NULL);
    json_object_object_add(o, "virtual_host", ok ? json_object_new_string(u.vhost) : NULL);
    json_object_object_add(o, "port", ok ? json_object_new_int(u.port) : NULL);
    json_object_object_add(o, "insist", json_object_new_boolean(0));
    json_object_object_add(o, "ssl", json_object_new_boolean(ok && u.tls));
    json_object_object_add(o, "transport", json_object_new_string("amqp"));
    json_object_object_add(o, "connect_timeout", json_object_new_double(w->cfg->connect_timeout_s));
    json_object_object_add(o, "transport_options", json_object_new_object());
    json_object_object_add(o, "login_method", json_object_new_string("PLAIN"));
    json_object_object_add(o, "uri_prefix", NULL);
    json_object_object_add(o, "heartbeat", json_object_new_double(w->cfg->heartbeat_s));
    json_object_object_add(o, "failover_strategy", json_object_new_string("round-robin"));
    json_object *alt = json_object_new_array();
    for (int i = 0; i < w->cfg->broker_urls.n; i++) {
        char red[600];
        task__url_redact(w->cfg->broker_urls.v[i], red, sizeof(red));
        json_object_array_add(alt, json_object_new_string(red));
    }
    json_object_object_add(o, "alternates", alt);
    return o;
}

/* Celery's rusage: getrusage(RUSAGE_SELF), the supervisor (children run the tasks; their
 * usage is in "rusage_children"). */
static json_object *rusage_of(int who)
{
    struct rusage r;
    if (getrusage(who, &r) != 0)
        return json_object_new_string("N/A");
    json_object *o = json_object_new_object();
#define RU_INT(f) json_object_object_add(o, #f, json_object_new_int64((int64_t)r.ru_##f))
    json_object_object_add(o, "utime",
                           json_object_new_double(r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6));
    json_object_object_add(o, "stime",
                           json_object_new_double(r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6));
    RU_INT(maxrss);
    RU_INT(ixrss);
    RU_INT(idrss);
    RU_INT(isrss);
    RU_INT(minflt);
    RU_INT(majflt);
    RU_INT(nswap);
    RU_INT(inblock);
    RU_INT(oublock);
    RU_INT(msgsnd);
    RU_INT(msgrcv);
    RU_INT(nsignals);
    RU_INT(nvcsw);
    RU_INT(nivcsw);
#undef RU_INT
    return o;
}

static size_t rate_waiting(const struct worker *w)
{
    size_t n = 0;
    for (const struct job *j = w->rate.head; j != NULL; j = j->next)
        n++;
    return n;
}

/* taskd's own counters (Flower shows them under "Other"). */
static json_object *taskd_counts(const struct worker *w)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "received", json_object_new_int64((int64_t)w->n_received));
    json_object_object_add(o, "succeeded", json_object_new_int64((int64_t)w->n_succeeded));
    json_object_object_add(o, "failed", json_object_new_int64((int64_t)w->n_failed));
    json_object_object_add(o, "retried", json_object_new_int64((int64_t)w->n_retried));
    json_object_object_add(o, "quarantined", json_object_new_int64((int64_t)w->n_quarantined));
    json_object_object_add(o, "delayed", json_object_new_int64((int64_t)w->n_delayed));
    json_object_object_add(o, "held", json_object_new_int64((int64_t)w->nheld));
    json_object_object_add(o, "rate_waiting", json_object_new_int64((int64_t)rate_waiting(w)));
    json_object_object_add(o, "unacked", json_object_new_int(w->inflight + (int)w->nheld));
    json_object_object_add(o, "task_events", json_object_new_boolean(w->cfg->send_events));
    return o;
}

json_object *inspect_stats(const struct worker *w)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "total", metrics_totals(w->metrics));
    json_object_object_add(o, "pid", json_object_new_int(getpid()));
    char clock[24];
    snprintf(clock, sizeof(clock), "%llu", (unsigned long long)w->clock);
    json_object_object_add(o, "clock", json_object_new_string(clock));
    json_object_object_add(o, "uptime", json_object_new_int((int)(task__now_mono() - w->started)));
    json_object_object_add(o, "pool", pool_stats(w));
    if (w->autoscale.max > 0) { /* Celery's Autoscaler.info() */
        json_object *a = json_object_new_object();
        json_object_object_add(a, "max", json_object_new_int(w->autoscale.max));
        json_object_object_add(a, "min", json_object_new_int(w->autoscale.min));
        json_object_object_add(a, "current", json_object_new_int(w->pool.target));
        json_object_object_add(a, "qty", json_object_new_int(autoscale_demand(w)));
        json_object_object_add(o, "autoscaler", a);
    }
    json_object_object_add(o, "broker", broker_stats(w));
    /* Celery reports its qos value: prefetch plus the widening for eta holds. */
    json_object_object_add(o, "prefetch_count", json_object_new_int(w->prefetch + (int)w->nheld));
    json_object_object_add(o, "rusage", rusage_of(RUSAGE_SELF));
    json_object_object_add(o, "rusage_children", rusage_of(RUSAGE_CHILDREN));
    json_object_object_add(o, "taskd", taskd_counts(w));
    json_object_object_add(o, "sw_ident", json_object_new_string("taskd"));
    json_object_object_add(o, "sw_ver", json_object_new_string(TASKD_VERSION));
    return o;
}

/* One option's value, typed; broker URLs and the management URL without their passwords. */
static json_object *opt_value(const task_config *cfg, const struct task__opt *o)
{
    const char *base = (const char *)cfg + o->off;
    char red[600];
    switch (o->type) {
    case OPT_INT:
        return json_object_new_int(*(const int *)base);
    case OPT_SECONDS:
        return json_object_new_double(*(const double *)base);
    case OPT_BOOL:
        return json_object_new_boolean(*(const bool *)base);
    case OPT_STRING: {
        const char *s = *(char *const *)base;
        if (s != NULL && strcmp(o->path, "broker.management_url") == 0) {
            task__url_redact(s, red, sizeof(red));
            s = red;
        }
        return s != NULL ? json_object_new_string(s) : NULL;
    }
    case OPT_STRLIST: {
        const task_strlist *l = (const task_strlist *)base;
        json_object *a = json_object_new_array();
        for (int i = 0; i < l->n; i++) {
            task__url_redact(l->v[i], red, sizeof(red));
            bool secret = strncmp(o->path, "broker.", 7) == 0;
            json_object_array_add(a, json_object_new_string(secret ? red : l->v[i]));
        }
        return a;
    }
    }
    return NULL;
}

json_object *inspect_conf(const struct worker *w)
{
    const task_config *cfg = w->cfg;
    json_object *o = json_object_new_object();
    size_t n;
    const struct task__opt *opts = task__config_opts(&n);
    for (size_t i = 0; i < n; i++)
        json_object_object_add(o, opts[i].path, opt_value(cfg, &opts[i]));
    /* The Celery settings taskd has an equivalent of (Flower links these to Celery's docs). */
    char red[600] = "";
    if (cfg->broker_urls.n > 0)
        task__url_redact(cfg->broker_urls.v[0], red, sizeof(red));
    json_object_object_add(o, "broker_url", json_object_new_string(red));
    json_object_object_add(o, "broker_heartbeat", json_object_new_int(cfg->heartbeat_s));
    json_object_object_add(o, "broker_connection_timeout",
                           json_object_new_double(cfg->connect_timeout_s));
    json_object_object_add(o, "worker_concurrency", json_object_new_int(w->pool.target));
    json_object_object_add(o, "worker_prefetch_multiplier",
                           json_object_new_int(cfg->prefetch_multiplier));
    json_object_object_add(o, "worker_max_tasks_per_child",
                           json_object_new_int(cfg->max_tasks_per_child));
    json_object_object_add(o, "worker_max_memory_per_child",
                           json_object_new_int(cfg->max_memory_per_child_kb));
    json_object_object_add(o, "worker_send_task_events",
                           json_object_new_boolean(cfg->send_events));
    json_object_object_add(o, "task_time_limit", json_object_new_double(cfg->time_limit_s));
    json_object_object_add(o, "task_soft_time_limit",
                           json_object_new_double(cfg->soft_time_limit_s));
    json_object_object_add(o, "task_default_queue", json_object_new_string(cfg->default_queue));
    json_object_object_add(o, "task_acks_late", json_object_new_boolean(1));
    json_object_object_add(o, "task_serializer", json_object_new_string("json"));
    json_object_object_add(o, "result_serializer", json_object_new_string("json"));
    json_object_object_add(o, "accept_content", json_object_new_string("json"));
    return o;
}

/* The active or reserved job with task id `id`, and which. */
static const struct job *find_job(const struct worker *w, const char *id, const char **state)
{
    for (int i = 0; i < w->pool.n; i++)
        for (const struct job *j = w->pool.ch[i].running; j != NULL; j = j->next)
            if (strcmp(j->m.id, id) == 0)
                return *state = "active", j;
    const struct job *lists[2] = {w->pool.bl.head, w->rate.head};
    for (int k = 0; k < 2; k++)
        for (const struct job *j = lists[k]; j != NULL; j = j->next)
            if (strcmp(j->m.id, id) == 0)
                return *state = "reserved", j;
    return NULL;
}

json_object *inspect_query_task(struct worker *w, json_object *args)
{
    json_object *o = json_object_new_object(), *ids = NULL;
    json_object_object_get_ex(args, "ids", &ids);
    bool one = json_object_is_type(ids, json_type_string);
    size_t count = one ? 1 : json_object_is_type(ids, json_type_array)
                                 ? json_object_array_length(ids) : 0;
    for (size_t i = 0; i < count; i++) {
        const char *id = one ? json_object_get_string(ids) : task__json_idx_str(ids, i);
        const char *state = NULL;
        const struct job *j = id != NULL ? find_job(w, id, &state) : NULL;
        if (j == NULL)
            continue; /* Celery leaves unknown ids out */
        json_object *pair = json_object_new_array();
        json_object_array_add(pair, json_object_new_string(state));
        json_object_array_add(pair, job_info(w, j, false));
        json_object_object_add(o, id, pair);
    }
    return o;
}

json_object *inspect_clock(const struct worker *w)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "clock", json_object_new_int64((int64_t)w->clock));
    return o;
}

json_object *inspect_report(const struct worker *w)
{
    struct utsname u;
    if (uname(&u) != 0)
        memset(&u, 0, sizeof(u));
    char red[600] = "";
    if (w->conn != NULL)
        snprintf(red, sizeof(red), "%s", task__conn_where(w->conn));
    char text[2048];
    snprintf(text, sizeof(text),
             "software -> taskd:%s (C worker, Celery protocol 2)\n"
             "platform -> system:%s arch:%s kernel version:%s\n"
             "node -> %s pid:%d\n"
             "broker -> %s\n"
             "pool -> processes:%d threads:%d\n",
             TASKD_VERSION, u.sysname, u.machine, u.release, w->hostname, (int)getpid(),
             red[0] ? red : "(not connected)", w->pool.target, w->pool.threads);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_string(text));
    return o;
}

/* A peer's revoked ids: Celery sends its LimitedSet as {id: timestamp}; a list is taken too. */
static void merge_revoked(struct worker *w, json_object *revoked)
{
    if (json_object_is_type(revoked, json_type_object)) {
        json_object_object_foreach(revoked, id, ts) {
            (void)ts;
            if (id[0] != '\0' && strlen(id) <= TASK__ID_MAX)
                revoked_add(w, id);
        }
    } else if (json_object_is_type(revoked, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(revoked); i++) {
            const char *id = task__json_idx_str(revoked, i);
            if (id != NULL && id[0] != '\0' && strlen(id) <= TASK__ID_MAX)
                revoked_add(w, id);
        }
    }
}

json_object *inspect_hello(struct worker *w, json_object *args)
{
    const char *from = task__json_get_str(args, "from_node");
    if (from != NULL && strcmp(from, w->hostname) == 0)
        return NULL; /* our own hello */
    json_object *revoked = NULL;
    if (json_object_object_get_ex(args, "revoked", &revoked))
        merge_revoked(w, revoked);
    json_object *o = json_object_new_object();
    json_object *ids = revoked_list(w), *map = json_object_new_object();
    double now = task__now_wall(); /* taskd keeps no revoke times: now, so peers keep them */
    for (size_t i = 0; i < json_object_array_length(ids); i++)
        json_object_object_add(map, json_object_get_string(json_object_array_get_idx(ids, i)),
                               json_object_new_double(now));
    json_object_put(ids);
    json_object_object_add(o, "revoked", map);
    json_object_object_add(o, "clock", json_object_new_int64((int64_t)++w->clock));
    return o;
}
