/*
 * canvas.h - follow-up messages of a finished task (link, link_error, chain).
 */
#ifndef TASKD_CANVAS_H
#define TASKD_CANVAS_H

#include "worker.h"

void canvas_on_success(struct worker *w, struct job *job, json_object *result);
/* The task failed with `type` (`module`) and `message`: its link_error callbacks run, and the
 * rest of its chain fails with the same exception. */
void canvas_on_failure(struct worker *w, struct job *job, const char *type, const char *module,
                       const char *message);
/* Encode signature `sig` with `first` prepended to its args; *target gets its queue. 0 or
 * TASK_EINVAL (unusable signature, logged) or another TASK_E*. */
int canvas_encode(struct worker *w, struct job *job, json_object *sig, json_object *first,
                  json_object *chain_rest, const char *why, struct task__wire *wire,
                  const char **target);
/* The queue signature `sig` (borrowed) of `job`'s follow-up goes to, into out[size]: 0, or
 * TASK_EINVAL for a signature that cannot run or a name that does not fit. */
int canvas_target(struct worker *w, const struct job *job, json_object *sig, char *out,
                  size_t size);
/* canvas_encode() returned TASK_EBROKER with the connection alive: the broker refused the
 * target queue. `sig` (and `chain_rest`) end FAILURE QueueRefused, tied to the job's ack. */
void canvas_refused(struct worker *w, struct job *job, json_object *sig, json_object *chain_rest,
                    const char *target, const char *why);
/* A chord's callback cannot run: publish FAILURE (ChordError) for it, tied to the job's ack. */
int canvas_chord_error(struct worker *w, struct job *job, const char *member_id,
                       json_object *member_exc);

#endif
