/*
 * lease.h - long tasks and long waits off the consume channel.
 *
 * RabbitMQ closes a channel whose oldest unacked delivery is older than its consumer_timeout
 * (30 min by default, less on some hosted brokers) and requeues everything unacked on it: a
 * long task would run again while it still runs, and take its neighbours with it. So no
 * delivery stays unacked past worker.lease_after:
 *  - a running task's message moves to its lease queue taskd.lease.<id>: a durable queue whose
 *    messages live worker.lease (x-message-ttl) and are then dead-lettered back to the task's
 *    queue. The copy is committed (tx) before the delivery is acked. While the task runs the
 *    worker renews the lease every lease/3 (a fresh copy committed, then the old one taken
 *    off); when its outcome is confirmed the lease queue is deleted. If the worker dies, the
 *    copy goes back to the queue after at most one lease and runs again: at-least-once, as
 *    for short tasks. The queue itself expires (x-expires) after two leases unused.
 *  - a delivery that waits (backlog, rate limit, eta) is given back: a fresh copy goes to the
 *    tail of its queue (confirmed), then the delivery is acked.
 * A leased job survives a reconnect: its outcome is published on the next connection.
 */
#ifndef TASKD_LEASE_H
#define TASKD_LEASE_H

#include "worker.h"

#define CH_LEASE 8
#define LEASE_PREFIX "taskd.lease."

/* A child took `job`: with worker.lease_after = 0 it is leased now. */
void lease_at_start(struct worker *w, struct job *job);
/* Once a second, with a live and unblocked connection (the supervisor's tick): lease what
 * runs long, renew what is due. */
void lease_tick(struct worker *w, double now);
/* The job's outcome is confirmed: drop its lease (the lease queue and its copy). */
void lease_end(struct worker *w, struct job *job);
/* A leased `job`'s run ended here (its outcome may still wait for the broker): a lapsed copy
 * or its original that comes back now is dropped, not run again. */
void lease_ran(struct worker *w, const struct job *job);
/* The job must run again (a cold stop, a crash requeued): its copy goes back to its queue now
 * instead of after the lease. */
void lease_return(struct worker *w, struct job *job);
/* A job ended while its outcome cannot be published: a leased job with no connection, or any
 * job while the broker blocks us (connection.blocked). Keep it (and `reply`, a new reference
 * or NULL) for outcome_replay(). */
void lease_stash(struct worker *w, struct job *job, int why, json_object *reply);
/* The connection is gone: forget the stashed jobs that were not leased (the broker requeues
 * their deliveries); leased ones are settled on the next connection. */
void lease_drop_unleased(struct worker *w);
/* A delivery carrying our lease header is a lapsed lease copy back in its queue. If its task
 * runs here, the copy joins that run (no second run); if it ended here lately, the copy is
 * acked and dropped. A redelivered original of a task leased here (running or ended lately:
 * the broker lost its ack) is acked and dropped too. True when `d` was taken (emptied or
 * acked); false: run it. */
bool lease_copy_back(struct worker *w, struct task__delivery *d, const char *id);
/* Free what is stashed (shutdown). */
void lease_free(struct worker *w);
#endif
