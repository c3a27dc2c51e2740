/* conn.c - see conn.h. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "conn.h"
#include "tls.h"

struct task__conn {
    amqp_connection_state_t st;
    bool alive;
    char where[640];
    task_error err;
    uint64_t pub_seq[8];       /* next confirm sequence number - 1, by channel (small ids) */
    bool cork_wanted;          /* task__conn_cork(c, true): cork at the next write */
    bool corked;               /* TCP_CORK is on */
    int rpc_ms;                /* how long a call waits for its answer */
    struct asked *asked;       /* calls sent by task__conn_ask, answers not read yet */
    size_t nasked, asked_cap;
};

struct asked {
    uint16_t ch;
    amqp_method_number_t ok;
    char what[280];
};

static void set_cork(struct task__conn *c, bool on)
{
    if (c == NULL || !c->alive || c->corked == on)
        return;
    int v = on ? 1 : 0;
    if (setsockopt(amqp_get_sockfd(c->st), IPPROTO_TCP, TCP_CORK, &v, sizeof(v)) == 0)
        c->corked = on;
}

void task__conn_cork(struct task__conn *c, bool on)
{
    if (c == NULL)
        return;
    c->cork_wanted = on;
    if (!on)
        set_cork(c, false);
}

/* A write that does not wait: corked if the caller asked (a loop turn that writes nothing
 * pays no setsockopt). */
static void write_begin(struct task__conn *c)
{
    if (c->cork_wanted)
        set_cork(c, true);
}

/* A call that waits for the broker's answer: what is corked must go out first. */
static void rpc_begin(struct task__conn *c)
{
    set_cork(c, false);
}

amqp_connection_state_t task__conn_amqp(struct task__conn *c)
{
    rpc_begin(c); /* the raw handle is used for calls that wait (tx, basic.get, cancel) */
    return c->st;
}
int task__conn_fd(struct task__conn *c) { return amqp_get_sockfd(c->st); }
bool task__conn_alive(const struct task__conn *c) { return c != NULL && c->alive; }
const char *task__conn_where(const struct task__conn *c) { return c->where; }
const char *task__conn_errmsg(const struct task__conn *c) { return c->err.msg; }
int task__conn_errcode(const struct task__conn *c) { return c->err.code; }
void task__conn_clear_error(struct task__conn *c) { task__error_clear(&c->err); }

int task__conn_fail(struct task__conn *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    task__vfail(&c->err, code, fmt, ap);
    va_end(ap);
    return code;
}

char *task__bytes_dup(amqp_bytes_t b)
{
    char *s = malloc(b.len + 1);
    if (s == NULL)
        return NULL;
    if (b.len > 0)
        memcpy(s, b.bytes, b.len);
    s[b.len] = '\0';
    return s;
}

static int map_status(int status)
{
    switch (status) {
    case AMQP_STATUS_NO_MEMORY:
        return TASK_ENOMEM;
    case AMQP_STATUS_TIMEOUT:
    case AMQP_STATUS_HEARTBEAT_TIMEOUT:
        return TASK_ETIMEDOUT;
    case AMQP_STATUS_CONNECTION_CLOSED:
    case AMQP_STATUS_SOCKET_ERROR:
    case AMQP_STATUS_SOCKET_CLOSED:
    case AMQP_STATUS_SSL_ERROR:
        return TASK_ECLOSED;
    case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED:
    case AMQP_STATUS_TCP_ERROR:
    case AMQP_STATUS_SSL_CONNECTION_FAILED:
    case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED:
    case AMQP_STATUS_SSL_PEER_VERIFY_FAILED:
        return TASK_ECONNECT;
    default:
        return TASK_EBROKER;
    }
}

/* A status that means the connection can no longer be used. */
static bool status_is_fatal(int status)
{
    return status != AMQP_STATUS_OK && status != AMQP_STATUS_TIMEOUT &&
           status != AMQP_STATUS_NO_MEMORY && status != AMQP_STATUS_UNEXPECTED_STATE;
}

static int fail_status(struct task__conn *c, int status, const char *what)
{
    if (status_is_fatal(status))
        c->alive = false;
    return task__conn_fail(c, map_status(status), "%s: %s (%s)", what, amqp_error_string2(status),
                           c->where);
}

