/*
 * canvas_wait.h - follow-ups (links, chain steps) whose target queue is not declared on this
 * connection yet. The queue's declarations leave without waiting on their own channel
 * (CH_CANVAS) and the follow-up waits here, encoded and tied to its task's ack, until their
 * -oks come through the loop's frame dispatch; then it is published. A refusal closes
 * CH_CANVAS: the follow-up whose declaration was refused fails as before (canvas_refused), the
 * ones behind it are declared again once the channel is open again. So a chain step to a new
 * queue costs the loop no round trip, and nothing is published to a queue that may not exist.
 */
#ifndef TASKD_CANVAS_WAIT_H
#define TASKD_CANVAS_WAIT_H

#include <stdbool.h>
#include <amqp.h>
#include <json-c/json.h>

struct worker;
struct job;
struct task__wire;

/* What fails a follow-up whose queue the broker refused (canvas.c's canvas_refused): handed in
 * by the caller, so that this module reports back without calling up. */
typedef void (*canvas_refused_fn)(struct worker *w, struct job *job, json_object *sig,
                                  json_object *chain_rest, const char *target, const char *why);

/* Declare `target` without waiting and publish `wire` (taken, heap-allocated) to it when
 * declared, tied to `job`; `sig` and `chain_rest` (borrowed; references kept) name what fails,
 * through `refused`, if the broker refuses the queue. 0, or a TASK_E* (nothing was taken then). */
int canvas_wait_add(struct worker *w, struct job *job, struct task__wire *wire,
                    const char *target, json_object *sig, json_object *chain_rest,
                    const char *why, canvas_refused_fn refused);
/* Told that `target` is declared, or that the broker refused it (logged; whoever declares it
 * next meets the refusal and handles it). */
typedef void (*canvas_ready_fn)(struct worker *w, const char *target);

/* Declare `target` without waiting and call `ready` once it is answered; nothing is
 * published. 0, or a TASK_E*. */
int canvas_wait_declare(struct worker *w, const char *target, canvas_ready_fn ready);
/* A frame from the loop's dispatch: true if it was CH_CANVAS's. */
bool canvas_wait_on_frame(struct worker *w, const amqp_frame_t *f);
/* The broker closed CH_CANVAS (answered by the reader): the head follow-up was refused. */
void canvas_wait_on_closed(struct worker *w);
/* The connection is gone: waiting follow-ups are dropped with it (their tasks are requeued by
 * the broker and run again). */
void canvas_wait_drop(struct worker *w);
void canvas_wait_free(struct worker *w);

#endif
