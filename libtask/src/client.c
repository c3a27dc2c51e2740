/*
 * client.c - task_send() and task_wait() over one connection and one reply queue.
 *
 * Channel 1 carries everything: it is in confirm mode for task messages and consumes the
 * client's reply queue (no_ack, as Celery's rpc backend does). task_send() reads frames until the
 * broker confirms its message; replies that arrive meanwhile are kept for task_wait().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "codec.h"
#include "config_opts.h"
#include "conn.h"
#include "replies.h"
#include <task/client.h>

#include "client_impl.h"
#include "signing.h"

int task__client_fail(task_client *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    task__vfail(&c->err, code, fmt, ap);
    va_end(ap);
    return code;
}

/* Move the conn's error (it has the broker's detail) into the client's. */
int task__client_from_conn(task_client *c, int rc)
{
    if (rc == 0)
        return 0;
    task__fail(&c->err, rc, "%s", task__conn_errmsg(c->conn));
    task__conn_clear_error(c->conn);
    return rc;
}

const char *task_client_errmsg(const task_client *c)
{
    return c ? c->err.msg : "no client";
}

const char *task_client_reply_queue(const task_client *c)
{
    return c->reply_queue;
}

static int setup_channel(task_client *c)
{
    int rc = task__conn_channel_open(c->conn, CH);
    if (rc == 0)
        rc = task__conn_confirm_select(c->conn, CH);
    if (rc != 0)
        return rc;
    /* Not auto-delete: replies published while we reconnect must wait for us. The broker
     * drops the queue after 10 minutes without a consumer (x-expires), so a client that died
     * leaves nothing behind for long; the results stream still has every state. */
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-expires"),
                            .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 600000}};
    amqp_table_t args = {.num_entries = 1, .entries = &e};
    rc = task__conn_declare_queue(c->conn, CH, c->reply_queue, false, false, false, args);
    if (rc == 0)
        rc = task__conn_consume(c->conn, CH, c->reply_queue, true, amqp_empty_table, NULL);
    return rc;
}

int task__client_reconnect(task_client *c, double deadline)
{
    struct task__conn_opts o = {.urls = &c->urls, .connect_timeout_s = c->connect_timeout_s,
                                .name = "libtask client", .tls = &c->tls};
    task_error last = {0};
    for (int attempt = 0;; attempt++) {
        task__conn_close(c->conn);
        c->conn = NULL;
        c->confirmed = c->nacked = 0; /* a new channel numbers its confirms from 1 */
        c->conn_gen++; /* lookup.c reopens its channel */
        task__topo_forget(&c->topo);
        task_error e = {0};
        if (task__conn_open(&c->conn, &o, &e) == 0) {
            if (setup_channel(c) == 0)
                return 0;
            e.code = task__conn_errcode(c->conn);
            snprintf(e.msg, sizeof(e.msg), "%s", task__conn_errmsg(c->conn));
        }
        last = e;
        /* Jittered exponential backoff, never past the caller's deadline. */
        double pause = 0.1 * (double)(1 << (attempt > 5 ? 5 : attempt));
        pause *= 0.5 + 0.5 * ((double)rand() / RAND_MAX);
        double left = deadline - task__now_mono();
        if (left <= 0)
            break;
        struct timespec ts = {(time_t)(pause < left ? pause : left), 0};
        double p = pause < left ? pause : left;
        ts.tv_nsec = (long)((p - (double)ts.tv_sec) * 1e9);
        nanosleep(&ts, NULL);
    }
    return task__client_fail(c, TASK_ECONNECT, "broker unreachable, gave up reconnecting: %s",
                             last.msg[0] ? last.msg : "no answer");
}

/* The client outlives cfg and reconnects: it keeps its own copy of the TLS files' names. */
static void keep_tls(task_client *c, const task_config *cfg)
{
    task__tls_from_config(cfg, &c->tls);
    const char *names[3] = {c->tls.ca_certs, c->tls.certfile, c->tls.keyfile};
    for (int i = 0; i < 3; i++)
        c->tls_files[i] = names[i] != NULL ? task__strdup(names[i]) : NULL;
    c->tls.ca_certs = c->tls_files[0];
    c->tls.certfile = c->tls_files[1];
    c->tls.keyfile = c->tls_files[2];
}