static int close_reply(struct task__conn *c, const amqp_method_t *m, const char *what)
{
    if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
        const amqp_connection_close_t *cl = m->decoded;
        c->alive = false;
        /* 541 (internal error: a queue or stream the broker could not create in time under
         * load) and 320 (the broker or an operator closing it) pass: try again, as for a lost
         * connection. Others are refusals that would come again. */
        int code = cl->reply_code == 403                              ? TASK_EAUTH
                   : cl->reply_code == 541 || cl->reply_code == 320 ? TASK_ECLOSED
                                                                      : TASK_EBROKER;
        return task__conn_fail(c, code, "%s: broker closed the connection: %u %.*s (%s)", what,
                               cl->reply_code, (int)cl->reply_text.len,
                               (const char *)cl->reply_text.bytes, c->where);
    }
    if (m->id == AMQP_CHANNEL_CLOSE_METHOD) {
        const amqp_channel_close_t *cl = m->decoded;
        return task__conn_fail(c, TASK_EBROKER, "%s: %u %.*s", what, cl->reply_code,
                               (int)cl->reply_text.len, (const char *)cl->reply_text.bytes);
    }
    return task__conn_fail(c, TASK_EBROKER, "%s: unexpected method 0x%08x from broker", what,
                           m->id);
}

int task__conn_check(struct task__conn *c, amqp_rpc_reply_t r, const char *what)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        /* An RPC that timed out leaves the connection in an unknown state (rabbitmq-c: it must
         * be closed); a timeout while merely waiting for frames is not this path. */
        if (r.library_error == AMQP_STATUS_TIMEOUT)
            c->alive = false;
        /* An RPC's method is encoded whole before anything is sent: one that does not encode
         * (a name over 255 bytes) leaves the connection as it was. */
        if (r.library_error == AMQP_STATUS_BAD_AMQP_DATA)
            return task__conn_fail(c, TASK_EINVAL, "%s: %s", what,
                                   amqp_error_string2(r.library_error));
        return fail_status(c, r.library_error, what);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        return close_reply(c, &r.reply, what);
    default:
        c->alive = false;
        return task__conn_fail(c, TASK_ECONNECT, "%s: no reply from broker (%s)", what,
                               c->where);
    }
}

static void set_timeval(struct timeval *tv, double s)
{
    if (s <= 0)
        s = 5;
    tv->tv_sec = (time_t)s;
    tv->tv_usec = (suseconds_t)((s - (double)tv->tv_sec) * 1e6);
}

/* TLS for this connection: a bad file is the config's fault, said once per connect attempt. */
static int tls_setup(struct task__conn *c, amqp_socket_t *sock, const struct task__tls_opts *tls,
                     const char *host)
{
    char why[700];
    if (task__tls_prepare(sock, tls, host, why, sizeof(why)) != 0)
        return task__conn_fail(c, TASK_ECONFIG, "%s: %s", c->where, why);
    /* Loud on purpose, every connect: stderr is where an operator looks (taskd's journal). */
    if (tls->no_verify)
        fprintf(stderr, "level=warn event=tls_verify_off broker=%s detail=\"ssl_cert_reqs=none: "
                "the broker's certificate is not checked; anyone on the path can read and change "
                "this connection\"\n", c->where);
    return 0;
}

