/*
 * orphan.h - a task whose connection broke while it ran goes on running (its child cannot be
 * told apart from the others), and the broker requeues its delivery. When that delivery comes
 * back to this worker (redelivered), it is not run a second time: it is adopted by the run
 * still going, or, if that run ended meanwhile, given its outcome, kept here for a while.
 * (A redelivery that goes to another worker runs there: leases, lease.h, close that window for
 * tasks older than worker.lease_after.)
 */
#ifndef TASKD_ORPHAN_H
#define TASKD_ORPHAN_H

#include "worker.h"

/* How long an orphan's outcome waits for its redelivery, and how many are kept. */
#define ORPHAN_KEEP_S 300.0
#define ORPHAN_KEEP_MAX 4096

/* An orphan's run ended (`why`: STASH_DONE with its child's `reply`, a new reference, or
 * STASH_LOST / STASH_REQUEUE): keep its outcome for its redelivery. Takes the job. */
void orphan_keep(struct worker *w, struct job *job, int why, json_object *reply);
/* A redelivered delivery of task `id`: if an orphan of the same id runs or ended here, it
 * takes over the delivery (*d is emptied) and true is returned; the caller drops its decoded
 * copy of the message. An orphan that ended is handed back in *ended (else NULL): the caller
 * publishes its kept outcome (outcome_settle_kept). */
bool orphan_adopt(struct worker *w, struct task__delivery *d, const char *id,
                  struct job **ended);
/* Unlink the kept outcomes older than ORPHAN_KEEP_S (once a second) and return them as a
 * chain: their redelivery did not come (the broker lost the message, or another worker took
 * it). The caller owns them (outcome_orphans_expired). */
struct job *orphan_take_expired(struct worker *w);
void orphan_free(struct worker *w);

#endif