task_client *task_client_new(const task_config *cfg, task_error *err)
{
    task_config *own = NULL;
    if (cfg == NULL) {
        own = task_config_new();
        if (own == NULL) {
            task__fail(err, TASK_ENOMEM, "config");
            return NULL;
        }
        if (task_config_load_env(own, err) != 0 || task_config_resolve(own, err) != 0) {
            task_config_free(own);
            return NULL;
        }
        cfg = own;
    }
    task_client *c = calloc(1, sizeof(*c));
    if (c == NULL || task__replies_init(&c->replies) != 0) {
        free(c);
        task_config_free(own);
        task__fail(err, TASK_ENOMEM, "client");
        return NULL;
    }
    c->send_timeout_s = cfg->send_timeout_s > 0 ? cfg->send_timeout_s : 30;
    c->connect_timeout_s = cfg->connect_timeout_s;
    for (int i = 0; i < cfg->broker_urls.n; i++) {
        char **v = realloc(c->urls.v, (size_t)(c->urls.n + 1) * sizeof(*v));
        if (v == NULL)
            break;
        c->urls.v = v;
        if ((v[c->urls.n] = task__strdup(cfg->broker_urls.v[i])) != NULL)
            c->urls.n++;
    }
    /* A config whose caller set broker.password_file without task_config_resolve() still gets
     * its password (resolving twice changes nothing). */
    if (task__urls_resolve(&c->urls, cfg->broker_password_file, err) != 0 ||
        task__sec_load(cfg, &c->sec, NULL, err) != 0) {
        task_config_free(own);
        task_client_free(c);
        return NULL;
    }
    c->default_queue = task__strdup(cfg->default_queue ? cfg->default_queue : "celery");
    keep_tls(c, cfg);
    int trc = task__topo_init(&c->topo, cfg);
    task__uuid4(c->reply_queue);
    struct task__conn_opts o = {.urls = &c->urls,
                                .connect_timeout_s = cfg->connect_timeout_s,
                                .heartbeat_s = 0,
                                .name = "libtask client",
                                .tls = &c->tls};
    int rc = task__conn_open(&c->conn, &o, err);
    task_config_free(own);
    if (rc == 0 && setup_channel(c) != 0)
        rc = task__fail(err, task__conn_errcode(c->conn), "%s", task__conn_errmsg(c->conn));
    if (rc != 0 || c->default_queue == NULL || trc != 0) {
        task__fail(err, TASK_ENOMEM, "client");
        task_client_free(c);
        return NULL;
    }
    return c;
}

void task_client_free(task_client *c)
{
    if (c == NULL)
        return;
    task__conn_close(c->conn);
    task__replies_free(&c->replies);
    if (c->free_lookups != NULL)
        c->free_lookups(c->lookups);
    for (int i = 0; i < 3; i++)
        free(c->tls_files[i]);
    for (int i = 0; i < c->urls.n; i++)
        free(c->urls.v[i]);
    free(c->urls.v);
    task__topo_free(&c->topo);
    task__sec_free(c->sec);
    free(c->default_queue);
    free(c);
}

/*
 * With signing on, a state message counts only when signed by a trusted signer; without it, a
 * signed one cannot be read (nothing to verify it with). Either way the refused message ends
 * its task (named by the correlation id, the one unsigned field we can address it by) as
 * FAILURE with a SecurityError saying why, as Celery's AsyncResult.get() raises instead of
 * waiting on. A forged reply can make a wait fail, never make it succeed. 0: *body and *len
 * are the signed state message (pointing into env).
 */
static int open_reply(task_client *c, const struct task__delivery *d, struct task__envelope *env,
                      const void **body, size_t *len)
{
    amqp_basic_properties_t inner;
    enum task__bad why = TASK_BAD_UNTRUSTED;
    task_error e = {0};
    int rc = c->sec == NULL
                 ? task__fail(&e, TASK_EPROTO, "the result is signed (application/data) and this "
                              "client has no security.cert_store to verify it")
                 : task__sec_unwrap(c->sec, &d->msg.properties, d->msg.body.bytes,
                                    d->msg.body.len, &inner, body, len, env, &why, &e);
    const amqp_basic_properties_t *p = &d->msg.properties;
    if (rc == 0 || !(p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) || p->correlation_id.len == 0 ||
        p->correlation_id.len > 200)
        return rc;
    char id[201], text[600];
    snprintf(id, sizeof(id), "%.*s", (int)p->correlation_id.len,
             (const char *)p->correlation_id.bytes);
    snprintf(text, sizeof(text), "result refused: %s: %s", task__bad_slug(why), e.msg);
    json_object *exc = task__exc_new("SecurityError", text, "celery.exceptions");
    if (exc != NULL)
        (void)task__replies_put(&c->replies, id, "FAILURE", exc);
    return rc;
}