/* Try one URL. Returns 0 with c->st open and logged in, or a TASK_E* in c->err. */
static int open_one(struct task__conn *c, const char *url, const struct task__conn_opts *o)
{
    struct task__url u;
    task__url_redact(url, c->where, sizeof(c->where));
    int rc = task__url_parse(url, &u, &c->err);
    if (rc != 0)
        return rc;
    snprintf(c->where, sizeof(c->where), "%s://%s@%s:%d%s%s", u.tls ? "amqps" : "amqp", u.user,
             u.host, u.port, u.vhost[0] == '/' ? "" : "/", u.vhost);

    c->st = amqp_new_connection();
    if (c->st == NULL)
        return task__conn_fail(c, TASK_ENOMEM, "new connection");
    amqp_socket_t *sock = u.tls ? amqp_ssl_socket_new(c->st) : amqp_tcp_socket_new(c->st);
    if (sock == NULL)
        return task__conn_fail(c, TASK_ENOMEM, "new socket");
    struct task__tls_opts tls;
    task__tls_for_url(o->tls, &u, &tls);
    if (u.tls) {
        rc = tls_setup(c, sock, &tls, u.host);
        if (rc != 0)
            return rc;
    } else if ((tls.certfile != NULL && tls.certfile[0] != '\0') ||
               (tls.keyfile != NULL && tls.keyfile[0] != '\0') ||
               (tls.ca_certs != NULL && tls.ca_certs[0] != '\0' &&
                strcmp(tls.ca_certs, TASK__TLS_SYSTEM_CA) != 0)) {
        /* Celery's broker_use_ssl turns TLS on for amqp:// too; ours does not (the URL says
         * which): say so rather than send the password in the clear unnoticed. */
        fprintf(stderr, "level=warn event=tls_options_unused broker=%s detail=\"TLS options are "
                "set but the URL is amqp://: this connection is plain text (use amqps://)\"\n",
                c->where);
    }
    struct timeval tv;
    set_timeval(&tv, o->connect_timeout_s);
    int status = amqp_socket_open_noblock(sock, u.host, u.port, &tv);
    if (status != AMQP_STATUS_OK) {
        char why[600];
        if (u.tls)
            task__tls_explain(status, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "%s", amqp_error_string2(status));
        return task__conn_fail(c, TASK_ECONNECT, "cannot connect to %s: %s", c->where, why);
    }
    amqp_set_handshake_timeout(c->st, &tv);
    amqp_set_rpc_timeout(c->st, &tv);
    c->rpc_ms = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);

    /* consumer_cancel_notify: a deleted queue cancels our consumer with basic.cancel instead
     * of leaving it silently consuming nothing. connection.blocked: the broker says when a
     * resource alarm stops it reading from us, so we stop writing instead of blocking. */
    amqp_table_entry_t caps[2] = {
        {.key = amqp_cstring_bytes("consumer_cancel_notify"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
        {.key = amqp_cstring_bytes("connection.blocked"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
    };
    amqp_table_entry_t props[3];
    props[2].key = amqp_cstring_bytes("capabilities");
    props[2].value.kind = AMQP_FIELD_KIND_TABLE;
    props[2].value.value.table = (amqp_table_t){.num_entries = 2, .entries = caps};
    props[0].key = amqp_cstring_bytes("connection_name");
    props[0].value.kind = AMQP_FIELD_KIND_UTF8;
    props[0].value.value.bytes = amqp_cstring_bytes(o->name ? o->name : "libtask");
    props[1].key = amqp_cstring_bytes("product");
    props[1].value.kind = AMQP_FIELD_KIND_UTF8;
    props[1].value.value.bytes = amqp_cstring_bytes("taskd");
    amqp_table_t ptable = {.num_entries = 3, .entries = props};
    int heartbeat = u.heartbeat >= 0 ? u.heartbeat : o->heartbeat_s;
    amqp_rpc_reply_t r;
    /* EXTERNAL: RabbitMQ takes the user name from our certificate and ignores the response;
     * rabbitmq-c cannot send an empty one (it fails with "could not allocate memory"). */
    if (u.tls && tls.external)
        r = amqp_login_with_properties(c->st, u.vhost, 0, 131072, heartbeat, &ptable,
                                       AMQP_SASL_METHOD_EXTERNAL, u.user);
    else
        r = amqp_login_with_properties(c->st, u.vhost, 0, 131072, heartbeat, &ptable,
                                       AMQP_SASL_METHOD_PLAIN, u.user, u.password);
    memset(u.password, 0, sizeof(u.password));
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && u.tls &&
        task__tls_pending(r.library_error)) {
        /* TLS 1.3: a broker that wants a client certificate says so after our handshake. */
        char why[600];
        task__tls_explain(r.library_error, why, sizeof(why));
        return task__conn_fail(c, TASK_ECONNECT, "login to %s: %s", c->where, why);
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && !u.tls &&
        r.library_error == AMQP_STATUS_SOCKET_ERROR) {
        /* A TLS listener resets a connection whose first bytes are no TLS handshake. */
        return task__conn_fail(c, TASK_ECONNECT, "login to %s: the broker reset the connection "
                               "before the AMQP handshake (a TLS port? then use amqps://)",
                               c->where);
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        (r.library_error == AMQP_STATUS_CONNECTION_CLOSED ||
         r.library_error == AMQP_STATUS_SOCKET_CLOSED)) {
        /* Brokers without authentication_failure_close just drop the socket on a bad login. */
        return task__conn_fail(c, TASK_EAUTH, "login to %s refused (wrong user or password?)",
                               c->where);
    }
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const amqp_connection_close_t *cl = r.reply.decoded;
        int code = cl->reply_code == 403 ? TASK_EAUTH : TASK_EBROKER;
        return task__conn_fail(c, code, "login to %s refused: %u %.*s", c->where,
                               cl->reply_code, (int)cl->reply_text.len,
                               (const char *)cl->reply_text.bytes);
    }
    rc = task__conn_check(c, r, "login");
    if (rc != 0)
        return rc;
    c->alive = true;
    return 0;
}

int task__conn_open(struct task__conn **out, const struct task__conn_opts *o, task_error *err)
{
    if (o->urls == NULL || o->urls->n == 0)
        return task__fail(err, TASK_EINVAL, "no broker URL configured");
    struct task__conn *c = NULL;
    task_error last = {0};
    for (int i = 0; i < o->urls->n; i++) {
        c = calloc(1, sizeof(*c));
        if (c == NULL)
            return task__fail(err, TASK_ENOMEM, "connection");
        int rc = open_one(c, o->urls->v[i], o);
        if (rc == 0) {
            *out = c;
            return 0;
        }
        last = c->err;
        c->alive = false;
        task__conn_close(c);
        /* A bad URL or refused credentials will not get better on the next node of the same
         * cluster, but another URL may differ; keep trying and report the last reason. */
    }
    return task__fail(err, last.code ? last.code : TASK_ECONNECT, "%s", last.msg);
}

void task__conn_close(struct task__conn *c)
{
    rpc_begin(c);
    if (c == NULL)
        return;
    if (c->st != NULL) {
        if (c->alive) {
            /* Best effort: the broker requeues unacked messages either way. */
            amqp_rpc_reply_t r = amqp_connection_close(c->st, AMQP_REPLY_SUCCESS);
            (void)r;
        }
        amqp_destroy_connection(c->st);
    }
    free(c->asked);
    free(c);
}

int task__conn_ask(struct task__conn *c, uint16_t ch, amqp_method_number_t id, void *m,
                   const char *what)
{
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "%s: connection lost", what);
    if (c->nasked == c->asked_cap) {
        size_t cap = c->asked_cap ? 2 * c->asked_cap : 32;
        struct asked *na = realloc(c->asked, cap * sizeof(*na));
        if (na == NULL)
            return task__conn_fail(c, TASK_ENOMEM, "%s: out of memory", what);
        c->asked = na;
        c->asked_cap = cap;
    }
    write_begin(c);
    int status = amqp_send_method(c->st, ch, id, m);
    if (status != AMQP_STATUS_OK)
        return fail_status(c, status, what);
    if (id == AMQP_CHANNEL_OPEN_METHOD && ch < 8)
        c->pub_seq[ch] = 0;
    struct asked *a = &c->asked[c->nasked++];
    a->ch = ch;
    a->ok = id + 1; /* AMQP numbers each -ok one after its request */
    snprintf(a->what, sizeof(a->what), "%s", what);
    return 0;
}

