/*
 * topology.h - which queue a task goes to and how a task queue is declared, shared by clients and
 * workers. The broker refuses (406) a declaration whose arguments differ from the queue's, so
 * every client and worker of a queue must declare it alike: the arguments come from the config
 * (queues.arguments), never from code. Routes (queues.routes) map task-name globs to queues.
 *
 *   queues.arguments entry: "QUEUE KEY=VALUE [KEY=VALUE ...]"  e.g. "urgent x-max-priority=9"
 *   queues.routes entry:    "GLOB QUEUE"                       e.g. "audio.* media"
 *
 * Values that are integers are sent as signed 32-bit (as py-amqp sends Python ints, so Celery
 * and taskd declarations are equivalent), true/false as booleans, anything else as a string.
 */
#ifndef TASK_TOPOLOGY_H
#define TASK_TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <task/config.h>
#include "conn.h"

struct task__topo {
    task_strlist args;     /* owned copies of queues.arguments */
    task_strlist routes;   /* owned copies of queues.routes */
    task_strlist declared; /* queues declared on the current connection */
};

/* Copies what it needs from `cfg` (borrowed). 0 or TASK_ENOMEM. */
int task__topo_init(struct task__topo *t, const task_config *cfg);
void task__topo_free(struct task__topo *t);
/* The connection was replaced: declare everything again on first use. */
void task__topo_forget(struct task__topo *t);

/* The queue of the first route whose glob matches `task`, else `dflt` (both borrowed). */
const char *task__topo_route(const struct task__topo *t, const char *task, const char *dflt);

/* Declares task queue `queue` (exchange, queue, binding, as Celery does) with its configured
 * arguments, once per connection. 0 or the connection's error code. */
int task__topo_declare(struct task__topo *t, struct task__conn *c, uint16_t ch, const char *queue);

/* The same for a durable queue of taskd's own (the dead queue): no exchange, no binding. In a
 * cluster, give it x-queue-type=quorum in queues.arguments, or it is lost with its node. */
int task__topo_declare_plain(struct task__topo *t, struct task__conn *c, uint16_t ch,
                             const char *queue);

/* task__topo_declare() without waiting: the three declarations leave at once (even when
 * declared already: check task__topo_declared() first) and each gets an -ok
 * (TASK__TOPO_SEND_OKS) or the channel is closed on the first refused one; the caller reads
 * them and then calls task__topo_note_declared(). 0 or the connection's error. */
#define TASK__TOPO_SEND_OKS 3
int task__topo_send_declare(struct task__topo *t, struct task__conn *c, uint16_t ch,
                            const char *queue);
/* task__topo_declare() (plain: _declare_plain()) asked with task__conn_ask(): noted declared
 * now; a refusal fails the task__conn_answers() that follows, and the connection with it. */
int task__topo_ask_declare(struct task__topo *t, struct task__conn *c, uint16_t ch,
                           const char *queue, bool plain);
/* Is `queue` declared on this connection? */
bool task__topo_declared(const struct task__topo *t, const char *queue);
/* Is argument `key` configured for `queue` (queues.arguments)? */
bool task__topo_has_arg(const struct task__topo *t, const char *queue, const char *key);
/* `queue` is declared on this connection (its -oks came). 0 or TASK_ENOMEM. */
int task__topo_note_declared(struct task__topo *t, const char *queue);

/* Config validation of one list item of `path` ("queues.arguments" or "queues.routes"): 0, or -1
 * with the reason in why. Other paths always pass. */
int task__topo_check(const char *path, const char *item, char *why, size_t size);

#endif
