/*
 * quarantine.h - a message that cannot run goes to the dead queue with its reason.
 */
#ifndef TASKD_QUARANTINE_H
#define TASKD_QUARANTINE_H

#include "worker.h"

void quarantine(struct worker *w, struct task__delivery *d, const struct task__msg *partial,
                enum task__bad reason, const char *detail);

#endif