/* The oldest call still unanswered on `ch`, or NULL. */
static struct asked *asked_on(struct task__conn *c, uint16_t ch)
{
    for (size_t i = 0; i < c->nasked; i++)
        if (c->asked[i].ch == ch && c->asked[i].ok != 0)
            return &c->asked[i];
    return NULL;
}

int task__conn_answers(struct task__conn *c)
{
    size_t left = 0;
    for (size_t i = 0; i < c->nasked; i++)
        left += c->asked[i].ok != 0;
    double deadline = task__now_mono() + c->rpc_ms / 1000.0;
    int rc = 0;
    while (rc == 0 && left > 0) {
        int ms = (int)((deadline - task__now_mono()) * 1000) + 1;
        amqp_frame_t f = {0};
        uint16_t closed = 0;
        int got = ms > 0 ? task__conn_next_frame(c, &f, ms, &closed) : 0;
        struct asked *a = got > 0 || closed != 0 ? asked_on(c, closed ? closed : f.channel) : NULL;
        if (got < 0 && closed != 0 && a != NULL) {
            /* The refusal is the call's: name it, not "channel closed". */
            task_error e = c->err;
            task__error_clear(&c->err);
            const char *why = strstr(e.msg, ": ");
            rc = task__conn_fail(c, got, "%s%s", a->what, why != NULL ? why : "");
        } else if (got < 0) {
            rc = got;
        } else if (got == 0) {
            c->alive = false; /* replies may still come: the connection's state is unknown */
            rc = task__conn_fail(c, TASK_ECONNECT, "%s: no reply from broker (%s)",
                                 c->nasked ? c->asked[0].what : "setup", c->where);
        } else if (a == NULL || f.frame_type != AMQP_FRAME_METHOD ||
                   f.payload.method.id != a->ok) {
            c->alive = false;
            rc = task__conn_fail(c, TASK_EBROKER, "%s: unexpected frame from broker",
                                 a != NULL ? a->what : "setup");
        } else {
            a->ok = 0;
            left--;
        }
    }
    c->nasked = 0;
    return rc;
}

