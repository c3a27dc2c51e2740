/*
 * ended.h - task ids that reached a final state (SUCCESS, FAILURE, REVOKED) in this worker
 * lately, so that a second beat tick under the same id is acked and dropped instead of run
 * again: the beat's failover may send a tick twice under its deterministic id (beat.h). A
 * retry is not final, so it still runs.
 *
 * Direct-mapped by a hash of the id, ENDED_SLOTS slots: an id is remembered until another id
 * takes its slot or ENDED_KEEP_S passes. Only this worker's outcomes are known: two copies
 * taken by two workers, or one arriving while the first still runs, both run.
 */
#ifndef TASKD_ENDED_H
#define TASKD_ENDED_H

#include <stdbool.h>

/* The parent_id beat's ticks carry: only such messages are dropped when their id ended here
 * lately. Any other message under a reused id runs again, as Celery runs it (a caller that
 * sends an id twice waits for an answer: a silent drop left it waiting for ever). */
#define ENDED_BEAT_PARENT "taskd.beat"

#define ENDED_SLOTS 8192
#define ENDED_KEEP_S 3600.0

/* `id` reached a final state here now. */
void ended_note(const char *id);

/* Did `id` reach a final state here within ENDED_KEEP_S? */
bool ended_lately(const char *id);

#endif
