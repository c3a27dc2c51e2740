/*
 * conn.h - one AMQP connection: open over a list of broker URLs, fold rabbitmq-c's two error
 * channels (int status and amqp_rpc_reply_t) into TASK_E* codes plus a one-line message, read
 * frames with a timeout, assemble deliveries, publish with confirm sequence numbers.
 *
 * rabbitmq-c aborts on calls made in the wrong state, so a conn that has seen a connection-level
 * error is marked dead and every later call fails with TASK_ECLOSED instead of reaching it.
 */
#ifndef TASK_CONN_H
#define TASK_CONN_H

#include <amqp.h>
#include <stdbool.h>
#include <stdint.h>
#include <task/config.h>
#include "internal.h"

struct task__conn;
struct task__tls_opts;

struct task__conn_opts {
    const task_strlist *urls;
    double connect_timeout_s;  /* per URL: TCP connect + AMQP handshake + login */
    int heartbeat_s;
    const char *name;          /* connection_name shown by the broker, e.g. "taskd worker" */
    /* TLS for amqps:// URLs (borrowed; NULL: verify against the system CA bundle, check the
     * host, PLAIN login). A URL's ?ssl_... query overrides it for that URL. */
    const struct task__tls_opts *tls;
};

/* A delivered message: everything owned (task__delivery_free()). */
struct task__delivery {
    uint16_t channel;
    uint64_t tag;
    bool redelivered;
    char *exchange, *routing_key, *consumer_tag;
    /* The queue it was consumed from (set by the consumer that knows its tags; NULL for a
     * basic.get). A delivery's identity: a message back from a delay hop or an exchange route
     * carries a routing key that names no queue. */
    char *queue;
    double received;           /* task__now_mono() when it was read: its age on the channel */
    amqp_message_t msg;        /* properties + body */
};

/* Open a connection to the first URL that accepts us. *out on success. Errors name the broker
 * (password redacted): TASK_ECONNECT, TASK_EAUTH, TASK_EBROKER, TASK_EINVAL (bad URL). */
int task__conn_open(struct task__conn **out, const struct task__conn_opts *o, task_error *err);
void task__conn_close(struct task__conn *c);

/* The raw handle, for calls this file does not wrap; uncorks first (task__conn_cork), as such
 * calls usually wait for the broker. */
amqp_connection_state_t task__conn_amqp(struct task__conn *c);
/* TCP_CORK on the connection's socket from its next publish, ack or reject on: what is
 * written then waits in the kernel for a full segment or for the cork to come off, so a burst
 * of publishes and acks leaves in few packets. Every call here that waits for the broker
 * uncorks first; the caller uncorks (on = false) before it sleeps in poll(). */
void task__conn_cork(struct task__conn *c, bool on);
int task__conn_fd(struct task__conn *c);
bool task__conn_alive(const struct task__conn *c);
/* Which URL we are connected to, password redacted. */
const char *task__conn_where(const struct task__conn *c);
/* Detail of the last error ("" if none); cleared by task__conn_clear_error(). */
const char *task__conn_errmsg(const struct task__conn *c);
int task__conn_errcode(const struct task__conn *c);
void task__conn_clear_error(struct task__conn *c);