int task__conn_channel_open(struct task__conn *c, uint16_t ch)
{
    rpc_begin(c);
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "channel open: connection lost");
    amqp_channel_open(c->st, ch);
    char what[40];
    snprintf(what, sizeof(what), "open channel %u", ch);
    if (ch < 8)
        c->pub_seq[ch] = 0;
    return task__conn_check(c, amqp_get_rpc_reply(c->st), what);
}

int task__conn_confirm_select(struct task__conn *c, uint16_t ch)
{
    rpc_begin(c);
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "confirm.select: connection lost");
    amqp_confirm_select(c->st, ch);
    return task__conn_check(c, amqp_get_rpc_reply(c->st), "confirm.select");
}

int task__conn_qos(struct task__conn *c, uint16_t ch, uint16_t prefetch)
{
    rpc_begin(c);
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "basic.qos: connection lost");
    amqp_basic_qos(c->st, ch, 0, prefetch, 0);
    return task__conn_check(c, amqp_get_rpc_reply(c->st), "basic.qos");
}

int task__conn_qos_nowait(struct task__conn *c, uint16_t ch, uint16_t prefetch)
{
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "basic.qos: connection lost");
    amqp_basic_qos_t m = {.prefetch_count = prefetch};
    int status = amqp_send_method(c->st, ch, AMQP_BASIC_QOS_METHOD, &m);
    return status == AMQP_STATUS_OK ? 0 : fail_status(c, status, "basic.qos");
}

int task__conn_consume_nowait(struct task__conn *c, uint16_t ch, const char *queue,
                              const char *tag)
{
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "consume %s: connection lost", queue);
    amqp_basic_consume_t m = {.queue = amqp_cstring_bytes(queue),
                              .consumer_tag = amqp_cstring_bytes(tag), .nowait = 1};
    int status = amqp_send_method(c->st, ch, AMQP_BASIC_CONSUME_METHOD, &m);
    return status == AMQP_STATUS_OK ? 0 : fail_status(c, status, "basic.consume");
}

int task__conn_cancel_nowait(struct task__conn *c, uint16_t ch, const char *tag)
{
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "basic.cancel: connection lost");
    amqp_basic_cancel_t m = {.consumer_tag = amqp_cstring_bytes(tag), .nowait = 1};
    int status = amqp_send_method(c->st, ch, AMQP_BASIC_CANCEL_METHOD, &m);
    return status == AMQP_STATUS_OK ? 0 : fail_status(c, status, "basic.cancel");
}

int task__conn_declare_queue(struct task__conn *c, uint16_t ch, const char *name, bool durable,
                             bool exclusive, bool auto_delete, amqp_table_t args)
{
    rpc_begin(c);
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "declare %s: connection lost", name);
    amqp_queue_declare(c->st, ch, amqp_cstring_bytes(name), 0, durable, exclusive, auto_delete,
                       args);
    char what[300];
    snprintf(what, sizeof(what), "declare queue %s", name);
    return task__conn_check(c, amqp_get_rpc_reply(c->st), what);
}

/* After a failed call on `ch`: if the broker closed the channel, answer with close-ok and
 * return the reply code (404, 406...); else 0. */
uint16_t task__conn_answer_refusal(struct task__conn *c, uint16_t ch)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c->st);
    if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id != AMQP_CHANNEL_CLOSE_METHOD)
        return 0;
    amqp_channel_close_ok_t cok = {0};
    (void)amqp_send_method(c->st, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &cok);
    return ((const amqp_channel_close_t *)r.reply.decoded)->reply_code;
}

