/*
 * delay.h - broker-side delays (docs/architecture.md, "Delays"): a task due later is parked in
 * a cascade of TTL'd queues instead of sitting unacked in a worker.
 *
 * Level L (0..DELAY_LEVELS-1) is a topic exchange and a quorum queue `taskd.delay.<100+L>` whose
 * messages live 2^L seconds and then dead-letter, at least once, into level L-1 (level 0 into
 * `taskd.delivery`). (`taskd.delay.0`..`27` were classic queues, whose dead-lettering is at
 * most once: a broker killed while messages moved lost some. They drain by themselves into
 * `taskd.delivery`; nothing is parked there any more.) The
 * routing key spells the delay in binary, most significant level first, then the target queue:
 * "0.0.…1.0.1.celery". Level L sends a message to its queue when its bit is 1 and passes it on
 * (exchange-to-exchange binding) when it is 0, so a message waits exactly the sum of its set
 * bits and lands on its queue through `taskd.delivery`, to which every worker binds its queues.
 * Every queue in a level has one TTL, so expiry order is FIFO order: lateness stays within the
 * one-second granularity. Durable queues, persistent messages: delays survive broker restarts.
 */
#ifndef TASKD_DELAY_H
#define TASKD_DELAY_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <amqp.h>

#define DELAY_LEVELS 28 /* 2^28 - 1 s: about 8.5 years */
#define DELAY_DELIVERY_EXCHANGE "taskd.delivery"
#define DELAY_NAME_BASE 100 /* level L is named taskd.delay.<DELAY_NAME_BASE + L> */

struct worker;
struct job;
struct task__delivery;

/* A park that waits for the cascade's declarations (worker.h: w->dwait). */
struct delay_wait {
    struct job *job;        /* owns its delivery; waits counts this park */
    double due;             /* wall-clock seconds */
};

/* Send the cascade's declarations on CH_DELAY without waiting (asyncdecl.h), at connect and
 * again after a returned message or a refusal's back-off. 0, or the connection's error. */
int delay_start(struct worker *w);
/* A frame from the loop's dispatch: true if it was CH_DELAY's (an -ok counted, open-ok). */
bool delay_on_frame(struct worker *w, const amqp_frame_t *f);
/* The broker closed CH_DELAY (a refusal; answered by the reader): log it, requeue the parks
 * that waited, reopen the channel without waiting. */
void delay_on_closed(struct worker *w);
/* False while the broker's refusal of the cascade is waited out (asyncdecl.h): countdowns
 * wait in memory meanwhile, as for a queue name too long for it, instead of bouncing. */
bool delay_usable(const struct worker *w);
/* A parked message came back unrouted: declare the cascade again on its next use. */
void delay_forget(struct worker *w);
/* The connection is gone: waiting parks are freed (the broker requeues their deliveries). */
void delay_drop(struct worker *w);
void delay_free(struct worker *w);
/* Bind `queue` to taskd.delivery so delayed messages come back to it. */
int delay_bind_queue(struct worker *w, const char *queue);
/* The same asked with the connection's setup (task__conn_ask). */
int delay_ask_bind(struct worker *w, const char *queue);
/* Routing key for a delay of `seconds` (rounded up, capped) to `queue` into buf. */
void delay_routing_key(uint64_t seconds, const char *queue, char *buf, size_t size);
/* Park delivery `d` (tied to `job`) until `due` (Unix seconds). Returns 0 or a TASK_E*. Never
 * waits for the broker: while the cascade's declarations are under way the job takes the
 * delivery (*d is emptied) and is published when they complete, or requeued if refused. */
int delay_park(struct worker *w, struct job *job, struct task__delivery *d, double due);

/* The longest queue name the cascade can carry: its routing key adds 2 bytes a level to the
 * name, within AMQP's 255. */
#define DELAY_MAX_QUEUE (255 - 2 * DELAY_LEVELS)
static inline bool delay_fits(const char *queue)
{
    return queue != NULL && strlen(queue) <= DELAY_MAX_QUEUE;
}

#endif