/* Record an error on the conn (first wins); returns code. */
int task__conn_fail(struct task__conn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Convert an RPC reply: 0 or a TASK_E* with the broker's reply code and text in the message. */
int task__conn_check(struct task__conn *c, amqp_rpc_reply_t r, const char *what);

int task__conn_channel_open(struct task__conn *c, uint16_t ch);
/* Sends method `id` (`m`, borrowed) on `ch` whose -ok reply task__conn_answers() waits for
 * together with the others asked: a worker's setup costs one round trip, not one per call.
 * Nothing else may be read from the connection in between. `what` names it in errors. */
int task__conn_ask(struct task__conn *c, uint16_t ch, amqp_method_number_t id, void *m,
                   const char *what);
/* Waits for the answers to every call asked since the last time (up to the connection's call
 * timeout): 0, or the first refusal, named after the call refused (the channel is then
 * closed: open it again to use it). */
int task__conn_answers(struct task__conn *c);
/* Asks for durable queue `name` with `args` (borrowed); a task queue also gets its direct
 * exchange of the same name and the binding between them, as Celery declares it. */
int task__conn_ask_queue(struct task__conn *c, uint16_t ch, const char *name, bool task_queue,
                         amqp_table_t args);
/* Put `ch` in confirm mode; publishes on it then get sequence numbers 1, 2, ... */
int task__conn_confirm_select(struct task__conn *c, uint16_t ch);
int task__conn_qos(struct task__conn *c, uint16_t ch, uint16_t prefetch);
/* The same three without waiting for the broker's answer: a qos-ok comes later as a frame the
 * reader may ignore, and a refusal closes the channel. `tag` is the caller's consumer tag,
 * unique on the channel. 0, or an error code when the write failed. */
int task__conn_qos_nowait(struct task__conn *c, uint16_t ch, uint16_t prefetch);
int task__conn_consume_nowait(struct task__conn *c, uint16_t ch, const char *queue,
                              const char *tag);
int task__conn_cancel_nowait(struct task__conn *c, uint16_t ch, const char *tag);

/* Declare a queue as Celery 5.2 does for its task queues: direct durable exchange named like the
 * queue, durable queue with `args` (none unless configured: topology.h), binding with the queue's
 * name as key. */
int task__conn_declare_task_queue(struct task__conn *c, uint16_t ch, const char *name,
                                  amqp_table_t args);
/* The same three declarations sent without waiting: exchange.declare-ok, queue.declare-ok and
 * queue.bind-ok come later (or a channel.close for the first refused), for the caller to read. */
int task__conn_send_task_queue(struct task__conn *c, uint16_t ch, const char *name,
                               amqp_table_t args);
/* Declare a queue with explicit flags and arguments (args may be amqp_empty_table). */
int task__conn_declare_queue(struct task__conn *c, uint16_t ch, const char *name, bool durable,
                             bool exclusive, bool auto_delete, amqp_table_t args);
/* queue.declare that tells a refusal apart from a failure: 0 (*ok, may be NULL, gets the
 * broker's declare-ok: ready and consumer counts), or TASK_EBROKER with *refused set to the
 * broker's reply code (404: no such queue on a passive declare, 406: it exists with other
 * arguments) after answering the channel's close, so the caller may reopen `ch` and go on;
 * *refused is 0 for other errors. */
int task__conn_declare_probe(struct task__conn *c, uint16_t ch, const char *name, bool passive,
                             amqp_table_t args, amqp_queue_declare_ok_t *ok,
                             uint16_t *refused);
/* After a failed call on `ch`: when the broker closed the channel (a refusal: 403, 404, 406),
 * answer it (close-ok) and return the reply code, so `ch` can be opened again; else 0. */
uint16_t task__conn_answer_refusal(struct task__conn *c, uint16_t ch);
/* queue.declare (durable) with no-wait: the broker answers only with a channel close. */
int task__conn_declare_nowait(struct task__conn *c, uint16_t ch, const char *name,
                              amqp_table_t args);
/* basic.consume that tells a refusal apart, as task__conn_declare_probe(). */
int task__conn_consume_probe(struct task__conn *c, uint16_t ch, const char *queue,
                             amqp_table_t args, char **tag_out, uint16_t *refused);
/* basic.consume; writes the broker's consumer tag (malloc'd) when tag_out is not NULL. */
int task__conn_consume(struct task__conn *c, uint16_t ch, const char *queue, bool no_ack,
                       amqp_table_t args, char **tag_out);

/* Publish; on a confirm channel *seq gets the message's sequence number (may be NULL). */
int task__conn_publish(struct task__conn *c, uint16_t ch, const char *exchange, const char *rk,
                       const amqp_basic_properties_t *props, const void *body, size_t len,
                       uint64_t *seq);
/* The same with the mandatory flag: a message no queue takes comes back as basic.return (before
 * its confirm), instead of being confirmed and dropped. */
int task__conn_publish_mandatory(struct task__conn *c, uint16_t ch, const char *exchange,
                                 const char *rk, const amqp_basic_properties_t *props,
                                 const void *body, size_t len, uint64_t *seq);
int task__conn_ack(struct task__conn *c, uint16_t ch, uint64_t tag, bool multiple);
int task__conn_reject(struct task__conn *c, uint16_t ch, uint64_t tag, bool requeue);

/* True when frames are already buffered, so poll() on the fd would miss them. */
bool task__conn_has_buffered(struct task__conn *c);

/*
 * Wait up to timeout_ms (-1: forever, 0: only what is buffered or readable now) for a frame.
 * Returns 1 with *f set, 0 on timeout, or a negative TASK_E*. Heartbeats are handled inside.
 * Channel.close from the broker is answered (close-ok) and returned as TASK_EBROKER with the
 * reply in the message and *closed_channel set; connection.close marks the conn dead.
 * The frame's memory is valid until the next call that reads frames or releases buffers.
 */
int task__conn_next_frame(struct task__conn *c, amqp_frame_t *f, int timeout_ms,
                          uint16_t *closed_channel);

/* After a basic.deliver method frame, read its header and body. */
int task__conn_read_delivery(struct task__conn *c, const amqp_frame_t *f,
                             struct task__delivery *d);
void task__delivery_free(struct task__delivery *d);

/* Release rabbitmq-c's frame buffers when nothing is pending (call between batches). */
void task__conn_release_buffers(struct task__conn *c);

/* Copy an amqp_bytes_t into a NUL-terminated malloc'd string (NULL on OOM). */
char *task__bytes_dup(amqp_bytes_t b);

#endif
