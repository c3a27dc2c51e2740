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

#define DELAY_LEVELS 28 /* 2^28 - 1 s: about 8.5 years */
#define DELAY_DELIVERY_EXCHANGE "taskd.delivery"
#define DELAY_NAME_BASE 100 /* level L is named taskd.delay.<DELAY_NAME_BASE + L> */

struct worker;
struct job;
struct task__delivery;

/* Declare the cascade (once per connection, on first use). */
int delay_declare(struct worker *w);
/* Bind `queue` to taskd.delivery so delayed messages come back to it. */
int delay_bind_queue(struct worker *w, const char *queue);
/* Routing key for a delay of `seconds` (rounded up, capped) to `queue` into buf. */
void delay_routing_key(uint64_t seconds, const char *queue, char *buf, size_t size);
/* Park delivery `d` (tied to `job`) until `due` (Unix seconds). Returns 0 or a TASK_E*. */
int delay_park(struct worker *w, struct job *job, const struct task__delivery *d, double due);

/* The longest queue name the cascade can carry: its routing key adds 2 bytes a level to the
 * name, within AMQP's 255. */
#define DELAY_MAX_QUEUE (255 - 2 * DELAY_LEVELS)
static inline bool delay_fits(const char *queue)
{
    return queue != NULL && strlen(queue) <= DELAY_MAX_QUEUE;
}

#endif
