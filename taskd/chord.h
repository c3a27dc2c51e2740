/* chord.h - the chord barrier, counted by the broker (see chord.c). */
#ifndef TASKD_CHORD_H
#define TASKD_CHORD_H

#include "worker.h"

/* The chord channel (tx mode) at connect, asked with the setup (task__conn_ask). */
int chord_start(struct worker *w);
/* A chord header member ended (SUCCESS, FAILURE, REVOKED): count it in the broker and fire the
 * callback when it is the last. It does not wait: the member's ack waits (job->waits) for
 * the steps, which the broker's replies advance (chord_on_frame); a step that fails requeues
 * the member. 0, or a TASK_E* (then requeue the member). */
int chord_part_done(struct worker *w, struct job *job, const char *status, json_object *result);

/* A frame from the loop's dispatch: true if it was CH_CHORD's. */
bool chord_on_frame(struct worker *w, const amqp_frame_t *f);
/* The broker closed CH_CHORD (answered by the reader): 405 at the lock is an answer, anything
 * else fails the step under way; the channel is reopened without waiting. */
void chord_on_closed(struct worker *w);
/* The connection is gone: members whose steps were under way are requeued by the broker. */
void chord_drop(struct worker *w);

#endif
