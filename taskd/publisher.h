/*
 * publisher.h - publishes on the confirm channel (CH_PUBLISH) and tracks every publish made for
 * a job until the broker confirms it; the results-stream records are batched per loop turn.
 */
#ifndef TASKD_PUBLISHER_H
#define TASKD_PUBLISHER_H

#include "worker.h"

int pub_send(struct worker *w, struct job *job, const char *exchange, const char *rk,
             const amqp_basic_properties_t *props, const void *body, size_t len);
/* The same, mandatory: for a message the task's fate depends on (retry, follow-up, parking,
 * quarantine). If no queue takes it, the broker returns it and the job is requeued, not acked. */
int pub_send_mandatory(struct worker *w, struct job *job, const char *exchange, const char *rk,
                       const amqp_basic_properties_t *props, const void *body, size_t len);
/* basic.return on CH_PUBLISH: the next confirm covers a message no queue took. */
void pub_on_return(struct worker *w);
/* While records flow (one flushed less than this ago), a results-stream record waits this long
 * for others of its stream before it is published: one message per stream and loop turn carried
 * one record at a few thousand tasks/s over 64 streams. Callers' replies do not wait; only the
 * ack does (and a lookup's view, by as much). A record after a quiet spell goes at once. */
#define PUB_STREAM_LINGER_S 0.002
/* A batch this full goes at once. */
#define PUB_STREAM_BATCH_MAX 64
/* Publish the batched results-stream records that are due (call once per loop turn). */
void pub_flush_stream(struct worker *w);
/* Milliseconds until a batch is due (poll's timeout); -1: none waits. */
int pub_stream_next_ms(const struct worker *w);
/* Forget a batch whose connection is gone. */
void pub_drop_batch(struct worker *w);
/* Handle basic.ack / basic.nack frames from CH_PUBLISH. */
void pub_on_confirm(struct worker *w, uint64_t tag, bool multiple, bool nack);
/* Publish a state message for task `m` (reply_to, correlation) if it wants results. */
int pub_result(struct worker *w, struct job *job, const struct task__msg *m, const char *status,
               json_object *result, const char *traceback, int delivery_count);

#endif