int task__conn_declare_probe(struct task__conn *c, uint16_t ch, const char *name, bool passive,
                             amqp_table_t args, amqp_queue_declare_ok_t *ok, uint16_t *refused)
{
    rpc_begin(c);
    *refused = 0;
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "declare %s: connection lost", name);
    amqp_queue_declare_ok_t *got = amqp_queue_declare(c->st, ch, amqp_cstring_bytes(name),
                                                      passive, !passive, 0, 0, args);
    char what[300];
    snprintf(what, sizeof(what), "declare queue %s", name);
    int rc = task__conn_check(c, amqp_get_rpc_reply(c->st), what);
    if (rc != 0) {
        *refused = task__conn_answer_refusal(c, ch);
        return rc;
    }
    if (ok != NULL && got != NULL)
        *ok = *got;
    return 0;
}

int task__conn_consume_probe(struct task__conn *c, uint16_t ch, const char *queue,
                             amqp_table_t args, char **tag_out, uint16_t *refused)
{
    rpc_begin(c);
    *refused = 0;
    bool asked = c->alive;
    int rc = task__conn_consume(c, ch, queue, false, args, tag_out);
    if (rc != 0 && asked)
        *refused = task__conn_answer_refusal(c, ch);
    return rc;
}

int task__conn_declare_nowait(struct task__conn *c, uint16_t ch, const char *name,
                              amqp_table_t args)
{
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "declare %s: connection lost", name);
    amqp_queue_declare_t m = {.queue = amqp_cstring_bytes(name), .durable = 1, .nowait = 1,
                              .arguments = args};
    int status = amqp_send_method(c->st, ch, AMQP_QUEUE_DECLARE_METHOD, &m);
    return status == AMQP_STATUS_OK ? 0 : fail_status(c, status, "declare");
}

int task__conn_declare_task_queue(struct task__conn *c, uint16_t ch, const char *name,
                                  amqp_table_t args)
{
    rpc_begin(c);
    char what[300];
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "declare %s: connection lost", name);
    amqp_exchange_declare(c->st, ch, amqp_cstring_bytes(name), amqp_cstring_bytes("direct"), 0, 1,
                          0, 0, amqp_empty_table);
    snprintf(what, sizeof(what), "declare exchange %s", name);
    int rc = task__conn_check(c, amqp_get_rpc_reply(c->st), what);
    if (rc != 0)
        return rc;
    rc = task__conn_declare_queue(c, ch, name, true, false, false, args);
    if (rc != 0)
        return rc;
    amqp_queue_bind(c->st, ch, amqp_cstring_bytes(name), amqp_cstring_bytes(name),
                    amqp_cstring_bytes(name), amqp_empty_table);
    snprintf(what, sizeof(what), "bind queue %s", name);
    return task__conn_check(c, amqp_get_rpc_reply(c->st), what);
}

/* A task queue as Celery declares it: a direct exchange of its name, the queue, the binding. */
struct task_queue_methods {
    amqp_exchange_declare_t ex;
    amqp_queue_declare_t q;
    amqp_queue_bind_t b;
};

static struct task_queue_methods task_queue_methods(const char *name, amqp_table_t args)
{
    amqp_bytes_t n = amqp_cstring_bytes(name);
    return (struct task_queue_methods){
        .ex = {.exchange = n, .type = amqp_cstring_bytes("direct"), .durable = 1,
               .arguments = amqp_empty_table},
        .q = {.queue = n, .durable = 1, .arguments = args},
        .b = {.queue = n, .exchange = n, .routing_key = n, .arguments = amqp_empty_table},
    };
}

int task__conn_send_task_queue(struct task__conn *c, uint16_t ch, const char *name,
                               amqp_table_t args)
{
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "declare %s: connection lost", name);
    struct task_queue_methods m = task_queue_methods(name, args);
    if (amqp_send_method(c->st, ch, AMQP_EXCHANGE_DECLARE_METHOD, &m.ex) != AMQP_STATUS_OK ||
        amqp_send_method(c->st, ch, AMQP_QUEUE_DECLARE_METHOD, &m.q) != AMQP_STATUS_OK ||
        amqp_send_method(c->st, ch, AMQP_QUEUE_BIND_METHOD, &m.b) != AMQP_STATUS_OK) {
        c->alive = false;
        return task__conn_fail(c, TASK_ECLOSED, "declare %s: write failed (%s)", name, c->where);
    }
    return 0;
}

