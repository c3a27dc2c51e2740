/*
 * consumer.h - consumes the task queues and turns each delivery into a run, a quarantine, a
 * REVOKED result (expired, revoked) or a wait (eta, rate limit); gives back what waits long.
 */
#ifndef TASKD_CONSUMER_H
#define TASKD_CONSUMER_H

#include "worker.h"

/* The dead queue, the task queues and their delay bindings, asked with the setup
 * (task__conn_ask). */
int consumer_ask(struct worker *w);
/* After the setup's answers: the results and revoked streams, then consume the task queues. */
int consumer_start(struct worker *w);
/* Declare results streams 1.. on CH_PUBLISH without waiting, last in the connection's setup: a
 * fresh broker takes ~13 ms to create each, and a call waiting on CH_PUBLISH would wait for
 * them all. Results published on CH_PUBLISH come after them. */
int consumer_declare_rest(struct worker *w);
void consumer_on_delivery(struct worker *w, struct task__delivery *d);
/* The broker cancelled consumer `tag` (its queue was deleted): consume it again soon. */
void consumer_lost(struct worker *w, const char *tag);
/* Declare and consume again the queues whose consumers the broker cancelled (when due). */
void consumer_reconsume(struct worker *w);
/* Cancel every consumer (basic.cancel); deliveries already here stay ours. */
void consumer_cancel(struct worker *w);
/* No pool child is alive: stop consuming and give back what waits; resume when one is. */
void consumer_pause(struct worker *w);
void consumer_resume(struct worker *w);
void consumer_release_due(struct worker *w);
int consumer_next_due_ms(const struct worker *w);
/* Give back what waits here (held for an eta, in the backlog, for a rate token) since before
 * `before` (task__now_mono()): worker.give_back_after. */
void consumer_give_back(struct worker *w, double before);
/* Put back in their queues, unacked, the jobs waiting for a slot or a token (warm shutdown,
 * paused consuming). */
void consumer_requeue_waiting(struct worker *w);
/* Start the jobs whose rate-limit token is due. */
void consumer_release_rate(struct worker *w);
/* The pool's `live` hook: pause consuming with no live child, resume when one runs again. */
void consumer_on_live(struct worker *w, bool any);
/* pidbox add_consumer / cancel_consumer: consume `queue` too (declared as the configured ones
 * are), or stop consuming it. worker.queues follows, so a reconnect keeps the change. 0,
 * TASK_EINVAL (33rd queue, a comma in the name), TASK_ENOTFOUND (cancel: not consumed) or the
 * connection's error. */
int consumer_add_queue(struct worker *w, const char *queue);
int consumer_cancel_queue(struct worker *w, const char *queue);
bool consumer_has_queue(const struct worker *w, const char *queue);

/* Consume every queue anew with the current prefetch (basic.qos binds only consumers made
 * after it), without waiting for the broker: window.c. 0 or an error code. */
int consumer_refresh(struct worker *w);
/* Forget every consumer tag (a new connection, or consuming paused). */
void consumer_forget_tags(struct worker *w);

#endif
