/*
 * outcome.h - what a task's end publishes, and how its delivery is settled. The pool reports a
 * child's news here (through its hooks), the publisher reports confirms here, and nothing else
 * decides: SUCCESS / FAILURE / RETRY / REVOKED and their events and metrics, chord counts,
 * canvas follow-ups, the ack or requeue of the delivery (after every publish made for it is
 * confirmed), a fresh copy back to the queue, and outcomes kept while the broker is away.
 */
#ifndef TASKD_OUTCOME_H
#define TASKD_OUTCOME_H

#include "worker.h"

/* STARTED goes out once a task has run this long: for a status page's long jobs. A task that
 * ends sooner has only its final state published (half the broker's work for short tasks);
 * its state reads PENDING until then, as with track_started off. */
#define OUTCOME_STARTED_AFTER_S 0.02
/* A child took `job`: STARTED due (worker.track_started) and task-started; its lease at start. */
void outcome_started(struct worker *w, struct job *job);
/* Once a loop turn: STARTED for the tasks that have run OUTCOME_STARTED_AFTER_S. */
void outcome_started_due(struct worker *w);
/* Milliseconds until a STARTED is due (poll's timeout); -1: none. */
int outcome_started_next_ms(const struct worker *w);
/* A PROGRESS update (`meta` borrowed) from the task running as `job`. */
void outcome_progress(struct worker *w, struct job *job, json_object *meta);
/* `job` left its child: STASH_DONE with the child's report `up` (borrowed), STASH_LOST (its
 * child died with it, or killed it), STASH_REQUEUE (a neighbour's crash or kill took it down)
 * with NULL. Takes the job: published and settled now, kept for its redelivery (an orphan) or
 * until the broker takes it (no connection, an alarm), or dropped on a cold stop. */
void outcome_child_ended(struct worker *w, struct job *job, int how, const struct ipc_up *up);
/* The job ends REVOKED (`why`: "revoked" or "expired") without running. Takes the job. */
void outcome_revoked(struct worker *w, struct job *job, const char *why);
/* A job that waited (backlog, rate limit, eta) past worker.give_back_after: a fresh copy goes to
 * the tail of its queue, the delivery is acked once that is confirmed. Takes the job. */
void outcome_give_back(struct worker *w, struct job *job);
/* outcome_give_back() for every job of a chain (through `next`). */
void outcome_give_back_chain(struct worker *w, struct job *chain);
/* Every job of a chain goes back to its queue unacked (reject, requeue): warm shutdown. */
void outcome_requeue_chain(struct worker *w, struct job *chain);
/* The job has made all its publishes: it is settled when the last is confirmed. */
void outcome_finish(struct worker *w, struct job *job);
/* The publisher's hook: a publish made for `job` was confirmed (or refused: job->nacked).
 * Settles the job once it is finished and nothing is outstanding. */
void outcome_settled(struct worker *w, struct job *job);
/* Publish and settle the outcome a job kept (stash, stash_reply): a reconnect's replay, an
 * orphan's redelivery. Takes the job. */
void outcome_settle_kept(struct worker *w, struct job *job);
/* Orphans whose redelivery did not come (orphan_take_expired): one that ran to its end gets
 * its outcome published (no delivery to ack); the others are dropped. Takes the chain. */
void outcome_orphans_expired(struct worker *w, struct job *chain);
/* Settle every job kept in w->stashed (after a reconnect, or when the broker unblocks). */
void outcome_replay(struct worker *w);

#endif