int task__conn_ask_queue(struct task__conn *c, uint16_t ch, const char *name, bool task_queue,
                         amqp_table_t args)
{
    struct task_queue_methods m = task_queue_methods(name, args);
    char what[300];
    int rc = 0;
    if (task_queue) {
        snprintf(what, sizeof(what), "declare exchange %s", name);
        rc = task__conn_ask(c, ch, AMQP_EXCHANGE_DECLARE_METHOD, &m.ex, what);
    }
    snprintf(what, sizeof(what), "declare queue %s", name);
    if (rc == 0)
        rc = task__conn_ask(c, ch, AMQP_QUEUE_DECLARE_METHOD, &m.q, what);
    snprintf(what, sizeof(what), "bind queue %s", name);
    if (rc == 0 && task_queue)
        rc = task__conn_ask(c, ch, AMQP_QUEUE_BIND_METHOD, &m.b, what);
    return rc;
}

int task__conn_consume(struct task__conn *c, uint16_t ch, const char *queue, bool no_ack,
                       amqp_table_t args, char **tag_out)
{
    rpc_begin(c);
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "consume %s: connection lost", queue);
    amqp_basic_consume_ok_t *ok = amqp_basic_consume(c->st, ch, amqp_cstring_bytes(queue),
                                                     amqp_empty_bytes, 0, no_ack, 0, args);
    char what[300];
    snprintf(what, sizeof(what), "consume %s", queue);
    int rc = task__conn_check(c, amqp_get_rpc_reply(c->st), what);
    if (rc != 0)
        return rc;
    if (tag_out != NULL) {
        *tag_out = task__bytes_dup(ok->consumer_tag);
        if (*tag_out == NULL)
            return task__conn_fail(c, TASK_ENOMEM, "consumer tag");
    }
    return 0;
}

/* AMQP short strings hold at most 255 bytes. rabbitmq-c finds one too long only when it encodes
 * the content header, after the method frame is on the wire: the connection is then broken. */
static const char *too_long(const char *exchange, const char *rk,
                            const amqp_basic_properties_t *p)
{
    if (strlen(exchange) > 255)
        return "exchange";
    if (strlen(rk) > 255)
        return "routing key";
    if (p == NULL)
        return NULL;
    const struct {
        amqp_flags_t flag;
        const amqp_bytes_t *v;
        const char *name;
    } s[] = {
        {AMQP_BASIC_CONTENT_TYPE_FLAG, &p->content_type, "content_type"},
        {AMQP_BASIC_CONTENT_ENCODING_FLAG, &p->content_encoding, "content_encoding"},
        {AMQP_BASIC_CORRELATION_ID_FLAG, &p->correlation_id, "correlation_id"},
        {AMQP_BASIC_REPLY_TO_FLAG, &p->reply_to, "reply_to"},
        {AMQP_BASIC_EXPIRATION_FLAG, &p->expiration, "expiration"},
        {AMQP_BASIC_MESSAGE_ID_FLAG, &p->message_id, "message_id"},
        {AMQP_BASIC_TYPE_FLAG, &p->type, "type"},
        {AMQP_BASIC_USER_ID_FLAG, &p->user_id, "user_id"},
        {AMQP_BASIC_APP_ID_FLAG, &p->app_id, "app_id"},
    };
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        if ((p->_flags & s[i].flag) && s[i].v->len > 255)
            return s[i].name;
    return NULL;
}

static int publish(struct task__conn *c, uint16_t ch, const char *exchange, const char *rk,
                   bool mandatory, const amqp_basic_properties_t *props, const void *body,
                   size_t len, uint64_t *seq)
{
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "publish: connection lost");
    const char *bad = too_long(exchange, rk, props);
    if (bad != NULL) /* refused here, with the connection intact */
        return task__conn_fail(c, TASK_EINVAL, "publish: %s longer than 255 bytes", bad);
    amqp_bytes_t b = {.len = len, .bytes = (void *)body};
    write_begin(c);
    int status = amqp_basic_publish(c->st, ch, amqp_cstring_bytes(exchange),
                                    amqp_cstring_bytes(rk), mandatory, 0, props, b);
    if (status != AMQP_STATUS_OK)
        return fail_status(c, status, "publish");
    if (ch < 8) {
        c->pub_seq[ch]++;
        if (seq != NULL)
            *seq = c->pub_seq[ch];
    }
    return 0;
}

