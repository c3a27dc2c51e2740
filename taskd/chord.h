/* chord.h - the chord barrier, counted by the broker (see chord.c). */
#ifndef TASKD_CHORD_H
#define TASKD_CHORD_H

#include "worker.h"

/* A chord header member ended (SUCCESS, FAILURE, REVOKED): count it in the broker and fire the
 * callback when it is the last. 0 or a TASK_E* (then requeue the member). */
int chord_part_done(struct worker *w, struct job *job, const char *status, json_object *result);

#endif
