/*
 * chord_sm.h - the steps of one chord member's end (chord.c) as a state machine advanced by
 * the broker's replies on CH_CHORD, which the loop's frame dispatch reads: nothing waits for a
 * round trip. Only the decisions live here, so every transition is tested without a broker
 * (tests/unit/test_chord_sm.c); chord.c sends what each returned action names.
 *
 *   COUNT    declare barrier, publish part, tx.commit (2 replies; RabbitMQ refuses any
 *            command on a channel before its tx.commit-ok: 504) -> TALLY
 *   TALLY    passive declare: the ready count, this part included -> < size: DONE; else LOCK
 *   LOCK     declare the exclusive lock queue -> ok: GET; closed 405: BUSY (another holds it)
 *   GET      basic.get until get-empty       -> all positions: FIRE; else DROP
 *   FIRE     callback published, parts acked, tx.commit -> commit-ok: DEL_QUEUE
 *   DEL_QUEUE, DEL_LOCK  queue.delete each   -> DONE
 *   DROP     duplicates acked, the rest requeued, tx.commit -> commit-ok: RECHECK
 *   RECHECK  passive declare                 -> count >= size (at most 3 times): GET; else
 *            DEL_LOCK
 * Any other close of the channel, or a reply the step does not expect, fails the step: the
 * member is requeued (its part may be counted twice; the lock holder drops duplicates).
 */
#ifndef TASKD_CHORD_SM_H
#define TASKD_CHORD_SM_H

#include <stdbool.h>
#include <stdint.h>

enum chord_step {
    CHS_COUNT, CHS_TALLY, CHS_LOCK, CHS_GET, CHS_FIRE, CHS_DEL_QUEUE, CHS_DEL_LOCK, CHS_DROP,
    CHS_RECHECK, CHS_DONE, CHS_BUSY, CHS_FAILED
};

enum chord_event {
    CHE_DECLARE_OK,         /* value: the queue's ready count */
    CHE_COMMIT_OK,
    CHE_GET_OK,             /* a part read (chord_sm_part() recorded it) */
    CHE_GET_EMPTY,
    CHE_DELETE_OK,
    CHE_CLOSED,             /* value: the broker's reply code */
};

/* What the owner sends next. */
enum chord_action {
    CHA_WAIT,               /* more replies of this step to come */
    CHA_SEND_TALLY,
    CHA_SEND_LOCK,
    CHA_SEND_GET,
    CHA_FIRE,               /* publish the callback (or its failure), ack the parts, commit */
    CHA_DROP,               /* ack the duplicates, requeue the rest, commit */
    CHA_SEND_RECHECK,
    CHA_DEL_QUEUE,
    CHA_DEL_LOCK,
    CHA_DONE,               /* the member is counted: ack it */
    CHA_FAIL,               /* requeue the member */
};

#define CHORD_COUNT_REPLIES 2   /* barrier declare-ok, commit-ok */
#define CHORD_RECHECKS 3

struct chord_sm {
    enum chord_step step;
    int size;               /* chord_size */
    int left;               /* COUNT: replies still to come */
    int have;               /* GET: distinct positions read this round */
    int again;              /* RECHECK rounds taken */
    bool lock_held;         /* the lock queue is ours: delete it whatever happens */
    bool fired;
    enum chord_step failed_at; /* FAILED: the step that failed (for the log) */
};

void chord_sm_init(struct chord_sm *s, int size);
/* A part at position i was read (i < 0: unreadable); true if it is the first at i (kept),
 * false for a duplicate. `seen` (size flags, the owner's) says which positions were read. */
bool chord_sm_part(struct chord_sm *s, bool *seen, int i);
enum chord_action chord_sm_on(struct chord_sm *s, enum chord_event ev, long value);
/* The step ended (DONE, BUSY or FAILED). */
bool chord_sm_over(const struct chord_sm *s);

#endif