int task__conn_publish(struct task__conn *c, uint16_t ch, const char *exchange, const char *rk,
                       const amqp_basic_properties_t *props, const void *body, size_t len,
                       uint64_t *seq)
{
    return publish(c, ch, exchange, rk, false, props, body, len, seq);
}

int task__conn_publish_mandatory(struct task__conn *c, uint16_t ch, const char *exchange,
                                 const char *rk, const amqp_basic_properties_t *props,
                                 const void *body, size_t len, uint64_t *seq)
{
    return publish(c, ch, exchange, rk, true, props, body, len, seq);
}

int task__conn_ack(struct task__conn *c, uint16_t ch, uint64_t tag, bool multiple)
{
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "ack: connection lost");
    write_begin(c);
    int status = amqp_basic_ack(c->st, ch, tag, multiple);
    return status == AMQP_STATUS_OK ? 0 : fail_status(c, status, "ack");
}

int task__conn_reject(struct task__conn *c, uint16_t ch, uint64_t tag, bool requeue)
{
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "reject: connection lost");
    write_begin(c);
    int status = amqp_basic_reject(c->st, ch, tag, requeue);
    return status == AMQP_STATUS_OK ? 0 : fail_status(c, status, "reject");
}

bool task__conn_has_buffered(struct task__conn *c)
{
    return c != NULL && c->alive && (amqp_frames_enqueued(c->st) || amqp_data_in_buffer(c->st));
}

int task__conn_next_frame(struct task__conn *c, amqp_frame_t *f, int timeout_ms,
                          uint16_t *closed_channel)
{
    if (!c->alive)
        return task__conn_fail(c, TASK_ECLOSED, "read: connection lost (%s)", c->where);
    struct timeval tv, *tvp = NULL;
    if (timeout_ms != 0)
        rpc_begin(c); /* it may wait: the request it waits for must be out */
    if (timeout_ms >= 0) {
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        tvp = &tv;
    }
    int status = amqp_simple_wait_frame_noblock(c->st, f, tvp);
    if (status == AMQP_STATUS_TIMEOUT)
        return 0;
    if (status != AMQP_STATUS_OK)
        return fail_status(c, status, "read");
    if (f->frame_type != AMQP_FRAME_METHOD)
        return 1;
    if (f->payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
        int rc = close_reply(c, &f->payload.method, "channel closed by broker");
        amqp_channel_close_ok_t ok = {0};
        if (amqp_send_method(c->st, f->channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != 0)
            c->alive = false;
        if (closed_channel != NULL)
            *closed_channel = f->channel;
        return rc;
    }
    if (f->payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
        int rc = close_reply(c, &f->payload.method, "connection");
        amqp_connection_close_ok_t ok = {0};
        (void)amqp_send_method(c->st, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        c->alive = false;
        return rc;
    }
    return 1;
}

int task__conn_read_delivery(struct task__conn *c, const amqp_frame_t *f,
                             struct task__delivery *d)
{
    const amqp_basic_deliver_t *dm = f->payload.method.decoded;
    memset(d, 0, sizeof(*d));
    d->channel = f->channel;
    d->tag = dm->delivery_tag;
    d->redelivered = dm->redelivered;
    d->received = task__now_mono();
    d->exchange = task__bytes_dup(dm->exchange);
    d->routing_key = task__bytes_dup(dm->routing_key);
    d->consumer_tag = task__bytes_dup(dm->consumer_tag);
    if (d->exchange == NULL || d->routing_key == NULL || d->consumer_tag == NULL) {
        task__delivery_free(d);
        return task__conn_fail(c, TASK_ENOMEM, "delivery");
    }
    amqp_rpc_reply_t r = amqp_read_message(c->st, f->channel, &d->msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        free(d->exchange);
        free(d->routing_key);
        free(d->consumer_tag);
        memset(d, 0, sizeof(*d));
        return task__conn_check(c, r, "read message");
    }
    return 0;
}

void task__delivery_free(struct task__delivery *d)
{
    if (d == NULL)
        return;
    free(d->exchange);
    free(d->routing_key);
    free(d->consumer_tag);
    free(d->queue);
    if (d->msg.body.bytes != NULL || d->msg.pool.pagesize != 0)
        amqp_destroy_message(&d->msg);
    memset(d, 0, sizeof(*d));
}

void task__conn_release_buffers(struct task__conn *c)
{
    if (c->alive)
        amqp_maybe_release_buffers(c->st);
}