/* Keep a state message that arrived on the reply queue. */
static void take_reply(task_client *c, const amqp_frame_t *f)
{
    struct task__delivery d;
    if (task__conn_read_delivery(c->conn, f, &d) != 0)
        return;
    struct task__result r = {0};
    task_error e = {0};
    struct task__envelope env = {0};
    const void *body = d.msg.body.bytes;
    size_t len = d.msg.body.len;
    if ((c->sec != NULL || task__sec_is_signed(&d.msg.properties)) &&
        open_reply(c, &d, &env, &body, &len) != 0)
        goto out;
    if (task__result_decode(body, len, &r, &e) == 0) {
        json_object *res = r.result;
        r.result = NULL;
        /* Replies for tasks nobody waits on are kept too: task_wait() may come later. */
        (void)task__replies_put(&c->replies, r.task_id, r.status, res);
    }
out:
    task__envelope_free(&env);
    task__result_clear(&r);
    task__delivery_free(&d);
}

/*
 * Read and dispatch one frame (or time out). Returns 1 if a frame was handled, 0 on timeout,
 * negative on error.
 */
int task__client_pump(task_client *c, int timeout_ms)
{
    amqp_frame_t f;
    int rc = task__conn_next_frame(c->conn, &f, timeout_ms, NULL);
    if (rc <= 0)
        return rc < 0 ? task__client_from_conn(c, rc) : 0;
    if (f.frame_type == AMQP_FRAME_METHOD) {
        switch (f.payload.method.id) {
        case AMQP_BASIC_DELIVER_METHOD:
            if (f.channel == CH_STREAM && c->on_stream != NULL)
                c->on_stream(c, &f);
            else
                take_reply(c, &f);
            break;
        case AMQP_BASIC_RETURN_METHOD:
            /* For the one task message in flight (its header and body frames follow). */
            if (f.channel == CH)
                c->returned = true;
            break;
        case AMQP_BASIC_ACK_METHOD: {
            const amqp_basic_ack_t *a = f.payload.method.decoded;
            if (a->delivery_tag > c->confirmed)
                c->confirmed = a->delivery_tag;
            break;
        }
        case AMQP_BASIC_NACK_METHOD: {
            const amqp_basic_nack_t *n = f.payload.method.decoded;
            if (n->delivery_tag > c->nacked)
                c->nacked = n->delivery_tag;
            break;
        }
        default:
            break;
        }
    }
    task__conn_release_buffers(c->conn);
    return 1;
}

int task__remaining_ms(double deadline)
{
    if (deadline < 0)
        return -1;
    double left = deadline - task__now_mono();
    return left <= 0 ? 0 : (int)(left * 1000) + 1;
}

int task__client_ensure_conn(task_client *c)
{
    if (c->conn != NULL && task__conn_alive(c->conn))
        return 0;
    /* Its connection died (a broker restart) and an earlier call gave up reconnecting: this
     * call tries again, within the send timeout, instead of using what is gone. */
    return task__client_reconnect(c, task__now_mono() + c->send_timeout_s);
}

static int ensure_queue(task_client *c, const char *queue)
{
    int rc = task__topo_declare(&c->topo, c->conn, CH, queue);
    return rc != 0 ? task__client_from_conn(c, rc) : 0;
}

static void fill_msg(struct task__msg *m, const char *name, const char *id, json_object *args,
                     json_object *kwargs, const task_send_opts *o, const char *reply_to,
                     const struct task__member *mb)
{
    double now = task__now_wall();
    memset(m, 0, sizeof(*m));
    m->lang = "c";
    m->task = (char *)name;
    m->id = (char *)id;
    m->root_id = (char *)(o->root_id ? o->root_id : id);
    m->parent_id = (char *)o->parent_id;
    m->group = (char *)o->group_id;
    m->group_index = -1;
    m->retries = o->retries;
    if (o->eta > 0)
        m->eta = o->eta;
    else if (o->countdown_s > 0)
        m->eta = now + o->countdown_s;
    if (o->expires_s > 0)
        m->expires = now + o->expires_s;
    m->timelimit_hard = o->time_limit_s;
    m->timelimit_soft = o->soft_time_limit_s;
    m->ignore_result = o->ignore_result;
    m->correlation_id = (char *)id;
    m->reply_to = (char *)reply_to;
    m->priority = o->priority;
    m->delivery_mode = 2;
    m->args = args;
    m->kwargs = kwargs;
    m->callbacks = o->link;
    m->errbacks = o->link_error;
    m->chain = o->chain;
    if (mb != NULL) {
        m->group_index = mb->index;
        m->chord = mb->chord;
    }
}

