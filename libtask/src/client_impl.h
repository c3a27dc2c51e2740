/* client_impl.h - task_client's insides, shared by client.c and lookup.c. */
#ifndef TASK_CLIENT_IMPL_H
#define TASK_CLIENT_IMPL_H

#include "codec.h"
#include "conn.h"
#include "replies.h"
#include "tls.h"
#include "topology.h"
#include <task/client.h>

#define CH 1          /* confirms + reply queue */
#define CH_STREAM 3   /* results stream reader, opened by the first lookup */

struct task__lookups;

struct task_client {
    struct task__conn *conn;
    task_error err;
    double send_timeout_s;
    char *default_queue;
    char reply_queue[40];
    struct task__replies replies;
    struct task__topo topo;     /* routes, queue arguments, queues declared on this connection */
    uint64_t confirmed;         /* highest sequence number the broker acked */
    uint64_t nacked;            /* highest sequence number the broker nacked */
    bool returned;              /* a basic.return came for the message in flight */
    unsigned conn_gen;          /* bumped at each new connection */
    /* lookup.c's state, made by its first lookup or watch: client.c hands it the results
     * stream's deliveries and frees it, and never calls into lookup.c. */
    struct task__lookups *lookups;
    void (*on_stream)(task_client *c, const amqp_frame_t *f);
    void (*free_lookups)(struct task__lookups *l);
    task_strlist urls;          /* owned copy, for reconnects */
    double connect_timeout_s;
    struct task__sec *sec;      /* message signing (signing.c); NULL: off */
    struct task__tls_opts tls;  /* its strings point into tls_files */
    char *tls_files[3];         /* owned copies: CA bundle, certificate, key */
};

/* A chord header member: its position and the callback signature (borrowed). */
struct task__member {
    int index;
    json_object *chord;
};

/* task_send() for canvas.c: `mb` (may be NULL) makes the message a chord header member. */
int task__client_send(task_client *c, const char *name, json_object *args, json_object *kwargs,
                      const task_send_opts *opts, const struct task__member *mb, task_id *id);

/* After the connection broke: reconnect (all URLs, jittered backoff) until `deadline`
 * (task__now_mono() seconds), re-declare the reply queue and resume. 0 or TASK_ECONNECT. */
int task__client_reconnect(task_client *c, double deadline);
/* A live connection, reconnecting (within client.send_timeout) if the last one died. 0 or the
 * error (also in the client). */
int task__client_ensure_conn(task_client *c);

int task__client_fail(task_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int task__client_from_conn(task_client *c, int rc);
/* Read and dispatch one frame: 1 handled, 0 timeout, < 0 error. */
int task__client_pump(task_client *c, int timeout_ms);
/* Milliseconds left to a task__now_mono() deadline; -1 for a negative deadline (forever). */
int task__remaining_ms(double deadline);

/* One task_wait_progress() or task_watch(): what it waits for and where its answer goes. */
struct task__wait {
    const char *id;
    int timeout_ms;         /* as given: for the error message */
    double deadline;        /* task__now_mono(); < 0: none */
    unsigned seen;          /* the state version cb saw last, + 1; 0: none yet */
    task_state *state;
    json_object **result;
    task_state_cb cb;
    void *userdata;
};
/* task__now_mono() + timeout_ms; -1 (none) for a negative timeout_ms. */
double task__wait_deadline(int timeout_ms);
/* Wait for w->id's final state: 0 (the answer in w), 1 when pause_at (task__now_mono(); < 0:
 * never) comes first or the client reconnected (the caller has something to redo, then waits
 * on with the same w), or an error code (TASK_ETIMEDOUT at w->deadline). */
int task__client_wait(task_client *c, struct task__wait *w, double pause_at);

#endif