/* Wait until the broker confirmed (or refused) sequence number `seq`. */
static int wait_confirm(task_client *c, uint64_t seq, const char *id)
{
    double deadline = task__now_mono() + c->send_timeout_s;
    while (c->confirmed < seq && c->nacked < seq) {
        int left = task__remaining_ms(deadline);
        if (left == 0)
            return task__client_fail(c, TASK_ETIMEDOUT,
                               "send %s: no confirm from the broker within %.1f s", id,
                               c->send_timeout_s);
        int rc = task__client_pump(c, left);
        if (rc < 0)
            return rc;
    }
    if (c->nacked >= seq && c->confirmed < seq)
        return task__client_fail(c, TASK_ENACK, "send %s: the broker refused the message (nack)", id);
    if (c->returned) {
        c->returned = false;
        return task__client_fail(c, TASK_EUNROUTABLE, "send %s: no queue took it", id);
    }
    return 0;
}

int task_send(task_client *c, const char *name, json_object *args, json_object *kwargs,
              const task_send_opts *opts, task_id *id)
{
    return task__client_send(c, name, args, kwargs, opts, NULL, id);
}

int task__client_send(task_client *c, const char *name, json_object *args, json_object *kwargs,
                      const task_send_opts *opts, const struct task__member *mb, task_id *id)
{
    static const task_send_opts no_opts;
    if (c == NULL || name == NULL || name[0] == '\0' || id == NULL)
        return TASK_EINVAL;
    task__error_clear(&c->err);
    const task_send_opts *o = opts ? opts : &no_opts;
    if (args != NULL && !json_object_is_type(args, json_type_array))
        return task__client_fail(c, TASK_EINVAL, "send %s: args must be a JSON array", name);
    if (kwargs != NULL && !json_object_is_type(kwargs, json_type_object))
        return task__client_fail(c, TASK_EINVAL, "send %s: kwargs must be a JSON object", name);
    if (o->priority < 0 || o->priority > 255)
        return task__client_fail(c, TASK_EINVAL, "send %s: priority %d out of range", name,
                           o->priority);

    task_id tid;
    if (o->task_id != NULL) {
        if (strlen(o->task_id) >= sizeof(tid.str) || o->task_id[0] == '\0')
            return task__client_fail(c, TASK_EINVAL, "send %s: task id too long", name);
        strcpy(tid.str, o->task_id);
    } else {
        task__uuid7(tid.str);
    }
    const char *queue = o->queue ? o->queue : task__topo_route(&c->topo, name, c->default_queue);
    int rc = task__client_ensure_conn(c);
    if (rc == 0)
        rc = ensure_queue(c, queue);
    if (rc != 0)
        return rc;

    struct task__msg m;
    struct task__wire w;
    fill_msg(&m, name, tid.str, args, kwargs, o, o->ignore_result ? NULL : c->reply_queue, mb);
    rc = task__msg_encode(&m, &w, &c->err);
    if (rc != 0)
        return rc;
    rc = task__wire_seal(c->sec, &w, &c->err);
    if (rc != 0) {
        task__wire_free(&w);
        return rc;
    }
    /* During an outage the call waits (reconnecting) up to client.send_timeout, then fails:
     * never a silent drop. A message whose confirm was lost is sent again with the same id
     * (at-least-once). */
    double deadline = task__now_mono() + c->send_timeout_s;
    int nacks = 0;
    bool redeclared = false;
    for (;;) {
        uint64_t seq = 0;
        c->returned = false;
        /* Mandatory: a queue deleted since we declared it returns the message instead of
         * dropping it; it is declared again and the message sent again, once. Through the
         * queue's own exchange (declared with it, as Celery does), not the default one: a
         * producer then needs write access to its queues only, where write on amq.default
         * would let it put messages into every queue of the vhost (docs/security.md). */
        rc = task__conn_publish_mandatory(c->conn, CH, queue, queue, &w.props, w.body,
                                          w.body_len, &seq);
        rc = rc != 0 ? task__client_from_conn(c, rc) : wait_confirm(c, seq, tid.str);
        if (rc == TASK_EUNROUTABLE && !redeclared) {
            redeclared = true;
            task__error_clear(&c->err);
            task__topo_forget(&c->topo);
            rc = ensure_queue(c, queue);
            if (rc == 0)
                continue;
        }
        /* A nack is the broker saying it cannot take the message now (a quorum queue electing
         * a new leader, a full disk): try again until the send timeout, as for an outage, on a
         * new connection: a RabbitMQ 3.10 channel that published to a quorum queue without a
         * leader kept nacking it after the election (fault test quorum_failover). */
        bool nacked = rc == TASK_ENACK;
        if (rc == 0 || task__now_mono() >= deadline || (!nacked && task__conn_alive(c->conn)))
            break;
        if (nacked) {
            double pause = 0.05 * (1 << (nacks < 5 ? nacks : 5));
            nacks++;
            nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = (long)(pause * 1e9)}, NULL);
        }
        task__error_clear(&c->err);
        rc = task__client_reconnect(c, deadline);
        if (rc == 0)
            rc = ensure_queue(c, queue);
        if (rc != 0)
            break;
    }
    task__wire_free(&w);
    if (rc != 0)
        return rc;
    *id = tid;
    return 0;
}

double task__wait_deadline(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : task__now_mono() + timeout_ms / 1000.0;
}

int task__client_wait(task_client *c, struct task__wait *w, double pause_at)
{
    unsigned gen = c->conn_gen;
    for (;;) {
        struct task__reply *r = task__replies_find(&c->replies, w->id);
        if (r != NULL && task_state_is_final(r->state)) {
            if (w->state != NULL)
                *w->state = r->state;
            if (w->result != NULL)
                *w->result = json_object_get(r->result);
            task__replies_remove(&c->replies, w->id);
            return 0;
        }
        if (r != NULL && w->cb != NULL && r->version + 1 != w->seen) {
            w->seen = r->version + 1;
            w->cb(w->id, r->state, r->status, r->result, w->userdata);
        }
        int left = task__remaining_ms(w->deadline);
        if (left == 0 && !task__conn_has_buffered(c->conn))
            return task__client_fail(c, TASK_ETIMEDOUT, "wait %s: no result within %d ms",
                                     w->id, w->timeout_ms);
        if (c->conn_gen != gen)
            return 1;
        int pause = task__remaining_ms(pause_at);
        if (pause == 0 && !task__conn_has_buffered(c->conn))
            return 1;
        int rc = task__client_pump(c, pause >= 0 && (left < 0 || pause < left) ? pause : left);
        if (rc < 0 && !task__conn_alive(c->conn)) {
            /* Replies wait in our reply queue while we reconnect. */
            task__error_clear(&c->err);
            double until = w->deadline < 0 ? task__now_mono() + c->send_timeout_s : w->deadline;
            rc = task__client_reconnect(c, until);
        }
        if (rc < 0)
            return rc;
    }
}

int task_wait_progress(task_client *c, const char *id, int timeout_ms, task_state *state,
                       json_object **result, task_state_cb cb, void *userdata)
{
    if (c == NULL || id == NULL)
        return TASK_EINVAL;
    task__error_clear(&c->err);
    struct task__wait w = {.id = id, .timeout_ms = timeout_ms, .state = state,
                           .result = result, .cb = cb, .userdata = userdata,
                           .deadline = task__wait_deadline(timeout_ms)};
    int rc = task__client_ensure_conn(c);
    while (rc == 0 && (rc = task__client_wait(c, &w, -1)) > 0) {
    }
    return rc;
}

int task_wait(task_client *c, const char *id, int timeout_ms, task_state *state,
              json_object **result)
{
    return task_wait_progress(c, id, timeout_ms, state, result, NULL, NULL);
}

int task_client_poll(task_client *c, const char *id, task_state *state, json_object **meta)
{
    if (c == NULL || id == NULL)
        return TASK_EINVAL;
    task__error_clear(&c->err);
    int rc = task__client_ensure_conn(c);
    if (rc != 0)
        return rc;
    while ((rc = task__client_pump(c, 0)) > 0) {
    }
    if (rc < 0)
        return rc;
    struct task__reply *r = task__replies_find(&c->replies, id);
    if (state != NULL)
        *state = r ? r->state : TASK_STATE_PENDING;
    if (meta != NULL)
        *meta = r ? json_object_get(r->result) : NULL;
    return 0;
}
